//! Alias changes with a safety net. Promotion to champion passes a gate: the candidate and
//! the champion are both scored on the same test days (same rows, same protocol, the lake as
//! it is now) and the candidate may not be worse on the primary metric by more than a
//! tolerance. `--force` with a reason overrides; every outcome is an audit row.
//!
//! The gate cannot be fooled by leakage: the test days are the policy's window moved past the
//! training days *and* the label delay of both models ([`fair_window`]), so neither model is
//! judged on days it learnt from; when no such day is left the promotion is refused with the
//! overlap named. A score that cannot be computed (no fraud among the test rows, say) refuses
//! too: a missing yardstick never waves a candidate through.

use serde::Serialize;

use super::{actor, EventDraft, ModelVersion, Registry, CHAMPION};
use crate::error::{Error, Result};
use crate::protocol::{Metrics, Periods, METRIC_NAMES};
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
    // Either family: the version's artifact as a `LoadedModel`.
    let (_, model) = registry.load_artifact(&v.record).await?;
    let m: Metrics = evaluate_model(
        registry.lake(),
        &v.record.feature_spec(),
        &model,
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
        match fair_window(
            (version, &candidate.record.periods),
            (champ_version, &champion.record.periods),
            policy.window,
        ) {
            Err(overlap) => {
                report.passed = false;
                report.reason = overlap;
            }
            Ok((window, trimmed)) => {
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
                        let (passed, why) = verdict(c, h, policy.tolerance);
                        report.candidate_score = c;
                        report.champion_score = h;
                        report.passed = passed;
                        report.reason = format!(
                            "{} on {}..{}{}: candidate {} vs champion {} (tolerance {}){}",
                            policy.metric,
                            window.from,
                            window.to,
                            trimmed.map_or_else(String::new, |t| format!(" ({t})")),
                            fmt(c),
                            fmt(h),
                            policy.tolerance,
                            why.map_or_else(String::new, |w| format!(": {w}")),
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

/// The days both models may be scored on: `window`'s test period, starting no earlier than the
/// first day after each model's training days and label delay (its own test start). Returns
/// the window and, when days were removed, why; or, when no day is left, a refusal that names
/// the overlap. `candidate` and `champion` are (version, periods).
pub fn fair_window(
    candidate: (i64, &Periods),
    champion: (i64, &Periods),
    window: GateWindow,
) -> std::result::Result<(TestWindow, Option<String>), String> {
    let base = TestWindow::from(match window {
        GateWindow::ChampionTest => champion.1,
        GateWindow::CandidateTest => candidate.1,
    });
    let (later, (v, p)) = if candidate.1.test_start() >= champion.1.test_start() {
        (candidate.1.test_start(), candidate)
    } else {
        (champion.1.test_start(), champion)
    };
    let seen = format!(
        "version {v} trained on {}..{} with labels {} days late",
        p.train_start,
        p.train_end(),
        p.delay_days
    );
    if later > base.to {
        let name = match window {
            GateWindow::ChampionTest => "champion_test",
            GateWindow::CandidateTest => "candidate_test",
        };
        return Err(format!(
            "no fair gate days: the {name} window {}..{} overlaps what {seen} learnt from (its \
             first unseen day is {later}); score on later days (--window candidate_test) or \
             promote with --force --reason",
            base.from, base.to
        ));
    }
    if later > base.from {
        let trimmed = format!("from {later}: {seen}");
        return Ok((
            TestWindow {
                from: later,
                ..base
            },
            Some(trimmed),
        ));
    }
    Ok((base, None))
}

/// Whether the candidate passes on scores `c` (candidate) and `h` (champion), and why not
/// when a score is missing: without both numbers there is no comparison, so no pass.
pub fn verdict(c: Option<f64>, h: Option<f64>, tolerance: f64) -> (bool, Option<&'static str>) {
    match (c, h) {
        (Some(c), Some(h)) => (c >= h - tolerance, None),
        (Some(_), None) => (
            false,
            Some("the champion's score could not be computed on these days (e.g. no fraud among the test rows), so the gate cannot compare; promote with --force --reason"),
        ),
        _ => (
            false,
            Some("the candidate's score could not be computed on these days (e.g. no fraud among the test rows)"),
        ),
    }
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

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn periods(start: &str) -> Periods {
        Periods {
            train_start: NaiveDate::parse_from_str(start, "%Y-%m-%d").expect("date"),
            train_days: 7,
            delay_days: 7,
            test_days: 7,
        }
    }

    #[test]
    fn the_window_never_holds_a_day_either_model_learnt_from() {
        let champion = periods("2018-05-01"); // tests 05-15..05-21
                                              // Same periods: the champion's test week as it is.
        let (w, trimmed) =
            fair_window((2, &champion), (1, &champion), GateWindow::ChampionTest).expect("fair");
        assert_eq!(
            (w.from.to_string(), w.to.to_string()),
            ("2018-05-15".into(), "2018-05-21".into())
        );
        assert!(trimmed.is_none());
        // A candidate trained on the champion's test week cannot be judged on it.
        let late = periods("2018-05-12"); // trains 05-12..05-18, tests 05-26..06-01
        let refused =
            fair_window((2, &late), (1, &champion), GateWindow::ChampionTest).expect_err("overlap");
        assert!(refused.contains("2018-05-15..2018-05-21"), "{refused}");
        assert!(
            refused.contains("version 2 trained on 2018-05-12..2018-05-18"),
            "{refused}"
        );
        // Its own test week is fair to both.
        let (w, _) =
            fair_window((2, &late), (1, &champion), GateWindow::CandidateTest).expect("fair");
        assert_eq!(w.from.to_string(), "2018-05-26");
        // A champion trained after the candidate's test week: refused the other way round.
        let early = periods("2018-04-20"); // tests 05-04..05-10, inside the champion's training
        let refused = fair_window((3, &early), (1, &champion), GateWindow::CandidateTest)
            .expect_err("overlap");
        assert!(
            refused.contains("version 1 trained on 2018-05-01..2018-05-07"),
            "{refused}"
        );
        // Partly overlapping: the window starts after both delays.
        let shifted = periods("2018-05-04"); // tests 05-18..05-24
        let (w, trimmed) =
            fair_window((2, &shifted), (1, &champion), GateWindow::ChampionTest).expect("fair");
        assert_eq!(
            (w.from.to_string(), w.to.to_string()),
            ("2018-05-18".into(), "2018-05-21".into())
        );
        assert!(trimmed.is_some_and(|t| t.contains("from 2018-05-18")));
    }

    #[test]
    fn a_missing_score_never_passes() {
        assert!(verdict(Some(0.5), Some(0.4), 0.0).0);
        assert!(verdict(Some(0.39), Some(0.4), 0.02).0);
        assert!(!verdict(Some(0.3), Some(0.4), 0.02).0);
        let (passed, why) = verdict(Some(0.5), None, 0.0);
        assert!(!passed);
        assert!(why.is_some_and(|w| w.contains("champion's score could not be computed")));
        assert!(!verdict(None, Some(0.4), 0.0).0);
        assert!(!verdict(None, None, 0.0).0);
    }
}
