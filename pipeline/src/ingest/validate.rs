//! Row-level validation: turns a source batch (any column names, any reasonable types) into
//! typed transaction and label columns, and every row that cannot be used into a precise
//! reason. Validation never fails a file; only the caller decides what to do with the reasons.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime};
use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};

/// The lake columns an input column can map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    TxId,
    TxTs,
    CustomerId,
    TerminalId,
    Amount,
    IsFraud,
    FraudScenario,
    LabeledAt,
}

impl Target {
    pub const ALL: [Target; 8] = [
        Target::TxId,
        Target::TxTs,
        Target::CustomerId,
        Target::TerminalId,
        Target::Amount,
        Target::IsFraud,
        Target::FraudScenario,
        Target::LabeledAt,
    ];

    /// The lake column name.
    pub fn name(self) -> &'static str {
        match self {
            Target::TxId => "tx_id",
            Target::TxTs => "tx_ts",
            Target::CustomerId => "customer_id",
            Target::TerminalId => "terminal_id",
            Target::Amount => "amount",
            Target::IsFraud => "is_fraud",
            Target::FraudScenario => "fraud_scenario",
            Target::LabeledAt => "labeled_at",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Which source column feeds which lake column.
pub type ColumnMap = HashMap<Target, String>;

/// Per-row problems of one batch, kept sparse: most rows are fine.
#[derive(Default)]
struct RowErrors(HashMap<usize, Vec<String>>);

impl RowErrors {
    fn add(&mut self, row: usize, msg: String) {
        self.0.entry(row).or_default().push(msg);
    }
}

/// One validated batch: typed values for every row, `None` where missing, and the reasons of
/// rows that must be rejected.
pub struct ValidatedBatch {
    pub tx_id: Vec<Option<i64>>,
    pub tx_ts_us: Vec<Option<i64>>,
    pub customer_id: Vec<Option<i64>>,
    pub terminal_id: Vec<Option<i64>>,
    pub amount: Vec<Option<f64>>,
    pub is_fraud: Vec<Option<bool>>,
    pub fraud_scenario: Vec<Option<i32>>,
    pub labeled_at_us: Vec<Option<i64>>,
    /// row index -> reason, for rejected rows only.
    pub rejected: HashMap<usize, String>,
}

/// Earliest and latest transaction time accepted: anything else is a data error, not a fraud.
const MIN_TS_US: i64 = 0; // 1970-01-01
const MAX_TS_US: i64 = 4_102_444_800_000_000; // 2100-01-01

/// Validates one batch. `wants_transactions` says whether the transaction columns are
/// required (false for a labels-only file).
pub fn validate_batch(
    batch: &RecordBatch,
    map: &ColumnMap,
    wants_transactions: bool,
) -> Result<ValidatedBatch> {
    let n = batch.num_rows();
    let mut errs = RowErrors::default();
    let col =
        |t: Target| -> Option<&ArrayRef> { map.get(&t).and_then(|c| batch.column_by_name(c)) };

    let tx_id = ints(col(Target::TxId), "tx_id", n, &mut errs)?;
    require(&tx_id, "tx_id", &mut errs);
    let (tx_ts_us, customer_id, terminal_id, amount) = if wants_transactions {
        let ts = timestamps(col(Target::TxTs), "tx_ts", n, &mut errs)?;
        require(&ts, "tx_ts", &mut errs);
        let c = ints(col(Target::CustomerId), "customer_id", n, &mut errs)?;
        require(&c, "customer_id", &mut errs);
        let t = ints(col(Target::TerminalId), "terminal_id", n, &mut errs)?;
        require(&t, "terminal_id", &mut errs);
        let a = amounts(col(Target::Amount), n, &mut errs)?;
        (ts, c, t, a)
    } else {
        (vec![None; n], vec![None; n], vec![None; n], vec![None; n])
    };
    let is_fraud = bools(col(Target::IsFraud), "is_fraud", n, &mut errs)?;
    if !wants_transactions {
        require(&is_fraud, "is_fraud", &mut errs);
    }
    let fraud_scenario = ints(col(Target::FraudScenario), "fraud_scenario", n, &mut errs)?
        .into_iter()
        .enumerate()
        .map(|(row, v)| match v {
            Some(v) if i32::try_from(v).is_err() => {
                errs.add(row, format!("fraud_scenario {v} is out of range"));
                None
            }
            v => v.map(|v| v as i32),
        })
        .collect();
    let labeled_at_us = timestamps(col(Target::LabeledAt), "labeled_at", n, &mut errs)?;

    let rejected = errs
        .0
        .into_iter()
        .map(|(row, msgs)| (row, msgs.join("; ")))
        .collect();
    Ok(ValidatedBatch {
        tx_id,
        tx_ts_us,
        customer_id,
        terminal_id,
        amount,
        is_fraud,
        fraud_scenario,
        labeled_at_us,
        rejected,
    })
}

fn require<T>(values: &[Option<T>], name: &str, errs: &mut RowErrors) {
    for (row, v) in values.iter().enumerate() {
        if v.is_none()
            && !errs
                .0
                .get(&row)
                .is_some_and(|m| m.iter().any(|s| s.starts_with(name)))
        {
            errs.add(row, format!("{name} is missing"));
        }
    }
}

fn is_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Text of any string type, as plain `Utf8`.
fn text_values(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(array, &DataType::Utf8)?)
}

fn ints(
    array: Option<&ArrayRef>,
    name: &str,
    n: usize,
    errs: &mut RowErrors,
) -> Result<Vec<Option<i64>>> {
    let Some(array) = array else {
        return Ok(vec![None; n]);
    };
    let dt = array.data_type();
    let mut out = vec![None; n];
    if dt.is_integer() {
        // Safe cast: u64 values above i64::MAX become null, which we report.
        let cast_arr = cast(array, &DataType::Int64)?;
        let ints = cast_arr.as_primitive::<Int64Type>();
        for (row, slot) in out.iter_mut().enumerate() {
            if ints.is_valid(row) {
                *slot = Some(ints.value(row));
            } else if array.is_valid(row) {
                errs.add(row, format!("{name} is out of the 64-bit integer range"));
            }
        }
    } else if dt.is_floating() {
        let f = cast(array, &DataType::Float64)?;
        let f = f.as_primitive::<Float64Type>();
        for (row, slot) in out.iter_mut().enumerate() {
            if f.is_valid(row) {
                let v = f.value(row);
                if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
                    *slot = Some(v as i64);
                } else {
                    errs.add(row, format!("{name} {v} is not an integer"));
                }
            }
        }
    } else if is_text(dt) {
        let t = text_values(array)?;
        let t = t.as_string::<i32>();
        for (row, slot) in out.iter_mut().enumerate() {
            if t.is_valid(row) {
                let s = t.value(row).trim();
                match s.parse::<i64>() {
                    Ok(v) => *slot = Some(v),
                    Err(_) => errs.add(row, format!("{name} '{}' is not an integer", clip(s))),
                }
            }
        }
    } else if dt != &DataType::Null {
        for row in 0..n {
            if array.is_valid(row) {
                errs.add(row, format!("{name} has type {dt}, expected an integer"));
            }
        }
    }
    Ok(out)
}

