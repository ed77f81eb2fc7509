//! Online state shared by several scoring replicas, in Redis: what lets fraudlake run as N
//! stateless `serve` processes behind a load balancer and still compute, for every
//! transaction, the features one process would.
//!
//! How a transaction is scored (see docs/serving.md, "Several replicas on Redis"):
//! 1. the replica computes locally what the transaction adds to each of its entities'
//!    histories ([`OnlineEngine::writes_for`]), once as unlabeled and once as fraud;
//! 2. one Lua script per transaction, atomic over all its entities, records it (or
//!    recognizes a retry, or a conflicting reuse of its tx_id), inserts its event in each
//!    entity's sorted set (picking the label variant a label that arrived first asks for),
//!    evicts what fell behind the horizon, and returns each entity's history in reach of the
//!    windows; the transactions of a request go in one pipeline: one round trip;
//! 3. the replica rebuilds those histories in a scratch [`MemoryStore`] and runs the same
//!    window code as the in-memory engine ([`OnlineEngine::features_stored`]).
//!
//! Redis serializes the scripts, so concurrent replicas agree with one process that received
//! the transactions in the order Redis ran them. Keys (prefix `fl:<feature-set-hash>:`):
//! `gen` (generation, written last by a bootstrap), `boot` (bootstrap lock), `wm` (the
//! bootstrap's event-time watermark), `e:<group>:<entity>[:<entity2>]` (sorted set: score =
//! event time in µs, member = packed event time, tx_id and window arguments; `entity2` for a
//! customer-terminal pair), `tx:<tx_id>` (hash: body,
//! label, members of both label variants, so a label is applied by one server-side script),
//! `lbl:<tx_id>` (a label that came before its transaction), `lblcur`/`lbllock` (the lake
//! labels applied so far, see [`RedisStore::sync_lake_labels`]). Entities and transaction
//! records expire after the horizon idle (wall time), so idle state vanishes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::engine::{GroupInfo, OnlineEngine, StateWrite, Transaction};
use super::history;
use super::state::{EntityKey, EntityStore, MemoryStore};
use crate::compile::FeaturePlan;
use fraudlake_pipeline::Lake;

/// What can go wrong with the shared store. The server answers 503 to the first two (or a
/// degraded score with `--on-store-failure open`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the online store (Redis) is unreachable: {0}")]
    Unavailable(String),
    #[error(
        "the online store (Redis) holds no loaded state for this feature set (generation {0} is \
         gone: a restart without persistence, or a bootstrap in progress); it is re-bootstrapped \
         from the lake"
    )]
    Lost(String),
    #[error("another bootstrap of the online store is running (lock {0}); try again when it ends")]
    Busy(String),
    #[error(transparent)]
    Engine(#[from] fraudlake_pipeline::Error),
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// How a transaction stood in the shared store when its script ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredAs {
    /// Recorded now.
    New,
    /// Recorded before with the same body (a retry, maybe through another replica).
    Retry,
    /// Recorded before with another body: names the first field that differs.
    Conflict { field: &'static str },
}

/// One transaction after its script: how it stood, its label, and the histories of its
/// entities (including itself) to compute its features from.
#[derive(Debug)]
pub struct Stored {
    pub stored_as: StoredAs,
    pub is_fraud: bool,
    pub state: MemoryStore,
}

/// What `fraudlake online bootstrap` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BootstrapReport {
    pub transactions: usize,
    pub entities: usize,
    pub events: usize,
    pub seconds: f64,
    pub rows_per_s: f64,
    pub generation: String,
}

/// What `fraudlake online stats` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStats {
    pub entities: u64,
    pub events: u64,
    pub tx_records: u64,
    pub used_memory_bytes: u64,
    pub generation: String,
    pub feature_set: String,
}

