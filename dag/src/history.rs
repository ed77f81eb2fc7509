//! The run history in the lake: `dag_runs` and `task_runs` are append-only Delta tables where
//! every state change of a run or task attempt is one row (one commit), and the latest row per
//! id is the current state. Append-only keeps each write a single atomic commit that never
//! conflicts with another writer, and the history of states is kept for free.

use std::sync::Arc;

use crate::error::{Error, Result};
use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, Date32Array, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use fraudlake_pipeline::columns;
use fraudlake_pipeline::lake::tables::{utc_micros, TableDef};
use fraudlake_pipeline::lake::Lake;
use serde::Serialize;

use crate::state::{RunState, TaskState, Trigger};

/// One row per state change of a DAG run; the latest `recorded_at` per `run_id` wins.
pub const DAG_RUNS: TableDef = TableDef {
    name: "dag_runs",
    description: "DAG runs: one row per state change (latest recorded_at per run_id wins)",
    schema: dag_runs_schema,
    partition_by: &[],
};

/// One row per state change of a task attempt; the latest per (run_id, task, attempt) wins.
pub const TASK_RUNS: TableDef = TableDef {
    name: "task_runs",
    description: "task attempts of DAG runs: one row per state change",
    schema: task_runs_schema,
    partition_by: &[],
};

fn dag_runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("dag", DataType::Utf8, false),
        Field::new("logical_date", DataType::Date32, false),
        Field::new("data_interval_start", utc_micros(), false),
        Field::new("data_interval_end", utc_micros(), false),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("started_at", utc_micros(), false),
        Field::new("ended_at", utc_micros(), true),
        Field::new("error", DataType::Utf8, true),
        Field::new("owner", DataType::Utf8, false),
        Field::new("recorded_at", utc_micros(), false),
    ]))
}

fn task_runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("dag", DataType::Utf8, false),
        Field::new("task", DataType::Utf8, false),
        Field::new("op", DataType::Utf8, false),
        Field::new("attempt", DataType::Int32, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("started_at", utc_micros(), true),
        Field::new("ended_at", utc_micros(), true),
        Field::new("error", DataType::Utf8, true),
        Field::new("output", DataType::Utf8, true),
        Field::new("log", DataType::Utf8, true),
        Field::new("recorded_at", utc_micros(), false),
    ]))
}

/// A DAG run's state, as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub dag: String,
    pub logical_date: NaiveDate,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub trigger: Trigger,
    pub state: RunState,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub owner: String,
}

/// A task attempt's state, as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskRecord {
    pub run_id: String,
    pub dag: String,
    pub task: String,
    pub op: String,
    pub attempt: i32,
    pub state: TaskState,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// JSON summary of what the task produced (model version, drift verdict, ...).
    pub output: Option<String>,
    /// Lake URL of the attempt's log file.
    pub log: Option<String>,
}

fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn micros_col(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

/// Appends one state of a run (one commit).
pub async fn record_run(lake: &Lake, r: &RunRecord) -> Result<()> {
    let now = Utc::now();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![r.run_id.as_str()])),
        Arc::new(StringArray::from(vec![r.dag.as_str()])),
        Arc::new(Date32Array::from(vec![columns::day_number(r.logical_date)])),
        micros_col(vec![Some(ts(r.data_interval_start))]),
        micros_col(vec![Some(ts(r.data_interval_end))]),
        Arc::new(StringArray::from(vec![r.trigger.as_str()])),
        Arc::new(StringArray::from(vec![r.state.as_str()])),
        micros_col(vec![Some(ts(r.started_at))]),
        micros_col(vec![r.ended_at.map(ts)]),
        Arc::new(StringArray::from(vec![r.error.as_deref()])),
        Arc::new(StringArray::from(vec![r.owner.as_str()])),
        micros_col(vec![Some(ts(now))]),
    ];
    let batch = RecordBatch::try_new(dag_runs_schema(), cols)?;
    lake.append(&DAG_RUNS, vec![batch], &format!("dag run {}", r.state))
        .await?;
    Ok(())
}

/// Appends one state of a task attempt (one commit).
pub async fn record_task(lake: &Lake, t: &TaskRecord) -> Result<()> {
    let now = Utc::now();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![t.run_id.as_str()])),
        Arc::new(StringArray::from(vec![t.dag.as_str()])),
        Arc::new(StringArray::from(vec![t.task.as_str()])),
        Arc::new(StringArray::from(vec![t.op.as_str()])),
        Arc::new(Int32Array::from(vec![t.attempt])),
        Arc::new(StringArray::from(vec![t.state.as_str()])),
        micros_col(vec![t.started_at.map(ts)]),
        micros_col(vec![t.ended_at.map(ts)]),
        Arc::new(StringArray::from(vec![t.error.as_deref()])),
        Arc::new(StringArray::from(vec![t.output.as_deref()])),
        Arc::new(StringArray::from(vec![t.log.as_deref()])),
        micros_col(vec![Some(ts(now))]),
    ];
    let batch = RecordBatch::try_new(task_runs_schema(), cols)?;
    lake.append(&TASK_RUNS, vec![batch], &format!("task {}", t.state))
        .await?;
    Ok(())
}

