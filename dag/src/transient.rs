//! Which errors a retry may cure. The runner retries a failed task only when its error is
//! transient (I/O, object store, Delta commit conflicts, timeouts); a permanent one (bad input,
//! a missing champion, SQL and plan errors, model errors) gives the same answer minutes later,
//! so the task fails at once with its message. Kept here rather than on the pipeline's error
//! type: only the DAG runner asks.

use crate::error::Error;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;
use deltalake::DeltaTableError;

/// Whether the same call may succeed if tried again: I/O and object-store failures, Delta
/// commit conflicts. Bad input, a missing champion, SQL and plan errors, model errors are
/// permanent: a retry gives the same answer. (The DAG runner retries only the former.)
pub fn is_transient(e: &Error) -> bool {
    // An MLflow server that is down or overloaded may be back on the next try; a refusal
    // (bad credentials, a bad request) would be refused again.
    if let Error::Model(fraudlake_model::Error::Mlflow { transient, .. }) = e {
        return *transient;
    }
    // Only the lake's failures can pass; a model or drift error of their own is permanent.
    e.lake().is_some_and(lake_transient)
}

fn lake_transient(e: &fraudlake_pipeline::Error) -> bool {
    use fraudlake_pipeline::Error;
    match e {
        Error::Invalid(_) => false,
        Error::Io { source, .. } => io_transient(source),
        Error::Delta(e) => delta_transient(e),
        Error::DataFusion(e) => datafusion_transient(e),
        Error::Arrow(ArrowError::IoError(_, e)) => io_transient(e),
        Error::Arrow(ArrowError::ExternalError(e)) => source_transient(e.as_ref()),
        Error::Arrow(_) => false,
    }
}

fn io_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    !matches!(
        e.kind(),
        NotFound
            | PermissionDenied
            | AlreadyExists
            | InvalidInput
            | InvalidData
            | Unsupported
            | UnexpectedEof
            | OutOfMemory
    )
}

fn store_transient(e: &deltalake::ObjectStoreError) -> bool {
    use deltalake::ObjectStoreError as S;
    match e {
        // Network and service failures arrive as Generic (after object_store's own retries).
        S::Generic { source, .. } => chain_verdict(source.as_ref()).unwrap_or(true),
        S::JoinError { .. } | S::Precondition { .. } | S::AlreadyExists { .. } => true,
        _ => false,
    }
}

fn delta_transient(e: &DeltaTableError) -> bool {
    use deltalake::kernel::transaction::TransactionError as T;
    match e {
        DeltaTableError::ObjectStore { source } => store_transient(source),
        DeltaTableError::Io { source } => io_transient(source),
        DeltaTableError::VersionAlreadyExists(_) => true,
        DeltaTableError::Transaction { source } => match source {
            T::VersionAlreadyExists(_) | T::CommitConflict(_) | T::MaxCommitAttempts(_) => true,
            T::ObjectStore { source } => store_transient(source),
            _ => false,
        },
        other => std::error::Error::source(other).is_some_and(source_transient),
    }
}

fn datafusion_transient(e: &DataFusionError) -> bool {
    match e {
        DataFusionError::ObjectStore(s) => store_transient(s),
        DataFusionError::IoError(e) => io_transient(e),
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::IoError(_, e) => io_transient(e),
            ArrowError::ExternalError(e) => source_transient(e.as_ref()),
            _ => false,
        },
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            datafusion_transient(inner)
        }
        DataFusionError::Shared(inner) => datafusion_transient(inner),
        DataFusionError::External(e) => source_transient(e.as_ref()),
        _ => false,
    }
}

/// An error of unknown type: transient only if its chain holds a transient failure of a known
/// kind.
fn source_transient(e: &(dyn std::error::Error + 'static)) -> bool {
    chain_verdict(e).unwrap_or(false)
}

/// The verdict on the first error of a known kind in `e`'s chain, if there is one.
fn chain_verdict(e: &(dyn std::error::Error + 'static)) -> Option<bool> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io_transient(io));
        }
        if let Some(s) = e.downcast_ref::<deltalake::ObjectStoreError>() {
            return Some(store_transient(s));
        }
        if let Some(d) = e.downcast_ref::<DeltaTableError>() {
            return Some(delta_transient(d));
        }
        if let Some(d) = e.downcast_ref::<DataFusionError>() {
            return Some(datafusion_transient(d));
        }
        next = e.source();
    }
    None
}
