//! Builds a [`DriftReport`] from the lake: which rows are the reference and which the current
//! data, the per-column tests of [`crate::stats`], and the model-side signals (score drift,
//! target drift, live quality). Reading goes through the same pinned snapshot of `features`
//! and `labels` that training uses, so "the champion's training data" means the same rows here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use chrono::{Duration, NaiveDate, Utc};
use deltalake::arrow::array::{Array, Float64Array, RecordBatch};
use fraudlake_model::dataset::{Rows, Snapshot};
use fraudlake_model::registry::{ModelVersion, Registry};
use fraudlake_pipeline::columns;
use fraudlake_pipeline::lake::Lake;
use serde::{Deserialize, Serialize};

use crate::report::{histogram, ColumnReport, DriftReport, LiveQuality, Period};
use crate::stats::{self, Method, ValueType};

/// A period of days: the champion's training period, or `FROM..TO` (both days included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodSpec {
    Champion,
    Range { from: NaiveDate, to: NaiveDate },
}

impl FromStr for PeriodSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<PeriodSpec> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("champion") {
            return Ok(PeriodSpec::Champion);
        }
        let bad = || {
            Error::invalid(format!(
                "'{s}' is not a period: expected `champion` or `YYYY-MM-DD..YYYY-MM-DD` \
                 (both days included)"
            ))
        };
        let (a, b) = s.split_once("..").ok_or_else(bad)?;
        let from = NaiveDate::parse_from_str(a.trim(), "%Y-%m-%d").map_err(|_| bad())?;
        let to = NaiveDate::parse_from_str(b.trim(), "%Y-%m-%d").map_err(|_| bad())?;
        if to < from {
            return Err(Error::invalid(format!(
                "period '{s}' ends before it starts"
            )));
        }
        Ok(PeriodSpec::Range { from, to })
    }
}

impl fmt::Display for PeriodSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeriodSpec::Champion => f.write_str("champion"),
            PeriodSpec::Range { from, to } => write!(f, "{from}..{to}"),
        }
    }
}

/// Per-column override of the test Evidently's rules would pick (`[drift.columns.NAME]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnOverride {
    pub method: Option<String>,
    pub threshold: Option<f64>,
}

/// What to compare. The defaults are the issue's: the champion's training period against the
/// last 7 days of features.
#[derive(Debug, Clone)]
pub struct DriftOptions {
    pub reference: PeriodSpec,
    /// `None`: the `current_days` days ending at `as_of` (or at the last day in `features`).
    pub current: Option<PeriodSpec>,
    pub current_days: u32,
    /// The logical date of a scheduled run: the current period ends here.
    pub as_of: Option<NaiveDate>,
    pub drift_share: f64,
    pub columns: BTreeMap<String, ColumnOverride>,
    pub bins: usize,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            reference: PeriodSpec::Champion,
            current: None,
            current_days: 7,
            as_of: None,
            drift_share: stats::DATASET_DRIFT_SHARE,
            columns: BTreeMap::new(),
            bins: 20,
        }
    }
}

/// Checks the options before any data is read, so a typo fails fast with its name.
pub fn validate(opts: &DriftOptions) -> Result<()> {
    if opts.current_days == 0 {
        return Err(Error::invalid("--current-days must be at least 1"));
    }
    if !(opts.drift_share > 0.0 && opts.drift_share <= 1.0) {
        return Err(Error::invalid(format!(
            "the drift share threshold must be in (0, 1], got {}",
            opts.drift_share
        )));
    }
    if opts.bins < 2 || opts.bins > 200 {
        return Err(Error::invalid(format!(
            "--bins must be between 2 and 200, got {}",
            opts.bins
        )));
    }
    for (name, o) in &opts.columns {
        if let Some(m) = &o.method {
            Method::parse(m)
                .map_err(|e| Error::invalid(format!("[drift.columns.{name}] method: {e}")))?;
        }
        if let Some(t) = o.threshold {
            if !t.is_finite() || t < 0.0 {
                return Err(Error::invalid(format!(
                    "[drift.columns.{name}] threshold must be a finite number >= 0, got {t}"
                )));
            }
        }
    }
    Ok(())
}

