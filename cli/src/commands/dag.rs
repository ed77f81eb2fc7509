//! `fraudlake dag ...` and `fraudlake scheduler`: the DAGs of `dags/`, run by hand or on their
//! cron schedules, with their history from the lake.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use chrono::{Duration, NaiveDate, Utc};
use clap::{Args, Subcommand};
use fraudlake_dag::{history, DagMetrics, DagSpec, OpEnv, RunRequest, RunState, Runner, Trigger};
use serde::Serialize;

use crate::config::Settings;
use crate::exit;
use crate::output::{print_rows, Format};

/// Where the DAG files are.
#[derive(Debug, Args, Clone)]
pub struct DagsDir {
    /// Folder of DAG files (*.toml).
    #[arg(long = "dags", env = "FRAUDLAKE_DAGS", default_value = "dags")]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DagCommand {
    /// Every DAG with its schedule, next run and latest run.
    List {
        #[command(flatten)]
        dags: DagsDir,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// One DAG: schedule, next runs and tasks (text), or its graph as Mermaid.
    Show {
        name: String,
        #[arg(long)]
        mermaid: bool,
        #[command(flatten)]
        dags: DagsDir,
    },
    /// Run a DAG now for a logical date (default: yesterday, UTC).
    Run {
        name: String,
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        dags: DagsDir,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Run a DAG for every day from --from to --to, in order.
    Backfill {
        name: String,
        #[arg(long)]
        from: NaiveDate,
        #[arg(long)]
        to: NaiveDate,
        #[command(flatten)]
        dags: DagsDir,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Past runs of a DAG with each task's outcome.
    History {
        name: String,
        /// Show the last N runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// The task logs of a run (RUN_ID from `dag history`).
    Logs {
        run_id: String,
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub dags: DagsDir,
    /// Serve the scheduler's Prometheus metrics on this address (/metrics).
    #[arg(long, env = "FRAUDLAKE_SCHEDULER_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// Loads and validates every DAG of the folder; any problem refuses them all.
pub fn load(dir: &DagsDir) -> Result<Vec<DagSpec>> {
    fraudlake_dag::load_dir(&dir.dir).map_err(|errors| {
        crate::bad_input(format!(
            "{} invalid DAG definition(s):\n{}",
            errors.len(),
            fraudlake_dag::spec::format_errors(&errors)
        ))
    })
}

fn find(dags: Vec<DagSpec>, name: &str) -> Result<DagSpec> {
    let names: Vec<String> = dags.iter().map(|d| d.name.clone()).collect();
    dags.into_iter().find(|d| d.name == name).ok_or_else(|| {
        crate::bad_input(format!(
            "no DAG named '{name}' (DAGs: {})",
            names.join(", ")
        ))
    })
}

/// The ops' environment from the settings.
pub fn op_env(settings: &Settings) -> Result<OpEnv> {
    let sql_dir = settings
        .features_sql
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("sql"), PathBuf::from);
    let d = &settings.drift;
    Ok(OpEnv {
        lake: settings.open_lake()?,
        features_sql: settings.features_sql.clone(),
        sql_dir,
        train: settings.train.clone(),
        gate: fraudlake_model::registry::gate::GatePolicy {
            metric: settings.gate.metric.clone(),
            tolerance: settings.gate.tolerance,
            window: settings.gate.window,
        },
        drift: fraudlake_drift::DriftOptions {
            drift_share: d
                .drift_share
                .unwrap_or(fraudlake_drift::stats::DATASET_DRIFT_SHARE),
            bins: d.bins.unwrap_or(20),
            columns: d.columns.clone(),
            ..Default::default()
        },
        mlflow: settings.mlflow.clone(),
    })
}

#[derive(Serialize)]
struct ListRow {
    dag: String,
    schedule: String,
    timezone: String,
    tasks: usize,
    paused: bool,
    next_run: String,
    last_run: String,
    last_state: String,
}

#[derive(Serialize)]
struct RunRow {
    run_id: String,
    logical_date: String,
    trigger: String,
    state: String,
    started_at: String,
    seconds: String,
    tasks: String,
    error: String,
}

#[derive(Serialize)]
struct OutcomeRow {
    run_id: String,
    state: String,
    tasks: String,
    error: String,
}

fn outcome_rows(outcomes: &[fraudlake_dag::RunOutcome]) -> Vec<OutcomeRow> {
    outcomes
        .iter()
        .map(|o| OutcomeRow {
            run_id: o.run_id.clone(),
            state: o.state.to_string(),
            tasks: o
                .tasks
                .iter()
                .map(|(t, s)| format!("{t}={s}"))
                .collect::<Vec<_>>()
                .join(" "),
            error: o.error.clone().unwrap_or_default(),
        })
        .collect()
}

pub async fn run(cmd: DagCommand, settings: &Settings) -> Result<u8> {
    match cmd {
        DagCommand::List { dags, format } => {
            let specs = load(&dags)?;
            let lake = settings.open_lake()?;
            let runs = history::runs(&lake, None).await?;
            let rows: Vec<ListRow> = specs
                .iter()
                .map(|d| {
                    let last = runs.iter().rfind(|r| r.dag == d.name);
                    ListRow {
                        dag: d.name.clone(),
                        schedule: d.schedule.expr().to_string(),
                        timezone: d.schedule.timezone().to_string(),
                        tasks: d.tasks.len(),
                        paused: d.paused,
                        next_run: d
                            .next_fire_times(Utc::now(), 1)
                            .first()
                            .map_or_else(String::new, |t| t.to_rfc3339()),
                        last_run: last.map_or_else(String::new, |r| r.logical_date.to_string()),
                        last_state: last.map_or_else(String::new, |r| r.state.to_string()),
                    }
                })
                .collect();
            print_rows(&rows, format)?;
            Ok(0)
        }
        DagCommand::Show {
            name,
            mermaid,
            dags,
        } => {
            let dag = find(load(&dags)?, &name)?;
            if mermaid {
                println!("{}", dag.to_mermaid());
            } else {
                println!("{}", dag.describe());
            }
            Ok(0)
        }
        DagCommand::Run {
            name,
            date,
            dags,
            format,
        } => {
            let dag = find(load(&dags)?, &name)?;
            let day = date.unwrap_or_else(|| Utc::now().date_naive() - Duration::days(1));
            let runner = Runner {
                env: op_env(settings)?,
                metrics: DagMetrics::detached(),
            };
            let outcome = runner
                .run(&dag, &RunRequest::for_day(day, Trigger::Manual))
                .await?;
            print_rows(&outcome_rows(std::slice::from_ref(&outcome)), format)?;
            Ok(if outcome.state == RunState::Success {
                0
            } else {
                exit::FAILURE
            })
        }
        DagCommand::Backfill {
            name,
            from,
            to,
            dags,
            format,
        } => {
            if to < from {
                return Err(crate::bad_input(format!(
                    "--to {to} is before --from {from}"
                )));
            }
            let days = (to - from).num_days() + 1;
            if days > 366 {
                return Err(crate::bad_input(format!(
                    "a backfill of {days} days is more than the 366 allowed at once"
                )));
            }
            let dag = find(load(&dags)?, &name)?;
            let runner = Runner {
                env: op_env(settings)?,
                metrics: DagMetrics::detached(),
            };
            let bar = settings
                .progress
                .then(|| fraudlake_pipeline::progress::bar(days as u64, "backfill"));
            let mut outcomes = Vec::new();
            for i in 0..days {
                let day = from + Duration::days(i);
                outcomes.push(
                    runner
                        .run(&dag, &RunRequest::for_day(day, Trigger::Backfill))
                        .await?,
                );
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            print_rows(&outcome_rows(&outcomes), format)?;
            Ok(if outcomes.iter().all(|o| o.state == RunState::Success) {
                0
            } else {
                exit::FAILURE
            })
        }
        DagCommand::History {
            name,
            limit,
            format,
        } => {
            let lake = settings.open_lake()?;
            let runs = history::runs(&lake, Some(&name)).await?;
            let skip = runs.len().saturating_sub(limit);
            let mut rows = Vec::new();
            for r in runs.into_iter().skip(skip) {
                let tasks = history::tasks(&lake, &r.run_id).await?;
                // The last attempt of each task, in the order they ran.
                let mut last: Vec<(String, fraudlake_dag::TaskState, i32)> = Vec::new();
                for t in tasks {
                    match last.iter_mut().find(|(id, _, _)| *id == t.task) {
                        Some(entry) if t.attempt >= entry.2 => {
                            *entry = (t.task, t.state, t.attempt)
                        }
                        Some(_) => {}
                        None => last.push((t.task, t.state, t.attempt)),
                    }
                }
                rows.push(RunRow {
                    seconds: r.ended_at.map_or_else(String::new, |e| {
                        format!(
                            "{:.1}",
                            (e - r.started_at).num_milliseconds() as f64 / 1000.0
                        )
                    }),
                    tasks: last
                        .iter()
                        .map(|(t, s, a)| {
                            if *a > 1 {
                                format!("{t}={s}(attempt {a})")
                            } else {
                                format!("{t}={s}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    run_id: r.run_id,
                    logical_date: r.logical_date.to_string(),
                    trigger: r.trigger.to_string(),
                    state: r.state.to_string(),
                    started_at: r.started_at.to_rfc3339(),
                    error: r.error.unwrap_or_default(),
                });
            }
            if rows.is_empty() && format == Format::Table {
                println!("no runs of DAG '{name}' in the lake yet");
                return Ok(0);
            }
            print_rows(&rows, format)?;
            Ok(0)
        }
        DagCommand::Logs { run_id, task } => {
            let lake = settings.open_lake()?;
            history::run(&lake, &run_id).await?;
            let tasks = history::tasks(&lake, &run_id).await?;
            let mut shown = 0;
            for t in tasks
                .iter()
                .filter(|t| task.as_deref().is_none_or(|w| w == t.task))
            {
                match &t.log {
                    Some(url) => {
                        println!("== {} attempt {} ({}) ==", t.task, t.attempt, t.state);
                        print!("{}", fraudlake_dag::claim::read_log(&lake, url).await?);
                        shown += 1;
                    }
                    None if t.state.is_finished() => {
                        println!(
                            "== {} ({}) == {}",
                            t.task,
                            t.state,
                            t.output.clone().unwrap_or_default()
                        );
                        shown += 1;
                    }
                    None => {}
                }
            }
            if shown == 0 {
                if let Some(t) = task {
                    return Err(crate::bad_input(format!("run {run_id} has no task '{t}'")));
                }
            }
            Ok(0)
        }
    }
}

/// `fraudlake scheduler`: every DAG on its schedule until SIGTERM/SIGINT.
pub async fn scheduler(a: SchedulerArgs, settings: &Settings) -> Result<u8> {
    let dags = load(&a.dags)?;
    let registry = prometheus::Registry::new();
    let metrics =
        DagMetrics::register(&registry).map_err(|e| anyhow::anyhow!("scheduler metrics: {e}"))?;
    let runner = Runner {
        env: op_env(settings)?,
        metrics,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics_server = match a.metrics_addr {
        Some(addr) => Some(
            fraudlake_dag::metrics::serve(addr, registry.clone(), wait(stop_rx.clone())).await?,
        ),
        None => None,
    };
    tokio::spawn(async move {
        fraudlake_serving::server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    tracing::info!(dags = dags.len(), "scheduler started");
    fraudlake_dag::scheduler::run(runner, dags, wait(stop_rx)).await?;
    if let Some(h) = metrics_server {
        let _ = h.await;
    }
    Ok(0)
}

/// Resolves when the watch turns true (or its sender is gone).
pub async fn wait(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
