//! `train`: trains a model on the days before the logical date (the handbook's train / delay /
//! test protocol) and registers it, through the same `train_and_register` as `fraudlake
//! train`. Its own module so its arguments, the parameter checks and the call stay together.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use chrono::Duration;
use fraudlake_model::params::{ParamKind, TrainParams};
use fraudlake_model::protocol::Periods;
use fraudlake_model::registry::{actor, metric_map};
use fraudlake_model::train::{self, FeatureSpec, Registration};
use fraudlake_model::ModelFamily;
use fraudlake_pipeline::labels::LabelPolicy;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{Op, OpCtx};
use crate::spec::args::{self, describe_toml};
use crate::spec::SpecErrorKind;

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
    /// The model family, `xgboost` or `lightgbm` (default: `[train] model` of fraudlake.toml,
    /// else xgboost); another family than `[train]`'s starts from its own defaults.
    #[serde(default, deserialize_with = "family")]
    pub model: Option<ModelFamily>,
    /// Parameter overrides of the family, for `fraudlake_model::params::TrainParams::assign`
    /// (checked by name in [`Op::validate`]: whether a value fits depends on the parameter).
    #[serde(default, deserialize_with = "params")]
    pub params: BTreeMap<String, ParamValue>,
}

fn family<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<ModelFamily>, D::Error> {
    let name = String::deserialize(d)?;
    name.parse::<ModelFamily>()
        .map(Some)
        .map_err(de::Error::custom)
}

/// A parameter value as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// `max_depth = 6`
    Int(i64),
    /// `learning_rate = 0.1`
    Float(f64),
    /// `is_unbalance = true`
    Bool(bool),
    /// `learning_rate = "0.1"` (trimmed)
    Str(String),
    /// A value of another TOML type, described (`an array`): refused by
    /// [`Op::validate`], so never in a loaded DAG.
    Unusable(String),
}

/// The text `TrainParams::assign` parses.
impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
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
                    toml::Value::Boolean(b) => ParamValue::Bool(b),
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

/// The problem with one parameter of `family` (of either family when `None`: `[train]`'s
/// family is known only when the task runs), if any.
fn check_param(
    family: Option<ModelFamily>,
    name: &str,
    value: &ParamValue,
) -> Option<SpecErrorKind> {
    let kind = match TrainParams::kind_of(family, name) {
        Ok(kind) => kind,
        Err(e) => {
            return Some(SpecErrorKind::InvalidArg {
                key: "params".to_string(),
                message: e.to_string(),
            })
        }
    };
    let key = format!("params.{name}");
    let invalid = |message: String| {
        Some(SpecErrorKind::InvalidArg {
            key: key.clone(),
            message,
        })
    };
    let wrong_type = |found: String| {
        Some(SpecErrorKind::ArgType {
            key: key.clone(),
            expected: format!("{} (or one as a string)", kind.describe()),
            found,
        })
    };
    match (value, kind) {
        (ParamValue::Int(i), ParamKind::Integer) if *i < 0 => {
            invalid(format!("must be at least 0, got {i}"))
        }
        (ParamValue::Int(_), ParamKind::Integer | ParamKind::Number) => None,
        (ParamValue::Float(x), ParamKind::Number) if !x.is_finite() => {
            invalid(format!("must be a finite number, got {x}"))
        }
        (ParamValue::Float(_), ParamKind::Number) => None,
        (ParamValue::Bool(_), ParamKind::Boolean) => None,
        (ParamValue::Int(i), ParamKind::Boolean) => wrong_type(format!("integer {i}")),
        (ParamValue::Float(x), _) => wrong_type(format!("float {x}")),
        (ParamValue::Bool(b), _) => wrong_type(format!("boolean {b}")),
        (ParamValue::Str(s), ParamKind::Integer) if s.parse::<u64>().is_ok() => None,
        (ParamValue::Str(s), ParamKind::Number) if s.parse::<f64>().is_ok_and(f64::is_finite) => {
            None
        }
        (ParamValue::Str(s), ParamKind::Boolean)
            if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
        {
            None
        }
        (ParamValue::Str(s), _) => invalid(format!("{s:?} is not {}", kind.describe())),
        (ParamValue::Unusable(found), _) => wrong_type(found.clone()),
    }
}

impl Op for TrainArgs {
    fn validate(&self) -> Vec<SpecErrorKind> {
        self.params
            .iter()
            .filter_map(|(name, value)| check_param(self.model, name, value))
            .collect()
    }

    fn summary(&self) -> Vec<String> {
        let mut v = vec![
            format!("train_days={}", self.train_days),
            format!("delay_days={}", self.delay_days),
            format!("test_days={}", self.test_days),
        ];
        v.extend(self.model.iter().map(|m| format!("model={m}")));
        v.extend(self.params.iter().map(|(k, p)| format!("params.{k}={p}")));
        v
    }

    async fn run(&self, ctx: &mut OpCtx<'_>) -> Result<Value> {
        let env = ctx.env;
        let spec = FeatureSpec::load(&env.features_sql).await?;
        let mut p = match self.model {
            Some(family) => env.train.for_model(family),
            None => env.train.clone(),
        };
        // All set, then checked: a range check may involve two of them (is_unbalance and
        // scale_pos_weight).
        for (k, v) in &self.params {
            p.assign(k, &v.to_string())?;
        }
        p.validate()?;
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
