//! The workflows behind `fraudlake train`, `fraudlake evaluate` and `fraudlake models import`:
//! read rows from a pinned lake snapshot, fit a model of the parameters' family (XGBoost or
//! LightGBM), evaluate with the handbook protocol, and (for `--folds`) prequential validation
//! over a parameter grid.
//! [`train_and_register`] is the one train-then-register sequence, used by `fraudlake train`
//! and the DAG `train` op alike; [`import_and_register`] registers a model trained elsewhere
//! (`models import`, the DAG `register` op) through the same [`Registry::register`].

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use fraudlake_pipeline::labels::LabelPolicy;
use fraudlake_pipeline::lake::Lake;
use serde::Serialize;

use crate::booster::{fit, Fitted};
use crate::dataset::{Rows, Snapshot};
use crate::error::{Error, Result};
use crate::loaded::{LoadedModel, ModelFamily};
use crate::metrics::Curves;
use crate::params::TrainParams;
use crate::protocol::{evaluate, unknown_cards, Metrics, Periods};
use crate::registry::{Lineage, NewVersion, Registry, VersionRecord};
use fraudlake_pipeline::columns::day_number;

/// The feature set a model is trained on: its hash, SQL and column order.
#[derive(Debug, Clone)]
pub struct FeatureSpec {
    pub sha256: String,
    pub sql: String,
    pub names: Vec<String>,
}

impl FeatureSpec {
    /// The feature set of a SQL file, compiled once to learn its column order: what a model
    /// trained on it records and what its rows are read by.
    pub async fn load(path: &Path) -> Result<FeatureSpec> {
        let fs = fraudlake_features::FeatureSet::load(path)?;
        let plan = fraudlake_features::compile(&fs).await?;
        Ok(FeatureSpec {
            sha256: fs.sha256.clone(),
            sql: fs.sql.clone(),
            names: plan.feature_names(),
        })
    }
}

/// A trained and evaluated (not yet registered) model.
pub struct Trained {
    pub fitted: Fitted,
    pub metrics: Metrics,
    pub lineage: Lineage,
    /// ROC, precision-recall and card precision@k on the test days (the model card's charts).
    pub curves: Curves,
}

