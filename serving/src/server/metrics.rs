//! The server's Prometheus metrics (the `prometheus` crate), named as the seed named them
//! (`fraud_requests_total`, `fraud_risk_score`, `model_inference_latency_seconds`,
//! `api_errors_total`) plus decisions, model info, online state, event time, retries, lake
//! writer and feedback.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub risk: Histogram,
    pub latency: Histogram,
    pub errors: IntCounterVec,
    pub decisions: IntCounterVec,
    pub model_info: IntGaugeVec,
    pub entities: IntGauge,
    pub writer_pending: IntGauge,
    pub writer_commit: HistogramVec,
    pub writer_failures: IntCounter,
    /// Answers refused because the scoring log did not acknowledge them.
    pub scoring_log_errors: IntCounter,
    pub feedback: IntCounterVec,
    /// Labels that said the opposite of the label that counted, by source and whether
    /// they were applied (a more trusted source's label is not overridden).
    pub label_flips: IntCounterVec,
    pub reloads: IntCounterVec,
    /// Event-time outcomes: refused_ahead, clamped, late, watermark_jump.
    pub event_time: IntCounterVec,
    pub watermark: Gauge,
    /// A tx_id sent again: replayed (same body, same answer) or conflict (another body, 409).
    pub tx_id_reuse: IntCounterVec,
    pub writer_duplicates: IntCounter,
    pub drift: DriftGauges,
    pub store: StoreMetrics,
}

/// The shared online store (`--online-store redis://...`); all zero with the in-memory store.
pub struct StoreMetrics {
    pub up: IntGauge,
    pub round_trips: IntCounter,
    pub errors: IntCounter,
    pub degraded: IntCounter,
    pub rebootstraps: IntCounter,
    pub entities: IntGauge,
    pub bytes: IntGauge,
}

