//! The lake writer: every scored transaction lands in `transactions` and `predictions`, every
//! feedback label in `labels`, without the request waiting for a commit. Handlers push rows to
//! a channel; one task commits every `flush_rows` rows or `flush_interval`, one Delta commit
//! per table. A failed commit keeps the rows and retries with exponential backoff (scoring
//! goes on; the backlog is `fraud_lake_writer_pending_rows`). On shutdown the task drains the
//! channel and commits what it holds. What a hard kill loses: the rows not yet committed, at
//! most `flush_rows` or `flush_interval` of traffic (plus any backlog from failing commits).
//!
//! `tx_id` is unique in the lake: the online state remembers the lookback's tx_ids, but a
//! transaction older than that, or one ingested from a file, can come back. So each commit
//! first reads the tx_ids `transactions` holds in the partitions (days) the batch touches,
//! within the batch's tx_id range (file statistics prune the rest), and drops those rows and
//! their predictions: an anti-join per batch, never a lake read per request. A row another
//! replica recorded first (a retry through the balancer) waits two flush intervals before
//! that check, so that the other replica's commit comes first and the copy is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use deltalake::arrow::array::AsArray;
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Float64Builder, Int64Array, ListBuilder, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use fraudlake_features::Transaction;
use fraudlake_pipeline::lake::tables::{
    utc_micros, LabelColumns, Provenance, TransactionColumns, LABELS, MICROS_PER_DAY,
    PREDICTIONS_TABLE, TRANSACTIONS,
};
use fraudlake_pipeline::lake::{Lake, TableDef};
use tokio::sync::{mpsc, oneshot};

use super::api::Decider;
use super::metrics::Metrics;
use super::models::{ModelScore, Scores};

/// Served predictions, one row per scored transaction.
pub const PREDICTIONS: TableDef = TableDef {
    name: PREDICTIONS_TABLE,
    description: "online predictions: the model version, score, decision and feature vector per scored transaction",
    schema: predictions_schema,
    partition_by: &["tx_date"],
};

fn predictions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tx_id", DataType::Int64, false),
        Field::new("tx_ts", utc_micros(), false),
        Field::new("scored_at", utc_micros(), false),
        Field::new("model_version", DataType::Int64, false),
        Field::new("feature_set", DataType::Utf8, false),
        Field::new("risk_score", DataType::Float64, false),
        Field::new("decision", DataType::Utf8, false),
        Field::new(
            "features",
            DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
            false,
        ),
        Field::new("tx_date", DataType::Date32, false),
        // The rollout's columns (docs/rollout.md section 4), added later: a lake made before
        // them gains them on its next write (`lake::evolve`), its older rows read as null.
        Field::new("role", DataType::Utf8, true),
        Field::new("champion_version", DataType::Int64, true),
        Field::new("champion_score", DataType::Float64, true),
        Field::new("canary_version", DataType::Int64, true),
        Field::new("canary_score", DataType::Float64, true),
        Field::new("shadow_version", DataType::Int64, true),
        Field::new("shadow_score", DataType::Float64, true),
    ]))
}

/// A scored transaction as it is written.
#[derive(Debug, Clone)]
pub struct Scored {
    pub tx: Transaction,
    pub scored_at_us: i64,
    /// The deciding model's version, score and decision.
    pub model_version: i64,
    pub feature_set: Arc<str>,
    pub risk_score: f64,
    pub decision: &'static str,
    pub features: Vec<f64>,
    /// Who decided and every served model's score.
    pub roles: RoleScores,
}

/// Which model decided a transaction and what each served model scored: the rollout's
/// columns of `predictions`. A score is `None` when no model of that role was served, or,
/// for a retry answered from memory, when only the deciding model's score was kept.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RoleScores {
    /// `None` only in rows logged before roles existed.
    pub decider: Option<Decider>,
    pub champion: Option<ModelScore>,
    pub canary: Option<ModelScore>,
    pub shadow: Option<ModelScore>,
}

impl RoleScores {
    /// Only the deciding model's score (an answer remembered for a retry).
    pub fn decided_only(decider: Decider, decided: ModelScore) -> RoleScores {
        let mut out = RoleScores {
            decider: Some(decider),
            ..RoleScores::default()
        };
        match decider {
            Decider::Champion => out.champion = Some(decided),
            Decider::Canary => out.canary = Some(decided),
        }
        out
    }
}

