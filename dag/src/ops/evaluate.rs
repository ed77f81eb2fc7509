//! `evaluate`: scores a registered model on the test days ending at the logical date, as
//! `fraudlake evaluate`. Its own module so its arguments and the call stay together.

use crate::error::Result;
use chrono::Duration;
use fraudlake_model::registry::{metric_map, Registry};
use fraudlake_model::train::{self, TestWindow};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ModelRef, Op, OpCtx};
use crate::spec::args;

/// `evaluate` args.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateArgs {
    /// The model (default `candidate`).
    #[serde(default)]
    pub model: ModelRef,
    /// Days of test data ending at the logical date (default 7).
    #[serde(default = "args::seven", deserialize_with = "args::days_from_1")]
    pub test_days: u32,
}

impl Op for EvaluateArgs {
    fn summary(&self) -> Vec<String> {
        vec![
            format!("model={}", self.model),
            format!("test_days={}", self.test_days),
        ]
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let lake = &ctx.env.lake;
        let which = ctx.model(&self.model)?;
        let registry = Registry::new(lake.clone());
        let v = registry.get(&which).await?;
        let (_, model) = registry.load_artifact(&v.record).await?;
        let from = ctx.logical_date - Duration::days(i64::from(self.test_days) - 1);
        let window = TestWindow {
            known_from: v.record.periods.train_start.min(from),
            delay_days: v.record.periods.delay_days,
            from,
            to: ctx.logical_date,
        };
        let m = train::evaluate_model(
            lake,
            &v.record.feature_spec(),
            &model,
            &window,
            v.record.metrics.threshold,
        )
        .await?;
        ctx.note(format!(
            "version {} on {from}..{}: AUC {:?}, AP {:?}",
            v.record.version, ctx.logical_date, m.auc_roc, m.average_precision
        ));
        Ok(
            json!({"version": v.record.version, "metrics": metric_map(&m),
                  "test_from": from.to_string(), "test_to": ctx.logical_date.to_string()}),
        )
    }
}
