//! The online feature engine: the feature SQL compiled (by `fraudlake_pipeline::features`)
//! into per-entity incremental state, plus what it needs around it: loading history from the
//! lake at start-up, and replaying history to prove parity with the offline engine.

pub mod clock;
pub mod engine;
pub mod history;
pub mod parity;
pub mod state;

pub use clock::{EventTimeRules, SkewPolicy, Timing};
pub use engine::{feature_rows, Answer, OnlineEngine, Seen, Transaction};
pub use state::{EntityKey, EntityStore, History, MemoryStore};
