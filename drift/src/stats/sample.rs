//! What every statistic does to its samples first (NaN is an error, infinities dropped, -0.0
//! folded into 0.0, sorted) and the helpers they share on sorted samples: distinct values, a
//! merged walk of two samples, value counts, compensated (Neumaier) sums.

use std::cmp::Ordering;

use super::{Sample, StatsError};

pub(super) fn check_no_nan(data: &[f64], sample: Sample) -> Result<(), StatsError> {
    match data.iter().position(|x| x.is_nan()) {
        Some(index) => Err(StatsError::NaN { sample, index }),
        None => Ok(()),
    }
}

/// NaN check, infinities dropped, -0.0 folded into 0.0 (pandas counts them as one value),
/// sorted ascending; error when nothing is left.
pub(super) fn prepare(data: &[f64], sample: Sample) -> Result<Vec<f64>, StatsError> {
    check_no_nan(data, sample)?;
    let mut v: Vec<f64> = data
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| x + 0.0)
        .collect();
    if v.is_empty() {
        return Err(StatsError::Empty(sample));
    }
    v.sort_unstable_by(f64::total_cmp);
    Ok(v)
}

/// Sorted copy keeping infinities (scipy's raw functions accept them); None if empty or NaN.
pub(super) fn sorted_copy(data: &[f64]) -> Option<Vec<f64>> {
    if data.is_empty() || data.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut v: Vec<f64> = data.iter().map(|&x| x + 0.0).collect();
    v.sort_unstable_by(f64::total_cmp);
    Some(v)
}

/// Finite values, sorted (for the infallible helpers).
pub(super) fn finite_sorted(data: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = data
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| x + 0.0)
        .collect();
    v.sort_unstable_by(f64::total_cmp);
    v
}

pub(super) fn with_prepared(
    reference: &[f64],
    current: &[f64],
    f: impl FnOnce(&[f64], &[f64]) -> Result<f64, StatsError>,
) -> f64 {
    let run = || -> Result<f64, StatsError> {
        let r = prepare(reference, Sample::Reference)?;
        let c = prepare(current, Sample::Current)?;
        f(&r, &c)
    };
    run().unwrap_or(f64::NAN)
}

/// True when `data` has at most `limit` distinct non-NaN values (early exit, no sort).
pub(super) fn has_at_most_distinct(data: &[f64], limit: usize) -> bool {
    let mut seen: Vec<f64> = Vec::with_capacity(limit + 1);
    for &x in data {
        if x.is_nan() || seen.contains(&x) {
            continue;
        }
        seen.push(x);
        if seen.len() > limit {
            return false;
        }
    }
    true
}

pub(super) fn distinct_sorted(a: &[f64]) -> usize {
    if a.is_empty() {
        return 0;
    }
    1 + a.windows(2).filter(|w| w[0] != w[1]).count()
}

/// Number of distinct values of two sorted samples together.
pub(super) fn union_distinct(a: &[f64], b: &[f64]) -> usize {
    let mut n = 0;
    let mut merged = Merge::new(a, b);
    while merged.next_value().is_some() {
        n += 1;
    }
    n
}

/// Walks the distinct values of two sorted samples in ascending order, tracking how many
/// values of each are `<=` the current one (`searchsorted(..., side="right")`).
pub(super) struct Merge<'a> {
    a: &'a [f64],
    b: &'a [f64],
    /// Values of `a` at or below the current one.
    pub(super) i: usize,
    /// Values of `b` at or below the current one.
    pub(super) j: usize,
}

impl<'a> Merge<'a> {
    pub(super) fn new(a: &'a [f64], b: &'a [f64]) -> Self {
        Merge { a, b, i: 0, j: 0 }
    }

    /// Advances to the next distinct value; returns it with the counts before the step.
    pub(super) fn next_value(&mut self) -> Option<(f64, usize, usize)> {
        let x = match (self.a.get(self.i), self.b.get(self.j)) {
            (Some(&x), Some(&y)) => {
                if x.total_cmp(&y) == Ordering::Greater {
                    y
                } else {
                    x
                }
            }
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => return None,
        };
        let (i0, j0) = (self.i, self.j);
        while self.a.get(self.i).is_some_and(|&v| v == x) {
            self.i += 1;
        }
        while self.b.get(self.j).is_some_and(|&v| v == x) {
            self.j += 1;
        }
        Some((x, i0, j0))
    }
}

/// Keys (ascending) with their counts in each sample, over the union of values.
pub(super) fn value_counts_union(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<usize>, Vec<usize>) {
    let mut keys = Vec::new();
    let mut ca = Vec::new();
    let mut cb = Vec::new();
    let mut merged = Merge::new(a, b);
    while let Some((x, i0, j0)) = merged.next_value() {
        keys.push(x);
        ca.push(merged.i - i0);
        cb.push(merged.j - j0);
    }
    (keys, ca, cb)
}

#[derive(Default, Clone, Copy)]
pub(super) struct Neumaier {
    sum: f64,
    comp: f64,
}

impl Neumaier {
    pub(super) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if t.is_finite() {
            if self.sum.abs() >= x.abs() {
                self.comp += (self.sum - t) + x;
            } else {
                self.comp += (x - t) + self.sum;
            }
        }
        self.sum = t;
    }

    pub(super) fn total(self) -> f64 {
        if self.sum.is_finite() {
            self.sum + self.comp
        } else {
            self.sum
        }
    }
}

pub(super) fn neumaier_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut acc = Neumaier::default();
    for x in values {
        acc.add(x);
    }
    acc.total()
}

/// Population standard deviation (`np.std`, ddof = 0), two-pass as pandas computes it.
pub(super) fn std_population(a: &[f64]) -> f64 {
    let n = a.len() as f64;
    let mean = neumaier_sum(a.iter().copied()) / n;
    let var = neumaier_sum(a.iter().map(|&x| (x - mean) * (x - mean))) / n;
    var.sqrt()
}