impl From<Scores> for RoleScores {
    fn from(s: Scores) -> RoleScores {
        RoleScores {
            decider: Some(s.decider),
            champion: Some(s.champion),
            canary: s.canary,
            shadow: s.shadow,
        }
    }
}

/// A feedback label as it is written.
#[derive(Debug, Clone)]
pub struct Label {
    pub tx_id: i64,
    pub is_fraud: bool,
    pub fraud_scenario: Option<i32>,
    pub labeled_at_us: i64,
    /// Its source (`api:<key_id>`), the label it replaced, and why it does not count if so.
    pub provenance: Provenance,
}

enum Message {
    Scored(Box<Scored>),
    /// Scored here, but recorded in the shared online store by another replica first: that
    /// replica is committing it too, unless it died first. Held back (see [`HOLD_FLUSHES`]).
    Elsewhere(Box<Scored>),
    Label(Label),
    /// Commit everything now and answer when done (tests, shutdown).
    Flush(oneshot::Sender<()>),
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub flush_rows: usize,
    pub flush_interval: Duration,
    /// Drop scored transactions whose tx_id `transactions` already holds (the server always
    /// does; off only to measure what the check costs).
    pub skip_existing: bool,
}

/// The handle handlers use. Cheap to clone.
#[derive(Clone)]
pub struct LakeWriter {
    tx: mpsc::UnboundedSender<Message>,
    metrics: Arc<Metrics>,
}

impl LakeWriter {
    /// Starts the writer task; it ends (after a final commit) when every handle is dropped.
    ///
    /// The writer runs on its own thread and runtime: a commit encodes Parquet for thousands
    /// of rows, and on the request runtime that CPU work would stall scoring (p99 went from
    /// ~25 ms to under 5 ms when it moved off).
    pub fn start(
        lake: Lake,
        config: WriterConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(LakeWriter, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| crate::Error::io("cannot start the lake writer runtime", e))?;
        let m = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("lake-writer".into())
            .spawn(move || {
                lower_priority();
                runtime.block_on(run(lake, config, rx, m))
            })
            .map_err(|e| crate::Error::io("cannot start the lake writer thread", e))?;
        Ok((LakeWriter { tx, metrics }, thread))
    }

    pub fn scored(&self, row: Scored) {
        self.metrics.writer_pending.inc();
        if self.tx.send(Message::Scored(Box::new(row))).is_err() {
            tracing::error!("lake writer stopped: a scored transaction was not queued");
        }
    }

    /// A transaction this replica answered but another one recorded first (a retry through
    /// the balancer): committed only after [`HOLD_FLUSHES`] flush intervals, when the lake
    /// check drops it if the other replica committed it, and writes it if that one died.
    pub fn scored_elsewhere(&self, row: Scored) {
        self.metrics.writer_pending.inc();
        if self.tx.send(Message::Elsewhere(Box::new(row))).is_err() {
            tracing::error!("lake writer stopped: a scored transaction was not queued");
        }
    }

    pub fn label(&self, row: Label) {
        self.metrics.writer_pending.inc();
        if self.tx.send(Message::Label(row)).is_err() {
            tracing::error!("lake writer stopped: a label was not queued");
        }
    }

