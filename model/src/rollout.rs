//! Safe model rollout (issue #19; design in docs/rollout.md): the pure pieces the server, the
//! CLI and the DAG share, so that all of them compute the same thing.
//!
//! * [`Role`]: the part a served model plays (champion, canary, shadow).
//! * [`mix64`], [`stable_hash`], [`SplitMix64`]: one portable hash and generator. Canary routing
//!   must send a customer to the same model on every replica and after every restart, and a
//!   stored analysis must be reproducible from its seed; `std`'s `RandomState` is random per
//!   process, and the model crate has no `rand` (adding it would change `Cargo.lock`; a fixed
//!   algorithm also cannot change under us with a `rand` upgrade).
//! * [`analyze`]: the canary (or shadow) analysis. Both models' metrics on the same labeled
//!   transactions, a paired bootstrap interval of each difference, and the verdict promote /
//!   rollback / wait with its evidence, which the audit log stores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::{average_precision, card_precision_at_k};

/// The part a served model plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Decides for every customer not routed to the canary.
    Champion,
    /// Decides for its share of customers; scores everyone (the paired analysis needs it).
    Canary,
    /// Scores every transaction, decides nothing.
    Shadow,
}

impl Role {
    /// The registry alias of the role, also its label in metrics and `predictions.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Champion => crate::registry::CHAMPION,
            Role::Canary => crate::registry::CANARY,
            Role::Shadow => crate::registry::SHADOW,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SplitMix64's increment: 2^64 divided by the golden ratio.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function (Steele, Lea and Flood, 2014): a bijection of `u64` in which
/// every output bit depends on every input bit. Fixed forever: routing and stored evidence
/// depend on its exact values.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable hash of `key` under `salt`: output number `key` of the SplitMix64 stream seeded by
/// the mixed salt. Consecutive keys (customer ids) are exactly what SplitMix64 is built to
/// spread, and a different salt gives an unrelated stream.
pub const fn stable_hash(key: i64, salt: i64) -> u64 {
    mix64(mix64(salt as u64).wrapping_add((key as u64).wrapping_mul(GAMMA)))
}

/// The SplitMix64 generator: small, fast, and the same numbers on every platform and version.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// A uniform index below `n` (for `n` > 0): the high half of a 128-bit product (Lemire's
    /// method without rejection; its bias, at most n / 2^64, is nothing at these sizes).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// One labeled transaction served while the candidate (canary or shadow) scored beside the
/// champion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedRow {
    pub customer_id: i64,
    /// The transaction's day (days since 1970-01-01): card precision is per day.
    pub day: i32,
    pub is_fraud: bool,
    pub champion_score: f64,
    pub candidate_score: f64,
    /// Whether the candidate's decision was the one acted on (a canary's customers; never for
    /// a shadow).
    pub candidate_decided: bool,
    /// Whether the decision acted on was a decline.
    pub declined: bool,
}

/// The metric the verdict is taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryMetric {
    #[default]
    AveragePrecision,
    /// The handbook's card precision@k (mean over days).
    CardPrecision,
}

impl std::str::FromStr for PrimaryMetric {
    type Err = Error;
    fn from_str(s: &str) -> Result<PrimaryMetric> {
        match s.trim() {
            "average_precision" => Ok(PrimaryMetric::AveragePrecision),
            "card_precision" => Ok(PrimaryMetric::CardPrecision),
            other => Err(Error::invalid(format!(
                "unknown canary metric '{other}' (known: average_precision, card_precision)"
            ))),
        }
    }
}

