//! LightGBM, the second model family (issue #18): a native evaluator of LightGBM's text model
//! (`model.txt`, as `Booster.save_model` writes it in LightGBM 4) with TreeSHAP explanations,
//! and training through LightGBM's C API (`train.rs`, over the FFI wrapper `c_api.rs`).
//!
//! Why a native evaluator rather than LightGBM's library: the scoring server answers one
//! transaction at a time, and the model crate already walks XGBoost's trees itself
//! ([`crate::trees`]) for that reason; LightGBM is linked for training only, and `/score`,
//! `evaluate` and `drift` never call it. So the evaluator must be exactly LightGBM: every
//! decision rule copies `tree.h` (see `tree.rs`), raw scores add up leaf values in tree order
//! as `GBDT::PredictRaw` does, and contributions follow `Tree::TreeSHAP` operation for
//! operation (`shap.rs`). The integration test (cli/tests/it/lightgbm.rs) compares with
//! LightGBM's own `predict` and `predict(pred_contrib=True)` on 10,000 rows per model (NaN,
//! zeros, values on thresholds, categories): within 1e-6, in practice identical; the unit
//! tests of `train.rs` do the same for models fraudlake trains.
//!
//! Only binary GBDT models are scored: another objective, multiclass, random forests
//! (`average_output`) and linear trees are refused with the reason, never mis-scored.

mod c_api;
mod shap;
mod text;
pub(crate) mod train;
mod tree;

use crate::booster::{largest, Contribution};
use crate::error::{Error, Result};
use text::{quote, Section};
use tree::Tree;

/// Most features a model may declare (`max_feature_idx` + 1): a bound on what a file can make
/// this process allocate.
const MAX_FEATURES: i64 = 1_000_000;

/// The trees of a binary LightGBM model.
#[derive(Debug, Clone)]
pub struct LightGbmForest {
    trees: Vec<Tree>,
    num_features: usize,
    feature_names: Vec<String>,
    /// `sigmoid:` of `objective=binary`: probability = 1 / (1 + exp(-sigmoid * raw)).
    sigmoid: f64,
    /// The deepest tree's depth, to size TreeSHAP's path buffer once per row.
    max_depth: usize,
    /// Per feature: (number of splits, summed split gain), for gain importance.
    split_gain: Vec<(u64, f64)>,
}

impl LightGbmForest {
    /// Parses a LightGBM text model. Refuses, naming the line and field, a file that is not
    /// one, is truncated, or holds what the evaluator does not implement.
    pub fn from_text(model: &str) -> Result<LightGbmForest> {
        let doc = text::read(model)?;
        let header = Header::parse(&doc.header)?;
        let trees = doc
            .trees
            .iter()
            .map(|section| Tree::parse(section, header.num_features))
            .collect::<Result<Vec<Tree>>>()?;
        let mut split_gain = vec![(0u64, 0.0f64); header.num_features];
        for (feature, gain) in trees.iter().flat_map(|t| t.split_gains()) {
            let slot = &mut split_gain[feature];
            slot.0 += 1;
            slot.1 += gain;
        }
        Ok(LightGbmForest {
            max_depth: trees.iter().map(|t| t.max_depth).max().unwrap_or(0),
            trees,
            num_features: header.num_features,
            feature_names: header.feature_names,
            sigmoid: header.sigmoid,
            split_gain,
        })
    }

