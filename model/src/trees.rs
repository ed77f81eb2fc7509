//! A native evaluator of XGBoost JSON models. The scoring server answers one transaction at a
//! time; building a libxgboost `DMatrix` for one row costs more than walking the trees, so the
//! server walks them itself. Semantics follow libxgboost's CPU predictor exactly: inputs as
//! f32, `value < threshold` goes left, NaN follows the node's default direction, leaf values
//! accumulate in f32 in tree order on top of the base margin. Tests compare against libxgboost
//! on every row.

use serde_json::Value;

use crate::error::{Error, Result};

/// Marks a leaf in [`Node::left`].
const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Feature index for a split; unused for a leaf.
    feature: u32,
    /// Split threshold, or the leaf value for a leaf.
    value: f32,
    /// Absolute index of the left child in `Forest::nodes`, or [`LEAF`].
    left: u32,
    right: u32,
    default_left: bool,
}

/// The trees of a binary logistic XGBoost model, flattened for cache-friendly walks.
#[derive(Debug, Clone)]
pub struct Forest {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    base_margin: f32,
    num_features: usize,
    /// Per feature: (number of splits, summed loss change), for gain importance.
    split_gain: Vec<(u64, f64)>,
    feature_names: Vec<String>,
}

impl Forest {
    /// Parses an XGBoost JSON model (as written by `save_model("m.json")` in any 2.x/3.x
    /// libxgboost). Refuses what the evaluator does not implement instead of mis-scoring it.
    pub fn from_json(bytes: &[u8]) -> Result<Forest> {
        let doc: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(format!("the model is not valid JSON: {e}")))?;
        let learner = field(&doc, "learner")?;
        let objective = field(field(learner, "objective")?, "name")?
            .as_str()
            .unwrap_or_default();
        if objective != "binary:logistic" && objective != "reg:logistic" {
            return Err(Error::invalid(format!(
                "the model's objective is '{objective}'; fraudlake scores binary:logistic models"
            )));
        }
        let params = field(learner, "learner_model_param")?;
        let base_score = parse_number(field(params, "base_score")?)
            .ok_or_else(|| Error::invalid("the model's base_score is not a number"))?;
        if !(base_score > 0.0 && base_score < 1.0) {
            return Err(Error::invalid(format!(
                "the model's base_score {base_score} is not a probability"
            )));
        }
        let num_features = parse_number(field(params, "num_feature")?)
            .ok_or_else(|| Error::invalid("the model's num_feature is not a number"))?
            as usize;
        let booster = field(learner, "gradient_booster")?;
        let name = field(booster, "name")?.as_str().unwrap_or_default();
        if name != "gbtree" {
            return Err(Error::invalid(format!(
                "the model's booster is '{name}'; fraudlake scores gbtree models"
            )));
        }
        let trees = field(field(booster, "model")?, "trees")?
            .as_array()
            .ok_or_else(|| Error::invalid("the model's trees are not a list"))?;
        let feature_names = learner
            .get("feature_names")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();

