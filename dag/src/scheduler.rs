//! The long-running scheduler: holds the lake's scheduler lease (one scheduler per lake),
//! closes runs a killed predecessor left open, catches up missed schedules where a DAG asks
//! for it, then fires each DAG on its cron schedule. Runs of a DAG are limited by its
//! `max_active_runs`; on shutdown no new run starts and running ones finish.
//!
//! Each DAG has one task that sleeps until its next fire time and fires it. Fire times come
//! from the spec ([`DagSpec::next_fire_times`]: croner matching, `chrono-tz` for the zone's
//! rules), computed again after each fire, so a DAG in a zone with daylight-saving time fires
//! at the right instant across every change (`02:30` in `Europe/Paris` is 01:30 UTC in winter
//! and 00:30 UTC in summer; the spring gap and the repeated autumn hour follow the spec's
//! rules, see `dags/README.md`). This replaced `tokio-cron-scheduler` 0.15, whose
//! `Job::new_tz` turns the zone into the fixed UTC offset of the moment the job is created,
//! so such a DAG fired an hour off after a DST change until the process restarted. Driving it
//! with one-shot jobs re-armed at each spec fire time would have worked, but would have kept a
//! dependency that adds nothing over a `tokio::time::sleep` loop (one crate fewer to build).
//! A sleep is never longer than [`MAX_SLEEP`]: the loop re-reads the wall clock at least that
//! often, so a clock step or a suspended machine delays a fire by at most that much, and it
//! never fires before the fire time. If several fire times passed at once (the machine was
//! suspended), it fires once, for the latest, and logs the ones passed over (as a cron
//! scheduler does; catch-up, `catchup = true`, covers only the time the scheduler was not
//! running, from the latest scheduled run on). A scheduled run is given its fire time itself,
//! not the moment the loop woke up, so its data interval is exactly [previous fire time, fire
//! time) and its logical date that interval's first day, as for catch-up and backfill runs.
//!
//! A scheduler that loses its lease (paused past the lease's expiry while another scheduler
//! took it over, see `claim`) stops at once: no new run starts, an error is logged, running
//! runs (each under its own claim) finish, and `run` returns an error so the process exits
//! non-zero instead of scheduling next to the new holder.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::claim::{self, Claim, ClaimWatch, Refused};
use crate::history;
use crate::runner::{RunRequest, Runner};
use crate::spec::DagSpec;
use crate::state::{RunState, Trigger};

/// The scheduler lease's key under the lake's `scheduler/` folder.
pub const LEASE_KEY: &str = "scheduler.lease";
/// A lease not renewed for this long is free for another scheduler to take
/// (`FRAUDLAKE_LEASE_TTL_SECS` overrides it).
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// Catch-up never starts more runs than this per DAG at once.
pub const MAX_CATCHUP_RUNS: usize = 100;
/// The longest a DAG's fire loop sleeps before reading the wall clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The run request for a schedule firing at `fire`: its data interval is [previous fire, fire)
/// and its logical date the interval's first day in the DAG's timezone (as Airflow does).
pub fn scheduled_request(dag: &DagSpec, fire: DateTime<Utc>, trigger: Trigger) -> RunRequest {
    let (start, fire) = dag.data_interval(fire);
    RunRequest {
        logical_date: start.with_timezone(&dag.schedule.timezone()).date_naive(),
        data_interval_start: start,
        data_interval_end: fire,
        trigger,
    }
}

/// The first fire time of `dag` strictly after `after`, by the rules of the DAG's timezone
/// at that date (DST-correct); `None` if the schedule never fires again.
pub fn next_fire_after(dag: &DagSpec, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    dag.next_fire_times(after, 1).into_iter().next()
}

/// What a DAG's fire loop does at `now` while its next fire time is `due`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Not due yet: sleep this long (at most [`MAX_SLEEP`]), then ask again.
    Sleep(Duration),
    /// Fire the run scheduled at `fire`, the latest fire time not after `now` (`due` unless
    /// the loop woke up past later ones); `missed_from` is `due` when fire times from `due`
    /// up to `fire` (excluded) were passed over.
    Fire {
        fire: DateTime<Utc>,
        missed_from: Option<DateTime<Utc>>,
    },
}

