//! The feature compiler: DataFusion parses and plans the feature SQL against the
//! `tx_labeled` view, then we walk the optimized logical plan into a chain of steps the online
//! engine can run one transaction at a time:
//!
//! * row-level steps (projections) become DataFusion physical expressions, evaluated by
//!   DataFusion itself, so CASE, COALESCE, CAST, date_part ... mean exactly what they mean
//!   offline;
//! * window aggregates (COUNT, SUM, AVG, MIN, MAX over one entity column, ordered by
//!   `event_time`, RANGE frames with interval bounds) become [`WindowSpec`]s that a
//!   per-entity sliding-window store answers.
//!
//! Anything else is refused when the file is loaded, naming the feature and the construct.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::datafusion::common::{DFSchema, ScalarValue};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::logical_expr::expr::WindowFunction;
use deltalake::datafusion::logical_expr::{
    Expr, LogicalPlan, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition,
};
use deltalake::datafusion::physical_plan::PhysicalExpr;
use fraudlake_pipeline::{Error, Result};
use serde::Serialize;

use crate::definition::{view_schema, FeatureSet, KEY_COLUMNS, VIEW_NAME};

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// The aggregates the online engine maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AggKind {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl AggKind {
    /// The aggregate of a DataFusion aggregate function name, if the engines support it.
    pub fn from_name(name: &str) -> Option<AggKind> {
        match name.to_ascii_lowercase().as_str() {
            "count" => Some(AggKind::Count),
            "sum" => Some(AggKind::Sum),
            "avg" | "mean" => Some(AggKind::Avg),
            "min" => Some(AggKind::Min),
            "max" => Some(AggKind::Max),
            _ => None,
        }
    }
}

/// One window aggregate, as the online engine runs it.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// The aggregate's column name in the plan (DataFusion's display name).
    pub column: String,
    pub kind: AggKind,
    /// Argument, evaluated on the step's input row; `None` for `COUNT(*)`.
    pub arg: Option<Arc<dyn PhysicalExpr>>,
    /// Index of the entity column in the step's input row.
    pub partition_index: usize,
    /// Name of the entity column (customer_id, terminal_id, ...).
    pub entity: String,
    /// Frame `[t - start_ns, t - end_ns]` on `event_time`; `end_ns == 0` includes the row.
    pub start_ns: i64,
    pub end_ns: i64,
    pub output_type: DataType,
}

impl WindowSpec {
    /// Whether the frame contains the current transaction itself.
    pub fn includes_current(&self) -> bool {
        self.end_ns == 0
    }
}

/// One stage of the compiled chain.
#[derive(Debug, Clone)]
pub enum Step {
    /// Evaluate expressions over the previous row(s); output has `schema`.
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
    /// Append one column per window aggregate to the input row(s).
    Window {
        windows: Vec<WindowSpec>,
        /// Index of `event_time` in the input row.
        order_index: usize,
        /// Largest `start_ns` of this step: how much history each entity keeps.
        horizon_ns: i64,
        schema: SchemaRef,
    },
}

/// How the online engine understood one output column (what `features show` prints).
#[derive(Debug, Clone, Serialize)]
pub struct FeatureInfo {
    pub name: String,
    pub data_type: String,
    /// `row` for row-level expressions, else the aggregate.
    pub kind: String,
    pub entity: Option<String>,
    pub window: Option<String>,
    pub delay: Option<String>,
}

/// The compiled feature set.
#[derive(Debug, Clone)]
pub struct FeaturePlan {
    pub feature_set: FeatureSet,
    /// Columns of the view the chain reads, in order (the scan's projection).
    pub input_schema: SchemaRef,
    pub steps: Vec<Step>,
    pub output_schema: SchemaRef,
    /// Indexes of the output columns that are model inputs (everything but keys).
    pub feature_indexes: Vec<usize>,
    pub features: Vec<FeatureInfo>,
    /// Largest window start over all steps: the history a replay or an incremental build needs.
    pub lookback_ns: i64,
}

impl FeaturePlan {
    /// Names of the model inputs, in order.
    pub fn feature_names(&self) -> Vec<String> {
        self.feature_indexes
            .iter()
            .map(|&i| self.output_schema.field(i).name().clone())
            .collect()
    }

    /// Lookback in whole days, rounded up.
    pub fn lookback_days(&self) -> i64 {
        (self.lookback_ns + NANOS_PER_DAY - 1) / NANOS_PER_DAY
    }
}

