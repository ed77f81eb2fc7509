//! The foundation: simulate, ingest with quarantine, SQL over the lake, time travel,
//! maintenance, and Python interop on the Delta tables we write.

use crate::common::{num, python_with_deltalake, repo_root, TempLake};

#[test]
fn simulate_is_deterministic_and_idempotent() {
    let lake = TempLake::new();
    let first = lake.simulate_small(&[]);
    let n = num(&first, "transactions");
    assert!(n > 5_000.0, "too few transactions: {first}");
    assert_eq!(num(&first, "added"), n);
    let frauds = num(&first, "frauds");
    // Small worlds have a high fraud share: 2 of 600 terminals are compromised every day.
    assert!(frauds > 0.0 && frauds < n * 0.2, "fraud share off: {first}");
    // Same seed again: same data, nothing added.
    let again = lake.simulate_small(&[]);
    assert_eq!(num(&again, "transactions"), n);
    assert_eq!(num(&again, "added"), 0.0);
    assert_eq!(num(&again, "already_present"), n);
    let rows =
        lake.sql_json("SELECT COUNT(*) AS n, COUNT(DISTINCT tx_id) AS ids FROM transactions");
    assert_eq!(num(&rows[0], "n"), n);
    assert_eq!(num(&rows[0], "ids"), n);
    let labels = lake.sql_json("SELECT SUM(CASE WHEN is_fraud THEN 1 ELSE 0 END) AS f FROM labels");
    assert_eq!(num(&labels[0], "f"), frauds);
}

