//! The row path: the compiled feature plan evaluated on one transaction's scalar values.
//!
//! Why it exists: per request the engine computes the feature SQL for a single transaction.
//! DataFusion's physical expressions are vectorised: run on one-row Arrow arrays they allocate
//! an array per column per step and dispatch on types per call, which cost more than the
//! arithmetic itself (issue #24's profile). Here the row-level expressions are compiled once
//! into a small tree evaluated on [`Value`]s, and window steps read the same per-entity
//! histories as the Arrow path.
//!
//! Exactness first: only constructs whose DataFusion/Arrow semantics this module reproduces
//! exactly are compiled (columns, literals, arithmetic, comparisons with Arrow's total order
//! on floats, AND/OR/NOT with SQL's three-valued logic, IS [NOT] NULL, IN lists, CASE, CAST
//! between numeric types, COALESCE, NULLIF, `date_part` on UTC timestamps, 'epoch' included).
//! A plan with anything else runs on Arrow (the reference path) as before, and a value this
//! module cannot give exactly at run time (an integer overflow or division by zero, which
//! Arrow wraps or refuses, an out-of-range cast) makes that transaction run on Arrow instead
//! ([`Defer`]).
//! Tests compare the two paths value for value.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike};
use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int16Array, Int32Array, Int64Array, Int8Array,
    RecordBatch, TimestampMicrosecondArray, TimestampNanosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::logical_expr::Operator;
use deltalake::datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, CastExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, Literal,
    NegativeExpr, NotExpr, TryCastExpr,
};
use deltalake::datafusion::physical_expr::ScalarFunctionExpr;
use deltalake::datafusion::physical_plan::PhysicalExpr;
use fraudlake_pipeline::Result;

use crate::compile::{FeaturePlan, Step};

/// One SQL value of a row. Integers of every width are `Int`, timestamps are `Int` in their
/// column's unit; the compiled tree knows each node's type ([`Kind`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Value {
    /// As a model input: NULL is NaN (XGBoost's missing value), booleans are 1 and 0, as
    /// Arrow's cast to Float64 gives them.
    pub fn as_feature(self) -> f64 {
        match self {
            Value::Null => f64::NAN,
            Value::Int(v) => v as f64,
            Value::Float(v) => v,
            Value::Bool(b) => f64::from(u8::from(b)),
        }
    }
}

/// A value this module cannot give exactly: the transaction is computed on Arrow instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defer;

type Eval = std::result::Result<Value, Defer>;

/// The type of a node's values, as far as the semantics differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    /// Signed integer of this many bits.
    Int(u8),
    Float,
    Bool,
    /// UTC (or zone-less) timestamp in this unit.
    Ts(TimeUnit),
}

impl Kind {
    fn of(dt: &DataType) -> Option<Kind> {
        Some(match dt {
            DataType::Null => Kind::Null,
            DataType::Int8 => Kind::Int(8),
            DataType::Int16 => Kind::Int(16),
            DataType::Int32 => Kind::Int(32),
            DataType::Int64 => Kind::Int(64),
            DataType::Float64 => Kind::Float,
            DataType::Boolean => Kind::Bool,
            DataType::Timestamp(unit @ (TimeUnit::Microsecond | TimeUnit::Nanosecond), tz)
                if tz.as_deref().is_none_or(is_utc) =>
            {
                Kind::Ts(*unit)
            }
            _ => return None,
        })
    }
}

fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "utc" | "+00:00" | "Z" | "Etc/UTC")
}

