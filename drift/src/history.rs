//! Where drift results are kept: the HTML and JSON report files under `reports/drift/` in the
//! lake (through object_store, so an `s3://` lake keeps them in the bucket) and one row per
//! column per run in the `drift_reports` Delta table, so history is a SQL query away and the
//! server can expose the latest verdict as metrics.

use std::sync::Arc;

use crate::error::{Error, Result};
use chrono::NaiveDate;
use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::logstore::object_store::{path::Path as StorePath, ObjectStoreExt, PutPayload};
use fraudlake_pipeline::columns;
use fraudlake_pipeline::lake::tables::{utc_micros, TableDef};
use fraudlake_pipeline::lake::Lake;

use crate::report::{ColumnReport, DriftReport};

/// The lake folder holding the report files.
pub const REPORTS_FOLDER: &str = "reports/drift";

/// One row per column (and per model signal) per drift run.
pub const DRIFT_REPORTS: TableDef = TableDef {
    name: "drift_reports",
    description: "drift results: one row per column per run (scope feature, prediction or target)",
    schema: drift_reports_schema,
    partition_by: &[],
};

fn drift_reports_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("generated_at", utc_micros(), false),
        Field::new("scope", DataType::Utf8, false),
        Field::new("column", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("method", DataType::Utf8, false),
        Field::new("statistic", DataType::Float64, true),
        Field::new("threshold", DataType::Float64, false),
        Field::new("drifted", DataType::Boolean, false),
        Field::new("psi", DataType::Float64, true),
        Field::new("reference_from", DataType::Date32, false),
        Field::new("reference_to", DataType::Date32, false),
        Field::new("reference_rows", DataType::Int64, false),
        Field::new("current_from", DataType::Date32, false),
        Field::new("current_to", DataType::Date32, false),
        Field::new("current_rows", DataType::Int64, false),
        Field::new("model_version", DataType::Int64, true),
        Field::new("feature_set", DataType::Utf8, false),
        Field::new("dataset_drift", DataType::Boolean, false),
        Field::new("drift_share", DataType::Float64, false),
        Field::new("report", DataType::Utf8, false),
    ]))
}

/// Where a saved report went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Saved {
    pub html: String,
    pub json: String,
    pub table_version: i64,
    pub html_bytes: usize,
}

/// Writes the HTML and JSON files, then the table rows in one commit (rows last: a row always
/// points at a file that exists).
pub async fn save(lake: &Lake, report: &DriftReport) -> Result<Saved> {
    let html = report
        .to_html()
        .map_err(|e| Error::invalid(format!("cannot render the drift report: {e}")))?;
    let json = report
        .to_json()
        .map_err(|e| Error::invalid(format!("cannot serialise the drift report: {e}")))?;
    let store = lake.files(REPORTS_FOLDER)?;
    let html_bytes = html.len();
    for (name, body) in [
        (format!("{}.html", report.run_id), html),
        (format!("{}.json", report.run_id), json),
    ] {
        store
            .put(
                &StorePath::from(name.as_str()),
                PutPayload::from(body.into_bytes()),
            )
            .await
            .map_err(|e| Error::invalid(format!("cannot write the drift report {name}: {e}")))?;
    }
    let html_url = lake.file_url(REPORTS_FOLDER, &format!("{}.html", report.run_id));
    let batch = rows(report, &html_url)?;
    let table = lake
        .append(&DRIFT_REPORTS, vec![batch], "drift report")
        .await?;
    Ok(Saved {
        json: lake.file_url(REPORTS_FOLDER, &format!("{}.json", report.run_id)),
        html: html_url,
        table_version: table.version().map_or(-1, |v| v as i64),
        html_bytes,
    })
}

fn date(s: &str) -> Result<i32> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| Error::invalid(format!("bad period date '{s}': {e}")))?;
    Ok(columns::day_number(d))
}

