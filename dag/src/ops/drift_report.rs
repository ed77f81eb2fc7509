//! `drift_report`: compares the current days' features and scores with a reference period and
//! saves the report, as `fraudlake drift report`. Its own module so its arguments and the call
//! stay together.

use std::fmt;

use crate::error::Result;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Op, OpCtx};
use crate::spec::args;

/// `drift_report` args.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftReportArgs {
    /// The reference period (default: the champion's training period).
    #[serde(default, deserialize_with = "args::from_str")]
    pub reference: DriftReference,
    /// The current period: this many days ending at the logical date (default 7).
    #[serde(default = "args::seven", deserialize_with = "args::days_from_1")]
    pub current_days: u32,
}

/// The reference period of a drift report (`fraudlake_drift::compute::PeriodSpec`), written
/// `"champion"` or `"YYYY-MM-DD..YYYY-MM-DD"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriftReference {
    /// The champion's training period.
    #[default]
    Champion,
    /// `FROM..TO`, both days included.
    Range {
        /// First day.
        from: NaiveDate,
        /// Last day (included).
        to: NaiveDate,
    },
}

impl fmt::Display for DriftReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriftReference::Champion => f.write_str("champion"),
            DriftReference::Range { from, to } => write!(f, "{from}..{to}"),
        }
    }
}

impl std::str::FromStr for DriftReference {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<DriftReference, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("champion") {
            return Ok(DriftReference::Champion);
        }
        let bad = || {
            format!("{s:?} is not a period: expected \"champion\" or \"YYYY-MM-DD..YYYY-MM-DD\" (both days included)")
        };
        let (a, b) = t.split_once("..").ok_or_else(bad)?;
        let from = NaiveDate::parse_from_str(a.trim(), "%Y-%m-%d").map_err(|_| bad())?;
        let to = NaiveDate::parse_from_str(b.trim(), "%Y-%m-%d").map_err(|_| bad())?;
        if to < from {
            return Err(format!("period {s:?} ends before it starts"));
        }
        Ok(DriftReference::Range { from, to })
    }
}

impl Op for DriftReportArgs {
    fn summary(&self) -> Vec<String> {
        vec![
            format!("reference={}", self.reference),
            format!("current_days={}", self.current_days),
        ]
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let env = ctx.env;
        let opts = fraudlake_drift::DriftOptions {
            reference: match self.reference {
                DriftReference::Champion => fraudlake_drift::PeriodSpec::Champion,
                DriftReference::Range { from, to } => {
                    fraudlake_drift::PeriodSpec::Range { from, to }
                }
            },
            current: None,
            current_days: self.current_days,
            as_of: Some(ctx.logical_date),
            ..env.drift.clone()
        };
        let report = fraudlake_drift::compute(&env.lake, &opts).await?;
        let saved = fraudlake_drift::save(&env.lake, &report).await?;
        let drifted: Vec<&str> = report
            .columns
            .iter()
            .filter(|c| c.drifted)
            .map(|c| c.name.as_str())
            .collect();
        ctx.note(format!(
            "drift {} vs {}: {} of {} columns drifted; dataset drift {}; report {}",
            report.reference.label,
            report.current.label,
            drifted.len(),
            report.columns.len(),
            report.dataset_drift,
            saved.html
        ));
        Ok(json!({
            "dataset_drift": report.dataset_drift,
            "drift_share": report.drift_share,
            "drifted_columns": drifted,
            "prediction_drift": report.prediction.as_ref().map(|p| p.drifted),
            "report": saved.html,
            "run_id": report.run_id,
        }))
    }
}
