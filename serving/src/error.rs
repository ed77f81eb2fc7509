//! The serving crate's errors outside a request: starting the server (listening, the writer
//! thread, the metrics registry) and what the lake, the model and the drift history report,
//! passed through whole. A request's errors are [`crate::server::error::ApiError`]: an HTTP
//! status and a kind; one of these becomes a 500 there. The CLI maps every variant to an exit
//! code in one place (`is_bad_input`).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake, the feature engine or the user's input, as the lower crates report it.
    #[error(transparent)]
    Lake(#[from] fraudlake_pipeline::Error),
    /// The champion could not be loaded or run.
    #[error(transparent)]
    Model(#[from] fraudlake_model::Error),
    /// The latest drift verdict could not be read (from the source the binary plugged in).
    #[error("drift: {0}")]
    Drift(String),
    /// The Prometheus registry refused a metric (a name or label clash: our bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    /// A flag or a setting that cannot be used as given.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Lake(fraudlake_pipeline::Error::invalid(msg))
    }

    /// A local resource (a socket, a thread) could not be had; `context` says which.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Lake(fraudlake_pipeline::Error::io(context, source))
    }

    /// Whether the user can fix it by changing what they asked for (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Lake(e) => e.is_bad_input(),
            Error::Model(e) => e.is_bad_input(),
            Error::Drift(_) | Error::Metrics(_) => false,
        }
    }
}

fraudlake_pipeline::from_lake_errors!(Error);

/// Result alias for the serving crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
