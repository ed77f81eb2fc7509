//! `fraudlake models list|show|import|promote|rollback|archive|events|sync|shadow|canary`: the
//! registry in the lake, models trained elsewhere registered into it, its mirror in an MLflow
//! tracking server, and the gradual rollout of a version (shadow, canary, canary analysis:
//! docs/rollout.md).

use std::path::PathBuf;

use anyhow::Result;
use chrono::NaiveDate;
use clap::Subcommand;
use fraudlake_model::mlflow::{self, Auth, SyncReport, Target};
use fraudlake_model::protocol::Periods;
use fraudlake_model::registry::gate::{self, GatePolicy};
use fraudlake_model::registry::rollout::{
    self, AnalysisOptions, RolloutAction, RolloutAnalysis, RolloutChange, DEFAULT_CANARY_PERCENT,
};
use fraudlake_model::registry::{
    actor, card, metric_map, Aliases, ModelVersion, Registry, ACTION_STOP,
};
use fraudlake_model::rollout::{CanaryEvidence, CanaryPolicy, PrimaryMetric, Role, Verdict};
use fraudlake_model::train::{import_and_register, FeatureSpec, Import, Registration};
use fraudlake_model::ModelFamily;
use serde::Serialize;

use crate::config::Settings;
use crate::exit;
use crate::output::{print_rows, Format};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every version with its aliases and headline metrics.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// One version (number, vN, champion, challenger, shadow or canary): metrics, lineage,
    /// parameters.
    Show {
        which: String,
        /// Print the model card (Markdown) instead.
        #[arg(long)]
        card: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Register a model trained outside fraudlake (e.g. in Python): an XGBoost JSON model or a
    /// LightGBM text model (`Booster.save_model`). It must take the feature set's columns
    /// (by name, in order, when it stores names); it is evaluated with the handbook protocol
    /// on the test days after the training days it declares, then registered like a trained
    /// version (challenger; champion of an empty registry), its lineage saying "imported".
    Import(ImportArgs),
    /// Make a version the champion if it passes the gate against the current champion.
    Promote {
        which: String,
        /// Gate metric (default from [gate] in fraudlake.toml, else average_precision).
        #[arg(long)]
        metric: Option<String>,
        /// How much worse than the champion the candidate may be (absolute).
        #[arg(long)]
        tolerance: Option<f64>,
        /// Days both are scored on: champion_test (default, or [gate] window) or
        /// candidate_test (the candidate's, more recent, test period).
        #[arg(long)]
        window: Option<fraudlake_model::registry::gate::GateWindow>,
        /// Promote even if the gate fails (needs --reason; recorded).
        #[arg(long, requires = "reason")]
        force: bool,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Make the previous champion the champion again.
    Rollback {
        #[arg(long)]
        reason: Option<String>,
    },
    /// Retire a version (not the champion).
    Archive {
        which: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// The audit log of registrations and alias changes.
    Events {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Start a version as the shadow (`models shadow V`: it scores every transaction beside the
    /// champion and decides nothing), or stop it (`models shadow stop`).
    Shadow(ShadowArgs),
    /// Start a version as the canary (`models canary V --percent P`: it decides for a sticky P %
    /// of customers and scores everyone), stop it (`models canary stop`), or judge it against
    /// the champion on labeled live traffic (`models canary analyze [--shadow] [--apply]`).
    Canary(CanaryArgs),
    /// Mirror the registry into an MLflow tracking server: one run and one registered-model
    /// version per version, aliases champion/challenger/shadow/canary, archived versions
    /// tagged. Idempotent;
    /// the lake is only read. Credentials: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME
    /// and MLFLOW_TRACKING_PASSWORD.
    Sync {
        #[command(flatten)]
        mlflow: MlflowArgs,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// `models import FILE --family F --train-start DAY`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The model file.
    pub file: PathBuf,
    /// What the file is: xgboost (XGBoost JSON) or lightgbm (LightGBM text).
    #[arg(long, value_parser = parse_family)]
    pub family: ModelFamily,
    /// First day of the data it was trained on, YYYY-MM-DD: the promotion gate never scores
    /// it on its training days or their label delay.
    #[arg(long)]
    pub train_start: NaiveDate,
    #[arg(long, default_value_t = 7)]
    pub train_days: u32,
    /// Days between training and test (labels arrive late).
    #[arg(long, default_value_t = 7)]
    pub delay_days: u32,
    /// Days it is evaluated on, after the delay.
    #[arg(long, default_value_t = 7)]
    pub test_days: u32,
    /// Decision threshold for precision/recall.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// The feature set it was trained on (its sha256, or a prefix): refused unless it is
    /// the feature SQL's.
    #[arg(long)]
    pub feature_set: Option<String>,
    /// The feature SQL (default sql/features.sql, env FRAUDLAKE_FEATURES_SQL).
    #[arg(long = "sql")]
    pub sql: Option<PathBuf>,
    /// Free text stored with the version (default: where it was imported from).
    #[arg(long)]
    pub note: Option<String>,
    /// Label precedence of the evaluation, most trusted source kind first (as `train`).
    #[arg(long)]
    pub label_precedence: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// A model family flag (`--family`, `train --model`).
pub(crate) fn parse_family(s: &str) -> std::result::Result<ModelFamily, String> {
    s.parse::<ModelFamily>().map_err(|e| e.to_string())
}

/// `models shadow V` or `models shadow stop`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ShadowArgs {
    #[command(subcommand)]
    pub action: Option<ShadowAction>,
    /// The version to shadow: a number, vN or challenger.
    #[arg(required = true)]
    pub which: Option<String>,
    /// Recorded in the audit log.
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum ShadowAction {
    /// Stop the running shadow.
    Stop {
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// `models canary V --percent P`, `models canary stop` or `models canary analyze`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CanaryArgs {
    #[command(subcommand)]
    pub action: Option<CanaryAction>,
    /// The version to start as canary: a number, vN, challenger or shadow. Again with another
    /// percent to ramp it.
    #[arg(required = true)]
    pub which: Option<String>,
    /// Share of customers it decides for: [0, 100], at most two decimals.
    #[arg(long, required = true)]
    pub percent: Option<f64>,
    /// Recorded in the audit log.
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum CanaryAction {
    /// Stop the running canary (its customers go back to the champion).
    Stop {
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Compare the canary (or shadow) with the champion on the labeled transactions it scored
    /// since its rollout began: average precision, card precision@k, decline and false
    /// decline rates, paired customer bootstrap intervals, verdict promote/rollback/wait.
    Analyze(AnalyzeArgs),
}

/// The canary policy; every flag defaults to docs/rollout.md section 6.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Judge the shadow instead of the canary.
    #[arg(long)]
    pub shadow: bool,
    /// Act on the verdict and record it with its evidence: a canary is promoted to champion
    /// or rolled back, a shadow starts as canary (at --percent) or is rolled back.
    #[arg(long)]
    pub apply: bool,
    /// The percent a promoted shadow starts its canary at (with --shadow --apply).
    #[arg(long, default_value_t = DEFAULT_CANARY_PERCENT)]
    pub percent: f64,
    /// The metric of the verdict: average_precision (default) or card_precision.
    #[arg(long)]
    pub metric: Option<PrimaryMetric>,
    /// How much worse than the champion the candidate may be on the metric (default 0.02).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Labeled frauds needed before any verdict but wait (default 50).
    #[arg(long)]
    pub min_frauds: Option<usize>,
    /// Two-sided level of the bootstrap intervals (default 0.9).
    #[arg(long)]
    pub confidence: Option<f64>,
    /// Bootstrap resamples of customers (default 500).
    #[arg(long)]
    pub resamples: Option<usize>,
    /// How much larger a share of legitimate transactions the candidate may decline (default
    /// 0.005).
    #[arg(long)]
    pub max_false_decline_increase: Option<f64>,
    /// The server's decline threshold, `serve --decline-threshold` (default 0.8).
    #[arg(long)]
    pub decline_threshold: Option<f64>,
    /// The k of card precision@k (default 100).
    #[arg(long)]
    pub k: Option<usize>,
    /// Seed of the bootstrap (the same seed gives the same intervals).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Label precedence, most trusted first (default [labels] in fraudlake.toml, else
    /// ingest>api).
    #[arg(long)]
    pub label_precedence: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

impl AnalyzeArgs {
    fn policy(&self) -> CanaryPolicy {
        let d = CanaryPolicy::default();
        CanaryPolicy {
            metric: self.metric.unwrap_or(d.metric),
            k: self.k.unwrap_or(d.k),
            tolerance: self.tolerance.unwrap_or(d.tolerance),
            min_frauds: self.min_frauds.unwrap_or(d.min_frauds),
            confidence: self.confidence.unwrap_or(d.confidence),
            resamples: self.resamples.unwrap_or(d.resamples),
            seed: self.seed.unwrap_or(d.seed),
            decline_threshold: self.decline_threshold.unwrap_or(d.decline_threshold),
            max_false_decline_increase: self
                .max_false_decline_increase
                .unwrap_or(d.max_false_decline_increase),
        }
    }
}

/// Where a sync goes; each flag overrides `[mlflow]` in fraudlake.toml.
#[derive(Debug, Clone, clap::Args)]
pub struct MlflowArgs {
    /// Tracking server URL, e.g. http://127.0.0.1:5000 (else FRAUDLAKE_MLFLOW_TRACKING_URI,
    /// [mlflow] tracking_uri, MLFLOW_TRACKING_URI).
    #[arg(long = "mlflow", value_name = "URL")]
    pub tracking_uri: Option<String>,
    /// Registered model name (default [mlflow] registered_model, else fraud-detector).
    #[arg(long)]
    pub registered_model: Option<String>,
    /// Experiment of the runs (default [mlflow] experiment, else fraudlake).
    #[arg(long)]
    pub experiment: Option<String>,
}

impl MlflowArgs {
    /// The resolved target (a bad-input error when no URI is set anywhere).
    pub fn target(&self, settings: &Settings) -> Result<Target> {
        Ok(settings.mlflow.require_target(
            self.tracking_uri.as_deref(),
            self.registered_model.as_deref(),
            self.experiment.as_deref(),
        )?)
    }
}

#[derive(Serialize)]
struct SyncRow {
    version: i64,
    status: &'static str,
    mlflow_model_version: String,
    run_id: String,
    this_sync: String,
}

/// Prints a sync's outcome.
pub fn print_sync(report: &SyncReport, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let rows: Vec<SyncRow> = report
        .versions
        .iter()
        .map(|v| SyncRow {
            version: v.version,
            status: v.status,
            mlflow_model_version: v.model_version.clone(),
            run_id: v.run_id.clone(),
            this_sync: match (v.run_created, v.model_version_created) {
                (true, true) => "run + model version created".into(),
                (true, false) => "run completed".into(),
                (false, true) => "model version created".into(),
                (false, false) => "unchanged".into(),
            },
        })
        .collect();
    print_rows(&rows, format)?;
    if format == Format::Table {
        let aliases: Vec<String> = report
            .aliases
            .iter()
            .map(|(a, v)| format!("{a} -> version {v}"))
            .collect();
        println!(
            "MLflow {}: experiment '{}' ({}), registered model '{}': {} run(s) and {} model version(s) created, {} tag(s) updated; aliases {}{}",
            report.tracking_uri,
            report.experiment,
            report.experiment_id,
            report.registered_model,
            report.runs_created,
            report.model_versions_created,
            report.tags_updated,
            if aliases.is_empty() {
                "none".to_string()
            } else {
                aliases.join(", ")
            },
            if report.alias_changes.is_empty() {
                String::new()
            } else {
                format!(" (moved: {})", report.alias_changes.join("; "))
            }
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct ListRow {
    version: i64,
    aliases: String,
    status: &'static str,
    family: &'static str,
    created_at: String,
    train_days: String,
    auc_roc: String,
    average_precision: String,
    card_precision_at_100: String,
    feature_set: String,
    note: String,
}

fn f4(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

fn list_row(v: &ModelVersion) -> ListRow {
    let r = &v.record;
    ListRow {
        version: r.version,
        aliases: v.aliases.join(","),
        status: if v.archived { "archived" } else { "active" },
        family: r.model_family.name(),
        created_at: r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        train_days: format!("{}..{}", r.lineage.train_from, r.lineage.train_to),
        auc_roc: f4(r.metrics.auc_roc),
        average_precision: f4(r.metrics.average_precision),
        card_precision_at_100: f4(r.metrics.card_precision_at_100),
        feature_set: r.feature_set.chars().take(12).collect(),
        note: r.note.clone(),
    }
}

/// JSON form of a version: the record with metrics also under their plain names.
fn json_of(v: &ModelVersion) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(v)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "metric_values".into(),
            serde_json::to_value(metric_map(&v.record.metrics))?,
        );
    }
    Ok(value)
}

pub async fn run(cmd: ModelsCommand, settings: &Settings) -> Result<u8> {
    let registry = Registry::new(settings.open_lake()?);
    match cmd {
        ModelsCommand::List { format } => {
            let versions = registry.list().await?;
            if format == Format::Json {
                // Without the curves (up to 600 points a version): `models show` has them.
                let values = versions
                    .iter()
                    .map(|v| -> Result<serde_json::Value> {
                        let mut value = json_of(v)?;
                        if let Some(obj) = value.as_object_mut() {
                            obj.remove("curves");
                        }
                        Ok(value)
                    })
                    .collect::<Result<Vec<_>>>()?;
                println!("{}", serde_json::to_string_pretty(&values)?);
            } else if versions.is_empty() && format == Format::Table {
                println!("no models yet: run `fraudlake train`");
            } else {
                print_rows(&versions.iter().map(list_row).collect::<Vec<_>>(), format)?;
                if format == Format::Table {
                    if let Some(line) = rollout_line(&registry.aliases().await?) {
                        println!("{line}");
                    }
                }
            }
            Ok(0)
        }
        ModelsCommand::Show {
            which, card: true, ..
        } => {
            let v = registry.get(&which).await?;
            print!("{}", card::markdown(&v.record));
            Ok(0)
        }
        ModelsCommand::Show { which, format, .. } => {
            let v = registry.get(&which).await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&json_of(&v)?)?);
                return Ok(0);
            }
            print_rows(&[list_row(&v)], format)?;
            println!();
            print_rows(&super::train::metric_rows(&v.record.metrics), format)?;
            println!();
            #[derive(Serialize)]
            struct Kv {
                key: String,
                value: String,
            }
            let r = &v.record;
            let mut rows = vec![
                Kv {
                    key: "test days".into(),
                    value: format!("{}..{}", r.lineage.test_from, r.lineage.test_to),
                },
                Kv {
                    key: "train rows / frauds".into(),
                    value: format!("{} / {}", r.lineage.train_rows, r.lineage.train_frauds),
                },
                Kv {
                    key: "rounds".into(),
                    value: r.rounds.to_string(),
                },
                Kv {
                    key: "model family".into(),
                    value: r.model_family.name().into(),
                },
                Kv {
                    key: "params".into(),
                    value: if r.lineage.is_imported() {
                        "not known (imported)".into()
                    } else {
                        serde_json::to_string(&r.params)?
                    },
                },
                Kv {
                    key: "artifact".into(),
                    value: format!("{} (sha256 {})", r.artifact, r.artifact_sha256),
                },
            ];
            if let Some(file) = &r.lineage.imported_from {
                rows.push(Kv {
                    key: "imported from".into(),
                    value: file.clone(),
                });
            }
            for t in &r.lineage.tables {
                rows.push(Kv {
                    key: format!("read {}", t.table),
                    value: format!("version {}", t.version),
                });
            }
            print_rows(&rows, format)?;
            Ok(0)
        }
        ModelsCommand::Promote {
            which,
            metric,
            tolerance,
            window,
            force,
            reason,
            format,
        } => {
            let policy = GatePolicy {
                metric: metric.unwrap_or_else(|| settings.gate.metric.clone()),
                tolerance: tolerance.unwrap_or(settings.gate.tolerance),
                window: window.unwrap_or(settings.gate.window),
            };
            let report =
                gate::promote(&registry, &which, &policy, force, reason.as_deref()).await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if report.promoted {
                println!(
                    "version {} is now the champion{} ({})",
                    report.candidate,
                    if report.forced {
                        " (forced past the gate)"
                    } else {
                        ""
                    },
                    report.reason
                );
            } else if report.passed {
                println!("{}", report.reason);
            } else {
                println!(
                    "gate refused version {}: {}; it stays as it is (use --force --reason to override)",
                    report.candidate, report.reason
                );
            }
            Ok(if report.promoted || report.passed {
                0
            } else {
                exit::CHECK_FAILED
            })
        }
        ModelsCommand::Rollback { reason } => {
            let (from, to) = gate::rollback(&registry, reason.as_deref()).await?;
            println!("champion rolled back from version {from} to version {to}");
            Ok(0)
        }
        ModelsCommand::Archive { which, reason } => {
            let v = gate::archive(&registry, &which, reason.as_deref()).await?;
            println!("version {v} archived");
            Ok(0)
        }
        ModelsCommand::Events { format } => {
            print_rows(&registry.events().await?, format)?;
            Ok(0)
        }
        ModelsCommand::Import(a) => import(&registry, a, settings).await,
        ModelsCommand::Shadow(a) => shadow(&registry, a).await,
        ModelsCommand::Canary(a) => canary(&registry, a, settings).await,
        ModelsCommand::Sync { mlflow: m, format } => {
            let target = m.target(settings)?;
            let report = mlflow::sync(&registry, &target, Auth::from_env()).await?;
            print_sync(&report, format)?;
            Ok(0)
        }
    }
}

/// `models import`: the file checked, evaluated and registered through the same
/// `Registry::register` as `train`.
async fn import(registry: &Registry, a: ImportArgs, settings: &Settings) -> Result<u8> {
    let sql = a
        .sql
        .clone()
        .unwrap_or_else(|| settings.features_sql.clone());
    let spec = FeatureSpec::load(&sql).await?;
    if let Some(declared) = a.feature_set.as_deref().map(str::trim) {
        if declared.is_empty() || !spec.sha256.starts_with(declared) {
            return Err(crate::bad_input(format!(
                "the model is declared for feature set '{declared}', but {} is {}",
                sql.display(),
                spec.sha256
            )));
        }
    }
    let source = a.file.display().to_string();
    let bytes = std::fs::read(&a.file)
        .map_err(|e| crate::bad_input(format!("cannot read the model file {source}: {e}")))?;
    let periods = Periods {
        train_start: a.train_start,
        train_days: a.train_days,
        delay_days: a.delay_days,
        test_days: a.test_days,
    };
    let policy = settings.label_policy(a.label_precedence.as_deref())?;
    let note = a
        .note
        .clone()
        .unwrap_or_else(|| format!("imported from {source}"));
    let record = import_and_register(
        registry.lake(),
        &spec,
        Import {
            source: source.clone(),
            family: a.family,
            bytes,
        },
        &periods,
        a.threshold,
        &policy,
        Registration {
            created_by: actor(),
            note,
        },
    )
    .await?;
    let v = registry.get(&record.version.to_string()).await?;
    let card = registry
        .lake()
        .file_url("models", &format!("v{}/card.html", record.version));
    if a.format == Format::Json {
        #[derive(Serialize)]
        struct Out<'a> {
            version: i64,
            aliases: &'a [String],
            model_family: ModelFamily,
            imported_from: &'a str,
            artifact: &'a str,
            trees: u32,
            test_from: &'a str,
            test_to: &'a str,
            metrics: std::collections::BTreeMap<String, Option<f64>>,
            card: &'a str,
        }
        let out = Out {
            version: record.version,
            aliases: &v.aliases,
            model_family: record.model_family,
            imported_from: &source,
            artifact: &record.artifact,
            trees: record.rounds,
            test_from: &record.lineage.test_from,
            test_to: &record.lineage.test_to,
            metrics: metric_map(&record.metrics),
            card: &card,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!(
        "imported {source} ({}, {} trees) as model version {} [{}]; evaluated on {} .. {}:",
        record.model_family,
        record.rounds,
        record.version,
        v.aliases.join(", "),
        record.lineage.test_from,
        record.lineage.test_to
    );
    print_rows(&super::train::metric_rows(&record.metrics), a.format)?;
    println!("card: {card}");
    Ok(0)
}

/// The running rollout under `models list`: `rollout: canary version 3 at 10 % of customers;
/// shadow version 4`, or nothing.
fn rollout_line(aliases: &Aliases) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(c) = aliases.canary {
        parts.push(format!(
            "canary version {} at {} % of customers",
            c.version, c.percent
        ));
    }
    if let Some(v) = aliases.shadow {
        parts.push(format!("shadow version {v}"));
    }
    (!parts.is_empty()).then(|| format!("rollout: {}", parts.join("; ")))
}

async fn shadow(registry: &Registry, a: ShadowArgs) -> Result<u8> {
    if let Some(ShadowAction::Stop { reason, format }) = a.action {
        let change = rollout::stop_rollout(registry, Role::Shadow, reason.as_deref()).await?;
        return print_change(&change, format);
    }
    let which = a
        .which
        .ok_or_else(|| fraudlake_model::Error::invalid("give the version to shadow, or `stop`"))?;
    let change =
        rollout::start_rollout(registry, Role::Shadow, &which, None, a.reason.as_deref()).await?;
    print_change(&change, a.format)
}

async fn canary(registry: &Registry, a: CanaryArgs, settings: &Settings) -> Result<u8> {
    match a.action {
        Some(CanaryAction::Stop { reason, format }) => {
            let change = rollout::stop_rollout(registry, Role::Canary, reason.as_deref()).await?;
            print_change(&change, format)
        }
        Some(CanaryAction::Analyze(args)) => analyze(registry, &args, settings).await,
        None => {
            let which = a.which.ok_or_else(|| {
                fraudlake_model::Error::invalid(
                    "give the version to start as canary (with --percent), `stop` or `analyze`",
                )
            })?;
            let change = rollout::start_rollout(
                registry,
                Role::Canary,
                &which,
                a.percent,
                a.reason.as_deref(),
            )
            .await?;
            print_change(&change, a.format)
        }
    }
}

/// Prints a start or stop; warnings go to stderr (and stay in the JSON).
fn print_change(c: &RolloutChange, format: Format) -> Result<u8> {
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(c)?);
        return Ok(0);
    }
    let (role, v) = (c.role, c.version);
    let share = c
        .percent
        .map_or_else(String::new, |p| format!(" for {p} % of customers"));
    let text = if c.action == ACTION_STOP {
        format!("the {role} (version {v}) is stopped")
    } else if !c.changed {
        format!("version {v} is already the {role}{share}: nothing changed")
    } else {
        let replaced = c
            .previous_version
            .filter(|p| *p != v)
            .map_or_else(String::new, |p| format!(", in place of version {p}"));
        format!("version {v} is now the {role}{share}{replaced}")
    };
    println!("{text}");
    Ok(0)
}

async fn analyze(registry: &Registry, a: &AnalyzeArgs, settings: &Settings) -> Result<u8> {
    let options = AnalysisOptions {
        role: if a.shadow { Role::Shadow } else { Role::Canary },
        policy: a.policy(),
        labels: settings.label_policy(a.label_precedence.as_deref())?,
        apply: a.apply,
        canary_percent: a.percent,
    };
    let out = rollout::analyze_rollout(registry, &options).await?;
    print_analysis(&out, a.format)?;
    Ok(0)
}

#[derive(Serialize)]
struct EvidenceRow {
    metric: &'static str,
    champion: String,
    candidate: String,
    difference: String,
    interval: String,
    resamples: usize,
}

/// Both models' metrics and the bootstrap interval of each difference, one row per metric.
fn evidence_rows(e: &CanaryEvidence) -> Vec<EvidenceRow> {
    let level = e.policy.confidence * 100.0;
    let (a, b) = (&e.champion, &e.candidate);
    [
        (
            "average_precision",
            a.average_precision,
            b.average_precision,
            e.average_precision,
        ),
        (
            "card_precision",
            a.card_precision,
            b.card_precision,
            e.card_precision,
        ),
        (
            "decline_rate",
            a.decline_rate,
            b.decline_rate,
            e.decline_rate,
        ),
        (
            "false_decline_rate",
            a.false_decline_rate,
            b.false_decline_rate,
            e.false_decline_rate,
        ),
    ]
    .into_iter()
    .map(|(metric, champion, candidate, d)| EvidenceRow {
        metric,
        champion: f4(champion),
        candidate: f4(candidate),
        difference: d
            .estimate
            .map_or_else(|| "n/a".into(), |v| format!("{v:+.4}")),
        interval: match (d.low, d.high) {
            (Some(low), Some(high)) => format!("{low:+.4} .. {high:+.4} ({level:.0} %)"),
            _ => "n/a".into(),
        },
        resamples: d.resamples,
    })
    .collect()
}

fn verdict_name(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Promote) => "promote",
        Some(Verdict::Rollback) => "rollback",
        Some(Verdict::Wait) => "wait",
        None => "none",
    }
}

fn action_name(a: RolloutAction) -> &'static str {
    match a {
        RolloutAction::None => "none",
        RolloutAction::Promoted => "promoted to champion",
        RolloutAction::RolledBack => "rolled back",
        RolloutAction::CanaryStarted => "started as canary",
    }
}

/// JSON: the whole analysis. Table: what was judged, the metrics, the verdict and the action.
/// CSV: the metric rows.
fn print_analysis(out: &RolloutAnalysis, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(out)?);
        return Ok(());
    }
    let rows = out.evidence.as_ref().map(evidence_rows).unwrap_or_default();
    if format == Format::Csv {
        return print_rows(&rows, format);
    }
    if let (Some(v), Some(e)) = (out.version, &out.evidence) {
        let share = out
            .percent
            .map_or_else(String::new, |p| format!(" at {p} %"));
        let since = out.since.map_or_else(String::new, |s| {
            s.format(" since %Y-%m-%d %H:%M:%S UTC").to_string()
        });
        println!(
            "{} version {v}{share}{since}: {} transactions scored, {} labeled ({} frauds, {} customers)",
            out.role, out.scored_rows, e.rows, e.labeled_frauds, e.customers
        );
        print_rows(&rows, format)?;
    }
    println!("verdict: {}: {}", verdict_name(out.verdict), out.reason);
    let applied = if out.applied || !out.rollout_data {
        action_name(out.action)
    } else {
        "none (not applied: --apply acts on the verdict)"
    };
    println!("action: {applied}");
    Ok(())
}
