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
    let n = days.len();
    if k == 0 || cards.len() != n || !valid_scores(labels, scores) || labels.len() != n {
        return None;
    }

    // Rows grouped by day, then by card, in one sort.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by_key(|&i| (days[i], cards[i]));

    let mut detected: HashSet<i64> = HashSet::new();
    let mut per_day = Vec::new();
    // (max score, card, any fraud) per card not yet detected, reused across days.
    let mut ranked: Vec<(f64, i64, bool)> = Vec::new();
    for day_rows in order.chunk_by(|&a, &b| days[a] == days[b]) {
        let Some(&first) = day_rows.first() else {
            continue;
        };
        ranked.clear();
        for card_rows in day_rows.chunk_by(|&a, &b| cards[a] == cards[b]) {
            let Some(&first_row) = card_rows.first() else {
                continue;
            };
            let card = cards[first_row];
            if detected.contains(&card) {
                continue;
            }
            let max_score = card_rows
                .iter()
                .map(|&i| scores[i])
                .fold(f64::NEG_INFINITY, f64::max);
            let fraud = card_rows.iter().any(|&i| labels[i]);
            ranked.push((max_score, card, fraud));
        }
        ranked.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let top = &ranked[..k.min(ranked.len())];
        let hits = top.iter().filter(|&&(_, _, fraud)| fraud).count();
        per_day.push((days[first], hits as f64 / k as f64));
        detected.extend(
            top.iter()
                .filter(|&&(_, _, fraud)| fraud)
                .map(|&(_, card, _)| card),
        );
    }

    let mean = per_day.iter().map(|&(_, p)| p).sum::<f64>() / per_day.len() as f64;
    Some(CardPrecision { mean, per_day })
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
