//! Hot reload of the champion: a poller watches the registry's champion alias, and
//! `POST /admin/reload` asks at once. The new version is loaded and validated off to the side
//! (artifact sha256, trees, feature set) and swapped in with one atomic store; a version
//! trained on another feature SQL is refused with a clear log and the old model keeps serving.
//! The same poll re-reads the API keys, so revocations take effect within one interval.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use fraudlake_model::registry::CHAMPION;

use super::state::{Scorer, SharedState};

/// Loads the champion if it changed. Returns (swapped, what happened).
pub async fn reload(state: &SharedState) -> Result<(bool, String)> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let current = state.scorer.load_full();
    let champion = state.registry.aliases().await?.champion;
    if champion == Some(current.number()) {
        state
            .metrics
            .reloads
            .with_label_values(&["unchanged"])
            .inc();
        return Ok((
            false,
            format!("version {} is already being served", current.number()),
        ));
    }
    match Scorer::load(&state.registry, CHAMPION, &state.plan).await {
        Ok(next) => {
            let detail = format!(
                "now serving version {} (was {})",
                next.number(),
                current.number()
            );
            state.scorer.store(Arc::new(next));
            state.publish_model(Some(&current));
            state.metrics.reloads.with_label_values(&["swapped"]).inc();
            tracing::info!("{detail}");
            Ok((true, detail))
        }
        Err(e) => {
            state.metrics.reloads.with_label_values(&["refused"]).inc();
            tracing::error!(error = %e, serving = current.number(), "champion not loaded; the current model keeps serving");
            Err(e)
        }
    }
}

/// Reads the latest drift report from the lake into the drift gauges.
/// Without a drift source (`ServeConfig::drift`), the gauges stay empty.
pub async fn refresh_drift(state: &SharedState) -> Result<()> {
    let Some(source) = &state.drift else {
        return Ok(());
    };
    if let Some(latest) = source.latest(state.registry.lake()).await? {
        state.metrics.drift.publish(&latest);
    }
    Ok(())
}

/// Polls the registry (and the drift history) every `every` until the server stops. The
/// first drift read happened in `build_state`, before the server reported ready.
pub async fn poll(state: SharedState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = reload(&state).await {
            tracing::debug!(error = %e, "reload poll");
        }
        if let Err(e) = refresh_drift(&state).await {
            tracing::debug!(error = %e, "drift poll");
        }
        // Keys too: a revoked key stops working within one poll interval.
        if let Err(e) = state.auth.refresh(state.registry.lake()).await {
            tracing::warn!(error = %e, "cannot re-read the API keys; the previous keys stay in force");
        }
    }
}