        let mut forest = Forest {
            nodes: Vec::new(),
            roots: Vec::with_capacity(trees.len()),
            // libxgboost turns the probability into a margin once, in f32.
            base_margin: (-(1.0 / base_score - 1.0).ln()) as f32,
            num_features,
            split_gain: vec![(0, 0.0); num_features],
            feature_names,
        };
        for (t, tree) in trees.iter().enumerate() {
            forest.add_tree(t, tree)?;
        }
        Ok(forest)
    }

    fn add_tree(&mut self, t: usize, tree: &Value) -> Result<()> {
        let ints = |key: &str| -> Result<Vec<i64>> {
            field(tree, key)?
                .as_array()
                .ok_or_else(|| Error::invalid(format!("tree {t}: '{key}' is not a list")))?
                .iter()
                .map(|v| {
                    v.as_i64()
                        .or_else(|| v.as_bool().map(i64::from))
                        .ok_or_else(|| {
                            Error::invalid(format!("tree {t}: '{key}' holds a non-integer"))
                        })
                })
                .collect()
        };
        let floats = |key: &str| -> Result<Vec<f64>> {
            field(tree, key)?
                .as_array()
                .ok_or_else(|| Error::invalid(format!("tree {t}: '{key}' is not a list")))?
                .iter()
                .map(|v| {
                    v.as_f64().ok_or_else(|| {
                        Error::invalid(format!("tree {t}: '{key}' holds a non-number"))
                    })
                })
                .collect()
        };
        let left = ints("left_children")?;
        let right = ints("right_children")?;
        let features = ints("split_indices")?;
        let conditions = floats("split_conditions")?;
        let default_left = ints("default_left")?;
        let loss = floats("loss_changes").unwrap_or_default();
        let n = left.len();
        if [
            right.len(),
            features.len(),
            conditions.len(),
            default_left.len(),
        ]
        .iter()
        .any(|&len| len != n)
            || n == 0
        {
            return Err(Error::invalid(format!(
                "tree {t}: node arrays differ in length"
            )));
        }
        if let Some(types) = tree.get("split_type").and_then(Value::as_array) {
            if types.iter().any(|v| v.as_i64().unwrap_or(0) != 0) {
                return Err(Error::invalid(format!(
                    "tree {t} has categorical splits, which fraudlake does not score"
                )));
            }
        }
        let offset = self.nodes.len();
        let child = |c: i64, i: usize| -> Result<u32> {
            if c < 0 {
                return Ok(LEAF);
            }
            let c = c as usize;
            // Children always come after their parent: this also rules out cycles.
            if c <= i || c >= n {
                return Err(Error::invalid(format!(
                    "tree {t}: node {i} has a bad child {c}"
                )));
            }
            Ok((offset + c) as u32)
        };
        for i in 0..n {
            let is_leaf = left[i] < 0;
            if is_leaf != (right[i] < 0) {
                return Err(Error::invalid(format!("tree {t}: node {i} has one child")));
            }
            let feature = if is_leaf { 0 } else { features[i] };
            if !is_leaf && (feature < 0 || feature as usize >= self.num_features) {
                return Err(Error::invalid(format!(
                    "tree {t}: node {i} splits on feature {feature}, the model has {}",
                    self.num_features
                )));
            }
            if !is_leaf {
                let slot = &mut self.split_gain[feature as usize];
                slot.0 += 1;
                slot.1 += loss.get(i).copied().unwrap_or(0.0);
            }
            self.nodes.push(Node {
                feature: feature as u32,
                value: conditions[i] as f32,
                left: child(left[i], i)?,
                right: child(right[i], i)?,
                default_left: default_left[i] != 0,
            });
        }
        self.roots.push(offset as u32);
        Ok(())
    }

    /// Number of input features the model expects.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// Number of trees.
    pub fn num_trees(&self) -> usize {
        self.roots.len()
    }

    /// Feature names stored in the model (empty when it was trained without names).
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// The raw score (log-odds) for one row; `row` holds the features in model order, NaN for
    /// missing. Returns `None` when the row has the wrong width.
    pub fn margin(&self, row: &[f64]) -> Option<f32> {
        if row.len() != self.num_features {
            return None;
        }
        let mut sum = self.base_margin;
        for &root in &self.roots {
            let mut i = root as usize;
            loop {
                let node = self.nodes[i];
                if node.left == LEAF {
                    sum += node.value;
                    break;
                }
                let x = row[node.feature as usize] as f32;
                let go_left = if x.is_nan() {
                    node.default_left
                } else {
                    x < node.value
                };
                i = if go_left { node.left } else { node.right } as usize;
            }
        }
        Some(sum)
    }

    /// Fraud probability for one row (the logistic of [`Forest::margin`]).
    pub fn predict(&self, row: &[f64]) -> Option<f64> {
        self.margin(row).map(sigmoid)
    }

    /// Probabilities for a row-major matrix of `num_features` columns.
    pub fn predict_many(&self, rows: &[f64]) -> Vec<f64> {
        rows.chunks_exact(self.num_features.max(1))
            .map(|row| self.predict(row).unwrap_or(f64::NAN))
            .collect()
    }

    /// Feature importance as XGBoost's `gain` (mean loss reduction of the splits on a feature),
    /// highest first; features never split on are left out.
    pub fn gain_importance(&self) -> Vec<(usize, f64)> {
        mean_gains(&self.split_gain)
    }
}

