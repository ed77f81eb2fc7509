//! Which test a column gets and what it concludes: Evidently's column kind, its automatic
//! method choice, one column's test (statistic, threshold, verdict, PSI beside it) and the
//! dataset verdict. The rules, and where in Evidently each was read, are in the parent module.

use super::binning::{binned_sorted, jensenshannon, psi_sorted};
use super::categorical::{chisquare_sorted, z_test_sorted};
use super::ks::ks_sorted;
use super::sample::{check_no_nan, finite_sorted, has_at_most_distinct, prepare, union_distinct};
use super::wasserstein::wasserstein_norm_sorted;
use super::{
    ColumnKind, ColumnTest, Method, Sample, StatsError, ValueType, INTEGER_CATEGORICAL_MAX_VALUES,
    LOW_CARDINALITY_MAX_VALUES, SMALL_REFERENCE_MAX_ROWS,
};

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
/// [`DATASET_DRIFT_SHARE`](super::DATASET_DRIFT_SHARE)). No columns means no drift (Evidently
/// divides by zero there).
pub fn dataset_drift(drifted: usize, columns: usize, share: f64) -> bool {
    columns > 0 && drift_share(drifted, columns) >= share
}