    /// Commits everything queued so far; returns when it is in the lake (or the writer gave up).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Commits can wait a few milliseconds; requests should not: on Linux the writer thread gets
/// a lower scheduling priority (nice 10), so on a busy machine it takes the idle CPU.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread (who = 0 is the caller on Linux); no memory
    // is touched. Failure only leaves the default priority.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

#[derive(Default)]
struct Buffer {
    /// Scored rows whose transaction is not committed yet.
    scored: Vec<Scored>,
    /// Scored rows whose transaction is committed but whose prediction is not.
    predictions: Vec<Scored>,
    labels: Vec<Label>,
}

impl Buffer {
    fn len(&self) -> usize {
        self.scored.len() + self.predictions.len() + self.labels.len()
    }
}

/// How long the writer lets rows gather between two looks at its channel. Waiting on the
/// channel itself woke this thread once per row: at 40k scored rows/s that was 40k
/// cross-thread wake-ups a second, paid by the request thread (the wake) and by this one (a
/// timer and a park per row): a fifth of a core in the profile, and the scheduler's switches
/// landed in the requests' tail. Now the channel wakes it at most once per gather; a flush
/// request waits at most this much longer.
const GATHER: Duration = Duration::from_millis(10);

/// Messages taken off the channel at once.
const TAKE: usize = 4096;

/// How many flush intervals a row recorded by another replica waits before its commit. The
/// first replica commits it within one interval (plus the commit's own time) of answering,
/// and it answered before this one; so after two, the lake check at commit finds its row and
/// this writer drops the copy. Committing at once wrote both copies whenever this replica's
/// timer fired first (seen in the compose test: a retry answered by the second replica 0.2 s
/// after the first). If that replica died before committing, the row lands here, later.
/// Limit: a first replica whose commits take longer than an interval still races this one.
const HOLD_FLUSHES: u32 = 2;

async fn run(
    lake: Lake,
    config: WriterConfig,
    mut rx: mpsc::UnboundedReceiver<Message>,
    metrics: Arc<Metrics>,
) {
    let mut buf = Buffer::default();
    let mut tables = Tables::default();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut backoff = Duration::from_millis(200);
    let mut next_flush = Instant::now() + config.flush_interval;
    let mut messages = Vec::with_capacity(TAKE);
    let hold = config.flush_interval * HOLD_FLUSHES;
    // Rows recorded by another replica, with the time each may be committed, oldest first.
    let mut held: std::collections::VecDeque<(Instant, Scored)> = Default::default();
    loop {
        let timeout = next_flush.saturating_duration_since(Instant::now());
        // 0 only when every sender is gone and the channel is empty.
        let closed = matches!(
            tokio::time::timeout(timeout, rx.recv_many(&mut messages, TAKE)).await,
            Ok(0)
        );
        for message in messages.drain(..) {
            match message {
                Message::Scored(s) => buf.scored.push(*s),
                Message::Elsewhere(s) => held.push_back((Instant::now() + hold, *s)),
                Message::Label(l) => buf.labels.push(l),
                Message::Flush(done) => {
                    waiters.push(done);
                    next_flush = Instant::now();
                }
            }
        }
        if closed {
            // Shutting down: the held rows too, once their hold is over (at most `hold`).
            if let Some(&(last, _)) = held.back() {
                tokio::time::sleep_until(last.into()).await;
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, s)) = held.pop_front() {
                buf.scored.push(s);
            }
        }
        let due = Instant::now() >= next_flush || buf.len() >= config.flush_rows;
        if (due || closed) && (buf.len() > 0 || !waiters.is_empty()) {
            match commit(&lake, &config, &mut tables, &mut buf, &metrics).await {
                Ok(()) => {
                    backoff = Duration::from_millis(200);
                    for w in waiters.drain(..) {
                        let _ = w.send(());
                    }
                    next_flush = Instant::now() + config.flush_interval;
                }
                Err(e) => {
                    metrics.writer_failures.inc();
                    tracing::error!(error = %e, pending = buf.len(), retry_in_ms = backoff.as_millis() as u64, "lake commit failed; will retry");
                    next_flush = Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    if closed {
                        // Shutting down: a few more attempts, then give up loudly.
                        for _ in 0..3 {
                            tokio::time::sleep(backoff).await;
                            if commit(&lake, &config, &mut tables, &mut buf, &metrics)
                                .await
                                .is_ok()
                            {
                                break;
                            }
                        }
                        if buf.len() > 0 {
                            tracing::error!(
                                lost = buf.len(),
                                "lake writer stopped with rows it could not commit"
                            );
                        }
                    }
                }
            }
        } else if due {
            next_flush = Instant::now() + config.flush_interval;
        }
        if closed {
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
            return;
        }
        if rx.is_empty() {
            tokio::time::sleep(GATHER).await;
        }
    }
}

