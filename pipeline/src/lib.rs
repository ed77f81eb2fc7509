//! The bottom of fraudlake: the lake's Delta tables, the simulator and the ingester that fill
//! them, label precedence, API keys and SQL over the lake. Every other crate builds on it;
//! the feature language (the `tx_labeled` view, the offline build, the online engine) lives
//! one level up, in `fraudlake-features`, and adds its view to SQL sessions through
//! [`lake::LakeView`].
//!
//! Guide: docs/lake.md in the repository.

pub mod columns;
pub mod error;
pub mod ingest;
pub mod keys;
pub mod labels;
pub mod lake;
pub mod progress;
pub mod simulate;
pub mod sql;

pub use error::{Error, Result};
pub use lake::Lake;
