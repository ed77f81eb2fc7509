//! `fraudlake tables` and `fraudlake lake optimize|vacuum`.

use anyhow::Result;
use clap::{Args, Subcommand};
use fraudlake_pipeline::lake::maintenance;

use crate::config::Settings;
use crate::output::{print_rows, Format};

#[derive(Debug, Args)]
pub struct TablesArgs {
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Compact small files of every table (one commit per table).
    Optimize {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Delete files no longer referenced by recent versions.
    Vacuum {
        /// Keep files needed by versions younger than this many hours.
        #[arg(long, default_value_t = 168)]
        retain_hours: u64,
        /// List what would be deleted without deleting.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn tables(args: TablesArgs, settings: &Settings) -> Result<u8> {
    let lake = settings.open_lake()?;
    let info = maintenance::describe(&lake).await?;
    if info.is_empty() && args.format == Format::Table {
        eprintln!("the lake at {} has no tables yet", lake.root());
    }
    print_rows(&info, args.format)?;
    Ok(0)
}

pub async fn run(cmd: LakeCommand, settings: &Settings) -> Result<u8> {
    let lake = settings.open_lake()?;
    match cmd {
        LakeCommand::Optimize { format } => {
            print_rows(&maintenance::optimize(&lake).await?, format)?
        }
        LakeCommand::Vacuum {
            retain_hours,
            dry_run,
            format,
        } => print_rows(
            &maintenance::vacuum(&lake, retain_hours, dry_run).await?,
            format,
        )?,
    }
    Ok(0)
}
