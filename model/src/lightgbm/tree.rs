//! One LightGBM tree, checked on load, and its decisions exactly as LightGBM's `tree.h` makes
//! them (`NumericalDecision`, `CategoricalDecision`), with the one input rule of its C API
//! (values within 1e-35 of zero are read as 0.0). Any difference here would move a row to
//! another leaf, so every rule names the LightGBM code it copies; the integration test
//! (cli/tests/it/lightgbm.rs) compares with LightGBM on rows built to hit each of them.

use super::text::Section;
use crate::error::Result;

/// LightGBM's `kZeroThreshold` (meta.h: `const double kZeroThreshold = 1e-35f;`): the float
/// 1e-35 widened to double, 1.0000000180025095e-35, not the double 1e-35.
pub(super) const K_ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// LightGBM's own bound on `num_leaves` (config.h).
const MAX_LEAVES: i64 = 131_072;

/// The deepest tree accepted. TreeSHAP recurses once per level and keeps a path buffer of
/// (depth + 1)(depth + 2)/2 entries, so a file must not choose the depth freely; LightGBM's
/// default trees (31 leaves) are far shallower, and depth 512 needs at least 513 leaves
/// grown as a chain.
pub(super) const MAX_DEPTH: usize = 512;

/// `decision_type` bits (tree.h: `kCategoricalMask`, `kDefaultLeftMask`); bits 2-3 hold the
/// missing type. LightGBM defines no other bit.
const CATEGORICAL_MASK: i64 = 1;
const DEFAULT_LEFT_MASK: i64 = 2;

/// Where a branch leads: LightGBM writes a split's index as itself and a leaf's as `~leaf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Child {
    Split(usize),
    Leaf(usize),
}

/// LightGBM's `MissingType` of a numerical split (`decision_type` bits 2-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Missing {
    /// 0: no missing values; NaN is read as 0.0 and compared like any value.
    None,
    /// 1 (`zero_as_missing`): zero (|x| <= kZeroThreshold), and NaN read as 0.0, take the
    /// default branch.
    Zero,
    /// 2: NaN takes the default branch.
    NaN,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Rule {
    /// `x <= threshold` goes left, missing values go to the default side.
    Numerical {
        threshold: f64,
        missing: Missing,
        default_left: bool,
    },
    /// Left when the category is in bitset `set` of the tree (`cat_boundaries[set]` ..
    /// `cat_boundaries[set + 1]` in `cat_threshold`).
    Categorical { set: usize },
}

/// An internal node.
#[derive(Debug, Clone, Copy)]
pub(super) struct Split {
    pub feature: usize,
    pub rule: Rule,
    pub left: Child,
    pub right: Child,
    /// Training rows that reached the node (`internal_count`): TreeSHAP's cover.
    pub count: f64,
    /// `split_gain`, for importance (0 when the file has none).
    pub gain: f64,
}

#[derive(Debug, Clone)]
pub(super) struct Tree {
    /// Internal nodes, root first; empty for a one-leaf tree.
    pub splits: Vec<Split>,
    /// Leaf outputs, shrinkage (and for the first tree the initial score) included.
    pub leaf_value: Vec<f64>,
    /// Training rows per leaf (`leaf_count`): TreeSHAP's cover.
    pub leaf_count: Vec<f64>,
    cat_boundaries: Vec<usize>,
    cat_threshold: Vec<u32>,
    /// Levels below the root of the deepest leaf (0 for a one-leaf tree).
    pub max_depth: usize,
}

impl Tree {
    /// Reads and checks one `Tree=N` block of a model of `num_features` features.
    pub(super) fn parse(s: &Section<'_>, num_features: usize) -> Result<Tree> {
        refuse_linear(s)?;
        let num_leaves = s.int("num_leaves")?;
        if !(1..=MAX_LEAVES).contains(&num_leaves) {
            return Err(s.error(
                "num_leaves",
                format!("{num_leaves} is outside 1..={MAX_LEAVES}"),
            ));
        }
        let leaves = num_leaves as usize;
        let leaf_value = s.floats("leaf_value", leaves)?;
        if leaves == 1 {
            // A constant tree (LightGBM writes empty split lists): it predicts its one value
            // and TreeSHAP gives it only to the bias, so no count is needed.
            return Ok(Tree {
                splits: Vec::new(),
                leaf_value,
                leaf_count: vec![0.0],
                cat_boundaries: Vec::new(),
                cat_threshold: Vec::new(),
                max_depth: 0,
            });
        }
        let splits = read_splits(s, leaves, num_features)?;
        let (cat_boundaries, cat_threshold) = read_categories(s)?;
        let sets = cat_boundaries.len().saturating_sub(1);
        if let Some(set) = splits.iter().find_map(|split| match split.rule {
            Rule::Categorical { set } if set >= sets => Some(set),
            _ => None,
        }) {
            return Err(s.error(
                "threshold",
                format!("a categorical split uses bitset {set}, the tree has {sets}"),
            ));
        }
        let leaf_count = counts(s, "leaf_count", leaves)?;
        let max_depth = check_shape(s, &splits, leaves)?;
        Ok(Tree {
            splits,
            leaf_value,
            leaf_count,
            cat_boundaries,
            cat_threshold,
            max_depth,
        })
    }

