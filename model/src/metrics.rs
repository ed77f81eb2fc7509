//! Binary-classification metrics for evaluating fraud models.
//!
//! fraudlake's evaluation has to be comparable with the Fraud Detection Handbook, whose numbers
//! come from scikit-learn (`roc_auc_score`, `average_precision_score`, `log_loss`,
//! `brier_score_loss`, `precision_score` / `recall_score`) and from the handbook's own
//! card precision@k. Every function here reproduces those definitions exactly, including the
//! handling of tied scores, rather than an approximation of them: a model that is "better" by a
//! rounding artefact is not better. The values are tested against vectors computed once with
//! scikit-learn (`model/tests/data/gen_metric_vectors.py` writes
//! `model/tests/data/metric_vectors.json`).
//!
//! Conventions shared by all functions:
//! * every slice must have the same length and be non-empty, otherwise the result is `None`;
//! * a score that is NaN or infinite is an error and the result is `None` (scikit-learn rejects
//!   such input too); probabilities given to [`log_loss`] and [`brier_score`] must moreover lie
//!   in `[0, 1]`;
//! * a metric that is undefined for the input (e.g. the AUC when only one class is present)
//!   is `None`, never NaN.
//!
//! The functions that rank scores sort once and are O(n log n).
//!
//! The curves of the model card ([`roc_curve`], [`pr_curve`], [`card_precision_curve`], stored
//! as [`Curves`]) come from the same sorts as the metrics and add up to them: the ROC curve's
//! trapezoids are [`auc_roc`], the precision-recall curve's steps [`average_precision`], and
//! each point of the card curve is [`card_precision_at_k`] at its `k`.

use std::collections::HashSet;

/// Area under the ROC curve, ties handled as scikit-learn's roc_auc_score (trapezoids over distinct thresholds).
///
/// `None` if the lengths differ, the input is empty, a score is not finite or only one class
/// is present (scikit-learn then warns and returns NaN).
///
/// The area is accumulated exactly in integers (twice the area, in units of one
/// positive-negative pair) and divided once, so it is at least as accurate as scikit-learn's
/// floating-point trapezoids.
pub fn auc_roc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let curve = roc_points(labels, scores)?;
    let &(positives, negatives) = curve.last()?;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut twice_area: u128 = 0;
    let (mut prev_tp, mut prev_fp) = (0usize, 0usize);
    for &(tp, fp) in &curve {
        // Trapezoid between (prev_fp, prev_tp) and (fp, tp): width (fp - prev_fp),
        // twice the mean height (tp + prev_tp).
        twice_area += (fp - prev_fp) as u128 * (tp + prev_tp) as u128;
        (prev_tp, prev_fp) = (tp, fp);
    }
    Some(twice_area as f64 / (2.0 * positives as f64 * negatives as f64))
}

/// Average precision as scikit-learn's average_precision_score: sum over distinct thresholds (descending) of (R_n - R_{n-1}) * P_n, no interpolation.
///
/// `None` if the lengths differ, the input is empty, a score is not finite or there is no
/// positive label (recall is undefined; scikit-learn warns and returns 0). With only positive
/// labels the result is 1, as in scikit-learn.
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let curve = roc_points(labels, scores)?;
    let &(positives, _) = curve.last()?;
    if positives == 0 {
        return None;
    }
    let total = positives as f64;
    let mut ap = 0.0;
    let mut prev_tp = 0usize;
    for &(tp, fp) in &curve {
        if tp > prev_tp {
            // Same operations as scikit-learn: recall = tp / P, precision = tp / (tp + fp).
            let recall_step = tp as f64 / total - prev_tp as f64 / total;
            ap += recall_step * (tp as f64 / (tp + fp) as f64);
        }
        prev_tp = tp;
    }
    Some(ap)
}

/// Log loss as scikit-learn's log_loss (probabilities clipped to [eps, 1-eps], eps = f64::EPSILON).
///
/// As scikit-learn does, the probability of the observed class (`p` for a fraud, `1 - p`
/// otherwise) is clipped, not `p` itself. `None` if the lengths differ, the input is empty or a
/// probability is NaN or outside `[0, 1]`. Unlike scikit-learn, which refuses a single class
/// unless `labels=[0, 1]` is passed, a single class is accepted: the loss is well defined.
pub fn log_loss(labels: &[bool], probs: &[f64]) -> Option<f64> {
    if !valid_probabilities(labels, probs) {
        return None;
    }
    let eps = f64::EPSILON;
    let total: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&fraud, &p)| {
            let p_observed = if fraud { p } else { 1.0 - p };
            -p_observed.clamp(eps, 1.0 - eps).ln()
        })
        .sum();
    Some(total / labels.len() as f64)
}

