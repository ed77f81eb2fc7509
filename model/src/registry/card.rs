//! Model cards: what an analyst or auditor needs to know about one version (metrics, the
//! features that matter, the data it came from, the exact feature SQL), as Markdown for the
//! repository and as a self-contained HTML page.

use std::fmt::Write;

use super::VersionRecord;

fn fmt_metric(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

/// The card's content as (section title, rows of (key, value)).
fn sections(r: &VersionRecord) -> Vec<(&'static str, Vec<(String, String)>)> {
    let m = &r.metrics;
    let l = &r.lineage;
    vec![
        (
            "Evaluation (handbook protocol: known compromised cards removed)",
            vec![
                ("AUC ROC".into(), fmt_metric(m.auc_roc)),
                ("Average precision".into(), fmt_metric(m.average_precision)),
                (
                    "Card precision@100".into(),
                    fmt_metric(m.card_precision_at_100),
                ),
                ("Log loss".into(), fmt_metric(m.log_loss)),
                ("Brier score".into(), fmt_metric(m.brier_score)),
                (
                    format!("Precision at {}", m.threshold),
                    fmt_metric(m.precision),
                ),
                (format!("Recall at {}", m.threshold), fmt_metric(m.recall)),
                (
                    "Test rows / frauds".into(),
                    format!("{} / {}", m.test_rows, m.test_frauds),
                ),
                (
                    "Rows of known compromised cards removed".into(),
                    m.known_cards_removed.to_string(),
                ),
            ],
        ),
        ("Lineage", {
            let mut rows = vec![
                (
                    "Training days".into(),
                    format!("{} .. {}", l.train_from, l.train_to),
                ),
                (
                    "Test days".into(),
                    format!("{} .. {}", l.test_from, l.test_to),
                ),
                (
                    "Training rows / frauds".into(),
                    format!("{} / {}", l.train_rows, l.train_frauds),
                ),
                ("Feature set (sha256)".into(), r.feature_set.clone()),
                (
                    "Artifact".into(),
                    format!("{} (sha256 {})", r.artifact, r.artifact_sha256),
                ),
            ];
            for t in &l.tables {
                rows.push((
                    format!("Delta table `{}`", t.table),
                    format!("version {}", t.version),
                ));
            }
            rows
        }),
        ("Labels", {
            let policy = if l.label_policy.is_empty() {
                "latest label wins (recorded before label precedence)".to_string()
            } else {
                l.label_policy.clone()
            };
            let total: i64 = l.labels_overridden.iter().map(|o| o.labels).sum();
            let mut rows = vec![
                ("Precedence (most trusted first)".into(), policy),
                (
                    "Labels overridden by a more trusted source".into(),
                    total.to_string(),
                ),
            ];
            for o in &l.labels_overridden {
                rows.push((
                    format!("Overridden: `{}`", o.source),
                    format!("{} labels, `{}` kept", o.labels, o.kept),
                ));
            }
            rows
        }),
        (
            "Training",
            vec![
                ("Boosting rounds".into(), r.rounds.to_string()),
                (
                    "Parameters".into(),
                    serde_json::to_string(&r.params).unwrap_or_default(),
                ),
                (
                    "Created".into(),
                    format!("{} by {}", r.created_at.to_rfc3339(), r.created_by),
                ),
                ("Note".into(), r.note.clone()),
            ],
        ),
        (
            "Feature importance (gain)",
            r.importance
                .iter()
                .map(|(name, gain)| (name.clone(), format!("{gain:.3}")))
                .collect(),
        ),
    ]
}

pub fn markdown(r: &VersionRecord) -> String {
    let mut out = format!("# fraudlake model v{}\n\n", r.version);
    for (title, rows) in sections(r) {
        let _ = writeln!(out, "## {title}\n\n| | |\n| --- | --- |");
        for (k, v) in rows {
            let _ = writeln!(
                out,
                "| {} | {} |",
                k.replace('|', "\\|"),
                v.replace('|', "\\|")
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "## Feature SQL\n\n```sql\n{}\n```",
        r.feature_sql.trim_end()
    );
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn html(r: &VersionRecord) -> String {
    let mut body = String::new();
    for (title, rows) in sections(r) {
        let _ = write!(body, "<h2>{}</h2><table>", escape(title));
        for (k, v) in rows {
            let _ = write!(
                body,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(&k),
                escape(&v)
            );
        }
        body.push_str("</table>");
    }
    let _ = write!(
        body,
        "<h2>Feature SQL</h2><pre>{}</pre>",
        escape(&r.feature_sql)
    );
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fraudlake model v{v}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;margin-bottom:1rem}}th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}\
         th{{background:#f4f4f4;font-weight:600}}pre{{background:#f8f8f8;padding:1rem;overflow:auto}}</style>\
         </head><body><h1>fraudlake model v{v}</h1>{body}</body></html>\n",
        v = r.version
    )
}
