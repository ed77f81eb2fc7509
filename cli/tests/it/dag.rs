//! DAGs end to end: validation refusals, retries against a real (flaky) webhook on loopback,
//! backfill order, the shipped daily DAG on a lake with injected drift (detect, retrain,
//! register, gate), and the cron scheduler: runs on schedule, one lease per lake, recovery of
//! a run a killed process left open, metrics, and `serve --scheduler`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{num, read_with_python, repo_root, wait_until, TempLake};
use crate::serve::{free_port, http};

/// What a daily_retrain run that trained shows, task by task.
pub const EVERY_TASK_SUCCEEDED: [&str; 6] = [
    "features=success",
    "drift=success",
    "train=success",
    "evaluate=success",
    "promote=success",
    "notify=success",
];

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
}

fn dags_dir(lake: &TempLake, files: &[(&str, &str)]) -> PathBuf {
    let dir = lake.path().join("dags");
    std::fs::create_dir_all(&dir).expect("dags dir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("dag file");
    }
    dir
}

pub fn history(lake: &TempLake, dag: &str) -> Vec<serde_json::Value> {
    let v = json(&lake.ok(&["dag", "history", dag, "--format", "json"]));
    v.as_array().cloned().unwrap_or_default()
}

#[test]
fn invalid_dags_are_refused_naming_file_task_and_problem() {
    let lake = TempLake::new();
    let dir = dags_dir(
        &lake,
        &[(
            "loop.toml",
            "schedule = \"0 0 2 * * *\"\n\
             [[tasks]]\nid = \"a\"\nop = \"sql\"\nargs = { file = \"fraud_rate_per_day.sql\" }\ndepends_on = [\"c\"]\n\
             [[tasks]]\nid = \"b\"\nop = \"sql\"\nargs = { file = \"fraud_rate_per_day.sql\" }\ndepends_on = [\"a\"]\n\
             [[tasks]]\nid = \"c\"\nop = \"sql\"\nargs = { file = \"fraud_rate_per_day.sql\" }\ndepends_on = [\"b\"]\n",
        )],
    );
    let d = dir.to_str().expect("path");
    for args in [
        vec!["dag", "list", "--dags", d],
        vec!["scheduler", "--dags", d],
    ] {
        let out = lake.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("loop.toml"), "{err}");
        assert!(err.contains("cycle"), "{err}");
        assert!(err.contains("a -> b -> c -> a"), "{err}");
    }
    std::fs::write(
        dir.join("loop.toml"),
        "schedule = \"not a cron\"\n[[tasks]]\nid = \"a\"\nop = \"teleport\"\n",
    )
    .expect("dag");
    let out = lake.run(&["dag", "list", "--dags", d]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a cron"), "{err}");
    assert!(err.contains("teleport"), "{err}");

    // The shipped DAGs load, show as text and as Mermaid.
    let shipped = repo_root().join("dags");
    let s = shipped.to_str().expect("path");
    let list = json(&lake.ok(&["dag", "list", "--dags", s, "--format", "json"]));
    let names: Vec<&str> = list
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["dag"].as_str())
        .collect();
    assert_eq!(
        names,
        ["canary_rollout", "daily_retrain", "hourly_monitoring"]
    );
    let mermaid = lake.ok(&["dag", "show", "daily_retrain", "--mermaid", "--dags", s]);
    assert!(mermaid.starts_with("flowchart"), "{mermaid}");
    assert!(mermaid.contains("drift"), "{mermaid}");
    let text = lake.ok(&["dag", "show", "daily_retrain", "--dags", s]);
    assert!(text.contains("promote"), "{text}");
    let out = lake.run(&["dag", "show", "nightly", "--dags", s]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("daily_retrain"));
}

/// A webhook on loopback answering 500 to the first `failures` requests, then 200.
fn flaky_webhook(failures: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let count = AtomicUsize::new(0);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().expect("clone"));
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&body).into_owned());
            let n = count.fetch_add(1, Ordering::SeqCst);
            let status = if n < failures {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = s.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .as_bytes(),
            );
        }
    });
    (port, bodies)
}

