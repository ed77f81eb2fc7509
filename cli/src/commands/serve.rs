//! `fraudlake serve`: the scoring API on the lake's champion model, with features from the
//! online engine compiled from the same feature SQL as training.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use fraudlake_features::{compile, EventTimeRules, FeatureSet, SkewPolicy};
use fraudlake_pipeline::Lake;
use fraudlake_serving::server::drift::{ColumnVerdict, DriftVerdict, DriftVerdicts};
use fraudlake_serving::server::scoring_log::ScoringLog as _;
use fraudlake_serving::server::{self, ServeConfig};
use fraudlake_stream::metrics::StreamMetrics;
use fraudlake_stream::scoring_log::{KafkaScoringLog, LogLander, LogTarget};

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FRAUDLAKE_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Risk at or above which the decision is `review`.
    #[arg(long, env = "FRAUDLAKE_REVIEW_THRESHOLD", default_value_t = 0.3)]
    review_threshold: f64,
    /// Risk at or above which the decision is `decline`.
    #[arg(long, env = "FRAUDLAKE_DECLINE_THRESHOLD", default_value_t = 0.8)]
    decline_threshold: f64,
    /// Most transactions in one /score/batch (and labels in one /labels).
    #[arg(long, default_value_t = 1000)]
    max_batch: usize,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Requests running at once (more wait).
    #[arg(long, default_value_t = 1024)]
    max_concurrency: usize,
    /// Request timeout, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Commit scored transactions to the lake every N rows ...
    #[arg(long, env = "FRAUDLAKE_FLUSH_ROWS", default_value_t = 50_000)]
    flush_rows: usize,
    /// ... or every T milliseconds, whichever comes first.
    #[arg(long, env = "FRAUDLAKE_FLUSH_MS", default_value_t = 2000)]
    flush_ms: u64,
    /// How often to look for a new champion, in seconds.
    #[arg(long, default_value_t = 30)]
    reload_secs: u64,
    /// Serve without API keys: every caller may score, label and reload. Refused unless
    /// --addr is a loopback address; logged as a warning. For demos and benchmarks only.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Label precedence for POST /labels, most trusted source kind first (e.g. `ingest,api`);
    /// overrides `[labels] precedence` in fraudlake.toml. Default: ingest > api > others.
    #[arg(long)]
    label_precedence: Option<String>,
    /// The feature SQL (default sql/features.sql, env FRAUDLAKE_FEATURES_SQL).
    #[arg(long = "sql")]
    sql: Option<PathBuf>,
    /// Refuse (or clamp) a transaction whose tx_ts is more than this ahead of the server's
    /// event-time watermark; also how late one may arrive and still get exact features.
    /// A number with s, m, h or d (default 1h; fraudlake.toml [event_time] max_skew).
    #[arg(long, env = "FRAUDLAKE_MAX_EVENT_SKEW", value_parser = parse_span)]
    max_event_skew: Option<Duration>,
    /// What to do with a transaction too far ahead: refuse (422) or clamp (score and store it
    /// at the watermark's time). Default refuse ([event_time] skew_policy).
    #[arg(long, env = "FRAUDLAKE_EVENT_SKEW_POLICY")]
    event_skew_policy: Option<SkewPolicy>,
    /// Ahead transactions, among the last 2N-1, that move the watermark to them (traffic
    /// resuming after a gap). Default 100 ([event_time] watermark_quorum).
    #[arg(long, env = "FRAUDLAKE_WATERMARK_QUORUM")]
    watermark_quorum: Option<usize>,
    /// Where the online feature state lives: `memory` (this process; rebuilt from the lake at
    /// start) or `redis://[user:password@]host:port/db`, shared by every replica pointed at
    /// it (bootstrapped from the lake once). Default memory ([online] store).
    #[arg(long, env = "FRAUDLAKE_ONLINE_STORE", value_name = "URL")]
    online_store: Option<String>,
    /// While the shared online store fails: `closed` answers 503 (default), `open` scores
    /// from the transaction alone, flagged `"degraded": true` ([online] on_store_failure).
    #[arg(long, env = "FRAUDLAKE_ON_STORE_FAILURE", value_enum)]
    on_store_failure: Option<StoreFailure>,
    /// A durable scoring log, `kafka://HOST:PORT[,HOST:PORT]/TOPIC[?partitions=N&group=G]`:
    /// every answered transaction is acknowledged by the broker (acks=all) before the answer
    /// is sent, and a consumer in this process lands the log in the lake exactly once; a kill
    /// then loses nothing answered. The topic is created if missing (3 partitions). Default:
    /// none, the in-process writer ([stream] scoring_log).
    #[arg(long, env = "FRAUDLAKE_SCORING_LOG", value_name = "URL")]
    scoring_log: Option<String>,
    /// Also run the DAGs of --dags on their schedules in this process (one process for all).
    #[arg(long, env = "FRAUDLAKE_SCHEDULER")]
    scheduler: bool,
    #[command(flatten)]
    dags: super::dag::DagsDir,
}

