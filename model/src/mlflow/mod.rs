//! The registry in the lake, mirrored into an MLflow tracking server, so that a team that runs
//! MLflow sees fraudlake's models there: each registered version becomes one MLflow run
//! (parameters, every metric, tags for the feature set and the lake lineage, the model card and
//! the MLflow model as artifacts) and one version of an MLflow registered model, whose aliases
//! `champion`, `challenger`, `shadow` and `canary` follow fraudlake's; archived versions are tagged
//! `fraudlake.status = archived`.
//!
//! The lake stays the source of truth and a sync only reads it: MLflow is a window, so a sync
//! that fails (server down, credentials refused) changes nothing in the lake, and the next one
//! picks up where it stopped. Idempotent: every run and model version carries the tag
//! `fraudlake.version`, which a sync looks up before creating anything; a run is marked
//! `fraudlake.sync_complete` only after all its data and artifacts are in, so a sync cut short
//! is finished (not duplicated) by the next one.

pub mod artifact;
pub mod client;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::registry::{
    card, ModelVersion, Registry, VersionRecord, CANARY, CHALLENGER, CHAMPION, SHADOW,
};
pub use client::{Auth, Client};

/// The registered model's name when none is configured.
pub const DEFAULT_REGISTERED_MODEL: &str = "fraud-detector";
/// The experiment the runs go to when none is configured.
pub const DEFAULT_EXPERIMENT: &str = "fraudlake";
/// fraudlake's own variable for the tracking URI (wins over `[mlflow] tracking_uri`).
pub const TRACKING_URI_ENV: &str = "FRAUDLAKE_MLFLOW_TRACKING_URI";
/// MLflow's variable, taken last (an MLflow user's environment usually has it).
pub const MLFLOW_TRACKING_URI_ENV: &str = "MLFLOW_TRACKING_URI";

/// Tag of runs and model versions: the fraudlake version number they mirror.
pub const TAG_VERSION: &str = "fraudlake.version";
/// Tag of runs: the registered model they belong to (one lake, one registered model).
pub const TAG_REGISTERED_MODEL: &str = "fraudlake.registered_model";
/// Tag of runs and model versions: `active` or `archived`.
pub const TAG_STATUS: &str = "fraudlake.status";
/// Tag of runs, set last: everything of the run is in.
pub const TAG_COMPLETE: &str = "fraudlake.sync_complete";

/// `[mlflow]` of fraudlake.toml (and the DAG op's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlflowConfig {
    /// `http(s)://host:port` of the tracking server.
    pub tracking_uri: Option<String>,
    /// Experiment of the runs (default `fraudlake`).
    pub experiment: Option<String>,
    /// Registered model (default `fraud-detector`).
    pub registered_model: Option<String>,
}

/// Where a sync goes, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub tracking_uri: String,
    pub experiment: String,
    pub registered_model: String,
}

impl MlflowConfig {
    /// The tracking URI: `flag`, else `FRAUDLAKE_MLFLOW_TRACKING_URI`, else `[mlflow]
    /// tracking_uri`, else MLflow's `MLFLOW_TRACKING_URI`; names and experiment: the
    /// arguments over the config over the defaults. `None` when no URI is set anywhere.
    pub fn target(
        &self,
        uri: Option<&str>,
        registered_model: Option<&str>,
        experiment: Option<&str>,
    ) -> Option<Target> {
        let env = |k: &str| std::env::var(k).ok();
        let tracking_uri = uri
            .map(str::to_string)
            .or_else(|| env(TRACKING_URI_ENV))
            .or_else(|| self.tracking_uri.clone())
            .or_else(|| env(MLFLOW_TRACKING_URI_ENV))
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())?;
        let pick = |arg: Option<&str>, conf: &Option<String>, default: &str| {
            arg.map(str::to_string)
                .or_else(|| conf.clone())
                .unwrap_or_else(|| default.to_string())
        };
        Some(Target {
            tracking_uri,
            experiment: pick(experiment, &self.experiment, DEFAULT_EXPERIMENT),
            registered_model: pick(
                registered_model,
                &self.registered_model,
                DEFAULT_REGISTERED_MODEL,
            ),
        })
    }

    /// [`MlflowConfig::target`], or a bad-input error naming every way to set the URI.
    pub fn require_target(
        &self,
        uri: Option<&str>,
        registered_model: Option<&str>,
        experiment: Option<&str>,
    ) -> Result<Target> {
        let target = self
            .target(uri, registered_model, experiment)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "no MLflow tracking server: pass --mlflow URL, or set {TRACKING_URI_ENV}, \
                     [mlflow] tracking_uri in fraudlake.toml, or {MLFLOW_TRACKING_URI_ENV}"
                ))
            })?;
        for (what, name) in [
            ("registered model", &target.registered_model),
            ("experiment", &target.experiment),
        ] {
            if name.trim().is_empty() {
                return Err(Error::invalid(format!("the MLflow {what} name is empty")));
            }
        }
        Ok(target)
    }
}