#[test]
fn a_task_failing_twice_is_retried_to_success_and_backfill_runs_in_order() {
    let lake = TempLake::new();
    lake.simulate_small(&["--days", "35"]);
    let dir = dags_dir(
        &lake,
        &[(
            "flaky.toml",
            "description = \"a webhook that fails twice\"\nschedule = \"0 0 3 * * *\"\n\
             [defaults]\nretries = 2\nretry_backoff_secs = 1\n\
             [[tasks]]\nid = \"count\"\nop = \"sql\"\nargs = { file = \"fraud_rate_per_day.sql\" }\n\
             [[tasks]]\nid = \"tell\"\nop = \"notify\"\ndepends_on = [\"count\"]\n\
             args = { text = \"{{dag}} {{logical_date}}: {{state}}, {{count.rows}} days\", url_env = \"TEST_WEBHOOK\" }\n",
        )],
    );
    let d = dir.to_str().expect("path");
    let (port, bodies) = flaky_webhook(2);
    let url = format!("http://127.0.0.1:{port}/hook");
    let out = lake.run_env(
        &[
            "dag",
            "run",
            "flaky",
            "--date",
            "2018-05-01",
            "--dags",
            d,
            "--format",
            "json",
        ],
        &[("TEST_WEBHOOK", url.as_str())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = history(&lake, "flaky");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["state"], "success");
    assert_eq!(runs[0]["logical_date"], "2018-05-01");
    assert!(
        runs[0]["tasks"]
            .as_str()
            .unwrap_or("")
            .contains("tell=success(attempt 3)"),
        "{}",
        runs[0]
    );
    let got = bodies.lock().expect("lock").clone();
    assert_eq!(got.len(), 3, "two failures then one success: {got:?}");
    assert!(got[2].contains("flaky 2018-05-01: success"), "{got:?}");
    // Each attempt has its log.
    let run_id = runs[0]["run_id"].as_str().expect("run id");
    let logs = lake.ok(&["dag", "logs", run_id, "--task", "tell"]);
    assert_eq!(logs.matches("== tell attempt").count(), 3, "{logs}");
    assert!(logs.contains("answered 500"), "{logs}");

    // Without the webhook's variable the text is logged, not lost; backfill goes in order.
    let out = lake.run(&[
        "dag",
        "backfill",
        "flaky",
        "--from",
        "2018-05-02",
        "--to",
        "2018-05-04",
        "--dags",
        d,
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = history(&lake, "flaky");
    let dates: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["logical_date"].as_str())
        .collect();
    assert_eq!(
        dates,
        ["2018-05-01", "2018-05-02", "2018-05-03", "2018-05-04"]
    );
    let started: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["started_at"].as_str())
        .collect();
    assert!(
        started.windows(2).all(|w| w[0] < w[1]),
        "runs in order: {started:?}"
    );
    assert!(runs.iter().all(|r| r["state"] == "success"));
    assert!(runs.iter().skip(1).all(|r| r["trigger"] == "backfill"));
    // A webhook that never answers: the task's timeout fails it, the run fails, exit 1. The
    // webhook holds every connection until the test ends (`release` dropped), so the run can
    // only end through a timeout, whatever the machine's speed.
    let hang = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hang_url = format!("http://{}/hook", hang.local_addr().expect("addr"));
    let (release, held_until) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        hang.set_nonblocking(true).expect("nonblocking");
        // Accepts until the test drops `release`; Disconnected ends the loop.
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            held_until.recv_timeout(Duration::from_millis(50))
        {
            while let Ok((stream, _)) = hang.accept() {
                held.push(stream);
            }
        }
        drop(held);
    });
    std::fs::write(
        dir.join("slow.toml"),
        "schedule = \"0 0 3 * * *\"\n[[tasks]]\nid = \"tell\"\nop = \"notify\"\n\
         timeout_secs = 1\nargs = { text = \"hello\", url_env = \"TEST_WEBHOOK\" }\n",
    )
    .expect("dag");
    let out = lake.run_env(
        &["dag", "run", "slow", "--date", "2018-05-01", "--dags", d],
        &[("TEST_WEBHOOK", hang_url.as_str())],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No wall-clock bound (a loaded machine may start the process slowly): the run ended while
    // the webhook still held the request, and the error below says that the task's own 1 s
    // timeout ended it, not the HTTP client's 10 s one.
    drop(release);
    let slow = history(&lake, "slow");
    assert_eq!(slow[0]["state"], "failed");
    assert!(
        slow[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("timed out after 1 s"),
        "{}",
        slow[0]
    );

    if let Some(py) = read_with_python(&lake, &["dag_runs", "task_runs"]) {
        // Every state change is a row: 5 runs x (running, finished).
        assert_eq!(num(&py["dag_runs"], "rows"), 10.0);
    }
}

/// The output JSON a task's log ends with (`succeeded: {...}`).
pub fn task_output(log: &str) -> serde_json::Value {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("succeeded: "))
        .unwrap_or_else(|| panic!("no output in the log: {log}"));
    json(line)
}