/// The tables as of this writer's last commit: loading a table replays its log, which costs
/// more than the commit itself once the table has many files, so the writer keeps the state
/// each commit returns (a commit by another process is picked up by Delta's own rebase).
#[derive(Default)]
struct Tables(std::collections::HashMap<&'static str, deltalake::DeltaTable>);

impl Tables {
    /// The table as of now: commits by other processes since ours (an ingest) are read
    /// incrementally, so a check against it sees their rows.
    async fn current(&mut self, lake: &Lake, def: &TableDef) -> Result<&deltalake::DeltaTable> {
        match self.0.entry(def.name) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let table = e.into_mut();
                table.update_incremental(None).await?;
                Ok(&*table)
            }
            std::collections::hash_map::Entry::Vacant(e) => Ok(&*e.insert(lake.table(def).await?)),
        }
    }

    async fn append(
        &mut self,
        lake: &Lake,
        def: &TableDef,
        batches: Vec<RecordBatch>,
        operation: &str,
    ) -> Result<()> {
        let table = match self.0.remove(def.name) {
            Some(t) => t,
            None => lake.table(def).await?,
        };
        let write = table
            .write(batches)
            .with_save_mode(deltalake::protocol::SaveMode::Append)
            .with_commit_properties(fraudlake_pipeline::lake::commit_note(operation));
        let table = fraudlake_pipeline::lake::evolve(def, write).await?;
        // Kept only after a successful commit: a failure reloads the table next time.
        self.0.insert(def.name, table);
        Ok(())
    }
}

/// tx_ids among `rows` that `table` already holds: one query over the days the rows fall on
/// (partition pruning) and their tx_id range (file statistics), reading only `tx_id`.
pub async fn existing_tx_ids(
    table: &deltalake::DeltaTable,
    rows: &[Transaction],
) -> Result<std::collections::HashSet<i64>> {
    use deltalake::datafusion::prelude::{col, lit};
    use deltalake::datafusion::scalar::ScalarValue;
    let mut out = std::collections::HashSet::new();
    let (Some(min), Some(max)) = (
        rows.iter().map(|r| r.tx_id).min(),
        rows.iter().map(|r| r.tx_id).max(),
    ) else {
        return Ok(out);
    };
    let days: std::collections::BTreeSet<i32> = rows.iter().map(tx_date).collect();
    let ctx = fraudlake_pipeline::lake::new_session();
    fraudlake_pipeline::lake::register(&ctx, TRANSACTIONS.name, table).await?;
    let filter = col("tx_date")
        .in_list(
            days.into_iter()
                .map(|d| lit(ScalarValue::Date32(Some(d))))
                .collect(),
            false,
        )
        .and(col("tx_id").between(lit(min), lit(max)));
    let batches = ctx
        .table(TRANSACTIONS.name)
        .await?
        .filter(filter)?
        .select_columns(&["tx_id"])?
        .collect()
        .await?;
    for b in &batches {
        out.extend(b.column(0).as_primitive::<Int64Type>().iter().flatten());
    }
    Ok(out)
}

pub fn tx_date(tx: &Transaction) -> i32 {
    tx.tx_ts_us.div_euclid(MICROS_PER_DAY) as i32
}

/// Drops rows whose tx_id `transactions` already holds, or that repeat an earlier row of the
/// buffer (with their predictions: the lake has that transaction's row already).
async fn drop_existing(
    lake: &Lake,
    tables: &mut Tables,
    buf: &mut Buffer,
    metrics: &Metrics,
) -> Result<()> {
    let table = tables.current(lake, &TRANSACTIONS).await?;
    let txs: Vec<Transaction> = buf.scored.iter().map(|s| s.tx).collect();
    let existing = existing_tx_ids(table, &txs).await?;
    let mut seen = std::collections::HashSet::with_capacity(buf.scored.len());
    let before = buf.scored.len();
    buf.scored
        .retain(|s| !existing.contains(&s.tx.tx_id) && seen.insert(s.tx.tx_id));
    let dropped = before - buf.scored.len();
    if dropped > 0 {
        tracing::info!(
            rows = dropped,
            "scored transactions already in the lake are not written again"
        );
        metrics.writer_duplicates.inc_by(dropped as u64);
        metrics.writer_pending.sub(dropped as i64);
    }
    Ok(())
}

