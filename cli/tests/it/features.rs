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
        ("COUNT(*) OVER (PARTITION BY customer_id, terminal_id, tx_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS f", "PARTITION BY 3 expressions"),
        ("COUNT(*) OVER (ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS f", "PARTITION BY 0 expressions"),
        ("COUNT(*) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS f", "UNBOUNDED PRECEDING"),
        ("SUM(is_fraud) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS f", "label leakage"),
        ("COUNT(*) OVER (PARTITION BY customer_id ORDER BY tx_ts RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS f", "ORDER BY event_time"),
        ("VAR(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS f", "aggregate var (only COUNT, SUM, AVG, MIN, MAX, STDDEV)"),
        ("CAST(tx_ts AS BIGINT) - CAST(LAG(tx_ts) OVER (PARTITION BY customer_id ORDER BY event_time) AS BIGINT) AS f", "LAG reads the entity's previous transaction however long ago"),
        ("ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY event_time) AS f", "row_number numbers the entity's transactions"),
        ("LEAD(amount) OVER (PARTITION BY customer_id ORDER BY event_time) AS f", "LEAD sees the future"),
        ("MAX(event_time) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING) AS f", "use tx_ts (microseconds)"),
        ("COUNT(*) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND INTERVAL '1 day' FOLLOWING) AS f", "FOLLOWING"),
        ("COUNT(DISTINCT terminal_id) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW) AS f", "COUNT(DISTINCT ...): the distinct values of a frame"),
        ("AVG(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '8 days' PRECEDING AND INTERVAL '1 day' PRECEDING) AS f", "ending 1d before the transaction: labels arrive up to 7d after it"),
        ("is_fraud * 2 AS f", "reads is_fraud of the transaction itself (label leakage"),
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
        // Label leakage and windows over windows are found through subqueries too.
        ("SELECT tx_id, tx_ts, f FROM (SELECT tx_id, tx_ts, is_fraud AS f FROM tx_labeled)", "feature 'f': reads is_fraud"),
        ("SELECT tx_id, tx_ts, SUM(n) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS f \
          FROM (SELECT *, COUNT(*) OVER (PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS n FROM tx_labeled)",
         "a window over another window's result"),
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
    let (stock, ours) = stock_and_ours(
        &lake,
        "features_wide.sql",
        &extended,
        "SELECT * EXCLUDE (tx_ts, feature_set, tx_date) FROM features ORDER BY tx_id",
    );
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

