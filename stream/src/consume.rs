//! The consume-and-land loop, and `fraudlake stream` on top of it.
//!
//! [`run`] joins the consumer group, first setting the group's broker offsets to what the lake
//! records (the lake is the truth: one past the last landed offset, or the partition's start),
//! then consumes, hands each message to a [`Decode`], and commits the batch through
//! [`Landing`] every `batch_rows` messages or `batch_interval`; after each landing it commits
//! the offsets to the broker too (a hint for the next assignment; losing it only means reading
//! again what the lake then drops). A rebalance that takes partitions away forgets their
//! uncommitted rows instead of committing them: the new owner reads them again from the lake's
//! offsets, and no two consumers ever commit the same offsets. That includes rows a decoder
//! held back and hands over after the revocation: the batch refuses them
//! ([`Batch::forget`]), and [`Decode::forget`] lets the decoder drop them first.
//!
//! [`StreamDecoder`] is `fraudlake stream`: transactions (the `POST /score` body) and labels
//! (a `POST /labels` item); bad messages to `transactions_rejected` (and a dead-letter topic);
//! with scoring, the server's own scoring code, answers to an optional scores topic.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraudlake_features::Transaction;
use fraudlake_pipeline::lake::tables::Provenance;
use fraudlake_pipeline::Lake;
use fraudlake_serving::server::api::LabelRequest;
use fraudlake_serving::server::handlers::{accept_labels, score_transactions, Answered};
use fraudlake_serving::server::state::SharedState;
use fraudlake_serving::server::writer::Label;
use parking_lot::Mutex;
use rdkafka::consumer::StreamConsumer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::kafka;
use crate::landing::{At, Batch, Feeds, Landed, Landing};
use crate::ledger::TopicPartition;
use crate::message::{self, ScoreMessage};
use crate::metrics::StreamMetrics;
use crate::{Error, Result};

/// How to consume.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub brokers: String,
    pub group: String,
    /// The topics and what each feeds.
    pub topics: Vec<(String, Feeds)>,
    pub batch_rows: usize,
    pub batch_interval: Duration,
    pub session_timeout_ms: u32,
    /// Stop once nothing arrived for this long (with partitions assigned and all landed).
    pub until_idle: Option<Duration>,
    /// Give up (return the error) after this many failed landings of one batch in a row;
    /// `None` retries forever (the server's log consumer).
    pub max_commit_failures: Option<u32>,
    /// `fraudlake.operation` in the commits.
    pub operation: &'static str,
    /// Event-time alignment: a partition whose newest event is more than this ahead of the
    /// slowest partition's is paused until the others catch up (see [`Alignment`]).
    pub max_partition_skew: Option<Duration>,
}

/// What a run consumed and landed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub messages: usize,
    #[serde(flatten)]
    pub landed: Landed,
    pub seconds: f64,
}

/// Turns messages into rows.
#[allow(async_fn_in_trait)]
pub trait Decode {
    /// The rows of one message into `batch`, tagged `at`; returns the message's event time
    /// (µs) when it has one that partitions should be aligned on. A bad message becomes a
    /// rejection, never an error; an error stops the consumer (nothing of the batch lands).
    async fn decode(
        &mut self,
        msg: &OwnedMessage,
        at: At,
        batch: &mut Batch,
    ) -> Result<Option<i64>>;
    /// Finishes what `decode` held back, before the batch is landed.
    async fn before_commit(&mut self, _batch: &mut Batch) -> Result<()> {
        Ok(())
    }
    /// After a landing.
    async fn after_commit(&mut self, _landed: &Landed) {}
    /// `revoked` went to another consumer: drop what `decode` holds back of them (the batch
    /// refuses their rows anyway, see [`Batch::forget`]).
    fn forget(&mut self, _revoked: &[TopicPartition]) {}
}

/// Partition assignments as the group coordinator changes them; read by the loop after each
/// poll (the callbacks run inside it). Also publishes the lag from librdkafka's statistics:
/// their partition ends come from fetch responses, which every broker fills in correctly
/// (Tansu 0.6 answers a direct ListOffsets request with a wrong end offset).
pub struct Rebalances {
    changes: Mutex<Vec<Change>>,
    lag: prometheus::IntGaugeVec,
}

