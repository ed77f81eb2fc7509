//! The whole loop, as a user runs it: simulate (with drift) -> features -> train -> serve ->
//! score two thousand transactions over HTTP -> send labels -> run the daily DAG for a date
//! while the server runs -> the registry, `predictions`, `labels`, `drift_reports` and
//! `dag_runs` hold what they should, and the server's `/metrics` reflects it.

use std::time::Duration;

use crate::common::{num, repo_root, wait_until_seen, S3Server, TempLake};
use crate::drift::{drifted_lake, make_drifted};
use crate::serve::{http, Server};

const FIRST_TX: i64 = 90_000_000;
const SCORED: i64 = 2_000;
const LABELED: i64 = 200;

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn simulate_train_serve_label_and_retrain_close_the_loop() {
    let lake = drifted_lake();
    let reports = lake.path().join("lake/reports/drift");
    close_the_loop(&lake, &[], |run_id| {
        std::fs::read_to_string(reports.join(format!("{run_id}.json"))).expect("report json")
    });
}

/// Issue #15: the same loop, with the same checks, on an `s3://` lake (SeaweedFS): the
/// server, the DAG run (its lease and run claims are conditional puts in the bucket), the
/// drift report files and every table live in the bucket.
#[test]
fn the_loop_closes_the_same_way_on_an_s3_lake() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let lake = TempLake::remote(&s3.lake_url(), s3.env());
    make_drifted(&lake);
    close_the_loop(&lake, &s3.env(), |run_id| {
        s3.object(&format!("lake/reports/drift/{run_id}.json"))
    });
}

