//! `train`: trains a model on the days before the logical date (the handbook's train / delay /
//! test protocol) and registers it, through the same `train_and_register` as `fraudlake
//! train`. Its own module so its arguments, the XGBoost parameter checks and the call stay
//! together.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use chrono::Duration;
use fraudlake_model::protocol::Periods;
use fraudlake_model::registry::{actor, metric_map};
use fraudlake_model::train::{self, FeatureSpec, Registration};
use fraudlake_pipeline::labels::LabelPolicy;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{Op, OpCtx};
use crate::spec::args::{self, describe_toml};
use crate::spec::SpecErrorKind;

/// The XGBoost parameters `train.params` may override, with whether each takes an integer.
/// Mirrors `fraudlake_model::train::set_param`, which the runner calls with these values.
const TRAIN_PARAMS: &[(&str, bool)] = &[
    ("n_estimators", true),
    ("max_depth", true),
    ("learning_rate", false),
    ("subsample", false),
    ("colsample_bytree", false),
    ("scale_pos_weight", false),
    ("min_child_weight", false),
    ("seed", true),
    ("threads", true),
    ("early_stopping_rounds", true),
    ("validation_days", true),
];

/// `train` args: the handbook protocol's train / delay / test days, ending at the logical date.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainArgs {
    /// Days of training data (default 7).
    #[serde(default = "args::seven", deserialize_with = "args::days_from_1")]
    pub train_days: u32,
    /// Days between training and test data, for late labels (default 7).
    #[serde(default = "args::seven", deserialize_with = "args::days_from_0")]
    pub delay_days: u32,
    /// Days of test data (default 7).
    #[serde(default = "args::seven", deserialize_with = "args::days_from_1")]
    pub test_days: u32,
    /// XGBoost parameter overrides, for `fraudlake_model::train::set_param` (checked by name
    /// in [`Op::validate`]: whether a value fits depends on the parameter).
    #[serde(default, deserialize_with = "params")]
    pub params: BTreeMap<String, ParamValue>,
}

/// An XGBoost parameter value as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// `max_depth = 6`
    Int(i64),
    /// `learning_rate = 0.1`
    Float(f64),
    /// `learning_rate = "0.1"` (trimmed)
    Str(String),
    /// A value of another TOML type, described (`boolean true`): refused by
    /// [`Op::validate`], so never in a loaded DAG.
    Unusable(String),
}

/// The text `set_param` parses.
impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) | ParamValue::Unusable(s) => f.write_str(s),
        }
    }
}

/// A table whose values are kept as written (`expected a table` otherwise).
fn params<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, ParamValue>, D::Error> {
    struct Table;
    impl<'de> Visitor<'de> for Table {
        type Value = BTreeMap<String, ParamValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table")
        }
        fn visit_map<A: de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, toml::Value>()? {
                let value = match v {
                    toml::Value::Integer(i) => ParamValue::Int(i),
                    toml::Value::Float(x) => ParamValue::Float(x),
                    toml::Value::String(s) => ParamValue::Str(s.trim().to_string()),
                    other => ParamValue::Unusable(describe_toml(&other)),
                };
                out.insert(k, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Table)
}

/// The problem with one parameter, if any.
fn check_param(name: &str, value: &ParamValue) -> Option<SpecErrorKind> {
    let key = format!("params.{name}");
    let Some(&(_, integer)) = TRAIN_PARAMS.iter().find(|(n, _)| *n == name) else {
        return Some(SpecErrorKind::InvalidArg {
            key: "params".to_string(),
            message: format!(
                "unknown XGBoost parameter {name:?} (valid: {})",
                TRAIN_PARAMS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let invalid = |message: String| {
        Some(SpecErrorKind::InvalidArg {
            key: key.clone(),
            message,
        })
    };
    let wrong_type = |found: String| {
        Some(SpecErrorKind::ArgType {
            key: key.clone(),
            expected: if integer {
                "a non-negative integer (or one as a string)"
            } else {
                "a number (or one as a string)"
            }
            .to_string(),
            found,
        })
    };
    match (value, integer) {
        (ParamValue::Int(i), true) if *i < 0 => invalid(format!("must be at least 0, got {i}")),
        (ParamValue::Int(_), _) => None,
        (ParamValue::Float(x), false) if !x.is_finite() => {
            invalid(format!("must be a finite number, got {x}"))
        }
        (ParamValue::Float(_), false) => None,
        (ParamValue::Float(x), true) => wrong_type(format!("float {x}")),
        (ParamValue::Str(s), true) if s.parse::<u64>().is_ok() => None,
        (ParamValue::Str(s), false) if s.parse::<f64>().is_ok_and(f64::is_finite) => None,
        (ParamValue::Str(s), _) => invalid(format!(
            "{s:?} is not {}",
            if integer {
                "a non-negative integer"
            } else {
                "a number"
            }
        )),
        (ParamValue::Unusable(found), _) => wrong_type(found.clone()),
    }
}

impl Op for TrainArgs {
    fn validate(&self) -> Vec<SpecErrorKind> {
        self.params
            .iter()
            .filter_map(|(name, value)| check_param(name, value))
            .collect()
    }

    fn summary(&self) -> Vec<String> {
        let mut v = vec![
            format!("train_days={}", self.train_days),
            format!("delay_days={}", self.delay_days),
            format!("test_days={}", self.test_days),
        ];
        v.extend(self.params.iter().map(|(k, p)| format!("params.{k}={p}")));
        v
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let env = ctx.env;
        let spec = FeatureSpec::load(&env.features_sql).await?;
        let mut p = env.train.clone();
        for (k, v) in &self.params {
            train::set_param(&mut p, k, &v.to_string())?;
        }
        let total = i64::from(self.train_days + self.delay_days + self.test_days);
        let periods = Periods {
            train_start: ctx.logical_date - Duration::days(total - 1),
            train_days: self.train_days,
            delay_days: self.delay_days,
            test_days: self.test_days,
        };
        ctx.note(format!(
            "training on {}..{}, testing on {}..{}",
            periods.train_start,
            periods.train_end(),
            periods.test_start(),
            periods.test_end()
        ));
        let done = train::train_and_register(
            &env.lake,
            &spec,
            &periods,
            &p,
            0.5,
            &LabelPolicy::default(),
            Some(Registration {
                created_by: format!("dag:{}:{}", ctx.dag, actor()),
                note: format!("DAG {} run {}", ctx.dag, ctx.run_id),
            }),
        )
        .await?;
        let record = done
            .record
            .ok_or_else(|| Error::invalid("the trained model was not registered"))?;
        let metrics = &done.trained.metrics;
        ctx.note(format!(
            "registered version {} (AUC {:?}, AP {:?})",
            record.version, metrics.auc_roc, metrics.average_precision
        ));
        Ok(json!({"candidate_version": record.version,
                  "metrics": metric_map(metrics),
                  "train_rows": record.lineage.train_rows}))
    }
}
