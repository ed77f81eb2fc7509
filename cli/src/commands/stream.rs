//! `fraudlake stream`: transactions and labels from Kafka topics into the lake, exactly once,
//! optionally scored as `serve` scores them. The loop and the landing rule live in the
//! `fraudlake-stream` crate; this wires flags, settings and output.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use fraudlake_features::{compile, FeatureSet, SkewPolicy};
use fraudlake_serving::server::{self, ServeConfig};
use fraudlake_stream::consume::{self, ConsumeOptions, Outputs, StreamDecoder, Summary};
use fraudlake_stream::landing::Feeds;
use fraudlake_stream::metrics::StreamMetrics;

use crate::config::Settings;
use crate::output::{print_rows, Format};

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Kafka bootstrap servers, host:port[,host:port...] ([stream] brokers).
    #[arg(long, env = "FRAUDLAKE_KAFKA_BROKERS")]
    brokers: Option<String>,
    /// The topic of transactions: each message a `POST /score` body (JSON), keyed by customer.
    #[arg(long)]
    transactions_topic: String,
    /// The topic of labels: each message one `POST /labels` item (JSON).
    #[arg(long)]
    labels_topic: Option<String>,
    /// The consumer group; its offsets are recorded in the lake per topic partition.
    #[arg(long, default_value = "fraudlake-stream")]
    group: String,
    /// Also score each transaction with the champion and online features (as `serve`), and
    /// land the answers in `predictions`.
    #[arg(long)]
    score: bool,
    /// With --score: produce each answer to this topic (key tx_id) for the payment system.
    #[arg(long, requires = "score")]
    scores_topic: Option<String>,
    /// Also produce every rejected message here, with headers fraudlake.reason and
    /// fraudlake.source (it always lands in `transactions_rejected`).
    #[arg(long)]
    dead_letter_topic: Option<String>,
    /// Land (one Delta commit per table) every N messages ...
    #[arg(long, default_value_t = 20_000)]
    batch_rows: usize,
    /// ... or every T milliseconds, whichever comes first.
    #[arg(long, default_value_t = 1_000)]
    batch_ms: u64,
    /// The group's session timeout: how long the group waits for a dead member before its
    /// partitions move.
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u32,
    /// Stop (exit 0) once nothing new arrived for this many seconds; default: run until
    /// SIGINT/SIGTERM.
    #[arg(long, value_name = "SECONDS")]
    until_idle: Option<f64>,
    /// Serve Prometheus metrics (lag per partition, messages by outcome) on this address.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// With --score: risk at or above which the decision is `review`.
    #[arg(long, default_value_t = 0.3)]
    review_threshold: f64,
    /// With --score: risk at or above which the decision is `decline`.
    #[arg(long, default_value_t = 0.8)]
    decline_threshold: f64,
    /// With --score: as `serve --max-event-skew`.
    #[arg(long, value_parser = super::serve::parse_span)]
    max_event_skew: Option<Duration>,
    /// With --score: as `serve --event-skew-policy`.
    #[arg(long)]
    event_skew_policy: Option<SkewPolicy>,
    /// With --score: as `serve --watermark-quorum`.
    #[arg(long)]
    watermark_quorum: Option<usize>,
    /// With --score: pause a partition whose newest transaction is more than this ahead of
    /// the slowest partition's (event-time alignment), so no transaction arrives later than
    /// the online state keeps history for. Default: half of --max-event-skew.
    #[arg(long, value_parser = super::serve::parse_span)]
    max_partition_skew: Option<Duration>,
    /// With --score: the feature SQL (default sql/features.sql).
    #[arg(long = "sql")]
    sql: Option<PathBuf>,
    /// The summary printed at the end.
    #[arg(long, visible_alias = "output", value_enum, default_value_t)]
    format: Format,
}

pub async fn run(a: StreamArgs, settings: &Settings) -> Result<u8> {
    let brokers = a
        .brokers
        .clone()
        .or_else(|| settings.stream.brokers.clone())
        .context(
            "no brokers: pass --brokers HOST:PORT, set FRAUDLAKE_KAFKA_BROKERS or [stream] brokers",
        )?;
    if a.batch_rows == 0 {
        anyhow::bail!("--batch-rows must be at least 1");
    }
    let until_idle = match a.until_idle {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => anyhow::bail!("--until-idle must be a positive number of seconds, got {s}"),
        None => None,
    };
    let lake = settings.open_lake()?;
    let metrics = StreamMetrics::new()?;
    if let Some(addr) = a.metrics_addr {
        let registry = prometheus::Registry::new();
        metrics.register(&registry)?;
        fraudlake_stream::metrics::serve(addr, registry)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
    }
    let mut max_partition_skew = None;
    let scoring = if a.score {
        let event_time = super::serve::event_time_rules_from(
            a.max_event_skew,
            a.event_skew_policy,
            a.watermark_quorum,
            settings,
        )?;
        max_partition_skew =
            Some(a.max_partition_skew.unwrap_or_else(|| {
                Duration::from_nanos(event_time.max_skew_ns.unsigned_abs() / 2)
            }));
        let config = ServeConfig {
            // Not listened on: the scoring state is the server's, without HTTP.
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            review_threshold: a.review_threshold,
            decline_threshold: a.decline_threshold,
            max_batch: 1_000,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(5),
            max_concurrency: 1,
            flush_rows: a.batch_rows,
            flush_interval: Duration::from_millis(a.batch_ms.max(10)),
            reload_interval: Duration::from_secs(30),
            event_time,
            insecure_no_auth: true,
            label_policy: settings.label_policy(None)?,
            online_store: None,
            store_fail_open: false,
            drift: None,
        };
        let path = a
            .sql
            .clone()
            .unwrap_or_else(|| settings.features_sql.clone());
        let plan = Arc::new(compile(&FeatureSet::load(&path)?).await?);
        let (state, _writer) = server::build_state(&lake, plan, &config, None).await?;
        Some(state)
    } else {
        None
    };
    let outputs = if a.scores_topic.is_some() || a.dead_letter_topic.is_some() {
        Some(
            Outputs::connect(
                &brokers,
                a.scores_topic.clone(),
                a.dead_letter_topic.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let mut topics = vec![(a.transactions_topic.clone(), Feeds::Transactions)];
    if let Some(l) = &a.labels_topic {
        if *l == a.transactions_topic {
            anyhow::bail!("--labels-topic must differ from --transactions-topic");
        }
        topics.push((l.clone(), Feeds::Labels));
    }
    let options = ConsumeOptions {
        brokers,
        group: a.group.clone(),
        topics,
        batch_rows: a.batch_rows,
        batch_interval: Duration::from_millis(a.batch_ms.max(10)),
        session_timeout_ms: a.session_timeout_ms,
        until_idle,
        max_commit_failures: Some(8),
        operation: "stream",
        max_partition_skew,
    };
    let mut decoder = StreamDecoder::new(
        &a.transactions_topic,
        a.labels_topic.as_deref(),
        scoring,
        outputs,
        metrics.clone(),
    );
    let summary = consume::run(
        lake,
        &options,
        &mut decoder,
        &metrics,
        server::shutdown_signal(),
    )
    .await?;
    print_summary(&summary, a.format)?;
    Ok(0)
}

fn print_summary(s: &Summary, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    print_rows(std::slice::from_ref(s), format)
}
