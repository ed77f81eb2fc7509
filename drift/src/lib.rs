//! Drift monitoring: does the data the model scores still look like the data it was trained
//! on? [`stats`] holds the per-column tests (chosen and computed as Evidently's
//! DataDriftPreset does), [`compute`] reads the periods from the lake and builds a
//! [`report::DriftReport`], [`report`] renders it (self-contained HTML and JSON) and
//! [`history`] keeps it: report files in the lake and one row per column in `drift_reports`.
//!
//! Guide: docs/drift.md in the repository.

pub mod compute;
pub mod error;
pub mod history;
pub mod report;
pub mod stats;

pub use compute::{compute, ColumnOverride, DriftOptions, PeriodSpec};
pub use error::{Error, Result};
pub use history::{latest, save, Latest, Saved, DRIFT_REPORTS};
pub use report::DriftReport;
