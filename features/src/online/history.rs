//! Transactions and labels read back from the lake in event-time order: the start-up
//! bootstrap of the online state and the input of the parity replay.

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{Float64Type, Int64Type};
use fraudlake_pipeline::{Lake, Result};

use super::clock::robust_anchor;
use super::engine::{OnlineEngine, Transaction};
use super::state::EntityStore;
use crate::definition::event_time_ns;

/// One transaction with its latest label, if any.
#[derive(Debug, Clone, Copy)]
pub struct HistoryRow {
    pub tx: Transaction,
    /// (is_fraud, labeled_at in microseconds)
    pub label: Option<(bool, i64)>,
}

/// Transactions with `tx_ts` in `[from_us, to_us]` (open ends when `None`), sorted by
/// event time, each with its latest label.
pub async fn load(
    lake: &Lake,
    from_us: Option<i64>,
    to_us: Option<i64>,
) -> Result<Vec<HistoryRow>> {
    let ctx = lake.session(&[]).await?;
    if !ctx.table_exist("transactions")? {
        return Ok(Vec::new());
    }
    let has_labels = ctx.table_exist("labels")?;
    let mut filters = Vec::new();
    if let Some(f) = from_us {
        filters.push(format!("CAST(t.tx_ts AS BIGINT) >= {f}"));
    }
    if let Some(t) = to_us {
        filters.push(format!("CAST(t.tx_ts AS BIGINT) <= {t}"));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    let labels = if has_labels {
        // The label that counts per tx_id, as `view_sql` reads it (the default precedence).
        format!(
            "LEFT JOIN ({}) l ON t.tx_id = l.tx_id",
            fraudlake_pipeline::labels::LabelPolicy::default().effective_sql()
        )
    } else {
        "LEFT JOIN (SELECT CAST(NULL AS BIGINT) AS tx_id, CAST(NULL AS BOOLEAN) AS is_fraud, \
                    CAST(NULL AS BIGINT) AS labeled_at) l ON t.tx_id = l.tx_id"
            .to_string()
    };
    let sql = format!(
        "SELECT t.tx_id, CAST(t.tx_ts AS BIGINT) AS ts, t.customer_id, t.terminal_id, t.amount, \
                l.is_fraud, l.labeled_at \
         FROM transactions t {labels} {filter}"
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut rows = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for b in &batches {
        let id = b.column(0).as_primitive::<Int64Type>();
        let ts = b.column(1).as_primitive::<Int64Type>();
        let cu = b.column(2).as_primitive::<Int64Type>();
        let te = b.column(3).as_primitive::<Int64Type>();
        let am = b.column(4).as_primitive::<Float64Type>();
        let fr = b.column(5).as_boolean();
        let la = b.column(6).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let label = (fr.is_valid(i) && la.is_valid(i)).then(|| (fr.value(i), la.value(i)));
            rows.push(HistoryRow {
                tx: Transaction {
                    tx_id: id.value(i),
                    tx_ts_us: ts.value(i),
                    customer_id: cu.value(i),
                    terminal_id: te.value(i),
                    amount: am.value(i),
                },
                label,
            });
        }
    }
    rows.sort_unstable_by_key(|r| (event_time_ns(r.tx.tx_ts_us, r.tx.tx_id), r.tx.tx_id));
    Ok(rows)
}

/// Fills an engine with the lake's last `lookback` of history (labels as known now), so a
/// restarted server computes the features it would have computed without the restart.
/// Returns the number of transactions applied.
///
/// The history ends at a robust anchor, not at `MAX(tx_ts)`: a far-future row already in the
/// lake (ingested from a file, say) would otherwise put the whole lookback in the future and
/// load nothing. Rows past the anchor (see [`robust_anchor`]) are outliers: not loaded (they
/// stay in the lake), counted in a warning.
pub async fn bootstrap<S: EntityStore>(engine: &mut OnlineEngine<S>, lake: &Lake) -> Result<usize> {
    let (rows, _) = lookback(engine, lake).await?;
    for chunk in rows.chunks(8192) {
        let txs: Vec<Transaction> = chunk.iter().map(|r| r.tx).collect();
        for r in chunk {
            if let Some((is_fraud, _)) = r.label {
                engine.apply_label(r.tx.tx_id, is_fraud)?; // held until the tx is applied
            }
        }
        engine.score_and_apply(&txs)?;
    }
    Ok(rows.len())
}

/// The rows [`bootstrap`] applies: the lake's last lookback (the windows' plus the engine's
/// lateness tolerance) before the robust anchor, in event-time order, with the anchor (µs;
/// `None` for an empty lake). A shared store loads the same rows.
pub async fn lookback<S: EntityStore>(
    engine: &OnlineEngine<S>,
    lake: &Lake,
) -> Result<(Vec<HistoryRow>, Option<i64>)> {
    let rules = *engine.event_time_rules();
    let skew_us = rules.max_skew_ns / 1000;
    let newest = newest_tx_ts(lake, 2 * rules.quorum.max(1)).await?;
    let Some(anchor_us) = robust_anchor(&newest, skew_us, 86_400_000_000) else {
        return Ok((Vec::new(), None));
    };
    let outliers = newest.iter().filter(|&&t| t > anchor_us).count();
    if outliers > 0 {
        let beyond = count_after(lake, anchor_us).await?;
        tracing::warn!(
            anchor_us,
            rows = beyond,
            "transactions far ahead of the rest of the lake are not loaded into the online state"
        );
    }
    // The windows' lookback, plus the out-of-order tolerance the engine keeps history for.
    let lookback_us = engine.plan().lookback_ns / 1000 + skew_us;
    let rows = load(
        lake,
        Some(anchor_us.saturating_sub(lookback_us + 1_000_000)),
        Some(anchor_us),
    )
    .await?;
    Ok((rows, Some(anchor_us)))
}

/// The `n` newest `tx_ts` (microseconds), oldest first.
async fn newest_tx_ts(lake: &Lake, n: usize) -> Result<Vec<i64>> {
    let ctx = lake.session(&[]).await?;
    if !ctx.table_exist("transactions")? {
        return Ok(Vec::new());
    }
    let batches = ctx
        .sql(&format!(
            "SELECT CAST(tx_ts AS BIGINT) AS us FROM transactions ORDER BY us DESC LIMIT {n}"
        ))
        .await?
        .collect()
        .await?;
    let mut out: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Transactions with `tx_ts` after `us`.
async fn count_after(lake: &Lake, us: i64) -> Result<i64> {
    let ctx = lake.session(&[]).await?;
    let b = ctx
        .sql(&format!(
            "SELECT COUNT(*) FROM transactions WHERE CAST(tx_ts AS BIGINT) > {us}"
        ))
        .await?
        .collect()
        .await?;
    Ok(b.first()
        .map(|b| b.column(0).as_primitive::<Int64Type>())
        .filter(|c| !c.is_empty() && c.is_valid(0))
        .map_or(0, |c| c.value(0)))
}
