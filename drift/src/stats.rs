//! Data-drift statistics that reproduce Evidently 0.7's `DataDriftPreset`.
//!
//! Fraudlake's drift reports stand in for Evidently's (the Python peer in `bench/README.md`), and
//! they are only comparable if every column gets the same method, statistic, threshold and
//! verdict here as there. This module is that contract. Every rule below was read from the code
//! of Evidently 0.7.23 (paths relative to its `evidently/` package) and scipy 1.17, not from
//! their documentation, and `tests/data/make_vectors.py` records Evidently's and scipy's own
//! results for the tests at the bottom of this file.
//!
//! * Column kind (`evidently/core/datasets.py::infer_column_type`, applied to the *current*
//!   dataset, whose data definition the report uses): float dtype is numerical; integer dtype is
//!   categorical when it has at most 10 distinct values (`INTEGER_CARDINALITY_LIMIT`) and
//!   numerical otherwise; bool is categorical. Slices of `f64` carry no dtype, so
//!   [`infer_kind`] treats an all-integral column as an integer one. Callers that know the
//!   source type should use [`infer_kind_typed`].
//! * Method choice (`legacy/calculations/stattests/registry.py::_get_default_stattest`), with
//!   `n` = distinct values of reference and current together and the row count of the
//!   reference *after* NaN and infinities are dropped (`legacy/calculations/data_drift.py::
//!   get_one_column_drift` drops them):
//!   - reference <= 1000 rows: numerical with n > 5 -> `ks`; otherwise (numerical with n <= 5
//!     or categorical) `chisquare` when n > 2 and `z` when n <= 2;
//!   - reference > 1000 rows: numerical with n > 5 -> `wasserstein`; otherwise
//!     `jensenshannon`.
//! * Statistics and verdicts (`legacy/calculations/stattests/*.py`): `ks` is scipy's
//!   `ks_2samp` p-value, drift when `p <= threshold`; `chisquare` is scipy's `chisquare` of the
//!   current counts against the reference counts scaled to the current size, drift when
//!   `p < threshold`; `z` is a two-proportion Z-test of "smallest value" vs the rest, drift when
//!   `p < threshold` (p = 1 when both sides hold the same single value); `wasserstein` is scipy's
//!   `wasserstein_distance` divided by `max(std(reference), 0.001)` (population std), drift when
//!   `>= threshold`; `jensenshannon` is scipy's `jensenshannon` (natural log) of the binned
//!   shares, drift when `>= threshold`; `psi` is `sum((r - c) * ln(r / c))` over the binned
//!   shares with empty bins filled, drift when `>= threshold`.
//! * Default thresholds (the `StatTest` objects): 0.05 for `ks`, `chisquare` and `z`; 0.1 for
//!   `wasserstein`, `jensenshannon` and `psi`.
//! * Binning (`legacy/calculations/stattests/utils.py::get_binned_data`): numerical columns with
//!   more than 20 distinct reference values use `np.histogram_bin_edges(reference + current,
//!   bins="sturges")`; everything else uses the value counts over the union of values. PSI fills
//!   empty bins with `min(non-zero share) / 1e6` when that minimum is <= 0.0001, else with 0.0001
//!   (per side); Jensen-Shannon does not fill.
//! * Applicability (`allowed_feature_types`): `ks` and `wasserstein` only for numerical columns,
//!   `chisquare` and `z` only for categorical ones (the automatic choice still uses them for
//!   low-cardinality numerical columns), `jensenshannon` and `psi` for both. An explicit method
//!   that does not apply is an error, as in Evidently.
//! * Dataset drift (`legacy/calculations/data_drift.py::get_dataset_drift` and the preset's
//!   `drift_share=0.5`): drifted when `drifted columns / columns >= 0.5`.
//!
//! [`ks_2samp`] follows scipy's `ks_2samp(method="auto")` exactly: the exact two-sided p-value
//! (Hodges' lattice-path counts, `_compute_prob_outside_square` for equal sizes and
//! `_compute_outer_prob_inside_method` otherwise) when both samples have at most 10,000 values,
//! and otherwise `kstwo.sf(d, round(n1 * n2 / (n1 + n2)))`, the exact one-sample distribution,
//! computed with Simard and L'Ecuyer's choice of algorithms as in `scipy/stats/_ksstats.py`.
//!
//! Beyond the preset, every column also gets Evidently's PSI (`psi_stat_test`, default threshold
//! 0.1), reported next to the chosen test.
//!
//! Input: NaN is an error (the caller removes nulls); infinite values are dropped, as Evidently
//! does; -0.0 and 0.0 are one value, as in pandas. p-values use `statrs` (chi-squared through
//! the regularized upper incomplete gamma function, the normal CDF through `erfc`). All
//! statistics work on sorted copies of the samples (`O(n log n)`, no `O(n * m)` step).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Share of drifted columns at which the dataset counts as drifted (`DataDriftPreset`'s
/// `drift_share`).
pub const DATASET_DRIFT_SHARE: f64 = 0.5;

/// The largest reference size (rows) for which p-value tests (`ks`, `chisquare`, `z`) are
/// chosen; larger references get distances (`wasserstein`, `jensenshannon`).
pub const SMALL_REFERENCE_MAX_ROWS: usize = 1000;

/// A numerical column with at most this many distinct values (reference and current together)
/// is tested like a categorical one.
pub const LOW_CARDINALITY_MAX_VALUES: usize = 5;

/// An integer column whose current data has at most this many distinct values is categorical
/// (Evidently's `INTEGER_CARDINALITY_LIMIT`).
pub const INTEGER_CATEGORICAL_MAX_VALUES: usize = 10;

/// Numerical columns with more distinct reference values than this are binned into a Sturges
/// histogram for PSI and Jensen-Shannon; others use value counts.
pub const HISTOGRAM_MIN_REFERENCE_VALUES: usize = 20;

/// scipy's `ks_2samp(method="auto")` computes the exact p-value when both samples have at most
/// this many values (`MAX_AUTO_N`).
const KS_EXACT_MAX_N: usize = 10_000;

/// Which of the two samples an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sample {
    /// The reference (baseline) sample.
    Reference,
    /// The current sample.
    Current,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sample::Reference => "reference",
            Sample::Current => "current",
        })
    }
}

/// Errors from the drift tests.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A sample had no finite values (Evidently drops NaN and infinities first).
    #[error("the {0} sample is empty (no finite values)")]
    Empty(Sample),
    /// A sample contained NaN: the caller is expected to remove nulls first.
    #[error(
        "the {sample} sample contains NaN at index {index}; remove nulls and NaN before testing"
    )]
    NaN {
        /// The sample holding the NaN.
        sample: Sample,
        /// Index of the first NaN.
        index: usize,
    },
    /// A method name that [`Method::parse`] does not know.
    #[error(
        "unknown drift method `{0}`; expected one of: ks, wasserstein, chisquare, z, jensenshannon, psi"
    )]
    UnknownMethod(String),
    /// An explicitly requested method that Evidently does not allow for the column kind.
    #[error("drift method `{method}` does not apply to {kind} columns (it applies to: {allowed})")]
    MethodNotApplicable {
        /// The requested method.
        method: Method,
        /// The column kind.
        kind: ColumnKind,
        /// The kinds the method applies to.
        allowed: &'static str,
    },
    /// A threshold that is NaN or infinite.
    #[error("drift threshold must be a finite number, got {0}")]
    InvalidThreshold(f64),
    /// The values cannot be binned (numpy raises for the same data).
    #[error("cannot bin the values: {0}")]
    Binning(String),
}

/// Whether a column is tested as numerical or categorical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// Continuous or many-valued numbers.
    Numerical,
    /// Categories (including integer codes with few values and booleans).
    Categorical,
}

