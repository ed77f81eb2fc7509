//! `s3://` lakes against a real S3 server: SeaweedFS (`weed mini`), one per test on free
//! loopback ports. The whole flow through the binary, with the same counts as a local lake
//! and the Python `deltalake` package reading the result; 16 writers appending to one table
//! at once through the library (every row kept, versions contiguous: the conditional-put
//! commits at work); the mistakes a user makes (endpoint, bucket, credentials, URL,
//! options) as clear errors with exit code 2 that never print a secret; and the faults of
//! production: the S3 server stopped under a running `serve` (and under `ingest`), SIGTERM in
//! the middle of concurrent load.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::AsArray;
use deltalake::arrow::datatypes::Int64Type;
use deltalake::logstore::object_store::ObjectStore;
use fraudlake_pipeline::lake::tables::{rejections_batch, Rejection, TRANSACTIONS_REJECTED};
use fraudlake_pipeline::Lake;

use crate::common::{num, read_with_python, wait_until_seen, S3Server, TempLake};
use crate::serve::{
    create_key, fill_with_champion, http, metric_value, post_key, try_http, ts, tx_body, Server,
};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn every_command_runs_on_an_s3_lake() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let lake = TempLake::remote(&s3.lake_url(), s3.env());
    let local = TempLake::new();
    lake.simulate_small(&[]);
    local.simulate_small(&[]);

    // The same seed gives the same lake in the bucket as in a folder.
    let totals = "SELECT COUNT(*) AS n, SUM(tx_id) AS ids, SUM(amount) AS amount FROM transactions";
    let (ours, reference) = (lake.sql_json(totals), local.sql_json(totals));
    let n = num(&ours[0], "n");
    assert!(n > 1000.0, "{ours:?}");
    assert_eq!(n, num(&reference[0], "n"));
    assert_eq!(num(&ours[0], "ids"), num(&reference[0], "ids"));
    let (a, b) = (num(&ours[0], "amount"), num(&reference[0], "amount"));
    assert!((a - b).abs() <= 1e-6 * b.abs(), "amounts {a} vs {b}");

    // Features, a model (artifacts under models/), the registry, a drift report (files under
    // reports/), compaction.
    lake.ok(&["features", "build"]);
    let trained = json(&lake.ok(&[
        "train",
        "--train-start",
        "2018-05-01",
        "--threads",
        "2",
        "--format",
        "json",
    ]));
    assert_eq!(trained["version"], 1, "{trained}");
    assert_eq!(trained["aliases"], serde_json::json!(["champion"]));
    let models = json(&lake.ok(&["models", "list", "--format", "json"]));
    assert_eq!(models.as_array().map(Vec::len), Some(1), "{models}");
    assert_eq!(models[0]["version"], 1);
    let report = json(&lake.ok(&[
        "drift",
        "--current",
        "2018-05-24..2018-05-30",
        "--format",
        "json",
    ]));
    assert_eq!(report["model_version"], 1, "{report}");
    assert!(report["columns"].as_array().is_some_and(|c| !c.is_empty()));
    // The rest of the commands that read or write the lake.
    let parity = json(&lake.ok(&["features", "parity", "--sample", "300", "--format", "json"]));
    let parity = if parity.is_array() {
        parity[0].clone()
    } else {
        parity
    };
    assert_eq!(parity["compared_rows"], parity["matching_rows"], "{parity}");
    let evaluated = lake.ok(&["evaluate", "--test-start", "2018-05-20", "--format", "json"]);
    assert!(evaluated.contains("auc_roc"), "{evaluated}");
    for args in [
        &["models", "show", "champion", "--format", "json"][..],
        &["models", "events", "--format", "json"][..],
        &["dag", "list"][..],
        &["lake", "vacuum", "--dry-run", "--format", "json"][..],
    ] {
        lake.ok(args);
    }
    // Time travel through the bucket's log: version 0 is the table's creation, 1 the data.
    let at = |v: &str| {
        num(
            &lake.sql_json_at("SELECT COUNT(*) AS n FROM transactions", v)[0],
            "n",
        )
    };
    assert_eq!((at("transactions=0"), at("transactions=1")), (0.0, n));
    lake.ok(&["lake", "optimize", "--format", "json"]);
    let tables = lake.ok(&["tables", "--format", "json"]);
    for name in [
        "transactions",
        "labels",
        "features",
        "model_versions",
        "drift_reports",
    ] {
        assert!(
            tables.contains(&format!("\"{name}\"")),
            "{name} in {tables}"
        );
    }
    assert_eq!(
        lake.sql_json(totals)[0]["n"],
        ours[0]["n"],
        "optimize kept every row"
    );

    // It is all in the bucket.
    let log = s3.keys_under("lake/transactions/_delta_log/");
    assert!(
        log.iter()
            .any(|k| k == "lake/transactions/_delta_log/00000000000000000000.json"),
        "{log:?}"
    );
    assert!(!s3.keys_under("lake/models/").is_empty(), "model artifacts");
    assert!(
        !s3.keys_under("lake/reports/").is_empty(),
        "drift report files"
    );

    // Another Delta reader: the Python `deltalake` package, with the same settings.
    if let Some(py) = read_with_python(&lake, &["transactions"]) {
        assert_eq!(num(&py["transactions"], "rows"), n);
        assert_eq!(num(&py["transactions"], "tx_id_sum"), num(&ours[0], "ids"));
    }
}

