//! One error type for the batch side, so every fallible call flows to the caller with `?`
//! and the CLI turns it into one clear message and a non-zero exit code.

use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;
use deltalake::DeltaTableError;

/// Everything that can go wrong in the pipeline crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user gave us something we cannot use (a flag, a file, a query).
    #[error("{0}")]
    Invalid(String),
    /// A Delta table operation failed (log, commit, object store).
    #[error("delta: {0}")]
    Delta(#[from] DeltaTableError),
    /// DataFusion rejected or failed a query; its message is precise, keep it whole.
    #[error("{0}")]
    DataFusion(Box<DataFusionError>),
    /// Arrow failed to build, cast or write a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// Reading or writing a local input/output file failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        Error::DataFusion(Box::new(e))
    }
}

impl Error {
    /// Shorthand for a user-facing validation error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Whether the user can fix it by changing what they asked for: a flag, a file, a query
    /// (DataFusion's errors here are planning errors of SQL the user wrote). The CLI exits 2.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::Invalid(_) | Error::DataFusion(_))
    }

    /// Wraps an I/O error with what we were doing when it happened.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for the pipeline crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// For the error enum of a crate above this one, with a `Lake(fraudlake_pipeline::Error)`
/// variant: `From` the errors the lake's libraries raise (Delta, DataFusion, Arrow), each
/// becoming the lake's error, so `?` works on their calls as it does here.
#[macro_export]
macro_rules! from_lake_errors {
    ($error:ty) => {
        impl From<::deltalake::DeltaTableError> for $error {
            fn from(e: ::deltalake::DeltaTableError) -> Self {
                Self::Lake(e.into())
            }
        }

        impl From<::deltalake::datafusion::error::DataFusionError> for $error {
            fn from(e: ::deltalake::datafusion::error::DataFusionError) -> Self {
                Self::Lake(e.into())
            }
        }

        impl From<::deltalake::arrow::error::ArrowError> for $error {
            fn from(e: ::deltalake::arrow::error::ArrowError) -> Self {
                Self::Lake(e.into())
            }
        }
    };
}
