//! Exclusive claims kept as objects in the lake, so two processes on one lake never do the same
//! work at once: the scheduler lease (one scheduler per lake) and one claim per DAG run's
//! logical date (a manual `dag run` and the scheduler cannot run the same date together).
//!
//! Why generations: taking over an expired claim must be a compare-and-swap, or two contenders
//! that both saw it expired both take it. object_store's `PutMode::Update` would do, but
//! `LocalFileSystem` (0.13) answers it with `NotImplemented`, and the lake must work on local
//! folders and on S3 alike. So a claim `K` is a series of objects `K/<generation>`, each
//! created with `PutMode::Create` (atomic create-if-absent on both), and only the highest
//! generation counts:
//!
//! * the first holder creates generation 1;
//! * the holder of generation N renews by rewriting its own object with a later expiry;
//! * a contender takes an expired generation N by creating N + 1: of any number of
//!   contenders exactly one create succeeds, the others see the new live generation;
//! * a holder has lost the claim once its own expiry (minus a safety margin) passed without
//!   a renewal, or once it sees generation N + 1. It then never renews again.
//!
//! The margin is what makes "expired" mean the same to both sides: a contender takes over only
//! after `expires_at`, and the holder stops believing it holds the claim a margin earlier, and
//! gives up rather than renew with a write slower than that margin. Hosts sharing a lake must
//! have clocks closer than the margin (a quarter of the lifetime: 7.5 s for the lease).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use deltalake::logstore::object_store::{
    path::Path as StorePath, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use deltalake::logstore::ObjectStoreRef;
use fraudlake_pipeline::lake::Lake;
use serde::{Deserialize, Serialize};

/// The lake folder for scheduler state that is not a table (claims, task logs).
pub const SCHEDULER_FOLDER: &str = "scheduler";
/// Overrides the scheduler lease's lifetime (seconds).
pub const LEASE_TTL_VAR: &str = "FRAUDLAKE_LEASE_TTL_SECS";
/// Overrides the lifetime of run claims (seconds).
pub const CLAIM_TTL_VAR: &str = "FRAUDLAKE_CLAIM_TTL_SECS";

/// How often to try again when the claim changes hands between our reads.
const ATTEMPTS: usize = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimBody {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
    pub what: String,
    /// Which generation of the claim this is (see the module comment).
    #[serde(default)]
    pub generation: u64,
}

/// A claim lifetime: `default`, or the number of seconds in the environment variable `var`
/// ([`LEASE_TTL_VAR`], [`CLAIM_TTL_VAR`]; tests shorten them to see a killed holder's claim
/// expire quickly).
pub fn ttl(var: &str, default: Duration) -> Duration {
    std::env::var(var)
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

/// The holder's safety margin: it stops believing it holds the claim this long before the
/// expiry it wrote, and a renewal slower than this gives the claim up.
fn margin(ttl: Duration) -> Duration {
    ttl / 4
}

/// What a holder and its heartbeat share.
struct Held {
    store: ObjectStoreRef,
    key: String,
    generation: u64,
    owner: String,
    what: String,
    ttl: Duration,
    /// The holder holds the claim until this instant unless it renews.
    deadline: Mutex<Instant>,
    /// Why the claim was lost, once it was.
    lost: Mutex<Option<String>>,
    changed: tokio::sync::Notify,
}

/// A claim this process holds; `release` it when done (a dropped claim simply expires).
pub struct Claim {
    held: Arc<Held>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

/// A cheap handle on a claim for the code that must stop when it is lost (the scheduler's cron
/// jobs, a run between its tasks).
#[derive(Clone)]
pub struct ClaimWatch {
    held: Arc<Held>,
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

fn generation_path(key: &str, generation: u64) -> StorePath {
    // Zero-padded so that a listing sorts like the numbers.
    StorePath::from(format!("{key}/{generation:020}"))
}

fn is_not_found(e: &deltalake::logstore::object_store::Error) -> bool {
    matches!(e, deltalake::logstore::object_store::Error::NotFound { .. })
}

/// The generations of `key` present now, ascending.
async fn generations(store: &ObjectStoreRef, key: &str) -> Result<Vec<u64>> {
    let listed = store
        .list_with_delimiter(Some(&StorePath::from(key)))
        .await
        .map_err(|e| store_error("list", e))?;
    let mut found: Vec<u64> = listed
        .objects
        .iter()
        .filter_map(|o| o.location.filename()?.parse().ok())
        .collect();
    found.sort_unstable();
    Ok(found)
}

async fn read(store: &ObjectStoreRef, path: &StorePath) -> Result<Option<ClaimBody>> {
    match store.get(path).await {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(|e| store_error("read", e))?;
            // An unreadable claim counts as expired (puts are atomic, so this is not a torn
            // write but a foreign or damaged object).
            Ok(Some(serde_json::from_slice(&bytes).unwrap_or(ClaimBody {
                owner: "unknown".into(),
                expires_at: DateTime::UNIX_EPOCH,
                what: String::new(),
                generation: 0,
            })))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(store_error("read", e)),
    }
}

/// The highest generation of `key` and its body, `None` when the claim has no object.
async fn latest(store: &ObjectStoreRef, key: &str) -> Result<Option<(u64, ClaimBody)>> {
    for _ in 0..ATTEMPTS {
        let Some(&top) = generations(store, key).await?.last() else {
            return Ok(None);
        };
        // Gone between the listing and the read: released or cleaned up; look again.
        if let Some(mut body) = read(store, &generation_path(key, top)).await? {
            body.generation = top;
            return Ok(Some((top, body)));
        }
    }
    Err(Error::invalid(format!(
        "the claim {key} changed hands {ATTEMPTS} times while it was being read"
    )))
}

fn body(owner: &str, what: &str, ttl: Duration, generation: u64) -> Result<PutPayload> {
    let b = ClaimBody {
        owner: owner.to_string(),
        expires_at: Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default(),
        what: what.to_string(),
        generation,
    };
    Ok(PutPayload::from(
        serde_json::to_vec(&b).map_err(|e| store_error("encode", e))?,
    ))
}

/// Takes the claim `key` (a path under `scheduler/`) for `ttl`, renewed by a heartbeat every
/// `ttl / 4` until released. Fails with [`Refused::Held`] while another live owner holds it.
pub async fn acquire(
    lake: &Lake,
    key: &str,
    what: &str,
    ttl: Duration,
) -> std::result::Result<Claim, Refused> {
    let mut claim = acquire_without_heartbeat(lake, key, what, ttl).await?;
    let held = claim.held.clone();
    claim.heartbeat = Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(margin(held.ttl)).await;
            if let Err(why) = renew(&held).await {
                tracing::error!(claim = %held.key, what = %held.what, "lost the claim: {why}");
                return;
            }
        }
    }));
    Ok(claim)
}