fn aliases_of(models: &serde_json::Value, version: f64) -> String {
    let v = models
        .as_array()
        .expect("versions")
        .iter()
        .find(|m| num(m, "version") == version)
        .unwrap_or_else(|| panic!("no version {version} in {models}"));
    v["aliases"].to_string()
}

#[test]
fn the_daily_dag_detects_drift_retrains_and_promotes_only_through_the_gate() {
    // Amounts x3 from 2018-05-25; the champion learned on 2018-05-01..07, before the drift.
    let lake = TempLake::new();
    lake.simulate_small(&[
        "--days",
        "75",
        "--drift-from",
        "2018-05-25",
        "--drift-kind",
        "amount-scale",
    ]);
    lake.ok(&["features", "build"]);
    lake.ok(&["train", "--train-start", "2018-05-01", "--threads", "2"]);
    let dags = repo_root().join("dags");
    let d = dags.to_str().expect("path");
    // A quiet Tuesday before the drift (against the champion trained before it): no drift, so
    // no training, and the summary still goes.
    lake.ok(&[
        "dag",
        "run",
        "daily_retrain",
        "--date",
        "2018-05-22",
        "--dags",
        d,
    ]);
    let runs = history(&lake, "daily_retrain");
    let quiet = runs
        .iter()
        .find(|r| r["logical_date"] == "2018-05-22")
        .expect("quiet run");
    let tasks = quiet["tasks"].as_str().unwrap_or("");
    for t in [
        "drift=success",
        "train=skipped",
        "evaluate=skipped",
        "promote=skipped",
        "notify=success",
    ] {
        assert!(tasks.contains(t), "{t} in {tasks}");
    }
    let models = json(&lake.ok(&["models", "list", "--format", "json"]));
    assert_eq!(models.as_array().map(Vec::len), Some(1), "no new version");

    // 2018-06-14: the candidate trains on 2018-05-25..31 (drifted amounts) and both models are
    // judged on its test week, 2018-06-08..14, which neither trained on. The champion still
    // flags every amount over 220 as fraud while most of them are now genuine; the candidate
    // learned the new amounts. So the gate must promote the candidate.
    lake.ok(&[
        "dag",
        "run",
        "daily_retrain",
        "--date",
        "2018-06-14",
        "--dags",
        d,
    ]);
    let runs = history(&lake, "daily_retrain");
    assert_eq!(runs.len(), 2);
    let drifted = runs
        .iter()
        .find(|r| r["logical_date"] == "2018-06-14")
        .expect("drifted run");
    let tasks = drifted["tasks"].as_str().unwrap_or("").to_string();
    for t in EVERY_TASK_SUCCEEDED {
        assert!(tasks.contains(t), "{t} in {tasks}");
    }
    let run_id = drifted["run_id"].as_str().expect("run id").to_string();
    let gate = task_output(&lake.ok(&["dag", "logs", &run_id, "--task", "promote"]));
    eprintln!("gate report: {gate}");
    assert_eq!(gate["candidate"], 2, "{gate}");
    assert_eq!(gate["champion"], 1, "{gate}");
    assert_eq!(gate["test_from"], "2018-06-08", "{gate}");
    assert_eq!(gate["test_to"], "2018-06-14", "{gate}");
    let (cand, champ) = (num(&gate, "candidate_score"), num(&gate, "champion_score"));
    assert!(
        cand > champ + 0.1,
        "on drifted data the retrained model must clearly beat the old champion: {gate}"
    );
    assert_eq!(gate["passed"], true, "{gate}");
    assert_eq!(gate["forced"], false, "{gate}");
    assert_eq!(gate["promoted"], true, "{gate}");
    assert!(
        gate["reason"].as_str().unwrap_or("").starts_with(&format!(
            "average_precision on 2018-06-08..2018-06-14: candidate {cand:.4} vs champion {champ:.4}"
        )),
        "{gate}"
    );
    let models = json(&lake.ok(&["models", "list", "--format", "json"]));
    assert_eq!(models.as_array().map(Vec::len), Some(2), "{models}");
    assert!(aliases_of(&models, 2.0).contains("champion"), "{models}");
    assert!(!aliases_of(&models, 1.0).contains("champion"), "{models}");
    // Trained because the data drifted: the run's drift output says so.
    let drift = task_output(&lake.ok(&["dag", "logs", &run_id, "--task", "drift"]));
    assert!(
        drift["dataset_drift"] == true || drift["prediction_drift"] == true,
        "{drift}"
    );
    assert!(
        drift["drifted_columns"].as_array().is_some_and(|c| c
            .iter()
            .any(|n| n.as_str().unwrap_or("").contains("amount"))),
        "{drift}"
    );
}

