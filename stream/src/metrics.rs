//! What a stream consumer and the scoring log publish for Prometheus: how far behind each
//! partition is (the alert on a stalled consumer reads it), what became of the messages, and
//! whether the scoring log is reachable. Registered in the server's registry by `serve`, or in
//! its own by `fraudlake stream --metrics-addr`.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct StreamMetrics {
    /// Messages in a partition after the last one consumed.
    pub lag: IntGaugeVec,
    /// Messages by topic and outcome (landed, rejected, duplicate, already_landed).
    pub messages: IntCounterVec,
    /// 1 while the scoring log's broker answers.
    pub log_up: IntGauge,
    /// Answers produced to the scoring log and not acknowledged yet.
    pub log_pending: IntGauge,
}

impl StreamMetrics {
    pub fn new() -> prometheus::Result<StreamMetrics> {
        Ok(StreamMetrics {
            lag: IntGaugeVec::new(
                Opts::new(
                    "fraud_stream_lag_messages",
                    "messages in a partition after the last one consumed",
                ),
                &["topic", "partition"],
            )?,
            messages: IntCounterVec::new(
                Opts::new(
                    "fraud_stream_messages_total",
                    "consumed messages by topic and outcome (landed, rejected, duplicate, already_landed)",
                ),
                &["topic", "outcome"],
            )?,
            log_up: IntGauge::new(
                "fraud_scoring_log_up",
                "1 while the scoring log's broker answers (serve --scoring-log)",
            )?,
            log_pending: IntGauge::new(
                "fraud_scoring_log_pending",
                "answers produced to the scoring log and not yet acknowledged",
            )?,
        })
    }

    /// Registers every series in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.lag.clone()))?;
        registry.register(Box::new(self.messages.clone()))?;
        registry.register(Box::new(self.log_up.clone()))?;
        registry.register(Box::new(self.log_pending.clone()))?;
        Ok(())
    }
}

/// Serves `GET /metrics` (Prometheus text) from `registry` on `addr` until the process ends:
/// `fraudlake stream --metrics-addr`.
pub async fn serve(
    addr: std::net::SocketAddr,
    registry: Registry,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics on /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                let encoder = prometheus::TextEncoder::new();
                match encoder.encode_utf8(&registry.gather(), &mut text) {
                    Ok(()) => (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        text,
                    ),
                    Err(e) => (
                        [(axum::http::header::CONTENT_TYPE, "text/plain")],
                        format!("# cannot encode the metrics: {e}\n"),
                    ),
                }
            }
        }),
    );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    }))
}
