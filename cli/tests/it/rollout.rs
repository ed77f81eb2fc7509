//! Gradual rollout through the real binary (docs/rollout.md, issue #19): `models shadow` and
//! `models canary` with their rules and audit rows; `models canary analyze` on a lake whose
//! `predictions` the test writes itself (the rollout columns as the server writes them, with
//! scores chosen so the verdict is certain): a clearly better canary is promoted; and the
//! shipped DAG `canary_rollout` run once rolls a clearly worse canary back and starts a
//! clearly better shadow as the canary, each step in `model_events` with its evidence.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use fraudlake_pipeline::lake::tables::utc_micros;
use fraudlake_pipeline::lake::TableDef;

use crate::common::{num, repo_root, TempLake};
use crate::dag::{history, task_output};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A small lake with features and `versions` quick models: version 1 is the champion, the
/// others challengers (their quality does not matter: the test writes their scores).
fn lake_with_versions(versions: usize) -> TempLake {
    let lake = TempLake::new();
    lake.simulate_small(&[]);
    lake.ok(&["features", "build"]);
    for v in 1..=versions {
        let note = format!("v{v}");
        lake.ok(&[
            "train",
            "--train-start",
            "2018-05-01",
            "--n-estimators",
            "3",
            "--early-stopping-rounds",
            "0",
            "--threads",
            "2",
            "--note",
            &note,
        ]);
    }
    lake
}

fn aliases_of(lake: &TempLake, version: i64) -> Vec<String> {
    let listed = json(&lake.ok(&["models", "list", "--format", "json"]));
    listed
        .as_array()
        .expect("versions")
        .iter()
        .find(|m| m["version"] == version)
        .map(|m| serde_json::from_value(m["aliases"].clone()).expect("aliases"))
        .unwrap_or_default()
}

