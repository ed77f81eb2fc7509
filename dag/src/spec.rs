//! The DAG files in `dags/*.toml`: parsing, validation and the read-only views of a DAG the
//! scheduler and the CLI need (run order, Mermaid chart, description, fire times).
//!
//! Why a separate spec layer: a DAG file is edited by hand and runs unattended at night, so
//! every mistake that can be found without running anything has to be found when the file is
//! loaded, with the file, the task and the problem in one line (`dags/x.toml: task "train":
//! depends_on "featurez" is not a task of this DAG (tasks: features, drift, train)`). The
//! runner then works only with typed, validated values ([`DagSpec`], [`OpArgs`]) and never
//! re-checks a TOML table.
//!
//! Schedules are parsed with `croner` 3 (seconds optional; [`Schedule::six_field`] gives the
//! form with seconds). Fire times ([`DagSpec::next_fire_times`]) are croner's matches turned
//! into instants by the rules of the DAG's time zone (`chrono-tz`) at each date, so they are
//! right across DST changes: a fixed time in the spring gap fires once at the end of the gap,
//! one in the repeated autumn hour fires once, the first time, and interval patterns keep
//! their real-time interval. The scheduler fires exactly these instants (it sleeps until the
//! next one and computes the one after at each fire). It used to hand the six-field form to
//! tokio-cron-scheduler 0.15, whose `Job::new_tz` froze the zone's UTC offset of the moment
//! the job was created, an hour off after each DST change (issue #22).
//!
//! Fire times are the instants the schedule matches ([`DagSpec::fire_times_between`] for
//! catch-up and backfill); the runner turns each into a run, with the data interval
//! `[previous fire time, fire time)` ([`DagSpec::data_interval`]) and its logical date.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDate, Offset, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, JobType};
use serde::Deserialize;

use crate::condition::{Condition, ConditionError, BUILTINS, KEYWORDS};

/// The notify op's default `url_env`.
pub const DEFAULT_NOTIFY_ENV: &str = "FRAUDLAKE_NOTIFY_WEBHOOK";
/// Default retries of a task when neither the task nor `[defaults]` sets them.
pub const DEFAULT_RETRIES: u32 = 0;
/// Default first retry delay, doubled on each further retry.
pub const DEFAULT_RETRY_BACKOFF_SECS: u64 = 30;
/// Default task timeout (one hour): a hung task must not block the DAG forever.
pub const DEFAULT_TIMEOUT_SECS: u64 = 3600;
/// [`DagSpec::fire_times_between`] refuses ranges with more fire times than this.
pub const MAX_FIRE_TIMES: usize = 100_000;
/// Names `notify` text may use besides the [condition built-ins](BUILTINS): the run's state
/// so far and its id.
pub const TEXT_BUILTINS: &[&str] = &["state", "run_id"];

/// The XGBoost parameters `train.params` may override, with whether each takes an integer.
/// Mirrors `fraudlake_model::train::set_param`, which the runner calls with these values.
const TRAIN_PARAMS: &[(&str, bool)] = &[
    ("n_estimators", true),
    ("max_depth", true),
    ("learning_rate", false),
    ("subsample", false),
    ("colsample_bytree", false),
    ("scale_pos_weight", false),
    ("min_child_weight", false),
    ("seed", true),
    ("threads", true),
    ("early_stopping_rounds", true),
    ("validation_days", true),
];

/// File extensions `ingest` reads (as `fraudlake_pipeline::ingest::InputFormat::from_path`).
const INGEST_EXTENSIONS: &[&str] = &["csv", "parquet", "pq", "jsonl", "ndjson", "json"];

// ---------------------------------------------------------------------------------------
// Errors

/// One problem in one DAG file: the file, the task when there is one, and the problem.
/// Displays as `dags/x.toml: task "train": <problem>`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {}{kind}", .file.display(), task_prefix(.task))]
pub struct SpecError {
    /// The DAG file (or the directory, for directory errors), as it was given.
    pub file: PathBuf,
    /// The task id, for problems inside a `[[tasks]]` entry.
    pub task: Option<String>,
    /// The problem.
    pub kind: SpecErrorKind,
}

fn task_prefix(task: &Option<String>) -> String {
    task.as_ref()
        .map(|t| format!("task {t:?}: "))
        .unwrap_or_default()
}

/// What is wrong; see [`SpecError`] for where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecErrorKind {
    /// The directory given to [`load_dir`] cannot be listed.
    #[error("cannot read DAG directory: {message}")]
    Dir {
        /// The I/O error.
        message: String,
    },
    /// The file cannot be read.
    #[error("cannot read file: {message}")]
    Io {
        /// The I/O error.
        message: String,
    },
    /// TOML syntax error, or a key or value the file format does not allow.
    #[error("invalid TOML{}: {message}", .position.map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default())]
    Toml {
        /// 1-based line and column, when the toml crate knows them.
        position: Option<(usize, usize)>,
        /// The toml crate's message.
        message: String,
    },
    /// `name` does not match `[a-z0-9_]+`.
    #[error("name {name:?} is invalid: use lowercase letters, digits and '_'")]
    InvalidName {
        /// The name as written.
        name: String,
    },
    /// No `name`, and the file stem is not a valid name.
    #[error("no name given and the file name {stem:?} is not a valid DAG name (lowercase letters, digits and '_'): rename the file or set name")]
    InvalidStemName {
        /// The file stem.
        stem: String,
    },
    /// Two files define the same DAG name.
    #[error("DAG name {name:?} is already used by {}", .other.display())]
    DuplicateDagName {
        /// The name.
        name: String,
        /// The file that used it first.
        other: PathBuf,
    },
    /// croner rejects the schedule.
    #[error("invalid schedule {expr:?}: {message}")]
    InvalidSchedule {
        /// The schedule as written.
        expr: String,
        /// croner's message.
        message: String,
    },
    /// Both day-of-month and day-of-week are restricted.
    #[error("schedule {expr:?} restricts both the day of month and the day of week, which cron implementations combine differently (OR in Vixie cron and croner's default, AND in tokio-cron-scheduler): restrict only one, or prefix the day of week with '+' to require both")]
    AmbiguousSchedule {
        /// The schedule as written.
        expr: String,
    },
    /// The schedule parses but matches no date (`0 0 30 2 *`).
    #[error("schedule {expr:?} never fires")]
    ScheduleNeverFires {
        /// The schedule as written.
        expr: String,
    },
    /// Not an IANA time zone name.
    #[error("unknown timezone {name:?}: expected an IANA name such as \"UTC\" or \"Europe/Paris\"{}", .suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default())]
    InvalidTimezone {
        /// The name as written.
        name: String,
        /// The zone with the same name in another case, if any.
        suggestion: Option<String>,
    },
    /// A number out of range (`max_active_runs = 0`, `timeout_secs = -1`).
    #[error("{field}: {message}")]
    InvalidValue {
        /// The key, e.g. `max_active_runs` or `defaults.retries`.
        field: String,
        /// What is wrong, e.g. `must be at least 1, got 0`.
        message: String,
    },
    /// No `[[tasks]]`.
    #[error("no tasks: add at least one [[tasks]] table")]
    NoTasks,
    /// A task id that does not match `[a-z_][a-z0-9_]*`.
    #[error(
        "invalid task id: use lowercase letters, digits and '_', starting with a letter or '_'"
    )]
    InvalidTaskId,
    /// A task id that is a condition keyword or a built-in name.
    #[error("task id is reserved: {why}")]
    ReservedTaskId {
        /// Why.
        why: &'static str,
    },
    /// Two tasks with one id.
    #[error("duplicate task id (tasks #{first} and #{again} in the file)")]
    DuplicateTaskId {
        /// 1-based position of the first task with this id.
        first: usize,
        /// 1-based position of this one.
        again: usize,
    },
    /// `op` is not one of [`Op::ALL`].
    #[error("unknown op {op:?} (valid ops: {})", op_list())]
    UnknownOp {
        /// The op as written.
        op: String,
    },
    /// A key in `args` the op does not take.
    #[error("op {op} has no arg {key:?} (valid args: {})", .op.arg_names().join(", "))]
    UnknownArg {
        /// The op.
        op: Op,
        /// The key as written.
        key: String,
    },
    /// A required arg is missing.
    #[error("op {op} requires arg {key:?}")]
    MissingArg {
        /// The op.
        op: Op,
        /// The missing key.
        key: &'static str,
    },
    /// An arg of the wrong TOML type.
    #[error("arg {key:?}: expected {expected}, found {found}")]
    ArgType {
        /// The key (`params.max_depth` for nested tables).
        key: String,
        /// The type expected, e.g. `an integer`.
        expected: &'static str,
        /// The value found, e.g. `string "7"`.
        found: String,
    },
    /// An arg of the right type with a bad value.
    #[error("arg {key:?}: {message}")]
    InvalidArg {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// `depends_on` names no task of the DAG.
    #[error("depends_on {dep:?} is not a task of this DAG (tasks: {})", .tasks.join(", "))]
    UnknownDependency {
        /// The dependency as written.
        dep: String,
        /// The DAG's task ids in file order.
        tasks: Vec<String>,
    },
    /// A task depends on itself.
    #[error("depends_on lists the task itself")]
    SelfDependency,
    /// `depends_on` lists a task twice.
    #[error("depends_on lists {dep:?} twice")]
    DuplicateDependency {
        /// The repeated id.
        dep: String,
    },
    /// Tasks that depend on each other in a circle, in run direction: `a -> b` means `b`
    /// depends on `a`.
    #[error("cycle: {}", .path.join(" -> "))]
    Cycle {
        /// The tasks on the cycle, first repeated at the end.
        path: Vec<String>,
    },
    /// `run_if` does not parse.
    #[error("run_if {expr:?}: {error}")]
    RunIfSyntax {
        /// The condition as written.
        expr: String,
        /// Where and what.
        error: ConditionError,
    },
    /// `run_if` reads a name that is neither a task nor a built-in.
    #[error("run_if {expr:?}: {name:?} is neither a task of this DAG nor a built-in ({})", BUILTINS.join(", "))]
    RunIfUnknownName {
        /// The condition as written.
        expr: String,
        /// The unknown name.
        name: String,
    },
    /// `run_if` reads the output of a task that does not run before this one.
    #[error("run_if {expr:?}: task {name:?} is not upstream of this task (upstream: {})", list_or_none(.upstream))]
    RunIfNotUpstream {
        /// The condition as written.
        expr: String,
        /// The task it reads.
        name: String,
        /// The task's (indirect) upstream tasks in file order.
        upstream: Vec<String>,
    },
}

fn op_list() -> String {
    Op::ALL.map(Op::name).join(", ")
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// A fire-time computation that would be too large to return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// More than [`MAX_FIRE_TIMES`] fire times in the range.
    #[error("more than {limit} fire times between {from} and {to}: narrow the range")]
    TooMany {
        /// The limit.
        limit: usize,
        /// Range start.
        from: DateTime<Utc>,
        /// Range end.
        to: DateTime<Utc>,
    },
}

/// One line per error, for printing everything [`load_dir`] found.
pub fn format_errors(errors: &[SpecError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// Ops and their arguments

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Load a CSV / Parquet / JSON Lines file into the lake (`fraudlake ingest`).
    Ingest,
    /// Build the offline features (`fraudlake features build`).
    FeaturesBuild,
    /// Compare current features and scores with a reference period.
    DriftReport,
    /// Train and register a model (`fraudlake train`).
    Train,
    /// Score a model on a test period (`fraudlake evaluate`).
    Evaluate,
    /// Register an externally trained XGBoost JSON model.
    Register,
    /// Make a model the champion through the registry's gate.
    Promote,
    /// Run a read-only SQL file from `sql/`.
    Sql,
    /// Post a message to a webhook.
    Notify,
}

impl Op {
    /// Every op, in the order the docs list them.
    pub const ALL: [Op; 9] = [
        Op::Ingest,
        Op::FeaturesBuild,
        Op::DriftReport,
        Op::Train,
        Op::Evaluate,
        Op::Register,
        Op::Promote,
        Op::Sql,
        Op::Notify,
    ];

    /// The name used in DAG files (`features_build`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Ingest => "ingest",
            Op::FeaturesBuild => "features_build",
            Op::DriftReport => "drift_report",
            Op::Train => "train",
            Op::Evaluate => "evaluate",
            Op::Register => "register",
            Op::Promote => "promote",
            Op::Sql => "sql",
            Op::Notify => "notify",
        }
    }

    /// The op with this file name, if any.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The keys `args` may have for this op.
    pub fn arg_names(self) -> &'static [&'static str] {
        match self {
            Op::Ingest => &["source", "preset"],
            Op::FeaturesBuild => &["sql"],
            Op::DriftReport => &["reference", "current_days"],
            Op::Train => &["train_days", "delay_days", "test_days", "params"],
            Op::Evaluate => &["model", "test_days"],
            Op::Register => &["path", "feature_set"],
            Op::Promote => &["model", "force", "reason", "window"],
            Op::Sql => &["file"],
            Op::Notify => &["url_env", "text", "only_on"],
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A task's validated arguments, defaults applied: one variant per [`Op`].
#[derive(Debug, Clone, PartialEq)]
pub enum OpArgs {
    /// `ingest`
    Ingest(IngestArgs),
    /// `features_build`
    FeaturesBuild(FeaturesBuildArgs),
    /// `drift_report`
    DriftReport(DriftReportArgs),
    /// `train`
    Train(TrainArgs),
    /// `evaluate`
    Evaluate(EvaluateArgs),
    /// `register`
    Register(RegisterArgs),
    /// `promote`
    Promote(PromoteArgs),
    /// `sql`
    Sql(SqlArgs),
    /// `notify`
    Notify(NotifyArgs),
}

/// `ingest` args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestArgs {
    /// A local path or an http(s) URL ending in .csv, .parquet, .pq, .jsonl, .ndjson or
    /// .json. `fraudlake ingest` reads local files: the runner downloads URLs first.
    pub source: String,
    /// A known source schema.
    pub preset: Option<IngestPreset>,
}

/// Known source schemas of `ingest` (as `fraudlake ingest --preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestPreset {
    /// The Fraud Detection Handbook's simulated transactions.
    Handbook,
}

/// `features_build` args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeaturesBuildArgs {
    /// The feature SQL, relative to `sql/` (default `features.sql`).
    pub sql: String,
}

/// `drift_report` args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftReportArgs {
    /// The reference period (default: the champion's training period).
    pub reference: DriftReference,
    /// The current period: this many days ending at the logical date (default 7).
    pub current_days: u32,
}

/// The reference period of a drift report (`fraudlake_drift::compute::PeriodSpec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftReference {
    /// The champion's training period.
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

/// `train` args: the handbook protocol's train / delay / test days, ending at the logical date.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainArgs {
    /// Days of training data (default 7).
    pub train_days: u32,
    /// Days between training and test data, for late labels (default 7).
    pub delay_days: u32,
    /// Days of test data (default 7).
    pub test_days: u32,
    /// XGBoost parameter overrides, for `fraudlake_model::train::set_param`.
    pub params: BTreeMap<String, ParamValue>,
}

/// An XGBoost parameter value as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// `max_depth = 6`
    Int(i64),
    /// `learning_rate = 0.1`
    Float(f64),
    /// `learning_rate = "0.1"`
    Str(String),
}

/// The text `set_param` parses.
impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) => f.write_str(s),
        }
    }
}

/// Which model `evaluate` and `promote` act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRef {
    /// The version this run's `train` task registered (the default).
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

/// `evaluate` args.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvaluateArgs {
    /// The model (default `candidate`).
    pub model: ModelRef,
    /// Days of test data ending at the logical date (default 7).
    pub test_days: u32,
}

/// `register` args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterArgs {
    /// The XGBoost JSON model file.
    pub path: String,
    /// The feature set it was trained on (default: the current one).
    pub feature_set: Option<String>,
}

