//! Reading one task's `args` table into its op's serde-derived argument struct, with every
//! problem reported and told the way the rest of the loader tells it.
//!
//! Why not plain `toml` deserialization: serde stops at the first problem and words it for a
//! Rust programmer (`invalid type: string "7", expected u32`), while a DAG file should get all
//! its problems at once, each naming the argument (`arg "train_days": expected an integer,
//! found string "7"`), and an unknown argument should list the op's accepted ones. So the
//! structs are deserialized through [`ArgValue`], a deserializer over `toml::Value` whose
//! error ([`ArgError`]) keeps the kind of problem, and [`parse`] looks at each argument on its
//! own when the whole table does not deserialize. Field checks that only need the value
//! (ranges, paths, names) run inside serde through the `deserialize_with` helpers below; the
//! op's [`Op::validate`] checks what needs several fields.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::SpecErrorKind;
use crate::ops::{Op, OpKind};

/// A problem found while deserializing arguments, before it knows its argument's name.
#[derive(Debug)]
pub enum ArgError {
    /// Complete problems with their own keys (`params.max_depth`), possibly several.
    Kinds(Vec<SpecErrorKind>),
    /// A value of the right type that is not acceptable: the message.
    Invalid(String),
    /// A value of the wrong type.
    Type {
        /// What the field takes, in words (`an integer`).
        expected: String,
        /// The value found, in words (`string "7"`), once known.
        found: Option<String>,
    },
    /// A required argument is absent.
    Missing(&'static str),
    /// An argument the op does not take.
    Unknown(String),
    /// Not a problem: the struct's field names, the answer of [`field_names`].
    Fields(&'static [&'static str]),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Kinds(kinds) => {
                let texts: Vec<String> = kinds.iter().map(ToString::to_string).collect();
                f.write_str(&texts.join("; "))
            }
            ArgError::Invalid(message) => f.write_str(message),
            ArgError::Type { expected, found } => write!(
                f,
                "expected {expected}, found {}",
                found.as_deref().unwrap_or("another type")
            ),
            ArgError::Missing(key) => write!(f, "missing {key:?}"),
            ArgError::Unknown(key) => write!(f, "unknown {key:?}"),
            ArgError::Fields(fields) => write!(f, "fields {}", fields.join(", ")),
        }
    }
}

impl std::error::Error for ArgError {}

impl de::Error for ArgError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ArgError::Invalid(msg.to_string())
    }

    fn invalid_type(_: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        // The value is described by [`ArgValue`], which knows its TOML type.
        ArgError::Type {
            expected: expected.to_string(),
            found: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        ArgError::Missing(field)
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        ArgError::Unknown(field.to_string())
    }
}

impl ArgError {
    /// The problems as the loader reports them, `key` being the argument it came from.
    fn into_kinds(self, op: OpKind, key: &str) -> Vec<SpecErrorKind> {
        match self {
            ArgError::Kinds(kinds) => kinds,
            ArgError::Invalid(message) => vec![SpecErrorKind::InvalidArg {
                key: key.to_string(),
                message,
            }],
            ArgError::Type { expected, found } => vec![SpecErrorKind::ArgType {
                key: key.to_string(),
                expected,
                found: found.unwrap_or_default(),
            }],
            ArgError::Missing(key) => vec![SpecErrorKind::MissingArg { op, key }],
            ArgError::Unknown(key) => vec![SpecErrorKind::UnknownArg { op, key }],
            ArgError::Fields(_) => Vec::new(),
        }
    }
}

/// A TOML value as arguments are read: `toml::Value`'s own deserializer, with [`ArgError`].
#[derive(Clone, Copy)]
pub struct ArgValue<'a>(pub &'a toml::Value);