enum Change {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

fn list(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for Rebalances {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        kafka::report(error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition; app_offset is -1001
                // before the first message.
                if *partition < 0 || p.hi_offset < 0 || p.fetch_state != "active" {
                    continue;
                }
                let lag = if p.app_offset >= 0 {
                    p.hi_offset - p.app_offset
                } else {
                    p.consumer_lag
                };
                if lag >= 0 {
                    self.lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(lag);
                }
            }
        }
    }
}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.changes.lock().push(Change::Revoked(list(tpl)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.changes.lock().push(Change::Assigned(list(tpl)));
        }
    }
}

/// Sets the group's broker offsets to the lake's record for every partition: one past the last
/// landed offset, or the partition's first offset when the lake has none (a new lake starts
/// from the beginning even if the group consumed before). A group with live members refuses
/// the commit; then their offsets stand, which the lake's offsets check makes safe.
async fn align_broker_offsets(
    consumer: &StreamConsumer<Rebalances>,
    landing: &mut Landing,
    partitions: &[TopicPartition],
) -> Result<()> {
    let resume = landing.resume_offsets(partitions).await?;
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        // Offset 0 when the lake has none: below a partition's retained start, the consumer
        // falls back to `auto.offset.reset=earliest`.
        let next = resume
            .get(&(topic.clone(), *partition))
            .copied()
            .flatten()
            .unwrap_or(0);
        tpl.add_partition_offset(topic, *partition, Offset::Offset(next))
            .map_err(|e| Error::kafka("bad offset", e))?;
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
        tracing::warn!(error = %e, "could not set the group's offsets to the lake's (live members?); the lake's offsets still decide what lands");
    }
    Ok(())
}

