//! Parity, proven: replay the lake through the online engine in event-time order, labels
//! applied as they become known, and compare every feature of every transaction with the
//! `features` table the offline engine wrote. Counts must be equal, real values equal to
//! 1e-9 relative.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Float64Type, Int64Type};
use fraudlake_pipeline::{Error, Lake, Result};
use serde::Serialize;

use crate::compile::{FeaturePlan, Step};
use crate::offline::FEATURES_TABLE;
use crate::online::engine::{feature_rows, OnlineEngine, Transaction};
use crate::online::history;

/// Relative tolerance for real-valued features.
pub const REL_TOLERANCE: f64 = 1e-9;

/// One disagreeing value.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub tx_id: i64,
    pub feature: String,
    pub offline: Option<f64>,
    pub online: Option<f64>,
}

/// Mismatches of one feature.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureParity {
    pub feature: String,
    pub exact: bool,
    pub mismatches: usize,
    pub max_rel_diff: f64,
}

/// The outcome of a parity run.
#[derive(Debug, Clone, Serialize)]
pub struct ParityReport {
    pub feature_set: String,
    pub replayed: usize,
    pub compared_rows: usize,
    pub matching_rows: usize,
    pub match_pct: f64,
    pub features: Vec<FeatureParity>,
    pub examples: Vec<Mismatch>,
    pub replay_seconds: f64,
}

impl ParityReport {
    pub fn all_match(&self) -> bool {
        self.compared_rows == self.matching_rows
    }
}

