//! The lake: a root location (local folder or object-store URL) holding one Delta table per
//! folder. Everything that touches table data goes through here and through deltalake /
//! object_store, never `std::fs`, so an `s3://` root works by configuration.

pub mod catalog;
pub mod maintenance;
pub mod s3;
pub mod tables;

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::execution::context::SessionContext;
use deltalake::datafusion::prelude::SessionConfig;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::StructType;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::error::{Error, Result};
pub use tables::TableDef;

/// A handle on the lake root. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    storage_options: HashMap<String, String>,
    /// Set once a remote lake's store has answered (see [`s3::probe`]); shared by clones.
    reachable: Arc<tokio::sync::OnceCell<()>>,
}

/// Pins one table of a SQL session to an older state (Delta time travel).
#[derive(Debug, Clone, PartialEq)]
pub enum TimeTravel {
    Version(u64),
    /// RFC 3339 timestamp: the table as it was at that instant.
    Timestamp(chrono::DateTime<chrono::Utc>),
}

impl Lake {
    /// Opens a lake at a local path or a URL (`file:///...`, `s3://bucket/prefix`, ...).
    /// A local root is created if missing; nothing else is written until a table is used.
    pub fn open(location: &str) -> Result<Lake> {
        s3::register();
        let location = location.trim();
        if location.is_empty() {
            return Err(Error::invalid("the lake location is empty"));
        }
        let root = match Url::parse(location) {
            // One-letter schemes are Windows drive letters, not URLs.
            Ok(url) if url.scheme().len() > 1 => {
                if url.scheme() == "file" {
                    let path = url.to_file_path().map_err(|_| {
                        Error::invalid(format!("'{location}' is not a valid file:// URL"))
                    })?;
                    local_root(&path)?
                } else {
                    if s3::is_s3(&url) {
                        s3::check_url(&url)?;
                    }
                    url
                }
            }
            _ => local_root(std::path::Path::new(location))?,
        };
        let mut root = root;
        if !root.path().ends_with('/') {
            let path = format!("{}/", root.path());
            root.set_path(&path);
        }
        Ok(Lake {
            root,
            storage_options: HashMap::new(),
            reachable: Arc::default(),
        })
    }

    /// Adds object-store options (credentials, endpoint, region) for remote lakes.
    pub fn with_storage_options(mut self, options: HashMap<String, String>) -> Self {
        self.storage_options = options;
        self.reachable = Arc::default();
        self
    }

    /// Before the first use of an `s3://` lake: one listing of its root, so that a wrong
    /// endpoint, a missing bucket or refused credentials are one clear user error (exit 2)
    /// rather than a storage error from inside a table operation. Once per `Lake` (and its
    /// clones); local lakes skip it.
    async fn ensure_reachable(&self) -> Result<()> {
        if !s3::is_s3(&self.root) {
            return Ok(());
        }
        self.reachable
            .get_or_try_init(|| s3::probe(&self.root, &self.storage_options))
            .await?;
        Ok(())
    }

