//! The feature compiler: DataFusion parses and plans the feature SQL against the
//! `tx_labeled` view, then we walk the optimized logical plan into a chain of steps the online
//! engine can run one transaction at a time:
//!
//! * row-level steps (projections) become DataFusion physical expressions, evaluated by
//!   DataFusion itself, so CASE, COALESCE, CAST, date_part ... mean exactly what they mean
//!   offline;
//! * window aggregates (COUNT, SUM, AVG, MIN, MAX, STDDEV over one entity column or a pair of
//!   them, ordered by `event_time`, RANGE frames with interval bounds) become [`WindowSpec`]s
//!   that a per-entity sliding-window store answers; expressions over their results are
//!   row-level steps after them.
//!
//! Anything else is refused when the file is loaded, naming the feature and the construct.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
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

/// How long after a transaction its label is assumed known: the handbook's delay, and the
/// simulator's longest (labels arrive 1 hour to 7 days after the transaction). A window may
/// aggregate `is_fraud` only over a frame that ends at least this long before the transaction;
/// anything nearer reads labels the scoring server does not have yet (label leakage).
pub const LABEL_DELAY_NS: i64 = 7 * NANOS_PER_DAY;

/// What a column of one step's rows is computed from: the window aggregates it reads
/// (indexes into the plan's windows, in plan order) and whether it reads the transaction's
/// own label (`is_fraud` not through a window ending a label delay before the transaction).
#[derive(Debug, Clone, Default)]
struct Origin {
    windows: Vec<usize>,
    label: bool,
}

impl Origin {
    fn merge(&mut self, other: &Origin) {
        for w in &other.windows {
            if !self.windows.contains(w) {
                self.windows.push(*w);
            }
        }
        self.label |= other.label;
    }
}

/// The origin of `expr` over rows of `schema` whose columns have `origins`.
fn origin_of(expr: &Expr, schema: &DFSchema, origins: &[Origin]) -> Result<Origin> {
    let mut out = Origin::default();
    for c in expr.column_refs() {
        let index = schema.index_of_column(c)?;
        if let Some(o) = origins.get(index) {
            out.merge(o);
        }
    }
    // column_refs is a set: plan order, whatever the set's order.
    out.windows.sort_unstable();
    Ok(out)
}

/// The aggregates the online engine maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AggKind {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    /// The sample standard deviation (DataFusion's `stddev`, alias `stddev_samp`): NULL for
    /// fewer than two values. Both engines compute it with [`sample_stddev`].
    Stddev,
}

/// Most columns of a window's PARTITION BY: an entity, or a pair of them ([`EntityKey`] holds
/// two integers).
///
/// [`EntityKey`]: crate::online::EntityKey
pub const MAX_ENTITY_COLUMNS: usize = 2;

/// What a refused aggregate's message lists.
const SUPPORTED_AGGREGATES: &str = "only COUNT, SUM, AVG, MIN, MAX, STDDEV";

impl AggKind {
    /// The aggregate of a DataFusion aggregate function name, if the engines support it.
    pub fn from_name(name: &str) -> Option<AggKind> {
        match name.to_ascii_lowercase().as_str() {
            "count" => Some(AggKind::Count),
            "sum" => Some(AggKind::Sum),
            "avg" | "mean" => Some(AggKind::Avg),
            "min" => Some(AggKind::Min),
            "max" => Some(AggKind::Max),
            "stddev" | "stddev_samp" => Some(AggKind::Stddev),
            _ => None,
        }
    }

    /// Whether the aggregate reads every value of its frame (MIN, MAX, STDDEV), rather than
    /// the two prefix sums at the frame's ends (COUNT, SUM, AVG).
    pub fn scans_frame(self) -> bool {
        matches!(self, AggKind::Min | AggKind::Max | AggKind::Stddev)
    }
}

/// The sample standard deviation of `values` (in frame order), `None` for fewer than two:
/// what DataFusion's `stddev` means. Two passes over the frame (the mean, then the squared
/// deviations from it), never a running sum of squares: `sum(x^2) - sum(x)^2 / n` cancels
/// catastrophically when the values are close (a few equal amounts give up to 1.6e-5 instead
/// of 0; differences of prefix sums over an entity's history, 1e-4), and a sliding Welford
/// state carries rounding from values long gone. The offline operator and the online engine
/// both call this function on the same values in the same order, so they agree to the last
/// bit (a frame's values are ordered by event time in both).
pub fn sample_stddev(values: &[f64]) -> Option<f64> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let mut sum = 0.0f64;
    for v in values {
        sum += v;
    }
    let mean = sum / n as f64;
    let mut m2 = 0.0f64;
    for v in values {
        let d = v - mean;
        m2 += d * d;
    }
    Some((m2 / (n - 1) as f64).sqrt())
}

