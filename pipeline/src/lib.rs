//! The batch side of fraudlake: the lake's Delta tables, the simulator and the ingester that
//! fill them, SQL over them, and the offline feature build. The `fraudlake` binary only wires
//! these together; the online server reuses the lake and feature definitions from here.

pub mod error;
pub mod features;
pub mod ingest;
pub mod keys;
pub mod labels;
pub mod lake;
pub mod progress;
pub mod simulate;
pub mod sql;

pub use error::{Error, Result};
pub use lake::Lake;
