//! The online engine: runs a compiled [`FeaturePlan`] one transaction (or one ordered batch)
//! at a time. Row-level steps are DataFusion physical expressions; window steps read and
//! update per-entity histories in an [`EntityStore`]. Event-time based throughout, so
//! replaying history reproduces the offline values exactly.

use std::collections::{HashMap, VecDeque};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
    TimestampNanosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Float64Type, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampNanosecondType,
};
use deltalake::datafusion::physical_plan::PhysicalExpr;
use fraudlake_pipeline::{Error, Result};

use super::clock::{Ahead, EventClock, EventTimeRules, SkewPolicy, Timing};
use super::row::{self, Defer, InputColumn, RowProgram, RowStep, Value};
use super::sharded::Sharded;
use super::state::{EntityKey, EntityStore, MemoryStore};
use crate::compile::{sample_stddev, AggKind, FeaturePlan, Step, WindowSpec};
use crate::definition::event_time_ns;

/// A transaction as the online engine receives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transaction {
    pub tx_id: i64,
    pub tx_ts_us: i64,
    pub customer_id: i64,
    pub terminal_id: i64,
    pub amount: f64,
}

impl Transaction {
    pub fn event_time_ns(&self) -> i64 {
        event_time_ns(self.tx_ts_us, self.tx_id)
    }
}

/// The windows of one step that share their entity columns: one history per entity value
/// (a customer, or a customer-terminal pair).
#[derive(Debug, Clone)]
struct Group {
    id: u32,
    /// The entity columns (one, or two for a pair) in the step's input row.
    partition: Vec<usize>,
    /// Indexes into the step's windows.
    windows: Vec<usize>,
    horizon_ns: i64,
    /// History kept behind an entity's newest event: the horizon plus the out-of-order
    /// tolerance (the max event skew), so an event that late still sees its whole frames.
    keep_ns: i64,
    /// Distinct frames `(start_ns, end_ns)` of the group's windows, and each window's frame.
    frames: Vec<(i64, i64)>,
    frame_of: Vec<usize>,
    /// Stored argument columns: windows with the same argument share one (AVG and SUM of
    /// `amount` over three frames store `amount` once), COUNT(*) stores none.
    slot_of: Vec<Option<usize>>,
    /// For each slot, a window whose argument fills it.
    slot_source: Vec<usize>,
    slot_keys: Vec<String>,
}

impl Group {
    fn add(&mut self, index: usize, w: &WindowSpec) {
        self.windows.push(index);
        self.horizon_ns = self.horizon_ns.max(w.start_ns);
        let frame = (w.start_ns, w.end_ns);
        let f = match self.frames.iter().position(|x| *x == frame) {
            Some(f) => f,
            None => {
                self.frames.push(frame);
                self.frames.len() - 1
            }
        };
        self.frame_of.push(f);
        let slot = w.arg.as_ref().map(|arg| {
            let key = arg.to_string();
            match self.slot_keys.iter().position(|k| *k == key) {
                Some(s) => s,
                None => {
                    self.slot_keys.push(key);
                    self.slot_source.push(index);
                    self.slot_keys.len() - 1
                }
            }
        });
        self.slot_of.push(slot);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Compute the windows (the transaction included where the frame says so) and store it.
    Apply,
    /// Compute without storing.
    Peek,
    /// Compute for a transaction already stored (a retry): it is not added a second time.
    Recompute,
    /// Only recompute the stored aggregate arguments of known transactions (a label arrived).
    Relabel,
}

enum Store<'a, S> {
    Read(&'a S),
    Write(&'a mut S),
}

impl<S: EntityStore> Store<'_, S> {
    fn get(&self) -> &S {
        match self {
            Store::Read(s) => s,
            Store::Write(s) => s,
        }
    }

    fn reborrow(&mut self) -> Store<'_, S> {
        match self {
            Store::Read(s) => Store::Read(s),
            Store::Write(s) => Store::Write(s),
        }
    }
}

/// What we remember of a recent transaction so a late label can update its aggregates and a
/// retry gets the same answer (or a conflict when its body differs).
#[derive(Debug, Clone, Copy)]
struct Recent {
    /// As stored (a clamped time replaced).
    tx: Transaction,
    /// The time the request gave (differs from `tx.tx_ts_us` when clamped).
    requested_ts_us: i64,
    is_fraud: bool,
    answer: Option<Answer>,
}

/// The answer given for a transaction, kept for retries. The engine does not interpret it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    pub risk_score: f64,
    pub model_version: i64,
    /// The caller's codes (the server's decision, time flag and which model decided).
    pub decision: u8,
    pub time_flag: u8,
    pub role: u8,
}

/// One window group as a shared store needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: u32,
    /// The longest frame's reach behind a transaction.
    pub horizon_ns: i64,
    /// History kept behind an entity's newest event (horizon plus the lateness tolerance).
    pub keep_ns: i64,
    /// Stored arguments per event.
    pub width: usize,
}

/// One entity's share of applying a transaction: the event its history gains.
#[derive(Debug, Clone, PartialEq)]
pub struct StateWrite {
    pub key: EntityKey,
    pub time_ns: i64,
    pub tx_id: i64,
    pub args: Vec<Option<f64>>,
}

/// A store that keeps nothing and records the writes (see [`OnlineEngine::writes_for`]).
#[derive(Debug, Default)]
struct Recorder {
    writes: Vec<StateWrite>,
}

impl EntityStore for Recorder {
    fn history(&self, _key: EntityKey) -> Option<&super::state::History> {
        None
    }
    fn insert(&mut self, key: EntityKey, time_ns: i64, tx_id: i64, args: &[Option<f64>], _: i64) {
        self.writes.push(StateWrite {
            key,
            time_ns,
            tx_id,
            args: args.to_vec(),
        });
    }
    fn update_args(&mut self, _: EntityKey, _: i64, _: i64, _: &[Option<f64>]) -> bool {
        false
    }
    fn evict(&mut self, _: u32, _: i64) {}
    fn entities(&self) -> usize {
        0
    }
    fn events(&self) -> usize {
        0
    }
}

/// Whether a transaction id was seen before, as far as this engine remembers (the lookback).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Seen {
    New,
    /// The same transaction again: its stored form and the answer given, once recorded.
    Retry {
        stored: Transaction,
        answer: Option<Answer>,
    },
    /// The same tx_id with another body; names the first field that differs.
    Conflict {
        field: &'static str,
    },
}

/// Most labels we hold for transactions not seen yet (labels arriving before their
/// transaction); beyond this the oldest are dropped with a warning.
const MAX_PENDING_LABELS: usize = 1_000_000;

/// Transactions between two sweeps of idle entities.
pub const SWEEP_EVERY: usize = 1 << 16;

/// Online feature computation over per-entity state.
pub struct OnlineEngine<S: EntityStore = MemoryStore> {
    plan: Arc<FeaturePlan>,
    groups: Vec<Vec<Group>>,
    store: S,
    /// In many maps: see [`Sharded`] (one map's growth stalled requests).
    recent: Sharded<Recent>,
    recent_order: VecDeque<(i64, i64)>,
    pending_labels: FastMap<i64, bool>,
    pending_order: VecDeque<i64>,
    clock: EventClock,
    since_sweep: usize,
    /// The plan on scalars, when it compiles for the row path (else Arrow serves).
    rows: Option<RowProgram>,
    row_path: RowPath,
}

