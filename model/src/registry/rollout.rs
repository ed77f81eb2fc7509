//! The rollout commands on the registry (docs/rollout.md sections 1 and 7): `models shadow V`,
//! `models canary V --percent P`, their `stop`, and the canary (or shadow) analysis run on the
//! lake and, when asked, applied with its evidence in the audit row.
//!
//! Why the rules live here and not in the replay ([`super::Aliases`]): the replay must accept
//! any history (old rows, rows a newer release wrote), while a command must refuse what makes
//! no sense now: the champion as its own canary, an archived version, a percent the router
//! cannot honour. The CLI and the DAG ops call these functions, so both follow the same rules.

use chrono::{DateTime, Utc};
use fraudlake_pipeline::labels::LabelPolicy;
use serde::Serialize;

use super::{
    actor, canary_details, Aliases, Event, EventDraft, Registry, ACTION_ANALYSIS, ACTION_START,
    ACTION_STOP, CANARY, CHAMPION, SHADOW,
};
use crate::error::{Error, Result};
use crate::rollout::{analyze, CanaryEvidence, CanaryPolicy, Role, Verdict};

/// The canary percent a promoted shadow starts at unless told otherwise.
pub const DEFAULT_CANARY_PERCENT: f64 = 10.0;

/// A canary's percent as the router takes it: a number in [0, 100] with at most two decimals
/// (the split's resolution is 0.01 %). Returns it rounded to those two decimals, so that
/// `0.1 * 3` and `0.3` are the same percent.
pub fn validate_percent(percent: f64) -> Result<f64> {
    if !(percent.is_finite() && (0.0..=100.0).contains(&percent)) {
        return Err(Error::invalid(format!(
            "the canary percent must be a number in [0, 100], got {percent}"
        )));
    }
    let hundredths = percent * 100.0;
    if (hundredths - hundredths.round()).abs() > 1e-6 {
        return Err(Error::invalid(format!(
            "the canary percent takes at most two decimals (the split's resolution is 0.01 %), \
             got {percent}"
        )));
    }
    Ok(hundredths.round() / 100.0)
}

/// The registry alias of a rollout role; the champion is not one (`models promote` is).
fn alias_of(role: Role) -> Result<&'static str> {
    match role {
        Role::Shadow => Ok(SHADOW),
        Role::Canary => Ok(CANARY),
        Role::Champion => Err(Error::invalid(
            "the champion is not a rollout step: use `models promote`",
        )),
    }
}

/// The version holding `role` now and, for a canary, its percent.
pub fn current_rollout(aliases: &Aliases, role: Role) -> Option<(i64, Option<f64>)> {
    match role {
        Role::Shadow => aliases.shadow.map(|v| (v, None)),
        Role::Canary => aliases.canary.map(|c| (c.version, Some(c.percent))),
        Role::Champion => aliases.champion.map(|v| (v, None)),
    }
}

/// Why `version` may not start as `role`, if it may not (docs/rollout.md section 1): it must
/// not be archived nor the champion, and a shadow of the running canary would only repeat the
/// canary's scores.
pub fn refusal(version: i64, archived: bool, aliases: &Aliases, role: Role) -> Option<String> {
    if archived {
        return Some(format!(
            "model version {version} is archived: only an active version can be rolled out"
        ));
    }
    if aliases.champion == Some(version) {
        return Some(format!(
            "model version {version} is the champion: it already decides for every customer"
        ));
    }
    if role == Role::Shadow && aliases.canary.is_some_and(|c| c.version == version) {
        return Some(format!(
            "model version {version} is the canary, which already scores every transaction: \
             stop the canary first (`models canary stop`) to shadow it"
        ));
    }
    None
}

/// A shadow or canary started or stopped: what `models shadow|canary` print and the `shadow`
/// op outputs.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutChange {
    pub role: Role,
    pub version: i64,
    /// The canary's share of customers (none for a shadow, or for a stop).
    pub percent: Option<f64>,
    /// The version that held the role before (a start replaces it).
    pub previous_version: Option<i64>,
    /// `start` or `stop`.
    pub action: &'static str,
    /// Whether an audit row was written (false: the role already stood exactly so).
    pub changed: bool,
    /// What does not stop the change but should be known (another feature set than the
    /// champion's: the server will not serve it, docs/rollout.md section 2).
    pub warnings: Vec<String>,
}

