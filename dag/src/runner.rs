//! Executes one DAG run: claims its logical date, runs the tasks in dependency order with their
//! conditions, retries (exponential backoff) and timeouts, and records every state change in
//! `dag_runs` / `task_runs` plus a log file per attempt. Shared by the scheduler, `dag run` and
//! `dag backfill`, so a manual run is recorded exactly like a scheduled one.
//!
//! Retries are for errors that may pass (I/O, object store, Delta commit conflicts, timeouts:
//! [`crate::transient`]); a permanent one (bad input, no champion, a SQL error) fails the task
//! at once, since trying the same thing again minutes later gives the same answer. A run
//! whose claim on its logical date is lost (the process was paused past its expiry and another
//! one took the date) starts no further task or attempt.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use fraudlake_pipeline::lake::Lake;
use serde_json::{json, Value};

use crate::claim::{self, ClaimWatch, Refused};
use crate::history::{self, RunRecord, TaskRecord};
use crate::metrics::DagMetrics;
use crate::ops::{OpCtx, OpEnv, OpKind};
use crate::spec::{DagSpec, TriggerRule};
use crate::state::{RunState, TaskState, Trigger};
use crate::transient;

/// How long a run's claim lives without a heartbeat (a killed process's runs are recoverable
/// after this).
pub const CLAIM_TTL: Duration = Duration::from_secs(60);

/// Which run to start.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub logical_date: NaiveDate,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub trigger: Trigger,
}

