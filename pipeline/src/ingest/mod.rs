//! `fraudlake ingest`: CSV, Parquet and JSON Lines files into `transactions` and `labels`.
//!
//! The contract: a bad row never aborts a file and is never dropped silently (it lands in
//! `transactions_rejected` with a reason); a file that cannot be read at all changes nothing;
//! re-ingesting a file adds nothing (tx_id is unique in the lake); each table gets exactly one
//! Delta commit per ingest, so a crash leaves the last good version.

pub mod read;
pub mod validate;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::Int64Type;
use deltalake::datafusion::prelude::{col, lit, Expr};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lake::tables::{
    rejections_batch, LabelColumns, Rejection, TransactionColumns, LABELS, TRANSACTIONS,
    TRANSACTIONS_REJECTED,
};
use crate::lake::Lake;
pub use read::InputFormat;
use validate::{ColumnMap, Target};

/// Known source schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The Fraud Detection Handbook's simulated transactions.
    Handbook,
}

impl std::str::FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "handbook" => Ok(Preset::Handbook),
            other => Err(Error::invalid(format!(
                "unknown preset '{other}' (known: handbook)"
            ))),
        }
    }
}

impl Preset {
    fn mapping(self) -> Vec<(&'static str, Target)> {
        match self {
            Preset::Handbook => vec![
                ("TRANSACTION_ID", Target::TxId),
                ("TX_DATETIME", Target::TxTs),
                ("CUSTOMER_ID", Target::CustomerId),
                ("TERMINAL_ID", Target::TerminalId),
                ("TX_AMOUNT", Target::Amount),
                ("TX_FRAUD", Target::IsFraud),
                ("TX_FRAUD_SCENARIO", Target::FraudScenario),
            ],
        }
    }
}

/// How to ingest.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    pub format: Option<InputFormat>,
    pub preset: Option<Preset>,
    /// `source column -> lake column` overrides.
    pub mappings: Vec<(String, String)>,
    /// Shown as the label `source`; defaults to `ingest:<file name>`.
    pub label_source: Option<String>,
    pub progress: bool,
}

/// What one ingest did.
#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    pub file: String,
    pub rows_read: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub already_present: usize,
    pub labels_added: usize,
    pub fraud_labels_added: usize,
    pub transactions_version: Option<u64>,
    pub labels_version: Option<u64>,
    pub seconds: f64,
}

/// Resolves which source column feeds each lake column.
fn resolve_mapping(columns: &[String], opts: &IngestOptions) -> Result<ColumnMap> {
    let mut map = ColumnMap::new();
    if let Some(preset) = opts.preset {
        for (src, target) in preset.mapping() {
            if columns.iter().any(|c| c == src) {
                map.insert(target, src.to_string());
            }
        }
    } else {
        for c in columns {
            if let Some(t) = Target::from_name(&c.to_ascii_lowercase()) {
                map.insert(t, c.clone());
            }
        }
    }
    for (src, dst) in &opts.mappings {
        let target = Target::from_name(dst).ok_or_else(|| {
            Error::invalid(format!(
                "--map {src}={dst}: unknown lake column '{dst}' (known: {})",
                Target::ALL.map(|t| t.name()).join(", ")
            ))
        })?;
        if !columns.iter().any(|c| c == src) {
            return Err(Error::invalid(format!(
                "--map {src}={dst}: the file has no column '{src}' (columns: {})",
                columns.join(", ")
            )));
        }
        map.insert(target, src.clone());
    }
    Ok(map)
}

