//! Issue #19's end-to-end rollout (docs/rollout.md section 8): on a simulated lake whose amounts
//! drift, a model retrained on the drifted week goes shadow -> canary -> champion, and a model
//! trained on shuffled labels goes canary -> rolled back, every step taken by the shipped
//! `dags/canary_rollout.toml` (as it ships: its policy is not lowered for the test) on the
//! labeled live traffic a real `fraudlake serve` scored, while a client posts `/score` every
//! 20 ms throughout and no request of it fails.
//!
//! The story, and why its numbers make the verdicts certain rather than lucky. (The figures
//! marked measured come from one run of this test's steps with the release binary, driven by a
//! script that mirrors it, while the test itself had not been compiled yet; they are in the
//! test's output, `eprintln!`, on every run.)
//!
//! * The source lake: 500 customers, 1,000 terminals, 66 days from 2018-04-01 (to 2018-06-05),
//!   every amount x3 from 2018-05-22 (`--drift-kind amount-scale`, which relabels nothing).
//!   500 / 1,000 keeps the handbook's ratio (5,000 / 10,000): a terminal sees about one
//!   transaction a day, so its fraud scenarios keep their weight. By the simulator's rates
//!   (pipeline/src/simulate.rs): about 970 transactions a day; 2 terminals compromised a day for
//!   28 days (about 55 frauds a day) and 3 customers a day for 14 days with a third of their
//!   transactions fraudulent (about 28 a day): about 80 labeled frauds a day, 8 %. A phase of
//!   two days then holds about 160 labeled frauds, three times the DAG's `min_frauds = 50`
//!   (checked below before anything is judged, so a change of the simulator fails loudly here).
//!   Measured (seed 7): 1,971 / 1,913 / 2,030 transactions and 176 / 174 / 158 frauds in the
//!   three phases.
//! * The served lake holds the source's transactions before 2018-05-31 with their labels (60
//!   days: the 30-day windows plus the 7-day label delay are full from 2018-05-08 on). The
//!   champion, version 1, learns 2018-05-01..07, before the drift. There the scenario-1 rule
//!   makes every amount above 220 a fraud (genuine amounts rarely come near it: customer means
//!   are at most 100 with a standard deviation of half the mean), so v1 learns "above ~220 is
//!   fraud". After the drift (which does not apply that rule again) about a quarter of the
//!   genuine transactions are above 220 (an original amount above 73): v1 declines them and
//!   ranks them above most frauds, so its average precision on drifted traffic collapses and
//!   its false decline rate jumps (measured: 30 % of phase A's genuine amounts above 220).
//! * Version 2 learns the first drifted week, 2018-05-22..28 (delay 0, test 2018-05-29..30:
//!   the served lake ends on 2018-05-30), so it knows the new amounts: on the live phases it
//!   should beat v1 by tenths of average precision and decline far fewer genuine customers.
//!   With ~160 frauds over ~500 customers a paired bootstrap interval of the difference is a
//!   few hundredths wide, so "not worse than -0.02" (the DAG's tolerance at 90 %) and "false
//!   declines not up by more than 0.005" hold with a margin of many standard deviations.
//!   Measured in phase A: average precision v2 0.81 vs v1 0.34, difference +0.47 (interval
//!   +0.39 .. +0.54); false decline rate 0.00 vs 0.34; phase B: +0.46 (+0.38 .. +0.53).
//! * Version 3 learns the same drifted week with its labels shuffled (a permutation: the same
//!   number of frauds, on random transactions). The shuffled labels enter the lake under their
//!   own source kind, `shuffled`, which the default precedence (ingest > api > others) ranks
//!   below the real labels, so only `train --label-precedence shuffled,ingest,api` reads them:
//!   features, the server and the canary analysis keep the true labels. A model of labels that
//!   carry no information ranks at chance, average precision near the fraud rate (~0.08),
//!   tenths below v2's: its interval lies far below -0.02, a rollback (measured in phase C:
//!   0.12 vs 0.78, difference -0.66, interval -0.72 .. -0.58).
//! * Phases of two simulated days (2018-05-31..06-01, 06-02..03, 06-04..05): the day's
//!   transactions through `/score/batch` in event order, their true labels through `/labels`,
//!   both waited for in the lake, then `dag run canary_rollout --date` the phase's last day.
//!   Phase A judges shadow v2 (-> canary at 10 %), phase B canary v2 (-> champion), then v3 is
//!   made the canary at 10 % by hand and phase C judges it (-> rolled back). The analysis
//!   counts the rows scored since the rollout began (wall clock), so each phase starts only
//!   once the server serves the new aliases (its reload poll: `--reload-secs 1`).
//! * The load: customers and terminals from 1,000,000 (none in the simulated lake, so no
//!   simulated transaction's features change), transaction ids from 900,000,000, event times
//!   from 2018-05-31T00:00:00 one second apart; never labeled, so never evidence (the evidence
//!   counts exactly the phase's transactions, asserted).
//! * `--max-event-skew 10d`: the phases are six days of event time, their night gaps can exceed
//!   the default hour (an event more than the skew ahead of the watermark is refused), and the
//!   load stays up to six days behind the watermark; ten days keeps every transaction on time
//!   (exact features, no `time_flag`, asserted).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fraudlake_model::rollout::Role;
use fraudlake_serving::server::rollout::{route, CanarySplit};

