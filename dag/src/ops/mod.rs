//! The built-in ops a DAG task can run, one module per op. Each calls the same library code as
//! the CLI command of the same name (never the binary), on the run's logical date, and returns
//! a JSON summary that later tasks' conditions (`run_if = "drift.dataset_drift"`) and the run
//! history read.
//!
//! Why one module per op behind the [`Op`] trait: an op is its arguments (a serde-derived
//! struct, `deny_unknown_fields`, checked when the DAG file is loaded) plus what it does with
//! them, and both change together. The [`ops!`] list below is the one place that names every
//! op: it gives [`OpKind`] (the names in DAG files) and [`OpArgs`] (one loaded task's
//! arguments) and routes loading and running to the op's module.

pub mod canary_analysis;
pub mod drift_report;
pub mod evaluate;
pub mod features_build;
pub mod ingest;
pub mod mlflow_sync;
pub mod notify;
pub mod promote;
pub mod register;
pub mod shadow;
pub mod sql;
pub mod train;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;

use crate::error::{Error, Result};
use chrono::NaiveDate;
use fraudlake_model::params::TrainParams;
use fraudlake_model::registry::gate::GatePolicy;
use fraudlake_pipeline::lake::Lake;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::spec::args;
use crate::spec::SpecErrorKind;
use crate::state::RunState;

/// One op: its arguments are the implementing struct.
pub trait Op: DeserializeOwned + fmt::Debug + Clone + PartialEq + Send + Sync + 'static {
    /// Checks across arguments that serde cannot express (each argument's own checks run
    /// while deserializing). Run when the DAG file is loaded.
    fn validate(&self) -> Vec<SpecErrorKind> {
        Vec::new()
    }

    /// `key=value` pairs with defaults applied, for `dag show`.
    fn summary(&self) -> Vec<String>;

    /// Runs the op for one task attempt; the JSON is the task's output.
    fn run(&self, ctx: &mut OpCtx<'_>) -> impl Future<Output = Result<Value>> + Send;
}

macro_rules! count {
    () => { 0usize };
    ($head:ident $($tail:ident)*) => { 1usize + count!($($tail)*) };
}

