//! The long-running scheduler: holds the lake's scheduler lease (one scheduler per lake),
//! closes runs a killed predecessor left open, catches up missed schedules where a DAG asks
//! for it, then fires each DAG on its cron schedule with `tokio-cron-scheduler`. Runs of a DAG
//! are limited by its `max_active_runs`; on shutdown no new run starts and running ones finish.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fraudlake_pipeline::{Error, Result};
use tokio::sync::Semaphore;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::claim::{self, Refused};
use crate::history;
use crate::runner::{RunRequest, Runner};
use crate::spec::DagSpec;

/// The scheduler lease's key under the lake's `scheduler/` folder.
pub const LEASE_KEY: &str = "scheduler.lease";
/// A lease not renewed for this long is free for another scheduler to take.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// Catch-up never starts more runs than this per DAG at once.
pub const MAX_CATCHUP_RUNS: usize = 100;

/// The run request for a schedule firing at `fire`: its data interval is [previous fire, fire)
/// and its logical date the interval's first day in the DAG's timezone (as Airflow does).
pub fn scheduled_request(dag: &DagSpec, fire: DateTime<Utc>, trigger: &str) -> RunRequest {
    let (start, fire) = dag.data_interval(fire);
    RunRequest {
        logical_date: start.with_timezone(&dag.schedule.timezone()).date_naive(),
        data_interval_start: start,
        data_interval_end: fire,
        trigger: trigger.to_string(),
    }
}

/// Runs every DAG on its schedule until `shutdown` resolves.
pub async fn run(
    runner: Runner,
    dags: Vec<DagSpec>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let lake = runner.lake().clone();
    let lease = match claim::acquire(&lake, LEASE_KEY, "scheduler", claim::ttl(LEASE_TTL)).await {
        Ok(l) => l,
        Err(Refused::Held(b)) => {
            return Err(Error::invalid(format!(
                "another scheduler ({}) holds this lake's scheduler lease (until {}); one \
                 scheduler runs per lake",
                b.owner, b.expires_at
            )))
        }
        Err(Refused::Failed(e)) => return Err(e),
    };
    let result = schedule(runner, dags, shutdown).await;
    lease.release().await;
    result
}

async fn schedule(
    runner: Runner,
    dags: Vec<DagSpec>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let closed = runner.recover().await?;
    if !closed.is_empty() {
        tracing::warn!(runs = ?closed, "closed DAG runs left open by a stopped scheduler");
    }
    // Metrics survive restarts: last success comes from the history.
    let past = history::runs(runner.lake(), None).await?;
    for r in &past {
        if r.state == "success" {
            if let Some(end) = r.ended_at {
                let g = runner
                    .metrics
                    .last_success
                    .with_label_values(&[r.dag.as_str()]);
                if (end.timestamp() as f64) > g.get() {
                    g.set(end.timestamp() as f64);
                }
            }
        }
        if r.state == "success" || r.state == "failed" {
            runner
                .metrics
                .last_failed
                .with_label_values(&[r.dag.as_str()])
                .set(i64::from(r.state == "failed"));
        }
    }

    let runner = Arc::new(runner);
    let mut slots: HashMap<String, (Arc<Semaphore>, u32)> = HashMap::new();
    let sched = JobScheduler::new()
        .await
        .map_err(|e| Error::invalid(format!("cannot start the cron scheduler: {e}")))?;
    for dag in dags.into_iter().filter(|d| !d.paused) {
        let permits = dag.max_active_runs.max(1);
        let slot = Arc::new(Semaphore::new(permits as usize));
        slots.insert(dag.name.clone(), (slot.clone(), permits));
        let dag = Arc::new(dag);

        if dag.catchup {
            let last = past
                .iter()
                .filter(|r| r.dag == dag.name && r.trigger != "manual" && r.trigger != "backfill")
                .map(|r| r.data_interval_end)
                .max();
            if let Some(last) = last {
                let missed: Vec<_> = dag
                    .fire_times_between(last, Utc::now())
                    .unwrap_or_default()
                    .into_iter()
                    .take(MAX_CATCHUP_RUNS)
                    .collect();
                if !missed.is_empty() {
                    tracing::info!(dag = %dag.name, runs = missed.len(), "catching up missed schedules");
                }
                let (r, d, s) = (runner.clone(), dag.clone(), slot.clone());
                tokio::spawn(async move {
                    for fire in missed {
                        let Ok(_permit) = s.acquire().await else {
                            return;
                        };
                        let req = scheduled_request(&d, fire, "catchup");
                        if let Err(e) = r.run(&d, &req).await {
                            tracing::error!(dag = %d.name, error = %e, "catch-up run not started");
                        }
                    }
                });
            }
        }

        let (r, d, s) = (runner.clone(), dag.clone(), slot.clone());
        // Known limit: tokio-cron-scheduler 0.15 freezes the timezone's UTC offset when the job is
        // created, so a non-UTC DAG fires an hour off after a DST change until restarted (the
        // data interval still comes from the spec). The shipped DAGs are UTC.
        let job = Job::new_async_tz(dag.schedule.six_field(), dag.schedule.timezone(), move |_id, _l| {
            let (r, d, s) = (r.clone(), d.clone(), s.clone());
            Box::pin(async move {
                let fire = Utc::now();
                let Ok(permit) = s.clone().try_acquire_owned() else {
                    tracing::warn!(dag = %d.name, "max_active_runs reached: this schedule is skipped");
                    return;
                };
                tokio::spawn(async move {
                    let _permit = permit;
                    let req = scheduled_request(&d, fire, "schedule");
                    if let Err(e) = r.run(&d, &req).await {
                        tracing::error!(dag = %d.name, error = %e, "scheduled run not started");
                    }
                });
            })
        })
        .map_err(|e| {
            Error::invalid(format!(
                "DAG {}: the scheduler refused schedule '{}': {e}",
                dag.name,
                dag.schedule.six_field()
            ))
        })?;
        sched
            .add(job)
            .await
            .map_err(|e| Error::invalid(format!("cannot schedule DAG {}: {e}", dag.name)))?;
        tracing::info!(dag = %dag.name, schedule = %dag.schedule.expr(), timezone = %dag.schedule.timezone(), "scheduled");
    }
    sched
        .start()
        .await
        .map_err(|e| Error::invalid(format!("cannot start the cron scheduler: {e}")))?;
    shutdown.await;
    tracing::info!("scheduler stopping: no new runs; waiting for running ones");
    let mut sched = sched;
    let _ = sched.shutdown().await;
    for (name, (slot, permits)) in slots {
        if slot.acquire_many(permits).await.is_err() {
            tracing::warn!(dag = %name, "run slots closed early");
        }
    }
    Ok(())
}