use crate::common::{num, repo_root, wait_until, wait_until_seen, TempLake};
use crate::dag::task_output;
use crate::replicas::{first_row, split_at, ReplayTx};
use crate::serve::{create_key, post_key, try_http, Lcg, Server};

/// 2018-05-31T00:00:00Z in microseconds: the served lake holds the source's transactions
/// before it; the phases replay the six days from it on.
const CUT_US: i64 = 1_527_724_800_000_000;
const DAY_US: i64 = 86_400_000_000;
/// The canary's share of customers: the shipped DAG starts a promoted shadow at 10 %, and v3
/// is started at the same share by hand.
const CANARY_PERCENT: f64 = 10.0;
/// Transactions per `/score/batch` and per `/labels` (the server takes at most 1,000).
const BATCH: usize = 500;
/// The load's first transaction id, and the first id of its customers and terminals: beyond
/// anything the simulation made.
const LOAD_FIRST_TX: i64 = 900_000_000;
const LOAD_ENTITY: i64 = 1_000_000;
/// The load cycles over this many customers: at 10 % about 20 of them are a canary's, so the
/// load meets every canary within seconds (waited for, never assumed).
const LOAD_CUSTOMERS: i64 = 200;
/// Load requests to see after each alias change before the test goes on (the load ran
/// through the switch): at one request per 20 ms, half a second at the least.
const REQUESTS_AFTER_A_SWITCH: usize = 25;
/// Deadlines for a broken system, not expectations of speed (docs/operations.md, "Tests and
/// timing"): a reload poll, a commit every 200 ms, `fraudlake sql` runs.
const DEADLINE: Duration = Duration::from_secs(180);

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The source's transactions of phase days `from..to` (day 0 is 2018-05-31), in event order.
fn days(replay: &[ReplayTx], from: i64, to: i64) -> Vec<ReplayTx> {
    replay
        .iter()
        .filter(|t| (from..to).contains(&((t.ts_us - CUT_US) / DAY_US)))
        .cloned()
        .collect()
}

/// `fraudlake train` with two threads; the version it registered.
fn train(lake: &TempLake, args: &[&str]) -> i64 {
    let mut all = vec!["train", "--threads", "2", "--format", "json"];
    all.extend_from_slice(args);
    let summary = json(&lake.ok(&all));
    eprintln!(
        "trained version {}: {} rows, {} frauds; test {}: {}",
        summary["version"],
        summary["train_rows"],
        summary["train_frauds"],
        summary["periods"],
        summary["metrics"]
    );
    num(&summary, "version") as i64
}

/// `GET /models/current` once `holds` accepts it: the server's reload poll applies alias
/// changes within its interval.
fn wait_for_models(
    port: u16,
    what: &str,
    holds: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_until_seen(what, DEADLINE, || {
        let current = match try_http(port, "GET", "/models/current", &[], b"") {
            Ok((200, body)) => serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        };
        (holds(&current), current)
    })
}