/// Runs a command that must fail as bad input (exit 2) with `needle` in its message.
fn refused(lake: &TempLake, args: &[&str], needle: &str) {
    let out = lake.run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

/// (action, alias, version) of every audit row from the `skip`-th on.
fn events_from(lake: &TempLake, skip: usize) -> Vec<(String, String, i64)> {
    let events = json(&lake.ok(&["models", "events", "--format", "json"]));
    events
        .as_array()
        .expect("events")
        .iter()
        .skip(skip)
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["alias"].as_str().unwrap_or_default().to_string(),
                e["version"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

fn last_event(lake: &TempLake) -> serde_json::Value {
    let events = json(&lake.ok(&["models", "events", "--format", "json"]));
    events
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .expect("an event")
}

#[test]
fn shadow_and_canary_commands_follow_the_rules_and_are_audited() {
    let lake = lake_with_versions(3);
    // Three registrations: promote champion 1, promote challenger 2, promote challenger 3.
    let registered = events_from(&lake, 0).len();
    assert_eq!(registered, 3);

    for (args, needle) in [
        (vec!["models", "shadow", "1"], "is the champion"),
        (
            vec!["models", "canary", "champion", "--percent", "5"],
            "is the champion",
        ),
        (vec!["models", "shadow", "9"], "does not exist"),
        (
            vec!["models", "canary", "2", "--percent", "12.345"],
            "two decimals",
        ),
        (
            vec!["models", "canary", "2", "--percent", "150"],
            "[0, 100]",
        ),
        (vec!["models", "canary", "2"], "--percent"),
        (
            vec!["models", "shadow", "stop"],
            "there is no shadow to stop",
        ),
        (
            vec!["models", "canary", "stop"],
            "there is no canary to stop",
        ),
    ] {
        refused(&lake, &args, needle);
    }

    // Nothing running: the analysis says so and succeeds.
    let idle = json(&lake.ok(&[
        "models", "canary", "analyze", "--shadow", "--format", "json",
    ]));
    assert_eq!(idle["active"], false, "{idle}");
    assert_eq!(idle["action"], "none", "{idle}");

    // Shadow 2; the same again changes nothing.
    let started = json(&lake.ok(&["models", "shadow", "2", "--format", "json"]));
    assert_eq!(started["role"], "shadow", "{started}");
    assert_eq!(started["version"], 2, "{started}");
    assert_eq!(started["changed"], true, "{started}");
    let again = json(&lake.ok(&["models", "shadow", "v2", "--format", "json"]));
    assert_eq!(again["changed"], false, "{again}");
    assert!(aliases_of(&lake, 2).contains(&"shadow".to_string()));
    let shown = json(&lake.ok(&["models", "show", "shadow", "--format", "json"]));
    assert_eq!(shown["version"], 2);

    // Canary 3 at 10 % while 2 shadows: both at once; the canary cannot also be the shadow.
    let out = lake.ok(&["models", "canary", "3", "--percent", "10"]);
    assert!(
        out.contains("version 3 is now the canary for 10 % of customers"),
        "{out}"
    );
    let table = lake.ok(&["models", "list"]);
    assert!(
        table.contains("rollout: canary version 3 at 10 % of customers; shadow version 2"),
        "{table}"
    );
    refused(&lake, &["models", "shadow", "3"], "models canary stop");
    // A lake without predictions has no rollout data: a verdict of wait, nothing written.
    let nothing = json(&lake.ok(&["models", "canary", "analyze", "--apply", "--format", "json"]));
    assert_eq!(nothing["active"], true, "{nothing}");
    assert_eq!(nothing["rollout_data"], false, "{nothing}");
    assert_eq!(nothing["verdict"], "wait", "{nothing}");
    assert!(
        nothing["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no predictions table"),
        "{nothing}"
    );

    // A ramp is a new start row; the shadow moving to canary leaves the shadow.
    let ramp = json(&lake.ok(&[
        "models",
        "canary",
        "3",
        "--percent",
        "25",
        "--format",
        "json",
    ]));
    assert_eq!(
        (ramp["percent"].as_f64(), ramp["changed"].as_bool()),
        (Some(25.0), Some(true))
    );
    let moved = json(&lake.ok(&[
        "models",
        "canary",
        "shadow",
        "--percent",
        "5",
        "--format",
        "json",
    ]));
    assert_eq!(
        (
            moved["version"].as_i64(),
            moved["previous_version"].as_i64()
        ),
        (Some(2), Some(3))
    );
    assert_eq!(aliases_of(&lake, 2), ["canary"]);
    assert_eq!(aliases_of(&lake, 3), ["challenger"]);
    let shown = json(&lake.ok(&["models", "show", "canary", "--format", "json"]));
    assert_eq!(shown["version"], 2);
    let out = lake.ok(&["models", "canary", "stop", "--reason", "drill"]);
    assert!(out.contains("the canary (version 2) is stopped"), "{out}");
    assert!(aliases_of(&lake, 2).is_empty());

    // Archiving a shadow ends it; an archived version cannot be rolled out.
    lake.ok(&["models", "shadow", "3"]);
    lake.ok(&["models", "archive", "3", "--reason", "retired"]);
    assert!(aliases_of(&lake, 3).is_empty());
    refused(
        &lake,
        &["models", "canary", "3", "--percent", "5"],
        "archived",
    );

    let log = events_from(&lake, registered);
    let want: Vec<(String, String, i64)> = [
        ("start", "shadow", 2),
        ("start", "canary", 3),
        ("start", "canary", 3),
        ("start", "canary", 2),
        ("stop", "canary", 2),
        ("start", "shadow", 3),
        ("archive", "", 3),
    ]
    .into_iter()
    .map(|(a, b, v)| (a.to_string(), b.to_string(), v))
    .collect();
    assert_eq!(log, want);
    let events = json(&lake.ok(&["models", "events", "--format", "json"]));
    let ramp_row = &events[registered + 2];
    let details = json(ramp_row["details"].as_str().expect("details"));
    assert_eq!(details["percent"], 25.0, "{ramp_row}");
    assert_eq!(events[registered + 4]["reason"], "drill");
}

// -- canary analysis on written predictions ---------------------------------------------

/// `predictions` with the rollout columns (docs/rollout.md section 4). The feature vector
/// column of the server's table is left out: the analysis does not read it.
fn predictions_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("tx_id", DataType::Int64, false),
        Field::new("tx_ts", utc_micros(), false),
        Field::new("scored_at", utc_micros(), false),
        Field::new("model_version", DataType::Int64, false),
        Field::new("feature_set", DataType::Utf8, false),
        Field::new("risk_score", DataType::Float64, false),
        Field::new("decision", DataType::Utf8, false),
        Field::new("tx_date", DataType::Date32, false),
        Field::new("role", DataType::Utf8, true),
    ];
    for role in ["champion", "canary", "shadow"] {
        fields.push(Field::new(format!("{role}_version"), DataType::Int64, true));
        fields.push(Field::new(format!("{role}_score"), DataType::Float64, true));
    }
    Arc::new(Schema::new(fields))
}

const PREDICTIONS: TableDef = TableDef {
    name: "predictions",
    description: "test predictions with the rollout columns",
    schema: predictions_schema,
    partition_by: &["tx_date"],
};

/// A labeled transaction of the lake.
struct Labeled {
    tx_id: i64,
    customer_id: i64,
    tx_ts_us: i64,
    day: i32,
    is_fraud: bool,
}

fn labeled_transactions(lake: &TempLake) -> Vec<Labeled> {
    lake.sql_json(
        "SELECT t.tx_id, t.customer_id, CAST(t.tx_ts AS BIGINT) AS ts, \
           CAST(t.tx_date AS INT) AS day, bool_or(l.is_fraud) AS is_fraud \
         FROM transactions t JOIN labels l ON t.tx_id = l.tx_id \
         GROUP BY t.tx_id, t.customer_id, t.tx_ts, t.tx_date ORDER BY t.tx_id",
    )
    .iter()
    .map(|r| Labeled {
        tx_id: num(r, "tx_id") as i64,
        customer_id: num(r, "customer_id") as i64,
        tx_ts_us: num(r, "ts") as i64,
        day: num(r, "day") as i32,
        is_fraud: r["is_fraud"] == true || r["is_fraud"] == "true",
    })
    .collect()
}

/// Every fraud at 0.9, every legitimate transaction below 0.5: average precision 1, and it
/// declines (>= 0.8) frauds only.
fn perfect(t: &Labeled) -> f64 {
    if t.is_fraud {
        0.9
    } else {
        (t.tx_id % 50) as f64 / 100.0
    }
}

/// A score unrelated to the label, below the decline threshold: average precision near the
/// fraud rate, no declines.
fn random(t: &Labeled) -> f64 {
    (t.tx_id.wrapping_mul(7919) % 1000) as f64 / 1000.0 * 0.7
}

/// One served transaction: the champion's (version, score), a canary's or a shadow's.
struct Served<'a> {
    tx: &'a Labeled,
    champion: (i64, f64),
    canary: Option<(i64, f64)>,
    shadow: Option<(i64, f64)>,
}