/// [`acquire`] without the heartbeat: the claim expires after `ttl` unless [`Claim::renew`] is
/// called (the tests use it to play a holder that was paused).
pub(crate) async fn acquire_without_heartbeat(
    lake: &Lake,
    key: &str,
    what: &str,
    ttl: Duration,
) -> std::result::Result<Claim, Refused> {
    let store = lake.files(SCHEDULER_FOLDER).map_err(Error::from)?;
    let owner = owner_id();
    for _ in 0..ATTEMPTS {
        let started = Instant::now();
        let next = match latest(&store, key).await? {
            None => 1,
            Some((_, held)) if held.expires_at > Utc::now() => return Err(Refused::Held(held)),
            Some((generation, held)) => {
                tracing::warn!(owner = %held.owner, claim = key, generation, "taking over an expired claim");
                generation + 1
            }
        };
        let path = generation_path(key, next);
        let put = store
            .put_opts(
                &path,
                body(&owner, what, ttl, next)?,
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => {}
            // Another contender created this generation first: it holds the claim now.
            Err(deltalake::logstore::object_store::Error::AlreadyExists { .. }) => continue,
            Err(e) => return Err(Refused::Failed(store_error("create", e))),
        }
        // Paused between reading generation N and creating N + 1 for long enough that others
        // went on past N + 1 (or that our own expiry is near): this generation is stale.
        let newer = store.head(&generation_path(key, next + 1)).await.is_ok();
        if newer || started.elapsed() >= ttl.saturating_sub(margin(ttl)) {
            let _ = store.delete(&path).await;
            continue;
        }
        // Older generations are of no use any more. The one just below ours stays, so that a
        // listing racing with this cleanup always sees a generation that existed throughout;
        // deleting in ascending order keeps the remaining ones contiguous.
        if next > 2 {
            for old in generations(&store, key).await? {
                if old + 1 >= next {
                    break;
                }
                let _ = store.delete(&generation_path(key, old)).await;
            }
        }
        let held = Arc::new(Held {
            store,
            key: key.to_string(),
            generation: next,
            owner,
            what: what.to_string(),
            ttl,
            deadline: Mutex::new(started + ttl.saturating_sub(margin(ttl))),
            lost: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        });
        return Ok(Claim {
            held,
            heartbeat: None,
        });
    }
    Err(Refused::Failed(Error::invalid(format!(
        "could not take the claim {key}: it changed hands {ATTEMPTS} times"
    ))))
}

/// Marks the claim lost (once) and wakes whoever waits for that.
fn lose(held: &Held, why: String) -> String {
    let mut lost = held.lost.lock().unwrap_or_else(|p| p.into_inner());
    let why = lost.get_or_insert(why).clone();
    drop(lost);
    held.changed.notify_waiters();
    why
}

