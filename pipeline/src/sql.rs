//! SQL over the lake: read-only DataFusion statements (no DDL, no DML, no `SET`), several per
//! file, rendered as a table, CSV or JSON, or written to Parquet/CSV.

use std::io::Write;
use std::path::Path;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::execution::context::{SQLOptions, SessionContext};
use deltalake::datafusion::prelude::DataFrame;
use deltalake::datafusion::sql::parser::DFParser;
use serde::Serialize;

use crate::error::{Error, Result};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(Error::invalid(format!(
                "unknown output format '{other}' (expected table, csv or json)"
            ))),
        }
    }
}

/// The read-only surface: queries only.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Plans every statement of `sql` (one or more, `;`-separated) as read-only DataFrames.
pub async fn plan_statements(ctx: &SessionContext, sql: &str) -> Result<Vec<DataFrame>> {
    let statements = DFParser::parse_sql(sql)?;
    if statements.is_empty() {
        return Err(Error::invalid("no SQL statement given"));
    }
    let state = ctx.state();
    let options = read_only();
    let mut frames = Vec::with_capacity(statements.len());
    for statement in statements {
        let plan = state.statement_to_plan(statement).await?;
        options.verify_plan(&plan)?;
        frames.push(ctx.execute_logical_plan(plan).await?);
    }
    Ok(frames)
}

/// Runs one read-only query and collects it.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    let mut frames = plan_statements(ctx, sql).await?;
    if frames.len() != 1 {
        return Err(Error::invalid(format!(
            "expected one statement, found {}",
            frames.len()
        )));
    }
    Ok(frames.remove(0).collect().await?)
}

/// Prints batches to `out` in the chosen format.
pub fn render(batches: &[RecordBatch], format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let io = |e| Error::io("writing output", e);
    match format {
        OutputFormat::Table => {
            let text = pretty_format_batches(batches)?;
            writeln!(out, "{text}").map_err(io)?;
        }
        OutputFormat::Csv => {
            let mut w = deltalake::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for b in batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = deltalake::arrow::json::ArrayWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
            writeln!(out).map_err(io)?;
        }
    }
    Ok(())
}

/// Writes a query result to a local `.parquet` or `.csv` file (one file, not a folder).
pub async fn write_file(df: DataFrame, path: &Path) -> Result<usize> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let batches = df.collect().await?;
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    let file = std::fs::File::create(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    match ext.as_str() {
        "parquet" => {
            let schema = batches
                .first()
                .map(|b| b.schema())
                .ok_or_else(|| Error::invalid("the query returned no schema"))?;
            let mut w = deltalake::parquet::arrow::ArrowWriter::try_new(file, schema, None)
                .map_err(|e| Error::invalid(format!("parquet: {e}")))?;
            for b in &batches {
                w.write(b)
                    .map_err(|e| Error::invalid(format!("parquet: {e}")))?;
            }
            w.close()
                .map_err(|e| Error::invalid(format!("parquet: {e}")))?;
        }
        "csv" => {
            let mut w = deltalake::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(file);
            for b in &batches {
                w.write(b)?;
            }
        }
        other => {
            return Err(Error::invalid(format!(
                "--out {}: unsupported extension '{other}' (use .parquet or .csv)",
                path.display()
            )))
        }
    }
    Ok(rows)
}
