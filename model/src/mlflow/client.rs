//! A small client of the MLflow tracking server's REST API 2.0: the dozen calls a sync needs
//! (experiments, runs, the model registry, aliases) and uploads through the server's proxied
//! artifact API. Written against `mlflow server` 3.x (tested with 3.17), which accepts the
//! same JSON as Databricks' MLflow for these endpoints.
//!
//! Why not a crate: the Rust MLflow clients on crates.io are unmaintained or cover tracking
//! only; the calls are plain JSON over HTTP, and reqwest is already in the build (the DAG's
//! webhook), so this costs no new dependency.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// How the client authenticates, from MLflow's own environment variables.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `MLFLOW_TRACKING_TOKEN`: `Authorization: Bearer ...`.
    Bearer(String),
    /// `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`: HTTP Basic.
    Basic(String, String),
}

impl std::fmt::Debug for Auth {
    /// Never prints a secret (the settings are logged at debug level).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("none"),
            Auth::Bearer(_) => f.write_str("bearer token (MLFLOW_TRACKING_TOKEN)"),
            Auth::Basic(user, _) => write!(f, "basic as {user:?}"),
        }
    }
}

impl Auth {
    /// From the environment only (never a flag or a config file, which end up in shell
    /// histories and repositories): the token wins over a user name and password, as in
    /// MLflow's own client.
    pub fn from_env() -> Auth {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(token) = var("MLFLOW_TRACKING_TOKEN") {
            return Auth::Bearer(token);
        }
        match (
            var("MLFLOW_TRACKING_USERNAME"),
            var("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(user), Some(password)) => Auth::Basic(user, password),
            _ => Auth::None,
        }
    }
}

/// A `{key, value}` pair as MLflow's API writes tags and params.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// The parts of a run a sync reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

impl Run {
    pub fn tag(&self, key: &str) -> Option<&str> {
        find(&self.data.tags, key)
    }
}

/// The parts of a model version a sync reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelVersion {
    pub version: String,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

impl ModelVersion {
    pub fn tag(&self, key: &str) -> Option<&str> {
        find(&self.tags, key)
    }
}

fn find<'a>(tags: &'a [KeyValue], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

/// An alias of a registered model.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Alias {
    pub alias: String,
    pub version: String,
}

/// The MLflow error body: `{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "..."}`.
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// What a failed call returned, when the server answered.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

/// A tracking server.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    auth: Auth,
}