impl ColumnKind {
    /// Lowercase name, as serialized.
    pub fn name(self) -> &'static str {
        match self {
            ColumnKind::Numerical => "numerical",
            ColumnKind::Categorical => "categorical",
        }
    }
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The storage type of a column before it became `f64`, which is what Evidently's kind
/// inference looks at (the pandas dtype).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// Floating point (Arrow `Float32`/`Float64`; pandas `float64`).
    Float,
    /// Integers (Arrow `Int*`/`UInt*`; pandas `int64`).
    Integer,
    /// Booleans (encoded as 0.0 / 1.0).
    Boolean,
}

/// A drift detection method (Evidently's stattest names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    /// Two-sample Kolmogorov-Smirnov test p-value (`ks`).
    #[serde(rename = "ks")]
    Ks,
    /// Wasserstein-1 distance normed by the reference standard deviation (`wasserstein`).
    #[serde(rename = "wasserstein")]
    Wasserstein,
    /// Chi-squared test p-value on value counts (`chisquare`).
    #[serde(rename = "chisquare")]
    ChiSquare,
    /// Two-proportion Z-test p-value (`z`).
    #[serde(rename = "z")]
    ZTest,
    /// Jensen-Shannon distance of the binned shares (`jensenshannon`).
    #[serde(rename = "jensenshannon")]
    JensenShannon,
    /// Population stability index of the binned shares (`psi`).
    #[serde(rename = "psi")]
    Psi,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 6] = [
        Method::Ks,
        Method::Wasserstein,
        Method::ChiSquare,
        Method::ZTest,
        Method::JensenShannon,
        Method::Psi,
    ];

    /// Evidently's name for the method (what `DataDriftPreset(method=...)` accepts).
    pub fn name(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::Wasserstein => "wasserstein",
            Method::ChiSquare => "chisquare",
            Method::ZTest => "z",
            Method::JensenShannon => "jensenshannon",
            Method::Psi => "psi",
        }
    }

    /// Evidently's display name (shown in its reports for an automatically chosen method).
    pub fn display_name(self) -> &'static str {
        match self {
            Method::Ks => "K-S p_value",
            Method::Wasserstein => "Wasserstein distance (normed)",
            Method::ChiSquare => "chi-square p_value",
            Method::ZTest => "Z-test p_value",
            Method::JensenShannon => "Jensen-Shannon distance",
            Method::Psi => "PSI",
        }
    }

    /// Parses an Evidently method name (surrounding spaces and ASCII case are ignored).
    pub fn parse(s: &str) -> Result<Method, StatsError> {
        let wanted = s.trim().to_ascii_lowercase();
        Method::ALL
            .into_iter()
            .find(|m| m.name() == wanted)
            .ok_or_else(|| StatsError::UnknownMethod(s.to_owned()))
    }

    /// Evidently's default threshold for the method.
    pub fn default_threshold(self) -> f64 {
        match self {
            Method::Ks | Method::ChiSquare | Method::ZTest => 0.05,
            Method::Wasserstein | Method::JensenShannon | Method::Psi => 0.1,
        }
    }

    /// True when the statistic is a p-value (small means drift), false for distances.
    pub fn is_p_value(self) -> bool {
        matches!(self, Method::Ks | Method::ChiSquare | Method::ZTest)
    }

    /// Evidently's verdict: `ks` drifts when `p <= threshold`, `chisquare` and `z` when
    /// `p < threshold`, the distances when `statistic >= threshold`. A NaN statistic never drifts.
    pub fn is_drifted(self, statistic: f64, threshold: f64) -> bool {
        match self {
            Method::Ks => statistic <= threshold,
            Method::ChiSquare | Method::ZTest => statistic < threshold,
            Method::Wasserstein | Method::JensenShannon | Method::Psi => statistic >= threshold,
        }
    }

    /// Whether Evidently allows the method for a column kind.
    pub fn applies_to(self, kind: ColumnKind) -> bool {
        match self {
            Method::Ks | Method::Wasserstein => kind == ColumnKind::Numerical,
            Method::ChiSquare | Method::ZTest => kind == ColumnKind::Categorical,
            Method::JensenShannon | Method::Psi => true,
        }
    }

    fn allowed_kinds(self) -> &'static str {
        match self {
            Method::Ks | Method::Wasserstein => "numerical",
            Method::ChiSquare | Method::ZTest => "categorical",
            Method::JensenShannon | Method::Psi => "numerical, categorical",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = StatsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::parse(s)
    }
}

/// The drift test of one column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColumnTest {
    /// How the column was treated.
    pub kind: ColumnKind,
    /// The method used (chosen as Evidently does unless given).
    pub method: Method,
    /// The method's statistic (p-value or distance). NaN only where scipy gives NaN (a
    /// chi-squared test over a single category).
    pub statistic: f64,
    /// The threshold used.
    pub threshold: f64,
    /// Evidently's verdict ([`Method::is_drifted`]).
    pub drifted: bool,
    /// Evidently's PSI of the column, always computed (threshold: `Method::Psi.default_threshold()`).
    pub psi: f64,
}

impl ColumnTest {
    /// Whether the PSI alone reaches its default threshold (0.1).
    pub fn psi_drifted(&self) -> bool {
        Method::Psi.is_drifted(self.psi, Method::Psi.default_threshold())
    }
}

/// Result of [`ks_2samp`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    /// The two-sided statistic `max |F_a - F_b|`.
    pub statistic: f64,
    /// scipy's two-sided p-value.
    pub pvalue: f64,
}

/// Result of [`chisquare`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChiSquareResult {
    /// Pearson's statistic.
    pub statistic: f64,
    /// Upper tail of chi-squared with `k - 1` degrees of freedom.
    pub pvalue: f64,
}

/// How [`binned_percents`] binned the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bins {
    /// Sturges histogram with these edges (the last bin includes its right edge).
    Histogram(Vec<f64>),
    /// One bin per distinct value, in ascending order.
    Values(Vec<f64>),
}

/// Shares of each sample per bin, as Evidently's `get_binned_data` computes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binned {
    /// The bins.
    pub bins: Bins,
    /// Share of the reference in each bin.
    pub reference: Vec<f64>,
    /// Share of the current sample in each bin.
    pub current: Vec<f64>,
}

// ---------------------------------------------------------------------------------------------
// Column kind and method choice
// ---------------------------------------------------------------------------------------------

/// Evidently's column kind for a column whose storage type is known: float is numerical,
/// boolean categorical, integer categorical when the current data has at most 10 distinct
/// values. NaN values are not counted.
pub fn infer_kind_typed(value_type: ValueType, current: &[f64]) -> ColumnKind {
    match value_type {
        ValueType::Float => ColumnKind::Numerical,
        ValueType::Boolean => ColumnKind::Categorical,
        ValueType::Integer => {
            if has_at_most_distinct(current, INTEGER_CATEGORICAL_MAX_VALUES) {
                ColumnKind::Categorical
            } else {
                ColumnKind::Numerical
            }
        }
    }
}

/// Evidently's column kind when the storage type is unknown: a column whose values (in both
/// samples) are all integral is taken to be an integer column, anything else a float column,
/// then [`infer_kind_typed`] applies to the current sample.
///
/// This differs from Evidently only for a *float* column that happens to hold at most 10
/// distinct whole numbers (say, a float feature that is always 0.0): Evidently calls it
/// numerical, this calls it categorical. For such columns the methods agree anyway when there
/// are at most 5 distinct values in total; use [`infer_kind_typed`] when the type is known.
pub fn infer_kind(reference: &[f64], current: &[f64]) -> ColumnKind {
    let integral = |x: &f64| x.is_finite() && x.fract() == 0.0;
    if reference.iter().all(integral) && current.iter().all(integral) {
        infer_kind_typed(ValueType::Integer, current)
    } else {
        ColumnKind::Numerical
    }
}

/// Evidently's automatic method for a column of this kind (see the module docs). NaN and
/// infinite values are ignored, as Evidently drops them before choosing.
pub fn default_method(kind: ColumnKind, reference: &[f64], current: &[f64]) -> Method {
    let r = finite_sorted(reference);
    let c = finite_sorted(current);
    choose_method(kind, r.len(), union_distinct(&r, &c))
}