/// Mean squared difference between probability and label (scikit-learn's brier_score_loss).
///
/// `None` if the lengths differ, the input is empty or a probability is NaN or outside `[0, 1]`.
pub fn brier_score(labels: &[bool], probs: &[f64]) -> Option<f64> {
    if !valid_probabilities(labels, probs) {
        return None;
    }
    let total: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&fraud, &p)| {
            let diff = p - if fraud { 1.0 } else { 0.0 };
            diff * diff
        })
        .sum();
    Some(total / labels.len() as f64)
}

/// Precision and recall when predicting fraud for score >= threshold (precision of an empty prediction set = 0, as scikit-learn with zero_division=0).
///
/// Likewise the recall is 0 when there is no positive label. `None` if the lengths differ, the
/// input is empty, a score is not finite or the threshold is NaN.
pub fn precision_recall_at(labels: &[bool], scores: &[f64], threshold: f64) -> Option<(f64, f64)> {
    if !valid_scores(labels, scores) || threshold.is_nan() {
        return None;
    }
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&fraud, &score) in labels.iter().zip(scores) {
        match (score >= threshold, fraud) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    Some((ratio_or_zero(tp, tp + fp), ratio_or_zero(tp, tp + fn_)))
}

/// Card precision@k: the mean over days, and the value of each day in ascending day order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CardPrecision {
    pub mean: f64,
    pub per_day: Vec<(i32, f64)>,
}

/// The handbook's Card Precision@k: for each day in ascending order, take the rows of that day whose card (customer) was not detected on an earlier day; per card take max score and max label; sort cards by max score descending (ties: by card id ascending, for determinism), take the top k; precision = number of fraudulent cards among them / k (divide by k even if fewer cards); the fraudulent cards in the top k are added to the detected set. Result = mean over days. Returns also the per-day values.
///
/// Every day present in `days` counts, including a day on which all cards were already
/// detected (its precision is 0), as in the handbook. `None` if the lengths differ, the input is
/// empty, `k` is 0 or a score is not finite.
pub fn card_precision_at_k(
    days: &[i32],
    cards: &[i64],
    labels: &[bool],
    scores: &[f64],
    k: usize,
) -> Option<CardPrecision> {
    if k == 0 {
        return None;
    }
    Some(card_precision_of(
        &ranked_cards(days, cards, labels, scores)?,
        k,
    ))
}

/// One day's cards as (max score, card, any fraud), highest score first (ties: card id
/// ascending): the order the handbook's card precision@k takes them in.
type RankedDay = (i32, Vec<(f64, i64, bool)>);

/// Every day's [`RankedDay`], days ascending: the one sort behind [`card_precision_at_k`] and
/// [`card_precision_curve`], which is independent of `k` (only which cards are already
/// detected depends on it, and that is skipped while walking a day's ranking). `None` on
/// invalid input (see [`card_precision_at_k`]).
fn ranked_cards(
    days: &[i32],
    cards: &[i64],
    labels: &[bool],
    scores: &[f64],
) -> Option<Vec<RankedDay>> {
    let n = days.len();
    if cards.len() != n || !valid_scores(labels, scores) || labels.len() != n {
        return None;
    }

    // Rows grouped by day, then by card, in one sort.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by_key(|&i| (days[i], cards[i]));

    let mut out = Vec::new();
    for day_rows in order.chunk_by(|&a, &b| days[a] == days[b]) {
        let Some(&first) = day_rows.first() else {
            continue;
        };
        let mut ranked: Vec<(f64, i64, bool)> = Vec::new();
        for card_rows in day_rows.chunk_by(|&a, &b| cards[a] == cards[b]) {
            let Some(&first_row) = card_rows.first() else {
                continue;
            };
            let max_score = card_rows
                .iter()
                .map(|&i| scores[i])
                .fold(f64::NEG_INFINITY, f64::max);
            let fraud = card_rows.iter().any(|&i| labels[i]);
            ranked.push((max_score, cards[first_row], fraud));
        }
        ranked.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        out.push((days[first], ranked));
    }
    Some(out)
}

/// Card precision@k over ranked days (`k` > 0, at least one day): each day's top `k` cards
/// among those not detected on an earlier day, its frauds then detected.
fn card_precision_of(ranked: &[RankedDay], k: usize) -> CardPrecision {
    let mut detected: HashSet<i64> = HashSet::new();
    let mut per_day = Vec::with_capacity(ranked.len());
    let mut found: Vec<i64> = Vec::new();
    for (day, cards) in ranked {
        found.clear();
        let top = cards
            .iter()
            .filter(|(_, card, _)| !detected.contains(card))
            .take(k);
        found.extend(
            top.filter(|&&(_, _, fraud)| fraud)
                .map(|&(_, card, _)| card),
        );
        per_day.push((*day, found.len() as f64 / k as f64));
        detected.extend(found.iter().copied());
    }
    let mean = per_day.iter().map(|&(_, p)| p).sum::<f64>() / per_day.len().max(1) as f64;
    CardPrecision { mean, per_day }
}

