//! The API page (`/docs`) in a real headless Chromium, used the way a person uses Swagger UI's
//! "try it out": enter an API key, open `POST /score`, edit the body, press Send, read the
//! answer. The page is one embedded file, so this also proves it works with no internet.

use std::process::Command;

use crate::common::repo_root;
use crate::drift::chromium;
use crate::serve::{create_key, lake_with_champion, tx_body, Server};

/// JavaScript that drives the page; `key` and `body` are JSON string literals.
fn try_score(key: &str, body: &str) -> String {
    format!(
        r#"(async () => {{
  const wait = async (f, what) => {{
    for (let i = 0; i < 400; i++) {{ const v = f(); if (v) return v; await new Promise(r => setTimeout(r, 50)); }}
    throw new Error("timed out waiting for " + what);
  }};
  const op = await wait(() => document.querySelector('[data-op="post /score"]'), "the POST /score operation");
  const example = JSON.parse(op.querySelector("textarea").value);
  document.getElementById("token").value = {key};
  document.getElementById("save-token").click();
  op.querySelector(".toggle").click();
  op.querySelector("textarea").value = {body};
  op.querySelector(".send").click();
  await wait(() => /HTTP \d+/.test(op.querySelector(".status").textContent), "an answer");
  return JSON.stringify({{example: Object.keys(example).sort(), visible: op.querySelector(".try").offsetHeight > 0,
    status: op.querySelector(".status").textContent, answer: op.querySelector(".result").textContent,
    curl: op.querySelector(".curl").textContent}});
}})()"#
    )
}

#[test]
fn the_api_page_scores_a_transaction_from_a_real_browser() {
    if chromium().is_none() {
        return;
    }
    let lake = lake_with_champion();
    // A server that requires keys: the page's request carries the key the user typed.
    let (_, key) = create_key(&lake, "score");
    let server = Server::start_keyed(&lake.lake(), &[]);
    let body = tx_body(91_000_001, "2018-05-30T12:00:00Z", 3, 7, 42.5);
    let js = try_score(
        &serde_json::to_string(&key).expect("key"),
        &serde_json::to_string(&body).expect("body"),
    );
    let png = std::env::temp_dir().join("fraudlake-docs.png");
    let url = format!("http://127.0.0.1:{}/docs", server.port);
    let out = Command::new("bash")
        .arg(repo_root().join("drift/tests/chromium_check.sh"))
        .args(["--page", &url])
        .arg(&png)
        .env("CHECK_EVAL", &js)
        .env("CHECK_MIN_HEIGHT", "900")
        .output()
        .expect("run chromium_check.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium check failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval = std::fs::read_to_string(format!("{}.eval.txt", png.display())).expect("eval");
    let seen: serde_json::Value = serde_json::from_str(&eval).expect("eval JSON");
    assert_eq!(
        seen["example"],
        serde_json::json!(["amount", "customer_id", "terminal_id", "tx_id", "tx_ts"]),
        "{seen}"
    );
    assert_eq!(seen["visible"], true, "{seen}");
    assert!(
        seen["status"]
            .as_str()
            .unwrap_or("")
            .starts_with("HTTP 200"),
        "{seen}"
    );
    let answer: serde_json::Value =
        serde_json::from_str(seen["answer"].as_str().unwrap_or("")).expect("answer JSON");
    assert_eq!(answer["tx_id"], 91_000_001, "{answer}");
    assert!(answer["risk_score"].is_f64(), "{answer}");
    let curl = seen["curl"].as_str().unwrap_or("");
    assert!(curl.contains("/score"), "{seen}");
    assert!(
        curl.contains("Authorization: Bearer $FRAUDLAKE_KEY") && !curl.contains(&key),
        "the curl line names the key's variable, never the key: {seen}"
    );
    server.stop();
}
