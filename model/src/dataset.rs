//! Training and test rows, read with DataFusion SQL from the lake: the `features` table joined
//! with the label that counts for each transaction under the label precedence policy
//! (`fraudlake_pipeline::labels`: the most trusted source, the latest within it). A
//! [`Snapshot`] pins the Delta versions it read, so a model's lineage names exactly the data
//! that produced it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use fraudlake_features::offline::FEATURES_TABLE;
use fraudlake_pipeline::labels::LabelPolicy;
use fraudlake_pipeline::lake::{register, tables, Lake};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use fraudlake_pipeline::columns;

/// One table as read: its name and Delta version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableVersion {
    pub table: String,
    pub version: i64,
}

/// Rows with features (row-major, model column order), labels and the keys evaluation needs.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub feature_names: Vec<String>,
    pub values: Vec<f64>,
    pub labels: Vec<bool>,
    pub tx_id: Vec<i64>,
    pub customer_id: Vec<i64>,
    /// Days since 1970-01-01.
    pub day: Vec<i32>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn frauds(&self) -> usize {
        self.labels.iter().filter(|&&l| l).count()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        let w = self.feature_names.len();
        &self.values[i * w..(i + 1) * w]
    }

    /// Keeps the rows where `keep` is true.
    pub fn filter(&self, keep: &[bool]) -> Rows {
        let w = self.feature_names.len();
        let mut out = Rows {
            feature_names: self.feature_names.clone(),
            ..Rows::default()
        };
        for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            out.values
                .extend_from_slice(&self.values[i * w..(i + 1) * w]);
            out.labels.push(self.labels[i]);
            out.tx_id.push(self.tx_id[i]);
            out.customer_id.push(self.customer_id[i]);
            out.day.push(self.day[i]);
        }
        out
    }

    /// Features as f32 (libxgboost's input type) and labels as 0/1.
    pub fn matrix(&self) -> crate::booster::Matrix {
        crate::booster::Matrix {
            num_features: self.feature_names.len(),
            values: self.values.iter().map(|&v| v as f32).collect(),
            labels: self
                .labels
                .iter()
                .map(|&l| f32::from(u8::from(l)))
                .collect(),
        }
    }
}

/// The lake's `features` and `labels` tables at fixed versions.
pub struct Snapshot {
    ctx: SessionContext,
    pub tables: Vec<TableVersion>,
    /// The feature-set hash(es) present in `features`.
    pub feature_sets: Vec<String>,
    /// Which label counts per transaction.
    policy: LabelPolicy,
}

/// Label rows that a more trusted source overrode (they said the opposite), per pair of
/// sources: shown in the model card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelOverride {
    /// The source whose labels did not count (e.g. `api:1f2e3d4c5b6a7980`).
    pub source: String,
    /// The source whose label counted instead (e.g. `ingest:chargebacks.csv`).
    pub kept: String,
    pub labels: i64,
}

impl Snapshot {
    /// Pins `features` and `labels` at their current versions (or the versions in `at`).
    pub async fn open(lake: &Lake, at: &HashMap<String, i64>) -> Result<Snapshot> {
        let ctx = fraudlake_pipeline::lake::new_session();
        let mut versions = Vec::new();
        for name in [FEATURES_TABLE, tables::LABELS.name] {
            let table = match at.get(name) {
                Some(&v) => Some(
                    lake.load_at(
                        name,
                        &fraudlake_pipeline::lake::TimeTravel::Version(v as u64),
                    )
                    .await?,
                ),
                None => lake.load(name).await?,
            };
            match table {
                Some(t) => {
                    versions.push(TableVersion {
                        table: name.to_string(),
                        version: t.version().map_or(-1, |v| v as i64),
                    });
                    register(&ctx, name, &t).await?;
                }
                None if name == FEATURES_TABLE => {
                    return Err(Error::invalid(
                        "the lake has no features table: run `fraudlake features build` first",
                    ))
                }
                None => {
                    let empty = MemTable::try_new((tables::LABELS.schema)(), vec![vec![]])?;
                    ctx.register_table(name, Arc::new(empty))?;
                }
            }
        }
        let batches = ctx
            .sql("SELECT DISTINCT feature_set FROM features")
            .await?
            .collect()
            .await?;
        let mut feature_sets = Vec::new();
        for b in &batches {
            let col = columns::utf8(b.column(0))?;
            feature_sets.extend(col.iter().flatten().map(str::to_string));
        }
        Ok(Snapshot {
            ctx,
            tables: versions,
            feature_sets,
            policy: LabelPolicy::default(),
        })
    }

