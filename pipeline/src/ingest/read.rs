//! Reading input files into Arrow batches without losing a row: CSV and JSON Lines become
//! text columns (typing happens in validation, where a bad value can be quarantined with a
//! reason), Parquet keeps its types. Lines that cannot even be split into fields (ragged CSV,
//! invalid JSON) come back as rejections instead of failing the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::{ArrayBuilder, ArrayRef, RecordBatch, StringBuilder};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use indicatif::ProgressBar;

use crate::error::{Error, Result};

/// Rows per batch when we build batches ourselves.
const BATCH_ROWS: usize = 65_536;

/// Supported input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Csv,
    Parquet,
    JsonLines,
}

impl InputFormat {
    /// Picks the format from the file extension.
    pub fn from_path(path: &Path) -> Result<InputFormat> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => Ok(InputFormat::Csv),
            "parquet" | "pq" => Ok(InputFormat::Parquet),
            "jsonl" | "ndjson" | "json" => Ok(InputFormat::JsonLines),
            _ => Err(Error::invalid(format!(
                "{}: cannot tell the format from the extension '{ext}'; use --format csv|parquet|jsonl",
                path.display()
            ))),
        }
    }
}

impl std::str::FromStr for InputFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(InputFormat::Csv),
            "parquet" => Ok(InputFormat::Parquet),
            "jsonl" | "json" | "ndjson" => Ok(InputFormat::JsonLines),
            other => Err(Error::invalid(format!(
                "unknown format '{other}' (expected csv, parquet or jsonl)"
            ))),
        }
    }
}

/// A record that could not be split into fields.
#[derive(Debug, Clone)]
pub struct UnreadableRow {
    /// 1-based line (text formats) or row number.
    pub row_number: i64,
    pub raw: String,
    pub reason: String,
}

/// What a reader produced: batches with the file's own column names, the 1-based source row
/// number of each batch's first row (plus per-row numbers when rows were skipped), and rows
/// that could not be read at all.
#[derive(Debug, Default)]
pub struct ReadOutput {
    pub batches: Vec<RecordBatch>,
    /// For each batch, the source row number of each of its rows.
    pub row_numbers: Vec<Vec<i64>>,
    pub unreadable: Vec<UnreadableRow>,
}

/// Reads a whole file. Errors only when the file as a whole is unusable.
pub fn read_file(path: &Path, format: InputFormat, progress: &ProgressBar) -> Result<ReadOutput> {
    let file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    match format {
        InputFormat::Parquet => read_parquet(path, file, progress),
        InputFormat::Csv => {
            progress.set_length(len);
            read_csv(path, file, progress)
        }
        InputFormat::JsonLines => {
            progress.set_length(len);
            read_jsonl(path, file, progress)
        }
    }
}

fn read_parquet(path: &Path, file: File, progress: &ProgressBar) -> Result<ReadOutput> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        Error::invalid(format!(
            "{}: not a readable Parquet file: {e}",
            path.display()
        ))
    })?;
    let total = builder.metadata().file_metadata().num_rows();
    progress.set_length(total.max(0) as u64);
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    let mut out = ReadOutput::default();
    let mut next_row = 1i64;
    for batch in reader {
        let batch = batch.map_err(|e| {
            Error::invalid(format!("{}: corrupt Parquet data: {e}", path.display()))
        })?;
        let n = batch.num_rows() as i64;
        out.row_numbers.push((next_row..next_row + n).collect());
        next_row += n;
        progress.inc(n as u64);
        out.batches.push(batch);
    }
    Ok(out)
}

/// Accumulates text columns into batches; a column first seen late is back-filled with nulls.
struct TextColumns {
    names: Vec<String>,
    index: HashMap<String, usize>,
    builders: Vec<StringBuilder>,
    rows: usize,
    row_numbers: Vec<i64>,
    out: ReadOutput,
}

impl TextColumns {
    fn new(names: Vec<String>) -> Self {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let builders = names.iter().map(|_| StringBuilder::new()).collect();
        TextColumns {
            names,
            index,
            builders,
            rows: 0,
            row_numbers: Vec::new(),
            out: ReadOutput::default(),
        }
    }