/// The fire loop's decision ([`Wake`]): never fires before `due`, fires once however late.
pub(crate) fn wake(dag: &DagSpec, due: DateTime<Utc>, now: DateTime<Utc>) -> Wake {
    if now < due {
        let left = (due - now).to_std().unwrap_or(Duration::ZERO);
        return Wake::Sleep(left.min(MAX_SLEEP));
    }
    // The latest fire time <= now (fire times are whole seconds; `previous_before` is strict).
    // Searched only when the next one after `due` has passed too: the usual wake-up on time
    // costs one forward search, not a backward one (several hours of seconds in a DST zone).
    let passed_more = next_fire_after(dag, due).is_some_and(|next| next <= now);
    let latest = if passed_more {
        dag.schedule
            .previous_before(now + chrono::TimeDelta::nanoseconds(1))
            .filter(|t| *t > due)
            .unwrap_or(due)
    } else {
        due
    };
    Wake::Fire {
        fire: latest,
        missed_from: (latest > due).then_some(due),
    }
}

/// Starts a scheduled run of `dag` for the fire time `fire` unless the lease is lost or the
/// DAG already has `max_active_runs` runs.
fn fire_once(
    runner: &Arc<Runner>,
    dag: &Arc<DagSpec>,
    slot: &Arc<Semaphore>,
    lease: &ClaimWatch,
    fire: DateTime<Utc>,
) {
    if let Some(why) = lease.lost_reason() {
        tracing::error!(dag = %dag.name, "schedule not run: lost the scheduler lease: {why}");
        return;
    }
    let Ok(permit) = slot.clone().try_acquire_owned() else {
        tracing::warn!(dag = %dag.name, fire = %fire, "max_active_runs reached: this schedule is skipped");
        return;
    };
    let (r, d) = (runner.clone(), dag.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let req = scheduled_request(&d, fire, Trigger::Schedule);
        if let Err(e) = r.run(&d, &req).await {
            tracing::error!(dag = %d.name, error = %e, "scheduled run not started");
        }
    });
}