/// Which path computes a batch of transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowPath {
    /// The row path for small batches (a request), Arrow's vectorised kernels for large ones
    /// (a replay of the lake), where they are faster (measured: 2.0 vs 3.9 us per
    /// transaction over the handbook's 1.75 M).
    Auto,
    /// The row path whenever the plan compiles for it (`features parity` proves it so).
    Always,
    /// Arrow only: the reference.
    Never,
}

/// The largest batch the row path takes under [`RowPath::Auto`].
pub const ROW_PATH_MAX_BATCH: usize = 32;

impl OnlineEngine<MemoryStore> {
    /// An engine with in-memory state.
    pub fn new(plan: Arc<FeaturePlan>) -> Self {
        Self::with_store(plan, MemoryStore::default())
    }
}

impl<S: EntityStore> OnlineEngine<S> {
    /// An engine over any state store.
    pub fn with_store(plan: Arc<FeaturePlan>, store: S) -> Self {
        let mut groups = Vec::new();
        let mut next_id = 0u32;
        for step in &plan.steps {
            let mut step_groups: Vec<Group> = Vec::new();
            if let Step::Window { windows, .. } = step {
                for (i, w) in windows.iter().enumerate() {
                    if !step_groups
                        .iter()
                        .any(|g| g.partition == w.partition_indexes)
                    {
                        step_groups.push(Group {
                            id: next_id,
                            partition: w.partition_indexes.clone(),
                            windows: Vec::new(),
                            horizon_ns: 0,
                            keep_ns: 0,
                            frames: Vec::new(),
                            frame_of: Vec::new(),
                            slot_of: Vec::new(),
                            slot_source: Vec::new(),
                            slot_keys: Vec::new(),
                        });
                        next_id += 1;
                    }
                    if let Some(g) = step_groups
                        .iter_mut()
                        .find(|g| g.partition == w.partition_indexes)
                    {
                        g.add(i, w);
                    }
                }
            }
            groups.push(step_groups);
        }
        let mut engine = OnlineEngine {
            plan,
            groups,
            store,
            recent: Sharded::default(),
            recent_order: VecDeque::new(),
            pending_labels: FastMap::default(),
            pending_order: VecDeque::new(),
            clock: EventClock::new(EventTimeRules::default()),
            since_sweep: 0,
            rows: None,
            row_path: RowPath::Auto,
        };
        engine.rows = RowProgram::compile(&engine.plan);
        if engine.rows.is_none() {
            tracing::debug!(
                "the feature SQL uses a construct the row path does not compile: the online \
                 engine runs it on one-row Arrow batches"
            );
        }
        engine.set_event_time_rules(EventTimeRules::default());
        engine
    }

    /// Sets the event-time rules (see [`super::clock`]); call before applying events.
    pub fn set_event_time_rules(&mut self, rules: EventTimeRules) {
        let watermark = self.clock.watermark_ns();
        self.clock = EventClock::new(rules);
        if let Some(w) = watermark {
            self.clock.advance(w);
        }
        let grace = self.clock.rules().max_skew_ns;
        for g in self.groups.iter_mut().flatten() {
            g.keep_ns = g.horizon_ns.saturating_add(grace);
        }
    }

    /// The event-time rules in force.
    pub fn event_time_rules(&self) -> &EventTimeRules {
        self.clock.rules()
    }

    /// The event-time watermark (ns), once an event was applied.
    pub fn watermark_ns(&self) -> Option<i64> {
        self.clock.watermark_ns()
    }

    /// Times the watermark jumped because most recent traffic was ahead of it.
    pub fn watermark_jumps(&self) -> u64 {
        self.clock.jumps()
    }

    /// Judges the event times of an ordered batch of new transactions, each against the
    /// watermark as it will be once those before it are applied. With the refuse policy, the
    /// first one too far ahead is returned as an error (nothing is applied; the caller refuses
    /// the request); with the clamp policy such a transaction is moved to the watermark's time.
    /// Ahead arrivals count towards the quorum that lets the watermark follow traffic after a
    /// gap.
    pub fn admit(&mut self, txs: &mut [Transaction]) -> std::result::Result<Vec<Timing>, Ahead> {
        let mut watermark = self.clock.watermark_ns().unwrap_or(i64::MIN);
        let mut timings = Vec::with_capacity(txs.len());
        let mut refused = None;
        for (index, tx) in txs.iter_mut().enumerate() {
            let t = tx.event_time_ns();
            match self.clock.judge(t, watermark) {
                Some(timing) => {
                    timings.push(timing);
                    watermark = watermark.max(t);
                }
                None => {
                    // The watermark may have jumped by quorum with this arrival.
                    let judged = watermark;
                    watermark = watermark.max(self.clock.watermark_ns().unwrap_or(i64::MIN));
                    match self.clock.rules().policy {
                        SkewPolicy::Refuse => {
                            refused.get_or_insert(Ahead {
                                index,
                                tx_ts_us: tx.tx_ts_us,
                                watermark_us: judged.div_euclid(1000),
                                max_skew_ns: self.clock.rules().max_skew_ns,
                            });
                            timings.push(Timing::OnTime);
                        }
                        SkewPolicy::Clamp => {
                            let requested_ts_us = tx.tx_ts_us;
                            tx.tx_ts_us = watermark.div_euclid(1000);
                            timings.push(Timing::Clamped { requested_ts_us });
                        }
                    }
                }
            }
        }
        match refused {
            Some(ahead) => Err(ahead),
            None => Ok(timings),
        }
    }

    /// Whether `tx` (as requested) was seen before: new, a retry of the same transaction, or
    /// a conflicting reuse of its tx_id.
    pub fn seen(&self, tx: &Transaction) -> Seen {
        let Some(r) = self.recent.get(&tx.tx_id) else {
            return Seen::New;
        };
        let field = if r.requested_ts_us != tx.tx_ts_us {
            "tx_ts"
        } else if r.tx.customer_id != tx.customer_id {
            "customer_id"
        } else if r.tx.terminal_id != tx.terminal_id {
            "terminal_id"
        } else if r.tx.amount != tx.amount {
            "amount"
        } else {
            return Seen::Retry {
                stored: r.tx,
                answer: r.answer,
            };
        };
        Seen::Conflict { field }
    }

    /// Keeps the answer given for a transaction, for its retries (while it is remembered).
    pub fn record_answer(&mut self, tx_id: i64, answer: Answer) {
        if let Some(r) = self.recent.get_mut(&tx_id) {
            r.answer.get_or_insert(answer);
        }
    }

    /// Remembers the time a request gave for a transaction stored at a clamped time, so its
    /// retries compare equal.
    pub fn record_requested_ts(&mut self, tx_id: i64, requested_ts_us: i64) {
        if let Some(r) = self.recent.get_mut(&tx_id) {
            r.requested_ts_us = requested_ts_us;
        }
    }

