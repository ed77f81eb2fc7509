//! `mlflow_sync`: mirrors the registry into an MLflow tracking server, as `fraudlake models
//! sync` (one run and one registered-model version per version, aliases, archive tags). Its own
//! module so its arguments, their check and the call stay together; typically the last task of
//! a retraining DAG, after `promote`.

use crate::error::{Error, Result};
use fraudlake_model::mlflow::{self, Auth, Client};
use fraudlake_model::registry::Registry;
use serde::Deserialize;
use serde_json::Value;

use super::{Op, OpCtx};
use crate::spec::SpecErrorKind;

/// `mlflow_sync` args; each falls back to `[mlflow]` of the config, then to the environment
/// (`FRAUDLAKE_MLFLOW_TRACKING_URI`, `MLFLOW_TRACKING_URI`) and the defaults. Credentials come
/// from the environment only (`MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME` and
/// `MLFLOW_TRACKING_PASSWORD`), never from a DAG file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowSyncArgs {
    /// `http(s)://host:port` of the tracking server.
    pub tracking_uri: Option<String>,
    /// The MLflow registered model (default `fraud-detector`).
    pub registered_model: Option<String>,
    /// The experiment of the runs (default `fraudlake`).
    pub experiment: Option<String>,
}

impl Op for MlflowSyncArgs {
    fn validate(&self) -> Vec<SpecErrorKind> {
        let mut errors = Vec::new();
        if let Some(uri) = &self.tracking_uri {
            if let Err(e) = Client::new(uri, Auth::None) {
                errors.push(SpecErrorKind::InvalidArg {
                    key: "tracking_uri".to_string(),
                    message: e.to_string(),
                });
            }
        }
        for (key, value) in [
            ("registered_model", &self.registered_model),
            ("experiment", &self.experiment),
        ] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                errors.push(SpecErrorKind::InvalidArg {
                    key: key.to_string(),
                    message: "must not be empty".to_string(),
                });
            }
        }
        errors
    }

    fn summary(&self) -> Vec<String> {
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(config)".to_string());
        vec![
            format!("tracking_uri={}", shown(&self.tracking_uri)),
            format!("registered_model={}", shown(&self.registered_model)),
            format!("experiment={}", shown(&self.experiment)),
        ]
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let env = ctx.env;
        let target = env.mlflow.require_target(
            self.tracking_uri.as_deref(),
            self.registered_model.as_deref(),
            self.experiment.as_deref(),
        )?;
        let report =
            mlflow::sync(&Registry::new(env.lake.clone()), &target, Auth::from_env()).await?;
        ctx.note(format!(
            "MLflow {} '{}': {} run(s), {} model version(s) created, {} tag(s) updated; aliases {:?}{}",
            report.tracking_uri,
            report.registered_model,
            report.runs_created,
            report.model_versions_created,
            report.tags_updated,
            report.aliases,
            if report.alias_changes.is_empty() {
                String::new()
            } else {
                format!(" (moved: {})", report.alias_changes.join("; "))
            }
        ));
        serde_json::to_value(&report).map_err(|e| Error::invalid(e.to_string()))
    }
}
