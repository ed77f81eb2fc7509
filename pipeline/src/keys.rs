//! API keys for the scoring server's write routes: created and revoked by
//! `fraudlake keys`, checked by `fraudlake serve`.
//!
//! * A key is `flk_<key_id>_<secret>`: a random 8-byte id and a random 32-byte secret, both
//!   hex, shown once at creation. The lake keeps only sha256(secret), so a copy of the lake
//!   does not hand out keys; the id in the token lets the server look up one digest and
//!   compare fixed-length digests in constant time (an XOR fold, no early return).
//! * Storage: a small append-only Delta table `api_keys` of `create` and `revoke` events,
//!   folded to the current state on read. A Delta table rather than one JSON document because
//!   two `keys create` at once must both land (Delta appends do not conflict, while a
//!   rewritten document loses one of two concurrent writes unless the store has conditional
//!   puts, which the local store lacks), because it keeps who created and revoked what and
//!   when, and because it goes through object_store like every table (the lake moves to S3).
//! * Scopes: `score` (POST /score, /score/batch), `label` (POST /labels), `admin`
//!   (POST /admin/*). A key holds any set of them; none implies another.
//!
//! Lives in the pipeline crate with the other lake tables: the CLI and the server both use
//! it, and sha2/hex/rand are already this crate's dependencies.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::lake::tables::{utc_micros, TableDef};
use crate::lake::Lake;

/// Token prefix: recognisable in logs and secret scanners.
pub const TOKEN_PREFIX: &str = "flk_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

fn api_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key_id", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("scopes", DataType::Utf8, true),
        Field::new("secret_sha256", DataType::Utf8, true),
        Field::new("at", utc_micros(), false),
        Field::new("actor", DataType::Utf8, false),
    ]))
}

/// API key events: `create` (with the scopes and the secret's sha256) and `revoke`.
pub const API_KEYS: TableDef = TableDef {
    name: "api_keys",
    description:
        "API key events (create with scopes and sha256 of the secret, revoke); never the secret",
    schema: api_keys_schema,
    partition_by: &[],
};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Score,
    Label,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Score, Scope::Label, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Score => "score",
            Scope::Label => "label",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Score => 1,
            Scope::Label => 2,
            Scope::Admin => 4,
        }
    }

    /// Parses `score,label`; unknown names are an error naming them.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let s = match part.to_ascii_lowercase().as_str() {
                "score" => Scope::Score,
                "label" => Scope::Label,
                "admin" => Scope::Admin,
                _ => {
                    return Err(Error::invalid(format!(
                        "unknown scope '{part}': use score, label or admin"
                    )))
                }
            };
            if !out.contains(&s) {
                out.push(s);
            }
        }
        if out.is_empty() {
            return Err(Error::invalid(
                "give at least one scope: --scope score,label,admin",
            ));
        }
        out.sort();
        Ok(out)
    }

    fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A key as `keys list` shows it (never its secret nor its digest).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub key_id: String,
    pub name: String,
    pub scopes: String,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

/// A key just created: the token is shown once and stored nowhere.
#[derive(Debug, Clone, Serialize)]
pub struct NewKey {
    pub key_id: String,
    pub name: String,
    pub scopes: String,
    pub token: String,
}

struct Entry {
    digest: [u8; 32],
    scopes: u8,
    revoked: bool,
}

/// The current keys, as the server checks them.
#[derive(Default)]
pub struct KeyRing {
    keys: HashMap<String, Entry>,
}

/// Why a token was refused. The messages say what is wrong without echoing the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not `flk_<16 hex>_<64 hex>`.
    Malformed,
    /// No such key id, or the secret does not match (not told apart on purpose).
    Unknown,
    Revoked(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Missing => write!(
                f,
                "this route needs an API key: send Authorization: Bearer flk_... (create one with `fraudlake keys create`)"
            ),
            Refusal::Malformed => write!(
                f,
                "the bearer token is not a fraudlake API key (expected flk_<key id>_<secret>)"
            ),
            Refusal::Unknown => write!(f, "unknown API key or wrong secret"),
            Refusal::Revoked(id) => write!(f, "API key {id} was revoked"),
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(bytes));
    out
}

/// Compares two digests without an early exit.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Splits `flk_<id>_<secret>` into the id and the secret's bytes.
fn parse_token(token: &str) -> Option<(&str, Vec<u8>)> {
    let rest = token.trim().strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex(id, ID_BYTES * 2) || !is_hex(secret, SECRET_BYTES * 2) {
        return None;
    }
    Some((id, hex::decode(secret).ok()?))
}

