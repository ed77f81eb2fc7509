//! The native LightGBM evaluator (model/src/lightgbm/) against LightGBM itself: Python
//! `lightgbm` (tests/python/requirements.txt) trains four small binary models (default missing
//! handling, `zero_as_missing`, `use_missing=false`, a categorical feature), saves them as
//! text, and writes its own `predict` (raw and probability) and `predict(pred_contrib=True)`
//! for 10,000 rows each, built to hit every decision rule (tests/python/lightgbm_fixture.py).
//! fraudlake parses each saved file and must agree on every number within 1e-6.
//!
//! Then a LightGBM model end to end (issue #18): trained in Python on a lake's features
//! (tests/python/lightgbm_import.py), registered with `fraudlake models import`, evaluated,
//! explained, promoted through the gate, served, drift-reported; `/score` must give Python's
//! `predict` and `?explain=true` its `pred_contrib` for the rows it scored.
//!
//! And one trained by fraudlake (`train --model lightgbm`): registered as a LightGBM version,
//! promoted through the gate, served as the native evaluator scores it, and its saved file
//! loaded in Python `lightgbm` predicts what fraudlake does, on served and offline features.

use std::ffi::OsStr;
use std::path::Path;

use fraudlake_model::lightgbm::LightGbmForest;
use fraudlake_model::{LoadedModel, ModelFamily};

use crate::common::{num, python_with, run_python, TempLake};
use crate::serve::{http, lake_with_champion, ts, tx_body, Server};

const TOLERANCE: f64 = 1e-6;

/// One row of a fixture CSV: features, LightGBM's raw score, probability and contributions
/// (one per feature, then the bias).
struct Expected {
    features: Vec<f64>,
    raw: f64,
    prob: f64,
    contrib: Vec<f64>,
}

/// Reads `NAME.csv` (header `f0..,raw,prob,c_f0..,c_bias`; Python float reprs, `nan`/`inf`
/// included, which Rust parses).
fn read_rows(path: &Path, width: usize) -> Vec<Expected> {
    let text = std::fs::read_to_string(path).expect("fixture rows");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(header.len(), 2 * width + 3, "header {header:?}");
    assert_eq!(header[width], "raw");
    lines
        .map(|line| {
            let v: Vec<f64> = line
                .split(',')
                .map(|cell| {
                    cell.parse::<f64>()
                        .unwrap_or_else(|e| panic!("'{cell}': {e}"))
                })
                .collect();
            assert_eq!(v.len(), header.len(), "{line}");
            Expected {
                features: v[..width].to_vec(),
                raw: v[width],
                prob: v[width + 1],
                contrib: v[width + 2..].to_vec(),
            }
        })
        .collect()
}

/// The largest differences (raw, probability, contribution) between fraudlake and LightGBM
/// over `rows`, with the row index of each.
fn worst_differences(forest: &LightGbmForest, rows: &[Expected]) -> [(f64, usize); 3] {
    let mut worst = [(0.0f64, 0usize); 3];
    let mut note = |k: usize, diff: f64, i: usize| {
        // NaN differences must fail too.
        if diff.is_nan() || diff > worst[k].0 {
            worst[k] = (if diff.is_nan() { f64::INFINITY } else { diff }, i);
        }
    };
    for (i, row) in rows.iter().enumerate() {
        let raw = forest.margin(&row.features).expect("row width");
        let prob = forest.predict(&row.features).expect("row width");
        let contrib = forest.contributions(&row.features).expect("row width");
        note(0, (raw - row.raw).abs(), i);
        note(1, (prob - row.prob).abs(), i);
        assert_eq!(contrib.len(), row.contrib.len());
        for (a, b) in contrib.iter().zip(&row.contrib) {
            note(2, (a - b).abs(), i);
        }
        // Contributions add up to the raw score (TreeSHAP's local accuracy).
        let sum: f64 = contrib.iter().sum();
        assert!(
            (sum - raw).abs() <= TOLERANCE,
            "row {i}: contributions sum to {sum}, raw score {raw}"
        );
    }
    worst
}