/// How many points a stored curve keeps at most (the model card's charts): enough for a smooth
/// line at the card's size, few enough to keep the registry record small.
pub const CURVE_POINTS: usize = 200;

/// The largest `k` of the stored card precision@k curve (fewer when no day has that many
/// cards): well past the handbook's 100 cards a day, where the curve has flattened out.
pub const CARD_CURVE_MAX_K: usize = 500;

/// The ROC curve: `(false positive rate, true positive rate)` from `(0, 0)` (nothing flagged)
/// through every distinct threshold, scores descending, to `(1, 1)` (everything flagged), as
/// scikit-learn's `roc_curve(drop_intermediate=False)`. Its trapezoids add up to [`auc_roc`].
///
/// `None` where [`auc_roc`] is: invalid input or a single class.
pub fn roc_curve(labels: &[bool], scores: &[f64]) -> Option<Vec<(f64, f64)>> {
    let curve = roc_points(labels, scores)?;
    let &(positives, negatives) = curve.last()?;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let (p, n) = (positives as f64, negatives as f64);
    let mut out = Vec::with_capacity(curve.len() + 1);
    out.push((0.0, 0.0));
    out.extend(curve.iter().map(|&(tp, fp)| (fp as f64 / n, tp as f64 / p)));
    Some(out)
}

/// The precision-recall curve: `(recall, precision)` from `(0, 1)` (scikit-learn's
/// `precision_recall_curve` convention for flagging nothing) through every distinct threshold,
/// scores descending. Its steps are [`average_precision`]'s: `AP = sum over points of
/// (r_i - r_(i-1)) * p_i`, with the same floating-point operations.
///
/// `None` where [`average_precision`] is: invalid input or no positive label.
pub fn pr_curve(labels: &[bool], scores: &[f64]) -> Option<Vec<(f64, f64)>> {
    let curve = roc_points(labels, scores)?;
    let &(positives, _) = curve.last()?;
    if positives == 0 {
        return None;
    }
    let total = positives as f64;
    let mut out = Vec::with_capacity(curve.len() + 1);
    out.push((0.0, 1.0));
    // Every point holds at least one row, so tp + fp > 0.
    out.extend(
        curve
            .iter()
            .map(|&(tp, fp)| (tp as f64 / total, tp as f64 / (tp + fp) as f64)),
    );
    Some(out)
}

/// The card precision@k curve: `(k, mean card precision@k)` for at most `max_points` values of
/// `k` from 1 to `max_k` or the most cards any day has (whichever is smaller), evenly spaced,
/// both ends and `k` = 100 (the handbook's) included when in range. Each value is
/// [`card_precision_at_k`]`(.., k).mean`; the days are ranked once for all of them.
///
/// `None` where [`card_precision_at_k`] is (invalid input), or when `max_k` or `max_points` is 0.
pub fn card_precision_curve(
    days: &[i32],
    cards: &[i64],
    labels: &[bool],
    scores: &[f64],
    max_k: usize,
    max_points: usize,
) -> Option<Vec<(usize, f64)>> {
    if max_k == 0 || max_points == 0 {
        return None;
    }
    let ranked = ranked_cards(days, cards, labels, scores)?;
    let most_cards = ranked.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let last = max_k.min(most_cards).max(1);
    Some(
        curve_ks(last, max_points)
            .into_iter()
            .map(|k| (k, card_precision_of(&ranked, k).mean))
            .collect(),
    )
}

/// At most `max_points` (>= 1) values of `k` in `1..=last`, evenly spaced, `1`, `last` and 100
/// (when `last` >= 100) included, ascending.
fn curve_ks(last: usize, max_points: usize) -> Vec<usize> {
    if last <= max_points {
        return (1..=last).collect();
    }
    // One point is kept back for k = 100.
    let spaced = max_points.saturating_sub(1).max(2);
    let mut ks: Vec<usize> = (0..spaced)
        .map(|i| 1 + ((last - 1) as f64 * i as f64 / (spaced - 1) as f64).round() as usize)
        .collect();
    if last >= 100 {
        ks.push(100);
    }
    ks.sort_unstable();
    ks.dedup();
    ks.truncate(max_points.max(1));
    if let Some(end) = ks.last_mut() {
        *end = last;
    }
    ks
}

/// At most `max` (at least 2) of `points`, a polyline in the unit square (ROC, PR): the first
/// and the last always, the others where the line has travelled `1 / (max - 1)` of its whole
/// length since the last point kept, so the points follow the curve where it bends rather than
/// where the thresholds happen to be dense. Shorter input is returned as it is.
pub fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let max = max.max(2);
    let (Some(&first), Some(&last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    if points.len() <= max {
        return points.to_vec();
    }
    let dist = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0).hypot(b.1 - a.1);
    let total: f64 = points.windows(2).map(|w| dist(w[0], w[1])).sum();
    let mut out = Vec::with_capacity(max);
    out.push(first);
    if total > 0.0 && max > 2 {
        let step = total / (max - 1) as f64;
        let mut travelled = 0.0;
        for w in points[..points.len() - 1].windows(2) {
            travelled += dist(w[0], w[1]);
            // `out.len() < max - 1` keeps a place for the last point, whatever the rounding.
            if travelled >= step && out.len() < max - 1 {
                out.push(w[1]);
                travelled = 0.0;
            }
        }
    }
    out.push(last);
    out
}

