//! Printing results as a table, CSV or JSON: every listing command offers all three so
//! people read tables and scripts read JSON.

use std::io::Write;

use anyhow::Result;
use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

impl From<Format> for fraudlake_pipeline::sql::OutputFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => Self::Table,
            Format::Csv => Self::Csv,
            Format::Json => Self::Json,
        }
    }
}

/// A JSON object read back with its keys in written order (serde_json's map sorts them).
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// Prints serializable rows: JSON as an array, CSV and table from their fields in order.
pub fn print_rows<T: Serialize>(rows: &[T], format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    let mut headers: Vec<String> = Vec::new();
    let mut values: Vec<serde_json::Value> = Vec::with_capacity(rows.len());
    for row in rows {
        let text = serde_json::to_string(row)?;
        let Ordered(entries) = serde_json::from_str(&text)?;
        for (k, _) in &entries {
            if !headers.contains(k) {
                headers.push(k.clone());
            }
        }
        values.push(serde_json::Value::Object(entries.into_iter().collect()));
    }
    let cell = |v: &serde_json::Value, h: &str| -> String {
        match v.get(h) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => match n.as_f64() {
                Some(f) if n.is_f64() => format!("{f:.6}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string(),
                _ => n.to_string(),
            },
            Some(other) => other.to_string(),
        }
    };
    let table: Vec<Vec<String>> = values
        .iter()
        .map(|v| headers.iter().map(|h| cell(v, h)).collect())
        .collect();
    if format == Format::Csv {
        return write_csv(std::io::stdout().lock(), &headers, &table);
    }
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(&headers));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for row in &table {
        println!("{}", line(row));
    }
    Ok(())
}

/// The header line and one `\n`-ended line per row, written by the `csv` crate (RFC 4180
/// quoting: only values holding a comma, a quote or a line break are quoted, quotes doubled).
fn write_csv(mut out: impl Write, headers: &[String], table: &[Vec<String>]) -> Result<()> {
    if headers.is_empty() {
        // No rows, so no columns: one empty line, as a listing with nothing in it always printed
        // (the csv crate would write `""`, a row with one empty value).
        writeln!(out)?;
        return Ok(out.flush()?);
    }
    let mut w = csv::Writer::from_writer(out);
    w.write_record(headers)?;
    for row in table {
        w.write_record(row)?;
    }
    Ok(w.flush()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_of(headers: &[&str], rows: &[&[&str]]) -> String {
        let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect();
        let mut out = Vec::new();
        write_csv(&mut out, &headers, &table).expect("csv");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(
            csv_of(
                &["version", "auc_roc", "note"],
                &[&["1", "0.87", "plain text"], &["2", "", "n/a"]]
            ),
            "version,auc_roc,note\n1,0.87,plain text\n2,,n/a\n"
        );
        assert_eq!(
            csv_of(
                &["a,b", "say"],
                &[&["x,y", "he said \"hi\""], &["line\nbreak", "cr\rhere"]]
            ),
            "\"a,b\",say\n\"x,y\",\"he said \"\"hi\"\"\"\n\"line\nbreak\",\"cr\rhere\"\n"
        );
        assert_eq!(csv_of(&[], &[]), "\n");
    }

    #[test]
    fn csv_reads_back_as_written() {
        let text = csv_of(&["k", "v"], &[&["a,\"b\"\nc", " spaced "]]);
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().collect::<Result<_, _>>().expect("read");
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "a,\"b\"\nc");
        assert_eq!(&rows[0][1], " spaced ");
    }
}
