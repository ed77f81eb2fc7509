//! The wire types of the scoring API and their validation. Unknown fields are refused, and
//! every value is checked before it reaches the online state: a bad request is a 4xx naming
//! the field, never a panic and never a silently altered transaction (a clamped time, when the
//! server is configured to clamp, is said in the answer).

use chrono::{DateTime, Utc};
use fraudlake_features::Transaction;
use fraudlake_model::rollout::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;

/// One transaction to score.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// Unique transaction id (>= 0).
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "integer::i64")]
    pub tx_id: i64,
    /// Transaction time, RFC 3339 (e.g. 2018-09-30T12:00:00Z), from 2000-01-01 to one day
    /// after the server's clock; see docs/serving.md, "Event-time rules", for times ahead of the
    /// server's event-time watermark.
    #[schema(format = DateTime)]
    pub tx_ts: String,
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "integer::i64")]
    pub customer_id: i64,
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "integer::i64")]
    pub terminal_id: i64,
    /// Amount, from 0 to 1e9.
    #[schema(minimum = 0.0, maximum = 1e9)]
    pub amount: f64,
}

/// Earliest accepted transaction time (2000-01-01) and the accepted clock skew into the future.
const MIN_TS_US: i64 = 946_684_800_000_000;
const MAX_FUTURE_US: i64 = 86_400_000_000;
const MAX_AMOUNT: f64 = 1e9;

impl ScoreRequest {
    /// Checks every field; `at` names the item in a batch for messages.
    pub fn validate(&self, at: &str) -> Result<Transaction, ApiError> {
        if self.tx_id < 0 {
            return Err(ApiError::field(format!(
                "{at}tx_id: must be >= 0, got {}",
                self.tx_id
            )));
        }
        if self.customer_id < 0 || self.terminal_id < 0 {
            return Err(ApiError::field(format!(
                "{at}customer_id/terminal_id: must be >= 0, got {} / {}",
                self.customer_id, self.terminal_id
            )));
        }
        if !self.amount.is_finite() || self.amount < 0.0 || self.amount > MAX_AMOUNT {
            return Err(ApiError::field(format!(
                "{at}amount: must be a finite number in [0, 1e9], got {}",
                self.amount
            )));
        }
        let ts = DateTime::parse_from_rfc3339(self.tx_ts.trim()).map_err(|e| {
            ApiError::field(format!(
                "{at}tx_ts: '{}' is not an RFC 3339 time ({e})",
                self.tx_ts.chars().take(64).collect::<String>()
            ))
        })?;
        let us = ts.with_timezone(&Utc).timestamp_micros();
        let latest = Utc::now().timestamp_micros() + MAX_FUTURE_US;
        if !(MIN_TS_US..=latest).contains(&us) {
            return Err(ApiError::field(format!(
                "{at}tx_ts: {} is outside the accepted range (2000-01-01 .. now + 1 day)",
                self.tx_ts
            )));
        }
        Ok(Transaction {
            tx_id: self.tx_id,
            tx_ts_us: us,
            customer_id: self.customer_id,
            terminal_id: self.terminal_id,
            amount: self.amount,
        })
    }
}

/// What the server decided.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Review,
    Decline,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Review => "review",
            Decision::Decline => "decline",
        }
    }

    /// A one-byte code, for the answers the online state keeps for retries.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Decision {
        match code {
            0 => Decision::Approve,
            1 => Decision::Review,
            _ => Decision::Decline,
        }
    }
}

/// Which model decided (docs/rollout.md): the champion, or while a canary runs, the canary
/// for the customers routed to it. A shadow model scores but never decides.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Decider {
    Champion,
    Canary,
}

impl Decider {
    /// The role's name: in answers, metrics and `predictions.role`.
    pub fn as_str(self) -> &'static str {
        self.role().as_str()
    }

    pub fn role(self) -> Role {
        match self {
            Decider::Champion => Role::Champion,
            Decider::Canary => Role::Canary,
        }
    }

    /// A one-byte code, for the answers the online state keeps for retries.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Decider {
        match code {
            1 => Decider::Canary,
            _ => Decider::Champion,
        }
    }
}

