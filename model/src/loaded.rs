//! A registered model as every caller uses it, whichever library trained it (issue #18): the
//! server (`/score`, `?explain=true`), `evaluate`, `explain`, drift, the promotion gate and
//! the DAG ops hold a [`LoadedModel`] and never ask which family it is. The family decides
//! only how the artifact is parsed ([`LoadedModel::from_bytes`]) and how TreeSHAP is computed
//! (libxgboost's `pred_contribs` for XGBoost, the native TreeSHAP for LightGBM); both go
//! through the traits of [`crate::ensemble`].

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::booster::{largest, Contribution, Explainer};
use crate::ensemble::{Explain, TreeEnsemble};
use crate::error::{Error, Result};
use crate::lightgbm::LightGbmForest;
use crate::trees::Forest;

/// The library a model was trained with, which fixes its artifact's format. Stored in the
/// registry (`model_versions.model_family`, and in each record); versions registered before
/// the column existed read as [`ModelFamily::XGBoost`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelFamily {
    /// XGBoost's JSON model (`save_model("m.json")`), scored by [`crate::trees::Forest`].
    #[default]
    #[serde(rename = "xgboost")]
    XGBoost,
    /// LightGBM's text model (`Booster.save_model("m.txt")`), scored by
    /// [`crate::lightgbm::LightGbmForest`].
    #[serde(rename = "lightgbm")]
    LightGBM,
}

impl ModelFamily {
    /// Every family, in the order they were added.
    pub const ALL: [ModelFamily; 2] = [ModelFamily::XGBoost, ModelFamily::LightGBM];

    /// The name in the registry, on the command line and in MLflow (`xgboost`, `lightgbm`).
    pub fn name(self) -> &'static str {
        match self {
            ModelFamily::XGBoost => "xgboost",
            ModelFamily::LightGBM => "lightgbm",
        }
    }

    /// The extension of the family's artifact in the lake (`models/artifacts/<sha256>.<ext>`).
    pub fn extension(self) -> &'static str {
        match self {
            ModelFamily::XGBoost => "json",
            ModelFamily::LightGBM => "txt",
        }
    }

    /// The library's name, for messages (`XGBoost`, `LightGBM`).
    pub fn library(self) -> &'static str {
        match self {
            ModelFamily::XGBoost => "XGBoost",
            ModelFamily::LightGBM => "LightGBM",
        }
    }

    /// What a file of the family is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            ModelFamily::XGBoost => "XGBoost JSON model",
            ModelFamily::LightGBM => "LightGBM text model",
        }
    }

    /// The family a model file's name says (`.json`: XGBoost, `.txt`: LightGBM), if either.
    pub fn from_path(path: &str) -> Option<ModelFamily> {
        let lower = path.trim().to_ascii_lowercase();
        ModelFamily::ALL
            .into_iter()
            .find(|f| lower.ends_with(&format!(".{}", f.extension())))
    }
}

impl fmt::Display for ModelFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelFamily {
    type Err = Error;

    fn from_str(s: &str) -> Result<ModelFamily> {
        let wanted = s.trim().to_ascii_lowercase();
        ModelFamily::ALL
            .into_iter()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown model family '{}' (known: xgboost, lightgbm)",
                    s.trim()
                ))
            })
    }
}

/// A parsed, scorable model of either family.
pub struct LoadedModel {
    inner: Inner,
}

enum Inner {
    XGBoost {
        forest: Forest,
        /// The artifact, for libxgboost's explainer, which is built on the first explanation
        /// (scoring, evaluation and drift never need it).
        json: Vec<u8>,
        explainer: OnceLock<Explainer>,
    },
    LightGBM(LightGbmForest),
}

impl fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModel")
            .field("family", &self.family())
            .field("trees", &self.num_trees())
            .field("features", &self.num_features())
            .finish()
    }
}

impl LoadedModel {
    /// Parses a model file of `family`. Refuses, with the parser's reason, a file that is not
    /// one or holds what the native scorers do not implement.
    pub fn from_bytes(family: ModelFamily, bytes: &[u8]) -> Result<LoadedModel> {
        let inner = match family {
            ModelFamily::XGBoost => Inner::XGBoost {
                forest: Forest::from_json(bytes)?,
                json: bytes.to_vec(),
                explainer: OnceLock::new(),
            },
            ModelFamily::LightGBM => Inner::LightGBM(LightGbmForest::from_bytes(bytes)?),
        };
        Ok(LoadedModel { inner })
    }

    pub fn family(&self) -> ModelFamily {
        match &self.inner {
            Inner::XGBoost { .. } => ModelFamily::XGBoost,
            Inner::LightGBM(_) => ModelFamily::LightGBM,
        }
    }

    /// The native scorer behind the model.
    fn ensemble(&self) -> &dyn TreeEnsemble {
        match &self.inner {
            Inner::XGBoost { forest, .. } => forest as &dyn TreeEnsemble,
            Inner::LightGBM(forest) => forest as &dyn TreeEnsemble,
        }
    }