/// `promote` args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoteArgs {
    /// The model to promote (default `candidate`).
    pub model: ModelRef,
    /// Bypass the registry's gate (default false); needs `reason`.
    pub force: bool,
    /// Recorded in the registry's audit trail.
    pub reason: Option<String>,
    /// The days the gate scores both models on (default: `[gate] window` of the config).
    pub window: Option<fraudlake_model::registry::gate::GateWindow>,
}

/// `sql` args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlArgs {
    /// A file relative to `sql/`.
    pub file: String,
}

/// `notify` args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyArgs {
    /// The name of the environment variable holding the webhook URL.
    pub url_env: String,
    /// The message, with `{{placeholders}}`: the [built-ins](BUILTINS), `state`, `run_id`, and
    /// `{{task.field}}` of upstream tasks' outputs (checked when the file is loaded).
    pub text: String,
    /// When to send, by the state of the run so far (default `always`).
    pub only_on: NotifyOn,
}

/// When a `notify` task sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    /// Whatever the state.
    Always,
    /// Only when an upstream task failed.
    Failure,
    /// Only when every upstream task succeeded (or was skipped by its condition).
    Success,
}

impl NotifyOn {
    /// The name used in DAG files.
    pub fn name(self) -> &'static str {
        match self {
            NotifyOn::Always => "always",
            NotifyOn::Failure => "failure",
            NotifyOn::Success => "success",
        }
    }
}

impl OpArgs {
    /// The op these args belong to.
    pub fn op(&self) -> Op {
        match self {
            OpArgs::Ingest(_) => Op::Ingest,
            OpArgs::FeaturesBuild(_) => Op::FeaturesBuild,
            OpArgs::DriftReport(_) => Op::DriftReport,
            OpArgs::Train(_) => Op::Train,
            OpArgs::Evaluate(_) => Op::Evaluate,
            OpArgs::Register(_) => Op::Register,
            OpArgs::Promote(_) => Op::Promote,
            OpArgs::Sql(_) => Op::Sql,
            OpArgs::Notify(_) => Op::Notify,
        }
    }

    /// `key=value` pairs with defaults applied, for [`DagSpec::describe`].
    pub fn summary(&self) -> String {
        let q = |s: &str| format!("{s:?}");
        let parts: Vec<String> = match self {
            OpArgs::Ingest(a) => {
                let mut v = vec![format!("source={}", q(&a.source))];
                if let Some(IngestPreset::Handbook) = a.preset {
                    v.push("preset=handbook".into());
                }
                v
            }
            OpArgs::FeaturesBuild(a) => vec![format!("sql={}", q(&a.sql))],
            OpArgs::DriftReport(a) => vec![
                format!("reference={}", a.reference),
                format!("current_days={}", a.current_days),
            ],
            OpArgs::Train(a) => {
                let mut v = vec![
                    format!("train_days={}", a.train_days),
                    format!("delay_days={}", a.delay_days),
                    format!("test_days={}", a.test_days),
                ];
                v.extend(a.params.iter().map(|(k, p)| format!("params.{k}={p}")));
                v
            }
            OpArgs::Evaluate(a) => vec![
                format!("model={}", a.model),
                format!("test_days={}", a.test_days),
            ],
            OpArgs::Register(a) => {
                let mut v = vec![format!("path={}", q(&a.path))];
                v.extend(
                    a.feature_set
                        .iter()
                        .map(|f| format!("feature_set={}", q(f))),
                );
                v
            }
            OpArgs::Promote(a) => {
                let mut v = vec![format!("model={}", a.model), format!("force={}", a.force)];
                v.extend(a.reason.iter().map(|r| format!("reason={}", q(r))));
                v.extend(a.window.iter().map(|w| format!("window={w:?}")));
                v
            }
            OpArgs::Sql(a) => vec![format!("file={}", q(&a.file))],
            OpArgs::Notify(a) => vec![
                format!("only_on={}", a.only_on.name()),
                format!("url_env={}", a.url_env),
            ],
        };
        parts.join(" ")
    }
}

/// Reads one op's `args` table, collecting every problem.
struct ArgReader<'a> {
    op: Op,
    table: &'a toml::Table,
    errors: Vec<SpecErrorKind>,
}

fn describe_toml(v: &toml::Value) -> String {
    let clip = |s: String| {
        if s.chars().count() > 40 {
            format!("{}...", s.chars().take(40).collect::<String>())
        } else {
            s
        }
    };
    match v {
        toml::Value::String(s) => format!("string {}", clip(format!("{s:?}"))),
        toml::Value::Integer(i) => format!("integer {i}"),
        toml::Value::Float(x) => format!("float {x}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        toml::Value::Datetime(d) => format!("datetime {d}"),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

impl<'a> ArgReader<'a> {
    fn new(op: Op, table: &'a toml::Table) -> ArgReader<'a> {
        let errors = table
            .keys()
            .filter(|k| !op.arg_names().contains(&k.as_str()))
            .map(|k| SpecErrorKind::UnknownArg { op, key: k.clone() })
            .collect();
        ArgReader { op, table, errors }
    }

    fn type_error(&mut self, key: &str, expected: &'static str, found: &toml::Value) {
        self.errors.push(SpecErrorKind::ArgType {
            key: key.to_string(),
            expected,
            found: describe_toml(found),
        });
    }

    fn invalid(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(SpecErrorKind::InvalidArg {
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// A string arg; `None` when absent or of another type (recorded).
    fn string(&mut self, key: &str) -> Option<String> {
        let table = self.table;
        match table.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            other => {
                self.type_error(key, "a string", other);
                None
            }
        }
    }

    /// A string arg that must be present and non-empty.
    fn required_string(&mut self, key: &'static str) -> Option<String> {
        if !self.table.contains_key(key) {
            self.errors
                .push(SpecErrorKind::MissingArg { op: self.op, key });
            return None;
        }
        let s = self.string(key)?;
        if s.trim().is_empty() {
            self.invalid(key, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn int(&mut self, key: &str, min: u32, default: u32) -> u32 {
        let table = self.table;
        match table.get(key) {
            None => default,
            Some(toml::Value::Integer(i)) if *i < i64::from(min) => {
                self.invalid(key, format!("must be at least {min}, got {i}"));
                default
            }
            Some(toml::Value::Integer(i)) => u32::try_from(*i).unwrap_or_else(|_| {
                self.invalid(key, format!("must be at most {}, got {i}", u32::MAX));
                default
            }),
            Some(other) => {
                self.type_error(key, "an integer", other);
                default
            }
        }
    }

    fn bool(&mut self, key: &str, default: bool) -> bool {
        let table = self.table;
        match table.get(key) {
            None => default,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                self.type_error(key, "a boolean", other);
                default
            }
        }
    }

    fn model(&mut self, key: &str) -> ModelRef {
        let bad = "is not a model: expected \"candidate\", \"champion\" or a version number";
        let version = |this: &mut Self, v: i64| {
            if v >= 1 {
                ModelRef::Version(v)
            } else {
                this.invalid(key, format!("version numbers start at 1, got {v}"));
                ModelRef::Candidate
            }
        };
        let table = self.table;
        match table.get(key) {
            None => ModelRef::Candidate,
            Some(toml::Value::String(s)) => match s.trim() {
                "candidate" => ModelRef::Candidate,
                "champion" => ModelRef::Champion,
                t => match t.parse::<i64>() {
                    Ok(v) => version(self, v),
                    Err(_) => {
                        self.invalid(key, format!("{s:?} {bad}"));
                        ModelRef::Candidate
                    }
                },
            },
            Some(toml::Value::Integer(v)) => version(self, *v),
            Some(other) => {
                self.type_error(key, "a string or an integer", other);
                ModelRef::Candidate
            }
        }
    }

    /// A file under `sql/`: relative, no `..`, ending in `.sql`.
    fn sql_file(&mut self, key: &str, value: String) -> String {
        let parts: Vec<&str> = value.split(['/', '\\']).collect();
        let problem = if value.trim().is_empty() {
            Some("must not be empty".to_string())
        } else if value.starts_with(['/', '\\']) || value.get(1..2) == Some(":") {
            Some(format!(
                "{value:?} is an absolute path: give a file name under sql/"
            ))
        } else if parts.contains(&"..") {
            Some(format!(
                "{value:?} must not contain '..': give a file name under sql/"
            ))
        } else if parts.first() == Some(&"sql") && parts.len() > 1 {
            Some(format!(
                "{value:?} is already relative to sql/: write {:?}",
                parts[1..].join("/")
            ))
        } else if !value.ends_with(".sql") || parts.last().is_some_and(|p| *p == ".sql") {
            Some(format!("{value:?} is not a .sql file"))
        } else {
            None
        };
        if let Some(message) = problem {
            self.invalid(key, message);
        }
        value
    }

    fn finish(self, args: OpArgs) -> Result<OpArgs, Vec<SpecErrorKind>> {
        if self.errors.is_empty() {
            Ok(args)
        } else {
            Err(self.errors)
        }
    }
}

fn parse_args(op: Op, table: &toml::Table) -> Result<OpArgs, Vec<SpecErrorKind>> {
    let mut r = ArgReader::new(op, table);
    let args = match op {
        Op::Ingest => {
            let source = r.required_string("source").unwrap_or_default();
            if !source.trim().is_empty() {
                if let Err(message) = check_ingest_source(&source) {
                    r.invalid("source", message);
                }
            }
            let preset = match r.string("preset").as_deref() {
                None => None,
                Some("handbook") => Some(IngestPreset::Handbook),
                Some(other) => {
                    r.invalid(
                        "preset",
                        format!("unknown preset {other:?} (valid presets: handbook)"),
                    );
                    None
                }
            };
            OpArgs::Ingest(IngestArgs { source, preset })
        }
        Op::FeaturesBuild => {
            let sql = r
                .string("sql")
                .unwrap_or_else(|| "features.sql".to_string());
            let sql = r.sql_file("sql", sql);
            OpArgs::FeaturesBuild(FeaturesBuildArgs { sql })
        }
        Op::DriftReport => {
            let reference = match r.string("reference") {
                None => DriftReference::Champion,
                Some(s) => parse_reference(&s).unwrap_or_else(|message| {
                    r.invalid("reference", message);
                    DriftReference::Champion
                }),
            };
            let current_days = r.int("current_days", 1, 7);
            OpArgs::DriftReport(DriftReportArgs {
                reference,
                current_days,
            })
        }
        Op::Train => {
            let train_days = r.int("train_days", 1, 7);
            let delay_days = r.int("delay_days", 0, 7);
            let test_days = r.int("test_days", 1, 7);
            let params = match table.get("params") {
                None => BTreeMap::new(),
                Some(toml::Value::Table(t)) => parse_params(&mut r, t),
                Some(other) => {
                    r.type_error("params", "a table", other);
                    BTreeMap::new()
                }
            };
            OpArgs::Train(TrainArgs {
                train_days,
                delay_days,
                test_days,
                params,
            })
        }
        Op::Evaluate => {
            let model = r.model("model");
            let test_days = r.int("test_days", 1, 7);
            OpArgs::Evaluate(EvaluateArgs { model, test_days })
        }
        Op::Register => {
            let path = r.required_string("path").unwrap_or_default();
            if !path.trim().is_empty() && !path.to_ascii_lowercase().ends_with(".json") {
                r.invalid(
                    "path",
                    format!("{path:?} is not an XGBoost JSON model file (.json)"),
                );
            }
            let feature_set = r.string("feature_set");
            if feature_set.as_ref().is_some_and(|f| f.trim().is_empty()) {
                r.invalid(
                    "feature_set",
                    "must not be empty (leave it out for the current one)",
                );
            }
            OpArgs::Register(RegisterArgs { path, feature_set })
        }
        Op::Promote => {
            let model = r.model("model");
            let force = r.bool("force", false);
            let reason = r.string("reason");
            if force && reason.as_ref().is_none_or(|s| s.trim().is_empty()) {
                r.invalid(
                    "reason",
                    "required when force = true: say why the gate is bypassed",
                );
            }
            let window = r.string("window").and_then(|w| match w.parse() {
                Ok(w) => Some(w),
                Err(e) => {
                    r.invalid("window", format!("{e}"));
                    None
                }
            });
            OpArgs::Promote(PromoteArgs {
                model,
                force,
                reason,
                window,
            })
        }
        Op::Sql => {
            let file = match r.required_string("file") {
                Some(f) => r.sql_file("file", f),
                None => String::new(),
            };
            OpArgs::Sql(SqlArgs { file })
        }
        Op::Notify => {
            let url_env = r
                .string("url_env")
                .unwrap_or_else(|| DEFAULT_NOTIFY_ENV.to_string());
            if let Err(message) = check_env_name(&url_env) {
                r.invalid("url_env", message);
            }
            let text = r.required_string("text").unwrap_or_default();
            let only_on = match r.string("only_on").as_deref() {
                None | Some("always") => NotifyOn::Always,
                Some("failure") => NotifyOn::Failure,
                Some("success") => NotifyOn::Success,
                Some(other) => {
                    r.invalid(
                        "only_on",
                        format!("{other:?} is not one of always, failure, success"),
                    );
                    NotifyOn::Always
                }
            };
            OpArgs::Notify(NotifyArgs {
                url_env,
                text,
                only_on,
            })
        }
    };
    r.finish(args)
}

fn parse_params(r: &mut ArgReader<'_>, t: &toml::Table) -> BTreeMap<String, ParamValue> {
    let mut out = BTreeMap::new();
    for (name, value) in t {
        let key = format!("params.{name}");
        let Some(&(_, integer)) = TRAIN_PARAMS.iter().find(|(n, _)| *n == name.as_str()) else {
            r.invalid(
                "params",
                format!(
                    "unknown XGBoost parameter {name:?} (valid: {})",
                    TRAIN_PARAMS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            continue;
        };
        let parsed = match (value, integer) {
            (toml::Value::Integer(i), true) if *i >= 0 => Some(ParamValue::Int(*i)),
            (toml::Value::Integer(i), true) => {
                r.invalid(&key, format!("must be at least 0, got {i}"));
                None
            }
            (toml::Value::Integer(i), false) => Some(ParamValue::Int(*i)),
            (toml::Value::Float(x), false) if x.is_finite() => Some(ParamValue::Float(*x)),
            (toml::Value::Float(x), false) => {
                r.invalid(&key, format!("must be a finite number, got {x}"));
                None
            }
            (toml::Value::String(s), true) if s.trim().parse::<u64>().is_ok() => {
                Some(ParamValue::Str(s.trim().to_string()))
            }
            (toml::Value::String(s), false)
                if s.trim().parse::<f64>().is_ok_and(f64::is_finite) =>
            {
                Some(ParamValue::Str(s.trim().to_string()))
            }
            (toml::Value::String(s), _) => {
                let what = if integer {
                    "a non-negative integer"
                } else {
                    "a number"
                };
                r.invalid(&key, format!("{s:?} is not {what}"));
                None
            }
            (other, true) => {
                r.type_error(&key, "a non-negative integer (or one as a string)", other);
                None
            }
            (other, false) => {
                r.type_error(&key, "a number (or one as a string)", other);
                None
            }
        };
        if let Some(p) = parsed {
            out.insert(name.clone(), p);
        }
    }
    out
}

fn parse_reference(s: &str) -> Result<DriftReference, String> {
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

fn check_ingest_source(source: &str) -> Result<(), String> {
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

fn check_env_name(name: &str) -> Result<(), String> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.contains("://")
        || lower.starts_with("http:")
        || lower.starts_with("https:")
        || lower.starts_with("www.")
    {
        // Do not echo the value: it is probably a secret.
        return Err(format!(
            "looks like a URL; give the NAME of the environment variable that holds the webhook URL (e.g. {DEFAULT_NOTIFY_ENV:?}), never the URL itself: DAG files are committed"
        ));
    }
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an environment variable name (letters, digits and '_', not starting with a digit)"
        ))
    }
}

/// The `{{...}}` names in a notify text, or what is wrong with the text.
fn placeholders(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut offset = 0;
    while let Some(open) = text[offset..].find("{{") {
        let start = offset + open;
        let Some(close) = text[start + 2..].find("}}") else {
            return Err(format!(
                "\"{{{{\" at character {} is never closed with \"}}}}\"",
                text[..start].chars().count() + 1
            ));
        };
        let raw = &text[start..start + 2 + close + 2];
        let name = text[start + 2..start + 2 + close].trim();
        let valid = name.split('.').all(|seg| {
            let mut cs = seg.chars();
            cs.next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !valid {
            return Err(format!("placeholder {raw:?} is not a name or task.field"));
        }
        out.push(name.to_string());
        offset = start + 2 + close + 2;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Schedule

/// A validated cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    six_field: String,
    cron: Cron,
    timezone: Tz,
    /// croner's "interval" pattern (wildcard or stepped seconds, minutes or hours): runs in
    /// both passes of a repeated local hour. Fixed-time patterns run once.
    interval: bool,
    /// How far local order can differ from real-time order in this zone.
    lookahead: chrono::TimeDelta,
}

/// The expression as written.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.six_field == other.six_field && self.timezone == other.timezone
    }
}

impl Schedule {
    /// Parses a 5-field (`min hour dom mon dow`) or 6-field (`sec min hour dom mon dow`)
    /// expression, or one of `@yearly @annually @monthly @weekly @daily @midnight @hourly`,
    /// as croner does with seconds optional and no year field.
    pub fn parse(expr: &str, timezone: Tz) -> Result<Schedule, SpecErrorKind> {
        let trimmed = expr.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ => trimmed,
        };
        let invalid = |message: String| SpecErrorKind::InvalidSchedule {
            expr: expr.to_string(),
            message,
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expanded)
            .map_err(|e| invalid(e.to_string()))?;
        let mut fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() == 5 {
            fields.insert(0, "0");
        }
        let (Some(dom), Some(dow)) = (fields.get(3), fields.get(5)) else {
            return Err(invalid(format!(
                "expected 5 or 6 fields, got {}",
                fields.len()
            )));
        };
        let restricted = |f: &str| f != "*" && f != "?";
        if restricted(dom) && restricted(dow) && !dow.starts_with('+') {
            return Err(SpecErrorKind::AmbiguousSchedule {
                expr: expr.to_string(),
            });
        }
        let schedule = Schedule {
            expr: expr.to_string(),
            six_field: fields.join(" "),
            interval: cron.determine_job_type() == JobType::IntervalWildcard,
            cron,
            timezone,
            lookahead: if has_offset_changes(timezone) {
                chrono::TimeDelta::hours(3)
            } else {
                chrono::TimeDelta::zero()
            },
        };
        // Any fixed instant will do: without a year field a pattern that fires once fires forever.
        if let Some(reference) = DateTime::from_timestamp(1_704_067_200, 0) {
            if schedule.next_after(reference, 1).is_empty() {
                return Err(SpecErrorKind::ScheduleNeverFires {
                    expr: expr.to_string(),
                });
            }
        }
        Ok(schedule)
    }

    /// The expression as written in the file.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The 6-field form (`sec min hour dom mon dow`), as `dag show` prints it and as cron
    /// implementations that require seconds read it.
    pub fn six_field(&self) -> &str {
        &self.six_field
    }

    /// The time zone the fields are read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The parsed croner pattern.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    /// Fire times strictly after `after`, increasing, as an endless iterator (it ends only
    /// if the schedule does).
    pub fn iter_after(&self, after: DateTime<Utc>) -> FireTimes<'_> {
        // Whole seconds: croner keeps the cursor's fraction of a second in what it finds, and
        // a fire time is a whole second (the loop in `scheduler` starts from `Utc::now()`).
        let start = after
            .checked_sub_signed(self.lookahead)
            .unwrap_or(after)
            .trunc_subsecs(0);
        FireTimes {
            schedule: self,
            cursor: Some(start.with_timezone(&self.timezone)),
            after,
            frontier: None,
            pending: BinaryHeap::new(),
        }
    }

    /// The next `n` fire times strictly after `after` (fewer only if the schedule ends).
    pub fn next_after(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.iter_after(after).take(n).collect()
    }

    /// Fire times `t` with `from < t <= to`, increasing.
    pub fn between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
        let mut out = Vec::new();
        for t in self.iter_after(from).take_while(|t| *t <= to) {
            if out.len() == MAX_FIRE_TIMES {
                return Err(ScheduleError::TooMany {
                    limit: MAX_FIRE_TIMES,
                    from,
                    to,
                });
            }
            out.push(t);
        }
        Ok(out)
    }

    /// The last fire time strictly before `at`.
    pub fn previous_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner's backward search mishandles DST gaps; search forward from further and
        // further back instead (a leap-day schedule can be 8 years from its previous run).
        const LOOKBACK_SECS: [i64; 7] = [
            60,
            3600,
            86_400,
            8 * 86_400,
            32 * 86_400,
            367 * 86_400,
            3_300 * 86_400,
        ];
        LOOKBACK_SECS.iter().find_map(|&secs| {
            let from = at.checked_sub_signed(chrono::TimeDelta::seconds(secs))?;
            self.iter_after(from).take_while(|t| *t < at).last()
        })
    }

    /// The instants of a local time croner found: both of an ambiguous time (DST end) for an
    /// interval pattern, the first one for a fixed-time pattern (croner's rule).
    fn instants(&self, found: &DateTime<Tz>) -> Vec<DateTime<Utc>> {
        match self.timezone.from_local_datetime(&found.naive_local()) {
            LocalResult::Ambiguous(a, b) if self.interval => {
                let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
                vec![a.min(b), a.max(b)]
            }
            _ => vec![found.with_timezone(&Utc)],
        }
    }
}

/// Fire times of a [`Schedule`] after an instant, increasing ([`Schedule::iter_after`]).
///
/// croner searches in local time, so around a DST change its matches are not in real-time
/// order (the second 02:00 of the autumn night comes after the first 02:30), and its own
/// iterator skips every other second of a per-second pattern. This iterator asks croner
/// for one local match at a time and releases instants in UTC order once no later local
/// match can precede them (the largest offset change, 3 hours, is the look-ahead; none in a
/// zone without DST).
#[derive(Debug)]
pub struct FireTimes<'a> {
    schedule: &'a Schedule,
    /// Where croner's next search starts; `None` once it found nothing more.
    cursor: Option<DateTime<Tz>>,
    /// The last instant returned (or the start).
    after: DateTime<Utc>,
    /// The earliest instant of the last local match found.
    frontier: Option<DateTime<Utc>>,
    pending: BinaryHeap<Reverse<DateTime<Utc>>>,
}

impl Iterator for FireTimes<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            if let Some(&Reverse(top)) = self.pending.peek() {
                let settled = match (&self.cursor, self.frontier) {
                    (None, _) => true,
                    (Some(_), Some(f)) => f > top + self.schedule.lookahead,
                    (Some(_), None) => false,
                };
                if settled {
                    self.pending.pop();
                    if top > self.after {
                        self.after = top;
                        return Some(top);
                    }
                    continue;
                }
            }
            // Nothing settled: find the next local match (or stop when croner has none).
            let cursor = self.cursor.take()?;
            if let Ok(found) = self.schedule.cron.find_next_occurrence(&cursor, false) {
                let instants = self.schedule.instants(&found);
                self.frontier = instants.first().copied();
                self.pending.extend(
                    instants
                        .into_iter()
                        .filter(|t| *t > self.after)
                        .map(Reverse),
                );
                self.cursor = Some(found);
            }
        }
    }
}

/// Whether the zone's UTC offset changes between 2000 and 2040 (DST or a change of
/// standard time), sampled on the 1st and 15th of every month.
fn has_offset_changes(tz: Tz) -> bool {
    let offset = |secs: i64| {
        DateTime::from_timestamp(secs, 0).map(|t| {
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        })
    };
    let first = offset(946_684_800);
    (0..80 * 12).any(|half_month| offset(946_684_800 + half_month * 1_314_900) != first)
}

fn parse_timezone(name: &str) -> Result<Tz, SpecErrorKind> {
    name.parse::<Tz>()
        .map_err(|_| SpecErrorKind::InvalidTimezone {
            name: name.to_string(),
            suggestion: chrono_tz::TZ_VARIANTS
                .iter()
                .find(|tz| tz.name().eq_ignore_ascii_case(name.trim()))
                .map(|tz| tz.name().to_string()),
        })
}

// ---------------------------------------------------------------------------------------
// The DAG

/// Retry behaviour of a task: `retries` more attempts after a failure, the n-th one
/// `backoff * 2^(n-1)` after the failure before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first (0 = no retry).
    pub retries: u32,
    /// Delay before the first retry.
    pub backoff: Duration,
}

