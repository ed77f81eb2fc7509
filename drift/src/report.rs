//! Drift reports: the data model, and its rendering to a self-contained HTML page (minijinja
//! template `templates/report.html`, compiled into the binary) and to JSON (serde_json).
//!
//! The HTML page has no script, no external resource (a Content-Security-Policy meta tag forbids
//! both), one inline stylesheet and one inline SVG histogram per column (plus one each for the
//! prediction and target sections when present). Every text that comes from the data (column
//! names, labels, run id) is HTML-escaped by the project's one escaper
//! ([`fraudlake_model::html`], minijinja's): through auto-escaping in the template, and through
//! [`Escaped`] in the SVG, which is built here.
//!
//! Non-finite floats (NaN, ±inf) are legal everywhere in the model: they render as `n/a` in HTML
//! and serialize as `null` in JSON (and `null` reads back as NaN, or `None` for an `Option`).

use std::fmt::Write as _;

use fraudlake_model::html::{self, Escaped};
use serde::{Deserialize, Serialize};

/// The page template, compiled into the binary.
const TEMPLATE: &str = include_str!("../templates/report.html");
const TEMPLATE_NAME: &str = "report.html";

/// Most categories a categorical [`histogram`] keeps as their own bin; the rest share an
/// `other` bin (whose edge is NaN).
pub const CATEGORY_CAP: usize = 30;

/// A time window of the lake that a report compares.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Period {
    /// e.g. `2018-07-25..2018-07-31` or `champion (2018-07-25..2018-07-31)`.
    pub label: String,
    pub start: String,
    pub end: String,
    pub rows: u64,
}

/// Shares of rows per bin for the two periods.
///
/// Numerical: `edges` has `bins + 1` entries (bin `i` is `[edges[i], edges[i+1])`, the last one
/// closed). Categorical: `edges` holds one category value per bin; NaN stands for `other`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Histogram {
    #[serde(with = "nullable_f64_vec")]
    pub edges: Vec<f64>,
    pub categorical: bool,
    /// Share of the reference period's non-null rows per bin; sums to 1 (all 0 if it had none).
    #[serde(with = "nullable_f64_vec")]
    pub reference: Vec<f64>,
    /// Share of the current period's non-null rows per bin; sums to 1 (all 0 if it had none).
    #[serde(with = "nullable_f64_vec")]
    pub current: Vec<f64>,
}

/// The drift test of one column (or of the prediction, or of the target).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ColumnReport {
    pub name: String,
    /// `numerical` or `categorical`.
    pub kind: String,
    /// `ks`, `wasserstein`, `chisquare`, `z`, `jensenshannon` or `psi`.
    pub method: String,
    /// A p-value for `ks`, `chisquare` and `z` (drift when below the threshold), a distance for
    /// the others (drift when at or above it).
    #[serde(with = "nullable_f64")]
    pub statistic: f64,
    #[serde(with = "nullable_f64")]
    pub threshold: f64,
    pub drifted: bool,
    #[serde(with = "nullable_f64")]
    pub psi: f64,
    pub reference_nulls: u64,
    pub current_nulls: u64,
    #[serde(with = "nullable_f64")]
    pub reference_mean: f64,
    #[serde(with = "nullable_f64")]
    pub current_mean: f64,
    pub histogram: Histogram,
}

/// Model quality on the labels that have arrived for the current period, next to the quality
/// measured on the test split when the model was trained.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LiveQuality {
    pub labeled_rows: u64,
    pub fraud_rows: u64,
    #[serde(default, with = "nullable_opt_f64")]
    pub auc_roc: Option<f64>,
    #[serde(default, with = "nullable_opt_f64")]
    pub average_precision: Option<f64>,
    #[serde(default, with = "nullable_opt_f64")]
    pub test_auc_roc: Option<f64>,
    #[serde(default, with = "nullable_opt_f64")]
    pub test_average_precision: Option<f64>,
}

/// One drift run: reference vs current period, per-column tests and the dataset verdict.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DriftReport {
    pub run_id: String,
    /// RFC 3339.
    pub generated_at: String,
    pub reference: Period,
    pub current: Period,
    #[serde(default)]
    pub model_version: Option<i64>,
    pub feature_set: String,
    #[serde(with = "nullable_f64")]
    pub drift_share_threshold: f64,
    #[serde(with = "nullable_f64")]
    pub drift_share: f64,
    pub dataset_drift: bool,
    pub columns: Vec<ColumnReport>,
    /// Drift of the model's output (`risk_score`).
    #[serde(default)]
    pub prediction: Option<ColumnReport>,
    /// During a rollout (docs/rollout.md section 7): the canary's and the shadow's scores
    /// (reference: the champion's) on the same served transactions of the current period, one
    /// entry per candidate version. Only in the report, not in `drift_reports`: a version in a
    /// metric's labels would leave a dead series behind every rollout.
    #[serde(default)]
    pub rollout: Vec<ColumnReport>,
    /// Drift of the label.
    #[serde(default)]
    pub target: Option<ColumnReport>,
    #[serde(default)]
    pub quality: Option<LiveQuality>,
}

