//! Issue #19, the server's side of a rollout (docs/rollout.md sections 2, 4, 5 and 8): a canary
//! decides for a sticky 10 % of customers, read back from 20,000 answers; a shadow scores every
//! transaction and changes no decision (a twin server without it answers the same); alias
//! changes under load fail no request; a shadow trained on another feature SQL gets its own
//! online engine, built while the server serves, and scores what that SQL computes offline.
//! Aliases are set through the registry functions the `models shadow/canary` commands call,
//! and the server picks them up on its reload poll.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fraudlake_model::registry::rollout::{start_rollout, stop_rollout};
use fraudlake_model::registry::{Registry, CANARY, SHADOW};
use fraudlake_model::rollout::Role;
use fraudlake_serving::server::rollout::{route, CanarySplit};

use crate::common::{num, repo_root, wait_until, wait_until_seen, TempLake};
use crate::serve::{copy_dir, http, lake_with_champion, metric_value, ts, tx_body, Server};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    http(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Registers version 2 (the challenger) beside the champion, version 1.
fn train_second_model(lake: &TempLake) {
    lake.ok(&[
        "train",
        "--train-start",
        "2018-05-03",
        "--n-estimators",
        "30",
        "--threads",
        "1",
    ]);
}

/// The registry of `lake`, with a runtime to call it from a test thread.
struct Aliases {
    runtime: tokio::runtime::Runtime,
    registry: Registry,
}

impl Aliases {
    fn of(lake: &TempLake) -> Aliases {
        let l = fraudlake_pipeline::Lake::open(&lake.lake()).expect("lake");
        Aliases {
            runtime: tokio::runtime::Runtime::new().expect("runtime"),
            registry: Registry::new(l),
        }
    }

    fn start(&self, alias: &str, version: &str, percent: Option<f64>) {
        let started = self.runtime.block_on(start_rollout(
            &self.registry,
            role_of(alias),
            version,
            percent,
            Some("rollout test"),
        ));
        started.unwrap_or_else(|e| panic!("start {alias} {version}: {e}"));
    }

    fn stop(&self, alias: &str) {
        let stopped = self.runtime.block_on(stop_rollout(
            &self.registry,
            role_of(alias),
            Some("rollout test"),
        ));
        stopped.unwrap_or_else(|e| panic!("stop {alias}: {e}"));
    }
}

/// The role an alias names ([`SHADOW`] or [`CANARY`]).
fn role_of(alias: &str) -> Role {
    if alias == SHADOW {
        Role::Shadow
    } else {
        Role::Canary
    }
}

/// `GET /models/current` once `holds` accepts it (the server's reload poll applies alias
/// changes within its interval).
fn wait_for_models(
    port: u16,
    what: &str,
    holds: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_until_seen(what, Duration::from_secs(60), || {
        let (code, body) = http(port, "GET", "/models/current", &[], b"");
        let current = if code == 200 {
            json(&body)
        } else {
            serde_json::Value::Null
        };
        (holds(&current), current)
    })
}

/// Scores one transaction per customer of `customers` (tx_ids from `first_tx`, one second
/// apart from `first_second`) in batches; returns each customer's answer.
fn score_customers(
    port: u16,
    customers: std::ops::Range<i64>,
    first_tx: i64,
    first_second: i64,
) -> HashMap<i64, serde_json::Value> {
    let ids: Vec<i64> = customers.collect();
    let mut answers = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let items: Vec<String> = chunk
            .iter()
            .map(|&c| {
                let i = c - ids[0];
                tx_body(
                    first_tx + i,
                    &ts(first_second + i),
                    c,
                    c % 600,
                    20.0 + (c % 90) as f64,
                )
            })
            .collect();
        let (code, text) = post(
            port,
            "/score/batch",
            &format!(r#"{{"transactions":[{}]}}"#, items.join(",")),
        );
        assert_eq!(code, 200, "{text}");
        let results = json(&text)["results"].as_array().expect("results").clone();
        assert_eq!(results.len(), chunk.len());
        answers.extend(chunk.iter().copied().zip(results));
    }
    answers
}

#[test]
fn a_ten_percent_canary_decides_for_ten_percent_of_customers_each_always_the_same_role() {
    let lake = lake_with_champion();
    train_second_model(&lake);
    let aliases = Aliases::of(&lake);
    let server = Server::start(&lake.lake(), &["--reload-secs", "1"]);
    let port = server.port;
    aliases.start(CANARY, "2", Some(10.0));
    let current = wait_for_models(port, "canary 2 served", |m| m["canary"]["version"] == 2);
    assert_eq!(current["version"], 1, "{current}");
    assert_eq!(current["canary"]["percent"], 10.0, "{current}");
    assert!(current["shadow"].is_null(), "{current}");

    // 20,000 customers, one transaction each; then all of them again.
    let customers = 0..20_000i64;
    let first = score_customers(port, customers.clone(), 20_000_000, 0);
    let again = score_customers(port, customers.clone(), 20_100_000, 20_000);
    let split = CanarySplit::new(10.0, 2).expect("split");
    let mut canary = 0;
    for c in customers {
        let (a, b) = (&first[&c], &again[&c]);
        assert_eq!(a["role"], b["role"], "customer {c}: {a} then {b}");
        let expected = match route(c, split) {
            Role::Canary => ("canary", 2),
            _ => ("champion", 1),
        };
        assert_eq!(
            (a["role"].as_str(), a["model_version"].as_i64()),
            (Some(expected.0), Some(expected.1)),
            "customer {c}: {a}"
        );
        if expected.0 == "canary" {
            canary += 1;
        }
    }
    // Binomial: 2,000 expected, standard deviation 42; +- 1 % of customers is +- 200.
    assert!(
        (1_800..=2_200).contains(&canary),
        "{canary} of 20,000 customers in the canary"
    );

    // A retry after the canary stopped still gets its first answer (who decided included).
    let (&customer, answered) = first
        .iter()
        .find(|(_, a)| a["role"] == "canary")
        .expect("a canary customer");
    let retry = tx_body(
        20_000_000 + customer,
        &ts(customer),
        customer,
        customer % 600,
        20.0 + (customer % 90) as f64,
    );
    aliases.stop(CANARY);
    wait_for_models(port, "canary stopped", |m| {
        m["canary"].is_null() && m["version"] == 1
    });
    let (code, text) = post(port, "/score", &retry);
    assert_eq!(code, 200, "{text}");
    assert_eq!(&json(&text), answered);

    let (_, metrics) = http(port, "GET", "/metrics", &[], b"");
    for role in ["champion", "canary"] {
        // Both models scored every transaction while the canary ran.
        let scored = metric_value(
            &metrics,
            &format!("fraud_risk_score_count{{role=\"{role}\"}}"),
        );
        assert_eq!(scored, 40_000.0, "{role} in:\n{metrics}");
    }
    server.stop();

    // Every row: who decided, both scores, and the decided score is the decider's.
    let rows = lake.sql_json(
        "SELECT COUNT(*) AS n, \
           SUM(CASE WHEN role = 'canary' THEN 1 ELSE 0 END) AS canary_rows, \
           SUM(CASE WHEN champion_version = 1 AND canary_version = 2 \
                     AND champion_score IS NOT NULL AND canary_score IS NOT NULL \
                     AND shadow_score IS NULL THEN 0 ELSE 1 END) AS incomplete, \
           SUM(CASE WHEN (role = 'canary' AND risk_score = canary_score AND model_version = 2) \
                      OR (role = 'champion' AND risk_score = champion_score AND model_version = 1) \
                    THEN 0 ELSE 1 END) AS inconsistent \
         FROM predictions WHERE tx_id >= 20000000",
    );
    assert_eq!(num(&rows[0], "n"), 40_000.0, "{rows:?}");
    assert_eq!(
        num(&rows[0], "canary_rows"),
        f64::from(canary * 2),
        "{rows:?}"
    );
    assert_eq!(num(&rows[0], "incomplete"), 0.0, "{rows:?}");
    assert_eq!(num(&rows[0], "inconsistent"), 0.0, "{rows:?}");
}

#[test]
fn a_shadow_scores_every_transaction_and_changes_no_decision() {
    let lake = lake_with_champion();
    train_second_model(&lake);
    // The twin never has a shadow: it answers as the server would without one.
    let twin = lake.path().join("twin");
    copy_dir(Path::new(&lake.lake()), &twin);
    let twin = twin.display().to_string();
    // Set before the start: the start-up loads the shadow.
    Aliases::of(&lake).start(SHADOW, "2", None);
    let with = Server::start(&lake.lake(), &[]);
    let without = Server::start(&twin, &[]);
    let current = wait_for_models(with.port, "shadow served", |m| m["shadow"]["version"] == 2);
    assert!(
        current["canary"].is_null() && current["version"] == 1,
        "{current}"
    );
    assert!(current["shadow"]["percent"].is_null(), "{current}");

    const N: i64 = 1_000;
    let shadowed = score_customers(with.port, 0..N, 30_000_000, 0);
    let plain = score_customers(without.port, 0..N, 30_000_000, 0);
    for c in 0..N {
        let (a, b) = (&shadowed[&c], &plain[&c]);
        for field in ["risk_score", "decision", "model_version", "role"] {
            assert_eq!(a[field], b[field], "customer {c}: {a} vs {b}");
        }
        assert_eq!(a["role"], "champion");
    }

    let (_, metrics) = http(with.port, "GET", "/metrics", &[], b"");
    assert_eq!(
        metric_value(&metrics, "fraud_risk_score_count{role=\"shadow\"}"),
        N as f64,
        "{metrics}"
    );
    let would: f64 = ["approve", "review", "decline"]
        .iter()
        .map(|d| {
            metric_value(
                &metrics,
                &format!("fraud_decisions_total{{decision=\"{d}\",role=\"shadow\"}}"),
            )
        })
        .sum();
    assert_eq!(would, N as f64, "{metrics}");
    assert!(
        metrics.contains("role=\"shadow\",version=\"2\"} 1"),
        "fraud_model_info of the shadow in:\n{metrics}"
    );
    let (_, plain_metrics) = http(without.port, "GET", "/metrics", &[], b"");
    assert!(
        !plain_metrics.contains("role=\"shadow\""),
        "{plain_metrics}"
    );
    without.stop();
    with.stop();

    // Every row has the shadow's score; the decision is the champion's by the thresholds
    // (review 0.3, decline 0.8); the shadow is another model (its scores differ).
    let rows = lake.sql_json(
        "SELECT COUNT(*) AS n, \
           SUM(CASE WHEN shadow_version = 2 AND shadow_score IS NOT NULL \
                     AND role = 'champion' AND champion_version = 1 \
                     AND risk_score = champion_score AND model_version = 1 \
                     AND canary_version IS NULL AND canary_score IS NULL \
                    THEN 0 ELSE 1 END) AS incomplete, \
           SUM(CASE WHEN decision = CASE WHEN champion_score >= 0.8 THEN 'decline' \
                                         WHEN champion_score >= 0.3 THEN 'review' \
                                         ELSE 'approve' END \
                    THEN 0 ELSE 1 END) AS not_the_champions, \
           SUM(CASE WHEN shadow_score <> champion_score THEN 1 ELSE 0 END) AS differ \
         FROM predictions WHERE tx_id >= 30000000",
    );
    assert_eq!(num(&rows[0], "n"), N as f64, "{rows:?}");
    assert_eq!(num(&rows[0], "incomplete"), 0.0, "{rows:?}");
    assert_eq!(num(&rows[0], "not_the_champions"), 0.0, "{rows:?}");
    assert!(num(&rows[0], "differ") > 0.0, "{rows:?}");
}

#[test]
fn alias_changes_under_load_fail_no_request() {
    let lake = lake_with_champion();
    train_second_model(&lake);
    let aliases = Aliases::of(&lake);
    let server = Server::start(&lake.lake(), &["--reload-secs", "1"]);
    let port = server.port;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let served = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4i64)
        .map(|t| {
            let (stop, failures, seen, served) =
                (stop.clone(), failures.clone(), seen.clone(), served.clone());
            std::thread::spawn(move || {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let id = 40_000_000 + t * 1_000_000 + i;
                    let body = tx_body(id, &ts(i * 4 + t), i % 300, (i * 7) % 600, 12.5);
                    let (code, text) = post(port, "/score", &body);
                    if code == 200 {
                        let r = json(&text);
                        let role = r["role"].as_str().unwrap_or("?").to_string();
                        let version = r["model_version"].as_i64().unwrap_or(-1);
                        seen.lock().expect("lock").insert((role, version));
                    } else {
                        failures
                            .lock()
                            .expect("lock")
                            .push(format!("{code}: {text}"));
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    // Each step waits for the server to apply it and for requests served after it.
    let step = |what: &str, holds: &dyn Fn(&serde_json::Value) -> bool| {
        wait_for_models(port, what, holds);
        let at = served.load(Ordering::Relaxed);
        wait_until(
            &format!("requests after: {what}"),
            Duration::from_secs(60),
            || served.load(Ordering::Relaxed) > at + 50,
        );
    };
    step("champion 1 under load", &|m| m["version"] == 1);
    aliases.start(SHADOW, "2", None);
    step("shadow 2", &|m| m["shadow"]["version"] == 2);
    aliases.start(CANARY, "2", Some(50.0));
    step("canary 2 at 50 % (the shadow moved to the canary)", &|m| {
        m["canary"]["version"] == 2 && m["shadow"].is_null()
    });
    let canary_seen = seen.clone();
    wait_until(
        "answers decided by the canary",
        Duration::from_secs(60),
        || {
            canary_seen
                .lock()
                .expect("lock")
                .contains(&("canary".to_string(), 2))
        },
    );
    aliases.stop(CANARY);
    step("canary stopped", &|m| m["canary"].is_null());
    lake.ok(&[
        "models",
        "promote",
        "2",
        "--force",
        "--reason",
        "rollout test",
    ]);
    step("champion 2", &|m| {
        m["version"] == 2 && m["canary"].is_null()
    });
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    let failed = failures.lock().expect("lock").clone();
    assert!(
        failed.is_empty(),
        "{} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let seen = seen.lock().expect("lock").clone();
    for expected in [("champion", 1), ("canary", 2), ("champion", 2)] {
        assert!(
            seen.contains(&(expected.0.to_string(), expected.1)),
            "{expected:?} not among {seen:?}"
        );
    }
    let (_, metrics) = http(port, "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("role=\"champion\",version=\"2\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("version=\"1\"} 1"), "{metrics}");
    server.stop();
}

/// Version 2 trained on the default feature SQL plus one feature (another feature set); returns
/// that SQL's path. The `features` table then holds that feature set (a build of another
/// feature set rebuilds the whole table); version 1 was trained before.
fn train_on_another_feature_sql(lake: &TempLake) -> String {
    let base = std::fs::read_to_string(repo_root().join("sql/features.sql")).expect("sql");
    let extended = base.replace(
        "FROM tx_labeled",
        ",\n  MAX(amount) OVER (PARTITION BY customer_id ORDER BY event_time RANGE BETWEEN \
         INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS customer_max_amount_1d\nFROM tx_labeled",
    );
    assert_ne!(base, extended);
    let sql = lake.path().join("features_v2.sql");
    std::fs::write(&sql, extended).expect("write the SQL");
    let sql = sql.display().to_string();
    lake.ok(&["features", "build", "--sql", sql.as_str()]);
    lake.ok(&[
        "train",
        "--sql",
        sql.as_str(),
        "--train-start",
        "2018-05-03",
        "--n-estimators",
        "30",
        "--threads",
        "1",
    ]);
    sql
}

/// docs/rollout.md section 2: a shadow on another feature SQL is not refused; its online
/// engine is bootstrapped from the lake while the server serves (no request fails), caught up,
/// and swapped in; then the shadow's score of each transaction is version 2's prediction on
/// the features its own SQL computes offline for that transaction.
#[test]
fn a_shadow_on_another_feature_sql_gets_its_own_engine_and_scores_its_own_features() {
    let lake = lake_with_champion();
    let sql = train_on_another_feature_sql(&lake);
    let aliases = Aliases::of(&lake);
    let v2 = aliases
        .runtime
        .block_on(aliases.registry.get("2"))
        .expect("version 2");
    let v1 = aliases
        .runtime
        .block_on(aliases.registry.get("1"))
        .expect("version 1");
    assert_ne!(v1.record.feature_set, v2.record.feature_set);
    let server = Server::start(&lake.lake(), &["--reload-secs", "1"]);
    let port = server.port;

    // A client scoring throughout the build and the swap.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let body = tx_body(60_000_000 + i, &ts(i), i % 300, (i * 7) % 600, 12.5);
                let (code, text) = post(port, "/score", &body);
                if code != 200 {
                    failures
                        .lock()
                        .expect("lock")
                        .push(format!("{code}: {text}"));
                }
                i += 1;
                sent.store(i as usize, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    wait_until("load running", Duration::from_secs(60), || {
        sent.load(Ordering::Relaxed) > 20
    });
    aliases.start(SHADOW, "2", None);
    let current = wait_for_models(port, "shadow 2 on its own engine", |m| {
        m["shadow"]["version"] == 2
    });
    assert_eq!(current["version"], 1, "{current}");
    assert_eq!(
        current["shadow"]["feature_set"], v2.record.feature_set,
        "{current}"
    );
    // Requests after the swap too.
    let at = sent.load(Ordering::Relaxed);
    wait_until("requests after the swap", Duration::from_secs(60), || {
        sent.load(Ordering::Relaxed) > at + 50
    });
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    let failed = failures.lock().expect("lock").clone();
    assert!(
        failed.is_empty(),
        "{} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );

    // After the load's last second: one transaction per customer, in event-time order.
    let last = sent.load(Ordering::Relaxed) as i64;
    const N: i64 = 300;
    let answers = score_customers(port, 0..N, 50_000_000, last + 10);
    assert!(answers
        .values()
        .all(|a| a["role"] == "champion" && a["model_version"] == 1));
    let (_, metrics) = http(port, "GET", "/metrics", &[], b"");
    assert_eq!(
        metric_value(&metrics, "fraud_online_engines"),
        2.0,
        "{metrics}"
    );
    server.stop();

    // The feature set of version 2, offline, over the lake that now holds those transactions.
    lake.ok(&["features", "build", "--sql", sql.as_str()]);
    let names = &v2.record.feature_names;
    let offline = lake.sql_json(&format!(
        "SELECT tx_id, {} FROM features WHERE tx_id >= 50000000 AND tx_id < 60000000",
        names.join(", ")
    ));
    assert_eq!(offline.len(), N as usize);
    let (_, model) = aliases
        .runtime
        .block_on(aliases.registry.load_artifact(&v2.record))
        .expect("version 2's artifact");
    let expected: HashMap<i64, f64> = offline
        .iter()
        .map(|r| {
            let row: Vec<f64> = names
                .iter()
                .map(|n| r[n.as_str()].as_f64().unwrap_or(f64::NAN))
                .collect();
            let id = r["tx_id"].as_i64().expect("tx_id");
            (id, model.predict(&row).expect("version 2 scores the row"))
        })
        .collect();
    let rows = lake.sql_json(
        "SELECT tx_id, shadow_version, shadow_score, champion_score, role, model_version \
         FROM predictions WHERE tx_id >= 50000000 AND tx_id < 60000000",
    );
    assert_eq!(rows.len(), N as usize);
    let mut differ = 0;
    for r in &rows {
        let id = r["tx_id"].as_i64().expect("tx_id");
        assert_eq!(
            (
                r["shadow_version"].as_i64(),
                r["role"].as_str(),
                r["model_version"].as_i64()
            ),
            (Some(2), Some("champion"), Some(1)),
            "{r}"
        );
        let shadow = r["shadow_score"].as_f64().expect("a shadow score");
        let want = expected[&id];
        assert!(
            (shadow - want).abs() < 1e-6,
            "tx {id}: the shadow scored {shadow}, version 2 on its offline features {want}"
        );
        if (shadow - num(r, "champion_score")).abs() > 1e-9 {
            differ += 1;
        }
    }
    assert!(
        differ > 0,
        "the shadow's scores equal the champion's: {rows:?}"
    );
}
