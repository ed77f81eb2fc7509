//! `fraudlake train` and `fraudlake explain`: fit XGBoost or LightGBM (`--model`) on the
//! lake's features with the handbook's train / delay / test protocol and register the result,
//! or explain a stored version's scores. `fraudlake evaluate` (both of the handbook's
//! protocols) is in `evaluate.rs`, with the training flags of [`ParamArgs`].

use std::path::PathBuf;

use anyhow::Result;
use chrono::{Duration, NaiveDate};
use clap::Args;
use fraudlake_model::mlflow::{self, Auth, SyncReport};
use fraudlake_model::params::TrainParams;
use fraudlake_model::protocol::{Metrics, Periods};
use fraudlake_model::registry::{actor, metric_map, Registry};
use fraudlake_model::train::{self, FeatureSpec, Registration};
use fraudlake_model::ModelFamily;
use serde::Serialize;

use super::models::parse_family;
use crate::config::Settings;
use crate::output::{print_rows, Format};

/// The training parameters as flags; each overrides `[train]` in fraudlake.toml. The family
/// is the command's `--model`; a flag of the other family's parameter is refused (the model
/// crate says whose it is).
#[derive(Debug, Args)]
pub struct ParamArgs {
    /// Boosting rounds (upper bound with early stopping). Default 200 (XGBoost), 300
    /// (LightGBM).
    #[arg(long, env = "FRAUDLAKE_TRAIN_N_ESTIMATORS")]
    n_estimators: Option<u32>,
    /// XGBoost: tree depth. Default 3.
    #[arg(long, env = "FRAUDLAKE_TRAIN_MAX_DEPTH")]
    max_depth: Option<u32>,
    /// Shrinkage (eta). Default 0.1 (XGBoost), 0.05 (LightGBM).
    #[arg(long, env = "FRAUDLAKE_TRAIN_LEARNING_RATE")]
    learning_rate: Option<f64>,
    /// XGBoost: row subsampling per tree. Default 1.
    #[arg(long)]
    subsample: Option<f64>,
    /// XGBoost: column subsampling per tree. Default 1.
    #[arg(long)]
    colsample_bytree: Option<f64>,
    /// Weight of the fraud class. Default 1.
    #[arg(long)]
    scale_pos_weight: Option<f64>,
    /// XGBoost: minimum hessian per leaf. Default 1.
    #[arg(long)]
    min_child_weight: Option<f64>,
    /// LightGBM: leaves per tree. Default 31.
    #[arg(long)]
    num_leaves: Option<u32>,
    /// LightGBM: minimum rows per leaf. Default 100.
    #[arg(long)]
    min_data_in_leaf: Option<u32>,
    /// LightGBM: share of the features each tree may use. Default 0.9.
    #[arg(long)]
    feature_fraction: Option<f64>,
    /// LightGBM: share of the rows each bagging draws. Default 0.8.
    #[arg(long)]
    bagging_fraction: Option<f64>,
    /// LightGBM: bag every this many iterations (0 = no bagging). Default 1.
    #[arg(long)]
    bagging_freq: Option<u32>,
    /// LightGBM: weight the classes by their frequencies (instead of --scale-pos-weight).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    is_unbalance: Option<bool>,
    /// LightGBM: L2 regularization of the leaf values. Default 0.
    #[arg(long)]
    lambda_l2: Option<f64>,
    /// Random seed. Default 0.
    #[arg(long)]
    seed: Option<u64>,
    /// The library's threads (0 = all cores).
    #[arg(long, env = "FRAUDLAKE_TRAIN_THREADS")]
    threads: Option<u32>,
    /// Stop after this many rounds without validation improvement (0 = off, the default).
    #[arg(long)]
    early_stopping_rounds: Option<u32>,
    /// Trailing training days held out to choose the rounds. Default 1.
    #[arg(long)]
    validation_days: Option<u32>,
}

