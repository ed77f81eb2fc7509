//! One feature definition, two engines: offline build, online engine, and their parity.

use std::sync::Arc;

use fraudlake_features::online::history;
use fraudlake_features::{compile, feature_rows, FeatureSet, OnlineEngine, Transaction};
use fraudlake_pipeline::Lake;

use crate::common::{num, repo_root, TempLake};

fn parity_json(lake: &TempLake, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["features", "parity", "--format", "json"];
    args.extend_from_slice(extra);
    let out = lake.run(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "parity JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "parity mismatches: {report:#}");
    report
}

#[test]
fn offline_and_online_agree_on_every_row_of_a_simulated_lake() {
    let lake = TempLake::new();
    let sim = lake.simulate_small(&[]);
    let build: Vec<serde_json::Value> =
        serde_json::from_str(&lake.ok(&["features", "build", "--format", "json"])).unwrap();
    assert_eq!(num(&build[0], "rows"), num(&sim, "transactions"));
    let report = parity_json(&lake, &[]);
    assert_eq!(num(&report, "compared_rows"), num(&sim, "transactions"));
    assert_eq!(num(&report, "matching_rows"), num(&sim, "transactions"));
    assert_eq!(report["features"].as_array().unwrap().len(), 15);
    // The counts are real: some terminals had frauds a week earlier.
    let risky = lake.sql_json("SELECT COUNT(*) AS n FROM features WHERE terminal_risk_30d > 0");
    assert!(num(&risky[0], "n") > 0.0);
    let rows = lake.sql_json(
        "SELECT MIN(customer_nb_tx_1d) AS lo, MAX(customer_nb_tx_30d) AS hi FROM features",
    );
    assert_eq!(num(&rows[0], "lo"), 1.0); // the transaction itself is always in its window
    assert!(num(&rows[0], "hi") > 10.0);
    // A sample compares fewer rows but replays all history they need.
    let sample = parity_json(&lake, &["--sample", "500"]);
    assert!(num(&sample, "compared_rows") < num(&report, "compared_rows"));
}

/// Same-timestamp transactions of one entity: both engines order them by tx_id.
#[test]
fn same_timestamp_transactions_follow_tx_id_order_in_both_engines() {
    let lake = TempLake::new();
    let csv = lake.path().join("ties.csv");
    let mut text = String::from("tx_id,tx_ts,customer_id,terminal_id,amount,is_fraud\n");
    // Three transactions of customer 1 at the same second, arriving out of id order.
    text.push_str("12,2018-04-01 10:00:00,1,5,30.0,0\n");
    text.push_str("10,2018-04-01 10:00:00,1,5,10.0,1\n");
    text.push_str("11,2018-04-01 10:00:00,1,5,20.0,0\n");
    // A week later, at the same terminal: the delayed window sees all three, with one fraud.
    text.push_str("20,2018-04-08 12:00:00,2,5,1.0,0\n");
    std::fs::write(&csv, text).unwrap();
    lake.ok(&["ingest", csv.to_str().unwrap()]);
    lake.ok(&["features", "build"]);
    let rows = lake.sql_json(
        "SELECT tx_id, customer_nb_tx_1d AS n, customer_avg_amount_1d AS avg, terminal_nb_tx_1d AS tn, \
                terminal_risk_1d AS risk FROM features ORDER BY tx_id",
    );
    let got: Vec<(f64, f64, f64)> = rows
        .iter()
        .map(|r| (num(r, "tx_id"), num(r, "n"), num(r, "avg")))
        .collect();
    assert_eq!(
        got[..3],
        [(10.0, 1.0, 10.0), (11.0, 2.0, 15.0), (12.0, 3.0, 20.0)]
    );
    assert_eq!(num(&rows[3], "tn"), 3.0);
    assert!((num(&rows[3], "risk") - 1.0 / 3.0).abs() < 1e-12);
    let report = parity_json(&lake, &[]);
    assert_eq!(num(&report, "matching_rows"), 4.0);
}

#[test]
fn adding_a_feature_is_a_sql_edit_only() {
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    let base = std::fs::read_to_string(repo_root().join("sql/features.sql")).unwrap();
    let extended = base.replace(
        "FROM tx_labeled",
        ",\n  MAX(amount) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '3 days' PRECEDING AND CURRENT ROW) AS terminal_max_amount_3d,\n  \
         SUM(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '2 days' PRECEDING AND INTERVAL '1 day' PRECEDING) AS customer_spend_yesterday,\n  \
         CASE WHEN amount > 100 THEN LN(amount) ELSE 0 END AS big_amount_log\nFROM tx_labeled",
    );
    assert_ne!(base, extended);
    let sql = lake.path().join("features_plus.sql");
    std::fs::write(&sql, extended).unwrap();
    let sql = sql.to_str().unwrap();
    let show: Vec<serde_json::Value> =
        serde_json::from_str(&lake.ok(&["features", "show", "--sql", sql, "--format", "json"]))
            .unwrap();
    assert_eq!(show.len(), 18);
    let spend = show
        .iter()
        .find(|f| f["name"] == "customer_spend_yesterday")
        .unwrap();
    assert_eq!(spend["window"], "1d");
    assert_eq!(spend["delay"], "1d");
    assert_eq!(spend["entity"], "customer_id");
    lake.ok(&["features", "build", "--sql", sql]);
    let cols = lake.sql_json(
        "SELECT MAX(terminal_max_amount_3d) AS m, SUM(big_amount_log) AS s FROM features",
    );
    assert!(num(&cols[0], "m") > 0.0 && num(&cols[0], "s") > 0.0);
    let report = parity_json(&lake, &["--sql", sql]);
    assert_eq!(report["features"].as_array().unwrap().len(), 18);
    // The default feature set is a different hash: parity refuses a stale table.
    let stale = lake.run(&["features", "parity"]);
    assert_eq!(stale.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("another feature set"));
}

#[test]
fn constructs_outside_the_online_subset_are_refused_by_name() {
    let lake = TempLake::new();
    let cases = [
        ("COUNT(*) OVER (PARTITION BY customer_id ORDER BY event_time ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS f", "ROWS frames"),
        ("COUNT(*) OVER (PARTITION BY customer_id, terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS f", "PARTITION BY 2"),
        ("COUNT(*) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS f", "UNBOUNDED PRECEDING"),
        ("SUM(is_fraud) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS f", "label leakage"),
        ("COUNT(*) OVER (PARTITION BY customer_id ORDER BY tx_ts RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS f", "ORDER BY event_time"),
        ("STDDEV(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS f", "only COUNT, SUM, AVG, MIN, MAX"),
        ("COUNT(*) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND INTERVAL '1 day' FOLLOWING) AS f", "FOLLOWING"),
    ];
    for (expr, want) in cases {
        let sql = lake.path().join("bad.sql");
        std::fs::write(&sql, format!("SELECT tx_id, tx_ts, {expr} FROM tx_labeled")).unwrap();
        let out = lake.run(&["features", "show", "--sql", sql.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expr}: {err}");
        assert!(
            err.contains(want),
            "{expr}: '{err}' should mention '{want}'"
        );
        assert!(err.contains("feature 'f'"), "names the feature: {err}");
    }
    for (sql_text, want) in [
        ("SELECT a.tx_id, a.tx_ts, b.amount FROM tx_labeled a JOIN tx_labeled b ON a.tx_id = b.tx_id", "joins"),
        ("SELECT tx_id, tx_ts, amount FROM tx_labeled WHERE amount > 10", "one row per transaction"),
        ("SELECT tx_id, nonsense FROM tx_labeled", "nonsense"),
    ] {
        let sql = lake.path().join("bad.sql");
        std::fs::write(&sql, sql_text).unwrap();
        let out = lake.run(&["features", "show", "--sql", sql.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sql_text}: {err}");
        assert!(err.contains(want), "'{err}' should mention '{want}'");
    }
}

#[test]
fn incremental_build_replaces_days_atomically() {
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    lake.ok(&["features", "build"]);
    let before = lake.sql_json("SELECT COUNT(*) AS n, SUM(customer_avg_amount_30d) AS s, SUM(terminal_risk_30d) AS r FROM features");
    let out: Vec<serde_json::Value> = serde_json::from_str(&lake.ok(&[
        "features",
        "build",
        "--from",
        "2018-05-10",
        "--to",
        "2018-05-11",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(out[0]["full_rebuild"], false);
    let day_rows = lake.sql_json("SELECT COUNT(*) AS n FROM transactions WHERE tx_date BETWEEN DATE '2018-05-10' AND DATE '2018-05-11'");
    assert_eq!(num(&out[0], "rows"), num(&day_rows[0], "n"));
    let after = lake.sql_json("SELECT COUNT(*) AS n, SUM(customer_avg_amount_30d) AS s, SUM(terminal_risk_30d) AS r FROM features");
    assert_eq!(num(&after[0], "n"), num(&before[0], "n"));
    assert!((num(&after[0], "s") - num(&before[0], "s")).abs() < 1e-6 * num(&before[0], "s"));
    assert!((num(&after[0], "r") - num(&before[0], "r")).abs() < 1e-9);
    parity_json(&lake, &["--sample", "300"]);
}

/// The offline engine's RANGE window operator against DataFusion's own window operator, on
/// the default features plus MIN/MAX/SUM windows: same values on every row.
#[test]
fn range_window_operator_equals_stock_datafusion() {
    let lake = TempLake::new();
    lake.simulate_small(&["--days", "50"]);
    let base = std::fs::read_to_string(repo_root().join("sql/features.sql")).unwrap();
    let extended = base.replace(
        "FROM tx_labeled",
        ",\n  MIN(amount) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '3 days' PRECEDING AND INTERVAL '1 day' PRECEDING) AS t_min,\n  \
         MAX(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '2 days' PRECEDING AND CURRENT ROW) AS c_max,\n  \
         SUM(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '12 hours' PRECEDING AND CURRENT ROW) AS c_sum\nFROM tx_labeled",
    );
    let sql = lake.path().join("features_wide.sql");
    std::fs::write(&sql, extended).unwrap();
    let sql = sql.to_str().unwrap();
    let query = "SELECT * EXCLUDE (tx_ts, feature_set, tx_date) FROM features ORDER BY tx_id";
    let build = |envs: &[(&str, &str)]| {
        let out = lake.run_env(&["features", "build", "--sql", sql], envs);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lake.sql_json(query)
    };
    let stock = build(&[("FRAUDLAKE_STOCK_WINDOWS", "1")]);
    let ours = build(&[]);
    assert_eq!(stock.len(), ours.len());
    assert!(stock.len() > 1000);
    for (a, b) in stock.iter().zip(&ours) {
        for (key, va) in a.as_object().unwrap() {
            let vb = &b[key];
            match (va.as_f64(), vb.as_f64()) {
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                    "tx {}: {key} stock {x} vs ours {y}",
                    a["tx_id"]
                ),
                _ => assert_eq!(va, vb, "tx {}: {key}", a["tx_id"]),
            }
        }
    }
}

fn tx(id: i64, day: f64, customer: i64, terminal: i64, amount: f64) -> Transaction {
    let start = 1_522_540_800_000_000i64; // 2018-04-01T00:00:00Z
    Transaction {
        tx_id: id,
        tx_ts_us: start + (day * 86_400e6) as i64,
        customer_id: customer,
        terminal_id: terminal,
        amount,
    }
}

async fn default_plan() -> Arc<fraudlake_features::FeaturePlan> {
    let fs = FeatureSet::load(&repo_root().join("sql/features.sql")).unwrap();
    Arc::new(compile(&fs).await.unwrap())
}

fn feature(plan: &fraudlake_features::FeaturePlan, values: &[f64], name: &str) -> f64 {
    let i = plan.feature_names().iter().position(|n| n == name).unwrap();
    values[i]
}

#[tokio::test]
async fn a_late_label_updates_the_terminal_at_the_transaction_time() {
    let plan = default_plan().await;
    let mut engine = OnlineEngine::new(plan.clone());
    engine.apply(&tx(1, 0.0, 1, 9, 10.0)).unwrap();
    engine.apply(&tx(2, 0.2, 2, 9, 10.0)).unwrap();
    // 7.5 days later the 1-day delayed window [t-8d, t-7d] covers both; no label known yet.
    let b = engine.features_for(&tx(3, 7.5, 3, 9, 10.0)).unwrap();
    assert_eq!(feature(&plan, &b, "terminal_nb_tx_1d"), 2.0);
    assert_eq!(feature(&plan, &b, "terminal_risk_1d"), 0.0);
    // The chargeback for tx 1 arrives: the same query now sees one fraud out of two.
    assert!(engine.apply_label(1, true).unwrap());
    let c = engine.features_for(&tx(3, 7.5, 3, 9, 10.0)).unwrap();
    assert_eq!(feature(&plan, &c, "terminal_risk_1d"), 0.5);
    // Customer windows never read labels.
    assert_eq!(
        feature(&plan, &b, "customer_nb_tx_1d"),
        feature(&plan, &c, "customer_nb_tx_1d")
    );
    // A label before its transaction is held until the transaction arrives.
    assert!(!engine.apply_label(50, true).unwrap());
    engine.score_and_apply(&[tx(50, 0.3, 4, 9, 10.0)]).unwrap();
    let d = engine.features_for(&tx(4, 7.6, 3, 9, 10.0)).unwrap();
    assert_eq!(feature(&plan, &d, "terminal_nb_tx_1d"), 3.0);
    assert!((feature(&plan, &d, "terminal_risk_1d") - 2.0 / 3.0).abs() < 1e-12);
    // Scoring the same tx_id twice does not count it twice.
    let once = engine.score_and_apply(&[tx(60, 8.0, 7, 1, 5.0)]).unwrap();
    let twice = engine.score_and_apply(&[tx(60, 8.0, 7, 1, 5.0)]).unwrap();
    assert_eq!(once, twice);
}

#[tokio::test]
async fn state_rebuilt_from_the_lake_equals_state_without_restart() {
    let lake = TempLake::new();
    lake.simulate_small(&["--days", "45"]);
    let plan = default_plan().await;
    let opened = Lake::open(&lake.lake()).unwrap();
    // Without restart: replay all history, labels known.
    let rows = history::load(&opened, None, None).await.unwrap();
    let mut live = OnlineEngine::new(plan.clone());
    for r in &rows {
        if let Some((f, _)) = r.label {
            live.apply_label(r.tx.tx_id, f).unwrap();
        }
        live.score_and_apply(&[r.tx]).unwrap();
    }
    // After restart: bootstrap only the lookback from the lake.
    let mut restarted = OnlineEngine::new(plan.clone());
    let loaded = history::bootstrap(&mut restarted, &opened).await.unwrap();
    assert!(
        loaded > 0 && loaded < rows.len(),
        "bootstrap loads the lookback only ({loaded} of {})",
        rows.len()
    );
    let last = rows.last().unwrap().tx;
    let mut next = Vec::new();
    for i in 0..200 {
        next.push(tx(
            10_000_000 + i,
            0.0,
            i % 300,
            (i * 7) % 600,
            12.0 + i as f64,
        ));
    }
    for t in &mut next {
        t.tx_ts_us = last.tx_ts_us + 1_000_000 * (t.tx_id - 10_000_000 + 1);
    }
    let a = feature_rows(&plan, &live.score_and_apply(&next).unwrap()).unwrap();
    let b = feature_rows(&plan, &restarted.score_and_apply(&next).unwrap()).unwrap();
    // Same values; sums may differ in the last bits (prefix sums over different spans).
    for (ra, rb) in a.iter().zip(&b) {
        for (x, y) in ra.iter().zip(rb) {
            assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{ra:?} vs {rb:?}");
        }
    }
    // Idle entities (no event within the lookback) are swept from both.
    live.evict_expired();
    restarted.evict_expired();
    assert_eq!(live.entities(), restarted.entities());
}