/// Computes the drift report (nothing is written: see [`crate::history::save`]).
pub async fn compute(lake: &Lake, opts: &DriftOptions) -> Result<DriftReport> {
    validate(opts)?;
    let registry = Registry::new(lake.clone());
    let champion = match registry.aliases().await?.champion {
        Some(_) => Some(registry.get("champion").await?),
        None => None,
    };
    let snapshot = Snapshot::open(lake, &HashMap::new()).await?;
    let types = snapshot.feature_column_types().await?;
    let (names, feature_set) = match &champion {
        Some(m) => {
            snapshot.require_feature_set(&m.record.feature_set)?;
            (m.record.feature_names.clone(), m.record.feature_set.clone())
        }
        None => match snapshot.feature_sets.as_slice() {
            [one] => (types.iter().map(|t| t.0.clone()).collect(), one.clone()),
            [] => return Err(Error::invalid("the features table is empty")),
            _ => {
                return Err(Error::invalid(
                    "the features table holds several feature sets and there is no champion \
                     model to choose one: rebuild features with `fraudlake features build`",
                ))
            }
        },
    };
    for name in opts.columns.keys() {
        if !names.contains(name) {
            return Err(Error::invalid(format!(
                "[drift.columns.{name}] is not a feature column (columns: {})",
                names.join(", ")
            )));
        }
    }

    let (ref_from, ref_to, ref_label) = match opts.reference {
        PeriodSpec::Champion => {
            let m = champion.as_ref().ok_or_else(|| {
                Error::invalid(
                    "the lake has no champion model, so there is no default reference: pass \
                     --reference FROM..TO",
                )
            })?;
            let p = &m.record.periods;
            let to = p.train_end();
            (
                p.train_start,
                to,
                format!(
                    "champion v{} training data ({}..{to})",
                    m.record.version, p.train_start
                ),
            )
        }
        PeriodSpec::Range { from, to } => (from, to, format!("{from}..{to}")),
    };
    let (cur_from, cur_to) = match opts.current {
        Some(PeriodSpec::Range { from, to }) => (from, to),
        Some(PeriodSpec::Champion) => {
            return Err(Error::invalid(
                "--current cannot be `champion`: the current data is a period of days",
            ))
        }
        None => {
            let end = match opts.as_of {
                Some(d) => d,
                None => {
                    snapshot
                        .day_range()
                        .await?
                        .ok_or_else(|| Error::invalid("the features table is empty"))?
                        .1
                }
            };
            (end - Duration::days(i64::from(opts.current_days) - 1), end)
        }
    };

    let load_started = std::time::Instant::now();
    let reference = snapshot
        .rows(&names, ref_from, ref_to, &feature_set)
        .await?;
    let current = snapshot
        .rows(&names, cur_from, cur_to, &feature_set)
        .await?;
    for (what, rows, from, to) in [
        ("reference", &reference, ref_from, ref_to),
        ("current", &current, cur_from, cur_to),
    ] {
        if rows.is_empty() {
            return Err(Error::invalid(format!(
                "the {what} period {from}..{to} has no rows in the features table (feature \
                 set {}): choose days the lake has (`fraudlake features show`)",
                &feature_set[..12.min(feature_set.len())]
            )));
        }
    }

    let load_seconds = load_started.elapsed().as_secs_f64();
    let stats_started = std::time::Instant::now();
    let mut columns_out = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        let r = column(&reference, j);
        let c = column(&current, j);
        let value_type = types
            .iter()
            .find(|t| t.0 == *name)
            .map_or(ValueType::Float, |t| value_type(&t.1));
        columns_out.push(column_report(
            name,
            value_type,
            &r,
            &c,
            opts.columns.get(name),
            opts.bins,
        )?);
    }
    // The part Evidently's "compute" time measures: tests and histograms on loaded data.
    tracing::info!(
        load_seconds,
        stats_seconds = stats_started.elapsed().as_secs_f64(),
        columns = columns_out.len(),
        "feature drift statistics"
    );
    let n_drifted = columns_out.iter().filter(|c| c.drifted).count();
    let share = n_drifted as f64 / columns_out.len().max(1) as f64;

    let (prediction, quality) = match &champion {
        Some(m) => {
            model_signals(
                lake,
                &registry,
                m,
                &reference,
                &current,
                (cur_from, cur_to),
                opts.bins,
            )
            .await?
        }
        None => (None, None),
    };
    let rollout = rollout_drift(lake, (cur_from, cur_to), opts.bins).await?;
    let ref_labels = snapshot
        .arrived_labels(ref_from, ref_to, &feature_set)
        .await?;
    let cur_labels = snapshot
        .arrived_labels(cur_from, cur_to, &feature_set)
        .await?;
    let target = if ref_labels.is_empty() || cur_labels.is_empty() {
        None
    } else {
        let r: Vec<f64> = ref_labels.iter().map(|&b| f64::from(u8::from(b))).collect();
        let c: Vec<f64> = cur_labels.iter().map(|&b| f64::from(u8::from(b))).collect();
        Some(column_report(
            "is_fraud",
            ValueType::Boolean,
            &(r, 0),
            &(c, 0),
            None,
            opts.bins,
        )?)
    };

    let now = Utc::now();
    Ok(DriftReport {
        run_id: now.format("%Y%m%dT%H%M%S%.3fZ").to_string(),
        generated_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        reference: Period {
            label: ref_label,
            start: ref_from.to_string(),
            end: ref_to.to_string(),
            rows: reference.len() as u64,
        },
        current: Period {
            label: format!("{cur_from}..{cur_to}"),
            start: cur_from.to_string(),
            end: cur_to.to_string(),
            rows: current.len() as u64,
        },
        model_version: champion.as_ref().map(|m| m.record.version),
        feature_set,
        drift_share_threshold: opts.drift_share,
        drift_share: share,
        dataset_drift: stats::dataset_drift(n_drifted, columns_out.len(), opts.drift_share),
        columns: columns_out,
        prediction,
        rollout,
        target,
        quality,
    })
}

