//! On the real handbook data, when this machine has it (skips otherwise).

use crate::common::{handbook_parquet, num, TempLake};

#[test]
fn handbook_ingest_lands_every_row_once() {
    let Some(file) = handbook_parquet() else {
        return;
    };
    let lake = TempLake::new();
    let file = file.to_str().unwrap();
    let first: Vec<serde_json::Value> = serde_json::from_str(
        &lake.ok(&["ingest", "--preset", "handbook", file, "--output", "json"]),
    )
    .unwrap();
    eprintln!("handbook ingest: {}", first[0]);
    assert_eq!(num(&first[0], "accepted"), 1_754_155.0);
    assert_eq!(num(&first[0], "rejected"), 0.0);
    assert_eq!(num(&first[0], "fraud_labels_added"), 14_681.0);
    let again: Vec<serde_json::Value> = serde_json::from_str(
        &lake.ok(&["ingest", "--preset", "handbook", file, "--output", "json"]),
    )
    .unwrap();
    assert_eq!(num(&again[0], "accepted"), 0.0);
    assert_eq!(num(&again[0], "already_present"), 1_754_155.0);
    assert_eq!(num(&again[0], "labels_added"), 0.0);
    let counts = lake.sql_json(
        "SELECT COUNT(*) AS n, MIN(tx_ts) AS lo, MAX(tx_ts) AS hi, \
                (SELECT SUM(CASE WHEN is_fraud THEN 1 ELSE 0 END) FROM labels) AS frauds, \
                (SELECT COUNT(*) FROM labels WHERE fraud_scenario = 2) AS s2 FROM transactions",
    );
    assert_eq!(num(&counts[0], "n"), 1_754_155.0);
    assert_eq!(num(&counts[0], "frauds"), 14_681.0);
    assert_eq!(num(&counts[0], "s2"), 9_077.0);
    assert_eq!(counts[0]["lo"], "2018-04-01T00:00:31Z");
}

#[test]
fn two_undrifted_handbook_weeks_show_no_dataset_drift() {
    let Some(file) = handbook_parquet() else {
        return;
    };
    let lake = TempLake::new();
    lake.ok(&["ingest", "--preset", "handbook", file.to_str().unwrap()]);
    lake.ok(&["features", "build"]);
    // The ch. 3 training week against two weeks later (what the Evidently peer compares).
    let r: serde_json::Value = serde_json::from_str(&lake.ok(&[
        "drift",
        "--reference",
        "2018-07-25..2018-07-31",
        "--current",
        "2018-08-08..2018-08-14",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(r["dataset_drift"], false, "{r}");
    assert_eq!(num(&r["reference"], "rows"), 67_240.0);
    assert_eq!(num(&r["current"], "rows"), 67_080.0);
    // Evidently 0.7's choices on these columns (see bench section i for the values).
    let method = |name: &str| {
        r["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["method"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(method("tx_amount"), "wasserstein");
    assert_eq!(method("tx_during_weekend"), "jensenshannon");
    assert_eq!(method("terminal_nb_tx_1d"), "jensenshannon");
    assert_eq!(method("terminal_nb_tx_30d"), "wasserstein");
}
