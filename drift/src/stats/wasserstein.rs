//! The Wasserstein distance (scipy's `wasserstein_distance`) and Evidently's `wasserstein`
//! statistic for numerical columns (the distance over the reference's standard deviation).

use super::sample::{sorted_copy, std_population, with_prepared, Merge, Neumaier};

/// scipy's `wasserstein_distance(a, b)` (unweighted). NaN when a sample is empty or contains NaN.
pub fn wasserstein_distance(a: &[f64], b: &[f64]) -> f64 {
    match (sorted_copy(a), sorted_copy(b)) {
        (Some(a), Some(b)) => wasserstein_sorted(&a, &b),
        _ => f64::NAN,
    }
}

/// Evidently's `wasserstein` statistic: [`wasserstein_distance`] divided by
/// `max(std(reference), 0.001)`. Infinite values are dropped; NaN when a sample is empty or
/// contains NaN.
pub fn wasserstein_distance_norm(reference: &[f64], current: &[f64]) -> f64 {
    with_prepared(reference, current, |r, c| Ok(wasserstein_norm_sorted(r, c)))
}

fn wasserstein_sorted(u: &[f64], v: &[f64]) -> f64 {
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let mut merged = Merge::new(u, v);
    let mut acc = Neumaier::default();
    // (previous value, CDFs of u and v just after it: searchsorted(..., side="right") / size)
    let mut prev: Option<(f64, f64, f64)> = None;
    while let Some((x, _, _)) = merged.next_value() {
        if let Some((p, cu, cv)) = prev {
            acc.add((cu - cv).abs() * (x - p));
        }
        prev = Some((x, merged.i as f64 / nu, merged.j as f64 / nv));
    }
    acc.total()
}

pub(super) fn wasserstein_norm_sorted(r: &[f64], c: &[f64]) -> f64 {
    let norm = std_population(r).max(0.001);
    wasserstein_sorted(r, c) / norm
}