#[test]
fn the_daily_dag_bootstraps_a_lake_without_a_champion() {
    let lake = TempLake::new();
    lake.simulate_small(&["--days", "45"]);
    lake.ok(&["features", "build"]);
    let dags = repo_root().join("dags");
    let d = dags.to_str().expect("path");
    // 2018-05-09, a Wednesday: no champion, so no drift reference; the run trains the first
    // model and makes it champion.
    lake.ok(&[
        "dag",
        "run",
        "daily_retrain",
        "--date",
        "2018-05-09",
        "--dags",
        d,
    ]);
    let runs = history(&lake, "daily_retrain");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["state"], "success", "{}", runs[0]);
    let tasks = runs[0]["tasks"].as_str().unwrap_or("");
    for t in [
        "features=success",
        "drift=skipped",
        "train=success",
        "evaluate=success",
        "promote=success",
        "notify=success",
    ] {
        assert!(tasks.contains(t), "{t} in {tasks}");
    }
    let run_id = runs[0]["run_id"].as_str().expect("run id");
    let drift = lake.ok(&["dag", "logs", run_id, "--task", "drift"]);
    assert!(
        drift.contains("run_if is false: has_champion (has_champion = false)"),
        "the skip says why: {drift}"
    );
    // The registry makes the first version of a lake champion when train registers it; the
    // gate then has nothing to decide.
    let gate = task_output(&lake.ok(&["dag", "logs", run_id, "--task", "promote"]));
    assert_eq!(gate["candidate"], 1, "{gate}");
    assert_eq!(
        gate["reason"], "version 1 is already the champion",
        "{gate}"
    );
    let models = json(&lake.ok(&["models", "list", "--format", "json"]));
    assert_eq!(models.as_array().map(Vec::len), Some(1), "{models}");
    assert!(aliases_of(&models, 1.0).contains("champion"), "{models}");

    // The next night there is a champion: drift is measured against it again.
    lake.ok(&[
        "dag",
        "run",
        "daily_retrain",
        "--date",
        "2018-05-10",
        "--dags",
        d,
    ]);
    let runs = history(&lake, "daily_retrain");
    let next = runs
        .iter()
        .find(|r| r["logical_date"] == "2018-05-10")
        .expect("second run");
    assert_eq!(next["state"], "success", "{next}");
    assert!(
        next["tasks"]
            .as_str()
            .unwrap_or("")
            .contains("drift=success"),
        "{next}"
    );
}

