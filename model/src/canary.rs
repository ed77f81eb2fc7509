//! The input of the canary (or shadow) analysis, read from the lake (docs/rollout.md section
//! 6): the `predictions` rows the candidate scored since its rollout began, joined with the
//! label that counts (the label policy's view, as training reads labels) and with
//! `transactions` for the customer. Only transactions whose label has arrived are rows; the
//! pure [`crate::rollout::analyze`] takes them.
//!
//! Why its own module: the statistics stay pure and testable on hand-made rows, and this is
//! the one place that knows the column names the server writes (`role`, `champion_score`,
//! `canary_version`, `canary_score`, `shadow_version`, `shadow_score`). A lake whose
//! `predictions` was written before those columns existed is not an error: it has no rollout
//! data, and the analysis says so.

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::datafusion::prelude::SessionContext;
use fraudlake_pipeline::columns;
use fraudlake_pipeline::labels::LabelPolicy;
use fraudlake_pipeline::lake::Lake;

use crate::error::{Error, Result};
use crate::rollout::{PairedRow, Role};

/// The table the server writes its scores to (`fraudlake_serving`'s `PREDICTIONS`).
pub const PREDICTIONS: &str = "predictions";

/// What the lake holds for one rollout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairedInput {
    /// Why the lake cannot say anything (no `predictions` table, or one without the rollout
    /// columns), if so.
    pub missing: Option<String>,
    /// Transactions the candidate scored in the period, labeled or not.
    pub scored: usize,
    /// The labeled ones, as the analysis takes them.
    pub rows: Vec<PairedRow>,
}

/// The candidate's version and score columns of `role` (a shadow or a canary).
fn candidate_columns(role: Role) -> Result<(&'static str, &'static str)> {
    match role {
        Role::Canary => Ok(("canary_version", "canary_score")),
        Role::Shadow => Ok(("shadow_version", "shadow_score")),
        Role::Champion => Err(Error::invalid(
            "the champion is not judged against itself: analyse a canary or a shadow",
        )),
    }
}