    /// Reads labels by `policy` instead of the default precedence.
    pub fn with_policy(mut self, policy: LabelPolicy) -> Snapshot {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> &LabelPolicy {
        &self.policy
    }

    /// Label rows of the snapshot that did not count because a more trusted source said the
    /// opposite, grouped by (source, source kept), most first.
    pub async fn overridden_labels(&self) -> Result<Vec<LabelOverride>> {
        let batches = self
            .ctx
            .sql(&self.policy.overridden_sql())
            .await?
            .collect()
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let (source, kept) = (columns::utf8(b.column(0))?, columns::utf8(b.column(1))?);
            let n = columns::i64s(b.column(2))?;
            for i in 0..b.num_rows() {
                out.push(LabelOverride {
                    source: source.value(i).to_string(),
                    kept: kept.value(i).to_string(),
                    labels: n.value(i),
                });
            }
        }
        Ok(out)
    }

    /// First and last day in `features`.
    pub async fn day_range(&self) -> Result<Option<(NaiveDate, NaiveDate)>> {
        let batches = self
            .ctx
            .sql("SELECT CAST(MIN(tx_date) AS INT), CAST(MAX(tx_date) AS INT) FROM features")
            .await?
            .collect()
            .await?;
        let Some(b) = batches.first().filter(|b| b.num_rows() > 0) else {
            return Ok(None);
        };
        let (lo, hi) = (columns::i32s(b.column(0))?, columns::i32s(b.column(1))?);
        if lo.is_null(0) || hi.is_null(0) {
            return Ok(None);
        }
        let epoch = chrono::DateTime::UNIX_EPOCH.date_naive();
        Ok(Some((
            epoch + chrono::Duration::days(i64::from(lo.value(0))),
            epoch + chrono::Duration::days(i64::from(hi.value(0))),
        )))
    }