impl RunRequest {
    /// A run for a day: the data interval is that day (UTC).
    pub fn for_day(day: NaiveDate, trigger: Trigger) -> RunRequest {
        let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        RunRequest {
            logical_date: day,
            data_interval_start: start,
            data_interval_end: start + chrono::Duration::days(1),
            trigger,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    pub state: RunState,
    pub tasks: Vec<(String, TaskState)>,
    pub error: Option<String>,
}

/// Runs DAGs against one lake with one configuration.
#[derive(Clone)]
pub struct Runner {
    pub env: OpEnv,
    pub metrics: DagMetrics,
}

fn claim_key(dag: &str, day: NaiveDate) -> String {
    format!("runs/{dag}/{day}.claim")
}

impl Runner {
    pub fn lake(&self) -> &Lake {
        &self.env.lake
    }

    /// Runs `dag` for `req`; refuses while another process runs the same logical date.
    pub async fn run(&self, dag: &DagSpec, req: &RunRequest) -> Result<RunOutcome> {
        let lake = self.lake();
        let key = claim_key(&dag.name, req.logical_date);
        let what = format!("run of {}", dag.name);
        let ttl = claim::ttl(claim::CLAIM_TTL_VAR, CLAIM_TTL);
        let claim = match claim::acquire(lake, &key, &what, ttl).await {
            Ok(c) => c,
            Err(Refused::Held(b)) => {
                return Err(Error::invalid(format!(
                    "DAG {} for {} is already running (owner {}, claim valid until {})",
                    dag.name, req.logical_date, b.owner, b.expires_at
                )))
            }
            Err(Refused::Failed(e)) => return Err(e),
        };
        let result = self.run_claimed(dag, req, &claim.watch()).await;
        claim.release().await;
        result
    }

    async fn run_claimed(
        &self,
        dag: &DagSpec,
        req: &RunRequest,
        claim: &ClaimWatch,
    ) -> Result<RunOutcome> {
        let lake = self.lake();
        let started = Utc::now();
        let run_id = format!(
            "{}__{}__{}",
            dag.name,
            req.logical_date,
            started.format("%Y%m%dT%H%M%S%3fZ")
        );
        let mut run = RunRecord {
            run_id: run_id.clone(),
            dag: dag.name.clone(),
            logical_date: req.logical_date,
            data_interval_start: req.data_interval_start,
            data_interval_end: req.data_interval_end,
            trigger: req.trigger,
            state: RunState::Running,
            started_at: started,
            ended_at: None,
            error: None,
            owner: claim::owner_id(),
        };
        history::record_run(lake, &run).await?;
        tracing::info!(dag = %dag.name, run = %run_id, logical_date = %req.logical_date, "DAG run started");

        let mut context = json!({
            "dag": dag.name,
            "logical_date": req.logical_date.to_string(),
            "weekday": req.logical_date.format("%a").to_string(),
            "day": req.logical_date.day(),
            "hour": req.data_interval_start.hour(),
            "data_interval_start": req.data_interval_start.to_rfc3339(),
            "data_interval_end": req.data_interval_end.to_rfc3339(),
        });
        // Read only by DAGs that ask (it costs a registry read): a first run on a new lake.
        if dag
            .tasks
            .iter()
            .any(|t| t.run_if.paths().iter().any(|p| p == "has_champion"))
        {
            let aliases = fraudlake_model::registry::Registry::new(lake.clone())
                .aliases()
                .await?;
            if let Some(obj) = context.as_object_mut() {
                obj.insert("has_champion".into(), json!(aliases.champion.is_some()));
            }
        }
        let mut states: HashMap<String, TaskState> = HashMap::new();
        let mut order = Vec::new();
        let mut first_error: Option<String> = None;
        for task in dag.topological_order() {
            let deps: Vec<TaskState> = task
                .depends_on
                .iter()
                .map(|d| states.get(d).copied().unwrap_or(TaskState::Skipped))
                .collect();
            let is_notify = task.op() == OpKind::Notify;
            let condition = match task.run_if.evaluate(&context) {
                Ok(b) => Ok(b),
                Err(e) => Err(format!("run_if `{}` cannot be evaluated: {e}", task.run_if)),
            };
            let blocked = if deps.iter().any(|s| s.is_failure()) {
                Some((
                    TaskState::UpstreamFailed,
                    "an upstream task failed".to_string(),
                ))
            } else if deps.contains(&TaskState::Skipped)
                && task.trigger_rule == TriggerRule::AllSuccess
            {
                Some((
                    TaskState::Skipped,
                    "an upstream task was skipped".to_string(),
                ))
            } else if let Err(e) = &condition {
                Some((TaskState::Failed, e.clone()))
            } else if condition == Ok(false) {
                Some((TaskState::Skipped, skip_reason(&task.run_if, &context)))
            } else {
                None
            };
            // notify reports on the run, so it runs whatever happened upstream (unless its own
            // condition says no).
            let blocked = match blocked {
                Some((state, _))
                    if is_notify && state != TaskState::Failed && condition == Ok(true) =>
                {
                    None
                }
                other => other,
            };
            // Another process may run this date now: nothing more starts here, notify included.
            let blocked = match (blocked, claim.lost_reason()) {
                (None, Some(why)) => Some((
                    TaskState::Failed,
                    format!("not started: this process lost the claim on the run's date ({why})"),
                )),
                (blocked, _) => blocked,
            };
            let state = if let Some((state, why)) = blocked {
                history::record_task(
                    lake,
                    &TaskRecord {
                        run_id: run_id.clone(),
                        dag: dag.name.clone(),
                        task: task.id.clone(),
                        op: task.op().name().to_string(),
                        attempt: 0,
                        state,
                        started_at: None,
                        ended_at: None,
                        error: None,
                        output: Some(json!({ "reason": why }).to_string()),
                        log: None,
                    },
                )
                .await?;
                tracing::info!(dag = %dag.name, task = %task.id, "{state}: {why}");
                if state == TaskState::Failed {
                    first_error.get_or_insert_with(|| format!("task {}: {why}", task.id));
                }
                state
            } else {
                let run_state = if first_error.is_some() {
                    RunState::Failed
                } else {
                    RunState::Success
                };
                match self
                    .attempts(dag, task, &run_id, req, &context, run_state, claim)
                    .await?
                {
                    Ok(output) => {
                        if let Some(obj) = context.as_object_mut() {
                            obj.insert(task.id.clone(), output);
                        }
                        TaskState::Success
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| format!("task {}: {e}", task.id));
                        TaskState::Failed
                    }
                }
            };
            order.push((task.id.clone(), state));
            states.insert(task.id.clone(), state);
        }

        let failed = order.iter().any(|(_, s)| s.is_failure());
        run.state = if failed {
            RunState::Failed
        } else {
            RunState::Success
        };
        run.ended_at = Some(Utc::now());
        run.error = first_error.clone();
        history::record_run(lake, &run).await?;
        self.metrics
            .runs
            .with_label_values(&[dag.name.as_str(), run.state.as_str()])
            .inc();
        self.metrics
            .last_failed
            .with_label_values(&[dag.name.as_str()])
            .set(i64::from(failed));
        if !failed {
            self.metrics
                .last_success
                .with_label_values(&[dag.name.as_str()])
                .set(Utc::now().timestamp() as f64);
        }
        tracing::info!(dag = %dag.name, run = %run_id, state = %run.state, "DAG run finished");
        Ok(RunOutcome {
            run_id,
            state: run.state,
            tasks: order,
            error: first_error,
        })
    }

    /// Runs one task with its retries; the outer error is a lake failure (history could not be
    /// written), the inner one the task's own failure after its last attempt.
    #[allow(clippy::too_many_arguments)]
    async fn attempts(
        &self,
        dag: &DagSpec,
        task: &crate::spec::TaskSpec,
        run_id: &str,
        req: &RunRequest,
        context: &Value,
        run_state: RunState,
        claim: &ClaimWatch,
    ) -> Result<std::result::Result<Value, String>> {
        let lake = self.lake();
        let max = task.retry.max_attempts();
        let mut last_error = String::new();
        for attempt in 1..=max {
            if attempt > 1 {
                if let Some(why) = claim.lost_reason() {
                    tracing::error!(dag = %dag.name, task = %task.id, "no retry: lost the run's claim: {why}");
                    return Ok(Err(format!(
                        "{last_error}; not retried: this process lost the claim on the run's date ({why})"
                    )));
                }
            }
            let started = Utc::now();
            let mut record = TaskRecord {
                run_id: run_id.to_string(),
                dag: dag.name.clone(),
                task: task.id.clone(),
                op: task.op().name().to_string(),
                attempt: attempt as i32,
                state: TaskState::Running,
                started_at: Some(started),
                ended_at: None,
                error: None,
                output: None,
                log: None,
            };
            history::record_task(lake, &record).await?;
            let mut ctx = OpCtx {
                env: &self.env,
                dag: &dag.name,
                run_id,
                logical_date: req.logical_date,
                context,
                state: run_state,
                log: vec![format!(
                    "{} task {} ({}) attempt {attempt}/{max}, logical date {}",
                    started.to_rfc3339(),
                    task.id,
                    task.op().name(),
                    req.logical_date
                )],
            };
            let clock = Instant::now();
            // The error, and whether it may pass on another attempt.
            let result = match tokio::time::timeout(task.timeout, task.args.run(&mut ctx)).await {
                Ok(r) => r.map_err(|e| (e.to_string(), transient::is_transient(&e))),
                Err(_) => Err((
                    format!("timed out after {} s", task.timeout.as_secs()),
                    true,
                )),
            };
            self.metrics
                .task_seconds
                .with_label_values(&[dag.name.as_str(), task.id.as_str()])
                .observe(clock.elapsed().as_secs_f64());
            record.ended_at = Some(Utc::now());
            match &result {
                Ok(out) => {
                    record.state = TaskState::Success;
                    record.output = Some(out.to_string());
                    ctx.log.push(format!("succeeded: {out}"));
                }
                Err((e, transient)) => {
                    record.state = TaskState::Failed;
                    record.error = Some(e.clone());
                    ctx.log.push(if *transient {
                        format!("failed: {e}")
                    } else {
                        format!("failed with a permanent error (not retried): {e}")
                    });
                }
            }
            record.log = claim::write_log(
                lake,
                run_id,
                &format!("{}.{attempt}.log", task.id),
                ctx.log.join("\n") + "\n",
            )
            .await
            .map_err(|e| tracing::warn!(error = %e, "task log not written"))
            .ok();
            history::record_task(lake, &record).await?;
            match result {
                Ok(out) => return Ok(Ok(out)),
                Err((e, false)) => {
                    tracing::warn!(dag = %dag.name, task = %task.id, attempt, error = %e, "task failed with a permanent error: not retried");
                    return Ok(Err(e));
                }
                Err((e, true)) => {
                    tracing::warn!(dag = %dag.name, task = %task.id, attempt, error = %e, "task attempt failed");
                    last_error = e;
                    if attempt < max {
                        tokio::time::sleep(task.retry.delay_before_retry(attempt)).await;
                    }
                }
            }
        }
        Ok(Err(last_error))
    }

    /// Marks runs left `running` by a process that died (their claim expired or is gone) as
    /// failed, with their running task attempts. Returns the run ids it closed.
    pub async fn recover(&self) -> Result<Vec<String>> {
        let lake = self.lake();
        let mut closed = Vec::new();
        for mut r in history::runs(lake, None).await? {
            if r.state.is_finished() {
                continue;
            }
            let key = claim_key(&r.dag, r.logical_date);
            if let Some(c) = claim::peek(lake, &key).await? {
                if c.expires_at > Utc::now() {
                    continue; // still alive somewhere
                }
            }
            for mut t in history::tasks(lake, &r.run_id).await? {
                if !t.state.is_finished() {
                    t.state = TaskState::Failed;
                    t.ended_at = Some(Utc::now());
                    t.error = Some("the process running this task stopped".into());
                    history::record_task(lake, &t).await?;
                }
            }
            r.state = RunState::Failed;
            r.ended_at = Some(Utc::now());
            r.error = Some(format!(
                "the process running this DAG run ({}) stopped; marked failed on restart",
                r.owner
            ));
            history::record_run(lake, &r).await?;
            tracing::warn!(run = %r.run_id, "marked an interrupted DAG run failed");
            closed.push(r.run_id);
        }
        Ok(closed)
    }
}

/// Why a task whose `run_if` is false was skipped, with the values the condition read.
fn skip_reason(run_if: &crate::condition::Condition, context: &Value) -> String {
    let values: Vec<String> = run_if
        .paths()
        .iter()
        .map(|p| {
            let v = p
                .split('.')
                .try_fold(context, |v, part| v.get(part))
                .unwrap_or(&Value::Null);
            format!("{p} = {v}")
        })
        .collect();
    if values.is_empty() {
        format!("run_if is false: {run_if}")
    } else {
        format!("run_if is false: {run_if} ({})", values.join(", "))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::claim::tests::{temp_lake, wait_expired, SHORT_TTL};
    use deltalake::kernel::transaction::TransactionError;
    use deltalake::{DeltaTableError, ObjectStoreError};

    /// A runner on `lake` whose `sql` tasks read files from `sql_dir`.
    pub(crate) fn runner(lake: &Lake, sql_dir: &std::path::Path) -> Runner {
        Runner {
            env: OpEnv {
                lake: lake.clone(),
                features_sql: sql_dir.join("features.sql"),
                sql_dir: sql_dir.to_path_buf(),
                train: Default::default(),
                gate: Default::default(),
                drift: Default::default(),
                mlflow: Default::default(),
            },
            metrics: DagMetrics::detached(),
        }
    }

    pub(crate) fn dag(text: &str) -> DagSpec {
        DagSpec::from_toml_str(text, "dags/test.toml").expect("a valid DAG")
    }

    fn day() -> RunRequest {
        RunRequest::for_day(
            NaiveDate::from_ymd_opt(2018, 6, 14).expect("date"),
            Trigger::Manual,
        )
    }

    #[test]
    fn errors_that_may_pass_are_transient_the_others_permanent() {
        let io = |k: std::io::ErrorKind| Error::io("reading", std::io::Error::from(k));
        let store = || ObjectStoreError::Generic {
            store: "S3",
            source: "connection reset by peer".into(),
        };
        for (e, transient) in [
            (Error::invalid("there is no champion yet"), false),
            (Error::model("bad artifact"), false),
            (io(std::io::ErrorKind::TimedOut), true),
            (io(std::io::ErrorKind::ConnectionRefused), true),
            (io(std::io::ErrorKind::NotFound), false),
            (io(std::io::ErrorKind::PermissionDenied), false),
            (
                Error::from(DeltaTableError::ObjectStore { source: store() }),
                true,
            ),
            (Error::from(DeltaTableError::VersionAlreadyExists(3)), true),
            (
                Error::from(DeltaTableError::Transaction {
                    source: TransactionError::MaxCommitAttempts(15),
                }),
                true,
            ),
            (Error::from(DeltaTableError::NotATable("x".into())), false),
            (
                Error::from(deltalake::datafusion::error::DataFusionError::Plan(
                    "no column amount".into(),
                )),
                false,
            ),
            (
                Error::from(deltalake::datafusion::error::DataFusionError::ObjectStore(
                    Box::new(store()),
                )),
                true,
            ),
            (
                Error::from(deltalake::datafusion::error::DataFusionError::External(
                    Box::new(store()),
                )),
                true,
            ),
        ] {
            assert_eq!(transient::is_transient(&e), transient, "{e}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_permanent_error_fails_the_task_at_once() {
        let (dir, lake) = temp_lake();
        std::fs::write(dir.path().join("bad.sql"), "SELEC amount FROM nowhere").expect("sql");
        // Retried, this would wait 60 s then 120 s: the deadline below would fail the test.
        let d = dag(
            "schedule = \"0 0 2 * * *\"\n[defaults]\nretries = 2\nretry_backoff_secs = 60\n\
                     [[tasks]]\nid = \"count\"\nop = \"sql\"\nargs = { file = \"bad.sql\" }\n",
        );
        let out = tokio::time::timeout(
            Duration::from_secs(50),
            runner(&lake, dir.path()).run(&d, &day()),
        )
        .await
        .expect("a permanent error must not wait for retries")
        .expect("run");
        assert_eq!(out.state, RunState::Failed);
        let tasks = history::tasks(&lake, &out.run_id).await.expect("tasks");
        let attempts: Vec<i32> = tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed)
            .map(|t| t.attempt)
            .collect();
        assert_eq!(attempts, [1], "{tasks:?}");
        let error = tasks
            .iter()
            .find_map(|t| t.error.clone())
            .unwrap_or_default();
        assert!(
            error.contains("SELEC"),
            "the parser's message is kept: {error}"
        );
        assert!(
            out.error.unwrap_or_default().contains("SELEC"),
            "the run's error names the cause"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transient_error_is_retried() {
        let (dir, lake) = temp_lake();
        // A webhook address where nothing listens: connection refused, which may pass.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", closed.local_addr().expect("addr"));
        drop(closed);
        let var = "FRAUDLAKE_TEST_RUNNER_REFUSED_WEBHOOK";
        std::env::set_var(var, &url);
        let d = dag(&format!(
            "schedule = \"0 0 2 * * *\"\n[defaults]\nretries = 2\nretry_backoff_secs = 0\n\
             [[tasks]]\nid = \"tell\"\nop = \"notify\"\nargs = {{ text = \"hi\", url_env = \"{var}\" }}\n"
        ));
        let out = runner(&lake, dir.path())
            .run(&d, &day())
            .await
            .expect("run");
        assert_eq!(out.state, RunState::Failed);
        let tasks = history::tasks(&lake, &out.run_id).await.expect("tasks");
        let attempts: Vec<i32> = tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed)
            .map(|t| t.attempt)
            .collect();
        assert_eq!(attempts, [1, 2, 3], "{tasks:?}");
        assert!(
            tasks
                .iter()
                .filter_map(|t| t.error.as_deref())
                .all(|e| e.contains("notify webhook")),
            "{tasks:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn none_failed_runs_after_a_skipped_upstream_all_success_does_not() {
        let (dir, lake) = temp_lake();
        std::fs::write(dir.path().join("one.sql"), "SELECT 1 AS one").expect("sql");
        // Not notify: notify runs whatever happened upstream.
        let tell = "op = \"sql\"\nargs = { file = \"one.sql\" }\n";
        let d = dag(&format!(
            "schedule = \"0 0 2 * * *\"\n\
             [[tasks]]\nid = \"check\"\nrun_if = \"weekday == 'Sun'\"\n{tell}\
             [[tasks]]\nid = \"after_any\"\ndepends_on = [\"check\"]\ntrigger_rule = \"none_failed\"\n{tell}\
             [[tasks]]\nid = \"after_ok\"\ndepends_on = [\"check\"]\n{tell}"
        ));
        // 2018-06-14 is a Thursday: `check` is skipped.
        let out = runner(&lake, dir.path())
            .run(&d, &day())
            .await
            .expect("run");
        assert_eq!(out.state, RunState::Success, "{out:?}");
        let states: Vec<(&str, TaskState)> =
            out.tasks.iter().map(|(t, s)| (t.as_str(), *s)).collect();
        assert_eq!(
            states,
            [
                ("check", TaskState::Skipped),
                ("after_any", TaskState::Success),
                ("after_ok", TaskState::Skipped)
            ]
        );
        let tasks = history::tasks(&lake, &out.run_id).await.expect("tasks");
        let check = tasks.iter().find(|t| t.task == "check").expect("check");
        assert_eq!(
            check.output.as_deref(),
            Some(r#"{"reason":"run_if is false: weekday == 'Sun' (weekday = \"Thu\")"}"#)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_whose_claim_was_lost_starts_no_task() {
        let (dir, lake) = temp_lake();
        let d = dag("schedule = \"0 0 2 * * *\"\n\
                     [[tasks]]\nid = \"first\"\nop = \"notify\"\nargs = { text = \"hi\", url_env = \"FRAUDLAKE_TEST_UNSET\" }\n\
                     [[tasks]]\nid = \"second\"\nop = \"notify\"\ndepends_on = [\"first\"]\nargs = { text = \"hi\", url_env = \"FRAUDLAKE_TEST_UNSET\" }\n");
        let key = claim_key(&d.name, day().logical_date);
        // A process paused past its claim's expiry, while another one took the date over.
        let paused = claim::acquire_without_heartbeat(&lake, &key, "run", SHORT_TTL)
            .await
            .map_err(|e| format!("{e:?}"))
            .expect("claim");
        wait_expired(&lake, &key).await;
        let other = claim::acquire(&lake, &key, "run", Duration::from_secs(120))
            .await
            .map_err(|e| format!("{e:?}"))
            .expect("take over");
        let out = runner(&lake, dir.path())
            .run_claimed(&d, &day(), &paused.watch())
            .await
            .expect("run");
        assert_eq!(out.state, RunState::Failed);
        assert!(
            out.error
                .as_deref()
                .unwrap_or("")
                .contains("lost the claim"),
            "{out:?}"
        );
        let tasks = history::tasks(&lake, &out.run_id).await.expect("tasks");
        assert!(
            tasks
                .iter()
                .all(|t| t.attempt == 0 && t.started_at.is_none()),
            "no task may start: {tasks:?}"
        );
        assert!(other.is_held());
        other.release().await;
    }
}