impl ParamArgs {
    /// `base` (`[train]`) for `model`'s family (`base`'s own when `None`), with the flags
    /// given, each set by its name as `[train]` and `--grid` name it; the model crate refuses
    /// one the family does not take.
    pub(super) fn resolve(
        &self,
        base: &TrainParams,
        model: Option<ModelFamily>,
    ) -> Result<TrainParams> {
        let mut p = match model {
            Some(family) => base.for_model(family),
            None => base.clone(),
        };
        macro_rules! flags {
            ($($f:ident),*) => { [$( (stringify!($f), self.$f.map(|v| v.to_string())) ),*] };
        }
        let given = flags!(
            n_estimators,
            max_depth,
            learning_rate,
            subsample,
            colsample_bytree,
            scale_pos_weight,
            min_child_weight,
            num_leaves,
            min_data_in_leaf,
            feature_fraction,
            bagging_fraction,
            bagging_freq,
            is_unbalance,
            lambda_l2,
            seed,
            threads,
            early_stopping_rounds,
            validation_days
        );
        for (name, value) in given {
            if let Some(value) = value {
                p.assign(name, &value)?;
            }
        }
        p.validate()?;
        Ok(p)
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// First training day, YYYY-MM-DD (default: the latest start whose test days are in the lake).
    #[arg(long)]
    train_start: Option<NaiveDate>,
    #[arg(long, default_value_t = 7)]
    train_days: u32,
    /// Days between training and test (labels arrive late).
    #[arg(long, default_value_t = 7)]
    delay_days: u32,
    #[arg(long, default_value_t = 7)]
    test_days: u32,
    /// The model family: xgboost or lightgbm. Default `[train] model`, else xgboost; another
    /// family than `[train]`'s starts from its own defaults (seed, threads and early stopping
    /// kept).
    #[arg(long, env = "FRAUDLAKE_TRAIN_MODEL", value_parser = parse_family)]
    model: Option<ModelFamily>,
    #[command(flatten)]
    params: ParamArgs,
    /// Decision threshold for precision/recall.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Free text stored with the version.
    #[arg(long, default_value = "")]
    note: String,
    /// Prequential validation over K folds (each moved back one test period); no registration.
    #[arg(long)]
    folds: Option<u32>,
    /// Parameter grid for --folds, e.g. "max_depth=3,6,9;n_estimators=25,50,100".
    #[arg(long, requires = "folds")]
    grid: Option<String>,
    /// Train and evaluate only; do not register.
    #[arg(long, conflicts_with = "mlflow")]
    no_register: bool,
    /// Mirror the registry into MLflow as the version registers (as `models sync`): the
    /// tracking server URL, or `--mlflow` alone for the configured one
    /// (FRAUDLAKE_MLFLOW_TRACKING_URI, [mlflow] tracking_uri, MLFLOW_TRACKING_URI). The server
    /// is checked before training: an unreachable one stops the command with the lake unchanged.
    #[arg(long = "mlflow", value_name = "URL", num_args = 0..=1, default_missing_value = "",
          conflicts_with = "folds")]
    mlflow: Option<String>,
    /// MLflow registered model for --mlflow (default [mlflow] registered_model, else
    /// fraud-detector).
    #[arg(long, requires = "mlflow")]
    registered_model: Option<String>,
    /// Label precedence, most trusted source kind first (e.g. `ingest,api`); overrides
    /// `[labels] precedence` in fraudlake.toml. Default: ingest > api > others.
    #[arg(long)]
    label_precedence: Option<String>,
    /// The feature SQL (default sql/features.sql, env FRAUDLAKE_FEATURES_SQL).
    #[arg(long = "sql")]
    sql: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Transaction ids to explain (their rows in the `features` table).
    #[arg(long = "tx-id", required = true, num_args = 1..)]
    tx_ids: Vec<i64>,
    /// Version number or alias.
    #[arg(long, default_value = "champion")]
    model: String,
    /// How many contributions to show per transaction.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// One printed metric row.
#[derive(Serialize)]
pub struct MetricRow {
    metric: String,
    value: String,
}

pub fn metric_rows(m: &Metrics) -> Vec<MetricRow> {
    let mut rows: Vec<MetricRow> = metric_map(m)
        .into_iter()
        .map(|(k, v)| MetricRow {
            metric: k,
            value: v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}")),
        })
        .collect();
    let opt = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"));
    rows.push(MetricRow {
        metric: format!("precision@{}", m.threshold),
        value: opt(m.precision),
    });
    rows.push(MetricRow {
        metric: format!("recall@{}", m.threshold),
        value: opt(m.recall),
    });
    rows.push(MetricRow {
        metric: "test rows / frauds".into(),
        value: format!("{} / {}", m.test_rows, m.test_frauds),
    });
    rows.push(MetricRow {
        metric: "known-card rows removed".into(),
        value: m.known_cards_removed.to_string(),
    });
    rows
}

pub(super) async fn feature_spec(
    settings: &Settings,
    sql: &Option<PathBuf>,
) -> Result<FeatureSpec> {
    let path = sql.clone().unwrap_or_else(|| settings.features_sql.clone());
    Ok(FeatureSpec::load(&path).await?)
}

