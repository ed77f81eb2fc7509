//! `promote`: makes a model the champion through the registry's gate, as
//! `fraudlake models promote`. Its own module so its arguments, the force-needs-a-reason
//! check and the call stay together.

use crate::error::{Error, Result};
use fraudlake_model::registry::gate::{self, GatePolicy, GateWindow};
use fraudlake_model::registry::Registry;
use serde::Deserialize;
use serde_json::Value;

use super::{ModelRef, Op, OpCtx};
use crate::spec::SpecErrorKind;

/// `promote` args.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteArgs {
    /// The model to promote (default `candidate`).
    #[serde(default)]
    pub model: ModelRef,
    /// Bypass the registry's gate (default false); needs `reason`.
    #[serde(default)]
    pub force: bool,
    /// Recorded in the registry's audit trail.
    pub reason: Option<String>,
    /// The days the gate scores both models on (default: `[gate] window` of the config).
    #[serde(default, deserialize_with = "window")]
    pub window: Option<GateWindow>,
}

fn window<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<GateWindow>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map(Some)
        .map_err(|e: fraudlake_model::Error| serde::de::Error::custom(format!("{e}")))
}

impl Op for PromoteArgs {
    fn validate(&self) -> Vec<SpecErrorKind> {
        if self.force && self.reason.as_ref().is_none_or(|s| s.trim().is_empty()) {
            return vec![SpecErrorKind::InvalidArg {
                key: "reason".to_string(),
                message: "required when force = true: say why the gate is bypassed".to_string(),
            }];
        }
        Vec::new()
    }

    fn summary(&self) -> Vec<String> {
        let mut v = vec![
            format!("model={}", self.model),
            format!("force={}", self.force),
        ];
        v.extend(self.reason.iter().map(|r| format!("reason={r:?}")));
        v.extend(self.window.iter().map(|w| format!("window={w:?}")));
        v
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let env = ctx.env;
        let which = ctx.model(&self.model)?;
        let registry = Registry::new(env.lake.clone());
        let policy = GatePolicy {
            window: self.window.unwrap_or(env.gate.window),
            ..env.gate.clone()
        };
        let r = gate::promote(
            &registry,
            &which,
            &policy,
            self.force,
            self.reason.as_deref(),
        )
        .await?;
        ctx.note(format!(
            "gate for version {} vs champion {:?} on {}: candidate {:?}, champion {:?}: {}",
            r.candidate,
            r.champion,
            r.metric,
            r.candidate_score,
            r.champion_score,
            if r.promoted {
                "promoted"
            } else {
                "refused: it stays challenger"
            }
        ));
        serde_json::to_value(&r).map_err(|e| Error::invalid(e.to_string()))
    }
}
