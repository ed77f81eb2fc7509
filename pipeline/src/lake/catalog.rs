//! The lake as a DataFusion schema: every Delta table under the root is a table a query can
//! name, opened only when a query names it.
//!
//! Why a `SchemaProvider` rather than a list: the crates above this one each own their tables
//! (the registry's `model_versions`, the server's `predictions`, the DAG runner's `dag_runs`,
//! ...) and this crate must not know their names. The lake's folders already say which tables
//! exist, so a session lists them once (one object-store listing) and loads a table's Delta log
//! the first time a query plans over it: a query over `labels` never reads the log of
//! `predictions`, which is what the old per-query table lists were for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deltalake::datafusion::catalog::{SchemaProvider, TableProvider};
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::datafusion::execution::session_state::SessionStateBuilder;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use futures::StreamExt;

use super::{Lake, TimeTravel};
use crate::error::{Error, Result};

/// The folder every Delta table keeps its log in: a lake folder without one (model artifacts,
/// reports) is not a table.
const DELTA_LOG: &str = "_delta_log";

/// The tables of one lake, as one SQL schema (DataFusion's default `public`).
#[derive(Debug)]
pub struct LakeSchema {
    lake: Lake,
    /// The Delta tables that existed when the session was made, sorted.
    tables: Vec<String>,
    /// Tables a session reads at an older version or instant (`--at`).
    pins: HashMap<String, TimeTravel>,
    /// Tables already opened by this session, so a name used twice loads its log once.
    opened: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
    /// What the session registered itself (views such as `tx_labeled`, query results).
    registered: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
    /// The session's runtime, where a Delta table registers its object store when opened.
    runtime: Arc<RuntimeEnv>,
}

impl LakeSchema {
    /// Makes `lake`'s tables the default schema of `ctx`. Fails on a pin that names a table
    /// the lake does not have.
    pub async fn install(
        ctx: &SessionContext,
        lake: &Lake,
        pins: &[(String, TimeTravel)],
    ) -> Result<()> {
        let tables = lake.table_names().await?;
        for (name, _) in pins {
            if !tables.contains(name) {
                return Err(Error::invalid(format!(
                    "--at names table '{name}', which is not in the lake (tables: {})",
                    if tables.is_empty() {
                        "none yet".to_string()
                    } else {
                        tables.join(", ")
                    }
                )));
            }
        }
        let schema = LakeSchema {
            lake: lake.clone(),
            tables,
            pins: pins.iter().cloned().collect(),
            opened: Mutex::default(),
            registered: Mutex::default(),
            runtime: ctx.runtime_env(),
        };
        let state = ctx.state();
        let catalog_name = &state.config_options().catalog.default_catalog;
        let schema_name = &state.config_options().catalog.default_schema;
        let catalog = ctx.catalog(catalog_name).ok_or_else(|| {
            Error::invalid(format!("the session has no catalog '{catalog_name}'"))
        })?;
        catalog.register_schema(schema_name, Arc::new(schema))?;
        Ok(())
    }

