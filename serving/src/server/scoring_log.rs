//! The durable scoring log seam. Without one, answered transactions reach the lake through the
//! in-process writer, and a hard kill loses what it had not committed (at most a flush
//! interval). With one (`serve --scoring-log kafka://...`, implemented in `fraudlake-stream`),
//! every answered row is appended to the log, acknowledged by the broker, before the answer
//! leaves, and the log is landed in the lake by a consumer: a kill then loses nothing that was
//! answered. A trait, so this crate knows nothing of Kafka and the binary wires the two.

use futures::future::BoxFuture;

use super::writer::Scored;

/// An append-only log the scoring answers wait for.
pub trait ScoringLog: Send + Sync {
    /// Appends `rows`; resolves once the log holds every one of them durably (for Kafka:
    /// acknowledged with acks=all), or with why not.
    fn append<'a>(&'a self, rows: &'a [Scored]) -> BoxFuture<'a, Result<(), String>>;
    /// Whether the log answered recently: readiness and `/score` refuse while it does not.
    fn is_up(&self) -> bool;
    /// Where the log is, for logs and messages (no credentials).
    fn shown(&self) -> String;
}