fn amounts(array: Option<&ArrayRef>, n: usize, errs: &mut RowErrors) -> Result<Vec<Option<f64>>> {
    let mut out = vec![None; n];
    let Some(array) = array else {
        for row in 0..n {
            errs.add(row, "amount is missing".into());
        }
        return Ok(out);
    };
    let dt = array.data_type();
    fn check(errs: &mut RowErrors, row: usize, v: f64, slot: &mut Option<f64>) {
        if v.is_nan() {
            errs.add(row, "amount is NaN".into());
        } else if v.is_infinite() {
            errs.add(row, format!("amount {v} is infinite"));
        } else if v < 0.0 {
            errs.add(row, format!("amount {v} is negative"));
        } else {
            *slot = Some(v);
        }
    }
    if dt.is_numeric() {
        let f = cast(array, &DataType::Float64)?;
        let f = f.as_primitive::<Float64Type>();
        for (row, slot) in out.iter_mut().enumerate() {
            if f.is_valid(row) {
                check(errs, row, f.value(row), slot);
            } else if array.is_valid(row) {
                errs.add(row, "amount is not a number".into());
            } else {
                errs.add(row, "amount is missing".into());
            }
        }
    } else if is_text(dt) {
        let t = text_values(array)?;
        let t = t.as_string::<i32>();
        for (row, slot) in out.iter_mut().enumerate() {
            if t.is_valid(row) {
                let s = t.value(row).trim();
                match s.parse::<f64>() {
                    Ok(v) => check(errs, row, v, slot),
                    Err(_) => errs.add(row, format!("amount '{}' is not a number", clip(s))),
                }
            } else {
                errs.add(row, "amount is missing".into());
            }
        }
    } else {
        for row in 0..n {
            let msg = if array.is_valid(row) {
                format!("amount has type {dt}, expected a number")
            } else {
                "amount is missing".into()
            };
            errs.add(row, msg);
        }
    }
    Ok(out)
}

/// Parses a timestamp string: RFC 3339 with an offset, or a zone-less form taken as UTC.
pub fn parse_timestamp_us(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f%#z",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    None
}