/// Whether `v` fits a signed integer of `bits` bits.
fn fits(v: i64, bits: u8) -> bool {
    bits >= 64 || (v >= -(1i64 << (bits - 1)) && v < (1i64 << (bits - 1)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    /// IS DISTINCT FROM / IS NOT DISTINCT FROM: NULL is a value.
    Distinct,
    NotDistinct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Year,
    Quarter,
    Month,
    Day,
    Hour,
    Minute,
    DayOfWeek,
    IsoDayOfWeek,
    DayOfYear,
    /// Seconds since 1970 as a DOUBLE (the only part that is not an Int32).
    Epoch,
}

impl Part {
    fn parse(s: &str) -> Option<Part> {
        Some(match s.to_ascii_lowercase().as_str() {
            "year" => Part::Year,
            "quarter" | "qtr" => Part::Quarter,
            "month" => Part::Month,
            "day" => Part::Day,
            "hour" => Part::Hour,
            "minute" => Part::Minute,
            "dow" => Part::DayOfWeek,
            "isodow" => Part::IsoDayOfWeek,
            "doy" => Part::DayOfYear,
            "epoch" => Part::Epoch,
            _ => return None,
        })
    }
}

/// A compiled row-level expression.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Column(usize),
    Literal(Value),
    Arith {
        op: Arith,
        left: Box<Node>,
        right: Box<Node>,
        kind: Kind,
    },
    Cmp {
        op: Cmp,
        left: Box<Node>,
        right: Box<Node>,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Negative(Box<Node>),
    IsNull(Box<Node>),
    IsNotNull(Box<Node>),
    /// CAST and TRY_CAST: they differ only on values that do not fit, which are deferred.
    Cast {
        expr: Box<Node>,
        from: Kind,
        to: Kind,
    },
    Case {
        base: Option<Box<Node>>,
        arms: Vec<(Node, Node)>,
        otherwise: Option<Box<Node>>,
    },
    InList {
        expr: Box<Node>,
        list: Vec<Node>,
        negated: bool,
    },
    Coalesce(Vec<Node>),
    NullIf(Box<Node>, Box<Node>),
    DatePart {
        part: Part,
        expr: Box<Node>,
        unit: TimeUnit,
    },
}

fn literal(v: &ScalarValue) -> Option<Value> {
    Some(match v {
        ScalarValue::Null => Value::Null,
        ScalarValue::Boolean(b) => b.map_or(Value::Null, Value::Bool),
        ScalarValue::Int8(v) => v.map_or(Value::Null, |v| Value::Int(v.into())),
        ScalarValue::Int16(v) => v.map_or(Value::Null, |v| Value::Int(v.into())),
        ScalarValue::Int32(v) => v.map_or(Value::Null, |v| Value::Int(v.into())),
        ScalarValue::Int64(v) => v.map_or(Value::Null, Value::Int),
        ScalarValue::Float64(v) => v.map_or(Value::Null, Value::Float),
        ScalarValue::TimestampMicrosecond(v, _) | ScalarValue::TimestampNanosecond(v, _) => {
            v.map_or(Value::Null, Value::Int)
        }
        _ => return None,
    })
}

/// Compiles `expr` over rows of `schema`, with its kind; `None` when any part of it is a
/// construct this module does not reproduce exactly.
fn compile(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<(Node, Kind)> {
    let kind = Kind::of(&expr.data_type(schema).ok()?)?;
    let sub = |e: &Arc<dyn PhysicalExpr>| compile(e, schema);
    let node = if let Some(c) = expr.downcast_ref::<Column>() {
        Kind::of(schema.fields().get(c.index())?.data_type())?;
        Node::Column(c.index())
    } else if let Some(l) = expr.downcast_ref::<Literal>() {
        Node::Literal(literal(l.value())?)
    } else if let Some(b) = expr.downcast_ref::<BinaryExpr>() {
        let (left, lk) = sub(b.left())?;
        let (right, rk) = sub(b.right())?;
        // DataFusion coerces both sides to one type; anything else is not ours to guess.
        let same = lk == rk || lk == Kind::Null || rk == Kind::Null;
        let arith = |op| -> Option<Node> {
            (same && matches!(kind, Kind::Int(_) | Kind::Float) && lk == kind && rk == kind).then(
                || Node::Arith {
                    op,
                    left: Box::new(left.clone()),
                    right: Box::new(right.clone()),
                    kind,
                },
            )
        };
        let cmp = |op| -> Option<Node> {
            same.then(|| Node::Cmp {
                op,
                left: Box::new(left.clone()),
                right: Box::new(right.clone()),
            })
        };
        match b.op() {
            Operator::Plus => arith(Arith::Add)?,
            Operator::Minus => arith(Arith::Sub)?,
            Operator::Multiply => arith(Arith::Mul)?,
            Operator::Divide => arith(Arith::Div)?,
            Operator::Modulo => arith(Arith::Rem)?,
            Operator::Eq => cmp(Cmp::Eq)?,
            Operator::NotEq => cmp(Cmp::NotEq)?,
            Operator::Lt => cmp(Cmp::Lt)?,
            Operator::LtEq => cmp(Cmp::LtEq)?,
            Operator::Gt => cmp(Cmp::Gt)?,
            Operator::GtEq => cmp(Cmp::GtEq)?,
            Operator::IsDistinctFrom => cmp(Cmp::Distinct)?,
            Operator::IsNotDistinctFrom => cmp(Cmp::NotDistinct)?,
            Operator::And if kind == Kind::Bool => Node::And(Box::new(left), Box::new(right)),
            Operator::Or if kind == Kind::Bool => Node::Or(Box::new(left), Box::new(right)),
            _ => return None,
        }
    } else if let Some(n) = expr.downcast_ref::<NotExpr>() {
        let (e, k) = sub(n.arg())?;
        (k == Kind::Bool || k == Kind::Null).then_some(())?;
        Node::Not(Box::new(e))
    } else if let Some(n) = expr.downcast_ref::<NegativeExpr>() {
        let (e, k) = sub(n.arg())?;
        matches!(k, Kind::Int(_) | Kind::Float).then_some(())?;
        (k == kind).then_some(())?;
        Node::Negative(Box::new(e))
    } else if let Some(n) = expr.downcast_ref::<IsNullExpr>() {
        Node::IsNull(Box::new(sub(n.arg())?.0))
    } else if let Some(n) = expr.downcast_ref::<IsNotNullExpr>() {
        Node::IsNotNull(Box::new(sub(n.arg())?.0))
    } else if let Some(inner) = expr
        .downcast_ref::<CastExpr>()
        .map(CastExpr::expr)
        .or_else(|| expr.downcast_ref::<TryCastExpr>().map(TryCastExpr::expr))
    {
        let (e, from) = sub(inner)?;
        cast_supported(from, kind).then_some(())?;
        Node::Cast {
            expr: Box::new(e),
            from,
            to: kind,
        }
    } else if let Some(c) = expr.downcast_ref::<CaseExpr>() {
        let base = match c.expr() {
            Some(e) => Some(Box::new(sub(e)?.0)),
            None => None,
        };
        // Every branch already has the CASE's type (DataFusion coerces them): checked.
        let branch = |e: &Arc<dyn PhysicalExpr>| {
            let (n, k) = sub(e)?;
            (k == kind || k == Kind::Null).then_some(n)
        };
        let arms = c
            .when_then_expr()
            .iter()
            .map(|(w, t)| Some((sub(w)?.0, branch(t)?)))
            .collect::<Option<Vec<_>>>()?;
        let otherwise = match c.else_expr() {
            Some(e) => Some(Box::new(branch(e)?)),
            None => None,
        };
        Node::Case {
            base,
            arms,
            otherwise,
        }
    } else if let Some(i) = expr.downcast_ref::<InListExpr>() {
        let (e, ek) = sub(i.expr())?;
        let list = i
            .list()
            .iter()
            .map(|x| {
                let (n, k) = sub(x)?;
                (k == ek || k == Kind::Null).then_some(n)
            })
            .collect::<Option<Vec<_>>>()?;
        Node::InList {
            expr: Box::new(e),
            list,
            negated: i.negated(),
        }
    } else if let Some(f) = expr.downcast_ref::<ScalarFunctionExpr>() {
        function(f, schema, kind)?
    } else {
        return None;
    };
    Some((node, kind))
}

fn cast_supported(from: Kind, to: Kind) -> bool {
    match (from, to) {
        (Kind::Null, _) => true,
        (a, b) if a == b => true,
        (Kind::Int(_) | Kind::Float | Kind::Bool, Kind::Int(_) | Kind::Float | Kind::Bool) => true,
        // Widening a timestamp's unit is a multiplication (checked); narrowing rounds, which
        // is left to Arrow.
        (Kind::Ts(TimeUnit::Microsecond), Kind::Ts(TimeUnit::Nanosecond)) => true,
        (Kind::Ts(_), Kind::Int(64)) | (Kind::Int(64), Kind::Ts(_)) => true,
        _ => false,
    }
}

fn function(f: &ScalarFunctionExpr, schema: &Schema, kind: Kind) -> Option<Node> {
    let args = f.args();
    match f.name() {
        "coalesce" => Some(Node::Coalesce(
            args.iter()
                .map(|a| {
                    let (n, k) = compile(a, schema)?;
                    (k == kind || k == Kind::Null).then_some(n)
                })
                .collect::<Option<Vec<_>>>()?,
        )),
        "nullif" if args.len() == 2 => {
            let (a, ak) = compile(&args[0], schema)?;
            let (b, bk) = compile(&args[1], schema)?;
            (ak == bk && ak == kind).then(|| Node::NullIf(Box::new(a), Box::new(b)))
        }
        "date_part" | "datepart" if args.len() == 2 => {
            let part = args[0]
                .downcast_ref::<Literal>()
                .and_then(|l| l.value().try_as_str().flatten().and_then(Part::parse))?;
            let (e, k) = compile(&args[1], schema)?;
            let Kind::Ts(unit) = k else { return None };
            let want = if part == Part::Epoch {
                Kind::Float
            } else {
                Kind::Int(32)
            };
            (kind == want).then(|| Node::DatePart {
                part,
                expr: Box::new(e),
                unit,
            })
        }
        _ => None,
    }
}

fn truthy(v: Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// Arrow's comparison of two non-null values of one kind (floats by IEEE total order).
fn compare(a: Value, b: Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(&y)),
        (Value::Float(x), Value::Float(y)) => Some(x.total_cmp(&y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(&y)),
        _ => None,
    }
}

impl Node {
    fn eval(&self, row: &[Value]) -> Eval {
        use std::cmp::Ordering;
        Ok(match self {
            Node::Column(i) => *row.get(*i).ok_or(Defer)?,
            Node::Literal(v) => *v,
            Node::Arith {
                op,
                left,
                right,
                kind,
            } => {
                let (a, b) = (left.eval(row)?, right.eval(row)?);
                match (a, b) {
                    (Value::Null, _) | (_, Value::Null) => Value::Null,
                    (Value::Int(x), Value::Int(y)) => {
                        let Kind::Int(bits) = kind else {
                            return Err(Defer);
                        };
                        // Overflow and division by zero: Arrow wraps or fails; it decides.
                        let v = match op {
                            Arith::Add => x.checked_add(y),
                            Arith::Sub => x.checked_sub(y),
                            Arith::Mul => x.checked_mul(y),
                            Arith::Div => x.checked_div(y),
                            Arith::Rem => x.checked_rem(y),
                        }
                        .filter(|v| fits(*v, *bits))
                        .ok_or(Defer)?;
                        Value::Int(v)
                    }
                    (Value::Float(x), Value::Float(y)) => Value::Float(match op {
                        Arith::Add => x + y,
                        Arith::Sub => x - y,
                        Arith::Mul => x * y,
                        Arith::Div => x / y,
                        Arith::Rem => x % y,
                    }),
                    _ => return Err(Defer),
                }
            }
            Node::Cmp { op, left, right } => {
                let (a, b) = (left.eval(row)?, right.eval(row)?);
                let o = match (a, b) {
                    (Value::Null, Value::Null) => None,
                    (Value::Null, _) | (_, Value::Null) => Some(None),
                    _ => Some(Some(compare(a, b).ok_or(Defer)?)),
                };
                match (op, o) {
                    // IS [NOT] DISTINCT FROM: NULL is a value like any other.
                    (Cmp::Distinct, o) => Value::Bool(matches!(
                        o,
                        Some(None | Some(Ordering::Less | Ordering::Greater))
                    )),
                    (Cmp::NotDistinct, o) => {
                        Value::Bool(matches!(o, None | Some(Some(Ordering::Equal))))
                    }
                    (_, None | Some(None)) => Value::Null,
                    (Cmp::Eq, Some(Some(o))) => Value::Bool(o == Ordering::Equal),
                    (Cmp::NotEq, Some(Some(o))) => Value::Bool(o != Ordering::Equal),
                    (Cmp::Lt, Some(Some(o))) => Value::Bool(o == Ordering::Less),
                    (Cmp::LtEq, Some(Some(o))) => Value::Bool(o != Ordering::Greater),
                    (Cmp::Gt, Some(Some(o))) => Value::Bool(o == Ordering::Greater),
                    (Cmp::GtEq, Some(Some(o))) => Value::Bool(o != Ordering::Less),
                }
            }
            Node::And(l, r) => match (l.eval(row)?, r.eval(row)?) {
                (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
                (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                _ => Value::Null,
            },
            Node::Or(l, r) => match (l.eval(row)?, r.eval(row)?) {
                (Value::Bool(true), _) | (_, Value::Bool(true)) => Value::Bool(true),
                (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
                _ => Value::Null,
            },
            Node::Not(e) => match e.eval(row)? {
                Value::Bool(b) => Value::Bool(!b),
                Value::Null => Value::Null,
                _ => return Err(Defer),
            },
            Node::Negative(e) => match e.eval(row)? {
                Value::Int(v) => Value::Int(v.checked_neg().ok_or(Defer)?),
                Value::Float(v) => Value::Float(-v),
                Value::Null => Value::Null,
                Value::Bool(_) => return Err(Defer),
            },
            Node::IsNull(e) => Value::Bool(e.eval(row)? == Value::Null),
            Node::IsNotNull(e) => Value::Bool(e.eval(row)? != Value::Null),
            Node::Cast { expr, from, to } => cast(expr.eval(row)?, *from, *to)?,
            Node::Case {
                base,
                arms,
                otherwise,
            } => {
                let base = match base {
                    Some(b) => Some(b.eval(row)?),
                    None => None,
                };
                for (when, then) in arms {
                    let w = when.eval(row)?;
                    let hit = match base {
                        // CASE x WHEN v: x = v, and NULL matches nothing.
                        Some(b) => {
                            b != Value::Null
                                && w != Value::Null
                                && compare(b, w).ok_or(Defer)? == Ordering::Equal
                        }
                        None => truthy(w),
                    };
                    if hit {
                        return then.eval(row);
                    }
                }
                match otherwise {
                    Some(e) => e.eval(row)?,
                    None => Value::Null,
                }
            }
            Node::InList {
                expr,
                list,
                negated,
            } => {
                let v = expr.eval(row)?;
                if v == Value::Null {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                let mut found = false;
                for item in list {
                    match item.eval(row)? {
                        Value::Null => saw_null = true,
                        x if compare(v, x).ok_or(Defer)? == Ordering::Equal => {
                            found = true;
                            break;
                        }
                        _ => {}
                    }
                }
                if found {
                    Value::Bool(!negated)
                } else if saw_null {
                    Value::Null
                } else {
                    Value::Bool(*negated)
                }
            }
            Node::Coalesce(args) => {
                for a in args {
                    let v = a.eval(row)?;
                    if v != Value::Null {
                        return Ok(v);
                    }
                }
                Value::Null
            }
            Node::NullIf(a, b) => {
                let (x, y) = (a.eval(row)?, b.eval(row)?);
                if x != Value::Null
                    && y != Value::Null
                    && compare(x, y).ok_or(Defer)? == Ordering::Equal
                {
                    Value::Null
                } else {
                    x
                }
            }
            Node::DatePart { part, expr, unit } => match expr.eval(row)? {
                Value::Null => Value::Null,
                Value::Int(t) if *part == Part::Epoch => {
                    Value::Float(epoch(t, *unit).ok_or(Defer)?)
                }
                Value::Int(t) => Value::Int(date_part(*part, t, *unit).ok_or(Defer)?),
                _ => return Err(Defer),
            },
        })
    }
}

/// Arrow's cast (`safe: false`) of one value; what it would refuse or round differently
/// from here is deferred.
fn cast(v: Value, from: Kind, to: Kind) -> Eval {
    if v == Value::Null {
        return Ok(Value::Null);
    }
    if from == to {
        return Ok(v);
    }
    Ok(match (v, to) {
        (Value::Int(x), Kind::Int(bits)) if fits(x, bits) => Value::Int(x),
        (Value::Int(_), Kind::Int(_)) => return Err(Defer),
        (Value::Int(x), Kind::Float) => Value::Float(x as f64),
        (Value::Int(x), Kind::Bool) => Value::Bool(x != 0),
        (Value::Float(x), Kind::Int(bits)) => {
            let t = x.trunc();
            let limit = 2f64.powi(i32::from(bits) - 1);
            if t.is_finite() && t >= -limit && t < limit {
                Value::Int(t as i64)
            } else {
                return Err(Defer);
            }
        }
        (Value::Float(x), Kind::Bool) => Value::Bool(x != 0.0),
        (Value::Bool(b), Kind::Int(_)) => Value::Int(i64::from(b)),
        (Value::Bool(b), Kind::Float) => Value::Float(f64::from(u8::from(b))),
        (Value::Int(x), Kind::Ts(TimeUnit::Nanosecond))
            if from == Kind::Ts(TimeUnit::Microsecond) =>
        {
            Value::Int(x.checked_mul(1_000).ok_or(Defer)?)
        }
        (Value::Int(x), Kind::Ts(_)) => Value::Int(x),
        _ => return Err(Defer),
    })
}

/// `date_part('epoch', t)`: DataFusion's formula, the count of units over units per second.
fn epoch(t: i64, unit: TimeUnit) -> Option<f64> {
    match unit {
        TimeUnit::Microsecond => Some(t as f64 / 1_000_000_f64),
        TimeUnit::Nanosecond => Some(t as f64 / 1_000_000_000_f64),
        _ => None,
    }
}

fn date_part(part: Part, t: i64, unit: TimeUnit) -> Option<i64> {
    let dt = match unit {
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(t)?,
        TimeUnit::Nanosecond => DateTime::from_timestamp_nanos(t),
        _ => return None,
    };
    Some(i64::from(match part {
        Part::Year => dt.year(),
        Part::Quarter => (dt.month0() / 3 + 1) as i32,
        Part::Month => dt.month() as i32,
        Part::Day => dt.day() as i32,
        Part::Hour => dt.hour() as i32,
        Part::Minute => dt.minute() as i32,
        Part::DayOfWeek => dt.weekday().num_days_from_sunday() as i32,
        Part::IsoDayOfWeek => dt.weekday().number_from_monday() as i32,
        Part::DayOfYear => dt.ordinal() as i32,
        Part::Epoch => return None,
    }))
}

/// One step of the plan on the row path.
#[derive(Debug, Clone)]
pub(crate) enum RowStep {
    Project(Vec<Node>),
    Window {
        /// Per window: its argument (`None` for COUNT(*)).
        args: Vec<Option<Node>>,
        /// Index of the order column, and whether it holds microseconds (else nanoseconds).
        order_index: usize,
        order_micros: bool,
    },
}

/// The whole plan on the row path, when every step compiles.
#[derive(Debug, Clone)]
pub struct RowProgram {
    pub(crate) steps: Vec<RowStep>,
    /// Kind of each input column (the view's), to build a row from a transaction.
    pub(crate) input: Vec<InputColumn>,
    output: SchemaRef,
}

/// Which field of a transaction an input column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputColumn {
    TxId,
    CustomerId,
    TerminalId,
    Amount,
    IsFraud,
    TxTsMicros,
    EventTimeNanos,
}

impl RowProgram {
    /// Compiles `plan` for the row path; `None` (the Arrow path serves it) when any step uses
    /// a construct the row path does not reproduce exactly.
    pub fn compile(plan: &FeaturePlan) -> Option<RowProgram> {
        let input = plan
            .input_schema
            .fields()
            .iter()
            .map(|f| {
                let col = match f.name().as_str() {
                    "tx_id" => InputColumn::TxId,
                    "customer_id" => InputColumn::CustomerId,
                    "terminal_id" => InputColumn::TerminalId,
                    "amount" => InputColumn::Amount,
                    "is_fraud" => InputColumn::IsFraud,
                    "tx_ts" => InputColumn::TxTsMicros,
                    "event_time" => InputColumn::EventTimeNanos,
                    _ => return None,
                };
                let expected = match col {
                    InputColumn::Amount => Kind::Float,
                    InputColumn::TxTsMicros => Kind::Ts(TimeUnit::Microsecond),
                    InputColumn::EventTimeNanos => Kind::Ts(TimeUnit::Nanosecond),
                    _ => Kind::Int(64),
                };
                (Kind::of(f.data_type()) == Some(expected)).then_some(col)
            })
            .collect::<Option<Vec<_>>>()?;
        let mut schema: SchemaRef = plan.input_schema.clone();
        let mut steps = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            match step {
                Step::Project { exprs, schema: out } => {
                    let nodes = exprs
                        .iter()
                        .zip(out.fields())
                        .map(|(e, f)| {
                            let (n, k) = compile(e, &schema)?;
                            (Kind::of(f.data_type()) == Some(k)).then_some(n)
                        })
                        .collect::<Option<Vec<_>>>()?;
                    steps.push(RowStep::Project(nodes));
                    schema = out.clone();
                }
                Step::Window {
                    windows,
                    order_index,
                    schema: out,
                    ..
                } => {
                    let order_micros = match Kind::of(schema.field(*order_index).data_type())? {
                        Kind::Ts(TimeUnit::Nanosecond) => false,
                        Kind::Ts(TimeUnit::Microsecond) => true,
                        _ => return None,
                    };
                    let mut args = Vec::with_capacity(windows.len());
                    for w in windows {
                        // Entity keys are read as integers, as the Arrow path casts them.
                        for &p in &w.partition_indexes {
                            matches!(Kind::of(schema.field(p).data_type())?, Kind::Int(_))
                                .then_some(())?;
                        }
                        // A timestamp aggregate (MIN/MAX of tx_ts) is an `Int` of microseconds,
                        // as the Arrow path casts the stored value back.
                        match &w.output_type {
                            DataType::Int64 | DataType::Float64 => {}
                            dt @ DataType::Timestamp(TimeUnit::Microsecond, _) => {
                                Kind::of(dt)?;
                            }
                            _ => return None,
                        }
                        args.push(match &w.arg {
                            None => None,
                            Some(e) => {
                                let (n, k) = compile(e, &schema)?;
                                // A timestamp argument is stored as its count of microseconds
                                // (`Value::as_feature`), as Arrow's cast to Float64 gives it.
                                matches!(
                                    k,
                                    Kind::Int(_)
                                        | Kind::Float
                                        | Kind::Bool
                                        | Kind::Null
                                        | Kind::Ts(TimeUnit::Microsecond)
                                )
                                .then_some(())?;
                                Some(n)
                            }
                        });
                    }
                    steps.push(RowStep::Window {
                        args,
                        order_index: *order_index,
                        order_micros,
                    });
                    schema = out.clone();
                }
            }
        }
        // Every output column must be buildable as an array (score_and_apply's batch).
        for f in plan.output_schema.fields() {
            Kind::of(f.data_type())?;
        }
        for &i in &plan.feature_indexes {
            if matches!(
                Kind::of(plan.output_schema.field(i).data_type()),
                Some(Kind::Ts(_))
            ) {
                return None;
            }
        }
        Some(RowProgram {
            steps,
            input,
            output: plan.output_schema.clone(),
        })
    }

    /// Builds the output batch of the feature SQL from rows the row path computed.
    pub fn to_batch(&self, rows: &[Vec<Value>]) -> Result<RecordBatch> {
        let columns = self
            .output
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| column(f.data_type(), rows.iter().map(|r| r[i])))
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(self.output.clone(), columns)?)
    }
}

/// Evaluates one project step's expressions on `row` into `out`.
pub(crate) fn project(nodes: &[Node], row: &[Value], out: &mut Vec<Value>) -> Result<(), Defer> {
    out.clear();
    for n in nodes {
        out.push(n.eval(row)?);
    }
    Ok(())
}

/// A window's argument on `row`, as the stored f64 (NULL is `None`); COUNT(*) counts 1.
pub(crate) fn window_arg(
    arg: &Option<Node>,
    row: &[Value],
) -> std::result::Result<Option<f64>, Defer> {
    let Some(node) = arg else {
        return Ok(Some(1.0));
    };
    Ok(match node.eval(row)? {
        Value::Null => None,
        v => Some(v.as_feature()),
    })
}

fn int(v: Value) -> Option<i64> {
    match v {
        Value::Int(x) => Some(x),
        _ => None,
    }
}

fn column(dt: &DataType, values: impl Iterator<Item = Value>) -> Result<ArrayRef> {
    let wrong = || fraudlake_pipeline::Error::invalid(format!("the row path has no {dt} column"));
    let array: ArrayRef = match dt {
        DataType::Int8 => Arc::new(
            values
                .map(|v| int(v).map(|x| x as i8))
                .collect::<Int8Array>(),
        ),
        DataType::Int16 => Arc::new(
            values
                .map(|v| int(v).map(|x| x as i16))
                .collect::<Int16Array>(),
        ),
        DataType::Int32 => Arc::new(
            values
                .map(|v| int(v).map(|x| x as i32))
                .collect::<Int32Array>(),
        ),
        DataType::Int64 => Arc::new(values.map(int).collect::<Int64Array>()),
        DataType::Float64 => Arc::new(
            values
                .map(|v| match v {
                    Value::Float(x) => Some(x),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        DataType::Boolean => Arc::new(
            values
                .map(|v| match v {
                    Value::Bool(b) => Some(b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => Arc::new(
            values
                .map(int)
                .collect::<TimestampMicrosecondArray>()
                .with_timezone_opt(tz.clone()),
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => Arc::new(
            values
                .map(int)
                .collect::<TimestampNanosecondArray>()
                .with_timezone_opt(tz.clone()),
        ),
        DataType::Null => Arc::new(deltalake::arrow::array::NullArray::new(values.count())),
        _ => return Err(wrong()),
    };
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::engine::{OnlineEngine, RowPath, Transaction};
    use crate::{compile as compile_plan, FeatureSet};

    const T0_US: i64 = 1_522_540_800_000_000; // 2018-04-01T00:00:00Z, a Sunday

    async fn plan(sql: &str) -> Arc<FeaturePlan> {
        let fs = FeatureSet::from_sql(std::path::Path::new("test.sql"), sql.to_string()).unwrap();
        Arc::new(compile_plan(&fs).await.unwrap())
    }

    /// Traffic with awkward values: amounts on the NULLIF boundary and zero, hours all
    /// round the clock, a year boundary, repeated timestamps (same-time ties), ids near
    /// the integer limits.
    fn traffic(n: i64) -> Vec<Transaction> {
        (0..n)
            .map(|i| Transaction {
                tx_id: i,
                tx_ts_us: T0_US
                    + (i / 3) * 3_517_000_000
                    + if i % 97 == 0 { 273 * 86_400_000_000 } else { 0 },
                customer_id: match i % 11 {
                    0 => i64::MAX - (i % 3),
                    1 => -(i % 5),
                    _ => i % 13,
                },
                terminal_id: (i * 7) % 17,
                amount: match i % 9 {
                    0 => 0.0,
                    1 => 50.0,
                    2 => -3.25,
                    3 => 1e300,
                    _ => (i % 211) as f64 * 1.37,
                },
            })
            .collect()
    }

    /// Both paths over the same traffic, every output column compared exactly.
    async fn same_on_both_paths(sql: &str) {
        let plan = plan(sql).await;
        let mut rows = OnlineEngine::new(plan.clone());
        rows.set_row_path(RowPath::Always);
        assert!(rows.row_path(), "the row path should compile:\n{sql}");
        let mut arrow = OnlineEngine::new(plan.clone());
        arrow.set_row_path(RowPath::Never);
        assert!(!arrow.row_path());
        let txs = traffic(3_000);
        // Batches of several sizes: transactions of one batch see the ones before them.
        let mut at = 0;
        for (k, size) in [1usize, 7, 1, 64, 3, 500].iter().cycle().enumerate() {
            if at >= txs.len() {
                break;
            }
            let chunk = &txs[at..(at + size).min(txs.len())];
            at += size;
            let a = rows.score_and_apply(chunk);
            let b = arrow.score_and_apply(chunk);
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.schema(), b.schema());
                    assert_eq!(
                        format!("{:?}", a.columns()),
                        format!("{:?}", b.columns()),
                        "batch {k} differs"
                    );
                    let fa = rows.score_rows(&[]).unwrap();
                    assert!(fa.is_empty());
                }
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("batch {k}: row path {a:?}, arrow {b:?}"),
            }
        }
        // Labels change stored arguments the same way on both.
        for id in (0..3_000).step_by(5) {
            assert_eq!(
                rows.apply_label(id, id % 2 == 0).unwrap(),
                arrow.apply_label(id, id % 2 == 0).unwrap()
            );
        }
        let probe = Transaction {
            tx_id: 10_000_001,
            tx_ts_us: T0_US + 4_000 * 3_517_000_000 / 3,
            customer_id: 4,
            terminal_id: 9,
            amount: 50.0,
        };
        let (a, b) = (
            rows.features_for(&probe).unwrap(),
            arrow.features_for(&probe).unwrap(),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let (a, b) = (
            rows.score_rows(&[probe]).unwrap(),
            feature_rows_of(&mut arrow, probe),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    fn feature_rows_of(engine: &mut OnlineEngine, tx: Transaction) -> Vec<Vec<f64>> {
        let plan = engine.plan().clone();
        crate::online::engine::feature_rows(&plan, &engine.score_and_apply(&[tx]).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn the_shipped_feature_sql_runs_on_the_row_path_and_agrees_with_arrow() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/features.sql");
        let sql = std::fs::read_to_string(path).unwrap();
        same_on_both_paths(&sql).await;
    }

    #[tokio::test]
    async fn the_v2_feature_sql_runs_on_the_row_path_and_agrees_with_arrow() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/features_v2.sql");
        let sql = std::fs::read_to_string(path).unwrap();
        same_on_both_paths(&sql).await;
    }

    #[tokio::test]
    async fn every_compiled_construct_agrees_with_arrow() {
        same_on_both_paths(
            "SELECT tx_id, tx_ts, customer_id, terminal_id,
               amount * 2 + 1 AS arith,
               amount / NULLIF(amount - 50, 0) AS nullif_div,
               amount / (amount - amount) AS float_div_zero,
               amount % 7.5 AS float_rem,
               terminal_id / 3 AS int_div,
               terminal_id % 4 AS int_rem,
               customer_id - terminal_id AS int_sub,
               customer_id * 3 AS int_mul_overflowing,
               -amount AS neg,
               CASE customer_id % 3 WHEN 0 THEN 1.5 WHEN 1 THEN NULL ELSE -amount END AS case_base,
               CASE WHEN amount > 100 THEN 2 WHEN amount IS NULL THEN 3 END AS case_no_else,
               CASE WHEN date_part('hour', tx_ts) BETWEEN 8 AND 17 THEN 1 ELSE 0 END AS day_hours,
               date_part('dow', tx_ts) AS dow,
               date_part('isodow', tx_ts) AS isodow,
               date_part('day', tx_ts) AS dom,
               date_part('month', tx_ts) AS month,
               date_part('quarter', tx_ts) AS quarter,
               date_part('year', tx_ts) AS year,
               date_part('doy', tx_ts) AS doy,
               date_part('minute', tx_ts) AS minute,
               customer_id IN (1, 2, NULL) AS in_with_null,
               terminal_id NOT IN (3, 5) AS not_in,
               NOT (amount < 10) AS not_lt,
               (amount > 10 OR terminal_id IS NULL) AND customer_id IS NOT NULL AS logic,
               amount IS DISTINCT FROM 50 AS distinct_from,
               CAST(customer_id AS DOUBLE) * 1.5 AS int_to_float,
               CAST(terminal_id * 1.5 AS INT) AS float_to_int,
               TRY_CAST(terminal_id AS SMALLINT) AS narrow,
               CAST(amount > 3 AS INT) AS bool_to_int,
               COALESCE(AVG(amount) OVER (PARTITION BY customer_id ORDER BY event_time
                 RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW), -1) AS avg_1d,
               amount / NULLIF(AVG(amount) OVER (PARTITION BY customer_id ORDER BY event_time
                 RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW), 0) AS vs_avg_7d,
               MIN(amount) OVER (PARTITION BY terminal_id ORDER BY event_time
                 RANGE BETWEEN INTERVAL '2 days' PRECEDING AND INTERVAL '1 day' PRECEDING) AS min_t,
               MAX(amount) OVER (PARTITION BY terminal_id ORDER BY event_time
                 RANGE BETWEEN INTERVAL '2 days' PRECEDING AND CURRENT ROW) AS max_t,
               SUM(is_fraud) OVER (PARTITION BY terminal_id ORDER BY event_time
                 RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '7 days' PRECEDING) AS frauds,
               COUNT(*) OVER (PARTITION BY terminal_id ORDER BY event_time
                 RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW) AS n_t
             FROM tx_labeled",
        )
        .await;
    }

    /// Expressions over window results (ratios of two counts, CASE and COALESCE over
    /// aggregates, windows of two entities in one expression) compile on the row path and
    /// agree with Arrow.
    #[tokio::test]
    async fn expressions_over_window_results_agree_with_arrow() {
        let c1 = "PARTITION BY customer_id ORDER BY event_time \
                  RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW";
        let c30 = "PARTITION BY customer_id ORDER BY event_time \
                   RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW";
        same_on_both_paths(&format!(
            "SELECT tx_id, tx_ts, customer_id, terminal_id,
               COUNT(*) OVER ({c1}) / NULLIF(COUNT(*) OVER ({c30}), 0) AS velocity_int,
               CAST(COUNT(*) OVER ({c1}) AS DOUBLE) / NULLIF(COUNT(*) OVER ({c30}), 0) AS velocity,
               CASE WHEN amount > 2 * AVG(amount) OVER ({c30}) THEN 1
                    WHEN COUNT(*) OVER ({c1}) > 2 THEN 2 ELSE 0 END AS unusual,
               COALESCE(SUM(amount) OVER (PARTITION BY terminal_id ORDER BY event_time
                 RANGE BETWEEN INTERVAL '2 days' PRECEDING AND INTERVAL '1 day' PRECEDING)
                 / COUNT(*) OVER ({c1}), -1) AS mixed
             FROM tx_labeled"
        ))
        .await;
    }

    /// MIN, MAX and STDDEV over frames that hold the row or end before it, and MIN/MAX of a
    /// timestamp (tx_ts, turned into microseconds: a timestamp feature keeps a plan on Arrow),
    /// on the row path and on Arrow: the same values.
    #[tokio::test]
    async fn min_max_stddev_and_timestamp_extremes_agree_with_arrow() {
        let c7 = "PARTITION BY customer_id ORDER BY event_time \
                  RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW";
        let t_prev = "PARTITION BY terminal_id ORDER BY event_time \
                      RANGE BETWEEN INTERVAL '3 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING";
        same_on_both_paths(&format!(
            "SELECT tx_id, tx_ts, customer_id, terminal_id,
               STDDEV(amount) OVER ({c7}) AS std_c,
               STDDEV(amount) OVER ({t_prev}) AS std_t,
               MIN(amount) OVER ({c7}) AS min_c,
               CAST(MIN(tx_ts) OVER ({c7}) AS BIGINT) AS first_c_us,
               CAST(tx_ts AS BIGINT) - CAST(MAX(tx_ts) OVER ({t_prev}) AS BIGINT) AS since_us
             FROM tx_labeled"
        ))
        .await;
    }

    /// The time since the entity's previous transaction (MAX(tx_ts) over a frame ending one
    /// nanosecond before the row), as integer microseconds and through date_part('epoch'),
    /// and since its last large one: the same on both paths, ties included.
    #[tokio::test]
    async fn time_since_the_previous_transaction_agrees_with_arrow() {
        let prev = "PARTITION BY customer_id ORDER BY event_time \
                    RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING";
        same_on_both_paths(&format!(
            "SELECT tx_id, tx_ts, customer_id, terminal_id,
               (CAST(tx_ts AS BIGINT) - CAST(MAX(tx_ts) OVER ({prev}) AS BIGINT)) / 1000000.0 AS since_s,
               date_part('epoch', tx_ts) - date_part('epoch', MAX(tx_ts) OVER ({prev})) AS since_epoch,
               CAST(tx_ts AS BIGINT)
                 - CAST(MAX(CASE WHEN amount > 100 THEN tx_ts END) OVER ({prev}) AS BIGINT) AS since_big_us
             FROM tx_labeled"
        ))
        .await;
    }

    /// Windows over a card-terminal pair (and the pair in the other order, a separate
    /// entity) next to one-column windows: the same on both paths.
    #[tokio::test]
    async fn composite_partition_keys_agree_with_arrow() {
        let pair = "PARTITION BY customer_id, terminal_id ORDER BY event_time \
                    RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' PRECEDING";
        same_on_both_paths(&format!(
            "SELECT tx_id, tx_ts, customer_id, terminal_id,
               COUNT(*) OVER ({pair}) AS pair_n,
               COALESCE(SUM(amount) OVER ({pair}), 0) AS pair_spend,
               STDDEV(amount) OVER ({pair}) AS pair_std,
               COUNT(*) OVER (PARTITION BY terminal_id, customer_id ORDER BY event_time
                 RANGE BETWEEN INTERVAL '2 days' PRECEDING AND CURRENT ROW) AS pair_2d,
               CAST(COUNT(*) OVER ({pair}) AS DOUBLE) / NULLIF(COUNT(*) OVER (PARTITION BY
                 customer_id ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING
                 AND INTERVAL '1 nanosecond' PRECEDING), 0) AS share
             FROM tx_labeled"
        ))
        .await;
    }

    /// A value Arrow refuses (a cast out of range) is refused on the row path too, with
    /// Arrow's own message: the row path defers it.
    #[tokio::test]
    async fn a_value_arrow_refuses_is_refused_the_same_way() {
        let plan = plan("SELECT tx_id, CAST(amount AS INT) AS small FROM tx_labeled").await;
        let tx = traffic(4)[3]; // amount 1e300
        let mut rows = OnlineEngine::new(plan.clone());
        assert!(rows.row_path());
        let mut arrow = OnlineEngine::new(plan);
        arrow.set_row_path(RowPath::Never);
        let a = rows.score_rows(&[tx]).unwrap_err().to_string();
        let b = arrow.score_rows(&[tx]).unwrap_err().to_string();
        assert_eq!(a, b);
        assert!(a.contains("Int32"), "{a}");
    }

    #[tokio::test]
    async fn a_construct_the_row_path_lacks_keeps_the_plan_on_arrow() {
        let plan = plan(
            "SELECT tx_id, customer_id, terminal_id, ln(amount + 1) AS log_amount FROM tx_labeled",
        )
        .await;
        assert!(RowProgram::compile(&plan).is_none());
        let mut engine = OnlineEngine::new(plan);
        assert!(!engine.row_path());
        let rows = engine.score_rows(&traffic(10)[2..4]).unwrap();
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn date_parts_match_the_calendar() {
        // 2018-04-01T05:06:07Z, a Sunday, day 91 of the year.
        let t = T0_US + ((5 * 60 + 6) * 60 + 7) * 1_000_000;
        let got: Vec<i64> = [
            Part::Year,
            Part::Quarter,
            Part::Month,
            Part::Day,
            Part::Hour,
            Part::Minute,
            Part::DayOfWeek,
            Part::IsoDayOfWeek,
            Part::DayOfYear,
        ]
        .iter()
        .map(|p| date_part(*p, t, TimeUnit::Microsecond).unwrap())
        .collect();
        assert_eq!(got, vec![2018, 2, 4, 1, 5, 6, 0, 7, 91]);
    }
}
