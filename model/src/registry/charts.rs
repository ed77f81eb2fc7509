//! The model card's charts: the curves a version stores ([`crate::metrics::Curves`]) drawn as
//! inline SVG, one `<svg>` per curve with its frame, grid, ticks, axis titles, a dashed
//! reference line and the curve as one `<polyline>`. Self-contained: presentation attributes on
//! the elements, no stylesheet, script or external asset, so a chart copied out of the page
//! still draws. Every text is escaped with [`crate::html::Escaped`], the pages' one escaper.

use std::fmt::Write;

use crate::html::Escaped;
use crate::metrics::Curves;
use crate::protocol::Metrics;

/// The size of one chart and the margins around its plot area (SVG user units = CSS px).
const W: f64 = 320.0;
const H: f64 = 260.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 40.0;

/// One chart: axes from 0 to `x_max` and 0 to `y_max`, in data units.
struct Chart<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    x_max: f64,
    y_max: f64,
    /// Decimals of the tick labels of each axis.
    x_decimals: usize,
    y_decimals: usize,
    points: Vec<(f64, f64)>,
    /// A dashed reference line (what a random ranking scores), from one point to another.
    reference: Option<((f64, f64), (f64, f64))>,
    /// A marked point, with its tooltip.
    mark: Option<((f64, f64), String)>,
    /// The metric the curve stands for, right of the title.
    note: String,
}

