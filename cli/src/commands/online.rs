//! `fraudlake online bootstrap|stats`: the shared online store (Redis) that several `serve
//! --online-store redis://...` replicas score from. Bootstrap loads the lake's lookback once
//! (replicas then start in a second); stats shows what the store holds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use fraudlake_features::online::redis_store::RedisStore;
use fraudlake_features::{compile, FeatureSet, OnlineEngine};

use crate::config::Settings;
use crate::output::{print_rows, Format};

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The store: redis://[user:password@]host:port/db ([online] store in fraudlake.toml).
    #[arg(long, env = "FRAUDLAKE_ONLINE_STORE", value_name = "URL")]
    online_store: Option<String>,
    /// The feature SQL the replicas serve (default sql/features.sql, env
    /// FRAUDLAKE_FEATURES_SQL): the store keeps one state per feature set.
    #[arg(long = "sql")]
    sql: Option<PathBuf>,
    /// The replicas' --max-event-skew (history is kept that much longer than the windows
    /// need); default [event_time] max_skew, else 1h.
    #[arg(long, env = "FRAUDLAKE_MAX_EVENT_SKEW", value_parser = super::serve::parse_span)]
    max_event_skew: Option<Duration>,
    #[arg(long, visible_alias = "output", value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Subcommand)]
pub enum OnlineCommand {
    /// Load the lake's lookback (the windows' reach plus the event skew, labels as known now)
    /// into the store, replacing what it held for this feature set. Replicas answer 503
    /// while it runs and serve the new state when it ends.
    Bootstrap(StoreArgs),
    /// Entities, events, transaction records and memory of the store.
    Stats(StoreArgs),
}

async fn connect(a: &StoreArgs, settings: &Settings) -> Result<(RedisStore, OnlineEngine)> {
    let Some(url) = super::serve::online_store(a.online_store.clone(), settings)? else {
        anyhow::bail!(
            "no shared store: give --online-store redis://host:port/db (or FRAUDLAKE_ONLINE_STORE, \
             or [online] store in fraudlake.toml); the in-memory store lives inside `serve`"
        );
    };
    let path = a
        .sql
        .clone()
        .unwrap_or_else(|| settings.features_sql.clone());
    let plan = Arc::new(compile(&FeatureSet::load(&path)?).await?);
    let mut engine = OnlineEngine::new(plan);
    engine.set_event_time_rules(super::serve::event_time_rules_from(
        a.max_event_skew,
        None,
        None,
        settings,
    )?);
    let store = RedisStore::connect(&url, &engine).await?;
    Ok((store, engine))
}

pub async fn run(cmd: OnlineCommand, settings: &Settings) -> Result<u8> {
    match cmd {
        OnlineCommand::Bootstrap(a) => {
            let (store, engine) = connect(&a, settings).await?;
            let lake = settings.open_lake()?;
            tracing::info!(store = store.shown(), lake = %lake.root(), "bootstrapping the online store");
            let report = store.bootstrap(&engine, &lake).await?;
            print_rows(&[report], a.format)?;
        }
        OnlineCommand::Stats(a) => {
            let (store, _) = connect(&a, settings).await?;
            let stats = store.stats().await?;
            print_rows(&[stats], a.format)?;
        }
    }
    Ok(0)
}