impl RetryPolicy {
    /// How long to wait before retry number `retry` (1 = the first retry); zero for 0.
    /// Saturates instead of overflowing.
    pub fn delay_before_retry(&self, retry: u32) -> Duration {
        if retry == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(retry - 1).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor)
    }

    /// Attempts in total, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }
}

/// The `[defaults]` table, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskDefaults {
    /// Default retries (0 when not set).
    pub retries: u32,
    /// Default first retry delay in seconds (30 when not set).
    pub retry_backoff_secs: u64,
    /// Default timeout in seconds (3600 when not set).
    pub timeout_secs: u64,
}

/// When a task may start, given how its upstream tasks ended (Airflow's trigger rules, the two
/// this scheduler needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TriggerRule {
    /// Every upstream task succeeded (the default): a skipped upstream skips this task.
    #[default]
    AllSuccess,
    /// No upstream task failed: a skipped upstream does not skip this task, so a branch that
    /// was not needed (drift on a lake without a champion) does not stop the tasks after it.
    NoneFailed,
}

impl TriggerRule {
    /// The name in DAG files.
    pub fn name(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::NoneFailed => "none_failed",
        }
    }
}

/// One validated task.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TaskSpec {
    /// Unique in the DAG, `[a-z_][a-z0-9_]*`.
    pub id: String,
    /// What to do, with validated arguments.
    pub args: OpArgs,
    /// Direct upstream tasks, as written.
    pub depends_on: Vec<String>,
    /// When to run ([`Condition::always`] when not set).
    pub run_if: Condition,
    /// What upstream outcomes let it start (`trigger_rule`, default all_success).
    pub trigger_rule: TriggerRule,
    /// Retries, from the task or `[defaults]`.
    pub retry: RetryPolicy,
    /// Time limit of one attempt, from the task or `[defaults]`.
    pub timeout: Duration,
}

impl TaskSpec {
    /// The task's op.
    pub fn op(&self) -> Op {
        self.args.op()
    }
}

/// A validated DAG file. Built only by [`DagSpec::load_file`], [`DagSpec::from_toml_str`] and
/// [`load_dir`], so task ids are unique, dependencies exist and form no cycle, and conditions
/// read only upstream tasks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DagSpec {
    /// `[a-z0-9_]+`; the file stem unless set.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// When it runs, in which time zone.
    pub schedule: Schedule,
    /// Run the fire times missed while the scheduler was down (default false).
    pub catchup: bool,
    /// Runs of this DAG at the same time (default 1).
    pub max_active_runs: u32,
    /// Do not schedule (default false).
    pub paused: bool,
    /// The `[defaults]` table.
    pub defaults: TaskDefaults,
    /// Tasks in file order.
    pub tasks: Vec<TaskSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDag {
    name: Option<String>,
    description: Option<String>,
    schedule: String,
    timezone: Option<String>,
    #[serde(default)]
    catchup: bool,
    max_active_runs: Option<i64>,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    tasks: Vec<RawTask>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    retries: Option<i64>,
    retry_backoff_secs: Option<i64>,
    timeout_secs: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: String,
    op: String,
    #[serde(default)]
    args: toml::Table,
    #[serde(default)]
    depends_on: Vec<String>,
    run_if: Option<String>,
    trigger_rule: Option<String>,
    retries: Option<i64>,
    retry_backoff_secs: Option<i64>,
    timeout_secs: Option<i64>,
}

/// Checks an optional integer against a minimum; records the problem and returns the default.
fn bounded<T: TryFrom<i64> + Copy>(
    value: Option<i64>,
    min: i64,
    default: T,
    field: &str,
    errors: &mut Vec<SpecErrorKind>,
) -> T {
    let Some(v) = value else {
        return default;
    };
    if v < min {
        errors.push(SpecErrorKind::InvalidValue {
            field: field.to_string(),
            message: format!("must be at least {min}, got {v}"),
        });
        return default;
    }
    match T::try_from(v) {
        Ok(t) => t,
        Err(_) => {
            errors.push(SpecErrorKind::InvalidValue {
                field: field.to_string(),
                message: format!("{v} is too large"),
            });
            default
        }
    }
}

fn is_dag_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_task_id(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') && is_dag_name(s)
}

/// 1-based line and column of a byte offset, counted as the toml crate counts them in its
/// own messages (an offset at the very end is clamped to the last character).
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    if text.is_empty() {
        return (1, offset + 1);
    }
    let mut clamped = offset.min(text.len() - 1);
    while !text.is_char_boundary(clamped) {
        clamped -= 1;
    }
    let past_end = offset - clamped;
    let line_start = text[..clamped].rfind('\n').map_or(0, |nl| nl + 1);
    let line = text[..line_start].matches('\n').count() + 1;
    let column = text
        .get(line_start..clamped)
        .map_or(clamped - line_start, |s| s.chars().count());
    (line, column + past_end + 1)
}

/// The toml crate's message on one line.
fn toml_message(e: &toml::de::Error) -> String {
    let lines: Vec<&str> = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        "syntax error".to_string()
    } else {
        lines.join("; ")
    }
}

impl DagSpec {
    /// Reads and validates one DAG file.
    pub fn load_file(path: impl AsRef<Path>) -> Result<DagSpec, Vec<SpecError>> {
        let path = path.as_ref();
        match fs::read_to_string(path) {
            Ok(text) => DagSpec::from_toml_str(&text, path),
            Err(e) => Err(vec![SpecError {
                file: path.to_path_buf(),
                task: None,
                kind: SpecErrorKind::Io {
                    message: e.to_string(),
                },
            }]),
        }
    }