/// Commits the buffer: transactions, then predictions, then labels (one commit each). A table
/// that committed is emptied from the buffer, so a retry never writes a row twice.
async fn commit(
    lake: &Lake,
    config: &WriterConfig,
    tables: &mut Tables,
    buf: &mut Buffer,
    metrics: &Metrics,
) -> Result<()> {
    let now_us = chrono::Utc::now().timestamp_micros();
    if config.skip_existing && !buf.scored.is_empty() {
        drop_existing(lake, tables, buf, metrics).await?;
    }
    if !buf.scored.is_empty() {
        let mut cols = TransactionColumns::default();
        for s in &buf.scored {
            cols.tx_id.push(s.tx.tx_id);
            cols.tx_ts_us.push(s.tx.tx_ts_us);
            cols.customer_id.push(s.tx.customer_id);
            cols.terminal_id.push(s.tx.terminal_id);
            cols.amount.push(s.tx.amount);
        }
        let batches = cols.into_batches(now_us, 65_536)?;
        let started = Instant::now();
        // Transactions first: a prediction never refers to a transaction the lake lacks.
        tables
            .append(lake, &TRANSACTIONS, batches, "serve: scored transactions")
            .await?;
        metrics
            .writer_commit
            .with_label_values(&["transactions"])
            .observe(started.elapsed().as_secs_f64());
        // The transactions are in: from here only their predictions are retried.
        buf.predictions.append(&mut buf.scored);
    }
    if !buf.predictions.is_empty() {
        let started = Instant::now();
        let batch = predictions_batch(&buf.predictions)?;
        tables
            .append(lake, &PREDICTIONS, vec![batch], "serve: predictions")
            .await?;
        metrics
            .writer_commit
            .with_label_values(&["predictions"])
            .observe(started.elapsed().as_secs_f64());
        metrics.writer_pending.sub(buf.predictions.len() as i64);
        buf.predictions.clear();
    }
    if !buf.labels.is_empty() {
        let mut cols = LabelColumns::default();
        for l in &buf.labels {
            cols.tx_id.push(l.tx_id);
            cols.is_fraud.push(l.is_fraud);
            cols.fraud_scenario.push(l.fraud_scenario);
            cols.labeled_at_us.push(l.labeled_at_us);
            cols.provenance.push(l.provenance.clone());
        }
        let started = Instant::now();
        tables
            .append(
                lake,
                &LABELS,
                vec![cols.into_batch("api")?],
                "serve: feedback labels",
            )
            .await?;
        metrics
            .writer_commit
            .with_label_values(&["labels"])
            .observe(started.elapsed().as_secs_f64());
        metrics.writer_pending.sub(buf.labels.len() as i64);
        buf.labels.clear();
    }
    Ok(())
}

/// Builds one `predictions` batch.
pub fn predictions_batch(rows: &[Scored]) -> Result<RecordBatch> {
    let mut features = ListBuilder::new(Float64Builder::new());
    for r in rows {
        features.values().append_slice(&r.features);
        features.append(true);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.tx.tx_id),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.tx.tx_ts_us))
                .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.scored_at_us))
                .with_timezone("UTC"),
        ),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.model_version),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &*r.feature_set),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.risk_score),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.decision),
        )),
        Arc::new(features.finish()),
        Arc::new(Date32Array::from_iter_values(
            rows.iter().map(|r| tx_date(&r.tx)),
        )),
        Arc::new(
            rows.iter()
                .map(|r| r.roles.decider.map(Decider::as_str))
                .collect::<StringArray>(),
        ),
    ];
    columns.extend(role_columns(rows, |r| r.champion));
    columns.extend(role_columns(rows, |r| r.canary));
    columns.extend(role_columns(rows, |r| r.shadow));
    Ok(RecordBatch::try_new(predictions_schema(), columns)?)
}

