//! Alias changes with a safety net. Promotion to champion passes a gate: the candidate and
//! the champion are both scored on the champion's own test period (same rows, same protocol,
//! the lake as it is now) and the candidate may not be worse on the primary metric by more
//! than a tolerance. `--force` with a reason overrides; every outcome is an audit row.

use serde::Serialize;

use super::{actor, EventDraft, ModelVersion, Registry, CHAMPION};
use crate::error::{Error, Result};
use crate::protocol::{Metrics, METRIC_NAMES};
use crate::train::{evaluate_model, TestWindow};

/// Which days both models are scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateWindow {
    /// The champion's own test period: the yardstick it was accepted on (the default).
    #[default]
    ChampionTest,
    /// The candidate's test period, the most recent labeled days: what a retraining after
    /// drift should be judged on (the champion never saw those days either).
    CandidateTest,
}

impl std::str::FromStr for GateWindow {
    type Err = Error;
    fn from_str(s: &str) -> Result<GateWindow> {
        match s {
            "champion_test" => Ok(GateWindow::ChampionTest),
            "candidate_test" => Ok(GateWindow::CandidateTest),
            other => Err(Error::invalid(format!(
                "unknown gate window '{other}' (known: champion_test, candidate_test)"
            ))),
        }
    }
}

/// How promotion is judged.
#[derive(Debug, Clone)]
pub struct GatePolicy {
    /// A metric name of [`METRIC_NAMES`] (default average_precision).
    pub metric: String,
    /// The candidate may be this much worse than the champion (absolute).
    pub tolerance: f64,
    /// The days both are scored on.
    pub window: GateWindow,
}

impl Default for GatePolicy {
    fn default() -> Self {
        GatePolicy {
            metric: "average_precision".to_string(),
            tolerance: 0.0,
            window: GateWindow::ChampionTest,
        }
    }
}

/// The gate's verdict, stored with the audit row and printed.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub candidate: i64,
    pub champion: Option<i64>,
    pub metric: String,
    pub tolerance: f64,
    pub test_from: Option<String>,
    pub test_to: Option<String>,
    pub candidate_score: Option<f64>,
    pub champion_score: Option<f64>,
    pub passed: bool,
    pub forced: bool,
    pub promoted: bool,
    pub reason: String,
}

async fn score(
    registry: &Registry,
    v: &ModelVersion,
    window: &TestWindow,
    metric: &str,
) -> Result<Option<f64>> {
    let (_, forest) = registry.load_artifact(&v.record).await?;
    let m: Metrics = evaluate_model(
        registry.lake(),
        &v.record.feature_spec(),
        &forest,
        window,
        v.record.metrics.threshold,
    )
    .await?;
    m.score(metric)
}

