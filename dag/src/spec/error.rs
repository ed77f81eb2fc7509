//! What can be wrong with a DAG file, and how it is told: one [`SpecError`] per problem, naming
//! the file, the task and the argument, so `fraudlake dag list` can print every problem of every
//! file at once. Kept apart from the loader so ops (`crate::ops`) can return the same kinds for
//! their own argument checks without depending on the loader.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::condition::{ConditionError, BUILTINS};
use crate::ops::OpKind;

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
    /// `op` is not one of [`OpKind::ALL`].
    #[error("unknown op {op:?} (valid ops: {})", op_list())]
    UnknownOp {
        /// The op as written.
        op: String,
    },
    /// A key in `args` the op does not take.
    #[error("op {op} has no arg {key:?} (valid args: {})", .op.arg_names().join(", "))]
    UnknownArg {
        /// The op.
        op: OpKind,
        /// The key as written.
        key: String,
    },
    /// A required arg is missing.
    #[error("op {op} requires arg {key:?}")]
    MissingArg {
        /// The op.
        op: OpKind,
        /// The missing key.
        key: &'static str,
    },
    /// An arg of the wrong TOML type.
    #[error("arg {key:?}: expected {expected}, found {found}")]
    ArgType {
        /// The key (`params.max_depth` for nested tables).
        key: String,
        /// The type expected, e.g. `an integer`.
        expected: String,
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
    OpKind::ALL.map(OpKind::name).join(", ")
}

pub(crate) fn list_or_none(items: &[String]) -> String {
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