/// Where a test happens: cards with a fraud between `known_from` and `day - delay - 1` are
/// removed from each test day.
#[derive(Debug, Clone, Copy)]
pub struct TestWindow {
    pub known_from: NaiveDate,
    pub delay_days: u32,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl From<&Periods> for TestWindow {
    fn from(p: &Periods) -> Self {
        TestWindow {
            known_from: p.train_start,
            delay_days: p.delay_days,
            from: p.test_start(),
            to: p.test_end(),
        }
    }
}

/// Training rows of a period, with a clear error when there are none.
async fn training_rows(snapshot: &Snapshot, spec: &FeatureSpec, p: &Periods) -> Result<Rows> {
    let rows = snapshot
        .rows(&spec.names, p.train_start, p.train_end(), &spec.sha256)
        .await?;
    if rows.is_empty() {
        return Err(Error::invalid(format!(
            "no feature rows for the training days {} .. {}: check the dates, or run `fraudlake features build`",
            p.train_start,
            p.train_end()
        )));
    }
    if rows.frauds() == 0 {
        return Err(Error::invalid(format!(
            "the training days {} .. {} have {} rows but no fraud label: nothing to learn from",
            p.train_start,
            p.train_end(),
            rows.len()
        )));
    }
    Ok(rows)
}

/// Rows used for early stopping: the trailing `validation_days` of the training period.
fn validation_rows(rows: &Rows, p: &Periods, params: &TrainParams) -> usize {
    let first_valid_day = day_number(p.train_end()) - params.validation_days as i32 + 1;
    rows.day.iter().filter(|&&d| d >= first_valid_day).count()
}

async fn fit_blocking(
    rows: &Rows,
    spec: &FeatureSpec,
    valid: usize,
    params: &TrainParams,
) -> Result<Fitted> {
    let matrix = rows.matrix();
    let names = spec.names.clone();
    let params = params.clone();
    tokio::task::spawn_blocking(move || fit(&matrix, &names, valid, &params))
        .await
        .map_err(|e| Error::Model(format!("the training task failed: {e}")))?
}

/// Trains on `periods` with labels read by `policy` and evaluates on its test days (not
/// registered: [`train_and_register`] does both).
pub async fn train_with(
    lake: &Lake,
    spec: &FeatureSpec,
    periods: &Periods,
    params: &TrainParams,
    threshold: f64,
    policy: &LabelPolicy,
) -> Result<Trained> {
    periods.validate()?;
    params.validate()?;
    let snapshot = Snapshot::open(lake, &HashMap::new())
        .await?
        .with_policy(policy.clone());
    snapshot.require_feature_set(&spec.sha256)?;
    let rows = training_rows(&snapshot, spec, periods).await?;
    let valid = validation_rows(&rows, periods, params);
    let fitted = fit_blocking(&rows, spec, valid, params).await?;
    let model = LoadedModel::from_bytes(fitted.family, &fitted.model_file)?;
    let (metrics, scored) = test(&snapshot, spec, &model, &periods.into(), threshold).await?;
    let lineage = lineage(
        &snapshot,
        periods,
        &metrics,
        policy,
        (rows.len(), rows.frauds()),
        None,
    )
    .await?;
    Ok(Trained {
        fitted,
        metrics,
        lineage,
        curves: scored.curves(),
    })
}

/// The lineage of a version evaluated on `periods`' test days of `snapshot`: trained here
/// (`train`: its rows and frauds) or imported from a file (`imported_from`, no training rows
/// known). One constructor, so trained and imported versions record the same fields.
async fn lineage(
    snapshot: &Snapshot,
    periods: &Periods,
    metrics: &Metrics,
    policy: &LabelPolicy,
    (train_rows, train_frauds): (usize, usize),
    imported_from: Option<String>,
) -> Result<Lineage> {
    Ok(Lineage {
        tables: snapshot.tables.clone(),
        train_from: periods.train_start.to_string(),
        train_to: periods.train_end().to_string(),
        test_from: periods.test_start().to_string(),
        test_to: periods.test_end().to_string(),
        train_rows,
        train_frauds,
        test_rows: metrics.test_rows,
        test_frauds: metrics.test_frauds,
        label_policy: policy.describe(),
        labels_overridden: snapshot.overridden_labels().await?,
        imported_from,
    })
}

/// Who registers a trained model, and why: the registry's `created_by` and `note`.
#[derive(Debug, Clone)]
pub struct Registration {
    pub created_by: String,
    pub note: String,
}

/// A model trained by [`train_and_register`], and its registry record when it was registered.
pub struct TrainedVersion {
    pub trained: Trained,
    pub record: Option<VersionRecord>,
}

/// Trains on `periods` with labels read by `policy`, evaluates on its test days, and registers
/// the model when `registration` says by whom (`None`: train and evaluate only). The one
/// train-then-register sequence, so `fraudlake train` and a DAG's `train` task record the
/// same fields.
pub async fn train_and_register(
    lake: &Lake,
    spec: &FeatureSpec,
    periods: &Periods,
    params: &TrainParams,
    threshold: f64,
    policy: &LabelPolicy,
    registration: Option<Registration>,
) -> Result<TrainedVersion> {
    let trained = train_with(lake, spec, periods, params, threshold, policy).await?;
    let Some(who) = registration else {
        return Ok(TrainedVersion {
            trained,
            record: None,
        });
    };
    let record = Registry::new(lake.clone())
        .register(NewVersion {
            created_by: who.created_by,
            note: who.note,
            feature_set: spec.sha256.clone(),
            feature_sql: spec.sql.clone(),
            feature_names: spec.names.clone(),
            periods: *periods,
            params: params.clone(),
            rounds: trained.fitted.rounds,
            metrics: trained.metrics.clone(),
            lineage: trained.lineage.clone(),
            model_family: trained.fitted.family,
            model_file: trained.fitted.model_file.clone(),
            curves: Some(trained.curves.clone()),
        })
        .await?;
    Ok(TrainedVersion {
        trained,
        record: Some(record),
    })
}

/// A model file trained outside fraudlake, to register.
#[derive(Debug, Clone)]
pub struct Import {
    /// Where it came from, as the user named it (the lineage's `imported_from`).
    pub source: String,
    pub family: ModelFamily,
    pub bytes: Vec<u8>,
}

impl Import {
    /// The file as a model of its family; a file that parses as another family says so.
    pub fn load(&self) -> Result<LoadedModel> {
        LoadedModel::from_bytes(self.family, &self.bytes).map_err(|e| {
            let hint = ModelFamily::ALL
                .into_iter()
                .filter(|f| *f != self.family)
                .find(|f| LoadedModel::from_bytes(*f, &self.bytes).is_ok())
                .map_or_else(String::new, |f| {
                    format!(" (it reads as a {}: --family {f})", f.describe())
                });
            Error::invalid(format!(
                "{} is not a usable {}: {e}{hint}",
                self.source,
                self.family.describe()
            ))
        })
    }
}

/// Registers a model trained elsewhere (Python LightGBM or XGBoost, ...) as a new version,
/// the way [`train_and_register`] registers one it trained: the file must parse as a model of
/// its family and take the feature set's columns (by name when it stores names); it is
/// evaluated with the handbook protocol on the test days of `periods` (whose training days
/// are the ones the importer declares, used by the promotion gate to keep its days unseen),
/// and registered through [`Registry::register`] with a lineage saying it was imported.
pub async fn import_and_register(
    lake: &Lake,
    spec: &FeatureSpec,
    import: Import,
    periods: &Periods,
    threshold: f64,
    policy: &LabelPolicy,
    who: Registration,
) -> Result<VersionRecord> {
    periods.validate()?;
    let model = import.load()?;
    model
        .check_features(&spec.names)
        .map_err(|e| Error::invalid(format!("{}: {e}", import.source)))?;
    let snapshot = Snapshot::open(lake, &HashMap::new())
        .await?
        .with_policy(policy.clone());
    snapshot.require_feature_set(&spec.sha256)?;
    let (metrics, scored) = test(&snapshot, spec, &model, &periods.into(), threshold).await?;
    let lineage = lineage(
        &snapshot,
        periods,
        &metrics,
        policy,
        (0, 0),
        Some(import.source.clone()),
    )
    .await?;
    Registry::new(lake.clone())
        .register(NewVersion {
            created_by: who.created_by,
            note: who.note,
            feature_set: spec.sha256.clone(),
            feature_sql: spec.sql.clone(),
            feature_names: spec.names.clone(),
            periods: *periods,
            // Not known: the family's defaults, so that the record names its family.
            params: TrainParams::defaults(import.family),
            rounds: model.num_trees() as u32,
            metrics,
            lineage,
            model_family: import.family,
            model_file: import.bytes,
            curves: Some(scored.curves()),
        })
        .await
}

/// Test rows (known compromised cards removed) and the model's score of each.
pub struct Scored {
    pub rows: Rows,
    pub probs: Vec<f64>,
}

impl Scored {
    /// The ROC, precision-recall and card precision@k curves of these scores.
    pub fn curves(&self) -> Curves {
        let r = &self.rows;
        Curves::of(&r.day, &r.customer_id, &r.labels, &self.probs)
    }
}

/// Scores a model on a test window of a snapshot; returns the metrics and the scored rows.
pub async fn test(
    snapshot: &Snapshot,
    spec: &FeatureSpec,
    model: &LoadedModel,
    window: &TestWindow,
    threshold: f64,
) -> Result<(Metrics, Scored)> {
    let rows = snapshot
        .rows(&spec.names, window.from, window.to, &spec.sha256)
        .await?;
    if rows.is_empty() {
        return Err(Error::invalid(format!(
            "no feature rows for the test days {} .. {}",
            window.from, window.to
        )));
    }
    let first_fraud = snapshot
        .first_fraud_day(window.known_from, window.to)
        .await?;
    let keep = unknown_cards(&rows, &first_fraud, window.delay_days);
    let kept = rows.filter(&keep);
    let removed = rows.len() - kept.len();
    let probs = model.predict_many(&kept.values);
    let metrics = evaluate(&kept, &probs, threshold, removed);
    Ok((metrics, Scored { rows: kept, probs }))
}

/// Evaluates a stored model on any window (the lake as it is now).
pub async fn evaluate_model(
    lake: &Lake,
    spec: &FeatureSpec,
    model: &LoadedModel,
    window: &TestWindow,
    threshold: f64,
) -> Result<Metrics> {
    let snapshot = Snapshot::open(lake, &HashMap::new()).await?;
    snapshot.require_feature_set(&spec.sha256)?;
    Ok(test(&snapshot, spec, model, window, threshold).await?.0)
}

/// One parameter setting of a prequential validation.
#[derive(Debug, Clone, Serialize)]
pub struct SettingResult {
    pub setting: String,
    pub params: TrainParams,
    /// Per fold: (train start, metrics).
    pub folds: Vec<(NaiveDate, Metrics)>,
    pub auc_roc: MeanStd,
    pub average_precision: MeanStd,
    pub card_precision_at_100: MeanStd,
    pub fit_seconds: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct MeanStd {
    pub mean: Option<f64>,
    /// Sample standard deviation (n - 1), as the handbook's tables.
    pub std: Option<f64>,
}

impl MeanStd {
    fn of(values: &[Option<f64>]) -> MeanStd {
        let v: Vec<f64> = values.iter().flatten().copied().collect();
        if v.is_empty() || v.len() != values.len() {
            return MeanStd::default();
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.len() > 1)
            .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        MeanStd {
            mean: Some(mean),
            std,
        }
    }
}

/// Prequential validation: `folds` windows, fold k moved back k test periods, each setting
/// trained and tested on every fold.
pub async fn cross_validate(
    lake: &Lake,
    spec: &FeatureSpec,
    periods: &Periods,
    folds: u32,
    settings: &[(String, TrainParams)],
    threshold: f64,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<SettingResult>> {
    if folds == 0 {
        return Err(Error::invalid("--folds must be at least 1"));
    }
    periods.validate()?;
    let snapshot = Snapshot::open(lake, &HashMap::new()).await?;
    snapshot.require_feature_set(&spec.sha256)?;
    let mut results: Vec<SettingResult> = settings
        .iter()
        .map(|(name, params)| SettingResult {
            setting: name.clone(),
            params: params.clone(),
            folds: Vec::new(),
            auc_roc: MeanStd::default(),
            average_precision: MeanStd::default(),
            card_precision_at_100: MeanStd::default(),
            fit_seconds: 0.0,
        })
        .collect();
    let total = folds as usize * settings.len();
    let mut done = 0;
    for k in 0..folds {
        let p = periods.fold(k);
        let rows = training_rows(&snapshot, spec, &p).await?;
        for (i, (_, params)) in settings.iter().enumerate() {
            params.validate()?;
            let valid = validation_rows(&rows, &p, params);
            let fitted = fit_blocking(&rows, spec, valid, params).await?;
            let model = LoadedModel::from_bytes(fitted.family, &fitted.model_file)?;
            let (metrics, _) = test(&snapshot, spec, &model, &(&p).into(), threshold).await?;
            results[i].fit_seconds += fitted.fit_seconds;
            results[i].folds.push((p.train_start, metrics));
            done += 1;
            progress(done, total);
        }
    }
    for r in &mut results {
        let pick =
            |f: fn(&Metrics) -> Option<f64>| r.folds.iter().map(|(_, m)| f(m)).collect::<Vec<_>>();
        r.auc_roc = MeanStd::of(&pick(|m| m.auc_roc));
        r.average_precision = MeanStd::of(&pick(|m| m.average_precision));
        r.card_precision_at_100 = MeanStd::of(&pick(|m| m.card_precision_at_100));
    }
    Ok(results)
}

/// Parses a grid like `max_depth=3,6;n_estimators=50,100` into every combination over `base`.
pub fn parse_grid(grid: &str, base: &TrainParams) -> Result<Vec<(String, TrainParams)>> {
    let mut settings = vec![(String::new(), base.clone())];
    for part in grid.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, values) = part
            .split_once('=')
            .ok_or_else(|| Error::invalid(format!("grid entry '{part}' is not NAME=V1,V2,...")))?;
        let key = key.trim();
        let mut next = Vec::new();
        for (name, params) in &settings {
            for value in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                let mut p = params.clone();
                set_param(&mut p, key, value)?;
                let label = if name.is_empty() {
                    format!("{key}={value}")
                } else {
                    format!("{name} {key}={value}")
                };
                next.push((label, p));
            }
        }
        if next.is_empty() {
            return Err(Error::invalid(format!("grid entry '{part}' has no values")));
        }
        settings = next;
    }
    if settings.len() > 200 {
        return Err(Error::invalid(format!(
            "the grid has {} settings; at most 200 are allowed",
            settings.len()
        )));
    }
    for (name, _) in settings.iter_mut().filter(|(n, _)| n.is_empty()) {
        *name = "defaults".to_string();
    }
    Ok(settings)
}

