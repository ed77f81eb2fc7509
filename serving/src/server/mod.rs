//! The scoring server (axum): `POST /score` with live features from the online engine and the
//! champion model (during a rollout also a canary and a shadow), `POST /score/batch`,
//! `POST /labels`, health and readiness, Prometheus metrics, the current models,
//! `POST /admin/reload`, and an OpenAPI document with an offline API page. [`serve`] wires it:
//! load the models, rebuild online state from the lake, start the lake writer and the reload
//! poller, serve until SIGINT/SIGTERM, then drain and commit.

pub mod api;
pub mod auth;
pub mod drift;
pub mod engines;
pub mod error;
pub mod handlers;
pub mod json;
pub mod metrics;
pub mod models;
pub mod provenance;
pub mod reload;
pub mod rollout;
pub mod scoring_log;
pub mod shared;
pub mod state;
pub mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use fraudlake_features::online::{history, EventTimeRules};
use fraudlake_features::{FeaturePlan, OnlineEngine};
use fraudlake_model::registry::Registry;
use fraudlake_pipeline::Lake;
use parking_lot::Mutex;
use utoipa::OpenApi;

use self::metrics::Metrics;
use self::state::{AppState, Limits, SharedState, Thresholds};
use self::writer::{LakeWriter, WriterConfig};

#[derive(OpenApi)]
#[openapi(
    info(title = "fraudlake scoring API", description = "Real-time fraud scoring with features computed from the same SQL as training."),
    paths(handlers::score, handlers::score_batch, handlers::labels, handlers::health, handlers::ready,
          handlers::metrics, handlers::current_model, handlers::admin_reload),
    components(schemas(api::ScoreRequest, api::ScoreResponse, api::Decision, api::FeatureContribution,
                       api::TimeFlag, api::BatchRequest, api::BatchResponse, api::LabelRequest, api::LabelResponse,
                       api::Decider, api::ModelInfo, api::RolloutModel, api::ReloadResponse, api::Health,
                       error::ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Everything `fraudlake serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub review_threshold: f64,
    pub decline_threshold: f64,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub max_concurrency: usize,
    pub flush_rows: usize,
    pub flush_interval: Duration,
    pub reload_interval: Duration,
    /// --max-event-skew, --event-skew-policy, --watermark-quorum.
    pub event_time: EventTimeRules,
    /// Serve without API keys (every caller allowed); loopback addresses only.
    pub insecure_no_auth: bool,
    /// Which label counts when sources disagree (POST /labels).
    pub label_policy: fraudlake_pipeline::labels::LabelPolicy,
    /// `--online-store`: `None` keeps the state in this process; `redis://...` shares it with
    /// other replicas.
    pub online_store: Option<String>,
    /// `--on-store-failure open`: score without history (flagged `degraded`) while the shared
    /// store fails, instead of answering 503.
    pub store_fail_open: bool,
    /// Where the drift gauges come from; `None` leaves them empty (the stream consumer, which
    /// serves no alerts).
    pub drift: Option<Arc<dyn drift::DriftVerdicts>>,
}

impl ServeConfig {
    pub fn validate(&self) -> Result<()> {
        let t = (self.review_threshold, self.decline_threshold);
        if !(0.0..=1.0).contains(&t.0) || !(0.0..=1.0).contains(&t.1) || t.0 > t.1 {
            return Err(Error::invalid(format!(
                "thresholds must satisfy 0 <= review ({}) <= decline ({}) <= 1",
                t.0, t.1
            )));
        }
        if self.max_batch == 0 || self.max_concurrency == 0 || self.flush_rows == 0 {
            return Err(Error::invalid(
                "--max-batch, --max-concurrency and --flush-rows must be at least 1",
            ));
        }
        if self.event_time.max_skew_ns <= 0 || self.event_time.quorum == 0 {
            return Err(Error::invalid(
                "--max-event-skew must be positive and --watermark-quorum at least 1",
            ));
        }
        if self.insecure_no_auth && !auth::insecure_allowed(&self.addr) {
            return Err(Error::invalid(format!(
                "--insecure-no-auth is refused on {}: it is for loopback addresses only \
                 (127.0.0.1, ::1); create a key with `fraudlake keys create` instead",
                self.addr
            )));
        }
        Ok(())
    }
}

/// Builds the shared state: champion (and canary, shadow) loaded and checked, online state
/// rebuilt from the lake, the latest drift verdict in the gauges. Ready only when all of it is.
pub async fn build_state(
    lake: &Lake,
    plan: Arc<FeaturePlan>,
    config: &ServeConfig,
    scoring_log: Option<Arc<dyn scoring_log::ScoringLog>>,
) -> Result<(SharedState, std::thread::JoinHandle<()>)> {
    config.validate()?;
    // Before the slow state rebuild: a server without keys fails at once.
    let auth = auth::Auth::load(lake, config.insecure_no_auth).await?;
    let registry = Registry::new(lake.clone());
    let metrics = Arc::new(Metrics::new()?);
    let refusal = if config.online_store.is_some() {
        Some(
            "with the shared online store, the state of another feature set would need its own \
             keyspace and a bootstrap shared by the replicas (not built): serve it from a server \
             started with its feature SQL, or retrain it on the server's",
        )
    } else if scoring_log.is_some() {
        Some(
            "with a scoring log, rows reach the lake through its consumer, so the catch-up of a \
             second online engine could not know the lake holds everything scored before it \
             (not built)",
        )
    } else {
        None
    };
    let engines = engines::Engines::new(refusal);
    let loader = reload::Loader {
        registry: &registry,
        plan: &plan,
        metrics: &metrics,
        engines: &engines,
    };
    let mut models = loader.initial().await?;
    let started = Instant::now();
    let mut engine = OnlineEngine::new(plan.clone());
    engine.set_event_time_rules(config.event_time);
    let shared = match &config.online_store {
        None => {
            let replayed = history::bootstrap(&mut engine, lake).await?;
            tracing::info!(
                transactions = replayed,
                entities = engine.entities(),
                seconds = started.elapsed().as_secs_f64(),
                "online state rebuilt from the lake"
            );
            metrics.entities.set(engine.entities() as i64);
            // A canary or shadow on another feature set: its engine from the same lake, before
            // any traffic (so nothing to catch up on), then the set again with it.
            if engines.build_now(lake, *engine.event_time_rules()).await {
                let aliases = registry.aliases().await?;
                models = loader
                    .rollout(models.champion.clone(), &aliases, Some(&models))
                    .await;
            }
            None
        }
        Some(url) => {
            let shared = shared::open(url, config.store_fail_open, &mut engine, lake).await?;
            metrics.store.up.set(1);
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "online state shared in {}",
                shared.store.shown()
            );
            Some(shared)
        }
    };
    tracing::info!("models loaded: {}", reload::describe(&models));
    metrics.engines.set(engines.count() as i64);
    let (writer, writer_thread) = LakeWriter::start(
        lake.clone(),
        WriterConfig {
            flush_rows: config.flush_rows,
            flush_interval: config.flush_interval,
            skip_existing: true,
        },
        metrics.clone(),
    )?;
    let state = Arc::new(AppState {
        engine: Mutex::new(engine),
        engines,
        shared,
        plan,
        models: ArcSwap::from_pointee(models),
        registry,
        writer,
        scoring_log,
        metrics,
        thresholds: Thresholds {
            review: config.review_threshold,
            decline: config.decline_threshold,
        },
        limits: Limits {
            max_batch: config.max_batch,
            max_body_bytes: config.max_body_bytes,
        },
        auth,
        labels: tokio::sync::Mutex::new(provenance::LabelBook::new(config.label_policy.clone())),
        reload_lock: tokio::sync::Mutex::new(()),
        drift: config.drift.clone(),
        ready: AtomicBool::new(false),
    });
    state.publish_models(None);
    // Every gauge an alert reads holds its true value from the first scrape: the drift verdict
    // is loaded before the server listens (a restart must not read `fraud_dataset_drift 0`
    // for a moment, which would resolve a firing drift alert and re-fire it).
    reload::refresh_drift(&state).await.map_err(|e| {
        Error::invalid(format!(
            "cannot read the latest drift report (drift_reports), so the drift gauges would be \
             wrong: {e}"
        ))
    })?;
    state.ready.store(true, Ordering::Release);
    Ok((state, writer_thread))
}

