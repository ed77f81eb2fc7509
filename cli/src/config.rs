//! Configuration: flags win over `FRAUDLAKE_*` environment variables, which win over an
//! optional `fraudlake.toml`, which wins over defaults. Logging is set up from the result.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Deserialize;

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Lake root: a folder or a URL (file://, s3://...). Default ./lake.
    #[arg(long, global = true, env = "FRAUDLAKE_LAKE")]
    pub lake: Option<String>,
    /// Config file (default ./fraudlake.toml when present).
    #[arg(long, global = true, env = "FRAUDLAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, env = "FRAUDLAKE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Hide progress bars.
    #[arg(long, global = true, env = "FRAUDLAKE_QUIET")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The optional `fraudlake.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub lake: Option<String>,
    pub log_format: Option<LogFormat>,
    pub features_sql: Option<PathBuf>,
    #[serde(default)]
    pub storage_options: std::collections::HashMap<String, String>,
    /// `[train]`: the model family (`model = "xgboost"` or `"lightgbm"`, default xgboost) and
    /// its parameters (n_estimators, max_depth, ... or num_leaves, min_data_in_leaf, ...);
    /// a parameter of the other family is refused.
    #[serde(default)]
    pub train: fraudlake_model::params::TrainParams,
    /// `[gate]`: promotion gate (metric, tolerance).
    #[serde(default)]
    pub gate: GateConfig,
    /// `[drift]`: share threshold, current period length, bins, per-column overrides.
    #[serde(default)]
    pub drift: DriftConfig,
    /// `[event_time]`: the scoring server's event-time rules.
    #[serde(default)]
    pub event_time: EventTimeConfig,
    /// `[labels]`: which label source wins (precedence, most trusted first).
    #[serde(default)]
    pub labels: LabelsConfig,
    /// `[online]`: where the scoring server keeps its online state.
    #[serde(default)]
    pub online: OnlineConfig,
    /// `[stream]`: the Kafka brokers of `fraudlake stream` and the server's scoring log.
    #[serde(default)]
    pub stream: StreamConfig,
    /// `[mlflow]`: the tracking server `models sync`, `train --mlflow` and the `mlflow_sync`
    /// op mirror the registry into (tracking_uri, experiment, registered_model).
    #[serde(default)]
    pub mlflow: fraudlake_model::mlflow::MlflowConfig,
}

/// `[stream]` in fraudlake.toml (`--brokers`/`FRAUDLAKE_KAFKA_BROKERS` and
/// `--scoring-log`/`FRAUDLAKE_SCORING_LOG` win).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// `host:port[,host:port...]` for `fraudlake stream`.
    pub brokers: Option<String>,
    /// `kafka://host:port/topic[?partitions=N&group=G]` for `fraudlake serve`.
    pub scoring_log: Option<String>,
}

/// `[online]` in fraudlake.toml (`--online-store`/`FRAUDLAKE_ONLINE_STORE` win).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnlineConfig {
    /// `memory` (default) or `redis://[user:password@]host:port/db`.
    pub store: Option<String>,
    /// `closed` (default: 503 while the store fails) or `open` (score without history).
    pub on_store_failure: Option<String>,
}

/// `[event_time]` in fraudlake.toml (flags and `FRAUDLAKE_*` variables of `serve` win).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventTimeConfig {
    /// e.g. "1h", "30m", "2d".
    pub max_skew: Option<String>,
    /// `refuse` or `clamp`.
    pub skew_policy: Option<String>,
    pub watermark_quorum: Option<usize>,
}

/// `[labels]` in fraudlake.toml: `precedence = ["ingest", "api", "simulate"]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelsConfig {
    pub precedence: Option<Vec<String>>,
}

/// `[drift]` in fraudlake.toml; `[drift.columns.NAME]` overrides a column's method/threshold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    pub drift_share: Option<f64>,
    pub current_days: Option<u32>,
    pub bins: Option<usize>,
    pub columns: std::collections::BTreeMap<String, fraudlake_drift::ColumnOverride>,
}

/// The promotion gate as configured in `[gate]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    pub metric: String,
    pub tolerance: f64,
    /// `champion_test` (default) or `candidate_test`.
    pub window: fraudlake_model::registry::gate::GateWindow,
}

impl Default for GateConfig {
    fn default() -> Self {
        let p = fraudlake_model::registry::gate::GatePolicy::default();
        GateConfig {
            metric: p.metric,
            tolerance: p.tolerance,
            window: p.window,
        }
    }
}

/// Resolved settings.
#[derive(Debug)]
pub struct Settings {
    pub lake: String,
    pub log_format: LogFormat,
    pub progress: bool,
    pub features_sql: PathBuf,
    pub storage_options: std::collections::HashMap<String, String>,
    pub train: fraudlake_model::params::TrainParams,
    pub gate: GateConfig,
    pub drift: DriftConfig,
    pub event_time: EventTimeConfig,
    pub labels: LabelsConfig,
    pub online: OnlineConfig,
    pub stream: StreamConfig,
    pub mlflow: fraudlake_model::mlflow::MlflowConfig,
}

impl Settings {
    /// The label precedence: a flag's value over `[labels] precedence` over the default.
    pub fn label_policy(
        &self,
        flag: Option<&str>,
    ) -> Result<fraudlake_pipeline::labels::LabelPolicy> {
        use fraudlake_pipeline::labels::LabelPolicy;
        Ok(match (flag, &self.labels.precedence) {
            (Some(text), _) => LabelPolicy::parse(text)?,
            (None, Some(kinds)) => LabelPolicy::new(kinds)?,
            (None, None) => LabelPolicy::default(),
        })
    }

    pub fn resolve(args: &GlobalArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => Some(load_file(path)?),
            None => {
                let default = PathBuf::from("fraudlake.toml");
                if default.exists() {
                    Some(load_file(&default)?)
                } else {
                    None
                }
            }
        }
        .unwrap_or_default();
        Ok(Settings {
            lake: args
                .lake
                .clone()
                .or(file.lake)
                .unwrap_or_else(|| "./lake".to_string()),
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            progress: !args.quiet,
            features_sql: std::env::var_os("FRAUDLAKE_FEATURES_SQL")
                .map(PathBuf::from)
                .or(file.features_sql)
                .unwrap_or_else(|| PathBuf::from(fraudlake_features::definition::DEFAULT_PATH)),
            storage_options: file.storage_options,
            train: file.train,
            gate: file.gate,
            drift: file.drift,
            event_time: file.event_time,
            labels: file.labels,
            online: file.online,
            stream: file.stream,
            mlflow: file.mlflow,
        })
    }

    /// Opens the configured lake.
    pub fn open_lake(&self) -> Result<fraudlake_pipeline::Lake> {
        Ok(fraudlake_pipeline::Lake::open(&self.lake)?
            .with_storage_options(self.storage_options.clone()))
    }
}

fn load_file(path: &std::path::Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Logs to stderr, filtered by RUST_LOG (default `info` for fraudlake, `warn` elsewhere).
pub fn init_logging(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "warn,fraudlake=info,fraudlake_pipeline=info,fraudlake_features=info,fraudlake_serving=info",
        )
    });
    // Colour only on a terminal: logs piped to a file, journald or a collector stay plain text
    // (and NO_COLOR is honoured, https://no-color.org).
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
