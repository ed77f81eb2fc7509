//! `serve --scoring-log kafka://HOST:PORT/TOPIC`: the answers of `/score` wait for the broker.
//!
//! [`KafkaScoringLog`] implements the server's [`ScoringLog`]: each answered transaction (its
//! row for `transactions` and `predictions`, features included) is produced with `acks=all`,
//! keyed by customer, and the answer leaves only once every row of the request is
//! acknowledged; concurrent requests share the producer's batches (`linger.ms=1`), so
//! throughput holds. A watcher asks the broker for the topic's metadata every second: while
//! it does not answer, `/ready` and `/score` say 503 (no answer without a durable record).
//!
//! [`LogLander`] is the lake writer of this mode: a consumer of the topic (group
//! `fraudlake-scoring-log`) landing it through the same exactly-once commit as `fraudlake
//! stream`, on its own thread. [`catch_up`] lands the rest of the log directly, from the lake's
//! offsets to the log's end: a server starts serving only after that, so a SIGKILLed server's
//! answered transactions are in the lake (and in the rebuilt online state) before the new one
//! answers; a graceful stop calls it again before leaving.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fraudlake_pipeline::Lake;
use fraudlake_serving::server::scoring_log::ScoringLog;
use fraudlake_serving::server::writer::Scored;
use futures::future::BoxFuture;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::oneshot;

use crate::consume::{self, ConsumeOptions, Decode};
use crate::kafka;
use crate::landing::{At, Batch, Feeds, Landing};
use crate::message::{rejection, LoggedScore};
use crate::metrics::StreamMetrics;
use crate::{Error, Result};

/// The consumer group that lands the log (every replica joins it; each lands its partitions).
pub const DEFAULT_GROUP: &str = "fraudlake-scoring-log";
/// Partitions of a log topic fraudlake creates.
pub const DEFAULT_PARTITIONS: i32 = 3;
/// How long an answer waits for the broker before it is refused (503).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the log is: `kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?partitions=N&group=G]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub brokers: String,
    pub topic: String,
    pub partitions: i32,
    pub group: String,
}

impl LogTarget {
    pub fn parse(url: &str) -> Result<LogTarget> {
        let usage = || {
            Error::invalid(format!(
                "--scoring-log '{url}': expected kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?partitions=N&group=G]"
            ))
        };
        let rest = url.strip_prefix("kafka://").ok_or_else(usage)?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (brokers, topic) = path.split_once('/').ok_or_else(usage)?;
        let valid_topic = |t: &str| {
            !t.is_empty()
                && t.len() <= 249
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if brokers.is_empty() || !valid_topic(topic) {
            return Err(usage());
        }
        let mut target = LogTarget {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            partitions: DEFAULT_PARTITIONS,
            group: DEFAULT_GROUP.to_string(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("partitions", n)) => {
                    target.partitions = n
                        .parse()
                        .ok()
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "--scoring-log: partitions must be 1..10000, got '{n}'"
                            ))
                        })?
                }
                Some(("group", g)) if valid_topic(g) => target.group = g.to_string(),
                _ => {
                    return Err(Error::invalid(format!(
                        "--scoring-log: unknown or invalid parameter '{pair}' (known: partitions, group)"
                    )))
                }
            }
        }
        Ok(target)
    }
}

/// The producer side (see the module comment).
pub struct KafkaScoringLog {
    producer: FutureProducer,
    target: LogTarget,
    up: AtomicBool,
    metrics: StreamMetrics,
}

impl KafkaScoringLog {
    /// Creates the topic if missing and checks the broker answers; then watches it.
    pub async fn open(target: LogTarget, metrics: StreamMetrics) -> Result<Arc<KafkaScoringLog>> {
        kafka::ensure_topic(&target.brokers, &target.topic, target.partitions).await?;
        let producer: FutureProducer = kafka::producer_config(&target.brokers)
            .create()
            .map_err(|e| Error::kafka(format!("cannot connect to {}", target.brokers), e))?;
        kafka::partitions(producer.client(), &target.topic)?;
        metrics.log_up.set(1);
        let log = Arc::new(KafkaScoringLog {
            producer,
            target,
            up: AtomicBool::new(true),
            metrics,
        });
        watch(Arc::downgrade(&log));
        Ok(log)
    }

