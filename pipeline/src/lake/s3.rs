//! `s3://` (and `s3a://`) lakes, without deltalake's `s3` feature.
//!
//! Why not that feature: it brings deltalake-aws and with it the AWS SDK (STS, DynamoDB, ...),
//! a large extra build on this project's 2-core machines, for a DynamoDB lock S3 no longer
//! needs. object_store's own S3 client is already compiled here (another dependency turns on
//! object_store's `aws` feature), so this module registers it with deltalake for the `s3` and
//! `s3a` schemes, at no build cost.
//!
//! Why concurrent writers are safe without a lock: deltalake's default log store writes each
//! commit (`_delta_log/<version>.json`) with `PutMode::Create`, which object_store's S3 client
//! sends as a conditional PUT (`If-None-Match: *`; `S3ConditionalPut::ETagMatch` is its
//! default). The store answers 412 to all writers of a version but one, and deltalake retries
//! the others on the next version. AWS S3 (since 2024), SeaweedFS, MinIO and R2 honour it; a
//! store that ignored the header would let two writers overwrite one version.
//!
//! What is supported: the `AWS_*` environment variables object_store reads (endpoint, region,
//! static keys and session token, web identity, ECS and instance credentials,
//! `AWS_ALLOW_HTTP`, ...), overridden by the same keys in `[storage_options]` (any case, the
//! `aws_` prefix optional: every `AmazonS3ConfigKey`); `max_retries`, `retry_timeout` and
//! `backoff_config.*`; and deltalake's own storage options (IO runtime, `max_concurrency`,
//! `certificate_path`). Any other key is refused by name rather than ignored, in particular
//! deltalake-aws's locking options (`AWS_S3_LOCKING_PROVIDER`, `AWS_S3_ALLOW_UNSAFE_RENAME`,
//! DynamoDB): fraudlake never needs a lock. Requests time out (5 s to connect, 30 s per
//! request) and retry a bounded number of times, so an unreachable endpoint is an error
//! within seconds, not a hang. Credentials never appear in logs or messages.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use deltalake::logstore::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use deltalake::logstore::object_store::client::HttpError;
use deltalake::logstore::object_store::limit::LimitStore;
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::object_store::{
    BackoffConfig, ClientOptions, Error as ObjectStoreError, ObjectStore, ObjectStoreScheme,
    RetryConfig,
};
use deltalake::logstore::{
    client_options_from_certificate, default_logstore, logstore_factories, object_store_factories,
    DeltaIOStorageBackend, LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef,
    StorageConfig,
};
use deltalake::{DeltaResult, DeltaTableError};
use url::Url;

use crate::error::{Error, Result};

/// The URL schemes served here.
pub const SCHEMES: &[&str] = &["s3", "s3a"];

/// Time to open a connection, and for a whole request (object_store's defaults, stated here
/// because the "fails within seconds" promise depends on them).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries of a failed request, and the time after which no retry starts: an unreachable
/// endpoint fails after about `RETRY_TIMEOUT + CONNECT_TIMEOUT` at worst (object_store's
/// defaults, 10 retries within 3 minutes, look like a hang to a person at a terminal).
const MAX_RETRIES: usize = 10;
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);

/// deltalake's names for object_store's retry settings. deltalake itself reads them only with
/// its `cloud` feature (off in this build), so they reach the factory unparsed and are read here.
const RETRY_KEYS: &[&str] = &[
    "max_retries",
    "retry_timeout",
    "backoff_config.init_backoff",
    "backoff_config.max_backoff",
    "backoff_config.base",
];

/// Registers the S3 object store and log store factories with deltalake, once per process.
/// [`crate::Lake::open`] calls it; anything else that opens `s3://` tables without a `Lake`
/// must call it first.
pub fn register() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let stores: Arc<dyn ObjectStoreFactory> = Arc::new(S3ObjectStoreFactory);
        let logs: Arc<dyn LogStoreFactory> = Arc::new(S3LogStoreFactory);
        for scheme in SCHEMES {
            // deltalake looks factories up by `<scheme>://`.
            if let Ok(url) = Url::parse(&format!("{scheme}://")) {
                object_store_factories().insert(url.clone(), stores.clone());
                logstore_factories().insert(url, logs.clone());
            }
        }
    });
}

/// Whether `url` is a lake URL this module serves.
pub fn is_s3(url: &Url) -> bool {
    SCHEMES.contains(&url.scheme())
}

/// Checks the shape of an `s3://BUCKET/PREFIX` lake URL (no request is made).
pub fn check_url(url: &Url) -> Result<()> {
    bucket_of(url).map(|_| ()).map_err(Error::invalid)
}