/// How a canary (or shadow) is judged. Stored with every verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CanaryPolicy {
    pub metric: PrimaryMetric,
    /// The k of card precision@k.
    pub k: usize,
    /// The candidate may be this much worse on the metric (absolute). Positive by default: at 0
    /// an equally good candidate, whose interval straddles 0, would wait forever.
    pub tolerance: f64,
    /// Fewer labeled fraudulent transactions than this: wait.
    pub min_frauds: usize,
    /// Two-sided level of the bootstrap intervals, in (0, 1).
    pub confidence: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    pub seed: u64,
    /// The server's decline threshold (`fraudlake serve --decline-threshold`).
    pub decline_threshold: f64,
    /// The candidate may decline this much larger a share of legitimate transactions
    /// (absolute). Declines of frauds are not held against it: catching them is the point.
    pub max_false_decline_increase: f64,
}

impl Default for CanaryPolicy {
    fn default() -> Self {
        CanaryPolicy {
            metric: PrimaryMetric::AveragePrecision,
            k: 100,
            tolerance: 0.02,
            min_frauds: 50,
            confidence: 0.9,
            resamples: 500,
            seed: 19,
            decline_threshold: 0.8,
            max_false_decline_increase: 0.005,
        }
    }
}

impl CanaryPolicy {
    pub fn validate(&self) -> Result<()> {
        let share = |x: f64| (0.0..=1.0).contains(&x);
        let problem = if self.k == 0 {
            "k must be at least 1"
        } else if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            "the tolerance must be a number >= 0"
        } else if self.min_frauds == 0 {
            "min_frauds must be at least 1"
        } else if !(self.confidence > 0.0 && self.confidence < 1.0) {
            "the confidence must lie strictly between 0 and 1"
        } else if self.resamples == 0 {
            "resamples must be at least 1"
        } else if !share(self.decline_threshold) {
            "the decline threshold must lie in [0, 1]"
        } else if !share(self.max_false_decline_increase) {
            "max_false_decline_increase must lie in [0, 1]"
        } else {
            return Ok(());
        };
        Err(Error::invalid(format!("canary policy: {problem}")))
    }
}

/// The verdict of an analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not worse beyond the tolerance, with confidence: promote.
    Promote,
    /// Worse beyond the tolerance (or declining legitimate customers), with confidence.
    Rollback,
    /// Not enough evidence either way yet.
    Wait,
}

/// One model's metrics on the analysed rows (`None` where undefined: no fraud, no row, ...).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelStats {
    pub average_precision: Option<f64>,
    /// Card precision@k, the mean over days.
    pub card_precision: Option<f64>,
    /// Share of transactions at or above the decline threshold.
    pub decline_rate: Option<f64>,
    /// Share of legitimate transactions at or above the decline threshold.
    pub false_decline_rate: Option<f64>,
}

impl ModelStats {
    fn of(s: &Sample, scores: &[f64], k: usize, threshold: f64) -> ModelStats {
        let declined = |legit_only: bool| {
            let (mut rows, mut hits) = (0usize, 0usize);
            for (&fraud, &score) in s.labels.iter().zip(scores) {
                if legit_only && fraud {
                    continue;
                }
                rows += 1;
                hits += usize::from(score >= threshold);
            }
            if rows == 0 {
                None
            } else {
                Some(hits as f64 / rows as f64)
            }
        };
        ModelStats {
            average_precision: average_precision(&s.labels, scores),
            card_precision: card_precision_at_k(&s.days, &s.cards, &s.labels, scores, k)
                .map(|c| c.mean),
            decline_rate: declined(false),
            false_decline_rate: declined(true),
        }
    }

    /// The compared values, in the order the bootstrap keeps them.
    fn values(&self) -> [Option<f64>; DIFFERENCES] {
        [
            self.average_precision,
            self.card_precision,
            self.decline_rate,
            self.false_decline_rate,
        ]
    }
}

/// How many metrics are compared: [`ModelStats::values`].
const DIFFERENCES: usize = 4;

/// Candidate minus champion: on all rows, and its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub estimate: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Resamples in which both values were defined.
    pub resamples: usize,
}

/// The decisions acted on, by who decided (the canary's customers and the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LiveDeclines {
    pub champion_rows: usize,
    pub champion_declined: usize,
    pub candidate_rows: usize,
    pub candidate_declined: usize,
}