/// Per request: MLflow answers in milliseconds; an artifact upload of a model is a few MB at most.
const TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    /// A client of the server at `tracking_uri` (`http://` or `https://`; a trailing slash and
    /// a path prefix such as `https://host/mlflow` are kept as the API's base).
    pub fn new(tracking_uri: &str, auth: Auth) -> Result<Client> {
        let base = tracking_uri.trim().trim_end_matches('/').to_string();
        let scheme_ok = base.starts_with("http://") || base.starts_with("https://");
        let host = base.split_once("://").map_or("", |(_, rest)| rest);
        if !scheme_ok || host.is_empty() || host.starts_with('/') {
            return Err(Error::invalid(format!(
                "MLflow tracking URI '{tracking_uri}' is not an http:// or https:// URL of a \
                 tracking server (fraudlake talks to the server's REST API; file: and \
                 databricks: URIs are not supported)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::mlflow(format!("cannot set up the HTTP client: {e}"), false))?;
        Ok(Client { base, http, auth })
    }

    /// The tracking URI as given (without a trailing slash).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Auth::None => builder,
            Auth::Bearer(token) => builder.bearer_auth(token),
            Auth::Basic(user, password) => builder.basic_auth(user, Some(password)),
        }
    }

    /// Sends, and reads the JSON answer; `Err(Ok(refusal))` when the server answered with an
    /// error status, `Err(Err(e))` when it could not be reached or answered nonsense.
    async fn send(
        &self,
        what: &str,
        builder: reqwest::RequestBuilder,
    ) -> std::result::Result<Value, std::result::Result<Refusal, Error>> {
        let response = builder.send().await.map_err(|e| {
            Err(Error::mlflow(
                format!(
                    "cannot reach the MLflow tracking server at {} ({what}): {}",
                    self.base,
                    chain(&e)
                ),
                true,
            ))
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            Err(Error::mlflow(
                format!("MLflow at {}: reading the answer to {what}: {e}", self.base),
                true,
            ))
        })?;
        if status.is_success() {
            if body.is_empty() {
                return Ok(json!({}));
            }
            return serde_json::from_slice(&body).map_err(|e| {
                Err(Error::mlflow(
                    format!(
                        "MLflow at {} answered {what} with something that is not JSON ({e}): is \
                         this an MLflow tracking server?",
                        self.base
                    ),
                    false,
                ))
            });
        }
        let parsed: ApiError = serde_json::from_slice(&body).unwrap_or_default();
        let message = if parsed.message.is_empty() {
            String::from_utf8_lossy(&body).chars().take(300).collect()
        } else {
            parsed.message
        };
        Err(Ok(Refusal {
            status,
            code: parsed.error_code,
            message,
        }))
    }

    /// One call whose every refusal is an error of the sync.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        self.call_or_refusal(method, path, body)
            .await?
            .map_err(|r| self.refused(path, &r))
    }

    /// One call; a refusal comes back for the caller to judge (a 404 that means "create it").
    async fn call_or_refusal(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<std::result::Result<Value, Refusal>> {
        let mut builder = self.request(method.clone(), &format!("/api/2.0/mlflow/{path}"));
        if let Some(body) = body {
            builder = if method == Method::GET {
                builder.query(&query_pairs(body))
            } else {
                builder
                    .header("content-type", "application/json")
                    .body(body.to_string())
            };
        }
        match self.send(path, builder).await {
            Ok(v) => Ok(Ok(v)),
            Err(Ok(refusal)) => Ok(Err(refusal)),
            Err(Err(e)) => Err(e),
        }
    }

    fn refused(&self, what: &str, r: &Refusal) -> Error {
        let hint = match r.status.as_u16() {
            401 => " (set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)",
            403 => " (the credentials lack a permission this sync needs)",
            _ => "",
        };
        Error::mlflow(
            format!(
                "MLflow at {} refused {what}: HTTP {} {}: {}{hint}",
                self.base,
                r.status.as_u16(),
                r.code,
                r.message
            ),
            r.status.is_server_error(),
        )
    }

    /// The experiment's id, creating the experiment when it does not exist.
    pub async fn experiment_id(&self, name: &str) -> Result<String> {
        let found = self
            .call_or_refusal(
                Method::GET,
                "experiments/get-by-name",
                Some(&json!({ "experiment_name": name })),
            )
            .await?;
        let value = match found {
            Ok(v) => v["experiment"]["experiment_id"].clone(),
            Err(r) if r.code == "RESOURCE_DOES_NOT_EXIST" => {
                let created = self
                    .call_or_refusal(
                        Method::POST,
                        "experiments/create",
                        Some(&json!({ "name": name, "tags": [
                            { "key": "fraudlake.managed", "value": "true" }
                        ]})),
                    )
                    .await?;
                match created {
                    Ok(v) => v["experiment_id"].clone(),
                    // Created by a concurrent sync between our two calls: read it again.
                    Err(r) if r.code == "RESOURCE_ALREADY_EXISTS" => self
                        .call(
                            Method::GET,
                            "experiments/get-by-name",
                            Some(&json!({ "experiment_name": name })),
                        )
                        .await?["experiment"]["experiment_id"]
                        .clone(),
                    Err(r) => return Err(self.refused("experiments/create", &r)),
                }
            }
            Err(r) => return Err(self.refused("experiments/get-by-name", &r)),
        };
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.nonsense("an experiment without an id"))
    }

    fn nonsense(&self, what: &str) -> Error {
        Error::mlflow(
            format!("MLflow at {} answered with {what}", self.base),
            false,
        )
    }

    /// Every active run of the experiment matching `filter` (MLflow's search syntax).
    pub async fn search_runs(&self, experiment_id: &str, filter: &str) -> Result<Vec<Run>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "experiment_ids": [experiment_id],
                "filter": filter,
                "run_view_type": "ACTIVE_ONLY",
                "max_results": 1000,
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let page = self.call(Method::POST, "runs/search", Some(&body)).await?;
            out.extend(parse_list::<Run>(&page, "runs").map_err(|e| self.nonsense(&e))?);
            token = next_token(&page);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Creates a run; returns it (with its artifact URI).
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        tags: &[(String, String)],
    ) -> Result<Run> {
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_time_ms,
            "tags": pairs(tags),
        });
        let v = self.call(Method::POST, "runs/create", Some(&body)).await?;
        serde_json::from_value(v["run"].clone()).map_err(|e| self.nonsense(&format!("a run: {e}")))
    }

    /// Logs params, metrics (all at one timestamp, step 0) and tags, in as few requests as
    /// MLflow's limits allow (100 params, 100 tags, 1000 metrics per batch).
    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[(String, f64)],
        tags: &[(String, String)],
        timestamp_ms: i64,
    ) -> Result<()> {
        let rounds = params
            .len()
            .div_ceil(100)
            .max(tags.len().div_ceil(100))
            .max(1);
        for i in 0..rounds {
            let part = |n: usize, len: usize| (n * i).min(len)..(n * (i + 1)).min(len);
            let metrics: Vec<Value> = if i == 0 {
                metrics
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": v, "timestamp": timestamp_ms, "step": 0}))
                    .collect()
            } else {
                Vec::new()
            };
            let body = json!({
                "run_id": run_id,
                "params": pairs(&params[part(100, params.len())]),
                "tags": pairs(&tags[part(100, tags.len())]),
                "metrics": metrics,
            });
            self.call(Method::POST, "runs/log-batch", Some(&body))
                .await?;
        }
        Ok(())
    }

    pub async fn set_run_tag(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        let body = json!({ "run_id": run_id, "key": key, "value": value });
        self.call(Method::POST, "runs/set-tag", Some(&body)).await?;
        Ok(())
    }

    /// Marks a run finished at `end_time_ms`.
    pub async fn finish_run(&self, run_id: &str, end_time_ms: i64) -> Result<()> {
        let body = json!({ "run_id": run_id, "status": "FINISHED", "end_time": end_time_ms });
        self.call(Method::POST, "runs/update", Some(&body)).await?;
        Ok(())
    }

    /// Uploads one file under a run's artifact root through the server's proxied artifact API
    /// (`mlflow server` serves artifacts by default since 2.0; `--no-serve-artifacts` turns it
    /// off, and then the run's artifact URI names a store this client cannot write).
    pub async fn upload_artifact(
        &self,
        artifact_uri: &str,
        rel_path: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let root = proxied_artifact_path(artifact_uri).ok_or_else(|| {
            Error::mlflow(
                format!(
                    "MLflow at {} stores this run's artifacts at '{artifact_uri}', which is not \
                     served through the tracking server: start it with artifact serving \
                     (`mlflow server --artifacts-destination DIR`, the default since MLflow 2) so \
                     that fraudlake can upload the model",
                    self.base
                ),
                false,
            )
        })?;
        let path = format!("/api/2.0/mlflow-artifacts/artifacts/{root}/{rel_path}");
        let builder = self
            .request(Method::PUT, &path)
            .header("content-type", "application/octet-stream")
            .body(bytes);
        match self
            .send(&format!("the upload of {rel_path}"), builder)
            .await
        {
            Ok(_) => Ok(()),
            Err(Ok(r)) => Err(self.refused(&format!("the upload of {rel_path}"), &r)),
            Err(Err(e)) => Err(e),
        }
    }

    /// The registered model's aliases, creating the model when it does not exist.
    pub async fn ensure_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<Vec<Alias>> {
        let got = self
            .call_or_refusal(
                Method::GET,
                "registered-models/get",
                Some(&json!({ "name": name })),
            )
            .await?;
        let model = match got {
            Ok(v) => v,
            Err(r) if r.code == "RESOURCE_DOES_NOT_EXIST" => {
                let body = json!({
                    "name": name,
                    "description": description,
                    "tags": [{ "key": "fraudlake.managed", "value": "true" }],
                });
                match self
                    .call_or_refusal(Method::POST, "registered-models/create", Some(&body))
                    .await?
                {
                    Ok(v) => v,
                    Err(r) if r.code == "RESOURCE_ALREADY_EXISTS" => {
                        self.call(
                            Method::GET,
                            "registered-models/get",
                            Some(&json!({ "name": name })),
                        )
                        .await?
                    }
                    Err(r) => return Err(self.refused("registered-models/create", &r)),
                }
            }
            Err(r) => return Err(self.refused("registered-models/get", &r)),
        };
        let aliases = model["registered_model"]["aliases"].clone();
        if aliases.is_null() {
            return Ok(Vec::new());
        }
        serde_json::from_value(aliases).map_err(|e| self.nonsense(&format!("aliases: {e}")))
    }

    /// Every version of a registered model.
    pub async fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = json!({
                "filter": format!("name = {}", quote(name)),
                "max_results": 1000,
            });
            if let Some(t) = &token {
                query["page_token"] = json!(t);
            }
            let page = self
                .call(Method::GET, "model-versions/search", Some(&query))
                .await?;
            out.extend(
                parse_list::<ModelVersion>(&page, "model_versions")
                    .map_err(|e| self.nonsense(&e))?,
            );
            token = next_token(&page);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Registers the model logged under `source` (a location inside the run's artifacts).
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        description: &str,
        tags: &[(String, String)],
    ) -> Result<ModelVersion> {
        let body = json!({
            "name": name,
            "source": source,
            "run_id": run_id,
            "description": description,
            "tags": pairs(tags),
        });
        let v = self
            .call(Method::POST, "model-versions/create", Some(&body))
            .await?;
        serde_json::from_value(v["model_version"].clone())
            .map_err(|e| self.nonsense(&format!("a model version: {e}")))
    }

    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        let body = json!({ "name": name, "version": version, "key": key, "value": value });
        self.call(Method::POST, "model-versions/set-tag", Some(&body))
            .await?;
        Ok(())
    }

    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        let body = json!({ "name": name, "alias": alias, "version": version });
        self.call(Method::POST, "registered-models/alias", Some(&body))
            .await?;
        Ok(())
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let body = json!({ "name": name, "alias": alias });
        self.call(Method::DELETE, "registered-models/alias", Some(&body))
            .await?;
        Ok(())
    }
}

