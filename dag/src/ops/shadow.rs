//! `shadow`: starts a model as the shadow, as `fraudlake models shadow V`: it then scores every
//! transaction beside the champion and decides nothing, until the `canary_analysis` of
//! `canary_rollout` judges it (docs/rollout.md section 7). A retraining DAG in a lake that rolls
//! out gradually ends with this instead of `promote`. Its own module so its argument and the
//! call stay together.

use crate::error::{Error, Result};
use fraudlake_model::registry::rollout::start_rollout;
use fraudlake_model::registry::Registry;
use fraudlake_model::rollout::Role;
use serde::Deserialize;
use serde_json::Value;

use super::{ModelRef, Op, OpCtx};

/// `shadow` args.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowArgs {
    /// The model to shadow (default `candidate`: the version this run's `train` registered).
    #[serde(default)]
    pub model: ModelRef,
}

impl Op for ShadowArgs {
    fn summary(&self) -> Vec<String> {
        vec![format!("model={}", self.model)]
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let which = ctx.model(&self.model)?;
        let registry = Registry::new(ctx.env.lake.clone());
        let reason = format!("DAG {} run {}", ctx.dag, ctx.run_id);
        let change =
            start_rollout(&registry, Role::Shadow, &which, None, Some(reason.as_str())).await?;
        for w in &change.warnings {
            ctx.note(format!("warning: {w}"));
        }
        ctx.note(if change.changed {
            format!("version {} is now the shadow", change.version)
        } else {
            format!("version {} was already the shadow", change.version)
        });
        serde_json::to_value(&change).map_err(|e| Error::invalid(e.to_string()))
    }
}