/// The fire loop of one DAG: fires every fire time strictly after `after` until aborted (or
/// until the schedule ends).
fn spawn_fire_loop(
    runner: Arc<Runner>,
    dag: Arc<DagSpec>,
    slot: Arc<Semaphore>,
    lease: ClaimWatch,
    after: DateTime<Utc>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut due = next_fire_after(&dag, after);
        while let Some(at) = due {
            match wake(&dag, at, Utc::now()) {
                Wake::Sleep(d) => tokio::time::sleep(d).await,
                Wake::Fire { fire, missed_from } => {
                    if let Some(first) = missed_from {
                        tracing::warn!(
                            dag = %dag.name, from = %first, to = %fire,
                            "fire times from `from` up to `to` (excluded) were passed over \
                             (the process was suspended or the clock jumped): firing once, for \
                             `to`; `fraudlake dag backfill` runs the missed ones if needed"
                        );
                    }
                    fire_once(&runner, &dag, &slot, &lease, fire);
                    due = next_fire_after(&dag, fire);
                }
            }
        }
        tracing::info!(dag = %dag.name, "the schedule fires no more");
    })
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
        if r.state == RunState::Success {
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
        if r.state.is_finished() {
            runner
                .metrics
                .last_failed
                .with_label_values(&[r.dag.as_str()])
                .set(i64::from(r.state == RunState::Failed));
        }
    }

    let runner = Arc::new(runner);
    let mut slots: HashMap<String, (Arc<Semaphore>, u32)> = HashMap::new();
    let mut fire_loops: Vec<JoinHandle<()>> = Vec::new();
    // Set at shutdown: a catch-up run waiting for a slot does not start after that (it is
    // not aborted, so one already running finishes and is waited for below).
    let stopping = Arc::new(AtomicBool::new(false));
    // Catch-up runs the fire times up to `started`, the fire loops the ones after it.
    let started = Utc::now();
    for dag in dags.into_iter().filter(|d| !d.paused) {
        let permits = dag.max_active_runs.max(1);
        let slot = Arc::new(Semaphore::new(permits as usize));
        slots.insert(dag.name.clone(), (slot.clone(), permits));
        let dag = Arc::new(dag);

        if dag.catchup {
            let last = past
                .iter()
                .filter(|r| r.dag == dag.name && r.trigger.is_scheduled())
                .map(|r| r.data_interval_end)
                .max();
            if let Some(last) = last {
                let missed: Vec<_> = dag
                    .fire_times_between(last, started)
                    .unwrap_or_default()
                    .into_iter()
                    .take(MAX_CATCHUP_RUNS)
                    .collect();
                if !missed.is_empty() {
                    tracing::info!(dag = %dag.name, runs = missed.len(), "catching up missed schedules");
                }
                let (r, d, s, l) = (runner.clone(), dag.clone(), slot.clone(), lease.clone());
                let stop = stopping.clone();
                tokio::spawn(async move {
                    for fire in missed {
                        let Ok(_permit) = s.acquire().await else {
                            return;
                        };
                        if stop.load(Ordering::SeqCst) {
                            tracing::info!(dag = %d.name, "catch-up stopped: the scheduler is stopping");
                            return;
                        }
                        if let Some(why) = l.lost_reason() {
                            tracing::error!(dag = %d.name, "catch-up stopped: lost the scheduler lease: {why}");
                            return;
                        }
                        let req = scheduled_request(&d, fire, Trigger::Catchup);
                        if let Err(e) = r.run(&d, &req).await {
                            tracing::error!(dag = %d.name, error = %e, "catch-up run not started");
                        }
                    }
                });
            }
        }

        fire_loops.push(spawn_fire_loop(
            runner.clone(),
            dag.clone(),
            slot.clone(),
            lease.clone(),
            started,
        ));
        tracing::info!(dag = %dag.name, schedule = %dag.schedule.expr(), timezone = %dag.schedule.timezone(), next = ?next_fire_after(&dag, started), "scheduled");
    }
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
    stopping.store(true, Ordering::SeqCst);
    // No fire after this point: each loop is stopped at its sleep (firing does not await).
    for handle in &fire_loops {
        handle.abort();
    }
    for handle in fire_loops {
        let _ = handle.await;
    }
    for (name, (slot, permits)) in slots {
        match slot.acquire_many(permits).await {
            // Every slot is free: nothing runs. Closed, so no queued catch-up gets one later.
            Ok(_all) => slot.close(),
            Err(_) => tracing::warn!(dag = %name, "run slots closed early"),
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
    use crate::claim::tests::{temp_lake, wait_expired, SHORT_TTL};
    use crate::runner::tests::{dag, runner};
    use chrono::{FixedOffset, NaiveDate, TimeZone};

    const EVERY_SECOND: &str = "schedule = \"* * * * * *\"\n[[tasks]]\nid = \"hello\"\n\
        op = \"notify\"\nargs = { text = \"hi\", url_env = \"FRAUDLAKE_TEST_UNSET\" }\n";

    /// A DAG due at 02:30 every day in `timezone`.
    fn daily_0230(timezone: &str) -> DagSpec {
        dag(&format!(
            "schedule = \"30 2 * * *\"\ntimezone = \"{timezone}\"\n[[tasks]]\nid = \"hello\"\n\
             op = \"notify\"\nargs = {{ text = \"hi\", url_env = \"FRAUDLAKE_TEST_UNSET\" }}\n"
        ))
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("a valid UTC time")
    }

    /// The fire times after `from` and before `to`, found as the fire loop finds them: each
    /// one by `next_fire_after` the previous one.
    fn fires(dag: &DagSpec, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut after = from;
        while let Some(t) = next_fire_after(dag, after).filter(|t| *t < to) {
            out.push(t);
            after = t;
        }
        out
    }

    /// Issue #22: a DAG at 02:30 in Europe/Paris across both 2027 DST changes. The instants
    /// after each change are those of the zone's new offset, not of the offset the scheduler
    /// saw when it started (what tokio-cron-scheduler's `Job::new_tz` did).
    #[test]
    fn a_paris_dag_at_0230_fires_at_the_right_instants_across_both_2027_dst_changes() {
        let paris = daily_0230("Europe/Paris");
        let tz = chrono_tz::Europe::Paris;

        // Spring forward, Sunday 2027-03-28 at 01:00 UTC: 02:00 CET -> 03:00 CEST.
        let spring = fires(&paris, utc(2027, 3, 26, 0, 0), utc(2027, 4, 2, 0, 0));
        assert_eq!(
            spring,
            vec![
                utc(2027, 3, 26, 1, 30), // 02:30 CET (+01:00)
                utc(2027, 3, 27, 1, 30),
                // 02:30 does not exist on 2027-03-28. The spec's documented rule (croner's, see
                // dags/README.md "Schedules"): a fixed time in the gap runs once, at the end of
                // the gap, 03:00 CEST.
                utc(2027, 3, 28, 1, 0),
                utc(2027, 3, 29, 0, 30), // 02:30 CEST (+02:00)
                utc(2027, 3, 30, 0, 30),
                utc(2027, 3, 31, 0, 30),
                utc(2027, 4, 1, 0, 30),
            ]
        );
        assert_eq!(
            spring
                .iter()
                .map(|t| t.with_timezone(&tz).to_rfc3339())
                .collect::<Vec<_>>(),
            [
                "2027-03-26T02:30:00+01:00",
                "2027-03-27T02:30:00+01:00",
                "2027-03-28T03:00:00+02:00",
                "2027-03-29T02:30:00+02:00",
                "2027-03-30T02:30:00+02:00",
                "2027-03-31T02:30:00+02:00",
                "2027-04-01T02:30:00+02:00",
            ]
        );

        // Fall back, Sunday 2027-10-31 at 01:00 UTC: 03:00 CEST -> 02:00 CET, so 02:30 local
        // happens twice, at 00:30 and at 01:30 UTC.
        let autumn = fires(&paris, utc(2027, 10, 29, 0, 0), utc(2027, 11, 4, 0, 0));
        assert_eq!(
            autumn,
            vec![
                utc(2027, 10, 29, 0, 30), // 02:30 CEST (+02:00)
                utc(2027, 10, 30, 0, 30),
                // The spec's documented rule for a fixed time in the repeated hour: once, the
                // first time (02:30 CEST); not again at 02:30 CET (01:30 UTC).
                utc(2027, 10, 31, 0, 30),
                utc(2027, 11, 1, 1, 30), // 02:30 CET (+01:00)
                utc(2027, 11, 2, 1, 30),
                utc(2027, 11, 3, 1, 30),
            ]
        );
        let day_of_change = NaiveDate::from_ymd_opt(2027, 10, 31).expect("a date");
        assert_eq!(
            autumn
                .iter()
                .filter(|t| t.with_timezone(&tz).date_naive() == day_of_change)
                .count(),
            1,
            "exactly one run on the day 02:30 happens twice"
        );
        // A loop that fired the first 02:30, or a scheduler started between the two, does not
        // fire the second one.
        assert_eq!(
            next_fire_after(&paris, utc(2027, 10, 31, 0, 30)),
            Some(utc(2027, 11, 1, 1, 30))
        );
        assert_eq!(
            next_fire_after(&paris, utc(2027, 10, 31, 1, 0)),
            Some(utc(2027, 11, 1, 1, 30))
        );

        // The old behaviour, an offset frozen when the scheduler started, is an hour off
        // after each change: these instants must not be fire times.
        let frozen = |offset_hours: i32, month: u32, day: u32| -> DateTime<Utc> {
            FixedOffset::east_opt(offset_hours * 3600)
                .expect("an offset")
                .with_ymd_and_hms(2027, month, day, 2, 30, 0)
                .single()
                .expect("a time")
                .with_timezone(&Utc)
        };
        assert_eq!(frozen(1, 3, 29), utc(2027, 3, 29, 1, 30));
        assert!(!spring.contains(&frozen(1, 3, 29)));
        assert_eq!(frozen(2, 11, 1), utc(2027, 11, 1, 0, 30));
        assert!(!autumn.contains(&frozen(2, 11, 1)));

        // A UTC DAG is unaffected: 02:30 UTC every day through both changes.
        let in_utc = daily_0230("UTC");
        assert_eq!(
            fires(&in_utc, utc(2027, 3, 26, 0, 0), utc(2027, 4, 2, 0, 0)),
            (26..=31)
                .map(|d| utc(2027, 3, d, 2, 30))
                .chain([utc(2027, 4, 1, 2, 30)])
                .collect::<Vec<_>>()
        );
        assert_eq!(
            fires(&in_utc, utc(2027, 10, 29, 0, 0), utc(2027, 11, 4, 0, 0)),
            vec![
                utc(2027, 10, 29, 2, 30),
                utc(2027, 10, 30, 2, 30),
                utc(2027, 10, 31, 2, 30),
                utc(2027, 11, 1, 2, 30),
                utc(2027, 11, 2, 2, 30),
                utc(2027, 11, 3, 2, 30),
            ]
        );
    }

    #[test]
    fn the_fire_loop_never_fires_early_and_fires_once_when_late() {
        let paris = daily_0230("Europe/Paris");
        let due = utc(2027, 3, 28, 1, 0);
        let secs = chrono::TimeDelta::seconds;
        assert_eq!(
            wake(&paris, due, due - secs(10)),
            Wake::Sleep(Duration::from_secs(10))
        );
        assert_eq!(
            wake(&paris, due, due - chrono::TimeDelta::milliseconds(1)),
            Wake::Sleep(Duration::from_millis(1))
        );
        // Long waits are cut so that the wall clock is read again.
        assert_eq!(
            wake(&paris, due, due - chrono::TimeDelta::hours(5)),
            Wake::Sleep(MAX_SLEEP)
        );
        let on_time = Wake::Fire {
            fire: due,
            missed_from: None,
        };
        assert_eq!(wake(&paris, due, due), on_time);
        assert_eq!(wake(&paris, due, due + secs(59)), on_time);
        // Suspended from before the spring change until 2027-03-30 noon: one run, for the
        // latest fire time passed (02:30 CEST that day), the others logged.
        let before = utc(2027, 3, 27, 1, 30);
        assert_eq!(
            wake(&paris, before, utc(2027, 3, 30, 12, 0)),
            Wake::Fire {
                fire: utc(2027, 3, 30, 0, 30),
                missed_from: Some(before),
            }
        );
        // Woken late in the repeated autumn hour: the second 02:30 is not a fire time.
        let first = utc(2027, 10, 31, 0, 30);
        assert_eq!(
            wake(&paris, first, utc(2027, 10, 31, 1, 45)),
            Wake::Fire {
                fire: first,
                missed_from: None,
            }
        );
    }

    /// The loop end to end, in real time: a DAG due every second runs on schedule with its
    /// exact fire time as the end of its data interval, and stops on shutdown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scheduled_runs_get_their_fire_time_and_stop_on_shutdown() {
        let (dir, lake) = temp_lake();
        let lease = claim::acquire(&lake, LEASE_KEY, "scheduler", Duration::from_secs(120))
            .await
            .map_err(|e| format!("{e:?}"))
            .expect("lease");
        let watched = lake.clone();
        // Stops once a scheduled run is recorded (or after a deadline; the asserts then fail).
        let shutdown = async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let runs = history::runs(&watched, None).await.unwrap_or_default();
                if runs.iter().any(|r| r.trigger == Trigger::Schedule) {
                    return;
                }
            }
        };
        let result = tokio::time::timeout(
            Duration::from_secs(120),
            run_holding(
                runner(&lake, dir.path()),
                vec![dag(EVERY_SECOND)],
                lease,
                shutdown,
            ),
        )
        .await
        .expect("the scheduler stops on shutdown");
        assert!(result.is_ok(), "{result:?}");
        let runs = history::runs(&lake, None).await.expect("runs");
        let scheduled: Vec<_> = runs
            .iter()
            .filter(|r| r.trigger == Trigger::Schedule)
            .collect();
        assert!(!scheduled.is_empty(), "{runs:?}");
        for r in scheduled {
            assert_ne!(r.state, RunState::Running, "{r:?}");
            // [previous fire, fire): whole seconds, one second long.
            assert_eq!(r.data_interval_end.timestamp_subsec_nanos(), 0, "{r:?}");
            assert_eq!(
                r.data_interval_end - r.data_interval_start,
                chrono::TimeDelta::seconds(1),
                "{r:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_scheduler_whose_lease_was_taken_runs_nothing() {
        let (dir, lake) = temp_lake();
        let paused = claim::acquire_without_heartbeat(&lake, LEASE_KEY, "scheduler", SHORT_TTL)
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
        let lease = claim::acquire_without_heartbeat(&lake, LEASE_KEY, "scheduler", SHORT_TTL)
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
        assert!(
            runs.iter().all(|r| r.state != RunState::Running),
            "{runs:?}"
        );
        // And the lease is free for the next scheduler.
        wait_expired(&lake, LEASE_KEY).await;
        let next = claim::acquire(&lake, LEASE_KEY, "scheduler", Duration::from_secs(120))
            .await
            .map_err(|e| format!("{e:?}"))
            .expect("the next scheduler takes over");
        next.release().await;
    }
}