/// What a replica does while the shared online store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreFailure {
    Closed,
    Open,
}

/// `--online-store` or `[online] store`: `None` for the in-process store.
pub(crate) fn online_store(flag: Option<String>, settings: &Settings) -> Result<Option<String>> {
    let value = flag.or_else(|| settings.online.store.clone());
    match value.as_deref().map(str::trim) {
        None | Some("") | Some("memory") => Ok(None),
        Some(url) if url.starts_with("redis://") || url.starts_with("redis+unix://") => {
            Ok(Some(url.to_string()))
        }
        Some(other) => anyhow::bail!(
            "--online-store '{}': expected `memory` or redis://[user:password@]host:port/db",
            other.split('@').next_back().unwrap_or(other)
        ),
    }
}

/// The drift crate's reader of `drift_reports`, plugged into the server's drift gauges (the
/// server itself does not link the drift statistics).
#[derive(Debug)]
struct LakeDriftVerdicts;

#[async_trait::async_trait]
impl DriftVerdicts for LakeDriftVerdicts {
    async fn latest(
        &self,
        lake: &Lake,
    ) -> std::result::Result<Option<DriftVerdict>, fraudlake_serving::Error> {
        let latest = fraudlake_drift::latest(lake)
            .await
            .map_err(|e| fraudlake_serving::Error::Drift(e.to_string()))?;
        Ok(latest.map(|l| DriftVerdict {
            run_id: l.run_id,
            generated_at_secs: l.generated_at_secs,
            dataset_drift: l.dataset_drift,
            drift_share: l.drift_share,
            columns: l
                .columns
                .into_iter()
                .map(
                    |(scope, column, method, statistic, drifted)| ColumnVerdict {
                        scope,
                        column,
                        method,
                        statistic,
                        drifted,
                    },
                )
                .collect(),
        }))
    }
}

fn store_fail_open(flag: Option<StoreFailure>, settings: &Settings) -> Result<bool> {
    Ok(match (flag, settings.online.on_store_failure.as_deref()) {
        (Some(f), _) => f == StoreFailure::Open,
        (None, None | Some("closed")) => false,
        (None, Some("open")) => true,
        (None, Some(other)) => {
            anyhow::bail!("fraudlake.toml [online] on_store_failure '{other}': closed or open")
        }
    })
}

