//! LightGBM training (issue #18): the boosting of [`crate::booster::fit`] through LightGBM's
//! C API ([`super::c_api`]), given [`crate::params::TrainParams::library_params`]; the model
//! is LightGBM's text model, which [`super::LightGbmForest`] scores and explains, and which
//! Python's `lightgbm.Booster(model_file=...)` loads.

use super::c_api::{Booster, Dataset, Parameters};
use crate::booster::{Boosted, Matrix};
use crate::error::{Error, Result};

/// Boosts up to `rounds` iterations on `data` (LightGBM stops sooner when no split is left).
/// With `valid`, binned with `data`'s bins, `after_round(iteration, validation average
/// precision)` follows each iteration and stops the run by returning true. The parameters go
/// to the dataset and to the booster alike, as Python's `lgb.train` passes them.
pub(crate) fn boost(
    data: &Matrix,
    valid: Option<&Matrix>,
    names: &[String],
    library: &[(&'static str, String)],
    rounds: u32,
    after_round: &mut dyn FnMut(u32, f64) -> bool,
) -> Result<Boosted> {
    check_names(names)?;
    let params = Parameters::new(library)?;
    let mut train = Dataset::dense(&data.values, &data.labels, data.num_features, &params, None)?;
    if !names.is_empty() {
        train.set_feature_names(names)?;
    }
    let valid = valid
        .map(|v| Dataset::dense(&v.values, &v.labels, v.num_features, &params, Some(&train)))
        .transpose()?;
    let mut booster = Booster::new(&train, &params)?;
    if let Some(valid) = &valid {
        booster.add_valid(valid)?;
    }
    for round in 0..rounds {
        if booster.update()? {
            break;
        }
        if valid.is_some() {
            let ap = booster
                .validation_scores()?
                .first()
                .copied()
                .ok_or_else(|| Error::Model("LightGBM gave no validation score".into()))?;
            if after_round(round, ap) {
                break;
            }
        }
    }
    Ok(Boosted {
        rounds: booster.iterations()?,
        model_file: booster.model_text()?,
    })
}

/// LightGBM refuses feature names with JSON's special characters and turns spaces into `_`
/// (the model's names would then not be the feature set's, and the registry would refuse it);
/// the text model separates names by whitespace. Refused here, naming the column.
fn check_names(names: &[String]) -> Result<()> {
    let bad = names.iter().find(|name| {
        name.is_empty()
            || name
                .chars()
                .any(|c| c.is_whitespace() || "\",:[]{}".contains(c))
    });
    match bad {
        Some(name) => Err(Error::invalid(format!(
            "LightGBM cannot store the feature name '{name}' (empty, or with whitespace or one of \
             \" , : [ ] {{ }}): give the column another name in the feature SQL"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use lightgbm3::Booster as Reference;

    use crate::booster::tests::{assert_spread, synthetic_wide, test_params, Lcg};
    use crate::booster::{fit, Fitted};
    use crate::lightgbm::LightGbmForest;
    use crate::loaded::{LoadedModel, ModelFamily};
    use crate::params::TrainParams;

    const FEATURES: usize = 8;

    fn names() -> Vec<String> {
        (0..FEATURES).map(|i| format!("f{i}")).collect()
    }

    fn lightgbm_params(n_estimators: u32) -> TrainParams {
        test_params(ModelFamily::LightGBM, n_estimators, 0)
    }

    fn trained() -> Fitted {
        let train = synthetic_wide(2_000, FEATURES, 7);
        let fitted = fit(&train, &names(), 0, &lightgbm_params(40)).expect("trains");
        assert_eq!(fitted.family, ModelFamily::LightGBM);
        assert_eq!(fitted.rounds, 40);
        fitted
    }

    /// Every split of the model text as (feature, threshold), read from its `split_feature=`
    /// and `threshold=` lines (LightGBM writes thresholds with 17 significant digits: the very
    /// doubles it compares with).
    fn thresholds(model: &str) -> Vec<(usize, f64)> {
        let mut features: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        for line in model.lines() {
            if let Some(list) = line.strip_prefix("split_feature=") {
                features = list
                    .split_whitespace()
                    .map(|f| f.parse().expect("a feature index"))
                    .collect();
            } else if let Some(list) = line.strip_prefix("threshold=") {
                let values = list
                    .split_whitespace()
                    .map(|t| t.parse::<f64>().expect("a threshold"));
                out.extend(features.iter().copied().zip(values));
            }
        }
        out
    }

    /// 10,000 rows of `FEATURES` columns: a tenth of the cells NaN, a quarter (of a feature
    /// the model splits on) on one of its split thresholds or one ulp either side, zeros, the
    /// rest drawn over the training range.
    fn awkward_rows(splits: &[(usize, f64)]) -> (Vec<f64>, usize, usize) {
        let mut r = Lcg(2024);
        let mut rows = Vec::with_capacity(10_000 * FEATURES);
        let (mut nan, mut on_threshold) = (0, 0);
        for _ in 0..10_000 {
            for feature in 0..FEATURES {
                let of_feature: Vec<f64> = splits
                    .iter()
                    .filter(|(f, _)| *f == feature)
                    .map(|(_, t)| *t)
                    .collect();
                let u = r.uniform();
                let value = if u < 0.1 {
                    nan += 1;
                    f64::NAN
                } else if u < 0.35 && !of_feature.is_empty() {
                    let t = of_feature
                        [(r.uniform() * of_feature.len() as f64) as usize % of_feature.len()];
                    match (r.uniform() * 3.0) as u32 {
                        0 => {
                            on_threshold += 1;
                            t
                        }
                        1 => ulp_away(t, true),
                        _ => ulp_away(t, false),
                    }
                } else if u < 0.4 {
                    0.0
                } else {
                    (r.uniform() * 12.0 - 1.0).round() / 2.0
                };
                rows.push(value);
            }
        }
        (rows, nan, on_threshold)
    }

    /// The double next to `t` (away from zero when `up`, towards it otherwise); 0 and
    /// non-finite values stay.
    fn ulp_away(t: f64, up: bool) -> f64 {
        if t == 0.0 || !t.is_finite() {
            return t;
        }
        let bits = t.to_bits();
        f64::from_bits(if up { bits + 1 } else { bits - 1 })
    }

    #[test]
    fn native_scorer_matches_lightgbm_predict_on_10000_rows_with_nan_and_thresholds() {
        let fitted = trained();
        let text = std::str::from_utf8(&fitted.model_file).expect("UTF-8 text");
        assert!(
            text.starts_with("tree\n"),
            "{}",
            &text[..40.min(text.len())]
        );
        let splits = thresholds(text);
        assert!(splits.len() > 100, "{} splits", splits.len());
        let (rows, nan, on_threshold) = awkward_rows(&splits);
        assert!(
            nan > 5_000 && on_threshold > 2_000,
            "{nan} NaN, {on_threshold} on thresholds"
        );

        let model =
            LoadedModel::from_bytes(ModelFamily::LightGBM, &fitted.model_file).expect("loads");
        assert_eq!(model.feature_names(), names().as_slice());
        assert_eq!(model.num_trees(), 40);
        let native = model.predict_many(&rows);
        let reference = Reference::from_string(text)
            .expect("LightGBM loads its model")
            .predict(rows.as_slice(), FEATURES as i32, true)
            .expect("LightGBM predicts");
        assert_eq!(native.len(), 10_000);
        assert_eq!(reference.len(), 10_000);
        let (worst, at) = native
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold((0.0f64, 0), |(w, at), (i, d)| {
                if d > w || d.is_nan() {
                    (if d.is_nan() { f64::INFINITY } else { d }, i)
                } else {
                    (w, at)
                }
            });
        assert!(
            worst <= 1e-6,
            "native vs LightGBM: {worst} on row {at}: {:?}",
            &rows[at * FEATURES..(at + 1) * FEATURES]
        );
        assert_spread(&native, 0.2, 0.8);
    }

    #[test]
    fn native_contributions_match_lightgbm_pred_contrib() {
        let fitted = trained();
        let text = std::str::from_utf8(&fitted.model_file).expect("UTF-8 text");
        let (rows, _, _) = awkward_rows(&thresholds(text));
        let rows = &rows[..300 * FEATURES];
        let forest = LightGbmForest::from_bytes(&fitted.model_file).expect("parses");
        let reference = Reference::from_string(text)
            .expect("LightGBM loads its model")
            .predict_contrib(rows, FEATURES as i32, true)
            .expect("LightGBM explains");
        assert_eq!(reference.len(), 300 * (FEATURES + 1));
        let mut worst = 0.0f64;
        for (row, expected) in rows
            .chunks_exact(FEATURES)
            .zip(reference.chunks_exact(FEATURES + 1))
        {
            let phi = forest.contributions(row).expect("width");
            assert_eq!(phi.len(), FEATURES + 1);
            for (a, b) in phi.iter().zip(expected) {
                let d = (a - b).abs();
                worst = if d.is_nan() {
                    f64::INFINITY
                } else {
                    worst.max(d)
                };
            }
        }
        assert!(worst <= 1e-6, "contributions vs pred_contrib: {worst}");
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let train = synthetic_wide(2_000, FEATURES, 5);
        // Bagging and feature sampling on: their draws come from the seed.
        let params = lightgbm_params(30);
        let first = fit(&train, &names(), 0, &params).expect("trains");
        let second = fit(&train, &names(), 0, &params).expect("trains again");
        assert!(first.model_file == second.model_file, "two fits differ");
        let other_seed = TrainParams { seed: 1, ..params };
        let third = fit(&train, &names(), 0, &other_seed).expect("trains");
        assert!(
            third.model_file != first.model_file,
            "another seed, other bagging draws"
        );
    }

    #[test]
    fn feature_names_lightgbm_would_change_are_refused() {
        let train = synthetic_wide(200, 3, 1);
        for bad in ["tx amount", "a,b", "x:y", ""] {
            let names = vec!["f0".to_string(), bad.to_string(), "f2".to_string()];
            let e = fit(&train, &names, 0, &lightgbm_params(5))
                .expect_err("refused")
                .to_string();
            assert!(e.contains("feature name"), "{bad:?}: {e}");
        }
        // Without names LightGBM writes Column_0.., which the registry checks by width only.
        let fitted = fit(&train, &[], 0, &lightgbm_params(5)).expect("trains");
        let forest = LightGbmForest::from_bytes(&fitted.model_file).expect("parses");
        assert_eq!(forest.feature_names(), ["Column_0", "Column_1", "Column_2"]);
    }
}