/// Consumes `options.topics` into the lake until `shutdown` resolves (or the stream is idle).
pub async fn run<D: Decode>(
    lake: Lake,
    options: &ConsumeOptions,
    decoder: &mut D,
    metrics: &StreamMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary> {
    let started = Instant::now();
    let consumer: StreamConsumer<Rebalances> =
        kafka::consumer_config(&options.brokers, &options.group, options.session_timeout_ms)
            .create_with_context(Rebalances {
                changes: Mutex::new(Vec::new()),
                lag: metrics.lag.clone(),
            })
            .map_err(|e| Error::kafka(format!("cannot connect to {}", options.brokers), e))?;
    let mut partitions = Vec::new();
    for (topic, _) in &options.topics {
        for p in kafka::partitions(consumer.client(), topic)? {
            partitions.push((topic.clone(), p));
        }
    }
    let feeds: HashMap<String, Feeds> = options.topics.iter().cloned().collect();
    let mut landing = Landing::new(lake, &options.group, feeds, options.operation);
    align_broker_offsets(&consumer, &mut landing, &partitions).await?;
    let names: Vec<&str> = options.topics.iter().map(|(t, _)| t.as_str()).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| Error::kafka("cannot subscribe", e))?;
    tracing::info!(topics = ?names, group = %options.group, "consuming");

    let mut summary = Summary::default();
    let mut batch = Batch::default();
    let mut assigned: BTreeSet<TopicPartition> = BTreeSet::new();
    let mut deadline = Instant::now() + options.batch_interval;
    let mut last_message = Instant::now();
    let mut failures = 0u32;
    let mut alignment = options.max_partition_skew.map(|skew| Alignment {
        skew_us: skew.as_micros() as i64,
        topic: options.topics[0].0.clone(),
        partitions: HashMap::new(),
    });
    tokio::pin!(shutdown);
    loop {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(250));
        // On shutdown the changes are still taken in below, before the final landing.
        let received = tokio::select! {
            _ = &mut shutdown => None,
            r = tokio::time::timeout(wait, consumer.recv()) => {
                Some(r.map(|m| m.map(|m| m.detach())))
            }
        };
        for change in std::mem::take(&mut *consumer.context().changes.lock()) {
            match change {
                Change::Revoked(gone) => {
                    batch.forget(&gone);
                    decoder.forget(&gone);
                    if let Some(align) = alignment.as_mut() {
                        align.forget(&gone);
                    }
                    for tp in &gone {
                        assigned.remove(tp);
                        let _ = metrics.lag.remove_label_values(&[&tp.0, &tp.1.to_string()]);
                    }
                    tracing::info!(partitions = ?gone, "partitions revoked; their unlanded rows are left to the next owner");
                }
                Change::Assigned(got) => {
                    tracing::info!(partitions = ?got, "partitions assigned");
                    assigned.extend(got);
                    last_message = Instant::now();
                }
            }
        }
        let Some(received) = received else {
            break;
        };
        match received {
            Ok(Ok(msg)) => {
                let at = batch.consumed(msg.topic(), msg.partition(), msg.offset());
                let event_us = decoder.decode(&msg, at, &mut batch).await?;
                if let (Some(align), Some(t)) = (alignment.as_mut(), event_us) {
                    align.saw(&consumer, (msg.topic().to_string(), msg.partition()), t);
                }
                summary.messages += 1;
                last_message = Instant::now();
            }
            Ok(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                if let Some(align) = alignment.as_mut() {
                    align.at_end(&consumer, p);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error (retrying)");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => {}
        }
        let now = Instant::now();
        if batch.messages() >= options.batch_rows || now >= deadline {
            if !batch.is_empty() {
                match land(
                    &consumer,
                    &mut landing,
                    decoder,
                    &mut batch,
                    metrics,
                    options,
                )
                .await
                {
                    Ok(landed) => {
                        summary.landed += landed;
                        failures = 0;
                    }
                    Err(e) => {
                        failures += 1;
                        if options.max_commit_failures.is_some_and(|m| failures >= m) {
                            return Err(e);
                        }
                        let backoff = Duration::from_millis(200 * 2u64.pow(failures.min(7)));
                        tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "landing failed; the batch is kept and retried");
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
            deadline = Instant::now() + options.batch_interval;
        }
        if let Some(idle) = options.until_idle {
            if !assigned.is_empty() && batch.is_empty() && last_message.elapsed() >= idle {
                tracing::info!(idle_s = idle.as_secs_f64(), "nothing new: stopping");
                break;
            }
        }
    }
    // Stopping: land what is held (a few tries), then leave the group.
    let mut tries = 0;
    while !batch.is_empty() {
        match land(
            &consumer,
            &mut landing,
            decoder,
            &mut batch,
            metrics,
            options,
        )
        .await
        {
            Ok(landed) => summary.landed += landed,
            Err(e) if tries >= 3 => return Err(e),
            Err(e) => {
                tries += 1;
                tracing::error!(error = %e, "final landing failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    consumer.unsubscribe();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Event-time alignment of the partitions of one topic. Partitions are consumed side by side
/// but not at the same pace (a broker may serve one ahead of the others), and with scoring,
/// a transaction that arrives after events far later than it (in another partition) is late:
/// beyond the engine's out-of-order tolerance its frames have lost their oldest events. So a
/// partition more than `skew_us` ahead of the slowest one is paused until it is not; a
/// partition at its end, or not heard from yet, holds nobody back.
struct Alignment {
    skew_us: i64,
    topic: String,
    partitions: HashMap<i32, PartitionClock>,
}

#[derive(Default)]
struct PartitionClock {
    newest_us: Option<i64>,
    at_end: bool,
    paused: bool,
}

impl Alignment {
    fn saw(&mut self, consumer: &StreamConsumer<Rebalances>, tp: TopicPartition, event_us: i64) {
        if tp.0 != self.topic {
            return;
        }
        let clock = self.partitions.entry(tp.1).or_default();
        clock.at_end = false;
        let newest = clock.newest_us.map_or(event_us, |n| n.max(event_us));
        let moved = clock.newest_us != Some(newest);
        clock.newest_us = Some(newest);
        if moved {
            self.apply(consumer);
        }
    }

    fn at_end(&mut self, consumer: &StreamConsumer<Rebalances>, partition: i32) {
        self.partitions.entry(partition).or_default().at_end = true;
        self.apply(consumer);
    }

    fn forget(&mut self, gone: &[TopicPartition]) {
        for (topic, p) in gone {
            if *topic == self.topic {
                self.partitions.remove(p);
            }
        }
    }

    /// Pauses the partitions too far ahead of the slowest one still consuming; resumes the rest.
    fn apply(&mut self, consumer: &StreamConsumer<Rebalances>) {
        let Some(slowest) = self
            .partitions
            .values()
            .filter(|c| !c.at_end)
            .filter_map(|c| c.newest_us)
            .min()
        else {
            return;
        };
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        for (p, c) in self.partitions.iter_mut() {
            let ahead = !c.at_end && c.newest_us.is_some_and(|n| n > slowest + self.skew_us);
            if ahead != c.paused {
                c.paused = ahead;
                if ahead {
                    pause.add_partition(&self.topic, *p);
                } else {
                    resume.add_partition(&self.topic, *p);
                }
            }
        }
        if pause.count() > 0 {
            if let Err(e) = consumer.pause(&pause) {
                tracing::warn!(error = %e, "cannot pause a partition ahead of the others");
            }
        }
        if resume.count() > 0 {
            if let Err(e) = consumer.resume(&resume) {
                tracing::warn!(error = %e, "cannot resume a partition");
            }
        }
    }
}

/// Lands the batch, then tells the broker (asynchronously; the lake already decides).
async fn land<D: Decode>(
    consumer: &StreamConsumer<Rebalances>,
    landing: &mut Landing,
    decoder: &mut D,
    batch: &mut Batch,
    metrics: &StreamMetrics,
    options: &ConsumeOptions,
) -> Result<Landed> {
    decoder.before_commit(batch).await?;
    let offsets = batch.last_offsets().clone();
    let landed = landing.commit(batch).await?;
    decoder.after_commit(&landed).await;
    for (topic, feeds) in &options.topics {
        let (landed_n, duplicates) = match feeds {
            Feeds::Transactions => (landed.transactions, landed.duplicates),
            Feeds::Labels => (landed.labels, 0),
        };
        metrics
            .messages
            .with_label_values(&[topic, "landed"])
            .inc_by(landed_n as u64);
        if duplicates > 0 {
            metrics
                .messages
                .with_label_values(&[topic, "duplicate"])
                .inc_by(duplicates as u64);
        }
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), last) in &offsets {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(last + 1));
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(error = %e, "broker offset commit failed (the lake's offsets decide)");
    }
    Ok(landed)
}

/// Where `fraudlake stream` sends what it produces.
pub struct Outputs {
    pub producer: FutureProducer,
    pub scores_topic: Option<String>,
    pub dead_letter_topic: Option<String>,
}

impl Outputs {
    /// A producer for the output topics, created if missing (3 partitions).
    pub async fn connect(
        brokers: &str,
        scores_topic: Option<String>,
        dead_letter_topic: Option<String>,
    ) -> Result<Outputs> {
        let producer: FutureProducer = kafka::producer_config(brokers)
            .create()
            .map_err(|e| Error::kafka(format!("cannot connect to {brokers}"), e))?;
        for topic in scores_topic.iter().chain(dead_letter_topic.iter()) {
            kafka::ensure_topic(brokers, topic, 3).await?;
        }
        Ok(Outputs {
            producer,
            scores_topic,
            dead_letter_topic,
        })
    }
}

/// `fraudlake stream`'s messages: transactions and labels, scored or not.
pub struct StreamDecoder {
    transactions_topic: String,
    labels_topic: Option<String>,
    scoring: Option<SharedState>,
    outputs: Option<Outputs>,
    metrics: StreamMetrics,
    /// Valid transactions waiting to be scored together (scoring one call per message costs
    /// a feature batch each).
    held: Vec<Held>,
    held_ids: HashSet<i64>,
    /// Valid labels waiting to be judged together (each judgement reads the lake's labels for
    /// its tx_ids: one query per group, not per message).
    held_labels: Vec<HeldLabel>,
    deliveries: Vec<rdkafka::producer::DeliveryFuture>,
}

struct Held {
    at: At,
    tx: Transaction,
    msg: Arc<OwnedMessage>,
}

struct HeldLabel {
    at: At,
    label: LabelRequest,
    msg: Arc<OwnedMessage>,
}

/// What the server's code said of one message: a refusal of the message (4xx: it is rejected
/// with this reason) or a failure of the server's own (5xx: the consumer stops, nothing of the
/// batch lands, and a restart reads it again).
fn refusal(e: fraudlake_serving::server::error::ApiError, doing: &str) -> Result<String> {
    if e.status.is_server_error() {
        Err(Error::invalid(format!(
            "{doing} failed: {} ({})",
            e.detail, e.kind
        )))
    } else {
        Ok(e.detail)
    }
}

/// Transactions scored in one call at most.
const SCORE_CHUNK: usize = 256;
/// Labels judged in one call at most.
const LABEL_CHUNK: usize = 2_000;

impl StreamDecoder {
    pub fn new(
        transactions_topic: &str,
        labels_topic: Option<&str>,
        scoring: Option<SharedState>,
        outputs: Option<Outputs>,
        metrics: StreamMetrics,
    ) -> StreamDecoder {
        StreamDecoder {
            transactions_topic: transactions_topic.to_string(),
            labels_topic: labels_topic.map(str::to_string),
            scoring,
            outputs,
            metrics,
            held: Vec::new(),
            held_ids: HashSet::new(),
            held_labels: Vec::new(),
            deliveries: Vec::new(),
        }
    }

    /// A bad message: a `transactions_rejected` row, and the dead-letter topic if any.
    fn reject(&mut self, msg: &OwnedMessage, at: At, reason: String, batch: &mut Batch) {
        self.metrics
            .messages
            .with_label_values(&[msg.topic(), "rejected"])
            .inc();
        let payload = msg.payload().unwrap_or_default();
        let source = format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset());
        if let Some(out) = &self.outputs {
            if let Some(topic) = &out.dead_letter_topic {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "fraudlake.reason",
                        value: Some(reason.as_str()),
                    })
                    .insert(Header {
                        key: "fraudlake.source",
                        value: Some(source.as_str()),
                    });
                let mut record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(topic).payload(payload).headers(headers);
                if let Some(key) = msg.key() {
                    record = record.key(key);
                }
                match out.producer.send_result(record) {
                    Ok(d) => self.deliveries.push(d),
                    Err((e, _)) => {
                        tracing::error!(error = %e, "cannot queue a dead letter");
                    }
                }
            }
        }
        batch.rejected.push((at, message::rejection(msg, reason)));
    }

    /// An answered transaction into the batch (and the scores topic).
    fn answered(&mut self, at: At, answered: Answered, batch: &mut Batch) {
        if let Some(out) = &self.outputs {
            if let Some(topic) = &out.scores_topic {
                let key = answered.row.tx.tx_id.to_string();
                match serde_json::to_vec(&ScoreMessage::of(&answered.row)) {
                    Ok(value) => match out
                        .producer
                        .send_result(FutureRecord::to(topic).key(&key).payload(&value))
                    {
                        Ok(d) => self.deliveries.push(d),
                        Err((e, _)) => tracing::error!(error = %e, "cannot queue a score"),
                    },
                    Err(e) => tracing::error!(error = %e, "cannot encode a score"),
                }
            }
        }
        batch.transactions.push((at, answered.row.tx));
        batch.predictions.push((at, answered.row));
    }

    /// Scores the held transactions: together, or one by one when the group is refused (a
    /// reused tx_id, a time too far ahead), so one bad message rejects only itself.
    async fn score_held(&mut self, batch: &mut Batch) -> Result<()> {
        let Some(state) = self.scoring.clone() else {
            return Ok(());
        };
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        self.held_ids.clear();
        let mut txs: Vec<Transaction> = held.iter().map(|h| h.tx).collect();
        match score_transactions(&state, &mut txs).await {
            Ok(answers) => {
                for (h, (_, answered)) in held.into_iter().zip(answers) {
                    self.answered(h.at, answered, batch);
                }
            }
            Err(_) => {
                for h in held {
                    let mut one = [h.tx];
                    match score_transactions(&state, &mut one).await {
                        Ok(mut answers) => match answers.pop() {
                            Some((_, answered)) => self.answered(h.at, answered, batch),
                            None => self.reject(&h.msg, h.at, "no answer".into(), batch),
                        },
                        Err(e) => {
                            let reason = refusal(e, "scoring")?;
                            self.reject(&h.msg, h.at, reason, batch)
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl StreamDecoder {
    /// Judges the held labels and applies those that count to the online state (after the
    /// transactions held before them are scored); together, or one by one when the group is
    /// refused, so one bad label rejects only itself.
    async fn judge_held_labels(&mut self, batch: &mut Batch) -> Result<()> {
        let Some(state) = self.scoring.clone() else {
            return Ok(());
        };
        if self.held_labels.is_empty() {
            return Ok(());
        }
        self.score_held(batch).await?;
        let held = std::mem::take(&mut self.held_labels);
        let Some(topic) = self.labels_topic.clone() else {
            return Ok(());
        };
        let source = format!("kafka:{topic}");
        let labels: Vec<LabelRequest> = held.iter().map(|h| h.label.clone()).collect();
        match accept_labels(&state, &labels, &source, None).await {
            Ok((_, rows)) if rows.len() == held.len() => {
                batch.labels.extend(held.iter().map(|h| h.at).zip(rows));
            }
            Ok(_) => return Err(Error::invalid("labels and their rows do not match")),
            Err(_) => {
                for h in held {
                    match accept_labels(&state, std::slice::from_ref(&h.label), &source, None).await
                    {
                        Ok((_, rows)) => batch.labels.extend(rows.into_iter().map(|r| (h.at, r))),
                        Err(e) => {
                            let reason = refusal(e, "judging labels")?;
                            self.reject(&h.msg, h.at, reason, batch)
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Decode for StreamDecoder {
    async fn decode(
        &mut self,
        msg: &OwnedMessage,
        at: At,
        batch: &mut Batch,
    ) -> Result<Option<i64>> {
        if msg.topic() == self.transactions_topic {
            match message::transaction(msg.payload()) {
                Ok(tx) if self.scoring.is_some() => {
                    let event_us = tx.tx_ts_us;
                    if !self.held_ids.insert(tx.tx_id) {
                        // The same tx_id twice in one scoring call would both count as new.
                        self.score_held(batch).await?;
                        self.held_ids.insert(tx.tx_id);
                    }
                    self.held.push(Held {
                        at,
                        tx,
                        msg: Arc::new(msg.clone()),
                    });
                    if self.held.len() >= SCORE_CHUNK {
                        self.score_held(batch).await?;
                    }
                    return Ok(Some(event_us));
                }
                Ok(tx) => batch.transactions.push((at, tx)),
                Err(reason) => self.reject(msg, at, reason, batch),
            }
        } else if Some(msg.topic()) == self.labels_topic.as_deref() {
            match message::label(msg.payload()) {
                Ok(label) if self.scoring.is_some() => {
                    self.held_labels.push(HeldLabel {
                        at,
                        label,
                        msg: Arc::new(msg.clone()),
                    });
                    if self.held_labels.len() >= LABEL_CHUNK {
                        self.judge_held_labels(batch).await?;
                    }
                }
                Ok(label) => batch.labels.push((
                    at,
                    Label {
                        tx_id: label.tx_id,
                        is_fraud: label.is_fraud,
                        fraud_scenario: label.fraud_scenario,
                        labeled_at_us: chrono::Utc::now().timestamp_micros(),
                        provenance: Provenance {
                            source: format!("kafka:{}", msg.topic()),
                            ..Provenance::default()
                        },
                    },
                )),
                Err(reason) => self.reject(msg, at, reason, batch),
            }
        }
        Ok(None)
    }

    async fn before_commit(&mut self, batch: &mut Batch) -> Result<()> {
        self.score_held(batch).await?;
        self.judge_held_labels(batch).await?;
        // What was produced for these messages is delivered before their offsets land: a
        // crash re-reads them and produces again (at least once for the output topics).
        for d in std::mem::take(&mut self.deliveries) {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(Error::kafka("an output message was not delivered", e))
                }
                Err(_) => return Err(Error::invalid("an output message was cancelled")),
            }
        }
        Ok(())
    }

    async fn after_commit(&mut self, _landed: &Landed) {
        if let Some(state) = &self.scoring {
            // The lake holds the labels now: the book need not remember them.
            state.labels.lock().await.forget_accepted();
        }
    }

    /// Held transactions and labels of revoked partitions are neither scored nor judged here:
    /// their new owner reads them again.
    fn forget(&mut self, revoked: &[TopicPartition]) {
        let gone = |topic: &str, partition: i32| {
            revoked.iter().any(|(t, p)| t == topic && *p == partition)
        };
        self.held
            .retain(|h| !gone(h.msg.topic(), h.msg.partition()));
        self.held_labels
            .retain(|h| !gone(h.msg.topic(), h.msg.partition()));
        self.held_ids = self.held.iter().map(|h| h.tx.tx_id).collect();
    }
}
