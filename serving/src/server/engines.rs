//! Online engines of other feature sets (docs/rollout.md section 2, second step): a canary or
//! shadow trained on another feature SQL than the server's gets its own [`OnlineEngine`],
//! keyed by the feature set's sha256 (models on the same SQL share one state; the server's own
//! feature set is the main engine, `AppState::engine`).
//!
//! Building one never blocks requests. At a reload, it is bootstrapped from the lake off to
//! the side; meanwhile every transaction and label the main engine applies is also kept in an
//! in-memory tail, which is then replayed into the new engine (tx_ids it already holds
//! skipped), and the engine is installed under the main engine's lock, so that it misses
//! nothing the main engine applied. The tail starts before the lake is read; what the main
//! engine applied just before that reaches the in-process lake writer without waiting (no
//! await between the online state and the writer's queue), so a short pause and a writer flush
//! put it in the lake the bootstrap reads. Until the engine is installed, its model is not
//! served (the champion decides, the analysis waits). At start-up there is no traffic yet:
//! the engines are built before the server is ready, from the same lake as the main one.
//!
//! Once installed, every request computes (and stores) the transaction in every engine, under
//! the main engine's lock, in the same order. An engine no served model uses any more is
//! dropped at the next reload.
//!
//! Not with the shared online store (`--online-store redis://`: the state of another feature
//! set would need its own keyspace and a bootstrap shared by the replicas) nor with a scoring
//! log (rows reach the lake through its consumer, so the catch-up could not know when the lake
//! holds what was applied before the tail started): there such a model is refused at reload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use fraudlake_features::online::history;
use fraudlake_features::online::EventTimeRules;
use fraudlake_features::{compile, FeaturePlan, FeatureSet, OnlineEngine, Transaction};
use fraudlake_pipeline::Lake;
use parking_lot::Mutex;

use super::state::{Scorer, SharedState};

/// Most tail entries kept while an engine is built; beyond, the build is abandoned (logged).
const MAX_TAIL: usize = 2_000_000;

/// A tail at most this long is replayed under the main engine's lock, then the engine goes in.
const FINAL_TAIL: usize = 4_096;

/// What the main engine applied while an engine was being built, in order.
enum Applied {
    Txs(Vec<Transaction>),
    Label(i64, bool),
}

/// One engine of another feature set.
struct Side {
    sha256: Arc<str>,
    engine: OnlineEngine,
}

#[derive(Default)]
struct Inner {
    ready: Vec<Side>,
    /// The feature set being built in the background (one at a time), and the tail kept for it.
    building: Option<Arc<str>>,
    tail: Option<Vec<Applied>>,
    /// Asked for by the loader, not started yet.
    wanted: Vec<(Arc<str>, Arc<FeaturePlan>)>,
    /// Feature sets whose engine could not be built, and why (not retried in this process).
    failed: Vec<(Arc<str>, String)>,
}

/// Where the engine of a feature set stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Ready,
    Building,
    Failed(String),
    /// This server keeps no engine of another feature set (the reason).
    Refused(&'static str),
    Unknown,
}

/// The feature rows of one transaction computed by the engines of other feature sets.
pub type OtherRows = Vec<(Arc<str>, Vec<f64>)>;

/// The engines of other feature sets.
pub struct Engines {
    refusal: Option<&'static str>,
    inner: Mutex<Inner>,
}