#[test]
fn sixteen_writers_appending_to_one_s3_table_lose_nothing() {
    const WRITERS: i64 = 16;
    const APPENDS: i64 = 20;
    const ROWS: i64 = 3;
    let Some(s3) = S3Server::start() else {
        return;
    };
    let options: HashMap<String, String> = s3.env().into_iter().collect();
    let lake = Lake::open(&s3.lake_url())
        .expect("lake")
        .with_storage_options(options);
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    };
    // The table exists first: the race under test is the appends', not the creators'.
    let rt = runtime();
    rt.block_on(lake.table(&TRANSACTIONS_REJECTED))
        .expect("create the table");

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let lake = lake.clone();
            let rt = runtime();
            std::thread::spawn(move || {
                for i in 0..APPENDS {
                    let rows: Vec<Rejection> = (0..ROWS)
                        .map(|r| Rejection {
                            source: format!("writer-{w}"),
                            row_number: (w * APPENDS + i) * ROWS + r,
                            raw_record: format!("{w}/{i}/{r}"),
                            reason: "s3 concurrency test".to_string(),
                        })
                        .collect();
                    let batch = rejections_batch(&rows, 1_700_000_000_000_000).expect("batch");
                    rt.block_on(lake.append(&TRANSACTIONS_REJECTED, vec![batch], "s3 test"))
                        .unwrap_or_else(|e| panic!("writer {w}, append {i}: {e}"));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("a writer panicked");
    }

    let commits = (WRITERS * APPENDS) as u64;
    let total = WRITERS * APPENDS * ROWS;
    rt.block_on(async {
        let table = lake
            .load(TRANSACTIONS_REJECTED.name)
            .await
            .expect("load")
            .expect("the table");
        assert_eq!(table.version(), Some(commits), "one version per append");
        // Every version from the create to the last append is a commit file: no gap, none twice.
        let listing = lake
            .files("transactions_rejected/_delta_log")
            .expect("log store")
            .list_with_delimiter(None)
            .await
            .expect("list the log");
        let mut versions: Vec<u64> = listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        versions.sort_unstable();
        assert_eq!(versions, (0..=commits).collect::<Vec<_>>());
        // Every row is there, once.
        let ctx = lake.session(&[]).await.expect("session");
        let batches = ctx
            .sql(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT row_number) AS distinct_rows, \
                 MIN(row_number) AS lo, MAX(row_number) AS hi FROM transactions_rejected",
            )
            .await
            .expect("query")
            .collect()
            .await
            .expect("rows");
        let value = |column: usize| {
            batches[0]
                .column(column)
                .as_primitive::<Int64Type>()
                .value(0)
        };
        assert_eq!(
            (value(0), value(1), value(2), value(3)),
            (total, total, 0, total - 1)
        );
    });
}

#[test]
fn unusable_s3_lakes_are_clear_errors_with_exit_code_2() {
    const SECRET: &str = "s3cr3t-that-is-never-printed";
    let Some(s3) = S3Server::start_with_keys("fraudlake-test", SECRET) else {
        return;
    };
    let with = |key: &str, value: &str| -> Vec<(String, String)> {
        s3.env()
            .into_iter()
            .map(|(k, v)| {
                if k == key {
                    (k, value.to_string())
                } else {
                    (k, v)
                }
            })
            .collect()
    };
    // `fraudlake tables` on `url`: exit code, stderr, time taken.
    let tables = |url: &str, env: Vec<(String, String)>, config: Option<&str>| {
        let lake = TempLake::remote(url, env);
        let path = lake.path().join("fraudlake.toml");
        let mut args: Vec<&str> = vec![];
        if let Some(text) = config {
            std::fs::write(&path, text).expect("config");
            args.extend(["--config", path.to_str().expect("path")]);
        }
        args.push("tables");
        let started = Instant::now();
        let out = lake.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains(SECRET), "a secret in the output: {stderr}");
        (out.status.code(), stderr, started.elapsed())
    };

    // Nothing listens there: bounded retries, not a hang.
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let unreachable = with("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{closed}"));
    let (code, err, took) = tables("s3://lake-test/lake", unreachable, None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot reach the S3 endpoint"), "{err}");
    // Bounded, not a hang: the client gives up after its 15 s retry budget; the bound leaves a
    // loaded machine room for the process start (a hang would never end, so any finite bound
    // shows it; the time is printed for the record).
    eprintln!("unreachable endpoint: `tables` gave up after {took:?}");
    assert!(took < Duration::from_secs(90), "took {took:?}");

    let (code, err, _) = tables("s3://no-such-bucket/lake", s3.env(), None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("'no-such-bucket' does not exist"), "{err}");

    let wrong = with("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let (code, err, _) = tables("s3://no-such-bucket/lake", wrong, None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("refused access"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");

    let (code, err, _) = tables("s3:///lake", s3.env(), None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("names no bucket"), "{err}");

    // deltalake-aws's lock options are refused by name, not ignored.
    let locking = "[storage_options]\nAWS_S3_LOCKING_PROVIDER = \"dynamodb\"\n";
    let (code, err, _) = tables("s3://no-such-bucket/lake", s3.env(), Some(locking));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("AWS_S3_LOCKING_PROVIDER"), "{err}");
}

