//! Issue #16: stateless scoring replicas behind a load balancer, sharing their online feature
//! state in one Redis. Every part is real and started here: `redis-server` on a free port with
//! persistence off, `fraudlake serve --online-store redis://...` replicas on one lake, and HAProxy
//! in front running the shipped deploy/haproxy/haproxy.cfg (rendered with the test's ports).
//!
//! Why a replay through the balancer can be compared with the offline `features` table row by
//! row: per entity, Redis serializes the read and write of one transaction's windows (one Lua
//! script per transaction, atomic over all its entities), so concurrent replicas give the
//! features one process gives for the same arrival order. In sql/features.sql the customer
//! windows end at the transaction itself (it and every earlier one by event time) and the
//! terminal windows end 7 days before it. So the replay gets exactly the offline features when
//! (1) each customer's transactions arrive in event-time order, from ONE client at a time: the
//! transactions are partitioned over the clients by `customer_id % CLIENTS`, which is what a
//! Kafka topic keyed by customer gives its consumers, while consecutive requests of one client
//! still land on different replicas (round robin, per request); and (2) the replay spans less
//! than 7 days of event time, so every event a terminal window reads was in the store before the
//! replay began, whatever the interleaving of the clients (asserted when the data is made).
//!
//! * `three_replicas_on_one_redis_behind_haproxy_give_the_offline_features`: 50,000 handbook
//!   transactions (10,000 simulated ones without the handbook) through HAProxy to three
//!   replicas; every answer's features (from `predictions`) equal the offline table; each
//!   replica answered its share; about one Lua script call in Redis per scored transaction.
//! * `a_killed_replica_is_routed_around_and_a_redis_restart_rebootstraps`: SIGKILL of a replica
//!   mid-load (the balancer routes around it, the restarted one is ready in seconds), then a
//!   Redis restart that loses every key (503 meanwhile, a re-bootstrap from the lake, exact
//!   features again), then fail-open scoring flagged `degraded`.
//! * `online_stats_reports_entities_and_bytes`: `fraudlake online bootstrap` and `online stats`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{
    file_tail, handbook_parquet, haproxy_bin, num, repo_root, wait_for, wait_until,
    wait_until_seen, Haproxy, RedisServer, TempLake, BIN,
};
use crate::serve::{free_port, metric_value, try_http};

/// Concurrent clients of a replay; client k sends the transactions of the customers with
/// `customer_id % CLIENTS == k`.
const CLIENTS: usize = 8;
/// The replicas' lake writer commits every FLUSH_MS (a re-bootstrap waits twice that first).
const FLUSH_MS: u64 = 300;
/// Wide enough that no replayed transaction is refused as too far ahead or flagged late while
/// the clients drift apart in event time, and that the whole lake stays within the history.
const MAX_EVENT_SKEW: &str = "10d";
/// The handbook's lake holds every transaction before 2018-06-01T00:00:00Z (61 days) ...
const HANDBOOK_CUT_US: i64 = 1_527_811_200_000_000;
/// ... and the replay the next 50,000 (about 5 days of the handbook's traffic).
const HANDBOOK_REPLAY: usize = 50_000;
/// Without the handbook: the last 10,000 of a simulated lake (2,000 customers, 40 days: about
/// 2.6 days of its traffic).
pub(crate) const SIMULATED_REPLAY: usize = 10_000;
/// `features parity`'s tolerance for real features (counts must be equal).
const REL_TOLERANCE: f64 = 1e-9;
/// The terminal windows' delay: a replay must span less (see the top of this file).
pub(crate) const TERMINAL_DELAY_US: i64 = 7 * 86_400 * 1_000_000;
/// Customer and terminal ids of the probe transactions: no replayed transaction has them, so a
/// probe changes no replayed transaction's features.
const PROBE_ENTITY: i64 = 1_000_000_000;

/// A transaction to replay, as the source lake held it (also the stream tests' messages).
#[derive(Debug, Clone)]
pub(crate) struct ReplayTx {
    pub(crate) tx_id: i64,
    pub(crate) ts_us: i64,
    pub(crate) customer_id: i64,
    pub(crate) terminal_id: i64,
    pub(crate) amount: f64,
    /// Its label in the source lake (`tx_labeled.is_fraud`): what the stream tests send to the
    /// labels topic.
    pub(crate) is_fraud: bool,
}

impl ReplayTx {
    fn from_row(row: &serde_json::Value) -> ReplayTx {
        ReplayTx {
            tx_id: num(row, "tx_id") as i64,
            ts_us: num(row, "us") as i64,
            customer_id: num(row, "customer_id") as i64,
            terminal_id: num(row, "terminal_id") as i64,
            amount: num(row, "amount"),
            is_fraud: num(row, "is_fraud") != 0.0,
        }
    }

    /// The `POST /score` body: `tx_ts` to the microsecond and the amount as the lake holds them.
    pub(crate) fn body(&self) -> String {
        let tx_ts = chrono::DateTime::from_timestamp_micros(self.ts_us)
            .expect("a valid time")
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        serde_json::json!({
            "tx_id": self.tx_id,
            "tx_ts": tx_ts,
            "customer_id": self.customer_id,
            "terminal_id": self.terminal_id,
            "amount": self.amount,
        })
        .to_string()
    }

    /// The order of both feature engines: `event_time` (tx_ts in nanoseconds plus
    /// `tx_id % 1000`, features/src/definition.rs), then tx_id.
    pub(crate) fn event_order(&self) -> (i64, i64) {
        (self.ts_us * 1000 + self.tx_id % 1000, self.tx_id)
    }
}

/// A lake with a champion model, and transactions to replay that the lake does not hold yet.
pub(crate) struct Scenario {
    pub(crate) lake: TempLake,
    pub(crate) replay: Vec<ReplayTx>,
    /// What it is, for the test's output.
    pub(crate) what: String,
}

/// The handbook's first 61 days as the lake, the next `replay` transactions as the replay
/// (`within_terminal_delay`: see [`split_lake`]).
pub(crate) fn handbook_scenario(
    file: &Path,
    replay: usize,
    within_terminal_delay: bool,
) -> Scenario {
    let source = TempLake::new();
    source.ok(&[
        "ingest",
        "--preset",
        "handbook",
        file.to_str().expect("a UTF-8 path"),
    ]);
    split_lake(
        &source,
        HANDBOOK_CUT_US,
        Some(replay),
        "the handbook",
        within_terminal_delay,
    )
}

/// A simulated lake (2,000 customers, 4,000 terminals, 40 days) without its last `replay`
/// transactions, which are the replay (`within_terminal_delay`: see [`split_lake`]).
pub(crate) fn simulated_scenario(replay: usize, within_terminal_delay: bool) -> Scenario {
    let source = TempLake::new();
    source.simulate_small(&["--customers", "2000", "--terminals", "4000", "--days", "40"]);
    let cut = source.sql_json(&format!(
        "SELECT CAST(tx_ts AS BIGINT) AS us FROM transactions \
         ORDER BY tx_ts DESC, tx_id DESC LIMIT 1 OFFSET {}",
        replay - 1
    ));
    split_lake(
        &source,
        num(&cut[0], "us") as i64,
        None,
        "a simulated lake",
        within_terminal_delay,
    )
}