/// Compares offline and online features. `sample` limits the comparison to about that many
/// rows (the replay still covers all history they need).
pub async fn check(
    lake: &Lake,
    plan: Arc<FeaturePlan>,
    sample: Option<usize>,
) -> Result<ParityReport> {
    let names = plan.feature_names();
    let offline = load_offline(lake, &plan, &names, sample).await?;
    if offline.rows.is_empty() {
        return Err(Error::invalid(
            "the features table is empty: run `fraudlake features build`",
        ));
    }
    let from_us = offline
        .min_ts_us
        .saturating_sub(plan.lookback_ns / 1000 + 1_000_000);
    let rows = history::load(lake, Some(from_us), Some(offline.max_ts_us)).await?;

    // When a label is known in the replay: its labeled_at, or the smallest label delay of the
    // windows that read labels after the transaction, whichever is first (the SQL's model of
    // when labels are available; the compiler makes that delay at least LABEL_DELAY_NS).
    let min_delay_ns = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Window { windows, .. } => windows
                .iter()
                .filter(|w| w.reads_labels)
                .map(|w| w.end_ns)
                .filter(|d| *d > 0)
                .min(),
            _ => None,
        })
        .min();
    let mut labels: BinaryHeap<Reverse<(i64, i64, bool)>> = BinaryHeap::new();
    for r in &rows {
        if let Some((is_fraud, labeled_at_us)) = r.label {
            let mut at = labeled_at_us.saturating_mul(1000);
            if let Some(d) = min_delay_ns {
                at = at.min(r.tx.event_time_ns().saturating_add(d));
            }
            labels.push(Reverse((at, r.tx.tx_id, is_fraud)));
        }
    }

    let started = std::time::Instant::now();
    let mut engine = OnlineEngine::new(plan.clone());
    // The path the server scores on (one transaction per request), for every row: parity
    // proves the row path, not only Arrow's batches (the unit tests compare those two).
    engine.set_row_path(crate::online::RowPath::Always);
    let mut stats: Vec<FeatureParity> = names
        .iter()
        .zip(&offline.exact)
        .map(|(n, exact)| FeatureParity {
            feature: n.clone(),
            exact: *exact,
            mismatches: 0,
            max_rel_diff: 0.0,
        })
        .collect();
    let mut examples = Vec::new();
    let (mut compared, mut matching) = (0usize, 0usize);
    for chunk in rows.chunks(4096) {
        // Labels known by the end of this chunk. Applying one early is safe: a delayed frame
        // reaches a transaction only after its label time.
        let chunk_end = chunk
            .last()
            .map(|r| r.tx.event_time_ns())
            .unwrap_or(i64::MIN);
        while let Some(Reverse((at, tx_id, is_fraud))) = labels.peek().copied() {
            if at > chunk_end {
                break;
            }
            labels.pop();
            engine.apply_label(tx_id, is_fraud)?;
        }
        let txs: Vec<Transaction> = chunk.iter().map(|r| r.tx).collect();
        let out = engine.score_and_apply(&txs)?;
        let online = feature_rows(&plan, &out)?;
        for (tx, values) in txs.iter().zip(online) {
            let Some(expected) = offline.rows.get(&tx.tx_id) else {
                continue;
            };
            compared += 1;
            let mut row_ok = true;
            for (f, (want, got)) in expected.iter().zip(values).enumerate() {
                let got = (!got.is_nan()).then_some(got);
                let (ok, rel) = agree(*want, got, stats[f].exact);
                stats[f].max_rel_diff = stats[f].max_rel_diff.max(rel);
                if !ok {
                    row_ok = false;
                    stats[f].mismatches += 1;
                    if examples.len() < 20 {
                        examples.push(Mismatch {
                            tx_id: tx.tx_id,
                            feature: names[f].clone(),
                            offline: *want,
                            online: got,
                        });
                    }
                }
            }
            if row_ok {
                matching += 1;
            }
        }
    }
    Ok(ParityReport {
        feature_set: plan.feature_set.sha256.clone(),
        replayed: rows.len(),
        compared_rows: compared,
        matching_rows: matching,
        match_pct: if compared > 0 {
            100.0 * matching as f64 / compared as f64
        } else {
            0.0
        },
        features: stats,
        examples,
        replay_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Whether two values agree; also the relative difference seen.
fn agree(want: Option<f64>, got: Option<f64>, exact: bool) -> (bool, f64) {
    match (want, got) {
        (None, None) => (true, 0.0),
        (Some(a), Some(b)) if exact => (a == b, if a == b { 0.0 } else { 1.0 }),
        (Some(a), Some(b)) => {
            // Relative to the magnitude, floored at 1: DataFusion's sliding window sums
            // retract values and can leave residues like 1e-14 where exact arithmetic gives 0.
            let scale = a.abs().max(b.abs()).max(1.0);
            let rel = (a - b).abs() / scale;
            (rel <= REL_TOLERANCE, rel)
        }
        _ => (false, f64::INFINITY),
    }
}

struct Offline {
    rows: HashMap<i64, Vec<Option<f64>>>,
    exact: Vec<bool>,
    min_ts_us: i64,
    max_ts_us: i64,
}

async fn load_offline(
    lake: &Lake,
    plan: &FeaturePlan,
    names: &[String],
    sample: Option<usize>,
) -> Result<Offline> {
    let ctx = lake.session(&[]).await?;
    if !ctx.table_exist(FEATURES_TABLE)? {
        return Err(Error::invalid(
            "the lake has no features table: run `fraudlake features build`",
        ));
    }
    let sets = ctx
        .sql("SELECT DISTINCT feature_set FROM features")
        .await?
        .collect()
        .await?;
    let mut found = Vec::new();
    for b in &sets {
        let c = cast(b.column(0), &DataType::Utf8)?;
        found.extend(c.as_string::<i32>().iter().flatten().map(String::from));
    }
    if found.iter().any(|s| s != &plan.feature_set.sha256) {
        return Err(Error::invalid(format!(
            "the features table was built from another feature set ({}); this SQL is {}: run `fraudlake features build`",
            found.join(", "),
            plan.feature_set.short_hash()
        )));
    }
    let total = ctx.table(FEATURES_TABLE).await?.count().await?;
    let where_sample = match sample {
        Some(n) if n < total => {
            let modulus = (total / n.max(1)).max(1);
            format!("WHERE tx_id % {modulus} = 0")
        }
        _ => String::new(),
    };
    let cols: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let sql = format!(
        "SELECT tx_id, CAST(tx_ts AS BIGINT) AS ts, {} FROM features {where_sample}",
        cols.join(", ")
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut exact = Vec::new();
    if let Some(b) = batches.first() {
        for i in 0..names.len() {
            exact.push(b.column(i + 2).data_type().is_integer());
        }
    }
    let mut rows = HashMap::new();
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    for b in &batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let ts = b.column(1).as_primitive::<Int64Type>();
        let values: Vec<_> = (0..names.len())
            .map(|i| cast(b.column(i + 2), &DataType::Float64))
            .collect::<std::result::Result<_, _>>()?;
        for r in 0..b.num_rows() {
            let row = values
                .iter()
                .map(|c| {
                    let c = c.as_primitive::<Float64Type>();
                    c.is_valid(r).then(|| c.value(r))
                })
                .collect();
            rows.insert(ids.value(r), row);
            min_ts = min_ts.min(ts.value(r));
            max_ts = max_ts.max(ts.value(r));
        }
    }
    Ok(Offline {
        rows,
        exact,
        min_ts_us: min_ts,
        max_ts_us: max_ts,
    })
}