/// The router with every route, the error/metrics middleware and the protective limits.
pub fn router(state: SharedState, config: &ServeConfig) -> Router {
    use tower::ServiceBuilder;
    let limits = ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(
            |e: tower::BoxError| async move {
                if e.is::<tower::timeout::error::Elapsed>() {
                    error::ApiError::new(
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        "timeout",
                        "the request took too long",
                    )
                } else {
                    error::ApiError::internal(e.to_string())
                }
            },
        ))
        .layer(tower::timeout::TimeoutLayer::new(config.request_timeout))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            config.max_concurrency,
        ));
    Router::new()
        .route("/score", post(handlers::score))
        .route("/score/batch", post(handlers::score_batch))
        .route("/labels", post(handlers::labels))
        .route("/health", get(handlers::health))
        .route("/ready", get(handlers::ready))
        .route("/metrics", get(handlers::metrics))
        .route("/models/current", get(handlers::current_model))
        .route("/admin/reload", post(handlers::admin_reload))
        .route("/openapi.json", get(handlers::openapi))
        .route("/docs", get(handlers::docs))
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .layer(limits)
        .with_state(state)
}

/// Counts every answer in `fraud_requests_total{endpoint,status}` and errors by kind.
async fn count(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status();
    state
        .metrics
        .requests
        .with_label_values(&[endpoint.as_str(), status.as_str()])
        .inc();
    if let Some(kind) = response.extensions().get::<error::ErrorKind>() {
        state.metrics.errors.with_label_values(&[kind.0]).inc();
    } else if !status.is_success() {
        state
            .metrics
            .errors
            .with_label_values(&[status.as_str()])
            .inc();
    }
    response
}

/// Runs the server until SIGINT/SIGTERM (or `shutdown` resolves), then drains: in-flight
/// requests finish, the lake writer commits everything queued.
pub async fn serve(
    lake: Lake,
    plan: Arc<FeaturePlan>,
    config: ServeConfig,
    scoring_log: Option<Arc<dyn scoring_log::ScoringLog>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_start: impl FnOnce(&prometheus::Registry),
) -> Result<()> {
    let (state, _writer_thread) = build_state(&lake, plan, &config, scoring_log).await?;
    // Other parts of the process (the embedded DAG scheduler) publish on the same /metrics.
    on_start(state.metrics.registry());
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {}", config.addr), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the listening address", e))?;
    tracing::info!(addr = %local, model_version = state.models.load().champion.number(), "serving; API page at http://{local}/docs");
    let poller = tokio::spawn(reload::poll(state.clone(), config.reload_interval));
    let watcher = tokio::spawn(shared::watch(
        state.clone(),
        state.plan.clone(),
        config.flush_interval,
    ));
    let app = router(state.clone(), &config);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::io("the server failed", e));
    poller.abort();
    watcher.abort();
    state.ready.store(false, Ordering::Release);
    tracing::info!("draining the lake writer");
    state.writer.flush().await;
    tracing::info!("stopped");
    result
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
