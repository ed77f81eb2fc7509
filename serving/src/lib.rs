//! The online side of fraudlake: the feature SQL compiled into per-entity incremental state
//! (`online`), which the scoring server uses to compute, per transaction and in
//! microseconds, exactly the features the offline engine writes to the lake.

pub mod online;

pub use online::{OnlineEngine, Transaction};