/// Compiles a feature set. Needs no lake: the view is an empty in-memory table.
pub async fn compile(feature_set: &FeatureSet) -> Result<FeaturePlan> {
    let ctx = fraudlake_pipeline::lake::new_session();
    let empty = MemTable::try_new(view_schema().await?, vec![vec![]])?;
    ctx.register_table(VIEW_NAME, Arc::new(empty))?;
    let df = ctx
        .sql(&feature_set.sql)
        .await
        .map_err(|e| Error::invalid(format!("{}: {e}", feature_set.path.display())))?;
    let plan = df.into_optimized_plan()?;
    let output_schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
    for key in ["tx_id"] {
        if output_schema.index_of(key).is_err() {
            return Err(Error::invalid(format!(
                "{}: the feature SQL must select {key} (keys: {})",
                feature_set.path.display(),
                KEY_COLUMNS.join(", ")
            )));
        }
    }

    // Output names of window columns, so messages name the feature as the SQL does.
    let mut alias_of: HashMap<String, String> = HashMap::new();
    if let LogicalPlan::Projection(p) = &plan {
        for (expr, field) in p.expr.iter().zip(p.schema.fields()) {
            for c in expr.column_refs() {
                alias_of
                    .entry(c.name.clone())
                    .or_insert_with(|| field.name().clone());
            }
        }
    }

    // Walk down the single-input chain, then build steps bottom-up.
    let mut chain: Vec<&LogicalPlan> = Vec::new();
    let mut node = &plan;
    let input_schema = loop {
        match node {
            LogicalPlan::TableScan(scan) => {
                if scan.table_name.table() != VIEW_NAME {
                    return Err(unsupported(feature_set, &format!("reads table '{}' (only {VIEW_NAME})", scan.table_name)));
                }
                if !scan.filters.is_empty() || scan.fetch.is_some() {
                    return Err(unsupported(feature_set, "filters rows (WHERE/LIMIT): a feature SQL yields one row per transaction"));
                }
                break Arc::new(scan.projected_schema.as_arrow().clone());
            }
            LogicalPlan::Projection(p) => {
                chain.push(node);
                node = p.input.as_ref();
            }
            LogicalPlan::Window(w) => {
                chain.push(node);
                node = w.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            LogicalPlan::Sort(s) if s.fetch.is_none() => node = s.input.as_ref(),
            other => {
                return Err(unsupported(
                    feature_set,
                    &format!(
                        "uses {} (joins, filters, aggregations and limits cannot run per transaction: a feature SQL yields one row per transaction)",
                        plan_kind(other)
                    ),
                ))
            }
        }
    };

    let state = ctx.state();
    let mut steps = Vec::new();
    let mut window_columns: HashSet<String> = HashSet::new();
    let mut infos_by_column: Vec<(String, FeatureInfo)> = Vec::new();
    let mut lookback_ns = 0i64;
    for node in chain.into_iter().rev() {
        match node {
            LogicalPlan::Projection(p) => {
                let input_schema: &DFSchema = p.input.schema();
                let exprs = p
                    .expr
                    .iter()
                    .map(|e| state.create_physical_expr(e.clone(), input_schema))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                steps.push(Step::Project {
                    exprs,
                    schema: Arc::new(p.schema.as_arrow().clone()),
                });
            }
            LogicalPlan::Window(w) => {
                let input_schema: &DFSchema = w.input.schema();
                let mut windows = Vec::new();
                let mut order_index = None;
                for (i, expr) in w.window_expr.iter().enumerate() {
                    let field = w.schema.field(input_schema.fields().len() + i);
                    let name = field.name().clone();
                    let Expr::WindowFunction(wf) = strip_alias(expr) else {
                        return Err(unsupported(
                            feature_set,
                            &format!("window expression {expr} is not a window function"),
                        ));
                    };
                    let shown = alias_of.get(&name).cloned().unwrap_or_else(|| name.clone());
                    let spec = window_spec(
                        feature_set,
                        &name,
                        &shown,
                        wf,
                        input_schema,
                        &window_columns,
                        field.data_type(),
                        &state,
                    )?;
                    let idx = order_column(feature_set, &shown, wf, input_schema)?;
                    if *order_index.get_or_insert(idx) != idx {
                        return Err(unsupported(
                            feature_set,
                            &format!("{name}: windows of one step order by different columns"),
                        ));
                    }
                    lookback_ns = lookback_ns.max(spec.start_ns);
                    infos_by_column.push((name.clone(), info_for(&spec)));
                    windows.push(spec);
                }
                for spec in &windows {
                    window_columns.insert(spec.column.clone());
                }
                let horizon_ns = windows.iter().map(|s| s.start_ns).max().unwrap_or(0);
                steps.push(Step::Window {
                    windows,
                    order_index: order_index.unwrap_or(0),
                    horizon_ns,
                    schema: Arc::new(w.schema.as_arrow().clone()),
                });
            }
            _ => {}
        }
    }

    // Describe each output column: a window aggregate passed through or wrapped (COALESCE),
    // or a row-level expression.
    let mut feature_indexes = Vec::new();
    let mut features = Vec::new();
    let top_exprs: Option<&Vec<Expr>> = match &plan {
        LogicalPlan::Projection(p) => Some(&p.expr),
        _ => None,
    };
    for (i, field) in output_schema.fields().iter().enumerate() {
        let name = field.name();
        if KEY_COLUMNS.contains(&name.as_str()) || name == "event_time" {
            continue;
        }
        feature_indexes.push(i);
        let referenced: Vec<String> = top_exprs
            .and_then(|e| e.get(i))
            .map(|e| {
                e.column_refs()
                    .into_iter()
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let window = infos_by_column
            .iter()
            .find(|(col, _)| referenced.contains(col) || col == name);
        let mut info = match window {
            Some((_, info)) => info.clone(),
            None => FeatureInfo {
                name: String::new(),
                data_type: String::new(),
                kind: "row".into(),
                entity: None,
                window: None,
                delay: None,
            },
        };
        info.name = name.clone();
        info.data_type = field.data_type().to_string();
        features.push(info);
    }
    if feature_indexes.is_empty() {
        return Err(Error::invalid(format!(
            "{}: the feature SQL selects no feature (only keys)",
            feature_set.path.display()
        )));
    }

    Ok(FeaturePlan {
        feature_set: feature_set.clone(),
        input_schema,
        steps,
        output_schema,
        feature_indexes,
        features,
        lookback_ns,
    })
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        other => other,
    }
}

fn plan_kind(p: &LogicalPlan) -> String {
    p.display()
        .to_string()
        .split(':')
        .next()
        .unwrap_or("an operator")
        .to_string()
}

fn unsupported(fs: &FeatureSet, what: &str) -> Error {
    Error::invalid(format!(
        "{}: not supported by the online engine: {what}",
        fs.path.display()
    ))
}

#[allow(clippy::too_many_arguments)]
fn window_spec(
    fs: &FeatureSet,
    name: &str,
    shown: &str,
    wf: &WindowFunction,
    input_schema: &DFSchema,
    lower_windows: &HashSet<String>,
    output_type: &DataType,
    state: &deltalake::datafusion::execution::SessionState,
) -> Result<WindowSpec> {
    let bad = |what: &str| unsupported(fs, &format!("feature '{shown}': {what}"));
    let WindowFunctionDefinition::AggregateUDF(udaf) = &wf.fun else {
        return Err(bad(&format!(
            "window function {} (only COUNT, SUM, AVG, MIN, MAX)",
            wf.fun
        )));
    };
    let Some(kind) = AggKind::from_name(udaf.name()) else {
        return Err(bad(&format!(
            "aggregate {} (only COUNT, SUM, AVG, MIN, MAX)",
            udaf.name().to_ascii_lowercase()
        )));
    };
    let p = &wf.params;
    if p.distinct {
        return Err(bad("DISTINCT aggregates"));
    }
    if p.filter.is_some() {
        return Err(bad("FILTER (WHERE ...) on a window aggregate"));
    }
    if p.partition_by.len() != 1 {
        return Err(bad(&format!(
            "PARTITION BY {} expressions (exactly one entity column)",
            p.partition_by.len()
        )));
    }
    let Expr::Column(entity) = strip_alias(&p.partition_by[0]) else {
        return Err(bad("PARTITION BY an expression (use one column)"));
    };
    let partition_index = input_schema.index_of_column(entity)?;
    if !matches!(
        input_schema.field(partition_index).data_type(),
        DataType::Int64 | DataType::Int32
    ) {
        return Err(bad("PARTITION BY a non-integer column"));
    }
    if p.window_frame.units != WindowFrameUnits::Range {
        return Err(bad(&format!(
            "{} frames (only RANGE with interval bounds)",
            p.window_frame.units
        )));
    }
    let start_ns =
        bound_ns(&p.window_frame.start_bound).map_err(|w| bad(&format!("frame start {w}")))?;
    let end_ns = bound_ns(&p.window_frame.end_bound).map_err(|w| bad(&format!("frame end {w}")))?;
    if end_ns > start_ns {
        return Err(bad("the frame ends before it starts"));
    }
    if p.args.len() > 1 {
        return Err(bad("aggregates of several arguments"));
    }
    let arg_uses_labels = p
        .args
        .iter()
        .any(|a| a.column_refs().iter().any(|c| c.name == "is_fraud"));
    if arg_uses_labels && end_ns == 0 {
        return Err(bad(
            "aggregates is_fraud up to the current transaction: labels are not known when \
             scoring (label leakage); end the frame a label delay earlier, e.g. \
             INTERVAL '7 days' PRECEDING",
        ));
    }
    let arg = match p.args.first().map(strip_alias) {
        None => None,
        Some(Expr::Literal(v, _)) if kind == AggKind::Count && !v.is_null() => None,
        Some(e) => {
            for c in e.column_refs() {
                if lower_windows.contains(&c.name) {
                    return Err(bad("a window over another window's result"));
                }
            }
            Some(state.create_physical_expr(e.clone(), input_schema)?)
        }
    };
    if !matches!(output_type, DataType::Int64 | DataType::Float64) {
        return Err(bad(&format!(
            "result type {output_type} (only BIGINT or DOUBLE)"
        )));
    }
    Ok(WindowSpec {
        column: name.to_string(),
        kind,
        arg,
        partition_index,
        entity: entity.name.clone(),
        start_ns,
        end_ns,
        output_type: output_type.clone(),
    })
}

fn order_column(
    fs: &FeatureSet,
    name: &str,
    wf: &WindowFunction,
    input: &DFSchema,
) -> Result<usize> {
    let order = &wf.params.order_by;
    let ok = order.len() == 1 && order[0].asc;
    let col = order.first().map(|s| strip_alias(&s.expr));
    match (ok, col) {
        (true, Some(Expr::Column(c))) if c.name == "event_time" => Ok(input.index_of_column(c)?),
        _ => Err(unsupported(
            fs,
            &format!("feature '{name}': windows must ORDER BY event_time (ascending), the view's event clock"),
        )),
    }
}

/// A RANGE bound in nanoseconds before the current row; errors name the problem.
pub(crate) fn bound_ns(bound: &WindowFrameBound) -> std::result::Result<i64, String> {
    match bound {
        WindowFrameBound::CurrentRow => Ok(0),
        WindowFrameBound::Following(v) if is_zero(v) => Ok(0),
        WindowFrameBound::Following(v) if v.is_null() => {
            Err("UNBOUNDED FOLLOWING sees the future".into())
        }
        WindowFrameBound::Following(_) => Err("FOLLOWING sees the future".into()),
        WindowFrameBound::Preceding(v) if v.is_null() => {
            Err("UNBOUNDED PRECEDING needs unbounded state; give an interval".into())
        }
        WindowFrameBound::Preceding(v) => interval_ns(v),
    }
}

fn is_zero(v: &ScalarValue) -> bool {
    matches!(interval_ns(v), Ok(0))
}

fn interval_ns(v: &ScalarValue) -> std::result::Result<i64, String> {
    let ns = match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) => {
            if i.months != 0 {
                return Err(format!("{v}: months have no fixed length; use days"));
            }
            i.days as i64 * NANOS_PER_DAY + i.nanoseconds
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            i.days as i64 * NANOS_PER_DAY + i.milliseconds as i64 * 1_000_000
        }
        ScalarValue::IntervalYearMonth(Some(m)) if *m == 0 => 0,
        ScalarValue::DurationSecond(Some(s)) => s * 1_000_000_000,
        ScalarValue::DurationMillisecond(Some(s)) => s * 1_000_000,
        ScalarValue::DurationMicrosecond(Some(s)) => s * 1_000,
        ScalarValue::DurationNanosecond(Some(s)) => *s,
        other => return Err(format!("{other} is not an interval")),
    };
    if ns < 0 {
        return Err(format!("{v} is negative"));
    }
    Ok(ns)
}

fn fmt_duration(ns: i64) -> String {
    if ns % NANOS_PER_DAY == 0 {
        format!("{}d", ns / NANOS_PER_DAY)
    } else {
        format!("{}s", ns as f64 / 1e9)
    }
}

fn info_for(spec: &WindowSpec) -> FeatureInfo {
    FeatureInfo {
        name: spec.column.clone(),
        data_type: spec.output_type.to_string(),
        kind: format!("{:?}", spec.kind).to_ascii_lowercase(),
        entity: Some(spec.entity.clone()),
        window: Some(fmt_duration(spec.start_ns - spec.end_ns)),
        delay: Some(fmt_duration(spec.end_ns)),
    }
}
