//! Data-drift statistics that reproduce Evidently 0.7's `DataDriftPreset`.
//!
//! Fraudlake's drift reports stand in for Evidently's (the Python peer in `bench/README.md`), and
//! they are only comparable if every column gets the same method, statistic, threshold and
//! verdict here as there. This module is that contract. Every rule below was read from the code
//! of Evidently 0.7.23 (paths relative to its `evidently/` package) and scipy 1.17, not from
//! their documentation, and `tests/data/make_vectors.py` records Evidently's and scipy's own
//! results for the tests in `stats/tests.rs`.
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
//!
//! The code, one file per job: `choice` (kind, method, one column's test, dataset verdict),
//! `ks` and `kstwo` (Kolmogorov-Smirnov, two-sample and its one-sample distribution),
//! `wasserstein`, `categorical` (chi-square, Z-test), `binning` (histograms, PSI,
//! Jensen-Shannon) and `sample` (preparation and counting shared by all). The shared types and
//! constants are in this file, which re-exports every public function.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod binning;
mod categorical;
mod choice;
mod ks;
mod kstwo;
mod sample;
#[cfg(test)]
mod tests;
mod wasserstein;

pub use binning::{binned_percents, jensenshannon, jensenshannon_distance, psi};
pub use categorical::{chisquare, chisquare_pvalue, z_test_pvalue};
pub use choice::{
    dataset_drift, default_method, drift_share, infer_kind, infer_kind_typed, test_column,
    test_column_with_kind,
};
pub use ks::{ks_2samp, ks_2samp_pvalue};
pub use kstwo::kstwo_sf;
pub use wasserstein::{wasserstein_distance, wasserstein_distance_norm};

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
