//! The two-sample Kolmogorov-Smirnov test as scipy's `ks_2samp(method="auto")`: the statistic,
//! and its p-value, exact (lattice-path counts) for samples of at most 10,000 values and from
//! the one-sample distribution (`kstwo.rs`) above.

use super::kstwo::kstwo_sf;
use super::sample::{sorted_copy, Merge};
use super::KsResult;

/// scipy's `ks_2samp(method="auto")` computes the exact p-value when both samples have at most
/// this many values (`MAX_AUTO_N`).
const KS_EXACT_MAX_N: usize = 10_000;

/// scipy's `ks_2samp(a, b)` (two-sided, `method="auto"`). Both fields are NaN when a sample is
/// empty or contains NaN.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> KsResult {
    match (sorted_copy(a), sorted_copy(b)) {
        (Some(a), Some(b)) => ks_sorted(&a, &b),
        _ => KsResult {
            statistic: f64::NAN,
            pvalue: f64::NAN,
        },
    }
}

/// The p-value of [`ks_2samp`]: exact for samples of at most 10,000 values, otherwise from
/// `kstwo`, exactly as scipy's `method="auto"`. NaN when a sample is empty or contains NaN.
pub fn ks_2samp_pvalue(a: &[f64], b: &[f64]) -> f64 {
    ks_2samp(a, b).pvalue
}

pub(super) fn ks_sorted(a: &[f64], b: &[f64]) -> KsResult {
    let (n1, n2) = (a.len(), b.len());
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let mut max_diff = f64::NEG_INFINITY;
    let mut min_diff = f64::INFINITY;
    let mut merged = Merge::new(a, b);
    while merged.next_value().is_some() {
        let diff = merged.i as f64 / n1f - merged.j as f64 / n2f;
        max_diff = max_diff.max(diff);
        min_diff = min_diff.min(diff);
    }
    let min_s = (-min_diff).clamp(0.0, 1.0);
    let d = if min_s > max_diff { min_s } else { max_diff };
    KsResult {
        statistic: d,
        pvalue: ks_2samp_p(d, n1, n2),
    }
}

/// scipy's two-sided p-value selection for `method="auto"`.
fn ks_2samp_p(d: f64, n1: usize, n2: usize) -> f64 {
    let mut d = d;
    if n1.max(n2) <= KS_EXACT_MAX_N {
        let (ok, d_exact, p) = ks_exact(n1 as u64, n2 as u64, d);
        if ok {
            return p.clamp(0.0, 1.0);
        }
        d = d_exact;
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = m * n / (m + n);
    let n_eff = en.round_ties_even();
    if n_eff.is_nan() || n_eff < 1.0 {
        return f64::NAN;
    }
    kstwo_sf(n_eff as u64, d).clamp(0.0, 1.0)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// scipy's `_attempt_exact_2kssamp` (two-sided): (success, d rounded to the lattice, p).
pub(super) fn ks_exact(n1: u64, n2: u64, d: f64) -> (bool, f64, f64) {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h_f = (d * lcm as f64).round_ties_even();
    let d = h_f / lcm as f64;
    if h_f == 0.0 {
        return (true, d, 1.0);
    }
    let h = h_f as i64;
    let p = if n1 == n2 {
        prob_outside_square(n1 as i64, h)
    } else {
        outer_prob_inside(n1 as i64, n2 as i64, g as i64, h)
    };
    ((0.0..=1.0).contains(&p), d, p)
}

/// scipy's `_compute_prob_outside_square`: Pr(D_{n,n} >= h/n).
pub(super) fn prob_outside_square(n: i64, h: i64) -> f64 {
    let mut p = 0.0;
    let mut k = (n as f64 / h as f64).floor() as i64;
    while k >= 0 {
        let mut p1 = 1.0;
        for j in 0..h {
            p1 = ((n - k * h - j) as f64 * p1) / ((n + k * h + j + 1) as f64);
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// scipy's `_compute_outer_prob_inside_method` (the Viehmann recursion for `1 - p`). Returns NaN
/// (scipy then falls back to the asymptotic p-value) if an index would leave the work array.
pub(super) fn outer_prob_inside(m: i64, n: i64, g: i64, h: i64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let mg = m / g;
    let ng = n / g;
    let mut minj: i64 = 0;
    let mut maxj: i64 = ((h as f64 / mg as f64).ceil() as i64).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1).max(0) as usize;
    let mut a = vec![1.0_f64; len_a];
    for x in a.iter_mut().take(maxj.max(0) as usize) {
        *x = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = (((ng * i - h) as f64 / mg as f64).floor() as i64 + 1).max(0);
        minj = minj.min(n);
        maxj = (((ng * i + h) as f64 / mg as f64).ceil() as i64).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        let fi = i as f64;
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let Some(&prev) = usize::try_from(jj + minj - lastminj)
                .ok()
                .and_then(|k| a.get(k))
            else {
                return f64::NAN;
            };
            val = (prev * fi + val * j as f64) / (fi + j as f64);
            match a.get_mut(jj as usize) {
                Some(slot) => *slot = val,
                None => return f64::NAN,
            }
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = ((maxj - minj + (lastlen - curlen)) as usize).min(a.len());
            for x in a.iter_mut().take(to).skip(from) {
                *x = 1.0;
            }
        }
    }
    usize::try_from(maxj - minj - 1)
        .ok()
        .and_then(|k| a.get(k).copied())
        .unwrap_or(f64::NAN)
}
