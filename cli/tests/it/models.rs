//! Training, evaluation and the registry, through the real binary on a small simulated lake:
//! train -> register -> gate -> promote/rollback/archive -> audit; lineage points at real
//! Delta versions; the model card draws the version's curves; a corrupt artifact is refused;
//! concurrent registrations get distinct versions; the handbook's chapter 5 protocol
//! (`evaluate --protocol prequential`); Python XGBoost loads the artifact and predicts what
//! fraudlake predicts.

use std::collections::HashMap;
use std::process::Command;

use crate::common::{num, python_with_deltalake, repo_root, TempLake};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A small lake with features built (2018-04-01 .. 2018-05-30).
fn lake_with_features() -> TempLake {
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    lake.ok(&["features", "build"]);
    lake
}

const PERIOD: &[&str] = &["--train-start", "2018-05-01", "--threads", "2"];

fn train(lake: &TempLake, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["train", "--format", "json"];
    args.extend_from_slice(PERIOD);
    args.extend_from_slice(extra);
    json(&lake.ok(&args))
}

/// Issue #14: the gate never scores a model on days it was trained on. A candidate trained on
/// the champion's test week used to be judged on that very week and pass.
#[test]
fn the_gate_refuses_to_judge_a_model_on_its_own_training_days() {
    let lake = lake_with_features();
    train(&lake, &[]);
    // Trains 2018-05-12..18: the champion's test week (05-15..21) is partly its training data.
    let leaky = json(&lake.ok(&[
        "train",
        "--format",
        "json",
        "--train-start",
        "2018-05-12",
        "--threads",
        "2",
    ]));
    assert_eq!(leaky["aliases"], serde_json::json!(["challenger"]));
    let refused = lake.run(&["models", "promote", "2", "--format", "json"]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let report = json(&String::from_utf8_lossy(&refused.stdout));
    assert_eq!(report["passed"], false);
    assert!(
        report["candidate_score"].is_null(),
        "nothing was scored: {report}"
    );
    let reason = report["reason"].as_str().expect("reason");
    assert!(reason.contains("no fair gate days"), "{reason}");
    assert!(reason.contains("2018-05-15..2018-05-21"), "{reason}");
    assert!(
        reason.contains("version 2 trained on 2018-05-12..2018-05-18"),
        "{reason}"
    );
    // On the candidate's own test week (unseen by both) both are scored.
    let fair = lake.run(&[
        "models",
        "promote",
        "2",
        "--window",
        "candidate_test",
        "--format",
        "json",
    ]);
    let report = json(&String::from_utf8_lossy(&fair.stdout));
    assert_eq!(report["test_from"], "2018-05-26", "{report}");
    assert!(report["champion_score"].as_f64().is_some(), "{report}");
    assert!(report["candidate_score"].as_f64().is_some(), "{report}");
}

#[test]
fn train_register_gate_promote_rollback_archive() {
    let lake = lake_with_features();

    // 1. The first model becomes champion, with metrics under their names.
    let v1 = train(&lake, &["--note", "first", "--early-stopping-rounds", "10"]);
    assert_eq!(v1["version"], 1);
    let best = v1["best_round"]
        .as_u64()
        .expect("early stopping chose a round");
    assert_eq!(v1["rounds"].as_u64(), Some(best + 1));
    assert_eq!(v1["aliases"], serde_json::json!(["champion"]));
    assert_eq!(v1["periods"]["train_start"], "2018-05-01");
    let auc = v1["metrics"]["auc_roc"].as_f64().expect("auc");
    let ap = v1["metrics"]["average_precision"].as_f64().expect("ap");
    assert!(auc > 0.7 && auc <= 1.0, "AUC {auc}");
    assert!(ap > 0.3 && ap <= 1.0, "AP {ap}");
    assert!(v1["metrics"]["card_precision_at_100"].as_f64().is_some());
    assert!(num(&v1, "train_frauds") > 0.0);

    // 2. Lineage names the exact Delta versions of features and labels.
    let shown = json(&lake.ok(&["models", "show", "champion", "--format", "json"]));
    let tables = shown["lineage"]["tables"]
        .as_array()
        .expect("lineage tables");
    let versions: HashMap<String, i64> = tables
        .iter()
        .map(|t| {
            (
                t["table"].as_str().expect("name").to_string(),
                t["version"].as_i64().expect("v"),
            )
        })
        .collect();
    let listing = json(&lake.ok(&["tables", "--format", "json"]));
    for t in listing.as_array().expect("tables") {
        let name = t["table"].as_str().unwrap_or_default();
        if let Some(v) = versions.get(name) {
            assert_eq!(num(t, "version") as i64, *v, "lineage of {name}");
        }
    }
    assert!(versions.contains_key("features") && versions.contains_key("labels"));
    assert_eq!(
        shown["metric_values"]["average_precision"],
        v1["metrics"]["average_precision"]
    );
    assert!(shown["feature_sql"]
        .as_str()
        .expect("sql")
        .contains("customer_nb_tx_1d"));
    // The curves of its test days, stored with it for the model card.
    let roc = shown["curves"]["roc"].as_array().expect("ROC curve");
    assert!(roc.len() >= 2 && roc.len() <= 200, "{} points", roc.len());
    assert_eq!(roc[0], serde_json::json!([0.0, 0.0]));
    assert_eq!(roc[roc.len() - 1], serde_json::json!([1.0, 1.0]));
    let pr = shown["curves"]["precision_recall"].as_array().expect("PR");
    assert_eq!(pr[0], serde_json::json!([0.0, 1.0]));
    let cp = shown["curves"]["card_precision"].as_array().expect("CP@k");
    assert!(cp.len() >= 2 && cp[0][0] == 1, "{cp:?}");

    // 3. A second, deliberately weak model registers as challenger; the gate refuses it.
    let weak = train(
        &lake,
        &[
            "--n-estimators",
            "1",
            "--max-depth",
            "1",
            "--early-stopping-rounds",
            "0",
            "--note",
            "weak",
        ],
    );
    assert_eq!(weak["version"], 2);
    assert_eq!(weak["aliases"], serde_json::json!(["challenger"]));
    let refused = lake.run(&["models", "promote", "2", "--format", "json"]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "gate must refuse: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let report = json(&String::from_utf8_lossy(&refused.stdout));
    assert_eq!(report["passed"], false);
    assert!(report["candidate_score"].as_f64() < report["champion_score"].as_f64());
    let champ = json(&lake.ok(&["models", "show", "champion", "--format", "json"]));
    assert_eq!(champ["version"], 1);

    // 4. --force needs a reason, then overrides and is recorded.
    let no_reason = lake.run(&["models", "promote", "2", "--force"]);
    assert_eq!(no_reason.status.code(), Some(2));
    lake.ok(&[
        "models",
        "promote",
        "2",
        "--force",
        "--reason",
        "incident drill",
    ]);
    let listed = json(&lake.ok(&["models", "list", "--format", "json"]));
    let aliases_of = |listed: &serde_json::Value, v: i64| -> Vec<String> {
        listed
            .as_array()
            .expect("list")
            .iter()
            .find(|m| m["version"] == v)
            .map(|m| serde_json::from_value(m["aliases"].clone()).expect("aliases"))
            .unwrap_or_default()
    };
    assert_eq!(aliases_of(&listed, 2), ["champion"]);

    // 5. Rollback returns to version 1; the champion cannot be archived; version 2 can.
    let out = lake.ok(&["models", "rollback", "--reason", "drill over"]);
    assert!(out.contains("from version 2 to version 1"), "{out}");
    let archive_champion = lake.run(&["models", "archive", "1"]);
    assert_eq!(archive_champion.status.code(), Some(2));
    lake.ok(&["models", "archive", "2", "--reason", "weak"]);
    let listed = json(&lake.ok(&["models", "list", "--format", "json"]));
    assert_eq!(aliases_of(&listed, 1), ["champion"]);
    assert_eq!(listed[1]["archived"], true);
    let archived_promote = lake.run(&["models", "promote", "2"]);
    assert_eq!(archived_promote.status.code(), Some(2));

    // 6. The audit log has every change, in order, with who and why.
    let events = json(&lake.ok(&["models", "events", "--format", "json"]));
    let actions: Vec<(String, Option<i64>, bool)> = events
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().expect("action").to_string(),
                e["version"].as_i64(),
                e["forced"] == true,
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("promote".to_string(), Some(1), false),
            ("promote".to_string(), Some(2), false),
            ("promote_refused".to_string(), Some(2), false),
            ("promote".to_string(), Some(2), true),
            ("rollback".to_string(), Some(1), false),
            ("archive".to_string(), Some(2), false),
        ]
    );
    assert!(events[3]["reason"]
        .as_str()
        .expect("reason")
        .contains("incident drill"));
    // The registry tables are SQL-queryable like the rest of the lake.
    let rows =
        lake.sql_json("SELECT version, average_precision FROM model_versions ORDER BY version");
    assert_eq!(rows.len(), 2);

    // 7. evaluate scores a stored version on another period; a model card exists.
    let ev = json(&lake.ok(&[
        "evaluate",
        "--model",
        "1",
        "--test-start",
        "2018-05-22",
        "--test-days",
        "5",
        "--format",
        "json",
    ]));
    assert_eq!(ev["test_from"], "2018-05-22");
    assert!(ev["metrics"]["auc_roc"].as_f64().is_some_and(|a| a > 0.5));
    let card = lake.ok(&["models", "show", "1", "--card"]);
    assert!(
        card.contains("Average precision") && card.contains("```sql"),
        "{card}"
    );
    let html =
        std::fs::read_to_string(std::path::Path::new(&lake.lake()).join("models/v1/card.html"))
            .expect("card.html");
    assert!(html.contains("<h2>Curves</h2>"), "{html}");
    assert_eq!(html.matches("<svg").count(), 3, "{html}");
    assert_eq!(html.matches("<polyline points=").count(), 3, "{html}");
    assert!(card.contains("## Curves"), "{card}");
    // The listing leaves the curves to `models show`.
    assert!(listed[0].get("curves").is_none() && listed[0].get("feature_sql").is_some());

    // 8. explain: TreeSHAP contributions of the champion for a fraud of the test period.
    let fraud = lake.sql_json(
        "SELECT f.tx_id FROM features f JOIN labels l ON f.tx_id = l.tx_id \
         WHERE l.is_fraud AND f.tx_date = DATE '2018-05-16' ORDER BY f.tx_id LIMIT 1",
    );
    let tx = num(&fraud[0], "tx_id") as i64;
    let ex = json(&lake.ok(&[
        "explain",
        "--tx-id",
        &tx.to_string(),
        "--top",
        "3",
        "--format",
        "json",
    ]));
    let ex = ex.as_array().expect("rows");
    assert_eq!(ex.len(), 3);
    assert_eq!(ex[0]["tx_id"].as_i64(), Some(tx));
    let c: Vec<f64> = ex
        .iter()
        .map(|r| r["contribution"].as_f64().expect("c").abs())
        .collect();
    assert!(c[0] >= c[1] && c[1] >= c[2] && c[0] > 0.0, "{c:?}");
    let missing = lake.run(&["explain", "--tx-id", "999999999"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn training_parameters_come_from_fraudlake_toml_and_flags_win() {
    let lake = lake_with_features();
    let config = lake.path().join("fraudlake.toml");
    std::fs::write(&config, "[train]\nmax_depth = 2\nn_estimators = 7\n").expect("config");
    let cfg = config.display().to_string();
    let v = json(&lake.ok(&[
        "--config",
        &cfg,
        "train",
        "--format",
        "json",
        "--train-start",
        "2018-05-01",
        "--n-estimators",
        "9",
    ]));
    assert_eq!(v["rounds"], 9, "the flag wins over the file");
    let shown = json(&lake.ok(&["models", "show", "1", "--format", "json"]));
    assert_eq!(
        shown["params"]["max_depth"], 2,
        "the file wins over the default"
    );
    std::fs::write(&config, "[train]\nmax_deep = 2\n").expect("config");
    let out = lake.run(&["--config", &cfg, "train"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_deep"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn corrupt_artifacts_are_refused_and_bad_flags_are_named() {
    let lake = lake_with_features();
    train(
        &lake,
        &["--n-estimators", "5", "--early-stopping-rounds", "0"],
    );
    let shown = json(&lake.ok(&["models", "show", "1", "--format", "json"]));
    let artifact =
        std::path::Path::new(&lake.lake()).join(shown["artifact"].as_str().expect("artifact path"));
    std::fs::write(&artifact, b"{\"learner\": 1}").expect("corrupt it");
    let out = lake.run(&["evaluate", "--model", "1", "--test-start", "2018-05-15"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    std::fs::remove_file(&artifact).expect("remove it");
    let out = lake.run(&["evaluate", "--model", "1", "--test-start", "2018-05-15"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (args, needle) in [
        (vec!["train", "--learning-rate", "0"], "learning_rate"),
        (
            vec!["train", "--train-start", "2017-01-01"],
            "no feature rows",
        ),
        (
            vec!["train", "--folds", "2", "--grid", "depth=3"],
            "unknown XGBoost parameter 'depth'",
        ),
        (vec!["models", "show", "7"], "does not exist"),
        (
            vec!["models", "show", "best"],
            "neither a version number nor an alias",
        ),
        (
            vec!["models", "promote", "1", "--metric", "accuracy"],
            "unknown gate metric",
        ),
    ] {
        let out = lake.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn concurrent_registrations_get_distinct_versions() {
    let lake = lake_with_features();
    let bin = env!("CARGO_BIN_EXE_fraudlake");
    let handles: Vec<_> = (0..3)
        .map(|_| {
            Command::new(bin)
                .current_dir(repo_root())
                .args([
                    "--lake",
                    &lake.lake(),
                    "--quiet",
                    "train",
                    "--format",
                    "json",
                    "--n-estimators",
                    "5",
                ])
                .args(["--early-stopping-rounds", "0"])
                .args(PERIOD)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start")
        })
        .collect();
    let mut versions: Vec<i64> = Vec::new();
    for h in handles {
        let out = h.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        versions.push(
            json(&String::from_utf8_lossy(&out.stdout))["version"]
                .as_i64()
                .expect("version"),
        );
    }
    versions.sort_unstable();
    assert_eq!(versions, vec![1, 2, 3]);
    let listed = json(&lake.ok(&["models", "list", "--format", "json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    let champions = listed
        .as_array()
        .expect("list")
        .iter()
        .filter(|m| {
            m["aliases"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "champion"))
        })
        .count();
    assert_eq!(champions, 1);
}

/// Issue #21: the handbook's chapter 5 protocol in one command. A model per fold, trained and
/// tested on windows one week apart; the folds and mean ± std in JSON, in CSV and in the
/// handbook's table; nothing registered. Each protocol refuses the other's flags by name.
#[test]
fn evaluate_prequential_trains_a_model_per_fold_and_registers_nothing() {
    let lake = lake_with_features();
    let run = |format: &str| {
        lake.ok(&[
            "evaluate",
            "--protocol",
            "prequential",
            "--folds",
            "2",
            "--train-start",
            "2018-05-08",
            "--n-estimators",
            "20",
            "--threads",
            "2",
            "--format",
            format,
        ])
    };
    let r = json(&run("json"));
    assert_eq!(r["protocol"], "prequential", "{r}");
    assert_eq!(r["model"], "xgboost");
    assert_eq!(r["params"]["n_estimators"], 20);
    let folds = r["folds"].as_array().expect("folds");
    assert_eq!(folds.len(), 2, "{r}");
    let days = |f: &serde_json::Value| {
        ["fold", "train_from", "train_to", "test_from", "test_to"].map(|k| f[k].to_string())
    };
    assert_eq!(
        days(&folds[0]),
        [
            "1",
            "\"2018-05-08\"",
            "\"2018-05-14\"",
            "\"2018-05-22\"",
            "\"2018-05-28\""
        ]
    );
    assert_eq!(
        days(&folds[1]),
        [
            "2",
            "\"2018-05-01\"",
            "\"2018-05-07\"",
            "\"2018-05-15\"",
            "\"2018-05-21\""
        ]
    );
    for metric in ["auc_roc", "average_precision", "card_precision_at_100"] {
        let values: Vec<f64> = folds
            .iter()
            .map(|f| f["metrics"][metric].as_f64().expect("a value per fold"))
            .collect();
        assert!(
            values.iter().all(|v| (0.0..=1.0).contains(v)),
            "{metric}: {values:?}"
        );
        let mean = (values[0] + values[1]) / 2.0;
        // The sample standard deviation (n - 1), as the handbook's.
        let std = ((values[0] - mean).powi(2) + (values[1] - mean).powi(2)).sqrt();
        let got = &r[metric];
        assert!(
            (got["mean"].as_f64().expect("mean") - mean).abs() < 1e-12,
            "{metric}: {got}"
        );
        assert!(
            (got["std"].as_f64().expect("std") - std).abs() < 1e-12,
            "{metric}: {got}"
        );
    }
    assert!(
        r["folds"][0]["metrics"]["auc_roc"].as_f64() > Some(0.6),
        "{r}"
    );

    // The handbook's layout: a row per fold, then mean ± std.
    let table = run("table");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert!(
        lines[0].starts_with(
            "prequential validation (Fraud Detection Handbook, chapter 5): 2 folds of 7 days \
             training, 7 delay, 7 test, tested from 2018-05-15 to 2018-05-28; model xgboost"
        ),
        "{table}"
    );
    let columns = [
        "fold",
        "train",
        "test",
        "AUC ROC",
        "Average precision",
        "Card Precision@100",
    ];
    let at: Vec<usize> = columns
        .iter()
        .map(|c| {
            lines[1]
                .find(c)
                .unwrap_or_else(|| panic!("no column {c}: {table}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]) && at[0] == 0, "{table}");
    assert!(lines[2].starts_with("----"), "{table}");
    assert!(lines[3].starts_with("1 ") && lines[3].contains("2018-05-08 .. 2018-05-14"));
    assert!(lines[4].starts_with("2 ") && lines[4].contains("2018-05-15 .. 2018-05-21"));
    assert!(lines[5].starts_with("mean ± std"), "{table}");
    assert_eq!(lines[5].matches(" ± ").count(), 4, "{table}");

    // CSV: full precision, the mean and std rows consistent with the folds.
    let csv = run("csv");
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "fold",
            "train",
            "test",
            "AUC ROC",
            "Average precision",
            "Card Precision@100"
        ]
    );
    assert_eq!(rows.len(), 5, "{csv}");
    assert_eq!((rows[3][0], rows[4][0]), ("mean", "std"), "{csv}");
    let num = |s: &str| s.parse::<f64>().expect("a number");
    for ((mean, a), b) in rows[3][3..6].iter().zip(&rows[1][3..6]).zip(&rows[2][3..6]) {
        assert!((num(mean) - (num(a) + num(b)) / 2.0).abs() < 1e-12, "{csv}");
    }

    // Nothing was registered.
    assert_eq!(
        json(&lake.ok(&["models", "list", "--format", "json"])),
        serde_json::json!([])
    );

    // --help tells the protocols apart.
    let help = lake.ok(&["evaluate", "--help"]);
    for needle in [
        "--protocol holdout",
        "--protocol prequential",
        "chapter 5",
        "--folds",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }

    // Each protocol's flags, refused in the other by name (before any work).
    for (args, needle) in [
        (
            &[
                "evaluate",
                "--protocol",
                "prequential",
                "--test-start",
                "2018-05-22",
            ][..],
            "--test-start: only with --protocol holdout",
        ),
        (
            &["evaluate", "--folds", "2", "--test-start", "2018-05-22"][..],
            "--folds: only with --protocol prequential",
        ),
        (&["evaluate", "--model", "1"][..], "needs --test-start"),
        (
            &[
                "evaluate",
                "--protocol",
                "prequential",
                "--model",
                "champion",
            ][..],
            "names a model family",
        ),
        (
            &[
                "evaluate",
                "--model",
                "xgboost",
                "--test-start",
                "2018-05-22",
            ][..],
            "is a model family",
        ),
    ] {
        let out = lake.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// fraudlake's native scorer on every feature row of `days` (first, last) for the version
/// `shown` (`models show --format json`; either family, by its `model_family`), every 7th row
/// with one feature missing (missing values must follow the same default branch), written to
/// `path` as a CSV of the feature names plus `native` (what tests/python/native_rows.py reads);
/// returns the row count.
pub fn native_predictions_csv(
    lake: &TempLake,
    shown: &serde_json::Value,
    days: (&str, &str),
    path: &std::path::Path,
) -> usize {
    let artifact =
        std::path::Path::new(&lake.lake()).join(shown["artifact"].as_str().expect("artifact"));
    let names: Vec<String> = serde_json::from_value(shown["feature_names"].clone()).expect("names");
    let bytes = std::fs::read(&artifact).expect("artifact");
    let family: fraudlake_model::ModelFamily =
        serde_json::from_value(shown["model_family"].clone()).expect("model_family");
    let model = fraudlake_model::LoadedModel::from_bytes(family, &bytes).expect("model");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let rows = runtime.block_on(async {
        let l = fraudlake_pipeline::Lake::open(&lake.lake()).expect("lake");
        let snap = fraudlake_model::dataset::Snapshot::open(&l, &HashMap::new())
            .await
            .expect("snapshot");
        let sha = shown["feature_set"].as_str().expect("sha").to_string();
        snap.rows(
            &names,
            days.0.parse().expect("d"),
            days.1.parse().expect("d"),
            &sha,
        )
        .await
        .expect("rows")
    });
    let mut csv = String::from(&names.join(","));
    csv.push_str(",native\n");
    for i in 0..rows.len() {
        let mut row = rows.row(i).to_vec();
        if i % 7 == 0 {
            row[i % names.len()] = f64::NAN;
        }
        let p = model.predict(&row).expect("width");
        let cells: Vec<String> = row
            .iter()
            .map(|v| {
                if v.is_nan() {
                    String::new()
                } else {
                    format!("{v:?}")
                }
            })
            .collect();
        csv.push_str(&format!("{},{p:?}\n", cells.join(",")));
    }
    std::fs::write(path, csv).expect("write csv");
    rows.len()
}

#[test]
fn python_xgboost_loads_the_artifact_and_predicts_the_same() {
    let Some(python) = python_with_deltalake() else {
        eprintln!("skipping: no Python with deltalake/xgboost (make venv)");
        return;
    };
    let lake = lake_with_features();
    train(&lake, &[]);
    let shown = json(&lake.ok(&["models", "show", "1", "--format", "json"]));
    let artifact =
        std::path::Path::new(&lake.lake()).join(shown["artifact"].as_str().expect("artifact"));
    let csv_path = lake.path().join("native_predictions.csv");
    let rows = native_predictions_csv(&lake, &shown, ("2018-05-01", "2018-05-30"), &csv_path);
    assert!(rows > 1000);

    let lake_dir = lake.lake();
    let report = crate::common::run_python(
        &python,
        "model_interop.py",
        &[lake_dir.as_ref(), artifact.as_ref(), csv_path.as_ref()],
    );
    assert_eq!(report["rows"].as_u64(), Some(rows as u64));
    assert!(report["missing_values"].as_u64().is_some_and(|m| m > 100));
    let max_diff = report["max_abs_diff"].as_f64().expect("diff");
    assert!(
        max_diff <= 1e-6,
        "Python XGBoost vs fraudlake: max abs diff {max_diff}"
    );
    assert_eq!(report["feature_names"], shown["feature_names"]);
    assert_eq!(report["registry_versions"], serde_json::json!([1]));
}
