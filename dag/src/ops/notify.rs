//! `notify`: posts a message about the run to a webhook (Slack-style `{"text": ...}`).
//!
//! The text is a minijinja template (`{{ dag }}`, `{{ state }}`, `{{ drift.drift_share }}`):
//! checked when the DAG file is loaded ([`check_text`]: it parses, and every name it reads is a
//! built-in or an upstream task), rendered with the run's values when the task runs
//! ([`render_text`]). Plain text, so no HTML escaping: the one escaping the message needs is
//! JSON's, done by serde_json when the body is built. Values print as they always have: a
//! string as is, a missing value as `n/a`, anything else as JSON.

use crate::error::{Error, Result};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{Op, OpCtx};
use crate::condition::BUILTINS;
use crate::spec::args;
use crate::spec::error::list_or_none;
use crate::spec::SpecErrorKind;
use crate::state::RunState;

/// The notify op's default `url_env`.
pub const DEFAULT_NOTIFY_ENV: &str = "FRAUDLAKE_NOTIFY_WEBHOOK";

/// Names `notify` text may use besides the [condition built-ins](BUILTINS): the run's state
/// so far and its id.
pub const TEXT_BUILTINS: &[&str] = &["state", "run_id"];

/// `notify` args.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyArgs {
    /// The name of the environment variable holding the webhook URL.
    #[serde(default = "default_url_env", deserialize_with = "url_env")]
    pub url_env: String,
    /// The message, a template reading the [built-ins](BUILTINS), `state`, `run_id`, and
    /// `{{ task.field }}` of upstream tasks' outputs (checked when the file is loaded).
    #[serde(deserialize_with = "args::non_empty")]
    pub text: String,
    /// When to send, by the state of the run so far (default `always`).
    #[serde(default, deserialize_with = "args::from_str")]
    pub only_on: NotifyOn,
}

fn default_url_env() -> String {
    DEFAULT_NOTIFY_ENV.to_string()
}

fn url_env<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let name = String::deserialize(d)?;
    check_env_name(&name).map_err(serde::de::Error::custom)?;
    Ok(name)
}

/// When a `notify` task sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyOn {
    /// Whatever the state.
    #[default]
    Always,
    /// Only when an upstream task failed.
    Failure,
    /// Only when every upstream task succeeded (or was skipped by its condition).
    Success,
}

impl NotifyOn {
    /// The name used in DAG files.
    pub fn name(self) -> &'static str {
        match self {
            NotifyOn::Always => "always",
            NotifyOn::Failure => "failure",
            NotifyOn::Success => "success",
        }
    }

    /// Whether to send when the run's state so far is `state`.
    pub fn sends(self, state: RunState) -> bool {
        match self {
            NotifyOn::Always => true,
            NotifyOn::Failure => state == RunState::Failed,
            NotifyOn::Success => state != RunState::Failed,
        }
    }
}

impl std::str::FromStr for NotifyOn {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<NotifyOn, String> {
        match s {
            "always" => Ok(NotifyOn::Always),
            "failure" => Ok(NotifyOn::Failure),
            "success" => Ok(NotifyOn::Success),
            other => Err(format!("{other:?} is not one of always, failure, success")),
        }
    }
}

fn check_env_name(name: &str) -> std::result::Result<(), String> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.contains("://")
        || lower.starts_with("http:")
        || lower.starts_with("https:")
        || lower.starts_with("www.")
    {
        // Do not echo the value: it is probably a secret.
        return Err(format!(
            "looks like a URL; give the NAME of the environment variable that holds the webhook URL (e.g. {DEFAULT_NOTIFY_ENV:?}), never the URL itself: DAG files are committed"
        ));
    }
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an environment variable name (letters, digits and '_', not starting with a digit)"
        ))
    }
}

/// The template engine of notify texts: plain text (no auto-escaping), a missing value or
/// attribute prints `n/a` rather than failing the task, values print as described above.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // The text is sent as written: a final newline is kept (minijinja drops it by default).
    env.set_keep_trailing_newline(true);
    env.set_formatter(|out, _state, value| {
        let text = if value.is_undefined() || value.is_none() {
            "n/a".to_string()
        } else if let Some(s) = value.as_str() {
            s.to_string()
        } else {
            serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
        };
        out.write_str(&text)?;
        Ok(())
    });
    env
}

