//! `fraudlake ingest`: files into the lake, bad rows quarantined with reasons.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use fraudlake_pipeline::ingest::{ingest_file, IngestOptions, InputFormat, Preset};

use crate::config::Settings;
use crate::output::{print_rows, Format};

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files to ingest (.csv, .parquet, .jsonl).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Known source schema: `handbook` (TRANSACTION_ID, TX_DATETIME, ... TX_FRAUD_SCENARIO).
    #[arg(long)]
    preset: Option<Preset>,
    /// Map a source column to a lake column, e.g. --map amt=amount (repeatable).
    #[arg(long = "map", value_parser = parse_mapping)]
    mappings: Vec<(String, String)>,
    /// Input format when the extension does not tell.
    #[arg(long)]
    format: Option<InputFormat>,
    /// Label source recorded in `labels.source` (default ingest:<file name>).
    #[arg(long)]
    label_source: Option<String>,
    /// Summary format.
    #[arg(long = "output", value_enum, default_value_t)]
    output: Format,
}

fn parse_mapping(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
            Ok((a.trim().to_string(), b.trim().to_string()))
        }
        _ => Err(format!("'{s}' is not SRC=DST")),
    }
}

pub async fn run(args: IngestArgs, settings: &Settings) -> Result<u8> {
    let lake = settings.open_lake()?;
    let opts = IngestOptions {
        format: args.format,
        preset: args.preset,
        mappings: args.mappings,
        label_source: args.label_source,
        progress: settings.progress,
    };
    let mut summaries = Vec::new();
    for file in &args.files {
        let s = ingest_file(&lake, file, &opts).await?;
        tracing::info!(
            file = %s.file, accepted = s.accepted, rejected = s.rejected,
            already_present = s.already_present, seconds = s.seconds, "ingested"
        );
        summaries.push(s);
    }
    print_rows(&summaries, args.output)?;
    Ok(0)
}
