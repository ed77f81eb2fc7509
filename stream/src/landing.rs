//! The exactly-once landing of consumed messages, shared by `fraudlake stream` and the scoring
//! log's consumer. A [`Batch`] holds rows with the offsets they came from; [`Landing::commit`]
//! writes them in this order, each table one Delta commit carrying the batch's offsets as `txn`
//! actions ([`crate::ledger`]):
//!
//! 1. secondaries: `transactions_rejected`, `predictions` (only when they have rows);
//! 2. primaries: `labels` for the labels topic, `transactions` for the transactions topic (and
//!    the scoring log); always, a commit without rows when a batch had none for the table, so
//!    its offsets still advance.
//!
//! A partition resumes after the offset its primary table records. Rows a table already holds
//! (offset at or below the version that table records for the partition) are dropped before
//! each commit, so a message read again after a crash, a rebalance or a broker offset that
//! lagged the lake lands in no table twice; and a secondary committed before a crash keeps
//! its rows while the primary catches up. A transaction whose `tx_id` the lake already holds
//! (sent twice by the producer, or ingested from a file) is dropped with its prediction, as
//! the server's writer does. A message delivered twice within one batch (a fetch repeated
//! after an offset reset or a broker retry) makes rows once; and the offsets a table records
//! never move back, so a partition read again from an earlier offset cannot make a table
//! forget what it holds. A crash between the secondaries' commits and the primaries' thus
//! re-reads the batch and lands only what the primaries miss.
//!
//! Rows of a partition revoked since they were read are refused ([`Batch::forget`]), even when
//! a decoder hands them over later (`stream --score` holds transactions back to score them
//! together): their offsets are no longer the batch's, so no table's check could drop them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::DeltaTable;
use fraudlake_features::Transaction;
use fraudlake_pipeline::lake::tables::{
    rejections_batch, LabelColumns, Rejection, TransactionColumns, LABELS, TRANSACTIONS,
    TRANSACTIONS_REJECTED,
};
use fraudlake_pipeline::lake::{commit_note, evolve, Lake, TableDef};
use fraudlake_serving::server::writer::{
    existing_tx_ids, predictions_batch, Label, Scored, PREDICTIONS,
};

use crate::ledger::{self, TopicPartition};
use crate::Result;

/// Where a row came from: a partition of the batch (index into its list) and an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct At {
    part: u32,
    pub offset: i64,
}

/// What a topic feeds: its primary table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feeds {
    /// Transactions (from `fraudlake stream` or the scoring log) into `transactions`.
    Transactions,
    /// Labels into `labels`.
    Labels,
}

/// Consumed rows waiting for their commit.
#[derive(Default)]
pub struct Batch {
    parts: Vec<TopicPartition>,
    /// Indexes into `parts` revoked since (see [`Batch::forget`]): rows tagged with them are
    /// refused, and a partition consumed again after its revocation gets a new index.
    revoked: HashSet<u32>,
    /// The last offset consumed per partition, whatever became of the message.
    last: BTreeMap<TopicPartition, i64>,
    pub transactions: Vec<(At, Transaction)>,
    pub predictions: Vec<(At, Scored)>,
    pub labels: Vec<(At, Label)>,
    pub rejected: Vec<(At, Rejection)>,
    messages: usize,
}

impl Batch {
    /// Notes a consumed message; the returned [`At`] tags the rows made from it.
    pub fn consumed(&mut self, topic: &str, partition: i32, offset: i64) -> At {
        let part = match (0..self.parts.len()).find(|i| {
            let (t, p) = &self.parts[*i];
            t == topic && *p == partition && !self.revoked.contains(&(*i as u32))
        }) {
            Some(i) => i,
            None => {
                self.parts.push((topic.to_string(), partition));
                self.parts.len() - 1
            }
        };
        let last = self
            .last
            .entry((topic.to_string(), partition))
            .or_insert(offset);
        *last = (*last).max(offset);
        self.messages += 1;
        At {
            part: part as u32,
            offset,
        }
    }

    /// Messages consumed into this batch.
    pub fn messages(&self) -> usize {
        self.messages
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// The last offset per partition.
    pub fn last_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.last
    }

    /// Forgets everything consumed from `revoked` (a rebalance gave them to another consumer,
    /// which reads them again from what the lake records), and refuses the rows tagged with
    /// their [`At`]s that a decoder hands over later: [`Landing::commit`] drops them. Such a row
    /// must not land: its partition's offsets are no longer the batch's, so no table would
    /// record them (the new owner would land the row again), nor check them (the row could be
    /// one a table already holds). A partition consumed again after this is a new one to the
    /// batch, its old rows still refused.
    pub fn forget(&mut self, revoked: &[TopicPartition]) {
        for (i, tp) in self.parts.iter().enumerate() {
            if revoked.contains(tp) {
                self.revoked.insert(i as u32);
            }
        }
        for tp in revoked {
            self.last.remove(tp);
        }
        self.drop_revoked();
    }