impl KeyRing {
    /// The key's id and whether it holds `scope`; `Err` when the token is not a live key.
    pub fn check(&self, token: &str, scope: Scope) -> Result<(String, bool), Refusal> {
        let Some((id, secret)) = parse_token(token) else {
            return Err(Refusal::Malformed);
        };
        let given = sha256(&secret);
        // An unknown id is compared against a dummy digest, so it takes as long as a known one.
        let dummy = Entry {
            digest: [0u8; 32],
            scopes: 0,
            revoked: true,
        };
        let entry = self.keys.get(id);
        let equal = digests_equal(&given, &entry.unwrap_or(&dummy).digest);
        match entry {
            Some(e) if equal && e.revoked => Err(Refusal::Revoked(id.to_string())),
            Some(e) if equal => Ok((id.to_string(), e.scopes & scope.bit() != 0)),
            _ => Err(Refusal::Unknown),
        }
    }

    /// Keys not revoked.
    pub fn active(&self) -> usize {
        self.keys.values().filter(|e| !e.revoked).count()
    }
}

/// Who runs the command, for the audit columns.
pub fn actor() -> String {
    std::env::var("FRAUDLAKE_ACTOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

struct Event {
    key_id: String,
    event: String,
    name: Option<String>,
    scopes: Option<String>,
    secret_sha256: Option<String>,
    at_us: i64,
    actor: String,
}

fn strings(col: &ArrayRef) -> Result<StringArray> {
    let c = cast(col, &DataType::Utf8)?;
    c.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| Error::invalid("api_keys: a text column could not be read"))
}

/// Every event in order.
async fn events(lake: &Lake) -> Result<Vec<Event>> {
    let Some(table) = lake.load(API_KEYS.name).await? else {
        return Ok(Vec::new());
    };
    let ctx = crate::lake::new_session();
    crate::lake::register(&ctx, API_KEYS.name, &table).await?;
    let batches = ctx
        .sql(
            "SELECT key_id, event, name, scopes, secret_sha256, CAST(at AS BIGINT) AS at_us, actor \
             FROM api_keys ORDER BY at_us, event",
        )
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let (id, event, name, scopes, digest, actor) = (
            strings(b.column(0))?,
            strings(b.column(1))?,
            strings(b.column(2))?,
            strings(b.column(3))?,
            strings(b.column(4))?,
            strings(b.column(6))?,
        );
        let at = cast(b.column(5), &DataType::Int64)?;
        let at = at
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| Error::invalid("api_keys: `at` could not be read"))?;
        let opt = |a: &StringArray, r: usize| (!a.is_null(r)).then(|| a.value(r).to_string());
        for r in 0..b.num_rows() {
            out.push(Event {
                key_id: id.value(r).to_string(),
                event: event.value(r).to_string(),
                name: opt(&name, r),
                scopes: opt(&scopes, r),
                secret_sha256: opt(&digest, r),
                at_us: at.value(r),
                actor: actor.value(r).to_string(),
            });
        }
    }
    Ok(out)
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Every key ever created, oldest first, with its revocation if any.
pub async fn list(lake: &Lake) -> Result<Vec<KeyInfo>> {
    let mut out: Vec<KeyInfo> = Vec::new();
    for e in events(lake).await? {
        match e.event.as_str() {
            "create" => out.push(KeyInfo {
                key_id: e.key_id,
                name: e.name.unwrap_or_default(),
                scopes: e.scopes.unwrap_or_default(),
                created_at: rfc3339(e.at_us),
                created_by: e.actor,
                revoked_at: None,
                revoked_by: None,
            }),
            "revoke" => {
                if let Some(k) = out
                    .iter_mut()
                    .find(|k| k.key_id == e.key_id && k.revoked_at.is_none())
                {
                    k.revoked_at = Some(rfc3339(e.at_us));
                    k.revoked_by = Some(e.actor);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The keys as the server checks them. A create event with an unreadable digest or scopes is
/// skipped with a warning (it can never match) rather than locking everybody out.
pub async fn load(lake: &Lake) -> Result<KeyRing> {
    let mut ring = KeyRing::default();
    for e in events(lake).await? {
        match e.event.as_str() {
            "create" => {
                let digest = e
                    .secret_sha256
                    .as_deref()
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|v| <[u8; 32]>::try_from(v).ok());
                let scopes = e.scopes.as_deref().map(Scope::parse_list);
                match (digest, scopes) {
                    (Some(digest), Some(Ok(scopes))) => {
                        ring.keys.insert(
                            e.key_id,
                            Entry {
                                digest,
                                scopes: scopes.iter().fold(0, |m, s| m | s.bit()),
                                revoked: false,
                            },
                        );
                    }
                    _ => {
                        tracing::warn!(key_id = %e.key_id, "api_keys: an unreadable key was skipped")
                    }
                }
            }
            "revoke" => {
                if let Some(k) = ring.keys.get_mut(&e.key_id) {
                    k.revoked = true;
                }
            }
            _ => {}
        }
    }
    Ok(ring)
}

fn event_batch(e: &Event) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![e.key_id.as_str()])),
        Arc::new(StringArray::from(vec![e.event.as_str()])),
        Arc::new(StringArray::from(vec![e.name.as_deref()])),
        Arc::new(StringArray::from(vec![e.scopes.as_deref()])),
        Arc::new(StringArray::from(vec![e.secret_sha256.as_deref()])),
        Arc::new(TimestampMicrosecondArray::from(vec![e.at_us]).with_timezone("UTC")),
        Arc::new(StringArray::from(vec![e.actor.as_str()])),
    ];
    Ok(RecordBatch::try_new((API_KEYS.schema)(), columns)?)
}