/// One window aggregate, as the online engine runs it.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// The aggregate's column name in the plan (DataFusion's display name).
    pub column: String,
    pub kind: AggKind,
    /// Argument, evaluated on the step's input row; `None` for `COUNT(*)`.
    pub arg: Option<Arc<dyn PhysicalExpr>>,
    /// Indexes of the entity columns in the step's input row: one (customer_id), or two for
    /// a composite entity (customer_id, terminal_id: the card-terminal pair).
    pub partition_indexes: Vec<usize>,
    /// Names of the entity columns, joined by ", " (`customer_id, terminal_id`).
    pub entity: String,
    /// Frame `[t - start_ns, t - end_ns]` on `event_time`; `end_ns == 0` includes the row.
    pub start_ns: i64,
    pub end_ns: i64,
    pub output_type: DataType,
    /// Whether the argument reads `is_fraud` (then the frame ends at least
    /// [`LABEL_DELAY_NS`] before the transaction).
    pub reads_labels: bool,
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
    /// The online state behind it, per entity: a fixed part and a part per event kept (see
    /// `state_cost`), shared by every window of the same window step and entity columns.
    pub state: Option<String>,
    /// The work per transaction: `O(log n)` (two binary searches over the entity's `n`
    /// events, COUNT/SUM/AVG) or `O(n in frame)` (a scan of the frame, MIN/MAX/STDDEV).
    pub per_tx: Option<String>,
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
    // What each column of the current step's rows derives from (the scan's first).
    let mut origins: Vec<Origin> = input_schema
        .fields()
        .iter()
        .map(|f| Origin {
            windows: Vec::new(),
            label: f.name() == "is_fraud",
        })
        .collect();
    // One per window aggregate, in plan order (what `Origin::windows` indexes).
    let mut window_infos: Vec<FeatureInfo> = Vec::new();
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
                origins = p
                    .expr
                    .iter()
                    .map(|e| origin_of(e, input_schema, &origins))
                    .collect::<Result<Vec<_>>>()?;
                steps.push(Step::Project {
                    exprs,
                    schema: Arc::new(p.schema.as_arrow().clone()),
                });
            }
            LogicalPlan::Window(w) => {
                let input_schema: &DFSchema = w.input.schema();
                let mut windows = Vec::new();
                let mut order_index = None;
                let mut window_origins = Vec::new();
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
                        &origins,
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
                    window_origins.push(Origin {
                        windows: vec![window_infos.len()],
                        label: false,
                    });
                    window_infos.push(info_for(&spec));
                    windows.push(spec);
                }
                origins.extend(window_origins);
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

    add_state_costs(&steps, &mut window_infos);

    // Describe each output column by the windows it reads: one aggregate passed through or
    // wrapped (COALESCE), an expression over several (a ratio of two counts), or none (a
    // row-level expression). A column that reads the transaction's own label is refused.
    let mut feature_indexes = Vec::new();
    let mut features = Vec::new();
    for (i, field) in output_schema.fields().iter().enumerate() {
        let name = field.name();
        if KEY_COLUMNS.contains(&name.as_str()) || name == "event_time" {
            continue;
        }
        feature_indexes.push(i);
        let origin = origins.get(i).cloned().unwrap_or_default();
        if origin.label {
            return Err(unsupported(
                feature_set,
                &format!(
                    "feature '{name}': reads is_fraud of the transaction itself (label \
                     leakage: its label is not known when it is scored); aggregate is_fraud \
                     over a window ending at least {} before the transaction",
                    fmt_duration(LABEL_DELAY_NS)
                ),
            ));
        }
        let read: Vec<&FeatureInfo> = origin
            .windows
            .iter()
            .filter_map(|&w| window_infos.get(w))
            .collect();
        let mut info = combine(&read);
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

/// What `features show` says of a column computed from `windows`: nothing (a row-level
/// expression), the one window it reads, or all of them.
fn combine(windows: &[&FeatureInfo]) -> FeatureInfo {
    match windows {
        [] => FeatureInfo {
            name: String::new(),
            data_type: String::new(),
            kind: "row".into(),
            entity: None,
            window: None,
            delay: None,
            state: None,
            per_tx: None,
        },
        [one] => (*one).clone(),
        several => {
            let kinds: Vec<&str> = several.iter().map(|w| w.kind.as_str()).collect();
            // Frames: one entry per window, in plan order (not deduplicated: "1d, 30d" and
            // "30d, 30d" say which frames the expression combines).
            let each = |f: fn(&FeatureInfo) -> Option<&String>| -> Option<String> {
                Some(
                    several
                        .iter()
                        .filter_map(|w| f(w).cloned())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            };
            FeatureInfo {
                name: String::new(),
                data_type: String::new(),
                kind: format!("expr({})", kinds.join(", ")),
                entity: distinct_join(several, |w| w.entity.as_ref(), "; "),
                window: each(|w| w.window.as_ref()),
                delay: each(|w| w.delay.as_ref()),
                state: distinct_join(several, |w| w.state.as_ref(), "; "),
                per_tx: distinct_join(several, |w| w.per_tx.as_ref(), ", "),
            }
        }
    }
}

/// The distinct values `f` gives for `windows`, in order, joined by `sep`.
fn distinct_join(
    windows: &[&FeatureInfo],
    f: fn(&FeatureInfo) -> Option<&String>,
    sep: &str,
) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for w in windows {
        if let Some(p) = f(w) {
            if !parts.contains(&p.as_str()) {
                parts.push(p.as_str());
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join(sep))
}

/// Fills in the state each window's entity keeps (see [`FeatureInfo::state`]): the online
/// engine keeps one history per window step and entity columns, one stored argument per
/// distinct argument of that group's windows (COUNT(*) stores none), and events as far back
/// as the group's longest frame reaches.
fn add_state_costs(steps: &[Step], infos: &mut [FeatureInfo]) {
    let windows = steps.iter().flat_map(|step| match step {
        Step::Window { windows, .. } => windows.iter().map(|w| (windows, w)).collect::<Vec<_>>(),
        Step::Project { .. } => Vec::new(),
    });
    for (info, (step_windows, w)) in infos.iter_mut().zip(windows) {
        let group: Vec<&WindowSpec> = step_windows
            .iter()
            .filter(|o| o.partition_indexes == w.partition_indexes)
            .collect();
        let mut slots: Vec<String> = Vec::new();
        for o in &group {
            if let Some(arg) = &o.arg {
                let key = arg.to_string();
                if !slots.contains(&key) {
                    slots.push(key);
                }
            }
        }
        let horizon_ns = group.iter().map(|o| o.start_ns).max().unwrap_or(0);
        info.state = Some(state_cost(&w.entity, slots.len(), horizon_ns));
    }
}

/// Bytes of online state per entity, as the in-memory store holds it: a fixed part (the map
/// entry and the history's vectors) and a part per event kept (event time, tx_id, and per
/// stored argument its value and two prefix sums). Approximate: vectors over-allocate up to
/// twice, and the hash map keeps some slots free. The number of entities is the number of
/// distinct values (or pairs) seen within the horizon: for a card-terminal pair, every pair
/// the cards used in the last horizon, which is at most the transactions of that period.
fn state_cost(entity: &str, slots: usize, horizon_ns: i64) -> String {
    let per_entity = std::mem::size_of::<crate::online::EntityKey>()
        + std::mem::size_of::<crate::online::History>()
        + slots * (3 * std::mem::size_of::<Vec<f64>>() + 16);
    let per_event = 16 + 32 * slots;
    format!(
        "per ({entity}): ~{per_entity} B + {per_event} B per event of its last {} (+ the \
         event skew)",
        fmt_duration(horizon_ns)
    )
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
    origins: &[Origin],
    output_type: &DataType,
    state: &deltalake::datafusion::execution::SessionState,
) -> Result<WindowSpec> {
    let bad = |what: &str| unsupported(fs, &format!("feature '{shown}': {what}"));
    let udaf = match &wf.fun {
        WindowFunctionDefinition::AggregateUDF(udaf) => udaf,
        WindowFunctionDefinition::WindowUDF(udwf) => {
            return Err(bad(&window_function_refusal(udwf.name())))
        }
    };
    let Some(kind) = AggKind::from_name(udaf.name()) else {
        return Err(bad(&format!(
            "aggregate {} ({SUPPORTED_AGGREGATES})",
            udaf.name().to_ascii_lowercase()
        )));
    };
    let p = &wf.params;
    if p.distinct {
        return Err(bad(&format!(
            "{}(DISTINCT ...): the distinct values of a frame are as many as its \
             transactions, no bounded state per entity; for 'has this card used this terminal \
             before', count the pair: COUNT(*) OVER (PARTITION BY customer_id, terminal_id \
             ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL \
             '1 nanosecond' PRECEDING) = 0",
            udaf.name().to_ascii_uppercase()
        )));
    }
    if p.filter.is_some() {
        return Err(bad("FILTER (WHERE ...) on a window aggregate"));
    }
    if p.partition_by.is_empty() || p.partition_by.len() > MAX_ENTITY_COLUMNS {
        return Err(bad(&format!(
            "PARTITION BY {} expressions (one entity column, or two for a pair such as \
             customer_id, terminal_id: the online state is keyed by at most two integers)",
            p.partition_by.len()
        )));
    }
    let mut partition_indexes = Vec::with_capacity(p.partition_by.len());
    let mut entities = Vec::with_capacity(p.partition_by.len());
    for e in &p.partition_by {
        let Expr::Column(entity) = strip_alias(e) else {
            return Err(bad("PARTITION BY an expression (use columns)"));
        };
        let index = input_schema.index_of_column(entity)?;
        if !matches!(
            input_schema.field(index).data_type(),
            DataType::Int64 | DataType::Int32
        ) {
            return Err(bad("PARTITION BY a non-integer column"));
        }
        if origins.get(index).is_some_and(|o| o.label) {
            return Err(bad(
                "PARTITION BY a column computed from is_fraud (label leakage: the label is not \
                 known when the transaction is scored)",
            ));
        }
        partition_indexes.push(index);
        entities.push(entity.name.clone());
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
    let mut arg_origin = Origin::default();
    for a in &p.args {
        arg_origin.merge(&origin_of(a, input_schema, origins)?);
    }
    if arg_origin.label && end_ns < LABEL_DELAY_NS {
        return Err(bad(&format!(
            "aggregates is_fraud over a frame ending {} before the transaction: labels arrive \
             up to {} after it, so the scoring server does not have them yet (label leakage); \
             end the frame a label delay earlier, e.g. INTERVAL '7 days' PRECEDING",
            fmt_duration(end_ns),
            fmt_duration(LABEL_DELAY_NS)
        )));
    }
    if !arg_origin.windows.is_empty() {
        return Err(bad("a window over another window's result"));
    }
    let arg = match p.args.first().map(strip_alias) {
        None => None,
        Some(Expr::Literal(v, _)) if kind == AggKind::Count && !v.is_null() => None,
        Some(e) => Some(state.create_physical_expr(e.clone(), input_schema)?),
    };
    match output_type {
        DataType::Int64 | DataType::Float64 => {}
        // The online state stores arguments as DOUBLE: microseconds are exact up to 2^53
        // (the year 2255), nanoseconds since 1970 are not.
        DataType::Timestamp(TimeUnit::Microsecond, _)
            if matches!(kind, AggKind::Min | AggKind::Max) => {}
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            return Err(bad(&format!(
                "result type {output_type}: nanosecond timestamps (event_time) do not fit the \
                 online state's DOUBLE exactly; use tx_ts (microseconds)"
            )))
        }
        _ => {
            return Err(bad(&format!(
                "result type {output_type} (only BIGINT or DOUBLE, or MIN/MAX of a microsecond \
                 TIMESTAMP such as tx_ts)"
            )))
        }
    }
    Ok(WindowSpec {
        column: name.to_string(),
        kind,
        arg,
        partition_indexes,
        entity: entities.join(", "),
        start_ns,
        end_ns,
        output_type: output_type.clone(),
        reads_labels: arg_origin.label,
    })
}

/// Why a window function that is not an aggregate is refused.
fn window_function_refusal(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "lag" => format!(
            "LAG reads the entity's previous transaction however long ago it was: no bound on \
             the history an incremental build, a restart or the parity replay must read back, \
             nor on how long an idle entity's state is kept. For the time since the previous \
             transaction within a bound, use MAX(tx_ts) OVER (PARTITION BY ... ORDER BY \
             event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND INTERVAL '1 nanosecond' \
             PRECEDING) (NULL when there is none that recent) ({SUPPORTED_AGGREGATES})"
        ),
        "lead" => "LEAD sees the future (a later transaction of the entity)".to_string(),
        "row_number" | "rank" | "dense_rank" | "percent_rank" | "cume_dist" | "ntile" => format!(
            "{name} numbers the entity's transactions from its first one: no bound on the \
             history it needs; count a bounded frame instead, COUNT(*) OVER (PARTITION BY ... \
             ORDER BY event_time RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW)"
        ),
        _ => format!("window function {name} ({SUPPORTED_AGGREGATES})"),
    }
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

/// A duration in its largest whole unit: `7d`, `12h`, `90s`, `1ns`.
fn fmt_duration(ns: i64) -> String {
    const UNITS: [(i64, &str); 7] = [
        (NANOS_PER_DAY, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "min"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if ns == 0 {
        return "0d".into();
    }
    for (per, unit) in UNITS {
        if ns % per == 0 {
            return format!("{}{unit}", ns / per);
        }
    }
    format!("{ns}ns")
}

fn info_for(spec: &WindowSpec) -> FeatureInfo {
    let length = spec.start_ns - spec.end_ns;
    // A frame like [t - 30d, t - 1ns] reads better as its two ends than as 2591999999999999ns.
    let window = if spec.end_ns > 0 && length % 1_000_000_000 != 0 {
        format!(
            "{} - {}",
            fmt_duration(spec.start_ns),
            fmt_duration(spec.end_ns)
        )
    } else {
        fmt_duration(length)
    };
    FeatureInfo {
        name: spec.column.clone(),
        data_type: spec.output_type.to_string(),
        kind: format!("{:?}", spec.kind).to_ascii_lowercase(),
        entity: Some(spec.entity.clone()),
        window: Some(window),
        delay: Some(fmt_duration(spec.end_ns)),
        // Filled in by `add_state_costs` once the window's whole step is known.
        state: None,
        per_tx: Some(
            if spec.kind.scans_frame() {
                "O(n in frame)"
            } else {
                "O(log n)"
            }
            .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `features show`'s cost of the shipped feature set: one stored argument per entity
    /// (amount for customers, is_fraud for terminals; COUNT(*) stores none).
    #[tokio::test]
    async fn every_window_states_its_cost_per_entity() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/features.sql");
        let plan = compile(&FeatureSet::load(&path).unwrap()).await.unwrap();
        let info = |name: &str| {
            plan.features
                .iter()
                .find(|f| f.name == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name}"))
        };
        let customer = info("customer_avg_amount_1d");
        let state = customer.state.unwrap_or_default();
        assert!(state.starts_with("per (customer_id): ~"), "{state}");
        assert!(
            state.contains(" + 48 B per event of its last 30d"),
            "{state}"
        );
        assert_eq!(customer.per_tx.as_deref(), Some("O(log n)"));
        let terminal = info("terminal_risk_30d").state.unwrap_or_default();
        assert!(terminal.contains("per (terminal_id)"), "{terminal}");
        assert!(
            terminal.contains("48 B per event of its last 37d"),
            "{terminal}"
        );
        assert_eq!(info("tx_amount").state, None);
        assert_eq!(info("tx_amount").kind, "row");
    }

    #[test]
    fn durations_print_in_their_largest_whole_unit() {
        let day = NANOS_PER_DAY;
        assert_eq!(fmt_duration(0), "0d");
        assert_eq!(fmt_duration(7 * day), "7d");
        assert_eq!(fmt_duration(day / 2), "12h");
        assert_eq!(fmt_duration(90_000_000_000), "90s");
        assert_eq!(fmt_duration(1), "1ns");
        assert_eq!(fmt_duration(30 * day - 1), "2591999999999999ns");
    }

    #[test]
    fn sample_stddev_is_the_sample_standard_deviation() {
        assert_eq!(sample_stddev(&[]), None);
        assert_eq!(
            sample_stddev(&[3.0]),
            None,
            "NULL for one value, as DataFusion"
        );
        let sd = sample_stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert!((sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-15, "{sd}");
        assert_eq!(sample_stddev(&[25.0; 40]), Some(0.0));
        // Equal amounts that are not exact in binary: zero up to the last bits of the mean,
        // where the sum-of-squares formula is off by ~1e-5.
        let same = [100.01; 50];
        assert!(sample_stddev(&same).unwrap() < 1e-12);
        let (s, q) = same
            .iter()
            .fold((0.0f64, 0.0f64), |(s, q), x| (s + x, q + x * x));
        let naive = ((q - s * s / 50.0) / 49.0f64).abs().sqrt();
        assert!(naive > 1e-9, "the naive formula cancels: {naive}");
    }
}
