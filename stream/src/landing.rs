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
//! forget what it holds.

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
        let part = match self
            .parts
            .iter()
            .position(|(t, p)| t == topic && *p == partition)
        {
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
    /// which reads them again from what the lake records).
    pub fn forget(&mut self, revoked: &[TopicPartition]) {
        let gone: HashSet<u32> = self
            .parts
            .iter()
            .enumerate()
            .filter(|(_, tp)| revoked.contains(tp))
            .map(|(i, _)| i as u32)
            .collect();
        if gone.is_empty() {
            return;
        }
        let keep = |at: &At| !gone.contains(&at.part);
        self.transactions.retain(|(at, _)| keep(at));
        self.predictions.retain(|(at, _)| keep(at));
        self.labels.retain(|(at, _)| keep(at));
        self.rejected.retain(|(at, _)| keep(at));
        for tp in revoked {
            self.last.remove(tp);
        }
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
        let mut landed = Landed::default();
        if batch.is_empty() {
            return Ok(landed);
        }
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

        // 1. Secondaries.
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

        // 2. Primaries.
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
        *batch = Batch::default();
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
}