fn metric(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

/// The charts of the curves `curves` defines (ROC, precision-recall, card precision@k), the
/// version's metrics `m` beside their titles: `<svg>` elements one after the other, or `None`
/// when no curve has two points.
pub(crate) fn charts(curves: &Curves, m: &Metrics) -> Option<String> {
    let mut out = String::new();
    if curves.roc.len() >= 2 {
        out.push_str(&svg(&Chart {
            title: "ROC curve",
            x_label: "false positive rate",
            y_label: "true positive rate",
            x_max: 1.0,
            y_max: 1.0,
            x_decimals: 1,
            y_decimals: 1,
            points: curves.roc.clone(),
            reference: Some(((0.0, 0.0), (1.0, 1.0))),
            mark: None,
            note: format!("AUC {}", metric(m.auc_roc)),
        }));
    }
    if let (true, Some(&(_, share))) = (
        curves.precision_recall.len() >= 2,
        curves.precision_recall.last(),
    ) {
        out.push_str(&svg(&Chart {
            title: "Precision-recall curve",
            x_label: "recall",
            y_label: "precision",
            x_max: 1.0,
            y_max: 1.0,
            x_decimals: 1,
            y_decimals: 1,
            points: curves.precision_recall.clone(),
            // Flagging everything: precision = the share of frauds, at every recall.
            reference: Some(((0.0, share), (1.0, share))),
            mark: None,
            note: format!("AP {}", metric(m.average_precision)),
        }));
    }
    if let (true, Some(&(last_k, _))) = (
        curves.card_precision.len() >= 2,
        curves.card_precision.last(),
    ) {
        let highest = curves
            .card_precision
            .iter()
            .map(|&(_, p)| p)
            .fold(0.0, f64::max);
        out.push_str(&svg(&Chart {
            title: "Card precision@k",
            x_label: "k: cards checked per day",
            y_label: "card precision@k",
            x_max: last_k as f64,
            // The next tenth above the highest value: the curve fills the plot.
            y_max: ((highest * 10.0).ceil() / 10.0).clamp(0.1, 1.0),
            x_decimals: 0,
            y_decimals: 2,
            points: curves
                .card_precision
                .iter()
                .map(|&(k, p)| (k as f64, p))
                .collect(),
            reference: None,
            mark: curves
                .card_precision
                .iter()
                .find(|&&(k, _)| k == 100)
                .map(|&(k, p)| ((k as f64, p), format!("k = {k}: {p:.4}"))),
            note: format!("CP@100 {}", metric(m.card_precision_at_100)),
        }));
    }
    (!out.is_empty()).then_some(out)
}

/// One decimal: the charts' coordinates.
fn r1(v: f64) -> String {
    format!("{v:.1}")
}

fn svg(c: &Chart) -> String {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let bottom = TOP + ph;
    let x = |v: f64| LEFT + (v / c.x_max).clamp(0.0, 1.0) * pw;
    let y = |v: f64| bottom - (v / c.y_max).clamp(0.0, 1.0) * ph;
    let mut s = String::with_capacity(2500 + c.points.len() * 12);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}" font-family="system-ui,sans-serif" font-size="11" fill="#333">"##,
        Escaped(c.title)
    );
    let _ = write!(
        s,
        r#"<title>{}</title><text x="{LEFT}" y="17" font-size="13" font-weight="600">{}</text><text x="{}" y="17" text-anchor="end">{}</text>"#,
        Escaped(c.title),
        Escaped(c.title),
        W - RIGHT,
        Escaped(&c.note)
    );
    // Grid at the quarters, then the frame over it.
    let mut grid = String::new();
    for f in [0.25, 0.5, 0.75] {
        let _ = write!(
            grid,
            "M{},{TOP}V{bottom}M{LEFT},{}H{}",
            r1(x(c.x_max * f)),
            r1(y(c.y_max * f)),
            LEFT + pw
        );
    }
    let _ = write!(
        s,
        r##"<path d="{grid}" stroke="#e4e4e4" fill="none"/><rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
    );
    // Tick labels at 0, half and the end of each axis.
    for f in [0.0, 0.5, 1.0] {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{:.*}</text><text x="{}" y="{}" text-anchor="end">{:.*}</text>"#,
            r1(x(c.x_max * f)),
            r1(bottom + 14.0),
            c.x_decimals,
            c.x_max * f,
            r1(LEFT - 4.0),
            r1(y(c.y_max * f) + 4.0),
            c.y_decimals,
            c.y_max * f
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(12,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        r1(LEFT + pw / 2.0),
        r1(H - 6.0),
        Escaped(c.x_label),
        r1(TOP + ph / 2.0),
        Escaped(c.y_label)
    );
    if let Some(((x1, y1), (x2, y2))) = c.reference {
        let _ = write!(
            s,
            r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-dasharray="4 3"/>"##,
            r1(x(x1)),
            r1(y(y1)),
            r1(x(x2)),
            r1(y(y2))
        );
    }
    let points: Vec<String> = c
        .points
        .iter()
        .map(|&(px, py)| format!("{},{}", r1(x(px)), r1(y(py))))
        .collect();
    let _ = write!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f5fa8" stroke-width="1.6" stroke-linejoin="round"/>"##,
        points.join(" ")
    );
    if let Some(((mx, my), tip)) = &c.mark {
        let _ = write!(
            s,
            r##"<circle cx="{}" cy="{}" r="3.5" fill="#c0392b"><title>{}</title></circle>"##,
            r1(x(*mx)),
            r1(y(*my)),
            Escaped(tip)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Curves with every chart drawn: a small ROC and PR curve, card precision for k = 1..=120.
    pub(crate) fn curves() -> Curves {
        Curves {
            roc: vec![(0.0, 0.0), (0.1, 0.6), (0.4, 0.9), (1.0, 1.0)],
            precision_recall: vec![(0.0, 1.0), (0.5, 0.8), (1.0, 0.2)],
            card_precision: (1..=120)
                .map(|k| (k, 0.5 / (1.0 + k as f64 / 50.0)))
                .collect(),
        }
    }

    /// Checks that `xml` is well-formed as far as the markup these pages write goes: every
    /// element closed in order, attribute values double-quoted without `<`, text and values
    /// without a raw `<`, `>` or a `&` that does not start an entity. Returns the element names
    /// in document order.
    pub(crate) fn well_formed(xml: &str) -> Result<Vec<String>, String> {
        fn entities(text: &str) -> Result<(), String> {
            if text.contains('>') {
                return Err(format!("a raw '>' in {text:?}"));
            }
            for (i, _) in text.match_indices('&') {
                let rest = &text[i + 1..];
                let end = rest
                    .find(';')
                    .ok_or_else(|| format!("'&' without ';' in {text:?}"))?;
                let name = &rest[..end];
                let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
                    || name
                        .strip_prefix("#x")
                        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
                    || name
                        .strip_prefix('#')
                        .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
                if !ok {
                    return Err(format!("unknown entity '&{name};' in {text:?}"));
                }
            }
            Ok(())
        }
        let mut open: Vec<&str> = Vec::new();
        let mut names = Vec::new();
        let mut rest = xml;
        while let Some(start) = rest.find('<') {
            entities(&rest[..start])?;
            let end = rest[start..].find('>').ok_or("a tag is not closed")? + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match open.pop() {
                    Some(o) if o == name => continue,
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            }
            let (body, empty) = match tag.strip_suffix('/') {
                Some(b) => (b, true),
                None => (tag, false),
            };
            let name = body
                .split(|c: char| c.is_ascii_whitespace())
                .next()
                .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()))
                .ok_or_else(|| format!("a bad element name in <{tag}>"))?;
            let mut attrs = body[name.len()..].trim_start();
            while !attrs.is_empty() {
                let (key, value) = attrs
                    .split_once("=\"")
                    .ok_or_else(|| format!("an attribute without a quoted value in <{tag}>"))?;
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(format!("a bad attribute name {key:?} in <{tag}>"));
                }
                let close = value
                    .find('"')
                    .ok_or_else(|| format!("an unterminated value in <{tag}>"))?;
                if value[..close].contains('<') {
                    return Err(format!("a '<' in an attribute value of <{tag}>"));
                }
                entities(&value[..close])?;
                let after = &value[close + 1..];
                if !after.is_empty() && !after.starts_with(|c: char| c.is_ascii_whitespace()) {
                    return Err(format!("attributes run together in <{tag}>"));
                }
                attrs = after.trim_start();
            }
            names.push(name.to_string());
            if !empty {
                open.push(name);
            }
        }
        entities(rest)?;
        match open.last() {
            Some(o) => Err(format!("<{o}> is never closed")),
            None => Ok(names),
        }
    }

    #[test]
    fn the_checker_refuses_broken_markup() {
        assert!(well_formed(r#"<svg a="1"><g><line x="2"/></g></svg>"#).is_ok());
        for bad in [
            "<svg><g></svg></g>",
            "<svg>",
            r#"<svg a=1></svg>"#,
            r#"<svg a="1"b="2"></svg>"#,
            "<svg>a < b</svg>",
            "<svg>a & b</svg>",
            r#"<svg a="x<y"></svg>"#,
        ] {
            assert!(well_formed(bad).is_err(), "{bad}");
        }
        assert!(well_formed("<svg>a &amp; b &#x27; &#39;</svg>").is_ok());
    }

    #[test]
    fn three_well_formed_charts_with_their_curves() {
        let m = Metrics {
            auc_roc: Some(0.87654),
            average_precision: Some(0.6),
            card_precision_at_100: Some(0.3),
            ..Metrics::default()
        };
        let svg = charts(&curves(), &m).expect("charts");
        let names = well_formed(&svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
        assert_eq!(names.iter().filter(|n| *n == "svg").count(), 3);
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 3);
        // The ROC's four points: x = 46 + fpr * 260, y = 220 - tpr * 192.
        assert!(
            svg.contains(
                r#"<polyline points="46.0,220.0 72.0,104.8 150.0,47.2 306.0,28.0" fill="none""#
            ),
            "{svg}"
        );
        // The chance lines: the diagonal, and precision = the share of frauds (0.2).
        assert!(svg.contains(r#"<line x1="46.0" y1="220.0" x2="306.0" y2="28.0""#));
        assert!(svg.contains(r#"<line x1="46.0" y1="181.6" x2="306.0" y2="181.6""#));
        assert!(svg.contains(">AUC 0.8765</text>"), "{svg}");
        assert!(svg.contains(">AP 0.6000</text>") && svg.contains(">CP@100 0.3000</text>"));
        // The card curve: 120 points, k = 100 marked; its axis ends at k = 120.
        let card = &svg[svg.rfind("<svg").expect("three")..];
        let polyline = card
            .split("<polyline points=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .expect("points");
        assert_eq!(polyline.split(' ').count(), 120);
        assert!(card.contains("<title>k = 100: 0.1667</title>"), "{card}");
        assert!(card.contains(">120</text>"), "{card}");
        assert!(!svg.contains("<script") && !svg.contains("href"));
    }

    #[test]
    fn undefined_curves_are_left_out() {
        let mut c = curves();
        c.roc.clear();
        c.precision_recall.truncate(1);
        let svg = charts(&c, &Metrics::default()).expect("the card curve");
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.contains("Card precision@k") && svg.contains(">CP@100 n/a</text>"));
        assert_eq!(charts(&Curves::default(), &Metrics::default()), None);
    }
}