/// The first training day of the latest window of these day counts whose test days are in the
/// lake: its last test day is the last day of `features`.
pub(super) async fn latest_train_start(
    lake: &fraudlake_pipeline::Lake,
    train_days: u32,
    delay_days: u32,
    test_days: u32,
) -> Result<NaiveDate> {
    let snapshot = fraudlake_model::dataset::Snapshot::open(lake, &Default::default()).await?;
    let (_, last) = snapshot.day_range().await?.ok_or_else(|| {
        crate::bad_input("the features table is empty: run `fraudlake features build`")
    })?;
    let span = i64::from(train_days) + i64::from(delay_days) + i64::from(test_days) - 1;
    Duration::try_days(span)
        .and_then(|d| last.checked_sub_signed(d))
        .ok_or_else(|| crate::bad_input(format!("{span} days before {last} is not a date")))
}

#[derive(Serialize)]
struct TrainSummary {
    version: Option<i64>,
    model_family: ModelFamily,
    aliases: Vec<String>,
    periods: Periods,
    rounds: u32,
    best_round: Option<u32>,
    fit_seconds: f64,
    train_rows: usize,
    train_frauds: usize,
    metrics: std::collections::BTreeMap<String, Option<f64>>,
    precision: Option<f64>,
    recall: Option<f64>,
    test_rows: usize,
    test_frauds: usize,
    card: Option<String>,
    /// What `--mlflow` mirrored (null without it).
    mlflow: Option<SyncReport>,
}

