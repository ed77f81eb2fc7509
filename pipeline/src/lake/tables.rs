//! The tables this crate writes (`transactions`, `labels`, `transactions_rejected`: what
//! `simulate` and `ingest` land), and [`TableDef`], the way every crate declares its own
//! tables beside the code that writes them (the registry's in fraudlake-model, `predictions`
//! in fraudlake-serving, ...). SQL sessions find all of them by their Delta logs
//! ([`super::catalog`]), so this crate lists none of the others (save the names of
//! `predictions` and `model_versions`, [`PREDICTIONS_TABLE`] and [`MODEL_VERSIONS_TABLE`],
//! which [`super::evolve`] must know).

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::Result;

/// Microseconds in one day, used to derive the `tx_date` partition from `tx_ts`.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A lake table: its name (folder under the lake root), its Arrow schema and partitioning.
#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: fn() -> SchemaRef,
    pub partition_by: &'static [&'static str],
}

/// `Timestamp(us, UTC)`: the Delta `timestamp` type, what every time column uses.
pub fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn transactions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tx_id", DataType::Int64, false),
        Field::new("tx_ts", utc_micros(), false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("terminal_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("tx_date", DataType::Date32, false),
        Field::new("ingested_at", utc_micros(), false),
    ]))
}

fn labels_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tx_id", DataType::Int64, false),
        Field::new("is_fraud", DataType::Boolean, false),
        Field::new("fraud_scenario", DataType::Int32, true),
        Field::new("labeled_at", utc_micros(), false),
        Field::new("source", DataType::Utf8, false),
        // Provenance (added later: older lakes gain the columns on their next label write,
        // see `Lake::append`; readers never need them).
        Field::new("previous_is_fraud", DataType::Boolean, true),
        Field::new("previous_source", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
    ]))
}

fn rejected_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("row_number", DataType::Int64, false),
        Field::new("raw_record", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("rejected_at", utc_micros(), false),
    ]))
}

/// Card transactions, one row per `tx_id` (unique across the lake), partitioned by day.
pub const TRANSACTIONS: TableDef = TableDef {
    name: "transactions",
    description: "card transactions, unique tx_id, partitioned by tx_date (UTC day of tx_ts)",
    schema: transactions_schema,
    partition_by: &["tx_date"],
};

/// The name of `predictions`, defined in fraudlake-serving (its writer): it gained nullable
/// columns (the rollout's roles and scores), so [`super::evolve`] merges its schema too.
pub const PREDICTIONS_TABLE: &str = "predictions";

/// The name of the registry's `model_versions`, defined in fraudlake-model: it gained a
/// nullable column (`model_family`, issue #18), so [`super::evolve`] merges its schema too.
pub const MODEL_VERSIONS_TABLE: &str = "model_versions";

/// Fraud labels, which arrive separately and later (chargebacks). Which one counts per tx_id
/// is the precedence policy of [`crate::labels`]: the most trusted source, latest within it.
pub const LABELS: TableDef = TableDef {
    name: "labels",
    description: "fraud labels per tx_id with their source and the label they replaced; the most trusted source wins, then the latest",
    schema: labels_schema,
    partition_by: &[],
};

/// Rows that ingestion refused, with the reason: bad input is never silently dropped.
pub const TRANSACTIONS_REJECTED: TableDef = TableDef {
    name: "transactions_rejected",
    description: "input rows refused by ingestion, with the raw record and the reason",
    schema: rejected_schema,
    partition_by: &[],
};

/// Column-wise transactions, the shape both the simulator and the ingester produce.
#[derive(Debug, Default, Clone)]
pub struct TransactionColumns {
    pub tx_id: Vec<i64>,
    pub tx_ts_us: Vec<i64>,
    pub customer_id: Vec<i64>,
    pub terminal_id: Vec<i64>,
    pub amount: Vec<f64>,
}

impl TransactionColumns {
    pub fn len(&self) -> usize {
        self.tx_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx_id.is_empty()
    }