#[test]
fn tables_sql_files_time_travel_and_maintenance() {
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    // A file with one bad row, so the quarantine table exists for its query.
    let csv = lake.path().join("one_bad.csv");
    std::fs::write(
        &csv,
        "tx_id,tx_ts,customer_id,terminal_id,amount\n900000001,2018-04-02 10:00:00,1,2,x\n",
    )
    .unwrap();
    lake.ok(&["ingest", csv.to_str().unwrap()]);

    let tables: Vec<serde_json::Value> =
        serde_json::from_str(&lake.ok(&["tables", "--format", "json"])).unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
    // Every Delta table of the lake, by name: the lake knows no list of tables, it finds them.
    assert_eq!(names, ["labels", "transactions", "transactions_rejected"]);
    let transactions = &tables[1];
    assert!(num(transactions, "rows") > 5_000.0 && num(transactions, "files") >= 1.0);
    assert!(transactions["last_commit"].is_string());

    // Every analytic query shipped in sql/ runs.
    for entry in std::fs::read_dir(repo_root().join("sql")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sql") {
            let out = lake.ok(&["sql", "-f", path.to_str().unwrap(), "--format", "csv"]);
            assert!(
                out.lines().count() >= 2,
                "{} returned nothing:\n{out}",
                path.display()
            );
        }
    }
    // Time travel: version 0 is the empty table created on first use.
    let v0 = lake.sql_json_at("SELECT COUNT(*) AS n FROM transactions", "transactions=0");
    assert_eq!(num(&v0[0], "n"), 0.0);
    // CSV and Parquet outputs.
    let out = lake.path().join("daily.parquet");
    lake.ok(&[
        "sql",
        "SELECT tx_date, COUNT(*) AS n FROM transactions GROUP BY tx_date",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    let csv_out = lake.ok(&["sql", "SELECT 1 AS a, 'x,y' AS b", "--format", "csv"]);
    assert_eq!(csv_out.trim(), "a,b\n1,\"x,y\"");

    let opt: Vec<serde_json::Value> =
        serde_json::from_str(&lake.ok(&["lake", "optimize", "--format", "json"])).unwrap();
    assert_eq!(opt.len(), 3);
    let vac: Vec<serde_json::Value> = serde_json::from_str(&lake.ok(&[
        "lake",
        "vacuum",
        "--retain-hours",
        "0",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(vac.len(), 3);
    // Still the same data after compaction and vacuum.
    let n = lake.sql_json("SELECT COUNT(*) AS n FROM transactions");
    assert!(num(&n[0], "n") > 5_000.0);
}

#[test]
fn sql_errors_are_clear_and_the_surface_is_read_only() {
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    let bad = lake.run(&["sql", "SELECT nope FROM transactions"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("nope"),
        "message should name the column: {err}"
    );
    assert!(!err.contains("panicked"));
    for stmt in [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO transactions SELECT * FROM transactions",
        "DROP TABLE transactions",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let out = lake.run(&["sql", stmt]);
        assert!(!out.status.success(), "{stmt} must be refused");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            err.contains("not supported")
                || err.contains("not allowed")
                || err.contains("ddl")
                || err.contains("dml"),
            "{stmt}: {err}"
        );
    }
    let n = lake.sql_json("SELECT COUNT(*) AS n FROM transactions");
    assert!(num(&n[0], "n") > 0.0);
    let bad_at = lake.run(&["sql", "SELECT 1", "--at", "nosuch=1"]);
    assert_eq!(bad_at.status.code(), Some(2));
}

const GOOD_AND_BAD_CSV: &str = "\
tx_id,tx_ts,customer_id,terminal_id,amount,is_fraud
1,2018-04-01 08:00:00,10,20,12.50,0
2,2018-04-01T09:30:00Z,10,21,99.99,1
3,2018-04-02 10:00:00,11,20,5,0
4,not a time,10,20,1.0,0
5,2018-04-02 11:00:00,,20,1.0,0
6,2018-04-02 11:00:00,10,2.5,1.0,0
7,2018-04-02 11:00:00,10,20,NaN,0
8,2018-04-02 11:00:00,10,20,-3,0
9,2018-04-02 11:00:00,10,20,inf,0
3,2018-04-02 12:00:00,11,20,6,0
10,2018-04-02 12:00:00,11,20
11,2018-04-02 12:00:00,11,20,7.25,maybe
12,2018-04-03 12:00:00,12,22,8.00,
";

#[test]
fn ingest_quarantines_bad_rows_with_reasons_and_is_idempotent() {
    let lake = TempLake::new();
    let csv = lake.path().join("mixed.csv");
    std::fs::write(&csv, GOOD_AND_BAD_CSV).unwrap();
    let out: Vec<serde_json::Value> =
        serde_json::from_str(&lake.ok(&["ingest", csv.to_str().unwrap(), "--output", "json"]))
            .unwrap();
    let s = &out[0];
    assert_eq!(num(s, "accepted"), 4.0, "{s}");
    assert_eq!(num(s, "rejected"), 9.0, "{s}");
    assert_eq!(num(s, "labels_added"), 3.0, "{s}"); // row 12 has no label
    assert_eq!(num(s, "fraud_labels_added"), 1.0, "{s}");

    let rejected = lake.sql_json(
        "SELECT row_number, reason, raw_record FROM transactions_rejected ORDER BY row_number",
    );
    let reasons: Vec<(i64, String)> = rejected
        .iter()
        .map(|r| {
            (
                num(r, "row_number") as i64,
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect = [
        (5, "tx_ts 'not a time' is not a timestamp"),
        (6, "customer_id is missing"),
        (7, "terminal_id '2.5' is not an integer"),
        (8, "amount is NaN"),
        (9, "amount -3 is negative"),
        (10, "amount inf is infinite"),
        (11, "duplicate tx_id 3 within the file (first at row 4)"),
        (12, "expected 6 fields, found 4"),
        (13, "is_fraud 'maybe' must be 0/1 or true/false"),
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:?}");
    for ((row, reason), (want_row, want)) in reasons.iter().zip(expect) {
        assert_eq!(*row, want_row, "{reasons:?}");
        assert!(
            reason.contains(want),
            "row {row}: '{reason}' should contain '{want}'"
        );
    }
    assert!(rejected[0]["raw_record"]
        .as_str()
        .unwrap()
        .contains("not a time"));

    // Again: nothing new anywhere.
    let again: Vec<serde_json::Value> =
        serde_json::from_str(&lake.ok(&["ingest", csv.to_str().unwrap(), "--output", "json"]))
            .unwrap();
    assert_eq!(num(&again[0], "accepted"), 0.0);
    assert_eq!(num(&again[0], "already_present"), 4.0);
    assert_eq!(num(&again[0], "rejected"), 0.0);
    assert_eq!(num(&again[0], "labels_added"), 0.0);
    let counts = lake.sql_json(
        "SELECT (SELECT COUNT(*) FROM transactions) AS t, (SELECT COUNT(*) FROM labels) AS l, \
                (SELECT COUNT(*) FROM transactions_rejected) AS r",
    );
    assert_eq!(
        (
            num(&counts[0], "t"),
            num(&counts[0], "l"),
            num(&counts[0], "r")
        ),
        (4.0, 3.0, 9.0)
    );
    // Partitioned by UTC day, timestamps in UTC.
    let days = lake.sql_json("SELECT CAST(tx_date AS VARCHAR) AS d, COUNT(*) AS n FROM transactions GROUP BY tx_date ORDER BY d");
    assert_eq!(days.len(), 3);
    assert_eq!(days[0]["d"], "2018-04-01");
}

#[test]
fn ingest_jsonl_parquet_presets_mappings_and_label_files() {
    let lake = TempLake::new();
    let jsonl = lake.path().join("tx.jsonl");
    std::fs::write(
        &jsonl,
        "{\"id\": 1, \"tx_ts\": \"2018-04-01T00:00:01Z\", \"customer_id\": 1, \"terminal_id\": 2, \"amt\": 3.5}\n\
         {\"id\": 2, \"tx_ts\": \"2018-04-01T00:00:02Z\", \"customer_id\": true, \"terminal_id\": 2, \"amt\": 3.5}\n\
         {not json}\n\
         [1, 2]\n\
         {\"id\": 3, \"tx_ts\": \"2018-04-01T00:00:03Z\", \"customer_id\": 1, \"terminal_id\": 2, \"amt\": 4}\n",
    )
    .unwrap();
    let out: Vec<serde_json::Value> = serde_json::from_str(&lake.ok(&[
        "ingest",
        jsonl.to_str().unwrap(),
        "--map",
        "id=tx_id",
        "--map",
        "amt=amount",
        "--output",
        "json",
    ]))
    .unwrap();
    assert_eq!(num(&out[0], "accepted"), 2.0, "{}", out[0]);
    assert_eq!(num(&out[0], "rejected"), 3.0, "{}", out[0]);
    let reasons = lake.sql_json("SELECT reason FROM transactions_rejected ORDER BY row_number");
    assert!(reasons[0]["reason"]
        .as_str()
        .unwrap()
        .contains("customer_id 'true' is not an integer"));
    assert!(reasons[1]["reason"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));
    assert!(reasons[2]["reason"]
        .as_str()
        .unwrap()
        .contains("expected a JSON object"));

    // Parquet in the handbook's schema, made with `sql --out` from another lake.
    let src = TempLake::new();
    src.simulate_small(&[]);
    let pq = lake.path().join("handbook_like.parquet");
    src.ok(&[
        "sql",
        "SELECT t.tx_id AS \"TRANSACTION_ID\", arrow_cast(t.tx_ts, 'Timestamp(Nanosecond, None)') AS \"TX_DATETIME\", \
                t.customer_id AS \"CUSTOMER_ID\", t.terminal_id AS \"TERMINAL_ID\", t.amount AS \"TX_AMOUNT\", \
                CAST(l.is_fraud AS BIGINT) AS \"TX_FRAUD\", CAST(l.fraud_scenario AS BIGINT) AS \"TX_FRAUD_SCENARIO\" \
         FROM transactions t JOIN labels l ON t.tx_id = l.tx_id WHERE t.tx_id < 2000",
        "--out",
        pq.to_str().unwrap(),
    ]);
    let out: Vec<serde_json::Value> = serde_json::from_str(&lake.ok(&[
        "ingest",
        pq.to_str().unwrap(),
        "--preset",
        "handbook",
        "--output",
        "json",
    ]))
    .unwrap();
    // ids 1..3 overlap with the JSONL rows already in the lake (ids 1 and 3).
    assert_eq!(num(&out[0], "rows_read"), 2000.0);
    assert_eq!(
        num(&out[0], "already_present") + num(&out[0], "accepted"),
        2000.0
    );
    let same =
        lake.sql_json("SELECT COUNT(*) AS n FROM transactions WHERE tx_id >= 4 AND tx_id < 2000");
    let want =
        src.sql_json("SELECT COUNT(*) AS n FROM transactions WHERE tx_id >= 4 AND tx_id < 2000");
    assert_eq!(num(&same[0], "n"), num(&want[0], "n"));
    // Timestamps survived zone-less -> UTC unchanged.
    let a =
        lake.sql_json("SELECT CAST(tx_ts AS VARCHAR) AS ts FROM transactions WHERE tx_id = 1500");
    let b =
        src.sql_json("SELECT CAST(tx_ts AS VARCHAR) AS ts FROM transactions WHERE tx_id = 1500");
    assert_eq!(a, b);

    // A labels-only file (chargebacks arriving later).
    let labels = lake.path().join("chargebacks.csv");
    std::fs::write(&labels, "tx_id,is_fraud,fraud_scenario\n1,1,2\n3,true,\n").unwrap();
    let out: Vec<serde_json::Value> =
        serde_json::from_str(&lake.ok(&["ingest", labels.to_str().unwrap(), "--output", "json"]))
            .unwrap();
    assert_eq!(num(&out[0], "labels_added"), 2.0);
    assert_eq!(num(&out[0], "accepted"), 0.0);
}

#[test]
fn unreadable_input_changes_nothing() {
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    let before = lake.ok(&["tables", "--format", "json"]);
    let corrupt = lake.path().join("corrupt.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not parquet").unwrap();
    let out = lake.run(&["ingest", corrupt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a readable Parquet file"));
    let missing = lake.run(&["ingest", "/nonexistent/file.csv"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot open"));
    let no_columns = lake.path().join("weird.csv");
    std::fs::write(&no_columns, "a,b\n1,2\n").unwrap();
    let out = lake.run(&["ingest", no_columns.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither transactions"));
    let strip = |s: String| {
        s.lines()
            .filter(|l| !l.contains("last_commit"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(before),
        strip(lake.ok(&["tables", "--format", "json"]))
    );
}

#[test]
fn cli_rejects_bad_arguments_clearly() {
    let lake = TempLake::new();
    let out = lake.run(&["simulate", "--days", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("days"));
    let out = lake.run(&[
        "simulate",
        "--drift-from",
        "2018-05-01",
        "--drift-kind",
        "sideways",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("amount-scale"));
    let out = lake.run(&["ingest", "x.csv", "--map", "nodelimiter"]);
    assert_eq!(out.status.code(), Some(2));
    for sub in ["simulate", "ingest", "sql", "tables", "lake", "features"] {
        let help = lake.ok(&[sub, "--help"]);
        assert!(help.contains("Usage"), "{sub} --help");
    }
}

#[test]
fn python_deltalake_reads_our_tables() {
    let Some(python) = python_with_deltalake() else {
        return;
    };
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    let ours = lake
        .sql_json("SELECT COUNT(*) AS n, SUM(amount) AS s, SUM(tx_id) AS ids FROM transactions");
    let lake_dir = lake.lake();
    let theirs = crate::common::run_python(&python, "read_lake.py", &[lake_dir.as_ref()]);
    assert_eq!(num(&theirs["transactions"], "rows"), num(&ours[0], "n"));
    assert_eq!(
        num(&theirs["transactions"], "tx_id_sum"),
        num(&ours[0], "ids")
    );
    let (a, b) = (
        num(&theirs["transactions"], "amount_sum"),
        num(&ours[0], "s"),
    );
    assert!(
        (a - b).abs() <= 1e-6 * b.abs(),
        "amount sums differ: python {a} vs fraudlake {b}"
    );
    assert!(num(&theirs["labels"], "rows") > 0.0);
    assert_eq!(
        theirs["transactions"]["partition_columns"],
        serde_json::json!(["tx_date"])
    );
}

/// Logs piped to a file or a collector carry no ANSI colour codes (issue #14): colour is for
/// terminals only.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    let lake = TempLake::new();
    let out = lake.run_env(&["tables"], &[("RUST_LOG", "debug")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().count() > 0, "expected debug log lines");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in piped logs: {err:?}"
    );
}