impl<'de> IntoDeserializer<'de, ArgError> for ArgValue<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for ArgValue<'_> {
    type Error = ArgError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgError> {
        let result = match self.0 {
            toml::Value::String(s) => visitor.visit_str(s),
            toml::Value::Integer(i) => visitor.visit_i64(*i),
            toml::Value::Float(x) => visitor.visit_f64(*x),
            toml::Value::Boolean(b) => visitor.visit_bool(*b),
            toml::Value::Datetime(d) => visitor.visit_string(d.to_string()),
            toml::Value::Array(items) => {
                visitor.visit_seq(de::value::SeqDeserializer::new(items.iter().map(ArgValue)))
            }
            toml::Value::Table(t) => visitor.visit_map(de::value::MapDeserializer::new(
                t.iter().map(|(k, v)| (k.as_str(), ArgValue(v))),
            )),
        };
        result.map_err(|e| match e {
            ArgError::Type {
                expected,
                found: None,
            } => ArgError::Type {
                expected,
                found: Some(describe_toml(self.0)),
            },
            other => other,
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgError> {
        // An absent key never gets here (serde gives `None`): a present one is `Some`.
        visitor.visit_some(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// A value in words, for "expected X, found Y" (strings clipped to 40 characters).
pub fn describe_toml(v: &toml::Value) -> String {
    let clip = |s: String| {
        if s.chars().count() > 40 {
            format!("{}...", s.chars().take(40).collect::<String>())
        } else {
            s
        }
    };
    match v {
        toml::Value::String(s) => format!("string {}", clip(format!("{s:?}"))),
        toml::Value::Integer(i) => format!("integer {i}"),
        toml::Value::Float(x) => format!("float {x}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        toml::Value::Datetime(d) => format!("datetime {d}"),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

/// Answers only `deserialize_struct`, with the field names serde derived for the struct.
struct FieldProbe;

impl<'de> Deserializer<'de> for FieldProbe {
    type Error = ArgError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ArgError> {
        Err(ArgError::Fields(&[]))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ArgError> {
        Err(ArgError::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The argument names of an op, in the order its struct declares them: serde's own list, so
/// "valid args" can never disagree with what is accepted.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(FieldProbe) {
        Err(ArgError::Fields(fields)) => fields,
        _ => &[],
    }
}

fn deserialize<T: DeserializeOwned>(table: toml::Table) -> Result<T, ArgError> {
    T::deserialize(ArgValue(&toml::Value::Table(table)))
}

/// Reads an op's `args` table: its struct with every check passed, or every problem found
/// (unknown arguments first, then each argument in the struct's order, then a missing one,
/// then the checks across arguments).
pub fn parse<T: Op>(op: OpKind, table: &toml::Table) -> Result<T, Vec<SpecErrorKind>> {
    if let Ok(args) = deserialize::<T>(table.clone()) {
        let errors = args.validate();
        return if errors.is_empty() {
            Ok(args)
        } else {
            Err(errors)
        };
    }
    // serde stopped at the first problem: look at each argument on its own to find them all.
    let fields = field_names::<T>();
    let mut errors: Vec<SpecErrorKind> = table
        .keys()
        .filter(|k| !fields.contains(&k.as_str()))
        .map(|k| SpecErrorKind::UnknownArg { op, key: k.clone() })
        .collect();
    // Each argument's problems in its slot, so they come in the struct's order.
    let mut by_field: Vec<Vec<SpecErrorKind>> = vec![Vec::new(); fields.len()];
    let mut good = toml::Table::new();
    for (slot, &field) in by_field.iter_mut().zip(fields) {
        let Some(value) = table.get(field) else {
            continue;
        };
        let alone = toml::Table::from_iter([(field.to_string(), value.clone())]);
        match deserialize::<T>(alone) {
            Ok(_) | Err(ArgError::Missing(_)) => {
                good.insert(field.to_string(), value.clone());
            }
            Err(e) => slot.extend(e.into_kinds(op, field)),
        }
    }
    let checks = match deserialize::<T>(good) {
        Ok(args) => args.validate(),
        // A required argument that is there but wrong was reported above.
        Err(ArgError::Missing(key)) if !table.contains_key(key) => {
            let missing = SpecErrorKind::MissingArg { op, key };
            match fields.iter().position(|f| *f == key) {
                Some(i) => by_field[i].push(missing),
                None => errors.push(missing),
            }
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    errors.extend(by_field.into_iter().flatten());
    errors.extend(checks);
    Err(errors)
}

// ---------------------------------------------------------------------------------------
// Field checks shared by several ops (`#[serde(deserialize_with = "...")]`).

/// A string that is not blank.
pub fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(s)
}

/// A count of days of at least `min`.
fn days<'de, D: Deserializer<'de>>(d: D, min: u32) -> Result<u32, D::Error> {
    struct Days(u32);
    impl Visitor<'_> for Days {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: de::Error>(self, i: i64) -> Result<u32, E> {
            if i < i64::from(self.0) {
                return Err(E::custom(format!("must be at least {}, got {i}", self.0)));
            }
            u32::try_from(i)
                .map_err(|_| E::custom(format!("must be at most {}, got {i}", u32::MAX)))
        }
        fn visit_u64<E: de::Error>(self, u: u64) -> Result<u32, E> {
            self.visit_i64(i64::try_from(u).unwrap_or(i64::MAX))
        }
    }
    d.deserialize_i64(Days(min))
}

/// Days, at least 1.
pub fn days_from_1<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    days(d, 1)
}

/// Days, at least 0.
pub fn days_from_0<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    days(d, 0)
}

/// The default of most day counts.
pub fn seven() -> u32 {
    7
}

/// A string read by `FromStr`, whose error is the message (enums written as names).
pub fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    String::deserialize(d)?.parse().map_err(de::Error::custom)
}

/// A file under `sql/`: relative, no `..`, ending in `.sql`.
pub fn sql_file<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = String::deserialize(d)?;
    let parts: Vec<&str> = value.split(['/', '\\']).collect();
    let problem = if value.trim().is_empty() {
        Some("must not be empty".to_string())
    } else if value.starts_with(['/', '\\']) || value.get(1..2) == Some(":") {
        Some(format!(
            "{value:?} is an absolute path: give a file name under sql/"
        ))
    } else if parts.contains(&"..") {
        Some(format!(
            "{value:?} must not contain '..': give a file name under sql/"
        ))
    } else if parts.first() == Some(&"sql") && parts.len() > 1 {
        Some(format!(
            "{value:?} is already relative to sql/: write {:?}",
            parts[1..].join("/")
        ))
    } else if !value.ends_with(".sql") || parts.last().is_some_and(|p| *p == ".sql") {
        Some(format!("{value:?} is not a .sql file"))
    } else {
        None
    };
    match problem {
        Some(message) => Err(de::Error::custom(message)),
        None => Ok(value),
    }
}