/// The bucket of `s3://BUCKET/PREFIX`, or why the URL cannot be a lake root. Messages never
/// repeat a URL that carries credentials.
fn bucket_of(url: &Url) -> std::result::Result<&str, String> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "the {}:// lake URL carries credentials: remove them from the URL and set \
             AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or [storage_options]) instead",
            url.scheme()
        ));
    }
    if url.cannot_be_a_base() {
        return Err(format!(
            "'{url}' is not a lake URL: write {}://BUCKET/PREFIX",
            url.scheme()
        ));
    }
    let bucket = url.host_str().unwrap_or_default();
    if bucket.is_empty() {
        return Err(format!(
            "'{url}' names no bucket: write {}://BUCKET/PREFIX",
            url.scheme()
        ));
    }
    if url.port().is_some() {
        return Err(format!(
            "'{url}': a lake URL takes no port; set the server with AWS_ENDPOINT_URL \
             (e.g. http://127.0.0.1:8333) and write {}://{bucket}/PREFIX",
            url.scheme()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "'{url}': a lake URL takes no query or fragment: write {}://{bucket}/PREFIX",
            url.scheme()
        ));
    }
    Ok(bucket)
}

/// The storage key `url` points at inside its bucket (what deltalake's prefix wrapping uses).
fn path_of(url: &Url) -> std::result::Result<Path, String> {
    ObjectStoreScheme::parse(url)
        .map(|(_, path)| path)
        .map_err(|e| format!("'{url}': {e}"))
}

/// object_store's S3 client for `url`: bounded timeouts and retries, then the environment's
/// `AWS_*` variables (what `AmazonS3Builder::from_env` reads), then the lake's storage options,
/// then the bucket of the URL. Errors name the offending key, never a value that could be a
/// secret.
fn s3_builder(url: &Url, config: &StorageConfig) -> std::result::Result<AmazonS3Builder, String> {
    let bucket = bucket_of(url)?;
    // `with_client_options` replaces every client setting at once, so the base client (with a
    // custom root certificate if deltalake's `certificate_path` is set) comes first; the
    // environment and the options below then change one setting at a time.
    let certificate = config
        .certificate
        .as_ref()
        .and_then(|c| c.certificate_path.as_deref());
    let client = match certificate {
        Some(path) => client_options_from_certificate(path).map_err(|e| e.to_string())?,
        None => ClientOptions::new(),
    }
    .with_connect_timeout(CONNECT_TIMEOUT)
    .with_timeout(REQUEST_TIMEOUT);
    let mut builder = AmazonS3Builder::new()
        .with_client_options(client)
        .with_retry(retry_config(&config.unknown_properties)?);
    // The environment, leniently: unrelated AWS_* variables (AWS_PROFILE, ...) are common.
    for (key, value) in std::env::vars_os() {
        if let (Some(key), Some(value)) = (key.to_str(), value.to_str()) {
            if key.starts_with("AWS_") {
                if let Ok(key) = AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()) {
                    builder = builder.with_config(key, value);
                }
            }
        }
    }
    // The lake's options, strictly: a key that does nothing is a mistake to report. Keys that
    // deltalake parsed itself (runtime, limit, certificate) are not among `unknown_properties`.
    let options: BTreeMap<&String, &String> = config.unknown_properties.iter().collect();
    for (key, value) in options {
        let lower = key.to_ascii_lowercase();
        if RETRY_KEYS.contains(&lower.as_str()) {
            continue;
        }
        match AmazonS3ConfigKey::from_str(&lower) {
            Ok(AmazonS3ConfigKey::Bucket) if value.as_str() != bucket => {
                return Err(format!(
                    "storage option '{key}' names bucket '{value}' but the lake URL names \
                     '{bucket}': the bucket comes from the URL, drop the option"
                ));
            }
            Ok(config_key) => builder = builder.with_config(config_key, value.as_str()),
            Err(_) => return Err(unsupported(key)),
        }
    }
    if let Some(mode) = builder.get_config_value(&AmazonS3ConfigKey::ConditionalPut) {
        if mode.trim() != "etag" {
            return Err(format!(
                "aws_conditional_put = '{mode}': fraudlake commits every table version with a \
                 conditional put, so it must stay 'etag' (the default)"
            ));
        }
    }
    Ok(builder.with_bucket_name(bucket))
}

