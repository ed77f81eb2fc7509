//! One feature definition, two engines. `definition` loads the SQL and owns the input view,
//! `compile` turns it into a plan the online engine runs per transaction, `offline` runs it
//! with DataFusion over the lake into the `features` table.

pub mod compile;
pub mod definition;
pub mod offline;
pub mod range_window;

pub use compile::{compile, FeaturePlan};
pub use definition::FeatureSet;