/// How the transaction's time was taken, when not simply on time (see
/// docs/serving.md, "Event-time rules").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TimeFlag {
    /// More than --max-event-skew behind the server's event-time watermark: scored with the
    /// history the server still holds, which may lack the oldest events of its windows.
    Late,
    /// More than --max-event-skew ahead of the watermark: scored and stored at the
    /// watermark's time (`scored_tx_ts`), with --event-skew-policy clamp.
    Clamped,
}

impl TimeFlag {
    /// A one-byte code (0 = on time), for the answers kept for retries.
    pub fn code(flag: Option<TimeFlag>) -> u8 {
        match flag {
            None => 0,
            Some(TimeFlag::Late) => 1,
            Some(TimeFlag::Clamped) => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<TimeFlag> {
        match code {
            1 => Some(TimeFlag::Late),
            2 => Some(TimeFlag::Clamped),
            _ => None,
        }
    }
}

/// One feature's value and its TreeSHAP contribution (log-odds).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeatureContribution {
    pub feature: String,
    /// null when the feature has no value (an average over an empty window, say); the model
    /// takes it as missing, as the offline features' NULL.
    pub value: Option<f64>,
    pub contribution: f64,
}

/// The answer for one transaction.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScoreResponse {
    pub tx_id: i64,
    /// Fraud probability, 0..1.
    pub risk_score: f64,
    pub decision: Decision,
    /// The deciding model's version.
    pub model_version: i64,
    /// Who decided: the champion, or the canary for the customers routed to it.
    pub role: Decider,
    /// sha256 of the feature SQL the features came from.
    pub feature_set: String,
    /// Present when the time was late or clamped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_flag: Option<TimeFlag>,
    /// With `time_flag` clamped: the transaction time used and stored (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scored_tx_ts: Option<String>,
    /// With `?explain=true`: every feature's value, in model order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<FeatureContribution>>,
    /// With `?explain=true`: the largest contributions, by magnitude.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_contributions: Option<Vec<FeatureContribution>>,
    /// `true` when the shared online store failed and the server runs with
    /// `--on-store-failure open`: the windows saw no history, only this transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScoreQuery {
    /// Add the features used and the top contributions.
    #[serde(default)]
    pub explain: bool,
}

/// A batch: transactions scored in order, each seeing the ones before it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub transactions: Vec<ScoreRequest>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<ScoreResponse>,
}

/// One fraud feedback label.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelRequest {
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "integer::i64")]
    pub tx_id: i64,
    pub is_fraud: bool,
    /// Optional scenario code (the handbook's 1-3, or your own).
    #[serde(default, deserialize_with = "integer::optional_i32")]
    pub fraud_scenario: Option<i32>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LabelResponse {
    /// Labels accepted (all land in the `labels` table).
    pub accepted: usize,
    /// Labels that changed online state now (the others are held for unseen transactions or
    /// changed nothing).
    pub applied_online: usize,
    /// Labels stored but not counted: a more trusted source (by the label precedence, e.g.
    /// a chargeback file) holds a label for the transaction.
    pub overridden: usize,
}

/// The models being served: the champion's fields, and the canary and shadow (null when
/// none).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelInfo {
    pub version: i64,
    pub feature_set: String,
    pub feature_names: Vec<String>,
    pub trees: usize,
    pub loaded_at: String,
    pub train_from: String,
    pub train_to: String,
    pub auc_roc: Option<f64>,
    pub average_precision: Option<f64>,
    pub card_precision_at_100: Option<f64>,
    /// The canary: decides for `percent` % of customers (a sticky split), scores them all.
    pub canary: Option<RolloutModel>,
    /// The shadow: scores every transaction, decides nothing.
    pub shadow: Option<RolloutModel>,
}

/// A model served beside the champion during a rollout.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RolloutModel {
    pub version: i64,
    /// The canary's share of customers, in percent; null for a shadow.
    pub percent: Option<f64>,
    pub feature_set: String,
    pub trees: usize,
    pub loaded_at: String,
    pub train_from: String,
    pub train_to: String,
    pub average_precision: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReloadResponse {
    pub reloaded: bool,
    pub version: i64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decider_codes_round_trip_and_name_the_role() {
        for d in [Decider::Champion, Decider::Canary] {
            assert_eq!(Decider::from_code(d.code()), d);
            assert_eq!(d.as_str(), d.role().as_str());
        }
        assert_eq!(Decider::Canary.as_str(), "canary");
        assert_eq!(
            serde_json::to_string(&Decider::Champion).expect("json"),
            r#""champion""#
        );
    }
}