    /// Number of input features the model expects.
    pub fn num_features(&self) -> usize {
        self.ensemble().num_features()
    }

    /// Number of trees.
    pub fn num_trees(&self) -> usize {
        match &self.inner {
            Inner::XGBoost { forest, .. } => forest.num_trees(),
            Inner::LightGBM(forest) => forest.num_trees(),
        }
    }

    /// Feature names stored in the model (XGBoost: empty when trained without names;
    /// LightGBM: `Column_0`.. then).
    pub fn feature_names(&self) -> &[String] {
        self.ensemble().feature_names()
    }

    /// The raw score (log-odds) of one row in model order, NaN for missing; `None` when the
    /// row has the wrong width.
    pub fn raw_score(&self, row: &[f64]) -> Option<f64> {
        self.ensemble().raw_score(row)
    }

    /// The fraud probability of one row; `None` when the row has the wrong width. The
    /// request path: a direct call per family, no dynamic dispatch.
    pub fn predict(&self, row: &[f64]) -> Option<f64> {
        match &self.inner {
            Inner::XGBoost { forest, .. } => forest.predict(row),
            Inner::LightGBM(forest) => forest.predict(row),
        }
    }

    /// Probabilities for a row-major matrix of [`LoadedModel::num_features`] columns.
    pub fn predict_many(&self, rows: &[f64]) -> Vec<f64> {
        match &self.inner {
            Inner::XGBoost { forest, .. } => forest.predict_many(rows),
            Inner::LightGBM(forest) => forest.predict_many(rows),
        }
    }

    /// Mean split gain per feature index, highest first (features never split on left out).
    pub fn gain_importance(&self) -> Vec<(usize, f64)> {
        self.ensemble().gain_importance()
    }

    /// [`LoadedModel::gain_importance`] by feature name (`f<i>` past the end of `names`).
    pub fn importance(&self, names: &[String]) -> Vec<(String, f64)> {
        self.gain_importance()
            .into_iter()
            .map(|(i, gain)| {
                (
                    names.get(i).cloned().unwrap_or_else(|| format!("f{i}")),
                    gain,
                )
            })
            .collect()
    }

    /// Whether the model stores real feature names (not none, nor LightGBM's `Column_<i>`,
    /// which it writes when it was trained without names).
    fn has_names(&self) -> bool {
        let names = self.feature_names();
        let placeholders = self.family() == ModelFamily::LightGBM
            && names
                .iter()
                .enumerate()
                .all(|(i, n)| *n == format!("Column_{i}"));
        !names.is_empty() && !placeholders
    }

    /// Checks that the model takes the feature set's columns: as many features, and, when the
    /// model stores names, the same names in the same order. A model trained without names
    /// is checked by width only (its column order is then its trainer's responsibility).
    pub fn check_features(&self, names: &[String]) -> Result<()> {
        let width = self.num_features();
        if width != names.len() {
            return Err(Error::invalid(format!(
                "the {} has {width} features but the feature set has {} ({})",
                self.family().describe(),
                names.len(),
                names.join(", ")
            )));
        }
        if !self.has_names() {
            return Ok(());
        }
        let differ: Vec<String> = self
            .feature_names()
            .iter()
            .zip(names)
            .enumerate()
            .filter(|(_, (model, set))| model != set)
            .map(|(i, (model, set))| format!("column {i}: model '{model}', feature set '{set}'"))
            .collect();
        if differ.is_empty() {
            return Ok(());
        }
        let shown = differ.len().min(5);
        Err(Error::invalid(format!(
            "the {}'s feature names differ from the feature set's in {} of {width} columns ({}{}); \
             the model must take the feature set's columns, in its order",
            self.family().describe(),
            differ.len(),
            differ[..shown].join("; "),
            if differ.len() > shown { "; ..." } else { "" }
        )))
    }

    /// The TreeSHAP explainer (for XGBoost libxgboost's, built once on first use).
    fn explainer(&self) -> Result<&dyn Explain> {
        match &self.inner {
            Inner::XGBoost {
                forest,
                json,
                explainer,
            } => {
                if let Some(ready) = explainer.get() {
                    return Ok(ready as &dyn Explain);
                }
                let built = Explainer::new(json, forest.num_features())?;
                Ok(explainer.get_or_init(|| built) as &dyn Explain)
            }
            Inner::LightGBM(forest) => Ok(forest as &dyn Explain),
        }
    }

    /// Prepares explanations now rather than on the first one (the server calls it while it
    /// loads a model, so a model it cannot explain is refused at load, as before).
    pub fn ready_to_explain(&self) -> Result<()> {
        self.explainer().map(|_| ())
    }

    /// TreeSHAP contributions to the raw score: one per feature in model order, then the bias
    /// as the last entry; they sum to [`LoadedModel::raw_score`].
    pub fn contributions(&self, row: &[f64]) -> Result<Vec<f64>> {
        self.explainer()?.shap_values(row)
    }