impl Served<'_> {
    /// A canary decides for customers whose id ends in 0 (the test's stand-in for routing).
    fn canary_decides(&self) -> bool {
        self.canary.is_some() && self.tx.customer_id % 10 == 0
    }

    fn decider(&self) -> (i64, f64) {
        match self.canary {
            Some(c) if self.canary_decides() => c,
            _ => self.champion,
        }
    }

    fn decision(&self) -> &'static str {
        match self.decider().1 {
            s if s >= 0.8 => "decline",
            s if s >= 0.3 => "review",
            _ => "approve",
        }
    }
}

/// Appends `rows` to `predictions`, scored now (after the rollout started).
fn write_predictions(lake: &TempLake, rows: &[Served<'_>]) {
    let now = chrono::Utc::now().timestamp_micros();
    let n = rows.len();
    let opt_version = |f: fn(&Served<'_>) -> Option<(i64, f64)>| {
        Int64Array::from(rows.iter().map(|r| f(r).map(|p| p.0)).collect::<Vec<_>>())
    };
    let opt_score = |f: fn(&Served<'_>) -> Option<(i64, f64)>| {
        Float64Array::from(rows.iter().map(|r| f(r).map(|p| p.1)).collect::<Vec<_>>())
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.tx.tx_id),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.tx.tx_ts_us))
                .with_timezone("UTC"),
        ),
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.decider().0),
        )),
        Arc::new(StringArray::from(vec!["test"; n])),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.decider().1),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(Served::decision),
        )),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.tx.day))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| {
            if r.canary_decides() {
                "canary"
            } else {
                "champion"
            }
        }))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.champion.0),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.champion.1),
        )),
        Arc::new(opt_version(|r| r.canary)),
        Arc::new(opt_score(|r| r.canary)),
        Arc::new(opt_version(|r| r.shadow)),
        Arc::new(opt_score(|r| r.shadow)),
    ];
    let batch = RecordBatch::try_new(predictions_schema(), cols).expect("predictions batch");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let l = fraudlake_pipeline::Lake::open(&lake.lake()).expect("lake");
        l.append(&PREDICTIONS, vec![batch], "test predictions")
            .await
            .expect("append predictions");
    });
}

