//! The Fraud Detection Handbook's chapter 5 protocol as one call, what `fraudlake evaluate
//! --protocol prequential` prints: a fresh model per fold, trained and tested on a window that
//! slides back one test period per fold ([`Periods::fold`]; known compromised cards removed
//! from each test day as in chapter 3), nothing registered; the report holds every fold and
//! the mean ± sample standard deviation of the handbook's three metrics (AUC ROC, average
//! precision, card precision@100), the numbers of its chapter 5 tables.
//!
//! It is [`crate::train::cross_validate`] with one setting: `train --folds --grid` runs the
//! same loop over several settings to choose parameters, so `evaluate --protocol prequential`
//! and `train --folds` with the same parameters give the same numbers.

use chrono::NaiveDate;
use fraudlake_pipeline::lake::Lake;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::loaded::ModelFamily;
use crate::params::TrainParams;
use crate::protocol::{Metrics, Periods};
use crate::train::{cross_validate, FeatureSpec, MeanStd, SettingResult};

/// What to validate.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The latest window (fold 1); fold k starts `k - 1` test periods earlier.
    pub periods: Periods,
    pub folds: u32,
    /// The family trained on each fold.
    pub model: ModelFamily,
    /// Its parameters (another family's are replaced by `model`'s defaults, the run's
    /// settings kept: [`TrainParams::for_model`]).
    pub params: TrainParams,
    /// Decision threshold of the precision and recall in each fold's metrics.
    pub threshold: f64,
}

/// One fold: its days and the metrics of the model trained on them.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    /// 1 for the latest window, k for the window moved back `k - 1` test periods.
    pub fold: u32,
    pub train_from: NaiveDate,
    pub train_to: NaiveDate,
    pub test_from: NaiveDate,
    pub test_to: NaiveDate,
    pub metrics: Metrics,
}

/// A prequential validation: every fold, and the mean ± std of the handbook's metrics over them.
#[derive(Debug, Clone, Serialize)]
pub struct Prequential {
    /// `prequential`.
    pub protocol: &'static str,
    pub model: ModelFamily,
    /// The feature set's sha256.
    pub feature_set: String,
    pub train_days: u32,
    pub delay_days: u32,
    pub test_days: u32,
    pub params: TrainParams,
    pub threshold: f64,
    /// Latest first.
    pub folds: Vec<Fold>,
    pub auc_roc: MeanStd,
    pub average_precision: MeanStd,
    pub card_precision_at_100: MeanStd,
    /// Training time summed over the folds.
    pub fit_seconds: f64,
}

impl Prequential {
    /// The report of `plan` from [`cross_validate`]'s result for its one setting.
    fn of(plan: &Plan, spec: &FeatureSpec, result: SettingResult) -> Prequential {
        let folds = result
            .folds
            .iter()
            .zip(1u32..)
            .map(|((train_start, metrics), fold)| {
                let p = Periods {
                    train_start: *train_start,
                    ..plan.periods
                };
                Fold {
                    fold,
                    train_from: p.train_start,
                    train_to: p.train_end(),
                    test_from: p.test_start(),
                    test_to: p.test_end(),
                    metrics: metrics.clone(),
                }
            })
            .collect();
        Prequential {
            protocol: "prequential",
            model: plan.model,
            feature_set: spec.sha256.clone(),
            train_days: plan.periods.train_days,
            delay_days: plan.periods.delay_days,
            test_days: plan.periods.test_days,
            params: result.params,
            threshold: plan.threshold,
            folds,
            auc_roc: result.auc_roc,
            average_precision: result.average_precision,
            card_precision_at_100: result.card_precision_at_100,
            fit_seconds: result.fit_seconds,
        }
    }
}

/// Runs `plan` on the lake as it is now: `progress(folds done, folds)` after each fold.
pub async fn prequential(
    lake: &Lake,
    spec: &FeatureSpec,
    plan: &Plan,
    progress: impl FnMut(usize, usize),
) -> Result<Prequential> {
    let settings = [(
        plan.model.name().to_string(),
        plan.params.for_model(plan.model),
    )];
    let result = cross_validate(
        lake,
        spec,
        &plan.periods,
        plan.folds,
        &settings,
        plan.threshold,
        progress,
    )
    .await?
    .pop()
    .ok_or_else(|| Error::Model("the prequential validation gave no result".into()))?;
    Ok(Prequential::of(plan, spec, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("test date")
    }

    #[test]
    fn folds_are_numbered_from_the_latest_window_with_their_days() {
        let plan = Plan {
            periods: Periods {
                train_start: date("2018-08-15"),
                train_days: 7,
                delay_days: 7,
                test_days: 7,
            },
            folds: 2,
            model: ModelFamily::XGBoost,
            params: TrainParams::default(),
            threshold: 0.5,
        };
        let spec = FeatureSpec {
            sha256: "abc".into(),
            sql: String::new(),
            names: vec![],
        };
        let metrics = |auc: f64| Metrics {
            auc_roc: Some(auc),
            ..Metrics::default()
        };
        let result = SettingResult {
            setting: "xgboost".into(),
            params: TrainParams::default(),
            folds: vec![
                (plan.periods.fold(0).train_start, metrics(0.9)),
                (plan.periods.fold(1).train_start, metrics(0.8)),
            ],
            auc_roc: MeanStd {
                mean: Some(0.85),
                std: Some(0.07),
            },
            average_precision: MeanStd::default(),
            card_precision_at_100: MeanStd::default(),
            fit_seconds: 1.5,
        };
        let r = Prequential::of(&plan, &spec, result);
        assert_eq!(r.folds.len(), 2);
        let (first, second) = (&r.folds[0], &r.folds[1]);
        assert_eq!((first.fold, second.fold), (1, 2));
        // The handbook's chapter 5 test folds: 08-29..09-04, then one week earlier.
        assert_eq!(first.train_from, date("2018-08-15"));
        assert_eq!(first.train_to, date("2018-08-21"));
        assert_eq!(first.test_from, date("2018-08-29"));
        assert_eq!(first.test_to, date("2018-09-04"));
        assert_eq!(second.train_from, date("2018-08-08"));
        assert_eq!(second.test_to, date("2018-08-28"));
        assert_eq!(second.metrics.auc_roc, Some(0.8));
        assert_eq!(r.auc_roc.mean, Some(0.85));
        assert_eq!((r.train_days, r.delay_days, r.test_days), (7, 7, 7));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["protocol"], "prequential");
        assert_eq!(json["model"], "xgboost");
        assert_eq!(json["folds"][1]["test_from"], "2018-08-22");
        assert_eq!(json["auc_roc"]["std"], 0.07);
    }
}