/// Integers as JSON Schema defines them: a number with a zero fraction (`1331.0`) is an
/// integer, so the document's `type: integer` accepts it and so must the server. Anything
/// else (a fraction, out of range, a string) is the usual 422 naming the field.
mod integer {
    use std::fmt;

    use serde::de::{Deserializer, Error, Unexpected, Visitor};

    struct Integer<T>(std::marker::PhantomData<T>);

    impl<'de, T> Visitor<'de> for Integer<T>
    where
        T: TryFrom<i64>,
    {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an integer of {} bits", std::mem::size_of::<T>() * 8)
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
            i64::try_from(v)
                .ok()
                .and_then(|v| T::try_from(v).ok())
                .ok_or_else(|| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
            // serde_json's default float parsing (no `float_roundtrip`, which would rebuild
            // most of the dependency tree) can land one unit in the last place off: a number
            // sent as `2251799813685247.0` may arrive as ...247.25. Within one ulp of an
            // integer is that integer; `1.5` or `1e-9` is not.
            let r = v.round();
            let ulp = f64::from_bits(v.abs().to_bits() + 1) - v.abs();
            let integral = (v - r).abs() <= ulp;
            // -2^63 is exact as an f64; 2^63 (the next f64 above i64::MAX) is out of range.
            let in_range = (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&r);
            if integral && in_range {
                self.visit_i64(r as i64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_any(Integer::<i64>(std::marker::PhantomData))
    }

    pub fn optional_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
        struct Optional;
        impl<'de> Visitor<'de> for Optional {
            type Value = Option<i32>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("null or an integer of 32 bits")
            }
            fn visit_none<E: Error>(self) -> Result<Option<i32>, E> {
                Ok(None)
            }
            fn visit_unit<E: Error>(self) -> Result<Option<i32>, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<i32>, D::Error> {
                d.deserialize_any(Integer::<i32>(std::marker::PhantomData))
                    .map(Some)
            }
        }
        d.deserialize_option(Optional)
    }

    #[cfg(test)]
    mod tests {
        #[derive(Debug, serde::Deserialize)]
        struct Row {
            #[serde(deserialize_with = "super::i64")]
            id: i64,
            #[serde(default, deserialize_with = "super::optional_i32")]
            code: Option<i32>,
        }

        fn parse(json: &str) -> Result<Row, String> {
            serde_json::from_str(json).map_err(|e| e.to_string())
        }

        #[test]
        fn a_number_with_a_zero_fraction_is_an_integer() {
            assert_eq!(parse(r#"{"id": 1331.0}"#).map(|r| r.id), Ok(1331));
            assert_eq!(parse(r#"{"id": -7}"#).map(|r| r.id), Ok(-7));
            // Found by schemathesis: 17 significant digits, parsed one ulp high.
            assert_eq!(
                parse(r#"{"id": 2251799813685247.0}"#).map(|r| r.id),
                Ok(2_251_799_813_685_247)
            );
            assert_eq!(
                parse(r#"{"id": 9223372036854775807}"#).map(|r| r.id),
                Ok(i64::MAX)
            );
            assert_eq!(
                parse(r#"{"id": 1, "code": 2147483646.0}"#).map(|r| r.code),
                Ok(Some(2_147_483_646))
            );
            assert_eq!(
                parse(r#"{"id": 1, "code": null}"#).map(|r| r.code),
                Ok(None)
            );
            assert_eq!(parse(r#"{"id": 1}"#).map(|r| r.code), Ok(None));
            for bad in [
                r#"{"id": 1.5}"#,
                r#"{"id": 0.000001}"#,
                r#"{"id": 9223372036854775808}"#,
                r#"{"id": 9.3e18}"#,
                r#"{"id": "1"}"#,
                r#"{"id": 1, "code": 2147483648}"#,
                r#"{"id": 1, "code": 1.25}"#,
            ] {
                assert!(parse(bad).is_err(), "{bad} must be refused");
            }
        }
    }
}