impl StoreMetrics {
    fn new(registry: &Registry) -> prometheus::Result<StoreMetrics> {
        let m = StoreMetrics {
            up: IntGauge::new(
                "fraud_online_store_up",
                "1 while the shared online store answers with the generation this replica serves",
            )?,
            round_trips: IntCounter::new(
                "fraud_online_store_round_trips_total",
                "pipelines sent to the shared online store by requests (one per /score)",
            )?,
            errors: IntCounter::new(
                "fraud_online_store_errors_total",
                "requests the shared online store failed (unreachable, or its state lost)",
            )?,
            degraded: IntCounter::new(
                "fraud_online_degraded_total",
                "transactions scored without history because the online store failed (--on-store-failure open)",
            )?,
            rebootstraps: IntCounter::new(
                "fraud_online_rebootstraps_total",
                "bootstraps of the shared online store from the lake run by this replica after the store lost its state",
            )?,
            entities: IntGauge::new(
                "fraud_online_store_entities",
                "entities in the shared online store (refreshed every 15 s)",
            )?,
            bytes: IntGauge::new(
                "fraud_online_store_bytes",
                "memory the shared online store's Redis uses (refreshed every 15 s)",
            )?,
        };
        registry.register(Box::new(m.up.clone()))?;
        registry.register(Box::new(m.round_trips.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.degraded.clone()))?;
        registry.register(Box::new(m.rebootstraps.clone()))?;
        registry.register(Box::new(m.entities.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        Ok(m)
    }
}

/// The latest drift report (`drift_reports` in the lake), so alert rules can fire on it.
pub struct DriftGauges {
    pub feature: GaugeVec,
    pub drifted: IntGaugeVec,
    pub dataset: IntGauge,
    pub share: Gauge,
    pub report_time: Gauge,
    run_id: parking_lot::Mutex<String>,
}

impl DriftGauges {
    fn new(registry: &Registry) -> prometheus::Result<DriftGauges> {
        let g = DriftGauges {
            feature: GaugeVec::new(
                Opts::new(
                    "fraud_feature_drift",
                    "drift statistic of each feature in the latest drift report (method label)",
                ),
                &["feature", "method"],
            )?,
            drifted: IntGaugeVec::new(
                Opts::new(
                    "fraud_feature_drifted",
                    "1 when the feature drifted in the latest drift report",
                ),
                &["feature"],
            )?,
            dataset: IntGauge::new(
                "fraud_dataset_drift",
                "1 when the latest drift report found dataset drift",
            )?,
            share: Gauge::new(
                "fraud_drift_share",
                "share of drifted features in the latest drift report",
            )?,
            report_time: Gauge::new(
                "fraud_drift_report_timestamp_seconds",
                "when the latest drift report was computed (unix seconds)",
            )?,
            run_id: parking_lot::Mutex::new(String::new()),
        };
        registry.register(Box::new(g.feature.clone()))?;
        registry.register(Box::new(g.drifted.clone()))?;
        registry.register(Box::new(g.dataset.clone()))?;
        registry.register(Box::new(g.share.clone()))?;
        registry.register(Box::new(g.report_time.clone()))?;
        Ok(g)
    }

    /// Publishes a drift run (once per run id). Scores and labels are exposed under the
    /// feature names `risk_score` and `is_fraud`.
    pub fn publish(&self, latest: &super::drift::DriftVerdict) {
        let mut seen = self.run_id.lock();
        if *seen == latest.run_id {
            return;
        }
        self.feature.reset();
        self.drifted.reset();
        for c in &latest.columns {
            let name = match c.scope.as_str() {
                "prediction" => "risk_score",
                "target" => "is_fraud",
                _ => c.column.as_str(),
            };
            if let Some(v) = c.statistic {
                self.feature.with_label_values(&[name, &c.method]).set(v);
            }
            self.drifted
                .with_label_values(&[name])
                .set(i64::from(c.drifted));
        }
        self.dataset.set(i64::from(latest.dataset_drift));
        self.share.set(latest.drift_share);
        self.report_time.set(latest.generated_at_secs);
        *seen = latest.run_id.clone();
    }
}

fn build() -> prometheus::Result<Metrics> {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "fraud_requests_total",
            "HTTP requests by endpoint and status",
        ),
        &["endpoint", "status"],
    )?;
    let risk = Histogram::with_opts(
        HistogramOpts::new(
            "fraud_risk_score",
            "fraud probability of scored transactions",
        )
        .buckets((0..=20).map(|i| f64::from(i) / 20.0).collect()),
    )?;
    let latency = Histogram::with_opts(
        HistogramOpts::new(
            "model_inference_latency_seconds",
            "online features plus model, per transaction",
        )
        .buckets(vec![
            5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2,
        ]),
    )?;
    let errors = IntCounterVec::new(
        Opts::new("api_errors_total", "error answers by kind"),
        &["kind"],
    )?;
    let decisions = IntCounterVec::new(
        Opts::new("fraud_decisions_total", "decisions by kind"),
        &["decision"],
    )?;
    let model_info = IntGaugeVec::new(
        Opts::new("fraud_model_info", "1 for the model version being served"),
        &["version", "feature_set"],
    )?;
    let entities = IntGauge::new("fraud_online_entities", "entities with online state")?;
    let writer_pending = IntGauge::new(
        "fraud_lake_writer_pending_rows",
        "scored transactions and labels not yet committed to the lake",
    )?;
    let writer_commit = HistogramVec::new(
        HistogramOpts::new(
            "fraud_lake_writer_commit_seconds",
            "lake commit duration by table",
        )
        .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        &["table"],
    )?;
    let scoring_log_errors = IntCounter::new(
        "fraud_scoring_log_errors_total",
        "answers refused (503) because the scoring log did not acknowledge them",
    )?;
    let writer_failures = IntCounter::new(
        "fraud_lake_writer_failures_total",
        "failed lake commits (retried with backoff)",
    )?;
    let feedback = IntCounterVec::new(
        Opts::new(
            "fraud_label_feedback_total",
            "labels received by POST /labels",
        ),
        &["is_fraud"],
    )?;
    let label_flips = IntCounterVec::new(
        Opts::new(
            "fraud_label_flips_total",
            "labels received by POST /labels that contradict the label that counted, by source and applied",
        ),
        &["source", "applied"],
    )?;
    let reloads = IntCounterVec::new(
        Opts::new(
            "fraud_model_reloads_total",
            "champion reload attempts by outcome",
        ),
        &["outcome"],
    )?;
    let event_time = IntCounterVec::new(
        Opts::new(
            "fraud_event_time_total",
            "transactions by event-time outcome: refused_ahead, clamped, late; and watermark_jump",
        ),
        &["outcome"],
    )?;
    let watermark = Gauge::new(
        "fraud_event_watermark_seconds",
        "the online state's event-time watermark (unix seconds)",
    )?;
    let tx_id_reuse = IntCounterVec::new(
        Opts::new(
            "fraud_tx_id_reuse_total",
            "requests reusing a remembered tx_id: replayed (same body) or conflict (409)",
        ),
        &["outcome"],
    )?;
    let writer_duplicates = IntCounter::new(
        "fraud_lake_writer_duplicates_total",
        "scored transactions not written because `transactions` already holds their tx_id",
    )?;
    registry.register(Box::new(event_time.clone()))?;
    registry.register(Box::new(watermark.clone()))?;
    registry.register(Box::new(tx_id_reuse.clone()))?;
    registry.register(Box::new(writer_duplicates.clone()))?;
    registry.register(Box::new(requests.clone()))?;
    registry.register(Box::new(risk.clone()))?;
    registry.register(Box::new(latency.clone()))?;
    registry.register(Box::new(errors.clone()))?;
    registry.register(Box::new(decisions.clone()))?;
    registry.register(Box::new(model_info.clone()))?;
    registry.register(Box::new(entities.clone()))?;
    registry.register(Box::new(writer_pending.clone()))?;
    registry.register(Box::new(writer_commit.clone()))?;
    registry.register(Box::new(writer_failures.clone()))?;
    registry.register(Box::new(scoring_log_errors.clone()))?;
    registry.register(Box::new(feedback.clone()))?;
    registry.register(Box::new(label_flips.clone()))?;
    registry.register(Box::new(reloads.clone()))?;
    let drift = DriftGauges::new(&registry)?;
    let store = StoreMetrics::new(&registry)?;
    Ok(Metrics {
        registry,
        requests,
        risk,
        latency,
        errors,
        decisions,
        model_info,
        entities,
        writer_pending,
        writer_commit,
        writer_failures,
        scoring_log_errors,
        feedback,
        label_flips,
        reloads,
        event_time,
        watermark,
        tx_id_reuse,
        writer_duplicates,
        drift,
        store,
    })
}

impl Metrics {
    pub fn new() -> crate::Result<Metrics> {
        Ok(build()?)
    }

    /// The registry, for other parts of the process (the embedded DAG scheduler) to add to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