/// The curves of a model on its test rows, as a version stores them for its model card: ROC,
/// precision-recall (each at most [`CURVE_POINTS`] points, see [`downsample`]) and card
/// precision@k up to [`CARD_CURVE_MAX_K`]; values rounded to 6 decimals. A curve that is
/// undefined on the rows (no fraud, a single class) is empty.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Curves {
    /// `(false positive rate, true positive rate)`, from `(0, 0)` to `(1, 1)`.
    #[serde(default)]
    pub roc: Vec<(f64, f64)>,
    /// `(recall, precision)`, from `(0, 1)` to `(1, share of frauds)`.
    #[serde(default)]
    pub precision_recall: Vec<(f64, f64)>,
    /// `(k, card precision@k)`, `k` ascending from 1.
    #[serde(default)]
    pub card_precision: Vec<(usize, f64)>,
}

impl Curves {
    /// The curves of `scores` on rows given by day, card and label (as [`card_precision_at_k`]
    /// takes them).
    pub fn of(days: &[i32], cards: &[i64], labels: &[bool], scores: &[f64]) -> Curves {
        let stored = |curve: Option<Vec<(f64, f64)>>| -> Vec<(f64, f64)> {
            curve.map_or_else(Vec::new, |c| {
                downsample(&c, CURVE_POINTS)
                    .into_iter()
                    .map(|(x, y)| (round6(x), round6(y)))
                    .collect()
            })
        };
        Curves {
            roc: stored(roc_curve(labels, scores)),
            precision_recall: stored(pr_curve(labels, scores)),
            card_precision: card_precision_curve(
                days,
                cards,
                labels,
                scores,
                CARD_CURVE_MAX_K,
                CURVE_POINTS,
            )
            .map_or_else(Vec::new, |c| {
                c.into_iter().map(|(k, p)| (k, round6(p))).collect()
            }),
        }
    }

