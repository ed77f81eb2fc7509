//! The built-in ops a DAG task can run. Each calls the same library code as the CLI command of
//! the same name (never the binary), on the run's logical date, and returns a JSON summary that
//! later tasks' conditions (`run_if = "drift.dataset_drift"`) and the run history read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};
use fraudlake_features::{compile, offline, FeatureSet};
use fraudlake_model::booster::TrainParams;
use fraudlake_model::protocol::Periods;
use fraudlake_model::registry::gate::{self, GatePolicy};
use fraudlake_model::registry::{actor, metric_map, NewVersion, Registry};
use fraudlake_model::train::{self, FeatureSpec, TestWindow};
use fraudlake_pipeline::lake::Lake;
use fraudlake_pipeline::{Error, Result};
use serde_json::{json, Value};

use crate::spec::{
    DriftReference, DriftReportArgs, EvaluateArgs, FeaturesBuildArgs, IngestArgs, IngestPreset,
    ModelRef, NotifyArgs, NotifyOn, OpArgs, PromoteArgs, RegisterArgs, SqlArgs, TrainArgs,
};
use crate::state::RunState;

/// What every op may use: the lake and the process's configuration.
#[derive(Debug, Clone)]
pub struct OpEnv {
    pub lake: Lake,
    /// The feature SQL the features op builds and the train op trains on.
    pub features_sql: PathBuf,
    /// Where `sql` tasks find their files (the repository's `sql/`).
    pub sql_dir: PathBuf,
    pub train: TrainParams,
    pub gate: GatePolicy,
    pub drift: fraudlake_drift::DriftOptions,
}

/// One task attempt's view of its run.
pub struct OpCtx<'a> {
    pub env: &'a OpEnv,
    pub dag: &'a str,
    pub run_id: &'a str,
    pub logical_date: NaiveDate,
    /// Outputs of the tasks that finished so far, by task id (plus the run's built-ins).
    pub context: &'a Value,
    /// Success so far, or failed once a task failed (what `notify` reports).
    pub state: RunState,
    /// Lines for the task's log file.
    pub log: Vec<String>,
}

impl OpCtx<'_> {
    fn note(&mut self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!(dag = self.dag, run = self.run_id, "{line}");
        self.log.push(line);
    }

    /// The model version a task means: a number, the champion, or the version this run's
    /// `train`/`register` task produced.
    async fn model(&self, which: &ModelRef) -> Result<String> {
        match which {
            ModelRef::Version(v) => Ok(v.to_string()),
            ModelRef::Champion => Ok("champion".into()),
            ModelRef::Candidate => {
                let found = self.context.as_object().and_then(|m| {
                    m.values()
                        .filter_map(|v| v.get("candidate_version").and_then(Value::as_i64))
                        .next_back()
                });
                found.map(|v| v.to_string()).ok_or_else(|| {
                    Error::invalid(
                        "no candidate model: no train or register task of this run produced one",
                    )
                })
            }
        }
    }
}

async fn feature_spec(path: &Path) -> Result<FeatureSpec> {
    let fs = FeatureSet::load(path)?;
    let plan = compile(&fs).await?;
    Ok(FeatureSpec {
        sha256: fs.sha256.clone(),
        sql: fs.sql.clone(),
        names: plan.feature_names(),
    })
}

