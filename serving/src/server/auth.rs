//! Who may write: every POST route takes a [`Caller`] extractor naming the scope it needs
//! (`score` for /score and /score/batch, `label` for /labels, `admin` for /admin/*), so a
//! route cannot forget its check and the handler learns the key id (labels record it as their
//! source). GET routes (health, readiness, metrics, the model, the API document) stay open:
//! they change nothing and monitoring must reach them without a key.
//!
//! Keys come from the lake (`fraudlake_pipeline::keys`): loaded at start, refreshed on the
//! reload poll, so a key revoked with `fraudlake keys revoke` stops working within
//! `--reload-secs`. A missing, malformed, unknown or revoked key is 401, a valid key without
//! the scope 403, both as `{error, detail}` and counted in `api_errors_total{kind}`.
//! `--insecure-no-auth` (loopback only) lets every request through as `api:anonymous`.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::{Error, Result};
use arc_swap::ArcSwap;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use fraudlake_pipeline::keys::{self, KeyRing, Refusal, Scope};
use fraudlake_pipeline::Lake;

use super::error::ApiError;
use super::state::SharedState;

/// How the server checks callers.
pub enum Auth {
    /// API keys from the lake, swapped whole on refresh.
    Keys(ArcSwap<KeyRing>),
    /// `--insecure-no-auth`: nobody is checked.
    Insecure,
}

impl Auth {
    /// Loads the keys; with no live key and without `insecure`, refuses to start.
    pub async fn load(lake: &Lake, insecure: bool) -> Result<Auth> {
        if insecure {
            tracing::warn!(
                "--insecure-no-auth: API keys are NOT checked; anyone who reaches this address can score, \
                 label and reload (loopback only; never in production)"
            );
            return Ok(Auth::Insecure);
        }
        let ring = keys::load(lake).await?;
        if ring.active() == 0 {
            return Err(Error::invalid(format!(
                "the lake at {} has no API key, and `serve` requires keys on its write routes: \
                 create one with `fraudlake keys create --scope score,label,admin` (or, on a \
                 loopback address only, start with --insecure-no-auth)",
                lake.root()
            )));
        }
        tracing::info!(keys = ring.active(), "API keys loaded");
        Ok(Auth::Keys(ArcSwap::from_pointee(ring)))
    }

    /// Re-reads the keys from the lake (the reload poll and /admin/reload call this).
    pub async fn refresh(&self, lake: &Lake) -> Result<()> {
        if let Auth::Keys(current) = self {
            let ring = keys::load(lake).await?;
            if ring.active() == 0 {
                tracing::warn!(
                    "every API key is revoked: the write routes answer 401 until one is created"
                );
            }
            current.store(Arc::new(ring));
        }
        Ok(())
    }

    /// The key id allowed to use `scope` (None when auth is off), or the error answer.
    pub fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<Option<String>, ApiError> {
        let ring = match self {
            Auth::Insecure => return Ok(None),
            Auth::Keys(ring) => ring.load(),
        };
        let refused =
            |r: Refusal| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", r.to_string());
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(refused(Refusal::Missing));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .ok_or_else(|| refused(Refusal::Malformed))?;
        match ring.check(token, scope) {
            Ok((id, true)) => Ok(Some(id)),
            Ok((id, false)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "API key {id} does not have the '{}' scope this route needs",
                    scope.as_str()
                ),
            )),
            Err(r) => Err(refused(r)),
        }
    }
}

/// A scope a route requires, as a type (so the handler signature says it).
pub trait Required {
    const SCOPE: Scope;
}

pub struct ScoreScope;
pub struct LabelScope;
pub struct AdminScope;

impl Required for ScoreScope {
    const SCOPE: Scope = Scope::Score;
}
impl Required for LabelScope {
    const SCOPE: Scope = Scope::Label;
}
impl Required for AdminScope {
    const SCOPE: Scope = Scope::Admin;
}

/// An authorized caller of a route that needs scope `R`.
pub struct Caller<R> {
    /// The API key's id; None with `--insecure-no-auth`.
    pub key_id: Option<String>,
    scope: PhantomData<fn() -> R>,
}

impl<R> Caller<R> {
    /// The `source` of the labels this caller sends: `api:<key_id>`.
    pub fn label_source(&self) -> String {
        format!("api:{}", self.key_id.as_deref().unwrap_or("anonymous"))
    }
}

impl<R: Required> FromRequestParts<SharedState> for Caller<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let key_id = state.auth.authorize(&parts.headers, R::SCOPE)?;
        Ok(Caller {
            key_id,
            scope: PhantomData,
        })
    }
}

/// Whether `--insecure-no-auth` may be used on `addr`: loopback only, so a server without
/// keys is never reachable from another machine.
pub fn insecure_allowed(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_401_for_bad_keys_and_403_for_missing_scopes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).expect("lake");
        assert!(
            Auth::load(&lake, false).await.is_err(),
            "no key: refuse to start"
        );
        let key = keys::create(&lake, &[Scope::Score], "t")
            .await
            .expect("key");
        let auth = Auth::load(&lake, false).await.expect("auth");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().expect("header"));
            h
        };
        let status = |r: Result<Option<String>, ApiError>| r.map_err(|e| e.status.as_u16());
        assert_eq!(
            status(auth.authorize(&HeaderMap::new(), Scope::Score)),
            Err(401)
        );
        assert_eq!(
            status(auth.authorize(&with("Bearer nope"), Scope::Score)),
            Err(401)
        );
        assert_eq!(
            status(auth.authorize(&with(&key.token), Scope::Score)),
            Err(401),
            "no scheme"
        );
        let bearer = format!("Bearer {}", key.token);
        assert_eq!(
            status(auth.authorize(&with(&bearer), Scope::Score)),
            Ok(Some(key.key_id.clone()))
        );
        assert_eq!(
            status(auth.authorize(&with(&bearer), Scope::Label)),
            Err(403)
        );
        keys::revoke(&lake, &key.key_id).await.expect("revoke");
        // Still valid until the refresh, then refused.
        assert!(auth.authorize(&with(&bearer), Scope::Score).is_ok());
        auth.refresh(&lake).await.expect("refresh");
        assert_eq!(
            status(auth.authorize(&with(&bearer), Scope::Score)),
            Err(401)
        );
        assert!(insecure_allowed(&"127.0.0.1:80".parse().expect("addr")));
        assert!(insecure_allowed(&"[::1]:80".parse().expect("addr")));
        assert!(!insecure_allowed(&"0.0.0.0:80".parse().expect("addr")));
    }
}
