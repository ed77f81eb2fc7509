//! JSON in and out, with fraudlake's error answers. axum's own `Json` does the work (the
//! Content-Type check, the body limit, serde_json with the path of the field that failed, from
//! serde_path_to_error); this wrapper only makes its rejection the API's error body
//! ([`ApiError`]) rather than axum's plain text. A syntax error is `400 invalid_json`; a
//! well-formed body with a missing, unknown or mistyped field is `422 invalid_field` naming it
//! by its path (`transactions[2].amount: invalid type: ...`); a body over the limit is
//! `413 too_large`; a body not sent as `application/json` (or `application/*+json`) is `415`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;

/// A JSON request body or response: [`axum::Json`], rejected with an [`ApiError`].
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::field(cause(&e)),
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", cause(&e))
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_json",
                "send the body with Content-Type: application/json",
            ),
            e if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.body_text())
            }
            e => ApiError::new(e.status(), "invalid_body", e.body_text()),
        }
    }
}

/// serde's message under an axum rejection (with the field's path), without axum's preamble
/// ("Failed to deserialize the JSON body into the target type: ").
fn cause(rejection: &dyn std::error::Error) -> String {
    rejection
        .source()
        .map_or_else(|| rejection.to_string(), ToString::to_string)
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
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug, serde::Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        a: i64,
        b: String,
    }

    fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
        axum::Json::<T>::from_bytes(bytes)
            .map(|j| j.0)
            .map_err(ApiError::from)
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let e = parse::<T>(br#"{"b": "x", "a": "seven"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.kind, "invalid_field");
        assert!(e.detail.starts_with("a: invalid type"), "{}", e.detail);
        assert!(e.detail.contains("at line 1 column"), "{}", e.detail);
        let e = parse::<T>(b"{\n  \"a\": 1,\n  \"b\": 5\n}").unwrap_err();
        assert!(e.detail.starts_with("b: "), "{}", e.detail);
        let e = parse::<T>(br#"{"a": 1}"#).unwrap_err();
        assert!(e.detail.contains("missing field `b`"), "{}", e.detail);
        let e = parse::<T>(br#"{"a": 1, "b": "x", "c": 2}"#).unwrap_err();
        assert!(e.detail.contains("unknown field `c`"), "{}", e.detail);
        // Items of a list are named by their index.
        let e = parse::<Vec<T>>(br#"[{"a": 1, "b": "x"}, {"a": 1, "b": false}]"#).unwrap_err();
        assert!(e.detail.starts_with("[1].b: invalid type"), "{}", e.detail);
        let e = parse::<T>(b"{oops").unwrap_err();
        assert_eq!(
            (e.status, e.kind),
            (StatusCode::BAD_REQUEST, "invalid_json")
        );
        assert!(e.detail.contains("line 1 column 2"), "{}", e.detail);
        let e = parse::<T>(br#"{"a": 1, "b": "x"} trailing"#).unwrap_err();
        assert_eq!(e.kind, "invalid_json");
        assert!(explain_flag(Some("explain=true")).expect("ok"));
        assert!(explain_flag(Some("explain=maybe")).is_err());
        assert!(explain_flag(Some("debug=1")).is_err());
    }

    /// The extractor in a router: content types, the body limit, the error body.
    #[tokio::test]
    async fn extractor_answers_with_the_api_error_body() {
        async fn echo(Json(t): Json<T>) -> Json<T> {
            Json(t)
        }
        let app = Router::new()
            .route("/", post(echo))
            .layer(DefaultBodyLimit::max(64));
        let call = |content_type: Option<&'static str>, body: &'static str| {
            let app = app.clone();
            async move {
                let mut req = axum::http::Request::post("/");
                if let Some(ct) = content_type {
                    req = req.header("content-type", ct);
                }
                let res = app
                    .oneshot(req.body(Body::from(body)).expect("request"))
                    .await
                    .expect("response");
                let status = res.status();
                let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
                    .await
                    .expect("body");
                (status, String::from_utf8_lossy(&bytes).into_owned())
            }
        };
        let ok = r#"{"a":1,"b":"x"}"#;
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            assert_eq!(
                call(Some(ct), ok).await,
                (StatusCode::OK, ok.to_string()),
                "{ct}"
            );
        }
        for ct in [None, Some("text/plain")] {
            let (status, body) = call(ct, ok).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
            assert!(body.contains(r#""error":"invalid_json""#), "{body}");
        }
        let (status, body) = call(Some("application/json"), r#"{"a":1}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("missing field `b`"), "{body}");
        let big = r#"{"a":1,"b":"0123456789012345678901234567890123456789012345678901234567890123456789"}"#;
        let (status, body) = call(Some("application/json"), big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains(r#""error":"too_large""#), "{body}");
    }
}
