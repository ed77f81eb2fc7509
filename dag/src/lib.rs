//! Workflows: DAGs of built-in ops declared in `dags/*.toml`, run on cron schedules.
//!
//! - [`spec`] and [`condition`]: parsing and validating DAG files (cycles, ops, args, cron).
//! - [`ops`]: the built-in ops (ingest, features_build, drift_report, train, evaluate,
//!   register, promote, shadow, canary_analysis, mlflow_sync, sql, notify), one module each
//!   with its arguments, calling the same library code as the CLI.
//! - [`state`]: run and task states and run triggers, typed (stored as strings).
//! - [`runner`]: one run: order, conditions, retries, timeouts, history; [`transient`]: which
//!   errors are worth a retry.
//! - [`scheduler`]: the cron loop with its lease, recovery and catch-up.
//! - [`history`]: `dag_runs` / `task_runs` in the lake; [`claim`]: the lease and run claims
//!   (compare-and-swap by generation objects) and task logs;
//!   [`metrics`]: Prometheus metrics of runs and tasks.
//!
//! Guide: docs/dags.md in the repository.

pub mod claim;
pub mod condition;
pub mod error;
pub mod history;
pub mod metrics;
pub mod ops;
pub mod runner;
pub mod scheduler;
pub mod spec;
pub mod state;
pub mod transient;

pub use error::{Error, Result};
pub use metrics::DagMetrics;
pub use ops::OpEnv;
pub use runner::{RunOutcome, RunRequest, Runner};
pub use spec::{load_dir, DagSpec};
pub use state::{RunState, TaskState, Trigger};
