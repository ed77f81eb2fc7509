//! The long-running scheduler: holds the lake's scheduler lease (one scheduler per lake),
//! closes runs a killed predecessor left open, catches up missed schedules where a DAG asks
//! for it, then fires each DAG on its cron schedule with `tokio-cron-scheduler`. Runs of a DAG
//! are limited by its `max_active_runs`; on shutdown no new run starts and running ones finish.
//!
//! A scheduler that loses its lease (paused past the lease's expiry while another scheduler
//! took it over, see `claim`) stops at once: no new run starts, an error is logged, running
//! runs (each under its own claim) finish, and `run` returns an error so the process exits
//! non-zero instead of scheduling next to the new holder.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fraudlake_pipeline::{Error, Result};
use tokio::sync::Semaphore;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::claim::{self, Claim, ClaimWatch, Refused};
use crate::history;
use crate::runner::{RunRequest, Runner};
use crate::spec::DagSpec;

/// The scheduler lease's key under the lake's `scheduler/` folder.
pub const LEASE_KEY: &str = "scheduler.lease";
/// A lease not renewed for this long is free for another scheduler to take
/// (`FRAUDLAKE_LEASE_TTL_SECS` overrides it).
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
    let ttl = claim::ttl(claim::LEASE_TTL_VAR, LEASE_TTL);
    let lease = match claim::acquire(&lake, LEASE_KEY, "scheduler", ttl).await {
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
    run_holding(runner, dags, lease, shutdown).await
}

/// [`run`] with a lease already taken (the tests hand it one that stops heartbeating).
pub(crate) async fn run_holding(
    runner: Runner,
    dags: Vec<DagSpec>,
    lease: Claim,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let result = schedule(runner, dags, lease.watch(), shutdown).await;
    lease.release().await;
    result
}

fn lost_lease(why: &str) -> Error {
    Error::invalid(format!(
        "the scheduler lost this lake's scheduler lease ({why}); another scheduler may hold \
         it now, so this one stopped"
    ))
}

async fn schedule(
    runner: Runner,
    dags: Vec<DagSpec>,
    lease: ClaimWatch,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    if let Some(why) = lease.lost_reason() {
        tracing::error!("lost the scheduler lease before scheduling anything: {why}");
        return Err(lost_lease(&why));
    }
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
                let (r, d, s, l) = (runner.clone(), dag.clone(), slot.clone(), lease.clone());
                tokio::spawn(async move {
                    for fire in missed {
                        let Ok(_permit) = s.acquire().await else {
                            return;
                        };
                        if let Some(why) = l.lost_reason() {
                            tracing::error!(dag = %d.name, "catch-up stopped: lost the scheduler lease: {why}");
                            return;
                        }
                        let req = scheduled_request(&d, fire, "catchup");
                        if let Err(e) = r.run(&d, &req).await {
                            tracing::error!(dag = %d.name, error = %e, "catch-up run not started");
                        }
                    }
                });
            }
        }

        let (r, d, s, l) = (runner.clone(), dag.clone(), slot.clone(), lease.clone());
        // Known limit: tokio-cron-scheduler 0.15 freezes the timezone's UTC offset when the job is
        // created, so a non-UTC DAG fires an hour off after a DST change until restarted (the
        // data interval still comes from the spec). The shipped DAGs are UTC.
        let job = Job::new_async_tz(dag.schedule.six_field(), dag.schedule.timezone(), move |_id, _l| {
            let (r, d, s, l) = (r.clone(), d.clone(), s.clone(), l.clone());
            Box::pin(async move {
                let fire = Utc::now();
                if let Some(why) = l.lost_reason() {
                    tracing::error!(dag = %d.name, "schedule not run: lost the scheduler lease: {why}");
                    return;
                }
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
    let lost = tokio::select! {
        _ = shutdown => None,
        why = lease.lost() => Some(why),
    };
    match &lost {
        None => tracing::info!("scheduler stopping: no new runs; waiting for running ones"),
        Some(why) => tracing::error!(
            "lost this lake's scheduler lease ({why}): no new DAG run starts; waiting for \
             running ones (each holds its own claim), then exiting with an error"
        ),
    }
    let mut sched = sched;
    let _ = sched.shutdown().await;
    for (name, (slot, permits)) in slots {
        if slot.acquire_many(permits).await.is_err() {
            tracing::warn!(dag = %name, "run slots closed early");
        }
    }
    match lost {
        Some(why) => Err(lost_lease(&why)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::tests::{temp_lake, wait_expired};
    use crate::runner::tests::{dag, runner};

    const EVERY_SECOND: &str = "schedule = \"* * * * * *\"\n[[tasks]]\nid = \"hello\"\n\
        op = \"notify\"\nargs = { text = \"hi\", url_env = \"FRAUDLAKE_TEST_UNSET\" }\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_scheduler_whose_lease_was_taken_runs_nothing() {
        let (dir, lake) = temp_lake();
        let paused =
            claim::acquire_without_heartbeat(&lake, LEASE_KEY, "scheduler", Duration::from_secs(1))
                .await
                .map_err(|e| format!("{e:?}"))
                .expect("lease");
        wait_expired(&lake, LEASE_KEY).await;
        let other = claim::acquire(&lake, LEASE_KEY, "scheduler", Duration::from_secs(120))
            .await
            .map_err(|e| format!("{e:?}"))
            .expect("another scheduler takes the lease");
        // The paused scheduler resumes with a DAG due every second.
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            run_holding(
                runner(&lake, dir.path()),
                vec![dag(EVERY_SECOND)],
                paused,
                std::future::pending(),
            ),
        )
        .await
        .expect("a scheduler without its lease stops on its own");
        let err = result.expect_err("losing the lease is an error");
        assert!(
            err.to_string().contains("lost this lake's scheduler lease"),
            "{err}"
        );
        let runs = history::runs(&lake, None).await.expect("runs");
        assert!(runs.is_empty(), "no run may start: {runs:?}");
        assert!(other.is_held());
        other.release().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scheduler_stops_when_its_lease_expires_under_it() {
        let (dir, lake) = temp_lake();
        // No heartbeat: as if the process stalled right after taking the lease.
        let lease =
            claim::acquire_without_heartbeat(&lake, LEASE_KEY, "scheduler", Duration::from_secs(2))
                .await
                .map_err(|e| format!("{e:?}"))
                .expect("lease");
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            run_holding(
                runner(&lake, dir.path()),
                vec![dag(EVERY_SECOND)],
                lease,
                std::future::pending(),
            ),
        )
        .await
        .expect("the scheduler must notice the lost lease by itself");
        let err = result.expect_err("losing the lease is an error");
        assert!(
            err.to_string().contains("not renewed before it expired"),
            "{err}"
        );
        // It waited for the runs it had started; none is left open.
        let runs = history::runs(&lake, None).await.expect("runs");
        assert!(runs.iter().all(|r| r.state != "running"), "{runs:?}");
        // And the lease is free for the next scheduler.
        wait_expired(&lake, LEASE_KEY).await;
        let next = claim::acquire(&lake, LEASE_KEY, "scheduler", Duration::from_secs(120))
            .await
            .map_err(|e| format!("{e:?}"))
            .expect("the next scheduler takes over");
        next.release().await;
    }
}