    /// The leaf `row` lands in (tree.h `GetLeaf`).
    pub(super) fn leaf(&self, row: &[f64]) -> usize {
        let mut node = 0;
        while let Some(split) = self.splits.get(node) {
            match self.next(split, row[split.feature]) {
                Child::Split(child) => node = child,
                Child::Leaf(leaf) => return leaf,
            }
        }
        0
    }

    /// The tree's output for `row` (tree.h `Predict`).
    pub(super) fn value(&self, row: &[f64]) -> f64 {
        self.leaf_value[self.leaf(row)]
    }

    /// The child `value` of the split's feature leads to (tree.h `Decision`).
    pub(super) fn next(&self, split: &Split, value: f64) -> Child {
        let x = as_read_by_lightgbm(value);
        let left = match split.rule {
            Rule::Numerical {
                threshold,
                missing,
                default_left,
            } => numerical_goes_left(x, threshold, missing, default_left),
            Rule::Categorical { set } => self.category_goes_left(x, set),
        };
        if left {
            split.left
        } else {
            split.right
        }
    }

    /// tree.h `CategoricalDecision` (LightGBM 4): NaN goes right; otherwise the value is
    /// truncated to an int (`static_cast<int>`: -0.5 and 0.9 are category 0), a negative
    /// category goes right, and the category goes left when its bit is set in the split's
    /// bitset (`Common::FindInBitset`: a bit beyond the bitset is unset). Out of int range,
    /// C++'s cast is undefined and x86 gives INT_MIN (negative: right); Rust's `as`
    /// saturates, to i32::MIN (right) or i32::MAX (beyond any bitset: right), the same side.
    fn category_goes_left(&self, x: f64, set: usize) -> bool {
        if x.is_nan() {
            return false;
        }
        let category = x as i32;
        if category < 0 {
            return false;
        }
        let (start, end) = match (
            self.cat_boundaries.get(set),
            self.cat_boundaries.get(set + 1),
        ) {
            (Some(&start), Some(&end)) => (start, end),
            _ => return false,
        };
        let words = self.cat_threshold.get(start..end).unwrap_or(&[]);
        let word = (category / 32) as usize;
        words
            .get(word)
            .is_some_and(|&bits| (bits >> (category % 32)) & 1 == 1)
    }

    /// Training rows that reached `node`: TreeSHAP's cover (tree.h `data_count`).
    pub(super) fn count(&self, node: Child) -> f64 {
        match node {
            Child::Split(i) => self.splits[i].count,
            Child::Leaf(i) => self.leaf_count[i],
        }
    }

    /// The mean output over the training rows, weighted by leaf counts (tree.cpp
    /// `ExpectedValue`): this tree's share of the SHAP bias.
    pub(super) fn expected_value(&self) -> f64 {
        let Some(root) = self.splits.first() else {
            return self.leaf_value[0];
        };
        let total = root.count;
        let mut expected = 0.0;
        for (count, value) in self.leaf_count.iter().zip(&self.leaf_value) {
            expected += (count / total) * value;
        }
        expected
    }

    /// Per feature index: the gains of this tree's splits.
    pub(super) fn split_gains(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.splits.iter().map(|s| (s.feature, s.gain))
    }
}

/// LightGBM's C API reads a dense row keeping only values with |x| > kZeroThreshold or NaN
/// (c_api.cpp `RowPairFunctionFromDenseMatric`); the others stay at the prediction buffer's
/// 0.0. So -1e-36 or -kZeroThreshold is compared as 0.0: it matters where a threshold is
/// -kZeroThreshold itself, which LightGBM writes for splits between negatives and zero.
pub(super) fn as_read_by_lightgbm(x: f64) -> f64 {
    if x.abs() <= K_ZERO_THRESHOLD {
        0.0
    } else {
        x
    }
}