#[derive(thiserror::Error, Debug)]
pub enum ReportError {
    #[error("rendering the HTML report failed: {0}")]
    Template(#[from] minijinja::Error),
    #[error("serializing the report to JSON failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("histogram of column {column:?} is inconsistent: {reason}")]
    Histogram { column: String, reason: String },
}

impl DriftReport {
    /// Number of columns whose test found drift (prediction and target not included).
    pub fn n_drifted(&self) -> usize {
        self.columns.iter().filter(|c| c.drifted).count()
    }

    /// The self-contained HTML page.
    pub fn to_html(&self) -> Result<String, ReportError> {
        let view = PageView::new(self)?;
        let env = html::environment(TEMPLATE_NAME, TEMPLATE)?;
        Ok(env.get_template(TEMPLATE_NAME)?.render(&view)?)
    }

    /// Pretty-printed JSON; non-finite floats become `null`.
    pub fn to_json(&self) -> Result<String, ReportError> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// Shares of rows per bin for `reference` and `current`. Non-finite values (nulls) are left out.
///
/// Numerical: `max_bins` equal-width bins over the combined min..max of both (one bin if all
/// values are equal). Categorical: one bin per distinct value, sorted; with more than
/// [`CATEGORY_CAP`] values, the most frequent ones (over both periods) keep their bin and the rest
/// go to a last `other` bin whose edge is NaN; `max_bins` is not used. Without any finite value
/// the histogram has no bin at all.
pub fn histogram(
    reference: &[f64],
    current: &[f64],
    categorical: bool,
    max_bins: usize,
) -> Histogram {
    if categorical {
        categorical_histogram(reference, current)
    } else {
        numerical_histogram(reference, current, max_bins)
    }
}

fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

fn numerical_histogram(reference: &[f64], current: &[f64], max_bins: usize) -> Histogram {
    let finite = |xs: &'_ [f64]| {
        xs.iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect::<Vec<_>>()
    };
    let (r, c) = (finite(reference), finite(current));
    let (lo, hi) = r
        .iter()
        .chain(&c)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if lo > hi {
        return Histogram {
            edges: vec![],
            categorical: false,
            reference: vec![],
            current: vec![],
        };
    }
    let bins = if hi > lo { max_bins.max(1) } else { 1 };
    // Halved so that hi - lo cannot overflow for extreme finite values.
    let half_span = hi * 0.5 - lo * 0.5;
    let edges = (0..=bins)
        .map(|i| match i {
            0 => lo,
            i if i == bins => hi,
            i => {
                let t = i as f64 / bins as f64;
                lo * (1.0 - t) + hi * t
            }
        })
        .collect();
    let count = |xs: &[f64]| {
        let mut counts = vec![0u64; bins];
        for &x in xs {
            let t = if half_span > 0.0 {
                (x * 0.5 - lo * 0.5) / half_span
            } else {
                0.0
            };
            let i = ((t * bins as f64) as usize).min(bins - 1);
            counts[i] += 1;
        }
        counts
    };
    Histogram {
        edges,
        categorical: false,
        reference: shares(&count(&r)),
        current: shares(&count(&c)),
    }
}

fn categorical_histogram(reference: &[f64], current: &[f64]) -> Histogram {
    // (value, reference count, current count), sorted by value.
    let mut tagged: Vec<(f64, bool)> = reference
        .iter()
        .map(|&x| (x, false))
        .chain(current.iter().map(|&x| (x, true)))
        .filter(|(x, _)| x.is_finite())
        .collect();
    tagged.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups: Vec<(f64, u64, u64)> = Vec::new();
    for (x, is_current) in tagged {
        match groups.last_mut() {
            Some(g) if g.0 == x => {}
            _ => groups.push((x, 0, 0)),
        }
        if let Some(g) = groups.last_mut() {
            if is_current {
                g.2 += 1;
            } else {
                g.1 += 1;
            }
        }
    }
    let mut other = None;
    if groups.len() > CATEGORY_CAP {
        groups.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then(a.0.total_cmp(&b.0)));
        let rest = groups.split_off(CATEGORY_CAP);
        other = Some(rest.iter().fold((0, 0), |(r, c), g| (r + g.1, c + g.2)));
        groups.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut edges: Vec<f64> = groups.iter().map(|g| g.0).collect();
    let mut r: Vec<u64> = groups.iter().map(|g| g.1).collect();
    let mut c: Vec<u64> = groups.iter().map(|g| g.2).collect();
    if let Some((ro, co)) = other {
        edges.push(f64::NAN);
        r.push(ro);
        c.push(co);
    }
    Histogram {
        edges,
        categorical: true,
        reference: shares(&r),
        current: shares(&c),
    }
}

// ---------------------------------------------------------------------------------------------
// serde helpers: non-finite <-> null

mod nullable_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

mod nullable_opt_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) if x.is_finite() => s.serialize_some(x),
            _ => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<f64>::deserialize(d)
    }
}

mod nullable_f64_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f64::NAN))
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// formatting