pub async fn run(a: ServeArgs, settings: &Settings) -> Result<u8> {
    // The old shared admin token is replaced by API keys with the `admin` scope: say so
    // rather than silently ignoring it.
    if std::env::var_os("FRAUDLAKE_ADMIN_TOKEN").is_some() {
        tracing::warn!("FRAUDLAKE_ADMIN_TOKEN is no longer used: /admin/reload takes an API key with the admin scope (`fraudlake keys create --scope admin`)");
    }
    let config = ServeConfig {
        addr: a.addr,
        review_threshold: a.review_threshold,
        decline_threshold: a.decline_threshold,
        max_batch: a.max_batch,
        max_body_bytes: a.max_body_bytes,
        request_timeout: Duration::from_millis(a.timeout_ms.max(1)),
        max_concurrency: a.max_concurrency,
        flush_rows: a.flush_rows,
        flush_interval: Duration::from_millis(a.flush_ms.max(10)),
        reload_interval: Duration::from_secs(a.reload_secs.max(1)),
        event_time: event_time_rules(&a, settings)?,
        insecure_no_auth: a.insecure_no_auth,
        label_policy: settings.label_policy(a.label_precedence.as_deref())?,
        online_store: online_store(a.online_store.clone(), settings)?,
        store_fail_open: store_fail_open(a.on_store_failure, settings)?,
        drift: Some(Arc::new(LakeDriftVerdicts)),
    };
    config.validate()?;
    let path = a.sql.unwrap_or_else(|| settings.features_sql.clone());
    let plan = Arc::new(compile(&FeatureSet::load(&path)?).await?);
    let lake = settings.open_lake()?;
    // One signal stops both: the HTTP server drains, then the scheduler lets running DAG runs
    // finish.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut scheduler = None;
    let start_scheduler = if a.scheduler {
        let dags = super::dag::load(&a.dags)?;
        let env = super::dag::op_env(settings)?;
        Some((dags, env))
    } else {
        None
    };
    let stop_for_scheduler = stop_rx.clone();
    let log = match a
        .scoring_log
        .clone()
        .or_else(|| settings.stream.scoring_log.clone())
    {
        Some(url) => Some(ScoringLogParts::start(&url, &lake, &config).await?),
        None => None,
    };
    let served = server::serve(
        lake.clone(),
        plan,
        config,
        log.as_ref().map(|l| l.log.clone() as Arc<dyn server::scoring_log::ScoringLog>),
        super::dag::wait(stop_rx),
        |registry| {
        if let Some(l) = &log {
            if let Err(e) = l.metrics.register(registry) {
                tracing::error!(error = %e, "scoring log metrics are not registered");
            }
        }
        let Some((dags, env)) = start_scheduler else {
            return;
        };
        match fraudlake_dag::DagMetrics::register(registry) {
            Ok(metrics) => {
                let runner = fraudlake_dag::Runner { env, metrics };
                let stop = super::dag::wait(stop_for_scheduler);
                scheduler = Some(tokio::spawn(async move {
                    let result = fraudlake_dag::scheduler::run(runner, dags, stop).await;
                    // Said at once, not at shutdown: the API keeps serving without DAGs.
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "the DAG scheduler stopped; no DAG runs until restart");
                    }
                    result
                }));
            }
            Err(e) => tracing::error!(error = %e, "scheduler metrics; the scheduler is not started"),
        }
    })
    .await;
    if let Some(log) = log {
        log.stop(&lake).await;
    }
    if let Some(handle) = scheduler {
        match handle.await {
            Ok(Err(e)) => {
                served?;
                return Err(e.into());
            }
            Err(e) => tracing::error!(error = %e, "the scheduler task failed"),
            Ok(Ok(())) => {}
        }
    }
    served?;
    Ok(0)
}

/// `--scoring-log`: the producer the answers wait for, and the consumer landing the log.
struct ScoringLogParts {
    target: LogTarget,
    log: Arc<KafkaScoringLog>,
    lander: LogLander,
    metrics: StreamMetrics,
}

/// How long a starting server may take to land what the log holds beyond the lake.
const CATCH_UP_AT_START: Duration = Duration::from_secs(300);
/// ... and a stopping one (what it leaves, the next start lands).
const CATCH_UP_AT_STOP: Duration = Duration::from_secs(30);