    pub fn plan(&self) -> &Arc<FeaturePlan> {
        &self.plan
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Number of entities (customers, terminals, ...) with history.
    pub fn entities(&self) -> usize {
        self.store.entities()
    }

    /// Drops history no window can reach any more (older than the watermark minus each window
    /// step's horizon and the out-of-order tolerance), including idle entities. Runs by itself
    /// every [`SWEEP_EVERY`] transactions; call it to force a sweep.
    pub fn evict_expired(&mut self) {
        let Some(watermark) = self.clock.watermark_ns() else {
            return;
        };
        for group in self.groups.iter().flatten() {
            self.store
                .evict(group.id, watermark.saturating_sub(group.keep_ns));
        }
        self.since_sweep = 0;
    }

    /// Whether a transaction id was applied and is still within the lookback.
    pub fn knows(&self, tx_id: i64) -> bool {
        self.recent.contains_key(&tx_id)
    }

    /// Features of `tx` as if it were applied now, without changing state.
    pub fn features_for(&self, tx: &Transaction) -> Result<Vec<f64>> {
        let out = self.run_with(
            Store::Read(&self.store),
            std::slice::from_ref(tx),
            Mode::Peek,
        )?;
        Ok(out.into_features(&self.plan)?.pop().unwrap_or_default())
    }

    /// Features of an ordered batch, each transaction seeing the ones before it, then stores
    /// them all. Returns the full output rows (keys and features) of the feature SQL.
    /// A transaction already applied is not stored twice: its features are computed as a peek.
    pub fn score_and_apply(&mut self, txs: &[Transaction]) -> Result<RecordBatch> {
        self.score_and_apply_output(txs)?
            .into_batch(self.rows.as_ref())
    }

    /// As [`OnlineEngine::score_and_apply`], but only the model inputs of each transaction,
    /// without building Arrow arrays (the scoring server's path).
    pub fn score_rows(&mut self, txs: &[Transaction]) -> Result<Vec<Vec<f64>>> {
        self.score_and_apply_output(txs)?.into_features(&self.plan)
    }

    fn score_and_apply_output(&mut self, txs: &[Transaction]) -> Result<Output> {
        let fresh: Vec<bool> = txs
            .iter()
            .map(|t| !self.recent.contains_key(&t.tx_id))
            .collect();
        if fresh.iter().all(|f| *f) {
            let out = self.run_write(txs, Mode::Apply)?;
            for tx in txs {
                self.remember(*tx);
            }
            return Ok(out);
        }
        // Rare path (retries of the same tx_id): one at a time.
        let mut out = Vec::with_capacity(txs.len());
        for (tx, fresh) in txs.iter().zip(fresh) {
            let one = std::slice::from_ref(tx);
            if fresh {
                out.push(self.run_write(one, Mode::Apply)?);
                self.remember(*tx);
            } else {
                out.push(self.run_with(Store::Read(&self.store), one, Mode::Recompute)?);
            }
        }
        if out.iter().all(|o| matches!(o, Output::Rows(_))) {
            return Ok(Output::Rows(
                out.into_iter()
                    .flat_map(|o| match o {
                        Output::Rows(r) => r,
                        Output::Batch(_) => Vec::new(),
                    })
                    .collect(),
            ));
        }
        let batches = out
            .into_iter()
            .map(|o| o.into_batch(self.rows.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Output::Batch(deltalake::arrow::compute::concat_batches(
            &self.plan.output_schema,
            &batches,
        )?))
    }

    /// Whether transactions can be computed on scalars (the row path, see [`super::row`])
    /// rather than Arrow batches; false when the feature SQL uses a construct the row path
    /// does not reproduce exactly, or when turned off.
    pub fn row_path(&self) -> bool {
        self.rows.is_some() && self.row_path != RowPath::Never
    }

    /// Chooses the path (default [`RowPath::Auto`]); tests and `features parity` force one.
    pub fn set_row_path(&mut self, path: RowPath) {
        self.row_path = path;
    }

    /// The row program when this batch goes on the row path.
    fn program_for(&self, batch: usize) -> Option<&RowProgram> {
        program_for(self.row_path, self.rows.as_ref(), batch)
    }

    /// Stores one transaction in the state (its features are computed and dropped; use
    /// [`OnlineEngine::score_and_apply`] to get them).
    pub fn apply(&mut self, tx: &Transaction) -> Result<()> {
        self.score_and_apply(std::slice::from_ref(tx)).map(|_| ())
    }

    /// Applies a fraud label. Updates the delayed aggregates of the transaction's entities at
    /// the transaction's event time; a label for a transaction not seen yet is held until it
    /// arrives. Returns whether state changed now.
    pub fn apply_label(&mut self, tx_id: i64, is_fraud: bool) -> Result<bool> {
        let Some(recent) = self.recent.get_mut(&tx_id) else {
            // Unseen transactions are genuine until told otherwise: only a fraud label (or a
            // reversal of one held here) needs holding.
            if !is_fraud && !self.pending_labels.contains_key(&tx_id) {
                return Ok(false);
            }
            if self.pending_labels.insert(tx_id, is_fraud).is_none() {
                self.pending_order.push_back(tx_id);
            }
            while self.pending_order.len() > MAX_PENDING_LABELS {
                let Some(old) = self.pending_order.pop_front() else {
                    break;
                };
                if self.pending_labels.remove(&old).is_some() {
                    tracing::warn!(
                        tx_id = old,
                        "dropped a label held for an unseen transaction"
                    );
                }
            }
            return Ok(false);
        };
        if recent.is_fraud == is_fraud {
            return Ok(false);
        }
        recent.is_fraud = is_fraud;
        let tx = recent.tx;
        self.run_write(std::slice::from_ref(&tx), Mode::Relabel)?;
        Ok(true)
    }

    /// The window groups of the plan (one per window step and entity column), for a store
    /// that keeps their histories elsewhere.
    pub fn groups(&self) -> Vec<GroupInfo> {
        self.groups
            .iter()
            .flatten()
            .map(|g| GroupInfo {
                id: g.id,
                horizon_ns: g.horizon_ns,
                keep_ns: g.keep_ns,
                width: g.slot_keys.len(),
            })
            .collect()
    }

    /// The first window whose argument or entity is computed from another window's result,
    /// if any. A shared store computes a transaction's window arguments before it reads any
    /// history, so it serves only plans where none is (DataFusion makes one window step per
    /// entity; those are independent, as in sql/features.sql).
    pub fn window_over_window(&self) -> Option<String> {
        use deltalake::datafusion::physical_expr::utils::collect_columns;
        // Per column of the current step's input: whether it derives from a window.
        let mut derived: Vec<bool> = vec![false; self.plan.input_schema.fields().len()];
        let depends = |expr: &Arc<dyn PhysicalExpr>, derived: &[bool]| {
            collect_columns(expr)
                .iter()
                .any(|c| derived.get(c.index()).copied().unwrap_or(true))
        };
        for step in &self.plan.steps {
            match step {
                Step::Project { exprs, .. } => {
                    derived = exprs.iter().map(|e| depends(e, &derived)).collect();
                }
                Step::Window { windows, .. } => {
                    for w in windows {
                        let arg = w.arg.as_ref().is_some_and(|a| depends(a, &derived));
                        let entity = w
                            .partition_indexes
                            .iter()
                            .any(|&p| derived.get(p).copied().unwrap_or(true));
                        if arg || entity {
                            return Some(w.column.clone());
                        }
                    }
                    derived.extend(std::iter::repeat_n(true, windows.len()));
                }
            }
        }
        None
    }

    /// What applying `txs` would store, per transaction and entity, with their label taken
    /// as `is_fraud`: the first half of a shared store's round (the second is
    /// [`OnlineEngine::features_stored`]). Nothing here changes.
    pub fn writes_for(&self, txs: &[Transaction], is_fraud: bool) -> Result<Vec<Vec<StateWrite>>> {
        let mut recorder = Recorder::default();
        run(
            &self.plan,
            self.program_for(txs.len()),
            &self.groups,
            Store::Write(&mut recorder),
            txs,
            &|_: &Transaction| is_fraud,
            Mode::Apply,
        )?;
        let mut out: Vec<Vec<StateWrite>> = vec![Vec::new(); txs.len()];
        let index: FastMap<i64, usize> =
            txs.iter().enumerate().map(|(i, t)| (t.tx_id, i)).collect();
        for w in recorder.writes {
            match index.get(&w.tx_id) {
                Some(&i) => out[i].push(w),
                None => return Err(Error::invalid("a window wrote for an unknown tx_id")),
            }
        }
        Ok(out)
    }

    /// The output row of a transaction already stored in `store` (its histories, read back
    /// from a shared store, include it and whatever arrived before it).
    pub fn features_stored(
        &self,
        tx: &Transaction,
        is_fraud: bool,
        store: &MemoryStore,
    ) -> Result<RecordBatch> {
        run(
            &self.plan,
            self.program_for(1),
            &self.groups,
            Store::Read(store),
            std::slice::from_ref(tx),
            &|_: &Transaction| is_fraud,
            Mode::Recompute,
        )?
        .into_batch(self.rows.as_ref())
    }

    /// The output row of a transaction from itself alone, no history (a degraded answer when
    /// the shared store is out of reach): each window sees only this transaction.
    pub fn features_alone(&self, tx: &Transaction) -> Result<RecordBatch> {
        let empty = MemoryStore::default();
        run(
            &self.plan,
            self.program_for(1),
            &self.groups,
            Store::Read(&empty),
            std::slice::from_ref(tx),
            &|_: &Transaction| false,
            Mode::Peek,
        )?
        .into_batch(self.rows.as_ref())
    }

    /// Records transactions a shared store applied: this engine's watermark and its memory of
    /// recent tx_ids (retries, answers) follow them; its own store is not touched.
    pub fn note_applied(&mut self, txs: &[Transaction]) {
        for tx in txs {
            if !self.recent.contains_key(&tx.tx_id) {
                self.remember(*tx);
            }
        }
    }

    /// Moves the event-time watermark to at least `ns` (a shared store's watermark, read at
    /// start-up instead of replaying the lake).
    pub fn advance_watermark(&mut self, ns: i64) {
        self.clock.advance(ns);
    }

    fn remember(&mut self, tx: Transaction) {
        let is_fraud = self.pending_labels.remove(&tx.tx_id).unwrap_or(false);
        let t = tx.event_time_ns();
        self.recent.insert(
            tx.tx_id,
            Recent {
                tx,
                requested_ts_us: tx.tx_ts_us,
                is_fraud,
                answer: None,
            },
        );
        self.recent_order.push_back((t, tx.tx_id));
        self.clock.advance(t);
        let oldest = self
            .clock
            .watermark_ns()
            .unwrap_or(t)
            .saturating_sub(self.plan.lookback_ns);
        while let Some(&(time, id)) = self.recent_order.front() {
            if time >= oldest {
                break;
            }
            self.recent_order.pop_front();
            self.recent.remove(&id);
        }
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.evict_expired();
        }
    }

    fn is_fraud_of(&self, tx: &Transaction) -> bool {
        fraud_of(&self.recent, &self.pending_labels, tx)
    }

    /// Runs the plan reading `store`, each transaction with the label this engine knows.
    fn run_with(&self, store: Store<'_, S>, txs: &[Transaction], mode: Mode) -> Result<Output> {
        run(
            &self.plan,
            self.program_for(txs.len()),
            &self.groups,
            store,
            txs,
            &|t: &Transaction| self.is_fraud_of(t),
            mode,
        )
    }

    /// Runs the plan writing this engine's store.
    fn run_write(&mut self, txs: &[Transaction], mode: Mode) -> Result<Output> {
        let program = program_for(self.row_path, self.rows.as_ref(), txs.len());
        let (recent, pending) = (&self.recent, &self.pending_labels);
        run(
            &self.plan,
            program,
            &self.groups,
            Store::Write(&mut self.store),
            txs,
            &|t: &Transaction| fraud_of(recent, pending, t),
            mode,
        )
    }
}

fn program_for(path: RowPath, rows: Option<&RowProgram>, batch: usize) -> Option<&RowProgram> {
    match path {
        RowPath::Never => None,
        RowPath::Auto if batch > ROW_PATH_MAX_BATCH => None,
        RowPath::Auto | RowPath::Always => rows,
    }
}

/// The label a transaction has as far as the engine knows (held labels included).
fn fraud_of(recent: &Sharded<Recent>, pending: &FastMap<i64, bool>, tx: &Transaction) -> bool {
    recent
        .get(&tx.tx_id)
        .map(|r| r.is_fraud)
        .or_else(|| pending.get(&tx.tx_id).copied())
        .unwrap_or(false)
}

/// The view's columns for `txs`: the Arrow path's input.
fn input_batch_with(
    plan: &FeaturePlan,
    txs: &[Transaction],
    is_fraud: &dyn Fn(&Transaction) -> bool,
) -> Result<RecordBatch> {
    let schema = &plan.input_schema;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let array: ArrayRef = match field.name().as_str() {
            "tx_id" => Arc::new(Int64Array::from_iter_values(txs.iter().map(|t| t.tx_id))),
            "customer_id" => Arc::new(Int64Array::from_iter_values(
                txs.iter().map(|t| t.customer_id),
            )),
            "terminal_id" => Arc::new(Int64Array::from_iter_values(
                txs.iter().map(|t| t.terminal_id),
            )),
            "amount" => Arc::new(Float64Array::from_iter_values(txs.iter().map(|t| t.amount))),
            "is_fraud" => Arc::new(Int64Array::from_iter_values(
                txs.iter().map(|t| is_fraud(t) as i64),
            )),
            "tx_ts" => timestamp(
                field.data_type(),
                txs.iter().map(|t| t.tx_ts_us),
                TimeUnit::Microsecond,
            )?,
            "event_time" => timestamp(
                field.data_type(),
                txs.iter().map(|t| t.event_time_ns()),
                TimeUnit::Nanosecond,
            )?,
            other => {
                return Err(Error::invalid(format!(
                    "the online engine has no value for view column '{other}'"
                )))
            }
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The model inputs of each output row, as f64 (NULL -> NaN, which XGBoost reads as missing).
pub fn feature_rows(plan: &FeaturePlan, batch: &RecordBatch) -> Result<Vec<Vec<f64>>> {
    let mut rows = vec![Vec::with_capacity(plan.feature_indexes.len()); batch.num_rows()];
    for &i in &plan.feature_indexes {
        let col = batch.column(i);
        // The common types are read directly: a cast allocates, and this runs per request.
        match col.data_type() {
            DataType::Int64 => {
                let c = col.as_primitive::<Int64Type>();
                for (r, row) in rows.iter_mut().enumerate() {
                    row.push(if c.is_valid(r) {
                        c.value(r) as f64
                    } else {
                        f64::NAN
                    });
                }
            }
            _ => {
                let c = as_f64(col)?;
                for (r, row) in rows.iter_mut().enumerate() {
                    row.push(if c.is_valid(r) { c.value(r) } else { f64::NAN });
                }
            }
        }
    }
    Ok(rows)
}

/// A column as Float64, without copying when it already is one.
fn as_f64(col: &ArrayRef) -> Result<Float64Array> {
    match col.data_type() {
        DataType::Float64 => Ok(col.as_primitive::<Float64Type>().clone()),
        _ => Ok(cast(col, &DataType::Float64)?
            .as_primitive::<Float64Type>()
            .clone()),
    }
}

/// A column as Int64, without copying when it already is one.
fn as_i64(col: &ArrayRef) -> Result<Int64Array> {
    match col.data_type() {
        DataType::Int64 => Ok(col.as_primitive::<Int64Type>().clone()),
        _ => Ok(cast(col, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone()),
    }
}

fn timestamp(dt: &DataType, values: impl Iterator<Item = i64>, unit: TimeUnit) -> Result<ArrayRef> {
    let tz = match dt {
        DataType::Timestamp(_, tz) => tz.clone(),
        other => {
            return Err(Error::invalid(format!(
                "view column type {other} is not a timestamp"
            )))
        }
    };
    let array: ArrayRef = match unit {
        TimeUnit::Microsecond => {
            Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone_opt(tz))
        }
        _ => Arc::new(TimestampNanosecondArray::from_iter_values(values).with_timezone_opt(tz)),
    };
    if array.data_type() == dt {
        Ok(array)
    } else {
        Ok(cast(&array, dt)?)
    }
}

fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef> {
    Ok(expr.evaluate(batch)?.into_array(batch.num_rows())?)
}

fn run_steps<S: EntityStore>(
    plan: &FeaturePlan,
    groups: &[Vec<Group>],
    mut store: Store<'_, S>,
    mut batch: RecordBatch,
    txs: &[Transaction],
    mode: Mode,
) -> Result<RecordBatch> {
    for (i, step) in plan.steps.iter().enumerate() {
        batch = match step {
            Step::Project { exprs, schema } => {
                let arrays = exprs
                    .iter()
                    .map(|e| evaluate(e, &batch))
                    .collect::<Result<Vec<_>>>()?;
                RecordBatch::try_new(schema.clone(), arrays)?
            }
            Step::Window {
                windows,
                order_index,
                schema,
                ..
            } => window_step(
                windows,
                *order_index,
                schema,
                &groups[i],
                &batch,
                txs,
                &mut store,
                mode,
            )?,
        };
    }
    Ok(batch)
}

/// The entity of row `row` in the key columns of a group (the second 0 for one column); `None`
/// when a key is NULL.
fn key_at(columns: &[Int64Array], row: usize) -> Option<(i64, i64)> {
    let first = columns.first()?;
    if columns.iter().any(|c| c.is_null(row)) {
        return None;
    }
    Some((first.value(row), columns.get(1).map_or(0, |c| c.value(row))))
}

/// Running state of one aggregate over a frame.
#[derive(Debug, Clone, Copy)]
struct Acc {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Acc {
    fn add(&mut self, v: Option<f64>) {
        if let Some(v) = v {
            self.n += 1;
            self.sum += v;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    /// SQL semantics: COUNT of nothing is 0, every other aggregate of nothing is NULL.
    fn finish(&self, kind: AggKind) -> Option<f64> {
        match kind {
            AggKind::Count => Some(self.n as f64),
            _ if self.n == 0 => None,
            AggKind::Sum => Some(self.sum),
            AggKind::Avg => Some(self.sum / self.n as f64),
            AggKind::Min => Some(self.min),
            AggKind::Max => Some(self.max),
            // Not a running aggregate: `window_row` reads its frame (`sample_stddev`).
            AggKind::Stddev => None,
        }
    }
}

/// Buffers reused across the rows of one call.
#[derive(Debug, Default)]
struct Scratch {
    row_args: Vec<Option<f64>>,
    ranges: Vec<std::ops::Range<usize>>,
    /// One frame's values (STDDEV).
    values: Vec<f64>,
}

/// The state changes one transaction makes (one per group it has an entity in), applied
/// after the whole transaction is computed: the row path may still hand it to the Arrow path.
#[derive(Debug, Default)]
struct Pending {
    writes: Vec<(EntityKey, i64, i64, i64, std::ops::Range<usize>)>,
    args: Vec<Option<f64>>,
}

impl Pending {
    fn push(&mut self, key: EntityKey, t: i64, tx_id: i64, keep_ns: i64, args: &[Option<f64>]) {
        let start = self.args.len();
        self.args.extend_from_slice(args);
        self.writes
            .push((key, t, tx_id, keep_ns, start..self.args.len()));
    }

    fn clear(&mut self) {
        self.writes.clear();
        self.args.clear();
    }

    /// Applies the buffered changes: new events (`Apply`) or new arguments (`Relabel`).
    fn apply<S: EntityStore>(&mut self, store: &mut Store<'_, S>, mode: Mode) {
        if let Store::Write(s) = store {
            for (key, t, tx_id, keep_ns, range) in self.writes.drain(..) {
                let args = &self.args[range];
                match mode {
                    Mode::Apply => s.insert(key, t, tx_id, args, keep_ns),
                    Mode::Relabel => {
                        s.update_args(key, t, tx_id, args);
                    }
                    Mode::Peek | Mode::Recompute => {}
                }
            }
        }
        self.clear();
    }
}

/// One transaction's values for the windows of one step: the core both paths share.
/// `key_of(g)` is the transaction's entity in group `g` (`None` for NULL: SQL gives it its own
/// partition, we keep no state for it and its windows stay NULL); `arg_of(w)` the argument
/// of window `w` (COUNT(*) gives 1). Fills `values` (one per window) and records the state
/// change in `pending`.
#[allow(clippy::too_many_arguments)]
fn window_row<S: EntityStore>(
    windows: &[WindowSpec],
    groups: &[Group],
    store: &S,
    mode: Mode,
    t: i64,
    tx_id: i64,
    key_of: impl Fn(usize) -> Option<(i64, i64)>,
    arg_of: impl Fn(usize) -> Option<f64>,
    scratch: &mut Scratch,
    values: &mut [Option<f64>],
    pending: &mut Pending,
) {
    values.fill(None);
    for (g, group) in groups.iter().enumerate() {
        let Some((entity, entity2)) = key_of(g) else {
            continue;
        };
        let key = EntityKey {
            group: group.id,
            entity,
            entity2,
        };
        scratch.row_args.clear();
        scratch
            .row_args
            .extend(group.slot_source.iter().map(|&w| arg_of(w)));
        if mode == Mode::Relabel {
            // Outputs are not used when relabeling; keep them valid for the schema.
            for &w in &group.windows {
                values[w] = Acc::default().finish(windows[w].kind);
            }
        } else {
            let history = store.history(key);
            scratch.ranges.clear();
            if let Some(h) = history {
                scratch.ranges.extend(
                    group.frames.iter().map(|&(start, end)| {
                        h.range(t.saturating_sub(start), t.saturating_sub(end))
                    }),
                );
            }
            for (k, &w) in group.windows.iter().enumerate() {
                let spec = &windows[w];
                // The transaction itself, when its frame holds it and it is not stored yet.
                let current = (spec.includes_current() && mode != Mode::Recompute).then(|| {
                    match group.slot_of[k] {
                        Some(s) => scratch.row_args[s],
                        None => Some(1.0),
                    }
                });
                if let (AggKind::Stddev, Some(s)) = (spec.kind, group.slot_of[k]) {
                    // The frame's values in event-time order, the transaction (the newest)
                    // last: the order the offline operator reads them in.
                    scratch.values.clear();
                    if let Some(h) = history {
                        let r = scratch.ranges[group.frame_of[k]].clone();
                        scratch.values.extend(r.filter_map(|i| h.arg(i, s)));
                    }
                    if let Some(Some(v)) = current {
                        scratch.values.push(v);
                    }
                    values[w] = sample_stddev(&scratch.values);
                    continue;
                }
                let mut acc = Acc::default();
                if let Some(h) = history {
                    let r = scratch.ranges[group.frame_of[k]].clone();
                    match (spec.kind, group.slot_of[k]) {
                        // COUNT(*): no need to look at the rows.
                        (_, None) => acc.n = r.len() as u64,
                        (AggKind::Count | AggKind::Sum | AggKind::Avg, Some(s)) => {
                            (acc.sum, acc.n) = h.sum_count(s, r);
                        }
                        // MIN and MAX read the frame's retained events: O(events in frame),
                        // exact whatever the arrival order (a monotonic deque would need
                        // in-order arrivals and frames ending at the newest event).
                        (AggKind::Min | AggKind::Max | AggKind::Stddev, Some(s)) => {
                            for i in r {
                                acc.add(h.arg(i, s));
                            }
                        }
                    }
                }
                if let Some(v) = current {
                    acc.add(v);
                }
                values[w] = acc.finish(spec.kind);
            }
        }
        if matches!(mode, Mode::Apply | Mode::Relabel) {
            pending.push(key, t, tx_id, group.keep_ns, &scratch.row_args);
        }
    }
}

// `row` indexes several parallel columns (times, keys, args, one output per window).
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn window_step<S: EntityStore>(
    windows: &[WindowSpec],
    order_index: usize,
    schema: &SchemaRef,
    groups: &[Group],
    batch: &RecordBatch,
    txs: &[Transaction],
    store: &mut Store<'_, S>,
    mode: Mode,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let times = match batch.column(order_index).data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => batch.column(order_index).clone(),
        _ => cast(
            batch.column(order_index),
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
        )?,
    };
    let times = times.as_primitive::<deltalake::arrow::datatypes::TimestampNanosecondType>();
    // Evaluate each stored argument once (windows sharing an argument share its slot).
    let args: Vec<Option<Float64Array>> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| -> Result<Option<Float64Array>> {
            let needed = groups.iter().any(|g| g.slot_source.contains(&i));
            match &w.arg {
                Some(_) if !needed => Ok(None),
                None => Ok(None),
                Some(e) => Ok(Some(as_f64(&evaluate(e, batch)?)?)),
            }
        })
        .collect::<Result<_>>()?;
    let keys: Vec<Vec<Int64Array>> = groups
        .iter()
        .map(|g| -> Result<Vec<Int64Array>> {
            g.partition
                .iter()
                .map(|&p| as_i64(batch.column(p)))
                .collect()
        })
        .collect::<Result<_>>()?;
    let arg_value = |w: usize, row: usize| -> Option<f64> {
        match &args[w] {
            None => Some(1.0), // not stored (COUNT(*) has no slot)
            Some(a) if a.is_valid(row) => Some(a.value(row)),
            Some(_) => None,
        }
    };

    let mut values: Vec<Vec<Option<f64>>> = vec![vec![None; n]; windows.len()];
    let mut row_values: Vec<Option<f64>> = vec![None; windows.len()];
    let mut scratch = Scratch::default();
    let mut pending = Pending::default();
    for row in 0..n {
        if times.is_null(row) {
            return Err(Error::invalid(
                "a transaction without event_time reached a window",
            ));
        }
        let t = times.value(row);
        let tx_id = txs.get(row).map(|t| t.tx_id).unwrap_or_default();
        window_row(
            windows,
            groups,
            store.get(),
            mode,
            t,
            tx_id,
            |g| key_at(&keys[g], row),
            |w| arg_value(w, row),
            &mut scratch,
            &mut row_values,
            &mut pending,
        );
        for w in 0..windows.len() {
            values[w][row] = row_values[w];
        }
        // Applied row by row: the next row of the batch sees this one.
        pending.apply(store, mode);
    }

    let mut columns = batch.columns().to_vec();
    for (w, spec) in windows.iter().enumerate() {
        let column: ArrayRef = match spec.output_type {
            DataType::Int64 => Arc::new(
                values[w]
                    .iter()
                    .map(|v| v.map(|x| x as i64))
                    .collect::<Int64Array>(),
            ),
            // MIN/MAX of tx_ts: the stored microseconds back to the timestamp type.
            DataType::Timestamp(_, _) => {
                let ints: ArrayRef = Arc::new(
                    values[w]
                        .iter()
                        .map(|v| v.map(|x| x as i64))
                        .collect::<Int64Array>(),
                );
                cast(&ints, &spec.output_type)?
            }
            _ => Arc::new(values[w].iter().copied().collect::<Float64Array>()),
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The row path for one transaction: every step on scalars, reading `store`; the state
/// change goes to `pending` (applied by the caller once the whole row is computed).
#[allow(clippy::too_many_arguments)]
fn row_of<S: EntityStore>(
    plan: &FeaturePlan,
    program: &RowProgram,
    groups: &[Vec<Group>],
    store: &S,
    tx: &Transaction,
    is_fraud: bool,
    mode: Mode,
    scratch: &mut Scratch,
    pending: &mut Pending,
) -> std::result::Result<Vec<Value>, Defer> {
    let mut row: Vec<Value> = program
        .input
        .iter()
        .map(|c| match c {
            InputColumn::TxId => Value::Int(tx.tx_id),
            InputColumn::CustomerId => Value::Int(tx.customer_id),
            InputColumn::TerminalId => Value::Int(tx.terminal_id),
            InputColumn::Amount => Value::Float(tx.amount),
            InputColumn::IsFraud => Value::Int(i64::from(is_fraud)),
            InputColumn::TxTsMicros => Value::Int(tx.tx_ts_us),
            InputColumn::EventTimeNanos => Value::Int(tx.event_time_ns()),
        })
        .collect();
    let mut next: Vec<Value> = Vec::with_capacity(plan.output_schema.fields().len());
    for ((step, rstep), step_groups) in plan.steps.iter().zip(&program.steps).zip(groups) {
        match (step, rstep) {
            (_, RowStep::Project(nodes)) => {
                row::project(nodes, &row, &mut next)?;
                std::mem::swap(&mut row, &mut next);
            }
            (
                Step::Window { windows, .. },
                RowStep::Window {
                    args,
                    order_index,
                    order_micros,
                },
            ) => {
                let t = match row.get(*order_index) {
                    Some(Value::Int(t)) if *order_micros => t.checked_mul(1_000).ok_or(Defer)?,
                    Some(Value::Int(t)) => *t,
                    // No event time: the Arrow path says so.
                    _ => return Err(Defer),
                };
                let mut arg_values = Vec::with_capacity(args.len());
                for a in args {
                    arg_values.push(row::window_arg(a, &row)?);
                }
                let mut keys: Vec<Option<(i64, i64)>> = Vec::with_capacity(step_groups.len());
                for g in step_groups {
                    let mut key = [0i64; 2];
                    let mut null = false;
                    for (slot, &p) in key.iter_mut().zip(&g.partition) {
                        match row.get(p) {
                            Some(Value::Int(k)) => *slot = *k,
                            Some(Value::Null) => null = true,
                            _ => return Err(Defer),
                        }
                    }
                    keys.push((!null).then_some((key[0], key[1])));
                }
                let mut values = vec![None; windows.len()];
                window_row(
                    windows,
                    step_groups,
                    store,
                    mode,
                    t,
                    tx.tx_id,
                    |g| keys[g],
                    |w| arg_values[w],
                    scratch,
                    &mut values,
                    pending,
                );
                row.extend(
                    windows
                        .iter()
                        .zip(values)
                        .map(|(w, v)| match (v, &w.output_type) {
                            (None, _) => Value::Null,
                            // As the Arrow path builds the column: an Int64 aggregate is
                            // truncated, a timestamp one is its integer count of units.
                            (Some(x), DataType::Int64 | DataType::Timestamp(_, _)) => {
                                Value::Int(x as i64)
                            }
                            (Some(x), _) => Value::Float(x),
                        }),
                );
            }
            // RowProgram::compile makes one row step per plan step, of the same kind.
            _ => return Err(Defer),
        }
    }
    Ok(row)
}

/// The values of row `r` of a batch the Arrow path computed, as the row path holds them.
fn values_of(batch: &RecordBatch, r: usize) -> Result<Vec<Value>> {
    batch
        .columns()
        .iter()
        .map(|c| {
            if c.is_null(r) {
                return Ok(Value::Null);
            }
            Ok(match c.data_type() {
                DataType::Float64 => Value::Float(c.as_primitive::<Float64Type>().value(r)),
                DataType::Boolean => Value::Bool(c.as_boolean().value(r)),
                DataType::Null => Value::Null,
                DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                    Value::Int(c.as_primitive::<TimestampNanosecondType>().value(r))
                }
                DataType::Timestamp(TimeUnit::Microsecond, _) => {
                    Value::Int(c.as_primitive::<TimestampMicrosecondType>().value(r))
                }
                _ => Value::Int(as_i64(c)?.value(r)),
            })
        })
        .collect()
}

/// What a run of the plan produced: rows of scalars (the row path) or a batch (Arrow).
enum Output {
    Rows(Vec<Vec<Value>>),
    Batch(RecordBatch),
}

impl Output {
    fn into_batch(self, program: Option<&RowProgram>) -> Result<RecordBatch> {
        match (self, program) {
            (Output::Batch(b), _) => Ok(b),
            (Output::Rows(rows), Some(p)) => p.to_batch(&rows),
            (Output::Rows(_), None) => Err(Error::invalid("rows without a row program")),
        }
    }

    fn into_features(self, plan: &FeaturePlan) -> Result<Vec<Vec<f64>>> {
        match self {
            Output::Batch(b) => feature_rows(plan, &b),
            Output::Rows(rows) => Ok(rows
                .iter()
                .map(|r| {
                    plan.feature_indexes
                        .iter()
                        .map(|&i| r.get(i).map_or(f64::NAN, |v| v.as_feature()))
                        .collect()
                })
                .collect()),
        }
    }
}

/// Runs the plan over an ordered batch of transactions (each seeing the ones before it), on
/// the row path when the plan has one, else on Arrow.
#[allow(clippy::too_many_arguments)]
fn run<S: EntityStore>(
    plan: &FeaturePlan,
    program: Option<&RowProgram>,
    groups: &[Vec<Group>],
    mut store: Store<'_, S>,
    txs: &[Transaction],
    is_fraud: &dyn Fn(&Transaction) -> bool,
    mode: Mode,
) -> Result<Output> {
    let Some(program) = program else {
        let input = input_batch_with(plan, txs, is_fraud)?;
        return Ok(Output::Batch(run_steps(
            plan, groups, store, input, txs, mode,
        )?));
    };
    let mut rows = Vec::with_capacity(txs.len());
    let mut scratch = Scratch::default();
    let mut pending = Pending::default();
    for tx in txs {
        let fraud = is_fraud(tx);
        match row_of(
            plan,
            program,
            groups,
            store.get(),
            tx,
            fraud,
            mode,
            &mut scratch,
            &mut pending,
        ) {
            Ok(row) => {
                pending.apply(&mut store, mode);
                rows.push(row);
            }
            Err(Defer) => {
                // A value only Arrow gives exactly (or the error it raises): this transaction
                // alone on the Arrow path, which applies its own state change.
                pending.clear();
                let one = std::slice::from_ref(tx);
                let input = input_batch_with(plan, one, &|_: &Transaction| fraud)?;
                let batch = run_steps(plan, groups, store.reborrow(), input, one, mode)?;
                rows.push(values_of(&batch, 0)?);
            }
        }
    }
    Ok(Output::Rows(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::clock::HOUR_NS;
    use crate::{compile, FeatureSet};

    const T0_US: i64 = 1_522_540_800_000_000; // 2018-04-01T00:00:00Z
    const MINUTE_US: i64 = 60_000_000;
    const DAY_US: i64 = 1_440 * MINUTE_US;

    async fn plan() -> Arc<FeaturePlan> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/features.sql");
        Arc::new(compile(&FeatureSet::load(&path).unwrap()).await.unwrap())
    }

    /// Ordinary traffic: transaction `i` every 40 s, 200 customers, 300 terminals.
    fn normal(i: i64) -> Transaction {
        Transaction {
            tx_id: i,
            tx_ts_us: T0_US + i * 40_000_000,
            customer_id: (i * 7_919) % 200,
            terminal_id: (i * 104_729) % 300,
            amount: 5.0 + (i % 97) as f64,
        }
    }

    fn rows(engine: &mut OnlineEngine, txs: &[Transaction]) -> Vec<Vec<f64>> {
        let plan = engine.plan().clone();
        feature_rows(&plan, &engine.score_and_apply(txs).unwrap()).unwrap()
    }

    fn feature(plan: &FeaturePlan, row: &[f64], name: &str) -> f64 {
        row[plan.feature_names().iter().position(|n| n == name).unwrap()]
    }

    /// The case: one request dated years ahead among 2018 traffic, then a sweep.
    /// Refused, it changes nothing; clamped, it changes only its own customer and terminal;
    /// applied as the server used to, it empties everyone's history (the check can fail).
    #[tokio::test]
    async fn a_far_future_transaction_among_normal_traffic_changes_no_other_feature() {
        let plan = plan().await;
        let history: Vec<Transaction> = (0..86_400).map(normal).collect(); // 40 days
        let after: Vec<Transaction> = (86_400..87_400).map(normal).collect();
        let future = Transaction {
            tx_id: 99_000_000,
            tx_ts_us: 1_764_460_800_000_000, // 2025-11-30
            customer_id: 17,
            terminal_id: 42,
            amount: 10.0,
        };
        let run = |policy: SkewPolicy, bypass: bool| {
            let mut e = OnlineEngine::new(plan.clone());
            e.set_event_time_rules(EventTimeRules {
                policy,
                ..EventTimeRules::default()
            });
            for chunk in history.chunks(4096) {
                e.score_and_apply(chunk).unwrap();
            }
            let last_us = history.last().unwrap().tx_ts_us;
            let mut f = [future];
            if bypass {
                e.apply(&future).unwrap();
            } else {
                match e.admit(&mut f) {
                    Err(ahead) => {
                        assert_eq!(policy, SkewPolicy::Refuse);
                        assert_eq!(ahead.index, 0);
                        assert_eq!(ahead.tx_ts_us, future.tx_ts_us);
                        assert_eq!(ahead.watermark_us, last_us);
                    }
                    Ok(timings) => {
                        assert_eq!(
                            timings,
                            vec![Timing::Clamped {
                                requested_ts_us: future.tx_ts_us
                            }]
                        );
                        assert_eq!(f[0].tx_ts_us, last_us);
                        e.score_and_apply(&f).unwrap();
                    }
                }
            }
            e.evict_expired();
            (rows(&mut e, &after), e.entities())
        };
        let mut reference = OnlineEngine::new(plan.clone());
        for chunk in history.chunks(4096) {
            reference.score_and_apply(chunk).unwrap();
        }
        reference.evict_expired();
        let want = rows(&mut reference, &after);

        let (refused, entities) = run(SkewPolicy::Refuse, false);
        assert_eq!(
            refused, want,
            "a refused far-future request changed features"
        );
        assert_eq!(entities, reference.entities());

        let (clamped, _) = run(SkewPolicy::Clamp, false);
        let mut compared = 0;
        for ((tx, got), want) in after.iter().zip(&clamped).zip(&want) {
            if tx.customer_id != future.customer_id {
                assert_eq!(got, want, "tx {}", tx.tx_id);
                compared += 1;
            }
        }
        assert!(compared > 900, "{compared}");

        let (bypassed, _) = run(SkewPolicy::Refuse, true);
        let nb_30d = |rows: &[Vec<f64>]| -> f64 {
            rows.iter()
                .map(|r| feature(&plan, r, "customer_nb_tx_30d"))
                .sum()
        };
        assert!(
            nb_30d(&bypassed) < nb_30d(&want) / 10.0,
            "without admission the far-future event must empty the history (the old failure)"
        );
    }

    /// A transaction arriving up to the max skew late sees its whole frames: history is kept
    /// that much longer than the windows need. (Before, the newer event that overtook it had
    /// evicted the oldest event of its 30-day frame.)
    #[tokio::test]
    async fn out_of_order_within_the_skew_gives_the_in_order_features() {
        let plan = plan().await;
        let tx = |id: i64, at_us: i64| Transaction {
            tx_id: id,
            tx_ts_us: at_us,
            customer_id: 1,
            terminal_id: 1,
            amount: 10.0 * id as f64,
        };
        let a = tx(1, T0_US + MINUTE_US);
        let e = tx(2, T0_US + 30 * DAY_US);
        let b = tx(3, T0_US + 30 * DAY_US + 30 * MINUTE_US);

        let mut in_order = OnlineEngine::new(plan.clone());
        let want = rows(&mut in_order, &[a, e, b]);

        let mut late = OnlineEngine::new(plan.clone());
        rows(&mut late, &[a, b]);
        let mut arriving = [e];
        assert_eq!(late.admit(&mut arriving), Ok(vec![Timing::OnTime]));
        let got = rows(&mut late, &arriving);
        assert_eq!(feature(&plan, &got[0], "customer_nb_tx_30d"), 2.0);
        assert_eq!(got[0], want[1]);

        // More than the skew late: scored, flagged.
        let mut older = [tx(4, b.tx_ts_us - 2 * HOUR_NS / 1000)];
        assert_eq!(late.admit(&mut older), Ok(vec![Timing::Late]));

        // A stream whose arrival order is shuffled within 40 minutes ends in the same state:
        // every later transaction gets the in-order features.
        let stream: Vec<Transaction> = (0..20_000)
            .map(|i| Transaction {
                tx_ts_us: T0_US + i * 150_000_000,
                ..normal(i)
            })
            .collect();
        let mut shuffled = stream.clone();
        let mut r = 7u64;
        let mut delay = |_: &Transaction| {
            r = r.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((r >> 33) % (40 * MINUTE_US as u64)) as i64
        };
        let mut keyed: Vec<(i64, Transaction)> = shuffled
            .iter()
            .map(|t| (t.tx_ts_us + delay(t), *t))
            .collect();
        keyed.sort_by_key(|k| k.0);
        shuffled = keyed.into_iter().map(|k| k.1).collect();
        assert_ne!(shuffled, stream);
        let mut ordered_engine = OnlineEngine::new(plan.clone());
        let mut shuffled_engine = OnlineEngine::new(plan.clone());
        rows(&mut ordered_engine, &stream);
        for t in &shuffled {
            let mut one = [*t];
            let timings = shuffled_engine.admit(&mut one).unwrap();
            assert_eq!(timings, vec![Timing::OnTime]);
            shuffled_engine.score_and_apply(&one).unwrap();
        }
        ordered_engine.evict_expired();
        shuffled_engine.evict_expired();
        let last_us = stream.last().unwrap().tx_ts_us;
        let probes: Vec<Transaction> = (0..600)
            .map(|i| Transaction {
                tx_id: 50_000_000 + i,
                tx_ts_us: last_us + (i + 1) * 1_000_000,
                ..normal(i)
            })
            .collect();
        let x = rows(&mut ordered_engine, &probes);
        let y = rows(&mut shuffled_engine, &probes);
        for (rx, ry) in x.iter().zip(&y) {
            for (p, q) in rx.iter().zip(ry) {
                assert!((p - q).abs() <= 1e-9 * p.abs().max(1.0), "{rx:?} vs {ry:?}");
            }
        }
    }

    /// What a shared store does in two passes (writes first, then features from histories
    /// read back) gives what the engine gives in one, and features.sql qualifies for it.
    #[tokio::test]
    async fn writes_then_stored_histories_give_the_engine_features() {
        let plan = plan().await;
        let mut engine = OnlineEngine::new(plan.clone());
        assert_eq!(engine.window_over_window(), None);
        let mut shared = MemoryStore::default();
        let txs: Vec<Transaction> = (0..3_000).map(normal).collect();
        let want = rows(&mut engine, &txs);
        let bookkeeping = OnlineEngine::new(plan.clone());
        for (tx, want) in txs.iter().zip(&want) {
            let writes = bookkeeping
                .writes_for(std::slice::from_ref(tx), false)
                .unwrap();
            assert_eq!(writes[0].len(), 2, "one write per entity");
            for w in &writes[0] {
                shared.insert(w.key, w.time_ns, w.tx_id, &w.args, i64::MAX);
            }
            let got = bookkeeping.features_stored(tx, false, &shared).unwrap();
            assert_eq!(
                &feature_rows(&plan, &got).unwrap()[0],
                want,
                "tx {}",
                tx.tx_id
            );
        }
    }

    #[tokio::test]
    async fn a_retry_is_recognized_and_a_changed_body_conflicts() {
        let plan = plan().await;
        let mut e = OnlineEngine::new(plan);
        let t = normal(5);
        assert_eq!(e.seen(&t), Seen::New);
        e.apply(&t).unwrap();
        assert_eq!(
            e.seen(&t),
            Seen::Retry {
                stored: t,
                answer: None
            }
        );
        let answer = Answer {
            risk_score: 0.25,
            model_version: 3,
            decision: 1,
            time_flag: 0,
            role: 1,
        };
        e.record_answer(t.tx_id, answer);
        assert_eq!(
            e.seen(&t),
            Seen::Retry {
                stored: t,
                answer: Some(answer)
            }
        );
        for (changed, field) in [
            (Transaction { amount: 6.0, ..t }, "amount"),
            (
                Transaction {
                    customer_id: 1,
                    ..t
                },
                "customer_id",
            ),
            (
                Transaction {
                    terminal_id: 1,
                    ..t
                },
                "terminal_id",
            ),
            (Transaction { tx_ts_us: 1, ..t }, "tx_ts"),
        ] {
            assert_eq!(e.seen(&changed), Seen::Conflict { field });
        }
        // A clamped transaction is stored at another time; its retry (the requested time)
        // is still the same transaction.
        e.record_requested_ts(t.tx_id, t.tx_ts_us + 7);
        assert!(matches!(
            e.seen(&Transaction {
                tx_ts_us: t.tx_ts_us + 7,
                ..t
            }),
            Seen::Retry { .. }
        ));
    }
}