/// `mlflow-artifacts:/1/abc/artifacts` (or `mlflow-artifacts://host:port/1/abc/artifacts`) ->
/// `1/abc/artifacts`, the path the proxied artifact API takes; `None` for any other store.
pub fn proxied_artifact_path(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        // `//host:port/path`: the host is the tracking server itself.
        Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    let path = path.trim_matches('/');
    (!path.is_empty()).then(|| path.to_string())
}

/// A string literal of MLflow's search filter syntax.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn pairs(kv: &[(String, String)]) -> Vec<Value> {
    kv.iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect()
}

/// A GET's JSON body as query pairs (strings and numbers; MLflow's GET endpoints take no
/// nested values).
fn query_pairs(body: &Value) -> Vec<(String, String)> {
    body.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn parse_list<T: serde::de::DeserializeOwned>(
    page: &Value,
    key: &str,
) -> std::result::Result<Vec<T>, String> {
    match &page[key] {
        Value::Null => Ok(Vec::new()),
        v => serde_json::from_value(v.clone()).map_err(|e| format!("unreadable {key}: {e}")),
    }
}

fn next_token(page: &Value) -> Option<String> {
    page["next_page_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// An error with its sources (reqwest's own message omits the cause: "connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn artifact_uris_of_the_proxied_store_map_to_api_paths() {
        assert_eq!(
            proxied_artifact_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_artifact_path("mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied_artifact_path("s3://bucket/1/abc/artifacts"), None);
        assert_eq!(proxied_artifact_path("/tmp/mlruns/1/abc/artifacts"), None);
        assert_eq!(proxied_artifact_path("mlflow-artifacts:/"), None);
    }

    #[test]
    fn only_http_tracking_uris_are_taken() {
        for bad in [
            "file:///tmp/mlruns",
            "databricks",
            "http://",
            "localhost:5000",
            "",
        ] {
            let e = Client::new(bad, Auth::None).err().expect(bad);
            assert!(e.is_bad_input(), "{bad}: {e}");
        }
        let c = Client::new("http://127.0.0.1:5000/", Auth::None).expect("ok");
        assert_eq!(c.base(), "http://127.0.0.1:5000");
    }

    #[test]
    fn quotes_are_escaped_in_filters() {
        assert_eq!(quote("fraud-detector"), "'fraud-detector'");
        assert_eq!(quote("it's"), "'it\\'s'");
    }

    #[test]
    fn secrets_are_not_printed() {
        let shown = format!(
            "{:?} {:?}",
            Auth::Bearer("s3cr3t".into()),
            Auth::Basic("ann".into(), "pa55".into())
        );
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("pa55"),
            "{shown}"
        );
    }

    /// A one-request HTTP server: returns the request's head and answers `status` with the
    /// JSON `body`.
    fn one_shot(status: &str, body: &str) -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = s.write_all(answer.as_bytes());
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        (port, handle)
    }

    #[tokio::test]
    async fn credentials_go_in_the_authorization_header_and_refusals_are_explained() {
        let (port, seen) = one_shot(
            "401 Unauthorized",
            r#"{"error_code":"UNAUTHENTICATED","message":"bad credentials"}"#,
        );
        let c = Client::new(
            &format!("http://127.0.0.1:{port}"),
            Auth::Basic("ann".into(), "pa55".into()),
        )
        .expect("client");
        let e = c.experiment_id("fraudlake").await.expect_err("refused");
        let head = seen.join().expect("server");
        // base64("ann:pa55")
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: basic yw5uonbhntu="),
            "{head}"
        );
        let text = e.to_string();
        assert!(
            text.contains("HTTP 401") && text.contains("MLFLOW_TRACKING_TOKEN"),
            "{text}"
        );
        assert!(!e.is_bad_input());

        let (port, seen) = one_shot(
            "200 OK",
            r#"{"experiment":{"experiment_id":"7","name":"x"}}"#,
        );
        let c = Client::new(
            &format!("http://127.0.0.1:{port}"),
            Auth::Bearer("t0k".into()),
        )
        .expect("client");
        assert_eq!(c.experiment_id("fraud lake").await.expect("id"), "7");
        let head = seen.join().expect("server");
        assert!(
            head.starts_with(
                "GET /api/2.0/mlflow/experiments/get-by-name?experiment_name=fraud+lake "
            ),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer t0k"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_named() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), Auth::None).expect("client");
        let e = c.experiment_id("fraudlake").await.expect_err("down");
        let text = e.to_string();
        assert!(text.contains("cannot reach"), "{text}");
        assert!(text.contains(&port.to_string()), "{text}");
    }
}