/// Runs one op; the JSON it returns is the task's output.
pub async fn run(args: &OpArgs, ctx: &mut OpCtx<'_>) -> Result<Value> {
    let env = ctx.env;
    let lake = &env.lake;
    match args {
        OpArgs::Ingest(IngestArgs { source, preset }) => {
            if source.starts_with("http://") || source.starts_with("https://") {
                return Err(Error::invalid(format!(
                    "ingest reads files the scheduler can see; download {source} first"
                )));
            }
            let opts = fraudlake_pipeline::ingest::IngestOptions {
                format: None,
                preset: preset.map(|p| match p {
                    IngestPreset::Handbook => fraudlake_pipeline::ingest::Preset::Handbook,
                }),
                mappings: Vec::new(),
                label_source: None,
                progress: false,
            };
            let s = fraudlake_pipeline::ingest::ingest_file(lake, Path::new(source), &opts).await?;
            ctx.note(format!(
                "ingested {source}: {} accepted, {} rejected, {} already present",
                s.accepted, s.rejected, s.already_present
            ));
            Ok(json!({"accepted": s.accepted, "rejected": s.rejected,
                      "already_present": s.already_present}))
        }
        OpArgs::FeaturesBuild(FeaturesBuildArgs { sql }) => {
            let path = env.sql_dir.join(sql);
            let plan = compile(&FeatureSet::load(&path)?).await?;
            let s = offline::build(lake, &plan, None, None).await?;
            ctx.note(format!(
                "features built from {}: {} rows in {:.2} s",
                path.display(),
                s.rows,
                s.seconds
            ));
            Ok(json!({"rows": s.rows, "seconds": s.seconds,
                      "feature_set": plan.feature_set.sha256}))
        }
        OpArgs::DriftReport(DriftReportArgs {
            reference,
            current_days,
        }) => {
            let opts = fraudlake_drift::DriftOptions {
                reference: match *reference {
                    DriftReference::Champion => fraudlake_drift::PeriodSpec::Champion,
                    DriftReference::Range { from, to } => {
                        fraudlake_drift::PeriodSpec::Range { from, to }
                    }
                },
                current: None,
                current_days: *current_days,
                as_of: Some(ctx.logical_date),
                ..env.drift.clone()
            };
            let report = fraudlake_drift::compute(lake, &opts).await?;
            let saved = fraudlake_drift::save(lake, &report).await?;
            let drifted: Vec<&str> = report
                .columns
                .iter()
                .filter(|c| c.drifted)
                .map(|c| c.name.as_str())
                .collect();
            ctx.note(format!(
                "drift {} vs {}: {} of {} columns drifted; dataset drift {}; report {}",
                report.reference.label,
                report.current.label,
                drifted.len(),
                report.columns.len(),
                report.dataset_drift,
                saved.html
            ));
            Ok(json!({
                "dataset_drift": report.dataset_drift,
                "drift_share": report.drift_share,
                "drifted_columns": drifted,
                "prediction_drift": report.prediction.as_ref().map(|p| p.drifted),
                "report": saved.html,
                "run_id": report.run_id,
            }))
        }
        OpArgs::Train(TrainArgs {
            train_days,
            delay_days,
            test_days,
            params,
        }) => {
            let spec = feature_spec(&env.features_sql).await?;
            let mut p = env.train.clone();
            for (k, v) in params {
                train::set_param(&mut p, k, &v.to_string())?;
            }
            let total = i64::from(train_days + delay_days + test_days);
            let periods = Periods {
                train_start: ctx.logical_date - Duration::days(total - 1),
                train_days: *train_days,
                delay_days: *delay_days,
                test_days: *test_days,
            };
            ctx.note(format!(
                "training on {}..{}, testing on {}..{}",
                periods.train_start,
                periods.train_end(),
                periods.test_start(),
                periods.test_end()
            ));
            let trained = train::train(lake, &spec, &periods, &p, 0.5).await?;
            let registry = Registry::new(lake.clone());
            let record = registry
                .register(NewVersion {
                    created_by: format!("dag:{}:{}", ctx.dag, actor()),
                    note: format!("DAG {} run {}", ctx.dag, ctx.run_id),
                    feature_set: spec.sha256.clone(),
                    feature_sql: spec.sql.clone(),
                    feature_names: spec.names.clone(),
                    periods,
                    params: p,
                    rounds: trained.fitted.rounds,
                    metrics: trained.metrics.clone(),
                    lineage: trained.lineage,
                    model_json: trained.fitted.json,
                })
                .await?;
            ctx.note(format!(
                "registered version {} (AUC {:?}, AP {:?})",
                record.version, trained.metrics.auc_roc, trained.metrics.average_precision
            ));
            Ok(json!({"candidate_version": record.version,
                      "metrics": metric_map(&trained.metrics),
                      "train_rows": record.lineage.train_rows}))
        }
        OpArgs::Evaluate(EvaluateArgs { model, test_days }) => {
            let which = ctx.model(model).await?;
            let registry = Registry::new(lake.clone());
            let v = registry.get(&which).await?;
            let (_, forest) = registry.load_artifact(&v.record).await?;
            let from = ctx.logical_date - Duration::days(i64::from(*test_days) - 1);
            let window = TestWindow {
                known_from: v.record.periods.train_start.min(from),
                delay_days: v.record.periods.delay_days,
                from,
                to: ctx.logical_date,
            };
            let m = train::evaluate_model(
                lake,
                &v.record.feature_spec(),
                &forest,
                &window,
                v.record.metrics.threshold,
            )
            .await?;
            ctx.note(format!(
                "version {} on {from}..{}: AUC {:?}, AP {:?}",
                v.record.version, ctx.logical_date, m.auc_roc, m.average_precision
            ));
            Ok(
                json!({"version": v.record.version, "metrics": metric_map(&m),
                      "test_from": from.to_string(), "test_to": ctx.logical_date.to_string()}),
            )
        }
        OpArgs::Register(RegisterArgs { path, feature_set }) => {
            let bytes = std::fs::read(path)
                .map_err(|e| Error::io(format!("cannot read the model file {path}"), e))?;
            let spec = feature_spec(&env.features_sql).await?;
            if let Some(fs) = feature_set {
                if !spec.sha256.starts_with(fs.as_str()) {
                    return Err(Error::invalid(format!(
                        "the model is declared for feature set {fs}, but {} is {}",
                        env.features_sql.display(),
                        spec.sha256
                    )));
                }
            }
            let registry = Registry::new(lake.clone());
            // An external model has no training run here: its metrics come from evaluating it
            // on the week before the logical date, like a candidate.
            let forest = fraudlake_model::trees::Forest::from_json(&bytes)
                .map_err(|e| Error::Model(format!("{path}: {e}")))?;
            let periods = Periods {
                train_start: ctx.logical_date - Duration::days(20),
                train_days: 7,
                delay_days: 7,
                test_days: 7,
            };
            let window = TestWindow {
                known_from: periods.train_start,
                delay_days: periods.delay_days,
                from: periods.test_start(),
                to: periods.test_end(),
            };
            let metrics = train::evaluate_model(lake, &spec, &forest, &window, 0.5).await?;
            let record = registry
                .register(NewVersion {
                    created_by: format!("dag:{}:{}", ctx.dag, actor()),
                    note: format!("registered from {path} by DAG {}", ctx.dag),
                    feature_set: spec.sha256.clone(),
                    feature_sql: spec.sql.clone(),
                    feature_names: spec.names.clone(),
                    periods,
                    params: TrainParams::default(),
                    rounds: forest.num_trees() as u32,
                    metrics: metrics.clone(),
                    lineage: fraudlake_model::registry::Lineage {
                        tables: Vec::new(),
                        train_from: String::new(),
                        train_to: String::new(),
                        test_from: window.from.to_string(),
                        test_to: window.to.to_string(),
                        train_rows: 0,
                        train_frauds: 0,
                        test_rows: metrics.test_rows,
                        test_frauds: metrics.test_frauds,
                        label_policy: String::new(),
                        labels_overridden: Vec::new(),
                    },
                    model_json: bytes,
                })
                .await?;
            ctx.note(format!("registered {path} as version {}", record.version));
            Ok(json!({"candidate_version": record.version}))
        }
        OpArgs::Promote(PromoteArgs {
            model,
            force,
            reason,
            window,
        }) => {
            let which = ctx.model(model).await?;
            let registry = Registry::new(lake.clone());
            let policy = GatePolicy {
                window: window.unwrap_or(env.gate.window),
                ..env.gate.clone()
            };
            let r = gate::promote(&registry, &which, &policy, *force, reason.as_deref()).await?;
            ctx.note(format!(
                "gate for version {} vs champion {:?} on {}: candidate {:?}, champion {:?}: {}",
                r.candidate,
                r.champion,
                r.metric,
                r.candidate_score,
                r.champion_score,
                if r.promoted {
                    "promoted"
                } else {
                    "refused: it stays challenger"
                }
            ));
            Ok(serde_json::to_value(&r).map_err(|e| Error::invalid(e.to_string()))?)
        }
        OpArgs::Sql(SqlArgs { file }) => {
            let path = env.sql_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            // With `tx_labeled`, as in `fraudlake sql`.
            let session = fraudlake_features::session(lake, &[]).await?;
            let batches = fraudlake_pipeline::sql::query(&session, &text).await?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let mut table = Vec::new();
            fraudlake_pipeline::sql::render(
                &batches,
                fraudlake_pipeline::sql::OutputFormat::Table,
                &mut table,
            )?;
            ctx.note(String::from_utf8_lossy(&table).into_owned());
            Ok(json!({"rows": rows}))
        }
        OpArgs::Notify(NotifyArgs {
            url_env,
            text,
            only_on,
        }) => {
            let send = match only_on {
                NotifyOn::Always => true,
                NotifyOn::Failure => ctx.state == RunState::Failed,
                NotifyOn::Success => ctx.state != RunState::Failed,
            };
            if !send {
                ctx.note(format!("run state {}: nothing to send", ctx.state));
                return Ok(json!({"sent": false}));
            }
            let message = render_text(text, ctx);
            let Ok(url) = std::env::var(url_env) else {
                ctx.note(format!(
                    "{url_env} is not set: notification logged only: {message}"
                ));
                return Ok(json!({"sent": false, "text": message}));
            };
            let body = json!({ "text": message }).to_string();
            let resp = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| Error::invalid(format!("HTTP client: {e}")))?
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                // Unreachable or slow: may pass, so an I/O error (retried).
                .map_err(|e| {
                    Error::io(
                        format!("notify webhook ({url_env}): {e}"),
                        std::io::Error::other(e),
                    )
                })?;
            let status = resp.status();
            if !status.is_success() {
                let message = format!("notify webhook ({url_env}) answered {status}");
                // 5xx and 429 are the server's trouble and may pass; another 4xx is ours.
                return Err(if status.is_server_error() || status.as_u16() == 429 {
                    Error::io(message.clone(), std::io::Error::other(message))
                } else {
                    Error::invalid(message)
                });
            }
            ctx.note(format!("sent: {message}"));
            Ok(json!({"sent": true, "text": message}))
        }
    }
}

/// Fills `{{dag}}`, `{{logical_date}}`, `{{state}}` and `{{task.field}}` from the run.
pub fn render_text(text: &str, ctx: &OpCtx<'_>) -> String {
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("dag".into(), ctx.dag.to_string());
    vars.insert("logical_date".into(), ctx.logical_date.to_string());
    vars.insert("state".into(), ctx.state.to_string());
    vars.insert("run_id".into(), ctx.run_id.to_string());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let key = after[..end].trim();
        let value = vars.get(key).cloned().unwrap_or_else(|| {
            let mut v = ctx.context;
            for part in key.split('.') {
                v = v.get(part).unwrap_or(&Value::Null);
            }
            match v {
                Value::Null => "n/a".into(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        });
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}
