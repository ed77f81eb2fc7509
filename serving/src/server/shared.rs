//! The shared online store (`--online-store redis://...`) as one replica sees it: whether it
//! can be used now, what to do when it cannot (fail closed: 503; fail open: score from the
//! transaction alone, flagged `degraded`), and the watcher that notices an outage or a lost
//! state and recovers by itself. A store that lost its state (a Redis restart without
//! persistence: the generation key is gone) is re-bootstrapped from the lake by one replica
//! under a lock, after every replica's writer has had two flush intervals to commit what it
//! answered, so the rebuilt state holds every answered transaction. The watcher also applies
//! the labels committed to the lake (an `ingest` of chargebacks) to the store every few
//! seconds, once across the replicas.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use fraudlake_features::online::redis_store::{RedisStore, StoreError};
use fraudlake_features::{EventTimeRules, FeaturePlan, OnlineEngine};
use fraudlake_pipeline::Lake;

use super::state::SharedState;

/// How often the watcher asks the store for its generation.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// How often the store's entity count and memory are published.
const STATS_EVERY: Duration = Duration::from_secs(15);
/// How often labels committed to the lake are applied to the store (by one replica).
const LABEL_SYNC_EVERY: Duration = Duration::from_secs(5);

pub struct SharedOnline {
    pub store: RedisStore,
    /// The store answers with the generation this replica serves.
    up: AtomicBool,
    /// `--on-store-failure open`.
    pub fail_open: bool,
    rules: EventTimeRules,
}

impl SharedOnline {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn set_up(&self, state: &SharedState, up: bool) {
        self.up.store(up, Ordering::Release);
        state.metrics.store.up.set(i64::from(up));
    }

    /// A request found the store failing: not ready until the watcher sees it answer.
    pub fn failed(&self, state: &SharedState, e: &StoreError) {
        state.metrics.store.errors.inc();
        if matches!(e, StoreError::Unavailable(_) | StoreError::Lost(_)) {
            self.set_up(state, false);
        }
    }
}

fn startup_error(e: StoreError) -> Error {
    match e {
        StoreError::Engine(e) => e.into(),
        other => Error::invalid(other.to_string()),
    }
}