/// tree.h `NumericalDecision`: NaN is read as 0.0 unless the missing type is NaN; a missing
/// value (zero for type Zero, NaN for type NaN) takes the default branch; otherwise
/// `x <= threshold` goes left (so a value exactly on the threshold goes left, unlike
/// XGBoost's `x < threshold`).
fn numerical_goes_left(x: f64, threshold: f64, missing: Missing, default_left: bool) -> bool {
    let x = if x.is_nan() && missing != Missing::NaN {
        0.0
    } else {
        x
    };
    let is_missing = match missing {
        Missing::None => false,
        Missing::Zero => x.abs() <= K_ZERO_THRESHOLD,
        Missing::NaN => x.is_nan(),
    };
    if is_missing {
        default_left
    } else {
        x <= threshold
    }
}

/// `is_linear=1` marks a tree with linear models in its leaves (`linear_tree=true`): its
/// output is not a leaf value, so scoring it as one would be silently wrong.
fn refuse_linear(s: &Section<'_>) -> Result<()> {
    if s.get("is_linear").is_some() && s.int("is_linear")? != 0 {
        return Err(s.error(
            "is_linear",
            "a linear tree (trained with linear_tree=true); fraudlake scores only LightGBM \
             GBDT trees with constant leaves",
        ));
    }
    Ok(())
}

/// The internal nodes of a tree of `leaves` leaves.
fn read_splits(s: &Section<'_>, leaves: usize, num_features: usize) -> Result<Vec<Split>> {
    let n = leaves - 1;
    let features = s.ints("split_feature", n)?;
    let thresholds = s.floats("threshold", n)?;
    let decision_types = s.ints("decision_type", n)?;
    let left = s.ints("left_child", n)?;
    let right = s.ints("right_child", n)?;
    let count = counts(s, "internal_count", n)?;
    let gain = match s.get("split_gain") {
        Some(_) => s.floats("split_gain", n)?,
        None => vec![0.0; n],
    };
    let mut splits = Vec::with_capacity(n);
    for i in 0..n {
        let feature = usize::try_from(features[i])
            .ok()
            .filter(|&f| f < num_features)
            .ok_or_else(|| {
                s.error(
                    "split_feature",
                    format!(
                        "node {i} splits on feature {}, the model has {num_features}",
                        features[i]
                    ),
                )
            })?;
        splits.push(Split {
            feature,
            rule: rule(s, i, decision_types[i], thresholds[i])?,
            left: child(s, "left_child", i, left[i], leaves)?,
            right: child(s, "right_child", i, right[i], leaves)?,
            count: count[i],
            gain: gain[i],
        });
    }
    Ok(splits)
}

/// The rule of node `node` from its `decision_type` and `threshold`.
fn rule(s: &Section<'_>, node: usize, decision_type: i64, threshold: f64) -> Result<Rule> {
    if !(0..=15).contains(&decision_type) {
        return Err(s.error(
            "decision_type",
            format!("node {node} has {decision_type}, which sets bits LightGBM does not define"),
        ));
    }
    if decision_type & CATEGORICAL_MASK != 0 {
        // A categorical split's threshold is the index of its bitset (tree.h:
        // `static_cast<int>(threshold_[node])`); LightGBM writes it as an integer.
        if !(threshold >= 0.0 && threshold.fract() == 0.0 && threshold <= MAX_LEAVES as f64) {
            return Err(s.error(
                "threshold",
                format!("categorical node {node} has bitset index {threshold}"),
            ));
        }
        return Ok(Rule::Categorical {
            set: threshold as usize,
        });
    }
    let missing = match (decision_type >> 2) & 3 {
        0 => Missing::None,
        1 => Missing::Zero,
        2 => Missing::NaN,
        other => {
            return Err(s.error(
                "decision_type",
                format!("node {node} has missing type {other}, which LightGBM does not define"),
            ))
        }
    };
    Ok(Rule::Numerical {
        threshold,
        missing,
        default_left: decision_type & DEFAULT_LEFT_MASK != 0,
    })
}

