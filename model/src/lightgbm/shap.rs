//! TreeSHAP (Lundberg et al., arXiv:1706.06060) as LightGBM computes `pred_contrib`:
//! tree.cpp `TreeSHAP`, `ExtendPath`, `UnwindPath`, `UnwoundPathSum` and tree.h
//! `PredictContrib`, with the training row counts (`internal_count`, `leaf_count`) as cover.
//! The arithmetic is LightGBM's, operation for operation (same order, same parenthesization),
//! so the contributions agree with LightGBM's to the last bits, not only within a tolerance.

use super::tree::{Child, Tree};

/// One feature's entry on the path from the root to the current node.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PathElement {
    /// The feature split on (`None` for the root's placeholder, LightGBM's -1).
    feature: Option<usize>,
    /// Share of the cover that follows the path when the feature is unknown.
    zero_fraction: f64,
    /// 1 when the row follows the path, 0 when it does not.
    one_fraction: f64,
    /// Permutation weight (of the subsets with as many features as this entry's position).
    pweight: f64,
}

/// The path buffer for trees up to `max_depth` deep: LightGBM's
/// `max_path_len * (max_path_len + 1) / 2` with `max_path_len = max_depth + 1`, since each
/// level copies its parent's path after it.
pub(super) fn path_buffer(max_depth: usize) -> Vec<PathElement> {
    let len = max_depth + 1;
    vec![PathElement::default(); len * (len + 1) / 2]
}

/// Adds one tree's SHAP values for `row` to `phi` (one entry per feature, then the bias), as
/// tree.h `PredictContrib` does: the tree's expected value to the bias, then the recursion for
/// a tree with splits. `path` comes from [`path_buffer`] for at least this tree's depth.
pub(super) fn add_tree(tree: &Tree, row: &[f64], phi: &mut [f64], path: &mut [PathElement]) {
    if let Some(bias) = phi.last_mut() {
        *bias += tree.expected_value();
    }
    if tree.splits.is_empty() {
        return;
    }
    let mut walk = Walk {
        tree,
        row,
        phi,
        path,
    };
    walk.recurse(Child::Split(0), 0, 0, 1.0, 1.0, None);
}

struct Walk<'a> {
    tree: &'a Tree,
    row: &'a [f64],
    phi: &'a mut [f64],
    path: &'a mut [PathElement],
}

impl Walk<'_> {
    /// tree.cpp `TreeSHAP`: `parent_base` is where the parent's path starts in the buffer and
    /// `depth` its length (LightGBM's `unique_depth`); this node's path is written right after.
    fn recurse(
        &mut self,
        node: Child,
        parent_base: usize,
        depth: usize,
        zero_fraction: f64,
        one_fraction: f64,
        feature: Option<usize>,
    ) {
        let base = parent_base + depth;
        if depth > 0 {
            self.path.copy_within(parent_base..base, base);
        }
        extend(
            &mut self.path[base..],
            depth,
            zero_fraction,
            one_fraction,
            feature,
        );
        match node {
            Child::Leaf(leaf) => self.credit_leaf(base, depth, self.tree.leaf_value[leaf]),
            Child::Split(index) => self.split(index, base, depth),
        }
    }

    /// At a leaf: each feature on the path gets its weighted share of the leaf value.
    fn credit_leaf(&mut self, base: usize, depth: usize, value: f64) {
        let path = &self.path[base..];
        for (i, el) in path.iter().enumerate().take(depth + 1).skip(1) {
            let w = unwound_sum(path, depth, i);
            if let Some(f) = el.feature {
                self.phi[f] += w * (el.one_fraction - el.zero_fraction) * value;
            }
        }
    }

    /// At a split: follow the row's branch ("hot", one fraction carried on) and the other
    /// ("cold", one fraction 0), each with its share of the cover; a feature already on the
    /// path is first unwound so that it appears once.
    fn split(&mut self, index: usize, base: usize, depth: usize) {
        let split = self.tree.splits[index];
        let hot = self.tree.next(&split, self.row[split.feature]);
        let cold = if hot == split.left {
            split.right
        } else {
            split.left
        };
        let w = split.count;
        let hot_zero_fraction = self.tree.count(hot) / w;
        let cold_zero_fraction = self.tree.count(cold) / w;
        let mut incoming_zero_fraction = 1.0;
        let mut incoming_one_fraction = 1.0;
        let mut depth = depth;
        let seen = self.path[base..=base + depth]
            .iter()
            .position(|el| el.feature == Some(split.feature));
        if let Some(at) = seen {
            incoming_zero_fraction = self.path[base + at].zero_fraction;
            incoming_one_fraction = self.path[base + at].one_fraction;
            unwind(&mut self.path[base..], depth, at);
            // `at` > 0: the root placeholder has no feature, so `depth` >= 1 here.
            depth -= 1;
        }
        self.recurse(
            hot,
            base,
            depth + 1,
            hot_zero_fraction * incoming_zero_fraction,
            incoming_one_fraction,
            Some(split.feature),
        );
        self.recurse(
            cold,
            base,
            depth + 1,
            cold_zero_fraction * incoming_zero_fraction,
            0.0,
            Some(split.feature),
        );
    }
}

/// tree.cpp `ExtendPath`: appends an element at `depth` and updates the permutation weights.
fn extend(
    path: &mut [PathElement],
    depth: usize,
    zero_fraction: f64,
    one_fraction: f64,
    feature: Option<usize>,
) {
    path[depth] = PathElement {
        feature,
        zero_fraction,
        one_fraction,
        pweight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let len = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].pweight += one_fraction * path[i].pweight * (i + 1) as f64 / len;
        path[i].pweight = zero_fraction * path[i].pweight * (depth - i) as f64 / len;
    }
}

/// tree.cpp `UnwindPath`: removes element `at`, undoing its effect on the weights (the
/// weights stay in place, the features, zero and one fractions above `at` move down one).
fn unwind(path: &mut [PathElement], depth: usize, at: usize) {
    let one_fraction = path[at].one_fraction;
    let zero_fraction = path[at].zero_fraction;
    let mut next_one_portion = path[depth].pweight;
    let len = (depth + 1) as f64;
    for i in (0..depth).rev() {
        if one_fraction != 0.0 {
            let tmp = path[i].pweight;
            path[i].pweight = next_one_portion * len / ((i + 1) as f64 * one_fraction);
            next_one_portion = tmp - path[i].pweight * zero_fraction * (depth - i) as f64 / len;
        } else {
            path[i].pweight = (path[i].pweight * len) / (zero_fraction * (depth - i) as f64);
        }
    }
    for i in at..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

/// tree.cpp `UnwoundPathSum`: the total permutation weight the path would have without
/// element `at`.
fn unwound_sum(path: &[PathElement], depth: usize, at: usize) -> f64 {
    let one_fraction = path[at].one_fraction;
    let zero_fraction = path[at].zero_fraction;
    let mut next_one_portion = path[depth].pweight;
    let len = (depth + 1) as f64;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one_fraction != 0.0 {
            let tmp = next_one_portion * len / ((i + 1) as f64 * one_fraction);
            total += tmp;
            next_one_portion = path[i].pweight - tmp * zero_fraction * ((depth - i) as f64 / len);
        } else {
            total += (path[i].pweight / zero_fraction) / ((depth - i) as f64 / len);
        }
    }
    total
}