    /// Fails unless `features` was built from the feature set with hash `sha256`.
    pub fn require_feature_set(&self, sha256: &str) -> Result<()> {
        if self.feature_sets.iter().any(|s| s == sha256) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "the features table was built from feature set {} but the model needs {}: run \
             `fraudlake features build` with that feature SQL",
            self.feature_sets
                .iter()
                .map(|s| &s[..12.min(s.len())])
                .collect::<Vec<_>>()
                .join(", "),
            &sha256[..12.min(sha256.len())]
        )))
    }

    /// Rows of days `[from, to]` in time order, with `names` as the feature columns.
    pub async fn rows(
        &self,
        names: &[String],
        from: NaiveDate,
        to: NaiveDate,
        feature_set: &str,
    ) -> Result<Rows> {
        self.select(
            names,
            &format!("f.tx_date >= DATE '{from}' AND f.tx_date <= DATE '{to}'"),
            feature_set,
        )
        .await
    }

    /// The rows of the given transactions (for explanations).
    pub async fn rows_of(
        &self,
        names: &[String],
        tx_ids: &[i64],
        feature_set: &str,
    ) -> Result<Rows> {
        if tx_ids.is_empty() {
            return Ok(Rows {
                feature_names: names.to_vec(),
                ..Rows::default()
            });
        }
        let list: Vec<String> = tx_ids.iter().map(i64::to_string).collect();
        self.select(
            names,
            &format!("f.tx_id IN ({})", list.join(", ")),
            feature_set,
        )
        .await
    }

    async fn select(&self, names: &[String], filter: &str, feature_set: &str) -> Result<Rows> {
        let columns: Vec<String> = names
            .iter()
            .map(|n| format!("CAST(f.\"{}\" AS DOUBLE)", n.replace('"', "\"\"")))
            .collect();
        let sql = format!(
            "SELECT f.tx_id, f.customer_id, CAST(f.tx_date AS INT) AS day, \
               COALESCE(l.is_fraud, false) AS is_fraud, {cols} \
             FROM features f LEFT JOIN ({labels}) l ON f.tx_id = l.tx_id \
             WHERE {filter} AND f.feature_set = '{feature_set}' \
             ORDER BY f.tx_ts, f.tx_id",
            cols = columns.join(", "),
            feature_set = feature_set.replace('\'', "''"),
            labels = self.policy.effective_sql(),
        );
        let batches = self.ctx.sql(&sql).await?.collect().await?;
        let mut rows = Rows {
            feature_names: names.to_vec(),
            ..Rows::default()
        };
        for b in &batches {
            append(&mut rows, b, names.len())?;
        }
        Ok(rows)
    }

    /// The numeric and boolean columns of `features` that are neither keys nor bookkeeping,
    /// with their Arrow types, in table order: what drift is computed on, and how Evidently
    /// would classify each column (its rules depend on the storage type).
    pub async fn feature_column_types(
        &self,
    ) -> Result<Vec<(String, deltalake::arrow::datatypes::DataType)>> {
        let df = self.ctx.sql("SELECT * FROM features LIMIT 0").await?;
        const NOT_FEATURES: &[&str] = &[
            "tx_id",
            "tx_ts",
            "customer_id",
            "terminal_id",
            "tx_date",
            "feature_set",
            "is_fraud",
            "built_at",
        ];
        Ok(df
            .schema()
            .fields()
            .iter()
            .filter(|f| {
                (f.data_type().is_numeric()
                    || *f.data_type() == deltalake::arrow::datatypes::DataType::Boolean)
                    && !NOT_FEATURES.contains(&f.name().as_str())
            })
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect())
    }

    /// The labels that have arrived for the rows of days `[from, to]` (unlabeled rows are
    /// left out, unlike [`Snapshot::rows`], which counts them as genuine): for target drift.
    pub async fn arrived_labels(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        feature_set: &str,
    ) -> Result<Vec<bool>> {
        let sql = format!(
            "SELECT l.is_fraud FROM features f JOIN ({labels}) l ON f.tx_id = l.tx_id \
             WHERE f.tx_date >= DATE '{from}' AND f.tx_date <= DATE '{to}' \
             AND f.feature_set = '{feature_set}'",
            feature_set = feature_set.replace('\'', "''"),
            labels = self.policy.effective_sql(),
        );
        let batches = self.ctx.sql(&sql).await?.collect().await?;
        let mut out = Vec::new();
        for b in &batches {
            let col = columns::bools(b.column(0))?;
            out.extend(
                (0..b.num_rows())
                    .filter(|&i| !col.is_null(i))
                    .map(|i| col.value(i)),
            );
        }
        Ok(out)
    }

    /// The first day (days since epoch) each card had a fraud on, among days `[from, to]`.
    pub async fn first_fraud_day(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<HashMap<i64, i32>> {
        let sql = format!(
            "SELECT f.customer_id, MIN(CAST(f.tx_date AS INT)) \
             FROM features f JOIN ({labels}) l ON f.tx_id = l.tx_id \
             WHERE l.is_fraud AND f.tx_date >= DATE '{from}' AND f.tx_date <= DATE '{to}' \
             GROUP BY f.customer_id",
            labels = self.policy.effective_sql(),
        );
        let batches = self.ctx.sql(&sql).await?.collect().await?;
        let mut out = HashMap::new();
        for b in &batches {
            let cards = columns::i64s(b.column(0))?;
            let days = columns::i32s(b.column(1))?;
            for i in 0..b.num_rows() {
                out.insert(cards.value(i), days.value(i));
            }
        }
        Ok(out)
    }
}

fn append(rows: &mut Rows, b: &RecordBatch, width: usize) -> Result<()> {
    let tx = columns::i64s(b.column(0))?;
    let cust = columns::i64s(b.column(1))?;
    let day = columns::i32s(b.column(2))?;
    let label = columns::bools(b.column(3))?;
    let feats = (0..width)
        .map(|j| columns::f64s(b.column(4 + j)))
        .collect::<fraudlake_pipeline::Result<Vec<_>>>()?;
    for i in 0..b.num_rows() {
        if tx.is_null(i) || cust.is_null(i) || day.is_null(i) {
            return Err(Error::invalid(
                "the features table has a row without tx_id, customer_id or tx_date",
            ));
        }
        rows.tx_id.push(tx.value(i));
        rows.customer_id.push(cust.value(i));
        rows.day.push(day.value(i));
        rows.labels.push(!label.is_null(i) && label.value(i));
        for f in &feats {
            rows.values
                .push(if f.is_null(i) { f64::NAN } else { f.value(i) });
        }
    }
    Ok(())
}