/// Mean gain per feature from (splits, total gain) slots, highest first; features never split
/// on are left out. XGBoost's `gain` importance, and the LightGBM forest's (`lightgbm`).
pub(crate) fn mean_gains(split_gain: &[(u64, f64)]) -> Vec<(usize, f64)> {
    let mut gains: Vec<(usize, f64)> = split_gain
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(i, (n, total))| (i, total / *n as f64))
        .collect();
    gains.sort_by(|a, b| b.1.total_cmp(&a.1));
    gains
}

/// The logistic function, evaluated in f32 like libxgboost and widened.
pub fn sigmoid(margin: f32) -> f64 {
    f64::from(1.0f32 / (1.0f32 + (-margin).exp()))
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value> {
    v.get(key)
        .ok_or_else(|| Error::invalid(format!("the model JSON has no '{key}'")))
}

/// XGBoost writes numbers as strings, and since 3.0 `base_score` as a one-element vector
/// ("[8.3E-3]").
fn parse_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim()
            .parse()
            .ok(),
        Value::Array(a) if a.len() == 1 => parse_number(&a[0]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_model() -> String {
        // One stump: x0 < 0.5 -> -0.4 (missing goes right) else 0.6; then a leaf 0.1.
        r#"{"learner":{"objective":{"name":"binary:logistic"},
            "learner_model_param":{"base_score":"[5E-1]","num_feature":"2"},
            "feature_names":["a","b"],
            "gradient_booster":{"name":"gbtree","model":{"trees":[
              {"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],
               "split_conditions":[0.5,-0.4,0.6],"default_left":[0,0,0],"loss_changes":[3.0,0,0],
               "split_type":[0,0,0]},
              {"left_children":[-1],"right_children":[-1],"split_indices":[0],
               "split_conditions":[0.1],"default_left":[0]}]}}}}"#
            .to_string()
    }

    #[test]
    fn walks_splits_missing_values_and_sums_leaves() {
        let f = Forest::from_json(tiny_model().as_bytes()).expect("parses");
        assert_eq!(f.num_trees(), 2);
        assert_eq!(f.feature_names(), ["a", "b"]);
        let m = |x: f64| f.margin(&[x, 0.0]).expect("width ok");
        assert!((m(0.0) - (-0.4 + 0.1)).abs() < 1e-6);
        assert!(
            (m(0.5) - (0.6 + 0.1)).abs() < 1e-6,
            "threshold itself goes right"
        );
        assert!(
            (m(f64::NAN) - 0.7).abs() < 1e-6,
            "missing follows default (right)"
        );
        assert!(f.margin(&[1.0]).is_none());
        assert!((f.predict(&[1.0, 0.0]).expect("ok") - 1.0 / (1.0 + (-0.7f64).exp())).abs() < 1e-6);
        assert_eq!(f.gain_importance(), vec![(0, 3.0)]);
    }

    #[test]
    fn refuses_what_it_cannot_score() {
        let bad = tiny_model().replace("binary:logistic", "multi:softprob");
        assert!(Forest::from_json(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("multi:softprob"));
        let cyclic = tiny_model().replace("[1,-1,-1]", "[0,-1,-1]");
        assert!(Forest::from_json(cyclic.as_bytes()).is_err());
        let wide = tiny_model().replace("\"split_indices\":[0,0,0]", "\"split_indices\":[7,0,0]");
        assert!(Forest::from_json(wide.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("feature 7"));
        assert!(Forest::from_json(b"{not json").is_err());
    }
}
