//! The drift crate's errors. The statistics and the report have their own precise errors
//! ([`crate::stats::StatsError`], [`crate::report::ReportError`]); computing a report over the
//! lake can also fail in the lake or in the model it scores with, which pass through whole.
//! The CLI maps every variant to an exit code in one place (`is_bad_input`).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake or the user's input, as the lake crate reports it.
    #[error(transparent)]
    Lake(#[from] fraudlake_pipeline::Error),
    /// The model a report scores the periods with could not be loaded or run.
    #[error(transparent)]
    Model(#[from] fraudlake_model::Error),
}

impl Error {
    /// Something the user gave that cannot be used (a period, a column, an option).
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Lake(fraudlake_pipeline::Error::invalid(msg))
    }

    /// Whether the user can fix it by changing what they asked for (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Lake(e) => e.is_bad_input(),
            Error::Model(e) => e.is_bad_input(),
        }
    }
}

fraudlake_pipeline::from_lake_errors!(Error);

/// Result alias for the drift crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