fn lost_reason(held: &Held) -> Option<String> {
    if let Some(why) = held.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        return Some(why);
    }
    let deadline = *held.deadline.lock().unwrap_or_else(|p| p.into_inner());
    (Instant::now() >= deadline).then(|| {
        format!(
            "generation {} of {} was not renewed before it expired (the process was paused or \
             too busy to heartbeat)",
            held.generation, held.key
        )
    })
}

/// One heartbeat: pushes the expiry forward, or finds out that the claim is lost (`Err` with
/// why). A write error that may pass is only logged: the claim stays held until its deadline.
async fn renew(held: &Held) -> std::result::Result<(), String> {
    if let Some(why) = lost_reason(held) {
        return Err(lose(held, why));
    }
    let start = Instant::now();
    let next = generation_path(&held.key, held.generation + 1);
    let taken = |newer: ClaimBody| {
        format!(
            "generation {} of {} was taken over by {}",
            held.generation, held.key, newer.owner
        )
    };
    if let Ok(Some(b)) = read(&held.store, &next).await {
        return Err(lose(held, taken(b)));
    }
    let payload =
        body(&held.owner, &held.what, held.ttl, held.generation).map_err(|e| e.to_string())?;
    let path = generation_path(&held.key, held.generation);
    let write = tokio::time::timeout(margin(held.ttl), held.store.put(&path, payload)).await;
    match write {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, claim = %held.key, "claim heartbeat failed; trying again");
            return Ok(());
        }
        Err(_) => {
            return Err(lose(
                held,
                format!(
                    "renewing generation {} of {} took longer than {} ms",
                    held.generation,
                    held.key,
                    margin(held.ttl).as_millis()
                ),
            ))
        }
    }
    // A contender may have created the next generation while we wrote.
    if let Ok(Some(b)) = read(&held.store, &next).await {
        return Err(lose(held, taken(b)));
    }
    *held.deadline.lock().unwrap_or_else(|p| p.into_inner()) =
        start + held.ttl.saturating_sub(margin(held.ttl));
    held.changed.notify_waiters();
    Ok(())
}

/// Reads a claim without taking it (for messages, status and recovery).
pub async fn peek(lake: &Lake, key: &str) -> Result<Option<ClaimBody>> {
    Ok(latest(&lake.files(SCHEDULER_FOLDER)?, key)
        .await?
        .map(|(_, b)| b))
}

impl ClaimWatch {
    /// Whether this process still holds the claim (not lost, not past its deadline).
    pub fn is_held(&self) -> bool {
        lost_reason(&self.held).is_none()
    }

    /// Why the claim is lost, `None` while it is held.
    pub fn lost_reason(&self) -> Option<String> {
        lost_reason(&self.held)
    }

    /// Resolves once the claim is lost, with why.
    pub async fn lost(&self) -> String {
        loop {
            let changed = self.held.changed.notified();
            if let Some(why) = lost_reason(&self.held) {
                return why;
            }
            let deadline = *self.held.deadline.lock().unwrap_or_else(|p| p.into_inner());
            tokio::select! {
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
                _ = changed => {}
            }
        }
    }

    /// The generation this process holds.
    pub fn generation(&self) -> u64 {
        self.held.generation
    }
}

impl Claim {
    /// A handle that says whether the claim is still held.
    pub fn watch(&self) -> ClaimWatch {
        ClaimWatch {
            held: self.held.clone(),
        }
    }

    /// Whether this process still holds the claim.
    pub fn is_held(&self) -> bool {
        lost_reason(&self.held).is_none()
    }

    /// One heartbeat by hand (the heartbeat task does this every `ttl / 4`).
    pub async fn renew(&self) -> std::result::Result<(), String> {
        renew(&self.held).await
    }

