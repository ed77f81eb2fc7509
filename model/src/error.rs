//! The model crate's errors: libxgboost failures and unusable model artifacts or registry
//! records are this crate's own ([`Error::Model`]); everything the lake reports (bad input,
//! Delta, DataFusion, Arrow, I/O) passes through whole as [`Error::Lake`]; an MLflow tracking
//! server that cannot be reached or refuses a call is [`Error::Mlflow`]. The CLI maps them to
//! exit codes in one place (`is_bad_input`).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libxgboost failed, or a model artifact or registry record is unusable.
    #[error("model: {0}")]
    Model(String),
    /// The lake, the feature language or the user's input, as the lower crates report it.
    #[error(transparent)]
    Lake(#[from] fraudlake_pipeline::Error),
    /// The MLflow tracking server could not be reached, or refused a call of a sync.
    #[error("mlflow: {message}")]
    Mlflow {
        message: String,
        /// Whether the same call may succeed later (unreachable, timeout, HTTP 5xx): what the
        /// DAG runner retries.
        transient: bool,
    },
}

impl Error {
    /// Something the user gave that cannot be used (a flag, a version, a date).
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Lake(fraudlake_pipeline::Error::invalid(msg))
    }

    /// An MLflow failure; `transient` when a later try may succeed.
    pub fn mlflow(message: impl Into<String>, transient: bool) -> Self {
        Error::Mlflow {
            message: message.into(),
            transient,
        }
    }

    /// Whether the user can fix it by changing what they asked for (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Model(_) | Error::Mlflow { .. } => false,
            Error::Lake(e) => e.is_bad_input(),
        }
    }
}

fraudlake_pipeline::from_lake_errors!(Error);

/// Result alias for the model crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
