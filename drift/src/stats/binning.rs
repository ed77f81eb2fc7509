//! Evidently's binning (a Sturges histogram or the value counts, numpy's bit for bit) and the
//! two statistics computed on the binned shares: PSI and Jensen-Shannon.

use super::sample::{
    distinct_sorted, neumaier_sum, prepare, value_counts_union, with_prepared, Neumaier,
};
use super::{Binned, Bins, ColumnKind, Sample, StatsError, HISTOGRAM_MIN_REFERENCE_VALUES};

/// scipy's `jensenshannon(p, q)` (natural log): both vectors are normalised to sum 1. NaN when
/// the lengths differ or the input is empty.
pub fn jensenshannon(p: &[f64], q: &[f64]) -> f64 {
    if p.is_empty() || p.len() != q.len() {
        return f64::NAN;
    }
    let ps = neumaier_sum(p.iter().copied());
    let qs = neumaier_sum(q.iter().copied());
    let mut left = Neumaier::default();
    let mut right = Neumaier::default();
    for (&pi, &qi) in p.iter().zip(q) {
        let (pi, qi) = (pi / ps, qi / qs);
        let m = (pi + qi) / 2.0;
        left.add(rel_entr(pi, m));
        right.add(rel_entr(qi, m));
    }
    // A sum of non-negative terms; rounding can leave it a hair below 0 (scipy then returns NaN).
    ((left.total() + right.total()) / 2.0).max(0.0).sqrt()
}

/// Evidently's `jensenshannon` statistic for a column of this kind (binned without filling).
/// Infinite values are dropped; NaN when a sample is empty or contains NaN, or numpy could not
/// bin the values.
pub fn jensenshannon_distance(reference: &[f64], current: &[f64], kind: ColumnKind) -> f64 {
    with_prepared(reference, current, |r, c| {
        let b = binned_sorted(kind, r, c, false)?;
        Ok(jensenshannon(&b.reference, &b.current))
    })
}

/// Evidently's PSI for a column of this kind. Infinite values are dropped; NaN when a sample is
/// empty or contains NaN, or numpy could not bin the values.
pub fn psi(reference: &[f64], current: &[f64], kind: ColumnKind) -> f64 {
    with_prepared(reference, current, |r, c| psi_sorted(kind, r, c))
}

/// Evidently's `get_binned_data`: the shares of each sample per bin, with empty bins filled as
/// for PSI when `fill_zeroes` is set. Infinite values are dropped.
pub fn binned_percents(
    reference: &[f64],
    current: &[f64],
    kind: ColumnKind,
    fill_zeroes: bool,
) -> Result<Binned, StatsError> {
    let r = prepare(reference, Sample::Reference)?;
    let c = prepare(current, Sample::Current)?;
    binned_sorted(kind, &r, &c, fill_zeroes)
}

pub(super) fn binned_sorted(
    kind: ColumnKind,
    r: &[f64],
    c: &[f64],
    fill_zeroes: bool,
) -> Result<Binned, StatsError> {
    let (bins, mut rp, mut cp) =
        if kind == ColumnKind::Numerical && distinct_sorted(r) > HISTOGRAM_MIN_REFERENCE_VALUES {
            let integral = r.iter().chain(c).all(|x| x.fract() == 0.0);
            let edges = sturges_edges(r, c, integral)?;
            let rp = shares(&histogram_counts(r, &edges), r.len());
            let cp = shares(&histogram_counts(c, &edges), c.len());
            (Bins::Histogram(edges), rp, cp)
        } else {
            let (keys, rc, cc) = value_counts_union(r, c);
            (
                Bins::Values(keys),
                shares(&rc, r.len()),
                shares(&cc, c.len()),
            )
        };
    if fill_zeroes {
        fill_empty_bins(&mut rp);
        fill_empty_bins(&mut cp);
    }
    Ok(Binned {
        bins,
        reference: rp,
        current: cp,
    })
}

fn shares(counts: &[usize], total: usize) -> Vec<f64> {
    counts.iter().map(|&n| n as f64 / total as f64).collect()
}

/// Evidently's `feel_zeroes`: empty bins get `min(non-zero) / 1e6` when that minimum is at most
/// 0.0001, else 0.0001.
fn fill_empty_bins(p: &mut [f64]) {
    let min_nonzero = p
        .iter()
        .copied()
        .filter(|&x| x != 0.0)
        .fold(f64::INFINITY, f64::min);
    if !min_nonzero.is_finite() {
        return;
    }
    let fill = if min_nonzero <= 0.0001 {
        min_nonzero / 1e6
    } else {
        0.0001
    };
    for x in p.iter_mut().filter(|x| **x == 0.0) {
        *x = fill;
    }
}

/// `np.histogram_bin_edges(concat(a, b), bins="sturges")`, bit for bit.
pub(super) fn sturges_edges(a: &[f64], b: &[f64], integral: bool) -> Result<Vec<f64>, StatsError> {
    let (Some(&a0), Some(&b0), Some(&a1), Some(&b1)) = (a.first(), b.first(), a.last(), b.last())
    else {
        return Err(StatsError::Binning("no values".into()));
    };
    let (min, max) = (a0.min(b0), a1.max(b1));
    let ptp = max - min;
    if !min.is_finite() || !max.is_finite() || !ptp.is_finite() {
        return Err(StatsError::Binning(format!(
            "range [{min}, {max}] is not finite"
        )));
    }
    let (mut first, mut last) = (min, max);
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let size = (a.len() + b.len()) as f64;
    let mut width = ptp / (size.log2() + 1.0);
    let n_bins = if width != 0.0 {
        // numpy widens the bins of integer data to at least 1.
        if integral && width < 1.0 {
            width = 1.0;
        }
        ((last - first) / width).ceil()
    } else {
        1.0
    };
    if !(1.0..=1e7).contains(&n_bins) {
        return Err(StatsError::Binning(format!(
            "unexpected number of bins {n_bins}"
        )));
    }
    let edges = linspace(first, last, n_bins as usize + 1);
    if edges.windows(2).any(|w| w[0] >= w[1]) {
        return Err(StatsError::Binning(format!(
            "too many bins for data range: cannot create {n_bins} finite-sized bins"
        )));
    }
    Ok(edges)
}

/// `np.linspace(start, stop, num)` with `endpoint=True`, bit for bit.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> = (0..num)
        .map(|i| {
            let i = i as f64;
            if step == 0.0 {
                i / div * delta + start
            } else {
                i * step + start
            }
        })
        .collect();
    if let Some(l) = y.last_mut() {
        *l = stop;
    }
    y
}

/// `np.histogram(sorted, edges)[0]`: bins are `[e_i, e_{i+1})`, the last one closed.
fn histogram_counts(sorted: &[f64], edges: &[f64]) -> Vec<usize> {
    let n = edges.len();
    let cum: Vec<usize> = edges
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            if i + 1 == n {
                sorted.partition_point(|&v| v <= e)
            } else {
                sorted.partition_point(|&v| v < e)
            }
        })
        .collect();
    cum.windows(2).map(|w| w[1] - w[0]).collect()
}

pub(super) fn psi_sorted(kind: ColumnKind, r: &[f64], c: &[f64]) -> Result<f64, StatsError> {
    let b = binned_sorted(kind, r, c, true)?;
    Ok(neumaier_sum(
        b.reference
            .iter()
            .zip(&b.current)
            .map(|(&rp, &cp)| (rp - cp) * (rp / cp).ln()),
    ))
}

/// scipy's `rel_entr`.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}
