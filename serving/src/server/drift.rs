//! The drift verdict the server shows as gauges (`fraud_dataset_drift`, `fraud_feature_drift`,
//! ...), which the drift alerts read. The drift crate owns the `drift_reports` table and the
//! statistics; the server only needs the latest verdict, so it asks through this trait and the
//! binary plugs in the drift crate's reader (cli/src/commands/serve.rs). The server then links
//! neither the statistics nor the HTML report.

use std::fmt::Debug;

use async_trait::async_trait;
use fraudlake_pipeline::Lake;

/// One column's verdict of a drift report.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnVerdict {
    /// `feature`, `prediction` or `target`.
    pub scope: String,
    pub column: String,
    /// The statistical test that judged it (e.g. `wasserstein`, `psi`).
    pub method: String,
    /// The test's statistic, when it has one.
    pub statistic: Option<f64>,
    pub drifted: bool,
}

/// The latest drift report's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftVerdict {
    pub run_id: String,
    pub generated_at_secs: f64,
    pub dataset_drift: bool,
    pub drift_share: f64,
    pub columns: Vec<ColumnVerdict>,
}

/// Where the latest drift verdict comes from.
#[async_trait]
pub trait DriftVerdicts: Send + Sync + Debug {
    /// The latest report's verdict, or `None` when no report was made yet.
    async fn latest(&self, lake: &Lake) -> Result<Option<DriftVerdict>, crate::Error>;
}
