//! `sql`: runs a read-only SQL file from `sql/` against the lake, as `fraudlake sql`, and logs
//! the result table. Its own module so its arguments and the call stay together.

use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Op, OpCtx};
use crate::spec::args;

/// `sql` args.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlArgs {
    /// A file relative to `sql/`.
    #[serde(deserialize_with = "args::sql_file")]
    pub file: String,
}

impl Op for SqlArgs {
    fn summary(&self) -> Vec<String> {
        vec![format!("file={:?}", self.file)]
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let path = ctx.env.sql_dir.join(&self.file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        // With `tx_labeled`, as in `fraudlake sql`.
        let session = fraudlake_features::session(&ctx.env.lake, &[]).await?;
        let batches = fraudlake_pipeline::sql::query(&session, &text).await?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let mut table = Vec::new();
        fraudlake_pipeline::sql::render(
            &batches,
            fraudlake_pipeline::sql::OutputFormat::Table,
            &mut table,
        )?;
        ctx.note(String::from_utf8_lossy(&table).into_owned());
        Ok(json!({"rows": rows}))
    }
}