impl ScoringLogParts {
    /// Connects, starts landing, and returns once the lake holds everything the log held: the
    /// online state, rebuilt from the lake next, then includes what a killed server answered.
    async fn start(url: &str, lake: &Lake, config: &ServeConfig) -> Result<ScoringLogParts> {
        let target = LogTarget::parse(url)?;
        let metrics = StreamMetrics::new()?;
        let log = KafkaScoringLog::open(target.clone(), metrics.clone()).await?;
        let lander = LogLander::start(
            lake.clone(),
            &target,
            config.flush_rows,
            config.flush_interval,
            metrics.clone(),
        )?;
        let started = std::time::Instant::now();
        let landed =
            fraudlake_stream::scoring_log::catch_up(lake, &target, CATCH_UP_AT_START).await?;
        tracing::info!(
            log = %log.shown(),
            landed,
            seconds = started.elapsed().as_secs_f64(),
            "the lake holds everything the scoring log held"
        );
        Ok(ScoringLogParts {
            target,
            log,
            lander,
            metrics,
        })
    }

    /// Stops the group's consumer (it lands what it holds), then lands the rest of the log
    /// directly (bounded; what is left, the next start lands).
    async fn stop(self, lake: &Lake) {
        self.lander.stop();
        if let Err(e) =
            fraudlake_stream::scoring_log::catch_up(lake, &self.target, CATCH_UP_AT_STOP).await
        {
            tracing::warn!(error = %e, "stopping before the lake holds the whole scoring log; the next start lands the rest");
        }
    }
}

/// Flag or environment variable, else `[event_time]` in fraudlake.toml, else the defaults.
fn event_time_rules(a: &ServeArgs, settings: &Settings) -> Result<EventTimeRules> {
    event_time_rules_from(
        a.max_event_skew,
        a.event_skew_policy,
        a.watermark_quorum,
        settings,
    )
}

/// [`event_time_rules`] from the values of the flags (also used by `fraudlake online`).
pub(crate) fn event_time_rules_from(
    max_event_skew: Option<Duration>,
    event_skew_policy: Option<SkewPolicy>,
    watermark_quorum: Option<usize>,
    settings: &Settings,
) -> Result<EventTimeRules> {
    let file = &settings.event_time;
    let defaults = EventTimeRules::default();
    let skew = match (max_event_skew, &file.max_skew) {
        (Some(d), _) => d,
        (None, Some(text)) => parse_span(text)
            .map_err(|e| anyhow::anyhow!("fraudlake.toml [event_time] max_skew: {e}"))?,
        (None, None) => Duration::from_nanos(defaults.max_skew_ns.unsigned_abs()),
    };
    let policy = match (event_skew_policy, &file.skew_policy) {
        (Some(p), _) => p,
        (None, Some(text)) => text
            .parse()
            .map_err(|e| anyhow::anyhow!("fraudlake.toml [event_time] skew_policy: {e}"))?,
        (None, None) => defaults.policy,
    };
    Ok(EventTimeRules {
        max_skew_ns: i64::try_from(skew.as_nanos()).unwrap_or(i64::MAX),
        policy,
        quorum: watermark_quorum
            .or(file.watermark_quorum)
            .unwrap_or(defaults.quorum),
    })
}

/// A positive span: a number followed by s, m, h or d (e.g. 90s, 30m, 1h, 2d).
pub(crate) fn parse_span(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a span like 90s, 30m, 1h or 2d"))?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("'{text}': the unit must be s, m, h or d")),
    };
    if n == 0 || n > 3_650 * 86_400 / seconds {
        return Err(format!(
            "'{text}' must be more than 0 and at most 3650 days"
        ));
    }
    Ok(Duration::from_secs(n * seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_span;
    use std::time::Duration;

    #[test]
    fn spans_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_span("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_span("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_span(" 1h "), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_span("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "h", "1", "1w", "0h", "-1h", "1.5h", "99999999d"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }
}