    /// Drops the rows of revoked partitions; returns how many.
    fn drop_revoked(&mut self) -> usize {
        if self.revoked.is_empty() {
            return 0;
        }
        let before = self.rows();
        let revoked = &self.revoked;
        let keep = |at: &At| !revoked.contains(&at.part);
        self.transactions.retain(|(at, _)| keep(at));
        self.predictions.retain(|(at, _)| keep(at));
        self.labels.retain(|(at, _)| keep(at));
        self.rejected.retain(|(at, _)| keep(at));
        before - self.rows()
    }

    /// Rows of every table.
    fn rows(&self) -> usize {
        self.transactions.len() + self.predictions.len() + self.labels.len() + self.rejected.len()
    }

    fn part(&self, at: &At) -> &TopicPartition {
        &self.parts[at.part as usize]
    }
}

/// Whether a table whose recorded offsets are `versions` holds (partition, offset).
fn holder(versions: BTreeMap<TopicPartition, i64>) -> impl Fn(&TopicPartition, i64) -> bool {
    move |tp: &TopicPartition, offset: i64| versions.get(tp).is_some_and(|v| *v >= offset)
}

/// The offsets to record: the batch's last ones, but never below what the table records
/// already (a batch read again from an earlier offset lands nothing new of those offsets, and
/// recording them would make the table forget rows it holds).
fn never_back(
    last: &BTreeMap<TopicPartition, i64>,
    recorded: &BTreeMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, i64> {
    last.iter()
        .map(|(tp, o)| (tp.clone(), recorded.get(tp).map_or(*o, |r| (*r).max(*o))))
        .collect()
}

/// What one commit landed.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Landed {
    pub transactions: usize,
    /// Transactions dropped because the lake (or the batch) already held their tx_id.
    pub duplicates: usize,
    pub predictions: usize,
    pub labels: usize,
    pub rejected: usize,
    /// Rows dropped because their table already held their offset (read again after a crash
    /// or a rebalance).
    pub already_landed: usize,
    pub commits: usize,
}

impl std::ops::AddAssign for Landed {
    fn add_assign(&mut self, o: Landed) {
        self.transactions += o.transactions;
        self.duplicates += o.duplicates;
        self.predictions += o.predictions;
        self.labels += o.labels;
        self.rejected += o.rejected;
        self.already_landed += o.already_landed;
        self.commits += o.commits;
    }
}

/// What [`Landing::secondaries`] decided for [`Landing::primaries`]: the offsets of the
/// partitions each primary resumes, the transactions to land, and the counts so far.
struct Primaries {
    landed: Landed,
    now_us: i64,
    tx_offsets: BTreeMap<TopicPartition, i64>,
    /// What `transactions` recorded when its rows were chosen.
    tx_recorded: BTreeMap<TopicPartition, i64>,
    label_offsets: BTreeMap<TopicPartition, i64>,
    transactions: Vec<Transaction>,
}

/// Commits batches for one consumer group into one lake.
pub struct Landing {
    lake: Lake,
    group: String,
    /// Which table each topic feeds.
    feeds: HashMap<String, Feeds>,
    /// Tables as of this process's last commit (reloading replays the log; see the writer).
    tables: HashMap<&'static str, DeltaTable>,
    /// `fraudlake.operation` in each commit's metadata.
    operation: &'static str,
}

