//! Issue #14.7: the OpenAPI document is the contract. schemathesis (PyPI, in the test venv)
//! reads `/openapi.json` from a real `fraudlake serve` that requires API keys, generates
//! schema-valid and schema-invalid requests for every operation, and runs all its checks:
//! every status the server answers is declared, every answer matches its declared schema and
//! content type, schema-valid bodies are accepted, invalid ones rejected, an operation that
//! declares the bearer scheme refuses a request without a key, and no request is a 5xx.

use std::process::Command;

use crate::common::{python_with, repo_root};
use crate::serve::{create_key, lake_with_champion, Server};

/// schemathesis configuration for this run (its `schemathesis.toml` format).
///
/// One documented allowance: `positive_data_acceptance` also accepts 409 on the scoring
/// routes. A schema-valid transaction can reuse a `tx_id` that an earlier generated request
/// already scored with another body; answering 409 `conflict` is the idempotency contract
/// (issue #14.3), which depends on the server's state, not on the body's shape, so no schema
/// can exclude it. Every other check runs with its defaults. `date-time` values are drawn from
/// the range the document's description states (tests/python/contract_hooks.py), as JSON
/// Schema has no bound for dates.
///
/// One timing allowance: hypothesis' `too_slow` health check fails a run whose data generation
/// takes longer than a wall-clock limit, which a loaded 2-core machine can pass without any
/// fault of the server; it is off (schemathesis already runs without hypothesis' per-example
/// deadline). The other health checks stay.
const CONFIG: &str = r#"
suppress-health-check = ["too_slow"]

[[operations]]
include-path-regex = "^/score"
checks.positive_data_acceptance.expected-statuses = ["2xx", "409"]
"#;

#[test]
fn schemathesis_finds_the_server_true_to_its_openapi_document() {
    let Some(python) = python_with(&["schemathesis"]) else {
        return;
    };
    let lake = lake_with_champion();
    let (_, token) = create_key(&lake, "score,label,admin");
    // Generated timestamps span centuries: far-future ones are clamped (with refuse, 422
    // event_time_ahead depends on the server's clock state, like the 409 above).
    let server = Server::start_keyed(&lake.lake(), &["--event-skew-policy", "clamp"]);
    let config = lake.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).expect("write config");
    let report = lake.path().join("schemathesis-report");
    let out = Command::new(&python)
        .current_dir(lake.path())
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(&config)
        .args([
            "run",
            &format!("http://127.0.0.1:{}/openapi.json", server.port),
            "--checks",
            "all",
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--max-examples",
            "40",
            "--seed",
            "14",
            // One worker: with two, hypothesis parses lambda sources with `ast.parse` from
            // two threads at once, which CPython 3.11 can fail with "AST constructor
            // recursion depth mismatch" (a runtime error of the tool, seen once here).
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(&report)
        .env("NO_COLOR", "1")
        .env(
            "SCHEMATHESIS_HOOKS",
            repo_root().join("tests/python/contract_hooks.py"),
        )
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found differences between /openapi.json and the server:\n{stdout}\n{stderr}"
    );
    // It really ran every operation, with hundreds of generated requests.
    assert!(
        stdout.contains("Tested: 8"),
        "not every operation was tested:\n{stdout}"
    );
    let generated: usize = stdout
        .lines()
        .find_map(|l| l.trim().split_once(" generated")?.0.trim().parse().ok())
        .unwrap_or(0);
    assert!(generated >= 200, "only {generated} test cases:\n{stdout}");
    server.stop();
}
