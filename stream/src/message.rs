//! The wire formats of the topics. A transaction message is exactly a `POST /score` body and a
//! label message one `POST /labels` item, checked by the same validation, so a payment system
//! can switch between HTTP and a topic without changing what it sends. The scoring log carries
//! everything the lake's `transactions` and `predictions` rows need; the scores topic only the
//! answer.

use fraudlake_features::Transaction;
use fraudlake_pipeline::lake::tables::Rejection;
use fraudlake_serving::server::api::{Decider, LabelRequest, ScoreRequest};
use fraudlake_serving::server::models::ModelScore;
use fraudlake_serving::server::writer::{RoleScores, Scored};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// At most this much of a bad payload is kept in `transactions_rejected` (the dead-letter
/// topic gets it whole).
const MAX_RAW: usize = 64 * 1024;

/// A payload as text for `transactions_rejected.raw_record`: invalid UTF-8 replaced, cut at
/// [`MAX_RAW`] bytes on a character boundary.
pub fn raw_text(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    if text.len() <= MAX_RAW {
        return text.into_owned();
    }
    let mut end = MAX_RAW;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], payload.len())
}

/// The `transactions_rejected` row of a refused message: where it was (topic/partition as the
/// source, the offset as the row number), its bytes, and why.
pub fn rejection(msg: &rdkafka::message::OwnedMessage, reason: String) -> Rejection {
    use rdkafka::message::Message;
    Rejection {
        source: format!("kafka:{}/{}", msg.topic(), msg.partition()),
        row_number: msg.offset(),
        raw_record: raw_text(msg.payload().unwrap_or_default()),
        reason,
    }
}

/// JSON text of a payload, or why it is not.
fn utf8(payload: Option<&[u8]>) -> Result<&str, String> {
    let bytes = payload.ok_or("empty message (no value)")?;
    if bytes.is_empty() {
        return Err("empty message (no value)".into());
    }
    std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))
}

/// `text` as a `T`, or a reason that names the field at fault: serde's own message says
/// "expected f64 at line 1 column 95", which a person fixing a producer cannot act on. When the
/// object fails, each field is tried alone; the first whose failure is not a missing field is
/// the culprit.
fn decode<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, String> {
    use serde_json::Value;
    // The valid message, the usual case, is read once; only a bad one is taken apart.
    if let Ok(t) = serde_json::from_str::<T>(text) {
        return Ok(t);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(fields) = &value else {
        let got = match value {
            Value::Array(_) => "an array",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            _ => "null",
        };
        return Err(format!("not a {what}: expected a JSON object, got {got}"));
    };
    match serde_json::from_value::<T>(value.clone()) {
        Ok(t) => Ok(t),
        Err(whole) => {
            for (name, v) in fields {
                let alone = Value::Object([(name.clone(), v.clone())].into_iter().collect());
                if let Err(e) = serde_json::from_value::<T>(alone) {
                    let e = e.to_string();
                    if !e.starts_with("missing field") {
                        return Err(format!("{name}: {e}"));
                    }
                }
            }
            Err(format!("not a {what}: {whole}"))
        }
    }
}

/// A transaction message, checked as `POST /score` checks its body.
pub fn transaction(payload: Option<&[u8]>) -> Result<Transaction, String> {
    let req: ScoreRequest = decode(utf8(payload)?, "transaction")?;
    req.validate("").map_err(|e| e.detail)
}

/// A label message, checked as one `POST /labels` item.
pub fn label(payload: Option<&[u8]>) -> Result<LabelRequest, String> {
    let req: LabelRequest = decode(utf8(payload)?, "label")?;
    if req.tx_id < 0 {
        return Err(format!("tx_id: must be >= 0, got {}", req.tx_id));
    }
    Ok(req)
}

/// One answered transaction in the scoring log: the transaction, the answer and the feature
/// vector. Times in microseconds since the epoch (UTC); a missing feature value is `null`.
/// The rollout's fields (who decided, each served model's version and score) are absent in
/// entries logged before them and read as none.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedScore {
    pub tx_id: i64,
    pub tx_ts_us: i64,
    pub customer_id: i64,
    pub terminal_id: i64,
    pub amount: f64,
    pub scored_at_us: i64,
    pub model_version: i64,
    pub feature_set: String,
    pub risk_score: f64,
    pub decision: String,
    pub features: Vec<Option<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Decider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<LoggedModelScore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<LoggedModelScore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<LoggedModelScore>,
}

/// One served model's version and score in the scoring log.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedModelScore {
    pub version: i64,
    pub score: f64,
}

impl From<ModelScore> for LoggedModelScore {
    fn from(m: ModelScore) -> LoggedModelScore {
        LoggedModelScore {
            version: m.version,
            score: m.score,
        }
    }
}

impl From<LoggedModelScore> for ModelScore {
    fn from(m: LoggedModelScore) -> ModelScore {
        ModelScore {
            version: m.version,
            score: m.score,
        }
    }
}

impl LoggedScore {
    pub fn of(row: &Scored) -> LoggedScore {
        LoggedScore {
            tx_id: row.tx.tx_id,
            tx_ts_us: row.tx.tx_ts_us,
            customer_id: row.tx.customer_id,
            terminal_id: row.tx.terminal_id,
            amount: row.tx.amount,
            scored_at_us: row.scored_at_us,
            model_version: row.model_version,
            feature_set: row.feature_set.to_string(),
            risk_score: row.risk_score,
            decision: row.decision.to_string(),
            features: row
                .features
                .iter()
                .map(|v| v.is_finite().then_some(*v))
                .collect(),
            role: row.roles.decider,
            champion: row.roles.champion.map(Into::into),
            canary: row.roles.canary.map(Into::into),
            shadow: row.roles.shadow.map(Into::into),
        }
    }