/// The scoring server on an S3 lake: start-up reads the model, the keys and the online state
/// from the bucket; it scores with a key, takes labels, and on SIGTERM commits every
/// transaction it answered to `transactions` and `predictions` in the bucket.
#[test]
fn the_server_scores_on_an_s3_lake_and_commits_all_it_answered() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let lake = TempLake::remote(&s3.lake_url(), s3.env());
    fill_with_champion(&lake);
    let (_, key) = create_key(&lake, "score,label");
    let server = Server::start_with_env(&lake.lake(), &[], &s3.env());
    let answered = 300i64;
    for i in 0..answered {
        let body = tx_body(95_000_000 + i, &ts(i * 5), i % 50, i % 80, 10.0 + i as f64);
        let (code, text) = post_key(server.port, "/score", &body, &key);
        assert_eq!(code, 200, "{text}");
    }
    let labels: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"tx_id":{},"is_fraud":{}}}"#,
                95_000_000 + i,
                i % 2 == 0
            )
        })
        .collect();
    let (code, text) = post_key(
        server.port,
        "/labels",
        &format!("[{}]", labels.join(",")),
        &key,
    );
    assert_eq!(code, 200, "{text}");
    server.stop();
    let count = |sql: &str| num(&lake.sql_json(sql)[0], "n");
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM predictions WHERE tx_id >= 95000000"),
        answered as f64
    );
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM transactions WHERE tx_id >= 95000000"),
        answered as f64
    );
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM labels WHERE tx_id >= 95000000 AND source LIKE 'api:%'"),
        10.0
    );
}