    pub fn target(&self) -> &LogTarget {
        &self.target
    }

    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            if up {
                tracing::info!("the scoring log answers again");
            } else {
                tracing::error!(log = %self.shown(), "the scoring log does not answer: refusing to score");
            }
        }
        self.metrics.log_up.set(i64::from(up));
    }
}

/// Every second: does the broker answer for the topic? Ends with the log.
fn watch(log: Weak<KafkaScoringLog>) {
    let spawned = std::thread::Builder::new()
        .name("scoring-log-watch".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some(log) = log.upgrade() else { return };
            let answered = log
                .producer
                .client()
                .fetch_metadata(Some(&log.target.topic), Duration::from_secs(2))
                .is_ok_and(|m| {
                    m.topics()
                        .iter()
                        .any(|t| t.name() == log.target.topic && t.error().is_none())
                });
            log.set_up(answered);
            log.metrics
                .log_pending
                .set(i64::from(log.producer.in_flight_count()));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the scoring log watcher");
    }
}

impl ScoringLog for KafkaScoringLog {
    fn append<'a>(&'a self, rows: &'a [Scored]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut encoded = Vec::with_capacity(rows.len());
            for r in rows {
                let value = serde_json::to_vec(&LoggedScore::of(r)).map_err(|e| e.to_string())?;
                encoded.push((r.tx.customer_id.to_string(), value));
            }
            let sends = encoded.iter().map(|(key, value)| {
                self.producer.send(
                    FutureRecord::to(&self.target.topic).key(key).payload(value),
                    Timeout::After(ACK_TIMEOUT),
                )
            });
            for result in futures::future::join_all(sends).await {
                if let Err((e, _)) = result {
                    self.set_up(false);
                    return Err(format!("{} did not acknowledge: {e}", self.shown()));
                }
            }
            Ok(())
        })
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn shown(&self) -> String {
        format!("kafka://{}/{}", self.target.brokers, self.target.topic)
    }
}

/// Scoring-log messages into `transactions` and `predictions`.
struct LogDecoder {
    feature_sets: Vec<Arc<str>>,
}

impl Decode for LogDecoder {
    async fn decode(
        &mut self,
        msg: &OwnedMessage,
        at: At,
        batch: &mut Batch,
    ) -> Result<Option<i64>> {
        let payload = msg.payload().unwrap_or_default();
        let row = serde_json::from_slice::<LoggedScore>(payload)
            .map_err(|e| format!("not a scoring-log record: {e}"))
            .and_then(|r| r.into_scored(&mut self.feature_sets));
        match row {
            Ok(row) => {
                batch.transactions.push((at, row.tx));
                batch.predictions.push((at, row));
            }
            Err(reason) => batch.rejected.push((at, rejection(msg, reason))),
        }
        Ok(None)
    }
}