    /// [`LightGbmForest::from_text`] of a file's bytes (which must be UTF-8).
    pub fn from_bytes(bytes: &[u8]) -> Result<LightGbmForest> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Error::invalid(format!(
                "the LightGBM model is not UTF-8 text (bad byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        Self::from_text(text)
    }

    /// Number of input features the model expects (`max_feature_idx` + 1).
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// Number of trees.
    pub fn num_trees(&self) -> usize {
        self.trees.len()
    }

    /// Feature names stored in the model (LightGBM writes `Column_0`.. when none were given).
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// The `sigmoid:` coefficient of the binary objective.
    pub fn sigmoid(&self) -> f64 {
        self.sigmoid
    }

    /// The raw score (log-odds for `sigmoid:1`) for one row in model order, NaN for missing:
    /// the sum of each tree's leaf value in tree order, from 0.0 (LightGBM folds the initial
    /// score into the first tree). `None` when the row has the wrong width.
    pub fn margin(&self, row: &[f64]) -> Option<f64> {
        if row.len() != self.num_features {
            return None;
        }
        Some(
            self.trees
                .iter()
                .fold(0.0, |sum, tree| sum + tree.value(row)),
        )
    }

    /// Fraud probability for one row: LightGBM's `BinaryLogloss::ConvertOutput`,
    /// 1 / (1 + exp(-sigmoid * raw)).
    pub fn predict(&self, row: &[f64]) -> Option<f64> {
        self.margin(row)
            .map(|raw| 1.0 / (1.0 + (-self.sigmoid * raw).exp()))
    }

    /// Probabilities for a row-major matrix of `num_features` columns.
    pub fn predict_many(&self, rows: &[f64]) -> Vec<f64> {
        rows.chunks_exact(self.num_features.max(1))
            .map(|row| self.predict(row).unwrap_or(f64::NAN))
            .collect()
    }

    /// TreeSHAP contributions to the raw score: one per feature in model order, then the bias
    /// (the expected raw score) as the last entry; they sum to [`LightGbmForest::margin`].
    /// The same numbers as LightGBM's `predict(pred_contrib=True)`.
    pub fn contributions(&self, row: &[f64]) -> Result<Vec<f64>> {
        if row.len() != self.num_features {
            return Err(Error::invalid(format!(
                "explain: {} values for a model of {} features",
                row.len(),
                self.num_features
            )));
        }
        let mut phi = vec![0.0; self.num_features + 1];
        let mut path = shap::path_buffer(self.max_depth);
        for tree in &self.trees {
            shap::add_tree(tree, row, &mut phi, &mut path);
        }
        Ok(phi)
    }

    /// Every feature's value and contribution, in model order (the bias left out): the shape
    /// of [`crate::booster::Explainer::explain`].
    pub fn explain(&self, names: &[String], row: &[f64]) -> Result<Vec<Contribution>> {
        crate::ensemble::Explain::explain_row(self, names, row)
    }

    /// The `top` largest contributions by magnitude, with feature names and values.
    pub fn top(&self, names: &[String], row: &[f64], top: usize) -> Result<Vec<Contribution>> {
        Ok(largest(self.explain(names, row)?, top))
    }

    /// Feature importance as the mean `split_gain` of the splits on a feature, highest first
    /// (the meaning of XGBoost's `gain` that [`crate::trees::Forest::gain_importance`] gives;
    /// LightGBM's own `importance_type="gain"` is the total); features never split on are
    /// left out.
    pub fn gain_importance(&self) -> Vec<(usize, f64)> {
        crate::trees::mean_gains(&self.split_gain)
    }
}

impl crate::ensemble::TreeEnsemble for LightGbmForest {
    fn num_features(&self) -> usize {
        self.num_features
    }

    fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    fn raw_score(&self, row: &[f64]) -> Option<f64> {
        self.margin(row)
    }

    fn probability(&self, row: &[f64]) -> Option<f64> {
        self.predict(row)
    }