/// Starts `which` (a version number, `vN` or an alias) as the shadow, or as the canary at
/// `percent` of customers. A running shadow or canary of another version is replaced; the
/// same canary at a new percent is a new `start` row (a ramp); the same shadow again, or the
/// same canary at the same percent, writes nothing (`changed` false).
pub async fn start_rollout(
    registry: &Registry,
    role: Role,
    which: &str,
    percent: Option<f64>,
    reason: Option<&str>,
) -> Result<RolloutChange> {
    let alias = alias_of(role)?;
    let percent = match (role, percent) {
        (Role::Canary, Some(p)) => Some(validate_percent(p)?),
        (Role::Canary, None) => {
            return Err(Error::invalid(
                "a canary needs its share of customers: `models canary V --percent P`",
            ))
        }
        (_, Some(_)) => {
            return Err(Error::invalid(
                "a shadow decides for nobody: --percent is for a canary",
            ))
        }
        (_, None) => None,
    };
    let candidate = registry.get(which).await?;
    let version = candidate.record.version;
    let aliases = registry.aliases().await?;
    if let Some(why) = refusal(version, candidate.archived, &aliases, role) {
        return Err(Error::invalid(why));
    }
    let previous = current_rollout(&aliases, role);
    let mut change = RolloutChange {
        role,
        version,
        percent,
        previous_version: previous.map(|(v, _)| v),
        action: ACTION_START,
        changed: false,
        warnings: feature_set_warning(registry, &candidate.record, &aliases)
            .await?
            .into_iter()
            .collect(),
    };
    if previous == Some((version, percent)) {
        return Ok(change);
    }
    let default_reason = match percent {
        Some(p) => format!("canary at {p} % of customers"),
        None => "shadow started".to_string(),
    };
    registry
        .record_event(EventDraft {
            actor: actor(),
            action: ACTION_START,
            alias: Some(alias),
            version: Some(version),
            previous_version: change.previous_version,
            forced: false,
            reason: reason_or(reason, default_reason),
            details: percent.map(canary_details),
        })
        .await?;
    change.changed = true;
    Ok(change)
}

/// Stops the running shadow or canary by hand (the analysis's rollback is another row).
pub async fn stop_rollout(
    registry: &Registry,
    role: Role,
    reason: Option<&str>,
) -> Result<RolloutChange> {
    let alias = alias_of(role)?;
    let aliases = registry.aliases().await?;
    let Some((version, percent)) = current_rollout(&aliases, role) else {
        return Err(Error::invalid(format!("there is no {alias} to stop")));
    };
    registry
        .record_event(EventDraft {
            actor: actor(),
            action: ACTION_STOP,
            alias: Some(alias),
            version: Some(version),
            previous_version: None,
            forced: false,
            reason: reason_or(reason, format!("{alias} stopped")),
            details: None,
        })
        .await?;
    Ok(RolloutChange {
        role,
        version,
        percent,
        previous_version: Some(version),
        action: ACTION_STOP,
        changed: true,
        warnings: Vec::new(),
    })
}

fn reason_or(reason: Option<&str>, default: String) -> String {
    match reason.map(str::trim) {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => default,
    }
}

/// A warning when `record`'s feature set is not the champion's: the server builds a second
/// online engine for it before serving it, and refuses it with a shared online store or a
/// scoring log (docs/rollout.md section 2).
async fn feature_set_warning(
    registry: &Registry,
    record: &super::VersionRecord,
    aliases: &Aliases,
) -> Result<Option<String>> {
    let Some(champion) = aliases.champion else {
        return Ok(None);
    };
    let versions = registry.versions().await?;
    let Some(theirs) = versions.iter().find(|r| r.version == champion) else {
        return Ok(None);
    };
    if theirs.feature_set == record.feature_set {
        return Ok(None);
    }
    let short = |s: &str| s.chars().take(12).collect::<String>();
    Ok(Some(format!(
        "version {} was trained on feature set {}, the champion (version {champion}) on {}: \
         the server serves it once a second online engine is built from the lake (refused with \
         a shared online store or a scoring log)",
        record.version,
        short(&record.feature_set),
        short(&theirs.feature_set)
    )))
}

