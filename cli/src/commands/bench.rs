//! `fraudlake bench online|train`: how fast the online engine computes this feature set on
//! this lake's data (full replay, then single-transaction latency), and how long libxgboost
//! takes to fit the handbook training set. Measurements, not tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;
use fraudlake_pipeline::features::{compile, FeatureSet};
use fraudlake_serving::online::history;
use fraudlake_serving::{OnlineEngine, Transaction};

use crate::config::Settings;
use crate::output::{print_rows, Format};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Replay the lake through the online engine, then time single feature vectors.
    Online {
        /// The feature SQL (default sql/features.sql).
        #[arg(long = "sql")]
        sql: Option<PathBuf>,
        /// How many single-transaction timings to take after the replay.
        #[arg(long, default_value_t = 20_000)]
        samples: usize,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Time XGBoost fits (no early stopping) on one training period of the features table.
    Train {
        /// First training day (default 2018-07-25, the handbook's chapter 3 period).
        #[arg(long, default_value = "2018-07-25")]
        train_start: chrono::NaiveDate,
        #[arg(long, default_value_t = 7)]
        train_days: u32,
        /// Boosting rounds (default: the handbook baseline's XGBoost defaults, 100 / 6 / 0.3).
        #[arg(long, default_value_t = 100)]
        n_estimators: u32,
        #[arg(long, default_value_t = 6)]
        max_depth: u32,
        #[arg(long, default_value_t = 0.3)]
        learning_rate: f64,
        /// libxgboost threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: u32,
        /// Fits to time (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        #[arg(long = "sql")]
        sql: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(serde::Serialize)]
struct TrainBench {
    rows: usize,
    features: usize,
    frauds: usize,
    rounds: u32,
    threads: u32,
    repeat: usize,
    load_seconds: f64,
    fit_median_seconds: f64,
    fit_min_seconds: f64,
}

async fn train(cmd: BenchCommand, settings: &Settings) -> Result<u8> {
    let BenchCommand::Train {
        train_start,
        train_days,
        n_estimators,
        max_depth,
        learning_rate,
        threads,
        repeat,
        sql,
        format,
    } = cmd
    else {
        return Ok(0);
    };
    let fs = FeatureSet::load(&sql.unwrap_or_else(|| settings.features_sql.clone()))?;
    let plan = compile(&fs).await?;
    let lake = settings.open_lake()?;
    let started = Instant::now();
    let snapshot = fraudlake_model::dataset::Snapshot::open(&lake, &Default::default()).await?;
    snapshot.require_feature_set(&fs.sha256)?;
    let end = train_start + chrono::Duration::days(i64::from(train_days.max(1)) - 1);
    let rows = snapshot
        .rows(&plan.feature_names(), train_start, end, &fs.sha256)
        .await?;
    if rows.is_empty() {
        return Err(crate::bad_input(format!(
            "no feature rows for {train_start} .. {end}"
        )));
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let matrix = rows.matrix();
    let params = fraudlake_model::booster::TrainParams {
        n_estimators,
        max_depth,
        learning_rate,
        threads,
        early_stopping_rounds: 0,
        ..Default::default()
    };
    let names = plan.feature_names();
    let mut times = Vec::new();
    for _ in 0..repeat.max(1) {
        let fitted = fraudlake_model::booster::fit(&matrix, &names, 0, &params)?;
        times.push(fitted.fit_seconds);
    }
    times.sort_by(f64::total_cmp);
    print_rows(
        &[TrainBench {
            rows: rows.len(),
            features: names.len(),
            frauds: rows.frauds(),
            rounds: n_estimators,
            threads,
            repeat: times.len(),
            load_seconds,
            fit_median_seconds: percentile(&times, 0.5),
            fit_min_seconds: times[0],
        }],
        format,
    )?;
    Ok(0)
}

#[derive(serde::Serialize)]
struct OnlineBench {
    transactions: usize,
    entities: usize,
    replay_seconds: f64,
    replay_tx_per_s: f64,
    samples: usize,
    features_p50_us: f64,
    features_p99_us: f64,
    score_and_apply_p50_us: f64,
    score_and_apply_p99_us: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

pub async fn run(cmd: BenchCommand, settings: &Settings) -> Result<u8> {
    let BenchCommand::Online {
        sql,
        samples,
        format,
    } = cmd
    else {
        return train(cmd, settings).await;
    };
    let fs = FeatureSet::load(&sql.unwrap_or_else(|| settings.features_sql.clone()))?;
    let plan = Arc::new(compile(&fs).await?);
    let lake = settings.open_lake()?;
    let rows = history::load(&lake, None, None).await?;
    if rows.is_empty() {
        return Err(crate::bad_input("the lake has no transactions to replay"));
    }
    let mut engine = OnlineEngine::new(plan);
    let started = Instant::now();
    for chunk in rows.chunks(4096) {
        for r in chunk {
            if let Some((f, _)) = r.label {
                engine.apply_label(r.tx.tx_id, f)?;
            }
        }
        let txs: Vec<Transaction> = chunk.iter().map(|r| r.tx).collect();
        engine.score_and_apply(&txs)?;
    }
    let replay_seconds = started.elapsed().as_secs_f64();

    // New transactions just after the history, from the same customers and terminals.
    let last = rows.last().map(|r| r.tx).unwrap_or(Transaction {
        tx_id: 0,
        tx_ts_us: 0,
        customer_id: 0,
        terminal_id: 0,
        amount: 0.0,
    });
    let max_id = rows.iter().map(|r| r.tx.tx_id).max().unwrap_or(0);
    let step = (rows.len() / samples.max(1)).max(1);
    let probes: Vec<Transaction> = rows
        .iter()
        .step_by(step)
        .take(samples)
        .enumerate()
        .map(|(i, r)| Transaction {
            tx_id: max_id + 1 + i as i64,
            tx_ts_us: last.tx_ts_us + 1_000_000 * (i as i64 + 1),
            ..r.tx
        })
        .collect();
    let mut peek = Vec::with_capacity(probes.len());
    for p in &probes {
        let t = Instant::now();
        std::hint::black_box(engine.features_for(p)?);
        peek.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut apply = Vec::with_capacity(probes.len());
    for p in &probes {
        let t = Instant::now();
        std::hint::black_box(engine.score_and_apply(std::slice::from_ref(p))?);
        apply.push(t.elapsed().as_secs_f64() * 1e6);
    }
    peek.sort_by(f64::total_cmp);
    apply.sort_by(f64::total_cmp);
    print_rows(
        &[OnlineBench {
            transactions: rows.len(),
            entities: engine.entities(),
            replay_seconds,
            replay_tx_per_s: rows.len() as f64 / replay_seconds,
            samples: probes.len(),
            features_p50_us: percentile(&peek, 0.5),
            features_p99_us: percentile(&peek, 0.99),
            score_and_apply_p50_us: percentile(&apply, 0.5),
            score_and_apply_p99_us: percentile(&apply, 0.99),
        }],
        format,
    )?;
    Ok(0)
}