fn timestamps(
    array: Option<&ArrayRef>,
    name: &str,
    n: usize,
    errs: &mut RowErrors,
) -> Result<Vec<Option<i64>>> {
    let Some(array) = array else {
        return Ok(vec![None; n]);
    };
    let dt = array.data_type();
    let mut out: Vec<Option<i64>> = vec![None; n];
    // Zone-less timestamps are taken as UTC: the raw value is then the UTC instant.
    match dt {
        DataType::Timestamp(unit, _) => {
            for (row, slot) in out.iter_mut().enumerate() {
                if array.is_valid(row) {
                    *slot = Some(match unit {
                        TimeUnit::Second => array
                            .as_primitive::<TimestampSecondType>()
                            .value(row)
                            .saturating_mul(1_000_000),
                        TimeUnit::Millisecond => array
                            .as_primitive::<TimestampMillisecondType>()
                            .value(row)
                            .saturating_mul(1_000),
                        TimeUnit::Microsecond => {
                            array.as_primitive::<TimestampMicrosecondType>().value(row)
                        }
                        TimeUnit::Nanosecond => array
                            .as_primitive::<TimestampNanosecondType>()
                            .value(row)
                            .div_euclid(1_000),
                    });
                }
            }
        }
        dt if is_text(dt) => {
            let t = text_values(array)?;
            let t = t.as_string::<i32>();
            for (row, slot) in out.iter_mut().enumerate() {
                if t.is_valid(row) {
                    let s = t.value(row);
                    match parse_timestamp_us(s) {
                        Some(v) => *slot = Some(v),
                        None => errs.add(
                            row,
                            format!(
                                "{name} '{}' is not a timestamp (expected RFC 3339 or 'YYYY-MM-DD HH:MM:SS', zone-less = UTC)",
                                clip(s)
                            ),
                        ),
                    }
                }
            }
        }
        DataType::Null => {}
        dt => {
            for row in 0..n {
                if array.is_valid(row) {
                    errs.add(row, format!("{name} has type {dt}, expected a timestamp"));
                }
            }
        }
    }
    for (row, slot) in out.iter_mut().enumerate() {
        if let Some(v) = *slot {
            if !(MIN_TS_US..MAX_TS_US).contains(&v) {
                errs.add(row, format!("{name} {} is outside 1970..2100", fmt_ts(v)));
                *slot = None;
            }
        }
    }
    Ok(out)
}

fn fmt_ts(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|d| d.to_rfc3339())
        .unwrap_or_else(|| format!("{us} us"))
}

fn bools(
    array: Option<&ArrayRef>,
    name: &str,
    n: usize,
    errs: &mut RowErrors,
) -> Result<Vec<Option<bool>>> {
    let Some(array) = array else {
        return Ok(vec![None; n]);
    };
    let dt = array.data_type();
    let mut out = vec![None; n];
    if dt == &DataType::Boolean {
        let b = array.as_boolean();
        for (row, slot) in out.iter_mut().enumerate() {
            if b.is_valid(row) {
                *slot = Some(b.value(row));
            }
        }
    } else if dt.is_numeric() {
        let f = cast(array, &DataType::Float64)?;
        let f = f.as_primitive::<Float64Type>();
        for (row, slot) in out.iter_mut().enumerate() {
            if f.is_valid(row) {
                match f.value(row) {
                    0.0 => *slot = Some(false),
                    1.0 => *slot = Some(true),
                    v => errs.add(row, format!("{name} {v} must be 0 or 1")),
                }
            }
        }
    } else if is_text(dt) {
        let t = text_values(array)?;
        let t = t.as_string::<i32>();
        for (row, slot) in out.iter_mut().enumerate() {
            if t.is_valid(row) {
                let s = t.value(row).trim();
                match s.to_ascii_lowercase().as_str() {
                    "1" | "true" | "t" | "yes" => *slot = Some(true),
                    "0" | "false" | "f" | "no" => *slot = Some(false),
                    _ => errs.add(
                        row,
                        format!("{name} '{}' must be 0/1 or true/false", clip(s)),
                    ),
                }
            }
        }
    } else if dt != &DataType::Null {
        for row in 0..n {
            if array.is_valid(row) {
                errs.add(
                    row,
                    format!("{name} has type {dt}, expected a boolean or 0/1"),
                );
            }
        }
    }
    Ok(out)
}

/// Keeps quoted user values short in messages.
fn clip(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Renders row `row` of a source batch as a JSON object of its original values, for the
/// quarantine table: what came in, not what we made of it.
pub fn raw_record(batch: &RecordBatch, row: usize) -> Result<String> {
    let options = FormatOptions::default();
    let mut map = serde_json::Map::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let value = if column.is_null(row) {
            serde_json::Value::Null
        } else {
            let f = ArrayFormatter::try_new(column.as_ref(), &options)?;
            serde_json::Value::String(f.value(row).to_string())
        };
        map.insert(field.name().clone(), value);
    }
    serde_json::to_string(&map).map_err(|e| Error::invalid(format!("cannot render row: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamp_forms() {
        assert_eq!(parse_timestamp_us("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_timestamp_us("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(
            parse_timestamp_us("1970-01-01T01:00:01+01:00"),
            Some(1_000_000)
        );
        assert_eq!(parse_timestamp_us("1970-01-01 00:00:00.5"), Some(500_000));
        assert_eq!(parse_timestamp_us("yesterday"), None);
    }

    #[test]
    fn row_errors_join_all_reasons() {
        let mut e = RowErrors::default();
        e.add(1, "x".into());
        e.add(1, "y".into());
        assert_eq!(e.0[&1].join("; "), "x; y");
        assert!(!e.0.contains_key(&0));
    }
}