/// What one version looks like in MLflow after the sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncedVersion {
    /// fraudlake's version number.
    pub version: i64,
    pub run_id: String,
    /// The MLflow model version number.
    pub model_version: String,
    pub status: &'static str,
    /// Whether this sync created (or finished) the run, and created the model version.
    pub run_created: bool,
    pub model_version_created: bool,
}

/// The outcome of a sync (printed by `models sync`, the output of the DAG op).
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub tracking_uri: String,
    pub experiment: String,
    pub experiment_id: String,
    pub registered_model: String,
    pub versions: Vec<SyncedVersion>,
    pub runs_created: usize,
    pub model_versions_created: usize,
    /// Tags changed on existing runs and model versions (archive status).
    pub tags_updated: usize,
    /// Alias -> MLflow model version after the sync (absent: alias unset).
    pub aliases: BTreeMap<String, String>,
    /// Alias moves made by this sync, e.g. `champion: 2 -> 1`.
    pub alias_changes: Vec<String>,
}

impl SyncReport {
    /// Whether the sync had anything to do.
    pub fn changed(&self) -> bool {
        self.runs_created + self.model_versions_created + self.tags_updated > 0
            || !self.alias_changes.is_empty()
    }
}

const EXPERIMENT_NOTE: &str = "fraud-detection models of a fraudlake lake";

/// Checks that the tracking server answers (and makes the experiment): what `train --mlflow`
/// does before it trains, so an unreachable server stops it before the lake changes.
pub async fn check(target: &Target, auth: Auth) -> Result<()> {
    let client = Client::new(&target.tracking_uri, auth)?;
    client.experiment_id(&target.experiment).await.map(|_| ())
}

