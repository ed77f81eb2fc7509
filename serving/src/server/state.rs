//! What the server shares between requests: the online feature state behind one lock (or a
//! shared store and this replica's bookkeeping), the
//! models behind an atomic pointer (a reload swaps the whole set, so a request sees the old set
//! or the new one, never half of each), the lake writer and the metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use arc_swap::ArcSwap;
use fraudlake_features::{FeaturePlan, OnlineEngine};
use fraudlake_model::registry::{ModelVersion, Registry};
use fraudlake_model::rollout::Role;
use fraudlake_model::LoadedModel;
use parking_lot::Mutex;

use super::metrics::Metrics;
use super::models::Models;
use super::writer::LakeWriter;

/// A loaded model version, of either family (`LoadedModel` hides which).
pub struct Scorer {
    pub version: ModelVersion,
    pub model: LoadedModel,
    pub feature_set: Arc<str>,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
}

impl Scorer {
    /// Loads the champion (or `which`), checking the artifact and that its feature set is the
    /// one the online engine computes.
    pub async fn load(registry: &Registry, which: &str, plan: &FeaturePlan) -> Result<Scorer> {
        let scorer = Scorer::load_any(registry, which).await?;
        scorer.check(plan)?;
        Ok(scorer)
    }

    /// Loads `which` on whatever feature set it was trained on (a canary or shadow may have
    /// its own online engine, see [`super::engines`]); checks the artifact only.
    pub async fn load_any(registry: &Registry, which: &str) -> Result<Scorer> {
        let version = registry.get(which).await?;
        let (_, model) = registry.load_artifact(&version.record).await?;
        // Explanations ready before the model serves (for XGBoost, libxgboost's booster).
        model.ready_to_explain()?;
        Ok(Scorer {
            feature_set: Arc::from(version.record.feature_set.as_str()),
            version,
            model,
            loaded_at: chrono::Utc::now(),
        })
    }

    /// Refuses a model not trained on `plan`'s feature set, or expecting other features.
    pub fn check(&self, plan: &FeaturePlan) -> Result<()> {
        let record = &self.version.record;
        if record.feature_set != plan.feature_set.sha256 {
            return Err(Error::invalid(format!(
                "model version {} was trained on feature set {} but this server computes {} ({}); \
                 restart the server with that feature SQL to serve it",
                record.version,
                &record.feature_set[..12.min(record.feature_set.len())],
                plan.feature_set.short_hash(),
                plan.feature_set.path.display()
            )));
        }
        if record.feature_names != plan.feature_names() {
            return Err(Error::invalid(format!(
                "model version {} expects features {:?}, the feature SQL yields {:?}",
                record.version,
                record.feature_names,
                plan.feature_names()
            )));
        }
        Ok(())
    }

    pub fn number(&self) -> i64 {
        self.version.record.version
    }
}

/// Decision thresholds on the fraud probability.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub review: f64,
    pub decline: f64,
}

/// Limits that protect the process.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_batch: usize,
    pub max_body_bytes: usize,
}

pub struct AppState {
    /// With the in-memory store, the online state; with a shared store, this replica's
    /// bookkeeping (event-time watermark, recent tx_ids and their answers).
    pub engine: Mutex<OnlineEngine>,
    /// The online engines of other feature sets than `plan`'s (a canary or shadow trained on
    /// another feature SQL), locked inside `engine`'s lock.
    pub engines: super::engines::Engines,
    /// The shared online store (`--online-store redis://...`), if any.
    pub shared: Option<super::shared::SharedOnline>,
    pub plan: Arc<FeaturePlan>,
    /// The champion, and the canary and shadow while a rollout runs: loaded once per request.
    pub models: ArcSwap<Models>,
    pub registry: Registry,
    pub writer: LakeWriter,
    /// `--scoring-log`: answers wait for it, and its consumer (not `writer`) lands them.
    pub scoring_log: Option<Arc<dyn super::scoring_log::ScoringLog>>,
    pub metrics: Arc<Metrics>,
    pub thresholds: Thresholds,
    pub limits: Limits,
    /// Who may call the write routes (API keys from the lake, or none with
    /// `--insecure-no-auth`).
    pub auth: super::auth::Auth,
    /// Labels by provenance: serializes /labels and finds the label each one replaces.
    pub labels: tokio::sync::Mutex<super::provenance::LabelBook>,
    /// Serializes reloads (the poller and /admin/reload).
    pub reload_lock: tokio::sync::Mutex<()>,
    /// Where the drift gauges' verdict comes from (none: the gauges stay empty).
    pub drift: Option<Arc<dyn super::drift::DriftVerdicts>>,
    pub ready: AtomicBool,
}

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && self.shared.as_ref().is_none_or(|s| s.is_up())
            && self.scoring_log.as_ref().is_none_or(|l| l.is_up())
    }

    /// Publishes `fraud_model_info{version,feature_set,role}` for the models being served,
    /// and removes the series of `old`'s models that are no longer served in that role. The
    /// new series are set first: a scrape in between sees both, never neither.
    pub fn publish_models(&self, old: Option<&Models>) {
        let info = &self.metrics.model_info;
        let current = self.models.load();
        let labels = |role: Role, s: &Scorer| {
            [
                s.number().to_string(),
                s.feature_set.to_string(),
                role.as_str().to_string(),
            ]
        };
        let serving: Vec<[String; 3]> = current.served().map(|(r, s)| labels(r, s)).collect();
        for l in &serving {
            info.with_label_values(l).set(1);
        }
        for (role, s) in old.into_iter().flat_map(|m| m.served()) {
            let l = labels(role, s);
            if !serving.contains(&l) {
                let _ = info.remove_label_values(&l);
            }
        }
    }
}

pub type SharedState = Arc<AppState>;