/// The log's consumer on its own thread (see the module comment).
pub struct LogLander {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogLander {
    /// Starts landing `target` into `lake`, committing every `batch_rows` or `batch_interval`.
    pub fn start(
        lake: Lake,
        target: &LogTarget,
        batch_rows: usize,
        batch_interval: Duration,
        metrics: StreamMetrics,
    ) -> Result<LogLander> {
        let options = ConsumeOptions {
            brokers: target.brokers.clone(),
            group: target.group.clone(),
            topics: vec![(target.topic.clone(), Feeds::Transactions)],
            batch_rows,
            batch_interval,
            session_timeout_ms: 10_000,
            until_idle: None,
            max_commit_failures: None,
            operation: "serve: scoring log",
            max_partition_skew: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::invalid(format!("cannot start the scoring log runtime: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("scoring-log-lander".into())
            .spawn(move || {
                let mut decoder = LogDecoder {
                    feature_sets: Vec::new(),
                };
                let stopped = async {
                    let _ = stopped.await;
                };
                match runtime.block_on(consume::run(
                    lake,
                    &options,
                    &mut decoder,
                    &metrics,
                    stopped,
                )) {
                    Ok(s) => tracing::info!(messages = s.messages, "scoring log lander stopped"),
                    Err(e) => tracing::error!(error = %e, "the scoring log lander stopped"),
                }
            })
            .map_err(|e| Error::invalid(format!("cannot start the scoring log lander: {e}")))?;
        Ok(LogLander {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Lands what it holds and stops.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LogLander {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Lands everything the log holds beyond what the lake records, directly (no group join, so
/// no wait for a killed member's session to expire), and returns the messages it landed. The
/// log's end is where each partition's end-of-partition event comes: asking the broker for
/// the end offset instead is wrong on Tansu 0.6. The group's lander may land the same
/// messages at the same time: both commit through [`Landing`], whose per-table offsets (and
/// Delta's conflict check on the same application ids) keep every message once.
pub async fn catch_up(lake: &Lake, target: &LogTarget, timeout: Duration) -> Result<usize> {
    use rdkafka::consumer::StreamConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let feeds = HashMap::from([(target.topic.clone(), Feeds::Transactions)]);
    let mut landing = Landing::new(lake.clone(), &target.group, feeds, "serve: scoring log");
    let mut config = kafka::base_config(&target.brokers);
    // A group id librdkafka wants for a consumer; nothing joins or commits under it.
    config
        .set("group.id", format!("{}-catch-up", target.group))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let reader: StreamConsumer<kafka::Quiet> = config
        .create_with_context(kafka::Quiet)
        .map_err(|e| Error::kafka(format!("cannot connect to {}", target.brokers), e))?;
    let parts: Vec<(String, i32)> = kafka::partitions(reader.client(), &target.topic)?
        .into_iter()
        .map(|p| (target.topic.clone(), p))
        .collect();
    let resume = landing.resume_offsets(&parts).await?;
    let mut tpl = TopicPartitionList::new();
    for tp in &parts {
        let next = resume.get(tp).copied().flatten().unwrap_or(0);
        tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(next))
            .map_err(|e| Error::kafka("bad offset", e))?;
    }
    reader
        .assign(&tpl)
        .map_err(|e| Error::kafka("cannot read the scoring log", e))?;
    let mut open: std::collections::HashSet<i32> = parts.iter().map(|(_, p)| *p).collect();
    let deadline = Instant::now() + timeout;
    let mut decoder = LogDecoder {
        feature_sets: Vec::new(),
    };
    let mut batch = Batch::default();
    let mut landed = 0;
    loop {
        let done = open.is_empty();
        if done || batch.messages() >= 50_000 {
            landed += batch.messages();
            land_with_retries(&mut landing, &mut batch).await?;
            if done {
                return Ok(landed);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::invalid(format!(
                "cannot land the scoring log {} within {} s ({landed} messages landed so far)",
                target.topic,
                timeout.as_secs()
            )));
        }
        match tokio::time::timeout(left, reader.recv()).await {
            Ok(Ok(m)) => {
                let m = m.detach();
                let at = batch.consumed(m.topic(), m.partition(), m.offset());
                decoder.decode(&m, at, &mut batch).await?;
            }
            Ok(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the scoring log (retrying)");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => {}
        }
    }
}

/// A landing retried a few times: a conflict with the group's lander landing the same
/// messages is expected, and the retry lands only what is still missing.
async fn land_with_retries(landing: &mut Landing, batch: &mut Batch) -> Result<()> {
    let mut tries = 0;
    loop {
        match landing.commit(batch).await {
            Ok(_) => return Ok(()),
            Err(e) if tries >= 5 => return Err(e),
            Err(e) => {
                tries += 1;
                tracing::info!(error = %e, "landing the scoring log again");
                tokio::time::sleep(Duration::from_millis(100 * tries)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_urls_parse_or_say_why_not() {
        let t = LogTarget::parse("kafka://127.0.0.1:9092/scoring").expect("plain");
        assert_eq!(t.brokers, "127.0.0.1:9092");
        assert_eq!(t.topic, "scoring");
        assert_eq!(t.partitions, DEFAULT_PARTITIONS);
        assert_eq!(t.group, DEFAULT_GROUP);
        let t = LogTarget::parse("kafka://a:1,b:2/log.v1?partitions=6&group=g-1").expect("full");
        assert_eq!(
            (t.brokers.as_str(), t.partitions, t.group.as_str()),
            ("a:1,b:2", 6, "g-1")
        );
        for bad in [
            "redis://x/y",
            "kafka://host:1",
            "kafka://host:1/",
            "kafka:///t",
            "kafka://h:1/t?partitions=0",
            "kafka://h:1/t?x=1",
            "kafka://h:1/bad topic",
        ] {
            assert!(LogTarget::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
