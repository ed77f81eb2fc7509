//! `canary_analysis`: judges the running canary (or shadow) against the champion on the
//! labeled live transactions it scored, as `fraudlake models canary analyze`, and with
//! `apply` acts on the verdict (promote, roll back, start a promoted shadow as canary), the
//! evidence in the audit row (docs/rollout.md sections 6 and 7). Its own module so its
//! arguments, their checks and the call stay together.
//!
//! Nothing running is not a failure: the task succeeds with `active = false`. The output is
//! the analysis (`verdict`, `reason`, `action`, `evidence`), for conditions
//! (`run_if = "canary.action == 'promoted'"`) and notify texts (`{{canary.verdict}}`).

use crate::error::{Error, Result};
use fraudlake_model::registry::rollout::{
    analyze_rollout, validate_percent, AnalysisOptions, DEFAULT_CANARY_PERCENT,
};
use fraudlake_model::registry::Registry;
use fraudlake_model::rollout::{CanaryPolicy, PrimaryMetric, Role};
use fraudlake_pipeline::labels::LabelPolicy;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{Op, OpCtx};
use crate::spec::SpecErrorKind;

/// `canary_analysis` args: the canary policy of docs/rollout.md section 6, each with its
/// default there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryAnalysisArgs {
    /// `"canary"` (default) or `"shadow"`.
    #[serde(default = "canary", deserialize_with = "role")]
    pub role: Role,
    /// Act on the verdict and record it (default false: judge and report only).
    #[serde(default)]
    pub apply: bool,
    /// The percent a promoted shadow starts its canary at (default 10).
    #[serde(default = "percent")]
    pub percent: f64,
    /// `"average_precision"` (default) or `"card_precision"`.
    #[serde(default, deserialize_with = "metric")]
    pub metric: PrimaryMetric,
    /// The k of card precision@k (default 100).
    #[serde(default = "k")]
    pub k: usize,
    /// How much worse on the metric the candidate may be (default 0.02).
    #[serde(default = "tolerance")]
    pub tolerance: f64,
    /// Labeled frauds needed before any verdict but wait (default 50).
    #[serde(default = "min_frauds")]
    pub min_frauds: usize,
    /// Two-sided level of the bootstrap intervals (default 0.9).
    #[serde(default = "confidence")]
    pub confidence: f64,
    /// Bootstrap resamples (default 500).
    #[serde(default = "resamples")]
    pub resamples: usize,
    /// The server's decline threshold (default 0.8).
    #[serde(default = "decline_threshold")]
    pub decline_threshold: f64,
    /// How much larger a share of legitimate transactions it may decline (default 0.005).
    #[serde(default = "max_false_decline_increase")]
    pub max_false_decline_increase: f64,
}

fn canary() -> Role {
    Role::Canary
}

fn percent() -> f64 {
    DEFAULT_CANARY_PERCENT
}

fn k() -> usize {
    CanaryPolicy::default().k
}

fn tolerance() -> f64 {
    CanaryPolicy::default().tolerance
}

fn min_frauds() -> usize {
    CanaryPolicy::default().min_frauds
}

fn confidence() -> f64 {
    CanaryPolicy::default().confidence
}

fn resamples() -> usize {
    CanaryPolicy::default().resamples
}

fn decline_threshold() -> f64 {
    CanaryPolicy::default().decline_threshold
}

fn max_false_decline_increase() -> f64 {
    CanaryPolicy::default().max_false_decline_increase
}

fn role<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Role, D::Error> {
    match String::deserialize(d)?.trim() {
        "canary" => Ok(Role::Canary),
        "shadow" => Ok(Role::Shadow),
        other => Err(serde::de::Error::custom(format!(
            "{other:?} is not one of \"canary\", \"shadow\""
        ))),
    }
}

fn metric<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<PrimaryMetric, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(|e: fraudlake_model::Error| serde::de::Error::custom(format!("{e}")))
}

impl CanaryAnalysisArgs {
    fn policy(&self) -> CanaryPolicy {
        CanaryPolicy {
            metric: self.metric,
            k: self.k,
            tolerance: self.tolerance,
            min_frauds: self.min_frauds,
            confidence: self.confidence,
            resamples: self.resamples,
            decline_threshold: self.decline_threshold,
            max_false_decline_increase: self.max_false_decline_increase,
            ..CanaryPolicy::default()
        }
    }
}

impl Op for CanaryAnalysisArgs {
    fn validate(&self) -> Vec<SpecErrorKind> {
        let share = |x: f64| (0.0..=1.0).contains(&x);
        let checks = [
            (
                "percent",
                validate_percent(self.percent).is_ok(),
                "must lie in [0, 100] with at most two decimals",
            ),
            ("k", self.k >= 1, "must be at least 1"),
            (
                "tolerance",
                self.tolerance.is_finite() && self.tolerance >= 0.0,
                "must be a number >= 0",
            ),
            ("min_frauds", self.min_frauds >= 1, "must be at least 1"),
            (
                "confidence",
                self.confidence > 0.0 && self.confidence < 1.0,
                "must lie strictly between 0 and 1",
            ),
            ("resamples", self.resamples >= 1, "must be at least 1"),
            (
                "decline_threshold",
                share(self.decline_threshold),
                "must lie in [0, 1]",
            ),
            (
                "max_false_decline_increase",
                share(self.max_false_decline_increase),
                "must lie in [0, 1]",
            ),
        ];
        checks
            .into_iter()
            .filter(|(_, ok, _)| !ok)
            .map(|(key, _, message)| SpecErrorKind::InvalidArg {
                key: key.to_string(),
                message: message.to_string(),
            })
            .collect()
    }

    fn summary(&self) -> Vec<String> {
        vec![
            format!("role={}", self.role),
            format!("apply={}", self.apply),
            format!("percent={}", self.percent),
            format!("metric={:?}", self.metric),
            format!("k={}", self.k),
            format!("tolerance={}", self.tolerance),
            format!("min_frauds={}", self.min_frauds),
            format!("confidence={}", self.confidence),
            format!("resamples={}", self.resamples),
            format!("decline_threshold={}", self.decline_threshold),
            format!(
                "max_false_decline_increase={}",
                self.max_false_decline_increase
            ),
        ]
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let registry = Registry::new(ctx.env.lake.clone());
        let options = AnalysisOptions {
            role: self.role,
            policy: self.policy(),
            // As the DAG's train op reads labels: the default precedence.
            labels: LabelPolicy::default(),
            apply: self.apply,
            canary_percent: self.percent,
        };
        let out = analyze_rollout(&registry, &options).await?;
        ctx.note(match out.version {
            Some(v) => format!(
                "{} version {v}: {} scored, {} labeled; verdict {:?}, action {:?}: {}",
                self.role,
                out.scored_rows,
                out.evidence.as_ref().map_or(0, |e| e.rows),
                out.verdict,
                out.action,
                out.reason
            ),
            None => out.reason.clone(),
        });
        serde_json::to_value(&out).map_err(|e| Error::invalid(e.to_string()))
    }
}