/// The test's lake: `source`'s transactions before `cut_us`, each with the label that counts
/// (through `tx_labeled`), ingested from a Parquet file; its offline features and a champion.
/// The replay: `source`'s transactions from `cut_us` on (at most `limit`), in event time order,
/// with their labels. `within_terminal_delay`: the replay must span less than the terminal
/// windows' delay (asserted), as a comparison of every feature needs when the arrival order
/// across clients is not event-time order; the stream test compares the terminal features only
/// where that holds, so it may replay more.
fn split_lake(
    source: &TempLake,
    cut_us: i64,
    limit: Option<usize>,
    what: &str,
    within_terminal_delay: bool,
) -> Scenario {
    let (lake, ingested, replay) = split_at(source, cut_us, limit);
    let (first, last) = (
        replay.first().expect("transactions to replay"),
        replay.last().expect("transactions to replay"),
    );
    let span_us = last.ts_us - first.ts_us;
    assert!(
        !within_terminal_delay || span_us < TERMINAL_DELAY_US,
        "the replay spans {:.1} days: terminal windows (7 days back) would read replayed \
         transactions, whose arrival order across clients is not event-time order",
        span_us as f64 / 86_400e6
    );
    lake.ok(&["features", "build"]);
    lake.ok(&["train", "--n-estimators", "50", "--threads", "2"]);
    let what = format!(
        "{what}: {} transactions in the lake, {} to replay ({:.1} days of event time)",
        num(&ingested, "accepted"),
        replay.len(),
        span_us as f64 / 86_400e6
    );
    Scenario { lake, replay, what }
}

/// `source` split at `cut_us`: a new lake holding its transactions before the cut, each with
/// the label that counts (through `tx_labeled`, ingested from a Parquet file; the ingest's
/// JSON row is returned), and the transactions from the cut on (at most `limit`), in event
/// time order with their labels, to replay.
pub(crate) fn split_at(
    source: &TempLake,
    cut_us: i64,
    limit: Option<usize>,
) -> (TempLake, serde_json::Value, Vec<ReplayTx>) {
    let lake = TempLake::new();
    let history = lake.path().join("history.parquet");
    let history = history.to_str().expect("a UTF-8 path");
    source.ok(&[
        "sql",
        &format!(
            "SELECT tx_id, tx_ts, customer_id, terminal_id, amount, is_fraud FROM tx_labeled \
             WHERE CAST(tx_ts AS BIGINT) < {cut_us}"
        ),
        "--out",
        history,
    ]);
    let ingested = first_row(&lake.ok(&["ingest", history, "--output", "json"]));
    let limit = limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
    let replay: Vec<ReplayTx> = source
        .sql_json(&format!(
            "SELECT tx_id, CAST(tx_ts AS BIGINT) AS us, customer_id, terminal_id, amount, is_fraud \
             FROM tx_labeled WHERE CAST(tx_ts AS BIGINT) >= {cut_us} ORDER BY tx_ts, tx_id{limit}"
        ))
        .iter()
        .map(ReplayTx::from_row)
        .collect();
    (lake, ingested, replay)
}

/// The one row a `--output json` command prints (an array of one object).
pub(crate) fn first_row(out: &str) -> serde_json::Value {
    let value: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    value
        .as_array()
        .and_then(|rows| rows.first())
        .cloned()
        .unwrap_or_else(|| panic!("expected an array of one row: {out}"))
}

/// A JSON value as text: a string as is, a number in decimal, null or absent as "".
fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `fraudlake online bootstrap` into `redis`; its row (printed with its speed).
fn bootstrap(lake: &TempLake, redis: &RedisServer) -> serde_json::Value {
    let url = redis.url();
    let row = first_row(&lake.ok(&[
        "online",
        "bootstrap",
        "--online-store",
        &url,
        "--output",
        "json",
    ]));
    eprintln!(
        "online bootstrap: {} transactions, {} entities, {} events in {:.2} s: {:.0} rows/s \
         (generation {})",
        num(&row, "transactions"),
        num(&row, "entities"),
        num(&row, "events"),
        num(&row, "seconds"),
        num(&row, "rows_per_s"),
        text(&row["generation"])
    );
    row
}

/// `fraudlake online stats` of `redis`.
fn online_stats(lake: &TempLake, redis: &RedisServer) -> serde_json::Value {
    let url = redis.url();
    first_row(&lake.ok(&[
        "online",
        "stats",
        "--online-store",
        &url,
        "--output",
        "json",
    ]))
}

/// One `fraudlake serve` replica on a fixed port (a restart keeps it: the balancer's config names
/// it), logging to a file of the lake's test folder. (The stream tests use it too, for a server
/// they SIGKILL and restart.)
pub(crate) struct Replica {
    /// Its name in the balancer's config (`replica1`, ...), which HAProxy returns in
    /// `X-Served-By`.
    pub(crate) name: String,
    pub(crate) port: u16,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    spawned_at: Instant,
}

impl Replica {
    /// A replica of `lake` on the store at `store_url` (not started: [`Replica::spawn`]).
    pub(crate) fn new(name: &str, lake: &TempLake, store_url: &str, extra: &[&str]) -> Replica {
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--lake".into(),
            lake.lake(),
            "--quiet".into(),
            "serve".into(),
            "--addr".into(),
            format!("127.0.0.1:{port}"),
            "--insecure-no-auth".into(),
            "--online-store".into(),
            store_url.to_string(),
            "--flush-ms".into(),
            FLUSH_MS.to_string(),
            "--max-event-skew".into(),
            MAX_EVENT_SKEW.into(),
            "--reload-secs".into(),
            "3600".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Replica {
            name: name.to_string(),
            port,
            args,
            log: lake.path().join(format!("{name}.log")),
            child: None,
            spawned_at: Instant::now(),
        }
    }