/// The `<role>_version` and `<role>_score` columns of one role (`of` picks it).
fn role_columns(rows: &[Scored], of: impl Fn(&RoleScores) -> Option<ModelScore>) -> [ArrayRef; 2] {
    let version: ArrayRef = Arc::new(
        rows.iter()
            .map(|r| of(&r.roles).map(|m| m.version))
            .collect::<Int64Array>(),
    );
    let score: ArrayRef = Arc::new(
        rows.iter()
            .map(|r| of(&r.roles).map(|m| m.score))
            .collect::<Float64Array>(),
    );
    [version, score]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(tx_id: i64, day: i64) -> Scored {
        Scored {
            tx: Transaction {
                tx_id,
                tx_ts_us: 1_527_811_200_000_000 + day * MICROS_PER_DAY + tx_id * 1_000_000,
                customer_id: 1,
                terminal_id: 2,
                amount: 3.0,
            },
            scored_at_us: 0,
            model_version: 1,
            feature_set: Arc::from("test"),
            risk_score: 0.5,
            decision: "review",
            features: vec![1.0, 2.0],
            roles: RoleScores::decided_only(
                Decider::Champion,
                ModelScore {
                    version: 1,
                    score: 0.5,
                },
            ),
        }
    }

    /// (tx_id, rows) of a table.
    async fn counts(lake: &Lake, table: &str) -> Vec<(i64, i64)> {
        let ctx = lake.session(&[]).await.unwrap();
        let batches = ctx
            .sql(&format!(
                "SELECT tx_id, COUNT(*) FROM {table} GROUP BY tx_id ORDER BY tx_id"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in &batches {
            let ids = b.column(0).as_primitive::<Int64Type>();
            let n = b.column(1).as_primitive::<Int64Type>();
            out.extend(ids.values().iter().copied().zip(n.values().iter().copied()));
        }
        out
    }

    /// A lake whose `predictions` predate the rollout's columns: the next write adds them
    /// (schema evolution), the old rows read as null and the new ones carry every role's score.
    #[tokio::test]
    async fn predictions_written_before_the_rollout_columns_gain_them() {
        use deltalake::arrow::array::Array;
        use fraudlake_pipeline::columns;
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&dir.path().join("lake").display().to_string()).unwrap();
        let full = predictions_schema();
        let old_width = full.index_of("role").unwrap();
        let before: Vec<usize> = (0..old_width).collect();
        let old_schema = full.project(&before).unwrap();
        let table = lake
            .create(
                PREDICTIONS.name,
                &old_schema,
                PREDICTIONS.partition_by,
                "before #19",
            )
            .await
            .unwrap();
        let old_rows = predictions_batch(&[scored(1, 0)])
            .unwrap()
            .project(&before)
            .unwrap();
        table
            .write(vec![old_rows])
            .with_save_mode(deltalake::protocol::SaveMode::Append)
            .await
            .unwrap();
        let mut canary = scored(2, 0);
        canary.roles = RoleScores {
            decider: Some(Decider::Canary),
            champion: Some(ModelScore {
                version: 1,
                score: 0.25,
            }),
            canary: Some(ModelScore {
                version: 2,
                score: 0.5,
            }),
            shadow: Some(ModelScore {
                version: 3,
                score: 0.75,
            }),
        };
        lake.append(
            &PREDICTIONS,
            vec![predictions_batch(&[canary]).unwrap()],
            "after #19",
        )
        .await
        .unwrap();
        let ctx = lake.session(&[]).await.unwrap();
        let batches = ctx
            .sql(
                "SELECT tx_id, role, champion_score, canary_version, shadow_score \
                 FROM predictions ORDER BY tx_id",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rows =
            deltalake::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(rows.num_rows(), 2);
        let role = columns::utf8(rows.column(1)).unwrap();
        let champion = columns::f64s(rows.column(2)).unwrap();
        let canary_version = columns::i64s(rows.column(3)).unwrap();
        let shadow = columns::f64s(rows.column(4)).unwrap();
        assert!(role.is_null(0) && champion.is_null(0) && shadow.is_null(0));
        assert_eq!(role.value(1), "canary");
        assert_eq!(champion.value(1), 0.25);
        assert_eq!(canary_version.value(1), 2);
        assert_eq!(shadow.value(1), 0.75);
    }

    /// Two replicas answered tx 7 (the second a retry, recorded in the shared store by the
    /// first); the second writer holds its copy for two flush intervals, by when the first
    /// has committed (here: an append standing in for it), and drops it. Tx 8's first replica
    /// died before committing: the held copy lands. Tx 9 is held at shutdown, which waits for
    /// its hold and commits it.
    #[tokio::test]
    async fn a_row_another_replica_recorded_waits_and_lands_once() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&dir.path().join("lake").display().to_string()).unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let interval = Duration::from_millis(300);
        let (writer, thread) = LakeWriter::start(
            lake.clone(),
            WriterConfig {
                flush_rows: 1_000,
                flush_interval: interval,
                skip_existing: true,
            },
            metrics.clone(),
        )
        .unwrap();
        writer.scored(scored(1, 0));
        writer.scored_elsewhere(scored(7, 0));
        writer.scored_elsewhere(scored(8, 0));
        writer.flush().await;
        assert_eq!(
            counts(&lake, "transactions").await,
            vec![(1, 1)],
            "held rows wait for their hold"
        );
        // The first replica's commit of tx 7, within its flush interval.
        let s = scored(7, 0);
        let mut cols = TransactionColumns::default();
        cols.tx_id.push(7);
        cols.tx_ts_us.push(s.tx.tx_ts_us);
        cols.customer_id.push(1);
        cols.terminal_id.push(2);
        cols.amount.push(3.0);
        lake.table(&TRANSACTIONS)
            .await
            .unwrap()
            .write(cols.into_batches(0, 100).unwrap())
            .with_save_mode(deltalake::protocol::SaveMode::Append)
            .await
            .unwrap();
        tokio::time::sleep(interval * HOLD_FLUSHES + Duration::from_millis(100)).await;
        writer.flush().await;
        assert_eq!(
            counts(&lake, "transactions").await,
            vec![(1, 1), (7, 1), (8, 1)]
        );
        assert_eq!(counts(&lake, "predictions").await, vec![(1, 1), (8, 1)]);
        assert_eq!(metrics.writer_duplicates.get(), 1);
        writer.scored_elsewhere(scored(9, 0));
        drop(writer);
        thread.join().unwrap();
        assert_eq!(
            counts(&lake, "transactions").await,
            vec![(1, 1), (7, 1), (8, 1), (9, 1)]
        );
        assert_eq!(metrics.writer_pending.get(), 0);
    }

    /// The lake already holds tx 1-4 (an ingest); the writer gets 2 and 3 again, 5 and 6 new,
    /// 6 twice, then 5 again after committing it. Each tx_id lands once; without the check
    /// (the writer before it) rows repeat, so the check is what makes the difference.
    #[tokio::test]
    async fn a_tx_id_the_lake_holds_is_not_written_again() {
        for skip_existing in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let lake = Lake::open(&dir.path().join("lake").display().to_string()).unwrap();
            let mut cols = TransactionColumns::default();
            for (id, day) in [(1, 0), (2, 0), (3, 1), (4, 1)] {
                let s = scored(id, day);
                cols.tx_id.push(id);
                cols.tx_ts_us.push(s.tx.tx_ts_us);
                cols.customer_id.push(1);
                cols.terminal_id.push(2);
                cols.amount.push(3.0);
            }
            lake.table(&TRANSACTIONS)
                .await
                .unwrap()
                .write(cols.into_batches(0, 100).unwrap())
                .with_save_mode(deltalake::protocol::SaveMode::Append)
                .await
                .unwrap();
            let metrics = Arc::new(Metrics::new().unwrap());
            let (writer, thread) = LakeWriter::start(
                lake.clone(),
                WriterConfig {
                    flush_rows: 1_000,
                    flush_interval: Duration::from_secs(3_600),
                    skip_existing,
                },
                metrics.clone(),
            )
            .unwrap();
            for (id, day) in [(2, 0), (3, 1), (5, 0), (6, 2), (6, 2)] {
                writer.scored(scored(id, day));
            }
            writer.flush().await;
            writer.scored(scored(5, 0));
            writer.flush().await;
            drop(writer);
            thread.join().unwrap();
            let transactions = counts(&lake, "transactions").await;
            if skip_existing {
                assert_eq!(
                    transactions,
                    vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)]
                );
                assert_eq!(counts(&lake, "predictions").await, vec![(5, 1), (6, 1)]);
                assert_eq!(metrics.writer_duplicates.get(), 4);
                assert_eq!(metrics.writer_pending.get(), 0);
            } else {
                assert!(
                    transactions.iter().any(|&(_, n)| n > 1),
                    "without the check rows repeat: {transactions:?}"
                );
            }
        }
    }
}