/// `x` to `digits` significant digits, trailing zeros dropped; scientific notation outside
/// 1e-4..1e6; `n/a` when not finite.
fn fmt_sig(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    let digits = digits.max(1);
    let ax = x.abs();
    if !(1e-4..1e6).contains(&ax) {
        let s = format!("{:.*e}", digits - 1, x);
        return match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa)),
            None => s,
        };
    }
    let magnitude = ax.log10().floor() as i32;
    let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
    trim_zeros(&format!("{x:.decimals$}")).to_owned()
}

fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "n/a".to_owned(), |x| fmt_sig(x, digits))
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A share (0..1) as a percentage with at most one decimal: `46.7 %`, `50 %`.
fn fmt_pct(share: f64) -> String {
    if !share.is_finite() {
        return "n/a".to_owned();
    }
    format!("{}\u{a0}%", trim_zeros(&format!("{:.1}", share * 100.0)))
}

/// An integer with thousands separators: `1,234,567`.
fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A coordinate rounded to one decimal, without a trailing `.0`.
fn r1(x: f64) -> String {
    let s = format!("{:.1}", x);
    match s.strip_suffix(".0") {
        Some(int) if int != "-0" => int.to_owned(),
        Some(_) => "0".to_owned(),
        None => s,
    }
}

fn is_p_value(method: &str) -> bool {
    matches!(method, "ks" | "chisquare" | "z")
}

fn method_label(method: &str) -> String {
    match method {
        "ks" => "K-S test",
        "wasserstein" => "Wasserstein (normed)",
        "chisquare" => "chi-square test",
        "z" => "Z-test",
        "jensenshannon" => "Jensen-Shannon",
        "psi" => "PSI",
        other => other,
    }
    .to_owned()
}

// ---------------------------------------------------------------------------------------------
// SVG histogram

const W: f64 = 400.0;
const H: f64 = 200.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 26.0;
const BOTTOM: f64 = 36.0;

/// Bin label: the category, or the bin's range.
fn bin_label(h: &Histogram, i: usize) -> String {
    if h.categorical {
        match h.edges.get(i) {
            Some(v) if v.is_finite() => fmt_sig(*v, 6),
            _ => "other".to_owned(),
        }
    } else {
        let close = if i + 2 == h.edges.len() { ']' } else { ')' };
        format!(
            "[{}, {}{close}",
            fmt_sig(h.edges[i], 4),
            fmt_sig(h.edges[i + 1], 4)
        )
    }
}

