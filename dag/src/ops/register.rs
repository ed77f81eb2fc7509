//! `register`: registers an externally trained model (XGBoost JSON `.json` or LightGBM text
//! `.txt`), evaluated on the week before the logical date like a candidate, through the same
//! `import_and_register` as `fraudlake models import`. Its own module so its arguments and the
//! call stay together.

use crate::error::{Error, Result};
use chrono::Duration;
use fraudlake_model::protocol::Periods;
use fraudlake_model::registry::actor;
use fraudlake_model::train::{self, FeatureSpec, Import, Registration};
use fraudlake_model::ModelFamily;
use fraudlake_pipeline::labels::LabelPolicy;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{Op, OpCtx};
use crate::spec::args;

/// `register` args.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterArgs {
    /// The model file: XGBoost JSON (`.json`) or LightGBM text (`.txt`); the extension says
    /// which.
    #[serde(deserialize_with = "path")]
    pub path: String,
    /// The feature set it was trained on (default: the current one).
    #[serde(default, deserialize_with = "feature_set")]
    pub feature_set: Option<String>,
}

fn path<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let path = args::non_empty(d)?;
    if ModelFamily::from_path(&path).is_none() {
        return Err(serde::de::Error::custom(format!(
            "{path:?} is not a model file fraudlake can register (.json: XGBoost JSON, .txt: \
             LightGBM text)"
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
        let family = ModelFamily::from_path(path).ok_or_else(|| {
            Error::invalid(format!(
                "{path:?} is not a model file fraudlake can register (.json: XGBoost JSON, \
                 .txt: LightGBM text)"
            ))
        })?;
        // An external model has no training run here: its metrics come from evaluating it
        // on the week before the logical date, like a candidate (its training days are taken
        // to be the week before the label delay, as a `train` task's would be).
        let periods = Periods {
            train_start: ctx.logical_date - Duration::days(20),
            train_days: 7,
            delay_days: 7,
            test_days: 7,
        };
        let record = train::import_and_register(
            lake,
            &spec,
            Import {
                source: path.clone(),
                family,
                bytes,
            },
            &periods,
            0.5,
            &LabelPolicy::default(),
            Registration {
                created_by: format!("dag:{}:{}", ctx.dag, actor()),
                note: format!("registered from {path} by DAG {}", ctx.dag),
            },
        )
        .await?;
        ctx.note(format!("registered {path} as version {}", record.version));
        Ok(json!({"candidate_version": record.version}))
    }
}