    fn column(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let mut b = StringBuilder::new();
        for _ in 0..self.rows {
            b.append_null();
        }
        self.names.push(name.to_string());
        self.builders.push(b);
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// Pads columns not set in the current row, then cuts a batch when full.
    fn end_row(&mut self, row_number: i64) -> Result<()> {
        self.rows += 1;
        self.row_numbers.push(row_number);
        for b in &mut self.builders {
            if b.len() < self.rows {
                b.append_null();
            }
        }
        if self.rows >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        // Earlier batches may lack later-discovered columns; validation looks columns up by name.
        let fields: Vec<Field> = self
            .names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect();
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        self.out
            .batches
            .push(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?);
        self.out
            .row_numbers
            .push(std::mem::take(&mut self.row_numbers));
        self.rows = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<ReadOutput> {
        self.flush()?;
        Ok(self.out)
    }
}

fn read_csv(path: &Path, file: File, progress: &ProgressBar) -> Result<ReadOutput> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let headers = reader
        .headers()
        .map_err(|e| {
            Error::invalid(format!(
                "{}: cannot read the CSV header: {e}",
                path.display()
            ))
        })?
        .clone();
    if headers.is_empty() || headers.iter().all(|h| h.trim().is_empty()) {
        return Err(Error::invalid(format!(
            "{}: the CSV header is empty",
            path.display()
        )));
    }
    let names: Vec<String> = headers.iter().map(|h| h.trim().to_string()).collect();
    let width = names.len();
    let mut cols = TextColumns::new(names);
    let mut record = csv::StringRecord::new();
    let mut last_pos = 0u64;
    loop {
        let line = reader.position().line() as i64 + 1;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map(|p| p.line() as i64).unwrap_or(line);
                if record.len() != width {
                    cols.out.unreadable.push(UnreadableRow {
                        row_number: line,
                        raw: record.iter().collect::<Vec<_>>().join(","),
                        reason: format!("expected {width} fields, found {}", record.len()),
                    });
                    continue;
                }
                for (i, field) in record.iter().enumerate() {
                    let field = field.trim();
                    if field.is_empty() {
                        cols.builders[i].append_null();
                    } else {
                        cols.builders[i].append_value(field);
                    }
                }
                cols.end_row(line)?;
            }
            Err(e) => {
                // Invalid UTF-8 and the like: quarantine the line, keep reading.
                cols.out.unreadable.push(UnreadableRow {
                    row_number: line,
                    raw: String::new(),
                    reason: format!("unreadable CSV record: {e}"),
                });
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(Error::invalid(format!("{}: {e}", path.display())));
                }
            }
        }
        let pos = reader.position().byte();
        if pos - last_pos > (1 << 20) {
            progress.inc(pos - last_pos);
            last_pos = pos;
        }
    }
    cols.finish()
}

fn read_jsonl(path: &Path, file: File, progress: &ProgressBar) -> Result<ReadOutput> {
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut cols = TextColumns::new(Vec::new());
    for (i, line) in reader.split(b'\n').enumerate() {
        let line_no = i as i64 + 1;
        let bytes = line.map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        progress.inc(bytes.len() as u64 + 1);
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t.trim(),
            Err(e) => {
                cols.out.unreadable.push(UnreadableRow {
                    row_number: line_no,
                    raw: String::from_utf8_lossy(&bytes).into_owned(),
                    reason: format!("line is not valid UTF-8: {e}"),
                });
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(other) => {
                cols.out.unreadable.push(UnreadableRow {
                    row_number: line_no,
                    raw: text.to_string(),
                    reason: format!("expected a JSON object, found {}", json_kind(&other)),
                });
                continue;
            }
            Err(e) => {
                cols.out.unreadable.push(UnreadableRow {
                    row_number: line_no,
                    raw: text.to_string(),
                    reason: format!("invalid JSON: {e}"),
                });
                continue;
            }
        };
        for (key, value) in &object {
            let c = cols.column(key.trim());
            let b = &mut cols.builders[c];
            if b.len() > cols.rows {
                continue; // duplicate key after trimming: first one wins
            }
            match value {
                serde_json::Value::Null => b.append_null(),
                serde_json::Value::String(s) => b.append_value(s),
                other => b.append_value(other.to_string()),
            }
        }
        cols.end_row(line_no)?;
    }
    cols.finish()
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
