//! Unit tests of the DAG file loader: every accepted form, every error message, schedules and
//! fire times across DST, graph order and output, the shipped `dags/`.

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone};
use croner::parser::{CronParser, Seconds};
use fraudlake_model::rollout::{PrimaryMetric, Role};
use fraudlake_model::ModelFamily;

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
    assert_eq!(train.op(), OpKind::Train);
    assert!(train.run_if.is_always());
    assert_eq!(train.retry.retries, 0);
    assert_eq!(train.timeout, Duration::from_secs(3600));
    assert_eq!(
        train.args,
        OpArgs::Train(TrainArgs {
            train_days: 7,
            delay_days: 7,
            test_days: 7,
            model: None,
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
        vec![
            "dags/x.toml: name \"Daily-Retrain\" is invalid: use lowercase letters, digits and '_'"
        ]
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
        vec![
            "dags/x.toml: invalid schedule \"0 25 * * *\": Component error: Number out of bounds."
        ]
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
        vec![
            "dags/x.toml: task \"not\": task id is reserved: it is a keyword of run_if conditions"
        ]
    );
    assert!(load(&BASE.replace("\"features\"", "\"_features2\""))
        .task("_features2")
        .is_some());
}

#[test]
fn duplicate_task_ids() {
    let text =
        format!("{BASE}\n[[tasks]]\nid = \"drift\"\nop = \"sql\"\nargs = {{ file = \"a.sql\" }}\n");
    assert_eq!(
        errors(&text),
        vec!["dags/x.toml: task \"drift\": duplicate task id (tasks #2 and #4 in the file)"]
    );
}

#[test]
fn unknown_op_lists_the_valid_ones() {
    assert_eq!(
        errors(&BASE.replace("op = \"train\"", "op = \"trian\"")),
        vec!["dags/x.toml: task \"train\": unknown op \"trian\" (valid ops: ingest, features_build, drift_report, train, evaluate, register, promote, shadow, canary_analysis, mlflow_sync, sql, notify)"]
    );
}

#[test]
fn unknown_args_name_the_key_and_list_valid_keys() {
    assert_eq!(
        arg_errors("train", "{ train_dayz = 3, test_days = 2 }"),
        vec!["dags/x.toml: task \"t\": op train has no arg \"train_dayz\" (valid args: train_days, delay_days, test_days, model, params)"]
    );
    assert_eq!(
        arg_errors("features_build", "{ file = \"x.sql\" }"),
        vec!["dags/x.toml: task \"t\": op features_build has no arg \"file\" (valid args: sql)"]
    );
}

#[test]
fn wrong_arg_types() {
    assert_eq!(
        arg_errors("train", "{ train_days = \"7\" }"),
        vec![
            "dags/x.toml: task \"t\": arg \"train_days\": expected an integer, found string \"7\""
        ]
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
        vec!["dags/x.toml: task \"t\": arg \"force\": expected a boolean, found string \"true\""]
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
            model: None,
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
            "dags/x.toml: task \"t\": arg \"params\": unknown training parameter 'max_dept' (XGBoost: n_estimators, max_depth, learning_rate, subsample, colsample_bytree, scale_pos_weight, min_child_weight, seed, threads, early_stopping_rounds, validation_days; LightGBM: n_estimators, num_leaves, learning_rate, min_data_in_leaf, feature_fraction, bagging_fraction, bagging_freq, is_unbalance, scale_pos_weight, lambda_l2, seed, threads, early_stopping_rounds, validation_days)",
            "dags/x.toml: task \"t\": arg \"params.max_depth\": expected a non-negative integer (or one as a string), found float 4.5",
            "dags/x.toml: task \"t\": arg \"params.seed\": must be at least 0, got -1",
            "dags/x.toml: task \"t\": arg \"params.subsample\": expected a number (or one as a string), found boolean true",
        ]
    );
    // A LightGBM task: LightGBM's parameters, a boolean among them; XGBoost's refused.
    assert_eq!(
        args_of("train", "{ model = \"lightgbm\", params = { num_leaves = 63, is_unbalance = true, bagging_fraction = \"0.7\" } }"),
        OpArgs::Train(TrainArgs {
            train_days: 7,
            delay_days: 7,
            test_days: 7,
            model: Some(ModelFamily::LightGBM),
            params: BTreeMap::from([
                ("bagging_fraction".to_string(), ParamValue::Str("0.7".into())),
                ("is_unbalance".to_string(), ParamValue::Bool(true)),
                ("num_leaves".to_string(), ParamValue::Int(63)),
            ]),
        })
    );
    assert_eq!(
        arg_errors("train", "{ model = \"lightgbm\", params = { max_depth = 4, is_unbalance = 1, num_leaves = \"many\" } }"),
        vec![
            "dags/x.toml: task \"t\": arg \"params.is_unbalance\": expected true or false (or one as a string), found integer 1",
            "dags/x.toml: task \"t\": arg \"params\": 'max_depth' is a parameter of XGBoost, not of LightGBM (the family trained: model = \"lightgbm\"); LightGBM takes n_estimators, num_leaves, learning_rate, min_data_in_leaf, feature_fraction, bagging_fraction, bagging_freq, is_unbalance, scale_pos_weight, lambda_l2, seed, threads, early_stopping_rounds, validation_days",
            "dags/x.toml: task \"t\": arg \"params.num_leaves\": \"many\" is not a non-negative integer",
        ]
    );
    assert_eq!(
        arg_errors("train", "{ model = \"catboost\" }"),
        vec!["dags/x.toml: task \"t\": arg \"model\": unknown model family 'catboost' (known: xgboost, lightgbm)"]
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
        args_of("register", "{ path = \"models/lightgbm.TXT\" }"),
        OpArgs::Register(RegisterArgs {
            path: "models/lightgbm.TXT".into(),
            feature_set: None
        })
    );
    assert_eq!(
        arg_errors("register", "{ path = \"m.ubj\", feature_set = \"\" }"),
        vec![
            "dags/x.toml: task \"t\": arg \"path\": \"m.ubj\" is not a model file fraudlake can register (.json: XGBoost JSON, .txt: LightGBM text)",
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
    assert_eq!(spec.tasks[3].op(), OpKind::Notify);
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
        vec!["dags/x.toml: task \"tell\": arg \"text\": template syntax error at character 8: unexpected end of input, expected end of variable block"]
    );
    assert_eq!(
        errors(&dag("{{ drift dataset }}")),
        vec!["dags/x.toml: task \"tell\": arg \"text\": template syntax error at character 10: unexpected identifier, expected end of variable block"]
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
            "dags/x.toml: task \"a\": unknown op \"trian\" (valid ops: ingest, features_build, drift_report, train, evaluate, register, promote, shadow, canary_analysis, mlflow_sync, sql, notify)",
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
    for op in OpKind::ALL {
        assert_eq!(OpKind::from_name(op.name()), Some(op));
        assert_eq!(op.to_string(), op.name());
    }
    assert_eq!(OpKind::from_name("Train"), None);
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
    assert_eq!(
        names,
        ["canary_rollout", "daily_retrain", "hourly_monitoring"]
    );
    let spec = |name: &str| {
        specs
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no DAG {name}"))
    };

    let daily = spec("daily_retrain");
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

    let hourly = spec("hourly_monitoring");
    assert_eq!(hourly.schedule.six_field(), "0 5 * * * *");
    assert_eq!(
        hourly.next_fire_times(utc(2024, 6, 1, 10, 5, 0), 2),
        vec![utc(2024, 6, 1, 11, 5, 0), utc(2024, 6, 1, 12, 5, 0)]
    );
    assert!(matches!(
        &hourly.tasks[0].args,
        OpArgs::DriftReport(d) if d.current_days == 1 && d.reference == DriftReference::Champion
    ));
    assert!(matches!(&hourly.tasks[1].args, OpArgs::Notify(n) if n.only_on == NotifyOn::Failure));
    assert_eq!(hourly.tasks[1].depends_on, ["drift"]);

    // canary_rollout: after daily_retrain; the canary is judged before the shadow.
    let rollout = spec("canary_rollout");
    assert_eq!(rollout.schedule.six_field(), "0 0 3 * * *");
    let order: Vec<&str> = rollout
        .topological_order()
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(order, ["canary", "shadow", "notify"]);
    assert!(matches!(
        &rollout.tasks[0].args,
        OpArgs::CanaryAnalysis(a) if a.role == Role::Canary && a.apply && a.min_frauds == 50
    ));
    assert!(matches!(
        &rollout.tasks[1].args,
        OpArgs::CanaryAnalysis(a) if a.role == Role::Shadow && a.apply && a.percent == 10.0
    ));
    assert_eq!(rollout.tasks[1].trigger_rule, TriggerRule::NoneFailed);
    assert!(matches!(&rollout.tasks[2].args, OpArgs::Notify(n) if n.only_on == NotifyOn::Always));
}

#[test]
fn canary_analysis_args_default_to_the_design_and_are_checked() {
    let OpArgs::CanaryAnalysis(a) = args_of("canary_analysis", "{}") else {
        panic!("not canary_analysis args");
    };
    assert_eq!(
        a,
        CanaryAnalysisArgs {
            role: Role::Canary,
            apply: false,
            percent: 10.0,
            metric: PrimaryMetric::AveragePrecision,
            k: 100,
            tolerance: 0.02,
            min_frauds: 50,
            confidence: 0.9,
            resamples: 500,
            decline_threshold: 0.8,
            max_false_decline_increase: 0.005,
        }
    );
    let OpArgs::CanaryAnalysis(a) = args_of(
        "canary_analysis",
        "{ role = \"shadow\", apply = true, percent = 2.5, metric = \"card_precision\", tolerance = 0, min_frauds = 20 }",
    ) else {
        panic!("not canary_analysis args");
    };
    assert_eq!(
        (
            a.role,
            a.apply,
            a.percent,
            a.metric,
            a.tolerance,
            a.min_frauds
        ),
        (
            Role::Shadow,
            true,
            2.5,
            PrimaryMetric::CardPrecision,
            0.0,
            20
        )
    );
    let bad = arg_errors(
        "canary_analysis",
        "{ role = \"champion\", metric = \"auc\", percent = 12.345, confidence = 1.0, resamples = 0, threshold = 1 }",
    );
    let text = bad.join("\n");
    assert!(
        text.contains("op canary_analysis has no arg \"threshold\""),
        "{text}"
    );
    assert!(
        text.contains("arg \"role\"") && text.contains("not one of \"canary\", \"shadow\""),
        "{text}"
    );
    assert!(text.contains("unknown canary metric 'auc'"), "{text}");
    // The range checks run once every arg reads.
    let bad = arg_errors(
        "canary_analysis",
        "{ percent = 12.345, confidence = 1.0, resamples = 0 }",
    );
    let text = bad.join("\n");
    for key in ["percent", "confidence", "resamples"] {
        assert!(text.contains(&format!("arg \"{key}\"")), "{key}: {text}");
    }
    assert_eq!(bad.len(), 3, "{text}");
}

#[test]
fn shadow_takes_a_model() {
    assert_eq!(
        args_of("shadow", "{}"),
        OpArgs::Shadow(ShadowArgs {
            model: ModelRef::Candidate
        })
    );
    assert_eq!(
        args_of("shadow", "{ model = 4 }"),
        OpArgs::Shadow(ShadowArgs {
            model: ModelRef::Version(4)
        })
    );
    let bad = arg_errors("shadow", "{ model = \"best\", percent = 10 }");
    assert_eq!(bad.len(), 2, "{bad:?}");
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

#[test]
fn mlflow_sync_takes_a_server_url_and_names_and_nothing_else() {
    use crate::ops::mlflow_sync::MlflowSyncArgs;
    assert_eq!(
        args_of("mlflow_sync", "{}"),
        OpArgs::MlflowSync(MlflowSyncArgs {
            tracking_uri: None,
            registered_model: None,
            experiment: None,
        })
    );
    assert_eq!(
        args_of(
            "mlflow_sync",
            "{ tracking_uri = \"http://127.0.0.1:5000\", registered_model = \"fd\" }"
        ),
        OpArgs::MlflowSync(MlflowSyncArgs {
            tracking_uri: Some("http://127.0.0.1:5000".into()),
            registered_model: Some("fd".into()),
            experiment: None,
        })
    );
    let bad = arg_errors(
        "mlflow_sync",
        "{ tracking_uri = \"file:///tmp/mlruns\", experiment = \" \", token = \"x\" }",
    );
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(
        bad[0].contains("op mlflow_sync has no arg \"token\""),
        "{bad:?}"
    );
    assert!(
        bad.iter()
            .any(|e| e.contains("arg \"tracking_uri\"") && e.contains("not an http://")),
        "{bad:?}"
    );
    assert!(
        bad.iter()
            .any(|e| e.contains("arg \"experiment\": must not be empty")),
        "{bad:?}"
    );
}