/// When the running rollout of `version` as `alias` began: the first `start` row of its
/// current uninterrupted run. A new percent is a new `start` row but not a new rollout: a
/// canary scores every transaction at any percent, so its paired evidence carries over a ramp.
/// Ends as the replay does: a stop or rollback naming it (or no version), another version
/// starting in its place, its promotion to champion, its archiving, a shadow becoming canary.
pub fn rollout_since(events: &[Event], alias: &str, version: i64) -> Option<DateTime<Utc>> {
    let mut since = None;
    for e in events {
        let names_it = e.version == Some(version);
        let ends = match (e.action.as_str(), e.alias.as_deref()) {
            (ACTION_START, Some(a)) if a == alias => {
                if names_it {
                    since = since.or(Some(e.at));
                }
                !names_it
            }
            (ACTION_STOP | "rollback", Some(a)) if a == alias => names_it || e.version.is_none(),
            ("promote", Some(CHAMPION)) | ("archive", _) => names_it,
            (ACTION_START, Some(CANARY)) => alias == SHADOW && names_it,
            _ => false,
        };
        if ends {
            since = None;
        }
    }
    since
}

/// What an applied analysis did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutAction {
    /// Nothing changed (wait, not applied, nothing running, or no rollout data).
    None,
    /// The canary became the champion.
    Promoted,
    /// The shadow or canary was rolled back.
    RolledBack,
    /// The shadow became the canary.
    CanaryStarted,
}

/// How to judge, and whether to act.
#[derive(Debug, Clone)]
pub struct AnalysisOptions {
    /// `Canary` or `Shadow`.
    pub role: Role,
    pub policy: CanaryPolicy,
    /// Which label counts per transaction (as training reads them).
    pub labels: LabelPolicy,
    /// Act on the verdict and write its audit row.
    pub apply: bool,
    /// The percent a promoted shadow starts its canary at.
    pub canary_percent: f64,
}

impl AnalysisOptions {
    /// Default policy and labels for `role`, not applied.
    pub fn new(role: Role) -> AnalysisOptions {
        AnalysisOptions {
            role,
            policy: CanaryPolicy::default(),
            labels: LabelPolicy::default(),
            apply: false,
            canary_percent: DEFAULT_CANARY_PERCENT,
        }
    }
}

/// The outcome of one analysis: what `models canary analyze` prints, the `canary_analysis`
/// task's output (`{{canary.verdict}}`, `{{canary.action}}` in notify texts) and, through
/// `evidence`, the `details` of the audit row.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutAnalysis {
    /// Whether a shadow (canary) was running; false: nothing to judge, not a failure.
    pub active: bool,
    pub role: Role,
    pub version: Option<i64>,
    /// The running canary's percent.
    pub percent: Option<f64>,
    /// When this rollout began (its rows are those scored since).
    pub since: Option<DateTime<Utc>>,
    /// Transactions the candidate scored since then, labeled or not.
    pub scored_rows: usize,
    /// False when the lake cannot say (no `predictions`, or one without the rollout columns).
    pub rollout_data: bool,
    pub verdict: Option<Verdict>,
    /// The verdict in words, or why there is none.
    pub reason: String,
    pub applied: bool,
    pub action: RolloutAction,
    pub evidence: Option<CanaryEvidence>,
}

impl RolloutAnalysis {
    fn idle(role: Role, reason: String) -> RolloutAnalysis {
        RolloutAnalysis {
            active: false,
            role,
            version: None,
            percent: None,
            since: None,
            scored_rows: 0,
            rollout_data: false,
            verdict: None,
            reason,
            applied: false,
            action: RolloutAction::None,
            evidence: None,
        }
    }
}

