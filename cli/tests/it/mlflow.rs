//! MLflow interop against a real MLflow tracking server (PyPI `mlflow` of
//! tests/python/requirements.txt, started here on a free loopback port with a SQLite backend and
//! proxied artifacts, stopped by its process group): train, promote, roll back, archive, sync
//! (and sync again: nothing duplicated), then a LightGBM version (`train --model lightgbm`)
//! promoted to champion through the gate and synced; MLflow's own Python client checks the
//! runs, metrics, each run's `MLmodel` flavors, aliases, and that
//! `mlflow.pyfunc.load_model("models:/fraud-detector@champion")` (the LightGBM champion) and
//! the XGBoost version's model predict what fraudlake predicts. A server that is down fails the
//! sync and leaves the lake as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{dependencies_required, file_tail, python_with, repo_root, wait_for, TempLake};
use crate::models::native_predictions_csv;
use crate::serve::{free_port, try_http};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `mlflow` next to the test Python ($FRAUDLAKE_TEST_PYTHON's folder or the repository's
/// `.venv/bin`); as with the other services, absent is a failure under `make test` and CI, a
/// skip elsewhere.
fn mlflow_bin() -> Option<PathBuf> {
    let python = std::env::var_os("FRAUDLAKE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    // Not canonicalized: the venv's `python` is a symlink to the system interpreter.
    let candidate = python.parent().map(|bin| bin.join("mlflow"));
    if let Some(bin) = candidate.as_ref().filter(|p| p.is_file()) {
        return Some(bin.clone());
    }
    let shown = candidate.map_or_else(|| "?".to_string(), |p| p.display().to_string());
    if dependencies_required() {
        panic!(
            "make test and CI must provide MLflow's `mlflow` at {shown} (mlflow in \
             tests/python/requirements.txt: run `make venv`)"
        );
    }
    eprintln!("SKIP: no `mlflow` at {shown} (run `make venv`)");
    None
}

/// `mlflow server` on a free loopback port: SQLite backend store and artifact folder in a temp
/// folder of its own, one worker, no job executor. `mlflow server` runs uvicorn as its child,
/// so it is started in a process group of its own and stopped by that group's id.
pub struct MlflowServer {
    child: Option<Child>,
    /// The process group (the `mlflow` process's PID): what `stop` signals.
    group: Option<u32>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl MlflowServer {
    /// A fresh, empty server; `None` when `mlflow` is absent outside `make test`.
    pub fn start() -> Option<MlflowServer> {
        let bin = mlflow_bin()?;
        let mut last = String::new();
        // A port chosen free can be taken before uvicorn binds it: try again.
        for _ in 0..3 {
            let mut server = MlflowServer {
                child: None,
                group: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("tempdir"),
            };
            match server.spawn_and_wait(&bin) {
                Ok(()) => return Some(server),
                Err(log) => last = log,
            }
        }
        panic!("mlflow server did not start in 3 tries; last: {last}");
    }

    fn spawn_and_wait(&mut self, bin: &Path) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let dir = self.dir.path();
        let log = std::fs::File::create(dir.join("mlflow.log")).expect("log file");
        let child = Command::new(bin)
            .args(["server", "--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--workers", "1", "--backend-store-uri"])
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            // The job executor (huey workers) is for MLflow's GenAI jobs: not needed here.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .env_remove("MLFLOW_TRACKING_URI")
            .current_dir(dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start mlflow server");
        self.group = Some(child.id());
        self.child = Some(child);
        let port = self.port;
        // Migrating a new SQLite store takes ~10 s here; the deadline is generous for a
        // loaded 2-core machine, and the wait ends as soon as /health answers.
        match wait_for(&mut self.child, Duration::from_secs(180), || {
            matches!(try_http(port, "GET", "/health", &[], b""), Ok((200, _)))
        }) {
            Ok(()) => Ok(()),
            Err(Some(status)) => {
                self.stop();
                Err(format!(
                    "mlflow server exited ({status}): {}",
                    self.log_tail()
                ))
            }
            Err(None) => panic!(
                "mlflow server not answering /health on {port} after 180 s: {}",
                self.log_tail()
            ),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM to the server's process group, SIGKILL if it has not exited after 20 s.
    pub fn stop(&mut self) {
        let Some(group) = self.group.take() else {
            return;
        };
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            signal("-KILL");
            let _ = child.wait();
        } else {
            signal("-KILL");
        }
    }

    pub fn log_tail(&self) -> String {
        file_tail(&self.dir.path().join("mlflow.log"), 3000)
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A small lake with features built (2018-04-01 .. 2018-05-30).
fn lake_with_features() -> TempLake {
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    lake.ok(&["features", "build"]);
    lake
}

fn train(lake: &TempLake, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["train", "--format", "json", "--threads", "2"];
    args.extend_from_slice(extra);
    json(&lake.ok(&args))
}

/// Every file of the lake folder with its size: what "the lake did not change" compares.
fn lake_files(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read lake dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.insert(path.display().to_string(), size);
            }
        }
    }
    out
}

#[test]
fn mlflow_sync_mirrors_versions_aliases_and_a_loadable_model() {
    let Some(server) = MlflowServer::start() else {
        return;
    };
    let Some(python) = python_with(&["mlflow", "xgboost", "lightgbm", "pandas"]) else {
        return;
    };
    let url = server.url();
    let lake = lake_with_features();
    let t0 = Instant::now();

    // Two versions; the second is forced to champion, synced, then rolled back.
    train(&lake, &["--train-start", "2018-05-01", "--note", "first"]);
    train(
        &lake,
        &[
            "--train-start",
            "2018-05-02",
            "--n-estimators",
            "30",
            "--max-depth",
            "2",
        ],
    );
    lake.ok(&["models", "promote", "2", "--force", "--reason", "drill"]);
    let first = json(&lake.ok(&["models", "sync", "--mlflow", &url, "--format", "json"]));
    assert_eq!(first["runs_created"], 2, "{first}");
    assert_eq!(first["model_versions_created"], 2, "{first}");
    assert_eq!(first["registered_model"], "fraud-detector");
    let mv_of = |report: &serde_json::Value, v: i64| -> String {
        report["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .find(|s| s["version"] == v)
            .and_then(|s| s["model_version"].as_str())
            .unwrap_or_else(|| panic!("version {v} not in {report}"))
            .to_string()
    };
    assert_eq!(first["aliases"]["champion"], mv_of(&first, 2), "{first}");
    assert!(first["aliases"].get("challenger").is_none(), "{first}");

    // Rollback, then a third version trained with --mlflow: logged as it registers, and the
    // champion alias follows the rollback.
    lake.ok(&["models", "rollback", "--reason", "drill over"]);
    let v3 = train(
        &lake,
        &[
            "--mlflow",
            &url,
            "--train-start",
            "2018-05-03",
            "--n-estimators",
            "40",
        ],
    );
    assert_eq!(v3["version"], 3);
    let logged = &v3["mlflow"];
    assert_eq!(logged["runs_created"], 1, "{logged}");
    assert_eq!(logged["model_versions_created"], 1, "{logged}");
    assert_eq!(logged["aliases"]["champion"], mv_of(&first, 1), "{logged}");
    assert_eq!(
        logged["aliases"]["challenger"],
        mv_of(logged, 3),
        "{logged}"
    );
    let moves: Vec<String> =
        serde_json::from_value(logged["alias_changes"].clone()).expect("moves");
    assert!(
        moves.contains(&format!(
            "champion: {} -> {}",
            mv_of(&first, 2),
            mv_of(&first, 1)
        )),
        "{moves:?}"
    );

    // Archive: the next sync tags the run and the model version, and creates nothing.
    lake.ok(&["models", "archive", "2", "--reason", "weak"]);
    let archived = json(&lake.ok(&["models", "sync", "--mlflow", &url, "--format", "json"]));
    assert_eq!(archived["runs_created"], 0, "{archived}");
    assert_eq!(archived["model_versions_created"], 0, "{archived}");
    assert_eq!(archived["tags_updated"], 2, "{archived}");
    // Sync again: nothing at all to do; the same MLflow versions. The URI from the environment.
    let again = lake
        .command()
        .env("MLFLOW_TRACKING_URI", &url)
        .env_remove("FRAUDLAKE_MLFLOW_TRACKING_URI")
        .args(["models", "sync", "--format", "json"])
        .output()
        .expect("run");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again = json(&String::from_utf8_lossy(&again.stdout));
    for key in ["runs_created", "model_versions_created", "tags_updated"] {
        assert_eq!(again[key], 0, "{key}: {again}");
    }
    assert_eq!(again["alias_changes"], serde_json::json!([]), "{again}");
    assert_eq!(again["versions"], archived["versions"]);
    // The table form names what happened.
    let table = lake.ok(&["models", "sync", "--mlflow", &url]);
    assert!(
        table.contains("0 run(s) and 0 model version(s) created"),
        "{table}"
    );
    // The DAG op: the same sync as a task (nothing left to do, so it changes nothing either).
    let dags = lake.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags dir");
    std::fs::write(
        dags.join("mirror.toml"),
        format!(
            "schedule = \"0 0 3 * * *\"\n[[tasks]]\nid = \"mirror\"\nop = \"mlflow_sync\"\n\
             args = {{ tracking_uri = \"{url}\" }}\n"
        ),
    )
    .expect("dag file");
    let d = dags.display().to_string();
    lake.ok(&["dag", "run", "mirror", "--date", "2018-05-30", "--dags", &d]);
    let runs = json(&lake.ok(&["dag", "history", "mirror", "--format", "json"]));
    assert_eq!(runs[0]["state"], "success", "{runs}");
    let run_id = runs[0]["run_id"].as_str().expect("run id");
    let log = lake.ok(&["dag", "logs", run_id, "--task", "mirror"]);
    assert!(
        log.contains("0 run(s), 0 model version(s) created"),
        "{log}"
    );

    // A LightGBM version on the champion's training days, promoted through the gate (scored
    // beside the XGBoost champion on its test days; the tolerance lets either family win on a
    // lake this small, but both scores must exist and nothing is forced), then synced: a run
    // and a model version with the lightgbm flavor, and the champion alias moves to it.
    let lgbm = train(
        &lake,
        &[
            "--model",
            "lightgbm",
            "--train-start",
            "2018-05-01",
            "--note",
            "lightgbm",
        ],
    );
    assert_eq!(lgbm["version"], 4, "{lgbm}");
    let gate = json(&lake.ok(&[
        "models",
        "promote",
        "4",
        "--tolerance",
        "1",
        "--format",
        "json",
    ]));
    assert_eq!(
        (gate["passed"].as_bool(), gate["forced"].as_bool()),
        (Some(true), Some(false)),
        "{gate}"
    );
    assert_eq!(gate["promoted"], true, "{gate}");
    assert_eq!(gate["champion"], 1, "{gate}");
    assert!(
        gate["candidate_score"].is_number() && gate["champion_score"].is_number(),
        "{gate}"
    );
    let with_lgbm = json(&lake.ok(&["models", "sync", "--mlflow", &url, "--format", "json"]));
    assert_eq!(with_lgbm["runs_created"], 1, "{with_lgbm}");
    assert_eq!(with_lgbm["model_versions_created"], 1, "{with_lgbm}");
    assert_eq!(
        with_lgbm["aliases"]["champion"],
        mv_of(&with_lgbm, 4),
        "{with_lgbm}"
    );
    // Registering version 4 made it the challenger, and its promotion ended that.
    assert!(
        with_lgbm["aliases"].get("challenger").is_none(),
        "{with_lgbm}"
    );
    let moves: Vec<String> =
        serde_json::from_value(with_lgbm["alias_changes"].clone()).expect("moves");
    assert_eq!(
        moves,
        [
            format!("champion: {} -> {}", mv_of(&first, 1), mv_of(&with_lgbm, 4)),
            format!("challenger: {} -> none", mv_of(logged, 3)),
        ],
        "{with_lgbm}"
    );
    let synced = t0.elapsed();

    // What MLflow's own client sees: the LightGBM champion, and the XGBoost version it
    // replaced, each loaded through the registry and scored on the same feature rows.
    let listed = json(&lake.ok(&["models", "list", "--format", "json"]));
    let champion = json(&lake.ok(&["models", "show", "champion", "--format", "json"]));
    assert_eq!(champion["version"], 4);
    assert_eq!(champion["model_family"], "lightgbm", "{champion}");
    let xgboost = json(&lake.ok(&["models", "show", "1", "--format", "json"]));
    assert_eq!(xgboost["model_family"], "xgboost", "{xgboost}");
    let days = ("2018-05-15", "2018-05-30");
    let champion_rows = lake.path().join("champion_rows.csv");
    let rows = native_predictions_csv(&lake, &champion, days, &champion_rows);
    assert!(rows > 1000, "{rows} rows");
    let xgboost_rows = lake.path().join("v1_rows.csv");
    assert_eq!(
        native_predictions_csv(&lake, &xgboost, days, &xgboost_rows),
        rows
    );
    let expect_path = lake.path().join("mlflow_expect.json");
    std::fs::write(
        &expect_path,
        serde_json::json!({
            "registered_model": "fraud-detector",
            "experiment": "fraudlake",
            "versions": listed,
            "champion": 4,
            "challenger": null,
            "loads": [
                {"alias": "champion", "rows": champion_rows.display().to_string()},
                {"version": 1, "rows": xgboost_rows.display().to_string()},
            ],
        })
        .to_string(),
    )
    .expect("expectations");
    let report = crate::common::run_python(
        &python,
        "mlflow_check.py",
        &[url.as_ref(), expect_path.as_ref()],
    );
    eprintln!(
        "mlflow interop: synced in {:.1} s (4 trainings included); MLflow check: {report}",
        synced.as_secs_f64()
    );
    assert_eq!(report["runs"], 4, "{report}");
    assert_eq!(report["model_versions"], 4, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    let loads = report["loads"].as_array().expect("loads");
    assert_eq!(loads.len(), 2, "{report}");
    for (load, (version, class)) in loads
        .iter()
        .zip([(4, "lightgbm.basic.Booster"), (1, "xgboost.core.Booster")])
    {
        assert_eq!(load["version"], version, "{load}");
        assert_eq!(load["flavor_class"], class, "{load}");
        assert_eq!(load["rows"].as_u64(), Some(rows as u64), "{load}");
        assert!(
            load["missing_values"].as_u64().is_some_and(|m| m > 100),
            "{load}"
        );
        let max_diff = load["max_abs_diff"].as_f64().expect("diff");
        assert!(
            max_diff <= 1e-6,
            "mlflow.pyfunc ({}) vs fraudlake: max abs diff {max_diff}",
            load["uri"]
        );
    }
    drop(server);
}

#[test]
fn a_down_mlflow_server_fails_the_sync_and_leaves_the_lake_alone() {
    let lake = lake_with_features();
    train(
        &lake,
        &["--train-start", "2018-05-01", "--n-estimators", "5"],
    );
    let root = PathBuf::from(lake.lake());
    let before = lake_files(&root);
    // Nothing listens on a port just found free.
    let down = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec!["models", "sync", "--mlflow", &down],
        vec![
            "train",
            "--mlflow",
            &down,
            "--train-start",
            "2018-05-02",
            "--n-estimators",
            "5",
        ],
    ] {
        let out = lake.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "cannot reach the MLflow tracking server at {down}"
            )),
            "{args:?}: {err}"
        );
    }
    assert_eq!(lake_files(&root), before, "the lake changed");
    let listed = json(&lake.ok(&["models", "list", "--format", "json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // No URI anywhere, or one that is not a server's URL: bad input, exit 2.
    let none = lake
        .command()
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("FRAUDLAKE_MLFLOW_TRACKING_URI")
        .args(["models", "sync"])
        .output()
        .expect("run");
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("--mlflow URL"));
    let bad = lake.run(&["models", "sync", "--mlflow", "file:///tmp/mlruns"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an http:// or https:// URL"));
    assert_eq!(lake_files(&root), before, "the lake changed");
}