    /// The lake root, always ending in `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Where table `name` lives.
    pub fn table_url(&self, name: &str) -> Result<Url> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::invalid(format!(
                "'{name}' is not a valid table name"
            )));
        }
        self.root
            .join(&format!("{name}/"))
            .map_err(|e| Error::invalid(format!("table '{name}': {e}")))
    }

    fn builder(&self, name: &str) -> Result<DeltaTableBuilder> {
        let url = self.table_url(name)?;
        Ok(DeltaTableBuilder::from_url(url)?.with_storage_options(self.storage_options.clone()))
    }

    /// Loads table `name` at its latest version, or `None` if it was never created.
    pub async fn load(&self, name: &str) -> Result<Option<DeltaTable>> {
        self.ensure_reachable().await?;
        let mut table = self.builder(name)?.build()?;
        // Ask the object store first: loading a missing table logs errors on the way.
        if !table.verify_deltatable_existence().await? {
            return Ok(None);
        }
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Loads table `name` as of a version or instant.
    pub async fn load_at(&self, name: &str, at: &TimeTravel) -> Result<DeltaTable> {
        self.ensure_reachable().await?;
        let mut table = self.builder(name)?.build()?;
        match at {
            TimeTravel::Version(v) => table.load_version(*v).await,
            TimeTravel::Timestamp(ts) => table.load_with_datetime(*ts).await,
        }
        .map_err(|e| Error::invalid(format!("table '{name}' at {at:?}: {e}")))?;
        Ok(table)
    }

    /// Loads a fixed-schema table, creating it (empty, version 0) on first use. Idempotent and
    /// safe against a concurrent creator: `SaveMode::Ignore` keeps whichever create won.
    pub async fn table(&self, def: &TableDef) -> Result<DeltaTable> {
        if let Some(t) = self.load(def.name).await? {
            return Ok(t);
        }
        self.create(def.name, &(def.schema)(), def.partition_by, def.description)
            .await
    }

    /// An object store rooted at `<lake>/<folder>/`, for files that are not tables (model
    /// artifacts, reports). Goes through the same object store as the tables, so an `s3://`
    /// lake keeps them in the bucket.
    pub fn files(&self, folder: &str) -> Result<deltalake::logstore::ObjectStoreRef> {
        let folder = folder.trim_matches('/');
        if folder.is_empty()
            || folder
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(Error::invalid(format!(
                "'{folder}' is not a plain lake folder"
            )));
        }
        let url = self
            .root
            .join(&format!("{folder}/"))
            .map_err(|e| Error::invalid(format!("bad lake folder '{folder}': {e}")))?;
        Ok(deltalake::logstore::store_for(
            &url,
            self.storage_options.clone(),
        )?)
    }

    /// The URL of `<lake>/<folder>/<name>`, for messages and for users.
    pub fn file_url(&self, folder: &str, name: &str) -> String {
        format!(
            "{}{}/{}",
            self.root,
            folder.trim_matches('/'),
            name.trim_start_matches('/')
        )
    }

    /// Creates table `name` with an Arrow schema (used for tables whose schema comes from SQL).
    pub async fn create(
        &self,
        name: &str,
        schema: &deltalake::arrow::datatypes::Schema,
        partition_by: &[&str],
        description: &str,
    ) -> Result<DeltaTable> {
        self.ensure_reachable().await?;
        let kernel: StructType = schema.try_into_kernel()?;
        let table = self.builder(name)?.build()?;
        table
            .create()
            .with_table_name(name)
            .with_comment(description)
            .with_columns(kernel.fields().cloned())
            .with_partition_columns(partition_by.iter().map(|s| s.to_string()))
            .with_save_mode(SaveMode::Ignore)
            .await?;
        // Reload: with Ignore, the table may have been created by someone else first.
        self.load(name)
            .await?
            .ok_or_else(|| Error::invalid(format!("table '{name}' could not be created")))
    }

    /// Appends `batches` to a fixed-schema table as exactly one Delta commit.
    pub async fn append(
        &self,
        def: &TableDef,
        batches: Vec<RecordBatch>,
        operation: &str,
    ) -> Result<DeltaTable> {
        let mut table = self.table(def).await?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(table);
        }
        // deltalake retries a lost version race itself, but every retry re-reads the winning
        // commits; with many writers at once (servers, ingests, DAG runs on one S3 lake) the
        // same writers keep losing. After `COMMIT_RETRIES` lost races the whole append starts
        // again after a random pause that grows each time, so the writers spread out (the
        // data files of the failed attempt stay unreferenced until `lake vacuum`).
        let mut pause_ms = 50.0;
        for attempt in 1..=APPEND_ATTEMPTS {
            let write = table
                .clone()
                .write(batches.clone())
                .with_save_mode(SaveMode::Append)
                .with_commit_properties(commit_note(operation));
            match evolve(def, write).await {
                Err(e) if attempt < APPEND_ATTEMPTS && lost_every_race(&e) => {
                    let wait = pause_ms * (0.5 + rand::random::<f64>());
                    tracing::warn!(
                        table = def.name,
                        attempt,
                        wait_ms = wait as u64,
                        "commit lost {COMMIT_RETRIES} version races to other writers; appending again"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
                    pause_ms = (pause_ms * 2.0).min(5_000.0);
                    table = self.table(def).await?;
                }
                other => return Ok(other?),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// A DataFusion session over the lake: every Delta table under the root is a table of
    /// its default schema, opened when a query names it ([`catalog::LakeSchema`]). `pins`
    /// time-travels some tables (e.g. `transactions` at version 3). Views defined above the
    /// lake, like the feature view `tx_labeled`, are not in it: see [`Lake::session_with`].
    pub async fn session(&self, pins: &[(String, TimeTravel)]) -> Result<SessionContext> {
        self.session_with(pins, &[]).await
    }

    /// [`Lake::session`] plus `views`, each registered when the tables it reads exist.
    /// `fraudlake_features::session` passes `tx_labeled` here, so `fraudlake sql -f
    /// sql/features.sql` runs as the offline engine does.
    pub async fn session_with(
        &self,
        pins: &[(String, TimeTravel)],
        views: &[&dyn LakeView],
    ) -> Result<SessionContext> {
        let ctx = new_session();
        catalog::LakeSchema::install(&ctx, self, pins).await?;
        register_views(&ctx, views).await?;
        Ok(ctx)
    }
}

/// A named SQL view over lake tables that a crate above this one contributes to a session,
/// in DataFusion's extension style (a `TableProvider` registered by name): the lake registers
/// what it is given and knows nothing of what it means. `fraudlake-features` contributes the
/// feature view `tx_labeled` this way; this crate sits below it and cannot name it.
pub trait LakeView: Send + Sync {
    /// The name queries use.
    fn name(&self) -> &str;
    /// The tables the view reads: it is registered only when all of them exist.
    fn tables(&self) -> &[&str];
    /// The SELECT that defines the view.
    fn sql(&self) -> String;
}

/// Registers each of `views` whose tables all exist in `ctx`, in order (so a view may read
/// an earlier one).
pub async fn register_views(ctx: &SessionContext, views: &[&dyn LakeView]) -> Result<()> {
    for view in views {
        let mut ready = true;
        for table in view.tables() {
            ready &= ctx.table_exist(*table)?;
        }
        if ready {
            let provider = ctx.sql(&view.sql()).await?.into_view();
            ctx.register_table(view.name(), provider)?;
        }
    }
    Ok(())
}

/// How appends treat the table's schema: `labels` gained nullable provenance columns,
/// `predictions` the rollout's role and score columns and `model_versions` the model family;
/// a lake made before them gets them on its next write to the table (Delta schema evolution:
/// the older files read as null). Other tables keep strict schemas: `Merge` would let a wrong
/// batch widen them silently.
pub fn evolve(
    def: &TableDef,
    write: deltalake::operations::write::WriteBuilder,
) -> deltalake::operations::write::WriteBuilder {
    if def.name == tables::LABELS.name
        || def.name == tables::PREDICTIONS_TABLE
        || def.name == tables::MODEL_VERSIONS_TABLE
    {
        write.with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
    } else {
        write
    }
}

/// Registers one Delta table in a session under `name`.
pub async fn register(ctx: &SessionContext, name: &str, table: &DeltaTable) -> Result<()> {
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    ctx.register_table(name, provider)?;
    Ok(())
}

/// The session settings every fraudlake query runs with. DataFusion options can be tuned
/// with its own environment variables (e.g. `DATAFUSION_EXECUTION_BATCH_SIZE`); a malformed
/// one is ignored with a warning rather than failing every command.
pub fn new_session() -> SessionContext {
    let base = SessionConfig::from_env().unwrap_or_else(|e| {
        tracing::warn!("ignoring DATAFUSION_* environment settings: {e}");
        SessionConfig::new()
    });
    let config = base
        .with_information_schema(true)
        .set_str("datafusion.execution.time_zone", "+00:00");
    SessionContext::new_with_config(config)
}

/// How many times [`Lake::append`] starts an append again after its commit lost
/// `COMMIT_RETRIES` version races in a row.
pub const APPEND_ATTEMPTS: u32 = 8;

/// Whether a write failed only because other writers kept committing first.
fn lost_every_race(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: deltalake::kernel::transaction::TransactionError::MaxCommitAttempts(_)
        }
    )
}

