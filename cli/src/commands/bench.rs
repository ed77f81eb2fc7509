//! `fraudlake bench online|train|writer`: how fast the online engine computes this feature set
//! on this lake's data (full replay, then single-transaction latency), how long XGBoost or
//! LightGBM takes to fit the handbook training set, and how many scored rows per second the
//! server's lake writer commits. Measurements, not tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::Int64Type;
use fraudlake_features::online::history;
use fraudlake_features::{compile, FeatureSet, OnlineEngine, Transaction};
use fraudlake_model::params::TrainParams;
use fraudlake_model::ModelFamily;

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
    /// Time the scoring server's lake writer: synthetic scored transactions (tx_ids above the
    /// lake's largest, times over its last days) committed to `transactions` and
    /// `predictions`. It writes them into the lake: run it on a copy.
    Writer {
        /// Scored transactions to commit.
        #[arg(long, default_value_t = 200_000)]
        rows: usize,
        /// Rows per commit (as `serve --flush-rows`).
        #[arg(long, default_value_t = 50_000)]
        flush_rows: usize,
        /// Days before the lake's newest transaction that the rows spread over.
        #[arg(long, default_value_t = 3)]
        days: u32,
        /// Without the check against tx_ids `transactions` already holds (the writer before it).
        #[arg(long)]
        no_dedup: bool,
        /// Required: this bench adds rows to the lake.
        #[arg(long)]
        write_to_lake: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Time fits of XGBoost or LightGBM (no early stopping) on one training period of the
    /// features table, with the library's own default parameters unless flags say otherwise.
    Train {
        /// First training day (default 2018-07-25, the handbook's chapter 3 period).
        #[arg(long, default_value = "2018-07-25")]
        train_start: chrono::NaiveDate,
        #[arg(long, default_value_t = 7)]
        train_days: u32,
        /// The model family: xgboost or lightgbm.
        #[arg(long, value_parser = super::models::parse_family, default_value = "xgboost")]
        model: ModelFamily,
        /// Boosting rounds (default: the library's own, 100).
        #[arg(long)]
        n_estimators: Option<u32>,
        /// XGBoost's tree depth (default: XGBoost's own, 6, the handbook baseline's).
        #[arg(long)]
        max_depth: Option<u32>,
        /// Learning rate (default: the library's own, XGBoost 0.3, LightGBM 0.1).
        #[arg(long)]
        learning_rate: Option<f64>,
        /// Another parameter of the family, named as in `[train]` (repeatable), e.g.
        /// `--param num_leaves=63`.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        param: Vec<String>,
        /// The library's threads (0 = all cores).
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
    model: ModelFamily,
    rows: usize,
    features: usize,
    frauds: usize,
    rounds: u32,
    threads: u32,
    repeat: usize,
    load_seconds: f64,
    fit_median_seconds: f64,
    fit_min_seconds: f64,
    /// What the library was given (LightGBM's or libxgboost's names and values), and the
    /// round count as `n_estimators`: what a peer passes to train the same model
    /// (bench/train_peer.py).
    params: BTreeMap<&'static str, String>,
    /// The same parameters as `[train]` names them.
    train_params: TrainParams,
}

/// The library's defaults for `model`, then the flags.
fn bench_params(
    model: ModelFamily,
    flags: [(&'static str, Option<String>); 4],
    param: &[String],
) -> Result<TrainParams> {
    let mut params = TrainParams::library_defaults(model);
    for (name, value) in flags {
        if let Some(value) = value {
            params.assign(name, &value)?;
        }
    }
    for pair in param {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| crate::bad_input(format!("--param {pair}: expected NAME=VALUE")))?;
        params.assign(name.trim(), value)?;
    }
    params.validate()?;
    Ok(params)
}

/// [`TrainParams::library_params`] with the round count, which fraudlake runs itself.
fn given_to_library(params: &TrainParams) -> BTreeMap<&'static str, String> {
    let mut given: BTreeMap<&'static str, String> = params.library_params().into_iter().collect();
    given.insert("n_estimators", params.n_estimators().to_string());
    given
}

async fn train(cmd: BenchCommand, settings: &Settings) -> Result<u8> {
    let BenchCommand::Train {
        train_start,
        train_days,
        model,
        n_estimators,
        max_depth,
        learning_rate,
        param,
        threads,
        repeat,
        sql,
        format,
    } = cmd
    else {
        return Ok(0);
    };
    let params = bench_params(
        model,
        [
            ("n_estimators", n_estimators.map(|v| v.to_string())),
            ("max_depth", max_depth.map(|v| v.to_string())),
            ("learning_rate", learning_rate.map(|v| v.to_string())),
            ("threads", Some(threads.to_string())),
        ],
        &param,
    )?;
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
    let names = plan.feature_names();
    let mut times = Vec::new();
    let mut rounds = 0;
    for _ in 0..repeat.max(1) {
        let fitted = fraudlake_model::booster::fit(&matrix, &names, 0, &params)?;
        times.push(fitted.fit_seconds);
        rounds = fitted.rounds;
    }
    times.sort_by(f64::total_cmp);
    print_rows(
        &[TrainBench {
            model,
            rows: rows.len(),
            features: names.len(),
            frauds: rows.frauds(),
            rounds,
            threads,
            repeat: times.len(),
            load_seconds,
            fit_median_seconds: percentile(&times, 0.5),
            fit_min_seconds: times[0],
            params: given_to_library(&params),
            train_params: params,
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

#[derive(serde::Serialize)]
struct WriterBench {
    rows: usize,
    flush_rows: usize,
    dedup: bool,
    seconds: f64,
    rows_per_s: f64,
    transactions_commits: u64,
    transactions_commit_mean_s: f64,
    predictions_commit_mean_s: f64,
    duplicates_dropped: u64,
}

async fn writer(cmd: BenchCommand, settings: &Settings) -> Result<u8> {
    use fraudlake_serving::server::api::Decider;
    use fraudlake_serving::server::metrics::Metrics;
    use fraudlake_serving::server::models::ModelScore;
    use fraudlake_serving::server::writer::{LakeWriter, RoleScores, Scored, WriterConfig};
    let BenchCommand::Writer {
        rows,
        flush_rows,
        days,
        no_dedup,
        write_to_lake,
        format,
    } = cmd
    else {
        return Err(crate::bad_input("not the writer bench"));
    };
    if !write_to_lake {
        return Err(crate::bad_input(
            "bench writer adds rows to the lake's transactions and predictions: run it on a copy \
             of the lake, with --write-to-lake",
        ));
    }
    let lake = settings.open_lake()?;
    let ctx = lake.session(&[]).await?;
    if !ctx.table_exist("transactions")? {
        return Err(crate::bad_input("the lake has no transactions"));
    }
    let b = ctx
        .sql("SELECT MAX(tx_id), CAST(MAX(tx_ts) AS BIGINT) FROM transactions")
        .await?
        .collect()
        .await?;
    let value = |i: usize| -> Option<i64> {
        let c = b.first()?.column(i).as_primitive::<Int64Type>();
        (!c.is_empty() && c.is_valid(0)).then(|| c.value(0))
    };
    let (Some(max_id), Some(max_ts)) = (value(0), value(1)) else {
        return Err(crate::bad_input("the lake has no transactions"));
    };
    let metrics = Arc::new(Metrics::new()?);
    let (handle, thread) = LakeWriter::start(
        lake,
        WriterConfig {
            flush_rows: flush_rows.max(1),
            flush_interval: std::time::Duration::from_secs(3_600),
            skip_existing: !no_dedup,
        },
        metrics.clone(),
    )?;
    let span_us = i64::from(days.max(1)) * 86_400_000_000;
    let feature_set: Arc<str> = Arc::from("bench");
    let started = Instant::now();
    for i in 0..rows as i64 {
        handle.scored(Scored {
            tx: Transaction {
                tx_id: max_id + 1 + i,
                tx_ts_us: max_ts - span_us + i * (span_us / rows.max(1) as i64),
                customer_id: i % 5_000,
                terminal_id: (i * 7_919) % 10_000,
                amount: 10.0 + (i % 200) as f64,
            },
            scored_at_us: chrono::Utc::now().timestamp_micros(),
            model_version: 1,
            feature_set: feature_set.clone(),
            risk_score: 0.01,
            decision: "approve",
            features: vec![0.0; 15],
            roles: RoleScores::decided_only(
                Decider::Champion,
                ModelScore {
                    version: 1,
                    score: 0.01,
                },
            ),
        });
    }
    handle.flush().await;
    let seconds = started.elapsed().as_secs_f64();
    drop(handle);
    let _ = thread.join();
    let commit = |table: &str| {
        let h = metrics.writer_commit.with_label_values(&[table]);
        (h.get_sample_count(), h.get_sample_sum())
    };
    let (tx_commits, tx_sum) = commit("transactions");
    let (pred_commits, pred_sum) = commit("predictions");
    print_rows(
        &[WriterBench {
            rows,
            flush_rows,
            dedup: !no_dedup,
            seconds,
            rows_per_s: rows as f64 / seconds,
            transactions_commits: tx_commits,
            transactions_commit_mean_s: tx_sum / tx_commits.max(1) as f64,
            predictions_commit_mean_s: pred_sum / pred_commits.max(1) as f64,
            duplicates_dropped: metrics.writer_duplicates.get(),
        }],
        format,
    )?;
    Ok(0)
}

pub async fn run(cmd: BenchCommand, settings: &Settings) -> Result<u8> {
    if let BenchCommand::Writer { .. } = cmd {
        return writer(cmd, settings).await;
    }
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
