//! The DAG crate's errors while running: what an op's library call reports (the lake, the
//! model, the drift report), passed through whole so a task's log and `task_runs.error` show
//! the precise message. Spec errors (a DAG file that cannot be used) are
//! [`crate::spec::SpecError`], found before anything runs. [`crate::transient`] decides which
//! of these a retry may cure; the CLI maps every variant to an exit code (`is_bad_input`).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake, the feature language or the user's input, as the lower crates report it.
    #[error(transparent)]
    Lake(#[from] fraudlake_pipeline::Error),
    /// Training, scoring or the registry failed.
    #[error(transparent)]
    Model(#[from] fraudlake_model::Error),
    /// A drift report could not be computed or saved.
    #[error(transparent)]
    Drift(#[from] fraudlake_drift::Error),
}

impl Error {
    /// Something the DAG or its caller asked for that cannot be done as given.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Lake(fraudlake_pipeline::Error::invalid(msg))
    }

    /// A local resource (a file, a socket) could not be had; `context` says which.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Lake(fraudlake_pipeline::Error::io(context, source))
    }

    /// An unusable model artifact or record.
    pub fn model(msg: impl Into<String>) -> Self {
        Error::Model(fraudlake_model::Error::Model(msg.into()))
    }

    /// Whether the user can fix it by changing what they asked for (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Lake(e) => e.is_bad_input(),
            Error::Model(e) => e.is_bad_input(),
            Error::Drift(e) => e.is_bad_input(),
        }
    }

    /// The lake's error underneath, if that is what failed (for [`crate::transient`]).
    pub fn lake(&self) -> Option<&fraudlake_pipeline::Error> {
        match self {
            Error::Lake(e)
            | Error::Model(fraudlake_model::Error::Lake(e))
            | Error::Drift(fraudlake_drift::Error::Lake(e))
            | Error::Drift(fraudlake_drift::Error::Model(fraudlake_model::Error::Lake(e))) => {
                Some(e)
            }
            _ => None,
        }
    }
}

fraudlake_pipeline::from_lake_errors!(Error);

/// Result alias for the DAG crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