/// Asserts from `dag_runs` that no two runs of `dag` for the same logical date overlapped in
/// time: sorted by start, each run of a date began after the previous one ended.
fn assert_runs_never_overlap(lake: &TempLake, dag: &str) {
    let rows = lake.sql_json(&format!(
        "SELECT run_id, CAST(logical_date AS VARCHAR) AS day, \
         CAST(started_at AS BIGINT) AS started, CAST(ended_at AS BIGINT) AS ended \
         FROM dag_runs WHERE dag = '{dag}' AND ended_at IS NOT NULL \
         ORDER BY day, started"
    ));
    assert!(rows.len() >= 2, "finished runs of {dag}: {rows:?}");
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a["day"] != b["day"] {
            continue;
        }
        assert!(
            num(a, "started") <= num(a, "ended"),
            "a run ended before it started: {a}"
        );
        assert!(
            num(b, "started") >= num(a, "ended"),
            "two runs of {dag} for {} overlapped: {a} and {b}",
            a["day"]
        );
    }
}

struct Bg(Option<Child>);

impl Bg {
    fn start(lake: &TempLake, args: &[&str]) -> Bg {
        Bg(Some(
            Command::new(env!("CARGO_BIN_EXE_fraudlake"))
                .current_dir(repo_root())
                .env("FRAUDLAKE_LAKE", lake.lake())
                // A lease far longer than the test: however late a heartbeat comes on a busy
                // machine, the lease cannot lapse and let a second scheduler in. It is released
                // on SIGTERM, so the next scheduler does not wait for it.
                .env("FRAUDLAKE_LEASE_TTL_SECS", "600")
                .env("RUST_LOG", "warn")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start fraudlake"),
        ))
    }

    fn stop(mut self) -> (bool, String) {
        let child = self.0.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().expect("wait");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Writes a `dag_runs` row directly, as a process that stopped would have left it.
fn plant_run(lake: &Path, dag: &str, run_id: &str, state: &str, ended_ago: chrono::Duration) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let lake = fraudlake_pipeline::Lake::open(lake.to_str().expect("path")).expect("lake");
        let at = chrono::Utc::now() - ended_ago;
        fraudlake_dag::history::record_run(
            &lake,
            &fraudlake_dag::history::RunRecord {
                run_id: run_id.into(),
                dag: dag.into(),
                logical_date: at.date_naive(),
                data_interval_start: at - chrono::Duration::hours(1),
                data_interval_end: at,
                trigger: fraudlake_dag::Trigger::Schedule,
                state: state.parse().expect("a run state"),
                started_at: at,
                ended_at: (state != "running").then_some(at),
                error: None,
                owner: "gone-host:1".into(),
            },
        )
        .await
        .expect("plant run");
    });
}

