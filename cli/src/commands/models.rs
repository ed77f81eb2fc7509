//! `fraudlake models list|show|promote|rollback|archive|events|sync`: the registry in the lake,
//! and its mirror in an MLflow tracking server.

use anyhow::Result;
use clap::Subcommand;
use fraudlake_model::mlflow::{self, Auth, SyncReport, Target};
use fraudlake_model::registry::gate::{self, GatePolicy};
use fraudlake_model::registry::{card, metric_map, ModelVersion, Registry};
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
    /// One version (number, vN, champion or challenger): metrics, lineage, parameters.
    Show {
        which: String,
        /// Print the model card (Markdown) instead.
        #[arg(long)]
        card: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
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
    /// Mirror the registry into an MLflow tracking server: one run and one registered-model
    /// version per version, aliases champion/challenger, archived versions tagged. Idempotent;
    /// the lake is only read. Credentials: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME
    /// and MLFLOW_TRACKING_PASSWORD.
    Sync {
        #[command(flatten)]
        mlflow: MlflowArgs,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
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
                let values = versions.iter().map(json_of).collect::<Result<Vec<_>>>()?;
                println!("{}", serde_json::to_string_pretty(&values)?);
            } else if versions.is_empty() && format == Format::Table {
                println!("no models yet: run `fraudlake train`");
            } else {
                print_rows(&versions.iter().map(list_row).collect::<Vec<_>>(), format)?;
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
                    key: "params".into(),
                    value: serde_json::to_string(&r.params)?,
                },
                Kv {
                    key: "artifact".into(),
                    value: format!("{} (sha256 {})", r.artifact, r.artifact_sha256),
                },
            ];
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
        ModelsCommand::Sync { mlflow: m, format } => {
            let target = m.target(settings)?;
            let report = mlflow::sync(&registry, &target, Auth::from_env()).await?;
            print_sync(&report, format)?;
            Ok(0)
        }
    }
}