/// Makes `which` the champion if the gate passes (or `force` with a reason).
pub async fn promote(
    registry: &Registry,
    which: &str,
    policy: &GatePolicy,
    force: bool,
    reason: Option<&str>,
) -> Result<GateReport> {
    if !METRIC_NAMES.contains(&policy.metric.as_str()) {
        return Err(Error::invalid(format!(
            "unknown gate metric '{}' (known: {})",
            policy.metric,
            METRIC_NAMES.join(", ")
        )));
    }
    if !(policy.tolerance >= 0.0 && policy.tolerance.is_finite()) {
        return Err(Error::invalid("the gate tolerance must be a number >= 0"));
    }
    if force && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(Error::invalid(
            "--force needs --reason \"...\" (it is recorded in the audit log)",
        ));
    }
    let candidate = registry.get(which).await?;
    let version = candidate.record.version;
    if candidate.archived {
        return Err(Error::invalid(format!(
            "model version {version} is archived"
        )));
    }
    let aliases = registry.aliases().await?;
    let mut report = GateReport {
        candidate: version,
        champion: aliases.champion,
        metric: policy.metric.clone(),
        tolerance: policy.tolerance,
        test_from: None,
        test_to: None,
        candidate_score: None,
        champion_score: None,
        passed: true,
        forced: false,
        promoted: false,
        reason: String::new(),
    };
    if aliases.champion == Some(version) {
        report.reason = format!("version {version} is already the champion");
        return Ok(report);
    }
    if let Some(champ_version) = aliases.champion {
        let champion = registry.get(&champ_version.to_string()).await?;
        let p = match policy.window {
            GateWindow::ChampionTest => champion.record.periods,
            GateWindow::CandidateTest => candidate.record.periods,
        };
        let window = TestWindow::from(&p);
        report.test_from = Some(window.from.to_string());
        report.test_to = Some(window.to.to_string());
        let scores = async {
            let c = score(registry, &candidate, &window, &policy.metric).await?;
            let h = score(registry, &champion, &window, &policy.metric).await?;
            Ok::<_, Error>((c, h))
        }
        .await;
        match scores {
            Ok((c, h)) => {
                report.candidate_score = c;
                report.champion_score = h;
                report.passed = match (c, h) {
                    (Some(c), Some(h)) => c >= h - policy.tolerance,
                    (Some(_), None) => true,
                    _ => false,
                };
                report.reason = format!(
                    "{} on {}..{}: candidate {} vs champion {} (tolerance {})",
                    policy.metric,
                    window.from,
                    window.to,
                    fmt(c),
                    fmt(h),
                    policy.tolerance
                );
            }
            Err(e) if force => {
                report.passed = false;
                report.reason = format!("the gate could not be evaluated: {e}");
            }
            Err(e) => {
                return Err(Error::invalid(format!(
                    "the promotion gate could not compare version {version} with champion {champ_version}: {e} \
                     (use --force --reason to promote anyway)"
                )))
            }
        }
    } else {
        report.reason = "no champion yet".to_string();
    }
    report.forced = force && !report.passed;
    let details = serde_json::to_string(&report).ok();
    if report.passed || force {
        let why = match reason {
            Some(r) if !r.trim().is_empty() => format!("{} — {}", r.trim(), report.reason),
            _ => report.reason.clone(),
        };
        registry
            .record_event(EventDraft {
                actor: actor(),
                action: "promote",
                alias: Some(CHAMPION),
                version: Some(version),
                previous_version: aliases.champion,
                forced: report.forced,
                reason: why,
                details,
            })
            .await?;
        report.promoted = true;
    } else {
        registry
            .record_event(EventDraft {
                actor: actor(),
                action: "promote_refused",
                alias: Some(CHAMPION),
                version: Some(version),
                previous_version: aliases.champion,
                forced: false,
                reason: report.reason.clone(),
                details,
            })
            .await?;
    }
    Ok(report)
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

/// Returns the champion alias to the previous champion.
pub async fn rollback(registry: &Registry, reason: Option<&str>) -> Result<(i64, i64)> {
    let aliases = registry.aliases().await?;
    let current = aliases
        .champion
        .ok_or_else(|| Error::invalid("there is no champion to roll back"))?;
    let previous = aliases
        .champion_history
        .iter()
        .rev()
        .find(|v| !aliases.archived.contains(v))
        .copied()
        .ok_or_else(|| {
            Error::invalid(format!(
                "champion {current} has no earlier champion to roll back to"
            ))
        })?;
    registry
        .record_event(EventDraft {
            actor: actor(),
            action: "rollback",
            alias: Some(CHAMPION),
            version: Some(previous),
            previous_version: Some(current),
            forced: false,
            reason: reason.unwrap_or("rollback").to_string(),
            details: None,
        })
        .await?;
    Ok((current, previous))
}

/// Archives a version (not the champion): it keeps its record but can no longer be promoted.
pub async fn archive(registry: &Registry, which: &str, reason: Option<&str>) -> Result<i64> {
    let v = registry.get(which).await?;
    let version = v.record.version;
    if v.aliases.iter().any(|a| a == CHAMPION) {
        return Err(Error::invalid(format!(
            "version {version} is the champion; promote or roll back to another version first"
        )));
    }
    if v.archived {
        return Err(Error::invalid(format!(
            "version {version} is already archived"
        )));
    }
    registry
        .record_event(EventDraft {
            actor: actor(),
            action: "archive",
            alias: None,
            version: Some(version),
            previous_version: None,
            forced: false,
            reason: reason.unwrap_or("archived").to_string(),
            details: None,
        })
        .await?;
    Ok(version)
}
