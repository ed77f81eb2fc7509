//! The subcommands. Each file parses its own arguments and calls library code.

mod bench;
mod dag;
mod drift;
mod evaluate;
mod features;
mod ingest;
mod keys;
mod lake;
mod models;
mod online;
mod serve;
mod simulate;
mod sql;
mod stream;
mod train;

use anyhow::Result;
use clap::Subcommand;

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a handbook-grade synthetic lake of transactions and fraud labels.
    Simulate(simulate::SimulateArgs),
    /// Load CSV, Parquet or JSON Lines files into `transactions` and `labels`.
    Ingest(ingest::IngestArgs),
    /// Run read-only SQL over the lake (DataFusion).
    Sql(sql::SqlArgs),
    /// List the lake's tables with version, rows, files, size and last commit.
    Tables(lake::TablesArgs),
    /// Lake maintenance: compaction and vacuum.
    #[command(subcommand)]
    Lake(lake::LakeCommand),
    /// The feature set: offline build, description, online/offline parity.
    #[command(subcommand)]
    Features(features::FeaturesCommand),
    /// Train XGBoost or LightGBM (`--model`) on the lake's features (handbook protocol) and register the model.
    Train(train::TrainArgs),
    /// The handbook's protocols: a registered version on any test days (holdout, ch. 3), or a
    /// fresh model per prequential fold (ch. 5).
    ///
    /// `--protocol holdout` (chapter 3, the default) scores a registered version (`--model`, a
    /// number or an alias, default champion) on the test days from `--test-start`, cards
    /// already known to be compromised removed; it trains nothing and writes nothing.
    ///
    /// `--protocol prequential` (chapter 5) trains a new model (`--model`, a family, default
    /// `[train] model`, else xgboost) on each of `--folds` windows (default 4), fold 1 starting at `--train-start`
    /// and each later fold one test period earlier, tests it on the fold's test days, and
    /// prints every fold and the mean ± std of AUC ROC, average precision and card
    /// precision@100, as the handbook's chapter 5 tables; nothing is registered. The
    /// parameters are `fraudlake train`'s (flags over `[train]` in fraudlake.toml), the
    /// feature set `--sql`'s. Re-run the handbook's comparison with `fraudlake evaluate
    /// --protocol prequential --folds 4 --train-start 2018-08-15`.
    Evaluate(evaluate::EvaluateArgs),
    /// Why did the model score these transactions as it did? (TreeSHAP contributions)
    Explain(train::ExplainArgs),
    /// The scoring API: POST /score with live features and the champion model.
    Serve(serve::ServeArgs),
    /// Transactions and labels from Kafka topics into the lake, exactly once (and scored).
    Stream(stream::StreamArgs),
    /// The shared online store (Redis) of several `serve` replicas: bootstrap, stats.
    #[command(subcommand)]
    Online(online::OnlineCommand),
    /// API keys for the server's write routes: create, list, revoke.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The model registry: versions, aliases, promotion gate, audit log.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Data drift of the scored data against the champion's training data (HTML + JSON report).
    Drift(drift::DriftArgs),
    /// DAGs of `dags/`: list, show, run, backfill, history, logs.
    #[command(subcommand)]
    Dag(dag::DagCommand),
    /// Run every DAG of `dags/` on its cron schedule (one scheduler per lake).
    Scheduler(dag::SchedulerArgs),
    /// Measurements (not tests): the online engine on this lake's data.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs a command; the returned number is the process exit code.
pub async fn run(command: Command, settings: &Settings) -> Result<u8> {
    match command {
        Command::Simulate(a) => simulate::run(a, settings).await,
        Command::Ingest(a) => ingest::run(a, settings).await,
        Command::Sql(a) => sql::run(a, settings).await,
        Command::Tables(a) => lake::tables(a, settings).await,
        Command::Lake(c) => lake::run(c, settings).await,
        Command::Features(c) => features::run(c, settings).await,
        Command::Train(a) => train::train(a, settings).await,
        Command::Evaluate(a) => evaluate::run(a, settings).await,
        Command::Explain(a) => train::explain(a, settings).await,
        Command::Models(c) => models::run(c, settings).await,
        Command::Serve(a) => serve::run(a, settings).await,
        Command::Stream(a) => stream::run(a, settings).await,
        Command::Online(c) => online::run(c, settings).await,
        Command::Keys(c) => keys::run(c, settings).await,
        Command::Drift(a) => drift::run(a, settings).await,
        Command::Dag(c) => dag::run(c, settings).await,
        Command::Scheduler(a) => dag::scheduler(a, settings).await,
        Command::Bench(c) => bench::run(c, settings).await,
    }
}

/// Whether the command is the long-running server (it gets its own runtime sizing).
pub fn is_serve(command: &Command) -> bool {
    matches!(command, Command::Serve(_))
}

/// Whether the command runs until stopped, talking to peers over sockets (the server, the
/// stream consumer, the DAG scheduler): those keep SIGPIPE ignored, so a peer that hangs up
/// is an error on that socket, never the end of the process.
pub fn is_service(command: &Command) -> bool {
    matches!(
        command,
        Command::Serve(_) | Command::Stream(_) | Command::Scheduler(_) | Command::Dag(_)
    )
}