    /// Starts the process (again, after [`Replica::kill`]: same port, same arguments).
    pub(crate) fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the replica's log file");
        let child = Command::new(BIN)
            .current_dir(repo_root())
            .args(&self.args)
            // The default log filter: fraudlake's info lines (start-up, store state changes,
            // re-bootstrap), warnings of the rest. A file, so nothing blocks on a full pipe.
            .env_remove("RUST_LOG")
            .env_remove("FRAUDLAKE_LAKE")
            .env_remove("FRAUDLAKE_FEATURES_SQL")
            .env_remove("FRAUDLAKE_ONLINE_STORE")
            .env_remove("FRAUDLAKE_ON_STORE_FAILURE")
            .env_remove("FRAUDLAKE_SCORING_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start fraudlake serve");
        self.child = Some(child);
        self.spawned_at = Instant::now();
    }

    /// Waits until `GET /ready` answers 200; the time since the process started. Panics (with
    /// the log) when it exits first or is not ready within `limit`.
    pub(crate) fn wait_ready(&mut self, limit: Duration) -> Duration {
        let port = self.port;
        match wait_for(&mut self.child, limit, || {
            matches!(try_http(port, "GET", "/ready", &[], b""), Ok((200, _)))
        }) {
            Ok(()) => self.spawned_at.elapsed(),
            Err(Some(status)) => panic!(
                "{} exited ({status}) before it was ready:\n{}",
                self.name,
                self.log_tail()
            ),
            Err(None) => panic!(
                "{} not ready {limit:?} after its start:\n{}",
                self.name,
                self.log_tail()
            ),
        }
    }

    /// SIGKILL: no drain. What its lake writer had queued since its last commit is lost.
    pub(crate) fn kill(&mut self) {
        let mut child = self.child.take().expect("a running replica");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// SIGTERM, then a clean exit: it stops accepting, answers what is in flight and commits
    /// everything its lake writer queued.
    pub(crate) fn terminate(&mut self) {
        let mut child = self.child.take().expect("a running replica");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM {}", child.id());
        let deadline = Instant::now() + Duration::from_secs(120);
        let exit = loop {
            if let Some(exit) = child.try_wait().expect("wait") {
                break exit;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} still running 120 s after SIGTERM:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            exit.success(),
            "{} exited with {exit} after SIGTERM:\n{}",
            self.name,
            self.log_tail()
        );
    }

    /// Its `/metrics` scrape.
    pub(crate) fn metrics(&self) -> String {
        let (code, body) = try_http(self.port, "GET", "/metrics", &[], b"")
            .unwrap_or_else(|e| panic!("GET /metrics of {}: {e}", self.name));
        assert_eq!(code, 200, "GET /metrics of {}: {body}", self.name);
        body
    }

    pub(crate) fn log_tail(&self) -> String {
        file_tail(&self.log, 4000)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Transactions answered 200 on `POST /score`, by the replica's own count.
fn scored(metrics: &str) -> f64 {
    metric_value(
        metrics,
        "fraud_requests_total{endpoint=\"/score\",status=\"200\"}",
    )
}

/// The feature names of the model a replica serves, in the order of `predictions.features`.
fn feature_names(replica: &Replica) -> Vec<String> {
    let (code, body) =
        try_http(replica.port, "GET", "/models/current", &[], b"").expect("GET /models/current");
    assert_eq!(code, 200, "{body}");
    let model: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    model["feature_names"]
        .as_array()
        .expect("feature_names")
        .iter()
        .map(|n| n.as_str().expect("a feature name").to_string())
        .collect()
}

/// Redis, replicas on it, HAProxy in front.
struct Fleet {
    redis: RedisServer,
    replicas: Vec<Replica>,
    balancer: Haproxy,
}

impl Fleet {
    /// Starts `n` replicas at once on the store (already bootstrapped), waits until each is
    /// ready (printing how long it took), then HAProxy in front, and waits until the balancer
    /// has routed a request to every replica.
    fn start(lake: &TempLake, redis: RedisServer, n: usize, extra: &[&str]) -> Fleet {
        let url = redis.url();
        let mut replicas: Vec<Replica> = (1..=n)
            .map(|i| Replica::new(&format!("replica{i}"), lake, &url, extra))
            .collect();
        for replica in &mut replicas {
            replica.spawn();
        }
        for replica in &mut replicas {
            let took = replica.wait_ready(Duration::from_secs(120));
            eprintln!(
                "{} ready {:.2} s after its start, on the loaded store ({n} starting at once)",
                replica.name,
                took.as_secs_f64()
            );
        }
        let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
        let balancer = Haproxy::start(&ports).expect("haproxy (checked by the test first)");
        let names: HashSet<String> = replicas.iter().map(|r| r.name.clone()).collect();
        let mut client = KeepAliveClient::new(balancer.port);
        let mut routed_to = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while routed_to != names {
            if let Ok(answer) = client.request("GET", "/health", "") {
                routed_to.extend(answer.served_by);
            }
            assert!(
                Instant::now() < deadline,
                "the balancer routed only to {routed_to:?} in 30 s:\n{}",
                balancer.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Fleet {
            redis,
            replicas,
            balancer,
        }
    }
}

/// One answer read by [`KeepAliveClient`].
struct Answer {
    status: u16,
    body: String,
    /// HAProxy's `X-Served-By`: the replica that answered.
    served_by: Option<String>,
}

/// An HTTP/1.1 client on one kept-alive connection (opened again when the peer closes it), as
/// a balancer's clients are; it reads which replica answered from `X-Served-By`.
struct KeepAliveClient {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl KeepAliveClient {
    fn new(port: u16) -> KeepAliveClient {
        KeepAliveClient { port, conn: None }
    }

    /// One request (a JSON body, or none when empty). `Err` when the connection fails
    /// (refused, reset, closed without an answer): the caller may send it again, since a
    /// transaction is idempotent by its tx_id.
    fn request(&mut self, method: &str, path: &str, body: &str) -> Result<Answer, String> {
        let reused = self.conn.is_some();
        match self.exchange(method, path, body) {
            Ok(answer) => Ok(answer),
            // A kept-alive connection the peer closed meanwhile: once more on a new one.
            Err(_) if reused => self.exchange(method, path, body),
            Err(e) => Err(e),
        }
    }

    /// Sends and reads one exchange; drops the connection on any error.
    fn exchange(&mut self, method: &str, path: &str, body: &str) -> Result<Answer, String> {
        let result = self.exchange_on_connection(method, path, body);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn exchange_on_connection(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<Answer, String> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port))
                .map_err(|e| format!("connect: {e}"))?;
            stream
                .set_nodelay(true)
                .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(60))))
                .map_err(|e| format!("socket options: {e}"))?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().expect("connected");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.get_mut()
            .write_all(request.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let read = |e: std::io::Error| format!("read: {e}");
        let mut status_line = String::new();
        if conn.read_line(&mut status_line).map_err(read)? == 0 {
            return Err("closed: no answer".to_string());
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no HTTP status in {status_line:?}"))?;
        let (mut length, mut chunked, mut close, mut served_by) = (None, false, false, None);
        loop {
            let mut header = String::new();
            if conn.read_line(&mut header).map_err(read)? == 0 {
                return Err("closed: in the headers".to_string());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "x-served-by" => served_by = Some(value.to_string()),
                _ => {}
            }
        }
        let mut bytes = Vec::new();
        if chunked {
            loop {
                let mut size_line = String::new();
                conn.read_line(&mut size_line).map_err(read)?;
                let size_text = size_line.trim().split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| format!("bad chunk size {size_line:?}"))?;
                // The chunk and its CRLF (after the last, empty chunk: the final CRLF).
                let mut chunk = vec![0u8; size + 2];
                conn.read_exact(&mut chunk).map_err(read)?;
                chunk.truncate(size);
                bytes.extend_from_slice(&chunk);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(length) = length {
            bytes.resize(length, 0);
            conn.read_exact(&mut bytes).map_err(read)?;
        } else {
            conn.read_to_end(&mut bytes).map_err(read)?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            served_by,
        })
    }
}

/// One transaction answered 200: by which replica (HAProxy's `X-Served-By`), and when.
#[derive(Debug, Clone)]
struct Answered {
    tx_id: i64,
    replica: String,
    at: Instant,
}

/// What the clients of a replay saw.
#[derive(Debug, Default)]
struct LoadReport {
    answered: Vec<Answered>,
    /// Answers that were not 200 and were sent again, by kind (`503 online_store_unavailable`,
    /// `503 from the balancer`, `connection: ...`), with their counts.
    retried: BTreeMap<String, usize>,
    seconds: f64,
}

/// Replays `txs` through the balancer on `port` with CLIENTS clients: client k sends the
/// transactions of the customers with `customer_id % CLIENTS == k`, in event-time order, one at
/// a time, each until it is answered 200 (a 503, a 502 or 504 of the balancer, a broken
/// connection: sent again 20 ms later; the customer's next transaction waits, so its order
/// holds). With `pace`, a client sends at most one transaction per `pace`. `progress` counts
/// the transactions answered. Any other answer fails the test.
fn start_replay(
    port: u16,
    txs: &[ReplayTx],
    pace: Option<Duration>,
    progress: Arc<AtomicUsize>,
) -> JoinHandle<LoadReport> {
    let mut per_client: Vec<Vec<ReplayTx>> = vec![Vec::new(); CLIENTS];
    for tx in txs {
        per_client[tx.customer_id.rem_euclid(CLIENTS as i64) as usize].push(tx.clone());
    }
    for list in &mut per_client {
        list.sort_by_key(ReplayTx::event_order);
    }
    std::thread::spawn(move || {
        let started = Instant::now();
        let clients: Vec<JoinHandle<LoadReport>> = per_client
            .into_iter()
            .map(|list| {
                let progress = progress.clone();
                std::thread::spawn(move || run_client(port, &list, pace, &progress))
            })
            .collect();
        let mut report = LoadReport::default();
        for client in clients {
            let part = client.join().expect("a replay client failed");
            report.answered.extend(part.answered);
            for (kind, count) in part.retried {
                *report.retried.entry(kind).or_default() += count;
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        report
    })
}

/// One client of [`start_replay`].
fn run_client(
    port: u16,
    txs: &[ReplayTx],
    pace: Option<Duration>,
    progress: &AtomicUsize,
) -> LoadReport {
    let mut client = KeepAliveClient::new(port);
    let mut report = LoadReport::default();
    let started = Instant::now();
    for (i, tx) in txs.iter().enumerate() {
        if let Some(pace) = pace {
            let due = started + pace * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let body = tx.body();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let kind = match client.request("POST", "/score", &body) {
                Ok(answer) if answer.status == 200 => {
                    report.answered.push(Answered {
                        tx_id: tx.tx_id,
                        replica: answer.served_by.unwrap_or_default(),
                        at: Instant::now(),
                    });
                    progress.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(answer) if answer.status == 503 => {
                    if answer.body.contains("online_store_unavailable") {
                        "503 online_store_unavailable".to_string()
                    } else {
                        // HAProxy's own page: no replica in service.
                        "503 from the balancer".to_string()
                    }
                }
                Ok(answer) if matches!(answer.status, 502 | 504) => {
                    format!("{} from the balancer", answer.status)
                }
                Ok(answer) => panic!(
                    "tx {} answered {}: {} (body {})",
                    tx.tx_id, answer.status, answer.body, body
                ),
                Err(e) => format!("connection: {}", e.split(':').next().unwrap_or("")),
            };
            *report.retried.entry(kind).or_default() += 1;
            assert!(
                Instant::now() < deadline,
                "tx {} not answered 200 within 180 s; retried: {:?}",
                tx.tx_id,
                report.retried
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    report
}

/// Waits until `progress` reaches `target` (the load's thread still running); panics after
/// `limit`, or when the load ended before it got there.
fn wait_for_progress(
    progress: &AtomicUsize,
    target: usize,
    load: &JoinHandle<LoadReport>,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    while progress.load(Ordering::Relaxed) < target {
        assert!(
            !load.is_finished(),
            "the load ended at {} answered, before {target}",
            progress.load(Ordering::Relaxed)
        );
        assert!(
            Instant::now() < deadline,
            "the load reached {} answered, not {target}, in {limit:?}",
            progress.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A transaction of an entity no replayed transaction has, at the replay's first event time.
fn probe(tx_id: i64, first: &ReplayTx, entity: i64) -> ReplayTx {
    ReplayTx {
        tx_id,
        ts_us: first.ts_us,
        customer_id: PROBE_ENTITY + entity,
        terminal_id: PROBE_ENTITY + entity,
        amount: 42.5,
        is_fraud: false,
    }
}

/// POST /score straight to one replica (not through the balancer).
fn post_score(port: u16, tx: &ReplayTx) -> (u16, serde_json::Value) {
    let (code, body) = try_http(
        port,
        "POST",
        "/score",
        &[("Content-Type", "application/json")],
        tx.body().as_bytes(),
    )
    .unwrap_or_else(|e| panic!("POST /score on {port}: {e}"));
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (code, value)
}

/// Redis's and the replicas' counts of store traffic at one moment.
struct StoreTraffic {
    /// Lua calls in Redis: EVAL, EVALSHA (and their _RO forms), FCALL.
    lua_calls: u64,
    /// Every command Redis ran, except INFO (how this is measured).
    commands: u64,
    /// The replicas' own count, `fraud_online_store_round_trips_total`, summed.
    round_trips: f64,
    at: Instant,
}

fn store_traffic(redis: &RedisServer, replicas: &[Replica]) -> StoreTraffic {
    let stats = redis.commandstats();
    let lua_calls: u64 = [
        "eval",
        "evalsha",
        "eval_ro",
        "evalsha_ro",
        "fcall",
        "fcall_ro",
    ]
    .iter()
    .filter_map(|command| stats.get(*command))
    .sum();
    let commands: u64 = stats
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .map(|(_, calls)| calls)
        .sum();
    let round_trips: f64 = replicas
        .iter()
        .map(|r| metric_value(&r.metrics(), "fraud_online_store_round_trips_total"))
        .sum();
    StoreTraffic {
        lua_calls,
        commands,
        round_trips,
        at: Instant::now(),
    }
}

/// A row of `predictions` beside the offline features of its transaction.
pub(crate) struct OnlineAndOffline {
    pub(crate) tx_id: i64,
    /// `predictions.features` (null: a missing value).
    pub(crate) online: Vec<Option<f64>>,
    /// The `features` table's columns in the same order; `None` without a row there.
    pub(crate) offline: Option<Vec<serde_json::Value>>,
}

/// Every row of `predictions` with the offline features of its transaction (`features` must
/// have been built after the replicas stopped).
pub(crate) fn online_and_offline(lake: &TempLake, names: &[String]) -> Vec<OnlineAndOffline> {
    let columns: Vec<String> = names.iter().map(|n| format!("f.\"{n}\"")).collect();
    let rows = lake.sql_json(&format!(
        "SELECT p.tx_id, p.features AS online, f.tx_id AS offline_tx_id, {} \
         FROM predictions p LEFT JOIN features f ON p.tx_id = f.tx_id ORDER BY p.tx_id",
        columns.join(", ")
    ));
    rows.iter()
        .map(|row| OnlineAndOffline {
            tx_id: num(row, "tx_id") as i64,
            online: row["online"]
                .as_array()
                .expect("predictions.features")
                .iter()
                .map(serde_json::Value::as_f64)
                .collect(),
            offline: row.get("offline_tx_id").filter(|v| !v.is_null()).map(|_| {
                names
                    .iter()
                    .map(|n| row.get(n).cloned().unwrap_or(serde_json::Value::Null))
                    .collect()
            }),
        })
        .collect()
}

/// Whether an online value is the offline one as `features parity` judges it: counts (integers
/// offline) exactly, reals within 1e-9 relative to their magnitude floored at 1, a missing value
/// only as a missing value.
fn agrees(online: Option<f64>, offline: &serde_json::Value) -> bool {
    match (online, offline) {
        (None, serde_json::Value::Null) => true,
        (Some(a), b) if b.is_i64() || b.is_u64() => b.as_f64() == Some(a),
        (Some(a), b) => b
            .as_f64()
            .is_some_and(|b| (a - b).abs() / a.abs().max(b.abs()).max(1.0) <= REL_TOLERANCE),
        (None, _) => false,
    }
}

/// The rows whose online features differ from the offline ones, described (all of them
/// counted, the first 10 shown), skipping the rows `exempt` names.
pub(crate) fn feature_mismatches(
    rows: &[OnlineAndOffline],
    names: &[String],
    exempt: impl Fn(i64) -> bool,
) -> (usize, Vec<String>) {
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for row in rows.iter().filter(|row| !exempt(row.tx_id)) {
        compared += 1;
        let Some(offline) = &row.offline else {
            mismatches.push(format!("tx {}: no row in `features`", row.tx_id));
            continue;
        };
        let differing: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !agrees(row.online.get(*i).copied().flatten(), &offline[*i]))
            .map(|(i, name)| {
                format!(
                    "{name}: online {:?}, offline {}",
                    row.online.get(i).copied().flatten(),
                    offline[i]
                )
            })
            .collect();
        if row.online.len() != names.len() || !differing.is_empty() {
            mismatches.push(format!(
                "tx {} ({} online values): {}",
                row.tx_id,
                row.online.len(),
                differing.join("; ")
            ));
        }
    }
    (compared, mismatches)
}

/// The first 10 of `items`, one per line, for a failure message.
pub(crate) fn first_ten(items: &[String]) -> String {
    items
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn three_replicas_on_one_redis_behind_haproxy_give_the_offline_features() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    if haproxy_bin().is_none() {
        return;
    }
    let scenario = match handbook_parquet() {
        Some(file) => handbook_scenario(&file, HANDBOOK_REPLAY, true),
        None => simulated_scenario(SIMULATED_REPLAY, true),
    };
    eprintln!("replicas: {}", scenario.what);
    let lake = &scenario.lake;
    let n = scenario.replay.len();
    let loaded = bootstrap(lake, &redis);
    assert!(num(&loaded, "entities") > 0.0, "{loaded}");
    let mut fleet = Fleet::start(lake, redis, 3, &[]);
    // The replicas found the store loaded and did not rebuild it.
    let stats = online_stats(lake, &fleet.redis);
    assert_eq!(
        text(&stats["generation"]),
        text(&loaded["generation"]),
        "a replica re-bootstrapped a loaded store: {stats}"
    );
    let names = feature_names(&fleet.replicas[0]);

    // The store traffic of an idle fleet (the balancer's health checks, the gauges' refresh),
    // then of the replay.
    let idle = store_traffic(&fleet.redis, &fleet.replicas);
    // A measuring window, not a wait for something: its real length is measured (`at`) and
    // the idle traffic it counts is scaled by it.
    std::thread::sleep(Duration::from_secs(3));
    let before = store_traffic(&fleet.redis, &fleet.replicas);
    let idle_seconds = before.at.duration_since(idle.at).as_secs_f64();
    let progress = Arc::new(AtomicUsize::new(0));
    let report = start_replay(fleet.balancer.port, &scenario.replay, None, progress)
        .join()
        .expect("the replay");
    let after = store_traffic(&fleet.redis, &fleet.replicas);
    eprintln!(
        "replayed {n} transactions through HAProxy to 3 replicas with {CLIENTS} clients in \
         {:.1} s: {:.0} transactions/s",
        report.seconds,
        n as f64 / report.seconds
    );
    assert!(
        report.retried.is_empty(),
        "every request is answered 200 at the first try without faults: {:?}",
        report.retried
    );
    assert_eq!(report.answered.len(), n);

    // Each replica answered its share (round robin: about a third), counted by the balancer's
    // header and by the replica itself, and its store is up.
    let mut by_header: HashMap<&str, usize> = HashMap::new();
    for answer in &report.answered {
        *by_header.entry(answer.replica.as_str()).or_default() += 1;
    }
    for replica in &fleet.replicas {
        let metrics = replica.metrics();
        let routed = by_header.get(replica.name.as_str()).copied().unwrap_or(0);
        eprintln!(
            "{}: answered {routed} of {n} ({:.1} %)",
            replica.name,
            100.0 * routed as f64 / n as f64
        );
        assert_eq!(scored(&metrics) as usize, routed, "{}", replica.name);
        assert!(
            routed * 6 >= n,
            "{} answered {routed} of {n}: less than half its share",
            replica.name
        );
        assert_eq!(
            metric_value(&metrics, "fraud_online_store_up"),
            1.0,
            "{}",
            replica.name
        );
    }

    // One Lua call in Redis per scored transaction (both entities in one script), give or take
    // what an idle fleet sends anyway (scaled to the replay's duration, twice over) and 2 %.
    let load_seconds = after.at.duration_since(before.at).as_secs_f64();
    let background = |idle_count: f64| 2.0 * idle_count / idle_seconds * load_seconds + 10.0;
    let lua = (after.lua_calls - before.lua_calls) as f64;
    let commands = (after.commands - before.commands) as f64;
    let round_trips = after.round_trips - before.round_trips;
    let idle_lua = (before.lua_calls - idle.lua_calls) as f64;
    let idle_round_trips = before.round_trips - idle.round_trips;
    eprintln!(
        "store traffic per scored transaction: {:.3} Lua calls, {:.3} Redis commands, {:.3} round \
         trips counted by the replicas (idle fleet: {:.1} Lua calls/s, {:.1} round trips/s)",
        lua / n as f64,
        commands / n as f64,
        round_trips / n as f64,
        idle_lua / idle_seconds,
        idle_round_trips / idle_seconds
    );
    assert!(
        lua >= n as f64,
        "{lua} Lua calls for {n} scored transactions"
    );
    assert!(
        lua <= n as f64 * 1.02 + background(idle_lua),
        "{lua} Lua calls for {n} scored transactions: more than one each"
    );
    assert!(
        round_trips <= n as f64 * 1.02 + background(idle_round_trips),
        "{round_trips} store round trips for {n} scored transactions: more than one each"
    );

    // Stopped (each commits what it queued), the lake has every answer; its features are the
    // offline ones on every row.
    for replica in &mut fleet.replicas {
        replica.terminate();
    }
    lake.ok(&["features", "build"]);
    let rows = online_and_offline(lake, &names);
    let replayed: HashSet<i64> = scenario.replay.iter().map(|tx| tx.tx_id).collect();
    let in_predictions: HashSet<i64> = rows.iter().map(|row| row.tx_id).collect();
    assert_eq!(
        rows.len(),
        in_predictions.len(),
        "a tx_id twice in predictions"
    );
    let missing: Vec<&i64> = replayed.difference(&in_predictions).collect();
    let extra: Vec<&i64> = in_predictions.difference(&replayed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "predictions lack {} replayed transactions (e.g. {:?}) and hold {} others (e.g. {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        extra.len(),
        &extra[..extra.len().min(10)]
    );
    let (compared, mismatches) = feature_mismatches(&rows, &names, |_| false);
    assert_eq!(compared, n);
    assert!(
        mismatches.is_empty(),
        "{} of {n} rows differ from the offline features, e.g.:\n{}",
        mismatches.len(),
        first_ten(&mismatches)
    );
    eprintln!(
        "all {n} replayed rows have the offline features ({} each)",
        names.len()
    );
}

/// When each replica's `/ready` first answered 503 after `since`, and when it answered 200
/// again after that.
struct ReadyTimeline {
    went_unready: Vec<Option<Instant>>,
    ready_again: Vec<Option<Instant>>,
}

/// Polls `/ready` of every port every 20 ms until each went 503 and then 200 again, or `limit`.
/// Returns once the watcher has polled every port a first time (so the caller's fault comes
/// after a round that saw the replicas as they were: a condition, not a pause).
fn watch_ready(ports: Vec<u16>, limit: Duration) -> JoinHandle<ReadyTimeline> {
    let (first_round, first_round_done) = std::sync::mpsc::channel::<()>();
    let watcher = std::thread::spawn(move || {
        let mut timeline = ReadyTimeline {
            went_unready: vec![None; ports.len()],
            ready_again: vec![None; ports.len()],
        };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && timeline.ready_again.iter().any(Option::is_none) {
            for (i, port) in ports.iter().enumerate() {
                let status = try_http(*port, "GET", "/ready", &[], b"").map(|(code, _)| code);
                match (status, timeline.went_unready[i], timeline.ready_again[i]) {
                    (Ok(503), None, _) => timeline.went_unready[i] = Some(Instant::now()),
                    (Ok(200), Some(_), None) => timeline.ready_again[i] = Some(Instant::now()),
                    _ => {}
                }
            }
            let _ = first_round.send(());
            std::thread::sleep(Duration::from_millis(20));
        }
        timeline
    });
    // Err: the watcher ended (its limit passed) without a round; its timeline says so.
    let _ = first_round_done.recv_timeout(limit);
    watcher
}

#[test]
fn a_killed_replica_is_routed_around_and_a_redis_restart_rebootstraps() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    if haproxy_bin().is_none() {
        return;
    }
    let scenario = simulated_scenario(SIMULATED_REPLAY, true);
    eprintln!("replicas: {}", scenario.what);
    let lake = &scenario.lake;
    let n = scenario.replay.len();
    bootstrap(lake, &redis);
    let mut fleet = Fleet::start(lake, redis, 3, &[]);
    let names = feature_names(&fleet.replicas[0]);
    let max_tx_id = scenario.replay.iter().map(|tx| tx.tx_id).max().unwrap_or(0);
    let probes = |k: i64| probe(max_tx_id + 1_000_000 + k, &scenario.replay[0], k);

    // The load, paced (at most 100 transactions/s per client) so that the faults happen while
    // it runs; the clients send each transaction until it is answered 200.
    let progress = Arc::new(AtomicUsize::new(0));
    let load = start_replay(
        fleet.balancer.port,
        &scenario.replay,
        Some(Duration::from_millis(10)),
        progress.clone(),
    );
    let patience = Duration::from_secs(300);

    // 1. At 15 % of the load, SIGKILL of the second replica.
    wait_for_progress(&progress, n * 15 / 100, &load, patience);
    let kill = kill_and_restart(&mut fleet, lake, 1, &progress, &load, n / 20);

    // 2. At half the load, Redis restarts without its data.
    wait_for_progress(&progress, n / 2, &load, patience);
    let answered_before_outage = progress.load(Ordering::Relaxed);
    assert!(
        answered_before_outage < n * 9 / 10,
        "the load is almost over ({answered_before_outage} of {n}) before the Redis restart"
    );
    let fail_closed_probe = probes(1);
    let recovered_at = restart_redis_without_its_data(&mut fleet, &fail_closed_probe);

    let report = load.join().expect("the replay");
    assert_eq!(report.answered.len(), n);
    eprintln!(
        "load: {n} transactions in {:.1} s; sent again after: {:?}",
        report.seconds, report.retried
    );
    assert!(
        report.retried.keys().any(|kind| kind.starts_with("503")),
        "the clients saw no 503 through the balancer during the outage: {:?}",
        report.retried
    );
    let mut rebootstraps = 0.0;
    for replica in &fleet.replicas {
        let metrics = replica.metrics();
        rebootstraps += metric_value(&metrics, "fraud_online_rebootstraps_total");
        assert_eq!(
            metric_value(&metrics, "fraud_online_store_up"),
            1.0,
            "{}",
            replica.name
        );
    }
    assert!(rebootstraps >= 1.0, "no replica counted a re-bootstrap");
    let answered_after_restart = report
        .answered
        .iter()
        .filter(|a| a.replica == kill.victim && a.at > kill.back_at)
        .count();
    assert!(
        answered_after_restart > 0,
        "the restarted {} answered nothing through the balancer",
        kill.victim
    );

    // The lake against what was answered, and the offline features against the online ones.
    for replica in &mut fleet.replicas {
        replica.terminate();
    }
    lake.ok(&["features", "build"]);
    check_lost_rows_and_features(
        &scenario,
        &names,
        &report,
        &kill,
        recovered_at,
        fail_closed_probe.tx_id,
    );

    // 3. Fail open.
    fail_open_without_redis(&mut fleet, lake, &probes(2), &probes(3));
}

/// What [`kill_and_restart`] did, for the checks after the load.
struct Kill {
    /// The killed replica's name.
    victim: String,
    killed_at: Instant,
    /// When it was ready again.
    back_at: Instant,
}

/// SIGKILL of replica `victim` while the load runs: the balancer routes around it (the load
/// answers `routed_around` more transactions, and HAProxy marks it down); started again (same
/// port, same arguments) on the loaded store, it uses that store as it is (no re-bootstrap).
fn kill_and_restart(
    fleet: &mut Fleet,
    lake: &TempLake,
    victim: usize,
    progress: &AtomicUsize,
    load: &JoinHandle<LoadReport>,
    routed_around: usize,
) -> Kill {
    let name = fleet.replicas[victim].name.clone();
    fleet.replicas[victim].kill();
    let killed_at = Instant::now();
    let answered_at_kill = progress.load(Ordering::Relaxed);
    wait_for_progress(
        progress,
        answered_at_kill + routed_around,
        load,
        Duration::from_secs(300),
    );
    let marked_down = format!("{name} is DOWN");
    wait_until_seen(
        &format!("HAProxy marks {name} down"),
        Duration::from_secs(60),
        || {
            let log = fleet.balancer.log_tail();
            (log.contains(&marked_down), log)
        },
    );
    let generation = text(&online_stats(lake, &fleet.redis)["generation"]);
    fleet.replicas[victim].spawn();
    let restart = fleet.replicas[victim].wait_ready(Duration::from_secs(120));
    let back_at = Instant::now();
    eprintln!(
        "{name}: SIGKILL after {answered_at_kill} answered; started again, ready in {:.2} s",
        restart.as_secs_f64()
    );
    // What makes the restart quick is that it uses the loaded store as it is: the store's
    // generation is unchanged (no re-bootstrap). That is the behaviour checked; the time (under
    // 10 s on a quiet machine, docs/serving.md) is printed, and bounded by the wait above only,
    // since a loaded machine stretches it without anything being wrong.
    assert_eq!(
        text(&online_stats(lake, &fleet.redis)["generation"]),
        generation,
        "{name} rebuilt the loaded store when it started again"
    );
    Kill {
        victim: name,
        killed_at,
        back_at,
    }
}

/// Redis killed and started again empty (persistence off) while the load runs: every replica's
/// `/ready` goes 503 within a few store checks (3 s quiet, 10 s allowed), scoring answers 503
/// `online_store_unavailable` (fail closed; `probe` sent straight to a replica), the replicas
/// re-bootstrap the store from the lake by themselves and are all ready again, and `probe` is
/// then scored. Returns when the last replica was ready again.
fn restart_redis_without_its_data(fleet: &mut Fleet, probe: &ReplayTx) -> Instant {
    let ports: Vec<u16> = fleet.replicas.iter().map(|r| r.port).collect();
    let watcher = watch_ready(ports, Duration::from_secs(180));
    fleet.redis.stop();
    let outage_at = Instant::now();
    let (code, answer) = post_score(fleet.replicas[0].port, probe);
    assert_eq!(code, 503, "scoring without Redis, fail closed: {answer}");
    assert_eq!(answer["error"], "online_store_unavailable", "{answer}");
    fleet.redis.restart();
    let timeline = watcher.join().expect("the /ready watcher");
    let mut recovered_at = outage_at;
    for (i, replica) in fleet.replicas.iter().enumerate() {
        let name = &replica.name;
        let unready = timeline.went_unready[i].unwrap_or_else(|| {
            panic!("{name}'s /ready never answered 503 after the Redis restart")
        });
        let ready = timeline.ready_again[i].unwrap_or_else(|| {
            panic!(
                "{name} not ready within 180 s of the Redis restart:\n{}",
                replica.log_tail()
            )
        });
        let noticed = unready.saturating_duration_since(outage_at);
        eprintln!(
            "{name}: /ready 503 {:.2} s after Redis went down, 200 again after {:.2} s",
            noticed.as_secs_f64(),
            ready.saturating_duration_since(outage_at).as_secs_f64()
        );
        // The store is checked every 500 ms: 3 s or less on a quiet machine (the figure above
        // and docs/serving.md). The bound is 20 checks, so that a loaded machine (5x slower,
        // the /ready polls of three replicas in turn) does not fail a correct replica; a
        // replica that never notices fails it.
        assert!(
            noticed < Duration::from_secs(10),
            "{name} took {noticed:?} to report the lost store"
        );
        recovered_at = recovered_at.max(ready);
    }
    eprintln!(
        "Redis restart (data lost) to every replica ready on a re-bootstrapped store: {:.2} s",
        recovered_at.duration_since(outage_at).as_secs_f64()
    );
    let (code, answer) = post_score(fleet.replicas[0].port, probe);
    assert_eq!(code, 200, "the probe once the store is back: {answer}");
    assert_ne!(answer["degraded"], true, "{answer}");
    recovered_at
}

/// After a load with a replica killed and a Redis restart: which answered transactions the lake
/// lacks, and the online features of the rest against the offline table (`features` built after
/// the replicas stopped).
///
/// A hard kill loses what the killed replica's lake writer had not committed (docs/serving.md):
/// transactions it answered shortly before the kill, and the ones in flight at the kill that it
/// had applied to the store and that the balancer's retry answered elsewhere as a replay (at
/// most one per client). Their customers' later transactions, until the store was rebuilt from
/// the lake, counted a transaction the offline table does not have: those rows are exempt (and
/// counted); every other row, including every row answered after the re-bootstrap, must have
/// the offline features.
fn check_lost_rows_and_features(
    scenario: &Scenario,
    names: &[String],
    report: &LoadReport,
    kill: &Kill,
    recovered_at: Instant,
    probe_tx_id: i64,
) {
    let rows = online_and_offline(&scenario.lake, names);
    let in_predictions: HashSet<i64> = rows.iter().map(|row| row.tx_id).collect();
    assert_eq!(
        rows.len(),
        in_predictions.len(),
        "a tx_id twice in predictions"
    );
    let mut expected: HashSet<i64> = scenario.replay.iter().map(|tx| tx.tx_id).collect();
    expected.insert(probe_tx_id);
    let unexpected: Vec<&i64> = in_predictions.difference(&expected).collect();
    assert!(
        unexpected.is_empty(),
        "{} predictions of no request, e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );
    let lost: Vec<&Answered> = report
        .answered
        .iter()
        .filter(|a| !in_predictions.contains(&a.tx_id))
        .collect();
    let by_id: HashMap<i64, &ReplayTx> = scenario.replay.iter().map(|tx| (tx.tx_id, tx)).collect();
    // A client sends one transaction at a time, so at the kill at most one of each client's was
    // in flight: that one, if lost, is its client's first answer after the kill. An order, not
    // a time window (a loaded machine may take seconds to retry it elsewhere).
    let client_of = |tx_id: i64| by_id[&tx_id].customer_id.rem_euclid(CLIENTS as i64);
    let mut first_after_kill: HashMap<i64, &Answered> = HashMap::new();
    for answer in report.answered.iter().filter(|a| a.at > kill.killed_at) {
        let first = first_after_kill
            .entry(client_of(answer.tx_id))
            .or_insert(answer);
        if answer.at < first.at {
            *first = answer;
        }
    }
    let mut in_flight_at_kill = 0;
    for answer in &lost {
        if answer.at <= kill.killed_at {
            // What the victim's writer had not committed yet: its last flush interval (300 ms)
            // and the commit under way. The bound leaves a loaded machine's slow commits room;
            // a writer that stopped committing exceeds it.
            let age = kill.killed_at.duration_since(answer.at);
            assert!(
                answer.replica == kill.victim && age < Duration::from_secs(30),
                "tx {} answered by {} {age:?} before the kill is not in the lake",
                answer.tx_id,
                answer.replica
            );
        } else {
            in_flight_at_kill += 1;
            let first = first_after_kill
                .get(&client_of(answer.tx_id))
                .map(|a| a.tx_id);
            assert_eq!(
                first,
                Some(answer.tx_id),
                "tx {} answered by {} after the kill is not in the lake, and it was not in \
                 flight at the kill (its client's first answer after the kill is another)",
                answer.tx_id,
                answer.replica
            );
        }
    }
    assert!(
        in_flight_at_kill <= CLIENTS,
        "{in_flight_at_kill} transactions answered after the kill are not in the lake"
    );
    eprintln!(
        "SIGKILL of {}: {} answered transactions never reached the lake ({} answered by it \
         before the kill, {in_flight_at_kill} in flight)",
        kill.victim,
        lost.len(),
        lost.len() - in_flight_at_kill
    );
    let answered_at: HashMap<i64, Instant> =
        report.answered.iter().map(|a| (a.tx_id, a.at)).collect();
    let mut lost_by_customer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for answer in &lost {
        let tx = by_id[&answer.tx_id];
        lost_by_customer
            .entry(tx.customer_id)
            .or_default()
            .push(tx.event_order());
    }
    let exempt = |tx_id: i64| -> bool {
        let (Some(tx), Some(at)) = (by_id.get(&tx_id), answered_at.get(&tx_id)) else {
            return false;
        };
        *at < recovered_at
            && lost_by_customer
                .get(&tx.customer_id)
                .is_some_and(|orders| orders.iter().any(|o| *o < tx.event_order()))
    };
    let (compared, mismatches) = feature_mismatches(&rows, names, exempt);
    let exempted = rows.len() - compared;
    eprintln!(
        "{compared} rows compared with the offline features, {exempted} exempt (a lost \
         transaction of their customer before them, answered before the re-bootstrap)"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} rows differ from the offline features, e.g.:\n{}",
        mismatches.len(),
        first_ten(&mismatches)
    );
    assert!(
        exempted <= 20 * lost.len(),
        "{exempted} rows exempt for {} lost transactions",
        lost.len()
    );
}

/// A replica with `--on-store-failure open` (the fleet's replicas stopped): without Redis it
/// scores `degraded` (the features of the transaction alone), says so in the answer, counts it,
/// and reports `/ready` 503; when Redis comes back (empty) it re-bootstraps the store by itself,
/// is ready again, and scores without the flag.
fn fail_open_without_redis(
    fleet: &mut Fleet,
    lake: &TempLake,
    without_redis: &ReplayTx,
    after_recovery: &ReplayTx,
) {
    let url = fleet.redis.url();
    let mut open = Replica::new("fail-open", lake, &url, &["--on-store-failure", "open"]);
    open.spawn();
    open.wait_ready(Duration::from_secs(60));
    fleet.redis.stop();
    let (code, answer) = post_score(open.port, without_redis);
    assert_eq!(code, 200, "fail open: {answer}");
    assert_eq!(answer["degraded"], true, "{answer}");
    wait_until("/ready 503 without Redis", Duration::from_secs(60), || {
        matches!(try_http(open.port, "GET", "/ready", &[], b""), Ok((503, _)))
    });
    let metrics = open.metrics();
    assert!(
        metric_value(&metrics, "fraud_online_degraded_total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(metric_value(&metrics, "fraud_online_store_up"), 0.0);
    fleet.redis.restart();
    let back_from = Instant::now();
    let deadline = back_from + Duration::from_secs(120);
    while !matches!(try_http(open.port, "GET", "/ready", &[], b""), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "the fail-open replica not ready 120 s after Redis came back:\n{}",
            open.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "fail open: degraded answers without Redis; ready again {:.2} s after Redis came back \
         (empty: re-bootstrapped)",
        back_from.elapsed().as_secs_f64()
    );
    let metrics = open.metrics();
    assert_eq!(metric_value(&metrics, "fraud_online_store_up"), 1.0);
    assert!(
        metric_value(&metrics, "fraud_online_rebootstraps_total") >= 1.0,
        "{metrics}"
    );
    let (code, answer) = post_score(open.port, after_recovery);
    assert_eq!(code, 200, "{answer}");
    assert_ne!(answer["degraded"], true, "exact features again: {answer}");
    open.terminate();
}

/// The first key of `redis` matching `pattern`, by SCAN.
fn first_key(redis: &RedisServer, pattern: &str) -> Option<String> {
    let mut cursor = "0".to_string();
    loop {
        let reply = redis.command(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"]);
        let mut lines = reply.lines();
        cursor = lines.next().unwrap_or("0").to_string();
        if let Some(key) = lines.next() {
            return Some(key.to_string());
        }
        if cursor == "0" {
            return None;
        }
    }
}

#[test]
fn online_stats_reports_entities_and_bytes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    let empty = online_stats(&lake, &redis);
    assert_eq!(text(&empty["generation"]), "", "an empty store: {empty}");
    assert_eq!(num(&empty, "entities"), 0.0, "{empty}");

    let loaded = bootstrap(&lake, &redis);
    for field in ["transactions", "entities", "events", "rows_per_s"] {
        assert!(num(&loaded, field) > 0.0, "{field}: {loaded}");
    }
    let generation = text(&loaded["generation"]);
    assert!(!generation.is_empty(), "{loaded}");
    let stats = online_stats(&lake, &redis);
    eprintln!("online stats after a bootstrap: {stats}");
    assert_eq!(text(&stats["generation"]), generation, "{stats}");
    assert!(!text(&stats["feature_set"]).is_empty(), "{stats}");
    assert!(num(&stats, "used_memory_bytes") > 0.0, "{stats}");
    assert_eq!(num(&stats, "entities"), num(&loaded, "entities"), "{stats}");
    assert_eq!(num(&stats, "events"), num(&loaded, "events"), "{stats}");
    assert_eq!(
        num(&stats, "tx_records"),
        num(&loaded, "transactions"),
        "{stats}"
    );
    // At most one entity per customer and terminal of the lake; a key for each in Redis, and
    // one per transaction record.
    let distinct = lake.sql_json(
        "SELECT COUNT(DISTINCT customer_id) AS customers, COUNT(DISTINCT terminal_id) AS terminals \
         FROM transactions",
    );
    let entities = num(&stats, "entities");
    assert!(
        entities <= num(&distinct[0], "customers") + num(&distinct[0], "terminals"),
        "{stats} {distinct:?}"
    );
    let keys: f64 = redis.command(&["DBSIZE"]).parse().expect("DBSIZE");
    assert!(
        keys >= entities + num(&stats, "tx_records"),
        "{keys} keys for {stats}"
    );
    // Bounded memory: an entity's key expires when it stays idle.
    let entity_key = first_key(&redis, "fl:*:e:*").expect("an entity key fl:<set>:e:...");
    let ttl: i64 = redis.command(&["TTL", &entity_key]).parse().expect("TTL");
    assert!(ttl > 0, "{entity_key} has no expiry (TTL {ttl})");

    // A second bootstrap replaces what the store held for this feature set.
    let again = bootstrap(&lake, &redis);
    assert_ne!(text(&again["generation"]), generation, "{again}");
    let restats = online_stats(&lake, &redis);
    assert_eq!(text(&restats["generation"]), text(&again["generation"]));
    assert_eq!(num(&restats, "entities"), entities, "{restats}");
    assert_eq!(num(&restats, "events"), num(&stats, "events"), "{restats}");
    let keys_again: f64 = redis.command(&["DBSIZE"]).parse().expect("DBSIZE");
    assert_eq!(keys_again, keys, "a second bootstrap must not add keys");
}

/// Labels committed to the lake (a chargeback file ingested while the replicas serve) reach
/// the shared store by themselves, applied once: the transaction's record says fraud, and the
/// same label through `/labels` then changes nothing more.
#[test]
fn lake_labels_reach_the_shared_store_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let lake = TempLake::new();
    crate::serve::fill_with_champion(&lake);
    bootstrap(&lake, &redis);
    let mut replica = Replica::new("replica1", &lake, &redis.url(), &[]);
    replica.spawn();
    replica.wait_ready(Duration::from_secs(120));
    let genuine = lake.sql_json(
        "SELECT t.tx_id FROM transactions t LEFT JOIN labels l ON t.tx_id = l.tx_id \
         WHERE l.tx_id IS NULL OR NOT l.is_fraud ORDER BY t.tx_ts DESC LIMIT 1",
    );
    let tx_id = num(&genuine[0], "tx_id") as i64;
    let record = first_key(&redis, &format!("fl:*:tx:{tx_id}"))
        .unwrap_or_else(|| panic!("the bootstrap left no record of tx {tx_id}"));
    assert_eq!(redis.command(&["HGET", &record, "f"]).trim(), "0");

    let file = lake.path().join("chargebacks.csv");
    std::fs::write(
        &file,
        format!("tx_id,is_fraud,fraud_scenario\n{tx_id},1,2\n"),
    )
    .expect("csv");
    let started = Instant::now();
    lake.ok(&["ingest", file.to_str().expect("a UTF-8 path")]);
    while redis.command(&["HGET", &record, "f"]).trim() != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the lake's label did not reach the store in 60 s:\n{}",
            replica.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "a label ingested into the lake reached the shared store in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Applied by the replica's watcher (which swaps the entities' members too: the same
    // script as /labels).
    assert!(
        replica
            .log_tail()
            .contains("lake labels applied to the online store"),
        "{}",
        replica.log_tail()
    );
    // The same label through the API: accepted, nothing more to apply online.
    let (code, body) = try_http(
        replica.port,
        "POST",
        "/labels",
        &[("Content-Type", "application/json")],
        format!(r#"[{{"tx_id":{tx_id},"is_fraud":true}}]"#).as_bytes(),
    )
    .expect("POST /labels");
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["applied_online"], 0, "{answer}");
    replica.terminate();
}