/// How many times a commit may lose the race for the next table version before it fails.
/// Losing that race is not a conflict (appends never conflict with appends; a real conflict
/// still fails at once), and with many writers on one table, e.g. several servers or
/// schedulers on one S3 lake, deltalake's default of 15 lost races can run out.
pub const COMMIT_RETRIES: usize = 100;

/// Commit metadata naming the fraudlake operation, visible in `DESCRIBE HISTORY`-style tools;
/// every fraudlake commit retries lost version races up to [`COMMIT_RETRIES`] times.
pub fn commit_note(operation: &str) -> CommitProperties {
    CommitProperties::default()
        .with_metadata([(
            "fraudlake.operation".to_string(),
            serde_json::Value::String(operation.to_string()),
        )])
        .with_max_retries(COMMIT_RETRIES)
}

fn local_root(path: &std::path::Path) -> Result<Url> {
    // Creating the root folder is the one local-filesystem touch: table data goes through
    // deltalake's object store.
    std::fs::create_dir_all(path)
        .map_err(|e| Error::io(format!("cannot create lake folder {}", path.display()), e))?;
    let abs = std::fs::canonicalize(path)
        .map_err(|e| Error::io(format!("cannot resolve lake folder {}", path.display()), e))?;
    Url::from_directory_path(&abs)
        .map_err(|_| Error::invalid(format!("cannot make a URL of {}", abs.display())))
}

/// Shared handle type for code that keeps the lake around.
pub type LakeRef = Arc<Lake>;
