//! JSON in and out, with fraudlake's error answers. (axum's own `Json` would do, but its
//! feature changes the features of `serde_json` for the whole dependency graph; this is the
//! few lines it takes to keep them.) A syntax error is `400 invalid_json`; a well-formed body
//! with a missing, unknown or mistyped field is `422 invalid_field` naming it; a body over the
//! limit is `413 too_large`; a wrong content type is `415`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;

/// A JSON request body or response.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_json",
                "send the body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.body_text())
                } else {
                    ApiError::new(e.status(), "invalid_body", e.body_text())
                }
            })?;
        parse(&bytes).map(Json)
    }
}

/// Parses a body, classifying the error the way the API reports it.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            // serde names missing and unknown fields itself, but not a field of the wrong
            // type: find the key just before where the parser stopped.
            Category::Data => match field_before(bytes, e.line(), e.column()) {
                Some(field) if !e.to_string().contains(&format!("`{field}`")) => {
                    ApiError::field(format!("{field}: {e}"))
                }
                _ => ApiError::field(e.to_string()),
            },
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string())
            }
        }
    })
}

/// The last `"key":` before line/column (1-based, as serde_json reports them).
fn field_before(bytes: &[u8], line: usize, column: usize) -> Option<String> {
    let mut offset = 0;
    for _ in 1..line {
        offset += bytes[offset..].iter().position(|&b| b == b'\n')? + 1;
    }
    let end = (offset + column).min(bytes.len());
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    let colon = text.rfind(':')?;
    let before = text[..colon].trim_end().strip_suffix('"')?;
    let start = before.rfind('"')?;
    let key = &before[start + 1..];
    (!key.is_empty() && key.len() <= 64).then(|| key.to_string())
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the answer: {e}"),
            )
                .into_response(),
        }
    }
}

/// `?explain=true|false|1|0`; anything else is a 400 naming the parameter.
pub fn explain_flag(query: Option<&str>) -> Result<bool, ApiError> {
    let mut explain = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        match (key, value) {
            ("explain", "true" | "1") => explain = true,
            ("explain", "false" | "0") => explain = false,
            ("explain", other) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!(
                        "explain: expected true or false, got '{}'",
                        other.chars().take(40).collect::<String>()
                    ),
                ))
            }
            (other, _) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!(
                        "unknown query parameter '{}'",
                        other.chars().take(40).collect::<String>()
                    ),
                ))
            }
        }
    }
    Ok(explain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            a: i64,
            b: String,
        }
        let e = parse::<T>(br#"{"b": "x", "a": "seven"}"#).unwrap_err();
        assert!(e.detail.starts_with("a: invalid type"), "{}", e.detail);
        let e = parse::<T>(b"{\n  \"a\": 1,\n  \"b\": 5\n}").unwrap_err();
        assert!(e.detail.starts_with("b: "), "{}", e.detail);
        let e = parse::<T>(br#"{"a": 1}"#).unwrap_err();
        assert!(e.detail.contains("missing field `b`"), "{}", e.detail);
        assert_eq!(parse::<T>(b"{oops").unwrap_err().kind, "invalid_json");
        assert!(explain_flag(Some("explain=true")).expect("ok"));
        assert!(explain_flag(Some("explain=maybe")).is_err());
        assert!(explain_flag(Some("debug=1")).is_err());
    }
}
