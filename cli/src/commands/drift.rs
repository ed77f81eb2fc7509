//! `fraudlake drift`: compares the data being scored with the data the champion was trained
//! on, writes the HTML + JSON report into the lake and a row per column into `drift_reports`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::Args;
use fraudlake_drift::{DriftOptions, PeriodSpec};
use serde::Serialize;

use crate::config::Settings;
use crate::exit;
use crate::output::{print_rows, Format};

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Reference data: `champion` (its training period) or FROM..TO (days, both included).
    #[arg(long, default_value = "champion")]
    reference: String,
    /// Current data: FROM..TO. Default: the --current-days days ending at --as-of (or at the
    /// last day of the features table).
    #[arg(long)]
    current: Option<String>,
    /// Length of the default current period, in days (default 7, or [drift] current_days).
    #[arg(long)]
    current_days: Option<u32>,
    /// The day the default current period ends on (a scheduled run's logical date).
    #[arg(long)]
    as_of: Option<NaiveDate>,
    /// Dataset drift when at least this share of columns drifted (default 0.5).
    #[arg(long)]
    drift_share: Option<f64>,
    /// Histogram bins per numerical column in the HTML report (default 20).
    #[arg(long)]
    bins: Option<usize>,
    /// Also write the HTML report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compute and print only: no report files, no `drift_reports` rows.
    #[arg(long)]
    no_save: bool,
    /// Exit with code 3 when dataset drift is detected (for scripts and CI).
    #[arg(long)]
    fail_on_drift: bool,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Serialize)]
struct Row<'a> {
    scope: &'static str,
    column: &'a str,
    kind: &'a str,
    method: &'a str,
    statistic: String,
    threshold: f64,
    drifted: bool,
    psi: String,
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        "n/a".into()
    }
}

pub async fn run(a: DriftArgs, settings: &Settings) -> Result<u8> {
    let cfg = &settings.drift;
    let opts = DriftOptions {
        reference: a.reference.parse::<PeriodSpec>()?,
        current: a.current.as_deref().map(str::parse).transpose()?,
        current_days: a.current_days.or(cfg.current_days).unwrap_or(7),
        as_of: a.as_of,
        drift_share: a
            .drift_share
            .or(cfg.drift_share)
            .unwrap_or(fraudlake_drift::stats::DATASET_DRIFT_SHARE),
        columns: cfg.columns.clone(),
        bins: a.bins.or(cfg.bins).unwrap_or(20),
    };
    fraudlake_drift::compute::validate(&opts)?;
    let lake = settings.open_lake()?;
    let started = std::time::Instant::now();
    let report = fraudlake_drift::compute(&lake, &opts).await?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        reference_rows = report.reference.rows,
        current_rows = report.current.rows,
        "drift computed"
    );
    let saved = if a.no_save {
        None
    } else {
        Some(fraudlake_drift::save(&lake, &report).await?)
    };
    if let Some(path) = &a.out {
        let html = report
            .to_html()
            .map_err(|e| anyhow::anyhow!("cannot render the report: {e}"))?;
        std::fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))?;
    }

    match a.format {
        Format::Json => {
            let mut v: serde_json::Value = serde_json::from_str(
                &report
                    .to_json()
                    .map_err(|e| anyhow::anyhow!("cannot serialise the report: {e}"))?,
            )?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("n_drifted".into(), report.n_drifted().into());
                obj.insert("saved".into(), serde_json::to_value(&saved)?);
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        format => {
            let mut rows: Vec<Row> = report
                .columns
                .iter()
                .map(|c| ("feature", c))
                .chain(report.prediction.iter().map(|c| ("prediction", c)))
                .chain(report.target.iter().map(|c| ("target", c)))
                .map(|(scope, c)| Row {
                    scope,
                    column: &c.name,
                    kind: &c.kind,
                    method: &c.method,
                    statistic: num(c.statistic),
                    threshold: c.threshold,
                    drifted: c.drifted,
                    psi: num(c.psi),
                })
                .collect();
            if format == Format::Table {
                println!(
                    "{}: {} of {} columns drifted ({:.1} %, threshold {:.0} %)",
                    if report.dataset_drift {
                        "DATASET DRIFT"
                    } else {
                        "no dataset drift"
                    },
                    report.n_drifted(),
                    report.columns.len(),
                    report.drift_share * 100.0,
                    report.drift_share_threshold * 100.0
                );
                println!(
                    "reference {} ({} rows), current {} ({} rows), model {}",
                    report.reference.label,
                    report.reference.rows,
                    report.current.label,
                    report.current.rows,
                    report
                        .model_version
                        .map_or_else(|| "none".to_string(), |v| format!("v{v}"))
                );
                rows.sort_by_key(|r| !r.drifted);
            }
            print_rows(&rows, format)?;
            if let (Some(q), Format::Table) = (&report.quality, format) {
                println!(
                    "live quality on {} labeled scored transactions: AUC {} (test {}), AP {} \
                     (test {})",
                    q.labeled_rows,
                    num(q.auc_roc.unwrap_or(f64::NAN)),
                    num(q.test_auc_roc.unwrap_or(f64::NAN)),
                    num(q.average_precision.unwrap_or(f64::NAN)),
                    num(q.test_average_precision.unwrap_or(f64::NAN)),
                );
            }
            if let (Some(s), Format::Table) = (&saved, format) {
                println!("report: {}", s.html);
            }
        }
    }
    Ok(if a.fail_on_drift && report.dataset_drift {
        exit::CHECK_FAILED
    } else {
        0
    })
}