/// Judges the running shadow or canary on the labeled transactions it scored since its
/// rollout began (docs/rollout.md section 6) and, with `options.apply`, acts on the verdict
/// (section 1's table): a canary is promoted to champion or rolled back, a shadow starts as
/// the canary at `options.canary_percent` or is rolled back, a wait is an `analysis` row; each
/// row carries the evidence. Without a running shadow (canary) the result is inactive; on a
/// lake whose `predictions` predates rollouts it is "no rollout data" and nothing is written.
pub async fn analyze_rollout(
    registry: &Registry,
    options: &AnalysisOptions,
) -> Result<RolloutAnalysis> {
    let alias = alias_of(options.role)?;
    options.policy.validate()?;
    let start_percent = validate_percent(options.canary_percent)?;
    let events = registry.events().await?;
    let aliases = Aliases::replay(&events);
    let Some((version, percent)) = current_rollout(&aliases, options.role) else {
        return Ok(RolloutAnalysis::idle(
            options.role,
            format!("no {alias} is running"),
        ));
    };
    let since = rollout_since(&events, alias, version).unwrap_or(DateTime::UNIX_EPOCH);
    let input = crate::canary::paired_rows(
        registry.lake(),
        options.role,
        version,
        since,
        &options.labels,
    )
    .await?;
    let mut out = RolloutAnalysis {
        active: true,
        version: Some(version),
        percent,
        since: Some(since),
        scored_rows: input.scored,
        ..RolloutAnalysis::idle(options.role, String::new())
    };
    if let Some(missing) = input.missing {
        out.verdict = Some(Verdict::Wait);
        out.reason = missing;
        return Ok(out);
    }
    out.rollout_data = true;
    let evidence = analyze(&input.rows, &options.policy)?;
    out.verdict = Some(evidence.verdict);
    out.reason = evidence.reason.clone();
    if options.apply {
        let (action, reason) = apply_verdict(
            registry,
            options.role,
            version,
            &aliases,
            &evidence,
            start_percent,
        )
        .await?;
        out.action = action;
        out.reason = reason;
        out.applied = true;
    }
    out.evidence = Some(evidence);
    Ok(out)
}