#[test]
fn the_scheduler_fires_on_schedule_holds_one_lease_and_closes_killed_runs() {
    let lake = TempLake::new();
    lake.simulate_small(&["--days", "35"]);
    let dir = dags_dir(
        &lake,
        &[(
            "tick.toml",
            "schedule = \"*/2 * * * * *\"\n[[tasks]]\nid = \"count\"\nop = \"sql\"\n\
             args = { file = \"fraud_rate_per_day.sql\" }\n",
        )],
    );
    let d = dir.to_str().expect("path");
    // What a scheduler killed mid-run leaves: a `running` row and no live claim.
    plant_run(
        Path::new(&lake.lake()),
        "tick",
        "tick__2018-01-01__killed",
        "running",
        chrono::Duration::minutes(5),
    );
    // An hourly DAG with catchup whose last run ended 3 h ago: the missed hours are run.
    std::fs::write(
        dir.join("hourly.toml"),
        "schedule = \"0 0 * * * *\"\ncatchup = true\n[[tasks]]\nid = \"count\"\nop = \"sql\"\n\
         args = { file = \"fraud_rate_per_day.sql\" }\n",
    )
    .expect("dag");
    plant_run(
        Path::new(&lake.lake()),
        "hourly",
        "hourly__before",
        "success",
        chrono::Duration::minutes(181),
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let first = Bg::start(&lake, &["scheduler", "--dags", d, "--metrics-addr", &addr]);
    // Deadlines, not expectations of speed: generous for a loaded 2-core machine.
    wait_until("two scheduled runs", Duration::from_secs(180), || {
        history(&lake, "tick")
            .iter()
            .filter(|r| r["state"] == "success" && r["trigger"] == "schedule")
            .count()
            >= 2
    });
    wait_until("the missed hourly runs", Duration::from_secs(180), || {
        history(&lake, "hourly")
            .iter()
            .filter(|r| r["trigger"] == "catchup" && r["state"] == "success")
            .count()
            >= 3
    });
    let runs = history(&lake, "tick");
    let killed = runs
        .iter()
        .find(|r| r["run_id"] == "tick__2018-01-01__killed")
        .expect("planted run");
    assert_eq!(killed["state"], "failed", "{killed}");
    assert!(killed["error"].as_str().unwrap_or("").contains("stopped"));
    // A run's row is written before its counters move: wait for them rather than read once.
    let metrics = crate::common::wait_until_seen(
        "the scheduler's run metrics",
        Duration::from_secs(60),
        || {
            let (status, metrics) = http(port, "GET", "/metrics", &[], b"");
            let ok = status == 200
                && metrics.contains("fraud_dag_runs_total{dag=\"tick\",state=\"success\"}")
                && metrics.contains("fraud_dag_last_success_timestamp{dag=\"tick\"}");
            (ok, metrics)
        },
    );
    assert!(metrics.contains("fraud_dag_task_duration_seconds_bucket{dag=\"tick\",task=\"count\""));

    // A second scheduler on the same lake refuses to start.
    let second = lake.run(&["scheduler", "--dags", d]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("scheduler lease"), "{err}");

    let (ok, err) = first.stop();
    assert!(ok, "scheduler exit: {err}");
    // Nothing is left running, and no logical date ran twice at once: per date, the
    // [started_at, ended_at] intervals of its runs (from dag_runs) do not overlap.
    let runs = history(&lake, "tick");
    assert!(runs.iter().all(|r| r["state"] != "running"), "{runs:?}");
    assert_runs_never_overlap(&lake, "tick");

    // The single-process default: the server runs the DAGs too and exposes their metrics.
    lake.ok(&["features", "build"]);
    lake.ok(&["train", "--train-start", "2018-04-10", "--threads", "2"]);
    let before = history(&lake, "tick").len();
    let server = crate::serve::Server::start(&lake.lake(), &["--scheduler", "--dags", d]);
    wait_until(
        "a run under serve --scheduler",
        Duration::from_secs(180),
        || history(&lake, "tick").len() > before,
    );
    // A run is counted when it ends, which a loaded machine can delay past its first row:
    // wait for the counter instead of reading it once.
    let mut metrics = String::new();
    wait_until(
        "the run counted on the server's /metrics",
        Duration::from_secs(180),
        || {
            metrics = http(server.port, "GET", "/metrics", &[], b"").1;
            metrics.contains("fraud_dag_runs_total{dag=\"tick\"")
        },
    );
    assert!(metrics.contains("fraud_requests_total") || metrics.contains("fraud_model_info"));
    server.stop();
}
