//! Exclusive claims kept as files in the lake, so two processes on one lake never do the same
//! work at once: the scheduler lease (one scheduler per lake) and one claim per DAG run's
//! logical date (a manual `dag run` and the scheduler cannot run the same date together).
//!
//! A claim is created with an atomic create-if-absent put (object_store `PutMode::Create`,
//! supported by local folders and S3) and carries an expiry that a heartbeat pushes forward.
//! A holder that died stops heartbeating; once its claim has expired, the next contender
//! removes it and takes over, which is how a killed scheduler's runs are recovered.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deltalake::logstore::object_store::{
    path::Path as StorePath, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use deltalake::logstore::ObjectStoreRef;
use fraudlake_pipeline::lake::Lake;
use fraudlake_pipeline::{Error, Result};
use serde::{Deserialize, Serialize};

/// The lake folder for scheduler state that is not a table (claims, task logs).
pub const SCHEDULER_FOLDER: &str = "scheduler";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimBody {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
    pub what: String,
}

/// A claim lifetime: `default`, or `FRAUDLAKE_CLAIM_TTL_SECS` (tests shorten it to see a
/// killed holder's claim expire quickly).
pub fn ttl(default: Duration) -> Duration {
    std::env::var("FRAUDLAKE_CLAIM_TTL_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s >= 1)
        .map_or(default, Duration::from_secs)
}

/// Who this process is, in claims and in `dag_runs.owner`.
pub fn owner_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// A claim this process holds; `release` it when done (a dropped claim simply expires).
pub struct Claim {
    store: ObjectStoreRef,
    path: StorePath,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// Why a claim could not be taken.
#[derive(Debug)]
pub enum Refused {
    Held(ClaimBody),
    Failed(Error),
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Failed(e)
    }
}

fn store_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("scheduler state {what}: {e}"))
}

async fn read(store: &ObjectStoreRef, path: &StorePath) -> Result<Option<ClaimBody>> {
    match store.get(path).await {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(|e| store_error("read", e))?;
            // An unreadable claim (torn write) counts as expired.
            Ok(Some(serde_json::from_slice(&bytes).unwrap_or(ClaimBody {
                owner: "unknown".into(),
                expires_at: DateTime::UNIX_EPOCH,
                what: String::new(),
            })))
        }
        Err(deltalake::logstore::object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error("read", e)),
    }
}

fn body(owner: &str, what: &str, ttl: Duration) -> Result<PutPayload> {
    let b = ClaimBody {
        owner: owner.to_string(),
        expires_at: Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default(),
        what: what.to_string(),
    };
    Ok(PutPayload::from(
        serde_json::to_vec(&b).map_err(|e| store_error("encode", e))?,
    ))
}

/// Takes the claim `key` (a path under `scheduler/`) for `ttl`, renewed every `ttl / 3` until
/// released. Fails with [`Refused::Held`] while another live owner holds it.
pub async fn acquire(
    lake: &Lake,
    key: &str,
    what: &str,
    ttl: Duration,
) -> std::result::Result<Claim, Refused> {
    let store = lake.files(SCHEDULER_FOLDER)?;
    let path = StorePath::from(key);
    let owner = owner_id();
    for _ in 0..3 {
        let put = store
            .put_opts(
                &path,
                body(&owner, what, ttl)?,
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => {
                let (s, p, o, w) = (store.clone(), path.clone(), owner.clone(), what.to_string());
                let heartbeat = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(ttl / 3);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        if let Ok(payload) = body(&o, &w, ttl) {
                            if let Err(e) = s.put(&p, payload).await {
                                tracing::warn!(error = %e, claim = %p, "claim heartbeat failed");
                            }
                        }
                    }
                });
                return Ok(Claim {
                    store,
                    path,
                    heartbeat,
                });
            }
            Err(deltalake::logstore::object_store::Error::AlreadyExists { .. }) => {
                match read(&store, &path).await? {
                    Some(held) if held.expires_at > Utc::now() => return Err(Refused::Held(held)),
                    Some(held) => {
                        tracing::warn!(owner = %held.owner, claim = key, "taking over an expired claim");
                        let _ = store.delete(&path).await;
                    }
                    None => {}
                }
            }
            Err(e) => return Err(Refused::Failed(store_error("create", e))),
        }
    }
    Err(Refused::Failed(Error::invalid(format!(
        "could not take the claim {key}: it changed hands repeatedly"
    ))))
}

/// Reads a claim without taking it (for messages and status).
pub async fn peek(lake: &Lake, key: &str) -> Result<Option<ClaimBody>> {
    read(&lake.files(SCHEDULER_FOLDER)?, &StorePath::from(key)).await
}

impl Claim {
    /// Stops the heartbeat and removes the claim.
    pub async fn release(self) {
        self.heartbeat.abort();
        if let Err(e) = self.store.delete(&self.path).await {
            tracing::warn!(error = %e, claim = %self.path, "could not remove a claim; it will expire");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Writes a task attempt's log file; returns its lake URL.
pub async fn write_log(lake: &Lake, run_id: &str, name: &str, text: String) -> Result<String> {
    let rel = format!("logs/{run_id}/{name}");
    lake.files(SCHEDULER_FOLDER)?
        .put(
            &StorePath::from(rel.as_str()),
            PutPayload::from(text.into_bytes()),
        )
        .await
        .map_err(|e| store_error("log write", e))?;
    Ok(lake.file_url(SCHEDULER_FOLDER, &rel))
}

/// Reads a task log back (for `fraudlake dag logs`).
pub async fn read_log(lake: &Lake, url: &str) -> Result<String> {
    let prefix = lake.file_url(SCHEDULER_FOLDER, "");
    let rel = url.strip_prefix(&prefix).ok_or_else(|| {
        Error::invalid(format!(
            "log {url} is not under this lake's scheduler folder"
        ))
    })?;
    if rel.split('/').any(|p| p == ".." || p.is_empty()) {
        return Err(Error::invalid(format!("bad log path {url}")));
    }
    let got = lake
        .files(SCHEDULER_FOLDER)?
        .get(&StorePath::from(rel))
        .await
        .map_err(|e| store_error("log read", e))?;
    let bytes = got.bytes().await.map_err(|e| store_error("log read", e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