/// Traffic, labels, the daily DAG while the server runs, then every check. `env` reaches the
/// server (an S3 lake's endpoint and keys); `report_json` reads a drift report by run id.
fn close_the_loop(lake: &TempLake, env: &[(String, String)], report_json: impl Fn(&str) -> String) {
    // The traffic starts three days after the lake's last day: a gap wider than the default
    // --max-event-skew, which would refuse the first batches.
    let server = Server::start_with_env(
        &lake.lake(),
        &[
            "--insecure-no-auth",
            "--reload-secs",
            "1",
            "--max-event-skew",
            "5d",
        ],
        env,
    );

    // A week of traffic after the simulated period (2018-06-18..24), in batches of 100.
    let mut r = 12345u64;
    for batch in 0..SCORED / 100 {
        let txs: Vec<String> = (0..100)
            .map(|i| {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let n = batch * 100 + i;
                let seconds = n * 7 * 86_400 / SCORED;
                format!(
                    "{{\"tx_id\":{},\"tx_ts\":\"2018-06-{:02}T{:02}:{:02}:{:02}Z\",\"customer_id\":{},\
                     \"terminal_id\":{},\"amount\":{:.2}}}",
                    FIRST_TX + n,
                    18 + seconds / 86_400,
                    seconds % 86_400 / 3600,
                    seconds % 3600 / 60,
                    seconds % 60,
                    (r >> 33) % 300,
                    (r >> 17) % 600,
                    5.0 + ((r >> 40) % 30_000) as f64 / 100.0
                )
            })
            .collect();
        let body = format!("{{\"transactions\":[{}]}}", txs.join(","));
        let (status, out) = http(
            server.port,
            "POST",
            "/score/batch",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{out}");
    }
    let labels: Vec<String> = (0..LABELED)
        .map(|i| {
            format!(
                "{{\"tx_id\":{},\"is_fraud\":{}}}",
                FIRST_TX + i * 10,
                i % 5 == 0
            )
        })
        .collect();
    let (status, out) = http(
        server.port,
        "POST",
        "/labels",
        &[("Content-Type", "application/json")],
        format!("[{}]", labels.join(",")).as_bytes(),
    );
    assert!(status == 200 || status == 202, "{status} {out}");

    // The lake writer commits every 200 ms here; the wait is a deadline, not an expectation
    // (each poll runs `fraudlake sql`, slow on a loaded machine and on an S3 lake).
    wait_until_seen(
        "the lake writer's commits",
        Duration::from_secs(180),
        || {
            // `predictions` appears with the writer's first commit.
            let out = lake.run(&[
                "sql",
                &format!(
                    "SELECT (SELECT COUNT(*) FROM predictions) AS p, \
                   (SELECT COUNT(*) FROM labels WHERE source LIKE 'api:%') AS l, \
                   (SELECT COUNT(*) FROM transactions WHERE tx_id >= {FIRST_TX}) AS t"
                ),
                "--format",
                "json",
            ]);
            let rows: Vec<serde_json::Value> = if out.status.success() {
                serde_json::from_slice(&out.stdout).expect("sql JSON")
            } else {
                vec![serde_json::json!({"p": 0, "l": 0, "t": 0})]
            };
            let done = num(&rows[0], "p") == SCORED as f64
                && num(&rows[0], "l") == LABELED as f64
                && num(&rows[0], "t") == SCORED as f64;
            (done, rows[0].clone())
        },
    );

    // The daily DAG for Sunday 2018-06-24 (weekly training even without drift), while the
    // server keeps serving.
    let dags = repo_root().join("dags");
    let out = lake.run(&[
        "dag",
        "run",
        "daily_retrain",
        "--date",
        "2018-06-24",
        "--dags",
        dags.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let runs = lake.sql_json(
        "SELECT state, CAST(logical_date AS VARCHAR) AS day FROM dag_runs \
         WHERE dag = 'daily_retrain' ORDER BY recorded_at",
    );
    assert_eq!(runs.len(), 2, "running, then finished: {runs:?}");
    assert_eq!(runs[1]["state"], "success");
    assert_eq!(runs[1]["day"], "2018-06-24");
    let tasks = lake.sql_json(
        "SELECT task, state FROM task_runs WHERE state <> 'running' ORDER BY recorded_at",
    );
    let done: Vec<String> = tasks
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                t["task"].as_str().unwrap_or(""),
                t["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    for t in crate::dag::EVERY_TASK_SUCCEEDED {
        assert!(done.iter().any(|d| d == t), "{t} in {done:?}");
    }
    let versions = lake.sql_json("SELECT COUNT(*) AS n FROM model_versions");
    assert_eq!(num(&versions[0], "n"), 2.0, "the DAG registered a version");
    // The drift run of the DAG compared served scores (the traffic above) and measured live
    // quality on the labels that arrived.
    let drift = lake.sql_json(
        "SELECT \"column\", current_rows, CAST(current_to AS VARCHAR) AS cur_to FROM drift_reports \
         WHERE scope = 'prediction' ORDER BY generated_at DESC LIMIT 1",
    );
    assert_eq!(drift[0]["column"], "risk_score (served)", "{drift:?}");
    assert_eq!(drift[0]["cur_to"], "2018-06-24");
    let run_id =
        lake.sql_json("SELECT run_id FROM drift_reports ORDER BY generated_at DESC LIMIT 1");
    let report: serde_json::Value =
        serde_json::from_str(&report_json(run_id[0]["run_id"].as_str().expect("run id")))
            .expect("report");
    assert_eq!(
        num(&report["quality"], "labeled_rows"),
        LABELED as f64,
        "{}",
        report["quality"]
    );

    // /metrics: traffic, feedback, and (after the next poll) the DAG's drift report.
    let metrics = wait_until_seen("drift metrics refreshed", Duration::from_secs(120), || {
        let (_, m) = http(server.port, "GET", "/metrics", &[], b"");
        (m.contains("fraud_feature_drift{feature=\"risk_score\""), m)
    });
    assert_eq!(
        metric(
            &metrics,
            "fraud_requests_total{endpoint=\"/score/batch\",status=\"200\"}"
        ),
        (SCORED / 100) as f64
    );
    assert_eq!(
        metric(&metrics, "fraud_label_feedback_total"),
        LABELED as f64
    );
    assert_eq!(
        metric(&metrics, "fraud_risk_score_count{role=\"champion\"}"),
        SCORED as f64
    );
    assert!(metrics.contains("fraud_model_info{"), "{metrics}");
    server.stop();
}
