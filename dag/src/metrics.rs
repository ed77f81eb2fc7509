//! The scheduler's Prometheus metrics. They register into whichever registry the process
//! exposes (the scoring server's, or the standalone scheduler's own `/metrics`), so
//! "retraining is stale" can be alerted on from `fraud_dag_last_success_timestamp`.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct DagMetrics {
    pub runs: IntCounterVec,
    pub task_seconds: HistogramVec,
    pub last_success: GaugeVec,
    pub last_failed: IntGaugeVec,
}

impl DagMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<DagMetrics> {
        let m = DagMetrics {
            runs: IntCounterVec::new(
                Opts::new("fraud_dag_runs_total", "finished DAG runs by outcome"),
                &["dag", "state"],
            )?,
            task_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "fraud_dag_task_duration_seconds",
                    "duration of task attempts",
                )
                .buckets(vec![
                    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                ]),
                &["dag", "task"],
            )?,
            last_success: GaugeVec::new(
                Opts::new(
                    "fraud_dag_last_success_timestamp",
                    "when the DAG last finished a run successfully (unix seconds)",
                ),
                &["dag"],
            )?,
            last_failed: IntGaugeVec::new(
                Opts::new(
                    "fraud_dag_last_run_failed",
                    "1 when the DAG's latest finished run failed",
                ),
                &["dag"],
            )?,
        };
        registry.register(Box::new(m.runs.clone()))?;
        registry.register(Box::new(m.task_seconds.clone()))?;
        registry.register(Box::new(m.last_success.clone()))?;
        registry.register(Box::new(m.last_failed.clone()))?;
        Ok(m)
    }

    /// A registry of its own (for one-off `dag run` commands, where nothing is scraped).
    pub fn detached() -> DagMetrics {
        // Registering into a fresh registry only fails on duplicate names, which cannot happen.
        match DagMetrics::register(&Registry::new()) {
            Ok(m) => m,
            Err(e) => unreachable!("fresh registry: {e}"),
        }
    }
}

/// Serves `registry` as `/metrics` (and `/health`) on `addr` until `shutdown`: the standalone
/// scheduler's scrape target.
pub async fn serve(
    addr: std::net::SocketAddr,
    registry: Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<tokio::task::JoinHandle<()>> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::Error::io(format!("cannot listen on {addr} for metrics"), e))?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut buf = Vec::new();
                    let _ = prometheus::Encoder::encode(
                        &prometheus::TextEncoder::new(),
                        &registry.gather(),
                        &mut buf,
                    );
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        String::from_utf8(buf).unwrap_or_default(),
                    )
                }
            }),
        )
        .route("/health", get(|| async { "ok" }));
    tracing::info!(%addr, "scheduler metrics at /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics server failed");
        }
    }))
}
