//! Hot reload of the served models: a poller watches the registry's aliases (champion, canary
//! with its percent, shadow), and `POST /admin/reload` asks at once. The next set of models is
//! built off to the side, reusing every loaded model whose version did not change (in any
//! role: a canary promoted to champion is not loaded again) and loading and validating the
//! others (artifact sha256, trees, feature set); then the whole set is swapped in with one
//! atomic store. A champion that cannot be loaded is refused with a clear log and the old one
//! keeps serving; a canary or shadow that cannot be loaded is not served (serving a stale one
//! would contradict the registry, and a candidate that does not score costs only time).
//! A canary or shadow trained on another feature SQL is served once the online engine of its
//! feature set is built (see [`super::engines`]); until then it is not served.
//! The same poll re-reads the API keys, so revocations take effect within one interval.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use fraudlake_features::FeaturePlan;
use fraudlake_model::registry::{Aliases, Registry, CHAMPION};
use fraudlake_model::rollout::Role;

use super::engines::{self, Engines, Status};
use super::metrics::Metrics;
use super::models::Models;
use super::rollout::CanarySplit;
use super::state::{Scorer, SharedState};

/// Where models come from: the registry, checked against the server's feature plan (the
/// champion) or against the online engine of their own feature set (a canary or shadow).
pub struct Loader<'a> {
    pub registry: &'a Registry,
    pub plan: &'a FeaturePlan,
    pub metrics: &'a Metrics,
    pub engines: &'a Engines,
}

impl Loader<'_> {
    /// The champion of `version`: taken from `current` when it serves it, else loaded; on the
    /// server's feature set either way.
    async fn scorer(&self, current: Option<&Models>, version: i64) -> Result<Arc<Scorer>> {
        if let Some(s) = current.and_then(|m| m.find(version)) {
            // A canary or shadow of another feature set cannot become the champion here: the
            // champion is the main engine's, as at start-up.
            s.check(self.plan)?;
            return Ok(s);
        }
        let which = version.to_string();
        Ok(Arc::new(
            Scorer::load(self.registry, &which, self.plan).await?,
        ))
    }

    /// A canary or shadow, or `None` (logged and counted as refused) when it cannot be loaded.
    /// One trained on another feature set is served once the online engine of that feature set
    /// is ready; until then it is `None` too (its engine is asked for, and built off to the side).
    async fn candidate(
        &self,
        current: Option<&Models>,
        role: Role,
        version: i64,
    ) -> Option<Arc<Scorer>> {
        let loaded = match current.and_then(|m| m.find(version)) {
            Some(s) => Ok(s),
            None => Scorer::load_any(self.registry, &version.to_string())
                .await
                .map(Arc::new),
        };
        let on_main = |s: &Scorer| *s.feature_set == *self.plan.feature_set.sha256;
        // On the server's feature set: checked against its plan like the champion.
        let scorer = match loaded.and_then(|s| {
            if on_main(&s) {
                s.check(self.plan).map(|()| s)
            } else {
                Ok(s)
            }
        }) {
            Ok(s) if on_main(&s) => return Some(s),
            Ok(s) => s,
            Err(e) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                tracing::error!(error = %e, version, "{role} not loaded; it is not served");
                return None;
            }
        };
        let feature_set = &*scorer.feature_set;
        let short = &feature_set[..12.min(feature_set.len())];
        match self.engines.status(feature_set) {
            Status::Ready => Some(scorer),
            Status::Building => {
                tracing::debug!(
                    version,
                    feature_set = short,
                    "{role} not served yet: the online state of its feature set is being built"
                );
                None
            }
            Status::Unknown => match engines::plan_of(&scorer).await {
                Ok(plan) => {
                    tracing::info!(
                        version,
                        feature_set = short,
                        "{role} is trained on another feature set than the server's: building \
                         its online state from the lake; it is not served until it is ready"
                    );
                    self.engines.want(plan);
                    None
                }
                Err(e) => {
                    self.metrics.reloads.with_label_values(&["refused"]).inc();
                    tracing::error!(error = %e, version, "{role} not loaded; it is not served");
                    self.engines.fail(feature_set, e.to_string());
                    None
                }
            },
            Status::Failed(why) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                tracing::error!(
                    version,
                    feature_set = short,
                    "{role} not served: the online state of its feature set could not be \
                     built ({why}); restart the server to try again"
                );
                None
            }
            Status::Refused(why) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                tracing::error!(
                    version,
                    feature_set = short,
                    "{role} is trained on another feature set than the server's and is not \
                     served: {why}"
                );
                None
            }
        }
    }

    /// The canary and shadow the registry names, beside a champion.
    pub async fn rollout(
        &self,
        champion: Arc<Scorer>,
        aliases: &Aliases,
        current: Option<&Models>,
    ) -> Models {
        let mut canary = None;
        if let Some(c) = aliases.canary {
            // The registry's replay keeps the percent in [0, 100]; anything else is not served.
            match CanarySplit::new(c.percent, c.version) {
                Some(split) => {
                    canary = self
                        .candidate(current, Role::Canary, c.version)
                        .await
                        .map(|s| (s, split));
                }
                None => tracing::error!(
                    version = c.version,
                    percent = c.percent,
                    "canary percent outside [0, 100]; it is not served"
                ),
            }
        }
        let mut shadow = None;
        if let Some(v) = aliases.shadow {
            shadow = self.candidate(current, Role::Shadow, v).await;
        }
        Models {
            champion,
            canary,
            shadow,
        }
    }

    /// Start-up: the champion (which must load, or the server does not start) and the canary
    /// and shadow the registry names.
    pub async fn initial(&self) -> Result<Models> {
        let champion = Arc::new(Scorer::load(self.registry, CHAMPION, self.plan).await?);
        let aliases = self.registry.aliases().await?;
        Ok(self.rollout(champion, &aliases, None).await)
    }
}

