//! The feature language of fraudlake, end to end: one feature definition (a SQL file over the
//! `tx_labeled` view), compiled once, run by two engines that must agree on every value.
//! This crate is the heart of "one feature definition, two engines, proven parity":
//!
//! * `definition` loads and fingerprints the feature SQL and owns `tx_labeled`, the input
//!   both engines read (and the view SQL sessions over the lake get, see [`session`]);
//! * `compile` has DataFusion plan the SQL, and turns the plan into a [`FeaturePlan`]: the
//!   steps the online engine runs, refusing what it cannot run when the file is loaded;
//! * `offline` runs the SQL with DataFusion over the lake into the `features` table that
//!   training reads, with its own RANGE window operator (`offline::range_window`);
//! * `online` runs the plan one transaction at a time on per-entity state, for the scoring
//!   server: state stores, event-time rules, history loaded from the lake at start-up;
//! * `parity` replays the lake through the online engine and compares every feature of
//!   every transaction with the `features` table the offline engine wrote.
//!
//! Crate order, with no cycle: `fraudlake-pipeline` (the lake, tables, labels, SQL) <-
//! `fraudlake-features` (this crate) <- `fraudlake-model` (reads the `features` table) <-
//! `fraudlake-drift` <- `fraudlake-serving` (the HTTP scoring service), `fraudlake-dag` <-
//! `fraudlake` (the CLI). The pipeline crate cannot name `tx_labeled`, so this crate hands
//! it to the lake's sessions through pipeline's `LakeView` extension point ([`session`]).
//!
//! Guide: docs/features.md in the repository.

pub mod compile;
pub mod definition;
pub mod offline;
pub mod online;
pub mod parity;

use deltalake::datafusion::prelude::SessionContext;
use fraudlake_pipeline::lake::{LakeView, TimeTravel};
use fraudlake_pipeline::{Lake, Result};

pub use compile::{compile, FeaturePlan};
pub use definition::{FeatureSet, TxLabeled};
pub use online::{
    feature_rows, Answer, EntityKey, EntityStore, EventTimeRules, History, MemoryStore,
    OnlineEngine, Seen, SkewPolicy, Timing, Transaction,
};

/// A DataFusion session with every existing lake table and the `tx_labeled` view the
/// features read (when `transactions` and `labels` exist): what `fraudlake sql` and the
/// DAG's `sql` op query, so `fraudlake sql -f sql/features.sql` runs as the offline engine
/// does. `pins` time-travels tables as in [`Lake::session`]; the view reads the pinned ones.
pub async fn session(lake: &Lake, pins: &[(String, TimeTravel)]) -> Result<SessionContext> {
    let views: [&dyn LakeView; 1] = [&TxLabeled];
    lake.session_with(pins, &views).await
}
