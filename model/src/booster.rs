//! Fitting a model of either family with early stopping on a time-ordered validation slice
//! ([`fit`]: the family's library boosts, this module picks the rounds), and libxgboost's batch
//! prediction and TreeSHAP (`pred_contribs`) for XGBoost models (through [`crate::xgboost`]).
//! Everything else (scoring on the request path, importance) reads the saved model with the
//! native evaluators ([`crate::loaded::LoadedModel`]).

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::loaded::ModelFamily;
use crate::params::TrainParams;
use crate::xgboost::{Booster, DMatrix, Prediction};

/// A row-major feature matrix with labels, in time order.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    pub num_features: usize,
    /// `rows * num_features` values; NaN = missing.
    pub values: Vec<f32>,
    pub labels: Vec<f32>,
}

impl Matrix {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Rows `[start, end)`.
    pub fn slice(&self, start: usize, end: usize) -> Matrix {
        Matrix {
            num_features: self.num_features,
            values: self.values[start * self.num_features..end * self.num_features].to_vec(),
            labels: self.labels[start..end].to_vec(),
        }
    }

    fn dmatrix(&self) -> Result<DMatrix> {
        let mut d = DMatrix::dense(&self.values, self.num_features)?;
        d.set_labels(&self.labels)?;
        Ok(d)
    }
}

/// What one fit produced.
#[derive(Debug, Clone, Serialize)]
pub struct Fitted {
    /// The family trained, which fixes the model file's format.
    pub family: ModelFamily,
    /// The model file: XGBoost JSON, or LightGBM's text model.
    #[serde(skip)]
    pub model_file: Vec<u8>,
    /// Boosting rounds in the final model.
    pub rounds: u32,
    /// Round chosen by early stopping (None when it did not run).
    pub best_round: Option<u32>,
    /// Validation average precision at the chosen round.
    pub validation_aucpr: Option<f64>,
    /// Wall time of the library's fits (validation fit plus refit).
    pub fit_seconds: f64,
}