impl Engines {
    /// `refusal`: why this server can keep no engine of another feature set, if so.
    pub fn new(refusal: Option<&'static str>) -> Engines {
        Engines {
            refusal,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn status(&self, sha256: &str) -> Status {
        if let Some(why) = self.refusal {
            return Status::Refused(why);
        }
        let inner = self.inner.lock();
        if inner.ready.iter().any(|s| &*s.sha256 == sha256) {
            Status::Ready
        } else if let Some((_, why)) = inner.failed.iter().find(|(s, _)| &**s == sha256) {
            Status::Failed(why.clone())
        } else if inner.building.as_deref() == Some(sha256)
            || inner.wanted.iter().any(|(s, _)| &**s == sha256)
        {
            Status::Building
        } else {
            Status::Unknown
        }
    }

    /// Asks for an engine of `plan` (built by [`spawn_builds`] or [`Engines::build_now`]).
    pub fn want(&self, plan: Arc<FeaturePlan>) {
        let sha256: Arc<str> = Arc::from(plan.feature_set.sha256.as_str());
        let mut inner = self.inner.lock();
        if !inner.wanted.iter().any(|(s, _)| *s == sha256) {
            inner.wanted.push((sha256, plan));
        }
    }

    /// Records that the engine of `sha256` cannot be built.
    pub fn fail(&self, sha256: &str, why: String) {
        let mut inner = self.inner.lock();
        inner.wanted.retain(|(s, _)| &**s != sha256);
        if inner.building.as_deref() == Some(sha256) {
            inner.building = None;
            inner.tail = None;
        }
        if !inner.failed.iter().any(|(s, _)| &**s == sha256) {
            inner.failed.push((Arc::from(sha256), why));
        }
    }

    /// Number of online engines, the main one included.
    pub fn count(&self) -> usize {
        1 + self.inner.lock().ready.len()
    }

    /// Computes and stores `txs` (as the main engine took them, in order) in every engine of
    /// another feature set, and keeps them in the tail while one is built. Call with the main
    /// engine's lock held, after it took them. Returns each engine's rows; an engine that fails
    /// is logged and gives none (its models do not score these transactions), never failing
    /// the request the main engine has already applied.
    pub fn apply(&self, txs: &[Transaction]) -> Vec<(Arc<str>, Vec<Vec<f64>>)> {
        let mut inner = self.inner.lock();
        let Inner { ready, tail, .. } = &mut *inner;
        if let Some(t) = tail.as_mut() {
            t.push(Applied::Txs(txs.to_vec()));
        }
        let mut out = Vec::with_capacity(ready.len());
        for side in ready.iter_mut() {
            match side.engine.score_rows(txs) {
                Ok(rows) => out.push((side.sha256.clone(), rows)),
                Err(e) => tracing::error!(
                    error = %e,
                    feature_set = &*side.sha256,
                    "the online engine of another feature set failed on a transaction"
                ),
            }
        }
        inner.trim_tail();
        out
    }

    /// Applies a label in every engine of another feature set (and keeps it in the tail). Call
    /// with the main engine's lock held, after it took the label.
    pub fn label(&self, tx_id: i64, is_fraud: bool) {
        let mut inner = self.inner.lock();
        if let Some(t) = inner.tail.as_mut() {
            t.push(Applied::Label(tx_id, is_fraud));
        }
        for side in inner.ready.iter_mut() {
            if let Err(e) = side.engine.apply_label(tx_id, is_fraud) {
                tracing::error!(error = %e, feature_set = &*side.sha256, tx_id, "the online engine of another feature set failed on a label");
            }
        }
        inner.trim_tail();
    }

    /// Drops the engines whose feature set no served model uses.
    pub fn retain(&self, used: &[&str]) {
        let mut inner = self.inner.lock();
        let before = inner.ready.len();
        inner
            .ready
            .retain(|s| used.iter().any(|u| *u == &*s.sha256));
        if inner.ready.len() < before {
            tracing::info!(
                dropped = before - inner.ready.len(),
                "online engines of feature sets no model serves any more dropped"
            );
        }
    }

    /// Start-up, before any traffic: builds every wanted engine from the lake at once.
    /// Returns whether one was built.
    pub async fn build_now(&self, lake: &Lake, rules: EventTimeRules) -> bool {
        let wanted = std::mem::take(&mut self.inner.lock().wanted);
        let mut built = false;
        for (sha256, plan) in wanted {
            let started = Instant::now();
            let mut engine = OnlineEngine::new(plan);
            engine.set_event_time_rules(rules);
            match history::bootstrap(&mut engine, lake).await {
                Ok(n) => {
                    tracing::info!(
                        feature_set = &*sha256,
                        transactions = n,
                        seconds = started.elapsed().as_secs_f64(),
                        "online state of another feature set built from the lake"
                    );
                    self.inner.lock().ready.push(Side { sha256, engine });
                    built = true;
                }
                Err(e) => {
                    tracing::error!(error = %e, feature_set = &*sha256, "cannot build the online state of another feature set; its models are not served");
                    self.fail(&sha256, e.to_string());
                }
            }
        }
        built
    }

    /// The next wanted engine to build in the background, when none is being built: from here
    /// on the tail keeps what the main engine applies.
    fn start_build(&self) -> Option<(Arc<str>, Arc<FeaturePlan>)> {
        let mut inner = self.inner.lock();
        if inner.building.is_some() || inner.wanted.is_empty() {
            return None;
        }
        let (sha256, plan) = inner.wanted.remove(0);
        inner.building = Some(sha256.clone());
        inner.tail = Some(Vec::new());
        Some((sha256, plan))
    }
}

impl Inner {
    /// A tail grown past [`MAX_TAIL`] (a build far slower than the traffic) is dropped: the
    /// build notices and gives up.
    fn trim_tail(&mut self) {
        if self.tail.as_ref().is_some_and(|t| t.len() > MAX_TAIL) {
            tracing::error!(
                "the online state of another feature set is being built slower than traffic \
                 arrives; the build is abandoned"
            );
            self.tail = None;
        }
    }
}

/// The plan of a model's feature SQL (from its version record), checked against the record
/// (its feature set and names) by the same [`Scorer::check`] the champion passes.
pub async fn plan_of(scorer: &Scorer) -> Result<Arc<FeaturePlan>> {
    let r = &scorer.version.record;
    let label = format!("the feature SQL of model version {}", r.version);
    let fs = FeatureSet::from_sql(std::path::Path::new(&label), r.feature_sql.clone())?;
    let plan = compile(&fs).await?;
    scorer.check(&plan)?;
    Ok(Arc::new(plan))
}

/// Starts the background build of the next wanted engine, if any and none is running.
pub fn spawn_builds(state: &SharedState) {
    if let Some((sha256, plan)) = state.engines.start_build() {
        let state = state.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            match build(&state, &sha256, plan).await {
                Ok(n) => {
                    state.metrics.engines.set(state.engines.count() as i64);
                    tracing::info!(
                        feature_set = &*sha256,
                        transactions = n,
                        seconds = started.elapsed().as_secs_f64(),
                        "online state of another feature set built from the lake and caught up; its models are served from the next reload"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, feature_set = &*sha256, "cannot build the online state of another feature set; its models are not served");
                    state.engines.fail(&sha256, e.to_string());
                }
            }
            // Serve its models now rather than at the next poll, and start the next build.
            if let Err(e) = super::reload::reload(&state).await {
                tracing::debug!(error = %e, "reload after an online engine build");
            }
        });
    }
}