    async fn open(&self, name: &str) -> Result<Option<DeltaTable>> {
        match self.pins.get(name) {
            Some(at) => Ok(Some(self.lake.load_at(name, at).await?)),
            None => self.lake.load(name).await,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves nothing half-written: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.tables.clone();
        names.extend(lock(&self.registered).keys().cloned());
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(t) = lock(&self.registered).get(name) {
            return Ok(Some(t.clone()));
        }
        if !self.tables.iter().any(|t| t == name) {
            return Ok(None);
        }
        if let Some(t) = lock(&self.opened).get(name) {
            return Ok(Some(t.clone()));
        }
        let external = |e: Error| DataFusionError::External(Box::new(e));
        let Some(table) = self.open(name).await.map_err(external)? else {
            return Ok(None);
        };
        let session = SessionStateBuilder::new()
            .with_runtime_env(self.runtime.clone())
            .build();
        table
            .update_datafusion_session(&session)
            .map_err(|e| external(e.into()))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| external(e.into()))?;
        lock(&self.opened).insert(name.to_string(), provider.clone());
        Ok(Some(provider))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let mut registered = lock(&self.registered);
        if registered.contains_key(&name) || self.tables.contains(&name) {
            return Err(DataFusionError::Execution(format!(
                "the table {name} already exists"
            )));
        }
        Ok(registered.insert(name, table))
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(lock(&self.registered).remove(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name) || lock(&self.registered).contains_key(name)
    }
}

impl Lake {
    /// The Delta tables in the lake, sorted: each folder of the root that holds a Delta log.
    /// One listing of the root, then one of each folder's log (concurrently).
    pub async fn table_names(&self) -> Result<Vec<String>> {
        self.ensure_reachable().await?;
        let store = deltalake::logstore::store_for(self.root(), self.storage_options.clone())?;
        let listing = store
            .list_with_delimiter(None)
            .await
            .map_err(deltalake::DeltaTableError::from)?;
        let folders: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.parts().next_back().map(|s| s.as_ref().to_string()))
            .filter(|name| self.table_url(name).is_ok())
            .collect();
        let checks = folders.into_iter().map(|name| {
            let store = store.clone();
            async move {
                let log = deltalake::Path::from(format!("{name}/{DELTA_LOG}"));
                let first = store.list(Some(&log)).next().await;
                match first {
                    None => Ok(None),
                    Some(Ok(_)) => Ok(Some(name)),
                    Some(Err(e)) => Err(Error::from(deltalake::DeltaTableError::from(e))),
                }
            }
        });
        let mut names: Vec<String> = futures::future::try_join_all(checks)
            .await?
            .into_iter()
            .flatten()
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::tables::{LABELS, TRANSACTIONS};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use object_store_path::put_file;

    /// Writes a plain file into the lake (what model artifacts and reports are).
    mod object_store_path {
        pub async fn put_file(lake: &crate::Lake, folder: &str, name: &str) {
            use deltalake::logstore::object_store::ObjectStoreExt;
            let store = lake.files(folder).expect("store");
            store
                .put(&deltalake::Path::from(name), b"not a table".to_vec().into())
                .await
                .expect("put");
        }
    }

    #[tokio::test]
    async fn the_lake_folders_with_a_delta_log_are_the_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).expect("lake");
        assert!(lake.table_names().await.expect("names").is_empty());
        lake.table(&TRANSACTIONS).await.expect("transactions");
        lake.table(&LABELS).await.expect("labels");
        // A table of a crate above this one, which this crate cannot name.
        let schema = Schema::new(vec![Field::new("x", DataType::Int64, false)]);
        lake.create("model_versions", &schema, &[], "a registry table")
            .await
            .expect("create");
        // Model artifacts: a folder of files, not a table.
        put_file(&lake, "models", "v1.json").await;
        assert_eq!(
            lake.table_names().await.expect("names"),
            ["labels", "model_versions", "transactions"]
        );

        let ctx = lake.session(&[]).await.expect("session");
        let shown = ctx
            .sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let names = crate::columns::utf8(shown[0].column(0)).expect("names");
        let names: Vec<_> = names.iter().flatten().collect();
        assert_eq!(names, ["labels", "model_versions", "transactions"]);
        let n = ctx
            .sql("SELECT count(*) FROM model_versions")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        assert_eq!(n[0].num_rows(), 1);
        let err = ctx
            .sql("SELECT * FROM models")
            .await
            .expect_err("not a table");
        assert!(err.to_string().contains("models"), "{err}");
        // Views and results the session registers itself sit beside the lake's tables.
        let view = ctx.sql("SELECT 1 AS one").await.expect("plan").into_view();
        ctx.register_table("ones", view).expect("register");
        assert!(ctx.table_exist("ones").expect("exist"));
        assert!(ctx
            .register_table("labels", ctx.table_provider("ones").await.expect("ones"))
            .is_err());
    }

    #[tokio::test]
    async fn a_pin_names_a_table_of_the_lake() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).expect("lake");
        lake.table(&TRANSACTIONS).await.expect("transactions");
        let pin = |name: &str| vec![(name.to_string(), TimeTravel::Version(0))];
        let Err(err) = lake.session(&pin("transactionz")).await else {
            panic!("a pin on a missing table was accepted");
        };
        assert_eq!(
            err.to_string(),
            "--at names table 'transactionz', which is not in the lake (tables: transactions)"
        );
        let ctx = lake.session(&pin("transactions")).await.expect("pinned");
        let rows = ctx
            .sql("SELECT count(*) AS n FROM transactions")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        assert_eq!(rows[0].num_rows(), 1);
    }
}
