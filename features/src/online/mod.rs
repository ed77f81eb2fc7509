//! The online engine: the compiled feature plan run one transaction at a time on per-entity
//! incremental state, so the scoring server gets, in microseconds, exactly the features the
//! offline engine writes to the lake. Around it: the state stores (`state`: the
//! [`EntityStore`] trait and the in-memory [`MemoryStore`]), the event-time rules that keep
//! one request from moving the watermark (`clock`), and loading history from the lake at
//! start-up (`history`). The server (fraudlake-serving) only calls it; [`crate::parity`]
//! replays the lake through it to prove it agrees with the offline engine.

pub mod clock;
pub mod engine;
pub mod history;
pub mod redis_store;
pub mod row;
pub mod sharded;
pub mod state;

pub use clock::{EventTimeRules, SkewPolicy, Timing};
pub use engine::{
    feature_rows, Answer, GroupInfo, OnlineEngine, RowPath, Seen, StateWrite, Transaction,
};
pub use state::{EntityKey, EntityStore, History, MemoryStore};