fn choose_method(kind: ColumnKind, reference_rows: usize, n_values: usize) -> Method {
    let many_numbers = kind == ColumnKind::Numerical && n_values > LOW_CARDINALITY_MAX_VALUES;
    if reference_rows <= SMALL_REFERENCE_MAX_ROWS {
        if many_numbers {
            Method::Ks
        } else if n_values > 2 {
            Method::ChiSquare
        } else {
            Method::ZTest
        }
    } else if many_numbers {
        Method::Wasserstein
    } else {
        Method::JensenShannon
    }
}

/// Tests one column as Evidently's `DataDriftPreset` does, inferring its kind with
/// [`infer_kind`]. `method` and `threshold` override the automatic choice and the method's
/// default threshold.
///
/// NaN is an error (remove nulls first); infinite values are dropped, as Evidently does.
pub fn test_column(
    reference: &[f64],
    current: &[f64],
    method: Option<Method>,
    threshold: Option<f64>,
) -> Result<ColumnTest, StatsError> {
    check_no_nan(reference, Sample::Reference)?;
    check_no_nan(current, Sample::Current)?;
    test_column_with_kind(
        reference,
        current,
        infer_kind(reference, current),
        method,
        threshold,
    )
}

/// [`test_column`] for a column whose kind is already known (e.g. from
/// [`infer_kind_typed`]).
pub fn test_column_with_kind(
    reference: &[f64],
    current: &[f64],
    kind: ColumnKind,
    method: Option<Method>,
    threshold: Option<f64>,
) -> Result<ColumnTest, StatsError> {
    if let Some(t) = threshold {
        if !t.is_finite() {
            return Err(StatsError::InvalidThreshold(t));
        }
    }
    if let Some(m) = method {
        if !m.applies_to(kind) {
            return Err(StatsError::MethodNotApplicable {
                method: m,
                kind,
                allowed: m.allowed_kinds(),
            });
        }
    }
    let r = prepare(reference, Sample::Reference)?;
    let c = prepare(current, Sample::Current)?;
    let method = method.unwrap_or_else(|| choose_method(kind, r.len(), union_distinct(&r, &c)));
    let threshold = threshold.unwrap_or_else(|| method.default_threshold());
    let psi = psi_sorted(kind, &r, &c)?;
    let statistic = match method {
        Method::Psi => psi,
        _ => statistic_sorted(method, kind, &r, &c)?,
    };
    Ok(ColumnTest {
        kind,
        method,
        statistic,
        threshold,
        drifted: method.is_drifted(statistic, threshold),
        psi,
    })
}

fn statistic_sorted(
    method: Method,
    kind: ColumnKind,
    r: &[f64],
    c: &[f64],
) -> Result<f64, StatsError> {
    Ok(match method {
        Method::Ks => ks_sorted(r, c).pvalue,
        Method::Wasserstein => wasserstein_norm_sorted(r, c),
        Method::ChiSquare => chisquare_sorted(r, c).pvalue,
        Method::ZTest => z_test_sorted(r, c),
        Method::JensenShannon => {
            let b = binned_sorted(kind, r, c, false)?;
            jensenshannon(&b.reference, &b.current)
        }
        Method::Psi => psi_sorted(kind, r, c)?,
    })
}

/// Share of drifted columns (0 when there are no columns).
pub fn drift_share(drifted: usize, columns: usize) -> f64 {
    if columns == 0 {
        0.0
    } else {
        drifted as f64 / columns as f64
    }
}

/// Evidently's dataset verdict: drifted when `drifted / columns >= share` (use
/// [`DATASET_DRIFT_SHARE`]). No columns means no drift (Evidently divides by zero there).
pub fn dataset_drift(drifted: usize, columns: usize, share: f64) -> bool {
    columns > 0 && drift_share(drifted, columns) >= share
}

// ---------------------------------------------------------------------------------------------
// Public statistics on raw samples
// ---------------------------------------------------------------------------------------------

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

/// scipy's `kstwo.sf(d, n)`: the survival function of the two-sided one-sample
/// Kolmogorov-Smirnov statistic for `n` observations. NaN for `n == 0` or NaN `d`.
pub fn kstwo_sf(n: u64, d: f64) -> f64 {
    if n == 0 || d.is_nan() {
        return f64::NAN;
    }
    // rv_continuous.sf: 1 at or below the support's lower end 0.5/n, 0 at or above 1.
    if d <= 0.5 / n as f64 {
        1.0
    } else if d >= 1.0 {
        0.0
    } else {
        kolmogn_sf(n, d)
    }
}

// ---------------------------------------------------------------------------------------------
// Sample preparation and counting helpers (all on sorted data)
// ---------------------------------------------------------------------------------------------

fn check_no_nan(data: &[f64], sample: Sample) -> Result<(), StatsError> {
    match data.iter().position(|x| x.is_nan()) {
        Some(index) => Err(StatsError::NaN { sample, index }),
        None => Ok(()),
    }
}

/// NaN check, infinities dropped, -0.0 folded into 0.0 (pandas counts them as one value),
/// sorted ascending; error when nothing is left.
fn prepare(data: &[f64], sample: Sample) -> Result<Vec<f64>, StatsError> {
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
fn sorted_copy(data: &[f64]) -> Option<Vec<f64>> {
    if data.is_empty() || data.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut v: Vec<f64> = data.iter().map(|&x| x + 0.0).collect();
    v.sort_unstable_by(f64::total_cmp);
    Some(v)
}

/// Finite values, sorted (for the infallible helpers).
fn finite_sorted(data: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = data
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| x + 0.0)
        .collect();
    v.sort_unstable_by(f64::total_cmp);
    v
}