/// Mirrors the registry into MLflow (see the module doc).
pub async fn sync(registry: &Registry, target: &Target, auth: Auth) -> Result<SyncReport> {
    let client = Client::new(&target.tracking_uri, auth)?;
    // The lake first: a lake that cannot be read stops the sync before MLflow is touched.
    let versions = registry.list().await?;
    let lake_aliases = registry.aliases().await?;
    let name = target.registered_model.as_str();

    let experiment_id = client.experiment_id(&target.experiment).await?;
    let mlflow_aliases = client
        .ensure_registered_model(name, &format!("{EXPERIMENT_NOTE}; mirrored by `fraudlake models sync` (the lake's registry is the source of truth)"))
        .await?;
    let filter = format!("tags.`{TAG_REGISTERED_MODEL}` = {}", client::quote(name));
    let mut runs: HashMap<i64, client::Run> = HashMap::new();
    for run in client.search_runs(&experiment_id, &filter).await? {
        let Some(v) = run.tag(TAG_VERSION).and_then(|v| v.parse::<i64>().ok()) else {
            continue;
        };
        // Two runs of one version (two first syncs at once): the complete one wins.
        let better = runs
            .get(&v)
            .is_none_or(|have| have.tag(TAG_COMPLETE).is_none() && run.tag(TAG_COMPLETE).is_some());
        if better {
            runs.insert(v, run);
        }
    }
    let mut model_versions: HashMap<i64, client::ModelVersion> = HashMap::new();
    for mv in client.model_versions(name).await? {
        if let Some(v) = mv.tag(TAG_VERSION).and_then(|v| v.parse::<i64>().ok()) {
            model_versions.entry(v).or_insert(mv);
        }
    }

    let mut report = SyncReport {
        tracking_uri: client.base().to_string(),
        experiment: target.experiment.clone(),
        experiment_id: experiment_id.clone(),
        registered_model: name.to_string(),
        versions: Vec::new(),
        runs_created: 0,
        model_versions_created: 0,
        tags_updated: 0,
        aliases: BTreeMap::new(),
        alias_changes: Vec::new(),
    };
    for v in &versions {
        let r = &v.record;
        let status = if v.archived { "archived" } else { "active" };
        let existing = runs.get(&r.version);
        let (run, run_created) = match existing {
            Some(run) if run.tag(TAG_COMPLETE).is_some() => (run.clone(), false),
            _ => {
                let run = log_run(&client, registry, &experiment_id, target, v, existing).await?;
                report.runs_created += 1;
                (run, true)
            }
        };
        if !run_created && run.tag(TAG_STATUS) != Some(status) {
            client
                .set_run_tag(&run.info.run_id, TAG_STATUS, status)
                .await?;
            report.tags_updated += 1;
        }
        let (mv, mv_created) = match model_versions.get(&r.version) {
            Some(mv) => (mv.clone(), false),
            None => {
                let source = format!(
                    "{}/{}",
                    run.info.artifact_uri.trim_end_matches('/'),
                    artifact::MODEL_DIR
                );
                let mv = client
                    .create_model_version(
                        name,
                        &source,
                        &run.info.run_id,
                        &version_description(r),
                        &[
                            (TAG_VERSION.to_string(), r.version.to_string()),
                            (TAG_STATUS.to_string(), status.to_string()),
                            (
                                "fraudlake.feature_set_sha256".to_string(),
                                r.feature_set.clone(),
                            ),
                            (
                                "fraudlake.artifact_sha256".to_string(),
                                r.artifact_sha256.clone(),
                            ),
                        ],
                    )
                    .await?;
                report.model_versions_created += 1;
                (mv, true)
            }
        };
        if !mv_created && mv.tag(TAG_STATUS) != Some(status) {
            client
                .set_model_version_tag(name, &mv.version, TAG_STATUS, status)
                .await?;
            report.tags_updated += 1;
        }
        report.versions.push(SyncedVersion {
            version: r.version,
            run_id: run.info.run_id.clone(),
            model_version: mv.version.clone(),
            status,
            run_created,
            model_version_created: mv_created,
        });
    }

    // Aliases last: they point at versions that now exist. Only fraudlake's four are managed
    // (champion, challenger and the rollout's shadow and canary); any other alias an MLflow
    // user set is left alone.
    let mlflow_version_of = |fraudlake_version: i64| {
        report
            .versions
            .iter()
            .find(|s| s.version == fraudlake_version)
            .map(|s| s.model_version.clone())
    };
    let mut changes = Vec::new();
    let mut now = BTreeMap::new();
    for (alias, wanted) in [
        (CHAMPION, lake_aliases.champion),
        (CHALLENGER, lake_aliases.challenger),
        (SHADOW, lake_aliases.shadow),
        (CANARY, lake_aliases.canary.map(|c| c.version)),
    ] {
        let want = wanted.and_then(mlflow_version_of);
        let have = mlflow_aliases
            .iter()
            .find(|a| a.alias == alias)
            .map(|a| a.version.clone());
        match (&want, &have) {
            (Some(w), h) if h.as_ref() != Some(w) => {
                client.set_alias(name, alias, w).await?;
                changes.push(format!(
                    "{alias}: {} -> {w}",
                    h.as_deref().unwrap_or("none")
                ));
            }
            (None, Some(h)) => {
                client.delete_alias(name, alias).await?;
                changes.push(format!("{alias}: {h} -> none"));
            }
            _ => {}
        }
        if let Some(w) = want {
            now.insert(alias.to_string(), w);
        }
    }
    report.aliases = now;
    report.alias_changes = changes;
    Ok(report)
}