impl Landing {
    pub fn new(
        lake: Lake,
        group: &str,
        feeds: HashMap<String, Feeds>,
        operation: &'static str,
    ) -> Landing {
        Landing {
            lake,
            group: group.to_string(),
            feeds,
            tables: HashMap::new(),
            operation,
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The table as of now (commits by other processes, another consumer of the group say,
    /// read incrementally).
    async fn current(&mut self, def: &TableDef) -> Result<&DeltaTable> {
        match self.tables.entry(def.name) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let table = e.into_mut();
                table.update_incremental(None).await?;
                Ok(&*table)
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                Ok(&*e.insert(self.lake.table(def).await?))
            }
        }
    }

    /// Where each partition resumes: one past the offset its primary table records, `None`
    /// when the lake records none.
    pub async fn resume_offsets(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
        let mut out = BTreeMap::new();
        for (feeds, def) in [
            (Feeds::Transactions, &TRANSACTIONS),
            (Feeds::Labels, &LABELS),
        ] {
            let mine: Vec<TopicPartition> = partitions
                .iter()
                .filter(|(t, _)| self.feeds.get(t) == Some(&feeds))
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            let group = self.group.clone();
            let versions = ledger::versions(self.current(def).await?, &group, &mine).await?;
            for tp in mine {
                let next = versions.get(&tp).map(|v| v + 1);
                out.insert(tp, next);
            }
        }
        Ok(out)
    }

    /// Lands `batch` (see the module comment for the order and the rules) and empties it.
    /// On an error the batch is kept whole: calling again lands what is missing and nothing
    /// twice (each table's offsets say what it already has).
    pub async fn commit(&mut self, batch: &mut Batch) -> Result<Landed> {
        let refused = batch.drop_revoked();
        if refused > 0 {
            tracing::info!(
                rows = refused,
                "rows of revoked partitions refused; their new owner lands them"
            );
        }
        if batch.is_empty() {
            return Ok(Landed::default());
        }
        let primaries = self.secondaries(batch).await?;
        let landed = self.primaries(batch, primaries).await?;
        *batch = Batch::default();
        Ok(landed)
    }

    /// Step 1 of [`Landing::commit`]: commits `transactions_rejected` and `predictions` (each
    /// when it has rows) and decides what the primaries land. A crash after it leaves the
    /// primaries' offsets where they were: the batch is read again, and these tables drop
    /// what they hold.
    async fn secondaries(&mut self, batch: &Batch) -> Result<Primaries> {
        let mut landed = Landed::default();
        let now_us = chrono::Utc::now().timestamp_micros();
        let all_offsets = batch.last.clone();
        let offsets_of = |feeds: Feeds| -> BTreeMap<TopicPartition, i64> {
            all_offsets
                .iter()
                .filter(|((t, _), _)| self.feeds.get(t) == Some(&feeds))
                .map(|(tp, o)| (tp.clone(), *o))
                .collect()
        };
        let tx_offsets = offsets_of(Feeds::Transactions);
        let label_offsets = offsets_of(Feeds::Labels);
        let all: Vec<TopicPartition> = all_offsets.keys().cloned().collect();
        let tx_parts: Vec<TopicPartition> = tx_offsets.keys().cloned().collect();

        let recorded = self.recorded(&TRANSACTIONS_REJECTED, &all).await?;
        let holds = holder(recorded.clone());
        let before = batch.rejected.len();
        let mut once = HashSet::new();
        let rejected: Vec<Rejection> = batch
            .rejected
            .iter()
            .filter(|(at, _)| !holds(batch.part(at), at.offset) && once.insert(*at))
            .map(|(_, r)| r.clone())
            .collect();
        landed.already_landed += before - rejected.len();
        if !rejected.is_empty() {
            let rows = vec![rejections_batch(&rejected, now_us)?];
            self.append(
                &TRANSACTIONS_REJECTED,
                rows,
                &never_back(&all_offsets, &recorded),
            )
            .await?;
            landed.rejected = rejected.len();
            landed.commits += 1;
        }

        // tx_ids the lake holds: dropped from transactions and predictions alike.
        // One look at `transactions` for both its offsets and the tx_ids it holds.
        let group = self.group.clone();
        let table = self.current(&TRANSACTIONS).await?;
        let tx_recorded = ledger::versions(table, &group, &tx_parts).await?;
        let holds_tx = holder(tx_recorded.clone());
        let fresh: Vec<(At, Transaction)> = batch
            .transactions
            .iter()
            .filter(|(at, _)| !holds_tx(batch.part(at), at.offset))
            .copied()
            .collect();
        landed.already_landed += batch.transactions.len() - fresh.len();
        let txs: Vec<Transaction> = fresh.iter().map(|(_, t)| *t).collect();
        let existing = if txs.is_empty() {
            HashSet::new()
        } else {
            existing_tx_ids(table, &txs).await?
        };
        let mut seen = HashSet::with_capacity(txs.len());
        let transactions: Vec<Transaction> = txs
            .into_iter()
            .filter(|t| !existing.contains(&t.tx_id) && seen.insert(t.tx_id))
            .collect();
        landed.duplicates = fresh.len() - transactions.len();
        let landing_ids: HashSet<i64> = transactions.iter().map(|t| t.tx_id).collect();

        if !batch.predictions.is_empty() {
            let recorded = self.recorded(&PREDICTIONS, &tx_parts).await?;
            let holds = holder(recorded.clone());
            let mut once = HashSet::new();
            let predictions: Vec<Scored> = batch
                .predictions
                .iter()
                .filter(|(at, s)| {
                    !holds(batch.part(at), at.offset)
                        && landing_ids.contains(&s.tx.tx_id)
                        && once.insert(s.tx.tx_id)
                })
                .map(|(_, s)| s.clone())
                .collect();
            if !predictions.is_empty() {
                let rows = vec![predictions_batch(&predictions)?];
                self.append(&PREDICTIONS, rows, &never_back(&tx_offsets, &recorded))
                    .await?;
                landed.predictions = predictions.len();
                landed.commits += 1;
            }
        }
        Ok(Primaries {
            landed,
            now_us,
            tx_offsets,
            tx_recorded,
            label_offsets,
            transactions,
        })
    }

    /// Step 2 of [`Landing::commit`]: commits `labels` and `transactions`, whose offsets say
    /// where each partition resumes; each commits even without rows, so its offsets advance.
    async fn primaries(&mut self, batch: &Batch, primaries: Primaries) -> Result<Landed> {
        let Primaries {
            mut landed,
            now_us,
            tx_offsets,
            tx_recorded,
            label_offsets,
            transactions,
        } = primaries;
        if !label_offsets.is_empty() {
            let parts: Vec<TopicPartition> = label_offsets.keys().cloned().collect();
            let recorded = self.recorded(&LABELS, &parts).await?;
            let holds = holder(recorded.clone());
            let mut once = HashSet::new();
            let mut cols = LabelColumns::default();
            for (at, l) in &batch.labels {
                if holds(batch.part(at), at.offset) || !once.insert(*at) {
                    landed.already_landed += 1;
                    continue;
                }
                cols.tx_id.push(l.tx_id);
                cols.is_fraud.push(l.is_fraud);
                cols.fraud_scenario.push(l.fraud_scenario);
                cols.labeled_at_us.push(l.labeled_at_us);
                cols.provenance.push(l.provenance.clone());
            }
            landed.labels = cols.len();
            let rows = if cols.is_empty() {
                vec![]
            } else {
                vec![cols.into_batch("kafka")?]
            };
            self.append(&LABELS, rows, &never_back(&label_offsets, &recorded))
                .await?;
            landed.commits += 1;
        }
        if !tx_offsets.is_empty() {
            let mut cols = TransactionColumns::default();
            for t in &transactions {
                cols.tx_id.push(t.tx_id);
                cols.tx_ts_us.push(t.tx_ts_us);
                cols.customer_id.push(t.customer_id);
                cols.terminal_id.push(t.terminal_id);
                cols.amount.push(t.amount);
            }
            landed.transactions = cols.len();
            let rows = if cols.is_empty() {
                vec![]
            } else {
                cols.into_batches(now_us, 65_536)?
            };
            self.append(&TRANSACTIONS, rows, &never_back(&tx_offsets, &tx_recorded))
                .await?;
            landed.commits += 1;
        }
        Ok(landed)
    }

    /// The last offset `table` records of each of `parts` (see [`holder`]).
    async fn recorded(
        &mut self,
        def: &TableDef,
        parts: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let group = self.group.clone();
        ledger::versions(self.current(def).await?, &group, parts).await
    }

    /// One commit of `rows` (maybe none) with the offsets `last` as `txn` actions.
    async fn append(
        &mut self,
        def: &TableDef,
        rows: Vec<deltalake::arrow::array::RecordBatch>,
        last: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        let started = Instant::now();
        let table = match self.tables.remove(def.name) {
            Some(t) => t,
            None => self.lake.table(def).await?,
        };
        let properties = commit_note(self.operation)
            .with_application_transactions(ledger::actions(&self.group, last));
        let table = if rows.is_empty() {
            // Only the offsets: a commit with no file.
            let operation = DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            };
            deltalake::kernel::transaction::CommitBuilder::from(properties)
                .build(Some(table.snapshot()?), table.log_store(), operation)
                .await?;
            let mut table = table;
            table.update_incremental(None).await?;
            table
        } else {
            let write = table
                .write(rows)
                .with_save_mode(SaveMode::Append)
                .with_commit_properties(properties);
            evolve(def, write).await?
        };
        tracing::debug!(
            table = def.name,
            ms = started.elapsed().as_millis() as u64,
            "landed"
        );
        self.tables.insert(def.name, table);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(tx_id: i64) -> Transaction {
        Transaction {
            tx_id,
            tx_ts_us: 1_527_811_200_000_000 + tx_id * 1_000_000,
            customer_id: tx_id % 7,
            terminal_id: tx_id % 11,
            amount: 10.0 + tx_id as f64,
        }
    }

    fn batch(offsets: std::ops::Range<i64>, bad: i64) -> Batch {
        let mut b = Batch::default();
        for o in offsets {
            let at = b.consumed("tx", (o % 2) as i32, o);
            if o == bad {
                b.rejected.push((
                    at,
                    Rejection {
                        source: "kafka:tx".into(),
                        row_number: o,
                        raw_record: "{".into(),
                        reason: "not JSON".into(),
                    },
                ));
            } else {
                b.transactions.push((at, tx(100 + o)));
            }
        }
        let at = b.consumed("labels", 0, 0);
        b.labels.push((
            at,
            Label {
                tx_id: 100,
                is_fraud: true,
                fraud_scenario: None,
                labeled_at_us: 0,
                provenance: Default::default(),
            },
        ));
        b
    }

    async fn count(lake: &Lake, table: &str) -> usize {
        let ctx = lake.session(&[]).await.expect("session");
        let batches = ctx
            .sql(&format!("SELECT * FROM {table}"))
            .await
            .expect("sql")
            .collect()
            .await
            .expect("rows");
        batches.iter().map(|b| b.num_rows()).sum()
    }

    /// A prediction of `t`, as `stream --score` hands it over.
    fn scored(t: Transaction) -> Scored {
        Scored {
            tx: t,
            scored_at_us: t.tx_ts_us,
            model_version: 1,
            feature_set: std::sync::Arc::from("test"),
            risk_score: 0.5,
            decision: "approve",
            features: vec![],
            roles: Default::default(),
        }
    }

    /// The rows of the message at `offset` of partition `partition` of topic "tx" into `into`:
    /// a rejection when `poison` has the offset, otherwise a transaction (tx_id 1000 *
    /// (partition + 1) + offset) and its prediction.
    fn row(into: &mut Batch, at: At, partition: i32, offset: i64, poison: &[i64]) {
        if poison.contains(&offset) {
            into.rejected.push((
                at,
                Rejection {
                    source: format!("kafka:tx/{partition}"),
                    row_number: offset,
                    raw_record: "{".into(),
                    reason: "not JSON".into(),
                },
            ));
        } else {
            let t = tx(1000 * (i64::from(partition) + 1) + offset);
            into.transactions.push((at, t));
            into.predictions.push((at, scored(t)));
        }
    }

    /// Consumes `offsets` of partition `partition` of topic "tx" into `b`, with their rows.
    fn read(b: &mut Batch, partition: i32, offsets: std::ops::RangeInclusive<i64>, poison: &[i64]) {
        for offset in offsets {
            let at = b.consumed("tx", partition, offset);
            row(b, at, partition, offset, poison);
        }
    }

    /// How many rows of `transactions_rejected` say (partition, offset) of topic "tx".
    async fn rejected_at(lake: &Lake, partition: i32, offset: i64) -> usize {
        count(
            lake,
            &format!(
                "transactions_rejected WHERE source = 'kafka:tx/{partition}' \
                 AND \"row_number\" = {offset}"
            ),
        )
        .await
    }

    /// A batch read again (after a crash before the broker commit, or a rebalance) lands
    /// nothing twice; the lake says where each partition resumes; a transaction sent twice
    /// under another offset is a duplicate.
    #[tokio::test]
    async fn a_batch_landed_twice_lands_once_and_the_lake_says_where_to_resume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().join("lake").display().to_string()).expect("lake");
        let feeds = HashMap::from([
            ("tx".to_string(), Feeds::Transactions),
            ("labels".to_string(), Feeds::Labels),
        ]);
        let mut landing = Landing::new(lake.clone(), "g", feeds.clone(), "test");
        let first = landing.commit(&mut batch(0..10, 3)).await.expect("commit");
        assert_eq!(
            (
                first.transactions,
                first.rejected,
                first.labels,
                first.duplicates
            ),
            (9, 1, 1, 0)
        );
        // The same messages again, from a new process: nothing lands.
        let mut again = Landing::new(lake.clone(), "g", feeds.clone(), "test");
        let second = again.commit(&mut batch(0..10, 3)).await.expect("commit");
        assert_eq!(
            (second.transactions, second.rejected, second.labels),
            (0, 0, 0)
        );
        assert_eq!(second.already_landed, 11);
        assert_eq!(count(&lake, "transactions").await, 9);
        assert_eq!(count(&lake, "transactions_rejected").await, 1);
        assert_eq!(count(&lake, "labels").await, 1);
        // Offsets 8 (partition 0) and 9 (partition 1) are the last landed.
        let parts = vec![
            ("tx".to_string(), 0),
            ("tx".to_string(), 1),
            ("labels".to_string(), 0),
            ("tx".to_string(), 2),
        ];
        let resume = again.resume_offsets(&parts).await.expect("resume");
        assert_eq!(resume[&("tx".to_string(), 0)], Some(9));
        assert_eq!(resume[&("tx".to_string(), 1)], Some(10));
        assert_eq!(resume[&("labels".to_string(), 0)], Some(1));
        assert_eq!(resume[&("tx".to_string(), 2)], None);
        // Later offsets carrying tx_ids the lake holds: duplicates; all-rejected batches still
        // move the offsets on.
        let mut b = Batch::default();
        let at = b.consumed("tx", 0, 10);
        b.transactions.push((at, tx(101)));
        let at = b.consumed("tx", 0, 12);
        b.transactions.push((at, tx(500)));
        let at = b.consumed("tx", 0, 14);
        b.transactions.push((at, tx(500)));
        let third = again.commit(&mut b).await.expect("commit");
        assert_eq!((third.transactions, third.duplicates), (1, 2));
        let mut b = batch(16..17, 16);
        let fourth = again.commit(&mut b).await.expect("commit");
        assert_eq!((fourth.transactions, fourth.rejected), (0, 1));
        let resume = again.resume_offsets(&parts).await.expect("resume");
        assert_eq!(resume[&("tx".to_string(), 0)], Some(17));
        assert_eq!(count(&lake, "transactions").await, 10);
    }

    /// A partition delivered twice within one batch (a fetch repeated after an offset reset)
    /// makes its rows once, and a later batch read again from an earlier offset does not move
    /// any table's recorded offsets back (which would land the same rows again next time).
    #[tokio::test]
    async fn a_message_delivered_twice_in_a_batch_lands_once_and_offsets_never_move_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().join("lake").display().to_string()).expect("lake");
        let feeds = HashMap::from([
            ("tx".to_string(), Feeds::Transactions),
            ("labels".to_string(), Feeds::Labels),
        ]);
        let mut landing = Landing::new(lake.clone(), "g", feeds, "test");
        let mut twice = batch(0..10, 3);
        let again = batch(0..10, 3);
        for (at, t) in again.transactions {
            let at = twice.consumed("tx", (at.offset % 2) as i32, at.offset);
            twice.transactions.push((at, t));
        }
        for (at, r) in again.rejected {
            let at = twice.consumed("tx", (at.offset % 2) as i32, at.offset);
            twice.rejected.push((at, r));
        }
        for (_, l) in again.labels {
            let at = twice.consumed("labels", 0, 0);
            twice.labels.push((at, l));
        }
        let first = landing.commit(&mut twice).await.expect("commit");
        assert_eq!(
            (first.transactions, first.rejected, first.labels),
            (9, 1, 1)
        );
        assert_eq!(count(&lake, "transactions_rejected").await, 1);
        assert_eq!(count(&lake, "labels").await, 1);

        // Read again from offset 0 of partition 0 only, with a new poison message at offset
        // 12 of partition 0 and a new label: the old rows are dropped, the new land, and every
        // table still records its highest offsets.
        let mut b = batch(0..3, 2);
        let at = b.consumed("tx", 0, 12);
        b.rejected.push((
            at,
            Rejection {
                source: "kafka:tx".into(),
                row_number: 12,
                raw_record: "[".into(),
                reason: "not an object".into(),
            },
        ));
        let at = b.consumed("labels", 0, 1);
        b.labels.push((
            at,
            Label {
                tx_id: 101,
                is_fraud: false,
                fraud_scenario: None,
                labeled_at_us: 0,
                provenance: Default::default(),
            },
        ));
        let second = landing.commit(&mut b).await.expect("commit");
        assert_eq!(
            (second.transactions, second.rejected, second.labels),
            (0, 1, 1)
        );
        let parts = vec![
            ("tx".to_string(), 0),
            ("tx".to_string(), 1),
            ("labels".to_string(), 0),
        ];
        let resume = landing.resume_offsets(&parts).await.expect("resume");
        assert_eq!(resume[&("tx".to_string(), 0)], Some(13));
        assert_eq!(resume[&("tx".to_string(), 1)], Some(10));
        assert_eq!(resume[&("labels".to_string(), 0)], Some(2));
        // The same re-read batch once more: nothing lands.
        let mut b = batch(0..3, 2);
        let third = landing.commit(&mut b).await.expect("commit");
        assert_eq!(
            (third.transactions, third.rejected, third.labels),
            (0, 0, 0)
        );
        assert_eq!(count(&lake, "transactions_rejected").await, 2);
        assert_eq!(count(&lake, "labels").await, 2);
        assert_eq!(count(&lake, "transactions").await, 9);
    }

    /// A SIGKILL after the secondaries' commits (`transactions_rejected`, `predictions`) and
    /// before the primaries' (`labels`, `transactions`). The next process reads the batch
    /// again from the primaries' offsets, cut elsewhere: its first batch reads partition 1
    /// past the killed batch (a new poison message at 11) but partition 0 only to offset 3,
    /// below the killed batch's end (9). Every row lands once. Before the recorded offsets
    /// never moved back (808f917), that first commit recorded offset 3 of partition 0 in
    /// `transactions_rejected` and `predictions`, and the next batch landed the poison message
    /// at 4 and the predictions of 5..=9 a second time: the 102 rows for 100 poison messages
    /// of the SIGKILL test.
    #[tokio::test]
    async fn a_kill_between_the_rejected_commit_and_the_primaries_lands_each_row_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().join("lake").display().to_string()).expect("lake");
        let feeds = HashMap::from([
            ("tx".to_string(), Feeds::Transactions),
            ("labels".to_string(), Feeds::Labels),
        ]);
        let label = |tx_id: i64| Label {
            tx_id,
            is_fraud: true,
            fraud_scenario: None,
            labeled_at_us: 0,
            provenance: Default::default(),
        };
        // Offsets 0..=11 of partitions 0 (poison at 4 and 10) and 1 (poison at 7 and 11).
        // The first process lands 0..=1 of both ...
        let mut first = Landing::new(lake.clone(), "g", feeds.clone(), "test");
        let mut b = Batch::default();
        read(&mut b, 0, 0..=1, &[]);
        read(&mut b, 1, 0..=1, &[]);
        first.commit(&mut b).await.expect("commit");
        // ... then reads 2..=9 of both and a label, commits the secondaries, and is killed.
        let mut b = Batch::default();
        read(&mut b, 0, 2..=9, &[4]);
        read(&mut b, 1, 2..=9, &[7]);
        let at = b.consumed("labels", 0, 0);
        b.labels.push((at, label(1002)));
        let killed = first.secondaries(&b).await.expect("secondaries");
        assert_eq!((killed.landed.rejected, killed.landed.predictions), (2, 14));
        drop(first);
        drop(b);
        assert_eq!(count(&lake, "transactions_rejected").await, 2);
        assert_eq!(count(&lake, "predictions").await, 18);
        assert_eq!(count(&lake, "transactions").await, 4);

        // The next process resumes where the primaries say.
        let mut next = Landing::new(lake.clone(), "g", feeds, "test");
        let parts = vec![
            ("tx".to_string(), 0),
            ("tx".to_string(), 1),
            ("labels".to_string(), 0),
        ];
        let resume = next.resume_offsets(&parts).await.expect("resume");
        assert_eq!(resume[&("tx".to_string(), 0)], Some(2));
        assert_eq!(resume[&("tx".to_string(), 1)], Some(2));
        assert_eq!(resume[&("labels".to_string(), 0)], None);
        // Its first batch: partition 1 to 11, partition 0 to 3 only, the label again.
        let mut b = Batch::default();
        read(&mut b, 1, 2..=11, &[7, 11]);
        read(&mut b, 0, 2..=3, &[]);
        let at = b.consumed("labels", 0, 0);
        b.labels.push((at, label(1002)));
        let again = next.commit(&mut b).await.expect("commit");
        assert_eq!(
            (
                again.rejected,
                again.predictions,
                again.transactions,
                again.labels,
                again.already_landed
            ),
            (1, 1, 10, 1, 1),
            "the poison message at 7 and the predictions of 2..=9 are in the lake already"
        );
        // The rest of partition 0: its poison message at 4 is read a second time.
        let mut b = Batch::default();
        read(&mut b, 0, 4..=11, &[4, 10]);
        let rest = next.commit(&mut b).await.expect("commit");
        assert_eq!(
            (rest.rejected, rest.predictions, rest.transactions),
            (1, 1, 6),
            "the poison message at 4 and the predictions of 5..=9 are in the lake already"
        );

        // Each poison message once; each of the 20 transactions and predictions once.
        for (partition, offset) in [(0, 4), (0, 10), (1, 7), (1, 11)] {
            assert_eq!(
                rejected_at(&lake, partition, offset).await,
                1,
                "rows of transactions_rejected for tx/{partition} at offset {offset}"
            );
        }
        assert_eq!(count(&lake, "transactions_rejected").await, 4);
        for table in ["transactions", "predictions"] {
            assert_eq!(count(&lake, table).await, 20, "rows of {table}");
            let distinct = format!("(SELECT DISTINCT tx_id FROM {table}) AS d");
            assert_eq!(count(&lake, &distinct).await, 20, "tx_ids of {table}");
        }
        assert_eq!(count(&lake, "labels").await, 1);
        let resume = next.resume_offsets(&parts).await.expect("resume");
        assert_eq!(resume[&("tx".to_string(), 0)], Some(12));
        assert_eq!(resume[&("tx".to_string(), 1)], Some(12));
        assert_eq!(resume[&("labels".to_string(), 0)], Some(1));
    }

    /// `stream --score` holds transactions back and hands their rows over when it scores
    /// them, which may be after a rebalance revoked their partition. Such rows are refused.
    /// Before, they landed: those of a partition given to another consumer without their
    /// offsets (the new owner then landed them again), and those of a partition given back and
    /// read again from an earlier offset under the re-read's lower offsets (the next batch
    /// landed them again).
    #[tokio::test]
    async fn rows_handed_over_after_their_partition_was_revoked_never_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().join("lake").display().to_string()).expect("lake");
        let feeds = HashMap::from([("tx".to_string(), Feeds::Transactions)]);
        let mut landing = Landing::new(lake.clone(), "g", feeds.clone(), "test");
        let mut b = Batch::default();
        read(&mut b, 0, 0..=2, &[]);
        read(&mut b, 1, 3..=4, &[]);
        // The decoder holds back offsets 5..=7 of partition 1 (poison at 6) and 0..=1 of
        // partition 2 (poison at 1): not scored yet.
        let mut held = Batch::default();
        for offset in 5..=7 {
            let at = b.consumed("tx", 1, offset);
            row(&mut held, at, 1, offset, &[6]);
        }
        for offset in 0..=1 {
            let at = b.consumed("tx", 2, offset);
            row(&mut held, at, 2, offset, &[1]);
        }
        // A rebalance revokes both; partition 1 comes back at once and is read again from
        // offset 3 (the batch is cut at 4), partition 2 goes to another consumer.
        b.forget(&[("tx".to_string(), 1), ("tx".to_string(), 2)]);
        assert!(b.transactions.iter().all(|(at, _)| b.part(at).1 == 0));
        read(&mut b, 1, 3..=4, &[]);
        // Then the decoder scores what it held and hands it over.
        b.transactions.append(&mut held.transactions);
        b.predictions.append(&mut held.predictions);
        b.rejected.append(&mut held.rejected);
        let first = landing.commit(&mut b).await.expect("commit");
        assert_eq!(
            (
                first.transactions,
                first.predictions,
                first.rejected,
                first.duplicates
            ),
            (5, 5, 0, 0),
            "only offsets 0..=2 of partition 0 and the re-read 3..=4 of partition 1 land"
        );
        let parts = vec![
            ("tx".to_string(), 0),
            ("tx".to_string(), 1),
            ("tx".to_string(), 2),
        ];
        let resume = landing.resume_offsets(&parts).await.expect("resume");
        assert_eq!(resume[&("tx".to_string(), 1)], Some(5));
        assert_eq!(resume[&("tx".to_string(), 2)], None);

        // Partition 1 goes on from 5 here; partition 2's new owner reads it from the start.
        let mut b = Batch::default();
        read(&mut b, 1, 5..=7, &[6]);
        let second = landing.commit(&mut b).await.expect("commit");
        assert_eq!(
            (second.transactions, second.rejected, second.duplicates),
            (2, 1, 0)
        );
        let mut owner = Landing::new(lake.clone(), "g", feeds, "test");
        let mut b = Batch::default();
        read(&mut b, 2, 0..=1, &[1]);
        let third = owner.commit(&mut b).await.expect("commit");
        assert_eq!(
            (third.transactions, third.rejected, third.duplicates),
            (1, 1, 0)
        );

        assert_eq!(rejected_at(&lake, 1, 6).await, 1);
        assert_eq!(rejected_at(&lake, 2, 1).await, 1);
        assert_eq!(count(&lake, "transactions_rejected").await, 2);
        assert_eq!(count(&lake, "transactions").await, 8);
        assert_eq!(count(&lake, "predictions").await, 8);
        let resume = owner.resume_offsets(&parts).await.expect("resume");
        assert_eq!(resume[&("tx".to_string(), 0)], Some(3));
        assert_eq!(resume[&("tx".to_string(), 1)], Some(8));
        assert_eq!(resume[&("tx".to_string(), 2)], Some(2));
    }
}
