//! `ingest`: loads a CSV / Parquet / JSON Lines file into the lake, as `fraudlake ingest`.
//! Its own module so its arguments, their checks and the call stay together.

use std::path::Path;

use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Op, OpCtx};
use crate::spec::args;

/// File extensions `ingest` reads (as `fraudlake_pipeline::ingest::InputFormat::from_path`).
const INGEST_EXTENSIONS: &[&str] = &["csv", "parquet", "pq", "jsonl", "ndjson", "json"];

/// `ingest` args.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestArgs {
    /// A local path or an http(s) URL ending in .csv, .parquet, .pq, .jsonl, .ndjson or
    /// .json. `fraudlake ingest` reads local files: the runner downloads URLs first.
    #[serde(deserialize_with = "source")]
    pub source: String,
    /// A known source schema.
    #[serde(default, deserialize_with = "preset")]
    pub preset: Option<IngestPreset>,
}

/// Known source schemas of `ingest` (as `fraudlake ingest --preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestPreset {
    /// The Fraud Detection Handbook's simulated transactions.
    Handbook,
}

impl std::str::FromStr for IngestPreset {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<IngestPreset, String> {
        match s {
            "handbook" => Ok(IngestPreset::Handbook),
            other => Err(format!(
                "unknown preset {other:?} (valid presets: handbook)"
            )),
        }
    }
}

fn source<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let source = args::non_empty(d)?;
    check_source(&source).map_err(serde::de::Error::custom)?;
    Ok(source)
}

fn preset<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<IngestPreset>, D::Error> {
    args::from_str(d).map(Some)
}

fn check_source(source: &str) -> std::result::Result<(), String> {
    let s = source.trim();
    let path = match s.split_once("://") {
        Some((scheme, rest)) => {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(format!(
                    "unsupported URL scheme {scheme:?}: use a local path or an http(s) URL"
                ));
            }
            rest.split(['?', '#']).next().unwrap_or(rest)
        }
        None => s,
    };
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let ext = file
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if INGEST_EXTENSIONS.contains(&ext.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "{source:?} is not a CSV, Parquet or JSON Lines file (extensions: .{})",
            INGEST_EXTENSIONS.join(", .")
        ))
    }
}

impl Op for IngestArgs {
    fn summary(&self) -> Vec<String> {
        let mut v = vec![format!("source={:?}", self.source)];
        if let Some(IngestPreset::Handbook) = self.preset {
            v.push("preset=handbook".into());
        }
        v
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let source = &self.source;
        if source.starts_with("http://") || source.starts_with("https://") {
            return Err(Error::invalid(format!(
                "ingest reads files the scheduler can see; download {source} first"
            )));
        }
        let opts = fraudlake_pipeline::ingest::IngestOptions {
            format: None,
            preset: self.preset.map(|p| match p {
                IngestPreset::Handbook => fraudlake_pipeline::ingest::Preset::Handbook,
            }),
            mappings: Vec::new(),
            label_source: None,
            progress: false,
        };
        let s = fraudlake_pipeline::ingest::ingest_file(&ctx.env.lake, Path::new(source), &opts)
            .await?;
        ctx.note(format!(
            "ingested {source}: {} accepted, {} rejected, {} already present",
            s.accepted, s.rejected, s.already_present
        ));
        Ok(json!({"accepted": s.accepted, "rejected": s.rejected,
                  "already_present": s.already_present}))
    }
}
