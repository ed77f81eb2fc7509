//! The DAG files in `dags/*.toml`: loading and validating them, and the read-only views of a
//! DAG the scheduler and the CLI need (run order, description, fire times).
//!
//! Why a separate spec layer: a DAG file is edited by hand and runs unattended at night, so
//! every mistake that can be found without running anything has to be found when the file is
//! loaded, with the file, the task and the problem in one line (`dags/x.toml: task "train":
//! depends_on "featurez" is not a task of this DAG (tasks: features, drift, train)`). The
//! runner then works only with typed, validated values ([`DagSpec`], [`OpArgs`]) and never
//! re-checks a TOML table.
//!
//! One job per module: [`error`] (what can be wrong), [`schedule`] (cron and fire times),
//! `graph` (dependencies, run order, Mermaid), [`args`] (reading an op's `args` table into
//! its serde-derived struct with every problem reported); each op's arguments live with the
//! op in [`crate::ops`].
//!
//! Fire times are the instants the schedule matches ([`DagSpec::fire_times_between`] for
//! catch-up and backfill); the runner turns each into a run, with the data interval
//! `[previous fire time, fire time)` ([`DagSpec::data_interval`]) and its logical date.

pub mod args;
pub mod error;
mod graph;
pub mod schedule;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::condition::{Condition, BUILTINS, KEYWORDS};
use graph::Graph;
use schedule::parse_timezone;

pub use error::{format_errors, ScheduleError, SpecError, SpecErrorKind};
pub use schedule::{FireTimes, Schedule, MAX_FIRE_TIMES};
// The ops' argument types, re-exported where they were before the ops had a module each.
pub use crate::ops::canary_analysis::CanaryAnalysisArgs;
pub use crate::ops::drift_report::{DriftReference, DriftReportArgs};
pub use crate::ops::evaluate::EvaluateArgs;
pub use crate::ops::features_build::FeaturesBuildArgs;
pub use crate::ops::ingest::{IngestArgs, IngestPreset};
pub use crate::ops::notify::{NotifyArgs, NotifyOn, DEFAULT_NOTIFY_ENV, TEXT_BUILTINS};
pub use crate::ops::promote::PromoteArgs;
pub use crate::ops::register::RegisterArgs;
pub use crate::ops::shadow::ShadowArgs;
pub use crate::ops::sql::SqlArgs;
pub use crate::ops::train::{ParamValue, TrainArgs};
pub use crate::ops::{ModelRef, OpArgs, OpKind};

/// Default retries of a task when neither the task nor `[defaults]` sets them.
pub const DEFAULT_RETRIES: u32 = 0;
/// Default first retry delay, doubled on each further retry.
pub const DEFAULT_RETRY_BACKOFF_SECS: u64 = 30;
/// Default task timeout (one hour): a hung task must not block the DAG forever.
pub const DEFAULT_TIMEOUT_SECS: u64 = 3600;

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
    pub fn op(&self) -> OpKind {
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
            let args = match OpKind::from_name(&t.op) {
                None => {
                    task_errors.push(SpecErrorKind::UnknownOp { op: t.op.clone() });
                    None
                }
                Some(op) => op
                    .parse_args(&t.args)
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
                if let Some(kind) = crate::ops::notify::check_text(&n.text, &ids, &upstream) {
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
mod tests;