/// A client of its own thread: one `POST /score` every 20 ms until finished, on its own
/// customers and terminals. Every answer that is not a 200, and every connection error, is a
/// failure; it records which (role, version) decided its answers.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<BTreeSet<(String, i64)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, token: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let seen: Arc<Mutex<BTreeSet<(String, i64)>>> = Arc::new(Mutex::new(BTreeSet::new()));
        let auth = format!("Bearer {token}");
        let thread = {
            let (stop, sent, failures, seen) =
                (stop.clone(), sent.clone(), failures.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let body = ReplayTx {
                        tx_id: LOAD_FIRST_TX + i,
                        ts_us: CUT_US + i * 1_000_000,
                        customer_id: LOAD_ENTITY + i % LOAD_CUSTOMERS,
                        terminal_id: LOAD_ENTITY + i % 50,
                        amount: 20.0 + (i % 40) as f64,
                        is_fraud: false,
                    }
                    .body();
                    let headers = [
                        ("Content-Type", "application/json"),
                        ("Authorization", auth.as_str()),
                    ];
                    match try_http(port, "POST", "/score", &headers, body.as_bytes()) {
                        Ok((200, text)) => match serde_json::from_str::<serde_json::Value>(&text) {
                            Ok(answer) => {
                                let role = answer["role"].as_str().unwrap_or("?").to_string();
                                let version = answer["model_version"].as_i64().unwrap_or(-1);
                                seen.lock().expect("lock").insert((role, version));
                            }
                            Err(e) => failures
                                .lock()
                                .expect("lock")
                                .push(format!("200 but not JSON ({e}): {text}")),
                        },
                        Ok((code, text)) => failures
                            .lock()
                            .expect("lock")
                            .push(format!("{code}: {text}")),
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Load {
            stop,
            sent,
            failures,
            seen,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until the load sent more requests after `what` (it ran through the switch).
    fn runs_through(&self, what: &str) {
        let at = self.sent();
        wait_until(&format!("load requests after: {what}"), DEADLINE, || {
            self.sent() >= at + REQUESTS_AFTER_A_SWITCH
        });
    }

    /// Waits until an answer to the load was decided by `role` `version`.
    fn meets(&self, role: &str, version: i64) {
        let wanted = (role.to_string(), version);
        wait_until(
            &format!("a load answer decided by the {role}, version {version}"),
            DEADLINE,
            || self.seen.lock().expect("lock").contains(&wanted),
        );
    }

    /// Stops the client; (requests sent, failures, who decided).
    fn finish(mut self) -> (usize, Vec<String>, BTreeSet<(String, i64)>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the load thread");
        }
        let failures = self.failures.lock().expect("lock").clone();
        let seen = self.seen.lock().expect("lock").clone();
        (self.sent(), failures, seen)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Scores `txs` in event order through `/score/batch`; the answers in that order.
fn score(port: u16, token: &str, txs: &[ReplayTx]) -> Vec<serde_json::Value> {
    let mut answers = Vec::with_capacity(txs.len());
    for chunk in txs.chunks(BATCH) {
        let items: Vec<String> = chunk.iter().map(ReplayTx::body).collect();
        let body = format!(r#"{{"transactions":[{}]}}"#, items.join(","));
        let (code, text) = post_key(port, "/score/batch", &body, token);
        assert_eq!(code, 200, "{text}");
        let results = json(&text)["results"].as_array().expect("results").clone();
        assert_eq!(results.len(), chunk.len(), "{text}");
        answers.extend(results);
    }
    answers
}

/// Sends the true label of every transaction of `txs` through `/labels`.
fn send_labels(port: u16, token: &str, txs: &[ReplayTx]) {
    for chunk in txs.chunks(BATCH) {
        let items: Vec<String> = chunk
            .iter()
            .map(|t| format!(r#"{{"tx_id":{},"is_fraud":{}}}"#, t.tx_id, t.is_fraud))
            .collect();
        let (code, text) = post_key(port, "/labels", &format!("[{}]", items.join(",")), token);
        assert_eq!(code, 200, "{text}");
        assert_eq!(
            num(&json(&text), "accepted") as usize,
            chunk.len(),
            "{text}"
        );
    }
}

/// Waits until the lake writer has committed the phase: each transaction in `transactions`
/// and `predictions`, and its label from the API in `labels`. A phase's tx_ids are one range:
/// the simulator numbers transactions in time order.
fn wait_for_lake(lake: &TempLake, txs: &[ReplayTx]) {
    let lo = txs.iter().map(|t| t.tx_id).min().expect("transactions");
    let hi = txs.iter().map(|t| t.tx_id).max().expect("transactions");
    assert_eq!((hi - lo + 1) as usize, txs.len(), "one range of tx_ids");
    let n = txs.len() as f64;
    let query = format!(
        "SELECT (SELECT COUNT(*) FROM predictions WHERE tx_id BETWEEN {lo} AND {hi}) AS p, \
           (SELECT COUNT(*) FROM transactions WHERE tx_id BETWEEN {lo} AND {hi}) AS t, \
           (SELECT COUNT(DISTINCT tx_id) FROM labels \
            WHERE tx_id BETWEEN {lo} AND {hi} AND source LIKE 'api:%') AS l"
    );
    wait_until_seen("the phase committed to the lake", DEADLINE, || {
        let out = lake.run(&["sql", &query, "--format", "json"]);
        let row = if out.status.success() {
            serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
                .ok()
                .and_then(|rows| rows.into_iter().next())
                .unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Null
        };
        let done = ["p", "t", "l"].iter().all(|k| row[*k].as_f64() == Some(n));
        (done, row)
    });
}

/// `fraudlake dag run canary_rollout --date DAY` with the shipped DAG folder, as it ships (no
/// webhook: the summary is logged); its run id once it succeeded.
fn run_canary_rollout(lake: &TempLake, day: &str) -> String {
    let dags = repo_root().join("dags");
    let out = lake
        .command()
        .env_remove("FRAUDLAKE_NOTIFY_WEBHOOK")
        .args([
            "dag",
            "run",
            "canary_rollout",
            "--date",
            day,
            "--dags",
            dags.to_str().expect("a UTF-8 path"),
            "--format",
            "json",
        ])
        .output()
        .expect("run fraudlake");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dag run canary_rollout --date {day}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = first_row(&stdout);
    assert_eq!(run["state"], "success", "{run}");
    run["run_id"].as_str().expect("run id").to_string()
}

/// The output of one task of a run (`succeeded: {...}` in its log).
fn task(lake: &TempLake, run_id: &str, task: &str) -> serde_json::Value {
    task_output(&lake.ok(&["dag", "logs", run_id, "--task", task]))
}

/// Checks every answer of a phase: who decided is the champion, or the canary for the
/// customers its split routes to it, with the right versions, and every transaction was on
/// time. Returns how many the canary decided.
fn check_answers(
    phase: &str,
    txs: &[ReplayTx],
    answers: &[serde_json::Value],
    champion: i64,
    canary: Option<i64>,
) -> usize {
    let split = canary.map(|v| (v, CanarySplit::new(CANARY_PERCENT, v).expect("a split")));
    let mut by_canary = 0;
    for (t, a) in txs.iter().zip(answers) {
        assert_eq!(a["tx_id"].as_i64(), Some(t.tx_id), "{phase}: {a}");
        let expected = match split {
            Some((version, s)) if route(t.customer_id, s) == Role::Canary => ("canary", version),
            _ => ("champion", champion),
        };
        assert_eq!(
            (a["role"].as_str(), a["model_version"].as_i64()),
            (Some(expected.0), Some(expected.1)),
            "{phase}: customer {}: {a}",
            t.customer_id
        );
        assert!(a.get("time_flag").is_none(), "{phase}: not on time: {a}");
        if expected.0 == "canary" {
            by_canary += 1;
        }
    }
    by_canary
}

/// Checks the evidence of a verdict on one phase: it rests on every labeled transaction of the
/// phase and on nothing else (the load's transactions have no label), with their frauds and
/// who decided, and the average precision difference lies on the side of the tolerance the
/// verdict needs.
fn check_evidence(
    what: &str,
    e: &serde_json::Value,
    verdict: &str,
    phase: &[ReplayTx],
    decided_by_candidate: usize,
) {
    let champion_ap = num(&e["champion"], "average_precision");
    let candidate_ap = num(&e["candidate"], "average_precision");
    let diff = &e["average_precision"];
    let fd = &e["false_decline_rate"];
    eprintln!(
        "{what}: {verdict}; average precision candidate {candidate_ap:.4} vs champion \
         {champion_ap:.4}, difference {} [{} .. {}]; false decline rate candidate {} vs \
         champion {}, difference {} [{} .. {}]; {} rows, {} frauds",
        diff["estimate"],
        diff["low"],
        diff["high"],
        e["candidate"]["false_decline_rate"],
        e["champion"]["false_decline_rate"],
        fd["estimate"],
        fd["low"],
        fd["high"],
        e["rows"],
        e["labeled_frauds"]
    );
    assert_eq!(e["verdict"], verdict, "{what}: {e}");
    assert_eq!(
        num(e, "rows") as usize,
        phase.len(),
        "{what}: every labeled transaction of the phase, and no other: {e}"
    );
    let frauds = phase.iter().filter(|t| t.is_fraud).count();
    assert_eq!(num(e, "labeled_frauds") as usize, frauds, "{what}: {e}");
    assert!(
        frauds as f64 >= num(&e["policy"], "min_frauds"),
        "{what}: {e}"
    );
    assert_eq!(
        num(&e["live"], "candidate_rows") as usize,
        decided_by_candidate,
        "{what}: {e}"
    );
    let tolerance = num(&e["policy"], "tolerance");
    if verdict == "promote" {
        assert!(num(diff, "low") >= -tolerance, "{what}: {e}");
        assert!(
            candidate_ap > champion_ap,
            "{what}: the model retrained on drifted data must rank better: {e}"
        );
    } else {
        assert!(num(diff, "high") < -tolerance, "{what}: {e}");
        assert!(
            candidate_ap < champion_ap,
            "{what}: the model of shuffled labels must rank worse: {e}"
        );
    }
}

#[test]
fn a_retrained_model_is_promoted_and_a_bad_one_rolled_back_by_the_dag_under_load() {
    // The shipped policy this test is tuned for (see the top of the file): a change there
    // means re-checking the margins here.
    let shipped =
        std::fs::read_to_string(repo_root().join("dags/canary_rollout.toml")).expect("the DAG");
    for setting in [
        "min_frauds = 50",
        "tolerance = 0.02",
        "confidence = 0.9",
        "max_false_decline_increase = 0.005",
        "percent = 10,",
    ] {
        assert!(shipped.contains(setting), "{setting} in:\n{shipped}");
    }

    // The source: 66 days, amounts x3 from 2018-05-22.
    let source = TempLake::new();
    let simulated = source.simulate_small(&[
        "--customers",
        "500",
        "--terminals",
        "1000",
        "--days",
        "66",
        "--drift-from",
        "2018-05-22",
        "--drift-kind",
        "amount-scale",
        "--drift-factor",
        "3",
    ]);
    eprintln!("source lake: {simulated}");

    // The served lake: everything before 2018-05-31, with the labels that count.
    let (lake, ingested, replay) = split_at(&source, CUT_US, None);
    assert!(num(&ingested, "accepted") > 0.0, "{ingested}");
    let (phase_a, phase_b, phase_c) = (
        days(&replay, 0, 2),
        days(&replay, 2, 4),
        days(&replay, 4, 6),
    );
    assert_eq!(
        phase_a.len() + phase_b.len() + phase_c.len(),
        replay.len(),
        "six days after the cut"
    );
    // The premises, before anything is judged: enough labeled frauds in every phase for the
    // shipped min_frauds, and the drift v1 cannot handle (genuine amounts above 220).
    for (name, phase) in [("A", &phase_a), ("B", &phase_b), ("C", &phase_c)] {
        let frauds = phase.iter().filter(|t| t.is_fraud).count();
        let genuine: Vec<&ReplayTx> = phase.iter().filter(|t| !t.is_fraud).collect();
        let large = genuine.iter().filter(|t| t.amount > 220.0).count();
        eprintln!(
            "phase {name}: {} transactions, {frauds} frauds, {large} of {} genuine ones above 220",
            phase.len(),
            genuine.len()
        );
        assert!(
            frauds >= 50,
            "phase {name}: {frauds} frauds, the DAG needs 50"
        );
        assert!(
            large * 10 > genuine.len(),
            "phase {name}: the drift should put more than 10 % of genuine amounts above 220 \
             ({large} of {})",
            genuine.len()
        );
    }

    // Champion 1 before the drift; version 2 on the first drifted week (its test days are the
    // served lake's last two).
    lake.ok(&["features", "build"]);
    let v1 = train(
        &lake,
        &["--train-start", "2018-05-01", "--note", "before the drift"],
    );
    let v2 = train(
        &lake,
        &[
            "--train-start",
            "2018-05-22",
            "--delay-days",
            "0",
            "--test-days",
            "2",
            "--note",
            "retrained on the drifted week",
        ],
    );
    assert_eq!((v1, v2), (1, 2));

    let (_, token) = create_key(&lake, "score,label");
    let token = token.as_str();
    let server = Server::start_keyed(
        &lake.lake(),
        &["--reload-secs", "1", "--max-event-skew", "10d"],
    );
    let port = server.port;
    let load = Load::start(port, token);
    wait_for_models(port, "champion 1 alone", |m| {
        m["version"] == 1 && m["shadow"].is_null() && m["canary"].is_null()
    });
    load.meets("champion", 1);

    // v2 in shadow, under load.
    lake.ok(&[
        "models",
        "shadow",
        "2",
        "--reason",
        "retrained on the drifted week",
    ]);
    wait_for_models(port, "shadow 2 served", |m| {
        m["shadow"]["version"] == 2 && m["version"] == 1
    });
    load.runs_through("shadow 2");

    // Phase A (2018-05-31..06-01): the shadow is judged and starts as the canary.
    let answers_a = score(port, token, &phase_a);
    send_labels(port, token, &phase_a);
    wait_for_lake(&lake, &phase_a);
    let run_a = run_canary_rollout(&lake, "2018-06-01");
    assert_eq!(check_answers("phase A", &phase_a, &answers_a, 1, None), 0);
    let canary = task(&lake, &run_a, "canary");
    assert_eq!(canary["active"], false, "no canary yet: {canary}");
    let shadow = task(&lake, &run_a, "shadow");
    assert_eq!(
        (
            shadow["version"].as_i64(),
            shadow["verdict"].as_str(),
            shadow["action"].as_str(),
            shadow["applied"].as_bool()
        ),
        (Some(2), Some("promote"), Some("canary_started"), Some(true)),
        "{shadow}"
    );
    assert!(
        num(&shadow, "scored_rows") as usize > phase_a.len(),
        "the load's transactions were scored by the shadow too (but have no label): {shadow}"
    );
    wait_for_models(port, "canary 2 at 10 % served", |m| {
        m["canary"]["version"] == 2
            && m["canary"]["percent"] == CANARY_PERCENT
            && m["shadow"].is_null()
            && m["version"] == 1
    });
    load.runs_through("canary 2");
    load.meets("canary", 2);

    // Phase B (06-02..03): the canary is judged and promoted.
    let answers_b = score(port, token, &phase_b);
    send_labels(port, token, &phase_b);
    wait_for_lake(&lake, &phase_b);
    let run_b = run_canary_rollout(&lake, "2018-06-03");
    let b_by_canary = check_answers("phase B", &phase_b, &answers_b, 1, Some(2));
    assert!(b_by_canary > 0, "the canary decided for some of phase B");
    let canary = task(&lake, &run_b, "canary");
    assert_eq!(
        (
            canary["version"].as_i64(),
            canary["verdict"].as_str(),
            canary["action"].as_str(),
            canary["percent"].as_f64()
        ),
        (
            Some(2),
            Some("promote"),
            Some("promoted"),
            Some(CANARY_PERCENT)
        ),
        "{canary}"
    );
    let shadow = task(&lake, &run_b, "shadow");
    assert_eq!(shadow["active"], false, "no shadow any more: {shadow}");
    wait_for_models(port, "champion 2 served", |m| {
        m["version"] == 2 && m["canary"].is_null() && m["shadow"].is_null()
    });
    load.runs_through("champion 2");
    load.meets("champion", 2);

    // v3: the drifted week again, its labels shuffled (a fixed permutation), read only by its
    // training through the label precedence.
    let week = lake.sql_json(&format!(
        "SELECT tx_id, is_fraud FROM tx_labeled \
         WHERE CAST(tx_ts AS BIGINT) >= {} AND CAST(tx_ts AS BIGINT) < {} ORDER BY tx_id",
        CUT_US - 9 * DAY_US,
        CUT_US - 2 * DAY_US
    ));
    let truth: Vec<bool> = week.iter().map(|r| num(r, "is_fraud") != 0.0).collect();
    let mut shuffled = truth.clone();
    let mut rng = Lcg(19);
    for i in (1..shuffled.len()).rev() {
        let j = (rng.next() as usize) % (i + 1);
        shuffled.swap(i, j);
    }
    let changed = truth.iter().zip(&shuffled).filter(|(a, b)| a != b).count();
    let mut csv = String::from("tx_id,is_fraud\n");
    for (row, fraud) in week.iter().zip(&shuffled) {
        csv.push_str(&format!(
            "{},{}\n",
            num(row, "tx_id") as i64,
            u8::from(*fraud)
        ));
    }
    let file = lake.path().join("shuffled_labels.csv");
    std::fs::write(&file, csv).expect("the shuffled labels");
    let added = first_row(&lake.ok(&[
        "ingest",
        file.to_str().expect("a UTF-8 path"),
        "--label-source",
        "shuffled:v3",
        "--output",
        "json",
    ]));
    // A shuffled label equal to the true one adds no row (the pair is already there); each
    // other one is a row of kind `shuffled`.
    assert_eq!(num(&added, "labels_added") as usize, changed, "{added}");
    assert!(changed > 100, "{changed} labels changed by the shuffle");
    let v3 = train(
        &lake,
        &[
            "--train-start",
            "2018-05-22",
            "--delay-days",
            "0",
            "--test-days",
            "2",
            "--label-precedence",
            "shuffled,ingest,api",
            "--note",
            "shuffled labels",
        ],
    );
    assert_eq!(v3, 3);
    lake.ok(&[
        "models",
        "canary",
        "3",
        "--percent",
        "10",
        "--reason",
        "trained on shuffled labels",
    ]);
    wait_for_models(port, "canary 3 served", |m| {
        m["canary"]["version"] == 3 && m["version"] == 2 && m["shadow"].is_null()
    });
    load.runs_through("canary 3");
    load.meets("canary", 3);

    // Phase C (06-04..05): the bad canary is judged and rolled back.
    let answers_c = score(port, token, &phase_c);
    send_labels(port, token, &phase_c);
    wait_for_lake(&lake, &phase_c);
    let run_c = run_canary_rollout(&lake, "2018-06-05");
    let c_by_canary = check_answers("phase C", &phase_c, &answers_c, 2, Some(3));
    assert!(c_by_canary > 0, "the canary decided for some of phase C");
    let canary = task(&lake, &run_c, "canary");
    assert_eq!(
        (
            canary["version"].as_i64(),
            canary["verdict"].as_str(),
            canary["action"].as_str()
        ),
        (Some(3), Some("rollback"), Some("rolled_back")),
        "{canary}"
    );
    let shadow = task(&lake, &run_c, "shadow");
    assert_eq!(shadow["active"], false, "{shadow}");
    wait_for_models(port, "canary 3 rolled back", |m| {
        m["canary"].is_null() && m["shadow"].is_null() && m["version"] == 2
    });
    load.runs_through("the rollback");

    // No request of the load failed through five alias changes.
    let (sent, failures, seen) = load.finish();
    eprintln!(
        "load: {sent} requests, {} failed; decided by {seen:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {sent} load requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let want_seen: BTreeSet<(String, i64)> = [
        ("champion", 1),
        ("canary", 2),
        ("champion", 2),
        ("canary", 3),
    ]
    .into_iter()
    .map(|(role, v)| (role.to_string(), v))
    .collect();
    assert_eq!(seen, want_seen, "who decided the load's answers");
    server.stop();

    // The audit log, read with `fraudlake sql`: each step in order, each verdict with its
    // evidence.
    let events = lake.sql_json(
        "SELECT seq, action, alias, version, previous_version, reason, details \
         FROM model_events ORDER BY seq",
    );
    let log: Vec<(String, String, i64)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["alias"].as_str().unwrap_or_default().to_string(),
                e["version"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let want: Vec<(String, String, i64)> = [
        ("promote", "champion", 1),   // train v1: the lake's first model
        ("promote", "challenger", 2), // train v2
        ("start", "shadow", 2),       // models shadow 2
        ("start", "canary", 2),       // phase A: the shadow is not worse
        ("promote", "champion", 2),   // phase B: the canary is not worse
        ("promote", "challenger", 3), // train v3 (shuffled labels)
        ("start", "canary", 3),       // models canary 3 --percent 10
        ("rollback", "canary", 3),    // phase C: the canary is worse
    ]
    .into_iter()
    .map(|(a, b, v)| (a.to_string(), b.to_string(), v))
    .collect();
    assert_eq!(log, want, "{events:?}");
    let details = |i: usize| json(events[i]["details"].as_str().expect("details"));
    let reason = |i: usize| events[i]["reason"].as_str().unwrap_or_default().to_string();

    let started = details(3);
    assert_eq!(started["percent"], CANARY_PERCENT, "{started}");
    assert!(reason(3).contains("not worse"), "{}", reason(3));
    check_evidence(
        "phase A, shadow 2 vs champion 1",
        &started["evidence"],
        "promote",
        &phase_a,
        0,
    );

    assert_eq!(events[4]["previous_version"], 1, "{}", events[4]);
    assert!(reason(4).contains("not worse"), "{}", reason(4));
    check_evidence(
        "phase B, canary 2 vs champion 1",
        &details(4),
        "promote",
        &phase_b,
        b_by_canary,
    );

    assert_eq!(details(6)["percent"], CANARY_PERCENT, "{}", events[6]);
    assert!(reason(7).contains("is worse"), "{}", reason(7));
    check_evidence(
        "phase C, canary 3 vs champion 2",
        &details(7),
        "rollback",
        &phase_c,
        c_by_canary,
    );

    // `predictions`: each phase's rows with who decided and the versions that scored them.
    let first = phase_a.iter().map(|t| t.tx_id).min().expect("phase A");
    let last = phase_c.iter().map(|t| t.tx_id).max().expect("phase C");
    let rows = lake.sql_json(&format!(
        "SELECT champion_version, canary_version, shadow_version, role, COUNT(*) AS n \
         FROM predictions WHERE tx_id >= {first} AND tx_id <= {last} \
         GROUP BY champion_version, canary_version, shadow_version, role"
    ));
    let version = |r: &serde_json::Value, column: &str| r[column].as_i64().unwrap_or(0);
    let got: BTreeMap<(i64, i64, i64, String), usize> = rows
        .iter()
        .map(|r| {
            (
                (
                    version(r, "champion_version"),
                    version(r, "canary_version"),
                    version(r, "shadow_version"),
                    r["role"].as_str().unwrap_or_default().to_string(),
                ),
                num(r, "n") as usize,
            )
        })
        .collect();
    let mut expected: BTreeMap<(i64, i64, i64, String), usize> = BTreeMap::new();
    expected.insert((1, 0, 2, "champion".to_string()), phase_a.len());
    expected.insert(
        (1, 2, 0, "champion".to_string()),
        phase_b.len() - b_by_canary,
    );
    expected.insert((1, 2, 0, "canary".to_string()), b_by_canary);
    expected.insert(
        (2, 3, 0, "champion".to_string()),
        phase_c.len() - c_by_canary,
    );
    expected.insert((2, 3, 0, "canary".to_string()), c_by_canary);
    assert_eq!(got, expected, "{rows:?}");
}