/// The rows of `version` as `role` scored at or after `since` (wall-clock `scored_at`, the
/// clock of the audit rows), with their labels and customers.
pub async fn paired_rows(
    lake: &Lake,
    role: Role,
    version: i64,
    since: DateTime<Utc>,
    labels: &LabelPolicy,
) -> Result<PairedInput> {
    let (version_col, score_col) = candidate_columns(role)?;
    let ctx = lake.session(&[]).await?;
    if !ctx.table_exist(PREDICTIONS)? {
        return Ok(missing(
            "no rollout data: the lake has no predictions table (nothing was served yet)"
                .to_string(),
        ));
    }
    let absent = absent_columns(&ctx, &["role", "champion_score", version_col, score_col]).await?;
    if !absent.is_empty() {
        return Ok(missing(format!(
            "no rollout data: predictions has no {} column (written by a server without \
             rollout support)",
            absent.join(", ")
        )));
    }
    let filter = format!(
        "p.{version_col} = {version} AND CAST(p.scored_at AS BIGINT) >= {since} \
         AND p.champion_score IS NOT NULL AND p.{score_col} IS NOT NULL",
        since = since.timestamp_micros()
    );
    let scored = count(&ctx, &filter).await?;
    if scored == 0 || !ctx.table_exist("labels")? || !ctx.table_exist("transactions")? {
        return Ok(PairedInput {
            missing: None,
            scored,
            rows: Vec::new(),
        });
    }
    // Who decided: a canary's own customers; a shadow never decides.
    let decided = match role {
        Role::Canary => "COALESCE(p.role = 'canary', false)",
        _ => "false",
    };
    let sql = format!(
        "SELECT t.customer_id, CAST(p.tx_date AS INT) AS day, l.is_fraud, p.champion_score, \
           p.{score_col} AS candidate_score, {decided} AS candidate_decided, \
           COALESCE(p.decision = 'decline', false) AS declined \
         FROM {PREDICTIONS} p \
         JOIN ({labels}) l ON p.tx_id = l.tx_id \
         JOIN transactions t ON p.tx_id = t.tx_id \
         WHERE {filter}",
        labels = labels.effective_sql(),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut rows = Vec::new();
    for b in &batches {
        push_rows(&mut rows, b)?;
    }
    Ok(PairedInput {
        missing: None,
        scored,
        rows,
    })
}

fn missing(why: String) -> PairedInput {
    PairedInput {
        missing: Some(why),
        ..PairedInput::default()
    }
}

/// Which of `wanted` the `predictions` table lacks (a lake written before rollouts).
async fn absent_columns(
    ctx: &SessionContext,
    wanted: &[&'static str],
) -> Result<Vec<&'static str>> {
    let df = ctx.table(PREDICTIONS).await?;
    let schema = df.schema();
    Ok(wanted
        .iter()
        .copied()
        .filter(|c| !schema.has_column_with_unqualified_name(c))
        .collect())
}

async fn count(ctx: &SessionContext, filter: &str) -> Result<usize> {
    let batches = ctx
        .sql(&format!(
            "SELECT COUNT(*) AS n FROM {PREDICTIONS} p WHERE {filter}"
        ))
        .await?
        .collect()
        .await?;
    let mut n = 0i64;
    for b in &batches {
        let col = columns::i64s(b.column(0))?;
        n += col.iter().flatten().sum::<i64>();
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Appends one result batch (the column order of [`paired_rows`]'s query).
fn push_rows(rows: &mut Vec<PairedRow>, b: &RecordBatch) -> Result<()> {
    let customer = columns::i64s(b.column(0))?;
    let day = columns::i32s(b.column(1))?;
    let fraud = columns::bools(b.column(2))?;
    let champion = columns::f64s(b.column(3))?;
    let candidate = columns::f64s(b.column(4))?;
    let decided = columns::bools(b.column(5))?;
    let declined = columns::bools(b.column(6))?;
    let flag = |a: &deltalake::arrow::array::BooleanArray, r: usize| !a.is_null(r) && a.value(r);
    for r in 0..b.num_rows() {
        rows.push(PairedRow {
            customer_id: customer.value(r),
            day: day.value(r),
            is_fraud: flag(&fraud, r),
            champion_score: champion.value(r),
            candidate_score: candidate.value(r),
            candidate_decided: flag(&decided, r),
            declined: flag(&declined, r),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };
    use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use fraudlake_pipeline::lake::tables::{utc_micros, LABELS, TRANSACTIONS};
    use fraudlake_pipeline::lake::TableDef;

    use super::*;

    /// `predictions` as the server writes it before rollouts (the columns readers use).
    fn old_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("tx_id", DataType::Int64, false),
            Field::new("scored_at", utc_micros(), false),
            Field::new("model_version", DataType::Int64, false),
            Field::new("risk_score", DataType::Float64, false),
            Field::new("decision", DataType::Utf8, false),
            Field::new("tx_date", DataType::Date32, false),
        ]))
    }

    /// ... and with the rollout columns (docs/rollout.md section 4).
    fn rollout_schema() -> SchemaRef {
        let mut fields: Vec<Field> = old_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("role", DataType::Utf8, true));
        for role in ["champion", "canary", "shadow"] {
            fields.push(Field::new(format!("{role}_version"), DataType::Int64, true));
            fields.push(Field::new(format!("{role}_score"), DataType::Float64, true));
        }
        Arc::new(Schema::new(fields))
    }

    const OLD: TableDef = TableDef {
        name: PREDICTIONS,
        description: "test predictions, before rollouts",
        schema: old_schema,
        partition_by: &["tx_date"],
    };

    const NEW: TableDef = TableDef {
        name: PREDICTIONS,
        description: "test predictions with rollout columns",
        schema: rollout_schema,
        partition_by: &["tx_date"],
    };

    const NOW_US: i64 = 1_700_000_000_000_000;
    const DAY: i32 = 17_700;

    /// Transactions 1..=8 of customers 10 + id % 4 on one day; every even one fraudulent.
    async fn transactions_and_labels(lake: &Lake) {
        let ids: Vec<i64> = (1..=8).collect();
        let n = ids.len();
        let tx: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(TimestampMicrosecondArray::from(vec![NOW_US; n]).with_timezone("UTC")),
            Arc::new(Int64Array::from(
                ids.iter().map(|i| 10 + i % 4).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(vec![5; n])),
            Arc::new(Float64Array::from(vec![12.5; n])),
            Arc::new(Date32Array::from(vec![DAY; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![NOW_US; n]).with_timezone("UTC")),
        ];
        let batch = RecordBatch::try_new((TRANSACTIONS.schema)(), tx).expect("transactions");
        lake.append(&TRANSACTIONS, vec![batch], "test")
            .await
            .expect("append transactions");
        // Transaction 8 has no label yet.
        let labeled = &ids[..7];
        let m = labeled.len();
        let labels: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(labeled.to_vec())),
            Arc::new(BooleanArray::from(
                labeled.iter().map(|i| i % 2 == 0).collect::<Vec<_>>(),
            )),
            Arc::new(deltalake::arrow::array::Int32Array::from(vec![
                None::<i32>;
                m
            ])),
            Arc::new(TimestampMicrosecondArray::from(vec![NOW_US; m]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec!["simulator"; m])),
            Arc::new(BooleanArray::from(vec![None::<bool>; m])),
            Arc::new(StringArray::from(vec![None::<&str>; m])),
            Arc::new(StringArray::from(vec![None::<&str>; m])),
        ];
        let batch = RecordBatch::try_new((LABELS.schema)(), labels).expect("labels");
        lake.append(&LABELS, vec![batch], "test")
            .await
            .expect("append labels");
    }

    /// Rows 1..=8 scored at `NOW_US + id` seconds: ids 1..=6 by canary 2 (odd ids decided by
    /// it), 7..=8 by canary 3; shadow 4 on every row.
    fn rollout_batch() -> RecordBatch {
        let ids: Vec<i64> = (1..=8).collect();
        let n = ids.len();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(
                TimestampMicrosecondArray::from(
                    ids.iter()
                        .map(|i| NOW_US + i * 1_000_000)
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from(vec![1; n])),
            Arc::new(Float64Array::from(vec![0.5; n])),
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| if i % 3 == 0 { "decline" } else { "approve" })
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(vec![DAY; n])),
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| if i % 2 == 1 { "canary" } else { "champion" })
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(vec![1; n])),
            Arc::new(Float64Array::from(
                ids.iter().map(|&i| i as f64 / 10.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                ids.iter()
                    .map(|&i| if i <= 6 { 2 } else { 3 })
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                ids.iter()
                    .map(|&i| 1.0 - i as f64 / 10.0)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(vec![4; n])),
            Arc::new(Float64Array::from(vec![0.25; n])),
        ];
        RecordBatch::try_new(rollout_schema(), cols).expect("predictions")
    }

    fn at(us: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(us).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_lake_without_rollout_columns_has_no_rollout_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).expect("lake");
        let policy = LabelPolicy::default();
        let none = paired_rows(&lake, Role::Canary, 2, at(0), &policy)
            .await
            .expect("no table is no data");
        assert!(
            none.missing
                .as_deref()
                .is_some_and(|m| m.contains("no predictions table")),
            "{none:?}"
        );
        let old = RecordBatch::try_new(
            old_schema(),
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(TimestampMicrosecondArray::from(vec![NOW_US]).with_timezone("UTC")),
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(Float64Array::from(vec![0.5])),
                Arc::new(StringArray::from(vec!["approve"])),
                Arc::new(Date32Array::from(vec![DAY])),
            ],
        )
        .expect("batch");
        lake.append(&OLD, vec![old], "test").await.expect("append");
        let old = paired_rows(&lake, Role::Shadow, 2, at(0), &policy)
            .await
            .expect("old columns are no data");
        let why = old.missing.expect("missing");
        assert!(why.starts_with("no rollout data"), "{why}");
        assert!(why.contains("shadow_version"), "{why}");
        assert_eq!((old.scored, old.rows.len()), (0, 0));
        assert!(paired_rows(&lake, Role::Champion, 1, at(0), &policy)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn rows_are_the_labeled_ones_of_the_version_since_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).expect("lake");
        transactions_and_labels(&lake).await;
        lake.append(&NEW, vec![rollout_batch()], "test")
            .await
            .expect("append predictions");
        let policy = LabelPolicy::default();

        // Canary 2 from its start: ids 1..=6, all labeled.
        let got = paired_rows(&lake, Role::Canary, 2, at(NOW_US), &policy)
            .await
            .expect("rows");
        assert_eq!((got.missing.as_deref(), got.scored), (None, 6));
        let mut rows = got.rows;
        rows.sort_by(|a, b| a.champion_score.total_cmp(&b.champion_score));
        assert_eq!(rows.len(), 6);
        let first = rows[0];
        assert_eq!(
            (first.customer_id, first.day, first.is_fraud),
            (11, DAY, false)
        );
        assert_eq!((first.champion_score, first.candidate_score), (0.1, 0.9));
        // Id 1 is odd (the canary decided), id 3 was declined.
        assert!(first.candidate_decided && !first.declined);
        assert!(rows[2].declined && rows[2].candidate_decided);
        assert!(rows[1].is_fraud && !rows[1].candidate_decided);

        // Scored before the start: not rows (ids 1..=3 were scored before NOW + 4 s).
        let later = paired_rows(&lake, Role::Canary, 2, at(NOW_US + 4_000_000), &policy)
            .await
            .expect("rows");
        assert_eq!((later.scored, later.rows.len()), (3, 3));

        // Canary 3: ids 7 and 8, only 7 labeled.
        let three = paired_rows(&lake, Role::Canary, 3, at(NOW_US), &policy)
            .await
            .expect("rows");
        assert_eq!((three.scored, three.rows.len()), (2, 1));

        // Shadow 4 on every row; a shadow never decides.
        let shadow = paired_rows(&lake, Role::Shadow, 4, at(NOW_US), &policy)
            .await
            .expect("rows");
        assert_eq!((shadow.scored, shadow.rows.len()), (8, 7));
        assert!(shadow
            .rows
            .iter()
            .all(|r| !r.candidate_decided && r.candidate_score == 0.25));
    }
}