    /// Validates the text of a DAG file; `file` names it in errors and gives the default
    /// name (its stem). Returns every problem found, not only the first.
    pub fn from_toml_str(text: &str, file: impl AsRef<Path>) -> Result<DagSpec, Vec<SpecError>> {
        let file = file.as_ref();
        let mut errors: Vec<SpecError> = Vec::new();
        let mut push = |task: Option<&str>, kind: SpecErrorKind| {
            errors.push(SpecError {
                file: file.to_path_buf(),
                task: task.map(str::to_string),
                kind,
            })
        };
        let raw: RawDag = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                push(
                    None,
                    SpecErrorKind::Toml {
                        position: e.span().map(|s| line_col(text, s.start)),
                        message: toml_message(&e),
                    },
                );
                return Err(errors);
            }
        };

        // Name.
        let name = match &raw.name {
            Some(n) => {
                if !is_dag_name(n) {
                    push(None, SpecErrorKind::InvalidName { name: n.clone() });
                }
                n.clone()
            }
            None => {
                let stem = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !is_dag_name(&stem) {
                    push(None, SpecErrorKind::InvalidStemName { stem: stem.clone() });
                }
                stem
            }
        };

        // Time zone and schedule.
        let timezone = match raw.timezone.as_deref() {
            None => Tz::UTC,
            Some(tz) => parse_timezone(tz).unwrap_or_else(|kind| {
                push(None, kind);
                Tz::UTC
            }),
        };
        let schedule = Schedule::parse(&raw.schedule, timezone)
            .map_err(|kind| push(None, kind))
            .ok();

        // Numbers.
        let mut value_errors = Vec::new();
        let max_active_runs = bounded(
            raw.max_active_runs,
            1,
            1u32,
            "max_active_runs",
            &mut value_errors,
        );
        let defaults = TaskDefaults {
            retries: bounded(
                raw.defaults.retries,
                0,
                DEFAULT_RETRIES,
                "defaults.retries",
                &mut value_errors,
            ),
            retry_backoff_secs: bounded(
                raw.defaults.retry_backoff_secs,
                0,
                DEFAULT_RETRY_BACKOFF_SECS,
                "defaults.retry_backoff_secs",
                &mut value_errors,
            ),
            timeout_secs: bounded(
                raw.defaults.timeout_secs,
                1,
                DEFAULT_TIMEOUT_SECS,
                "defaults.timeout_secs",
                &mut value_errors,
            ),
        };
        for kind in value_errors {
            push(None, kind);
        }

        // Tasks, one by one.
        if raw.tasks.is_empty() {
            push(None, SpecErrorKind::NoTasks);
        }
        let ids: Vec<String> = raw.tasks.iter().map(|t| t.id.clone()).collect();
        let mut first_index: HashMap<&str, usize> = HashMap::new();
        let mut tasks: Vec<Option<TaskSpec>> = Vec::new();
        for (i, t) in raw.tasks.iter().enumerate() {
            let id = t.id.as_str();
            let mut task_errors: Vec<SpecErrorKind> = Vec::new();
            if !is_task_id(id) {
                task_errors.push(SpecErrorKind::InvalidTaskId);
            } else if BUILTINS.contains(&id) || TEXT_BUILTINS.contains(&id) {
                task_errors.push(SpecErrorKind::ReservedTaskId {
                    why: "it is a built-in name of run_if conditions and notify text",
                });
            } else if KEYWORDS.contains(&id) {
                task_errors.push(SpecErrorKind::ReservedTaskId {
                    why: "it is a keyword of run_if conditions",
                });
            }
            match first_index.get(id) {
                Some(&first) => task_errors.push(SpecErrorKind::DuplicateTaskId {
                    first: first + 1,
                    again: i + 1,
                }),
                None => {
                    first_index.insert(id, i);
                }
            }
            let args = match Op::from_name(&t.op) {
                None => {
                    task_errors.push(SpecErrorKind::UnknownOp { op: t.op.clone() });
                    None
                }
                Some(op) => parse_args(op, &t.args)
                    .map_err(|errs| task_errors.extend(errs))
                    .ok(),
            };
            let mut seen: Vec<&str> = Vec::new();
            for dep in &t.depends_on {
                if dep == id {
                    task_errors.push(SpecErrorKind::SelfDependency);
                } else if !ids.contains(dep) {
                    task_errors.push(SpecErrorKind::UnknownDependency {
                        dep: dep.clone(),
                        tasks: ids.clone(),
                    });
                } else if seen.contains(&dep.as_str()) {
                    task_errors.push(SpecErrorKind::DuplicateDependency { dep: dep.clone() });
                }
                seen.push(dep);
            }
            let run_if = match &t.run_if {
                None => Some(Condition::always()),
                Some(expr) => Condition::parse(expr)
                    .map_err(|error| {
                        task_errors.push(SpecErrorKind::RunIfSyntax {
                            expr: expr.clone(),
                            error,
                        })
                    })
                    .ok(),
            };
            let trigger_rule = match t.trigger_rule.as_deref() {
                None | Some("all_success") => TriggerRule::AllSuccess,
                Some("none_failed") => TriggerRule::NoneFailed,
                Some(other) => {
                    task_errors.push(SpecErrorKind::InvalidValue {
                        field: "trigger_rule".to_string(),
                        message: format!("{other:?} is not all_success or none_failed"),
                    });
                    TriggerRule::AllSuccess
                }
            };
            let retries = bounded(t.retries, 0, defaults.retries, "retries", &mut task_errors);
            let backoff = bounded(
                t.retry_backoff_secs,
                0,
                defaults.retry_backoff_secs,
                "retry_backoff_secs",
                &mut task_errors,
            );
            let timeout = bounded(
                t.timeout_secs,
                1,
                defaults.timeout_secs,
                "timeout_secs",
                &mut task_errors,
            );
            let ok = task_errors.is_empty();
            for kind in task_errors {
                push(Some(id), kind);
            }
            tasks.push(match (args, run_if) {
                (Some(args), Some(run_if)) if ok => Some(TaskSpec {
                    id: id.to_string(),
                    args,
                    depends_on: t.depends_on.clone(),
                    run_if,
                    trigger_rule,
                    retry: RetryPolicy {
                        retries,
                        backoff: Duration::from_secs(backoff),
                    },
                    timeout: Duration::from_secs(timeout),
                }),
                _ => None,
            });
        }

        // The graph: edges from dependency to dependent, over the valid dependencies only.
        let graph = Graph::new(
            &raw.tasks
                .iter()
                .map(|t| (t.id.as_str(), t.depends_on.as_slice()))
                .collect::<Vec<_>>(),
        );
        for cycle in graph.cycles() {
            push(
                None,
                SpecErrorKind::Cycle {
                    path: cycle.iter().map(|&i| ids[i].clone()).collect(),
                },
            );
        }
        // Conditions and notify text may read upstream tasks only.
        for (i, t) in raw.tasks.iter().enumerate() {
            let upstream: Vec<String> = graph
                .upstream(i)
                .into_iter()
                .map(|j| ids[j].clone())
                .collect();
            let Some(task) = &tasks[i] else {
                // Re-check what can be checked without a valid task: the condition.
                if let Some(Ok(cond)) = t.run_if.as_deref().map(Condition::parse) {
                    for kind in
                        check_reads(&cond, t.run_if.as_deref().unwrap_or(""), &ids, &upstream)
                    {
                        push(Some(&t.id), kind);
                    }
                }
                continue;
            };
            for kind in check_reads(&task.run_if, task.run_if.source(), &ids, &upstream) {
                push(Some(&t.id), kind);
            }
            if let OpArgs::Notify(n) = &task.args {
                if let Some(kind) = check_text(&n.text, &ids, &upstream) {
                    push(Some(&t.id), kind);
                }
            }
        }

        let (Some(schedule), true) = (schedule, errors.is_empty()) else {
            return Err(errors);
        };
        Ok(DagSpec {
            name,
            description: raw.description,
            file: file.to_path_buf(),
            schedule,
            catchup: raw.catchup,
            max_active_runs,
            paused: raw.paused,
            defaults,
            tasks: tasks.into_iter().flatten().collect(),
        })
    }

    /// The task with this id.
    pub fn task(&self, id: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.id == id)
    }

    fn graph(&self) -> Graph {
        Graph::new(
            &self
                .tasks
                .iter()
                .map(|t| (t.id.as_str(), t.depends_on.as_slice()))
                .collect::<Vec<_>>(),
        )
    }

    /// Every task after all its dependencies; among tasks that are ready together, the one
    /// earlier in the file first.
    pub fn topological_order(&self) -> Vec<&TaskSpec> {
        self.graph()
            .topological_order()
            .into_iter()
            .map(|i| &self.tasks[i])
            .collect()
    }

    /// The tasks `id` depends on directly or indirectly, in file order.
    pub fn upstream(&self, id: &str) -> Vec<&TaskSpec> {
        let Some(i) = self.tasks.iter().position(|t| t.id == id) else {
            return Vec::new();
        };
        self.graph()
            .upstream(i)
            .into_iter()
            .map(|j| &self.tasks[j])
            .collect()
    }

    /// The tasks that depend on `id` directly or indirectly, in file order.
    pub fn downstream(&self, id: &str) -> Vec<&TaskSpec> {
        self.tasks
            .iter()
            .filter(|t| self.upstream(&t.id).iter().any(|u| u.id == id))
            .collect()
    }

    /// The next `n` fire times strictly after `after` (fewer only if the schedule ends).
    pub fn next_fire_times(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.schedule.next_after(after, n)
    }

    /// The fire times `t` with `from < t <= to`, increasing, for catch-up and backfill: after
    /// a scheduler outage, `fire_times_between(last_fire_time, now)` is exactly the runs that
    /// were missed. Refuses more than [`MAX_FIRE_TIMES`].
    pub fn fire_times_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
        self.schedule.between(from, to)
    }

    /// The data interval of the run that fires at `fire`: from the previous fire time to
    /// `fire` (both `fire` when there is none). Correct across DST changes and for sparse
    /// schedules (monthly, leap days).
    pub fn data_interval(&self, fire: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = self.schedule.previous_before(fire).unwrap_or(fire);
        (start, fire)
    }

    /// A Mermaid `flowchart TD`: one node per task labelled `id [op]`, one edge per
    /// dependency, and each `run_if` as a note linked to its task by a dotted line.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for t in &self.tasks {
            out.push_str(&format!(
                "    {}[\"{}\"]\n",
                mermaid_id(&t.id),
                mermaid_text(&format!("{} [{}]", t.id, t.op()))
            ));
        }
        for t in self.topological_order() {
            for dep in &t.depends_on {
                out.push_str(&format!(
                    "    {} --> {}\n",
                    mermaid_id(dep),
                    mermaid_id(&t.id)
                ));
            }
        }
        for t in self.tasks.iter().filter(|t| !t.run_if.is_always()) {
            out.push_str(&format!(
                "    If_{}>\"run_if: {}\"] -.- {}\n",
                t.id,
                mermaid_text(t.run_if.source()),
                mermaid_id(&t.id)
            ));
        }
        out
    }

    /// A plain-text description: schedule, time zone, the next three fire times, and the tasks
    /// in run order with their args, dependencies and conditions.
    pub fn describe(&self) -> String {
        self.describe_at(Utc::now())
    }

    /// [`DagSpec::describe`] with the fire times counted from `now`.
    pub fn describe_at(&self, now: DateTime<Utc>) -> String {
        let tz = self.schedule.timezone();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let mut out = format!("DAG {} ({})\n", self.name, self.file.display());
        if let Some(d) = self
            .description
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            out.push_str(&format!("  {d}\n"));
        }
        out.push_str(&format!(
            "schedule: {} in {} (6-field: {})\n",
            self.schedule.expr(),
            tz.name(),
            self.schedule.six_field()
        ));
        out.push_str(&format!(
            "catchup: {}, max active runs: {}, paused: {}\n",
            yes_no(self.catchup),
            self.max_active_runs,
            yes_no(self.paused)
        ));
        out.push_str(&format!(
            "defaults: retries {}, backoff {} s (doubling), timeout {} s\n",
            self.defaults.retries, self.defaults.retry_backoff_secs, self.defaults.timeout_secs
        ));
        out.push_str("next runs:\n");
        for t in self.next_fire_times(now, 3) {
            let local = t.with_timezone(&tz);
            if tz == Tz::UTC {
                out.push_str(&format!("  {}\n", t.format("%Y-%m-%d %H:%M:%S UTC")));
            } else {
                out.push_str(&format!(
                    "  {} ({})\n",
                    local.format("%Y-%m-%d %H:%M:%S %Z"),
                    t.format("%Y-%m-%d %H:%M:%S UTC")
                ));
            }
        }
        out.push_str("tasks (in run order):\n");
        for (n, t) in self.topological_order().into_iter().enumerate() {
            out.push_str(&format!(
                "  {}. {} [{}] {}\n",
                n + 1,
                t.id,
                t.op(),
                t.args.summary()
            ));
            if !t.depends_on.is_empty() {
                out.push_str(&format!("       after: {}\n", t.depends_on.join(", ")));
            }
            if !t.run_if.is_always() {
                out.push_str(&format!("       run_if: {}\n", t.run_if.source()));
            }
            if t.trigger_rule != TriggerRule::AllSuccess {
                out.push_str(&format!("       trigger_rule: {}\n", t.trigger_rule.name()));
            }
            let d = &self.defaults;
            if t.retry.retries != d.retries
                || t.retry.backoff.as_secs() != d.retry_backoff_secs
                || t.timeout.as_secs() != d.timeout_secs
            {
                out.push_str(&format!(
                    "       retries {}, backoff {} s, timeout {} s\n",
                    t.retry.retries,
                    t.retry.backoff.as_secs(),
                    t.timeout.as_secs()
                ));
            }
        }
        out
    }
}

/// Names a condition reads that are not tasks, or tasks that are not upstream.
fn check_reads(
    cond: &Condition,
    expr: &str,
    ids: &[String],
    upstream: &[String],
) -> Vec<SpecErrorKind> {
    cond.referenced_tasks()
        .into_iter()
        .filter_map(|name| {
            if !ids.contains(&name) {
                Some(SpecErrorKind::RunIfUnknownName {
                    expr: expr.to_string(),
                    name,
                })
            } else if !upstream.contains(&name) {
                Some(SpecErrorKind::RunIfNotUpstream {
                    expr: expr.to_string(),
                    name,
                    upstream: upstream.to_vec(),
                })
            } else {
                None
            }
        })
        .collect()
}

/// The first problem with a notify text's placeholders, if any.
fn check_text(text: &str, ids: &[String], upstream: &[String]) -> Option<SpecErrorKind> {
    let invalid = |message: String| SpecErrorKind::InvalidArg {
        key: "text".to_string(),
        message,
    };
    let names = match placeholders(text) {
        Ok(names) => names,
        Err(message) => return Some(invalid(message)),
    };
    for name in names {
        let first = name.split('.').next().unwrap_or(&name);
        if BUILTINS.contains(&first) || TEXT_BUILTINS.contains(&first) {
            continue;
        }
        if !ids.iter().any(|id| id == first) {
            return Some(invalid(format!(
                "placeholder {{{{{name}}}}}: {first:?} is neither a task of this DAG nor a built-in ({}, {})",
                BUILTINS.join(", "),
                TEXT_BUILTINS.join(", ")
            )));
        }
        if !upstream.iter().any(|u| u == first) {
            return Some(invalid(format!(
                "placeholder {{{{{name}}}}}: task {first:?} is not upstream of this task (upstream: {})",
                list_or_none(upstream)
            )));
        }
    }
    None
}

const MERMAID_RESERVED: &[&str] = &[
    "end",
    "graph",
    "flowchart",
    "subgraph",
    "style",
    "class",
    "classdef",
    "click",
    "linkstyle",
    "direction",
    "default",
    "call",
    "href",
    "interpolate",
];

/// Task ids are lowercase, so capitalising a Mermaid keyword cannot clash with another task.
fn mermaid_id(id: &str) -> String {
    if MERMAID_RESERVED.contains(&id) {
        let mut cs = id.chars();
        cs.next()
            .map(|c| c.to_ascii_uppercase().to_string() + cs.as_str())
            .unwrap_or_default()
    } else {
        id.to_string()
    }
}

/// Text inside a quoted Mermaid label.
fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// Dependency graph over task indices (file order); unknown and self dependencies are left
/// out (they are reported separately).
struct Graph {
    /// `deps[i]`: indices task `i` depends on.
    deps: Vec<Vec<usize>>,
    /// `down[i]`: indices that depend on task `i`, increasing.
    down: Vec<Vec<usize>>,
}

impl Graph {
    fn new(tasks: &[(&str, &[String])]) -> Graph {
        let index = |id: &str| tasks.iter().position(|(t, _)| *t == id);
        let mut deps = vec![Vec::new(); tasks.len()];
        let mut down = vec![Vec::new(); tasks.len()];
        for (i, (_, ds)) in tasks.iter().enumerate() {
            for d in ds.iter() {
                if let Some(j) = index(d) {
                    if j != i && !deps[i].contains(&j) {
                        deps[i].push(j);
                        down[j].push(i);
                    }
                }
            }
        }
        for d in &mut down {
            d.sort_unstable();
        }
        Graph { deps, down }
    }

