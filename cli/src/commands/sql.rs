//! `fraudlake sql`: read-only DataFusion SQL over every lake table, with time travel.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fraudlake_pipeline::lake::TimeTravel;
use fraudlake_pipeline::sql::{plan_statements, render, write_file};

use crate::config::Settings;
use crate::output::Format;

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query (or use -f).
    query: Option<String>,
    /// Read statements from a .sql file (several statements allowed, `;`-separated).
    #[arg(short = 'f', long = "file", conflicts_with = "query")]
    file: Option<PathBuf>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Write the (last) result to a .parquet or .csv file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Time travel: TABLE=VERSION or TABLE=RFC3339-TIMESTAMP (repeatable).
    #[arg(long = "at", value_parser = parse_at)]
    at: Vec<(String, TimeTravel)>,
}

fn parse_at(s: &str) -> Result<(String, TimeTravel), String> {
    let (table, when) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not TABLE=VERSION or TABLE=TIMESTAMP"))?;
    let at = if let Ok(v) = when.parse::<u64>() {
        TimeTravel::Version(v)
    } else {
        let ts = chrono::DateTime::parse_from_rfc3339(when)
            .map_err(|e| format!("'{when}' is neither a version nor an RFC 3339 timestamp: {e}"))?;
        TimeTravel::Timestamp(ts.with_timezone(&chrono::Utc))
    };
    Ok((table.to_string(), at))
}

pub async fn run(args: SqlArgs, settings: &Settings) -> Result<u8> {
    let sql = match (&args.query, &args.file) {
        (Some(q), None) => q.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        _ => return Err(crate::bad_input("give a query or -f FILE.sql")),
    };
    let lake = settings.open_lake()?;
    // Every lake table and the `tx_labeled` view the feature SQL reads.
    let ctx = fraudlake_features::session(&lake, &args.at).await?;
    let frames = plan_statements(&ctx, &sql).await?;
    let last = frames.len() - 1;
    for (i, df) in frames.into_iter().enumerate() {
        if let (Some(out), true) = (&args.out, i == last) {
            let rows = write_file(df, out).await?;
            eprintln!("wrote {rows} rows to {}", out.display());
            continue;
        }
        let batches = df.collect().await?;
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        render(&batches, args.format.into(), &mut lock)?;
    }
    Ok(0)
}