/// Connects to the store and makes sure it holds this feature set's state: adopts the
/// generation there, or bootstraps it from the lake (waiting while another replica does).
/// `engine` (this replica's local bookkeeping: watermark, recent tx_ids) gets the store's
/// watermark.
pub async fn open(
    url: &str,
    fail_open: bool,
    engine: &mut OnlineEngine,
    lake: &Lake,
) -> Result<SharedOnline> {
    let store = RedisStore::connect(url, engine)
        .await
        .map_err(startup_error)?;
    let mut waited_since = None;
    loop {
        if let Some(generation) = store.stored_generation().await.map_err(startup_error)? {
            store.adopt(&generation);
            tracing::info!(
                store = store.shown(),
                generation,
                "online store loaded; serving from it"
            );
            break;
        }
        match store.bootstrap(engine, lake).await {
            Ok(report) => {
                tracing::info!(
                    store = store.shown(),
                    transactions = report.transactions,
                    entities = report.entities,
                    rows_per_s = report.rows_per_s.round(),
                    seconds = report.seconds,
                    "online store bootstrapped from the lake"
                );
                break;
            }
            Err(StoreError::Busy(_)) => {
                let since = *waited_since.get_or_insert_with(Instant::now);
                if since.elapsed().as_secs() % 10 == 0 {
                    tracing::info!(
                        store = store.shown(),
                        "waiting for another replica's bootstrap of the online store"
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(startup_error(e)),
        }
    }
    if let Some(w) = store.watermark_ns().await.map_err(startup_error)? {
        engine.advance_watermark(w);
    }
    Ok(SharedOnline {
        store,
        up: AtomicBool::new(true),
        fail_open,
        rules: *engine.event_time_rules(),
    })
}

/// Watches the store until the process ends (see the module comment).
pub async fn watch(state: SharedState, plan: Arc<FeaturePlan>, flush_interval: Duration) {
    let Some(shared) = state.shared.as_ref() else {
        return;
    };
    let mut last_stats: Option<Instant> = None;
    let policy = state.labels.lock().await.policy.effective_sql();
    spawn_label_sync(state.clone(), policy);
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        match shared.store.stored_generation().await {
            Err(e) => {
                if shared.is_up() {
                    tracing::warn!(error = %e, "online store unreachable: not ready until it answers");
                }
                shared.set_up(&state, false);
                continue;
            }
            Ok(Some(generation)) if generation == shared.store.generation() => {
                if !shared.is_up() {
                    tracing::info!(generation, "online store reachable again");
                }
                shared.set_up(&state, true);
            }
            Ok(Some(generation)) => {
                // Another replica re-bootstrapped it.
                shared.store.adopt(&generation);
                adopt_watermark(&state, shared).await;
                tracing::info!(generation, "serving the online store's new generation");
                shared.set_up(&state, true);
            }
            Ok(None) => {
                shared.set_up(&state, false);
                rebootstrap(&state, shared, &plan, flush_interval).await;
                continue;
            }
        }
        if last_stats.is_none_or(|t| t.elapsed() >= STATS_EVERY) {
            last_stats = Some(Instant::now());
            match shared.store.stats().await {
                Ok(s) => {
                    state.metrics.store.entities.set(s.entities as i64);
                    state.metrics.store.bytes.set(s.used_memory_bytes as i64);
                }
                Err(e) => tracing::warn!(error = %e, "online store stats"),
            }
        }
    }
}

/// Applies the lake's new labels to the store every [`LABEL_SYNC_EVERY`], on a thread and
/// runtime of its own: the lake query (DataFusion) must not take the request path's worker
/// threads (`bench/run.sh m` at ~1,800 req/s: p99 41.7 ms with the sync on the serving
/// runtime, 4.5 ms with it here).
fn spawn_label_sync(state: SharedState, policy: String) {
    let spawned = std::thread::Builder::new()
        .name("label-sync".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "no runtime for the lake-label sync; lake labels reach the store at the next bootstrap only");
                    return;
                }
            };
            runtime.block_on(async move {
                loop {
                    tokio::time::sleep(LABEL_SYNC_EVERY).await;
                    let Some(shared) = state.shared.as_ref() else {
                        return;
                    };
                    if !shared.is_up() {
                        continue;
                    }
                    match shared
                        .store
                        .sync_lake_labels(state.registry.lake(), &policy)
                        .await
                    {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(labels = n, "lake labels applied to the online store")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "applying the lake's new labels to the online store")
                        }
                    }
                }
            });
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the lake-label sync thread");
    }
}

async fn adopt_watermark(state: &SharedState, shared: &SharedOnline) {
    if let Ok(Some(w)) = shared.store.watermark_ns().await {
        state.engine.lock().advance_watermark(w);
    }
}

/// The store lost its state: commit what this replica answered, give the other replicas'
/// writers time to do the same, then rebuild it from the lake unless another replica holds
/// the lock (then its new generation is adopted on a later round).
async fn rebootstrap(
    state: &SharedState,
    shared: &SharedOnline,
    plan: &Arc<FeaturePlan>,
    flush_interval: Duration,
) {
    tracing::warn!(
        "the online store lost its state (no generation key: restarted without persistence?); \
         not ready until it is re-bootstrapped from the lake"
    );
    state.writer.flush().await;
    tokio::time::sleep(flush_interval * 2).await;
    if !matches!(shared.store.stored_generation().await, Ok(None)) {
        return; // another replica finished first, or the store is unreachable
    }
    let mut scratch = OnlineEngine::new(plan.clone());
    scratch.set_event_time_rules(shared.rules);
    match shared
        .store
        .bootstrap(&scratch, state.registry.lake())
        .await
    {
        Ok(report) => {
            state.metrics.store.rebootstraps.inc();
            adopt_watermark(state, shared).await;
            shared.set_up(state, true);
            tracing::info!(
                transactions = report.transactions,
                entities = report.entities,
                seconds = report.seconds,
                generation = report.generation,
                "online store re-bootstrapped from the lake"
            );
        }
        Err(StoreError::Busy(_)) => {}
        Err(e) => tracing::error!(error = %e, "re-bootstrapping the online store failed; retrying"),
    }
}
