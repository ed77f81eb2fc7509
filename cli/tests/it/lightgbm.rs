//! The native LightGBM evaluator (model/src/lightgbm/) against LightGBM itself: Python
//! `lightgbm` (tests/python/requirements.txt) trains four small binary models (default missing
//! handling, `zero_as_missing`, `use_missing=false`, a categorical feature), saves them as
//! text, and writes its own `predict` (raw and probability) and `predict(pred_contrib=True)`
//! for 10,000 rows each, built to hit every decision rule (tests/python/lightgbm_fixture.py).
//! fraudlake parses each saved file and must agree on every number within 1e-6.

use std::path::Path;

use fraudlake_model::lightgbm::LightGbmForest;

use crate::common::{python_with, run_python};

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
