//! `fraudlake evaluate`: the Fraud Detection Handbook's two evaluation protocols.
//!
//! * `--protocol holdout` (chapter 3, the default): a registered version (`--model`, a number
//!   or an alias) scored on the test days from `--test-start`; nothing is trained.
//! * `--protocol prequential` (chapter 5): a fresh model (`--model`, a family) trained and
//!   tested on each of `--folds` windows, each one test period earlier than the one before,
//!   nothing registered (`fraudlake_model::prequential`, which is `train --folds`' loop with one
//!   setting); prints each fold and the mean ± std of AUC ROC, average precision and card
//!   precision@100, the table of the handbook's chapter 5.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{Duration, NaiveDate};
use clap::{Args, ValueEnum};
use fraudlake_model::prequential::{self, Plan, Prequential};
use fraudlake_model::protocol::{Metrics, Periods};
use fraudlake_model::registry::{metric_map, Registry, CHAMPION};
use fraudlake_model::train::{self, MeanStd, TestWindow};
use fraudlake_model::ModelFamily;
use serde::Serialize;

use super::train::{feature_spec, latest_train_start, mean_std, metric_rows, ParamArgs};
use crate::bad_input;
use crate::config::Settings;
use crate::output::{print_rows, Format};

/// The handbook's protocol `evaluate` runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Chapter 3: score a registered version on the test days from --test-start.
    #[default]
    Holdout,
    /// Chapter 5: train and test a fresh model on each of --folds windows; registers nothing.
    Prequential,
}

/// Days of training, delay and test of a window when not given (the handbook's weeks).
const WEEK: u32 = 7;

/// Folds of `--protocol prequential` when not given (the handbook's chapter 5).
const HANDBOOK_FOLDS: u32 = 4;

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// holdout (chapter 3): score a registered version on --test-start's days. prequential
    /// (chapter 5): train and test one new model per fold, register nothing.
    #[arg(long, value_enum, default_value_t)]
    protocol: Protocol,
    /// holdout: the version number or alias to score (default champion). prequential: the
    /// model family to train on each fold (default `[train] model`, else xgboost).
    #[arg(long, value_name = "VERSION|FAMILY")]
    model: Option<String>,
    /// holdout: first test day, YYYY-MM-DD (required).
    #[arg(long)]
    test_start: Option<NaiveDate>,
    /// Test days: of the holdout window, of each prequential fold.
    #[arg(long, default_value_t = WEEK)]
    test_days: u32,
    /// prequential: how many folds, each one test period earlier than the one before
    /// (default 4, as the handbook's chapter 5).
    #[arg(long)]
    folds: Option<u32>,
    /// prequential: first training day of fold 1, the latest window, YYYY-MM-DD (default: the
    /// latest start whose test days are in the lake).
    #[arg(long)]
    train_start: Option<NaiveDate>,
    /// prequential: training days of each fold (default 7).
    #[arg(long)]
    train_days: Option<u32>,
    /// prequential: days between training and test, labels arriving late (default 7).
    #[arg(long)]
    delay_days: Option<u32>,
    /// Decision threshold of precision and recall (holdout: default the version's;
    /// prequential: default 0.5).
    #[arg(long)]
    threshold: Option<f64>,
    /// prequential: the feature SQL (default sql/features.sql, env FRAUDLAKE_FEATURES_SQL).
    /// holdout scores on the version's own feature set.
    #[arg(long = "sql")]
    sql: Option<PathBuf>,
    // prequential: the training parameters, as `fraudlake train` takes them (flags over
    // `[train]` in fraudlake.toml over defaults); holdout ignores them.
    #[command(flatten)]
    params: ParamArgs,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub async fn run(a: EvaluateArgs, settings: &Settings) -> Result<u8> {
    match a.protocol {
        Protocol::Holdout => run_holdout(a, settings).await,
        Protocol::Prequential => run_prequential(a, settings).await,
    }
}

