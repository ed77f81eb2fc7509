//! The server's Prometheus metrics (the `prometheus` crate), named as the seed named them
//! (`fraud_requests_total`, `fraud_risk_score`, `model_inference_latency_seconds`,
//! `api_errors_total`) plus decisions, model info, online state, event time, retries, lake
//! writer and feedback. Scores, decisions and model time are labeled by `role` (champion,
//! canary, shadow: docs/rollout.md section 5), never by version: every rollout would leave
//! dead series behind; `fraud_model_info{version,feature_set,role}` maps roles to versions.

use std::sync::OnceLock;

use fraudlake_model::rollout::Role;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::api::Decision;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    /// `fraud_risk_score{role}`: read through [`Metrics::role`].
    pub risk: HistogramVec,
    pub latency: Histogram,
    pub errors: IntCounterVec,
    /// `fraud_decisions_total{role,decision}`: read through [`Metrics::role`].
    pub decisions: IntCounterVec,
    /// `fraud_model_predict_seconds{role}`: read through [`Metrics::role`].
    pub predict: HistogramVec,
    /// `fraud_model_info{version,feature_set,role}`.
    pub model_info: IntGaugeVec,
    /// Each role's series, resolved on first use (champion: at start, so that they exist from
    /// the first scrape; canary and shadow: once one is served, so that a server without a
    /// rollout exposes none).
    roles: [OnceLock<RoleSeries>; 3],
    pub entities: IntGauge,
    /// `fraud_online_engines`: online engines, one per feature set served (docs/rollout.md
    /// section 2).
    pub engines: IntGauge,
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

/// One role's series, resolved once: looking them up by label values per transaction would
/// hash the labels and take the vector's lock on the scoring path.
pub struct RoleSeries {
    /// `fraud_risk_score{role}`: every score the role's model gave.
    pub risk: Histogram,
    /// `fraud_model_predict_seconds{role}`: the model's forest evaluation alone.
    pub predict: Histogram,
    approve: IntCounter,
    review: IntCounter,
    decline: IntCounter,
}

impl RoleSeries {
    fn new(m: &Metrics, role: Role) -> RoleSeries {
        let r = role.as_str();
        RoleSeries {
            risk: m.risk.with_label_values(&[r]),
            predict: m.predict.with_label_values(&[r]),
            approve: m
                .decisions
                .with_label_values(&[r, Decision::Approve.as_str()]),
            review: m
                .decisions
                .with_label_values(&[r, Decision::Review.as_str()]),
            decline: m
                .decisions
                .with_label_values(&[r, Decision::Decline.as_str()]),
        }
    }

    /// Counts a decision: acted on (champion, canary) or what a shadow would have decided.
    pub fn decided(&self, decision: Decision) {
        match decision {
            Decision::Approve => &self.approve,
            Decision::Review => &self.review,
            Decision::Decline => &self.decline,
        }
        .inc();
    }
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
    let risk = HistogramVec::new(
        HistogramOpts::new(
            "fraud_risk_score",
            "fraud probability of scored transactions, by the role of the model that scored",
        )
        .buckets((0..=20).map(|i| f64::from(i) / 20.0).collect()),
        &["role"],
    )?;
    let predict = HistogramVec::new(
        HistogramOpts::new(
            "fraud_model_predict_seconds",
            "one model's forest evaluation of one transaction, by role",
        )
        .buckets(vec![
            1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
        ]),
        &["role"],
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
        Opts::new(
            "fraud_decisions_total",
            "decisions by kind and role: acted on (champion, canary), or what the shadow would have decided",
        ),
        &["role", "decision"],
    )?;
    let model_info = IntGaugeVec::new(
        Opts::new(
            "fraud_model_info",
            "1 for each model version being served, by role",
        ),
        &["version", "feature_set", "role"],
    )?;
    let entities = IntGauge::new("fraud_online_entities", "entities with online state")?;
    let engines = IntGauge::new(
        "fraud_online_engines",
        "online feature engines, one per feature set the served models use",
    )?;
    engines.set(1);
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
            "reloads of the served models by outcome (refused: a champion, canary or shadow that could not be loaded)",
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
    registry.register(Box::new(predict.clone()))?;
    registry.register(Box::new(model_info.clone()))?;
    registry.register(Box::new(entities.clone()))?;
    registry.register(Box::new(engines.clone()))?;
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
        predict,
        model_info,
        roles: Default::default(),
        entities,
        engines,
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
        let metrics = build()?;
        metrics.role(Role::Champion);
        Ok(metrics)
    }

    /// The series of `role`, created on first use.
    pub fn role(&self, role: Role) -> &RoleSeries {
        let slot = match role {
            Role::Champion => &self.roles[0],
            Role::Canary => &self.roles[1],
            Role::Shadow => &self.roles[2],
        };
        slot.get_or_init(|| RoleSeries::new(self, role))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_series_appear_once_used_and_count_by_role() {
        let m = Metrics::new().expect("metrics");
        let text = m.render();
        // The champion's from the first scrape, decisions at 0 included.
        for series in [
            r#"fraud_decisions_total{decision="decline",role="champion"} 0"#,
            r#"fraud_risk_score_count{role="champion"} 0"#,
            r#"fraud_model_predict_seconds_count{role="champion"} 0"#,
        ] {
            assert!(text.contains(series), "{series} in:\n{text}");
        }
        assert!(
            !text.contains(r#"role="canary""#) && !text.contains(r#"role="shadow""#),
            "{text}"
        );
        m.role(Role::Canary).decided(Decision::Decline);
        m.role(Role::Shadow).risk.observe(0.9);
        let text = m.render();
        for series in [
            r#"fraud_decisions_total{decision="decline",role="canary"} 1"#,
            r#"fraud_decisions_total{decision="approve",role="shadow"} 0"#,
            r#"fraud_risk_score_count{role="shadow"} 1"#,
        ] {
            assert!(text.contains(series), "{series} in:\n{text}");
        }
    }
}