/// The list of ops, in the order the docs list them: `Variant(ArgsType) = "name"`.
macro_rules! ops {
    ($($(#[$doc:meta])* $variant:ident($args:ty) = $name:literal),* $(,)?) => {
        /// What a task does: an op's name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OpKind {
            $($(#[$doc])* $variant),*
        }

        impl OpKind {
            /// Every op, in the order the docs list them.
            pub const ALL: [OpKind; count!($($variant)*)] = [$(OpKind::$variant),*];

            /// The name used in DAG files (`features_build`).
            pub fn name(self) -> &'static str {
                match self {
                    $(OpKind::$variant => $name),*
                }
            }

            /// The keys `args` may have for this op, in the order its struct declares them.
            pub fn arg_names(self) -> &'static [&'static str] {
                match self {
                    $(OpKind::$variant => args::field_names::<$args>()),*
                }
            }

            /// Reads a task's `args` table for this op, reporting every problem.
            pub fn parse_args(self, table: &toml::Table) -> Result<OpArgs, Vec<SpecErrorKind>> {
                match self {
                    $(OpKind::$variant => args::parse::<$args>(self, table).map(OpArgs::$variant)),*
                }
            }
        }

        /// A task's validated arguments, defaults applied: one variant per op.
        #[derive(Debug, Clone, PartialEq)]
        pub enum OpArgs {
            $($(#[$doc])* $variant($args)),*
        }

        impl OpArgs {
            /// The op these args belong to.
            pub fn op(&self) -> OpKind {
                match self {
                    $(OpArgs::$variant(_) => OpKind::$variant),*
                }
            }

            /// `key=value` pairs with defaults applied, for [`crate::DagSpec::describe`].
            pub fn summary(&self) -> String {
                match self {
                    $(OpArgs::$variant(a) => a.summary().join(" ")),*
                }
            }

            /// Runs the op; the JSON it returns is the task's output.
            pub async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
                match self {
                    $(OpArgs::$variant(a) => a.run(ctx).await),*
                }
            }
        }
    };
}

ops! {
    /// Load a CSV / Parquet / JSON Lines file into the lake (`fraudlake ingest`).
    Ingest(ingest::IngestArgs) = "ingest",
    /// Build the offline features (`fraudlake features build`).
    FeaturesBuild(features_build::FeaturesBuildArgs) = "features_build",
    /// Compare current features and scores with a reference period.
    DriftReport(drift_report::DriftReportArgs) = "drift_report",
    /// Train and register a model (`fraudlake train`).
    Train(train::TrainArgs) = "train",
    /// Score a model on a test period (`fraudlake evaluate`).
    Evaluate(evaluate::EvaluateArgs) = "evaluate",
    /// Register an externally trained model (XGBoost JSON or LightGBM text).
    Register(register::RegisterArgs) = "register",
    /// Make a model the champion through the registry's gate.
    Promote(promote::PromoteArgs) = "promote",
    /// Start a model as the shadow of a gradual rollout (`fraudlake models shadow`).
    Shadow(shadow::ShadowArgs) = "shadow",
    /// Judge the running canary or shadow on live traffic and act on the verdict
    /// (`fraudlake models canary analyze`).
    CanaryAnalysis(canary_analysis::CanaryAnalysisArgs) = "canary_analysis",
    /// Mirror the registry into an MLflow tracking server (`fraudlake models sync`).
    MlflowSync(mlflow_sync::MlflowSyncArgs) = "mlflow_sync",
    /// Run a read-only SQL file from `sql/`.
    Sql(sql::SqlArgs) = "sql",
    /// Post a message to a webhook.
    Notify(notify::NotifyArgs) = "notify",
}

impl OpKind {
    /// The op with this file name, if any.
    pub fn from_name(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What every op may use: the lake and the process's configuration.
#[derive(Debug, Clone)]
pub struct OpEnv {
    pub lake: Lake,
    /// The feature SQL the features op builds and the train op trains on.
    pub features_sql: PathBuf,
    /// Where `sql` tasks find their files (the repository's `sql/`).
    pub sql_dir: PathBuf,
    pub train: TrainParams,
    pub gate: GatePolicy,
    pub drift: fraudlake_drift::DriftOptions,
    /// `[mlflow]`: the tracking server `mlflow_sync` tasks mirror the registry into.
    pub mlflow: fraudlake_model::mlflow::MlflowConfig,
}

/// One task attempt's view of its run.
pub struct OpCtx<'a> {
    pub env: &'a OpEnv,
    pub dag: &'a str,
    pub run_id: &'a str,
    pub logical_date: NaiveDate,
    /// Outputs of the tasks that finished so far, by task id (plus the run's built-ins).
    pub context: &'a Value,
    /// Success so far, or failed once a task failed (what `notify` reports).
    pub state: RunState,
    /// Lines for the task's log file.
    pub log: Vec<String>,
}

impl OpCtx<'_> {
    fn note(&mut self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!(dag = self.dag, run = self.run_id, "{line}");
        self.log.push(line);
    }

    /// The model version a task means, as the registry takes it: a number, the champion, or
    /// the version this run's `train`/`register` task produced.
    fn model(&self, which: &ModelRef) -> Result<String> {
        match which {
            ModelRef::Version(v) => Ok(v.to_string()),
            ModelRef::Champion => Ok("champion".into()),
            ModelRef::Candidate => {
                let found = self.context.as_object().and_then(|m| {
                    m.values()
                        .filter_map(|v| v.get("candidate_version").and_then(Value::as_i64))
                        .next_back()
                });
                found.map(|v| v.to_string()).ok_or_else(|| {
                    Error::invalid(
                        "no candidate model: no train or register task of this run produced one",
                    )
                })
            }
        }
    }
}

/// Which model `evaluate`, `promote` and `shadow` act on: `"candidate"` (the default),
/// `"champion"`, or a version number (an integer or a string of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelRef {
    /// The version this run's `train` task registered (the default).
    #[default]
    Candidate,
    /// The registry's current champion.
    Champion,
    /// A registered version number.
    Version(i64),
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Candidate => f.write_str("candidate"),
            ModelRef::Champion => f.write_str("champion"),
            ModelRef::Version(v) => write!(f, "{v}"),
        }
    }
}

impl<'de> Deserialize<'de> for ModelRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<ModelRef, D::Error> {
        struct V;
        fn version<E: de::Error>(v: i64) -> std::result::Result<ModelRef, E> {
            if v >= 1 {
                Ok(ModelRef::Version(v))
            } else {
                Err(E::custom(format!("version numbers start at 1, got {v}")))
            }
        }
        impl Visitor<'_> for V {
            type Value = ModelRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<ModelRef, E> {
                version(v)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<ModelRef, E> {
                match s.trim() {
                    "candidate" => Ok(ModelRef::Candidate),
                    "champion" => Ok(ModelRef::Champion),
                    t => match t.parse::<i64>() {
                        Ok(v) => version(v),
                        Err(_) => Err(E::custom(format!(
                            "{s:?} is not a model: expected \"candidate\", \"champion\" or a version number"
                        ))),
                    },
                }
            }
        }
        d.deserialize_any(V)
    }
}