/// What an analysis found and decided: the `details` of its audit row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryEvidence {
    pub rows: usize,
    pub customers: usize,
    pub labeled_frauds: usize,
    pub champion: ModelStats,
    pub candidate: ModelStats,
    pub average_precision: Difference,
    pub card_precision: Difference,
    pub decline_rate: Difference,
    pub false_decline_rate: Difference,
    pub live: LiveDeclines,
    pub policy: CanaryPolicy,
    pub verdict: Verdict,
    /// The verdict in words, with the figures it rests on.
    pub reason: String,
}

/// The columns the metrics take, for the rows or one resample of them.
#[derive(Debug, Default)]
struct Sample {
    days: Vec<i32>,
    cards: Vec<i64>,
    labels: Vec<bool>,
    champion: Vec<f64>,
    candidate: Vec<f64>,
}

impl Sample {
    fn clear(&mut self) {
        self.days.clear();
        self.cards.clear();
        self.labels.clear();
        self.champion.clear();
        self.candidate.clear();
    }

    fn push(&mut self, r: &PairedRow, card: i64) {
        self.days.push(r.day);
        self.cards.push(card);
        self.labels.push(r.is_fraud);
        self.champion.push(r.champion_score);
        self.candidate.push(r.candidate_score);
    }

    /// (champion, candidate).
    fn stats(&self, policy: &CanaryPolicy) -> (ModelStats, ModelStats) {
        let of = |scores: &[f64]| ModelStats::of(self, scores, policy.k, policy.decline_threshold);
        (of(self.champion.as_slice()), of(self.candidate.as_slice()))
    }
}

/// Linear interpolation between the order statistics around `q` (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let (a, b) = (*sorted.get(lo)?, *sorted.get(hi)?);
    Some(a + (b - a) * (pos - lo as f64))
}

/// Judges a candidate (canary or shadow) against the champion on the same labeled
/// transactions; docs/rollout.md section 6 gives the rule.
///
/// The bootstrap resamples customers with replacement (a customer's transactions are
/// correlated, and card precision counts customers); a customer drawn twice is two cards.
/// Customers are taken in id order, so the result depends only on the rows and the seed,
/// never on the order the rows came in.
pub fn analyze(rows: &[PairedRow], policy: &CanaryPolicy) -> Result<CanaryEvidence> {
    policy.validate()?;
    if let Some(r) = rows
        .iter()
        .find(|r| !(r.champion_score.is_finite() && r.candidate_score.is_finite()))
    {
        return Err(Error::invalid(format!(
            "canary analysis: customer {} has a score that is not a finite number",
            r.customer_id
        )));
    }
    let mut by_customer: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_customer.entry(r.customer_id).or_default().push(i);
    }
    let groups: Vec<Vec<usize>> = by_customer.into_values().collect();
    let labeled_frauds = rows.iter().filter(|r| r.is_fraud).count();
    let mut live = LiveDeclines::default();
    for r in rows {
        let (n, declined) = if r.candidate_decided {
            (&mut live.candidate_rows, &mut live.candidate_declined)
        } else {
            (&mut live.champion_rows, &mut live.champion_declined)
        };
        *n += 1;
        *declined += usize::from(r.declined);
    }

    let mut sample = Sample::default();
    for r in rows {
        sample.push(r, r.customer_id);
    }
    let (champion, candidate) = sample.stats(policy);

    // The bootstrap only when the verdict can use it.
    let enough_frauds = labeled_frauds >= policy.min_frauds;
    let mut diffs: [Vec<f64>; DIFFERENCES] = Default::default();
    if enough_frauds && !groups.is_empty() {
        let mut rng = SplitMix64::new(policy.seed);
        for _ in 0..policy.resamples {
            sample.clear();
            for draw in 0..groups.len() {
                for &i in &groups[rng.below(groups.len())] {
                    sample.push(&rows[i], draw as i64);
                }
            }
            let (a, b) = sample.stats(policy);
            for (m, (x, y)) in a.values().into_iter().zip(b.values()).enumerate() {
                if let (Some(x), Some(y)) = (x, y) {
                    diffs[m].push(y - x);
                }
            }
        }
    }
    let alpha = (1.0 - policy.confidence) / 2.0;
    let (a, b) = (champion.values(), candidate.values());
    let [ap, cp, decline, false_decline]: [Difference; 4] = std::array::from_fn(|m| {
        let d = &mut diffs[m];
        d.sort_unstable_by(f64::total_cmp);
        let d: &[f64] = d;
        Difference {
            estimate: a[m].zip(b[m]).map(|(x, y)| y - x),
            low: quantile(d, alpha),
            high: quantile(d, 1.0 - alpha),
            resamples: d.len(),
        }
    });

    let primary = match policy.metric {
        PrimaryMetric::AveragePrecision => ap,
        PrimaryMetric::CardPrecision => cp,
    };
    let (verdict, reason) = if !enough_frauds {
        (
            Verdict::Wait,
            format!(
                "{labeled_frauds} labeled frauds among {} transactions, {} needed",
                rows.len(),
                policy.min_frauds
            ),
        )
    } else {
        decide(policy, &primary, &false_decline)
    };
    Ok(CanaryEvidence {
        rows: rows.len(),
        customers: groups.len(),
        labeled_frauds,
        champion,
        candidate,
        average_precision: ap,
        card_precision: cp,
        decline_rate: decline,
        false_decline_rate: false_decline,
        live,
        policy: policy.clone(),
        verdict,
        reason,
    })
}