/// Records a transaction and returns its entities' histories (see the module comment).
/// KEYS: gen, tx record, held label, then one entity key per write. ARGV: generation, body,
/// record TTL (ms), score (µs), then per entity: member unlabeled, member fraud, keep (µs),
/// read from (µs), entity TTL (ms).
const SCORE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
local n = #KEYS - 3
local rec = redis.call('HMGET', KEYS[2], 'b', 'f')
local status = 0
local fraud = '0'
if rec[1] then
  if rec[1] ~= ARGV[2] then return {-2, rec[1]} end
  status = 1
  fraud = rec[2] or '0'
else
  local held = redis.call('GET', KEYS[3])
  if held then
    fraud = held
    redis.call('DEL', KEYS[3])
  end
  local fields = {'b', ARGV[2], 'f', fraud, 'n', tostring(n), 's', ARGV[4]}
  for i = 1, n do
    local a = 4 + (i - 1) * 5
    fields[#fields + 1] = 'k' .. i
    fields[#fields + 1] = KEYS[3 + i]
    fields[#fields + 1] = 'm' .. i .. '0'
    fields[#fields + 1] = ARGV[a + 1]
    fields[#fields + 1] = 'm' .. i .. '1'
    fields[#fields + 1] = ARGV[a + 2]
  end
  redis.call('HSET', KEYS[2], unpack(fields))
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
local out = {status, fraud}
for i = 1, n do
  local k = KEYS[3 + i]
  local a = 4 + (i - 1) * 5
  if status == 0 then
    local m = ARGV[a + 1]
    if fraud == '1' then m = ARGV[a + 2] end
    redis.call('ZADD', k, ARGV[4], m)
    local newest = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
    local cut = tonumber(newest[2]) - tonumber(ARGV[a + 3])
    redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. string.format('%.0f', cut))
    redis.call('PEXPIRE', k, ARGV[a + 5])
  end
  out[#out + 1] = redis.call('ZRANGEBYSCORE', k, ARGV[a + 4], '+inf')
end
return out
"#;

/// Applies a label: swaps each entity's member for the other label variant, or holds the
/// label for a transaction not recorded yet. KEYS: gen, tx record, held label. ARGV:
/// generation, '0'/'1', held-label TTL (ms). Returns -1 (generation gone), 0 (held or
/// nothing to do), 1 (unchanged), 2 (applied).
const LABEL_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local was = redis.call('HGET', KEYS[2], 'f')
if not was then
  if ARGV[2] == '1' or redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
  end
  return 0
end
if was == ARGV[2] then return 1 end
redis.call('HSET', KEYS[2], 'f', ARGV[2])
local n = tonumber(redis.call('HGET', KEYS[2], 'n'))
local s = redis.call('HGET', KEYS[2], 's')
for i = 1, n do
  local f = redis.call('HMGET', KEYS[2], 'k' .. i, 'm' .. i .. was, 'm' .. i .. ARGV[2])
  if redis.call('ZREM', f[1], f[2]) == 1 then
    redis.call('ZADD', f[1], s, f[3])
  end
end
return 2
"#;

/// Transactions per pipeline when bootstrapping.
const BOOTSTRAP_CHUNK: usize = 4096;
/// How long a bootstrap lock lives if its holder dies.
const LOCK_TTL: Duration = Duration::from_secs(15 * 60);

/// The shared store of one feature set.
pub struct RedisStore {
    conn: ConnectionManager,
    /// The URL without credentials, for messages.
    shown: String,
    prefix: String,
    feature_set: String,
    /// The generation this process serves (empty until adopted).
    generation: Mutex<String>,
    /// Indexed by group id.
    groups: Vec<GroupInfo>,
    tx_ttl_ms: i64,
    score: Script,
    label: Script,
}

/// `redis://user:secret@host:port/db` shown as `redis://host:port/db`.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => url.to_string(),
    }
}

fn ms(ns: i64) -> i64 {
    (ns / 1_000_000).max(1_000)
}

/// Packs an event: event time and tx_id big-endian with the sign bit flipped (so bytes
/// sort as numbers: members with the same µs score sort by event time), then each argument
/// as a presence byte and its f64 bits.
pub fn encode_member(time_ns: i64, tx_id: i64, args: &[Option<f64>]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + 9 * args.len());
    m.extend_from_slice(&((time_ns as u64) ^ (1 << 63)).to_be_bytes());
    m.extend_from_slice(&((tx_id as u64) ^ (1 << 63)).to_be_bytes());
    for a in args {
        match a {
            Some(v) => {
                m.push(1);
                m.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            None => m.push(0),
        }
    }
    m
}

/// The inverse of [`encode_member`]; `None` if the bytes are not one.
pub fn decode_member(b: &[u8]) -> Option<(i64, i64, Vec<Option<f64>>)> {
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
    };
    let time_ns = (word(0)? ^ (1 << 63)) as i64;
    let tx_id = (word(8)? ^ (1 << 63)) as i64;
    let mut args = Vec::new();
    let mut at = 16;
    while at < b.len() {
        match b[at] {
            0 => {
                args.push(None);
                at += 1;
            }
            1 => {
                let bits = u64::from_le_bytes(b.get(at + 1..at + 9)?.try_into().ok()?);
                args.push(Some(f64::from_bits(bits)));
                at += 9;
            }
            _ => return None,
        }
    }
    Some((time_ns, tx_id, args))
}

/// The fields of a transaction a retry must repeat, as the record keeps them.
fn body(tx: &Transaction) -> String {
    format!(
        "{}|{}|{}|{:016x}",
        tx.tx_ts_us,
        tx.customer_id,
        tx.terminal_id,
        tx.amount.to_bits()
    )
}

/// The first field where a recorded body and a request differ.
fn differing_field(recorded: &[u8], tx: &Transaction) -> &'static str {
    let text = String::from_utf8_lossy(recorded);
    let parts: Vec<&str> = text.split('|').collect();
    let mine = body(tx);
    let theirs: Vec<&str> = mine.split('|').collect();
    for (i, field) in ["tx_ts", "customer_id", "terminal_id", "amount"]
        .iter()
        .enumerate()
    {
        if parts.get(i) != theirs.get(i) {
            return field;
        }
    }
    "tx_ts"
}

fn server_error(v: &Value) -> Option<String> {
    match v {
        Value::ServerError(e) => Some(redis::RedisError::from(e.clone()).to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

fn malformed(what: &str) -> StoreError {
    StoreError::Engine(fraudlake_pipeline::Error::invalid(format!(
        "the online store answered something unexpected ({what})"
    )))
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host:port/db`) for the plan `engine` runs.
    /// Redis must answer now; afterwards the connection re-establishes itself.
    pub async fn connect<S: EntityStore>(
        url: &str,
        engine: &OnlineEngine<S>,
    ) -> StoreResult<RedisStore> {
        if let Some(window) = engine.window_over_window() {
            return Err(fraudlake_pipeline::Error::invalid(format!(
                "the Redis online store computes a transaction's window arguments before it reads \
                 any history; the window {window} of this feature SQL takes its argument or \
                 entity from another window's result: serve it with the in-memory store"
            ))
            .into());
        }
        let shown = without_credentials(url);
        let client = redis::Client::open(url).map_err(|e| {
            fraudlake_pipeline::Error::invalid(format!(
                "--online-store {shown}: not a Redis URL ({e}); expected \
                 redis://[user:password@]host:port/db"
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{shown}: {e}")))?;
        let plan: &FeaturePlan = engine.plan();
        let rules = engine.event_time_rules();
        let mut groups = engine.groups();
        groups.sort_by_key(|g| g.id);
        let store = RedisStore {
            conn,
            prefix: format!("fl:{}:", plan.feature_set.short_hash()),
            feature_set: plan.feature_set.sha256.clone(),
            shown,
            generation: Mutex::new(String::new()),
            groups,
            tx_ttl_ms: ms(plan.lookback_ns.saturating_add(rules.max_skew_ns)),
            score: Script::new(SCORE_LUA),
            label: Script::new(LABEL_LUA),
        };
        store.load_scripts().await?;
        Ok(store)
    }

    /// The store's address, without credentials.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// `e:<group>:<entity>`, and `e:<group>:<entity>:<entity2>` for a pair whose second value
    /// is not 0 (within a group, injective either way; one-column entities keep the key they
    /// had before pairs existed).
    fn entity_key(&self, key: EntityKey) -> String {
        if key.entity2 == 0 {
            format!("{}e:{}:{}", self.prefix, key.group, key.entity)
        } else {
            format!(
                "{}e:{}:{}:{}",
                self.prefix, key.group, key.entity, key.entity2
            )
        }
    }

    /// (Re)loads the scripts (a restarted Redis has forgotten them).
    pub async fn load_scripts(&self) -> StoreResult<()> {
        let mut c = self.conn.clone();
        for source in [SCORE_LUA, LABEL_LUA] {
            let _: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(source)
                .query_async(&mut c)
                .await?;
        }
        Ok(())
    }

    /// The generation this process serves.
    pub fn generation(&self) -> String {
        self.generation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves `generation` from now on.
    pub fn adopt(&self, generation: &str) {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) = generation.to_string();
    }

    /// The generation the store holds now (`None`: not loaded).
    pub async fn stored_generation(&self) -> StoreResult<Option<String>> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(self.key("gen"))
            .query_async(&mut c)
            .await?)
    }

    /// The event-time watermark (ns) the last bootstrap left.
    pub async fn watermark_ns(&self) -> StoreResult<Option<i64>> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(self.key("wm"))
            .query_async(&mut c)
            .await?)
    }

    /// Records `txs` (their requested forms in `requested`, which a retry must repeat) with
    /// the writes [`OnlineEngine::writes_for`] made for them unlabeled (`unlabeled`) and as
    /// fraud (`fraud`), in one pipeline, and returns each one's state.
    pub async fn score(
        &self,
        txs: &[Transaction],
        requested: &[Transaction],
        unlabeled: &[Vec<StateWrite>],
        fraud: &[Vec<StateWrite>],
    ) -> StoreResult<Vec<Stored>> {
        let generation = self.generation();
        if generation.is_empty() {
            return Err(StoreError::Lost("(none adopted yet)".into()));
        }
        let mut pipe = redis::pipe();
        for (i, tx) in txs.iter().enumerate() {
            let (w0, w1) = (&unlabeled[i], &fraud[i]);
            if w0.len() != w1.len() || w0.iter().zip(w1).any(|(a, b)| a.key != b.key) {
                return Err(malformed("label variants touch different entities"));
            }
            let score_us = tx.event_time_ns().div_euclid(1000);
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(self.score.get_hash())
                .arg(3 + w0.len());
            cmd.arg(self.key("gen"))
                .arg(self.key(&format!("tx:{}", tx.tx_id)))
                .arg(self.key(&format!("lbl:{}", tx.tx_id)));
            for w in w0 {
                cmd.arg(self.entity_key(w.key));
            }
            cmd.arg(&generation)
                .arg(body(&requested[i]))
                .arg(self.tx_ttl_ms)
                .arg(score_us);
            for (a, b) in w0.iter().zip(w1) {
                let group = self
                    .groups
                    .get(a.key.group as usize)
                    .ok_or_else(|| malformed("unknown window group"))?;
                cmd.arg(encode_member(a.time_ns, a.tx_id, &a.args))
                    .arg(encode_member(b.time_ns, b.tx_id, &b.args))
                    .arg(group.keep_ns / 1000)
                    .arg(score_us - group.horizon_ns / 1000 - 1)
                    .arg(ms(group.keep_ns));
            }
        }
        let answers = self.run(&pipe).await?;
        if answers.len() != txs.len() {
            return Err(malformed("pipeline length"));
        }
        let mut out = Vec::with_capacity(txs.len());
        for (i, answer) in answers.into_iter().enumerate() {
            let Value::Array(parts) = answer else {
                return Err(malformed("script answer"));
            };
            match parts.first().and_then(int) {
                Some(-1) => return Err(StoreError::Lost(generation)),
                Some(-2) => {
                    let recorded = parts.get(1).and_then(bytes).unwrap_or_default();
                    out.push(Stored {
                        stored_as: StoredAs::Conflict {
                            field: differing_field(recorded, &requested[i]),
                        },
                        is_fraud: false,
                        state: MemoryStore::default(),
                    });
                    continue;
                }
                Some(0 | 1) => {}
                _ => return Err(malformed("script status")),
            }
            let stored_as = if parts.first().and_then(int) == Some(1) {
                StoredAs::Retry
            } else {
                StoredAs::New
            };
            let is_fraud = parts.get(1).and_then(bytes) == Some(b"1".as_slice());
            let mut state = MemoryStore::default();
            for (w, members) in unlabeled[i].iter().zip(parts.iter().skip(2)) {
                let Value::Array(members) = members else {
                    return Err(malformed("history"));
                };
                for m in members {
                    let (time_ns, tx_id, args) = bytes(m)
                        .and_then(decode_member)
                        .ok_or_else(|| malformed("an event"))?;
                    state.insert(w.key, time_ns, tx_id, &args, i64::MAX);
                }
            }
            out.push(Stored {
                stored_as,
                is_fraud,
                state,
            });
        }
        Ok(out)
    }

    /// Applies a fraud label to a recorded transaction (or holds it until the transaction
    /// comes). Returns whether the state changed now.
    pub async fn label(&self, tx_id: i64, is_fraud: bool) -> StoreResult<bool> {
        let generation = self.generation();
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg(self.label.get_hash())
            .arg(3)
            .arg(self.key("gen"))
            .arg(self.key(&format!("tx:{tx_id}")))
            .arg(self.key(&format!("lbl:{tx_id}")))
            .arg(&generation)
            .arg(if is_fraud { "1" } else { "0" })
            .arg(self.tx_ttl_ms);
        let answer = self.run(&pipe).await?;
        match answer.first().and_then(int) {
            Some(-1) => Err(StoreError::Lost(generation)),
            Some(2) => Ok(true),
            Some(0 | 1) => Ok(false),
            _ => Err(malformed("label script")),
        }
    }

    /// Runs a pipeline; a Redis that forgot the scripts (restarted) gets them again and the
    /// pipeline runs once more (the scripts check the generation, so this repeats nothing).
    async fn run(&self, pipe: &redis::Pipeline) -> StoreResult<Vec<Value>> {
        let mut c = self.conn.clone();
        let mut again = false;
        loop {
            let result: redis::RedisResult<Vec<Value>> = pipe.query_async(&mut c).await;
            // Redis says `NOSCRIPT`; the crate renders it `NoScript` inside pipeline errors.
            let noscript = |msg: &str| msg.to_ascii_lowercase().contains("noscript");
            match result {
                Ok(values) => {
                    if let Some(msg) = values.iter().find_map(server_error) {
                        if noscript(&msg) && !again {
                            self.load_scripts().await?;
                            again = true;
                            continue;
                        }
                        return Err(StoreError::Unavailable(msg));
                    }
                    return Ok(values);
                }
                Err(e) if noscript(&e.to_string()) && !again => {
                    self.load_scripts().await?;
                    again = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Takes the bootstrap lock; `false` when another process holds it.
    pub async fn try_lock(&self, token: &str) -> StoreResult<bool> {
        let mut c = self.conn.clone();
        let got: Option<String> = redis::cmd("SET")
            .arg(self.key("boot"))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.as_millis() as u64)
            .query_async(&mut c)
            .await?;
        Ok(got.is_some())
    }

    async fn unlock(&self, token: &str) -> StoreResult<()> {
        let mut c = self.conn.clone();
        let _: i64 = Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        )
        .key(self.key("boot"))
        .arg(token)
        .invoke_async(&mut c)
        .await?;
        Ok(())
    }

    /// One page of a SCAN over this feature set's keys: the next cursor (0 at the end) and
    /// the keys.
    async fn scan_page(
        &self,
        c: &mut ConnectionManager,
        cursor: u64,
    ) -> StoreResult<(u64, Vec<String>)> {
        Ok(redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", self.prefix))
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await?)
    }

    /// Deletes every key of this feature set but the lock.
    async fn clear(&self) -> StoreResult<()> {
        let mut c = self.conn.clone();
        let lock = self.key("boot");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys) = self.scan_page(&mut c, cursor).await?;
            let keys: Vec<String> = keys.into_iter().filter(|k| *k != lock).collect();
            if !keys.is_empty() {
                let _: i64 = redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await?;
            }
            cursor = next;
            if cursor == 0 {
                return Ok(());
            }
        }
    }

    /// Loads the lake's lookback (the rows the in-memory server loads at start, labels as
    /// known now) into the store, replacing what it held for this feature set, then publishes
    /// a new generation. Replicas answer 503 (or degraded) from the moment it starts until
    /// the new generation is written. Fails with [`StoreError::Busy`] when another bootstrap
    /// holds the lock.
    pub async fn bootstrap<S: EntityStore>(
        &self,
        engine: &OnlineEngine<S>,
        lake: &Lake,
    ) -> StoreResult<BootstrapReport> {
        let started = Instant::now();
        let token = format!(
            "{:x}-{:x}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            std::process::id()
        );
        if !self.try_lock(&token).await? {
            return Err(StoreError::Busy(self.key("boot")));
        }
        let result = self.load(engine, lake, &token, started).await;
        let unlocked = self.unlock(&token).await;
        let report = result?;
        unlocked?;
        Ok(report)
    }

    async fn load<S: EntityStore>(
        &self,
        engine: &OnlineEngine<S>,
        lake: &Lake,
        generation: &str,
        started: Instant,
    ) -> StoreResult<BootstrapReport> {
        let mut c = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.key("gen"))
            .query_async(&mut c)
            .await?;
        self.clear().await?;
        let (rows, _anchor) = history::lookback(engine, lake).await?;
        let mut entities = std::collections::HashSet::new();
        let mut events = 0usize;
        let mut watermark = i64::MIN;
        for chunk in rows.chunks(BOOTSTRAP_CHUNK) {
            let txs: Vec<Transaction> = chunk.iter().map(|r| r.tx).collect();
            let w0 = engine.writes_for(&txs, false)?;
            let w1 = engine.writes_for(&txs, true)?;
            let mut by_key: HashMap<EntityKey, Vec<(i64, Vec<u8>)>> = HashMap::new();
            let mut pipe = redis::pipe();
            for (i, row) in chunk.iter().enumerate() {
                let tx = &row.tx;
                let fraud = row.label.is_some_and(|(f, _)| f);
                let score_us = tx.event_time_ns().div_euclid(1000);
                watermark = watermark.max(tx.event_time_ns());
                let record = self.key(&format!("tx:{}", tx.tx_id));
                let cmd = pipe.cmd("HSET").arg(&record);
                cmd.arg("b")
                    .arg(body(tx))
                    .arg("f")
                    .arg(if fraud { "1" } else { "0" })
                    .arg("n")
                    .arg(w0[i].len())
                    .arg("s")
                    .arg(score_us);
                for (j, (a, b)) in w0[i].iter().zip(&w1[i]).enumerate() {
                    let key = self.entity_key(a.key);
                    let (m0, m1) = (
                        encode_member(a.time_ns, a.tx_id, &a.args),
                        encode_member(b.time_ns, b.tx_id, &b.args),
                    );
                    cmd.arg(format!("k{}", j + 1))
                        .arg(&key)
                        .arg(format!("m{}0", j + 1))
                        .arg(&m0)
                        .arg(format!("m{}1", j + 1))
                        .arg(&m1);
                    by_key
                        .entry(a.key)
                        .or_default()
                        .push((score_us, if fraud { m1 } else { m0 }));
                    events += 1;
                }
                pipe.cmd("PEXPIRE")
                    .arg(&record)
                    .arg(self.tx_ttl_ms)
                    .ignore();
            }
            for (entity, members) in by_key {
                let group = self
                    .groups
                    .get(entity.group as usize)
                    .ok_or_else(|| malformed("unknown window group"))?;
                let key = self.entity_key(entity);
                let cmd = pipe.cmd("ZADD").arg(&key);
                for (score, member) in &members {
                    cmd.arg(*score).arg(member);
                }
                pipe.cmd("PEXPIRE")
                    .arg(&key)
                    .arg(ms(group.keep_ns))
                    .ignore();
                entities.insert(entity);
            }
            let _: Vec<Value> = pipe.query_async(&mut c).await?;
        }
        let labeled = rows.iter().filter_map(|r| r.label.map(|(_, at)| at)).max();
        let _: () = redis::cmd("SET")
            .arg(self.key("lblcur"))
            .arg(labeled.unwrap_or(0))
            .query_async(&mut c)
            .await?;
        let _: () = redis::cmd("SET")
            .arg(self.key("wm"))
            .arg(if watermark == i64::MIN { 0 } else { watermark })
            .query_async(&mut c)
            .await?;
        // Written last: until now every replica refuses to score from a half-loaded store.
        let _: () = redis::cmd("SET")
            .arg(self.key("gen"))
            .arg(generation)
            .query_async(&mut c)
            .await?;
        self.adopt(generation);
        let seconds = started.elapsed().as_secs_f64();
        Ok(BootstrapReport {
            transactions: rows.len(),
            entities: entities.len(),
            events,
            seconds,
            rows_per_s: rows.len() as f64 / seconds.max(1e-9),
            generation: generation.to_string(),
        })
    }

    /// Applies the labels committed to the lake since the last sync (by `ingest`, another
    /// tool, or a replica's `/labels` through its writer) to the store, once: one process at a
    /// time (a short lock), a cursor in the store (`lblcur`, the newest `labeled_at` applied,
    /// set by a bootstrap to the newest it loaded). `effective_sql` selects the label that
    /// counts per tx_id (`tx_id, is_fraud, labeled_at` in µs; the server's label policy).
    /// Applying a label equal to the stored one changes nothing, so one that came through
    /// `/labels` is not applied twice. Returns how many changed the state.
    pub async fn sync_lake_labels(&self, lake: &Lake, effective_sql: &str) -> StoreResult<usize> {
        let mut c = self.conn.clone();
        let lock = self.key("lbllock");
        let token = format!("{:x}", std::process::id());
        let got: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut c)
            .await?;
        if got.is_none() {
            return Ok(0);
        }
        let result = self.apply_new_labels(lake, effective_sql).await;
        let _: i64 = redis::cmd("DEL").arg(&lock).query_async(&mut c).await?;
        result
    }

    async fn apply_new_labels(&self, lake: &Lake, effective_sql: &str) -> StoreResult<usize> {
        use deltalake::arrow::array::{Array, AsArray};
        use deltalake::arrow::datatypes::Int64Type;
        let mut c = self.conn.clone();
        let cursor: Option<i64> = redis::cmd("GET")
            .arg(self.key("lblcur"))
            .query_async(&mut c)
            .await?;
        let Some(cursor) = cursor else {
            return Ok(0); // not bootstrapped by this version: nothing to compare with
        };
        let ctx = lake.session(&[]).await?;
        if !ctx
            .table_exist("labels")
            .map_err(fraudlake_pipeline::Error::from)?
        {
            return Ok(0);
        }
        let sql = format!(
            "SELECT e.tx_id, CAST(e.is_fraud AS BIGINT) AS f, e.labeled_at FROM ({effective_sql}) e \
             WHERE e.tx_id IN (SELECT tx_id FROM labels WHERE CAST(labeled_at AS BIGINT) > {cursor})"
        );
        let batches = ctx
            .sql(&sql)
            .await
            .map_err(fraudlake_pipeline::Error::from)?
            .collect()
            .await
            .map_err(fraudlake_pipeline::Error::from)?;
        let mut newest = cursor;
        let mut changed = 0;
        for b in &batches {
            let (ids, fraud, at) = (
                b.column(0).as_primitive::<Int64Type>(),
                b.column(1).as_primitive::<Int64Type>(),
                b.column(2).as_primitive::<Int64Type>(),
            );
            for i in 0..b.num_rows() {
                if ids.is_null(i) || fraud.is_null(i) {
                    continue;
                }
                if self.label(ids.value(i), fraud.value(i) == 1).await? {
                    changed += 1;
                }
                if at.is_valid(i) {
                    newest = newest.max(at.value(i));
                }
            }
        }
        if newest > cursor {
            let _: () = redis::cmd("SET")
                .arg(self.key("lblcur"))
                .arg(newest)
                .query_async(&mut c)
                .await?;
        }
        Ok(changed)
    }

    /// Counts this feature set's entities, events and transaction records (a SCAN: O(keys),
    /// for an operator or a metric refreshed every few seconds, not per request), and the
    /// memory Redis uses in all.
    pub async fn stats(&self) -> StoreResult<StoreStats> {
        let mut c = self.conn.clone();
        let (mut entities, mut events, mut tx_records) = (0u64, 0u64, 0u64);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys) = self.scan_page(&mut c, cursor).await?;
            let mut pipe = redis::pipe();
            let mut zsets = 0;
            for k in &keys {
                let name = &k[self.prefix.len().min(k.len())..];
                if name.starts_with("e:") {
                    pipe.cmd("ZCARD").arg(k);
                    zsets += 1;
                } else if name.starts_with("tx:") {
                    tx_records += 1;
                }
            }
            if zsets > 0 {
                let cards: Vec<u64> = pipe.query_async(&mut c).await?;
                entities += cards.len() as u64;
                events += cards.iter().sum::<u64>();
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
        let used_memory_bytes = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok(StoreStats {
            entities,
            events,
            tx_records,
            used_memory_bytes,
            generation: self.stored_generation().await?.unwrap_or_default(),
            feature_set: self.feature_set.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip_and_sort_by_event_time() {
        let a = encode_member(1_522_540_800_000_000_123, 7, &[Some(1.5), None, Some(-0.0)]);
        assert_eq!(
            decode_member(&a),
            Some((
                1_522_540_800_000_000_123,
                7,
                vec![Some(1.5), None, Some(-0.0)]
            ))
        );
        let b = encode_member(1_522_540_800_000_000_124, 3, &[]);
        let early = encode_member(-5, 1, &[]);
        assert!(a < b, "bytes order is event-time order");
        assert!(early < a, "negative times sort first");
        assert_eq!(decode_member(&[1, 2, 3]), None);
        assert_eq!(decode_member(&[&b[..], &[7u8][..]].concat()), None);
    }

    #[test]
    fn a_conflict_names_the_field_and_urls_hide_secrets() {
        let tx = Transaction {
            tx_id: 1,
            tx_ts_us: 10,
            customer_id: 2,
            terminal_id: 3,
            amount: 4.5,
        };
        let other = Transaction { amount: 5.0, ..tx };
        assert_eq!(differing_field(body(&other).as_bytes(), &tx), "amount");
        let other = Transaction {
            customer_id: 9,
            ..tx
        };
        assert_eq!(differing_field(body(&other).as_bytes(), &tx), "customer_id");
        assert_eq!(
            without_credentials("redis://u:secret@host:6379/0"),
            "redis://host:6379/0"
        );
        assert_eq!(without_credentials("redis://host:1/2"), "redis://host:1/2");
    }
}
