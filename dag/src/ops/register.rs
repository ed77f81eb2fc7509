//! `register`: registers an externally trained XGBoost JSON model, evaluated on the week
//! before the logical date like a candidate. Its own module so its arguments and the call
//! stay together.

use crate::error::{Error, Result};
use chrono::Duration;
use fraudlake_model::booster::TrainParams;
use fraudlake_model::protocol::Periods;
use fraudlake_model::registry::{actor, NewVersion, Registry};
use fraudlake_model::train::{self, FeatureSpec, TestWindow};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{Op, OpCtx};
use crate::spec::args;

/// `register` args.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterArgs {
    /// The XGBoost JSON model file.
    #[serde(deserialize_with = "path")]
    pub path: String,
    /// The feature set it was trained on (default: the current one).
    #[serde(default, deserialize_with = "feature_set")]
    pub feature_set: Option<String>,
}

fn path<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let path = args::non_empty(d)?;
    if !path.to_ascii_lowercase().ends_with(".json") {
        return Err(serde::de::Error::custom(format!(
            "{path:?} is not an XGBoost JSON model file (.json)"
        )));
    }
    Ok(path)
}

fn feature_set<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(serde::de::Error::custom(
            "must not be empty (leave it out for the current one)",
        ));
    }
    Ok(Some(s))
}

impl Op for RegisterArgs {
    fn summary(&self) -> Vec<String> {
        let mut v = vec![format!("path={:?}", self.path)];
        v.extend(
            self.feature_set
                .iter()
                .map(|f| format!("feature_set={f:?}")),
        );
        v
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let env = ctx.env;
        let lake = &env.lake;
        let path = &self.path;
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read the model file {path}"), e))?;
        let spec = FeatureSpec::load(&env.features_sql).await?;
        if let Some(fs) = &self.feature_set {
            if !spec.sha256.starts_with(fs.as_str()) {
                return Err(Error::invalid(format!(
                    "the model is declared for feature set {fs}, but {} is {}",
                    env.features_sql.display(),
                    spec.sha256
                )));
            }
        }
        let registry = Registry::new(lake.clone());
        // An external model has no training run here: its metrics come from evaluating it
        // on the week before the logical date, like a candidate.
        let forest = fraudlake_model::trees::Forest::from_json(&bytes)
            .map_err(|e| Error::model(format!("{path}: {e}")))?;
        let periods = Periods {
            train_start: ctx.logical_date - Duration::days(20),
            train_days: 7,
            delay_days: 7,
            test_days: 7,
        };
        let window = TestWindow {
            known_from: periods.train_start,
            delay_days: periods.delay_days,
            from: periods.test_start(),
            to: periods.test_end(),
        };
        let metrics = train::evaluate_model(lake, &spec, &forest, &window, 0.5).await?;
        let record = registry
            .register(NewVersion {
                created_by: format!("dag:{}:{}", ctx.dag, actor()),
                note: format!("registered from {path} by DAG {}", ctx.dag),
                feature_set: spec.sha256.clone(),
                feature_sql: spec.sql.clone(),
                feature_names: spec.names.clone(),
                periods,
                params: TrainParams::default(),
                rounds: forest.num_trees() as u32,
                metrics: metrics.clone(),
                lineage: fraudlake_model::registry::Lineage {
                    tables: Vec::new(),
                    train_from: String::new(),
                    train_to: String::new(),
                    test_from: window.from.to_string(),
                    test_to: window.to.to_string(),
                    train_rows: 0,
                    train_frauds: 0,
                    test_rows: metrics.test_rows,
                    test_frauds: metrics.test_frauds,
                    label_policy: String::new(),
                    labels_overridden: Vec::new(),
                },
                model_json: bytes,
            })
            .await?;
        ctx.note(format!("registered {path} as version {}", record.version));
        Ok(json!({"candidate_version": record.version}))
    }
}