fn time(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or_default()
}

fn date(days: i32) -> NaiveDate {
    DateTime::UNIX_EPOCH.date_naive() + chrono::Duration::days(i64::from(days))
}

async fn query(lake: &Lake, def: &TableDef, sql: &str) -> Result<Vec<RecordBatch>> {
    let ctx = lake.session(&[]).await?;
    if !ctx.table_exist(def.name)? {
        return Ok(Vec::new());
    }
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// A state or trigger read back from its string column; a value this version does not know
/// is an error naming the table rather than a guess.
fn stored<T: std::str::FromStr<Err = String>>(table: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|e| Error::invalid(format!("{table}: {e}")))
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The current state of every run of `dag` (all DAGs when `None`), oldest logical date first.
pub async fn runs(lake: &Lake, dag: Option<&str>) -> Result<Vec<RunRecord>> {
    let filter = dag.map_or_else(String::new, |d| format!("WHERE dag = {}", sql_str(d)));
    let sql = format!(
        "SELECT run_id, dag, CAST(logical_date AS INT) AS day, \
           CAST(data_interval_start AS BIGINT) AS interval_start, \
           CAST(data_interval_end AS BIGINT) AS interval_end, \"trigger\", state, \
           CAST(started_at AS BIGINT) AS started_us, CAST(ended_at AS BIGINT) AS ended_us, error, \
           owner \
         FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY recorded_at DESC) AS rn \
               FROM dag_runs {filter}) WHERE rn = 1 ORDER BY day, started_us"
    );
    let mut out = Vec::new();
    for b in query(lake, &DAG_RUNS, &sql).await? {
        let s = |i: usize| columns::utf8(b.column(i));
        let (run_id, dag, trigger, state, error, owner) =
            (s(0)?, s(1)?, s(5)?, s(6)?, s(9)?, s(10)?);
        let day = columns::i32s(b.column(2))?;
        let (dis, die, st, en) = (
            columns::i64s(b.column(3))?,
            columns::i64s(b.column(4))?,
            columns::i64s(b.column(7))?,
            columns::i64s(b.column(8))?,
        );
        for i in 0..b.num_rows() {
            out.push(RunRecord {
                run_id: run_id.value(i).to_string(),
                dag: dag.value(i).to_string(),
                logical_date: date(day.value(i)),
                data_interval_start: time(dis.value(i)),
                data_interval_end: time(die.value(i)),
                trigger: stored("dag_runs", trigger.value(i))?,
                state: stored("dag_runs", state.value(i))?,
                started_at: time(st.value(i)),
                ended_at: (!en.is_null(i)).then(|| time(en.value(i))),
                error: (!error.is_null(i)).then(|| error.value(i).to_string()),
                owner: owner.value(i).to_string(),
            });
        }
    }
    Ok(out)
}

/// The current state of every task attempt of a run, in start order.
pub async fn tasks(lake: &Lake, run_id: &str) -> Result<Vec<TaskRecord>> {
    let sql = format!(
        "SELECT run_id, dag, task, op, attempt, state, CAST(started_at AS BIGINT) AS started_us, \
           CAST(ended_at AS BIGINT) AS ended_us, error, output, log, recorded_at \
         FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY task, attempt ORDER BY recorded_at DESC) \
               AS rn FROM task_runs WHERE run_id = {}) WHERE rn = 1 \
         ORDER BY recorded_at, task, attempt",
        sql_str(run_id)
    );
    let mut out = Vec::new();
    for b in query(lake, &TASK_RUNS, &sql).await? {
        let s = |i: usize| columns::utf8(b.column(i));
        let (run, dag, task, op, state) = (s(0)?, s(1)?, s(2)?, s(3)?, s(5)?);
        let (error, output, log) = (s(8)?, s(9)?, s(10)?);
        let attempt = columns::i32s(b.column(4))?;
        let (st, en) = (columns::i64s(b.column(6))?, columns::i64s(b.column(7))?);
        let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
        for i in 0..b.num_rows() {
            out.push(TaskRecord {
                run_id: run.value(i).to_string(),
                dag: dag.value(i).to_string(),
                task: task.value(i).to_string(),
                op: op.value(i).to_string(),
                attempt: attempt.value(i),
                state: stored("task_runs", state.value(i))?,
                started_at: (!st.is_null(i)).then(|| time(st.value(i))),
                ended_at: (!en.is_null(i)).then(|| time(en.value(i))),
                error: opt(&error, i),
                output: opt(&output, i),
                log: opt(&log, i),
            });
        }
    }
    Ok(out)
}

/// A run by id, or an error naming it.
pub async fn run(lake: &Lake, run_id: &str) -> Result<RunRecord> {
    runs(lake, None)
        .await?
        .into_iter()
        .find(|r| r.run_id == run_id)
        .ok_or_else(|| {
            Error::invalid(format!(
                "no DAG run '{run_id}' in the lake (see `fraudlake dag history NAME`)"
            ))
        })
}