/// Builds the features of `sql` (written to `name` in the lake's folder) on DataFusion's stock
/// window operator, then on ours, and returns `query`'s rows after each (same length, over
/// 1000 rows).
fn stock_and_ours(
    lake: &TempLake,
    name: &str,
    sql: &str,
    query: &str,
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let path = lake.path().join(name);
    std::fs::write(&path, sql).unwrap();
    let path = path.to_str().unwrap();
    let build = |envs: &[(&str, &str)]| {
        let out = lake.run_env(&["features", "build", "--sql", path], envs);
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
    (stock, ours)
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

// ---------------------------------------------------------------------------------------------
// The feature language beyond the handbook's 15 (issue #21): each construct is built offline
// (DataFusion through `features build`) and replayed online (`features parity`) on two lakes,
// which must agree on every row: a simulated lake, and a small hand-made one with the awkward
// cases (same-second ties, equal amounts, a long gap, labels arriving days late).

/// Ids of the three transactions customer 1 makes at one second of day 10, on terminal 2
/// (the CSV lists them out of id order).
const TIE_IDS: [i64; 3] = [9001, 9002, 9003];

/// The start of the hand-made lake, 2018-04-01T00:00:00Z, in seconds.
const TIES_START_S: i64 = 1_522_540_800;

fn ts_text(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .expect("a 2018 timestamp")
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A small lake with the cases parity must survive: 4 customers on 6 terminals over 60 days;
/// customer 1 makes three transactions at the same second (ids [`TIE_IDS`], out of order in
/// the file) twice; customer 3 always spends 25.00 (a zero standard deviation); customer 4 is
/// silent from day 6 to day 44 (longer than a 30-day frame); every transaction is labeled, one
/// in seven as fraud, 2 to 9 days after it (later than the 7-day label delay for some).
fn ties_lake() -> TempLake {
    let lake = TempLake::new();
    let mut text = String::from("tx_id,tx_ts,customer_id,terminal_id,amount,is_fraud,labeled_at\n");
    let mut row = |id: i64, at: i64, customer: i64, terminal: i64, amount: f64| {
        let fraud = i64::from(id % 7 == 0);
        let labeled = at + (2 + id % 8) * 86_400 + 3_600 * (id % 5);
        text.push_str(&format!(
            "{id},{},{customer},{terminal},{amount:.2},{fraud},{}\n",
            ts_text(at),
            ts_text(labeled)
        ));
    };
    let mut id = 1;
    for day in 0..60i64 {
        for customer in 1..=4i64 {
            if customer == 4 && (6..45).contains(&day) {
                continue;
            }
            for k in 0..(1 + (day * customer + customer % 2) % 3) {
                let at = TIES_START_S
                    + day * 86_400
                    + ((customer * 3 + k * 5 + day) % 24) * 3_600
                    + ((day * 7 + customer + k) % 60) * 60;
                let terminal = 1 + (customer + k + day / 5) % 6;
                let amount = match customer {
                    3 => 25.0,
                    2 if day == 0 => 0.0,
                    _ => 5.0 + ((id * 37) % 200) as f64 * 0.73,
                };
                row(id, at, customer, terminal, amount);
                id += 1;
            }
        }
        if day == 10 || day == 31 {
            let at = TIES_START_S + day * 86_400 + 13 * 3_600;
            let offset = if day == 10 { 0 } else { 10 };
            for (tie, amount) in [(2, 10.0), (0, 40.0), (1, 40.0)] {
                row(TIE_IDS[tie] + offset, at, 1, 2, amount);
            }
        }
    }
    let csv = lake.path().join("ties.csv");
    std::fs::write(&csv, text).unwrap();
    lake.ok(&["ingest", csv.to_str().unwrap()]);
    lake
}

/// A simulated lake (300 customers, 600 terminals, 45 days).
fn simulated_lake() -> TempLake {
    let lake = TempLake::new();
    lake.simulate_small(&["--days", "45"]);
    lake
}

/// Writes `sql` to `name` in the lake's folder, builds its features offline and checks that the
/// online replay agrees on every row (`features parity` exits 0); returns the report and the
/// file's path.
fn build_and_check_parity(lake: &TempLake, name: &str, sql: &str) -> (serde_json::Value, String) {
    let path = lake.path().join(name);
    std::fs::write(&path, sql).unwrap();
    let path = path.to_str().unwrap().to_string();
    lake.ok(&["features", "build", "--sql", path.as_str()]);
    let report = parity_json(lake, &["--sql", path.as_str()]);
    assert!(num(&report, "compared_rows") > 0.0, "{report:#}");
    assert_eq!(
        num(&report, "compared_rows"),
        num(&report, "matching_rows"),
        "{report:#}"
    );
    (report, path)
}

/// `features show --format json` of a SQL file.
fn show_json(lake: &TempLake, sql: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&lake.ok(&["features", "show", "--sql", sql, "--format", "json"])).unwrap()
}

fn shown<'a>(show: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    show.iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {show:?}"))
}

const CUSTOMER_1D: &str =
    "PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW";
const CUSTOMER_30D: &str =
    "PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW";

/// Expressions over window results in one SELECT: ratios, CASE, COALESCE, windows of two
/// entities in one expression, a label window combined with a count.
fn expressions_sql() -> String {
    format!(
        "SELECT tx_id, tx_ts, customer_id, terminal_id,
           COUNT(*) OVER ({CUSTOMER_1D}) AS n_1d,
           amount / NULLIF(AVG(amount) OVER ({CUSTOMER_30D}), 0) AS amount_vs_usual,
           COUNT(*) OVER ({CUSTOMER_1D}) / NULLIF(COUNT(*) OVER ({CUSTOMER_30D}), 0) AS velocity_int,
           CAST(COUNT(*) OVER ({CUSTOMER_1D}) AS DOUBLE) / NULLIF(COUNT(*) OVER ({CUSTOMER_30D}), 0) AS velocity_change,
           CASE WHEN amount > 2 * AVG(amount) OVER (PARTITION BY customer_id ORDER BY event_time
                     RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW) THEN 1
                WHEN COUNT(*) OVER ({CUSTOMER_1D}) > 2 THEN 2
                ELSE 0 END AS unusual,
           COALESCE(SUM(amount) OVER (PARTITION BY terminal_id ORDER BY event_time
                      RANGE BETWEEN INTERVAL '2 days' PRECEDING AND INTERVAL '1 day' PRECEDING)
                    / COUNT(*) OVER ({CUSTOMER_1D}), -1) AS terminal_spend_per_customer_tx,
           COALESCE(AVG(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time
                      RANGE BETWEEN INTERVAL '14 days' PRECEDING AND INTERVAL '7 days' PRECEDING), 0)
             * COUNT(*) OVER (PARTITION BY terminal_id ORDER BY event_time
                      RANGE BETWEEN INTERVAL '14 days' PRECEDING AND INTERVAL '7 days' PRECEDING) AS terminal_frauds_7d
         FROM tx_labeled"
    )
}

#[test]
fn expressions_over_window_results_agree_offline_and_online() {
    let sql = expressions_sql();
    let sim = simulated_lake();
    let (report, _) = build_and_check_parity(&sim, "expressions.sql", &sql);
    assert_eq!(report["features"].as_array().unwrap().len(), 7);
    let spread = sim.sql_json(
        "SELECT MIN(velocity_change) AS lo, MAX(velocity_change) AS hi, \
                SUM(CASE WHEN unusual = 1 THEN 1 ELSE 0 END) AS big, \
                MAX(terminal_frauds_7d) AS frauds FROM features",
    );
    assert!(num(&spread[0], "lo") > 0.0 && num(&spread[0], "hi") <= 1.0);
    assert!(num(&spread[0], "big") > 0.0 && num(&spread[0], "frauds") >= 0.5);

    let lake = ties_lake();
    let (_, path) = build_and_check_parity(&lake, "expressions.sql", &sql);
    // Customer 3 always spends the same: every amount is its usual amount.
    let same = lake.sql_json(
        "SELECT MIN(amount_vs_usual) AS lo, MAX(amount_vs_usual) AS hi FROM features \
         WHERE customer_id = 3",
    );
    assert_eq!((num(&same[0], "lo"), num(&same[0], "hi")), (1.0, 1.0));
    // Same-second ties count in tx_id order: each sees the ones with smaller ids.
    let ties = lake.sql_json(&format!(
        "SELECT tx_id, n_1d FROM features WHERE tx_id IN ({}, {}, {}) ORDER BY tx_id",
        TIE_IDS[0], TIE_IDS[1], TIE_IDS[2]
    ));
    assert_eq!(ties.len(), 3, "{ties:?}");
    let n: Vec<f64> = ties.iter().map(|r| num(r, "n_1d")).collect();
    assert_eq!((n[1] - n[0], n[2] - n[0]), (1.0, 2.0), "{ties:?}");
    // How `features show` reads an expression over two windows.
    let show = show_json(&lake, &path);
    let v = shown(&show, "velocity_change");
    assert_eq!(v["kind"], "expr(count, count)");
    assert_eq!(v["entity"], "customer_id");
    // One frame per window read, in plan order (DataFusion's order of the two counts).
    let frames = v["window"].as_str().unwrap_or_default();
    assert!(frames == "1d, 30d" || frames == "30d, 1d", "{frames}");
    assert_eq!(v["delay"], "0d, 0d");
    let mixed = shown(&show, "terminal_spend_per_customer_tx")["entity"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        mixed == "terminal_id; customer_id" || mixed == "customer_id; terminal_id",
        "{mixed}"
    );
    assert_eq!(shown(&show, "amount_vs_usual")["kind"], "avg");
}

const CUSTOMER_7D: &str =
    "PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW";
/// The terminal's week before yesterday: a frame that ends before the transaction.
const TERMINAL_PREV_WEEK: &str =
    "PARTITION BY terminal_id ORDER BY event_time RANGE BETWEEN INTERVAL '8 days' PRECEDING AND INTERVAL '1 day' PRECEDING";

/// MIN, MAX and STDDEV over RANGE frames (ending at the row, or before it), of amounts, of a
/// label a delay back, and of tx_ts (a timestamp).
fn extremes_sql() -> String {
    format!(
        "SELECT tx_id, tx_ts, customer_id, terminal_id,
           MIN(amount) OVER ({CUSTOMER_7D}) AS customer_min_7d,
           MAX(amount) OVER ({CUSTOMER_7D}) AS customer_max_7d,
           (amount - MIN(amount) OVER ({CUSTOMER_7D}))
             / NULLIF(MAX(amount) OVER ({CUSTOMER_7D}) - MIN(amount) OVER ({CUSTOMER_7D}), 0)
             AS amount_in_7d_range,
           STDDEV(amount) OVER ({CUSTOMER_30D}) AS customer_std_30d,
           amount / NULLIF(STDDEV(amount) OVER ({CUSTOMER_30D}), 0) AS amount_over_std,
           STDDEV(amount) OVER ({TERMINAL_PREV_WEEK}) AS terminal_std_prev_week,
           MIN(amount) OVER ({TERMINAL_PREV_WEEK}) AS terminal_min_prev_week,
           CAST(MAX(tx_ts) OVER ({TERMINAL_PREV_WEEK}) AS BIGINT) AS terminal_last_us,
           MAX(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time
             RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '7 days' PRECEDING)
             AS terminal_had_fraud
         FROM tx_labeled"
    )
}

#[test]
fn min_max_stddev_over_range_frames_agree_offline_and_online() {
    let sql = extremes_sql();
    let sim = simulated_lake();
    let (report, path) = build_and_check_parity(&sim, "extremes.sql", &sql);
    assert_eq!(report["features"].as_array().unwrap().len(), 9);
    let sane = sim.sql_json(
        "SELECT COUNT(*) AS n, \
           SUM(CASE WHEN customer_min_7d <= customer_max_7d THEN 1 ELSE 0 END) AS ordered, \
           COUNT(customer_std_30d) AS with_std, MAX(terminal_had_fraud) AS fraud, \
           SUM(CASE WHEN terminal_last_us <= CAST(tx_ts AS BIGINT) - 86400000000 THEN 1 ELSE 0 END) \
             AS before_yesterday, COUNT(terminal_last_us) AS with_last \
         FROM features",
    );
    let r = &sane[0];
    assert_eq!(num(r, "ordered"), num(r, "n"));
    assert!(num(r, "with_std") > 0.5 * num(r, "n"), "{r}");
    assert_eq!(num(r, "fraud"), 1.0);
    assert_eq!(num(r, "before_yesterday"), num(r, "with_last"));
    assert!(num(r, "with_last") > 0.0);
    let show = show_json(&sim, &path);
    assert_eq!(shown(&show, "customer_std_30d")["kind"], "stddev");
    assert_eq!(shown(&show, "customer_std_30d")["per_tx"], "O(n in frame)");
    assert_eq!(shown(&show, "terminal_last_us")["kind"], "max");
    assert_eq!(shown(&show, "terminal_last_us")["delay"], "1d");

    let lake = ties_lake();
    build_and_check_parity(&lake, "extremes.sql", &sql);
    // Customer 3 always pays 25.00: no spread, and no z-like ratio (NULLIF of a zero).
    let flat = lake.sql_json(
        "SELECT MAX(customer_std_30d) AS s, COUNT(customer_std_30d) AS n, \
                COUNT(amount_over_std) AS ratios FROM features WHERE customer_id = 3",
    );
    assert_eq!(num(&flat[0], "s"), 0.0);
    assert!(num(&flat[0], "n") > 10.0);
    assert_eq!(num(&flat[0], "ratios"), 0.0);
    // The same-second ties (40.00, 40.00, 10.00 in id order) each see the earlier ones.
    let ties = lake.sql_json(&format!(
        "SELECT tx_id, customer_min_7d AS lo, customer_max_7d AS hi FROM features \
         WHERE tx_id IN ({}, {}, {}) ORDER BY tx_id",
        TIE_IDS[0], TIE_IDS[1], TIE_IDS[2]
    ));
    assert!(
        num(&ties[1], "hi") >= 40.0 && num(&ties[2], "lo") <= 10.0,
        "{ties:?}"
    );
}

/// STDDEV offline is `compile::sample_stddev` over the frame (two passes); stock DataFusion keeps a
/// sliding Welford state, adding and retracting values, whose rounding from values long gone
/// stays in it. They agree within that rounding: variances within 1e-9 of the frame's largest
/// squared amount, and at least 99 % of values within the parity tolerance (1e-9 relative,
/// absolute below 1) outright. Stock may even give NaN (a retraction leaving a tiny negative
/// sum of squares) where the true value is 0. MIN/MAX of tx_ts are integers: equal.
#[test]
fn stddev_and_timestamp_extremes_equal_stock_datafusion() {
    let lake = TempLake::new();
    lake.simulate_small(&["--days", "50"]);
    let sql = format!(
        "SELECT tx_id, tx_ts, customer_id, terminal_id,
           STDDEV(amount) OVER ({CUSTOMER_30D}) AS c_std,
           MAX(ABS(amount)) OVER ({CUSTOMER_30D}) AS c_scale,
           STDDEV(amount) OVER ({TERMINAL_PREV_WEEK}) AS t_std,
           MAX(ABS(amount)) OVER ({TERMINAL_PREV_WEEK}) AS t_scale,
           CAST(MAX(tx_ts) OVER ({TERMINAL_PREV_WEEK}) AS BIGINT) AS t_last_us,
           CAST(MIN(tx_ts) OVER ({CUSTOMER_30D}) AS BIGINT) AS c_first_us
         FROM tx_labeled"
    );
    let (stock, ours) = stock_and_ours(
        &lake,
        "stddev.sql",
        &sql,
        "SELECT tx_id, CASE WHEN isnan(c_std) THEN -1 ELSE c_std END AS c_std, c_scale, \
                CASE WHEN isnan(t_std) THEN -1 ELSE t_std END AS t_std, t_scale, \
                t_last_us, c_first_us \
         FROM features ORDER BY tx_id",
    );
    let (mut compared, mut outright) = (0usize, 0usize);
    for (a, b) in stock.iter().zip(&ours) {
        for key in ["t_last_us", "c_first_us", "c_scale", "t_scale"] {
            assert_eq!(a[key], b[key], "tx {}: {key}", a["tx_id"]);
        }
        for (col, scale) in [("c_std", "c_scale"), ("t_std", "t_scale")] {
            let (x, y) = match (a[col].as_f64(), b[col].as_f64()) {
                (None, None) => continue,
                (Some(x), Some(y)) => (x, y),
                (x, y) => panic!("tx {}: {col} stock {x:?} vs ours {y:?}", a["tx_id"]),
            };
            let scale = b[scale].as_f64().unwrap_or(0.0).max(1.0);
            compared += 1;
            if x == -1.0 {
                // Stock NaN: ours must be (nearly) zero.
                assert!(
                    y <= 1e-4 * scale,
                    "tx {}: {col} stock NaN vs {y}",
                    a["tx_id"]
                );
                continue;
            }
            assert!(
                (x * x - y * y).abs() <= 1e-9 * scale * scale,
                "tx {}: {col} stock {x} vs ours {y}",
                a["tx_id"]
            );
            if (x - y).abs() <= 1e-9 * x.abs().max(1.0) {
                outright += 1;
            }
        }
    }
    assert!(compared > 1000, "{compared}");
    assert!(
        outright as f64 >= 0.99 * compared as f64,
        "{outright} of {compared} within the parity tolerance"
    );
}

/// The customer's transactions of the last 30 days before this one (a frame that ends one
/// nanosecond before the row: a same-instant peer that came first is in it, the row is not).
const CUSTOMER_PREVIOUS: &str = "PARTITION BY customer_id ORDER BY event_time \
     RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING";

/// The time since the entity's previous transaction, in the forms sql/features.sql's header
/// documents (LAG is refused: see `constructs_outside_the_online_subset_are_refused_by_name`).
fn since_sql() -> String {
    format!(
        "SELECT tx_id, tx_ts, customer_id, terminal_id,
           (CAST(tx_ts AS BIGINT) - CAST(MAX(tx_ts) OVER ({CUSTOMER_PREVIOUS}) AS BIGINT))
             / 1000000.0 AS secs_since_prev,
           date_part('epoch', tx_ts) - date_part('epoch', MAX(tx_ts) OVER ({CUSTOMER_PREVIOUS}))
             AS secs_since_prev_epoch,
           COALESCE((CAST(tx_ts AS BIGINT) - CAST(MAX(tx_ts) OVER ({CUSTOMER_PREVIOUS}) AS BIGINT))
             / 1000000.0, 2592000.0) AS secs_since_prev_capped,
           (CAST(tx_ts AS BIGINT) - CAST(MAX(tx_ts) OVER (PARTITION BY terminal_id ORDER BY event_time
              RANGE BETWEEN INTERVAL '7 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING) AS BIGINT))
             / 1000000.0 AS terminal_idle_secs,
           CAST(tx_ts AS BIGINT)
             - CAST(MAX(CASE WHEN amount > 100 THEN tx_ts END) OVER ({CUSTOMER_PREVIOUS}) AS BIGINT)
             AS us_since_big
         FROM tx_labeled"
    )
}

#[test]
fn time_since_the_previous_transaction_agrees_offline_and_online() {
    let sql = since_sql();
    let sim = simulated_lake();
    let (report, path) = build_and_check_parity(&sim, "since.sql", &sql);
    assert_eq!(report["features"].as_array().unwrap().len(), 5);
    let rows = sim.sql_json(
        "SELECT COUNT(*) AS n, COUNT(secs_since_prev) AS known, \
           SUM(CASE WHEN secs_since_prev > 0 AND secs_since_prev <= 2592000 THEN 1 ELSE 0 END) AS in_range, \
           MAX(ABS(secs_since_prev - secs_since_prev_epoch)) AS epoch_diff, \
           COUNT(us_since_big) AS big, SUM(CASE WHEN us_since_big >= 0 THEN 1 ELSE 0 END) AS big_after \
         FROM features",
    );
    let r = &rows[0];
    assert!(num(r, "known") > 0.9 * num(r, "n"), "{r}");
    assert!(num(r, "in_range") >= num(r, "known") - 5.0, "{r}");
    assert!(num(r, "epoch_diff") < 1e-3, "{r}");
    assert!(
        num(r, "big") > 0.0 && num(r, "big_after") == num(r, "big"),
        "{r}"
    );
    let show = show_json(&sim, &path);
    let since = shown(&show, "secs_since_prev");
    assert_eq!(since["kind"], "max");
    assert_eq!(since["window"], "30d - 1ns");
    assert_eq!(since["delay"], "1ns");

    let lake = ties_lake();
    build_and_check_parity(&lake, "since.sql", &sql);
    // NULL for a customer's first transaction, and for customer 4's first after 39 silent
    // days (more than the 30-day bound).
    let nulls = lake.sql_json(
        "SELECT customer_id, COUNT(*) - COUNT(secs_since_prev) AS nulls FROM features \
         GROUP BY customer_id ORDER BY customer_id",
    );
    let got: Vec<f64> = nulls.iter().map(|r| num(r, "nulls")).collect();
    assert_eq!(got, vec![1.0, 1.0, 1.0, 2.0], "{nulls:?}");
    // A same-second peer that came first is the previous transaction: 0 seconds.
    let ties = lake.sql_json(&format!(
        "SELECT tx_id, secs_since_prev AS s FROM features WHERE tx_id IN ({}, {}, {}) ORDER BY tx_id",
        TIE_IDS[0], TIE_IDS[1], TIE_IDS[2]
    ));
    assert!(num(&ties[0], "s") > 0.0, "{ties:?}");
    assert_eq!(
        (num(&ties[1], "s"), num(&ties[2], "s")),
        (0.0, 0.0),
        "{ties:?}"
    );
}

/// The card-terminal pair's transactions of the last 30 days before this one.
const PAIR_PREVIOUS: &str = "PARTITION BY customer_id, terminal_id ORDER BY event_time \
     RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING";

/// Composite entities: has this card used this terminal before, how often, how much; the
/// pair's share of the card's traffic; a pair's label window (keys in the other order).
fn pairs_sql() -> String {
    format!(
        "SELECT tx_id, tx_ts, customer_id, terminal_id,
           COUNT(*) OVER ({PAIR_PREVIOUS}) AS pair_nb_tx_30d,
           CASE WHEN COUNT(*) OVER ({PAIR_PREVIOUS}) = 0 THEN 1 ELSE 0 END AS new_terminal_for_card,
           COALESCE(SUM(amount) OVER ({PAIR_PREVIOUS}), 0) AS pair_spend_30d,
           amount / NULLIF(AVG(amount) OVER ({PAIR_PREVIOUS}), 0) AS amount_vs_pair_usual,
           CAST(COUNT(*) OVER ({PAIR_PREVIOUS}) AS DOUBLE)
             / NULLIF(COUNT(*) OVER ({CUSTOMER_PREVIOUS}), 0) AS pair_share_of_card_30d,
           COUNT(*) OVER (PARTITION BY customer_id, terminal_id ORDER BY event_time
             RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS pair_nb_tx_1d,
           COALESCE(AVG(is_fraud) OVER (PARTITION BY terminal_id, customer_id ORDER BY event_time
             RANGE BETWEEN INTERVAL '37 days' PRECEDING AND INTERVAL '7 days' PRECEDING), 0)
             AS pair_risk
         FROM tx_labeled"
    )
}

#[test]
fn composite_partition_keys_agree_offline_and_online() {
    let sql = pairs_sql();
    let sim = simulated_lake();
    let (report, path) = build_and_check_parity(&sim, "pairs.sql", &sql);
    assert_eq!(report["features"].as_array().unwrap().len(), 7);
    let counts = sim.sql_json(
        "SELECT COUNT(*) AS n, SUM(new_terminal_for_card) AS new_pairs, \
           MAX(pair_nb_tx_30d) AS most, MAX(pair_share_of_card_30d) AS share \
         FROM features",
    );
    let pairs = sim.sql_json(
        "SELECT COUNT(*) AS n FROM (SELECT DISTINCT customer_id, terminal_id FROM features)",
    );
    let r = &counts[0];
    // Every pair's first transaction is new; some pairs come back.
    assert!(num(r, "new_pairs") >= num(&pairs[0], "n"), "{r} {pairs:?}");
    assert!(num(r, "new_pairs") < num(r, "n"), "{r}");
    assert!(num(r, "most") >= 2.0 && num(r, "share") <= 1.0, "{r}");
    let show = show_json(&sim, &path);
    assert_eq!(
        shown(&show, "pair_nb_tx_30d")["entity"],
        "customer_id, terminal_id"
    );
    assert_eq!(
        shown(&show, "pair_risk")["entity"],
        "terminal_id, customer_id"
    );
    // The pair's cost: amount stored once for SUM and AVG over the pair's 30 days.
    let state = shown(&show, "pair_spend_30d")["state"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        state.starts_with("per (customer_id, terminal_id): ~")
            && state.contains("48 B per event of its last 30d"),
        "{state}"
    );
    assert_eq!(shown(&show, "pair_spend_30d")["per_tx"], "O(log n)");
    let share = shown(&show, "pair_share_of_card_30d")["state"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        share.contains("per (customer_id, terminal_id)") && share.contains("per (customer_id)"),
        "{share}"
    );

    let lake = ties_lake();
    build_and_check_parity(&lake, "pairs.sql", &sql);
    // The same-second ties share a pair (customer 1, terminal 2): each sees the earlier ones.
    let ties = lake.sql_json(&format!(
        "SELECT tx_id, pair_nb_tx_30d AS before, pair_nb_tx_1d AS day FROM features \
         WHERE tx_id IN ({}, {}, {}) ORDER BY tx_id",
        TIE_IDS[0], TIE_IDS[1], TIE_IDS[2]
    ));
    let before: Vec<f64> = ties.iter().map(|r| num(r, "before")).collect();
    let day: Vec<f64> = ties.iter().map(|r| num(r, "day")).collect();
    assert_eq!(
        (before[1] - before[0], before[2] - before[0]),
        (1.0, 2.0),
        "{ties:?}"
    );
    assert_eq!((day[1] - day[0], day[2] - day[0]), (1.0, 2.0), "{ties:?}");
}

/// sql/features_v2.sql (the handbook's 15 and 15 more with the new constructs) builds, and
/// both engines agree on every row, on both lakes.
#[test]
fn features_v2_agrees_offline_and_online() {
    let sql = std::fs::read_to_string(repo_root().join("sql/features_v2.sql")).unwrap();
    for lake in [simulated_lake(), ties_lake()] {
        let (report, path) = build_and_check_parity(&lake, "features_v2.sql", &sql);
        assert_eq!(report["features"].as_array().unwrap().len(), 30);
        let show = show_json(&lake, &path);
        assert_eq!(show.len(), 30);
        assert_eq!(
            shown(&show, "card_new_terminal_30d")["entity"],
            "customer_id, terminal_id"
        );
    }
}