/// Fits a model of `params`' family. With early stopping, `valid_rows` trailing rows of
/// `train` (in time order) pick the number of rounds; the final model is then refit on all
/// rows. `names` are stored in the model.
pub fn fit(
    train: &Matrix,
    names: &[String],
    valid_rows: usize,
    params: &TrainParams,
) -> Result<Fitted> {
    params.validate()?;
    if train.rows() == 0 {
        return Err(Error::invalid("the training set is empty"));
    }
    let started = Instant::now();
    let trainer = Trainer {
        family: params.family(),
        names,
        library: params.library_params(),
    };
    let use_valid = params.early_stopping_rounds > 0 && valid_rows > 0 && valid_rows < train.rows();
    let (rounds, best_round, validation_aucpr) = if use_valid {
        let cut = train.rows() - valid_rows;
        let fit_part = train.slice(0, cut);
        let valid_part = train.slice(cut, train.rows());
        let (best, score) = choose_rounds(&trainer, &fit_part, &valid_part, params)?;
        (best + 1, Some(best), score)
    } else {
        (params.n_estimators(), None, None)
    };
    let boosted = trainer.boost(train, None, rounds, &mut |_: u32, _: f64| false)?;
    Ok(Fitted {
        family: trainer.family,
        model_file: boosted.model_file,
        rounds: boosted.rounds,
        best_round,
        validation_aucpr,
        fit_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Boosts on `fit_part`, evaluating AP on `valid` each round; returns the best round.
fn choose_rounds(
    trainer: &Trainer<'_>,
    fit_part: &Matrix,
    valid: &Matrix,
    params: &TrainParams,
) -> Result<(u32, Option<f64>)> {
    let mut best: (u32, f64) = (0, f64::NEG_INFINITY);
    trainer.boost(
        fit_part,
        Some(valid),
        params.n_estimators(),
        &mut |round: u32, ap: f64| {
            if ap > best.1 {
                best = (round, ap);
            }
            round - best.0 >= params.early_stopping_rounds
        },
    )?;
    let score = best.1.is_finite().then_some(best.1);
    Ok((best.0, score))
}

/// What one boosting run gave: the model file and how many rounds it holds.
pub(crate) struct Boosted {
    pub model_file: Vec<u8>,
    pub rounds: u32,
}

/// One family's library as [`fit`] drives it.
struct Trainer<'a> {
    family: ModelFamily,
    names: &'a [String],
    /// [`TrainParams::library_params`].
    library: Vec<(&'static str, String)>,
}

impl Trainer<'_> {
    /// Runs up to `rounds` boosting rounds on `data`. With `valid`, `after_round(round,
    /// validation average precision)` follows each round and stops the run by returning true.
    fn boost(
        &self,
        data: &Matrix,
        valid: Option<&Matrix>,
        rounds: u32,
        after_round: &mut dyn FnMut(u32, f64) -> bool,
    ) -> Result<Boosted> {
        match self.family {
            ModelFamily::XGBoost => {
                boost_xgboost(data, valid, self.names, &self.library, rounds, after_round)
            }
            ModelFamily::LightGBM => crate::lightgbm::train::boost(
                data,
                valid,
                self.names,
                &self.library,
                rounds,
                after_round,
            ),
        }
    }
}

/// [`Trainer::boost`] through libxgboost.
fn boost_xgboost(
    data: &Matrix,
    valid: Option<&Matrix>,
    names: &[String],
    library: &[(&'static str, String)],
    rounds: u32,
    after_round: &mut dyn FnMut(u32, f64) -> bool,
) -> Result<Boosted> {
    let dtrain = data.dmatrix()?;
    let dvalid = valid.map(Matrix::dmatrix).transpose()?;
    let mut booster = Booster::new(&[&dtrain])?;
    for (k, v) in library {
        booster.set_param(k, v)?;
    }
    if !names.is_empty() {
        booster.set_feature_names(names)?;
    }
    let mut done = 0;
    for round in 0..rounds {
        booster.update(round, &dtrain)?;
        done = round + 1;
        if let Some(dvalid) = &dvalid {
            if after_round(round, booster.evaluate(round, dvalid)?) {
                break;
            }
        }
    }
    Ok(Boosted {
        model_file: booster.save_json()?,
        rounds: done,
    })
}

/// libxgboost's own batch prediction of a JSON model (probabilities), for evaluation of large
/// sets and as the reference the native evaluator is tested against.
pub fn predict(json: &[u8], values: &[f32], cols: usize) -> Result<Vec<f32>> {
    let booster = Booster::load(json)?;
    let d = DMatrix::dense(values, cols)?;
    booster.predict(&d, Prediction::Probability)
}

/// TreeSHAP contributions for single rows, through libxgboost (`pred_contribs`). The booster
/// is not thread-safe, so calls take turns; explanations are for analysts, not the hot path.
pub struct Explainer {
    booster: Mutex<Booster>,
    num_features: usize,
}

impl std::fmt::Debug for Explainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explainer")
            .field("num_features", &self.num_features)
            .finish()
    }
}

/// The `n` contributions largest in magnitude, largest first.
pub fn largest(mut all: Vec<Contribution>, n: usize) -> Vec<Contribution> {
    all.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    all.truncate(n);
    all
}

/// One feature's part in a prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Contribution {
    pub feature: String,
    pub value: f64,
    /// Contribution to the log-odds (positive pushes towards fraud).
    pub contribution: f64,
}

impl Explainer {
    /// Every feature's value and contribution, in model order (the bias left out).
    pub fn explain(&self, names: &[String], row: &[f64]) -> Result<Vec<Contribution>> {
        let c = self.contributions(row)?;
        Ok(names
            .iter()
            .zip(row)
            .zip(&c)
            .map(|((name, &value), &contribution)| Contribution {
                feature: name.clone(),
                value,
                contribution: f64::from(contribution),
            })
            .collect())
    }

    /// The `top` largest contributions by magnitude, with feature names and values.
    pub fn top(&self, names: &[String], row: &[f64], top: usize) -> Result<Vec<Contribution>> {
        Ok(largest(self.explain(names, row)?, top))
    }

    pub fn new(json: &[u8], num_features: usize) -> Result<Explainer> {
        Ok(Explainer {
            booster: Mutex::new(Booster::load(json)?),
            num_features,
        })
    }

    /// Per-feature contributions to the margin (log-odds), then the bias as the last entry;
    /// they sum to the margin.
    pub fn contributions(&self, row: &[f64]) -> Result<Vec<f32>> {
        if row.len() != self.num_features {
            return Err(Error::invalid(format!(
                "explain: {} values for a model of {} features",
                row.len(),
                self.num_features
            )));
        }
        let values: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        let d = DMatrix::dense(&values, self.num_features)?;
        let booster = self
            .booster
            .lock()
            .map_err(|_| Error::Model("the explainer is poisoned by an earlier panic".into()))?;
        booster.predict(&d, Prediction::Contributions)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::loaded::LoadedModel;
    use crate::params::{LightGbmParams, ModelParams, XGBoostParams};
    use crate::trees::Forest;

    /// A deterministic pseudo-random stream (no rand dependency needed for a test).
    pub(crate) struct Lcg(pub u64);
    impl Lcg {
        pub(crate) fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Rows of 5 features where a fifth of the values are missing and the label depends on
    /// them.
    fn synthetic(rows: usize, seed: u64) -> Matrix {
        synthetic_wide(rows, 5, seed)
    }

    /// Rows of `cols` (>= 3) features on a half-integer grid, a fifth of them missing; the
    /// label depends on the first three (and on whether the second is missing).
    pub(crate) fn synthetic_wide(rows: usize, cols: usize, seed: u64) -> Matrix {
        let mut r = Lcg(seed);
        let mut m = Matrix {
            num_features: cols,
            ..Matrix::default()
        };
        for _ in 0..rows {
            let x: Vec<f32> = (0..cols)
                .map(|_| {
                    if r.uniform() < 0.2 {
                        f32::NAN
                    } else {
                        (r.uniform() * 10.0).round() as f32 / 2.0
                    }
                })
                .collect();
            let signal =
                x[0].max(0.0) + if x[1].is_nan() { 3.0 } else { x[1] } - x[2].max(0.0) * 0.5;
            m.labels
                .push(f32::from(u8::from(signal + r.uniform() as f32 * 4.0 > 6.0)));
            m.values.extend(x);
        }
        m
    }

    /// `family` with fraudlake's defaults but these rounds, on one thread; LightGBM with
    /// trees for a small data set (15 leaves of at least 20 rows, learning rate 0.2).
    pub(crate) fn test_params(
        family: ModelFamily,
        n_estimators: u32,
        early_stopping_rounds: u32,
    ) -> TrainParams {
        let model = match family {
            ModelFamily::XGBoost => ModelParams::XGBoost(XGBoostParams {
                n_estimators,
                ..XGBoostParams::DEFAULT
            }),
            ModelFamily::LightGBM => ModelParams::LightGBM(LightGbmParams {
                n_estimators,
                num_leaves: 15,
                min_data_in_leaf: 20,
                learning_rate: 0.2,
                ..LightGbmParams::DEFAULT
            }),
        };
        TrainParams {
            model,
            threads: 1,
            early_stopping_rounds,
            ..TrainParams::defaults(family)
        }
    }

    /// Probabilities that spread from below `lo` to above `hi`: the model is not trivial.
    pub(crate) fn assert_spread(probabilities: &[f64], lo: f64, hi: f64) {
        let (min, max) = probabilities
            .iter()
            .fold((1.0f64, 0.0f64), |(l, h), &p| (l.min(p), h.max(p)));
        assert!(min < lo && max > hi, "predictions span {min}..{max}");
    }

    #[test]
    fn native_scorer_matches_libxgboost_on_10000_rows_with_missing_values() {
        let train = synthetic(5_000, 7);
        let names: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
        let params = test_params(ModelFamily::XGBoost, 60, 0);
        let fitted = fit(&train, &names, 0, &params).expect("trains");
        assert_eq!(fitted.rounds, 60);
        let forest = Forest::from_json(&fitted.model_file).expect("parses");
        assert_eq!(forest.num_trees(), 60);
        assert_eq!(forest.feature_names(), names.as_slice());

        // 10,000 fresh rows; values on a half-integer grid sit exactly on split thresholds.
        let test = synthetic(10_000, 99);
        assert!(test.values.iter().any(|v| v.is_nan()));
        let reference = predict(&fitted.model_file, &test.values, 5).expect("libxgboost predicts");
        let rows: Vec<f64> = test.values.iter().map(|&v| f64::from(v)).collect();
        let native = forest.predict_many(&rows);
        assert_eq!(reference.len(), 10_000);
        let worst = reference
            .iter()
            .zip(&native)
            .map(|(a, b)| (f64::from(*a) - b).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 1e-6, "native vs libxgboost: max abs diff {worst}");
        assert_spread(&native, 0.1, 0.9);
    }

    #[test]
    fn early_stopping_picks_rounds_then_refits_on_everything() {
        let train = synthetic(4_000, 3);
        let names: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
        for family in ModelFamily::ALL {
            let params = test_params(family, 500, 10);
            let fitted = fit(&train, &names, 800, &params).expect("trains");
            assert_eq!(fitted.family, family);
            let best = fitted.best_round.expect("early stopping ran");
            assert_eq!(fitted.rounds, best + 1, "{family}");
            assert!(
                fitted.rounds < 500,
                "{family}: stopped early at {}",
                fitted.rounds
            );
            assert!(
                fitted.validation_aucpr.is_some_and(|ap| ap > 0.5),
                "{family}: {:?}",
                fitted.validation_aucpr
            );
            let model = LoadedModel::from_bytes(family, &fitted.model_file).expect("loads");
            assert_eq!(model.num_trees() as u32, fitted.rounds, "{family}");
        }
    }

    #[test]
    fn explanations_sum_to_the_margin() {
        let train = synthetic(2_000, 11);
        let names: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
        let params = test_params(ModelFamily::XGBoost, 20, 0);
        let fitted = fit(&train, &names, 0, &params).expect("trains");
        let forest = Forest::from_json(&fitted.model_file).expect("parses");
        let explainer = Explainer::new(&fitted.model_file, 5).expect("loads");
        let row = [4.0, f64::NAN, 1.5, 0.0, 2.0];
        let contribs = explainer.contributions(&row).expect("explains");
        assert_eq!(contribs.len(), 6);
        let sum: f64 = contribs.iter().map(|&c| f64::from(c)).sum();
        let margin = f64::from(forest.margin(&row).expect("width"));
        assert!(
            (sum - margin).abs() < 1e-4,
            "contributions {sum} vs margin {margin}"
        );
        assert!(explainer.contributions(&row[..3]).is_err());
    }

    #[test]
    fn fit_refuses_bad_parameters_and_an_empty_set() {
        let train = synthetic(100, 1);
        for family in ModelFamily::ALL {
            let e = fit(&train, &[], 0, &test_params(family, 0, 0))
                .expect_err("no rounds")
                .to_string();
            assert!(e.contains("n_estimators"), "{family}: {e}");
            let empty = Matrix {
                num_features: 2,
                ..Matrix::default()
            };
            assert!(fit(&empty, &[], 0, &TrainParams::defaults(family)).is_err());
        }
    }
}