    /// Indices task `i` depends on, directly or not, increasing.
    fn upstream(&self, i: usize) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = self.deps[i].clone();
        while let Some(j) = stack.pop() {
            if seen.insert(j) {
                stack.extend(self.deps[j].iter().copied());
            }
        }
        seen.remove(&i);
        seen.into_iter().collect()
    }

    /// Kahn's algorithm, always taking the ready task earliest in the file.
    fn topological_order(&self) -> Vec<usize> {
        let mut indegree: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut ready: BTreeSet<usize> =
            (0..indegree.len()).filter(|&i| indegree[i] == 0).collect();
        let mut out = Vec::with_capacity(indegree.len());
        while let Some(i) = ready.pop_first() {
            out.push(i);
            for &j in &self.down[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        out
    }

    /// One cycle per strongly connected component with more than one task, each starting at
    /// its task earliest in the file and ending there again, shortest first found.
    fn cycles(&self) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for component in self.components() {
            if component.len() < 2 {
                continue;
            }
            let start = component[0];
            // Breadth-first from `start` along run direction, inside the component.
            let mut parent: HashMap<usize, usize> = HashMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut end = None;
            'search: while let Some(u) = queue.pop_front() {
                for &v in &self.down[u] {
                    if v == start {
                        end = Some(u);
                        break 'search;
                    }
                    if component.binary_search(&v).is_ok() && !parent.contains_key(&v) {
                        parent.insert(v, u);
                        queue.push_back(v);
                    }
                }
            }
            let Some(mut u) = end else { continue };
            let mut path = vec![start];
            while u != start {
                path.push(u);
                u = match parent.get(&u) {
                    Some(&p) => p,
                    None => break,
                };
            }
            path[1..].reverse();
            path.push(start);
            out.push(path);
        }
        out.sort();
        out
    }

    /// Strongly connected components (Tarjan), each sorted, in no particular order.
    fn components(&self) -> Vec<Vec<usize>> {
        struct State {
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            on_stack: Vec<bool>,
            stack: Vec<usize>,
            next: usize,
            out: Vec<Vec<usize>>,
        }
        fn visit(g: &Graph, v: usize, s: &mut State) {
            s.index[v] = Some(s.next);
            s.low[v] = s.next;
            s.next += 1;
            s.stack.push(v);
            s.on_stack[v] = true;
            for &w in &g.down[v] {
                match s.index[w] {
                    None => {
                        visit(g, w, s);
                        s.low[v] = s.low[v].min(s.low[w]);
                    }
                    Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(s.low[v]) == s.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                comp.sort_unstable();
                s.out.push(comp);
            }
        }
        let n = self.deps.len();
        let mut s = State {
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            out: Vec::new(),
        };
        for v in 0..n {
            if s.index[v].is_none() {
                visit(self, v, &mut s);
            }
        }
        s.out
    }
}

