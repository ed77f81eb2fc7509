//! Model cards: what an analyst or auditor needs to know about one version (metrics, the
//! features that matter, the data it came from, the exact feature SQL), as Markdown for the
//! repository and as a self-contained HTML page (a minijinja template, compiled into the
//! binary), with the ROC, precision-recall and card precision@k curves drawn as inline SVG
//! (`registry/charts.rs`).
//!
//! Where the curves come from: a card is rendered from the [`VersionRecord`] alone, at
//! registration ([`super::Registry::register`]) and again by every MLflow sync
//! (`mlflow::sync` uploads `card.html`), long after the test rows and their scores are gone.
//! Re-scoring the test days at render time would need the lake at the version's Delta versions
//! and its label policy, and could draw curves that disagree with the metrics beside them
//! (labels arrive late). So the curves are computed where the metrics are, from the same scored
//! test rows (`train::test`), cut to at most 200 points each
//! ([`crate::metrics::Curves::of`]: about 10 KB of JSON) and stored in the record
//! ([`VersionRecord::curves`], inside `model_versions.record`, so no new column). Records made
//! before them have none and their card has no charts.

use std::fmt::Write;

use super::{charts, VersionRecord};

/// The HTML card's template, compiled into the binary.
const TEMPLATE: &str = include_str!("../../templates/card.html");
const TEMPLATE_NAME: &str = "card.html";

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
                    if l.is_imported() {
                        "not known (trained outside fraudlake)".to_string()
                    } else {
                        format!("{} / {}", l.train_rows, l.train_frauds)
                    },
                ),
                ("Feature set (sha256)".into(), r.feature_set.clone()),
                (
                    "Artifact".into(),
                    format!("{} (sha256 {})", r.artifact, r.artifact_sha256),
                ),
            ];
            if let Some(file) = &l.imported_from {
                rows.push((
                    "Imported from".into(),
                    format!("{file} (`fraudlake models import`: trained outside fraudlake, training days as declared, evaluated here)"),
                ));
            }
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
                ("Model family".into(), r.model_family.name().to_string()),
                ("Boosting rounds".into(), r.rounds.to_string()),
                (
                    format!("{} parameters", r.params.family().library()),
                    if l.is_imported() {
                        "not known (imported)".to_string()
                    } else {
                        r.params
                            .values()
                            .iter()
                            .map(|(name, value)| format!("{name}={value}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
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
    if let Some(c) = r.curves.as_ref().filter(|c| !c.card_precision.is_empty()) {
        let _ = writeln!(
            out,
            "## Curves\n\nROC, precision-recall and card precision@k on the test days: charts in \
             card.html.\n\n| k | card precision@k |\n| --- | --- |"
        );
        for (k, p) in c
            .card_precision
            .iter()
            .filter(|(k, _)| [10, 25, 50, 100, 200, 500].contains(k))
        {
            let _ = writeln!(out, "| {k} | {p:.4} |");
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

/// The sentence above the charts: what they were computed on.
fn curves_note(r: &VersionRecord) -> String {
    let l = &r.lineage;
    let last_k = r
        .curves
        .as_ref()
        .and_then(|c| c.card_precision.last())
        .map_or(0, |&(k, _)| k);
    format!(
        "On the test days {} .. {} ({} rows, {} frauds; cards already known to be compromised \
         removed), at most {} points per curve; card precision@k for k = 1 .. {last_k} cards \
         checked a day, k = 100 (the handbook's) marked.",
        l.test_from,
        l.test_to,
        r.metrics.test_rows,
        r.metrics.test_frauds,
        crate::metrics::CURVE_POINTS
    )
}

/// The HTML card: `templates/card.html` rendered by [`crate::html`] (minijinja, auto-escaped).
/// Fails only if the template itself is broken.
pub fn html(r: &VersionRecord) -> Result<String, minijinja::Error> {
    let env = crate::html::environment(TEMPLATE_NAME, TEMPLATE)?;
    let mut page = env
        .get_template(TEMPLATE_NAME)?
        .render(minijinja::context! {
            version => r.version,
            sections => sections(r),
            feature_sql => &r.feature_sql,
            curves => r.curves.as_ref().and_then(|c| charts::charts(c, &r.metrics)),
            curves_note => curves_note(r),
        })?;
    // minijinja drops the template's last newline; the file ends with one, as text files do.
    page.push('\n');
    Ok(page)
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;
    use crate::dataset::{LabelOverride, TableVersion};
    use crate::params::TrainParams;
    use crate::protocol::{Metrics, Periods};
    use crate::registry::Lineage;

    /// A version record with every section filled (also the MLflow artifact's tests').
    pub(crate) fn record() -> VersionRecord {
        VersionRecord {
            version: 7,
            created_at: Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap(),
            created_by: "ci".into(),
            note: "<b>bold</b> & 'quoted' n/a".into(),
            feature_set: "abc123".into(),
            feature_sql: "SELECT amount / 2 AS half\nFROM tx WHERE a < b".into(),
            feature_names: vec!["half".into()],
            periods: Periods {
                train_start: NaiveDate::from_ymd_opt(2018, 4, 1).unwrap(),
                train_days: 7,
                delay_days: 7,
                test_days: 7,
            },
            params: TrainParams::default(),
            rounds: 3,
            metrics: Metrics {
                auc_roc: Some(0.87654),
                threshold: 0.5,
                test_rows: 10,
                test_frauds: 2,
                ..Metrics::default()
            },
            lineage: Lineage {
                tables: vec![TableVersion {
                    table: "features".into(),
                    version: 4,
                }],
                train_from: "2018-04-01".into(),
                train_to: "2018-04-07".into(),
                test_from: "2018-04-15".into(),
                test_to: "2018-04-21".into(),
                train_rows: 100,
                train_frauds: 5,
                test_rows: 10,
                test_frauds: 2,
                label_policy: String::new(),
                labels_overridden: vec![LabelOverride {
                    source: "api:k1".into(),
                    kept: "ingest:chargebacks.csv".into(),
                    labels: 1,
                }],
                imported_from: None,
            },
            model_family: crate::loaded::ModelFamily::XGBoost,
            importance: vec![("half".into(), 1.5)],
            artifact: "models/v7/model.json".into(),
            artifact_sha256: "ff".into(),
            curves: None,
        }
    }

    #[test]
    fn html_card_draws_the_stored_curves() {
        let r = VersionRecord {
            curves: Some(crate::registry::charts::tests::curves()),
            ..record()
        };
        let page = html(&r).expect("render");
        assert!(page.contains("<h2>Curves</h2>"), "{page}");
        assert!(page.contains("<p>On the test days 2018-04-15 .. 2018-04-21 (10 rows, 2 frauds;"));
        assert!(page.contains("k = 1 .. 120 cards checked a day"), "{page}");
        let start = page.find("<svg").expect("a chart");
        let end = page.rfind("</svg>").expect("a chart") + "</svg>".len();
        let names = crate::registry::charts::tests::well_formed(&page[start..end])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names.iter().filter(|n| *n == "svg").count(), 3);
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 3);
        // Self-contained: nothing fetched, nothing run.
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="));
        // The rest of the card is unchanged.
        assert!(page.contains("<tr><th>AUC ROC</th><td>0.8765</td></tr>"));
        let md = markdown(&r);
        assert!(md.contains("## Curves\n"), "{md}");
        assert!(md.contains("| 100 | 0.1667 |\n"), "{md}");
        assert!(!md.contains("| 500 |"), "{md}");
    }

    #[test]
    fn a_record_made_before_curves_loads_and_renders_without_them() {
        let mut json = serde_json::to_value(VersionRecord {
            curves: Some(crate::registry::charts::tests::curves()),
            ..record()
        })
        .expect("json");
        assert!(json.get("curves").is_some());
        json.as_object_mut().expect("an object").remove("curves");
        let old: VersionRecord = serde_json::from_value(json).expect("an old record reads");
        assert_eq!(old.curves, None);
        assert_eq!(old, record());
        let page = html(&old).expect("render");
        assert!(
            !page.contains("<svg") && !page.contains("<h2>Curves</h2>"),
            "{page}"
        );
        assert!(page.contains("<h2>Feature SQL</h2>"));
        assert!(!markdown(&old).contains("## Curves"));
        // A record without curves writes no `curves` key (older readers see what they knew).
        let json = serde_json::to_value(record()).expect("json");
        assert!(json.get("curves").is_none(), "{json}");
    }

    #[test]
    fn html_card_holds_every_section_escaped() {
        let page = html(&record()).expect("render");
        assert!(page.starts_with("<!doctype html>"), "{page}");
        assert!(page.ends_with("</html>\n"), "{page}");
        assert!(page.contains("<title>fraudlake model v7</title>"), "{page}");
        for (title, rows) in sections(&record()) {
            assert!(page.contains(&format!("<h2>{title}</h2>")), "{title}");
            for (k, v) in rows {
                let row = format!(
                    "<tr><th>{}</th><td>{}</td></tr>",
                    crate::html::Escaped(&k),
                    crate::html::Escaped(&v)
                );
                assert!(page.contains(&row), "{row} in {page}");
            }
        }
        assert!(page.contains("<tr><th>AUC ROC</th><td>0.8765</td></tr>"));
        assert!(page.contains("<tr><th>Test rows / frauds</th><td>10 / 2</td></tr>"));
        assert!(page.contains("<td>n/a</td>"));
        assert!(page.contains("<td>&lt;b&gt;bold&lt;/b&gt; &amp; &#x27;quoted&#x27; n/a</td>"));
        assert!(page.contains("<pre>SELECT amount / 2 AS half\nFROM tx WHERE a &lt; b</pre>"));
        assert!(!page.contains("<b>bold"));
    }

    #[test]
    fn the_card_names_the_family_and_its_parameters() {
        let xgboost = markdown(&record());
        assert!(xgboost.contains("| Model family | xgboost |"), "{xgboost}");
        assert!(
            xgboost.contains("| XGBoost parameters | n_estimators=200, max_depth=3, "),
            "{xgboost}"
        );
        let lightgbm = VersionRecord {
            model_family: crate::loaded::ModelFamily::LightGBM,
            params: TrainParams::defaults(crate::loaded::ModelFamily::LightGBM),
            ..record()
        };
        let md = markdown(&lightgbm);
        assert!(md.contains("| Model family | lightgbm |"), "{md}");
        assert!(
            md.contains(
                "| LightGBM parameters | n_estimators=300, num_leaves=31, learning_rate=0.05, \
                 min_data_in_leaf=100, feature_fraction=0.9, bagging_fraction=0.8, \
                 bagging_freq=1, is_unbalance=false, scale_pos_weight=1, lambda_l2=0, seed=0, "
            ),
            "{md}"
        );
    }

    #[test]
    fn markdown_card_escapes_table_cells() {
        let md = markdown(&record());
        assert!(md.starts_with("# fraudlake model v7\n"), "{md}");
        assert!(
            md.contains("| Overridden: `api:k1` | 1 labels, `ingest:chargebacks.csv` kept |"),
            "{md}"
        );
        assert!(md.ends_with("```sql\nSELECT amount / 2 AS half\nFROM tx WHERE a < b\n```\n"));
    }
}