/// Ingests one file into the lake.
pub async fn ingest_file(lake: &Lake, path: &Path, opts: &IngestOptions) -> Result<IngestSummary> {
    let started = std::time::Instant::now();
    let format = match opts.format {
        Some(f) => f,
        None => InputFormat::from_path(path)?,
    };
    let file_name = path.display().to_string();
    let progress = if opts.progress {
        crate::progress::bar(0, &format!("reading {file_name}"))
    } else {
        ProgressBar::hidden()
    };
    let path_owned = path.to_path_buf();
    let pb = progress.clone();
    let read = tokio::task::spawn_blocking(move || read::read_file(&path_owned, format, &pb))
        .await
        .map_err(|e| Error::invalid(format!("reader task failed: {e}")))??;
    progress.finish_and_clear();

    let columns: Vec<String> = read
        .batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    // Text formats may discover columns late; the last batch has them all.
    let columns: Vec<String> = read
        .batches
        .last()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or(columns);
    let map = resolve_mapping(&columns, opts)?;
    let tx_targets = [
        Target::TxId,
        Target::TxTs,
        Target::CustomerId,
        Target::TerminalId,
        Target::Amount,
    ];
    let has_tx = tx_targets.iter().filter(|t| map.contains_key(t)).count();
    let wants_transactions = has_tx > 1;
    if !read.batches.is_empty() {
        if wants_transactions {
            let missing: Vec<&str> = tx_targets
                .iter()
                .filter(|t| !map.contains_key(t))
                .map(|t| t.name())
                .collect();
            if !missing.is_empty() {
                return Err(Error::invalid(format!(
                    "{file_name}: no column for {} (file columns: {}); name them so, use --map SRC=COLUMN or --preset",
                    missing.join(", "),
                    columns.join(", ")
                )));
            }
        } else if !(map.contains_key(&Target::TxId) && map.contains_key(&Target::IsFraud)) {
            return Err(Error::invalid(format!(
                "{file_name}: neither transactions (tx_id, tx_ts, customer_id, terminal_id, amount) nor labels (tx_id, is_fraud) found among columns {}",
                columns.join(", ")
            )));
        }
    }

    let now_us = chrono::Utc::now().timestamp_micros();
    let mut rejections: Vec<Rejection> = read
        .unreadable
        .iter()
        .map(|u| Rejection {
            source: file_name.clone(),
            row_number: u.row_number,
            raw_record: u.raw.clone(),
            reason: u.reason.clone(),
        })
        .collect();
    let mut tx = TransactionColumns::default();
    let mut labels = LabelColumns::default();
    let mut first_seen: HashMap<i64, i64> = HashMap::new();
    let mut rows_read = read.unreadable.len();
    for (batch, row_numbers) in read.batches.iter().zip(&read.row_numbers) {
        rows_read += batch.num_rows();
        let v = validate::validate_batch(batch, &map, wants_transactions)?;
        for (row, &row_number) in row_numbers.iter().enumerate().take(batch.num_rows()) {
            let reason = match v.rejected.get(&row) {
                Some(reason) => Some(reason.clone()),
                None => {
                    let id = v.tx_id[row].unwrap_or_default();
                    match first_seen.get(&id) {
                        Some(first) => Some(format!(
                            "duplicate tx_id {id} within the file (first at row {first})"
                        )),
                        None => {
                            first_seen.insert(id, row_number);
                            None
                        }
                    }
                }
            };
            if let Some(reason) = reason {
                rejections.push(Rejection {
                    source: file_name.clone(),
                    row_number,
                    raw_record: validate::raw_record(batch, row)?,
                    reason,
                });
                continue;
            }
            let id = v.tx_id[row].unwrap_or_default();
            if wants_transactions {
                tx.tx_id.push(id);
                tx.tx_ts_us.push(v.tx_ts_us[row].unwrap_or_default());
                tx.customer_id.push(v.customer_id[row].unwrap_or_default());
                tx.terminal_id.push(v.terminal_id[row].unwrap_or_default());
                tx.amount.push(v.amount[row].unwrap_or_default());
            }
            if let Some(is_fraud) = v.is_fraud[row] {
                labels.tx_id.push(id);
                labels.is_fraud.push(is_fraud);
                labels.fraud_scenario.push(v.fraud_scenario[row]);
                labels
                    .labeled_at_us
                    .push(v.labeled_at_us[row].unwrap_or(now_us));
            }
        }
    }
    drop(read);

    let existing_rejections = existing_rejections(lake, &file_name).await?;
    rejections.retain(|r| !existing_rejections.contains(&(r.row_number, r.raw_record.clone())));
    let label_source = opts
        .label_source
        .clone()
        .unwrap_or_else(|| format!("ingest:{}", short_name(path)));
    let mut summary = land(lake, tx, labels, &label_source, "ingest", now_us).await?;
    if !rejections.is_empty() {
        let batch = rejections_batch(&rejections, now_us)?;
        lake.append(&TRANSACTIONS_REJECTED, vec![batch], "ingest")
            .await?;
    }
    summary.file = file_name;
    summary.rows_read = rows_read;
    summary.rejected = rejections.len();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Writes transactions and labels the lake does not hold yet: one commit per table.
async fn land(
    lake: &Lake,
    tx: TransactionColumns,
    labels: LabelColumns,
    label_source: &str,
    operation: &str,
    now_us: i64,
) -> Result<IngestSummary> {
    let rows_read = tx.len();
    let existing = existing_ids(lake, TRANSACTIONS.name, &tx.tx_id).await?;
    let tx = retain_rows(tx, |id| !existing.contains(&id));
    let already_present = rows_read - tx.len();
    let existing_labels = existing_labels(lake, &labels.tx_id).await?;
    let labels = retain_labels(labels, |id, f| !existing_labels.contains(&(id, f)));
    let accepted = tx.len();
    let labels_added = labels.len();
    let fraud_labels_added = labels.is_fraud.iter().filter(|f| **f).count();
    let mut transactions_version = None;
    if !tx.is_empty() {
        let batches = tx.into_batches(now_us, 1 << 18)?;
        transactions_version = lake
            .append(&TRANSACTIONS, batches, operation)
            .await?
            .version();
    }
    let mut labels_version = None;
    if !labels.is_empty() {
        let batch = labels.into_batch(label_source)?;
        labels_version = lake
            .append(&LABELS, vec![batch], operation)
            .await?
            .version();
    }
    Ok(IngestSummary {
        file: label_source.to_string(),
        rows_read,
        accepted,
        rejected: 0,
        already_present,
        labels_added,
        fraud_labels_added,
        transactions_version,
        labels_version,
        seconds: 0.0,
    })
}

fn short_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn retain_rows(tx: TransactionColumns, keep: impl Fn(i64) -> bool) -> TransactionColumns {
    let mut out = TransactionColumns::default();
    for i in 0..tx.len() {
        if keep(tx.tx_id[i]) {
            out.tx_id.push(tx.tx_id[i]);
            out.tx_ts_us.push(tx.tx_ts_us[i]);
            out.customer_id.push(tx.customer_id[i]);
            out.terminal_id.push(tx.terminal_id[i]);
            out.amount.push(tx.amount[i]);
        }
    }
    out
}

fn retain_labels(l: LabelColumns, keep: impl Fn(i64, bool) -> bool) -> LabelColumns {
    let mut out = LabelColumns::default();
    for i in 0..l.len() {
        if keep(l.tx_id[i], l.is_fraud[i]) {
            out.tx_id.push(l.tx_id[i]);
            out.is_fraud.push(l.is_fraud[i]);
            out.fraud_scenario.push(l.fraud_scenario[i]);
            out.labeled_at_us.push(l.labeled_at_us[i]);
        }
    }
    out
}

/// `columns` of lake table `table` for the rows matching `filter`; nothing if the table does
/// not exist yet. The dedup lookups below all read the lake this way.
async fn read_where(
    lake: &Lake,
    table: &str,
    filter: Expr,
    columns: &[&str],
) -> Result<Vec<deltalake::arrow::array::RecordBatch>> {
    let Some(t) = lake.load(table).await? else {
        return Ok(Vec::new());
    };
    let ctx = crate::lake::new_session();
    crate::lake::register(&ctx, table, &t).await?;
    let df = ctx
        .table(table)
        .await?
        .filter(filter)?
        .select_columns(columns)?;
    Ok(df.collect().await?)
}

/// `tx_id BETWEEN min(ids) AND max(ids)`: file statistics prune the rest of the table.
fn id_range(ids: &[i64]) -> Option<Expr> {
    let (min, max) = (ids.iter().min()?, ids.iter().max()?);
    Some(
        col("tx_id")
            .gt_eq(lit(*min))
            .and(col("tx_id").lt_eq(lit(*max))),
    )
}

/// tx_ids of `table` within the range of `ids`.
pub async fn existing_ids(lake: &Lake, table: &str, ids: &[i64]) -> Result<HashSet<i64>> {
    let Some(range) = id_range(ids) else {
        return Ok(HashSet::new());
    };
    let mut out = HashSet::new();
    for batch in read_where(lake, table, range, &["tx_id"]).await? {
        out.extend(batch.column(0).as_primitive::<Int64Type>().iter().flatten());
    }
    Ok(out)
}

/// (tx_id, is_fraud) pairs already in `labels` within the range of `ids`.
async fn existing_labels(lake: &Lake, ids: &[i64]) -> Result<HashSet<(i64, bool)>> {
    let Some(range) = id_range(ids) else {
        return Ok(HashSet::new());
    };
    let mut out = HashSet::new();
    for batch in read_where(lake, LABELS.name, range, &["tx_id", "is_fraud"]).await? {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let fraud = batch.column(1).as_boolean();
        for i in 0..batch.num_rows() {
            if ids.is_valid(i) && fraud.is_valid(i) {
                out.insert((ids.value(i), fraud.value(i)));
            }
        }
    }
    Ok(out)
}

/// (row_number, raw_record) of rejections already recorded for `source`.
async fn existing_rejections(lake: &Lake, source: &str) -> Result<HashSet<(i64, String)>> {
    let filter = col("source").eq(lit(source));
    let columns = ["row_number", "raw_record"];
    let mut out = HashSet::new();
    for batch in read_where(lake, TRANSACTIONS_REJECTED.name, filter, &columns).await? {
        let rows = batch.column(0).as_primitive::<Int64Type>();
        let raw = deltalake::arrow::compute::cast(
            batch.column(1),
            &deltalake::arrow::datatypes::DataType::Utf8,
        )?;
        let raw = raw.as_string::<i32>();
        for i in 0..batch.num_rows() {
            out.insert((rows.value(i), raw.value(i).to_string()));
        }
    }
    Ok(out)
}

/// Lands generated transactions and labels (the simulator's output) like an ingest: rows the
/// lake already holds are skipped, so re-running the same seed adds nothing.
pub async fn ingest_generated(
    lake: &Lake,
    tx: TransactionColumns,
    labels: LabelColumns,
    source: &str,
) -> Result<IngestSummary> {
    let started = std::time::Instant::now();
    let now_us = chrono::Utc::now().timestamp_micros();
    let mut summary = land(lake, tx, labels, source, source, now_us).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