    /// Stops the heartbeat and removes the claim (unless it was lost: then it is not ours).
    pub async fn release(mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        if !self.is_held() {
            return;
        }
        let path = generation_path(&self.held.key, self.held.generation);
        if let Err(e) = self.held.store.delete(&path).await {
            tracing::warn!(error = %e, claim = %path, "could not remove a claim; it will expire");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The lifetime of the claims the tests let expire. Taking a claim must finish within
    /// three quarters of it (else `acquire` gives the fresh generation up), and a test may check
    /// that it is held right after: with 1 s that is a 0.75 s window, which a loaded 2-core
    /// machine can miss. 3 s costs each such test 2 s of waiting for the expiry.
    pub(crate) const SHORT_TTL: Duration = Duration::from_secs(3);

    pub(crate) fn temp_lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = Lake::open(dir.path().to_str().expect("utf-8 path")).expect("lake");
        (dir, lake)
    }

    /// Waits, with a deadline, until the claim's latest generation has expired by the clock.
    pub(crate) async fn wait_expired(lake: &Lake, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match peek(lake, key).await.expect("peek") {
                Some(b) if b.expires_at >= Utc::now() => {}
                _ => return,
            }
            assert!(Instant::now() < deadline, "the claim {key} never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn eight_contenders_for_an_expired_claim_one_wins_each_time() {
        let (_dir, lake) = temp_lake();
        let keys: Vec<String> = (0..50).map(|r| format!("race/{r}.lease")).collect();
        // Holders that stopped heartbeating (dropped) leave expired claims behind.
        for key in &keys {
            drop(
                acquire(&lake, key, "gone", SHORT_TTL)
                    .await
                    .expect("first holder"),
            );
        }
        for (round, key) in keys.iter().enumerate() {
            wait_expired(&lake, key).await;
            let start = Arc::new(tokio::sync::Barrier::new(8));
            let mut contenders = Vec::new();
            for _ in 0..8 {
                let (lake, key, start) = (lake.clone(), key.clone(), start.clone());
                contenders.push(tokio::spawn(async move {
                    start.wait().await;
                    acquire(&lake, &key, "contender", Duration::from_secs(120)).await
                }));
            }
            let (mut won, mut refused) = (Vec::new(), 0);
            for c in contenders {
                match c.await.expect("contender task") {
                    Ok(claim) => won.push(claim),
                    Err(Refused::Held(_)) => refused += 1,
                    Err(Refused::Failed(e)) => panic!("round {round}: {e}"),
                }
            }
            assert_eq!(
                won.len(),
                1,
                "round {round}: {} contenders took the same expired claim",
                won.len()
            );
            assert_eq!(refused, 7, "round {round}");
            for claim in won {
                claim.release().await;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_holder_that_lost_the_claim_never_gets_it_back() {
        let (_dir, lake) = temp_lake();
        let key = "paused.lease";
        let paused = acquire_without_heartbeat(&lake, key, "scheduler", SHORT_TTL)
            .await
            .expect("take the claim");
        assert!(paused.is_held());
        // The holder is "paused": no heartbeat until well past its expiry.
        wait_expired(&lake, key).await;
        assert!(
            !paused.is_held(),
            "past its expiry a holder must not believe it holds the claim"
        );
        let taker = acquire(&lake, key, "scheduler", Duration::from_secs(120))
            .await
            .expect("a contender takes the expired claim");
        // The paused holder resumes and heartbeats: it must find out, not overwrite.
        let why = paused
            .renew()
            .await
            .expect_err("a lost claim is not renewed");
        assert!(why.contains("not renewed before it expired"), "{why}");
        assert!(!paused.watch().is_held());
        let now = peek(&lake, key).await.expect("peek").expect("a claim");
        assert_eq!(now.generation, taker.watch().generation());
        assert!(now.expires_at > Utc::now() + chrono::Duration::seconds(60));
        assert!(taker.is_held());
        // Releasing a lost claim leaves the new holder's claim alone.
        paused.release().await;
        assert!(peek(&lake, key).await.expect("peek").is_some());
        assert!(taker.renew().await.is_ok());
        taker.release().await;
        let left = peek(&lake, key).await.expect("peek");
        assert!(
            left.as_ref().is_none_or(|b| b.expires_at < Utc::now()),
            "{left:?}"
        );
        // Free again: the next holder takes it at once.
        let next = acquire(&lake, key, "scheduler", Duration::from_secs(120))
            .await
            .expect("a released claim is free");
        next.release().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_that_sees_a_newer_generation_gives_the_claim_up() {
        let (_dir, lake) = temp_lake();
        let key = "runs/daily/2018-06-14.claim";
        let holder = acquire_without_heartbeat(&lake, key, "run", Duration::from_secs(120))
            .await
            .expect("take the claim");
        assert!(holder.renew().await.is_ok());
        // Another process wrote the next generation (e.g. its clock ran ahead).
        let g = holder.watch().generation();
        lake.files(SCHEDULER_FOLDER)
            .expect("store")
            .put(
                &generation_path(key, g + 1),
                body("elsewhere:1", "run", Duration::from_secs(120), g + 1).expect("body"),
            )
            .await
            .expect("plant the next generation");
        let why = holder.renew().await.expect_err("the claim is lost");
        assert!(why.contains("taken over by elsewhere:1"), "{why}");
        assert!(!holder.is_held());
        // A lost claim stays lost, and the newer holder's object is untouched.
        assert!(holder.renew().await.is_err());
        let now = peek(&lake, key).await.expect("peek").expect("a claim");
        assert_eq!(now.owner, "elsewhere:1");
        assert_eq!(now.generation, g + 1);
    }
}