/// Inline SVG: grouped bars (reference, current) per bin, one `<path>` per series, and one
/// transparent hover rectangle per bin carrying a `<title>` tooltip with both shares.
fn histogram_svg(name: &str, h: &Histogram) -> Result<String, ReportError> {
    let bins = h.reference.len();
    let expected_edges = if h.categorical {
        bins
    } else {
        bins + usize::from(bins > 0)
    };
    if h.current.len() != bins || h.edges.len() != expected_edges {
        return Err(ReportError::Histogram {
            column: name.to_owned(),
            reason: format!(
                "{} edges, {} reference and {} current shares ({})",
                h.edges.len(),
                bins,
                h.current.len(),
                if h.categorical {
                    "categorical"
                } else {
                    "numerical"
                }
            ),
        });
    }
    let label =
        format!(
        "Histogram of {}: share of rows per {} in the reference and current periods, {bins} bins",
        Escaped(name),
        if h.categorical { "category" } else { "value bin" }
    );
    let mut s = String::with_capacity(1500 + bins * 160);
    let _ = write!(
        s,
        r#"<svg class="hist" viewBox="0 0 {W} {H}" role="img" aria-label="{label}">"#
    );
    // Legend.
    let _ = write!(
        s,
        r#"<rect class="r" x="{LEFT}" y="6" width="10" height="10"/><text x="{}" y="15">reference</text><rect class="c" x="{}" y="6" width="10" height="10"/><text x="{}" y="15">current</text>"#,
        LEFT + 14.0,
        LEFT + 90.0,
        LEFT + 104.0
    );
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let base = TOP + ph;
    let finite_max = |v: &[f64]| {
        v.iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(0.0f64, f64::max)
    };
    let ymax = finite_max(&h.reference).max(finite_max(&h.current));
    // Axes and y labels.
    let _ = write!(
        s,
        r#"<path class="ax" d="M{LEFT},{TOP}V{base}H{}"/><path class="gr" d="M{LEFT},{TOP}H{}"/><text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="end">0</text><text class="t" transform="translate(11,{}) rotate(-90)" text-anchor="middle">share of rows</text>"#,
        r1(LEFT + pw),
        r1(LEFT + pw),
        LEFT - 4.0,
        TOP + 4.0,
        if ymax > 0.0 {
            fmt_pct(ymax)
        } else {
            "0".to_owned()
        },
        LEFT - 4.0,
        base,
        r1(TOP + ph / 2.0)
    );
    if bins == 0 || ymax <= 0.0 {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            r1(LEFT + pw / 2.0),
            r1(TOP + ph / 2.0)
        );
        return Ok(s);
    }
    let bw = pw / bins as f64;
    let bar_w = bw * 0.42;
    let gap = bw * 0.08;
    let scale = ph / ymax;
    for (class, shares, offset) in [("r", &h.reference, gap), ("c", &h.current, bw * 0.5)] {
        let mut d = String::new();
        for (i, &v) in shares.iter().enumerate() {
            if !(v.is_finite() && v > 0.0) {
                continue;
            }
            let x = LEFT + i as f64 * bw + offset;
            let y = base - (v * scale).max(1.0);
            let _ = write!(
                d,
                "M{},{}h{}V{}H{}Z",
                r1(x),
                r1(y),
                r1(bar_w),
                r1(base),
                r1(x)
            );
        }
        if !d.is_empty() {
            let _ = write!(s, r#"<path class="{class}" d="{d}"/>"#);
        }
    }
    // Hover targets with tooltips.
    for i in 0..bins {
        let _ = write!(
            s,
            r#"<rect class="hit" x="{}" y="{TOP}" width="{}" height="{}"><title>{}: reference {}, current {}</title></rect>"#,
            r1(LEFT + i as f64 * bw),
            r1(bw),
            r1(ph),
            Escaped(&bin_label(h, i)),
            fmt_pct(h.reference[i]),
            fmt_pct(h.current[i])
        );
    }
    // X labels.
    let ly = base + 14.0;
    if h.categorical && bins <= 12 {
        for i in 0..bins {
            let mut text = bin_label(h, i);
            if text.chars().count() > 8 {
                text = text.chars().take(7).collect::<String>() + "…";
            }
            let _ = write!(
                s,
                r#"<text x="{}" y="{ly}" text-anchor="middle">{}</text>"#,
                r1(LEFT + (i as f64 + 0.5) * bw),
                Escaped(&text)
            );
        }
    } else {
        let (first, last) = if h.categorical {
            (bin_label(h, 0), bin_label(h, bins - 1))
        } else {
            (fmt_sig(h.edges[0], 4), fmt_sig(h.edges[bins], 4))
        };
        let _ = write!(
            s,
            r#"<text x="{LEFT}" y="{ly}">{}</text><text x="{}" y="{ly}" text-anchor="end">{}</text>"#,
            Escaped(&first),
            r1(LEFT + pw),
            Escaped(&last)
        );
    }
    let _ = write!(
        s,
        r#"<text class="t" x="{}" y="{}" text-anchor="middle">{}</text></svg>"#,
        r1(LEFT + pw / 2.0),
        r1(H - 4.0),
        if h.categorical {
            format!("category ({bins})")
        } else {
            "value".to_owned()
        }
    );
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// view model handed to the template: strings already formatted

#[derive(Serialize)]
struct PageView {
    run_id: String,
    generated_at: String,
    reference: PeriodView,
    current: PeriodView,
    model_version: String,
    feature_set: String,
    dataset_drift: bool,
    n_drifted: usize,
    n_columns: usize,
    drift_share: String,
    drift_share_threshold: String,
    columns: Vec<ColumnView>,
    prediction: Option<ColumnView>,
    rollout: Vec<ColumnView>,
    target: Option<ColumnView>,
    quality: Option<QualityView>,
}

#[derive(Serialize)]
struct PeriodView {
    label: String,
    start: String,
    end: String,
    rows: String,
}

#[derive(Serialize)]
struct ColumnView {
    anchor: String,
    name: String,
    kind: String,
    method: String,
    method_label: String,
    stat_kind: &'static str,
    statistic: String,
    threshold: String,
    drifted: bool,
    psi: String,
    reference_mean: String,
    current_mean: String,
    reference_nulls: String,
    current_nulls: String,
    svg: String,
}

#[derive(Serialize)]
struct QualityView {
    labeled_rows: String,
    fraud_rows: String,
    fraud_rate: String,
    metrics: Vec<MetricView>,
}

#[derive(Serialize)]
struct MetricView {
    name: &'static str,
    now: String,
    test: String,
    delta: String,
    worse: bool,
}

impl PeriodView {
    fn new(p: &Period) -> Self {
        PeriodView {
            label: p.label.clone(),
            start: p.start.clone(),
            end: p.end.clone(),
            rows: fmt_int(p.rows),
        }
    }
}

impl ColumnView {
    fn new(c: &ColumnReport, anchor: String) -> Result<Self, ReportError> {
        Ok(ColumnView {
            anchor,
            name: c.name.clone(),
            kind: c.kind.clone(),
            method: c.method.clone(),
            method_label: method_label(&c.method),
            stat_kind: if is_p_value(&c.method) {
                "p-value"
            } else {
                "distance"
            },
            statistic: fmt_sig(c.statistic, 6),
            threshold: fmt_sig(c.threshold, 6),
            drifted: c.drifted,
            psi: fmt_sig(c.psi, 6),
            reference_mean: fmt_sig(c.reference_mean, 6),
            current_mean: fmt_sig(c.current_mean, 6),
            reference_nulls: fmt_int(c.reference_nulls),
            current_nulls: fmt_int(c.current_nulls),
            svg: histogram_svg(&c.name, &c.histogram)?,
        })
    }
}

impl QualityView {
    fn new(q: &LiveQuality) -> Self {
        let metric = |name, now: Option<f64>, test: Option<f64>| {
            let (delta, worse) = match (now, test) {
                (Some(n), Some(t)) if (n - t).is_finite() => {
                    let d = n - t;
                    let sign = if d > 0.0 {
                        "+"
                    } else if d < 0.0 {
                        "\u{2212}"
                    } else {
                        "±"
                    };
                    (format!("{sign}{}", fmt_sig(d.abs(), 4)), d < 0.0)
                }
                _ => ("n/a".to_owned(), false),
            };
            MetricView {
                name,
                now: fmt_opt(now, 4),
                test: fmt_opt(test, 4),
                delta,
                worse,
            }
        };
        QualityView {
            labeled_rows: fmt_int(q.labeled_rows),
            fraud_rows: fmt_int(q.fraud_rows),
            fraud_rate: if q.labeled_rows == 0 {
                "n/a".to_owned()
            } else {
                fmt_pct(q.fraud_rows as f64 / q.labeled_rows as f64)
            },
            metrics: vec![
                metric("ROC AUC", q.auc_roc, q.test_auc_roc),
                metric(
                    "Average precision",
                    q.average_precision,
                    q.test_average_precision,
                ),
            ],
        }
    }
}

impl PageView {
    fn new(r: &DriftReport) -> Result<Self, ReportError> {
        let columns = r
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| ColumnView::new(c, format!("col-{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PageView {
            run_id: r.run_id.clone(),
            generated_at: r.generated_at.clone(),
            reference: PeriodView::new(&r.reference),
            current: PeriodView::new(&r.current),
            model_version: r
                .model_version
                .map_or_else(|| "none".to_owned(), |v| v.to_string()),
            feature_set: r.feature_set.clone(),
            dataset_drift: r.dataset_drift,
            n_drifted: r.n_drifted(),
            n_columns: r.columns.len(),
            drift_share: fmt_pct(r.drift_share),
            drift_share_threshold: fmt_pct(r.drift_share_threshold),
            columns,
            prediction: r
                .prediction
                .as_ref()
                .map(|c| ColumnView::new(c, "prediction".to_owned()))
                .transpose()?,
            rollout: r
                .rollout
                .iter()
                .enumerate()
                .map(|(i, c)| ColumnView::new(c, format!("rollout-{i}")))
                .collect::<Result<Vec<_>, _>>()?,
            target: r
                .target
                .as_ref()
                .map(|c| ColumnView::new(c, "target".to_owned()))
                .transpose()?,
            quality: r.quality.as_ref().map(QualityView::new),
        })
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny deterministic generator (Numerical Recipes LCG), uniform in [0, 1).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Roughly normal (Irwin-Hall with 12 draws).
        fn normal(&mut self, mean: f64, sd: f64) -> f64 {
            let s: f64 = (0..12).map(|_| self.next()).sum();
            mean + sd * (s - 6.0)
        }
    }

    fn mean(xs: &[f64]) -> f64 {
        let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        v.iter().sum::<f64>() / v.len() as f64
    }

    fn column(
        name: &str,
        categorical: bool,
        rng: &mut Lcg,
        shift: f64,
        drifted: bool,
    ) -> ColumnReport {
        let n = 2000;
        let (reference, current): (Vec<f64>, Vec<f64>) = if categorical {
            let cats = if name.contains("merchant") { 45.0 } else { 6.0 };
            let draw = |rng: &mut Lcg, skew: f64| (rng.next().powf(1.0 + skew) * cats).floor();
            (
                (0..n).map(|_| draw(rng, 0.0)).collect(),
                (0..n).map(|_| draw(rng, shift)).collect(),
            )
        } else {
            (
                (0..n).map(|_| rng.normal(100.0, 15.0)).collect(),
                (0..n)
                    .map(|i| {
                        if i % 97 == 0 {
                            f64::NAN
                        } else {
                            rng.normal(100.0 + 15.0 * shift, 15.0 * (1.0 + shift / 2.0))
                        }
                    })
                    .collect(),
            )
        };
        let histogram = histogram(&reference, &current, categorical, 20);
        let (method, statistic, threshold) = match (categorical, drifted) {
            (true, true) => ("chisquare", 1.3e-9 * (1.0 + rng.next()), 0.05),
            (true, false) => ("chisquare", 0.2 + 0.7 * rng.next(), 0.05),
            (false, true) => ("wasserstein", 0.1 + rng.next(), 0.1),
            (false, false) => ("wasserstein", 0.09 * rng.next(), 0.1),
        };
        ColumnReport {
            name: name.to_owned(),
            kind: if categorical {
                "categorical"
            } else {
                "numerical"
            }
            .to_owned(),
            method: method.to_owned(),
            statistic,
            threshold,
            drifted,
            psi: 0.02 + shift * 0.3,
            reference_nulls: reference.iter().filter(|x| !x.is_finite()).count() as u64,
            current_nulls: current.iter().filter(|x| !x.is_finite()).count() as u64,
            reference_mean: mean(&reference),
            current_mean: mean(&current),
            histogram,
        }
    }

    /// 15 columns, 7 drifted; names include one that tries HTML injection, one statistic NaN.
    fn sample_report() -> DriftReport {
        let mut rng = Lcg(42);
        let specs: [(&str, bool, f64, bool); 15] = [
            ("amount", false, 0.8, true),
            ("amount_log", false, 0.6, true),
            ("hour_of_day", false, 0.0, false),
            ("day_of_week", true, 0.0, false),
            ("merchant_category", true, 1.5, true),
            ("card_age_days", false, 0.05, false),
            ("customer_txn_count_24h", false, 1.2, true),
            ("customer_amount_mean_7d", false, 0.02, false),
            ("terminal_fraud_rate_28d", false, 0.9, true),
            ("terminal_txn_count_7d", false, 0.0, false),
            ("distance_from_home_km", false, 0.03, false),
            ("is_online", true, 0.7, true),
            ("<script>alert(1)</script>", false, 0.0, false),
            ("device_risk", false, 0.5, true),
            ("velocity_1h", false, 0.01, false),
        ];
        let mut columns: Vec<ColumnReport> = specs
            .iter()
            .map(|&(n, cat, shift, d)| column(n, cat, &mut rng, shift, d))
            .collect();
        columns[9].statistic = f64::NAN;
        columns[10].psi = f64::INFINITY;
        let mut prediction = column("risk_score", false, &mut rng, 0.4, true);
        prediction.method = "psi".to_owned();
        prediction.statistic = 0.31;
        prediction.threshold = 0.2;
        let mut target = column("is_fraud", true, &mut rng, 0.3, false);
        target.method = "z".to_owned();
        DriftReport {
            run_id: "drift-20180801T020000Z-7f3a".to_owned(),
            generated_at: "2018-08-01T02:00:13Z".to_owned(),
            reference: Period {
                label: "champion (2018-07-01..2018-07-24)".to_owned(),
                start: "2018-07-01".to_owned(),
                end: "2018-07-24".to_owned(),
                rows: 1_234_567,
            },
            current: Period {
                label: "2018-07-25..2018-07-31".to_owned(),
                start: "2018-07-25".to_owned(),
                end: "2018-07-31".to_owned(),
                rows: 356_201,
            },
            model_version: Some(12),
            feature_set: "txn_features_v3".to_owned(),
            drift_share_threshold: 0.5,
            drift_share: 7.0 / 15.0,
            dataset_drift: false,
            columns,
            prediction: Some(prediction),
            rollout: Vec::new(),
            target: Some(target),
            quality: Some(LiveQuality {
                labeled_rows: 48_210,
                fraud_rows: 412,
                auc_roc: Some(0.861),
                average_precision: Some(0.402),
                test_auc_roc: Some(0.874),
                test_average_precision: Some(0.455),
            }),
        }
    }

    #[test]
    fn a_rollout_section_shows_each_candidate_against_the_champion() {
        let mut report = sample_report();
        let mut rng = Lcg(7);
        report.rollout.push(column(
            "canary_score (version 13) vs champion_score",
            false,
            &mut rng,
            0.2,
            false,
        ));
        let html = report.to_html().expect("html");
        // 15 columns + prediction + target + the canary.
        assert_eq!(html.matches("<svg").count(), 18);
        assert!(html.contains(r#"id="rollout-drift""#), "no rollout section");
        assert!(html.contains("canary_score (version 13) vs champion_score"));
        // It reads back, and a report without it (written before rollouts) still reads.
        let json = report.to_json().expect("json");
        let back: DriftReport = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back.rollout.len(), 1);
        let mut old: serde_json::Value = serde_json::from_str(&json).expect("json");
        if let Some(o) = old.as_object_mut() {
            o.remove("rollout");
        }
        let old: DriftReport = serde_json::from_value(old).expect("reads without rollout");
        assert!(old.rollout.is_empty());
    }

    #[test]
    fn renders_sample_report() {
        let report = sample_report();
        assert_eq!(report.n_drifted(), 7);
        let html = report.to_html().unwrap();
        assert!(html.len() < 500 * 1024, "page is {} bytes", html.len());
        // 15 columns + prediction + target.
        assert_eq!(html.matches("<svg").count(), 17);
        assert_eq!(html.matches(r#"role="img""#).count(), 17);
        assert!(html.contains("No dataset drift"));
        assert!(html.contains("7 of 15 columns drifted, 46.7\u{a0}%, threshold 50\u{a0}%"));
        assert!(html.contains("txn_features_v3"));
        assert!(html.contains("1,234,567"));
        assert!(html.contains("champion (2018-07-01..2018-07-24)"));
        // Self-contained: nothing fetched, nothing run.
        for needle in ["http://", "https://", "<script", "<link", "@import", "url("] {
            assert!(!html.contains(needle), "page contains {needle}");
        }
    }

    #[test]
    fn verdict_follows_dataset_drift() {
        let mut report = sample_report();
        report.dataset_drift = true;
        report.drift_share = 0.6;
        report.drift_share_threshold = 0.5;
        let html = report.to_html().unwrap();
        assert!(html.contains("Dataset drift detected"));
        assert!(html.contains(r#"class="panel verdict drift""#));
        assert!(html.contains("60\u{a0}%, threshold 50\u{a0}%"));
        assert!(!html.contains("No dataset drift"));
    }

    #[test]
    fn escapes_column_names() {
        let html = sample_report().to_html().unwrap();
        assert!(!html.contains("<script"));
        assert!(!html.contains("alert(1)</"));
        // Table and card heading (the template) and the SVG aria-label (written here): one escaper.
        assert!(html.contains(">&lt;script&gt;alert(1)&lt;/script&gt;</a>"));
        assert!(html.contains("Histogram of &lt;script&gt;alert(1)&lt;/script&gt;"));

        let mut report = sample_report();
        report.run_id = r#""><img src=x onerror=alert(1)>"#.to_owned();
        report.columns[0].histogram = histogram(&[1.0, 2.0], &[2.0], true, 20);
        report.columns[0].histogram.edges[0] = f64::NAN;
        let html = report.to_html().unwrap();
        assert!(!html.contains("<img"));
    }

    #[test]
    fn non_finite_values_render_na_and_serialize_null() {
        let mut report = sample_report();
        report.drift_share = f64::NAN;
        report.columns[0].statistic = f64::NAN;
        report.columns[0].threshold = f64::INFINITY;
        report.columns[0].reference_mean = f64::NEG_INFINITY;
        report.columns[0].histogram.reference[0] = f64::NAN;
        report.quality.as_mut().unwrap().auc_roc = Some(f64::NAN);
        let html = report.to_html().unwrap();
        assert!(html.contains("n/a"));
        assert!(
            !html.contains("NaN") && !html.contains(">inf"),
            "raw non-finite in page"
        );
        let row = &html[html.find(r##"href="#col-0""##).unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert_eq!(row.matches(">n/a<").count(), 3, "{row}");

        let json = report.to_json().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(v["drift_share"].is_null());
        assert!(v["columns"][0]["statistic"].is_null());
        assert!(v["columns"][0]["threshold"].is_null());
        assert!(v["columns"][0]["reference_mean"].is_null());
        assert!(v["columns"][0]["histogram"]["reference"][0].is_null());
        assert!(v["quality"]["auc_roc"].is_null());
        let back: DriftReport = serde_json::from_str(&json).unwrap();
        assert!(back.columns[0].statistic.is_nan());
        assert!(back.drift_share.is_nan());
        assert_eq!(back.quality.unwrap().auc_roc, None);
    }

    #[test]
    fn json_round_trips() {
        let report = sample_report();
        let json = report.to_json().unwrap();
        let back: DriftReport = serde_json::from_str(&json).unwrap();
        // NaN != NaN, so compare the serialized forms. serde_json parses floats to within an ulp
        // unless its `float_roundtrip` feature is on, hence the tolerance.
        assert_json_close(
            &serde_json::from_str(&back.to_json().unwrap()).unwrap(),
            &serde_json::from_str(&json).unwrap(),
            "$",
        );
        assert!(back.columns[9].statistic.is_nan() && back.columns[10].psi.is_nan());
        assert_eq!(back.columns[12].name, "<script>alert(1)</script>");
        assert_eq!(back.columns[4].histogram.edges.len(), CATEGORY_CAP + 1);
        // Optional sections may be absent.
        let mut minimal: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in ["prediction", "target", "quality", "model_version"] {
            minimal.as_object_mut().unwrap().remove(key);
        }
        let minimal: DriftReport = serde_json::from_value(minimal).unwrap();
        assert!(minimal.prediction.is_none() && minimal.quality.is_none());
        let html = minimal.to_html().unwrap();
        assert_eq!(html.matches("<svg").count(), 15);
    }

    fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value, path: &str) {
        use serde_json::Value as J;
        match (a, b) {
            (J::Number(x), J::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!(
                    (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                    "{path}: {x} != {y}"
                );
            }
            (J::Array(x), J::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{path}");
                for (i, (x, y)) in x.iter().zip(y).enumerate() {
                    assert_json_close(x, y, &format!("{path}[{i}]"));
                }
            }
            (J::Object(x), J::Object(y)) => {
                assert_eq!(
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>(),
                    "{path}"
                );
                for (k, x) in x {
                    assert_json_close(x, &y[k], &format!("{path}.{k}"));
                }
            }
            _ => assert_eq!(a, b, "{path}"),
        }
    }

    fn assert_sums_to_one(h: &Histogram) {
        for side in [&h.reference, &h.current] {
            let sum: f64 = side.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "sum {sum}");
        }
    }

    #[test]
    fn histogram_shares_sum_to_one() {
        for c in &sample_report().columns {
            assert_sums_to_one(&c.histogram);
        }
        let mut rng = Lcg(7);
        let r: Vec<f64> = (0..1000).map(|_| rng.normal(0.0, 1.0)).collect();
        let c: Vec<f64> = (0..700).map(|_| rng.normal(0.5, 2.0)).collect();
        let h = histogram(&r, &c, false, 20);
        assert_eq!(h.edges.len(), 21);
        assert_eq!(h.reference.len(), 20);
        assert_sums_to_one(&h);
        let lo = r.iter().chain(&c).copied().fold(f64::INFINITY, f64::min);
        let hi = r
            .iter()
            .chain(&c)
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!((h.edges[0], h.edges[20]), (lo, hi));
        assert!(h.edges.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn histogram_edge_cases() {
        // Constant: one bin.
        let h = histogram(&[3.0, 3.0], &[3.0, f64::NAN], false, 20);
        assert_eq!(h.edges, vec![3.0, 3.0]);
        assert_eq!(
            (h.reference.clone(), h.current.clone()),
            (vec![1.0], vec![1.0])
        );
        // No data at all; one side empty.
        let h = histogram(&[], &[f64::NAN], false, 20);
        assert!(h.edges.is_empty() && h.reference.is_empty());
        let h = histogram(&[1.0, 2.0], &[], false, 4);
        assert_eq!(h.current, vec![0.0; 4]);
        assert_eq!(h.reference, vec![0.5, 0.0, 0.0, 0.5]);
        // Extreme finite range does not overflow.
        let h = histogram(&[-f64::MAX, f64::MAX], &[0.0], false, 2);
        assert!(h.edges.iter().all(|e| e.is_finite()));
        assert_eq!(h.reference, vec![0.5, 0.5]);
        assert_eq!(h.current, vec![0.0, 1.0]);
        // Categorical: sorted distinct values.
        let h = histogram(&[2.0, 1.0, 1.0, 5.0], &[5.0, 5.0, 7.0], true, 20);
        assert_eq!(h.edges, vec![1.0, 2.0, 5.0, 7.0]);
        assert_eq!(h.reference, vec![0.5, 0.25, 0.25, 0.0]);
        assert_eq!(h.current, vec![0.0, 0.0, 2.0 / 3.0, 1.0 / 3.0]);
        // Categorical cap: 30 most frequent + other.
        let r: Vec<f64> = (0..100)
            .flat_map(|v| std::iter::repeat_n(v as f64, 100 - v))
            .collect();
        let h = histogram(&r, &[99.0], true, 20);
        assert_eq!(h.edges.len(), CATEGORY_CAP + 1);
        assert_eq!(
            &h.edges[..CATEGORY_CAP],
            &(0..30).map(|v| v as f64).collect::<Vec<_>>()[..]
        );
        assert!(h.edges[CATEGORY_CAP].is_nan());
        assert_eq!(h.current[CATEGORY_CAP], 1.0);
        assert_sums_to_one(&h);
        // Each histogram renders.
        let mut report = sample_report();
        report.columns[0].histogram = h;
        report.columns[1].histogram = histogram(&[], &[], false, 20);
        report.columns[2].histogram = histogram(&[1.0], &[1.0], false, 20);
        let html = report.to_html().unwrap();
        assert!(html.contains("no data"));
        assert!(html.contains("<title>other: reference"));
    }

    #[test]
    fn inconsistent_histogram_is_an_error() {
        let mut report = sample_report();
        report.columns[3].histogram.current.pop();
        assert!(matches!(
            report.to_html(),
            Err(ReportError::Histogram { .. })
        ));
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_sig(0.123456789, 6), "0.123457");
        assert_eq!(fmt_sig(123456.7, 6), "123457");
        assert_eq!(fmt_sig(0.05, 6), "0.05");
        assert_eq!(fmt_sig(-2.5, 6), "-2.5");
        assert_eq!(fmt_sig(1.3e-9, 6), "1.3e-9");
        assert_eq!(fmt_sig(2.5e7, 6), "2.5e7");
        assert_eq!(fmt_sig(f64::NAN, 6), "n/a");
        assert_eq!(fmt_sig(f64::NEG_INFINITY, 6), "n/a");
        assert_eq!(fmt_pct(7.0 / 15.0), "46.7\u{a0}%");
        assert_eq!(fmt_pct(0.5), "50\u{a0}%");
        assert_eq!(fmt_int(0), "0");
        assert_eq!(fmt_int(1234), "1,234");
        assert_eq!(fmt_int(1_234_567), "1,234,567");
        assert_eq!(r1(3.04), "3");
        assert_eq!(r1(-0.01), "0");
        assert_eq!(r1(12.35), "12.3");
    }

    /// Writes the sample page (and its JSON) for a look in a browser:
    /// `FRAUDLAKE_SAMPLE_REPORT=/tmp/sample_report.html cargo test write_sample_report`.
    #[test]
    fn write_sample_report() {
        if let Ok(path) = std::env::var("FRAUDLAKE_SAMPLE_REPORT") {
            let report = sample_report();
            std::fs::write(&path, report.to_html().unwrap()).unwrap();
            std::fs::write(format!("{path}.json"), report.to_json().unwrap()).unwrap();
        }
    }
}