    /// Every feature's name, value and contribution, in model order (the bias left out).
    pub fn explain(&self, names: &[String], row: &[f64]) -> Result<Vec<Contribution>> {
        self.explainer()?.explain_row(names, row)
    }

    /// The `top` largest contributions by magnitude, largest first.
    pub fn top(&self, names: &[String], row: &[f64], top: usize) -> Result<Vec<Contribution>> {
        Ok(largest(self.explain(names, row)?, top))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-stump XGBoost model of `ensemble.rs`'s tests (x0 < 0.5 -> -0.4, else 0.6).
    use crate::ensemble::tests::XGB;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn families_have_names_extensions_and_parse_back() {
        for family in ModelFamily::ALL {
            assert_eq!(family.name().parse::<ModelFamily>().ok(), Some(family));
            assert_eq!(
                ModelFamily::from_path(&format!("dir/Model.{}", family.extension().to_uppercase())),
                Some(family)
            );
            let json = serde_json::to_string(&family).expect("serializes");
            assert_eq!(json, format!("\"{}\"", family.name()));
        }
        assert_eq!(
            " LightGBM ".parse::<ModelFamily>().ok(),
            Some(ModelFamily::LightGBM)
        );
        let e = "catboost".parse::<ModelFamily>().expect_err("unknown");
        assert!(
            e.to_string().contains("catboost") && e.is_bad_input(),
            "{e}"
        );
        assert_eq!(ModelFamily::from_path("m.ubj"), None);
        assert_eq!(ModelFamily::default(), ModelFamily::XGBoost);
    }

    #[test]
    fn both_families_load_score_and_check_features_alike() {
        let xgb = LoadedModel::from_bytes(ModelFamily::XGBoost, XGB.as_bytes()).expect("xgb");
        let lgbm = LoadedModel::from_bytes(
            ModelFamily::LightGBM,
            crate::lightgbm::tests::TINY.as_bytes(),
        )
        .expect("lightgbm");
        for (model, family) in [(&xgb, ModelFamily::XGBoost), (&lgbm, ModelFamily::LightGBM)] {
            assert_eq!(model.family(), family);
            assert_eq!(model.num_features(), 2);
            assert_eq!(model.feature_names(), ["amount", "merchant"]);
            let row = [60.0, 2.0];
            let p = model.predict(&row).expect("width");
            let raw = model.raw_score(&row).expect("width");
            assert!((p - 1.0 / (1.0 + (-raw).exp())).abs() < 1e-6, "{family}");
            assert_eq!(model.predict_many(&[60.0, 2.0, 0.0, 1.0]).len(), 2);
            assert!(model.predict(&[1.0]).is_none());
            assert_eq!(
                model.importance(&names(&["amount", "merchant"]))[0].0,
                "amount"
            );

            model
                .check_features(&names(&["amount", "merchant"]))
                .expect("same features");
            let e = model
                .check_features(&names(&["merchant", "amount"]))
                .expect_err("swapped")
                .to_string();
            assert!(
                e.contains("column 0: model 'amount', feature set 'merchant'"),
                "{family}: {e}"
            );
            let e = model
                .check_features(&names(&["amount"]))
                .expect_err("narrower")
                .to_string();
            assert!(
                e.contains("2 features") && e.contains("has 1"),
                "{family}: {e}"
            );
        }
        // LightGBM explains natively, and its contributions sum to the raw score.
        let phi = lgbm.contributions(&[60.0, 2.0]).expect("width");
        let raw = lgbm.raw_score(&[60.0, 2.0]).expect("width");
        assert!((phi.iter().sum::<f64>() - raw).abs() < 1e-12);
        lgbm.ready_to_explain().expect("nothing to prepare");
        let top = lgbm
            .top(&names(&["amount", "merchant"]), &[60.0, 2.0], 1)
            .expect("explains");
        assert_eq!(top[0].feature, "amount");
    }

    #[test]
    fn lightgbm_without_names_is_checked_by_width() {
        let unnamed = crate::lightgbm::tests::TINY.replace(
            "feature_names=amount merchant",
            "feature_names=Column_0 Column_1",
        );
        let model =
            LoadedModel::from_bytes(ModelFamily::LightGBM, unnamed.as_bytes()).expect("parses");
        model
            .check_features(&names(&["a", "b"]))
            .expect("no names to compare");
        assert!(model.check_features(&names(&["a"])).is_err());
    }

    #[test]
    fn the_wrong_family_is_refused() {
        assert!(LoadedModel::from_bytes(ModelFamily::LightGBM, XGB.as_bytes()).is_err());
        assert!(LoadedModel::from_bytes(
            ModelFamily::XGBoost,
            crate::lightgbm::tests::TINY.as_bytes()
        )
        .is_err());
    }
}