/// The first problem with a notify text, if any: a template syntax error (with where), or a
/// name that is neither a built-in nor a task upstream of this one.
pub(crate) fn check_text(text: &str, ids: &[String], upstream: &[String]) -> Option<SpecErrorKind> {
    let invalid = |message: String| SpecErrorKind::InvalidArg {
        key: "text".to_string(),
        message,
    };
    let env = environment();
    let template = match env.template_from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let at = e
                .range()
                .and_then(|r| text.get(..r.start))
                .map(|before| format!(" at character {}", before.chars().count() + 1))
                .unwrap_or_default();
            return Some(invalid(format!(
                "template syntax error{at}: {}",
                e.detail().unwrap_or("invalid template")
            )));
        }
    };
    let mut names: Vec<String> = template.undeclared_variables(true).into_iter().collect();
    // In the order they are written, so the problem reported is the first one in the text.
    names.sort_by_key(|n| (text.find(n.as_str()).unwrap_or(usize::MAX), n.clone()));
    for name in names {
        let first = name.split('.').next().unwrap_or(&name);
        if BUILTINS.contains(&first) || TEXT_BUILTINS.contains(&first) {
            continue;
        }
        if !ids.iter().any(|id| id == first) {
            return Some(invalid(format!(
                "placeholder {{{{{name}}}}}: {first:?} is neither a task of this DAG nor a built-in ({}, {})",
                BUILTINS.join(", "),
                TEXT_BUILTINS.join(", ")
            )));
        }
        if !upstream.iter().any(|u| u == first) {
            return Some(invalid(format!(
                "placeholder {{{{{name}}}}}: task {first:?} is not upstream of this task (upstream: {})",
                list_or_none(upstream)
            )));
        }
    }
    None
}

/// Renders a notify text with the run's values: the outputs of the tasks so far and the run's
/// built-ins (`weekday`, `logical_date`, ...), plus `dag`, `logical_date`, `state`, `run_id`.
pub fn render_text(text: &str, ctx: &OpCtx<'_>) -> Result<String> {
    let mut values = ctx.context.as_object().cloned().unwrap_or_default();
    values.insert("dag".into(), json!(ctx.dag));
    values.insert("logical_date".into(), json!(ctx.logical_date.to_string()));
    values.insert("state".into(), json!(ctx.state.as_str()));
    values.insert("run_id".into(), json!(ctx.run_id));
    render(text, &Value::Object(values))
}

fn render(text: &str, values: &Value) -> Result<String> {
    environment()
        .render_str(text, values)
        .map_err(|e| Error::invalid(format!("notify text: {e}")))
}

impl Op for NotifyArgs {
    fn summary(&self) -> Vec<String> {
        vec![
            format!("only_on={}", self.only_on.name()),
            format!("url_env={}", self.url_env),
        ]
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let url_env = &self.url_env;
        if !self.only_on.sends(ctx.state) {
            ctx.note(format!("run state {}: nothing to send", ctx.state));
            return Ok(json!({"sent": false}));
        }
        let message = render_text(&self.text, ctx)?;
        let Ok(url) = std::env::var(url_env) else {
            ctx.note(format!(
                "{url_env} is not set: notification logged only: {message}"
            ));
            return Ok(json!({"sent": false, "text": message}));
        };
        let body = json!({ "text": message }).to_string();
        let resp = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Error::invalid(format!("HTTP client: {e}")))?
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            // Unreachable or slow: may pass, so an I/O error (retried).
            .map_err(|e| {
                Error::io(
                    format!("notify webhook ({url_env}): {e}"),
                    std::io::Error::other(e),
                )
            })?;
        let status = resp.status();
        if !status.is_success() {
            let message = format!("notify webhook ({url_env}) answered {status}");
            // 5xx and 429 are the server's trouble and may pass; another 4xx is ours.
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                Error::io(message.clone(), std::io::Error::other(message))
            } else {
                Error::invalid(message)
            });
        }
        ctx.note(format!("sent: {message}"));
        Ok(json!({"sent": true, "text": message}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_before_minijinja() {
        let values = json!({
            "dag": "nightly",
            "state": "failed",
            "drift": {"dataset_drift": true, "drift_share": 0.25, "prediction_drift": null},
            "features": {"rows": 5},
            "evaluate": {"metrics": {"auc_roc": 0.875}},
        });
        let text = "{{dag}} {{ state }}: drift {{drift.dataset_drift}} ({{drift.drift_share}}), \
                    prediction {{drift.prediction_drift}}, {{features}}, AUC \
                    {{evaluate.metrics.auc_roc}}, AP {{evaluate.metrics.average_precision}}, \
                    {{train.candidate_version}}";
        assert_eq!(
            render(text, &values).unwrap_or_else(|e| e.to_string()),
            "nightly failed: drift true (0.25), prediction n/a, {\"rows\":5}, AUC 0.875, AP n/a, n/a"
        );
        // Plain text: nothing is HTML-escaped (the JSON body is escaped by serde_json).
        assert_eq!(
            render("{{ state | upper }} <b>&{{ dag }}", &values).unwrap_or_else(|e| e.to_string()),
            "FAILED <b>&nightly"
        );
        assert_eq!(
            render("{{ dag }}\n", &values).unwrap_or_else(|e| e.to_string()),
            "nightly\n"
        );
    }

    #[test]
    fn texts_are_checked_against_the_dag() {
        let ids = [
            "features".to_string(),
            "drift".to_string(),
            "tell".to_string(),
        ];
        let upstream = ["features".to_string(), "drift".to_string()];
        assert_eq!(
            check_text(
                "{{ state | upper }} {% if drift.dataset_drift %}drifted{% endif %}",
                &ids,
                &upstream
            ),
            None
        );
        assert_eq!(
            check_text("{{ tell.sent }}", &ids, &upstream).map(|k| k.to_string()),
            Some("arg \"text\": placeholder {{tell.sent}}: task \"tell\" is not upstream of this task (upstream: features, drift)".to_string())
        );
    }
}