fn rows(report: &DriftReport, url: &str) -> Result<RecordBatch> {
    let mut all: Vec<(&str, &ColumnReport)> =
        report.columns.iter().map(|c| ("feature", c)).collect();
    if let Some(p) = &report.prediction {
        all.push(("prediction", p));
    }
    if let Some(t) = &report.target {
        all.push(("target", t));
    }
    let n = all.len();
    let at = chrono::DateTime::parse_from_rfc3339(&report.generated_at)
        .map_err(|e| Error::invalid(format!("bad generated_at: {e}")))?
        .timestamp_micros();
    let finite = |v: f64| v.is_finite().then_some(v);
    let (rf, rt) = (date(&report.reference.start)?, date(&report.reference.end)?);
    let (cf, ct) = (date(&report.current.start)?, date(&report.current.end)?);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![report.run_id.as_str(); n])),
        Arc::new(TimestampMicrosecondArray::from(vec![at; n]).with_timezone("UTC")),
        Arc::new(StringArray::from_iter_values(all.iter().map(|c| c.0))),
        Arc::new(StringArray::from_iter_values(
            all.iter().map(|c| c.1.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            all.iter().map(|c| c.1.kind.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            all.iter().map(|c| c.1.method.as_str()),
        )),
        Arc::new(Float64Array::from_iter(
            all.iter().map(|c| finite(c.1.statistic)),
        )),
        Arc::new(Float64Array::from_iter_values(
            all.iter().map(|c| c.1.threshold),
        )),
        Arc::new(BooleanArray::from_iter(
            all.iter().map(|c| Some(c.1.drifted)),
        )),
        Arc::new(Float64Array::from_iter(all.iter().map(|c| finite(c.1.psi)))),
        Arc::new(Date32Array::from(vec![rf; n])),
        Arc::new(Date32Array::from(vec![rt; n])),
        Arc::new(Int64Array::from(vec![report.reference.rows as i64; n])),
        Arc::new(Date32Array::from(vec![cf; n])),
        Arc::new(Date32Array::from(vec![ct; n])),
        Arc::new(Int64Array::from(vec![report.current.rows as i64; n])),
        Arc::new(Int64Array::from(vec![report.model_version; n])),
        Arc::new(StringArray::from(vec![report.feature_set.as_str(); n])),
        Arc::new(BooleanArray::from(vec![report.dataset_drift; n])),
        Arc::new(Float64Array::from(vec![report.drift_share; n])),
        Arc::new(StringArray::from(vec![url; n])),
    ];
    Ok(RecordBatch::try_new(drift_reports_schema(), cols)?)
}

/// The latest run's verdict, as the server exposes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub run_id: String,
    pub generated_at_secs: f64,
    pub dataset_drift: bool,
    pub drift_share: f64,
    /// (scope, column, method, statistic, drifted)
    pub columns: Vec<(String, String, String, Option<f64>, bool)>,
}

/// Reads the latest run from `drift_reports` (`None` when there is none yet).
pub async fn latest(lake: &Lake) -> Result<Option<Latest>> {
    let ctx = lake.session(&[]).await?;
    if !ctx.table_exist(DRIFT_REPORTS.name)? {
        return Ok(None);
    }
    let batches = ctx
        .sql(
            "SELECT run_id, CAST(generated_at AS BIGINT) AS generated_us, dataset_drift, drift_share, scope, \
               \"column\", method, statistic, drifted \
             FROM drift_reports \
             WHERE run_id = (SELECT MAX(run_id) FROM drift_reports) ORDER BY scope, \"column\"",
        )
        .await?
        .collect()
        .await?;
    let mut out: Option<Latest> = None;
    for b in &batches {
        let run = columns::utf8(b.column(0))?;
        let at = columns::i64s(b.column(1))?;
        let ds = columns::bools(b.column(2))?;
        let share = columns::f64s(b.column(3))?;
        let scope = columns::utf8(b.column(4))?;
        let col = columns::utf8(b.column(5))?;
        let method = columns::utf8(b.column(6))?;
        let stat = columns::f64s(b.column(7))?;
        let drifted = columns::bools(b.column(8))?;
        for i in 0..b.num_rows() {
            let l = out.get_or_insert_with(|| Latest {
                run_id: run.value(i).to_string(),
                generated_at_secs: at.value(i) as f64 / 1e6,
                dataset_drift: ds.value(i),
                drift_share: share.value(i),
                columns: Vec::new(),
            });
            l.columns.push((
                scope.value(i).to_string(),
                col.value(i).to_string(),
                method.value(i).to_string(),
                (!stat.is_null(i)).then(|| stat.value(i)),
                drifted.value(i),
            ));
        }
    }
    Ok(out)
}