fn frauds(part: &[&Labeled]) -> usize {
    part.iter().filter(|t| t.is_fraud).count()
}

#[test]
fn the_analysis_promotes_a_better_canary_and_the_dag_rolls_back_a_worse_one() {
    let lake = lake_with_versions(4);
    let txs = labeled_transactions(&lake);
    // Three disjoint thirds of the labeled transactions, one per rollout (tx_id is unique in
    // predictions).
    let part = |k: i64| {
        txs.iter()
            .filter(|t| t.tx_id % 3 == k)
            .collect::<Vec<&Labeled>>()
    };
    let (a, b, c) = (part(0), part(1), part(2));
    for p in [&a, &b, &c] {
        assert!(
            frauds(p) >= 20,
            "too few frauds for the test: {}",
            frauds(p)
        );
    }
    let policy = ["--min-frauds", "20", "--resamples", "200"];

    // 1. Canary 2 at 10 %, clearly better than champion 1 on part a.
    lake.ok(&["models", "canary", "2", "--percent", "10"]);
    let served: Vec<Served<'_>> = a
        .iter()
        .map(|&t| Served {
            tx: t,
            champion: (1, random(t)),
            canary: Some((2, perfect(t))),
            shadow: None,
        })
        .collect();
    write_predictions(&lake, &served);
    let before = events_from(&lake, 0).len();

    let mut args = vec!["models", "canary", "analyze", "--format", "json"];
    args.extend_from_slice(&policy);
    let look = json(&lake.ok(&args));
    assert_eq!(look["verdict"], "promote", "{look}");
    assert_eq!(look["applied"], false, "{look}");
    assert_eq!(look["action"], "none", "{look}");
    assert_eq!(num(&look, "scored_rows") as usize, a.len(), "{look}");
    let evidence = &look["evidence"];
    assert_eq!(num(evidence, "rows") as usize, a.len(), "{look}");
    assert_eq!(
        num(evidence, "labeled_frauds") as usize,
        frauds(&a),
        "{look}"
    );
    assert_eq!(evidence["candidate"]["average_precision"], 1.0, "{look}");
    assert!(num(&evidence["average_precision"], "low") > 0.0, "{look}");
    // Who decided: customers ending in 0.
    let canary_rows = a.iter().filter(|t| t.customer_id % 10 == 0).count();
    assert_eq!(
        num(&evidence["live"], "candidate_rows") as usize,
        canary_rows
    );
    assert_eq!(events_from(&lake, 0).len(), before, "a look writes nothing");
    let text = lake.ok(&[
        "models",
        "canary",
        "analyze",
        "--min-frauds",
        "20",
        "--resamples",
        "200",
    ]);
    assert!(text.contains("verdict: promote"), "{text}");
    assert!(text.contains("average_precision"), "{text}");

    args.push("--apply");
    let applied = json(&lake.ok(&args));
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(applied["action"], "promoted", "{applied}");
    let champion = json(&lake.ok(&["models", "show", "champion", "--format", "json"]));
    assert_eq!(champion["version"], 2);
    assert_eq!(aliases_of(&lake, 2), ["champion"]);
    let row = last_event(&lake);
    assert_eq!(row["action"], "promote", "{row}");
    assert_eq!(row["alias"], "champion", "{row}");
    assert_eq!(row["version"], 2, "{row}");
    assert_eq!(row["previous_version"], 1);
    let details = json(row["details"].as_str().expect("evidence"));
    assert_eq!(details["verdict"], "promote", "{details}");
    assert_eq!(details["policy"]["min_frauds"], 20, "{details}");

    // 2. Canary 3, clearly worse than champion 2 (part b); shadow 4, clearly better (part c).
    lake.ok(&["models", "canary", "3", "--percent", "10"]);
    lake.ok(&["models", "shadow", "4"]);
    let mut served: Vec<Served<'_>> = b
        .iter()
        .map(|&t| Served {
            tx: t,
            champion: (2, perfect(t)),
            canary: Some((3, random(t))),
            shadow: None,
        })
        .collect();
    served.extend(c.iter().map(|&t| Served {
        tx: t,
        champion: (2, random(t)),
        canary: None,
        shadow: Some((4, perfect(t))),
    }));
    write_predictions(&lake, &served);
    let mut args = vec![
        "models", "canary", "analyze", "--shadow", "--format", "json",
    ];
    args.extend_from_slice(&policy);
    let shadow = json(&lake.ok(&args));
    assert_eq!(shadow["verdict"], "promote", "{shadow}");
    assert_eq!(shadow["version"], 4, "{shadow}");
    assert_eq!(
        num(&shadow["evidence"]["live"], "candidate_rows"),
        0.0,
        "a shadow decides nothing"
    );

    // 3. The shipped DAG, its policy lowered to this small lake: the canary is judged first
    // (rolled back), which frees the slot the shadow then takes.
    let shipped =
        std::fs::read_to_string(repo_root().join("dags/canary_rollout.toml")).expect("shipped DAG");
    let dag = shipped
        .replace("min_frauds = 50", "min_frauds = 20")
        .replace("resamples = 500", "resamples = 200");
    assert_eq!(dag.matches("min_frauds = 20").count(), 2, "{dag}");
    let dir = lake.path().join("dags");
    std::fs::create_dir_all(&dir).expect("dags dir");
    std::fs::write(dir.join("canary_rollout.toml"), dag).expect("dag file");
    let d = dir.to_str().expect("path");
    lake.ok(&[
        "dag",
        "run",
        "canary_rollout",
        "--date",
        "2018-06-01",
        "--dags",
        d,
    ]);
    let runs = history(&lake, "canary_rollout");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["state"], "success", "{}", runs[0]);
    let run_id = runs[0]["run_id"].as_str().expect("run id");
    let canary = task_output(&lake.ok(&["dag", "logs", run_id, "--task", "canary"]));
    assert_eq!(canary["verdict"], "rollback", "{canary}");
    assert_eq!(canary["action"], "rolled_back", "{canary}");
    assert_eq!(canary["version"], 3);
    let shadow = task_output(&lake.ok(&["dag", "logs", run_id, "--task", "shadow"]));
    assert_eq!(shadow["verdict"], "promote", "{shadow}");
    assert_eq!(shadow["action"], "canary_started", "{shadow}");
    let notify = lake.ok(&["dag", "logs", run_id, "--task", "notify"]);
    assert!(notify.contains("Canary: version 3 at 10"), "{notify}");
    assert!(notify.contains("rollback, action rolled_back"), "{notify}");
    assert!(
        notify.contains("promote, action canary_started"),
        "{notify}"
    );

    let tail: Vec<(String, String, i64)> =
        events_from(&lake, 0).into_iter().rev().take(2).collect();
    assert_eq!(
        tail,
        [
            ("start".to_string(), "canary".to_string(), 4),
            ("rollback".to_string(), "canary".to_string(), 3),
        ]
    );
    let started = last_event(&lake);
    let details = json(started["details"].as_str().expect("details"));
    assert_eq!(details["percent"], 10.0, "{details}");
    assert_eq!(details["evidence"]["verdict"], "promote", "{details}");
    let shown = json(&lake.ok(&["models", "show", "canary", "--format", "json"]));
    assert_eq!(shown["version"], 4);
    assert!(!aliases_of(&lake, 4).contains(&"shadow".to_string()));
    assert!(aliases_of(&lake, 3).is_empty());
}
