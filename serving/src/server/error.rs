//! One error type for every handler: a status, a machine-readable `error` kind and a `detail`
//! naming the field or the problem. Client mistakes are 4xx with a precise detail; only our
//! own failures are 5xx. Every error is counted in `api_errors_total{kind}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::json::Json;

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable kind: invalid_json, invalid_field, event_time_ahead, too_large, batch_too_large,
    /// not_found, unauthorized (no valid API key), forbidden (the key lacks the route's scope),
    /// not_ready, online_store_unavailable, conflict, timeout, internal.
    pub error: String,
    /// What exactly is wrong, naming the field when there is one.
    pub detail: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            detail: detail.into(),
        }
    }

    pub fn field(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    pub fn not_ready(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", detail)
    }
}

impl From<fraudlake_pipeline::Error> for ApiError {
    fn from(e: fraudlake_pipeline::Error) -> Self {
        Self::internal(e.to_string())
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        Self::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.kind.to_string(),
                detail: self.detail,
            }),
        )
            .into_response();
        // The metrics middleware counts api_errors_total from this marker.
        response.extensions_mut().insert(ErrorKind(self.kind));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names the scheme the client should use.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Attached to error responses so the middleware can count them by kind.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKind(pub &'static str);