/// Writes the audit row of a verdict and returns what it did and the reason recorded.
async fn apply_verdict(
    registry: &Registry,
    role: Role,
    version: i64,
    aliases: &Aliases,
    evidence: &CanaryEvidence,
    start_percent: f64,
) -> Result<(RolloutAction, String)> {
    let alias = alias_of(role)?;
    let evidence_json = serde_json::to_value(evidence)
        .map_err(|e| Error::Model(format!("cannot encode the canary evidence: {e}")))?;
    let busy_canary = aliases.canary.filter(|c| c.version != version);
    let mut draft = EventDraft {
        actor: actor(),
        action: ACTION_ANALYSIS,
        alias: Some(alias),
        version: Some(version),
        previous_version: None,
        forced: false,
        reason: format!("{alias} analysis: {}", evidence.reason),
        details: Some(evidence_json.to_string()),
    };
    let action = match (evidence.verdict, role) {
        (Verdict::Rollback, _) => {
            draft.action = "rollback";
            RolloutAction::RolledBack
        }
        (Verdict::Promote, Role::Shadow) => match busy_canary {
            // The canary slot is taken: replacing a canary still being judged would throw
            // its evidence away, so the shadow waits for the slot.
            Some(c) => {
                draft.reason = format!(
                    "{}; the shadow waits: version {} is the canary until it is promoted, \
                     rolled back or stopped",
                    draft.reason, c.version
                );
                RolloutAction::None
            }
            None => {
                draft.action = ACTION_START;
                draft.alias = Some(CANARY);
                draft.details = Some(
                    serde_json::json!({ "percent": start_percent, "evidence": evidence_json })
                        .to_string(),
                );
                RolloutAction::CanaryStarted
            }
        },
        (Verdict::Promote, _) => {
            draft.action = "promote";
            draft.alias = Some(CHAMPION);
            draft.previous_version = aliases.champion;
            RolloutAction::Promoted
        }
        (Verdict::Wait, _) => RolloutAction::None,
    };
    let reason = draft.reason.clone();
    registry.record_event(draft).await?;
    Ok((action, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Canary;

    fn event(action: &str, alias: Option<&str>, version: Option<i64>, second: i64) -> Event {
        Event {
            seq: second,
            at: DateTime::from_timestamp(second, 0).unwrap_or_default(),
            actor: "test".into(),
            action: action.into(),
            alias: alias.map(str::to_string),
            version,
            previous_version: None,
            forced: false,
            reason: String::new(),
            details: None,
        }
    }

    fn at(second: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(second, 0)
    }

    #[test]
    fn percents_are_in_range_with_two_decimals() {
        for (given, kept) in [
            (0.0, 0.0),
            (10.0, 10.0),
            (0.01, 0.01),
            (12.5, 12.5),
            (100.0, 100.0),
        ] {
            assert_eq!(validate_percent(given).ok(), Some(kept), "{given}");
        }
        // 0.1 * 3 is 0.30000000000000004: still two decimals.
        assert_eq!(validate_percent(0.1 * 3.0).ok(), Some(0.3));
        for bad in [-0.01, 100.01, f64::NAN, f64::INFINITY, 12.345, 0.001] {
            let e = validate_percent(bad).expect_err("refused");
            assert!(e.is_bad_input(), "{bad}: {e}");
        }
        let e = validate_percent(12.345).expect_err("refused").to_string();
        assert!(e.contains("two decimals"), "{e}");
        let e = validate_percent(150.0).expect_err("refused").to_string();
        assert!(e.contains("[0, 100]"), "{e}");
    }

    #[test]
    fn the_champion_and_archived_versions_are_refused() {
        let aliases = Aliases {
            champion: Some(1),
            canary: Some(Canary {
                version: 3,
                percent: 10.0,
            }),
            ..Aliases::default()
        };
        for role in [Role::Shadow, Role::Canary] {
            let why = refusal(1, false, &aliases, role).expect("champion refused");
            assert!(why.contains("is the champion"), "{why}");
            let why = refusal(2, true, &aliases, role).expect("archived refused");
            assert!(why.contains("archived"), "{why}");
            assert_eq!(refusal(2, false, &aliases, role), None);
        }
        // The canary as its own shadow: refused; the canary again (a ramp): accepted.
        let why = refusal(3, false, &aliases, Role::Shadow).expect("refused");
        assert!(why.contains("canary stop"), "{why}");
        assert_eq!(refusal(3, false, &aliases, Role::Canary), None);
        assert!(alias_of(Role::Champion).is_err());
    }

    #[test]
    fn archive_and_promotion_clear_both_rollout_aliases() {
        let ten = canary_details(10.0);
        let mut start_canary = event(ACTION_START, Some(CANARY), Some(2), 2);
        start_canary.details = Some(ten);
        let log = vec![
            event("promote", Some(CHAMPION), Some(1), 1),
            start_canary,
            event(ACTION_START, Some(SHADOW), Some(3), 3),
        ];
        let a = Aliases::replay(&log);
        assert_eq!((a.canary.map(|c| c.version), a.shadow), (Some(2), Some(3)));
        let mut promoted = log.clone();
        promoted.push(event("promote", Some(CHAMPION), Some(2), 4));
        promoted.push(event("archive", None, Some(3), 5));
        let a = Aliases::replay(&promoted);
        assert_eq!((a.champion, a.canary, a.shadow), (Some(2), None, None));
    }

    #[test]
    fn a_rollout_begins_at_its_first_start_and_a_ramp_keeps_it() {
        let log = vec![
            event(ACTION_START, Some(CANARY), Some(2), 10),
            // A ramp 10 -> 25 %: the same rollout.
            event(ACTION_START, Some(CANARY), Some(2), 20),
            event(ACTION_START, Some(SHADOW), Some(3), 30),
            // A stale stop naming another version ends nothing.
            event(ACTION_STOP, Some(CANARY), Some(9), 40),
        ];
        assert_eq!(rollout_since(&log, CANARY, 2), at(10));
        assert_eq!(rollout_since(&log, SHADOW, 3), at(30));
        assert_eq!(rollout_since(&log, SHADOW, 2), None);

        // Stopped, then started again: the evidence starts over.
        let mut again = log.clone();
        again.push(event(ACTION_STOP, Some(CANARY), Some(2), 50));
        again.push(event(ACTION_START, Some(CANARY), Some(2), 60));
        assert_eq!(rollout_since(&again, CANARY, 2), at(60));

        // Another version in its place, then back: from the return.
        let mut replaced = log.clone();
        replaced.push(event(ACTION_START, Some(CANARY), Some(4), 50));
        assert_eq!(rollout_since(&replaced, CANARY, 2), None);
        replaced.push(event(ACTION_START, Some(CANARY), Some(2), 70));
        assert_eq!(rollout_since(&replaced, CANARY, 2), at(70));

        // A shadow that becomes the canary: its shadow rollout ends, its canary one begins.
        let mut promoted = log;
        promoted.push(event(ACTION_START, Some(CANARY), Some(3), 80));
        assert_eq!(rollout_since(&promoted, SHADOW, 3), None);
        assert_eq!(rollout_since(&promoted, CANARY, 3), at(80));
        assert_eq!(rollout_since(&promoted, CANARY, 2), None);
    }
}
