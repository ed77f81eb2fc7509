//! The scoring server, over real HTTP on loopback: scoring, labels, metrics and the lake
//! writer; 10,000 random and mutated bad bodies; a champion swap under load; and a restart
//! that rebuilds exactly the online state an uninterrupted server has.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{num, repo_root, wait_until, TempLake};

/// A minimal HTTP/1.1 client (one request per connection), so tests need no HTTP crate.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    try_http(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

/// [`http`] for a server that may be gone (a load running into a shutdown): `Err` when the
/// connection is refused or the answer has no status line.
pub fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| format!("timeout: {e}"))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer (413) and close before it reads a huge body.
    let _ = s.write_all(&bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn post_json(port: u16, path: &str, body: &str) -> (u16, String) {
    http(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// POST JSON with `Authorization: Bearer <token>`.
pub fn post_key(port: u16, path: &str, body: &str, token: &str) -> (u16, String) {
    http(
        port,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {token}")),
        ],
        body.as_bytes(),
    )
}

/// Creates an API key with `scopes` in the lake; returns (key id, token).
pub fn create_key(lake: &TempLake, scopes: &str) -> (String, String) {
    let out = lake.ok(&[
        "keys", "create", "--scope", scopes, "--name", "test", "--format", "json",
    ]);
    let v = json(out.trim());
    (
        v[0]["key_id"].as_str().expect("key_id").to_string(),
        v[0]["token"].as_str().expect("token").to_string(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `fraudlake serve`; stopped with SIGTERM (graceful) on `stop`, killed on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
}

impl Server {
    /// A server without API keys (`--insecure-no-auth`, loopback): for tests where who may
    /// call is not the point. Tests of the API itself use keys ([`Server::start_keyed`]).
    pub fn start(lake: &str, extra: &[&str]) -> Server {
        let mut args = vec!["--insecure-no-auth"];
        args.extend_from_slice(extra);
        Self::start_keyed(lake, &args)
    }

    /// A server that requires the lake's API keys (create them first with [`create_key`]).
    pub fn start_keyed(lake: &str, extra: &[&str]) -> Server {
        Self::start_with_env(lake, extra, &[])
    }

    /// A keyed server with extra environment variables (an S3 lake's endpoint and keys).
    ///
    /// The port is free when picked but anything can take it before the server binds it (an
    /// outgoing connection of a parallel test gets its source port from the same range; seen
    /// once in a `make test` beside `stress-ng`): a server that exits because its address is
    /// in use is started again on another port, up to five times.
    pub fn start_with_env(lake: &str, extra: &[&str], env: &[(String, String)]) -> Server {
        let mut attempt = 1;
        loop {
            match Self::try_start(lake, extra, env) {
                Ok(server) => return server,
                Err(err) if attempt < 5 && err.contains("Address already in use") => {
                    eprintln!(
                        "port taken before fraudlake serve bound it (attempt {attempt}): {err}"
                    );
                    attempt += 1;
                }
                Err(err) => panic!("{err}"),
            }
        }
    }

    /// One start: the server once `/ready` answers 200, or why it exited.
    fn try_start(lake: &str, extra: &[&str], env: &[(String, String)]) -> Result<Server, String> {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_fraudlake"))
            .current_dir(repo_root())
            // Warnings only: stderr is a pipe nobody reads until the end.
            .env("RUST_LOG", "warn")
            .args([
                "--lake",
                lake,
                "--quiet",
                "serve",
                "--addr",
                &addr,
                "--flush-ms",
                "200",
            ])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fraudlake serve");
        let mut server = Server {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return Ok(server);
                }
            }
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let mut err = String::new();
                if let Some(mut e) = server.child.take().and_then(|c| c.stderr) {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("fraudlake serve exited ({status}): {err}"));
            }
            assert!(Instant::now() < deadline, "server not ready in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then wait: the server drains and commits to the lake. Returns its stderr.
    pub fn stop(mut self) -> String {
        let child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "serve exited with {}: {err}",
            out.status
        );
        err
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A small lake with features and a champion model (trained on 2018-05-01..07).
pub fn lake_with_champion() -> TempLake {
    let lake = TempLake::new();
    fill_with_champion(&lake);
    lake
}

/// Fills `lake` (local or remote) as [`lake_with_champion`] does.
pub fn fill_with_champion(lake: &TempLake) {
    lake.simulate_small(&[]);
    lake.ok(&["features", "build"]);
    lake.ok(&[
        "train",
        "--train-start",
        "2018-05-01",
        "--n-estimators",
        "50",
        "--threads",
        "2",
    ]);
}

pub fn tx_body(tx_id: i64, ts: &str, customer: i64, terminal: i64, amount: f64) -> String {
    format!(
        r#"{{"tx_id":{tx_id},"tx_ts":"{ts}","customer_id":{customer},"terminal_id":{terminal},"amount":{amount}}}"#
    )
}

/// Seconds after 2018-05-31T00:00:00Z as RFC 3339: the small lake's last transactions are in
/// the last hour of 2018-05-30, so this is within the default --max-event-skew (1 h) of them.
pub fn ts(seconds: i64) -> String {
    let t = chrono::DateTime::from_timestamp(1_527_724_800 + seconds, 0).expect("time");
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn scores_explains_takes_labels_and_lands_everything_in_the_lake() {
    let lake = lake_with_champion();
    let (_, token) = create_key(&lake, "score,label,admin");
    let server = Server::start_keyed(&lake.lake(), &[]);
    let port = server.port;
    let token = token.as_str();

    assert_eq!(http(port, "GET", "/health", &[], b"").0, 200);
    let (code, body) = http(port, "GET", "/models/current", &[], b"");
    assert_eq!(code, 200);
    let current = json(&body);
    assert_eq!(current["version"], 1);
    assert_eq!(current["feature_names"].as_array().map(Vec::len), Some(15));
    // No rollout running: no canary, no shadow.
    assert!(
        current["canary"].is_null() && current["shadow"].is_null(),
        "{body}"
    );

    let (code, body) = post_key(
        port,
        "/score",
        &tx_body(9_000_001, &ts(0), 1_017, 42, 35.5),
        token,
    );
    assert_eq!(code, 200, "{body}");
    let r = json(&body);
    assert_eq!(r["tx_id"], 9_000_001);
    // The decision follows the risk and the default thresholds (review 0.3, decline 0.8).
    let p = r["risk_score"].as_f64().expect("score");
    let decision = if p >= 0.8 {
        "decline"
    } else if p >= 0.3 {
        "review"
    } else {
        "approve"
    };
    assert_eq!(r["decision"], decision, "{body}");
    assert_eq!(r["model_version"], 1);
    assert_eq!(r["role"], "champion");
    assert_eq!(r["feature_set"], current["feature_set"]);
    assert!(r.get("features").is_none());

    let (code, body) = post_key(
        port,
        "/score?explain=true",
        &tx_body(9_000_002, &ts(60), 1_017, 42, 1200.0),
        token,
    );
    assert_eq!(code, 200, "{body}");
    let r = json(&body);
    let features = r["features"].as_array().expect("features");
    assert_eq!(features.len(), 15);
    assert_eq!(features[0]["feature"], "tx_amount");
    assert_eq!(features[0]["value"], 1200.0);
    // The customer's second transaction within a day (customer 1017 is not in the lake, whose
    // last day is the day before).
    let nb_1d = features
        .iter()
        .find(|f| f["feature"] == "customer_nb_tx_1d")
        .expect("feature");
    assert_eq!(nb_1d["value"], 2.0);
    assert_eq!(r["top_contributions"].as_array().map(Vec::len), Some(5));
    // The risk is the champion's own prediction on those features, as libxgboost computes it
    // (the server scores with its native tree walker: an independent evaluator).
    let values: Vec<f64> = features
        .iter()
        .map(|f| f["value"].as_f64().unwrap_or(f64::NAN)) // null: missing
        .collect();
    let expected = libxgboost_probability(&lake, "champion", &values);
    let risk = r["risk_score"].as_f64().expect("risk");
    assert!(
        (risk - expected).abs() < 1e-6,
        "served risk {risk}, libxgboost {expected}"
    );

    let batch = format!(
        r#"{{"transactions":[{},{},{}]}}"#,
        tx_body(9_000_003, &ts(120), 18, 43, 10.0),
        tx_body(9_000_004, &ts(121), 18, 43, 20.0),
        tx_body(9_000_005, &ts(122), 18, 43, 30.0)
    );
    let (code, body) = post_key(port, "/score/batch", &batch, token);
    assert_eq!(code, 200, "{body}");
    let results = json(&body)["results"].as_array().expect("results").clone();
    let ids: Vec<i64> = results
        .iter()
        .map(|r| r["tx_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, vec![9_000_003, 9_000_004, 9_000_005]);

    let (code, body) = post_key(
        port,
        "/labels",
        r#"[{"tx_id":9000002,"is_fraud":true,"fraud_scenario":1},{"tx_id":9000003,"is_fraud":false}]"#,
        token,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["accepted"], 2);

    let (code, _) = post_key(port, "/score", r#"{"tx_id":1}"#, token);
    assert_eq!(code, 422);

    let (code, metrics) = http(port, "GET", "/metrics", &[], b"");
    assert_eq!(code, 200);
    for needle in [
        "fraud_requests_total{endpoint=\"/score\",status=\"200\"} 2",
        "fraud_requests_total{endpoint=\"/score/batch\",status=\"200\"} 1",
        "fraud_risk_score_count{role=\"champion\"} 5",
        "fraud_model_predict_seconds_count{role=\"champion\"} 5",
        "model_inference_latency_seconds_count 5",
        "api_errors_total{kind=\"invalid_field\"} 1",
        "fraud_model_info{feature_set=",
        "fraud_label_feedback_total{is_fraud=\"true\"} 1",
        "fraud_online_entities",
        "fraud_lake_writer_pending_rows",
        "fraud_decisions_total{decision=",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }
    // Without a rollout, no canary or shadow series.
    assert!(
        !metrics.contains("role=\"canary\"") && !metrics.contains("role=\"shadow\""),
        "{metrics}"
    );

    let (code, doc) = http(port, "GET", "/openapi.json", &[], b"");
    assert_eq!(code, 200);
    let doc = json(&doc);
    for path in [
        "/score",
        "/score/batch",
        "/labels",
        "/health",
        "/ready",
        "/metrics",
        "/models/current",
        "/admin/reload",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    assert!(doc["components"]["schemas"]["ScoreRequest"]["properties"]["tx_ts"].is_object());
    let (code, page) = http(port, "GET", "/docs", &[], b"");
    assert_eq!(code, 200);
    assert!(
        page.contains("/openapi.json")
            && !page.contains("https://")
            && !page.contains("src=\"http"),
        "the API page must work offline"
    );

    let (code, _) = http(port, "POST", "/admin/reload", &[], b"");
    assert_eq!(code, 401);
    let (code, body) = http(
        port,
        "POST",
        "/admin/reload",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["reloaded"], false);

    // Graceful stop commits what was scored; the lake has it.
    server.stop();
    let rows = lake.sql_json(
        "SELECT COUNT(*) AS n FROM transactions WHERE tx_id >= 9000001 AND tx_id <= 9000005",
    );
    assert_eq!(num(&rows[0], "n"), 5.0);
    let rows = lake.sql_json(
        "SELECT tx_id, model_version, decision, array_length(features) AS width FROM predictions ORDER BY tx_id",
    );
    assert_eq!(rows.len(), 5);
    assert_eq!(num(&rows[0], "width"), 15.0);
    assert_eq!(num(&rows[0], "model_version"), 1.0);
    let rows = lake.sql_json(
        "SELECT tx_id, is_fraud, fraud_scenario FROM labels WHERE source LIKE 'api:%' ORDER BY tx_id",
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["is_fraud"], true);
}

/// A deterministic stream of small numbers (no RNG crate needed; the stream tests draw their
/// kill points from it too).
pub(crate) struct Lcg(pub(crate) u64);
impl Lcg {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() as usize) % items.len()]
    }
}

fn mutate(r: &mut Lcg, valid: &str) -> Vec<u8> {
    let mut b = valid.as_bytes().to_vec();
    match r.next() % 8 {
        0 => {
            // Flip bytes.
            for _ in 0..(1 + r.next() % 4) {
                if !b.is_empty() {
                    let i = (r.next() as usize) % b.len();
                    b[i] = (r.next() % 256) as u8;
                }
            }
        }
        1 => b.truncate((r.next() as usize) % (b.len() + 1)),
        2 => {
            let i = (r.next() as usize) % (b.len() + 1);
            let junk = r.pick(&[
                "\"", "{", "}", "[", "]", ",", ":", "null", "NaN", "-", "1e999", "\\u0000", "true",
            ]);
            b.splice(i..i, junk.bytes());
        }
        3 => {
            let v = r.pick(&[
                "\"x\"",
                "null",
                "-1",
                "1e308",
                "-0.0",
                "[]",
                "{}",
                "1.5",
                "9223372036854775808",
                "\"2018-13-45T99:00:00Z\"",
                "true",
            ]);
            let field = r.pick(&["tx_id", "tx_ts", "customer_id", "terminal_id", "amount"]);
            let s = String::from_utf8_lossy(&b).to_string();
            let re = format!("\"{field}\":");
            if let Some(i) = s.find(&re) {
                let rest = &s[i + re.len()..];
                let end = rest.find([',', '}']).unwrap_or(rest.len());
                b = format!("{}{}{}", &s[..i + re.len()], v, &rest[end..]).into_bytes();
            }
        }
        4 => {
            let s = String::from_utf8_lossy(&b).to_string();
            b = s.replacen('}', ",\"extra\":1}", 1).into_bytes();
        }
        5 => {
            let field = r.pick(&["tx_id", "tx_ts", "customer_id", "terminal_id", "amount"]);
            let s = String::from_utf8_lossy(&b).to_string();
            b = s
                .replacen(&format!("\"{field}\""), "\"renamed\"", 1)
                .into_bytes();
        }
        6 => {
            b = (0..(r.next() % 64))
                .map(|_| (r.next() % 256) as u8)
                .collect()
        }
        _ => {}
    }
    b
}

#[test]
fn ten_thousand_bad_bodies_get_4xx_and_the_server_stays_up() {
    let lake = lake_with_champion();
    let server = Server::start(
        &lake.lake(),
        &["--max-batch", "50", "--max-body-bytes", "65536"],
    );
    let port = server.port;
    let json_h = [("Content-Type", "application/json")];

    // Named cases first: each answers the right status and names the problem.
    let huge = format!(
        r#"{{"transactions":[{}]}}"#,
        vec![tx_body(1, &ts(0), 1, 1, 1.0); 2000].join(",")
    );
    let many = format!(
        r#"{{"transactions":[{}]}}"#,
        (0..51)
            .map(|i| tx_body(8_000_000 + i, &ts(i), 1, 1, 1.0))
            .collect::<Vec<_>>()
            .join(",")
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/score", "{not json".into(), 400, "invalid_json"),
        ("/score", r#"{"tx_id":1,"tx_ts":"2018-06-01T00:00:00Z","customer_id":1,"terminal_id":1}"#.into(), 422, "amount"),
        ("/score", tx_body(1, &ts(0), 1, 1, -5.0), 422, "amount"),
        ("/score", tx_body(1, &ts(0), 1, 1, 1.0).replace("\"amount\":1}", "\"amount\":NaN}"), 400, "invalid_json"),
        ("/score", tx_body(1, "yesterday", 1, 1, 1.0), 422, "tx_ts"),
        ("/score", tx_body(1, "1970-01-01T00:00:00Z", 1, 1, 1.0), 422, "tx_ts"),
        ("/score", tx_body(1, "2999-01-01T00:00:00Z", 1, 1, 1.0), 422, "tx_ts"),
        ("/score", tx_body(-3, &ts(0), 1, 1, 1.0), 422, "tx_id"),
        ("/score", tx_body(1, &ts(0), 1, 1, 1.0).replace('}', r#","cvv":"123"}"#), 422, "unknown field"),
        ("/score", r#"{"tx_id":"seven","tx_ts":"2018-06-01T00:00:00Z","customer_id":1,"terminal_id":1,"amount":1}"#.into(), 422, "tx_id"),
        ("/score/batch", many, 413, "batch_too_large"),
        ("/score/batch", huge, 413, "too_large"),
        ("/labels", r#"[{"tx_id":1,"is_fraud":"yes"}]"#.into(), 422, "is_fraud"),
        ("/nope", "{}".into(), 404, "not_found"),
    ];
    for (path, body, want, needle) in &cases {
        let (code, text) = http(port, "POST", path, &json_h, body.as_bytes());
        assert_eq!(
            code,
            *want,
            "{path} {}: {text}",
            &body[..body.len().min(120)]
        );
        let e = json(&text);
        assert!(e["error"].is_string() && e["detail"].is_string(), "{text}");
        assert!(
            text.contains(needle),
            "{path}: expected '{needle}' in {text}"
        );
    }
    let (code, _) = http(
        port,
        "POST",
        "/score",
        &[("Content-Type", "text/plain")],
        tx_body(1, &ts(0), 1, 1, 1.0).as_bytes(),
    );
    assert_eq!(code, 415);
    let (code, _) = http(
        port,
        "POST",
        "/score?explain=maybe",
        &json_h,
        tx_body(1, &ts(0), 1, 1, 1.0).as_bytes(),
    );
    assert_eq!(code, 400);

    // Then 10,000 random and mutated bodies from four threads.
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let statuses = statuses.clone();
            std::thread::spawn(move || {
                let mut r = Lcg(t * 7919 + 1);
                for i in 0..2500u64 {
                    let id = 7_000_000 + t as i64 * 10_000 + i as i64;
                    let valid = tx_body(
                        id,
                        &ts(i as i64),
                        (r.next() % 300) as i64,
                        (r.next() % 600) as i64,
                        (r.next() % 500) as f64,
                    );
                    let arm = r.next() % 10;
                    let (path, body) = match arm {
                        0..=5 => ("/score", mutate(&mut r, &valid)),
                        6 => (
                            "/score/batch",
                            mutate(&mut r, &format!(r#"{{"transactions":[{valid}]}}"#)),
                        ),
                        7 => (
                            "/labels",
                            mutate(&mut r, &format!(r#"[{{"tx_id":{id},"is_fraud":true}}]"#)),
                        ),
                        8 => (
                            r.pick(&[
                                "/score",
                                "/labels",
                                "/admin/reload",
                                "/metrics",
                                "/x/../etc/passwd",
                                "/score/batch/extra",
                            ]),
                            mutate(&mut r, &valid),
                        ),
                        // A tx_id no mutation of the others' ids (7,0xx,xxx) can reach.
                        _ => (
                            "/score?explain=true",
                            tx_body(
                                5_000_000_000_000 + id,
                                &ts(i as i64),
                                (i % 300) as i64,
                                (i % 600) as i64,
                                10.0,
                            )
                            .into_bytes(),
                        ),
                    };
                    let method = if r.next().is_multiple_of(20) {
                        "PUT"
                    } else {
                        "POST"
                    };
                    let (code, text) = http(
                        port,
                        method,
                        path,
                        &[("Content-Type", "application/json")],
                        &body,
                    );
                    assert!(
                        (200..500).contains(&code),
                        "{method} {path} {:?} -> {code} {text}",
                        String::from_utf8_lossy(&body)
                    );
                    if code >= 400 && code != 405 {
                        let e: serde_json::Value = serde_json::from_str(&text)
                            .unwrap_or_else(|_| panic!("error body not JSON: {text}"));
                        assert!(e["error"].is_string(), "{text}");
                    }
                    if arm == 9 && method == "POST" {
                        // An unmutated valid transaction with a fresh tx_id is always scored.
                        assert_eq!(code, 200, "{path} {text}");
                    }
                    *statuses.lock().expect("lock").entry(code).or_default() += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("fuzz thread");
    }
    let statuses = statuses.lock().expect("lock").clone();
    assert_eq!(statuses.values().sum::<usize>(), 10_000);
    assert!(statuses.get(&200).is_some_and(|n| *n > 500), "{statuses:?}");
    // Broken JSON is 400 and a body of the wrong shape 422; both must have been seen.
    assert!(statuses.get(&400).is_some_and(|n| *n > 100), "{statuses:?}");
    assert!(statuses.get(&422).is_some_and(|n| *n > 100), "{statuses:?}");
    // Still up and scoring.
    let (code, _) = post_json(port, "/score", &tx_body(7_999_999, &ts(3_000), 3, 4, 5.0));
    assert_eq!(code, 200);
    let (_, metrics) = http(port, "GET", "/metrics", &[], b"");
    assert!(metrics.contains("api_errors_total{kind=\"invalid_json\"}"));
    server.stop();
}

#[test]
fn champion_swap_under_load_fails_no_request() {
    let lake = lake_with_champion();
    let (_, token) = create_key(&lake, "score,admin");
    let (_, scorer) = create_key(&lake, "score");
    let server = Server::start_keyed(&lake.lake(), &["--reload-secs", "3600"]);
    let port = server.port;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let versions = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let served = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4i64)
        .map(|t| {
            let (stop, failures, versions, served, token) = (
                stop.clone(),
                failures.clone(),
                versions.clone(),
                served.clone(),
                token.clone(),
            );
            std::thread::spawn(move || {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let id = 6_000_000 + t * 1_000_000 + i;
                    let (code, body) = post_key(
                        port,
                        "/score",
                        &tx_body(id, &ts(i * 4 + t), i % 300, (i * 7) % 600, 12.5),
                        &token,
                    );
                    if code == 200 {
                        versions
                            .lock()
                            .expect("lock")
                            .insert(json(&body)["model_version"].as_i64().expect("v"));
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    // The load is under way on the first model (not a pause that hopes so).
    let (seen_versions, seen_served) = (versions.clone(), served.clone());
    wait_until(
        "requests served by model 1",
        Duration::from_secs(60),
        || {
            seen_versions.lock().expect("lock").contains(&1)
                && seen_served.load(Ordering::Relaxed) > 0
        },
    );
    // A second model, promoted past the gate, then a reload while requests flow.
    lake.ok(&[
        "train",
        "--train-start",
        "2018-05-03",
        "--n-estimators",
        "30",
        "--threads",
        "1",
        "--no-register",
    ]);
    lake.ok(&[
        "train",
        "--train-start",
        "2018-05-03",
        "--n-estimators",
        "30",
        "--threads",
        "1",
    ]);
    lake.ok(&[
        "models",
        "promote",
        "2",
        "--force",
        "--reason",
        "reload test",
    ]);
    let (code, _) = http(
        port,
        "POST",
        "/admin/reload",
        &[("Authorization", "Bearer wrong-token-wrong-token")],
        b"",
    );
    assert_eq!(code, 401);
    // A key without the admin scope may not reload.
    let (code, body) = http(
        port,
        "POST",
        "/admin/reload",
        &[("Authorization", &format!("Bearer {scorer}"))],
        b"",
    );
    assert_eq!(code, 403, "{body}");
    let (code, body) = http(
        port,
        "POST",
        "/admin/reload",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["reloaded"], true);
    // Requests keep flowing after the swap until the new model has answered some and the load
    // is big enough to mean something (counts, not a pause of a fixed length).
    let served_at_reload = served.load(Ordering::Relaxed);
    wait_until(
        "requests served by model 2 after the reload",
        Duration::from_secs(120),
        || {
            seen_versions.lock().expect("lock").contains(&2)
                && seen_served.load(Ordering::Relaxed) > served_at_reload.max(200) + 20
        },
    );
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    assert!(
        served.load(Ordering::Relaxed) > 200,
        "too little load: {}",
        served.load(Ordering::Relaxed)
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the swap"
    );
    let seen = versions.lock().expect("lock").clone();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![1, 2],
        "both models served"
    );
    let (_, body) = http(port, "GET", "/models/current", &[], b"");
    assert_eq!(json(&body)["version"], 2);
    let (_, metrics) = http(port, "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("fraud_model_info{feature_set=") && metrics.contains("version=\"2\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("version=\"1\"} 1"));
    server.stop();
}

pub fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

#[test]
fn a_restart_rebuilds_the_same_online_state() {
    let lake = lake_with_champion();
    let twin = lake.path().join("twin");
    copy_dir(Path::new(&lake.lake()), &twin);
    let twin = twin.display().to_string();

    // Day 1: 300 transactions and some fraud labels; day 9: 40 more, read with their features.
    let day1: Vec<String> = (0..300)
        .map(|i| {
            tx_body(
                5_000_000 + i,
                &ts(i * 250),
                i % 40,
                i % 25,
                5.0 + (i % 90) as f64,
            )
        })
        .collect();
    let labels = r#"[{"tx_id":5000003,"is_fraud":true},{"tx_id":5000010,"is_fraud":true},{"tx_id":5000011,"is_fraud":true}]"#;
    let day9: Vec<String> = (0..40)
        .map(|i| {
            tx_body(
                5_100_000 + i,
                &ts(8 * 86_400 + i * 60),
                i % 40,
                i % 25,
                42.0,
            )
        })
        .collect();
    let features_of = |port: u16, bodies: &[String]| -> Vec<serde_json::Value> {
        bodies
            .iter()
            .map(|b| {
                let (code, text) = post_json(port, "/score?explain=true", b);
                assert_eq!(code, 200, "{text}");
                let r = json(&text);
                serde_json::json!([
                    r["features"]
                        .as_array()
                        .expect("features")
                        .iter()
                        .map(|f| f["value"].clone())
                        .collect::<Vec<_>>(),
                    r["risk_score"]
                ])
            })
            .collect()
    };

    // Day 9 is a week after day 1: a gap wider than the default --max-event-skew.
    let skew = ["--max-event-skew", "10d"];
    // Without a restart.
    let a = Server::start(&twin, &skew);
    features_of(a.port, &day1);
    assert_eq!(post_json(a.port, "/labels", labels).0, 200);
    let uninterrupted = features_of(a.port, &day9);
    a.stop();

    // With a restart between the days: state comes back from the lake.
    let b = Server::start(&lake.lake(), &skew);
    features_of(b.port, &day1);
    assert_eq!(post_json(b.port, "/labels", labels).0, 200);
    b.stop();
    let c = Server::start(&lake.lake(), &skew);
    let restarted = features_of(c.port, &day9);
    c.stop();

    // Counts are equal; averages equal up to floating-point summation order (the restarted
    // state sums a different span of history), as in `features parity`: 1e-9 relative.
    assert_eq!(restarted.len(), uninterrupted.len());
    for (r, u) in restarted.iter().zip(&uninterrupted) {
        let (rf, uf) = (r[0].as_array().expect("row"), u[0].as_array().expect("row"));
        for (a, b) in rf.iter().zip(uf).chain(std::iter::once((&r[1], &u[1]))) {
            let (a, b) = (a.as_f64().expect("num"), b.as_f64().expect("num"));
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{r} vs {u}");
        }
    }
    // The labels reached the terminal risk features of day 9 (7-day delay): not all zero.
    let risk_index = 10; // terminal_risk_1d
    assert!(
        uninterrupted
            .iter()
            .any(|r| r[0][risk_index].as_f64().unwrap_or(0.0) > 0.0),
        "labels must show up in terminal risk"
    );
}

/// Feature values and risk of one /score?explain=true answer.
fn explained(port: u16, body: &str) -> (Vec<f64>, serde_json::Value) {
    let (code, text) = post_json(port, "/score?explain=true", body);
    assert_eq!(code, 200, "{body}: {text}");
    let r = json(&text);
    let values = r["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["value"].as_f64().expect("value"))
        .collect();
    (values, r)
}

/// The value of one series in a Prometheus text scrape (0 when absent).
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Issue #14, item 2: one transaction dated today in a 2018 lake. As a row already in the lake
/// (ingested from a file) it used to anchor the start-up bootstrap (MAX(tx_ts)), which then
/// loaded no history; as a request it used to move the watermark. Now the bootstrap skips it
/// and the request is refused with 422 naming tx_ts: every feature equals a twin server's that
/// never saw it, and the history really is there.
#[test]
fn a_far_future_transaction_changes_no_other_feature() {
    let lake = lake_with_champion();
    let twin = lake.path().join("twin");
    copy_dir(Path::new(&lake.lake()), &twin);
    let twin = twin.display().to_string();
    let today = chrono::Utc::now() - chrono::Duration::hours(1);
    let csv = lake.path().join("today.csv");
    std::fs::write(
        &csv,
        format!(
            "tx_id,tx_ts,customer_id,terminal_id,amount\n9500000,{},17,42,10.0\n",
            today.format("%Y-%m-%d %H:%M:%S")
        ),
    )
    .expect("csv");
    lake.ok(&["ingest", csv.to_str().expect("path")]);
    let rows = lake.sql_json("SELECT COUNT(*) AS n FROM transactions WHERE tx_id = 9500000");
    assert_eq!(num(&rows[0], "n"), 1.0, "the far-future row is in the lake");

    let plain = Server::start(&twin, &[]);
    let skewed = Server::start(&lake.lake(), &[]);
    let far = tx_body(9_600_000, &today.to_rfc3339(), 17, 42, 10.0);
    let mut compared = 0;
    let mut history_seen = false;
    for i in 0..120i64 {
        if i == 60 {
            let (code, text) = post_json(skewed.port, "/score", &far);
            assert_eq!(code, 422, "{text}");
            let e = json(&text);
            assert_eq!(e["error"], "event_time_ahead", "{text}");
            let detail = e["detail"].as_str().expect("detail");
            assert!(
                detail.starts_with("tx_ts: ") && detail.contains("--max-event-skew"),
                "{detail}"
            );
        }
        let body = tx_body(9_400_000 + i, &ts(i * 30), i % 40, i % 25, 20.0 + i as f64);
        let (want, _) = explained(plain.port, &body);
        let (got, r) = explained(skewed.port, &body);
        assert!(r.get("time_flag").is_none(), "{r}");
        for (a, b) in want.iter().zip(&got) {
            assert!(
                (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                "{want:?} vs {got:?}"
            );
        }
        compared += 1;
        // customer_nb_tx_30d (index 7) counts the lake's history, not just this traffic.
        history_seen |= got[7] > 10.0;
    }
    assert_eq!(compared, 120);
    assert!(history_seen, "the bootstrap loaded the lake's history");
    let (_, metrics) = http(skewed.port, "GET", "/metrics", &[], b"");
    assert_eq!(
        metric_value(
            &metrics,
            "fraud_event_time_total{outcome=\"refused_ahead\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "api_errors_total{kind=\"event_time_ahead\"}"),
        1.0
    );
    let doc = json(&http(skewed.port, "GET", "/openapi.json", &[], b"").1);
    for (path, code) in [
        ("/score", "409"),
        ("/score", "422"),
        ("/score/batch", "409"),
    ] {
        assert!(
            doc["paths"][path]["post"]["responses"][code].is_object(),
            "openapi: {path} lacks {code}"
        );
    }
    plain.stop();
    skewed.stop();
}

/// Issue #14, item 3: a retried /score is idempotent (same answer, one row in the lake), the
/// same tx_id with another body is a 409, and a tx_id the lake already holds but the server
/// no longer remembers (an old transaction) is scored, flagged late, and not written again.
/// With --event-skew-policy clamp a far-future transaction is scored at the watermark's time.
#[test]
fn retries_are_idempotent_conflicts_are_409_and_the_lake_keeps_one_row() {
    let lake = lake_with_champion();
    let old = lake.sql_json(
        "SELECT tx_id, CAST(tx_ts AS BIGINT) AS us, customer_id, terminal_id, amount \
         FROM transactions ORDER BY tx_id LIMIT 1",
    );
    let old_ts = chrono::DateTime::from_timestamp_micros(num(&old[0], "us") as i64)
        .expect("time")
        .to_rfc3339();
    let old_body = tx_body(
        num(&old[0], "tx_id") as i64,
        &old_ts,
        num(&old[0], "customer_id") as i64,
        num(&old[0], "terminal_id") as i64,
        num(&old[0], "amount"),
    );
    let server = Server::start(&lake.lake(), &["--event-skew-policy", "clamp"]);
    let port = server.port;
    let body = tx_body(9_100_001, &ts(10), 17, 42, 35.5);
    let (code, first) = post_json(port, "/score", &body);
    assert_eq!(code, 200, "{first}");
    // Other traffic of the same customer changes what a recomputation would give.
    for i in 0..5 {
        let (code, _) = post_json(
            port,
            "/score",
            &tx_body(9_100_100 + i, &ts(20 + i), 17, 42, 900.0),
        );
        assert_eq!(code, 200);
    }
    let (code, again) = post_json(port, "/score", &body);
    assert_eq!(code, 200, "{again}");
    assert_eq!(json(&again), json(&first), "a retry gets the same answer");
    let (code, text) = post_json(port, "/score", &tx_body(9_100_001, &ts(10), 17, 42, 36.0));
    assert_eq!(code, 409, "{text}");
    let e = json(&text);
    assert_eq!(e["error"], "conflict");
    assert!(
        e["detail"].as_str().expect("detail").contains("amount"),
        "{text}"
    );
    let batch = format!(
        r#"{{"transactions":[{body},{}]}}"#,
        tx_body(9_100_002, &ts(30), 18, 43, 5.0)
    );
    let (code, text) = post_json(port, "/score/batch", &batch);
    assert_eq!(code, 200, "{text}");
    assert_eq!(json(&text)["results"][0], json(&first));
    let conflicting = format!(
        r#"{{"transactions":[{},{}]}}"#,
        tx_body(9_100_003, &ts(31), 18, 43, 5.0),
        tx_body(9_100_002, &ts(30), 19, 43, 5.0)
    );
    let (code, text) = post_json(port, "/score/batch", &conflicting);
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("transactions[1].tx_id"), "{text}");
    // The same tx_id twice in one batch conflicts too, and applies nothing (9100004 stays new).
    let twice = format!(
        r#"{{"transactions":[{},{},{}]}}"#,
        tx_body(9_100_004, &ts(32), 18, 43, 5.0),
        tx_body(9_100_005, &ts(33), 18, 43, 5.0),
        tx_body(9_100_005, &ts(33), 18, 43, 5.0)
    );
    let (code, text) = post_json(port, "/score/batch", &twice);
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("tx_id 9100005 appears twice"), "{text}");
    let (code, text) = post_json(port, "/score", &tx_body(9_100_004, &ts(32), 18, 43, 6.0));
    assert_eq!(code, 200, "not applied by the refused batch: {text}");

    // An old transaction of the lake, sent again: scored (late), not written again.
    let (code, text) = post_json(port, "/score", &old_body);
    assert_eq!(code, 200, "{text}");
    assert_eq!(json(&text)["time_flag"], "late", "{text}");

    // Clamped: scored at the watermark's time, said in the answer; its retry is the same.
    let far = tx_body(9_100_009, "2026-01-01T00:00:00Z", 20, 44, 5.0);
    let (code, clamped) = post_json(port, "/score", &far);
    assert_eq!(code, 200, "{clamped}");
    let c = json(&clamped);
    assert_eq!(c["time_flag"], "clamped", "{clamped}");
    assert!(
        c["scored_tx_ts"]
            .as_str()
            .expect("scored_tx_ts")
            .starts_with("2018-05-31T00:"),
        "{clamped}"
    );
    let (code, again) = post_json(port, "/score", &far);
    assert_eq!(code, 200);
    assert_eq!(json(&again), c);

    let (_, metrics) = http(port, "GET", "/metrics", &[], b"");
    for (series, want) in [
        ("fraud_tx_id_reuse_total{outcome=\"replayed\"}", 3.0),
        ("fraud_tx_id_reuse_total{outcome=\"conflict\"}", 2.0),
        ("fraud_event_time_total{outcome=\"clamped\"}", 1.0),
        ("fraud_event_time_total{outcome=\"late\"}", 1.0),
        // Transactions scored, not requests: the retries are not counted again.
        ("fraud_risk_score_count{role=\"champion\"}", 10.0),
    ] {
        assert_eq!(
            metric_value(&metrics, series),
            want,
            "{series} in:\n{metrics}"
        );
    }
    server.stop();

    let rows = lake.sql_json(&format!(
        "SELECT tx_id, COUNT(*) AS n FROM transactions WHERE tx_id IN (9100001, 9100002, 9100009, {}) \
         GROUP BY tx_id ORDER BY tx_id",
        num(&old[0], "tx_id")
    ));
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(
        rows.iter().all(|r| num(r, "n") == 1.0),
        "one row per tx_id: {rows:?}"
    );
    let rows = lake.sql_json(
        "SELECT tx_id, CAST(tx_ts AS VARCHAR) AS ts, COUNT(*) OVER (PARTITION BY tx_id) AS n \
         FROM predictions WHERE tx_id IN (9100001, 9100009) ORDER BY tx_id",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[1]["ts"]
            .as_str()
            .expect("ts")
            .starts_with("2018-05-31"),
        "stored clamped: {rows:?}"
    );

    // After a restart the retry is still not stored twice; the answer is recomputed from the
    // same history, so it is the same score.
    let server = Server::start(&lake.lake(), &[]);
    let (code, text) = post_json(server.port, "/score", &body);
    assert_eq!(code, 200, "{text}");
    let (a, b) = (
        json(&text)["risk_score"].as_f64(),
        json(&first)["risk_score"].as_f64(),
    );
    let (a, b) = (a.expect("risk"), b.expect("risk"));
    assert!((a - b).abs() <= 1e-9, "{a} vs {b}");
    server.stop();
    let rows = lake.sql_json("SELECT COUNT(*) AS n FROM transactions WHERE tx_id = 9100001");
    assert_eq!(num(&rows[0], "n"), 1.0);
}

#[test]
fn serve_refuses_to_start_without_keys_and_insecure_mode_off_loopback() {
    let lake = TempLake::new();
    let out = lake.run(&["serve", "--addr", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("fraudlake keys create"), "{err}");
    let out = lake.run(&["serve", "--addr", "0.0.0.0:0", "--insecure-no-auth"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn write_routes_need_a_key_with_the_scope_and_a_revoked_key_stops_working() {
    let lake = lake_with_champion();
    let (scorer_id, scorer) = create_key(&lake, "score");
    let (_, labeler) = create_key(&lake, "label");
    let server = Server::start_keyed(&lake.lake(), &["--reload-secs", "1"]);
    let port = server.port;
    let tx = tx_body(9_100_001, &ts(0), 5, 6, 12.0);
    let batch = format!(r#"{{"transactions":[{tx}]}}"#);
    let label = r#"[{"tx_id":9100001,"is_fraud":true}]"#;

    // No key: 401, a JSON error that says how to get one.
    for (path, body) in [
        ("/score", tx.as_str()),
        ("/score/batch", batch.as_str()),
        ("/labels", label),
    ] {
        let (code, text) = post_json(port, path, body);
        assert_eq!(code, 401, "{path}: {text}");
        let e = json(&text);
        assert_eq!(e["error"], "unauthorized", "{text}");
        assert!(text.contains("fraudlake keys create"), "{text}");
    }
    // Not a key, and a well-formed key the lake does not know: 401.
    let (code, text) = post_key(port, "/labels", label, "hunter2");
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("not a fraudlake API key"), "{text}");
    let made_up = format!("flk_{}_{}", "0".repeat(16), "ab".repeat(32));
    let (code, text) = post_key(port, "/labels", label, &made_up);
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("unknown API key"), "{text}");
    // A valid key without the route's scope: 403.
    let (code, text) = post_key(port, "/labels", label, &scorer);
    assert_eq!(code, 403, "{text}");
    assert_eq!(json(&text)["error"], "forbidden");
    assert!(text.contains("'label' scope"), "{text}");
    let (code, _) = post_key(port, "/score", &tx, &labeler);
    assert_eq!(code, 403);
    // The right scope: served.
    let (code, text) = post_key(port, "/score", &tx, &scorer);
    assert_eq!(code, 200, "{text}");
    let (code, text) = post_key(port, "/labels", label, &labeler);
    assert_eq!(code, 200, "{text}");
    // Reading stays open.
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/models/current",
        "/openapi.json",
        "/docs",
    ] {
        assert_eq!(http(port, "GET", path, &[], b"").0, 200, "{path}");
    }
    let (_, metrics) = http(port, "GET", "/metrics", &[], b"");
    for needle in [
        "api_errors_total{kind=\"unauthorized\"} 5",
        "api_errors_total{kind=\"forbidden\"} 2",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }

    // The API document declares the bearer scheme on every write route, and only there.
    let (_, doc) = http(port, "GET", "/openapi.json", &[], b"");
    let doc = json(&doc);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for path in ["/score", "/score/batch", "/labels", "/admin/reload"] {
        let security = &doc["paths"][path]["post"]["security"];
        assert!(
            security
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s.get("bearer").is_some())),
            "{path} lacks the bearer scheme: {security}"
        );
    }
    assert!(doc["paths"]["/health"]["get"]["security"].is_null());

    // Revoked: refused after the server's next key refresh (every second here).
    lake.ok(&["keys", "revoke", &scorer_id]);
    let listed = json(lake.ok(&["keys", "list", "--format", "json"]).trim());
    assert!(listed
        .as_array()
        .expect("keys")
        .iter()
        .any(|k| k["key_id"] == scorer_id.as_str() && k["revoked_at"].is_string()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, text) = post_key(port, "/score", &tx, &scorer);
        if code == 401 {
            assert!(text.contains("revoked"), "{text}");
            break;
        }
        assert_eq!(code, 200, "{text}");
        assert!(
            Instant::now() < deadline,
            "a revoked key was still accepted 30 s later"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
}

/// The record (JSON) of every registered version, oldest first.
fn records(lake: &TempLake) -> Vec<serde_json::Value> {
    lake.sql_json("SELECT record FROM model_versions ORDER BY version")
        .iter()
        .map(|r| json(r["record"].as_str().expect("record")))
        .collect()
}

#[test]
fn an_api_label_cannot_flip_a_chargeback_and_training_keeps_the_chargeback() {
    let lake = lake_with_champion();
    // Two genuine transactions of the training week (2018-05-01..07), labeled by the simulator.
    let rows = lake.sql_json(
        "SELECT l.tx_id FROM labels l JOIN transactions t ON l.tx_id = t.tx_id \
         WHERE NOT l.is_fraud AND t.tx_date = DATE '2018-05-03' ORDER BY l.tx_id LIMIT 2",
    );
    let (x, y) = (num(&rows[0], "tx_id") as i64, num(&rows[1], "tx_id") as i64);
    // A chargeback file says x was fraud.
    let file = lake.path().join("chargebacks.csv");
    std::fs::write(&file, format!("tx_id,is_fraud\n{x},true\n")).expect("write");
    lake.ok(&["ingest", &file.display().to_string()]);

    // An analyst's key says x was genuine (contradicting the chargeback) and y was fraud.
    let (key_id, token) = create_key(&lake, "label");
    let server = Server::start_keyed(&lake.lake(), &[]);
    let (code, text) = post_key(
        server.port,
        "/labels",
        &format!(r#"[{{"tx_id":{x},"is_fraud":false}},{{"tx_id":{y},"is_fraud":true}}]"#),
        &token,
    );
    assert_eq!(code, 200, "{text}");
    let r = json(&text);
    assert_eq!(r["accepted"], 2);
    assert_eq!(r["overridden"], 1, "{text}");
    let (_, metrics) = http(server.port, "GET", "/metrics", &[], b"");
    for applied in ["false", "true"] {
        let needle =
            format!("fraud_label_flips_total{{applied=\"{applied}\",source=\"api:{key_id}\"}} 1");
        assert!(metrics.contains(&needle), "missing {needle} in:\n{metrics}");
    }
    server.stop();

    // Both rows are stored with what they replaced; the overridden one says why.
    let rows = lake.sql_json(&format!(
        "SELECT tx_id, is_fraud, previous_is_fraud, previous_source, note FROM labels \
         WHERE source = 'api:{key_id}' ORDER BY tx_id"
    ));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["previous_is_fraud"], true);
    assert_eq!(rows[0]["previous_source"], "ingest:chargebacks.csv");
    assert!(
        rows[0]["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("not applied")),
        "{rows:?}"
    );
    assert_eq!(rows[1]["previous_is_fraud"], false);
    assert!(rows[1]["note"].is_null(), "{rows:?}");

    // Training takes the chargeback for x (fraud) and the analyst for y (fraud): two more
    // frauds than the first model saw on the same days. Latest-label-wins would give one.
    lake.ok(&[
        "train",
        "--train-start",
        "2018-05-01",
        "--n-estimators",
        "10",
        "--threads",
        "2",
    ]);
    let recs = records(&lake);
    assert_eq!(recs.len(), 2);
    let frauds = |r: &serde_json::Value| r["lineage"]["train_frauds"].as_i64().expect("frauds");
    assert_eq!(frauds(&recs[1]), frauds(&recs[0]) + 2);
    let overridden = recs[1]["lineage"]["labels_overridden"]
        .as_array()
        .expect("overrides")
        .clone();
    assert!(
        overridden
            .iter()
            .any(|o| o["source"] == format!("api:{key_id}").as_str()
                && o["kept"] == "ingest:chargebacks.csv"
                && o["labels"] == 1),
        "{overridden:?}"
    );
    let card = lake.ok(&["models", "show", "2", "--card"]);
    assert!(
        card.contains("Labels overridden by a more trusted source"),
        "{card}"
    );
    assert!(
        card.contains(&format!(
            "Overridden: `api:{key_id}` | 1 labels, `ingest:chargebacks.csv` kept"
        )),
        "{card}"
    );
}

/// libxgboost's probability for one feature row of a registered model (`champion`, `2`, ...).
fn libxgboost_probability(lake: &TempLake, which: &str, row: &[f64]) -> f64 {
    let shown = json(&lake.ok(&["models", "show", which, "--format", "json"]));
    let artifact = Path::new(&lake.lake()).join(shown["artifact"].as_str().expect("artifact"));
    let bytes = std::fs::read(&artifact).expect("artifact");
    let values: Vec<f32> = row.iter().map(|v| *v as f32).collect();
    let p = fraudlake_model::booster::predict(&bytes, &values, values.len()).expect("predict");
    f64::from(p[0])
}
