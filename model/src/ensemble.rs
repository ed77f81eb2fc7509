//! What scoring and explaining need from a model, whichever library trained it: the seam for
//! issue #18's second model family. [`TreeEnsemble`] is the native scorer (XGBoost's
//! [`crate::trees::Forest`], LightGBM's [`crate::lightgbm::LightGbmForest`]); [`Explain`]
//! gives TreeSHAP contributions (libxgboost's [`crate::booster::Explainer`], or the LightGBM
//! forest itself, which computes them natively).
//!
//! Callers outside the model crate do not use these traits directly: they hold a
//! [`crate::loaded::LoadedModel`], which dispatches to them.

use crate::booster::{Contribution, Explainer};
use crate::error::Result;
use crate::trees::Forest;

/// A binary tree ensemble that scores rows natively; rows hold the features in model order,
/// NaN for missing.
pub trait TreeEnsemble: Send + Sync {
    /// Number of input features.
    fn num_features(&self) -> usize;

    /// Feature names stored in the model (may be empty).
    fn feature_names(&self) -> &[String];

    /// The raw score (log-odds); `None` when the row has the wrong width.
    fn raw_score(&self, row: &[f64]) -> Option<f64>;

    /// The fraud probability; `None` when the row has the wrong width.
    fn probability(&self, row: &[f64]) -> Option<f64>;

    /// Probabilities for a row-major matrix of [`TreeEnsemble::num_features`] columns (NaN
    /// for a row that cannot be scored).
    fn probabilities(&self, rows: &[f64]) -> Vec<f64> {
        rows.chunks_exact(self.num_features().max(1))
            .map(|row| self.probability(row).unwrap_or(f64::NAN))
            .collect()
    }

    /// Mean split gain per feature index, highest first (features never split on left out).
    fn gain_importance(&self) -> Vec<(usize, f64)>;
}

/// TreeSHAP contributions of one row.
pub trait Explain {
    /// One contribution to the raw score per feature in model order, then the bias as the last
    /// entry; they sum to the raw score.
    fn shap_values(&self, row: &[f64]) -> Result<Vec<f64>>;

    /// Every feature's name, value and contribution, in model order (the bias left out).
    fn explain_row(&self, names: &[String], row: &[f64]) -> Result<Vec<Contribution>> {
        let phi = self.shap_values(row)?;
        Ok(names
            .iter()
            .zip(row)
            .zip(&phi)
            .map(|((name, &value), &contribution)| Contribution {
                feature: name.clone(),
                value,
                contribution,
            })
            .collect())
    }
}

impl TreeEnsemble for Forest {
    fn num_features(&self) -> usize {
        Forest::num_features(self)
    }

    fn feature_names(&self) -> &[String] {
        Forest::feature_names(self)
    }

    /// libxgboost's f32 margin, widened.
    fn raw_score(&self, row: &[f64]) -> Option<f64> {
        self.margin(row).map(f64::from)
    }

    fn probability(&self, row: &[f64]) -> Option<f64> {
        self.predict(row)
    }

    fn gain_importance(&self) -> Vec<(usize, f64)> {
        Forest::gain_importance(self)
    }
}

impl Explain for Explainer {
    /// libxgboost's `pred_contribs` (f32), widened.
    fn shap_values(&self, row: &[f64]) -> Result<Vec<f64>> {
        Ok(self
            .contributions(row)?
            .into_iter()
            .map(f64::from)
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lightgbm::LightGbmForest;

    /// A one-stump XGBoost model (x0 < 0.5 -> -0.4, else 0.6) over two features (also
    /// `loaded.rs`'s tests' model).
    pub(crate) const XGB: &str = r#"{"learner":{"objective":{"name":"binary:logistic"},
        "learner_model_param":{"base_score":"5E-1","num_feature":"2"},
        "feature_names":["amount","merchant"],
        "gradient_booster":{"name":"gbtree","model":{"trees":[
          {"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],
           "split_conditions":[0.5,-0.4,0.6],"default_left":[0,0,0],"loss_changes":[3.0,0,0]}
        ]}}}}"#;

    #[test]
    fn both_families_score_through_one_trait() {
        let xgb = Forest::from_json(XGB.as_bytes()).expect("xgboost model");
        let lgbm = LightGbmForest::from_text(crate::lightgbm::tests::TINY).expect("lightgbm");
        let models: [&dyn TreeEnsemble; 2] = [&xgb, &lgbm];
        for model in models {
            assert_eq!(model.num_features(), 2);
            assert_eq!(model.feature_names(), ["amount", "merchant"]);
            let rows = [5.0, 1.0, 0.0, f64::NAN];
            let probs = model.probabilities(&rows);
            assert_eq!(probs.len(), 2);
            for (row, p) in rows.chunks(2).zip(&probs) {
                let raw = model.raw_score(row).expect("width");
                assert!(
                    (p - 1.0 / (1.0 + (-raw).exp())).abs() < 1e-6,
                    "{p} vs raw {raw}"
                );
            }
            assert!(model.raw_score(&[1.0]).is_none());
            assert!(!model.gain_importance().is_empty());
        }
        assert!((xgb.raw_score(&[0.0, 0.0]).expect("width") + 0.4).abs() < 1e-6);
    }

    #[test]
    fn lightgbm_explains_through_the_trait() {
        let lgbm = LightGbmForest::from_text(crate::lightgbm::tests::TINY).expect("lightgbm");
        let explain: &dyn Explain = &lgbm;
        let names = ["amount".to_string(), "merchant".to_string()];
        let all = explain.explain_row(&names, &[60.0, 2.0]).expect("width");
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].feature, "merchant");
        assert!((all[0].contribution - 0.9).abs() < 1e-12);
        let phi = explain.shap_values(&[60.0, 2.0]).expect("width");
        let raw = lgbm.margin(&[60.0, 2.0]).expect("width");
        assert!((phi.iter().sum::<f64>() - raw).abs() < 1e-12);
    }
}
