//! The model crate reports through the pipeline's error type, so the CLI keeps one mapping
//! from errors to exit codes; libxgboost failures
//! become [`Error::Model`].

pub use fraudlake_pipeline::error::{Error, Result};