/// Bootstraps an engine of `plan` from the lake, replays the tail into it and installs it.
/// Returns the transactions loaded from the lake.
async fn build(state: &SharedState, sha256: &Arc<str>, plan: Arc<FeaturePlan>) -> Result<usize> {
    let rules = *state.engine.lock().event_time_rules();
    // What the main engine applied before the tail started: in the writer's queue by now, or
    // within microseconds; the flush commits it before the lake is read.
    tokio::time::sleep(Duration::from_millis(100)).await;
    state.writer.flush().await;
    let mut engine = OnlineEngine::new(plan);
    engine.set_event_time_rules(rules);
    let loaded = history::bootstrap(&mut engine, state.registry.lake()).await?;
    loop {
        let tail = {
            let _main = state.engine.lock();
            let mut inner = state.engines.inner.lock();
            let Some(tail) = inner.tail.take() else {
                return Err(Error::invalid(
                    "the build fell behind the traffic (its tail was dropped)",
                ));
            };
            if tail.len() <= FINAL_TAIL {
                replay(&mut engine, &tail)?;
                inner.ready.push(Side {
                    sha256: sha256.clone(),
                    engine,
                });
                inner.building = None;
                return Ok(loaded);
            }
            inner.tail = Some(Vec::new());
            tail
        };
        // A long tail is replayed without holding up requests; the next round takes the rest.
        replay(&mut engine, &tail)?;
    }
}

/// Applies a tail to an engine, skipping the transactions it already holds.
fn replay(engine: &mut OnlineEngine, tail: &[Applied]) -> Result<()> {
    for a in tail {
        match a {
            Applied::Txs(txs) => {
                let new: Vec<Transaction> = txs
                    .iter()
                    .filter(|t| !engine.knows(t.tx_id))
                    .copied()
                    .collect();
                if !new.is_empty() {
                    engine.score_and_apply(&new)?;
                }
            }
            Applied::Label(tx_id, is_fraud) => {
                engine.apply_label(*tx_id, *is_fraud)?;
            }
        }
    }
    Ok(())
}