/// Column `j` of `rows` without its nulls, and the number of nulls.
fn column(rows: &Rows, j: usize) -> (Vec<f64>, u64) {
    let width = rows.feature_names.len();
    let mut values = Vec::with_capacity(rows.len());
    let mut nulls = 0;
    for v in rows.values.iter().skip(j).step_by(width.max(1)) {
        if v.is_nan() {
            nulls += 1;
        } else {
            values.push(*v);
        }
    }
    (values, nulls)
}

/// How Evidently would see a column stored as `t` (it classifies by storage type).
fn value_type(t: &deltalake::arrow::datatypes::DataType) -> ValueType {
    use deltalake::arrow::datatypes::DataType as D;
    match t {
        D::Boolean => ValueType::Boolean,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            ValueType::Integer
        }
        _ => ValueType::Float,
    }
}

fn column_report(
    name: &str,
    value_type: ValueType,
    reference: &(Vec<f64>, u64),
    current: &(Vec<f64>, u64),
    over: Option<&ColumnOverride>,
    bins: usize,
) -> Result<ColumnReport> {
    let (r, c) = (&reference.0, &current.0);
    if r.is_empty() || c.is_empty() {
        return Err(Error::invalid(format!(
            "column {name}: only nulls in the {} data",
            if r.is_empty() { "reference" } else { "current" }
        )));
    }
    let method = over
        .and_then(|o| o.method.as_deref())
        .map(Method::parse)
        .transpose()
        .map_err(|e| Error::invalid(format!("column {name}: {e}")))?;
    let kind = stats::infer_kind_typed(value_type, c);
    let t = stats::test_column_with_kind(r, c, kind, method, over.and_then(|o| o.threshold))
        .map_err(|e| Error::invalid(format!("column {name}: {e}")))?;
    let categorical = matches!(t.kind, stats::ColumnKind::Categorical);
    Ok(ColumnReport {
        name: name.to_string(),
        kind: if categorical {
            "categorical"
        } else {
            "numerical"
        }
        .to_string(),
        method: t.method.name().to_string(),
        statistic: t.statistic,
        threshold: t.threshold,
        drifted: t.drifted,
        psi: t.psi,
        reference_nulls: reference.1,
        current_nulls: current.1,
        reference_mean: mean(r),
        current_mean: mean(c),
        histogram: histogram(r, c, categorical, bins),
    })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Score drift (the champion's scores on the reference rows against the scores served in the
/// current period, or its offline scores on the current rows when nothing was served), and
/// live quality (AUC and AP of what was served and has been labeled since).
async fn model_signals(
    lake: &Lake,
    registry: &Registry,
    champion: &ModelVersion,
    reference: &Rows,
    current: &Rows,
    (from, to): (NaiveDate, NaiveDate),
    bins: usize,
) -> Result<(Option<ColumnReport>, Option<LiveQuality>)> {
    let (_, model) = registry.load_artifact(&champion.record).await?;
    let ref_scores = model.predict_many(&reference.values);
    let served = served_scores(lake, from, to).await?;
    let (cur_scores, name) = if served.0.is_empty() {
        (
            model.predict_many(&current.values),
            "risk_score (champion, offline)",
        )
    } else {
        (served.0.clone(), "risk_score (served)")
    };
    let prediction = column_report(
        name,
        ValueType::Float,
        &(ref_scores, 0),
        &(cur_scores, 0),
        None,
        bins,
    )?;

    let labeled: Vec<(f64, bool)> = served.1;
    let quality = if labeled.is_empty() {
        None
    } else {
        let scores: Vec<f64> = labeled.iter().map(|p| p.0).collect();
        let labels: Vec<bool> = labeled.iter().map(|p| p.1).collect();
        Some(LiveQuality {
            labeled_rows: labels.len() as u64,
            fraud_rows: labels.iter().filter(|&&b| b).count() as u64,
            auc_roc: fraudlake_model::metrics::auc_roc(&labels, &scores),
            average_precision: fraudlake_model::metrics::average_precision(&labels, &scores),
            test_auc_roc: champion.record.metrics.auc_roc,
            test_average_precision: champion.record.metrics.average_precision,
        })
    };
    Ok((Some(prediction), quality))
}

/// The scores served on days `[from, to]`, and those of them whose label has arrived.
async fn served_scores(
    lake: &Lake,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(Vec<f64>, Vec<(f64, bool)>)> {
    // Only the two tables this reads (each Delta log is loaded once).
    let ctx = lake.session(&[]).await?;
    if !ctx.table_exist("predictions")? {
        return Ok((Vec::new(), Vec::new()));
    }
    let period = format!("p.tx_date >= DATE '{from}' AND p.tx_date <= DATE '{to}'");
    let scores = ctx
        .sql(&format!(
            "SELECT p.risk_score FROM predictions p WHERE {period}"
        ))
        .await?
        .collect()
        .await?;
    let mut all = Vec::new();
    for b in &scores {
        all.extend(floats(b, 0)?.iter().flatten());
    }
    if !ctx.table_exist("labels")? {
        return Ok((all, Vec::new()));
    }
    // The label that counts per transaction, by the default precedence (fraudlake_pipeline::labels).
    let joined = ctx
        .sql(&format!(
            "SELECT p.risk_score, l.is_fraud FROM predictions p JOIN ({}) l \
             ON p.tx_id = l.tx_id WHERE {period}",
            fraudlake_pipeline::labels::LabelPolicy::default().effective_sql()
        ))
        .await?
        .collect()
        .await?;
    let mut labeled = Vec::new();
    for b in &joined {
        let s = floats(b, 0)?;
        let l = columns::bools(b.column(1))?;
        for i in 0..b.num_rows() {
            if !s.is_null(i) && !l.is_null(i) {
                labeled.push((s.value(i), l.value(i)));
            }
        }
    }
    Ok((all, labeled))
}

/// The rollout's score drift (docs/rollout.md section 7): for every canary and shadow version
/// that scored in days `[from, to]`, its scores (current) against the champion's (reference) on
/// the same served transactions. Empty when nothing was served or `predictions` was written
/// before the rollout columns.
async fn rollout_drift(
    lake: &Lake,
    (from, to): (NaiveDate, NaiveDate),
    bins: usize,
) -> Result<Vec<ColumnReport>> {
    let ctx = lake.session(&[]).await?;
    if !ctx.table_exist("predictions")? {
        return Ok(Vec::new());
    }
    let names: Vec<String> = ctx
        .table("predictions")
        .await?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let has = |c: &str| names.iter().any(|n| n == c);
    let period = format!("p.tx_date >= DATE '{from}' AND p.tx_date <= DATE '{to}'");
    let mut out = Vec::new();
    for role in ["canary", "shadow"] {
        let (version, score) = (format!("{role}_version"), format!("{role}_score"));
        if !(has("champion_score") && has(version.as_str()) && has(score.as_str())) {
            continue;
        }
        let batches = ctx
            .sql(&format!(
                "SELECT p.{version}, p.champion_score, p.{score} FROM predictions p \
                 WHERE {period} AND p.{version} IS NOT NULL \
                 AND p.champion_score IS NOT NULL AND p.{score} IS NOT NULL"
            ))
            .await?
            .collect()
            .await?;
        // (champion scores, candidate scores) per candidate version.
        let mut by_version: BTreeMap<i64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for b in &batches {
            let v = columns::i64s(b.column(0))?;
            let champion = columns::f64s(b.column(1))?;
            let candidate = columns::f64s(b.column(2))?;
            for i in 0..b.num_rows() {
                let scores = by_version.entry(v.value(i)).or_default();
                scores.0.push(champion.value(i));
                scores.1.push(candidate.value(i));
            }
        }
        for (v, (champion, candidate)) in by_version {
            out.push(column_report(
                &format!("{score} (version {v}) vs champion_score"),
                ValueType::Float,
                &(champion, 0),
                &(candidate, 0),
                None,
                bins,
            )?);
        }
    }
    Ok(out)
}

fn floats(b: &RecordBatch, i: usize) -> Result<&Float64Array> {
    b.column(i)
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| Error::invalid("predictions.risk_score is not a double column"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_with_clear_errors() {
        assert_eq!(
            "champion".parse::<PeriodSpec>().ok(),
            Some(PeriodSpec::Champion)
        );
        let p: PeriodSpec = "2018-07-25..2018-07-31".parse().expect("range");
        assert_eq!(p.to_string(), "2018-07-25..2018-07-31");
        let e = "2018-07-31..2018-07-25".parse::<PeriodSpec>().unwrap_err();
        assert!(e.to_string().contains("ends before it starts"), "{e}");
        let e = "last week".parse::<PeriodSpec>().unwrap_err();
        assert!(e.to_string().contains("YYYY-MM-DD..YYYY-MM-DD"), "{e}");
    }

    #[test]
    fn options_are_validated_by_name() {
        let mut o = DriftOptions::default();
        o.columns.insert(
            "amount".into(),
            ColumnOverride {
                method: Some("kolmogorov".into()),
                threshold: None,
            },
        );
        let e = validate(&o).unwrap_err().to_string();
        assert!(e.contains("[drift.columns.amount] method"), "{e}");
        let o = DriftOptions {
            drift_share: 0.0,
            ..DriftOptions::default()
        };
        assert!(validate(&o).is_err());
    }

    #[test]
    fn column_drops_nulls_and_counts_them() {
        let rows = Rows {
            feature_names: vec!["a".into(), "b".into()],
            values: vec![1.0, f64::NAN, 2.0, 5.0, f64::NAN, 6.0],
            ..Rows::default()
        };
        assert_eq!(column(&rows, 0), (vec![1.0, 2.0], 1));
        assert_eq!(column(&rows, 1), (vec![5.0, 6.0], 1));
    }
}