/// Why a storage option key is refused.
fn unsupported(key: &str) -> String {
    let upper = key.to_ascii_uppercase();
    if upper.contains("LOCKING_PROVIDER")
        || upper.contains("DYNAMO")
        || upper.contains("ALLOW_UNSAFE_RENAME")
    {
        format!(
            "storage option '{key}' configures deltalake-aws's commit lock, which fraudlake does \
             not use: it commits with S3 conditional puts (If-None-Match), safe for concurrent \
             writers without a lock; remove the option"
        )
    } else {
        format!(
            "storage option '{key}' is not an S3 setting fraudlake knows (object_store's \
             AmazonS3ConfigKey names such as AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP, or \
             max_retries, retry_timeout); remove or correct it"
        )
    }
}

/// Bounded retries, adjustable with deltalake's key names.
fn retry_config(options: &HashMap<String, String>) -> std::result::Result<RetryConfig, String> {
    let mut retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    };
    for (key, value) in options {
        let duration = || {
            parse_duration(value).ok_or_else(|| {
                format!("storage option {key} = '{value}' is not a duration (e.g. 15s, 500ms)")
            })
        };
        match key.to_ascii_lowercase().as_str() {
            "max_retries" => {
                retry.max_retries = value.trim().parse().map_err(|_| {
                    format!("storage option {key} = '{value}' is not a whole number")
                })?
            }
            "retry_timeout" => retry.retry_timeout = duration()?,
            "backoff_config.init_backoff" => retry.backoff.init_backoff = duration()?,
            "backoff_config.max_backoff" => retry.backoff.max_backoff = duration()?,
            "backoff_config.base" => {
                retry.backoff.base = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|b| b.is_finite() && *b >= 1.0)
                    .ok_or_else(|| {
                        format!("storage option {key} = '{value}' is not a number >= 1")
                    })?
            }
            _ => {}
        }
    }
    Ok(retry)
}

/// `15s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Builds object_store's S3 client for deltalake: a store at the bucket root and the URL's
/// path inside it (deltalake adds the prefix itself, as for `file://`).
#[derive(Debug, Default)]
struct S3ObjectStoreFactory;

impl ObjectStoreFactory for S3ObjectStoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let builder = s3_builder(url, config).map_err(DeltaTableError::Generic)?;
        let path = path_of(url).map_err(DeltaTableError::Generic)?;
        let mut store: ObjectStoreRef = Arc::new(builder.build()?);
        // deltalake's own options, applied as its built-in factories do.
        if let Some(limit) = config.limit.as_ref().and_then(|l| l.max_concurrency) {
            store = Arc::new(LimitStore::new(store, limit)) as ObjectStoreRef;
        }
        if let Some(runtime) = &config.runtime {
            store = Arc::new(DeltaIOStorageBackend::new(store, runtime.clone())) as ObjectStoreRef;
        }
        tracing::debug!(%url, "S3 store ready (object_store's client, conditional-put commits)");
        Ok((store, path))
    }
}

/// deltalake's default log store: commits with `PutMode::Create` (see the module comment).
#[derive(Debug, Default)]
struct S3LogStoreFactory;

impl LogStoreFactory for S3LogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// One listing of the lake root, before the lake is first used: a wrong endpoint, a missing
/// bucket or refused credentials become one clear user error (exit 2) naming what to fix,
/// instead of a storage error from deep inside the first table operation.
pub(crate) async fn probe(root: &Url, options: &HashMap<String, String>) -> Result<()> {
    let config = StorageConfig::parse_options(options.clone())
        .map_err(|e| Error::invalid(format!("storage options: {e}")))?;
    let builder = s3_builder(root, &config).map_err(Error::invalid)?;
    let prefix = path_of(root).map_err(Error::invalid)?;
    let endpoint = endpoint_of(&builder);
    let has_keys = builder
        .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
        .is_some();
    let store = builder
        .build()
        .map_err(|e| Error::invalid(format!("S3 lake {root}: {e}")))?;
    let prefix = (!prefix.is_root()).then_some(prefix);
    match store.list_with_delimiter(prefix.as_ref()).await {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::invalid(explain(&e, root, &endpoint, has_keys))),
    }
}

/// The endpoint, for messages: the configured one without any user:password, or AWS itself.
fn endpoint_of(builder: &AmazonS3Builder) -> String {
    let configured = builder
        .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
    match configured {
        Some(endpoint) => match Url::parse(&endpoint) {
            Ok(mut url) => {
                let _ = url.set_password(None);
                let _ = url.set_username("");
                url.to_string()
            }
            Err(_) => endpoint,
        },
        None => {
            let region = builder
                .get_config_value(&AmazonS3ConfigKey::Region)
                .unwrap_or_else(|| "us-east-1".to_string());
            format!("AWS S3 ({region}; set AWS_ENDPOINT_URL for another server)")
        }
    }
}