    /// Whether no curve is defined.
    pub fn is_empty(&self) -> bool {
        self.roc.is_empty() && self.precision_recall.is_empty() && self.card_precision.is_empty()
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Cumulative `(true positives, false positives)` after each distinct score, scores taken in
/// descending order: the points of scikit-learn's `_binary_clf_curve`. The last point holds the
/// numbers of positives and negatives. `None` on invalid input (see [`valid_scores`]).
fn roc_points(labels: &[bool], scores: &[f64]) -> Option<Vec<(usize, usize)>> {
    if !valid_scores(labels, scores) {
        return None;
    }
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let mut points = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    // `==` (not `total_cmp`) so that -0.0 and 0.0, adjacent after the sort, form one threshold.
    for group in pairs.chunk_by(|a, b| a.0 == b.0) {
        let frauds = group.iter().filter(|&&(_, fraud)| fraud).count();
        tp += frauds;
        fp += group.len() - frauds;
        points.push((tp, fp));
    }
    Some(points)
}

/// Equal, non-zero lengths and finite scores.
fn valid_scores(labels: &[bool], scores: &[f64]) -> bool {
    !labels.is_empty() && labels.len() == scores.len() && scores.iter().all(|s| s.is_finite())
}

/// Equal, non-zero lengths and probabilities in `[0, 1]` (which excludes NaN).
fn valid_probabilities(labels: &[bool], probs: &[f64]) -> bool {
    !labels.is_empty()
        && labels.len() == probs.len()
        && probs.iter().all(|p| (0.0..=1.0).contains(p))
}

/// `num / den`, or 0 when `den` is 0 (scikit-learn's `zero_division=0`).
fn ratio_or_zero(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const VECTORS: &str = include_str!("../tests/data/metric_vectors.json");

    #[derive(Deserialize)]
    struct Vectors {
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        labels: Vec<u8>,
        scores: Vec<f64>,
        threshold: f64,
        expected: Expected,
        card: Option<CardCase>,
    }

    #[derive(Deserialize)]
    struct Expected {
        auc_roc: f64,
        average_precision: f64,
        log_loss: f64,
        brier: f64,
        precision: f64,
        recall: f64,
    }

    #[derive(Deserialize)]
    struct CardCase {
        days: Vec<i32>,
        cards: Vec<i64>,
        k: usize,
        expected_mean: f64,
        expected_per_day: Vec<(i32, f64)>,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(VECTORS).expect("metric_vectors.json parses")
    }

    fn bools(labels: &[u8]) -> Vec<bool> {
        labels
            .iter()
            .map(|&l| {
                assert!(l <= 1, "label {l} is not 0/1");
                l == 1
            })
            .collect()
    }

    #[track_caller]
    fn assert_close(case: &str, metric: &str, actual: Option<f64>, expected: f64, tol: f64) {
        let actual = actual.unwrap_or_else(|| panic!("{case}: {metric} is None"));
        assert!(
            (actual - expected).abs() <= tol,
            "{case}: {metric} = {actual:.17} but scikit-learn gives {expected:.17}"
        );
    }

    #[test]
    fn vectors_cover_the_intended_cases() {
        let v = vectors();
        assert!(v.cases.len() >= 6, "only {} cases", v.cases.len());
        assert!(v.cases.iter().filter(|c| c.card.is_some()).count() >= 2);
        for c in &v.cases {
            assert_eq!(c.labels.len(), c.scores.len(), "{}", c.name);
        }
    }

    #[test]
    fn matches_scikit_learn_vectors() {
        for c in vectors().cases {
            let labels = bools(&c.labels);
            let e = &c.expected;
            let name = c.name.as_str();
            assert_close(
                name,
                "auc_roc",
                auc_roc(&labels, &c.scores),
                e.auc_roc,
                1e-12,
            );
            assert_close(
                name,
                "average_precision",
                average_precision(&labels, &c.scores),
                e.average_precision,
                1e-12,
            );
            assert_close(
                name,
                "log_loss",
                log_loss(&labels, &c.scores),
                e.log_loss,
                1e-9,
            );
            assert_close(
                name,
                "brier",
                brier_score(&labels, &c.scores),
                e.brier,
                1e-12,
            );
            let (precision, recall) = precision_recall_at(&labels, &c.scores, c.threshold)
                .unwrap_or_else(|| panic!("{name}: precision_recall_at is None"));
            assert_close(name, "precision", Some(precision), e.precision, 1e-12);
            assert_close(name, "recall", Some(recall), e.recall, 1e-12);
        }
    }

    #[test]
    fn matches_handbook_card_precision_vectors() {
        let mut seen = 0;
        for c in vectors().cases {
            let Some(card) = c.card else { continue };
            seen += 1;
            let labels = bools(&c.labels);
            let got = card_precision_at_k(&card.days, &card.cards, &labels, &c.scores, card.k)
                .unwrap_or_else(|| panic!("{}: card precision is None", c.name));
            assert_close(
                &c.name,
                "card precision",
                Some(got.mean),
                card.expected_mean,
                1e-12,
            );
            assert_eq!(got.per_day.len(), card.expected_per_day.len(), "{}", c.name);
            for (&(day, p), &(want_day, want_p)) in got.per_day.iter().zip(&card.expected_per_day) {
                assert_eq!(day, want_day, "{}", c.name);
                assert_close(
                    &c.name,
                    &format!("card precision day {day}"),
                    Some(p),
                    want_p,
                    1e-12,
                );
            }
        }
        assert!(seen >= 2, "only {seen} card-precision cases");
    }

    #[test]
    fn single_class_is_undefined_for_auc_and_ap() {
        let scores = [0.1, 0.4, 0.4, 0.9];
        assert_eq!(auc_roc(&[false; 4], &scores), None);
        assert_eq!(auc_roc(&[true; 4], &scores), None);
        assert_eq!(average_precision(&[false; 4], &scores), None);
        // All positive: precision is 1 at every threshold, as in scikit-learn.
        assert_eq!(average_precision(&[true; 4], &scores), Some(1.0));
    }

    #[test]
    fn unequal_lengths_or_empty_input_are_none() {
        let labels = [true, false, true];
        let scores = [0.9, 0.1];
        assert_eq!(auc_roc(&labels, &scores), None);
        assert_eq!(average_precision(&labels, &scores), None);
        assert_eq!(log_loss(&labels, &scores), None);
        assert_eq!(brier_score(&labels, &scores), None);
        assert_eq!(precision_recall_at(&labels, &scores, 0.5), None);
        assert!(card_precision_at_k(&[1, 1], &[7, 8, 9], &labels, &[0.9, 0.1, 0.5], 1).is_none());
        assert!(card_precision_at_k(&[1, 1, 1], &[7, 8, 9], &labels, &scores, 1).is_none());
        assert_eq!(auc_roc(&[], &[]), None);
        assert_eq!(log_loss(&[], &[]), None);
        assert!(card_precision_at_k(&[], &[], &[], &[], 3).is_none());
    }

    #[test]
    fn non_finite_or_out_of_range_input_is_none() {
        let labels = [true, false, true];
        let nan = [0.9, f64::NAN, 0.3];
        assert_eq!(auc_roc(&labels, &nan), None);
        assert_eq!(average_precision(&labels, &nan), None);
        assert_eq!(log_loss(&labels, &nan), None);
        assert_eq!(brier_score(&labels, &nan), None);
        assert_eq!(precision_recall_at(&labels, &nan, 0.5), None);
        assert_eq!(
            precision_recall_at(&labels, &[0.9, 0.2, 0.3], f64::NAN),
            None
        );
        assert_eq!(auc_roc(&labels, &[0.9, f64::INFINITY, 0.3]), None);
        assert_eq!(log_loss(&labels, &[0.9, 1.5, 0.3]), None);
        assert_eq!(brier_score(&labels, &[0.9, -0.1, 0.3]), None);
        assert!(card_precision_at_k(&[1, 1, 1], &[7, 8, 9], &labels, &nan, 1).is_none());
        assert!(
            card_precision_at_k(&[1, 1, 1], &[7, 8, 9], &labels, &[0.9, 0.1, 0.3], 0).is_none()
        );
    }

    #[test]
    fn perfect_and_reversed_separation() {
        let labels = [false, true, false, true, true, false];
        let scores = [0.2, 0.8, 0.1, 0.95, 0.7, 0.3];
        assert_eq!(auc_roc(&labels, &scores), Some(1.0));
        let ap = average_precision(&labels, &scores).expect("defined");
        assert!((ap - 1.0).abs() < 1e-15, "{ap}");
        let reversed: Vec<f64> = scores.iter().map(|s| 1.0 - s).collect();
        assert_eq!(auc_roc(&labels, &reversed), Some(0.0));
        // Positives ranked 4th, 5th and 6th: AP = (1/4 + 2/5 + 3/6) / 3.
        let ap = average_precision(&labels, &reversed).expect("defined");
        assert!((ap - (0.25 + 0.4 + 0.5) / 3.0).abs() < 1e-15, "{ap}");
    }

    #[test]
    fn ties_count_as_one_threshold() {
        // One positive and one negative with the same score: a diagonal ROC segment.
        assert_eq!(auc_roc(&[true, false], &[0.5, 0.5]), Some(0.5));
        assert_eq!(average_precision(&[true, false], &[0.5, 0.5]), Some(0.5));
        // Tie between a positive and a negative above a lone positive:
        // thresholds 0.9 -> (tp 1, fp 1), 0.2 -> (2, 1); AP = 0.5 * 0.5 + 0.5 * 2/3.
        let ap = average_precision(&[true, false, true], &[0.9, 0.9, 0.2]).expect("defined");
        assert!((ap - (0.25 + 1.0 / 3.0)).abs() < 1e-15, "{ap}");
        // ROC points (fpr, tpr): (0, 0), (1, 0.5), (1, 1); only the first segment has width:
        // area = 1 * (0 + 0.5) / 2.
        assert_eq!(auc_roc(&[true, false, true], &[0.9, 0.9, 0.2]), Some(0.25));
    }

    #[test]
    fn log_loss_clips_the_probability_of_the_observed_class() {
        let worst = -f64::EPSILON.ln();
        assert_eq!(log_loss(&[true], &[0.0]), Some(worst));
        assert_eq!(log_loss(&[false], &[1.0]), Some(worst));
        // Certain and right: clipped to 1 - eps, a tiny positive loss, not 0.
        let best = log_loss(&[true, false], &[1.0, 0.0]).expect("defined");
        assert!(best > 0.0 && best < 1e-15, "{best}");
        let half = log_loss(&[true, false], &[0.5, 0.5]).expect("defined");
        assert!((half - std::f64::consts::LN_2).abs() < 1e-15, "{half}");
    }

    #[test]
    fn brier_and_threshold_metrics() {
        let labels = [true, false, true, false];
        let probs = [0.9, 0.5, 0.5, 0.0];
        // (0.01 + 0.25 + 0.25 + 0) / 4
        let brier = brier_score(&labels, &probs).expect("defined");
        assert!((brier - 0.1275).abs() < 1e-15, "{brier}");
        // score >= 0.5 predicts rows 0, 1, 2: tp 2, fp 1, fn 0.
        let (p, r) = precision_recall_at(&labels, &probs, 0.5).expect("defined");
        assert!((p - 2.0 / 3.0).abs() < 1e-15 && r == 1.0, "{p} {r}");
        // Nothing predicted: precision 0 by convention, recall 0.
        assert_eq!(precision_recall_at(&labels, &probs, 0.95), Some((0.0, 0.0)));
        // No positive label: recall 0 by convention.
        assert_eq!(
            precision_recall_at(&[false, false], &[0.7, 0.1], 0.5),
            Some((0.0, 0.0))
        );
    }

    /// The area under a polyline by trapezoids.
    fn trapezoids(points: &[(f64, f64)]) -> f64 {
        points
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum()
    }

    /// `sum (r_i - r_(i-1)) * p_i` over a precision-recall curve.
    fn pr_steps(points: &[(f64, f64)]) -> f64 {
        points.windows(2).map(|w| (w[1].0 - w[0].0) * w[1].1).sum()
    }

    /// Deterministic rows: about one fraud in eight, frauds scoring higher on average, scores
    /// rounded to 3 decimals so that many are tied; 40 cards over 5 days.
    fn synthetic(n: usize) -> (Vec<i32>, Vec<i64>, Vec<bool>, Vec<f64>) {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut out = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let fraud = next() < 0.125;
            let score = (next() * 0.7 + if fraud { 0.3 } else { 0.0 }) * 1000.0;
            out.0.push((i % 5) as i32);
            out.1.push((next() * 40.0) as i64);
            out.2.push(fraud);
            out.3.push(score.round() / 1000.0);
        }
        out
    }

    #[test]
    fn roc_and_pr_curves_of_a_small_input() {
        // Thresholds 0.9 (a fraud and a legit row tied) and 0.2 (a fraud).
        let (labels, scores) = ([true, false, true], [0.9, 0.9, 0.2]);
        assert_eq!(
            roc_curve(&labels, &scores),
            Some(vec![(0.0, 0.0), (1.0, 0.5), (1.0, 1.0)])
        );
        let pr = pr_curve(&labels, &scores).expect("defined");
        assert_eq!(pr[..2], [(0.0, 1.0), (0.5, 0.5)]);
        assert_eq!(pr[2].0, 1.0);
        assert!((pr[2].1 - 2.0 / 3.0).abs() < 1e-15, "{pr:?}");
        // Undefined where the metrics are.
        assert_eq!(roc_curve(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(pr_curve(&[false, false], &[0.1, 0.2]), None);
        assert_eq!(roc_curve(&[true, false], &[0.1, f64::NAN]), None);
        assert_eq!(pr_curve(&[], &[]), None);
    }

    #[test]
    fn curves_add_up_to_auc_and_average_precision() {
        let mut cases: Vec<(String, Vec<bool>, Vec<f64>)> = vectors()
            .cases
            .into_iter()
            .map(|c| (c.name, bools(&c.labels), c.scores))
            .collect();
        let (_, _, labels, scores) = synthetic(5000);
        cases.push(("synthetic".into(), labels, scores));
        for (name, labels, scores) in &cases {
            let (Some(auc), Some(ap)) =
                (auc_roc(labels, scores), average_precision(labels, scores))
            else {
                continue;
            };
            let roc = roc_curve(labels, scores).expect("defined with the AUC");
            assert_eq!(roc.first(), Some(&(0.0, 0.0)), "{name}");
            assert_eq!(roc.last(), Some(&(1.0, 1.0)), "{name}");
            let area = trapezoids(&roc);
            assert!((area - auc).abs() < 1e-9, "{name}: {area} vs AUC {auc}");
            let pr = pr_curve(labels, scores).expect("defined with the AP");
            assert_eq!(pr.first(), Some(&(0.0, 1.0)), "{name}");
            assert_eq!(pr.last().map(|p| p.0), Some(1.0), "{name}");
            let steps = pr_steps(&pr);
            assert!((steps - ap).abs() < 1e-12, "{name}: {steps} vs AP {ap}");
        }
    }

    #[test]
    fn downsampling_keeps_the_ends_and_the_area() {
        let (_, _, labels, scores) = synthetic(20_000);
        let roc = roc_curve(&labels, &scores).expect("defined");
        assert!(roc.len() > 500, "{} points", roc.len());
        let small = downsample(&roc, CURVE_POINTS);
        assert!(small.len() <= CURVE_POINTS && small.len() > CURVE_POINTS / 2);
        assert_eq!(small.first(), roc.first());
        assert_eq!(small.last(), roc.last());
        assert!(small
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let (full, kept) = (trapezoids(&roc), trapezoids(&small));
        assert!((full - kept).abs() < 2e-3, "{full} vs {kept}");
        let pr = pr_curve(&labels, &scores).expect("defined");
        let small = downsample(&pr, CURVE_POINTS);
        assert!(small.len() <= CURVE_POINTS);
        assert_eq!((small.first(), small.last()), (pr.first(), pr.last()));
        // Short input as it is; degenerate sizes.
        assert_eq!(downsample(&roc[..10], CURVE_POINTS), roc[..10].to_vec());
        assert_eq!(downsample(&roc, 2), vec![roc[0], roc[roc.len() - 1]]);
        assert_eq!(downsample(&roc, 3).len(), 3);
        assert!(downsample(&[], 5).is_empty());
    }

    #[test]
    fn card_precision_curve_is_card_precision_at_each_k() {
        let (days, cards, labels, scores) = synthetic(3000);
        let curve =
            card_precision_curve(&days, &cards, &labels, &scores, 1000, 200).expect("defined");
        // 40 cards a day at most: k = 1..=40, every one.
        assert_eq!(
            curve.iter().map(|c| c.0).collect::<Vec<_>>(),
            (1..=40usize).collect::<Vec<_>>()
        );
        for &(k, p) in &curve {
            let want = card_precision_at_k(&days, &cards, &labels, &scores, k).expect("defined");
            assert_eq!(p, want.mean, "k = {k}");
        }
        assert!(card_precision_curve(&days, &cards, &labels, &scores, 0, 200).is_none());
        assert!(card_precision_curve(&[1], &[1, 2], &[true], &[0.5], 10, 200).is_none());
    }

    #[test]
    fn curve_ks_are_spaced_and_hold_both_ends_and_100() {
        assert_eq!(curve_ks(5, 200), vec![1, 2, 3, 4, 5]);
        for (last, max) in [(500, 200), (201, 200), (1000, 50), (150, 10)] {
            let ks = curve_ks(last, max);
            assert!(ks.len() <= max, "{last} {max}: {ks:?}");
            assert_eq!(ks.first(), Some(&1), "{ks:?}");
            assert_eq!(ks.last(), Some(&last), "{ks:?}");
            assert!(ks.contains(&100), "{ks:?}");
            assert!(ks.windows(2).all(|w| w[0] < w[1]), "{ks:?}");
        }
    }

    #[test]
    fn stored_curves_are_small_and_agree_with_the_metrics() {
        let (days, cards, labels, scores) = synthetic(20_000);
        let c = Curves::of(&days, &cards, &labels, &scores);
        assert!(c.roc.len() <= CURVE_POINTS && c.precision_recall.len() <= CURVE_POINTS);
        assert_eq!(c.roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(c.roc.last(), Some(&(1.0, 1.0)));
        assert_eq!(c.precision_recall.first(), Some(&(0.0, 1.0)));
        let auc = auc_roc(&labels, &scores).expect("auc");
        assert!((trapezoids(&c.roc) - auc).abs() < 2e-3);
        // 40 cards a day: the card curve stops at k = 40.
        assert_eq!(c.card_precision.len(), 40);
        let cp10 = card_precision_at_k(&days, &cards, &labels, &scores, 10).expect("cp");
        assert!((c.card_precision[9].1 - cp10.mean).abs() <= 5e-7);
        // No fraud: ROC and PR are undefined, card precision is not.
        let none = Curves::of(&days, &cards, &vec![false; labels.len()], &scores);
        assert!(none.roc.is_empty() && none.precision_recall.is_empty());
        assert!(!none.is_empty() && none.card_precision.iter().all(|&(_, p)| p == 0.0));
        assert!(Curves::default().is_empty());
    }

    #[test]
    fn card_precision_follows_the_handbook() {
        // Rows deliberately not sorted by day. k = 2.
        // Day 10: cards 1 (0.9, fraud), 2 (max 0.85, fraud on another row), 3 (0.1, fraud)
        //   -> top [1, 2], 2 frauds -> 1.0; cards 1 and 2 detected.
        // Day 11: card 1 and 2 excluded (they would rank first); 5 (0.9, legit), then a tie at
        //   0.7 between 3 (fraud) and 6 (legit), card 3 first -> top [5, 3] -> 0.5; 3 detected.
        // Day 12: card 3 excluded; only card 7 (fraud) -> 1 / k = 0.5.
        let rows: [(i32, i64, bool, f64); 12] = [
            (12, 7, true, 0.4),
            (11, 6, false, 0.7),
            (10, 2, true, 0.3),
            (12, 3, true, 0.99),
            (11, 1, true, 0.95),
            (10, 1, true, 0.9),
            (11, 3, true, 0.7),
            (10, 3, true, 0.1),
            (11, 2, false, 0.99),
            (10, 2, false, 0.85),
            (11, 5, false, 0.9),
            (11, 3, false, 0.2),
        ];
        let days: Vec<i32> = rows.iter().map(|r| r.0).collect();
        let cards: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let labels: Vec<bool> = rows.iter().map(|r| r.2).collect();
        let scores: Vec<f64> = rows.iter().map(|r| r.3).collect();
        let cp = card_precision_at_k(&days, &cards, &labels, &scores, 2).expect("defined");
        assert_eq!(cp.per_day, vec![(10, 1.0), (11, 0.5), (12, 0.5)]);
        assert!((cp.mean - 2.0 / 3.0).abs() < 1e-15, "{}", cp.mean);

        // k larger than the number of cards: still divided by k.
        let cp = card_precision_at_k(&days, &cards, &labels, &scores, 10).expect("defined");
        // Day 10: 3 frauds / 10; all three detected. Day 11: 5 and 6 legit -> 0. Day 12: 7 -> 0.1.
        assert_eq!(cp.per_day, vec![(10, 0.3), (11, 0.0), (12, 0.1)]);
    }
}