    /// Back to a row for the lake; `feature_sets` interns the feature-set names.
    pub fn into_scored(self, feature_sets: &mut Vec<Arc<str>>) -> Result<Scored, String> {
        let decision = match self.decision.as_str() {
            "approve" => "approve",
            "review" => "review",
            "decline" => "decline",
            other => return Err(format!("decision: unknown value '{other}'")),
        };
        let feature_set = match feature_sets
            .iter()
            .find(|f| &***f == self.feature_set.as_str())
        {
            Some(f) => f.clone(),
            None => {
                let f: Arc<str> = Arc::from(self.feature_set.as_str());
                feature_sets.push(f.clone());
                f
            }
        };
        Ok(Scored {
            tx: Transaction {
                tx_id: self.tx_id,
                tx_ts_us: self.tx_ts_us,
                customer_id: self.customer_id,
                terminal_id: self.terminal_id,
                amount: self.amount,
            },
            scored_at_us: self.scored_at_us,
            model_version: self.model_version,
            feature_set,
            risk_score: self.risk_score,
            decision,
            features: self
                .features
                .into_iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect(),
            roles: RoleScores {
                decider: self.role,
                champion: self.champion.map(Into::into),
                canary: self.canary.map(Into::into),
                shadow: self.shadow.map(Into::into),
            },
        })
    }
}

/// What the scores topic carries for the payment system.
#[derive(Debug, Serialize)]
pub struct ScoreMessage<'a> {
    pub tx_id: i64,
    pub risk_score: f64,
    pub decision: &'a str,
    pub model_version: i64,
    /// Who decided, as in the `/score` answer (absent for a row logged before roles existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Decider>,
    pub feature_set: &'a str,
    pub scored_at: String,
}

impl<'a> ScoreMessage<'a> {
    pub fn of(row: &'a Scored) -> ScoreMessage<'a> {
        ScoreMessage {
            tx_id: row.tx.tx_id,
            risk_score: row.risk_score,
            decision: row.decision,
            model_version: row.model_version,
            role: row.roles.decider,
            feature_set: &row.feature_set,
            scored_at: chrono::DateTime::from_timestamp_micros(row.scored_at_us)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_transactions_say_what_is_wrong() {
        let cases: [(&[u8], &str); 8] = [
            (b"", "empty message"),
            (b"{not json", "not JSON"),
            (b"[1,2]", "expected a JSON object, got an array"),
            (
                br#"{"tx_id":1,"tx_ts":"2018-06-01T00:00:00Z","customer_id":1,"terminal_id":2,"amount":"12"}"#,
                "amount: invalid type: string",
            ),
            (
                br#"{"tx_id":1,"tx_ts":"2018-06-01T00:00:00Z","customer_id":1,"terminal_id":2,"amount":1,"cvv":1}"#,
                "cvv: unknown field",
            ),
            (
                br#"{"tx_id":1,"tx_ts":"2018-06-01T00:00:00Z","customer_id":1,"terminal_id":2,"amount":-1}"#,
                "amount",
            ),
            (
                br#"{"tx_id":1,"tx_ts":"9999-06-01T00:00:00Z","customer_id":1,"terminal_id":2,"amount":1}"#,
                "tx_ts",
            ),
            (b"\xff\xfe", "not UTF-8"),
        ];
        for (payload, expected) in cases {
            let err = transaction(Some(payload)).expect_err("refused");
            assert!(err.contains(expected), "{payload:?}: {err}");
        }
        let ok = transaction(Some(
            br#"{"tx_id":7,"tx_ts":"2018-06-01T00:00:31Z","customer_id":12,"terminal_id":34,"amount":57.16}"#,
        ))
        .expect("valid");
        assert_eq!((ok.tx_id, ok.customer_id, ok.terminal_id), (7, 12, 34));
    }

    #[test]
    fn a_logged_score_round_trips_with_missing_values() {
        let row = Scored {
            tx: Transaction {
                tx_id: 1,
                tx_ts_us: 2,
                customer_id: 3,
                terminal_id: 4,
                amount: 5.5,
            },
            scored_at_us: 6,
            model_version: 7,
            feature_set: Arc::from("fs"),
            risk_score: 0.25,
            decision: "review",
            features: vec![1.0, f64::NAN],
            roles: RoleScores {
                decider: Some(Decider::Canary),
                champion: Some(ModelScore {
                    version: 6,
                    score: 0.125,
                }),
                canary: Some(ModelScore {
                    version: 7,
                    score: 0.25,
                }),
                shadow: None,
            },
        };
        let json = serde_json::to_string(&LoggedScore::of(&row)).expect("json");
        assert!(!json.contains("shadow"), "{json}");
        let back: LoggedScore = serde_json::from_str(&json).expect("parse");
        let mut sets = Vec::new();
        let back = back.into_scored(&mut sets).expect("row");
        assert_eq!(back.tx.tx_id, 1);
        assert_eq!(back.decision, "review");
        assert_eq!(back.features[0], 1.0);
        assert!(back.features[1].is_nan());
        assert_eq!(back.roles, row.roles);
        // An entry logged before the rollout's fields existed reads with none of them.
        let old = json
            .split(r#","role""#)
            .next()
            .map(|head| format!("{head}}}"))
            .expect("head");
        let back: LoggedScore = serde_json::from_str(&old).expect("old entry");
        let back = back.into_scored(&mut sets).expect("row");
        assert_eq!(back.roles, RoleScores::default());
    }
}
