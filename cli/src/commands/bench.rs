//! `fraudlake bench online`: how fast the online engine computes this feature set on this
//! lake's data (full replay, then single-transaction latency). A measurement, not a test.

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
    } = cmd;
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