/// A child reference of node `node`. LightGBM numbers a split after its parent (`Tree::Split`
/// appends nodes), so a child split's index must exceed the parent's: that also rules out
/// cycles.
fn child(s: &Section<'_>, key: &str, node: usize, value: i64, leaves: usize) -> Result<Child> {
    let splits = leaves - 1;
    let found = if value >= 0 {
        usize::try_from(value)
            .ok()
            .filter(|&c| c > node && c < splits)
            .map(Child::Split)
    } else {
        usize::try_from(!value)
            .ok()
            .filter(|&leaf| leaf < leaves)
            .map(Child::Leaf)
    };
    found.ok_or_else(|| {
        s.error(
            key,
            format!(
                "node {node} has child {value}, not a later split (below {splits}) nor a \
                 leaf (-1 to -{leaves})"
            ),
        )
    })
}

/// The categorical bitsets: `cat_boundaries` (num_cat + 1 word offsets from 0, never
/// decreasing) and `cat_threshold` (the 32-bit words).
fn read_categories(s: &Section<'_>) -> Result<(Vec<usize>, Vec<u32>)> {
    let num_cat = s.int("num_cat")?;
    if num_cat == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    if !(1..MAX_LEAVES).contains(&num_cat) {
        return Err(s.error("num_cat", format!("{num_cat} is outside 0..{MAX_LEAVES}")));
    }
    let raw = s.ints("cat_boundaries", num_cat as usize + 1)?;
    let mut boundaries: Vec<usize> = Vec::with_capacity(raw.len());
    for (k, &b) in raw.iter().enumerate() {
        let previous = boundaries.last().copied().unwrap_or(0);
        match usize::try_from(b) {
            Ok(b) if (k > 0 || b == 0) && b >= previous => boundaries.push(b),
            _ => {
                return Err(s.error(
                    "cat_boundaries",
                    format!(
                        "value {} ({b}) breaks 'starts at 0, never decreases'",
                        k + 1
                    ),
                ))
            }
        }
    }
    let words = boundaries.last().copied().unwrap_or(0);
    let threshold = s
        .ints("cat_threshold", words)?
        .into_iter()
        .enumerate()
        .map(|(k, w)| {
            u32::try_from(w).map_err(|_| {
                s.error(
                    "cat_threshold",
                    format!("value {} ({w}) is not a 32-bit word", k + 1),
                )
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok((boundaries, threshold))
}

/// Row counts (`internal_count`, `leaf_count`): non-negative integers, as f64 for TreeSHAP's
/// ratios (LightGBM divides them as doubles too).
fn counts(s: &Section<'_>, key: &str, len: usize) -> Result<Vec<f64>> {
    s.ints(key, len)?
        .into_iter()
        .enumerate()
        .map(|(k, c)| {
            if c < 0 {
                Err(s.error(key, format!("value {} is negative ({c})", k + 1)))
            } else {
                Ok(c as f64)
            }
        })
        .collect()
}

/// Checks that the nodes form one tree (every split but the root and every leaf is the child
/// of exactly one split) and returns its depth, refusing trees deeper than [`MAX_DEPTH`].
fn check_shape(s: &Section<'_>, splits: &[Split], leaves: usize) -> Result<usize> {
    let mut split_depth: Vec<Option<usize>> = vec![None; splits.len()];
    let mut leaf_seen = vec![false; leaves];
    if let Some(root) = split_depth.first_mut() {
        *root = Some(0);
    }
    let mut max_depth = 0;
    // Children come after their parent, so a split's depth is known when it is reached.
    for (i, split) in splits.iter().enumerate() {
        let Some(depth) = split_depth[i] else {
            return Err(s.error("left_child", format!("split {i} is no node's child")));
        };
        for child in [split.left, split.right] {
            let twice = match child {
                Child::Split(c) => split_depth[c].replace(depth + 1).is_some(),
                Child::Leaf(l) => {
                    max_depth = max_depth.max(depth + 1);
                    std::mem::replace(&mut leaf_seen[l], true)
                }
            };
            if twice {
                return Err(s.error("left_child", format!("{child:?} is the child of two nodes")));
            }
        }
    }
    if let Some(leaf) = leaf_seen.iter().position(|seen| !seen) {
        return Err(s.error("left_child", format!("leaf {leaf} is no node's child")));
    }
    if max_depth > MAX_DEPTH {
        return Err(s.error(
            "left_child",
            format!("the tree is {max_depth} levels deep; fraudlake accepts up to {MAX_DEPTH}"),
        ));
    }
    Ok(max_depth)
}