/// Loads every `*.toml` in `dir` (not recursing, skipping hidden files), sorted by file name,
/// and checks that DAG names are unique. Returns all errors of all files, or all DAGs.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<DagSpec>, Vec<SpecError>> {
    let dir = dir.as_ref();
    let dir_error = |message: String| SpecError {
        file: dir.to_path_buf(),
        task: None,
        kind: SpecErrorKind::Dir { message },
    };
    let entries = fs::read_dir(dir).map_err(|e| vec![dir_error(e.to_string())])?;
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                let toml = path.extension().is_some_and(|e| e == "toml");
                // fs::metadata follows symlinks: a linked DAG file counts.
                if toml && !hidden && fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                    files.push(path);
                }
            }
            Err(e) => errors.push(dir_error(e.to_string())),
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut specs: Vec<DagSpec> = Vec::new();
    for path in files {
        match DagSpec::load_file(&path) {
            Ok(spec) => {
                if let Some(other) = specs.iter().find(|s| s.name == spec.name) {
                    errors.push(SpecError {
                        file: path.clone(),
                        task: None,
                        kind: SpecErrorKind::DuplicateDagName {
                            name: spec.name.clone(),
                            other: other.file.clone(),
                        },
                    });
                } else {
                    specs.push(spec);
                }
            }
            Err(errs) => errors.extend(errs),
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "dags/x.toml";

    /// A valid file to start from: three tasks in a chain.
    const BASE: &str = r#"
schedule = "0 2 * * *"

[[tasks]]
id = "features"
op = "features_build"

[[tasks]]
id = "drift"
op = "drift_report"
depends_on = ["features"]

[[tasks]]
id = "train"
op = "train"
depends_on = ["drift"]
"#;

    fn load(text: &str) -> DagSpec {
        match DagSpec::from_toml_str(text, FILE) {
            Ok(spec) => spec,
            Err(errors) => panic!("should load:\n{}", format_errors(&errors)),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        match DagSpec::from_toml_str(text, FILE) {
            Ok(spec) => panic!("should not load, got {spec:?}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// The errors of a one-task file whose task has this op and these args.
    fn arg_errors(op: &str, args: &str) -> Vec<String> {
        errors(&format!(
            "schedule = \"0 2 * * *\"\n[[tasks]]\nid = \"t\"\nop = \"{op}\"\nargs = {args}\n"
        ))
    }

    fn args_of(op: &str, args: &str) -> OpArgs {
        load(&format!(
            "schedule = \"0 2 * * *\"\n[[tasks]]\nid = \"t\"\nop = \"{op}\"\nargs = {args}\n"
        ))
        .tasks[0]
            .args
            .clone()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .unwrap_or_else(|| panic!("bad test date"))
    }

    fn fmt_times(times: &[DateTime<Utc>], tz: Tz) -> Vec<String> {
        times
            .iter()
            .map(|t| t.with_timezone(&tz).to_rfc3339())
            .collect()
    }

    #[test]
    fn a_valid_file_loads_with_defaults() {
        let spec = load(BASE);
        assert_eq!(spec.name, "x");
        assert_eq!(spec.description, None);
        assert_eq!(spec.schedule.timezone(), Tz::UTC);
        assert_eq!(spec.schedule.expr(), "0 2 * * *");
        assert_eq!(spec.schedule.to_string(), "0 2 * * *");
        assert_eq!(spec.schedule.six_field(), "0 0 2 * * *");
        assert!(!spec.catchup);
        assert!(!spec.paused);
        assert_eq!(spec.max_active_runs, 1);
        assert_eq!(
            spec.defaults,
            TaskDefaults {
                retries: 0,
                retry_backoff_secs: 30,
                timeout_secs: 3600
            }
        );
        let train = spec.task("train").unwrap_or_else(|| panic!("no train"));
        assert_eq!(train.op(), Op::Train);
        assert!(train.run_if.is_always());
        assert_eq!(train.retry.retries, 0);
        assert_eq!(train.timeout, Duration::from_secs(3600));
        assert_eq!(
            train.args,
            OpArgs::Train(TrainArgs {
                train_days: 7,
                delay_days: 7,
                test_days: 7,
                params: BTreeMap::new()
            })
        );
        assert_eq!(
            spec.tasks[0].args,
            OpArgs::FeaturesBuild(FeaturesBuildArgs {
                sql: "features.sql".into()
            })
        );
        assert_eq!(
            spec.tasks[1].args,
            OpArgs::DriftReport(DriftReportArgs {
                reference: DriftReference::Champion,
                current_days: 7
            })
        );
    }

    #[test]
    fn every_key_is_read() {
        let spec = load(
            r#"
name = "nightly_2"
description = "d"
schedule = "30 0 2 * * *"
timezone = "Europe/Paris"
catchup = true
max_active_runs = 3
paused = true

[defaults]
retries = 2
retry_backoff_secs = 10
timeout_secs = 60

[[tasks]]
id = "a"
op = "sql"
args = { file = "reports/daily.sql" }
retries = 5
retry_backoff_secs = 1
timeout_secs = 5
run_if = "weekday != 'Sat'"
"#,
        );
        assert_eq!(spec.name, "nightly_2");
        assert_eq!(spec.description.as_deref(), Some("d"));
        assert_eq!(spec.schedule.timezone(), chrono_tz::Europe::Paris);
        assert!(spec.catchup && spec.paused);
        assert_eq!(spec.max_active_runs, 3);
        let a = &spec.tasks[0];
        assert_eq!(
            a.retry,
            RetryPolicy {
                retries: 5,
                backoff: Duration::from_secs(1)
            }
        );
        assert_eq!(a.timeout, Duration::from_secs(5));
        assert_eq!(a.run_if.source(), "weekday != 'Sat'");
        // Defaults apply to tasks that do not override them.
        let spec = load(&BASE.replace(
            "schedule = \"0 2 * * *\"",
            "schedule = \"0 2 * * *\"\n[defaults]\nretries = 4\nretry_backoff_secs = 7\ntimeout_secs = 99",
        ));
        assert_eq!(spec.tasks[2].retry.retries, 4);
        assert_eq!(spec.tasks[2].retry.backoff, Duration::from_secs(7));
        assert_eq!(spec.tasks[2].timeout, Duration::from_secs(99));
    }

    #[test]
    fn retry_backoff_doubles() {
        let p = RetryPolicy {
            retries: 3,
            backoff: Duration::from_secs(30),
        };
        assert_eq!(p.max_attempts(), 4);
        assert_eq!(p.delay_before_retry(0), Duration::ZERO);
        assert_eq!(p.delay_before_retry(1), Duration::from_secs(30));
        assert_eq!(p.delay_before_retry(2), Duration::from_secs(60));
        assert_eq!(p.delay_before_retry(3), Duration::from_secs(120));
        // Saturates rather than overflowing.
        assert_eq!(
            p.delay_before_retry(40),
            Duration::from_secs(30 * u64::from(u32::MAX))
        );
        let huge = RetryPolicy {
            retries: u32::MAX,
            backoff: Duration::from_secs(u64::MAX),
        };
        assert_eq!(huge.delay_before_retry(2), Duration::MAX);
        assert_eq!(huge.max_attempts(), u32::MAX);
    }

    // -- file-level errors ---------------------------------------------------------------

    #[test]
    fn toml_syntax_errors_give_line_and_column() {
        assert_eq!(
            errors("schedule = \"0 2 * * *\"\n[[tasks]]\nid = \"a\nop = \"sql\"\n"),
            vec!["dags/x.toml: invalid TOML at line 3, column 8: invalid basic string"]
        );
        assert_eq!(
            errors("schedule = \"0 2 * * *\"\ntasks = [\n"),
            vec!["dags/x.toml: invalid TOML at line 2, column 11: invalid array; expected `]`"]
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert_eq!(
            errors(&format!("schedul = \"x\"\n{BASE}")),
            vec!["dags/x.toml: invalid TOML at line 1, column 1: unknown field `schedul`, expected one of `name`, `description`, `schedule`, `timezone`, `catchup`, `max_active_runs`, `paused`, `defaults`, `tasks`"]
        );
        assert_eq!(
            errors(&BASE.replace("depends_on = [\"features\"]", "dependson = [\"features\"]")),
            vec!["dags/x.toml: invalid TOML at line 11, column 1: unknown field `dependson`, expected one of `id`, `op`, `args`, `depends_on`, `run_if`, `trigger_rule`, `retries`, `retry_backoff_secs`, `timeout_secs`"]
        );
        assert_eq!(
            errors(&format!("{BASE}\n[defaults]\nretry = 1\n")),
            vec!["dags/x.toml: invalid TOML at line 19, column 1: unknown field `retry`, expected one of `retries`, `retry_backoff_secs`, `timeout_secs`"]
        );
    }

    #[test]
    fn wrong_types_and_missing_keys() {
        assert_eq!(
            errors(&BASE.replace("schedule = \"0 2 * * *\"", "schedule = \"0 2 * * *\"\ncatchup = \"yes\"")),
            vec!["dags/x.toml: invalid TOML at line 3, column 11: invalid type: string \"yes\", expected a boolean"]
        );
        assert_eq!(
            errors(&BASE.replace("schedule = \"0 2 * * *\"", "")),
            vec!["dags/x.toml: invalid TOML at line 1, column 1: missing field `schedule`"]
        );
        assert_eq!(
            errors("schedule = \"0 2 * * *\"\n[[tasks]]\nop = \"sql\"\n"),
            vec!["dags/x.toml: invalid TOML at line 2, column 1: missing field `id`"]
        );
        assert_eq!(
            errors("schedule = \"0 2 * * *\"\n[[tasks]]\nid = \"a\"\nop = \"train\"\nargs = 3\n"),
            vec!["dags/x.toml: invalid TOML at line 5, column 8: invalid type: integer `3`, expected a map"]
        );
    }

    #[test]
    fn empty_task_list() {
        assert_eq!(
            errors("schedule = \"0 2 * * *\"\n"),
            vec!["dags/x.toml: no tasks: add at least one [[tasks]] table"]
        );
        assert_eq!(
            errors("schedule = \"0 2 * * *\"\ntasks = []\n"),
            vec!["dags/x.toml: no tasks: add at least one [[tasks]] table"]
        );
    }

    #[test]
    fn dag_names() {
        assert_eq!(
            errors(&format!("name = \"Daily-Retrain\"\n{BASE}")),
            vec!["dags/x.toml: name \"Daily-Retrain\" is invalid: use lowercase letters, digits and '_'"]
        );
        match DagSpec::from_toml_str(BASE, "dags/Daily-Retrain.toml") {
            Ok(_) => panic!("should not load"),
            Err(e) => assert_eq!(
                format_errors(&e),
                "dags/Daily-Retrain.toml: no name given and the file name \"Daily-Retrain\" is not a valid DAG name (lowercase letters, digits and '_'): rename the file or set name"
            ),
        }
        let spec = DagSpec::from_toml_str(
            &format!("name = \"ok_1\"\n{BASE}"),
            "dags/Daily-Retrain.toml",
        );
        assert_eq!(spec.map(|s| s.name).ok().as_deref(), Some("ok_1"));
    }

    #[test]
    fn schedules() {
        let with = |s: &str| errors(&BASE.replace("0 2 * * *", s));
        assert_eq!(
            with("0 25 * * *"),
            vec!["dags/x.toml: invalid schedule \"0 25 * * *\": Component error: Number out of bounds."]
        );
        assert_eq!(
            with("0 0 2 * * * *"),
            vec!["dags/x.toml: invalid schedule \"0 0 2 * * * *\": Invalid pattern: Pattern must have 5 or 6 fields when years are disallowed."]
        );
        assert_eq!(
            with("0 2 * *"),
            vec!["dags/x.toml: invalid schedule \"0 2 * *\": Invalid pattern: Pattern must have 5 or 6 fields when years are disallowed."]
        );
        assert_eq!(
            with("every day"),
            vec!["dags/x.toml: invalid schedule \"every day\": Invalid pattern: Pattern must have 5 or 6 fields when years are disallowed."]
        );
        assert_eq!(
            with(""),
            vec!["dags/x.toml: invalid schedule \"\": CronPattern cannot be an empty string."]
        );
        assert_eq!(
            with("0 0 30 2 *"),
            vec!["dags/x.toml: schedule \"0 0 30 2 *\" never fires"]
        );
        assert_eq!(
            with("0 0 1 * MON"),
            vec!["dags/x.toml: schedule \"0 0 1 * MON\" restricts both the day of month and the day of week, which cron implementations combine differently (OR in Vixie cron and croner's default, AND in tokio-cron-scheduler): restrict only one, or prefix the day of week with '+' to require both"]
        );
        // '+' makes the AND explicit; '?' and nicknames are fine.
        assert_eq!(
            load(&BASE.replace("0 2 * * *", "0 0 1-7 * +MON"))
                .schedule
                .six_field(),
            "0 0 0 1-7 * +MON"
        );
        assert_eq!(
            load(&BASE.replace("0 2 * * *", "0 0 ? * MON#1"))
                .schedule
                .six_field(),
            "0 0 0 ? * MON#1"
        );
        assert_eq!(
            load(&BASE.replace("0 2 * * *", "@daily"))
                .schedule
                .six_field(),
            "0 0 0 * * *"
        );
        assert_eq!(
            load(&BASE.replace("0 2 * * *", "@hourly"))
                .schedule
                .six_field(),
            "0 0 * * * *"
        );
        assert_eq!(
            load(&BASE.replace("0 2 * * *", " 0  0 2 * * * "))
                .schedule
                .six_field(),
            "0 0 2 * * *"
        );
    }

    #[test]
    fn timezones() {
        let with = |tz: &str| errors(&format!("timezone = \"{tz}\"\n{BASE}"));
        assert_eq!(
            with("Europe/Pariss"),
            vec!["dags/x.toml: unknown timezone \"Europe/Pariss\": expected an IANA name such as \"UTC\" or \"Europe/Paris\""]
        );
        assert_eq!(
            with("europe/paris"),
            vec!["dags/x.toml: unknown timezone \"europe/paris\": expected an IANA name such as \"UTC\" or \"Europe/Paris\" (did you mean \"Europe/Paris\"?)"]
        );
        assert_eq!(
            with("+02:00"),
            vec!["dags/x.toml: unknown timezone \"+02:00\": expected an IANA name such as \"UTC\" or \"Europe/Paris\""]
        );
    }

    #[test]
    fn numbers_out_of_range() {
        let top = errors(&format!(
            "max_active_runs = 0\n[defaults]\nretries = -1\nretry_backoff_secs = -5\ntimeout_secs = 0\n{}",
            BASE.replace("schedule = \"0 2 * * *\"", "")
        ));
        // `schedule` must come before [defaults] in TOML; put it back first.
        assert_eq!(top.len(), 1, "{top:?}");
        let text = format!(
            "schedule = \"0 2 * * *\"\nmax_active_runs = 0\n[defaults]\nretries = -1\nretry_backoff_secs = -5\ntimeout_secs = 0\n{}",
            BASE.replace("schedule = \"0 2 * * *\"", "")
        );
        assert_eq!(
            errors(&text),
            vec![
                "dags/x.toml: max_active_runs: must be at least 1, got 0",
                "dags/x.toml: defaults.retries: must be at least 0, got -1",
                "dags/x.toml: defaults.retry_backoff_secs: must be at least 0, got -5",
                "dags/x.toml: defaults.timeout_secs: must be at least 1, got 0",
            ]
        );
        let text = BASE.replace(
            "depends_on = [\"drift\"]",
            "depends_on = [\"drift\"]\nretries = -2\nretry_backoff_secs = -1\ntimeout_secs = 0",
        );
        assert_eq!(
            errors(&text),
            vec![
                "dags/x.toml: task \"train\": retries: must be at least 0, got -2",
                "dags/x.toml: task \"train\": retry_backoff_secs: must be at least 0, got -1",
                "dags/x.toml: task \"train\": timeout_secs: must be at least 1, got 0",
            ]
        );
        assert_eq!(
            errors(&BASE.replace(
                "depends_on = [\"drift\"]",
                "depends_on = [\"drift\"]\nretries = 5000000000"
            )),
            vec!["dags/x.toml: task \"train\": retries: 5000000000 is too large"]
        );
    }

    // -- task-level errors ---------------------------------------------------------------

    #[test]
    fn task_ids() {
        let with = |id: &str| {
            errors(
                &BASE
                    .replace("id = \"features\"", &format!("id = \"{id}\""))
                    .replace("[\"features\"]", &format!("[\"{id}\"]")),
            )
        };
        assert_eq!(
            with("Bad-Id"),
            vec!["dags/x.toml: task \"Bad-Id\": invalid task id: use lowercase letters, digits and '_', starting with a letter or '_'"]
        );
        assert_eq!(
            with("1st"),
            vec!["dags/x.toml: task \"1st\": invalid task id: use lowercase letters, digits and '_', starting with a letter or '_'"]
        );
        assert_eq!(
            with(""),
            vec!["dags/x.toml: task \"\": invalid task id: use lowercase letters, digits and '_', starting with a letter or '_'"]
        );
        assert_eq!(
            with("weekday"),
            vec!["dags/x.toml: task \"weekday\": task id is reserved: it is a built-in name of run_if conditions and notify text"]
        );
        assert_eq!(
            with("state"),
            vec!["dags/x.toml: task \"state\": task id is reserved: it is a built-in name of run_if conditions and notify text"]
        );
        assert_eq!(
            with("not"),
            vec!["dags/x.toml: task \"not\": task id is reserved: it is a keyword of run_if conditions"]
        );
        assert!(load(&BASE.replace("\"features\"", "\"_features2\""))
            .task("_features2")
            .is_some());
    }

    #[test]
    fn duplicate_task_ids() {
        let text = format!(
            "{BASE}\n[[tasks]]\nid = \"drift\"\nop = \"sql\"\nargs = {{ file = \"a.sql\" }}\n"
        );
        assert_eq!(
            errors(&text),
            vec!["dags/x.toml: task \"drift\": duplicate task id (tasks #2 and #4 in the file)"]
        );
    }

    #[test]
    fn unknown_op_lists_the_valid_ones() {
        assert_eq!(
            errors(&BASE.replace("op = \"train\"", "op = \"trian\"")),
            vec!["dags/x.toml: task \"train\": unknown op \"trian\" (valid ops: ingest, features_build, drift_report, train, evaluate, register, promote, sql, notify)"]
        );
    }

    #[test]
    fn unknown_args_name_the_key_and_list_valid_keys() {
        assert_eq!(
            arg_errors("train", "{ train_dayz = 3, test_days = 2 }"),
            vec!["dags/x.toml: task \"t\": op train has no arg \"train_dayz\" (valid args: train_days, delay_days, test_days, params)"]
        );
        assert_eq!(
            arg_errors("features_build", "{ file = \"x.sql\" }"),
            vec![
                "dags/x.toml: task \"t\": op features_build has no arg \"file\" (valid args: sql)"
            ]
        );
    }

    #[test]
    fn wrong_arg_types() {
        assert_eq!(
            arg_errors("train", "{ train_days = \"7\" }"),
            vec!["dags/x.toml: task \"t\": arg \"train_days\": expected an integer, found string \"7\""]
        );
        assert_eq!(
            arg_errors("drift_report", "{ reference = 3, current_days = 1.5 }"),
            vec![
                "dags/x.toml: task \"t\": arg \"reference\": expected a string, found integer 3",
                "dags/x.toml: task \"t\": arg \"current_days\": expected an integer, found float 1.5",
            ]
        );
        assert_eq!(
            arg_errors("promote", "{ force = \"true\" }"),
            vec![
                "dags/x.toml: task \"t\": arg \"force\": expected a boolean, found string \"true\""
            ]
        );
        assert_eq!(
            arg_errors("evaluate", "{ model = 1.0 }"),
            vec!["dags/x.toml: task \"t\": arg \"model\": expected a string or an integer, found float 1"]
        );
        assert_eq!(
            arg_errors("train", "{ params = [1] }"),
            vec!["dags/x.toml: task \"t\": arg \"params\": expected a table, found an array"]
        );
        assert_eq!(
            arg_errors("notify", "{ text = { a = 1 } }"),
            vec!["dags/x.toml: task \"t\": arg \"text\": expected a string, found a table"]
        );
    }

    #[test]
    fn missing_required_args() {
        assert_eq!(
            arg_errors("ingest", "{}"),
            vec!["dags/x.toml: task \"t\": op ingest requires arg \"source\""]
        );
        assert_eq!(
            arg_errors("register", "{ feature_set = \"abc\" }"),
            vec!["dags/x.toml: task \"t\": op register requires arg \"path\""]
        );
        assert_eq!(
            arg_errors("sql", "{}"),
            vec!["dags/x.toml: task \"t\": op sql requires arg \"file\""]
        );
        assert_eq!(
            arg_errors("notify", "{}"),
            vec!["dags/x.toml: task \"t\": op notify requires arg \"text\""]
        );
        assert_eq!(
            arg_errors("notify", "{ text = \"  \" }"),
            vec!["dags/x.toml: task \"t\": arg \"text\": must not be empty"]
        );
        // No args table at all is the same as an empty one.
        assert_eq!(
            errors("schedule = \"0 2 * * *\"\n[[tasks]]\nid = \"t\"\nop = \"ingest\"\n"),
            vec!["dags/x.toml: task \"t\": op ingest requires arg \"source\""]
        );
    }

    #[test]
    fn ingest_args() {
        assert_eq!(
            args_of(
                "ingest",
                "{ source = \"data/tx.parquet\", preset = \"handbook\" }"
            ),
            OpArgs::Ingest(IngestArgs {
                source: "data/tx.parquet".into(),
                preset: Some(IngestPreset::Handbook)
            })
        );
        for ok in [
            "a.csv",
            "/abs/B.CSV",
            "https://example.com/x/day.parquet?sig=1",
            "x.pq",
            "l.jsonl",
        ] {
            let _ = args_of("ingest", &format!("{{ source = \"{ok}\" }}"));
        }
        assert_eq!(
            arg_errors("ingest", "{ source = \"data.txt\", preset = \"kaggle\" }"),
            vec![
                "dags/x.toml: task \"t\": arg \"source\": \"data.txt\" is not a CSV, Parquet or JSON Lines file (extensions: .csv, .parquet, .pq, .jsonl, .ndjson, .json)",
                "dags/x.toml: task \"t\": arg \"preset\": unknown preset \"kaggle\" (valid presets: handbook)",
            ]
        );
        assert_eq!(
            arg_errors("ingest", "{ source = \"s3://bucket/x.csv\" }"),
            vec!["dags/x.toml: task \"t\": arg \"source\": unsupported URL scheme \"s3\": use a local path or an http(s) URL"]
        );
        assert_eq!(
            arg_errors("ingest", "{ source = \"\" }"),
            vec!["dags/x.toml: task \"t\": arg \"source\": must not be empty"]
        );
    }

    #[test]
    fn sql_file_args() {
        assert_eq!(
            args_of("sql", "{ file = \"fraud_rate_per_day.sql\" }"),
            OpArgs::Sql(SqlArgs {
                file: "fraud_rate_per_day.sql".into()
            })
        );
        assert_eq!(
            args_of("features_build", "{ sql = \"v2/features.sql\" }"),
            OpArgs::FeaturesBuild(FeaturesBuildArgs {
                sql: "v2/features.sql".into()
            })
        );
        let bad = |file: &str| arg_errors("sql", &format!("{{ file = '{file}' }}"));
        assert_eq!(
            bad("/etc/x.sql"),
            vec!["dags/x.toml: task \"t\": arg \"file\": \"/etc/x.sql\" is an absolute path: give a file name under sql/"]
        );
        assert_eq!(
            bad("C:\\x.sql"),
            vec!["dags/x.toml: task \"t\": arg \"file\": \"C:\\\\x.sql\" is an absolute path: give a file name under sql/"]
        );
        assert_eq!(
            bad("../secrets.sql"),
            vec!["dags/x.toml: task \"t\": arg \"file\": \"../secrets.sql\" must not contain '..': give a file name under sql/"]
        );
        assert_eq!(
            bad("a/../../b.sql"),
            vec!["dags/x.toml: task \"t\": arg \"file\": \"a/../../b.sql\" must not contain '..': give a file name under sql/"]
        );
        assert_eq!(
            bad("report.txt"),
            vec!["dags/x.toml: task \"t\": arg \"file\": \"report.txt\" is not a .sql file"]
        );
        assert_eq!(
            bad("x/.sql"),
            vec!["dags/x.toml: task \"t\": arg \"file\": \"x/.sql\" is not a .sql file"]
        );
        assert_eq!(
            bad("sql/features.sql"),
            vec!["dags/x.toml: task \"t\": arg \"file\": \"sql/features.sql\" is already relative to sql/: write \"features.sql\""]
        );
        assert_eq!(
            arg_errors("features_build", "{ sql = \"../features.sql\" }"),
            vec!["dags/x.toml: task \"t\": arg \"sql\": \"../features.sql\" must not contain '..': give a file name under sql/"]
        );
    }

    #[test]
    fn drift_and_train_args() {
        assert_eq!(
            args_of(
                "drift_report",
                "{ reference = \"2018-07-01..2018-07-31\", current_days = 1 }"
            ),
            OpArgs::DriftReport(DriftReportArgs {
                reference: DriftReference::Range {
                    from: NaiveDate::from_ymd_opt(2018, 7, 1).unwrap_or_default(),
                    to: NaiveDate::from_ymd_opt(2018, 7, 31).unwrap_or_default(),
                },
                current_days: 1
            })
        );
        assert_eq!(
            arg_errors("drift_report", "{ reference = \"last_week\", current_days = 0 }"),
            vec![
                "dags/x.toml: task \"t\": arg \"reference\": \"last_week\" is not a period: expected \"champion\" or \"YYYY-MM-DD..YYYY-MM-DD\" (both days included)",
                "dags/x.toml: task \"t\": arg \"current_days\": must be at least 1, got 0",
            ]
        );
        assert_eq!(
            arg_errors("drift_report", "{ reference = \"2018-07-31..2018-07-01\" }"),
            vec!["dags/x.toml: task \"t\": arg \"reference\": period \"2018-07-31..2018-07-01\" ends before it starts"]
        );
        assert_eq!(
            args_of("train", "{ train_days = 14, delay_days = 0, test_days = 3, params = { max_depth = 4, learning_rate = 0.1, subsample = \"0.8\", n_estimators = \"200\", scale_pos_weight = 3 } }"),
            OpArgs::Train(TrainArgs {
                train_days: 14,
                delay_days: 0,
                test_days: 3,
                params: BTreeMap::from([
                    ("learning_rate".to_string(), ParamValue::Float(0.1)),
                    ("max_depth".to_string(), ParamValue::Int(4)),
                    ("n_estimators".to_string(), ParamValue::Str("200".into())),
                    ("scale_pos_weight".to_string(), ParamValue::Int(3)),
                    ("subsample".to_string(), ParamValue::Str("0.8".into())),
                ]),
            })
        );
        assert_eq!(
            arg_errors(
                "train",
                "{ train_days = 0, delay_days = -1, test_days = 0 }"
            ),
            vec![
                "dags/x.toml: task \"t\": arg \"train_days\": must be at least 1, got 0",
                "dags/x.toml: task \"t\": arg \"delay_days\": must be at least 0, got -1",
                "dags/x.toml: task \"t\": arg \"test_days\": must be at least 1, got 0",
            ]
        );
        assert_eq!(
            arg_errors("train", "{ test_days = 99999999999 }"),
            vec!["dags/x.toml: task \"t\": arg \"test_days\": must be at most 4294967295, got 99999999999"]
        );
        assert_eq!(
            arg_errors("train", "{ params = { max_dept = 4, max_depth = 4.5, seed = -1, learning_rate = \"fast\", subsample = true } }"),
            vec![
                "dags/x.toml: task \"t\": arg \"params.learning_rate\": \"fast\" is not a number",
                "dags/x.toml: task \"t\": arg \"params\": unknown XGBoost parameter \"max_dept\" (valid: n_estimators, max_depth, learning_rate, subsample, colsample_bytree, scale_pos_weight, min_child_weight, seed, threads, early_stopping_rounds, validation_days)",
                "dags/x.toml: task \"t\": arg \"params.max_depth\": expected a non-negative integer (or one as a string), found float 4.5",
                "dags/x.toml: task \"t\": arg \"params.seed\": must be at least 0, got -1",
                "dags/x.toml: task \"t\": arg \"params.subsample\": expected a number (or one as a string), found boolean true",
            ]
        );
    }

    #[test]
    fn model_args() {
        let model = |v: &str| match args_of("evaluate", &format!("{{ model = {v} }}")) {
            OpArgs::Evaluate(e) => e.model,
            other => panic!("{other:?}"),
        };
        assert_eq!(model("\"candidate\""), ModelRef::Candidate);
        assert_eq!(model("\"champion\""), ModelRef::Champion);
        assert_eq!(model("3"), ModelRef::Version(3));
        assert_eq!(model("\"12\""), ModelRef::Version(12));
        assert_eq!(
            args_of("evaluate", "{}"),
            OpArgs::Evaluate(EvaluateArgs {
                model: ModelRef::Candidate,
                test_days: 7
            })
        );
        assert_eq!(
            arg_errors("evaluate", "{ model = \"latest\", test_days = 0 }"),
            vec![
                "dags/x.toml: task \"t\": arg \"model\": \"latest\" is not a model: expected \"candidate\", \"champion\" or a version number",
                "dags/x.toml: task \"t\": arg \"test_days\": must be at least 1, got 0",
            ]
        );
        assert_eq!(
            arg_errors("promote", "{ model = 0 }"),
            vec!["dags/x.toml: task \"t\": arg \"model\": version numbers start at 1, got 0"]
        );
        assert_eq!(
            arg_errors("promote", "{ model = \"-2\" }"),
            vec!["dags/x.toml: task \"t\": arg \"model\": version numbers start at 1, got -2"]
        );
    }

    #[test]
    fn register_and_promote_args() {
        assert_eq!(
            args_of(
                "register",
                "{ path = \"models/m.json\", feature_set = \"abc\" }"
            ),
            OpArgs::Register(RegisterArgs {
                path: "models/m.json".into(),
                feature_set: Some("abc".into())
            })
        );
        assert_eq!(
            arg_errors("register", "{ path = \"m.ubj\", feature_set = \"\" }"),
            vec![
                "dags/x.toml: task \"t\": arg \"path\": \"m.ubj\" is not an XGBoost JSON model file (.json)",
                "dags/x.toml: task \"t\": arg \"feature_set\": must not be empty (leave it out for the current one)",
            ]
        );
        assert_eq!(
            args_of("promote", "{}"),
            OpArgs::Promote(PromoteArgs {
                model: ModelRef::Candidate,
                force: false,
                reason: None,
                window: None
            })
        );
        assert_eq!(
            args_of(
                "promote",
                "{ model = 4, force = true, reason = \"rollback drill\" }"
            ),
            OpArgs::Promote(PromoteArgs {
                model: ModelRef::Version(4),
                force: true,
                reason: Some("rollback drill".into()),
                window: None
            })
        );
        let msg = "dags/x.toml: task \"t\": arg \"reason\": required when force = true: say why the gate is bypassed";
        assert_eq!(arg_errors("promote", "{ force = true }"), vec![msg]);
        assert_eq!(
            arg_errors("promote", "{ force = true, reason = \" \" }"),
            vec![msg]
        );
    }

    #[test]
    fn notify_args() {
        assert_eq!(
            args_of("notify", "{ text = \"hi {{dag}}\" }"),
            OpArgs::Notify(NotifyArgs {
                url_env: DEFAULT_NOTIFY_ENV.into(),
                text: "hi {{dag}}".into(),
                only_on: NotifyOn::Always
            })
        );
        assert_eq!(
            args_of(
                "notify",
                "{ text = \"x\", url_env = \"TEAM_HOOK\", only_on = \"failure\" }"
            ),
            OpArgs::Notify(NotifyArgs {
                url_env: "TEAM_HOOK".into(),
                text: "x".into(),
                only_on: NotifyOn::Failure
            })
        );
        let url = "dags/x.toml: task \"t\": arg \"url_env\": looks like a URL; give the NAME of the environment variable that holds the webhook URL (e.g. \"FRAUDLAKE_NOTIFY_WEBHOOK\"), never the URL itself: DAG files are committed";
        for secret in [
            "https://hooks.slack.com/services/T000/B000/XXXX",
            "http:x",
            "hooks.example.com://a",
            "www.example.com/hook",
        ] {
            let errs = arg_errors(
                "notify",
                &format!("{{ text = \"x\", url_env = \"{secret}\" }}"),
            );
            assert_eq!(errs, vec![url]);
            assert!(!errs[0].contains(secret), "the URL must not be echoed");
        }
        assert_eq!(
            arg_errors("notify", "{ text = \"x\", url_env = \"MY-HOOK\", only_on = \"sometimes\" }"),
            vec![
                "dags/x.toml: task \"t\": arg \"url_env\": \"MY-HOOK\" is not an environment variable name (letters, digits and '_', not starting with a digit)",
                "dags/x.toml: task \"t\": arg \"only_on\": \"sometimes\" is not one of always, failure, success",
            ]
        );
    }

    #[test]
    fn notify_placeholders_read_upstream_tasks_only() {
        let dag = |text: &str| {
            format!(
                "{BASE}\n[[tasks]]\nid = \"tell\"\nop = \"notify\"\ndepends_on = [\"drift\"]\nargs = {{ text = '{text}' }}\n"
            )
        };
        let spec = load(&dag(
            "{{dag}} {{ logical_date }} {{state}} {{drift.dataset_drift}} {{features}} {{weekday}}",
        ));
        assert_eq!(spec.tasks[3].op(), Op::Notify);
        assert_eq!(
            errors(&dag("{{train.auc_roc}}")),
            vec!["dags/x.toml: task \"tell\": arg \"text\": placeholder {{train.auc_roc}}: task \"train\" is not upstream of this task (upstream: features, drift)"]
        );
        assert_eq!(
            errors(&dag("{{trian.auc_roc}}")),
            vec!["dags/x.toml: task \"tell\": arg \"text\": placeholder {{trian.auc_roc}}: \"trian\" is neither a task of this DAG nor a built-in (weekday, day, hour, logical_date, dag, data_interval_start, data_interval_end, has_champion, state, run_id)"]
        );
        assert_eq!(
            errors(&dag("done {{state")),
            vec!["dags/x.toml: task \"tell\": arg \"text\": \"{{\" at character 6 is never closed with \"}}\""]
        );
        assert_eq!(
            errors(&dag("{{ drift dataset }}")),
            vec!["dags/x.toml: task \"tell\": arg \"text\": placeholder \"{{ drift dataset }}\" is not a name or task.field"]
        );
    }

    #[test]
    fn dependencies() {
        assert_eq!(
            errors(&BASE.replace("depends_on = [\"drift\"]", "depends_on = [\"featurez\"]")),
            vec!["dags/x.toml: task \"train\": depends_on \"featurez\" is not a task of this DAG (tasks: features, drift, train)"]
        );
        assert_eq!(
            errors(&BASE.replace(
                "depends_on = [\"drift\"]",
                "depends_on = [\"drift\", \"train\"]"
            )),
            vec!["dags/x.toml: task \"train\": depends_on lists the task itself"]
        );
        assert_eq!(
            errors(&BASE.replace(
                "depends_on = [\"drift\"]",
                "depends_on = [\"drift\", \"features\", \"drift\"]"
            )),
            vec!["dags/x.toml: task \"train\": depends_on lists \"drift\" twice"]
        );
    }

    #[test]
    fn cycles_are_named_in_order() {
        // a <- c, b <- a, c <- b: run direction a -> b -> c -> a.
        let text = r#"
schedule = "0 2 * * *"
[[tasks]]
id = "start"
op = "features_build"
[[tasks]]
id = "a"
op = "sql"
args = { file = "a.sql" }
depends_on = ["start", "c"]
[[tasks]]
id = "b"
op = "sql"
args = { file = "b.sql" }
depends_on = ["a"]
[[tasks]]
id = "c"
op = "sql"
args = { file = "c.sql" }
depends_on = ["b"]
[[tasks]]
id = "after"
op = "sql"
args = { file = "d.sql" }
depends_on = ["c"]
[[tasks]]
id = "x"
op = "sql"
args = { file = "x.sql" }
depends_on = ["y"]
[[tasks]]
id = "y"
op = "sql"
args = { file = "y.sql" }
depends_on = ["x"]
"#;
        assert_eq!(
            errors(text),
            vec![
                "dags/x.toml: cycle: a -> b -> c -> a",
                "dags/x.toml: cycle: x -> y -> x",
            ]
        );
        // The shortest way back is named when a component has several cycles.
        let text = r#"
schedule = "0 2 * * *"
[[tasks]]
id = "a"
op = "features_build"
depends_on = ["d", "b"]
[[tasks]]
id = "b"
op = "features_build"
depends_on = ["a"]
[[tasks]]
id = "c"
op = "features_build"
depends_on = ["b"]
[[tasks]]
id = "d"
op = "features_build"
depends_on = ["c"]
"#;
        assert_eq!(errors(text), vec!["dags/x.toml: cycle: a -> b -> a"]);
    }

    #[test]
    fn run_if_errors() {
        let with = |cond: &str| {
            errors(&BASE.replace(
                "depends_on = [\"drift\"]",
                &format!("depends_on = [\"drift\"]\nrun_if = \"{cond}\""),
            ))
        };
        assert_eq!(
            with("drift.dataset_drift or"),
            vec!["dags/x.toml: task \"train\": run_if \"drift.dataset_drift or\": at column 23: expected an operand (a name, a string, a number, true or false) or '(', found end of input"]
        );
        assert_eq!(
            with("drift.dataset_drift && weekday == 'Sun'"),
            vec!["dags/x.toml: task \"train\": run_if \"drift.dataset_drift && weekday == 'Sun'\": at column 21: expected 'and', found '&&'"]
        );
        assert_eq!(
            with("drifft.dataset_drift"),
            vec!["dags/x.toml: task \"train\": run_if \"drifft.dataset_drift\": \"drifft\" is neither a task of this DAG nor a built-in (weekday, day, hour, logical_date, dag, data_interval_start, data_interval_end, has_champion)"]
        );
        assert_eq!(
            with("weekdy == 'Sun'"),
            vec!["dags/x.toml: task \"train\": run_if \"weekdy == 'Sun'\": \"weekdy\" is neither a task of this DAG nor a built-in (weekday, day, hour, logical_date, dag, data_interval_start, data_interval_end, has_champion)"]
        );
        // Indirect upstream is fine; self, downstream and siblings are not.
        assert!(
            load(&BASE.replace(
                "depends_on = [\"drift\"]",
                "depends_on = [\"drift\"]\nrun_if = \"features.rows > 0 and drift.dataset_drift\""
            ))
            .tasks[2]
                .run_if
                .referenced_tasks()
                == vec!["features", "drift"]
        );
        assert_eq!(
            with("train.auc_roc > 0.5"),
            vec!["dags/x.toml: task \"train\": run_if \"train.auc_roc > 0.5\": task \"train\" is not upstream of this task (upstream: features, drift)"]
        );
        assert_eq!(
            errors(&BASE.replace(
                "depends_on = [\"features\"]",
                "depends_on = [\"features\"]\nrun_if = \"train.auc_roc > 0.5\""
            )),
            vec!["dags/x.toml: task \"drift\": run_if \"train.auc_roc > 0.5\": task \"train\" is not upstream of this task (upstream: features)"]
        );
        assert_eq!(
            errors(&BASE.replace(
                "op = \"features_build\"",
                "op = \"features_build\"\nrun_if = \"drift.dataset_drift\""
            )),
            vec!["dags/x.toml: task \"features\": run_if \"drift.dataset_drift\": task \"drift\" is not upstream of this task (upstream: none)"]
        );
    }

    #[test]
    fn all_problems_of_a_file_are_reported_together() {
        let text = r#"
name = "Bad"
schedule = "0 0 30 2 *"
timezone = "Mars/Base"
max_active_runs = 0
[[tasks]]
id = "a"
op = "trian"
depends_on = ["a", "zz"]
run_if = "b.x"
[[tasks]]
id = "b"
op = "sql"
args = { file = "../x.sql", extra = 1 }
"#;
        assert_eq!(
            errors(text),
            vec![
                "dags/x.toml: name \"Bad\" is invalid: use lowercase letters, digits and '_'",
                "dags/x.toml: unknown timezone \"Mars/Base\": expected an IANA name such as \"UTC\" or \"Europe/Paris\"",
                "dags/x.toml: schedule \"0 0 30 2 *\" never fires",
                "dags/x.toml: max_active_runs: must be at least 1, got 0",
                "dags/x.toml: task \"a\": unknown op \"trian\" (valid ops: ingest, features_build, drift_report, train, evaluate, register, promote, sql, notify)",
                "dags/x.toml: task \"a\": depends_on lists the task itself",
                "dags/x.toml: task \"a\": depends_on \"zz\" is not a task of this DAG (tasks: a, b)",
                "dags/x.toml: task \"b\": op sql has no arg \"extra\" (valid args: file)",
                "dags/x.toml: task \"b\": arg \"file\": \"../x.sql\" must not contain '..': give a file name under sql/",
                "dags/x.toml: task \"a\": run_if \"b.x\": task \"b\" is not upstream of this task (upstream: none)",
            ]
        );
    }

    // -- views ---------------------------------------------------------------------------

    const RETRAIN: &str = r#"
schedule = "0 0 2 * * *"
[defaults]
retries = 2
retry_backoff_secs = 60
[[tasks]]
id = "features"
op = "features_build"
[[tasks]]
id = "report"
op = "sql"
args = { file = "fraud_rate_per_day.sql" }
depends_on = ["features"]
[[tasks]]
id = "drift"
op = "drift_report"
depends_on = ["features"]
[[tasks]]
id = "train"
op = "train"
depends_on = ["drift"]
run_if = "drift.dataset_drift or weekday == \"Sun\""
timeout_secs = 7200
[[tasks]]
id = "end"
op = "notify"
depends_on = ["train", "report"]
args = { text = "{{state}}", only_on = "failure" }
"#;

    #[test]
    fn topological_order_is_stable() {
        let spec = load(RETRAIN);
        let ids: Vec<&str> = spec
            .topological_order()
            .iter()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(ids, ["features", "report", "drift", "train", "end"]);
        // Dependencies first even when the file lists them later; ties by file order.
        let spec = load(
            r#"
schedule = "0 2 * * *"
[[tasks]]
id = "c"
op = "features_build"
depends_on = ["b", "a"]
[[tasks]]
id = "z"
op = "features_build"
[[tasks]]
id = "b"
op = "features_build"
[[tasks]]
id = "a"
op = "features_build"
depends_on = ["z"]
"#,
        );
        let ids: Vec<&str> = spec
            .topological_order()
            .iter()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(ids, ["z", "b", "a", "c"]);
        let up: Vec<&str> = spec.upstream("c").iter().map(|t| t.id.as_str()).collect();
        assert_eq!(up, ["z", "b", "a"]);
        let down: Vec<&str> = spec.downstream("z").iter().map(|t| t.id.as_str()).collect();
        assert_eq!(down, ["c", "a"]);
        assert!(spec.upstream("nope").is_empty());
    }

    #[test]
    fn mermaid() {
        assert_eq!(
            load(RETRAIN).to_mermaid(),
            r#"flowchart TD
    features["features [features_build]"]
    report["report [sql]"]
    drift["drift [drift_report]"]
    train["train [train]"]
    End["end [notify]"]
    features --> report
    features --> drift
    drift --> train
    train --> End
    report --> End
    If_train>"run_if: drift.dataset_drift or weekday == #quot;Sun#quot;"] -.- train
"#
        );
    }

    #[test]
    fn describe() {
        let spec = load(&format!("description = \"Nightly.\"\n{RETRAIN}"));
        assert_eq!(
            spec.describe_at(utc(2024, 6, 1, 12, 0, 0)),
            r#"DAG x (dags/x.toml)
  Nightly.
schedule: 0 0 2 * * * in UTC (6-field: 0 0 2 * * *)
catchup: no, max active runs: 1, paused: no
defaults: retries 2, backoff 60 s (doubling), timeout 3600 s
next runs:
  2024-06-02 02:00:00 UTC
  2024-06-03 02:00:00 UTC
  2024-06-04 02:00:00 UTC
tasks (in run order):
  1. features [features_build] sql="features.sql"
  2. report [sql] file="fraud_rate_per_day.sql"
       after: features
  3. drift [drift_report] reference=champion current_days=7
       after: features
  4. train [train] train_days=7 delay_days=7 test_days=7
       after: drift
       run_if: drift.dataset_drift or weekday == "Sun"
       retries 2, backoff 60 s, timeout 7200 s
  5. end [notify] only_on=failure url_env=FRAUDLAKE_NOTIFY_WEBHOOK
       after: train, report
"#
        );
        let paris = load(&BASE.replace("schedule", "timezone = \"Europe/Paris\"\nschedule"));
        let text = paris.describe_at(utc(2024, 3, 30, 12, 0, 0));
        assert!(
            text.contains("schedule: 0 2 * * * in Europe/Paris (6-field: 0 0 2 * * *)\n"),
            "{text}"
        );
        assert!(
            text.contains("  2024-03-31 03:00:00 CEST (2024-03-31 01:00:00 UTC)\n"),
            "{text}"
        );
        assert!(
            text.contains("  2024-04-01 02:00:00 CEST (2024-04-01 00:00:00 UTC)\n"),
            "{text}"
        );
    }

    #[test]
    fn five_and_six_field_schedules() {
        let five = load(BASE);
        let six = load(&BASE.replace("0 2 * * *", "0 0 2 * * *"));
        let after = utc(2024, 1, 1, 2, 0, 0);
        let want = vec![utc(2024, 1, 2, 2, 0, 0), utc(2024, 1, 3, 2, 0, 0)];
        assert_eq!(five.next_fire_times(after, 2), want);
        assert_eq!(six.next_fire_times(after, 2), want);
        let every_15s = load(&BASE.replace("0 2 * * *", "*/15 * * * * *"));
        assert_eq!(
            every_15s.next_fire_times(utc(2024, 1, 1, 0, 0, 7), 3),
            vec![
                utc(2024, 1, 1, 0, 0, 15),
                utc(2024, 1, 1, 0, 0, 30),
                utc(2024, 1, 1, 0, 0, 45)
            ]
        );
        let hourly_5 = load(&BASE.replace("0 2 * * *", "5 * * * *"));
        assert_eq!(
            hourly_5.next_fire_times(utc(2024, 1, 1, 0, 5, 0), 2),
            vec![utc(2024, 1, 1, 1, 5, 0), utc(2024, 1, 1, 2, 5, 0)]
        );
        assert!(five.next_fire_times(after, 0).is_empty());
    }

    /// What a seconds-required cron reads in the 6-field form (tokio-cron-scheduler 0.15, which
    /// the scheduler used before issue #22: croner with seconds required and day-of-month AND
    /// day-of-week). Same instants as ours.
    #[test]
    fn six_field_form_parses_like_tokio_cron_scheduler() {
        let tcs = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build();
        for expr in [
            "0 2 * * *",
            "*/10 * * * * *",
            "5 * * * *",
            "0 0 ? * MON#1",
            "@weekly",
            "0 30 9 * * MON-FRI",
        ] {
            let spec = load(&BASE.replace("0 2 * * *", expr));
            let theirs = match tcs.parse(spec.schedule.six_field()) {
                Ok(c) => c,
                Err(e) => panic!("{expr}: {e}"),
            };
            let start = utc(2024, 5, 1, 0, 0, 0);
            let ours = spec.next_fire_times(start, 5);
            let theirs: Vec<DateTime<Utc>> = theirs.iter_after(start).take(5).collect();
            assert_eq!(ours, theirs, "{expr}");
        }
        // The 5-field form is what tokio-cron-scheduler would refuse.
        assert!(tcs.parse("0 2 * * *").is_err());
    }

    #[test]
    fn fire_times_across_dst_in_paris() {
        let tz = chrono_tz::Europe::Paris;
        let at = |s: &str| {
            load(&BASE.replace(
                "schedule = \"0 2 * * *\"",
                &format!("timezone = \"Europe/Paris\"\nschedule = \"{s}\""),
            ))
        };
        // Spring forward, 2024-03-31: 02:00-03:00 does not exist. A fixed-time job due in the
        // gap runs once, at 03:00 CEST; the next day it is back at 02:30.
        let daily = at("30 2 * * *");
        assert_eq!(
            fmt_times(&daily.next_fire_times(utc(2024, 3, 29, 12, 0, 0), 3), tz),
            [
                "2024-03-30T02:30:00+01:00",
                "2024-03-31T03:00:00+02:00",
                "2024-04-01T02:30:00+02:00"
            ]
        );
        // Fall back, 2024-10-27: 02:00-03:00 happens twice. A fixed-time job runs once (the
        // first 02:30); the UTC instant moves by an hour.
        assert_eq!(
            fmt_times(&daily.next_fire_times(utc(2024, 10, 26, 12, 0, 0), 3), tz),
            [
                "2024-10-27T02:30:00+02:00",
                "2024-10-28T02:30:00+01:00",
                "2024-10-29T02:30:00+01:00"
            ]
        );
        assert_eq!(
            daily.next_fire_times(utc(2024, 10, 26, 12, 0, 0), 2),
            vec![utc(2024, 10, 27, 0, 30, 0), utc(2024, 10, 28, 1, 30, 0)]
        );
        // An interval job skips the missing hour in spring and runs in both 02:xx hours in
        // autumn: still one run per real hour.
        let hourly = at("5 * * * *");
        assert_eq!(
            fmt_times(&hourly.next_fire_times(utc(2024, 3, 30, 23, 30, 0), 3), tz),
            [
                "2024-03-31T01:05:00+01:00",
                "2024-03-31T03:05:00+02:00",
                "2024-03-31T04:05:00+02:00"
            ]
        );
        assert_eq!(
            fmt_times(&hourly.next_fire_times(utc(2024, 10, 26, 23, 30, 0), 4), tz),
            [
                "2024-10-27T02:05:00+02:00",
                "2024-10-27T02:05:00+01:00",
                "2024-10-27T03:05:00+01:00",
                "2024-10-27T04:05:00+01:00"
            ]
        );
        // Every 30 minutes is every 30 real minutes through the repeated hour, in order.
        let half_hourly = at("*/30 * * * *");
        assert_eq!(
            fmt_times(
                &half_hourly.next_fire_times(utc(2024, 10, 26, 23, 45, 0), 6),
                tz
            ),
            [
                "2024-10-27T02:00:00+02:00",
                "2024-10-27T02:30:00+02:00",
                "2024-10-27T02:00:00+01:00",
                "2024-10-27T02:30:00+01:00",
                "2024-10-27T03:00:00+01:00",
                "2024-10-27T03:30:00+01:00"
            ]
        );
        // From inside the first pass, the second pass's earlier local times still come.
        assert_eq!(
            fmt_times(
                &half_hourly.next_fire_times(utc(2024, 10, 27, 0, 40, 0), 2),
                tz
            ),
            ["2024-10-27T02:00:00+01:00", "2024-10-27T02:30:00+01:00"]
        );
        // Per-second patterns: no second lost or repeated on either change.
        let every_second = at("* * * * * *");
        assert_eq!(
            every_second.next_fire_times(utc(2024, 3, 31, 0, 59, 58), 4),
            (1..=4)
                .map(|s| utc(2024, 3, 31, 0, 59, 58) + chrono::TimeDelta::seconds(s))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            every_second.next_fire_times(utc(2024, 10, 27, 0, 59, 58), 4),
            (1..=4)
                .map(|s| utc(2024, 10, 27, 0, 59, 58) + chrono::TimeDelta::seconds(s))
                .collect::<Vec<_>>()
        );
        // Starting inside the repeated hour (second pass) does not go back to the first one.
        assert_eq!(
            fmt_times(&hourly.next_fire_times(utc(2024, 10, 27, 1, 0, 0), 2), tz),
            ["2024-10-27T02:05:00+01:00", "2024-10-27T03:05:00+01:00"]
        );
        // Over the whole autumn day: 25 real hours, 25 runs.
        let day = hourly
            .fire_times_between(utc(2024, 10, 26, 22, 0, 0), utc(2024, 10, 27, 23, 0, 0))
            .unwrap_or_default();
        assert_eq!(day.len(), 25);
        let spring_day = hourly
            .fire_times_between(utc(2024, 3, 30, 23, 0, 0), utc(2024, 3, 31, 22, 0, 0))
            .unwrap_or_default();
        assert_eq!(spring_day.len(), 23);
    }

    #[test]
    fn fire_times_between_is_after_from_up_to_to() {
        let spec = load(BASE);
        let from = utc(2024, 1, 1, 2, 0, 0); // a fire time: excluded
        let to = utc(2024, 1, 4, 2, 0, 0); // a fire time: included
        assert_eq!(
            spec.fire_times_between(from, to),
            Ok(vec![
                utc(2024, 1, 2, 2, 0, 0),
                utc(2024, 1, 3, 2, 0, 0),
                utc(2024, 1, 4, 2, 0, 0)
            ])
        );
        assert_eq!(spec.fire_times_between(to, from), Ok(vec![]));
        assert_eq!(spec.fire_times_between(from, from), Ok(vec![]));
        let every_second = load(&BASE.replace("0 2 * * *", "* * * * * *"));
        assert_eq!(
            every_second
                .fire_times_between(from, from + chrono::Duration::seconds(100_000))
                .map(|v| v.len()),
            Ok(100_000)
        );
        assert_eq!(
            every_second.fire_times_between(from, from + chrono::Duration::days(2)),
            Err(ScheduleError::TooMany {
                limit: MAX_FIRE_TIMES,
                from,
                to: from + chrono::Duration::days(2)
            })
        );
    }

    #[test]
    fn data_intervals() {
        let paris = load(&BASE.replace("schedule", "timezone = \"Europe/Paris\"\nschedule"));
        // 2024-03-31 03:00 CEST is that day's (shifted) 02:00 run; the day before ran at 02:00 CET.
        let fire = utc(2024, 3, 31, 1, 0, 0);
        assert_eq!(paris.data_interval(fire), (utc(2024, 3, 30, 1, 0, 0), fire));
        // Autumn: the interval over the DST change is 25 hours long.
        let fire = utc(2024, 10, 28, 1, 0, 0);
        assert_eq!(
            paris.data_interval(fire),
            (utc(2024, 10, 27, 0, 0, 0), fire)
        );
        // Not a fire time itself: the interval ends there anyway.
        let noon = utc(2024, 6, 1, 12, 0, 0);
        assert_eq!(paris.data_interval(noon), (utc(2024, 6, 1, 0, 0, 0), noon));
        // Sparse schedules look back far enough.
        let monthly = load(&BASE.replace("0 2 * * *", "0 0 1 * *"));
        let fire = utc(2024, 3, 1, 0, 0, 0);
        assert_eq!(
            monthly.data_interval(fire),
            (utc(2024, 2, 1, 0, 0, 0), fire)
        );
        let leap = load(&BASE.replace("0 2 * * *", "0 0 29 2 *"));
        let fire = utc(2024, 2, 29, 0, 0, 0);
        assert_eq!(leap.data_interval(fire), (utc(2020, 2, 29, 0, 0, 0), fire));
        let per_second = load(&BASE.replace("0 2 * * *", "* * * * * *"));
        assert_eq!(
            per_second.data_interval(fire).0,
            fire - chrono::TimeDelta::seconds(1)
        );
    }

    #[test]
    fn ops_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
            assert_eq!(op.to_string(), op.name());
        }
        assert_eq!(Op::from_name("Train"), None);
    }

    // -- directories ---------------------------------------------------------------------

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("dagspec-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            if let Err(e) = fs::create_dir_all(&dir) {
                panic!("{}: {e}", dir.display());
            }
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) {
            if let Err(e) = fs::write(self.0.join(name), text) {
                panic!("{name}: {e}");
            }
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_dir_sorts_and_skips_other_files() {
        let dir = TempDir::new("sorted");
        dir.write("b.toml", BASE);
        dir.write("a.toml", BASE);
        dir.write("notes.md", "not a dag");
        dir.write(".hidden.toml", "garbage");
        if let Err(e) = fs::create_dir(dir.0.join("sub.toml")) {
            panic!("{e}");
        }
        let specs = load_dir(&dir.0).unwrap_or_else(|e| panic!("{}", format_errors(&e)));
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(specs[0].file, dir.0.join("a.toml"));
        let empty = TempDir::new("empty");
        assert_eq!(load_dir(&empty.0).map(|v| v.len()), Ok(0));
    }

    #[test]
    fn load_dir_collects_every_error_and_duplicate_names() {
        let dir = TempDir::new("errors");
        dir.write("a.toml", &format!("name = \"shared\"\n{BASE}"));
        dir.write("b.toml", &format!("name = \"shared\"\n{BASE}"));
        dir.write("c.toml", "schedule = \"0 2 * * *\"\n");
        dir.write("d.toml", "schedule = ");
        let errs = match load_dir(&dir.0) {
            Ok(_) => panic!("should fail"),
            Err(errs) => errs,
        };
        let d = dir.0.display();
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                format!("{d}/b.toml: DAG name \"shared\" is already used by {d}/a.toml"),
                format!("{d}/c.toml: no tasks: add at least one [[tasks]] table"),
                format!("{d}/d.toml: invalid TOML at line 1, column 12: syntax error"),
            ]
        );
    }

    #[test]
    fn load_dir_names_a_missing_directory() {
        let missing = std::env::temp_dir().join("dagspec-no-such-dir-7f3a");
        assert_eq!(
            load_dir(&missing).map_err(|e| format_errors(&e)),
            Err(format!(
                "{}: cannot read DAG directory: No such file or directory (os error 2)",
                missing.display()
            ))
        );
        assert_eq!(
            DagSpec::load_file(missing.join("x.toml")).map_err(|e| format_errors(&e)),
            Err(format!(
                "{}: cannot read file: No such file or directory (os error 2)",
                missing.join("x.toml").display()
            ))
        );
    }

    // -- the shipped DAGs ----------------------------------------------------------------

    /// `dags/` of the repository; `FRAUDLAKE_DAGS_DIR` overrides it (for builds outside the
    /// workspace).
    fn shipped_dir() -> PathBuf {
        std::env::var_os("FRAUDLAKE_DAGS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags"))
    }

    #[test]
    fn shipped_dags_load() {
        let dir = shipped_dir();
        let specs = load_dir(&dir).unwrap_or_else(|e| panic!("{}", format_errors(&e)));
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["daily_retrain", "hourly_monitoring"]);

        let daily = &specs[0];
        let order: Vec<&str> = daily
            .topological_order()
            .iter()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(
            order,
            ["features", "drift", "train", "evaluate", "promote", "notify"]
        );
        assert_eq!(daily.schedule.six_field(), "0 0 2 * * *");
        assert_eq!(daily.schedule.timezone(), Tz::UTC);
        assert_eq!(daily.defaults.retries, 2);
        assert_eq!(daily.defaults.retry_backoff_secs, 60);
        assert_eq!(
            daily.next_fire_times(utc(2024, 6, 1, 2, 0, 0), 2),
            vec![utc(2024, 6, 2, 2, 0, 0), utc(2024, 6, 3, 2, 0, 0)]
        );
        let train = daily.task("train").unwrap_or_else(|| panic!("no train"));
        assert_eq!(
            train.run_if.source(),
            "not has_champion or drift.dataset_drift or drift.prediction_drift or weekday == 'Sun'"
        );
        // The first run on a new lake: drift is skipped without a champion, train still runs.
        assert_eq!(train.trigger_rule, TriggerRule::NoneFailed);
        let drift = daily.task("drift").unwrap_or_else(|| panic!("no drift"));
        assert_eq!(drift.run_if.source(), "has_champion");
        let promote = daily
            .task("promote")
            .unwrap_or_else(|| panic!("no promote"));
        assert!(
            matches!(&promote.args, OpArgs::Promote(p) if !p.force && p.model == ModelRef::Candidate)
        );
        let notify = daily.task("notify").unwrap_or_else(|| panic!("no notify"));
        assert!(matches!(&notify.args, OpArgs::Notify(n) if n.only_on == NotifyOn::Always));
        // The feature SQL it names exists.
        for t in &daily.tasks {
            if let OpArgs::FeaturesBuild(a) = &t.args {
                let sql = dir.join("../sql").join(&a.sql);
                assert!(sql.is_file(), "{} is missing", sql.display());
            }
        }

        let hourly = &specs[1];
        assert_eq!(hourly.schedule.six_field(), "0 5 * * * *");
        assert_eq!(
            hourly.next_fire_times(utc(2024, 6, 1, 10, 5, 0), 2),
            vec![utc(2024, 6, 1, 11, 5, 0), utc(2024, 6, 1, 12, 5, 0)]
        );
        assert!(matches!(
            &hourly.tasks[0].args,
            OpArgs::DriftReport(d) if d.current_days == 1 && d.reference == DriftReference::Champion
        ));
        assert!(
            matches!(&hourly.tasks[1].args, OpArgs::Notify(n) if n.only_on == NotifyOn::Failure)
        );
        assert_eq!(hourly.tasks[1].depends_on, ["drift"]);
    }

    #[test]
    fn promote_window_is_checked() {
        let errs = DagSpec::from_toml_str(
            "schedule = \"0 0 2 * * *\"\n[[tasks]]\nid = \"p\"\nop = \"promote\"\n\
             args = { model = 3, window = \"yesterday\" }\n",
            "w.toml",
        )
        .expect_err("bad window");
        let text = format_errors(&errs);
        assert!(text.contains("unknown gate window 'yesterday'"), "{text}");
    }
}