pub async fn train(a: TrainArgs, settings: &Settings) -> Result<u8> {
    let lake = settings.open_lake()?;
    let spec = feature_spec(settings, &a.sql).await?;
    let params = a.params.resolve(&settings.train, a.model)?;
    let train_start = match a.train_start {
        Some(d) => d,
        None => latest_train_start(&lake, a.train_days, a.delay_days, a.test_days).await?,
    };
    let periods = Periods {
        train_start,
        train_days: a.train_days,
        delay_days: a.delay_days,
        test_days: a.test_days,
    };
    if let Some(folds) = a.folds {
        return cross_validate(&lake, &spec, &periods, folds, &a, &params, settings).await;
    }
    tracing::info!(
        train = %format!("{}..{}", periods.train_start, periods.train_end()),
        test = %format!("{}..{}", periods.test_start(), periods.test_end()),
        "training"
    );
    let policy = settings.label_policy(a.label_precedence.as_deref())?;
    // MLflow is checked before training: an unreachable server stops us with the lake unchanged.
    let mlflow_target = match &a.mlflow {
        Some(uri) => {
            let target = settings.mlflow.require_target(
                Some(uri.as_str()).filter(|u| !u.is_empty()),
                a.registered_model.as_deref(),
                None,
            )?;
            mlflow::check(&target, Auth::from_env()).await?;
            Some(target)
        }
        None => None,
    };
    let registration = (!a.no_register).then(|| Registration {
        created_by: actor(),
        note: a.note.clone(),
    });
    let done = train::train_and_register(
        &lake,
        &spec,
        &periods,
        &params,
        a.threshold,
        &policy,
        registration,
    )
    .await?;
    let trained = done.trained;
    let mut summary = TrainSummary {
        version: None,
        model_family: trained.fitted.family,
        aliases: vec![],
        periods,
        rounds: trained.fitted.rounds,
        best_round: trained.fitted.best_round,
        fit_seconds: trained.fitted.fit_seconds,
        train_rows: trained.lineage.train_rows,
        train_frauds: trained.lineage.train_frauds,
        metrics: metric_map(&trained.metrics),
        precision: trained.metrics.precision,
        recall: trained.metrics.recall,
        test_rows: trained.metrics.test_rows,
        test_frauds: trained.metrics.test_frauds,
        card: None,
        mlflow: None,
    };
    let metrics = trained.metrics;
    let mut mlflow_failure = None;
    if let Some(record) = done.record {
        let registry = Registry::new(lake.clone());
        let v = registry.get(&record.version.to_string()).await?;
        summary.version = Some(record.version);
        summary.aliases = v.aliases;
        summary.card = Some(lake.file_url("models", &format!("v{}/card.html", record.version)));
        if let Some(target) = &mlflow_target {
            match mlflow::sync(&registry, target, Auth::from_env()).await {
                Ok(report) => summary.mlflow = Some(report),
                // The version is registered (the lake is the source of truth): say so, and how
                // to finish the mirror, after the summary.
                Err(e) => {
                    mlflow_failure = Some(anyhow::Error::new(e).context(format!(
                        "model version {} is registered in the lake, but mirroring it to MLflow failed: run `fraudlake models sync` to retry",
                        record.version
                    )))
                }
            }
        }
    }
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return mlflow_failure.map_or(Ok(0), Err);
    }
    println!(
        "trained {} on {} .. {} ({} rows, {} frauds), {} rounds{} in {:.2} s; tested on {} .. {}",
        summary.model_family,
        periods.train_start,
        periods.train_end(),
        summary.train_rows,
        summary.train_frauds,
        summary.rounds,
        summary
            .best_round
            .map(|b| format!(" (early stopping chose round {b})"))
            .unwrap_or_default(),
        summary.fit_seconds,
        periods.test_start(),
        periods.test_end()
    );
    print_rows(&metric_rows(&metrics), a.format)?;
    match summary.version {
        Some(v) => println!(
            "registered model version {v} [{}]; card: {}",
            summary.aliases.join(", "),
            summary.card.unwrap_or_default()
        ),
        None => println!("not registered (--no-register)"),
    }
    if let Some(report) = &summary.mlflow {
        let mirrored = report
            .versions
            .iter()
            .find(|v| Some(v.version) == summary.version);
        println!(
            "MLflow {}: registered model '{}' version {} (run {}); aliases {}",
            report.tracking_uri,
            report.registered_model,
            mirrored.map_or("?", |v| v.model_version.as_str()),
            mirrored.map_or("?", |v| v.run_id.as_str()),
            report
                .aliases
                .iter()
                .map(|(a, v)| format!("{a} -> {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    mlflow_failure.map_or(Ok(0), Err)
}

#[derive(Serialize)]
struct FoldRow {
    setting: String,
    auc_roc: String,
    average_precision: String,
    card_precision_at_100: String,
    fit_seconds: String,
}

/// `mean ± std` with three decimals, as the handbook's tables; the mean alone for one fold.
pub(super) fn mean_std(m: &train::MeanStd) -> String {
    match (m.mean, m.std) {
        (Some(mean), Some(std)) => format!("{mean:.3} ± {std:.3}"),
        (Some(mean), None) => format!("{mean:.3}"),
        _ => "n/a".into(),
    }
}

async fn cross_validate(
    lake: &fraudlake_pipeline::Lake,
    spec: &FeatureSpec,
    periods: &Periods,
    folds: u32,
    a: &TrainArgs,
    params: &TrainParams,
    settings: &Settings,
) -> Result<u8> {
    let grid = train::parse_grid(a.grid.as_deref().unwrap_or(""), params)?;
    let bar = settings.progress.then(|| {
        fraudlake_pipeline::progress::bar((folds as usize * grid.len()) as u64, "folds x settings")
    });
    let results =
        train::cross_validate(lake, spec, periods, folds, &grid, a.threshold, |done, _| {
            if let Some(b) = &bar {
                b.set_position(done as u64);
            }
        })
        .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(0);
    }
    println!(
        "prequential validation: {folds} folds, training starts {} back to {}, {} days train / {} delay / {} test",
        periods.train_start,
        periods.fold(folds - 1).train_start,
        periods.train_days,
        periods.delay_days,
        periods.test_days
    );
    let rows: Vec<FoldRow> = results
        .iter()
        .map(|r| FoldRow {
            setting: r.setting.clone(),
            auc_roc: mean_std(&r.auc_roc),
            average_precision: mean_std(&r.average_precision),
            card_precision_at_100: mean_std(&r.card_precision_at_100),
            fit_seconds: format!("{:.2}", r.fit_seconds),
        })
        .collect();
    print_rows(&rows, a.format)?;
    Ok(0)
}

#[derive(Serialize)]
struct ExplainRow {
    tx_id: i64,
    risk_score: f64,
    is_fraud: bool,
    feature: String,
    value: f64,
    contribution: f64,
}

/// `fraudlake explain`: why the model scored a transaction as it did (TreeSHAP).
pub async fn explain(a: ExplainArgs, settings: &Settings) -> Result<u8> {
    let lake = settings.open_lake()?;
    let registry = Registry::new(lake.clone());
    let v = registry.get(&a.model).await?;
    let (_, model) = registry.load_artifact(&v.record).await?;
    let snapshot = fraudlake_model::dataset::Snapshot::open(&lake, &Default::default()).await?;
    snapshot.require_feature_set(&v.record.feature_set)?;
    let rows = snapshot
        .rows_of(&v.record.feature_names, &a.tx_ids, &v.record.feature_set)
        .await?;
    let missing: Vec<String> = a
        .tx_ids
        .iter()
        .filter(|id| !rows.tx_id.contains(id))
        .map(i64::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(crate::bad_input(format!(
            "no feature row for tx_id {} (build features for its day first)",
            missing.join(", ")
        )));
    }
    let mut out = Vec::new();
    for i in 0..rows.len() {
        let row = rows.row(i);
        let score = model.predict(row).unwrap_or(f64::NAN);
        for c in model.top(&v.record.feature_names, row, a.top)? {
            out.push(ExplainRow {
                tx_id: rows.tx_id[i],
                risk_score: score,
                is_fraud: rows.labels[i],
                feature: c.feature,
                value: c.value,
                contribution: c.contribution,
            });
        }
    }
    print_rows(&out, a.format)?;
    Ok(0)
}