#[test]
fn native_lightgbm_matches_lightgbm_predict_and_pred_contrib() {
    // Under `make test` and CI a Python without lightgbm fails here rather than skipping.
    let Some(python) = python_with(&["lightgbm", "numpy"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let report = run_python(&python, "lightgbm_fixture.py", &[dir.path().as_os_str()]);
    let models = report["models"].as_object().expect("models");
    assert_eq!(models.len(), 4, "{report}");
    let rows_each = report["rows"].as_u64().expect("rows") as usize;
    assert_eq!(rows_each, 10_000);

    for (name, model) in models {
        let file = dir
            .path()
            .join(model["model"].as_str().expect("model file"));
        let bytes = std::fs::read(&file).expect("model file");
        let forest = LightGbmForest::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(Some(forest.num_trees() as u64), model["trees"].as_u64());
        assert_eq!(forest.feature_names(), ["f0", "f1", "f2", "f3", "f4"]);
        let width = forest.num_features();
        let rows = read_rows(
            &dir.path().join(model["rows"].as_str().expect("rows file")),
            width,
        );
        assert_eq!(rows.len(), rows_each, "{name}");
        // The rows are awkward on purpose: exact thresholds and NaNs in numbers.
        assert!(
            model["cells_on_threshold"].as_u64() > Some(1_000),
            "{name}: {model}"
        );
        assert!(model["nan_cells"].as_u64() > Some(1_000), "{name}: {model}");

        let [(raw, raw_row), (prob, prob_row), (contrib, contrib_row)] =
            worst_differences(&forest, &rows);
        assert!(
            raw <= TOLERANCE,
            "{name}: raw score differs by {raw} on row {raw_row}: {:?}",
            rows[raw_row].features
        );
        assert!(
            prob <= TOLERANCE,
            "{name}: probability differs by {prob} on row {prob_row}: {:?}",
            rows[prob_row].features
        );
        assert!(
            contrib <= TOLERANCE,
            "{name}: a contribution differs by {contrib} on row {contrib_row}: {:?}",
            rows[contrib_row].features
        );
    }

    // Each model exercises what it is there for.
    let splits = |name: &str, kind: &str| models[name]["splits"][kind].as_u64().unwrap_or(0);
    assert!(splits("default", "nan") > 0 && splits("default", "none") > 0);
    assert!(splits("zero_as_missing", "zero") > 0);
    assert!(splits("no_missing", "none") > 0 && splits("no_missing", "nan") == 0);
    assert!(splits("categorical", "categorical") > 0);
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The feature names of a version as `models show --format json` gives it.
fn feature_names(version: &serde_json::Value) -> Vec<String> {
    version["feature_names"]
        .as_array()
        .expect("feature_names")
        .iter()
        .map(|n| n.as_str().expect("name").to_string())
        .collect()
}

/// One `/score?explain=true` answer: the risk, and per feature (model order) its name, value
/// (NaN when the server sent null: missing) and contribution.
struct Served {
    risk: f64,
    names: Vec<String>,
    values: Vec<f64>,
    contributions: Vec<f64>,
}

fn served(answer: &serde_json::Value) -> Served {
    let features = answer["features"].as_array().expect("features");
    Served {
        risk: answer["risk_score"].as_f64().expect("risk_score"),
        names: features
            .iter()
            .map(|f| f["feature"].as_str().expect("feature").to_string())
            .collect(),
        values: features
            .iter()
            .map(|f| f["value"].as_f64().unwrap_or(f64::NAN))
            .collect(),
        contributions: features
            .iter()
            .map(|f| f["contribution"].as_f64().expect("contribution"))
            .collect(),
    }
}

/// The rows as tests/python/lightgbm_import.py reads them: a header of feature names, Rust's
/// shortest round-trip float text, empty cells for missing values.
fn rows_csv(path: &Path, names: &[String], rows: &[Served]) {
    let mut text = names.join(",") + "\n";
    for row in rows {
        let cells: Vec<String> = row
            .values
            .iter()
            .map(|v| {
                if v.is_nan() {
                    String::new()
                } else {
                    v.to_string()
                }
            })
            .collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).expect("rows CSV");
}

/// Scores 24 transactions with `?explain=true` on a server of `lake`, whose champion must be
/// `version` with `trees` trees; returns the answers (each naming the feature set's `names`).
fn score_explained(lake: &TempLake, version: i64, trees: i64, names: &[String]) -> Vec<Served> {
    let server = Server::start(&lake.lake(), &[]);
    let port = server.port;
    let (code, body) = http(port, "GET", "/models/current", &[], b"");
    assert_eq!(code, 200, "{body}");
    let current = json(&body);
    assert_eq!(
        (current["version"].as_i64(), current["trees"].as_i64()),
        (Some(version), Some(trees))
    );
    let mut rows = Vec::new();
    for i in 0..24i64 {
        let amount = if i % 8 == 7 {
            1_850.0
        } else {
            4.5 + 23.75 * i as f64
        };
        let body = tx_body(
            9_300_000 + i,
            &ts(30 * i),
            (i * 13) % 300,
            (i * 29) % 600,
            amount,
        );
        let (code, text) = http(
            port,
            "POST",
            "/score?explain=true",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(code, 200, "{text}");
        let answer = json(&text);
        assert_eq!(answer["model_version"], version, "{answer}");
        let row = served(&answer);
        assert_eq!(row.names, names);
        rows.push(row);
    }
    server.stop();
    rows
}

/// Python LightGBM on the served feature values (`model_file` loaded by `lightgbm.Booster`):
/// the served risk must be its `predict` and each contribution its `pred_contrib`, within
/// 1e-6, and the contributions plus its bias its raw score and the logit of the served risk.
fn assert_served_as_python(
    python: &Path,
    dir: &Path,
    model_file: &Path,
    names: &[String],
    rows: &[Served],
) {
    let csv = dir.join("served.csv");
    rows_csv(&csv, names, rows);
    let args: Vec<&OsStr> = vec![
        OsStr::new("predict"),
        model_file.as_os_str(),
        csv.as_os_str(),
    ];
    let python_says = run_python(python, "lightgbm_import.py", &args);
    assert_eq!(python_says["rows"], rows.len());
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for (i, row) in rows.iter().enumerate() {
        let prob = python_says["probability"][i].as_f64().expect("probability");
        let raw = python_says["raw"][i].as_f64().expect("raw");
        let contrib: Vec<f64> = python_says["contributions"][i]
            .as_array()
            .expect("contributions")
            .iter()
            .map(|c| c.as_f64().expect("number"))
            .collect();
        assert_eq!(contrib.len(), names.len() + 1);
        worst.0 = worst.0.max((row.risk - prob).abs());
        for (a, b) in row.contributions.iter().zip(&contrib) {
            worst.1 = worst.1.max((a - b).abs());
        }
        // The served contributions and the bias add up to the raw score: LightGBM's, and the
        // one behind the served probability.
        let bias = contrib[names.len()];
        let sum = row.contributions.iter().sum::<f64>() + bias;
        let logit = (row.risk / (1.0 - row.risk)).ln();
        worst.2 = worst.2.max((sum - raw).abs()).max((sum - logit).abs());
    }
    assert!(
        worst.0 <= TOLERANCE,
        "served probability vs LightGBM: {}",
        worst.0
    );
    assert!(
        worst.1 <= TOLERANCE,
        "served contribution vs pred_contrib: {}",
        worst.1
    );
    assert!(
        worst.2 <= TOLERANCE,
        "contributions + bias vs raw score: {}",
        worst.2
    );
    // The rows are not all alike: the model's scores spread.
    let (lo, hi) = rows
        .iter()
        .fold((1.0f64, 0.0f64), |(l, h), r| (l.min(r.risk), h.max(r.risk)));
    assert!(hi - lo > 0.01, "scores {lo}..{hi}");
}

/// Runs `fraudlake ARGS` expecting bad input (exit 2); returns stderr.
fn refused(lake: &TempLake, args: &[&str]) -> String {
    let out = lake.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "fraudlake {args:?}: {stderr}");
    stderr
}

#[test]
fn an_imported_lightgbm_model_is_gated_served_and_explained_as_python_lightgbm_predicts() {
    let Some(python) = python_with(&["lightgbm", "numpy", "deltalake", "pyarrow"]) else {
        return;
    };
    // A small lake with features and an XGBoost champion (version 1, trained 2018-05-01..07).
    let lake = lake_with_champion();
    let champion = json(&lake.ok(&["models", "show", "champion", "--format", "json"]));
    let names = feature_names(&champion);
    assert_eq!(champion["model_family"], "xgboost", "{champion}");

    // Python LightGBM trains on the same days, reading the lake with `deltalake`.
    let lake_dir = lake.lake();
    let train = |columns: &[String], out: &str| {
        let out_dir = lake.path().join(out);
        let columns = columns.join(",");
        let args: Vec<&OsStr> = vec![
            OsStr::new("train"),
            OsStr::new(&lake_dir),
            out_dir.as_os_str(),
            OsStr::new(&columns),
            OsStr::new("2018-05-01"),
            OsStr::new("2018-05-07"),
        ];
        run_python(&python, "lightgbm_import.py", &args)
    };
    let trained = train(&names[..], "lightgbm");
    let trees = trained["trees"].as_i64().expect("trees");
    assert!(trees > 10, "{trained}");
    assert!(num(&trained, "frauds") > 0.0, "{trained}");
    let model_txt = trained["model"].as_str().expect("model file").to_string();

    // What cannot be served is refused, with the reason (exit 2).
    let e = refused(
        &lake,
        &[
            "models",
            "import",
            &model_txt,
            "--family",
            "xgboost",
            "--train-start",
            "2018-05-01",
        ],
    );
    assert!(e.contains("--family lightgbm"), "{e}");
    let mut reversed = names.clone();
    reversed.reverse();
    let swapped = train(&reversed[..], "lightgbm-reversed");
    let e = refused(
        &lake,
        &[
            "models",
            "import",
            swapped["model"].as_str().expect("model file"),
            "--family",
            "lightgbm",
            "--train-start",
            "2018-05-01",
        ],
    );
    assert!(e.contains("feature names differ"), "{e}");
    let e = refused(
        &lake,
        &[
            "models",
            "import",
            &model_txt,
            "--family",
            "lightgbm",
            "--train-start",
            "2018-05-01",
            "--feature-set",
            "deadbeef",
        ],
    );
    assert!(e.contains("deadbeef"), "{e}");
    let listed = json(&lake.ok(&["models", "list", "--format", "json"]));
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "nothing registered"
    );

    // Imported: version 2, the challenger, evaluated on its test days, stored as .txt.
    let imported = json(&lake.ok(&[
        "models",
        "import",
        &model_txt,
        "--family",
        "lightgbm",
        "--train-start",
        "2018-05-01",
        "--format",
        "json",
    ]));
    assert_eq!(imported["version"], 2, "{imported}");
    assert_eq!(imported["model_family"], "lightgbm", "{imported}");
    assert_eq!(imported["aliases"], serde_json::json!(["challenger"]));
    assert_eq!(imported["trees"].as_i64(), Some(trees));
    assert_eq!(imported["test_from"], "2018-05-15");
    assert!(
        imported["artifact"]
            .as_str()
            .is_some_and(|a| a.starts_with("models/artifacts/") && a.ends_with(".txt")),
        "{imported}"
    );
    assert!(
        imported["metrics"]["auc_roc"]
            .as_f64()
            .is_some_and(|a| a > 0.5),
        "{imported}"
    );
    let shown = json(&lake.ok(&["models", "show", "2", "--format", "json"]));
    assert_eq!(shown["model_family"], "lightgbm");
    assert_eq!(shown["lineage"]["imported_from"], model_txt.as_str());
    assert_eq!(shown["lineage"]["train_from"], "2018-05-01");
    let card = lake.ok(&["models", "show", "2", "--card"]);
    assert!(
        card.contains("| Model family | lightgbm |") && card.contains("| Imported from |"),
        "{card}"
    );
    let registry = lake
        .sql_json("SELECT version, model_family, artifact FROM model_versions ORDER BY version");
    assert_eq!(registry[0]["model_family"], "xgboost", "{registry:?}");
    assert_eq!(registry[1]["model_family"], "lightgbm", "{registry:?}");
    let artifact = Path::new(&lake.lake()).join(registry[1]["artifact"].as_str().expect("path"));
    assert_eq!(
        std::fs::read(&artifact).expect("artifact"),
        std::fs::read(&model_txt).expect("model file"),
        "the artifact is the file, byte for byte"
    );

    // evaluate and explain take it like any version.
    let ev = json(&lake.ok(&[
        "evaluate",
        "--model",
        "2",
        "--test-start",
        "2018-05-22",
        "--test-days",
        "5",
        "--format",
        "json",
    ]));
    assert!(
        ev["metrics"]["auc_roc"].as_f64().is_some_and(|a| a > 0.5),
        "{ev}"
    );
    let tx = lake.sql_json(
        "SELECT tx_id FROM features WHERE tx_date = DATE '2018-05-16' ORDER BY tx_id LIMIT 1",
    );
    let tx = (num(&tx[0], "tx_id") as i64).to_string();
    let ex = json(&lake.ok(&[
        "explain", "--tx-id", &tx, "--model", "2", "--top", "3", "--format", "json",
    ]));
    let ex = ex.as_array().expect("rows");
    assert_eq!(ex.len(), 3, "{ex:?}");
    let c: Vec<f64> = ex
        .iter()
        .map(|r| r["contribution"].as_f64().expect("c").abs())
        .collect();
    assert!(c[0] >= c[1] && c[1] >= c[2], "{c:?}");

    // The gate scores both families on the champion's test days; forced, since on a lake this
    // small either may come out ahead.
    let gate = json(&lake.ok(&[
        "models",
        "promote",
        "2",
        "--force",
        "--reason",
        "the LightGBM import test",
        "--format",
        "json",
    ]));
    assert_eq!(gate["promoted"], true, "{gate}");
    assert_eq!(gate["test_from"], "2018-05-15", "{gate}");
    assert!(
        gate["candidate_score"].is_number() && gate["champion_score"].is_number(),
        "{gate}"
    );

    // Served: /score is Python's predict, ?explain=true its pred_contrib.
    let rows = score_explained(&lake, 2, trees, &names);
    assert_served_as_python(&python, lake.path(), Path::new(&model_txt), &names, &rows);

    // The lake writer recorded the LightGBM champion's answers; drift scores with it.
    let written = lake.sql_json("SELECT COUNT(*) AS n FROM predictions WHERE model_version = 2");
    assert_eq!(num(&written[0], "n") as usize, rows.len());
    let drift = json(&lake.ok(&[
        "drift",
        "--current",
        "2018-05-22..2018-05-28",
        "--format",
        "json",
        "--no-save",
    ]));
    assert_eq!(drift["model_version"], 2, "{drift}");
    assert_eq!(
        drift["prediction"]["name"], "risk_score (champion, offline)",
        "{drift}"
    );
}

/// A CSV of numbers as `fraudlake sql --out` writes it (a header, an empty cell for a missing
/// value), row-major.
fn numbers_csv(path: &Path, width: usize) -> Vec<f64> {
    let text = std::fs::read_to_string(path).expect("CSV");
    let mut values = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let cells: Vec<f64> = line
            .split(',')
            .map(|cell| {
                if cell.is_empty() {
                    f64::NAN
                } else {
                    cell.parse()
                        .unwrap_or_else(|e| panic!("'{cell}' in {line}: {e}"))
                }
            })
            .collect();
        assert_eq!(cells.len(), width, "{line}");
        values.extend(cells);
    }
    values
}

#[test]
fn a_lightgbm_model_trained_by_fraudlake_is_gated_served_and_predicts_as_python_lightgbm() {
    let Some(python) = python_with(&["lightgbm", "numpy", "deltalake", "pyarrow"]) else {
        return;
    };
    // A small lake with features and an XGBoost champion (version 1, trained 2018-05-01..07).
    let lake = lake_with_champion();
    // `[train]` without `model` is XGBoost's; `--model lightgbm` starts from LightGBM's
    // defaults and keeps the run's settings (seed, threads).
    let config = lake.path().join("fraudlake.toml");
    std::fs::write(&config, "[train]\nthreads = 2\nseed = 3\n").expect("config");
    let cfg = config.display().to_string();
    let train_lightgbm = |extra: &[&str]| {
        let mut args = vec![
            "--config",
            cfg.as_str(),
            "train",
            "--model",
            "lightgbm",
            "--train-start",
            "2018-05-01",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<String>>()
    };

    // An XGBoost parameter is refused for LightGBM, saying whose it is; nothing registered.
    let args = train_lightgbm(&["--max-depth", "4"]);
    let e = refused(&lake, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        e.contains("'max_depth' is a parameter of XGBoost, not of LightGBM"),
        "{e}"
    );

    // Trained and registered: version 2, the challenger, a LightGBM text artifact.
    let args = train_lightgbm(&[]);
    let trained = json(&lake.ok(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(trained["version"], 2, "{trained}");
    assert_eq!(trained["model_family"], "lightgbm", "{trained}");
    assert_eq!(trained["aliases"], serde_json::json!(["challenger"]));
    assert_eq!(trained["rounds"], 300, "LightGBM's default n_estimators");
    assert!(
        trained["metrics"]["auc_roc"]
            .as_f64()
            .is_some_and(|a| a > 0.5),
        "{trained}"
    );
    let shown = json(&lake.ok(&["models", "show", "2", "--format", "json"]));
    assert_eq!(shown["model_family"], "lightgbm", "{shown}");
    let params = &shown["params"];
    assert_eq!(
        (
            params["model"].as_str(),
            params["num_leaves"].as_u64(),
            params["threads"].as_u64(),
            params["seed"].as_u64()
        ),
        (Some("lightgbm"), Some(31), Some(2), Some(3)),
        "{params}"
    );
    assert!(params.get("max_depth").is_none(), "{params}");
    let names = feature_names(&shown);
    let card = lake.ok(&["models", "show", "2", "--card"]);
    assert!(
        card.contains("| Model family | lightgbm |")
            && card.contains("| LightGBM parameters | n_estimators=300, num_leaves=31, "),
        "{card}"
    );
    let registry = lake
        .sql_json("SELECT version, model_family, artifact FROM model_versions ORDER BY version");
    assert_eq!(registry[1]["model_family"], "lightgbm", "{registry:?}");
    let artifact = Path::new(&lake.lake()).join(registry[1]["artifact"].as_str().expect("path"));
    assert!(
        artifact.extension().is_some_and(|e| e == "txt"),
        "{}",
        artifact.display()
    );
    let model = LoadedModel::from_bytes(
        ModelFamily::LightGBM,
        &std::fs::read(&artifact).expect("artifact"),
    )
    .expect("the native evaluator loads it");
    assert_eq!(model.feature_names(), names.as_slice());
    assert_eq!(model.num_trees(), 300);

    // Through the gate, not forced: both families scored on the champion's test days (the
    // tolerance lets either come out ahead on a lake this small).
    let gate = json(&lake.ok(&[
        "models",
        "promote",
        "2",
        "--tolerance",
        "1",
        "--format",
        "json",
    ]));
    assert_eq!(
        (
            gate["passed"].as_bool(),
            gate["forced"].as_bool(),
            gate["promoted"].as_bool()
        ),
        (Some(true), Some(false), Some(true)),
        "{gate}"
    );
    assert_eq!(gate["test_from"], "2018-05-15", "{gate}");
    assert!(
        gate["candidate_score"].is_number() && gate["champion_score"].is_number(),
        "{gate}"
    );

    // Served: /score and ?explain=true are the native evaluator's on the served features, and
    // Python LightGBM's from the saved file.
    let rows = score_explained(&lake, 2, 300, &names);
    for row in &rows {
        let risk = model.predict(&row.values).expect("width");
        assert!(
            (risk - row.risk).abs() <= TOLERANCE,
            "served {} vs LoadedModel {risk}",
            row.risk
        );
        let phi = model.contributions(&row.values).expect("width");
        for (a, b) in phi.iter().zip(&row.contributions) {
            assert!((a - b).abs() <= TOLERANCE, "contribution {b} vs {a}");
        }
    }
    assert_served_as_python(&python, lake.path(), &artifact, &names, &rows);

    // Offline: the test days' feature rows as the lake holds them; Python LightGBM loading the
    // saved file predicts what fraudlake's evaluator does.
    let csv = lake.path().join("features.csv");
    let query = format!(
        "SELECT {} FROM features WHERE tx_date BETWEEN DATE '2018-05-15' AND DATE '2018-05-21' \
         ORDER BY tx_id",
        names.join(", ")
    );
    lake.ok(&["sql", &query, "--out", &csv.display().to_string()]);
    let values = numbers_csv(&csv, names.len());
    let native = model.predict_many(&values);
    assert!(native.len() > 1_000, "{} rows", native.len());
    let args: Vec<&OsStr> = vec![OsStr::new("predict"), artifact.as_os_str(), csv.as_os_str()];
    let python_says = run_python(&python, "lightgbm_import.py", &args);
    let probabilities = python_says["probability"]
        .as_array()
        .expect("probabilities");
    assert_eq!(probabilities.len(), native.len());
    let worst = probabilities
        .iter()
        .zip(&native)
        .map(|(p, n)| (p.as_f64().expect("a probability") - n).abs())
        .fold(
            0.0f64,
            |w, d| if d.is_nan() { f64::INFINITY } else { w.max(d) },
        );
    assert!(
        worst <= TOLERANCE,
        "Python LightGBM vs fraudlake on the feature rows: {worst}"
    );
}
