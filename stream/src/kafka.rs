//! Client settings and topic metadata. One place says how fraudlake talks to a broker: which
//! librdkafka settings the consumers and producers use and why, how a missing topic is
//! reported, and where a partition's messages begin and end.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, Result};

/// How long a metadata or watermark request may take before the broker counts as unreachable.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings every client shares.
pub fn base_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        // librdkafka logs through its own logger; errors reach us as results.
        .set("log_level", "3")
        .set("socket.keepalive.enable", "true");
    c
}

/// A consumer in `group` that never commits by itself: offsets are committed to the broker
/// only after the lake holds the messages (and the lake's own record wins at start).
/// `session_timeout_ms` also bounds how long a group waits for a killed member's partitions
/// (and, with Tansu, how long a join takes: about half of it).
pub fn consumer_config(brokers: &str, group: &str, session_timeout_ms: u32) -> ClientConfig {
    let mut c = base_config(brokers);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (session_timeout_ms / 5).max(100).to_string(),
        )
        // End-of-partition events: a partition at its end holds back no other (alignment).
        .set("enable.partition.eof", "true")
        // Feeds `fraud_stream_lag_messages` (see `consume::Rebalances`).
        .set("statistics.interval.ms", "5000");
    c
}

/// A producer whose delivery means the broker's in-sync replicas all hold the message
/// (`acks=all`); `linger.ms=1` batches the concurrent answers of a busy server into few
/// requests without adding visible latency.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = base_config(brokers);
    c.set("acks", "all")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "5000")
        .set("enable.idempotence", "false");
    c
}

/// What librdkafka reports outside any call: an end-of-partition "error" is how a consumer
/// with `enable.partition.eof` learns it is caught up, not a fault (librdkafka's default
/// handler logs each one as an error); the rest is logged as a warning (the calls that fail
/// because of it return their own errors).
pub fn report(error: KafkaError, reason: &str) {
    let eof = matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    );
    if !eof {
        tracing::warn!(error = %error, reason, "kafka client");
    }
}

/// A consumer context that only quiets end-of-partition reports (see [`report`]).
pub struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        report(error, reason);
    }
}

impl ConsumerContext for Quiet {}

/// The partitions of `topic`, or an error saying the topic does not exist.
pub fn partitions<C: ClientContext>(client: &Client<C>, topic: &str) -> Result<Vec<i32>> {
    let metadata = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| Error::kafka(format!("cannot read the metadata of topic '{topic}'"), e))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::invalid(format!("topic '{topic}' does not exist")));
    };
    if let Some(err) = t.error() {
        let code: RDKafkaErrorCode = err.into();
        return Err(Error::invalid(format!(
            "topic '{topic}' cannot be used: {code} (does it exist?)"
        )));
    }
    let mut out: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "topic '{topic}' does not exist (no partitions)"
        )));
    }
    out.sort_unstable();
    Ok(out)
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(brokers)
        .create()
        .map_err(|e| Error::kafka(format!("cannot connect to {brokers}"), e))?;
    if self::partitions(admin.inner(), topic).is_ok() {
        return Ok(());
    }
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .map_err(|e| Error::kafka(format!("cannot create topic '{topic}'"), e))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, "created the topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::invalid(format!(
                    "cannot create topic '{name}': {code}"
                )))
            }
        }
    }
    Ok(())
}