/// Creates a key with `scopes`; the returned token is the only copy of its secret.
pub async fn create(lake: &Lake, scopes: &[Scope], name: &str) -> Result<NewKey> {
    if scopes.is_empty() {
        return Err(Error::invalid("give at least one scope"));
    }
    let name = name.trim();
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "--name: at most 200 characters, no control characters",
        ));
    }
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let scopes_text = Scope::join(scopes);
    let event = Event {
        key_id: key_id.clone(),
        event: "create".into(),
        name: Some(name.to_string()),
        scopes: Some(scopes_text.clone()),
        secret_sha256: Some(hex::encode(sha256(&secret))),
        at_us: chrono::Utc::now().timestamp_micros(),
        actor: actor(),
    };
    lake.append(&API_KEYS, vec![event_batch(&event)?], "keys create")
        .await?;
    Ok(NewKey {
        token: format!("{TOKEN_PREFIX}{key_id}_{}", hex::encode(secret)),
        key_id,
        name: name.to_string(),
        scopes: scopes_text,
    })
}

/// Revokes a key; an unknown or already revoked id is an error naming it.
pub async fn revoke(lake: &Lake, key_id: &str) -> Result<KeyInfo> {
    let key_id = key_id.trim();
    let keys = list(lake).await?;
    let Some(mut key) = keys.into_iter().rev().find(|k| k.key_id == key_id) else {
        return Err(Error::invalid(format!(
            "no API key '{key_id}' in this lake (see `fraudlake keys list`)"
        )));
    };
    if let Some(at) = &key.revoked_at {
        return Err(Error::invalid(format!(
            "API key {key_id} was already revoked at {at}"
        )));
    }
    let event = Event {
        key_id: key_id.to_string(),
        event: "revoke".into(),
        name: None,
        scopes: None,
        secret_sha256: None,
        at_us: chrono::Utc::now().timestamp_micros(),
        actor: actor(),
    };
    lake.append(&API_KEYS, vec![event_batch(&event)?], "keys revoke")
        .await?;
    key.revoked_at = Some(rfc3339(event.at_us));
    key.revoked_by = Some(event.actor);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_check_and_revoke() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).expect("lake");
        assert_eq!(load(&lake).await.expect("empty").active(), 0);
        let a = create(&lake, &[Scope::Score], "a").await.expect("create");
        let b = create(&lake, &[Scope::Label, Scope::Admin], "b")
            .await
            .expect("create");
        assert!(a.token.starts_with("flk_") && a.token.len() == 4 + 16 + 1 + 64);
        let ring = load(&lake).await.expect("load");
        assert_eq!(ring.active(), 2);
        assert_eq!(
            ring.check(&a.token, Scope::Score),
            Ok((a.key_id.clone(), true))
        );
        assert_eq!(
            ring.check(&a.token, Scope::Label),
            Ok((a.key_id.clone(), false))
        );
        assert_eq!(ring.check(&b.token, Scope::Admin).map(|r| r.1), Ok(true));
        // Right id, wrong secret; a made-up id; garbage.
        let wrong = format!(
            "{}{}",
            &a.token[..a.token.len() - 1],
            if a.token.ends_with('0') { "1" } else { "0" }
        );
        assert_eq!(ring.check(&wrong, Scope::Score), Err(Refusal::Unknown));
        let other = format!("flk_{}_{}", "0".repeat(16), &a.token[21..]);
        assert_eq!(ring.check(&other, Scope::Score), Err(Refusal::Unknown));
        assert_eq!(ring.check("hunter2", Scope::Score), Err(Refusal::Malformed));
        // The lake has the digest, never the secret.
        let secret = &a.token[21..];
        let listed = serde_json::to_string(&list(&lake).await.expect("list")).expect("json");
        assert!(!listed.contains(secret));

        revoke(&lake, &a.key_id).await.expect("revoke");
        assert!(revoke(&lake, &a.key_id).await.is_err(), "twice");
        assert!(revoke(&lake, "0000000000000000").await.is_err(), "unknown");
        let ring = load(&lake).await.expect("load");
        assert_eq!(
            ring.check(&a.token, Scope::Score),
            Err(Refusal::Revoked(a.key_id.clone()))
        );
        assert_eq!(ring.active(), 1);
        let keys = list(&lake).await.expect("list");
        assert!(keys[0].revoked_at.is_some() && keys[1].revoked_at.is_none());
    }

    #[test]
    fn scopes_parse_and_refuse_unknown_names() {
        assert_eq!(
            Scope::parse_list("label, score,label").expect("scopes"),
            vec![Scope::Score, Scope::Label]
        );
        assert!(Scope::parse_list("score,root").is_err());
        assert!(Scope::parse_list(" ").is_err());
    }
}
