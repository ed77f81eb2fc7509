//! The evaluation protocol of the Fraud Detection Handbook (chapters 3 and 5): train on a
//! period, wait a delay (labels arrive late), test on the days after it; cards already known
//! to be compromised are removed from each test day, because an investigator would not need a
//! model to flag them. Prequential folds slide the whole window back one test period at a time.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::dataset::Rows;
use crate::error::{Error, Result};
use crate::metrics;
use fraudlake_pipeline::columns::day_number;

/// Train / delay / test periods, in whole days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Periods {
    pub train_start: NaiveDate,
    pub train_days: u32,
    pub delay_days: u32,
    pub test_days: u32,
}

impl Periods {
    pub fn validate(&self) -> Result<()> {
        if self.train_days == 0 || self.test_days == 0 {
            return Err(Error::invalid(
                "--train-days and --test-days must be at least 1",
            ));
        }
        if self.train_days > 3660 || self.delay_days > 3660 || self.test_days > 3660 {
            return Err(Error::invalid(
                "periods longer than ten years are not supported",
            ));
        }
        Ok(())
    }

    pub fn train_end(&self) -> NaiveDate {
        self.train_start + Duration::days(i64::from(self.train_days) - 1)
    }

    pub fn test_start(&self) -> NaiveDate {
        self.train_start + Duration::days(i64::from(self.train_days + self.delay_days))
    }

    pub fn test_end(&self) -> NaiveDate {
        self.test_start() + Duration::days(i64::from(self.test_days) - 1)
    }

    /// Fold `k` of a prequential validation: the window moved back `k` test periods.
    pub fn fold(&self, k: u32) -> Periods {
        Periods {
            train_start: self.train_start - Duration::days(i64::from(k * self.test_days)),
            ..*self
        }
    }
}

/// Keeps the test rows whose card was not known to be compromised on that day: a card is
/// known on test day `d` if it had a fraud between the start of training and `d - delay - 1`
/// (labels of the last `delay` days are not in yet). `first_fraud` maps a card to its first
/// fraud day (days since epoch) counted from the start of training.
pub fn unknown_cards(test: &Rows, first_fraud: &HashMap<i64, i32>, delay_days: u32) -> Vec<bool> {
    let delay = delay_days as i32;
    test.customer_id
        .iter()
        .zip(&test.day)
        .map(|(card, &day)| match first_fraud.get(card) {
            Some(&first) => first > day - delay - 1,
            None => true,
        })
        .collect()
}

/// Everything fraudlake reports about a model on a test set.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Metrics {
    pub auc_roc: Option<f64>,
    pub average_precision: Option<f64>,
    pub card_precision_at_100: Option<f64>,
    pub log_loss: Option<f64>,
    pub brier_score: Option<f64>,
    /// Precision and recall when flagging scores >= `threshold`.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub threshold: f64,
    pub test_rows: usize,
    pub test_frauds: usize,
    /// Test rows dropped as cards already known to be compromised.
    pub known_cards_removed: usize,
}

impl Metrics {
    /// The metric by its name (as in `--primary-metric` and JSON output); higher is better
    /// for all but the losses, which are negated here so that "greater is better" always.
    pub fn score(&self, name: &str) -> Result<Option<f64>> {
        Ok(match name {
            "auc_roc" => self.auc_roc,
            "average_precision" => self.average_precision,
            "card_precision_at_100" => self.card_precision_at_100,
            "log_loss" => self.log_loss.map(|v| -v),
            "brier_score" => self.brier_score.map(|v| -v),
            other => {
                return Err(Error::invalid(format!(
                    "unknown metric '{other}' (known: {})",
                    METRIC_NAMES.join(", ")
                )))
            }
        })
    }
}

/// Names accepted by [`Metrics::score`].
pub const METRIC_NAMES: &[&str] = &[
    "auc_roc",
    "average_precision",
    "card_precision_at_100",
    "log_loss",
    "brier_score",
];

/// Scores `probs` against the (already filtered) test rows.
pub fn evaluate(test: &Rows, probs: &[f64], threshold: f64, removed: usize) -> Metrics {
    let (precision, recall) = metrics::precision_recall_at(&test.labels, probs, threshold)
        .map_or((None, None), |(p, r)| (Some(p), Some(r)));
    Metrics {
        auc_roc: metrics::auc_roc(&test.labels, probs),
        average_precision: metrics::average_precision(&test.labels, probs),
        card_precision_at_100: metrics::card_precision_at_k(
            &test.day,
            &test.customer_id,
            &test.labels,
            probs,
            100,
        )
        .map(|c| c.mean),
        log_loss: metrics::log_loss(&test.labels, probs),
        brier_score: metrics::brier_score(&test.labels, probs),
        precision,
        recall,
        threshold,
        test_rows: test.len(),
        test_frauds: test.frauds(),
        known_cards_removed: removed,
    }
}

/// Day number helper re-exported for callers building periods from dates.
pub fn day(d: NaiveDate) -> i32 {
    day_number(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("test date")
    }

    #[test]
    fn handbook_chapter_3_periods() {
        let p = Periods {
            train_start: date("2018-07-25"),
            train_days: 7,
            delay_days: 7,
            test_days: 7,
        };
        assert_eq!(p.train_end(), date("2018-07-31"));
        assert_eq!(p.test_start(), date("2018-08-08"));
        assert_eq!(p.test_end(), date("2018-08-14"));
        assert_eq!(p.fold(3).train_start, date("2018-07-04"));
    }

    #[test]
    fn known_cards_are_those_with_a_fraud_before_the_delay() {
        let d0 = day(date("2018-08-08"));
        let test = Rows {
            feature_names: vec![],
            values: vec![],
            labels: vec![false; 4],
            tx_id: vec![1, 2, 3, 4],
            customer_id: vec![10, 11, 12, 10],
            day: vec![d0, d0, d0, d0 + 1],
        };
        // Delay 7: on d0 labels up to d0 - 8 are known.
        let first: HashMap<i64, i32> = [(10, d0 - 7), (11, d0 - 8)].into_iter().collect();
        // card 10: fraud on d0-7 is not known on d0 but is on d0+1; card 11 known; 12 never.
        assert_eq!(
            unknown_cards(&test, &first, 7),
            vec![true, false, true, false]
        );
    }
}