/// The rule on the intervals (docs/rollout.md section 6), once there are enough frauds.
fn decide(policy: &CanaryPolicy, primary: &Difference, fd: &Difference) -> (Verdict, String) {
    let usable = |d: &Difference| d.resamples * 2 >= policy.resamples;
    let intervals = (primary.low, primary.high, fd.low, fd.high);
    let (Some(p_low), Some(p_high), Some(f_low), Some(f_high)) = intervals else {
        return (
            Verdict::Wait,
            "no bootstrap interval could be computed".to_string(),
        );
    };
    if !usable(primary) || !usable(fd) {
        return (
            Verdict::Wait,
            format!(
                "only {} (metric) and {} (false declines) of {} resamples were usable",
                primary.resamples, fd.resamples, policy.resamples
            ),
        );
    }
    let metric = match policy.metric {
        PrimaryMetric::AveragePrecision => "average precision",
        PrimaryMetric::CardPrecision => "card precision",
    };
    let level = policy.confidence * 100.0;
    let tol = policy.tolerance;
    let max_fd = policy.max_false_decline_increase;
    let shown = |d: &Difference, low: f64, high: f64| {
        format!(
            "{:+.4} ({level:.0} % interval {low:+.4} .. {high:+.4})",
            d.estimate.unwrap_or(f64::NAN)
        )
    };
    let metric_diff = shown(primary, p_low, p_high);
    let fd_diff = shown(fd, f_low, f_high);
    if p_high < -tol {
        (
            Verdict::Rollback,
            format!("{metric} is worse: candidate - champion = {metric_diff}, below -{tol}"),
        )
    } else if f_low > max_fd {
        (
            Verdict::Rollback,
            format!(
                "it declines more legitimate transactions: false decline rate candidate - \
                 champion = {fd_diff}, above {max_fd}"
            ),
        )
    } else if p_low >= -tol && f_high <= max_fd {
        (
            Verdict::Promote,
            format!(
                "not worse: {metric} candidate - champion = {metric_diff}, within -{tol}; \
                 false declines {fd_diff}, within {max_fd}"
            ),
        )
    } else {
        (
            Verdict::Wait,
            format!(
                "inconclusive: {metric} candidate - champion = {metric_diff} (tolerance -{tol}); \
                 false declines {fd_diff} (at most {max_fd})"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 400 customers, one transaction each over 4 days (day = id % 4, so 100 a day), every
    /// fifth one fraudulent (80 frauds, 20 a day); every tenth customer is the canary's.
    fn rows(champion: fn(i64, bool) -> f64, candidate: fn(i64, bool) -> f64) -> Vec<PairedRow> {
        (0..400)
            .map(|id| {
                let fraud = id % 5 == 0;
                PairedRow {
                    customer_id: id,
                    day: (id % 4) as i32,
                    is_fraud: fraud,
                    champion_score: champion(id, fraud),
                    candidate_score: candidate(id, fraud),
                    candidate_decided: id % 10 == 1,
                    declined: false,
                }
            })
            .collect()
    }

    /// Every fraud (0.7) above every legitimate transaction (at most 0.3): AP and card
    /// precision 1.
    fn perfect(id: i64, fraud: bool) -> f64 {
        if fraud {
            0.7
        } else {
            (id % 7) as f64 / 20.0
        }
    }

    /// Frauds at 0.4 or 0.2, legitimate transactions spread over 0 .. 0.6: many legitimate
    /// ones rank above frauds.
    fn poor(id: i64, fraud: bool) -> f64 {
        match (fraud, id % 10 == 0) {
            (true, true) => 0.4,
            (true, false) => 0.2,
            (false, _) => (id % 7) as f64 / 10.0,
        }
    }

    /// Ranks as well as `perfect`, but declines the legitimate customers with id % 7 == 6.
    fn trigger_happy(id: i64, fraud: bool) -> f64 {
        match (fraud, id % 7 == 6) {
            (true, _) => 0.99,
            (false, true) => 0.95,
            (false, false) => 0.1,
        }
    }

    /// Fast enough for a unit test; k 10 so that the canary's card precision is 1.
    fn policy() -> CanaryPolicy {
        CanaryPolicy {
            k: 10,
            resamples: 200,
            decline_threshold: 0.9,
            ..CanaryPolicy::default()
        }
    }

    #[test]
    fn a_clearly_better_canary_is_promoted() {
        let e = analyze(&rows(poor, perfect), &policy()).expect("analysis");
        assert_eq!((e.rows, e.customers, e.labeled_frauds), (400, 400, 80));
        assert_eq!(e.candidate.average_precision, Some(1.0));
        assert_eq!(e.candidate.card_precision, Some(1.0));
        let champion_ap = e.champion.average_precision.expect("defined");
        assert!(champion_ap < 0.5, "{champion_ap}");
        let ap = e.average_precision;
        assert_eq!(ap.resamples, 200);
        // The canary is perfect in every resample and the champion never is.
        assert!(ap.low.expect("interval") > 0.0, "{ap:?}");
        // Neither declines anything at 0.9.
        assert_eq!(e.candidate.decline_rate, Some(0.0));
        assert_eq!(e.false_decline_rate.high, Some(0.0));
        assert_eq!(e.verdict, Verdict::Promote, "{}", e.reason);
        // Every tenth customer (ids 1, 11, ..., 391) was the canary's.
        assert_eq!(e.live.candidate_rows, 40);
        assert_eq!(e.live.champion_rows, 360);
    }

    #[test]
    fn a_clearly_worse_canary_is_rolled_back() {
        let e = analyze(&rows(perfect, poor), &policy()).expect("analysis");
        assert_eq!(e.champion.average_precision, Some(1.0));
        let ap = e.average_precision;
        assert!(ap.high.expect("interval") < -policy().tolerance, "{ap:?}");
        assert_eq!(e.verdict, Verdict::Rollback, "{}", e.reason);
        assert!(
            e.reason.contains("average precision is worse"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn too_few_labeled_frauds_waits() {
        let policy = CanaryPolicy {
            min_frauds: 81,
            ..policy()
        };
        let e = analyze(&rows(poor, perfect), &policy).expect("analysis");
        assert_eq!(e.verdict, Verdict::Wait);
        assert!(e.reason.starts_with("80 labeled frauds"), "{}", e.reason);
        // The point estimates are there, no interval was drawn.
        assert!(e.average_precision.estimate.is_some());
        assert_eq!(
            (e.average_precision.low, e.average_precision.resamples),
            (None, 0)
        );
        // No rows at all: wait too, nothing undefined turns into a number.
        let e = analyze(&[], &policy).expect("analysis");
        assert_eq!(
            (e.verdict, e.rows, e.champion.decline_rate),
            (Verdict::Wait, 0, None)
        );
    }

    #[test]
    fn declining_legitimate_customers_rolls_back_despite_equal_ranking() {
        let e = analyze(&rows(perfect, trigger_happy), &policy()).expect("analysis");
        assert_eq!(e.candidate.average_precision, Some(1.0));
        assert_eq!(e.average_precision.estimate, Some(0.0));
        // Legitimate ids below 400 with id % 7 == 6: 57 of them, less the 11 that are
        // multiples of 5 (id % 35 == 20): 46 of the 320 legitimate transactions.
        assert_eq!(e.candidate.false_decline_rate, Some(46.0 / 320.0));
        assert_eq!(e.candidate.decline_rate, Some((80.0 + 46.0) / 400.0));
        assert_eq!(e.champion.false_decline_rate, Some(0.0));
        assert_eq!(e.verdict, Verdict::Rollback, "{}", e.reason);
        assert!(e.reason.contains("legitimate"), "{}", e.reason);
    }

    #[test]
    fn the_same_model_is_not_worse() {
        let e = analyze(&rows(poor, poor), &policy()).expect("analysis");
        assert_eq!(e.average_precision.low, Some(0.0));
        assert_eq!(e.average_precision.high, Some(0.0));
        assert_eq!(e.verdict, Verdict::Promote, "{}", e.reason);
    }

    #[test]
    fn the_analysis_is_reproducible_and_serializable() {
        let mut data = rows(poor, perfect);
        let a = analyze(&data, &policy()).expect("analysis");
        // The row order does not matter: customers are resampled in id order.
        data.reverse();
        let b = analyze(&data, &policy()).expect("analysis");
        assert_eq!(a, b);
        let json = serde_json::to_value(&a).expect("serializes");
        assert_eq!(json["verdict"], "promote");
        assert_eq!(json["policy"]["metric"], "average_precision");
        let back: CanaryEvidence = serde_json::from_value(json).expect("reads back");
        assert_eq!((back.verdict, back.rows), (Verdict::Promote, 400));
    }

    #[test]
    fn bad_input_is_refused() {
        let mut data = rows(poor, perfect);
        data[3].candidate_score = f64::NAN;
        assert!(analyze(&data, &policy()).is_err());
        for bad in [
            CanaryPolicy {
                tolerance: -0.1,
                ..policy()
            },
            CanaryPolicy {
                confidence: 1.0,
                ..policy()
            },
            CanaryPolicy {
                resamples: 0,
                ..policy()
            },
            CanaryPolicy {
                min_frauds: 0,
                ..policy()
            },
        ] {
            assert!(analyze(&rows(poor, perfect), &bad).is_err(), "{bad:?}");
        }
        assert!("card_precision".parse::<PrimaryMetric>().is_ok());
        assert!("auc".parse::<PrimaryMetric>().is_err());
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 1.0), Some(5.0));
        assert_eq!(quantile(&v, 0.125), Some(1.5));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn splitmix64_is_the_reference_generator() {
        // The first outputs for seed 0 of Vigna's splitmix64.c.
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(g.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let mut g = SplitMix64::new(7);
        assert!((0..1000).all(|_| g.below(3) < 3));
        assert_eq!(stable_hash(5, 9), stable_hash(5, 9));
        assert_ne!(stable_hash(5, 9), stable_hash(5, 10));
    }
}