/// A failed listing, in words: network, missing bucket, credentials, or else the S3 error code.
/// Never the response body (it can echo the access key id and the signed request).
fn explain(err: &ObjectStoreError, root: &Url, endpoint: &str, has_keys: bool) -> String {
    let bucket = root.host_str().unwrap_or_default();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            let hint = if has_keys {
                ""
            } else {
                " (no AWS_ACCESS_KEY_ID is set, so object_store also tried the instance-metadata \
                 credentials)"
            };
            return format!(
                "cannot reach the S3 endpoint {endpoint} for lake {root}: {:?} error, \
                 {http}{hint}; check AWS_ENDPOINT_URL and that the server is up",
                http.kind()
            );
        }
        source = e.source();
    }
    let text = err.to_string();
    let code = between(&text, "<Code>", "</Code>");
    let status = text
        .split_once("status code: ")
        .and_then(|(_, rest)| rest.get(..3))
        .and_then(|s| s.parse::<u16>().ok());
    let what = match (status, code) {
        (Some(s), Some(c)) => format!("HTTP {s} {c}"),
        (Some(s), None) => format!("HTTP {s}"),
        (None, Some(c)) => c.to_string(),
        (None, None) => String::new(),
    };
    let refused = matches!(status, Some(401 | 403))
        || matches!(
            code,
            Some(
                "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "InvalidToken"
                    | "ExpiredToken"
            )
        );
    if code == Some("NoSuchBucket") || (status == Some(404) && code.is_none()) {
        format!(
            "the bucket '{bucket}' does not exist at {endpoint} ({what}): create it, or fix the \
             lake URL {root}"
        )
    } else if refused {
        format!(
            "S3 at {endpoint} refused access to bucket '{bucket}' ({what}): check \
             AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and the bucket's \
             permissions"
        )
    } else if !what.is_empty() {
        format!("cannot list lake {root} at {endpoint}: {what}")
    } else {
        format!("cannot list lake {root} at {endpoint}: {text}")
    }
}

/// The text between `open` and `close`, e.g. the `<Code>` of an S3 error document.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> StorageConfig {
        StorageConfig::parse_options(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("options")
    }

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn lake_urls_need_a_bucket_and_nothing_else() {
        assert_eq!(bucket_of(&url("s3://bucket/lake/")), Ok("bucket"));
        assert_eq!(bucket_of(&url("s3a://bucket")), Ok("bucket"));
        assert!(bucket_of(&url("s3:///lake")).is_err_and(|e| e.contains("no bucket")));
        assert!(bucket_of(&url("s3:bucket/lake")).is_err());
        assert!(
            bucket_of(&url("s3://bucket:9000/lake")).is_err_and(|e| e.contains("AWS_ENDPOINT_URL"))
        );
        let with_secret = bucket_of(&url("s3://AKIA:hunter2@bucket/lake")).expect_err("refused");
        assert!(!with_secret.contains("hunter2"), "{with_secret}");
    }

    #[test]
    fn options_are_applied_and_unknown_ones_refused_by_name() {
        let lake = url("s3://bucket/lake/");
        let b = s3_builder(
            &lake,
            &config(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:8333"),
                ("aws_region", "eu-west-3"),
                ("AWS_ALLOW_HTTP", "true"),
                ("max_retries", "1"),
            ]),
        )
        .expect("builder");
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:8333")
        );
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Region).as_deref(),
            Some("eu-west-3")
        );
        assert_eq!(
            b.get_config_value(&AmazonS3ConfigKey::Bucket).as_deref(),
            Some("bucket")
        );
        for key in ["AWS_S3_LOCKING_PROVIDER", "aws_s3_allow_unsafe_rename"] {
            let err = s3_builder(&lake, &config(&[(key, "x")])).expect_err(key);
            assert!(err.contains(key) && err.contains("lock"), "{err}");
        }
        let err =
            s3_builder(&lake, &config(&[("AWS_ENDPIONT_URL", "http://x")])).expect_err("typo");
        assert!(err.contains("AWS_ENDPIONT_URL"), "{err}");
        let err =
            s3_builder(&lake, &config(&[("aws_conditional_put", "disabled")])).expect_err("off");
        assert!(err.contains("conditional put"), "{err}");
        let err = s3_builder(&lake, &config(&[("retry_timeout", "soon")])).expect_err("bad");
        assert!(err.contains("retry_timeout"), "{err}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn s3_error_codes_are_found() {
        let body = "Server returned non-2xx status code: 404 Not Found: \
                    <?xml?><Error><Code>NoSuchBucket</Code></Error>";
        assert_eq!(between(body, "<Code>", "</Code>"), Some("NoSuchBucket"));
        assert_eq!(between("no code", "<Code>", "</Code>"), None);
    }
}