/// Creates (or finishes) the run of one version: data, artifacts, then the completion tag.
async fn log_run(
    client: &Client,
    registry: &Registry,
    experiment_id: &str,
    target: &Target,
    v: &ModelVersion,
    existing: Option<&client::Run>,
) -> Result<client::Run> {
    let r = &v.record;
    let at = r.created_at.timestamp_millis();
    // The artifact first: a corrupt or missing one stops before MLflow gets a half run.
    let (model_file, _) = registry.load_artifact(r).await?;
    let run = match existing {
        Some(run) => run.clone(),
        None => {
            client
                .create_run(
                    experiment_id,
                    &format!("fraudlake-v{}", r.version),
                    at,
                    &[
                        (TAG_VERSION.to_string(), r.version.to_string()),
                        (
                            TAG_REGISTERED_MODEL.to_string(),
                            target.registered_model.clone(),
                        ),
                    ],
                )
                .await?
        }
    };
    let run_id = run.info.run_id.clone();
    let status = if v.archived { "archived" } else { "active" };
    client
        .log_batch(&run_id, &params(r), &metrics(r), &tags(r, status), at)
        .await?;
    let mut files: Vec<(String, Vec<u8>)> = artifact::model_files(r, &model_file, &run_id)
        .into_iter()
        .map(|(name, bytes)| (format!("{}/{name}", artifact::MODEL_DIR), bytes))
        .collect();
    let html =
        card::html(r).map_err(|e| Error::Model(format!("cannot render the model card: {e}")))?;
    files.push(("model_card/card.html".into(), html.into_bytes()));
    files.push(("model_card/card.md".into(), card::markdown(r).into_bytes()));
    files.push((
        "fraudlake/features.sql".into(),
        r.feature_sql.clone().into_bytes(),
    ));
    let record = serde_json::to_vec_pretty(r)
        .map_err(|e| Error::Model(format!("cannot encode the version record: {e}")))?;
    files.push(("fraudlake/version.json".into(), record));
    for (path, bytes) in files {
        client
            .upload_artifact(&run.info.artifact_uri, &path, bytes)
            .await?;
    }
    client.finish_run(&run_id, at).await?;
    client.set_run_tag(&run_id, TAG_COMPLETE, "true").await?;
    Ok(run)
}

/// Parameters: the training parameters (none for an imported model: fraudlake does not know
/// them), the protocol's periods, the threshold.
fn params(r: &VersionRecord) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let trained_here = !r.lineage.is_imported();
    if let (true, Ok(serde_json::Value::Object(p))) =
        (trained_here, serde_json::to_value(&r.params))
    {
        for (k, v) in p {
            out.push((k, plain(&v)));
        }
    }
    let p = &r.periods;
    out.extend([
        ("model_family".into(), artifact::Flavor::of(r).name().into()),
        ("train_start".into(), p.train_start.to_string()),
        ("train_days".into(), p.train_days.to_string()),
        ("delay_days".into(), p.delay_days.to_string()),
        ("test_days".into(), p.test_days.to_string()),
        ("threshold".into(), r.metrics.threshold.to_string()),
        ("rounds".into(), r.rounds.to_string()),
        ("feature_count".into(), r.feature_names.len().to_string()),
    ]);
    out
}

/// Every number the version record holds about its quality and data: all evaluation
/// metrics, row and fraud counts, and the gain importance of each feature. (A registered
/// version has no fold metrics: `train --folds` validates and registers nothing.)
fn metrics(r: &VersionRecord) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&r.metrics) {
        for (k, v) in m {
            if k == "threshold" {
                continue; // a parameter
            }
            if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
                out.push((k, x));
            }
        }
    }
    let l = &r.lineage;
    out.extend([
        ("train_rows".to_string(), l.train_rows as f64),
        ("train_frauds".to_string(), l.train_frauds as f64),
        (
            "labels_overridden".to_string(),
            l.labels_overridden.len() as f64,
        ),
    ]);
    for (feature, gain) in &r.importance {
        if gain.is_finite() {
            out.push((format!("importance.{}", metric_key(feature)), *gain));
        }
    }
    out
}

