//! Looking after the lake: what each table holds (`fraudlake tables`), compaction and vacuum.

use deltalake::datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use serde::Serialize;

use super::Lake;
use crate::error::Result;

/// One line of `fraudlake tables`.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub name: String,
    pub version: u64,
    pub rows: u64,
    pub files: usize,
    pub size_bytes: u64,
    pub last_commit: Option<String>,
}

/// Describes every existing table of the lake.
pub async fn describe(lake: &Lake) -> Result<Vec<TableInfo>> {
    let mut out = Vec::new();
    for name in lake.table_names().await? {
        let Some(table) = lake.load(&name).await? else {
            continue;
        };
        let snapshot = table.snapshot()?;
        let mut files = 0usize;
        let mut size = 0u64;
        let mut rows = 0u64;
        let mut rows_known = true;
        for f in snapshot.log_data().iter() {
            files += 1;
            size += f.size().max(0) as u64;
            match f.num_records() {
                Some(n) => rows += n as u64,
                None => rows_known = false,
            }
        }
        if !rows_known {
            // Files written without statistics: count for real.
            let ctx = SessionContext::new();
            super::register(&ctx, &name, &table).await?;
            rows = ctx.table(name.as_str()).await?.count().await? as u64;
        }
        let last_commit: Vec<_> = table.history(Some(1)).try_collect().await?;
        let last_commit = last_commit
            .first()
            .and_then(|c| c.timestamp)
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        out.push(TableInfo {
            name: name.clone(),
            version: table.version().unwrap_or(0),
            rows,
            files,
            size_bytes: size,
            last_commit,
        });
    }
    Ok(out)
}

/// Result of compaction or vacuum on one table.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceReport {
    pub table: String,
    pub files_removed: u64,
    pub files_added: u64,
    pub version: u64,
}

/// Compacts small files of every table (one commit per table that changed).
pub async fn optimize(lake: &Lake) -> Result<Vec<MaintenanceReport>> {
    let mut out = Vec::new();
    for name in lake.table_names().await? {
        let Some(table) = lake.load(&name).await? else {
            continue;
        };
        let (table, metrics) = table
            .optimize()
            .with_commit_properties(super::commit_note("optimize"))
            .await?;
        out.push(MaintenanceReport {
            table: name.clone(),
            files_removed: metrics.num_files_removed,
            files_added: metrics.num_files_added,
            version: table.version().unwrap_or(0),
        });
    }
    Ok(out)
}

/// Deletes files no longer referenced by versions newer than `retain_hours`.
pub async fn vacuum(
    lake: &Lake,
    retain_hours: u64,
    dry_run: bool,
) -> Result<Vec<MaintenanceReport>> {
    let mut out = Vec::new();
    for name in lake.table_names().await? {
        let Some(table) = lake.load(&name).await? else {
            continue;
        };
        let (table, metrics) = table
            .vacuum()
            .with_retention_period(chrono::Duration::hours(retain_hours.min(1_000_000) as i64))
            .with_enforce_retention_duration(false)
            .with_dry_run(dry_run)
            .with_commit_properties(super::commit_note("vacuum"))
            .await?;
        out.push(MaintenanceReport {
            table: name.clone(),
            files_removed: metrics.files_deleted.len() as u64,
            files_added: 0,
            version: table.version().unwrap_or(0),
        });
    }
    Ok(out)
}
