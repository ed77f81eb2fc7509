//! Printing results as a table, CSV or JSON: every listing command offers all three so
//! people read tables and scripts read JSON.

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
        println!(
            "{}",
            headers
                .iter()
                .map(|h| csv_escape(h))
                .collect::<Vec<_>>()
                .join(",")
        );
        for row in &table {
            println!(
                "{}",
                row.iter()
                    .map(|c| csv_escape(c))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        return Ok(());
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

fn csv_escape(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