fn with_prepared(
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
fn has_at_most_distinct(data: &[f64], limit: usize) -> bool {
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

fn distinct_sorted(a: &[f64]) -> usize {
    if a.is_empty() {
        return 0;
    }
    1 + a.windows(2).filter(|w| w[0] != w[1]).count()
}

/// Number of distinct values of two sorted samples together.
fn union_distinct(a: &[f64], b: &[f64]) -> usize {
    let mut n = 0;
    let mut merged = Merge::new(a, b);
    while merged.next_value().is_some() {
        n += 1;
    }
    n
}

/// Walks the distinct values of two sorted samples in ascending order, tracking how many
/// values of each are `<=` the current one (`searchsorted(..., side="right")`).
struct Merge<'a> {
    a: &'a [f64],
    b: &'a [f64],
    i: usize,
    j: usize,
}

impl<'a> Merge<'a> {
    fn new(a: &'a [f64], b: &'a [f64]) -> Self {
        Merge { a, b, i: 0, j: 0 }
    }

    /// Advances to the next distinct value; returns it with the counts before the step.
    fn next_value(&mut self) -> Option<(f64, usize, usize)> {
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
fn value_counts_union(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<usize>, Vec<usize>) {
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
struct Neumaier {
    sum: f64,
    comp: f64,
}

impl Neumaier {
    fn add(&mut self, x: f64) {
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

    fn total(self) -> f64 {
        if self.sum.is_finite() {
            self.sum + self.comp
        } else {
            self.sum
        }
    }
}

fn neumaier_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut acc = Neumaier::default();
    for x in values {
        acc.add(x);
    }
    acc.total()
}

/// Population standard deviation (`np.std`, ddof = 0), two-pass as pandas computes it.
fn std_population(a: &[f64]) -> f64 {
    let n = a.len() as f64;
    let mean = neumaier_sum(a.iter().copied()) / n;
    let var = neumaier_sum(a.iter().map(|&x| (x - mean) * (x - mean))) / n;
    var.sqrt()
}

// ---------------------------------------------------------------------------------------------
// Wasserstein, chi-squared, Z-test
// ---------------------------------------------------------------------------------------------

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

fn wasserstein_norm_sorted(r: &[f64], c: &[f64]) -> f64 {
    let norm = std_population(r).max(0.001);
    wasserstein_sorted(r, c) / norm
}

fn chisquare_sorted(r: &[f64], c: &[f64]) -> ChiSquareResult {
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

fn z_test_sorted(r: &[f64], c: &[f64]) -> f64 {
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

// ---------------------------------------------------------------------------------------------
// Binning, PSI, Jensen-Shannon
// ---------------------------------------------------------------------------------------------

fn binned_sorted(
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
fn sturges_edges(a: &[f64], b: &[f64], integral: bool) -> Result<Vec<f64>, StatsError> {
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

fn psi_sorted(kind: ColumnKind, r: &[f64], c: &[f64]) -> Result<f64, StatsError> {
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

// ---------------------------------------------------------------------------------------------
// Two-sample Kolmogorov-Smirnov (scipy.stats.ks_2samp)
// ---------------------------------------------------------------------------------------------

fn ks_sorted(a: &[f64], b: &[f64]) -> KsResult {
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
fn ks_exact(n1: u64, n2: u64, d: f64) -> (bool, f64, f64) {
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
fn prob_outside_square(n: i64, h: i64) -> f64 {
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
fn outer_prob_inside(m: i64, n: i64, g: i64, h: i64) -> f64 {
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

// ---------------------------------------------------------------------------------------------
// One-sample two-sided Kolmogorov-Smirnov distribution (scipy/stats/_ksstats.py)
// ---------------------------------------------------------------------------------------------

const E128: i32 = 128;
const EP128: f64 = 340_282_366_920_938_463_463_374_607_431_768_211_456.0; // 2^128
const EM128: f64 = 1.0 / EP128;
const MIN_LOG: f64 = -708.0;

fn ldexp(mut x: f64, mut e: i32) -> f64 {
    const BIG: i32 = 1000;
    let big = 2f64.powi(BIG);
    let small = 2f64.powi(-BIG);
    while e > BIG {
        x *= big;
        e -= BIG;
    }
    while e < -BIG {
        x *= small;
        e += BIG;
    }
    x * 2f64.powi(e)
}

/// `_kolmogn(n, x, cdf=False)`: Pr(D_n >= x), Simard and L'Ecuyer's choice of methods.
fn kolmogn_sf(n: u64, x: f64) -> f64 {
    if n == 0 || x.is_nan() {
        return f64::NAN;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        // Ruben-Gambino: 1/2n <= x <= 1/n
        if t <= 0.5 {
            return 1.0;
        }
        let prob = if n <= 140 {
            (1..=n).fold(1.0, |acc, i| {
                acc * (i as f64 * (1.0 / nf) * (2.0 * t - 1.0))
            })
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return (1.0 - prob).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        // Ruben-Gambino
        return (2.0 * (1.0 - x).powf(nf)).clamp(0.0, 1.0);
    }
    if x >= 0.5 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let nxsquared = t * x;
    if n <= 140 {
        if nxsquared <= 0.754693 {
            return (1.0 - kolmogn_dmtw_cdf(n, x)).clamp(0.0, 1.0);
        }
        if nxsquared <= 4.0 {
            return (1.0 - kolmogn_pomeranz_cdf(n, x)).clamp(0.0, 1.0);
        }
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    if nxsquared >= 370.0 {
        return 0.0;
    }
    if nxsquared >= 2.2 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let cdf = if nxsquared >= 18.0 {
        1.0
    } else if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        kolmogn_dmtw_cdf(n, x)
    } else {
        kolmogn_pelz_good_cdf(nf, x)
    };
    (1.0 - cdf).clamp(0.0, 1.0)
}

/// log(n! / n^n) by Stirling's series (`_log_nfactorial_div_n_pow_n`).
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    // scipy's literals, kept verbatim
    #[allow(clippy::excessive_precision)]
    const STIRLING: [f64; 8] = [
        -2.955065359477124183e-2,
        6.4102564102564102564e-3,
        -1.9175269175269175269e-3,
        8.4175084175084175084e-4,
        -5.952380952380952381e-4,
        7.9365079365079365079e-4,
        -2.7777777777777777778e-3,
        8.3333333333333333333e-2,
    ];
    let rn = 1.0 / n;
    let y = rn / n;
    let poly = STIRLING.iter().fold(0.0, |acc, &c| acc * y + c);
    n.ln() / 2.0 - n + (2.0 * std::f64::consts::PI).ln() / 2.0 + rn * poly
}

fn matmul(a: &[f64], b: &[f64], m: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * m];
    for (out_row, a_row) in out.chunks_exact_mut(m).zip(a.chunks_exact(m)) {
        for (&aik, b_row) in a_row.iter().zip(b.chunks_exact(m)) {
            if aik == 0.0 {
                continue;
            }
            for (o, &bkj) in out_row.iter_mut().zip(b_row) {
                *o += aik * bkj;
            }
        }
    }
    out
}

/// Durbin's matrix method as in Marsaglia, Tsang and Wang (`_kolmogn_DMTW`): Pr(D_n <= d).
fn kolmogn_dmtw_cdf(n: u64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let nd = nf * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;

    let mut v = vec![0.0; m];
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] = (1.0 - h.powf(j as f64)) * fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powf(m as f64) - 2.0 * h.powf(m as f64);
    v[m - 1] = (1.0 + tt) * fac;

    let mut hm = vec![0.0; m * m];
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }

    let mut hpwr = vec![0.0; m * m];
    for i in 0..m {
        hpwr[i * m + i] = 1.0;
    }
    let mut nn = n;
    let mut expnt: i32 = 0;
    let mut hexpnt: i32 = 0;
    while nn > 0 {
        if nn % 2 == 1 {
            hpwr = matmul(&hpwr, &hm, m);
            expnt += hexpnt;
        }
        nn /= 2;
        if nn == 0 {
            break; // scipy squares once more, but the result is never used
        }
        hm = matmul(&hm, &hm, m);
        hexpnt *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > EP128 {
            for x in hm.iter_mut() {
                *x /= EP128;
            }
            hexpnt += E128;
        }
    }

    let mut p = hpwr[(k - 1) * m + (k - 1)];
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < EM128 {
            p *= EP128;
            expnt -= E128;
        }
    }
    if expnt != 0 {
        p = ldexp(p, expnt);
    }
    p.clamp(0.0, 1.0)
}

fn pomeranz_j1j2(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
    let (j1, j2) = if i == 0 {
        (-ll - ceilf - 1, ll + ceilf - 1)
    } else {
        let (ip1div2, ip1mod2) = ((i + 1) / 2, (i + 1) % 2);
        if ip1mod2 == 0 {
            if ip1div2 == n + 1 {
                (n - ll - ceilf - 1, n + ll + ceilf - 1)
            } else {
                (ip1div2 - 1 - ll - roundf - 1, ip1div2 + ll - 1 + ceilf - 1)
            }
        } else {
            (ip1div2 - 1 - ll - 1, ip1div2 + ll + roundf - 1)
        }
    };
    ((j1 + 2).max(0), j2.min(n))
}

/// Pomeranz's recursion (`_kolmogn_Pomeranz`): Pr(D_n <= x). NaN if an index would leave the
/// work arrays (scipy's slicing would misbehave there too).
fn kolmogn_pomeranz_cdf(n: u64, x: f64) -> f64 {
    let nf = n as f64;
    let ni = n as i64;
    let t = nf * x;
    let ll = t.floor() as i64;
    let f = t - ll as f64;
    let g = f.min(1.0 - f);
    let ceilf = i64::from(f > 0.0);
    let roundf = i64::from(f > 0.5);
    let npwrs = (2 * (ll + 1)).max(1) as usize;
    let mut gpower = vec![1.0; npwrs];
    let mut twogpower = vec![1.0; npwrs];
    let mut onem2gpower = vec![1.0; npwrs];
    let (g_over_n, two_g_over_n, one_minus_two_g_over_n) =
        (g / nf, 2.0 * g / nf, (1.0 - 2.0 * g) / nf);
    for m in 1..npwrs {
        let mf = m as f64;
        gpower[m] = gpower[m - 1] * g_over_n / mf;
        twogpower[m] = twogpower[m - 1] * two_g_over_n / mf;
        onem2gpower[m] = onem2gpower[m - 1] * one_minus_two_g_over_n / mf;
    }

    let mut v0 = vec![0.0; npwrs];
    let mut v1 = vec![0.0; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s): (i64, i64) = (0, 0);
    let mut expnt: i32 = 0;
    let (mut j1, _) = pomeranz_j1j2(0, ni, ll, ceilf, roundf);
    for i in 1..(2 * ni + 2) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        v1.fill(0.0);
        let (nj1, j2) = pomeranz_j1j2(i, ni, ll, ceilf, roundf);
        j1 = nj1;
        let pwrs = if i == 1 || i == 2 * ni + 1 {
            &gpower
        } else if i % 2 == 1 {
            &twogpower
        } else {
            &onem2gpower
        };
        let ln2 = j2 - k1 + 1;
        if ln2 > 0 {
            let Ok(start) = usize::try_from(k1 - v0s) else {
                return f64::NAN;
            };
            let ln2 = ln2 as usize;
            let a_end = (start + ln2).min(npwrs);
            let Some(a) = v0.get(start..a_end) else {
                return f64::NAN;
            };
            let b = &pwrs[..ln2.min(npwrs)];
            if a.is_empty() {
                return f64::NAN;
            }
            let conv_full = a.len() + b.len() - 1;
            let (Ok(conv_start), Ok(conv_len)) =
                (usize::try_from(j1 - k1), usize::try_from(j2 - j1 + 1))
            else {
                return f64::NAN;
            };
            if conv_start + conv_len > conv_full || conv_len > npwrs {
                return f64::NAN;
            }
            for (out, kk) in v1.iter_mut().zip(conv_start..conv_start + conv_len) {
                // full convolution term kk: sum_i a[i] * b[kk - i]
                let lo = kk.saturating_sub(b.len() - 1);
                let hi = kk.min(a.len() - 1);
                let mut s = 0.0;
                for (ia, &av) in a.iter().enumerate().take(hi + 1).skip(lo) {
                    s += av * b[kk - ia];
                }
                *out = s;
            }
            let vmax = v1.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if 0.0 < vmax && vmax < EM128 {
                for x in v1.iter_mut() {
                    *x *= EP128;
                }
                expnt -= E128;
            }
            v1s = v0s + j1 - k1;
        }
    }
    let Some(&first) = usize::try_from(ni - v1s).ok().and_then(|k| v1.get(k)) else {
        return f64::NAN;
    };
    let mut ans = first;
    for m in 1..=n {
        if ans.abs() > EP128 {
            ans *= EM128;
            expnt += E128;
        }
        ans *= m as f64;
    }
    if expnt != 0 {
        ans = ldexp(ans, expnt);
    }
    ans.clamp(0.0, 1.0)
}

/// Pelz-Good asymptotic series (`_kolmogn_PelzGood`): Pr(D_n <= x).
fn kolmogn_pelz_good_cdf(n: f64, x: f64) -> f64 {
    use std::f64::consts::PI;
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let pi2 = PI * PI;
    let pi4 = pi2 * pi2;
    let pi6 = pi4 * pi2;
    let sqrt2pi = (2.0 * PI).sqrt();
    let z = n.sqrt() * x;
    let (zsquared, zthree, zfour, zsix) = (z.powi(2), z.powi(3), z.powi(4), z.powi(6));

    let qlog = -pi2 / 8.0 / zsquared;
    if qlog < MIN_LOG {
        return 0.0;
    }
    let q = qlog.exp();

    let k1a = -zsquared;
    let k1b = pi2 / 4.0;

    let k2a = 6.0 * zsix + 2.0 * zfour;
    let k2b = (2.0 * zfour - 5.0 * zsquared) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * zsquared) / 16.0;

    let k3d = pi6 * (5.0 - 30.0 * zsquared) / 64.0;
    let k3c = pi4 * (-60.0 * zsquared + 212.0 * zfour) / 16.0;
    let k3b = pi2 * (135.0 * zfour - 96.0 * zsix) / 4.0;
    let k3a = -30.0 * zsix - 90.0 * z.powi(8);

    let mut kk = [0.0_f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for k in (1..=maxk).rev() {
        let m = (2 * k - 1) as f64;
        let (msquared, mfour, msix) = (m * m, m.powi(4), m.powi(6));
        let qpower = q.powf((8 * k) as f64);
        let coeffs = [
            1.0,
            k1a + k1b * msquared,
            k2a + k2b * msquared + k2c * mfour,
            k3a + k3b * msquared + k3c * mfour + k3d * msix,
        ];
        for (acc, c) in kk.iter_mut().zip(coeffs) {
            *acc = *acc * qpower + c;
        }
    }
    let denoms = [z, 6.0 * zfour, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (acc, d) in kk.iter_mut().zip(denoms) {
        *acc = *acc * q * sqrt2pi / d;
    }

    let q = (-pi2 / 2.0 / zsquared).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let mut k2extra = 0.0;
    let mut k3extra = 0.0;
    for k in (1..=maxk).rev() {
        let kf = k as f64;
        let ksquared = kf * kf;
        let qp = q.powf(ksquared);
        let kspi = PI * kf;
        k2extra += ksquared * qp;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qp;
    }
    kk[2] += k2extra * (pi2 * sqrt2pi / (-36.0 * zthree));
    kk[3] += k3extra * (pi2 * sqrt2pi / (216.0 * zsix));
    for (i, acc) in kk.iter_mut().enumerate() {
        *acc /= n.powf(i as f64 / 2.0);
    }
    kk.iter().sum()
}

/// scipy's `smirnov(n, x)`: Pr(D+_n >= x), the one-sided statistic, by the Birnbaum-Tingey sum
/// (in log space; scipy uses double-double arithmetic, this agrees to ~1e-10 or better).
fn smirnov_sf(n: u64, x: f64) -> f64 {
    const MINLOG: f64 = -7.083_964_185_322_641e2;
    if !(n > 0 && (0.0..=1.0).contains(&x)) {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    // floor(n * x) and the remainder, exactly.
    let p = nf * x;
    let err = nf.mul_add(x, -p);
    let mut nxfl = p.floor();
    let mut alpha = (p - nxfl) + err;
    if alpha < 0.0 {
        nxfl -= 1.0;
        alpha += 1.0;
    }
    if alpha >= 1.0 {
        nxfl += 1.0;
        alpha = 0.0;
    }
    if nxfl == 0.0 || (nxfl == 1.0 && alpha == 0.0) {
        // x <= 1/n
        let t = ((nf - 1.0) * x.ln_1p()).exp();
        return 1.0 - x * t;
    }
    if -2.0 * nf * x * x < MINLOG {
        return 0.0;
    }
    if nxfl >= nf - 1.0 {
        return (nf * (-x).ln_1p()).exp();
    }
    if n > 1_000_000 {
        let logp = -(6.0 * nf * x + 1.0).powi(2) / 18.0 / nf;
        return if logp < -std::f64::consts::LN_2 {
            logp.exp()
        } else {
            1.0 - (-logp.exp_m1())
        };
    }
    // sf = x * sum_{v=0}^{n - nxfl - 1} C(n, v) ((nxfl + v + alpha)/n)^(v-1)
    //                                           ((n - nxfl - v - alpha)/n)^(n-v)
    let nxfl_i = nxfl as u64;
    let n_terms = n - nxfl_i;
    let vmid = n / 2;
    let mut ln_binom = Neumaier::default();
    let mut sum = Neumaier::default();
    for v in 0..n_terms {
        let vf = v as f64;
        let up = ((nxfl + vf) + alpha) / nf;
        let down = ((nf - nxfl - vf) - alpha) / nf;
        let ln_term = ln_binom.total() + (vf - 1.0) * up.ln() + (nf - vf) * down.ln();
        let term = ln_term.exp();
        sum.add(term);
        // scipy's early exit once the remaining terms cannot matter
        if term != 0.0 {
            if 4.0 * (n_terms - v) as f64 * term < f64::EPSILON * sum.total() && v != n_terms - 1 {
                break;
            }
        } else if v > vmid {
            break;
        }
        ln_binom.add(((nf - vf) / (vf + 1.0)).ln());
    }
    (x * sum.total()).clamp(0.0, 1.0)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const VECTORS: &str = include_str!("../tests/data/drift_vectors.json");
    const TOL: f64 = 1e-6;

    /// A JSON number, or "nan" / "inf" / "-inf" (JSON has no non-finite numbers). Read through
    /// `serde_json::Value` rather than an untagged enum, so it works whatever serde_json
    /// features the workspace enables.
    #[derive(Deserialize, Clone, Debug)]
    #[serde(from = "serde_json::Value")]
    struct Num(f64);

    impl From<serde_json::Value> for Num {
        fn from(v: serde_json::Value) -> Self {
            Num(match &v {
                serde_json::Value::Number(n) => n.as_f64().expect("f64"),
                serde_json::Value::String(s) if s == "nan" => f64::NAN,
                serde_json::Value::String(s) if s == "inf" => f64::INFINITY,
                serde_json::Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
                other => panic!("bad number {other}"),
            })
        }
    }

    impl Num {
        fn get(&self) -> f64 {
            self.0
        }
    }

    #[derive(Deserialize)]
    struct Vectors {
        evidently: String,
        cases: Vec<Case>,
        kstwo: Vec<(u64, f64, Num)>,
        smirnov: Vec<(u64, f64, Num)>,
        ks_exact: Vec<(u64, u64, f64, bool, Num)>,
    }

    #[derive(Deserialize, Clone)]
    struct Case {
        name: String,
        dtype: String,
        method: Option<String>,
        threshold: Option<f64>,
        reference: Vec<f64>,
        current: Vec<f64>,
        expected: Expected,
        scipy: Option<Scipy>,
    }

    #[derive(Deserialize, Clone)]
    struct Expected {
        kind: String,
        method: Option<String>,
        statistic: Option<Num>,
        threshold: Option<f64>,
        drifted: Option<bool>,
        psi: Option<Num>,
        error: Option<String>,
    }

    #[derive(Deserialize, Clone)]
    struct Scipy {
        ks_statistic: Num,
        ks_pvalue: Num,
        wasserstein: Num,
        std_reference: Num,
        binning: String,
        ref_percents: Vec<f64>,
        cur_percents: Vec<f64>,
        ref_percents_filled: Vec<f64>,
        cur_percents_filled: Vec<f64>,
        /// Edges as IEEE-754 bit patterns: serde_json's default float parser can be one ulp
        /// off for 16-17 digit numbers, and the edges must match bit for bit.
        bin_edges_bits: Option<Vec<u64>>,
        jensenshannon: Num,
        chisquare_f_obs: Vec<f64>,
        chisquare_f_exp: Vec<f64>,
        chisquare_statistic: Num,
        chisquare_pvalue: Num,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(VECTORS).expect("drift_vectors.json parses")
    }

    /// Agreement within 1e-6, absolute below 1 and relative above; NaN and infinities must match.
    fn close(got: f64, want: f64) -> bool {
        if want.is_nan() || got.is_nan() {
            return want.is_nan() && got.is_nan();
        }
        if want.is_infinite() || got.is_infinite() {
            return got == want;
        }
        (got - want).abs() <= TOL * want.abs().max(1.0)
    }

    fn check_num(what: &str, got: f64, want: f64) -> Result<(), String> {
        if close(got, want) {
            Ok(())
        } else {
            Err(format!("{what}: got {got:e}, want {want:e}"))
        }
    }

    fn check_vec(what: &str, got: &[f64], want: &[f64]) -> Result<(), String> {
        if got.len() != want.len() {
            return Err(format!("{what}: {} values, want {}", got.len(), want.len()));
        }
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            check_num(&format!("{what}[{i}]"), g, w)?;
        }
        Ok(())
    }

    fn value_type(dtype: &str) -> ValueType {
        match dtype {
            "float" => ValueType::Float,
            "int" => ValueType::Integer,
            "bool" => ValueType::Boolean,
            other => panic!("unknown dtype {other}"),
        }
    }

    /// Checks one Evidently case: kind, method, statistic, threshold, verdict, PSI.
    fn check_case(case: &Case) -> Result<(), String> {
        let kind = infer_kind_typed(value_type(&case.dtype), &case.current);
        if kind.name() != case.expected.kind {
            return Err(format!("kind {kind}, want {}", case.expected.kind));
        }
        // The dtype-free proxy must agree unless a float column holds only whole numbers.
        let integral = case
            .reference
            .iter()
            .chain(&case.current)
            .all(|x| x.fract() == 0.0);
        if !(case.dtype == "float" && integral) {
            let proxy = infer_kind(&case.reference, &case.current);
            if proxy != kind {
                return Err(format!("infer_kind gave {proxy}, want {kind}"));
            }
        }
        let method = case
            .method
            .as_deref()
            .map(Method::parse)
            .transpose()
            .map_err(|e| e.to_string())?;
        let result =
            test_column_with_kind(&case.reference, &case.current, kind, method, case.threshold);
        let e = &case.expected;
        if let Some(err) = &e.error {
            return match result {
                Err(StatsError::MethodNotApplicable { .. }) => Ok(()),
                other => Err(format!("want error `{err}`, got {other:?}")),
            };
        }
        let t = result.map_err(|e| format!("unexpected error: {e}"))?;
        let want_method = e.method.as_deref().unwrap_or_default();
        if t.method.name() != want_method {
            return Err(format!("method {}, want {want_method}", t.method));
        }
        if method.is_none() && default_method(kind, &case.reference, &case.current) != t.method {
            return Err("default_method disagrees with test_column".into());
        }
        check_num(
            "statistic",
            t.statistic,
            e.statistic.as_ref().map_or(f64::NAN, Num::get),
        )?;
        check_num("threshold", t.threshold, e.threshold.unwrap_or(f64::NAN))?;
        if Some(t.drifted) != e.drifted {
            return Err(format!("drifted {}, want {:?}", t.drifted, e.drifted));
        }
        let want_psi = e.psi.as_ref().map_or(f64::NAN, Num::get);
        check_num("psi", t.psi, want_psi)?;
        // The per-statistic entry points agree with test_column.
        let (r, c) = (&case.reference, &case.current);
        check_num("psi()", psi(r, c, kind), want_psi)?;
        let direct = match t.method {
            Method::Ks => ks_2samp_pvalue(r, c),
            Method::Wasserstein => wasserstein_distance_norm(r, c),
            Method::ChiSquare => chisquare_pvalue(r, c),
            Method::ZTest => z_test_pvalue(r, c),
            Method::JensenShannon => jensenshannon_distance(r, c, kind),
            Method::Psi => psi(r, c, kind),
        };
        check_num("direct statistic", direct, t.statistic)?;
        Ok(())
    }

    /// Checks the scipy building blocks on one case.
    fn check_scipy(case: &Case) -> Result<(), String> {
        let Some(s) = &case.scipy else {
            return Ok(());
        };
        let (r, c) = (&case.reference, &case.current);
        let ks = ks_2samp(r, c);
        check_num("ks_2samp statistic", ks.statistic, s.ks_statistic.get())?;
        check_num("ks_2samp pvalue", ks.pvalue, s.ks_pvalue.get())?;
        check_num("ks_2samp_pvalue", ks_2samp_pvalue(r, c), s.ks_pvalue.get())?;
        check_num(
            "wasserstein_distance",
            wasserstein_distance(r, c),
            s.wasserstein.get(),
        )?;
        let rs = prepare(r, Sample::Reference).map_err(|e| e.to_string())?;
        check_num("std(reference)", std_population(&rs), s.std_reference.get())?;
        let kind = infer_kind_typed(value_type(&case.dtype), c);
        let b = binned_percents(r, c, kind, false).map_err(|e| e.to_string())?;
        match (&b.bins, s.binning.as_str(), &s.bin_edges_bits) {
            (Bins::Histogram(edges), "histogram", Some(want)) => {
                // Edges must be bit-identical: values on an edge change bins otherwise.
                let want: Vec<f64> = want.iter().map(|&b| f64::from_bits(b)).collect();
                if *edges != want {
                    return Err(format!("bin edges {edges:?}, want {want:?}"));
                }
            }
            (Bins::Values(_), "values", None) => {}
            (bins, path, _) => return Err(format!("binning {bins:?}, want {path}")),
        }
        check_vec("reference shares", &b.reference, &s.ref_percents)?;
        check_vec("current shares", &b.current, &s.cur_percents)?;
        let f = binned_percents(r, c, kind, true).map_err(|e| e.to_string())?;
        check_vec(
            "filled reference shares",
            &f.reference,
            &s.ref_percents_filled,
        )?;
        check_vec("filled current shares", &f.current, &s.cur_percents_filled)?;
        check_num(
            "jensenshannon",
            jensenshannon(&s.ref_percents, &s.cur_percents),
            s.jensenshannon.get(),
        )?;
        check_num(
            "jensenshannon_distance",
            jensenshannon_distance(r, c, kind),
            s.jensenshannon.get(),
        )?;
        let chi = chisquare(&s.chisquare_f_obs, &s.chisquare_f_exp);
        check_num(
            "chisquare statistic",
            chi.statistic,
            s.chisquare_statistic.get(),
        )?;
        check_num("chisquare pvalue", chi.pvalue, s.chisquare_pvalue.get())?;
        check_num(
            "chisquare_pvalue",
            chisquare_pvalue(r, c),
            s.chisquare_pvalue.get(),
        )?;
        Ok(())
    }

    #[test]
    fn vectors_come_from_evidently_0_7() {
        let v = vectors();
        assert!(v.evidently.starts_with("0.7"), "{}", v.evidently);
        assert!(v.cases.len() >= 40);
        // Every method and both kinds are covered, for small and large references.
        for m in Method::ALL {
            assert!(
                v.cases
                    .iter()
                    .any(|c| c.expected.method.as_deref() == Some(m.name())),
                "no case for {m}"
            );
        }
        assert!(v.cases.iter().any(|c| c.reference.len() == 1000));
        assert!(v.cases.iter().any(|c| c.reference.len() == 1001));
    }

    #[test]
    fn columns_match_evidently() {
        let v = vectors();
        let failures: Vec<String> = v
            .cases
            .iter()
            .filter_map(|c| check_case(c).err().map(|e| format!("{}: {e}", c.name)))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn building_blocks_match_scipy() {
        let v = vectors();
        let failures: Vec<String> = v
            .cases
            .iter()
            .filter_map(|c| check_scipy(c).err().map(|e| format!("{}: {e}", c.name)))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn kstwo_matches_scipy() {
        let v = vectors();
        let mut worst = 0.0_f64;
        for (n, x, want) in &v.kstwo {
            let (n, x) = (*n, *x);
            let (got, want) = (kstwo_sf(n, x), want.get());
            assert!(
                close(got, want),
                "kstwo.sf({x}, {n}): got {got:e}, want {want:e}"
            );
            worst = worst.max((got - want).abs());
        }
        println!("kstwo: {} points, max abs error {worst:e}", v.kstwo.len());
    }

    #[test]
    fn smirnov_matches_scipy() {
        let v = vectors();
        let mut worst = 0.0_f64;
        for (n, x, want) in &v.smirnov {
            let (n, x) = (*n, *x);
            let (got, want) = (smirnov_sf(n, x), want.get());
            assert!(
                close(got, want),
                "smirnov({n}, {x}): got {got:e}, want {want:e}"
            );
            worst = worst.max((got - want).abs());
        }
        println!(
            "smirnov: {} points, max abs error {worst:e}",
            v.smirnov.len()
        );
    }

    #[test]
    fn exact_two_sample_p_matches_scipy() {
        let v = vectors();
        for (n1, n2, d, ok, want) in &v.ks_exact {
            let (n1, n2, d, ok) = (*n1, *n2, *d, *ok);
            let (got_ok, _, got) = ks_exact(n1, n2, d);
            assert_eq!(got_ok, ok, "exact({n1}, {n2}, {d}) success");
            assert!(
                close(got, want.get()),
                "exact({n1}, {n2}, {d}): got {got:e}, want {:e}",
                want.get()
            );
        }
    }

    #[test]
    fn comparator_catches_wrong_results() {
        let v = vectors();
        let base = v
            .cases
            .iter()
            .find(|c| c.name == "ks_shifted")
            .expect("case")
            .clone();
        assert!(check_case(&base).is_ok());

        let stat = base.expected.statistic.clone().expect("statistic").get();
        let mut wrong = base.clone();
        wrong.expected.statistic = Some(Num(stat + 2e-6));
        assert!(
            check_case(&wrong).is_err(),
            "statistic off by 2e-6 must fail"
        );

        let mut wrong = base.clone();
        wrong.expected.drifted = Some(!base.expected.drifted.expect("drifted"));
        assert!(check_case(&wrong).is_err(), "flipped verdict must fail");

        let mut wrong = base.clone();
        wrong.expected.method = Some("wasserstein".into());
        assert!(check_case(&wrong).is_err(), "other method must fail");

        let mut wrong = base.clone();
        wrong.expected.psi = Some(Num(base.expected.psi.clone().expect("psi").get() * 1.001));
        assert!(check_case(&wrong).is_err(), "psi off by 0.1% must fail");

        // Perturbing the data (one value moved) must change the answer too.
        let mut wrong = base.clone();
        wrong.current[0] += 50.0;
        assert!(check_case(&wrong).is_err(), "perturbed data must fail");

        assert!(!close(f64::NAN, 0.0) && !close(0.0, f64::NAN) && close(f64::NAN, f64::NAN));
        assert!(!close(f64::INFINITY, 1e300) && close(1e9 + 1e2, 1e9));
    }

    #[test]
    fn errors() {
        let ok = [1.0, 2.0, 3.0];
        assert_eq!(
            test_column(&[], &ok, None, None),
            Err(StatsError::Empty(Sample::Reference))
        );
        assert_eq!(
            test_column(&ok, &[], None, None),
            Err(StatsError::Empty(Sample::Current))
        );
        assert_eq!(
            test_column(&ok, &[f64::INFINITY, f64::NEG_INFINITY], None, None),
            Err(StatsError::Empty(Sample::Current))
        );
        assert_eq!(
            test_column(&[1.0, f64::NAN], &ok, None, None),
            Err(StatsError::NaN {
                sample: Sample::Reference,
                index: 1
            })
        );
        assert_eq!(
            test_column(&ok, &[f64::NAN], None, None),
            Err(StatsError::NaN {
                sample: Sample::Current,
                index: 0
            })
        );
        let e = Method::parse("kolmogorov").unwrap_err();
        assert_eq!(e, StatsError::UnknownMethod("kolmogorov".into()));
        let msg = e.to_string();
        for m in Method::ALL {
            assert!(msg.contains(m.name()), "{msg}");
        }
        let e = test_column(&[0.0, 1.0, 1.0], &[1.0, 0.0], Some(Method::Ks), None).unwrap_err();
        assert!(matches!(
            e,
            StatsError::MethodNotApplicable {
                method: Method::Ks,
                kind: ColumnKind::Categorical,
                ..
            }
        ));
        assert!(e.to_string().contains("numerical"), "{e}");
        assert!(matches!(
            test_column(&ok, &ok, None, Some(f64::NAN)),
            Err(StatsError::InvalidThreshold(t)) if t.is_nan()
        ));
        assert!(matches!(
            test_column(&ok, &ok, None, Some(f64::INFINITY)),
            Err(StatsError::InvalidThreshold(_))
        ));
        // Raw statistics report invalid input as NaN instead of panicking.
        assert!(ks_2samp_pvalue(&[], &ok).is_nan());
        assert!(ks_2samp_pvalue(&ok, &[f64::NAN]).is_nan());
        assert!(wasserstein_distance(&[], &ok).is_nan());
        assert!(psi(&ok, &[], ColumnKind::Numerical).is_nan());
        assert!(chisquare(&[1.0, 2.0], &[1.0]).pvalue.is_nan());
        assert!(chisquare(&[1.0, 2.0], &[10.0, 20.0]).pvalue.is_nan());
        assert!(jensenshannon(&[], &[]).is_nan());
        assert!(kstwo_sf(0, 0.5).is_nan());
        // numpy cannot bin a range that overflows.
        let huge = [-1.7e308, 1.7e308];
        let many: Vec<f64> = (0..30).map(|i| i as f64 * 1e306).chain(huge).collect();
        assert!(matches!(
            binned_percents(&many, &huge, ColumnKind::Numerical, true),
            Err(StatsError::Binning(_))
        ));
    }

    #[test]
    fn infinities_are_dropped_like_evidently() {
        let r: Vec<f64> = (0..50).map(|i| (i as f64 * 0.37).sin()).collect();
        let c: Vec<f64> = (0..60).map(|i| (i as f64 * 0.41).cos() * 1.1).collect();
        let mut r_inf = r.clone();
        r_inf.push(f64::INFINITY);
        let mut c_inf = c.clone();
        c_inf.insert(3, f64::NEG_INFINITY);
        assert_eq!(
            test_column(&r, &c, None, None),
            test_column(&r_inf, &c_inf, None, None)
        );
    }

    #[test]
    fn method_names_thresholds_and_verdicts() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.name()), Ok(m));
            assert_eq!(m.name().parse::<Method>(), Ok(m));
            assert_eq!(
                Method::parse(&format!(" {} ", m.name().to_uppercase())),
                Ok(m)
            );
            let json = serde_json::to_string(&m).expect("serialize");
            assert_eq!(json, format!("\"{}\"", m.name()));
            assert_eq!(
                serde_json::from_str::<Method>(&json).expect("deserialize"),
                m
            );
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!(Method::ZTest.name(), "z");
        assert_eq!(Method::Ks.default_threshold(), 0.05);
        assert_eq!(Method::ChiSquare.default_threshold(), 0.05);
        assert_eq!(Method::ZTest.default_threshold(), 0.05);
        assert_eq!(Method::Wasserstein.default_threshold(), 0.1);
        assert_eq!(Method::JensenShannon.default_threshold(), 0.1);
        assert_eq!(Method::Psi.default_threshold(), 0.1);
        assert!(
            Method::Ks.is_p_value() && Method::ChiSquare.is_p_value() && Method::ZTest.is_p_value()
        );
        assert!(!Method::Wasserstein.is_p_value() && !Method::Psi.is_p_value());
        // Boundaries exactly as Evidently compares.
        assert!(Method::Ks.is_drifted(0.05, 0.05));
        assert!(!Method::ChiSquare.is_drifted(0.05, 0.05));
        assert!(!Method::ZTest.is_drifted(0.05, 0.05));
        assert!(Method::Wasserstein.is_drifted(0.1, 0.1));
        assert!(Method::JensenShannon.is_drifted(0.1, 0.1));
        assert!(Method::Psi.is_drifted(0.1, 0.1));
        assert!(!Method::Ks.is_drifted(f64::NAN, 0.05) && !Method::Psi.is_drifted(f64::NAN, 0.1));
        let t = ColumnTest {
            kind: ColumnKind::Categorical,
            method: Method::JensenShannon,
            statistic: 0.2,
            threshold: 0.1,
            drifted: true,
            psi: 0.1,
        };
        let json = serde_json::to_value(t).expect("serialize");
        assert_eq!(json["kind"], "categorical");
        assert_eq!(json["method"], "jensenshannon");
        assert!(t.psi_drifted());
    }

    #[test]
    fn dataset_drift_share() {
        assert_eq!(DATASET_DRIFT_SHARE, 0.5);
        assert!(dataset_drift(5, 10, DATASET_DRIFT_SHARE));
        assert!(!dataset_drift(4, 10, DATASET_DRIFT_SHARE));
        assert!(dataset_drift(8, 15, DATASET_DRIFT_SHARE));
        assert!(!dataset_drift(7, 15, DATASET_DRIFT_SHARE));
        assert!(!dataset_drift(0, 0, DATASET_DRIFT_SHARE));
        assert_eq!(drift_share(3, 12), 0.25);
    }

    #[test]
    fn kind_inference_and_method_choice() {
        let ints: Vec<f64> = (0..100).map(|i| (i % 7) as f64).collect();
        assert_eq!(infer_kind(&ints, &ints), ColumnKind::Categorical);
        let many: Vec<f64> = (0..100).map(|i| (i % 11) as f64).collect();
        assert_eq!(infer_kind(&many, &many), ColumnKind::Numerical);
        // Only the current sample's cardinality counts.
        assert_eq!(infer_kind(&many, &ints), ColumnKind::Categorical);
        let floats: Vec<f64> = ints.iter().map(|x| x + 0.5).collect();
        assert_eq!(infer_kind(&floats, &floats), ColumnKind::Numerical);
        assert_eq!(
            infer_kind_typed(ValueType::Float, &ints),
            ColumnKind::Numerical
        );
        assert_eq!(
            infer_kind_typed(ValueType::Boolean, &many),
            ColumnKind::Categorical
        );
        assert_eq!(
            infer_kind_typed(ValueType::Integer, &many),
            ColumnKind::Numerical
        );

        let small: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
        let large: Vec<f64> = (0..1001).map(|i| i as f64 * 0.5).collect();
        let num = ColumnKind::Numerical;
        let cat = ColumnKind::Categorical;
        assert_eq!(default_method(num, &small, &small), Method::Ks);
        assert_eq!(default_method(num, &large, &small), Method::Wasserstein);
        assert_eq!(default_method(cat, &small, &small), Method::ChiSquare);
        assert_eq!(default_method(cat, &large, &small), Method::JensenShannon);
        let five = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(default_method(num, &five, &five), Method::ChiSquare);
        assert_eq!(default_method(num, &five, &[6.0]), Method::Ks);
        assert_eq!(default_method(num, &[1.0, 2.0], &[2.0]), Method::ZTest);
        assert_eq!(default_method(cat, &[1.0], &[1.0]), Method::ZTest);
        // NaN and infinities do not count as values or rows.
        assert_eq!(
            default_method(num, &[1.0, f64::NAN, f64::INFINITY], &[2.0]),
            Method::ZTest
        );
    }

    #[test]
    fn integer_histogram_bins_are_at_least_one_wide() {
        // numpy widens Sturges bins of integer data to 1; only reachable past 2^19 values
        // (checked against np.histogram_bin_edges on the same data, int64 and float64).
        let mut ints: Vec<f64> = (0..300_000).map(|i| (i % 21) as f64).collect();
        ints.sort_by(f64::total_cmp); // sturges_edges takes sorted samples
        let want: Vec<f64> = (0..=20).map(f64::from).collect();
        assert_eq!(sturges_edges(&ints, &ints, true), Ok(want));
        let float_edges = sturges_edges(&ints, &ints, false).expect("edges");
        assert_eq!(float_edges.len(), 22);
        assert_eq!(float_edges[1], 0.9523809523809523);
        assert_eq!(float_edges[11], 10.476190476190476);
    }

    #[test]
    fn ks_algorithms_agree_where_they_overlap() {
        // The square path and the general path give the same exact p-value.
        for (n, h) in [(10, 3), (50, 7), (200, 31)] {
            let a = prob_outside_square(n, h);
            let b = outer_prob_inside(n, n, n, h);
            assert!((a - b).abs() < 1e-12, "n={n} h={h}: {a} vs {b}");
        }
        // Identical samples: statistic 0, p-value 1.
        let x = [3.0, 1.0, 2.0, 2.0];
        assert_eq!(
            ks_2samp(&x, &x),
            KsResult {
                statistic: 0.0,
                pvalue: 1.0
            }
        );
    }
}
