//! Executes one DAG run: claims its logical date, runs the tasks in dependency order with their
//! conditions, retries (exponential backoff) and timeouts, and records every state change in
//! `dag_runs` / `task_runs` plus a log file per attempt. Shared by the scheduler, `dag run` and
//! `dag backfill`, so a manual run is recorded exactly like a scheduled one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use fraudlake_pipeline::lake::Lake;
use fraudlake_pipeline::{Error, Result};
use serde_json::{json, Value};

use crate::claim::{self, Refused};
use crate::history::{self, RunRecord, TaskRecord};
use crate::metrics::DagMetrics;
use crate::ops::{self, OpCtx, OpEnv};
use crate::spec::{DagSpec, Op};

/// How long a run's claim lives without a heartbeat (a killed process's runs are recoverable
/// after this).
pub const CLAIM_TTL: Duration = Duration::from_secs(60);

/// Which run to start.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub logical_date: NaiveDate,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    /// schedule | manual | backfill | catchup
    pub trigger: String,
}

impl RunRequest {
    /// A run for a day: the data interval is that day (UTC).
    pub fn for_day(day: NaiveDate, trigger: &str) -> RunRequest {
        let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        RunRequest {
            logical_date: day,
            data_interval_start: start,
            data_interval_end: start + chrono::Duration::days(1),
            trigger: trigger.to_string(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    pub state: String,
    pub tasks: Vec<(String, String)>,
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
        let claim = match claim::acquire(lake, &key, &what, claim::ttl(CLAIM_TTL)).await {
            Ok(c) => c,
            Err(Refused::Held(b)) => {
                return Err(Error::invalid(format!(
                    "DAG {} for {} is already running (owner {}, claim valid until {})",
                    dag.name, req.logical_date, b.owner, b.expires_at
                )))
            }
            Err(Refused::Failed(e)) => return Err(e),
        };
        let result = self.run_claimed(dag, req).await;
        claim.release().await;
        result
    }

    async fn run_claimed(&self, dag: &DagSpec, req: &RunRequest) -> Result<RunOutcome> {
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
            trigger: req.trigger.clone(),
            state: "running".into(),
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
        let mut states: HashMap<String, String> = HashMap::new();
        let mut order = Vec::new();
        let mut first_error: Option<String> = None;
        for task in dag.topological_order() {
            let deps: Vec<&str> = task
                .depends_on
                .iter()
                .map(|d| states.get(d).map_or("skipped", String::as_str))
                .collect();
            let is_notify = task.op() == Op::Notify;
            let condition = match task.run_if.evaluate(&context) {
                Ok(b) => Ok(b),
                Err(e) => Err(format!("run_if `{}` cannot be evaluated: {e}", task.run_if)),
            };
            let blocked = if deps
                .iter()
                .any(|s| *s == "failed" || *s == "upstream_failed")
            {
                Some(("upstream_failed", "an upstream task failed".to_string()))
            } else if deps.contains(&"skipped") {
                Some(("skipped", "an upstream task was skipped".to_string()))
            } else if let Err(e) = &condition {
                Some(("failed", e.clone()))
            } else if condition == Ok(false) {
                Some(("skipped", format!("run_if is false: {}", task.run_if)))
            } else {
                None
            };
            // notify reports on the run, so it runs whatever happened upstream (unless its own
            // condition says no).
            let blocked = match blocked {
                Some((state, _)) if is_notify && state != "failed" && condition == Ok(true) => None,
                other => other,
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
                        state: state.to_string(),
                        started_at: None,
                        ended_at: None,
                        error: None,
                        output: Some(json!({ "reason": why }).to_string()),
                        log: None,
                    },
                )
                .await?;
                tracing::info!(dag = %dag.name, task = %task.id, "{state}: {why}");
                if state == "failed" {
                    first_error.get_or_insert_with(|| format!("task {}: {why}", task.id));
                }
                state.to_string()
            } else {
                let run_state = if first_error.is_some() {
                    "failed"
                } else {
                    "success"
                };
                match self
                    .attempts(dag, task, &run_id, req, &context, run_state)
                    .await?
                {
                    Ok(output) => {
                        if let Some(obj) = context.as_object_mut() {
                            obj.insert(task.id.clone(), output);
                        }
                        "success".to_string()
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| format!("task {}: {e}", task.id));
                        "failed".to_string()
                    }
                }
            };
            order.push((task.id.clone(), state.clone()));
            states.insert(task.id.clone(), state);
        }

        let failed = order
            .iter()
            .any(|(_, s)| s == "failed" || s == "upstream_failed");
        run.state = if failed { "failed" } else { "success" }.into();
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
    async fn attempts(
        &self,
        dag: &DagSpec,
        task: &crate::spec::TaskSpec,
        run_id: &str,
        req: &RunRequest,
        context: &Value,
        run_state: &str,
    ) -> Result<std::result::Result<Value, String>> {
        let lake = self.lake();
        let max = task.retry.max_attempts();
        let mut last_error = String::new();
        for attempt in 1..=max {
            let started = Utc::now();
            let mut record = TaskRecord {
                run_id: run_id.to_string(),
                dag: dag.name.clone(),
                task: task.id.clone(),
                op: task.op().name().to_string(),
                attempt: attempt as i32,
                state: "running".into(),
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
            let result =
                match tokio::time::timeout(task.timeout, ops::run(&task.args, &mut ctx)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("timed out after {} s", task.timeout.as_secs())),
                };
            self.metrics
                .task_seconds
                .with_label_values(&[dag.name.as_str(), task.id.as_str()])
                .observe(clock.elapsed().as_secs_f64());
            record.ended_at = Some(Utc::now());
            match &result {
                Ok(out) => {
                    record.state = "success".into();
                    record.output = Some(out.to_string());
                    ctx.log.push(format!("succeeded: {out}"));
                }
                Err(e) => {
                    record.state = "failed".into();
                    record.error = Some(e.clone());
                    ctx.log.push(format!("failed: {e}"));
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
                Err(e) => {
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
            if r.state != "running" {
                continue;
            }
            let key = claim_key(&r.dag, r.logical_date);
            if let Some(c) = claim::peek(lake, &key).await? {
                if c.expires_at > Utc::now() {
                    continue; // still alive somewhere
                }
            }
            for mut t in history::tasks(lake, &r.run_id).await? {
                if t.state == "running" {
                    t.state = "failed".into();
                    t.ended_at = Some(Utc::now());
                    t.error = Some("the process running this task stopped".into());
                    history::record_task(lake, &t).await?;
                }
            }
            r.state = "failed".into();
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
