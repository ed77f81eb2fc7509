//! `fraudlake features build|show|parity`: the feature set as both engines see it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use fraudlake_features::{compile, offline, parity, FeatureSet};

use crate::config::Settings;
use crate::exit;
use crate::output::{print_rows, Format};

#[derive(Debug, Args)]
pub struct SqlPath {
    /// The feature SQL (default sql/features.sql, env FRAUDLAKE_FEATURES_SQL).
    #[arg(long = "sql")]
    sql: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// Run the feature SQL over the lake (DataFusion) into the `features` table.
    Build {
        #[command(flatten)]
        sql: SqlPath,
        /// First day to (re)build, YYYY-MM-DD (default: the first day in the lake).
        #[arg(long)]
        from: Option<NaiveDate>,
        /// Last day to (re)build (default: the last day in the lake).
        #[arg(long)]
        to: Option<NaiveDate>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print the feature set as the online engine understood it: each feature's entity
    /// columns, frame (window, delay) and online cost (state per entity, work per transaction).
    Show {
        #[command(flatten)]
        sql: SqlPath,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Replay the lake through the online engine and compare with the `features` table.
    Parity {
        #[command(flatten)]
        sql: SqlPath,
        /// Compare about this many rows instead of all.
        #[arg(long)]
        sample: Option<usize>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

fn load(settings: &Settings, sql: &SqlPath) -> Result<FeatureSet> {
    let path = sql
        .sql
        .clone()
        .unwrap_or_else(|| settings.features_sql.clone());
    Ok(FeatureSet::load(&path)?)
}

pub async fn run(cmd: FeaturesCommand, settings: &Settings) -> Result<u8> {
    match cmd {
        FeaturesCommand::Build {
            sql,
            from,
            to,
            format,
        } => {
            let plan = compile(&load(settings, &sql)?).await?;
            let lake = settings.open_lake()?;
            let summary = offline::build(&lake, &plan, from, to).await?;
            tracing::info!(
                rows = summary.rows,
                seconds = summary.seconds,
                "features built"
            );
            print_rows(&[summary], format)?;
            Ok(0)
        }
        FeaturesCommand::Show { sql, format } => {
            let fs = load(settings, &sql)?;
            let plan = compile(&fs).await?;
            if format == Format::Table {
                println!(
                    "feature set {} ({}), lookback {} days, {} features",
                    fs.short_hash(),
                    fs.path.display(),
                    plan.lookback_days(),
                    plan.features.len()
                );
            }
            print_rows(&plan.features, format)?;
            Ok(0)
        }
        FeaturesCommand::Parity {
            sql,
            sample,
            format,
        } => {
            let plan = Arc::new(compile(&load(settings, &sql)?).await?);
            let lake = settings.open_lake()?;
            let report = parity::check(&lake, plan, sample).await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "replayed {} transactions in {:.2} s; compared {} rows: {} match ({:.4} %)",
                    report.replayed,
                    report.replay_seconds,
                    report.compared_rows,
                    report.matching_rows,
                    report.match_pct
                );
                print_rows(&report.features, format)?;
                if !report.examples.is_empty() {
                    println!("\nfirst mismatches:");
                    print_rows(&report.examples, format)?;
                }
            }
            Ok(if report.all_match() {
                0
            } else {
                exit::CHECK_FAILED
            })
        }
    }
}
