//! The online side of fraudlake: the feature SQL compiled into per-entity incremental state
//! (`online`), which the scoring server uses to compute, per transaction and in
//! microseconds, exactly the features the offline engine writes to the lake; and the
//! scoring server (`server`) that answers `POST /score` with them and the champion model.

pub mod online;
pub mod server;

pub use online::{OnlineEngine, Transaction};