/// Tags: what the run is (its version, family, feature set) and where its data came from.
fn tags(r: &VersionRecord, status: &str) -> Vec<(String, String)> {
    let l = &r.lineage;
    let mut out: Vec<(String, String)> = vec![
        ("mlflow.runName".into(), format!("fraudlake-v{}", r.version)),
        ("mlflow.user".into(), r.created_by.clone()),
        (
            "mlflow.source.name".into(),
            if l.is_imported() {
                "fraudlake models import"
            } else {
                "fraudlake train"
            }
            .into(),
        ),
        ("mlflow.source.type".into(), "LOCAL".into()),
        ("mlflow.note.content".into(), version_description(r)),
        (TAG_STATUS.into(), status.into()),
        (
            "fraudlake.model_family".into(),
            artifact::Flavor::of(r).name().into(),
        ),
        ("fraudlake.feature_set_sha256".into(), r.feature_set.clone()),
        ("fraudlake.artifact".into(), r.artifact.clone()),
        (
            "fraudlake.artifact_sha256".into(),
            r.artifact_sha256.clone(),
        ),
        ("fraudlake.created_at".into(), r.created_at.to_rfc3339()),
        (
            "fraudlake.train_period".into(),
            format!("{}..{}", l.train_from, l.train_to),
        ),
        (
            "fraudlake.test_period".into(),
            format!("{}..{}", l.test_from, l.test_to),
        ),
        ("fraudlake.label_policy".into(), l.label_policy.clone()),
        (
            "fraudlake.build".into(),
            format!("fraudlake {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    for t in &l.tables {
        out.push((
            format!("fraudlake.lineage.{}", metric_key(&t.table)),
            t.version.to_string(),
        ));
    }
    if !r.note.is_empty() {
        out.push(("fraudlake.note".into(), r.note.clone()));
    }
    if let Some(file) = &l.imported_from {
        out.push(("fraudlake.imported_from".into(), file.clone()));
    }
    out
}

fn version_description(r: &VersionRecord) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"));
    let mut s = format!(
        "fraudlake model version {}: average precision {}, AUC ROC {}, card precision@100 {} on \
         {}..{} (trained on {}..{}).",
        r.version,
        f(r.metrics.average_precision),
        f(r.metrics.auc_roc),
        f(r.metrics.card_precision_at_100),
        r.lineage.test_from,
        r.lineage.test_to,
        r.lineage.train_from,
        r.lineage.train_to,
    );
    if !r.note.is_empty() {
        s.push_str(&format!(" Note: {}", r.note));
    }
    s
}

/// A JSON value as a parameter string (strings without their quotes).
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// MLflow keys take letters, digits, `_ - . / ` and spaces; anything else becomes `_`.
fn metric_key(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_fraudlakes_variable_then_the_file() {
        let conf = MlflowConfig {
            tracking_uri: Some("http://from-file:5000".into()),
            experiment: None,
            registered_model: Some("fraud-v2".into()),
        };
        let t = conf
            .target(Some("http://flag:5000"), None, Some("exp"))
            .expect("target");
        assert_eq!(t.tracking_uri, "http://flag:5000");
        assert_eq!(t.registered_model, "fraud-v2");
        assert_eq!(t.experiment, "exp");
        let t = conf.target(None, Some("other"), None).expect("target");
        assert_eq!(t.registered_model, "other");
        assert_eq!(t.experiment, DEFAULT_EXPERIMENT);
        // The environment is shared by the test threads: only assert when it is clean.
        if std::env::var_os(TRACKING_URI_ENV).is_none() {
            assert_eq!(t.tracking_uri, "http://from-file:5000");
        }
        if std::env::var_os(TRACKING_URI_ENV).is_none()
            && std::env::var_os(MLFLOW_TRACKING_URI_ENV).is_none()
        {
            let none = MlflowConfig::default();
            assert!(none.target(None, None, None).is_none());
            let e = none.require_target(None, None, None).expect_err("none");
            assert!(
                e.is_bad_input() && e.to_string().contains("--mlflow"),
                "{e}"
            );
        }
    }

    #[test]
    fn metric_keys_keep_mlflows_alphabet() {
        assert_eq!(metric_key("customer_nb_tx_1d"), "customer_nb_tx_1d");
        assert_eq!(metric_key("a:b(c)"), "a_b_c_");
    }
}
