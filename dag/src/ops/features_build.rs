//! `features_build`: builds the offline features from a feature SQL file, as
//! `fraudlake features build`. Its own module so its arguments and the call stay together.

use crate::error::Result;
use fraudlake_features::{compile, offline, FeatureSet};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Op, OpCtx};
use crate::spec::args;

/// `features_build` args.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesBuildArgs {
    /// The feature SQL, relative to `sql/` (default `features.sql`).
    #[serde(default = "default_sql", deserialize_with = "args::sql_file")]
    pub sql: String,
}

fn default_sql() -> String {
    "features.sql".to_string()
}

impl Op for FeaturesBuildArgs {
    fn summary(&self) -> Vec<String> {
        vec![format!("sql={:?}", self.sql)]
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let path = ctx.env.sql_dir.join(&self.sql);
        let plan = compile(&FeatureSet::load(&path)?).await?;
        let s = offline::build(&ctx.env.lake, &plan, None, None).await?;
        ctx.note(format!(
            "features built from {}: {} rows in {:.2} s",
            path.display(),
            s.rows,
            s.seconds
        ));
        Ok(json!({"rows": s.rows, "seconds": s.seconds,
                  "feature_set": plan.feature_set.sha256}))
    }
}
