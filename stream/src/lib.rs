//! Kafka streams for fraudlake. Transactions and chargebacks arrive on topics; answered scores
//! must survive a hard kill. This crate connects both to the lake with one rule: every Delta
//! commit carries the offsets it consumed (Delta `txn` actions), and consumption resumes from
//! the offsets the lake records, so a crash anywhere lands each message exactly once.
//!
//! * [`consume`]: `fraudlake stream`, topics of transactions and labels into the lake, with
//!   scoring (`--score`) through the same code `POST /score` runs.
//! * [`scoring_log`]: `serve --scoring-log`, answers wait for the broker's acknowledgement and
//!   a consumer lands the log.
//! * [`landing`]: the exactly-once commit both share; [`ledger`]: the offsets in the lake.
//! * [`message`]: the wire formats; [`kafka`]: client settings and topic metadata;
//!   [`metrics`]: lag and outcomes for Prometheus.
//!
//! Guide: docs/streaming.md in the repository.

pub mod consume;
pub mod error;
pub mod kafka;
pub mod landing;
pub mod ledger;
pub mod message;
pub mod metrics;
pub mod scoring_log;

pub use error::{Error, Result};
