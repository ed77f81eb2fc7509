//! The p-value tests Evidently uses for categorical and low-cardinality columns: scipy's
//! `chisquare` (over the value counts) and the two-proportion Z-test.

use super::sample::{neumaier_sum, value_counts_union, with_prepared};
use super::ChiSquareResult;

/// scipy's `chisquare(f_obs, f_exp)`. NaN when the lengths differ, the input is empty, or the
/// sums disagree by more than scipy's relative tolerance (`sqrt(eps)`, where scipy raises).
pub fn chisquare(f_obs: &[f64], f_exp: &[f64]) -> ChiSquareResult {
    let nan = ChiSquareResult {
        statistic: f64::NAN,
        pvalue: f64::NAN,
    };
    if f_obs.is_empty() || f_obs.len() != f_exp.len() {
        return nan;
    }
    let obs_sum = neumaier_sum(f_obs.iter().copied());
    let exp_sum = neumaier_sum(f_exp.iter().copied());
    if (obs_sum - exp_sum).abs() / obs_sum.min(exp_sum) > f64::EPSILON.sqrt() {
        return nan;
    }
    let statistic = neumaier_sum(
        f_obs
            .iter()
            .zip(f_exp)
            .map(|(&o, &e)| (o - e) * (o - e) / e),
    );
    let df = (f_obs.len() - 1) as f64;
    ChiSquareResult {
        statistic,
        pvalue: chi2_sf(df, statistic),
    }
}

/// Evidently's `chisquare` p-value: the current value counts against the reference counts
/// scaled to the current size. Infinite values are dropped; NaN when a sample is empty or
/// contains NaN.
pub fn chisquare_pvalue(reference: &[f64], current: &[f64]) -> f64 {
    with_prepared(reference, current, |r, c| Ok(chisquare_sorted(r, c).pvalue))
}

/// Evidently's `z` p-value: two-proportion Z-test of "equals the smallest value" between the
/// samples. Infinite values are dropped; NaN when a sample is empty or contains NaN.
pub fn z_test_pvalue(reference: &[f64], current: &[f64]) -> f64 {
    with_prepared(reference, current, |r, c| Ok(z_test_sorted(r, c)))
}

pub(super) fn chisquare_sorted(r: &[f64], c: &[f64]) -> ChiSquareResult {
    let (_, rc, cc) = value_counts_union(r, c);
    let k_norm = c.len() as f64 / r.len() as f64;
    let f_exp: Vec<f64> = rc.iter().map(|&n| n as f64 * k_norm).collect();
    let f_obs: Vec<f64> = cc.iter().map(|&n| n as f64).collect();
    chisquare(&f_obs, &f_exp)
}

/// Upper tail of chi-squared (scipy's `chdtrc`), including its `df = 0` conventions.
fn chi2_sf(df: f64, x: f64) -> f64 {
    if x.is_nan() || df.is_nan() {
        return f64::NAN;
    }
    if df == 0.0 {
        return if x > 0.0 { 0.0 } else { f64::NAN };
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    statrs::function::gamma::checked_gamma_ur(df / 2.0, x / 2.0).unwrap_or(f64::NAN)
}

pub(super) fn z_test_sorted(r: &[f64], c: &[f64]) -> f64 {
    let (Some(&r0), Some(&c0)) = (r.first(), c.first()) else {
        return f64::NAN;
    };
    let constant = |s: &[f64]| s.last().is_some_and(|&l| l == s[0]);
    if constant(r) && constant(c) && r0 == c0 {
        return 1.0;
    }
    let key = if r0 < c0 { r0 } else { c0 };
    // The share of values that are not the smallest key.
    let ones = |s: &[f64]| (s.len() - s.partition_point(|&v| v <= key)) as f64;
    let (n1, n2) = (r.len() as f64, c.len() as f64);
    let p1 = ones(r) / n1;
    let p2 = ones(c) / n2;
    let p = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
    2.0 * (1.0 - normal_cdf(z.abs()))
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2)
}