/// Chapter 3: a registered version on any test days.
async fn run_holdout(a: EvaluateArgs, settings: &Settings) -> Result<u8> {
    let misplaced: Vec<&str> = [
        ("--folds", a.folds.is_some()),
        ("--train-start", a.train_start.is_some()),
        ("--train-days", a.train_days.is_some()),
        ("--delay-days", a.delay_days.is_some()),
        ("--sql", a.sql.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect();
    if !misplaced.is_empty() {
        return Err(bad_input(format!(
            "{}: only with --protocol prequential, which trains and tests a model per fold; \
             --protocol holdout (the default) scores a registered version on --test-start's days",
            misplaced.join(", ")
        )));
    }
    let Some(test_start) = a.test_start else {
        return Err(bad_input(
            "--protocol holdout (the default) needs --test-start, the first day to score the \
             registered version on; to train and test a model per fold instead, use --protocol \
             prequential",
        ));
    };
    let which = a.model.as_deref().unwrap_or(CHAMPION);
    if let Ok(family) = which.parse::<ModelFamily>() {
        return Err(bad_input(format!(
            "--model {family} is a model family, but --protocol holdout scores a registered \
             version (a number or an alias such as champion); to train and test a {family} \
             model per fold, use --protocol prequential"
        )));
    }
    if a.test_days == 0 || a.test_days > 3660 {
        return Err(bad_input("--test-days must be 1..3660"));
    }
    let to = Duration::try_days(i64::from(a.test_days) - 1)
        .and_then(|d| test_start.checked_add_signed(d))
        .ok_or_else(|| bad_input(format!("{test_start} + {} days is not a date", a.test_days)))?;
    let lake = settings.open_lake()?;
    let registry = Registry::new(lake.clone());
    let v = registry.get(which).await?;
    let (_, model) = registry.load_artifact(&v.record).await?;
    let spec = v.record.feature_spec();
    let window = TestWindow {
        known_from: v.record.periods.train_start.min(test_start),
        delay_days: v.record.periods.delay_days,
        from: test_start,
        to,
    };
    let threshold = a.threshold.unwrap_or(v.record.metrics.threshold);
    let m = train::evaluate_model(&lake, &spec, &model, &window, threshold).await?;
    if a.format == Format::Json {
        #[derive(Serialize)]
        struct Out {
            protocol: &'static str,
            version: i64,
            test_from: NaiveDate,
            test_to: NaiveDate,
            metrics: std::collections::BTreeMap<String, Option<f64>>,
            detail: Metrics,
        }
        let out = Out {
            protocol: "holdout",
            version: v.record.version,
            test_from: window.from,
            test_to: window.to,
            metrics: metric_map(&m),
            detail: m,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!(
        "model version {} on {} .. {} (cards compromised since {} removed)",
        v.record.version, window.from, window.to, window.known_from
    );
    print_rows(&metric_rows(&m), a.format)?;
    Ok(0)
}

/// Chapter 5: a fresh model per fold.
async fn run_prequential(a: EvaluateArgs, settings: &Settings) -> Result<u8> {
    if a.test_start.is_some() {
        return Err(bad_input(
            "--test-start: only with --protocol holdout; the prequential folds' test days follow \
             from --train-start (fold 1's first training day) and --train-days, --delay-days, \
             --test-days",
        ));
    }
    // None: `[train]`'s family (xgboost when it names none).
    let model = match a.model.as_deref() {
        None => None,
        Some(m) => Some(m.parse::<ModelFamily>().map_err(|_| {
            bad_input(format!(
                "--model {m}: --protocol prequential trains a new model per fold, so --model \
                 names a model family (xgboost, lightgbm); to score the registered version {m}, \
                 use --protocol holdout --test-start DAY"
            ))
        })?),
    };
    let folds = a.folds.unwrap_or(HANDBOOK_FOLDS);
    if folds == 0 || folds > 1000 {
        return Err(bad_input("--folds must be 1..1000"));
    }
    let mut periods = Periods {
        train_start: a.train_start.unwrap_or_default(),
        train_days: a.train_days.unwrap_or(WEEK),
        delay_days: a.delay_days.unwrap_or(WEEK),
        test_days: a.test_days,
    };
    // The day counts are checked before they are added up into a default start.
    periods.validate()?;
    let lake = settings.open_lake()?;
    if a.train_start.is_none() {
        periods.train_start = latest_train_start(
            &lake,
            periods.train_days,
            periods.delay_days,
            periods.test_days,
        )
        .await?;
    }
    let params = a.params.resolve(&settings.train, model)?;
    let plan = Plan {
        periods,
        folds,
        model: params.family(),
        params,
        threshold: a.threshold.unwrap_or(0.5),
    };
    let spec = feature_spec(settings, &a.sql).await?;
    let bar = settings
        .progress
        .then(|| fraudlake_pipeline::progress::bar(u64::from(folds), "folds"));
    let report = prequential::prequential(&lake, &spec, &plan, |done, _| {
        if let Some(b) = &bar {
            b.set_position(done as u64);
        }
    })
    .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Csv => print_rows(&fold_rows(&report, Format::Csv), Format::Csv)?,
        Format::Table => {
            println!("{}", heading(&report));
            print_rows(&fold_rows(&report, Format::Table), Format::Table)?;
        }
    }
    Ok(0)
}

/// The line above the table: what was validated.
fn heading(r: &Prequential) -> String {
    // Fold 1 is the latest window, the last fold the earliest.
    let (earliest, latest) = match (r.folds.last(), r.folds.first()) {
        (Some(l), Some(f)) => (l.test_from.to_string(), f.test_to.to_string()),
        _ => (String::new(), String::new()),
    };
    format!(
        "prequential validation (Fraud Detection Handbook, chapter 5): {} folds of {} days \
         training, {} delay, {} test, tested from {earliest} to {latest}; model {} ({:.1} s of \
         training), feature set {}; nothing registered",
        r.folds.len(),
        r.train_days,
        r.delay_days,
        r.test_days,
        r.model,
        r.fit_seconds,
        r.feature_set.chars().take(12).collect::<String>()
    )
}

/// One row of the chapter 5 table, its metric columns named as the handbook names them.
#[derive(Debug, Serialize)]
struct FoldRow {
    fold: String,
    train: String,
    test: String,
    #[serde(rename = "AUC ROC")]
    auc_roc: String,
    #[serde(rename = "Average precision")]
    average_precision: String,
    #[serde(rename = "Card Precision@100")]
    card_precision_at_100: String,
}

/// The folds, then the summary: one `mean ± std` row in a table (three decimals), separate
/// `mean` and `std` rows of full precision in CSV (empty cells for undefined values).
fn fold_rows(r: &Prequential, format: Format) -> Vec<FoldRow> {
    let csv = format == Format::Csv;
    let value = |v: Option<f64>| match v {
        Some(v) if csv => v.to_string(),
        Some(v) => format!("{v:.3}"),
        None if csv => String::new(),
        None => "n/a".to_string(),
    };
    let mut rows: Vec<FoldRow> = r
        .folds
        .iter()
        .map(|f| FoldRow {
            fold: f.fold.to_string(),
            train: format!("{} .. {}", f.train_from, f.train_to),
            test: format!("{} .. {}", f.test_from, f.test_to),
            auc_roc: value(f.metrics.auc_roc),
            average_precision: value(f.metrics.average_precision),
            card_precision_at_100: value(f.metrics.card_precision_at_100),
        })
        .collect();
    let summary = |fold: &str, cell: &dyn Fn(&MeanStd) -> String| FoldRow {
        fold: fold.to_string(),
        train: String::new(),
        test: String::new(),
        auc_roc: cell(&r.auc_roc),
        average_precision: cell(&r.average_precision),
        card_precision_at_100: cell(&r.card_precision_at_100),
    };
    if csv {
        rows.push(summary("mean", &|m| value(m.mean)));
        rows.push(summary("std", &|m| value(m.std)));
    } else {
        rows.push(summary("mean ± std", &mean_std));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudlake_model::params::TrainParams;
    use fraudlake_model::prequential::Fold;

    fn report() -> Prequential {
        let day = |s: &str| s.parse::<NaiveDate>().expect("date");
        let fold = |fold: u32, start: &str, auc: Option<f64>| Fold {
            fold,
            train_from: day(start),
            train_to: day(start) + Duration::days(6),
            test_from: day(start) + Duration::days(14),
            test_to: day(start) + Duration::days(20),
            metrics: Metrics {
                auc_roc: auc,
                average_precision: Some(0.6),
                card_precision_at_100: Some(0.25),
                ..Metrics::default()
            },
        };
        let both = |mean: f64, std: f64| MeanStd {
            mean: Some(mean),
            std: Some(std),
        };
        Prequential {
            protocol: "prequential",
            model: ModelFamily::XGBoost,
            feature_set: "0123456789abcdef".into(),
            train_days: 7,
            delay_days: 7,
            test_days: 7,
            params: TrainParams::default(),
            threshold: 0.5,
            folds: vec![
                fold(1, "2018-08-15", Some(0.87654)),
                fold(2, "2018-08-08", None),
            ],
            auc_roc: MeanStd::default(),
            average_precision: both(0.6, 0.0),
            card_precision_at_100: both(0.25, 0.0126),
            fit_seconds: 1.25,
        }
    }

    #[test]
    fn the_table_has_a_row_per_fold_and_mean_plus_minus_std() {
        let r = report();
        let rows = fold_rows(&r, Format::Table);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].fold, "1");
        assert_eq!(rows[0].train, "2018-08-15 .. 2018-08-21");
        assert_eq!(rows[0].test, "2018-08-29 .. 2018-09-04");
        assert_eq!(rows[0].auc_roc, "0.877");
        assert_eq!(rows[1].auc_roc, "n/a");
        assert_eq!(rows[2].fold, "mean ± std");
        assert_eq!(rows[2].average_precision, "0.600 ± 0.000");
        assert_eq!(rows[2].card_precision_at_100, "0.250 ± 0.013");
        assert_eq!(rows[2].auc_roc, "n/a");
        let columns: Vec<String> = serde_json::to_value(&rows[0])
            .expect("json")
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        for name in ["AUC ROC", "Average precision", "Card Precision@100"] {
            assert!(columns.iter().any(|c| c == name), "{columns:?}");
        }
        let line = heading(&r);
        assert!(
            line.starts_with("prequential validation (Fraud Detection Handbook, chapter 5): 2 folds of 7 days training, 7 delay, 7 test, tested from 2018-08-22 to 2018-09-04"),
            "{line}"
        );
        assert!(line.contains("feature set 0123456789ab;"), "{line}");
    }

    #[test]
    fn csv_has_full_precision_and_separate_mean_and_std_rows() {
        let rows = fold_rows(&report(), Format::Csv);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].auc_roc, "0.87654");
        assert_eq!(rows[1].auc_roc, "");
        assert_eq!(
            (rows[2].fold.as_str(), rows[3].fold.as_str()),
            ("mean", "std")
        );
        assert_eq!(rows[2].card_precision_at_100, "0.25");
        assert_eq!(rows[3].card_precision_at_100, "0.0126");
        assert_eq!(rows[3].train, "");
    }
}