/// Issue #15's faults, on a real S3 server stopped and started again with its data:
/// - the bucket is down for more than 10 s while `serve` runs: scoring goes on (200s, `/ready`
///   stays 200), the writer's backlog grows and is the `fraud_lake_writer_pending_rows` gauge,
///   failed commits are counted, and the backlog drains once S3 is back;
/// - `ingest` against the stopped server fails cleanly (exit 2, no panic, bounded time) and
///   none of its rows lands, then or later;
/// - SIGTERM while four clients are scoring at full speed: the server drains and commits every
///   transaction it answered 200, exactly once, to `transactions` and `predictions`.
#[test]
fn the_server_rides_out_an_s3_outage_and_a_sigterm_mid_load_losing_nothing() {
    let Some(mut s3) = S3Server::start() else {
        return;
    };
    let lake = TempLake::remote(&s3.lake_url(), s3.env());
    fill_with_champion(&lake);
    let (_, key) = create_key(&lake, "score,label");
    let server = Server::start_with_env(&lake.lake(), &[], &s3.env());
    let port = server.port;
    let metric = |series: &str| metric_value(&http(port, "GET", "/metrics", &[], b"").1, series);
    let body =
        |id: i64, second: i64| tx_body(id, &ts(second), id % 50, id % 80, 12.5 + (id % 97) as f64);
    const BASE: i64 = 96_000_000;
    let mut answered: Vec<i64> = Vec::new();

    // Traffic that commits, so the tables' writers are warm before the outage.
    for i in 0..50 {
        let (code, text) = post_key(port, "/score", &body(BASE + i, i * 5), &key);
        assert_eq!(code, 200, "{text}");
        answered.push(BASE + i);
    }
    wait_until_seen("the first rows committed", Duration::from_secs(120), || {
        let pending = metric("fraud_lake_writer_pending_rows");
        (pending == 0.0, pending)
    });
    let failures_before = metric("fraud_lake_writer_failures_total");

    // The outage.
    s3.stop();
    let outage = Instant::now();
    for i in 50..150 {
        let (code, text) = post_key(port, "/score", &body(BASE + i, i * 5), &key);
        assert_eq!(code, 200, "scoring during the outage: {text}");
        answered.push(BASE + i);
    }
    assert_eq!(http(port, "GET", "/ready", &[], b"").0, 200);

    // `ingest` against the stopped server.
    let csv = lake.path().join("during-outage.csv");
    let mut text = String::from("tx_id,tx_ts,customer_id,terminal_id,amount,is_fraud\n");
    for i in 0..20 {
        text.push_str(&format!(
            "{},2018-05-30 12:00:{i:02},7,9,10.0,0\n",
            97_000_000 + i
        ));
    }
    std::fs::write(&csv, text).expect("csv");
    let started = Instant::now();
    let out = lake.run(&["ingest", csv.to_str().expect("path")]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot reach the S3 endpoint"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let ingest_took = started.elapsed();
    // Bounded (the client's 15 s retry budget per request): generous for a loaded machine.
    assert!(ingest_took < Duration::from_secs(180), "{ingest_took:?}");

    // Keep the bucket away for at least 10 s; the backlog is there and commits are failing.
    let mut i = 150;
    while outage.elapsed() < Duration::from_secs(10)
        || metric("fraud_lake_writer_failures_total") <= failures_before
    {
        assert!(
            outage.elapsed() < Duration::from_secs(180),
            "no failed commit counted in 180 s of outage"
        );
        let (code, text) = post_key(port, "/score", &body(BASE + i, i * 5), &key);
        assert_eq!(code, 200, "scoring during the outage: {text}");
        answered.push(BASE + i);
        i += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let backlog = metric("fraud_lake_writer_pending_rows");
    // One pending row per transaction answered since the bucket went away.
    let scored_in_outage = (i - 50) as f64;
    assert!(
        backlog >= scored_in_outage,
        "backlog {backlog} < {scored_in_outage}"
    );
    assert_eq!(http(port, "GET", "/ready", &[], b"").0, 200);

    let outage_took = outage.elapsed();
    s3.restart();
    let back = Instant::now();
    wait_until_seen(
        "the backlog drained after S3 came back",
        Duration::from_secs(180),
        || {
            let pending = metric("fraud_lake_writer_pending_rows");
            (pending == 0.0, pending)
        },
    );

    eprintln!(
        "outage {outage_took:?}: {scored_in_outage} scored, backlog {backlog}, ingest failed in \
         {ingest_took:?}; drained {:?} after S3 was back",
        back.elapsed()
    );

    // SIGTERM in the middle of concurrent load.
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4i64)
        .map(|t| {
            let (key, done) = (key.clone(), done.clone());
            std::thread::spawn(move || {
                let mut ok = Vec::new();
                for n in 0..5_000i64 {
                    let id = 98_000_000 + t * 100_000 + n;
                    let req = tx_body(id, &ts(1_000 + n), id % 50, id % 80, 20.0);
                    let headers = [
                        ("Content-Type", "application/json"),
                        ("Authorization", &format!("Bearer {key}") as &str),
                    ];
                    match try_http(port, "POST", "/score", &headers, req.as_bytes()) {
                        Ok((200, _)) => {
                            ok.push(id);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        // Shutting down: 503s, then the listener is gone.
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                ok
            })
        })
        .collect();
    wait_until_seen("load under way", Duration::from_secs(120), || {
        let n = done.load(Ordering::Relaxed);
        (n >= 400, n)
    });
    server.stop();
    for client in clients {
        answered.extend(client.join().expect("client thread"));
    }
    let mid_load = answered.iter().filter(|&&id| id >= 98_000_000).count();
    assert!(mid_load >= 400, "{mid_load}");
    eprintln!("SIGTERM mid-load: {mid_load} answered 200 by four clients");

    let counts = |table: &str| {
        let rows = lake.sql_json(&format!(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT tx_id) AS d, SUM(tx_id) AS ids FROM {table} \
             WHERE tx_id >= {BASE} AND (tx_id < 97000000 OR tx_id >= 98000000)"
        ));
        (num(&rows[0], "n"), num(&rows[0], "d"), num(&rows[0], "ids"))
    };
    let ids: f64 = answered.iter().map(|&id| id as f64).sum();
    let want = (answered.len() as f64, answered.len() as f64, ids);
    assert_eq!(counts("predictions"), want);
    assert_eq!(counts("transactions"), want);
    let ingested = lake.sql_json(
        "SELECT COUNT(*) AS n FROM transactions WHERE tx_id BETWEEN 97000000 AND 97999999",
    );
    assert_eq!(num(&ingested[0], "n"), 0.0);
}