/// Sets one parameter by its name, as in `fraudlake.toml` and `--grid`, and checks the
/// result: only a parameter of the family `p` trains is accepted (another family's is refused
/// saying whose it is; see [`TrainParams::assign`]).
pub fn set_param(p: &mut TrainParams, key: &str, value: &str) -> Result<()> {
    p.assign(key, value)?;
    p.validate()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamValue;

    #[test]
    fn grid_is_the_cartesian_product() {
        let g = parse_grid(
            "max_depth=3,6; learning_rate=0.1,0.3",
            &TrainParams::default(),
        )
        .expect("parses");
        assert_eq!(g.len(), 4);
        assert_eq!(g[3].0, "max_depth=6 learning_rate=0.3");
        assert_eq!(g[3].1.get("max_depth"), Some(ParamValue::Integer(6)));
        assert_eq!(g[0].1.get("learning_rate"), Some(ParamValue::Number(0.1)));
        assert!(parse_grid("depth=3", &TrainParams::default()).is_err());
        assert!(parse_grid("max_depth=0", &TrainParams::default()).is_err());
        assert_eq!(
            parse_grid("", &TrainParams::default()).expect("ok")[0].0,
            "defaults"
        );
    }

    #[test]
    fn grid_takes_the_parameters_of_the_family_trained() {
        let lightgbm = TrainParams::defaults(ModelFamily::LightGBM);
        let g = parse_grid("num_leaves=15,63; min_data_in_leaf=50", &lightgbm).expect("parses");
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].0, "num_leaves=63 min_data_in_leaf=50");
        assert_eq!(g[1].1.family(), ModelFamily::LightGBM);
        assert_eq!(g[1].1.get("num_leaves"), Some(ParamValue::Integer(63)));
        assert_eq!(
            g[1].1.get("min_data_in_leaf"),
            Some(ParamValue::Integer(50))
        );
        let e = parse_grid("max_depth=3,6", &lightgbm)
            .expect_err("XGBoost's")
            .to_string();
        assert!(
            e.contains("'max_depth' is a parameter of XGBoost, not of LightGBM"),
            "{e}"
        );
        let e = parse_grid("num_leaves=15", &TrainParams::default())
            .expect_err("LightGBM's")
            .to_string();
        assert!(
            e.contains("'num_leaves' is a parameter of LightGBM, not of XGBoost"),
            "{e}"
        );
        assert!(
            parse_grid("num_leaves=1", &lightgbm).is_err(),
            "out of range"
        );

        let mut p = lightgbm;
        set_param(&mut p, "is_unbalance", "true").expect("a LightGBM parameter");
        let e = set_param(&mut p, "scale_pos_weight", "3")
            .expect_err("both weights")
            .to_string();
        assert!(e.contains("is_unbalance"), "{e}");
    }

    #[test]
    fn mean_and_sample_std() {
        let m = MeanStd::of(&[Some(1.0), Some(3.0)]);
        assert_eq!(m.mean, Some(2.0));
        assert!((m.std.expect("two values") - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(MeanStd::of(&[Some(1.0), None]).mean, None);
    }
}