    fn gain_importance(&self) -> Vec<(usize, f64)> {
        LightGbmForest::gain_importance(self)
    }
}

impl crate::ensemble::Explain for LightGbmForest {
    fn shap_values(&self, row: &[f64]) -> Result<Vec<f64>> {
        self.contributions(row)
    }
}

/// What the header says that scoring needs.
struct Header {
    num_features: usize,
    feature_names: Vec<String>,
    sigmoid: f64,
}

impl Header {
    fn parse(h: &Section<'_>) -> Result<Header> {
        refuse_multiclass(h)?;
        let sigmoid = binary_objective(h)?;
        if h.has_flag("average_output") {
            return Err(Error::invalid(
                "the model averages its trees ('average_output' in the header: boosting=rf); \
                 fraudlake scores LightGBM GBDT models, whose trees add up",
            ));
        }
        let max_feature_idx = h.int("max_feature_idx")?;
        if !(0..MAX_FEATURES).contains(&max_feature_idx) {
            return Err(h.error(
                "max_feature_idx",
                format!("{max_feature_idx} is outside 0..{MAX_FEATURES}"),
            ));
        }
        let num_features = max_feature_idx as usize + 1;
        let feature_names = match h.get("feature_names") {
            Some(_) => h.words("feature_names", num_features)?,
            None => Vec::new(),
        };
        Ok(Header {
            num_features,
            feature_names,
            sigmoid,
        })
    }
}

/// `num_class` and `num_tree_per_iteration` are 1 for a binary model; a multiclass model has
/// one tree per class and iteration, which a single sum of leaf values would mix up.
fn refuse_multiclass(h: &Section<'_>) -> Result<()> {
    for key in ["num_class", "num_tree_per_iteration"] {
        if h.get(key).is_some() {
            let n = h.int(key)?;
            if n != 1 {
                return Err(h.error(
                    key,
                    format!(
                        "{key}={n}: a multiclass model; fraudlake scores only binary LightGBM \
                         GBDT models"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `objective=binary sigmoid:<coefficient>`: the coefficient, which must be positive (as
/// LightGBM's `BinaryLogloss` requires).
fn binary_objective(h: &Section<'_>) -> Result<f64> {
    let field = h.require("objective")?;
    let mut tokens = field.value.split_whitespace();
    let name = tokens.next().unwrap_or_default();
    if name != "binary" {
        return Err(h.error(
            "objective",
            format!(
                "the objective is '{}'; fraudlake scores binary LightGBM models \
                 (objective=binary)",
                quote(name)
            ),
        ));
    }
    let coefficient = tokens
        .find_map(|t| t.strip_prefix("sigmoid:"))
        .ok_or_else(|| h.error("objective", "'binary' without its 'sigmoid:' coefficient"))?;
    match coefficient.parse::<f64>() {
        Ok(c) if c > 0.0 && c.is_finite() => Ok(c),
        _ => Err(h.error(
            "objective",
            format!("sigmoid:{} is not a positive number", quote(coefficient)),
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A hand-written two-tree model over `amount` (feature 0) and `merchant` (feature 1).
    ///
    /// Tree 0, on amount: node 0 `amount <= 50` (NaN missing, default left) -> node 1, else
    /// leaf 1 (1.0); node 1 `amount <= 10` (zero missing, default right) -> leaf 0 (-0.5),
    /// else leaf 2 (0.25). Rows: 100 at the root, 90 at node 1, leaves 30 / 10 / 60.
    /// Tree 1, on merchant: categories {1, 3, 32} (bitset words 0b1010 and 0b1) -> leaf 0
    /// (0.3, 40 rows), else leaf 1 (-0.2, 60 rows). A valid LightGBM file (`tree_sizes` are
    /// the real byte sizes): LightGBM 4.7 predicts and explains it as these tests expect.
    pub(crate) const TINY: &str = "tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=binary sigmoid:1
feature_names=amount merchant
feature_infos=[0:100] 0:1:2:3:32
tree_sizes=287 293

Tree=0
num_leaves=3
num_cat=0
split_feature=0 0
split_gain=10 5
threshold=50 10
decision_type=10 4
left_child=1 -1
right_child=-2 -3
leaf_value=-0.5 1 0.25
leaf_weight=30 10 60
leaf_count=30 10 60
internal_value=0 0
internal_weight=100 90
internal_count=100 90
is_linear=0
shrinkage=1


Tree=1
num_leaves=2
num_cat=1
split_feature=1
split_gain=4
threshold=0
decision_type=1
left_child=-1
right_child=-2
leaf_value=0.3 -0.2
leaf_weight=40 60
leaf_count=40 60
internal_value=0
internal_weight=100
internal_count=100
cat_boundaries=0 2
cat_threshold=10 1
is_linear=0
shrinkage=0.1


end of trees

feature_importances:
amount=2
merchant=1

parameters:
[boosting: gbdt]
[objective: binary]
end of parameters

pandas_categorical:null
";

    fn tiny() -> LightGbmForest {
        LightGbmForest::from_text(TINY).expect("the tiny model parses")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Tree 0 by hand (amount), then tree 1 (merchant).
    #[test]
    fn walks_thresholds_missing_values_and_categories_as_lightgbm() {
        let f = tiny();
        assert_eq!(f.num_trees(), 2);
        assert_eq!(f.num_features(), 2);
        assert_eq!(f.feature_names(), ["amount", "merchant"]);
        let tree0 = |amount: f64| f.margin(&[amount, 2.0]).expect("width") + 0.2;
        assert!(close(tree0(5.0), -0.5));
        assert!(close(tree0(10.0), -0.5), "on the threshold: left (<=)");
        assert!(
            close(tree0(10.000000000000002), 0.25),
            "one ulp above: right"
        );
        assert!(close(tree0(50.0), 0.25));
        assert!(close(tree0(50.00000000000001), 1.0));
        assert!(close(tree0(-3.0), -0.5));
        // NaN: node 0 (missing NaN) takes its default (left); node 1 (missing Zero) reads NaN
        // as 0.0, which is missing there: default right.
        assert!(close(tree0(f64::NAN), 0.25));
        // Zero, and anything LightGBM's C API reads as zero, is missing at node 1.
        assert!(close(tree0(0.0), 0.25));
        assert!(close(tree0(-1e-36), 0.25));
        assert!(close(tree0(tree::K_ZERO_THRESHOLD), 0.25));
        assert!(close(tree0(2e-35), -0.5), "beyond kZeroThreshold: a value");
        assert!(close(tree0(f64::INFINITY), 1.0));
        assert!(close(tree0(f64::NEG_INFINITY), -0.5));

        let tree1 = |merchant: f64| f.margin(&[5.0, merchant]).expect("width") + 0.5;
        for category in [1.0, 3.0, 32.0, 1.9, 3.7] {
            assert!(
                close(tree1(category), 0.3),
                "category {category} is in the set"
            );
        }
        for other in [
            0.0,
            2.0,
            31.0,
            33.0,
            64.0,
            -1.0,
            -0.5,
            f64::NAN,
            1e10,
            -1e10,
        ] {
            assert!(
                close(tree1(other), -0.2),
                "category {other} is not in the set"
            );
        }

        // raw = -0.5 + 0.3; probability = logistic(raw).
        let p = f.predict(&[5.0, 1.0]).expect("width");
        assert!(close(p, 1.0 / (1.0 + 0.2f64.exp())));
        assert!(f.margin(&[1.0]).is_none());
        let many = f.predict_many(&[5.0, 1.0, 60.0, 2.0]);
        assert_eq!(many.len(), 2);
        assert!(close(many[1], 1.0 / (1.0 + (-0.8f64).exp())));
        assert_eq!(f.gain_importance(), vec![(0, 7.5), (1, 4.0)]);
    }

    /// Each tree splits on one feature, so its SHAP value is its output minus its expected
    /// value: tree 0's expected value is 0.3 * -0.5 + 0.1 * 1 + 0.6 * 0.25 = 0.1, tree 1's
    /// 0.4 * 0.3 + 0.6 * -0.2 = 0; the bias is 0.1.
    #[test]
    fn contributions_of_one_feature_trees_by_hand() {
        let f = tiny();
        let c = f.contributions(&[5.0, 1.0]).expect("width");
        assert_eq!(c.len(), 3);
        assert!(close(c[0], -0.5 - 0.1), "{c:?}");
        assert!(close(c[1], 0.3), "{c:?}");
        assert!(close(c[2], 0.1), "{c:?}");
        let c = f.contributions(&[60.0, 2.0]).expect("width");
        assert!(
            close(c[0], 0.9) && close(c[1], -0.2) && close(c[2], 0.1),
            "{c:?}"
        );
        assert!(f.contributions(&[1.0]).is_err());

        let names = ["amount".to_string(), "merchant".to_string()];
        let top = f.top(&names, &[60.0, 2.0], 1).expect("width");
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].feature, "amount");
        assert!(close(top[0].value, 60.0) && close(top[0].contribution, 0.9));
    }

    /// A tree with an interaction: root on `a` (50 rows left, 50 right to a leaf of 0), then
    /// `b` (25 rows each to leaves 1 and -1). For a = 0, b = 0 (left, left): with cover
    /// weights, E[f] = 0, E[f | a] = 0, E[f | b] = 0.5 * 1 + 0.5 * 0 = 0.5, f = 1, so
    /// phi_a = ((0 - 0) + (1 - 0.5)) / 2 = 0.25 and phi_b = ((0.5 - 0) + (1 - 0)) / 2 = 0.75.
    #[test]
    fn contributions_of_an_interaction_by_hand() {
        let text = TINY
            .replace("tree_sizes=287 293", "tree_sizes=283")
            .replace("split_feature=0 0\n", "split_feature=0 1\n")
            .replace("threshold=50 10", "threshold=0.5 0.5")
            .replace("decision_type=10 4", "decision_type=2 2")
            .replace("leaf_value=-0.5 1 0.25", "leaf_value=1 0 -1")
            .replace("leaf_count=30 10 60", "leaf_count=25 50 25")
            .replace("internal_count=100 90", "internal_count=100 50");
        let cut = text.find("\nTree=1").expect("tree 1");
        let end = text.find("\nend of trees").expect("end");
        let text = format!("{}{}", &text[..cut], &text[end..]);
        let f = LightGbmForest::from_text(&text).expect("parses");
        assert_eq!(f.num_trees(), 1);
        let c = f.contributions(&[0.0, 0.0]).expect("width");
        assert!(
            close(c[0], 0.25) && close(c[1], 0.75) && close(c[2], 0.0),
            "{c:?}"
        );
        assert!(close(
            c.iter().sum::<f64>(),
            f.margin(&[0.0, 0.0]).expect("width")
        ));
        // Right at the root (f = 0): E[f | a] = 0 and E[f | b] = 0.5 still (b's branch is
        // weighted by cover when a is unknown), so phi_a = ((0 - 0) + (0 - 0.5)) / 2 = -0.25
        // and phi_b = ((0.5 - 0) + (0 - 0)) / 2 = 0.25.
        let c = f.contributions(&[1.0, 0.0]).expect("width");
        assert!(close(c[0], -0.25) && close(c[1], 0.25), "{c:?}");
    }

    #[test]
    fn lightgbm_zero_threshold_is_the_widened_float() {
        assert_eq!(
            tree::K_ZERO_THRESHOLD.to_bits(),
            1.0000000180025095e-35_f64.to_bits()
        );
    }

    fn error_of(text: &str) -> String {
        LightGbmForest::from_text(text)
            .expect_err("the model must be refused")
            .to_string()
    }

    /// The 1-based line of the first line of `TINY` that starts with `prefix`.
    fn line_of(prefix: &str) -> usize {
        TINY.lines()
            .position(|l| l.starts_with(prefix))
            .expect("prefix in TINY")
            + 1
    }

    #[test]
    fn refuses_a_truncated_file_naming_where_it_ends() {
        let cut = TINY.find("leaf_count=40 60").expect("tree 1");
        let e = error_of(&TINY[..cut]);
        assert!(e.contains("truncated") && e.contains("tree 1"), "{e}");
        let e = error_of(&TINY.replace("tree_sizes=287 293", "tree_sizes=287 293 400"));
        assert!(e.contains("tree_sizes") && e.contains("3 trees"), "{e}");
        let e = error_of(&TINY.replace("Tree=1", "Tree=2"));
        assert!(e.contains("Tree=1 was expected"), "{e}");
        assert!(error_of("").contains("empty"));
        let e = error_of("{\"learner\": {}}");
        assert!(e.contains("line 1") && e.contains("'tree'"), "{e}");
        assert!(LightGbmForest::from_bytes(&[b't', 0xff]).is_err());
    }

    #[test]
    fn refuses_other_objectives_multiclass_and_random_forests() {
        let e = error_of(&TINY.replace("objective=binary sigmoid:1", "objective=regression"));
        assert!(e.contains("'regression'") && e.contains("binary"), "{e}");
        assert!(
            e.contains(&format!("line {}", line_of("objective="))),
            "{e}"
        );
        let e = error_of(&TINY.replace("binary sigmoid:1", "binary"));
        assert!(e.contains("sigmoid"), "{e}");
        let e = error_of(&TINY.replace("sigmoid:1", "sigmoid:-2"));
        assert!(e.contains("positive"), "{e}");
        let e = error_of(&TINY.replace("num_class=1", "num_class=3").replace(
            "objective=binary sigmoid:1",
            "objective=multiclass num_class:3",
        ));
        assert!(e.contains("multiclass") && e.contains("num_class=3"), "{e}");
        let e = error_of(&TINY.replace("num_tree_per_iteration=1", "num_tree_per_iteration=2"));
        assert!(e.contains("multiclass"), "{e}");
        let e = error_of(&TINY.replace(
            "objective=binary sigmoid:1\n",
            "objective=binary sigmoid:1\naverage_output\n",
        ));
        assert!(e.contains("average_output"), "{e}");
        let e = error_of(&TINY.replace("objective=binary sigmoid:1\n", ""));
        assert!(e.contains("no 'objective=' line"), "{e}");
    }

    #[test]
    fn refuses_linear_trees() {
        let linear = TINY.replacen("is_linear=0", "is_linear=1", 1);
        let e = error_of(&linear);
        assert!(e.contains("linear tree") && e.contains("tree 0"), "{e}");
        assert!(
            e.contains(&format!("line {}", line_of("is_linear="))),
            "{e}"
        );
    }

    #[test]
    fn names_the_line_and_field_of_bad_values() {
        let e = error_of(&TINY.replace("leaf_value=-0.5 1 0.25", "leaf_value=-0.5 x 0.25"));
        assert!(e.contains("leaf_value") && e.contains("value 2 'x'"), "{e}");
        assert!(
            e.contains(&format!("line {}", line_of("leaf_value=-0.5"))),
            "{e}"
        );
        let e = error_of(&TINY.replace("threshold=50 10", "threshold=50"));
        assert!(
            e.contains("threshold") && e.contains("1 values where 2"),
            "{e}"
        );
        let e = error_of(&TINY.replace("split_feature=0 0", "split_feature=5 0"));
        assert!(e.contains("feature 5") && e.contains("tree 0"), "{e}");
        let e = error_of(&TINY.replace("left_child=1 -1", "left_child=0 -1"));
        assert!(e.contains("left_child") && e.contains("child 0"), "{e}");
        let e = error_of(&TINY.replace("right_child=-2 -3", "right_child=-2 -1"));
        assert!(e.contains("two nodes"), "{e}");
        let e = error_of(&TINY.replace("decision_type=10 4", "decision_type=10 12"));
        assert!(e.contains("missing type 3"), "{e}");
        let e = error_of(&TINY.replace("cat_boundaries=0 2", "cat_boundaries=0 3"));
        assert!(
            e.contains("cat_threshold") && e.contains("2 values where 3"),
            "{e}"
        );
        let e = error_of(&TINY.replace("threshold=0\n", "threshold=1\n"));
        assert!(e.contains("bitset 1"), "{e}");
        let e = error_of(&TINY.replace("internal_count=100 90", "internal_count=100 -90"));
        assert!(e.contains("negative"), "{e}");
        let e = error_of(&TINY.replace("num_leaves=2\n", ""));
        assert!(
            e.contains("tree 1") && e.contains("no 'num_leaves=' line"),
            "{e}"
        );
        let e = error_of(&TINY.replace("shrinkage=0.1", "shrinkage=0.1\nleaf_value=1 2"));
        assert!(e.contains("a second 'leaf_value='"), "{e}");
    }

    #[test]
    fn a_one_leaf_tree_is_a_constant_in_the_bias() {
        let one_leaf = "tree
max_feature_idx=1
objective=binary sigmoid:1
tree_sizes=1

Tree=0
num_leaves=1
num_cat=0
split_feature=
split_gain=
threshold=
decision_type=
left_child=
right_child=
leaf_value=-0.16034265007517937
leaf_weight=
leaf_count=200
internal_value=
internal_weight=
internal_count=
is_linear=0
shrinkage=1


end of trees
";
        let f = LightGbmForest::from_text(one_leaf).expect("parses");
        assert!(f.feature_names().is_empty());
        assert_eq!(f.margin(&[1.0, f64::NAN]), Some(-0.16034265007517937));
        let c = f.contributions(&[1.0, 2.0]).expect("width");
        assert_eq!(c, vec![0.0, 0.0, -0.16034265007517937]);
    }
}
