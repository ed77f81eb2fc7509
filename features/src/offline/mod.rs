//! The offline engine: DataFusion runs the feature SQL over the lake and writes the
//! `features` table. Point-in-time correct by construction (every window ends at the
//! transaction, or a label delay before it). A day range reads only the lookback it needs
//! and replaces exactly those days in one Delta commit, so re-running is idempotent.
//! [`range_window`] is its operator for the RANGE window aggregates feature SQL is made of.

pub mod range_window;

use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{DataType, Date32Type, Field};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::StructType;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use fraudlake_pipeline::lake::{commit_note, register, Lake};
use fraudlake_pipeline::{Error, Result};
use serde::Serialize;

use crate::compile::FeaturePlan;
use crate::definition::{view_sql, VIEW_NAME};

/// The table the offline build writes.
pub const FEATURES_TABLE: &str = "features";

/// What one build did.
#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    pub from: String,
    pub to: String,
    pub rows: usize,
    pub feature_set: String,
    pub version: u64,
    pub full_rebuild: bool,
    pub seconds: f64,
}

/// Set to run the feature SQL on DataFusion's stock window operator instead of
/// [`RangeWindowExec`](range_window::RangeWindowExec) (for comparison).
pub const STOCK_WINDOWS_ENV: &str = "FRAUDLAKE_STOCK_WINDOWS";

/// The offline engine's session: fraudlake's defaults plus the RANGE window operator.
pub fn session() -> deltalake::datafusion::prelude::SessionContext {
    let base = fraudlake_pipeline::lake::new_session();
    if std::env::var_os(STOCK_WINDOWS_ENV).is_some() {
        return base;
    }
    let state =
        deltalake::datafusion::execution::SessionStateBuilder::new_from_existing(base.state())
            .with_physical_optimizer_rule(Arc::new(range_window::RangeWindowRule))
            .build();
    deltalake::datafusion::prelude::SessionContext::new_with_state(state)
}

/// First and last `tx_date` in `transactions`.
pub async fn transaction_days(lake: &Lake) -> Result<Option<(NaiveDate, NaiveDate)>> {
    let Some(t) = lake.load("transactions").await? else {
        return Ok(None);
    };
    let ctx = fraudlake_pipeline::lake::new_session();
    register(&ctx, "transactions", &t).await?;
    let batches = ctx
        .sql("SELECT MIN(tx_date), MAX(tx_date) FROM transactions")
        .await?
        .collect()
        .await?;
    let Some(b) = batches.first() else {
        return Ok(None);
    };
    let lo = b.column(0).as_primitive::<Date32Type>();
    let hi = b.column(1).as_primitive::<Date32Type>();
    if lo.is_null(0) || hi.is_null(0) {
        return Ok(None);
    }
    Ok(lo.value_as_date(0).zip(hi.value_as_date(0)))
}

/// The feature_set hash the `features` table was built with, if it exists and is uniform.
async fn existing_feature_set(lake: &Lake) -> Result<Option<String>> {
    let Some(t) = lake.load(FEATURES_TABLE).await? else {
        return Ok(None);
    };
    let ctx = fraudlake_pipeline::lake::new_session();
    register(&ctx, FEATURES_TABLE, &t).await?;
    let batches = ctx
        .sql("SELECT DISTINCT feature_set FROM features LIMIT 2")
        .await?
        .collect()
        .await?;
    let mut sets = Vec::new();
    for b in &batches {
        let c = deltalake::arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let c = c.as_string::<i32>();
        sets.extend(c.iter().flatten().map(String::from));
    }
    Ok(if sets.len() == 1 { sets.pop() } else { None })
}