/// The versions a set serves, for logs and answers: `champion 3, canary 4 (10 %), shadow 5`.
pub fn describe(m: &Models) -> String {
    let mut out = format!("champion {}", m.champion.number());
    if let Some((c, split)) = &m.canary {
        out.push_str(&format!(", canary {} ({} %)", c.number(), split.percent()));
    }
    if let Some(s) = &m.shadow {
        out.push_str(&format!(", shadow {}", s.number()));
    }
    out
}

/// Applies the registry's aliases if they changed. Returns (swapped, what happened); an error
/// when the champion could not be loaded (the canary and shadow changes are applied anyway).
pub async fn reload(state: &SharedState) -> Result<(bool, String)> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let current = state.models.load_full();
    let aliases = state.registry.aliases().await?;
    let loader = Loader {
        registry: &state.registry,
        plan: &state.plan,
        metrics: &state.metrics,
        engines: &state.engines,
    };
    let (champion, refused) = match aliases.champion {
        Some(v) if v == current.champion.number() => (current.champion.clone(), None),
        Some(v) => match loader.scorer(Some(&*current), v).await {
            Ok(s) => (s, None),
            Err(e) => (current.champion.clone(), Some(e)),
        },
        None => (
            current.champion.clone(),
            Some(Error::invalid("the registry has no champion")),
        ),
    };
    let next = loader.rollout(champion, &aliases, Some(&*current)).await;
    let swapped = !next.same_as(&current);
    let detail = if swapped {
        let detail = format!(
            "now serving {} (was {})",
            describe(&next),
            describe(&current)
        );
        state.models.store(Arc::new(next));
        state.publish_models(Some(&*current));
        state.metrics.reloads.with_label_values(&["swapped"]).inc();
        tracing::info!("{detail}");
        detail
    } else {
        if refused.is_none() {
            state
                .metrics
                .reloads
                .with_label_values(&["unchanged"])
                .inc();
        }
        format!("{} is already being served", describe(&current))
    };
    // Engines no served model uses go; the next one a candidate waits for starts building.
    {
        let served = state.models.load();
        let used: Vec<&str> = served.served().map(|(_, s)| &*s.feature_set).collect();
        state.engines.retain(&used);
    }
    engines::spawn_builds(state);
    state.metrics.engines.set(state.engines.count() as i64);
    match refused {
        None => Ok((swapped, detail)),
        Some(e) => {
            state.metrics.reloads.with_label_values(&["refused"]).inc();
            tracing::error!(error = %e, serving = current.champion.number(), "champion not loaded; the current champion keeps serving");
            Err(e)
        }
    }
}

/// Reads the latest drift report from the lake into the drift gauges.
/// Without a drift source (`ServeConfig::drift`), the gauges stay empty.
pub async fn refresh_drift(state: &SharedState) -> Result<()> {
    let Some(source) = &state.drift else {
        return Ok(());
    };
    if let Some(latest) = source.latest(state.registry.lake()).await? {
        state.metrics.drift.publish(&latest);
    }
    Ok(())
}

/// Polls the registry (and the drift history) every `every` until the server stops. The
/// first drift read happened in `build_state`, before the server reported ready.
pub async fn poll(state: SharedState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = reload(&state).await {
            tracing::debug!(error = %e, "reload poll");
        }
        if let Err(e) = refresh_drift(&state).await {
            tracing::debug!(error = %e, "drift poll");
        }
        // Keys too: a revoked key stops working within one poll interval.
        if let Err(e) = state.auth.refresh(state.registry.lake()).await {
            tracing::warn!(error = %e, "cannot re-read the API keys; the previous keys stay in force");
        }
    }
}