    /// Builds `transactions` batches of at most `chunk` rows, deriving `tx_date` from `tx_ts`.
    pub fn into_batches(self, ingested_at_us: i64, chunk: usize) -> Result<Vec<RecordBatch>> {
        let schema = (TRANSACTIONS.schema)();
        let mut out = Vec::new();
        let n = self.len();
        let chunk = chunk.max(1);
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            let ts = &self.tx_ts_us[start..end];
            let dates: Vec<i32> = ts
                .iter()
                .map(|t| t.div_euclid(MICROS_PER_DAY) as i32)
                .collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(self.tx_id[start..end].to_vec())),
                Arc::new(TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC")),
                Arc::new(Int64Array::from(self.customer_id[start..end].to_vec())),
                Arc::new(Int64Array::from(self.terminal_id[start..end].to_vec())),
                Arc::new(Float64Array::from(self.amount[start..end].to_vec())),
                Arc::new(Date32Array::from(dates)),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![ingested_at_us; end - start])
                        .with_timezone("UTC"),
                ),
            ];
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
            start = end;
        }
        Ok(out)
    }
}

/// Column-wise labels.
#[derive(Debug, Default, Clone)]
pub struct LabelColumns {
    pub tx_id: Vec<i64>,
    pub is_fraud: Vec<bool>,
    pub fraud_scenario: Vec<Option<i32>>,
    pub labeled_at_us: Vec<i64>,
    /// Per-row provenance (the server's labels, one API key each). Empty: every row comes
    /// from `into_batch`'s source with no previous label recorded.
    pub provenance: Vec<Provenance>,
}

/// Where one label came from and what it replaced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Provenance {
    pub source: String,
    /// The label that counted for the tx_id before this one, if any.
    pub previous_is_fraud: Option<bool>,
    pub previous_source: Option<String>,
    /// Why the label does not count (e.g. a more trusted source says otherwise), if so.
    pub note: Option<String>,
}

impl LabelColumns {
    pub fn len(&self) -> usize {
        self.tx_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx_id.is_empty()
    }

    /// Builds one `labels` batch, every row attributed to `source` unless `provenance` says.
    pub fn into_batch(self, source: &str) -> Result<RecordBatch> {
        let n = self.len();
        let provenance = if self.provenance.is_empty() {
            vec![
                Provenance {
                    source: source.to_string(),
                    ..Provenance::default()
                };
                n
            ]
        } else if self.provenance.len() == n {
            self.provenance
        } else {
            return Err(crate::Error::invalid(format!(
                "labels: {n} rows but {} provenance entries",
                self.provenance.len()
            )));
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(self.tx_id)),
            Arc::new(BooleanArray::from(self.is_fraud)),
            Arc::new(Int32Array::from(self.fraud_scenario)),
            Arc::new(TimestampMicrosecondArray::from(self.labeled_at_us).with_timezone("UTC")),
            Arc::new(StringArray::from_iter_values(
                provenance.iter().map(|p| p.source.as_str()),
            )),
            Arc::new(BooleanArray::from(
                provenance
                    .iter()
                    .map(|p| p.previous_is_fraud)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                provenance
                    .iter()
                    .map(|p| p.previous_source.as_deref())
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                provenance
                    .iter()
                    .map(|p| p.note.as_deref())
                    .collect::<Vec<_>>(),
            )),
        ];
        Ok(RecordBatch::try_new((LABELS.schema)(), columns)?)
    }
}

/// One refused input row.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub source: String,
    pub row_number: i64,
    pub raw_record: String,
    pub reason: String,
}

/// Builds one `transactions_rejected` batch.
pub fn rejections_batch(rows: &[Rejection], rejected_at_us: i64) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.source.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.row_number),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.raw_record.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.reason.as_str()),
        )),
        Arc::new(
            TimestampMicrosecondArray::from(vec![rejected_at_us; rows.len()]).with_timezone("UTC"),
        ),
    ];
    Ok(RecordBatch::try_new(
        (TRANSACTIONS_REJECTED.schema)(),
        columns,
    )?)
}