/// Builds features for `[from, to]` (default: every day in the lake).
pub async fn build(
    lake: &Lake,
    plan: &FeaturePlan,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<BuildSummary> {
    let started = std::time::Instant::now();
    let Some((first, last)) = transaction_days(lake).await? else {
        return Err(Error::invalid("the lake has no transactions yet: run `fraudlake simulate` or `fraudlake ingest` first"));
    };
    let existing = existing_feature_set(lake).await?;
    let same_set = existing.as_deref() == Some(plan.feature_set.sha256.as_str());
    // A partial build of a different feature set would mix two definitions in one table.
    let full_rebuild = (from.is_none() && to.is_none()) || !same_set;
    let (from, to) = if full_rebuild {
        (first, last)
    } else {
        (from.unwrap_or(first), to.unwrap_or(last))
    };
    if from > to {
        return Err(Error::invalid(format!("--from {from} is after --to {to}")));
    }
    let lookback_from = from - Duration::days(plan.lookback_days() + 1);

    let ctx = session();
    for name in ["transactions", "labels"] {
        match lake.load(name).await? {
            Some(t) => register(&ctx, name, &t).await?,
            None if name == "labels" => {
                let empty = deltalake::datafusion::datasource::MemTable::try_new(
                    (fraudlake_pipeline::lake::tables::LABELS.schema)(),
                    vec![vec![]],
                )?;
                ctx.register_table("labels", Arc::new(empty))?;
            }
            None => unreachable_table(name)?,
        }
    }
    let filter = format!("WHERE t.tx_date >= DATE '{lookback_from}' AND t.tx_date <= DATE '{to}'");
    let view = ctx.sql(&view_sql(&filter)).await?.into_view();
    ctx.register_table(VIEW_NAME, view)?;

    // Wrap the feature SQL in SQL (not DataFrame::with_column, which re-plans the window
    // functions): add the feature-set hash and the partition day, keep the days asked for.
    let inner = plan.feature_set.sql.trim().trim_end_matches(';');
    let wrapped = format!(
        "SELECT *, '{hash}' AS feature_set, CAST(tx_ts AS DATE) AS tx_date FROM ({inner}) \
         WHERE tx_ts >= TIMESTAMP '{from} 00:00:00Z' AND tx_ts < TIMESTAMP '{end} 00:00:00Z'",
        hash = plan.feature_set.sha256,
        end = to + Duration::days(1),
    );
    let df = ctx
        .sql(&wrapped)
        .await
        .map_err(|e| Error::invalid(format!("{}: {e}", plan.feature_set.path.display())))?;
    let batches = df.collect().await?;
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    tracing::info!(
        rows,
        seconds = started.elapsed().as_secs_f64(),
        "feature SQL evaluated"
    );

    let table = match lake.load(FEATURES_TABLE).await? {
        Some(t) => t,
        None => {
            let schema = batches
                .first()
                .map(|b| b.schema())
                .ok_or_else(|| Error::invalid("the feature SQL produced no rows and no schema"))?;
            // Delta columns are nullable here: SQL results carry no NOT NULL guarantee we keep.
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            let arrow = deltalake::arrow::datatypes::Schema::new(fields);
            let _: StructType = (&arrow).try_into_kernel()?;
            lake.create(
                FEATURES_TABLE,
                &arrow,
                &["tx_date"],
                "features built by the offline engine from the feature SQL",
            )
            .await?
        }
    };
    let mut write = table
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_partition_columns(["tx_date"])
        .with_commit_properties(commit_note("features build"))
        .with_writer_properties(writer_properties());
    if full_rebuild {
        write = write.with_schema_mode(SchemaMode::Overwrite);
    } else {
        write = write.with_replace_where(format!("tx_date >= '{from}' AND tx_date <= '{to}'"));
    }
    let table = write.await?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "features committed"
    );
    Ok(BuildSummary {
        from: from.to_string(),
        to: to.to_string(),
        rows,
        feature_set: plan.feature_set.sha256.clone(),
        version: table.version().unwrap_or(0),
        full_rebuild,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Parquet settings for the features table: feature columns are mostly distinct floats, so
/// dictionary encoding only costs time; LZ4 is the cheapest compression to write.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_compression(Compression::LZ4_RAW)
        .build()
}

fn unreachable_table(name: &str) -> Result<()> {
    Err(Error::invalid(format!("the lake has no '{name}' table")))
}
