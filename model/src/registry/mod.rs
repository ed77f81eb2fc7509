//! The model registry, kept in the lake: one row per version in the `model_versions` Delta
//! table (queryable with `fraudlake sql`), the model artifact under `models/` (through the
//! lake's object store, content-addressed by sha256, with its family's extension: `.json` for
//! XGBoost, `.txt` for LightGBM), and every alias change as an audit
//! row in `model_events`. Alias state (champion, challenger, shadow, canary, archived) is the
//! replay of those events, so the audit log is the source of truth and cannot drift from it.
//! Shadow and canary are the steps of a gradual rollout (docs/rollout.md).
//!
//! Concurrency: a version number (or event sequence number) is claimed by committing with a
//! Delta application transaction id; two writers that claim the same number conflict in
//! Delta's optimistic concurrency control, and the loser re-reads and retries.

pub mod card;
mod charts;
pub mod gate;
pub mod rollout;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    Array, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::kernel::transaction::TransactionError;
use deltalake::kernel::Transaction;
use deltalake::logstore::object_store::{path::Path as StorePath, ObjectStoreExt, PutPayload};
use deltalake::protocol::SaveMode;
use deltalake::DeltaTableError;
use fraudlake_pipeline::lake::{
    commit_note, evolve, register, tables::utc_micros, tables::MODEL_VERSIONS_TABLE, Lake, TableDef,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::TableVersion;
use crate::error::{Error, Result};
use crate::loaded::{LoadedModel, ModelFamily};
use crate::metrics::Curves;
use crate::params::TrainParams;
use crate::protocol::{Metrics, Periods};
use fraudlake_pipeline::columns;

/// Folder (under the lake root) of artifacts and model cards.
pub const MODELS_FOLDER: &str = "models";
pub const CHAMPION: &str = "champion";
pub const CHALLENGER: &str = "challenger";
/// Scores every transaction beside the champion, decides nothing.
pub const SHADOW: &str = "shadow";
/// Decides for a sticky share of customers (its percent is in the event's details).
pub const CANARY: &str = "canary";

/// Audit actions of a rollout, beside `promote`, `rollback` and `archive`: a shadow or canary
/// starts (`details` of a canary: `{"percent": P}`), stops by hand, or is judged by the canary
/// analysis (`details`: its evidence) without a change. A rollback by the analysis is
/// `rollback` with the alias `shadow` or `canary`.
pub const ACTION_START: &str = "start";
pub const ACTION_STOP: &str = "stop";
pub const ACTION_ANALYSIS: &str = "analysis";

pub const MODEL_VERSIONS: TableDef = TableDef {
    name: MODEL_VERSIONS_TABLE,
    schema: versions_schema,
    partition_by: &[],
    description: "fraudlake model registry: one row per trained model version",
};

pub const MODEL_EVENTS: TableDef = TableDef {
    name: "model_events",
    schema: events_schema,
    partition_by: &[],
    description: "fraudlake model registry audit log: registrations and alias changes",
};

fn versions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new("created_at", utc_micros(), false),
        Field::new("created_by", DataType::Utf8, false),
        Field::new("note", DataType::Utf8, false),
        Field::new("feature_set", DataType::Utf8, false),
        Field::new("auc_roc", DataType::Float64, true),
        Field::new("average_precision", DataType::Float64, true),
        Field::new("card_precision_at_100", DataType::Float64, true),
        Field::new("train_from", DataType::Date32, false),
        Field::new("train_to", DataType::Date32, false),
        Field::new("test_from", DataType::Date32, false),
        Field::new("test_to", DataType::Date32, false),
        Field::new("train_rows", DataType::Int64, false),
        Field::new("train_frauds", DataType::Int64, false),
        Field::new("artifact", DataType::Utf8, false),
        Field::new("artifact_sha256", DataType::Utf8, false),
        // The whole version record as JSON (feature SQL, params, metrics, lineage, ...).
        Field::new("record", DataType::Utf8, false),
        // `xgboost` or `lightgbm` (issue #18), added later: a lake made before it gains it on
        // its next registration (`lake::evolve`), its older rows read as null, which means
        // xgboost (their records have no `model_family` either, and read as xgboost).
        Field::new("model_family", DataType::Utf8, true),
    ]))
}

fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("at", utc_micros(), false),
        Field::new("actor", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("alias", DataType::Utf8, true),
        Field::new("version", DataType::Int64, true),
        Field::new("previous_version", DataType::Int64, true),
        Field::new("forced", DataType::Boolean, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("details", DataType::Utf8, true),
    ]))
}

/// Where a version's data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// Tables and the exact Delta versions read.
    pub tables: Vec<TableVersion>,
    pub train_from: String,
    pub train_to: String,
    pub test_from: String,
    pub test_to: String,
    pub train_rows: usize,
    pub train_frauds: usize,
    pub test_rows: usize,
    pub test_frauds: usize,
    /// The label precedence training read labels by (empty in records made before it).
    #[serde(default)]
    pub label_policy: String,
    /// Labels that did not count because a more trusted source said otherwise.
    #[serde(default)]
    pub labels_overridden: Vec<crate::dataset::LabelOverride>,
    /// For a model trained outside fraudlake and registered with `fraudlake models import`
    /// (or the DAG's `register` op): the file it came from. Its training days are the ones
    /// the importer declared, `tables` and the test fields are fraudlake's evaluation, and
    /// `train_rows`/`train_frauds` are 0 (not known). `None` for a model fraudlake trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
}

impl Lineage {
    /// Whether the model was trained outside fraudlake and imported.
    pub fn is_imported(&self) -> bool {
        self.imported_from.is_some()
    }
}

/// Everything stored about one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub note: String,
    pub feature_set: String,
    pub feature_sql: String,
    pub feature_names: Vec<String>,
    pub periods: Periods,
    /// The training parameters, tagged by family (`"model": "lightgbm"`; records made
    /// before LightGBM training have no tag and read as XGBoost's); for an imported model
    /// (`lineage.imported_from`) not known, and left at the family's defaults.
    pub params: TrainParams,
    pub rounds: u32,
    pub metrics: Metrics,
    pub lineage: Lineage,
    /// The library that trained it, which fixes the artifact's format (records made before
    /// the field read as xgboost).
    #[serde(default)]
    pub model_family: ModelFamily,
    /// Gain importance, highest first.
    pub importance: Vec<(String, f64)>,
    /// Path of the artifact relative to the lake root.
    pub artifact: String,
    pub artifact_sha256: String,
    /// ROC, precision-recall and card precision@k curves on the test days, drawn by the model
    /// card ([`card`]); `None` in records made before them (their card has no charts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curves: Option<Curves>,
}

impl VersionRecord {
    /// The feature set the version was trained on, as training and evaluation take it.
    pub fn feature_spec(&self) -> crate::train::FeatureSpec {
        crate::train::FeatureSpec {
            sha256: self.feature_set.clone(),
            sql: self.feature_sql.clone(),
            names: self.feature_names.clone(),
        }
    }
}

/// A version with its current aliases and status, as `models list/show` print it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelVersion {
    #[serde(flatten)]
    pub record: VersionRecord,
    pub aliases: Vec<String>,
    pub archived: bool,
}

/// What to register (the registry assigns the version and the artifact path).
pub struct NewVersion {
    pub created_by: String,
    pub note: String,
    pub feature_set: String,
    pub feature_sql: String,
    pub feature_names: Vec<String>,
    pub periods: Periods,
    pub params: TrainParams,
    pub rounds: u32,
    pub metrics: Metrics,
    pub lineage: Lineage,
    pub model_family: ModelFamily,
    /// The model file of `model_family` (XGBoost JSON, LightGBM text), stored as it is.
    pub model_file: Vec<u8>,
    /// The curves on the test days, for the model card.
    pub curves: Option<Curves>,
}

/// One audit row.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub alias: Option<String>,
    pub version: Option<i64>,
    pub previous_version: Option<i64>,
    pub forced: bool,
    pub reason: String,
    pub details: Option<String>,
}

/// A running canary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Canary {
    pub version: i64,
    /// Share of customers it decides for, in [0, 100].
    pub percent: f64,
}

/// The `details` of a `start` row of the canary.
pub fn canary_details(percent: f64) -> String {
    serde_json::json!({ "percent": percent }).to_string()
}

/// The percent of a canary `start` row. Details that cannot be read give 0 %: a canary that
/// decides for nobody, never one that decides for everybody.
fn canary_percent(details: Option<&str>) -> f64 {
    details
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| v.get("percent").and_then(serde_json::Value::as_f64))
        .filter(|p| (0.0..=100.0).contains(p))
        .unwrap_or(0.0)
}

/// Alias state: the replay of the audit log.
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    pub champion: Option<i64>,
    pub challenger: Option<i64>,
    pub shadow: Option<i64>,
    pub canary: Option<Canary>,
    /// Champions before the current one, most recent last (what `rollback` returns to).
    pub champion_history: Vec<i64>,
    pub archived: std::collections::BTreeSet<i64>,
}

impl Aliases {
    fn replay(events: &[Event]) -> Aliases {
        let mut a = Aliases::default();
        for e in events {
            match (e.action.as_str(), e.alias.as_deref()) {
                ("promote", Some(CHAMPION)) => {
                    if let Some(old) = a.champion {
                        a.champion_history.push(old);
                    }
                    a.champion = e.version;
                    if a.challenger == e.version {
                        a.challenger = None;
                    }
                    a.leave_rollout(e.version);
                }
                ("rollback", Some(CHAMPION)) => {
                    a.champion_history.pop();
                    a.champion = e.version;
                }
                ("promote", Some(CHALLENGER)) => a.challenger = e.version,
                ("archive", _) => {
                    if let Some(v) = e.version {
                        a.archived.insert(v);
                        if a.challenger == Some(v) {
                            a.challenger = None;
                        }
                        a.leave_rollout(Some(v));
                    }
                }
                (ACTION_START, Some(SHADOW)) => a.shadow = e.version,
                (ACTION_START, Some(CANARY)) => {
                    if let Some(version) = e.version {
                        a.canary = Some(Canary {
                            version,
                            percent: canary_percent(e.details.as_deref()),
                        });
                        if a.shadow == Some(version) {
                            a.shadow = None;
                        }
                    }
                }
                // Only the version the row names: a stop or rollback written from a stale read
                // must not end a newer shadow or canary.
                (ACTION_STOP | "rollback", Some(SHADOW))
                    if e.version.is_none() || a.shadow == e.version =>
                {
                    a.shadow = None;
                }
                (ACTION_STOP | "rollback", Some(CANARY))
                    if e.version.is_none() || a.canary.map(|c| c.version) == e.version =>
                {
                    a.canary = None;
                }
                _ => {}
            }
        }
        a
    }

    /// A version that becomes champion or is archived is no longer shadow or canary.
    fn leave_rollout(&mut self, version: Option<i64>) {
        if version.is_some() && self.shadow == version {
            self.shadow = None;
        }
        if version.is_some() && self.canary.map(|c| c.version) == version {
            self.canary = None;
        }
    }

    pub fn of(&self, version: i64) -> Vec<String> {
        let mut out = Vec::new();
        if self.champion == Some(version) {
            out.push(CHAMPION.to_string());
        }
        if self.challenger == Some(version) {
            out.push(CHALLENGER.to_string());
        }
        if self.shadow == Some(version) {
            out.push(SHADOW.to_string());
        }
        if self.canary.is_some_and(|c| c.version == version) {
            out.push(CANARY.to_string());
        }
        out
    }
}

/// The registry of one lake.
#[derive(Clone)]
pub struct Registry {
    lake: Lake,
}

/// How many times a writer re-reads and retries after losing a concurrent commit.
const MAX_ATTEMPTS: usize = 20;

impl Registry {
    pub fn new(lake: Lake) -> Registry {
        Registry { lake }
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Every version, oldest first.
    pub async fn versions(&self) -> Result<Vec<VersionRecord>> {
        let Some(table) = self.lake.load(MODEL_VERSIONS.name).await? else {
            return Ok(Vec::new());
        };
        let ctx = fraudlake_pipeline::lake::new_session();
        register(&ctx, MODEL_VERSIONS.name, &table).await?;
        let batches = ctx
            .sql("SELECT record FROM model_versions ORDER BY version")
            .await?
            .collect()
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            for json in columns::utf8(b.column(0))?.iter().flatten() {
                out.push(serde_json::from_str(json).map_err(|e| {
                    Error::Model(format!("a model_versions record is not readable: {e}"))
                })?);
            }
        }
        Ok(out)
    }

    /// The audit log in order.
    pub async fn events(&self) -> Result<Vec<Event>> {
        let Some(table) = self.lake.load(MODEL_EVENTS.name).await? else {
            return Ok(Vec::new());
        };
        let ctx = fraudlake_pipeline::lake::new_session();
        register(&ctx, MODEL_EVENTS.name, &table).await?;
        let batches = ctx
            .sql(
                "SELECT seq, CAST(at AS BIGINT), actor, action, alias, version, previous_version, \
                 forced, reason, details FROM model_events ORDER BY seq",
            )
            .await?
            .collect()
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let i64s = |i: usize| columns::i64s(b.column(i));
            let strs = |i: usize| columns::utf8(b.column(i));
            let (seq, at, version, prev) = (i64s(0)?, i64s(1)?, i64s(5)?, i64s(6)?);
            let (actor, action, alias, reason, details) =
                (strs(2)?, strs(3)?, strs(4)?, strs(8)?, strs(9)?);
            let forced = columns::bools(b.column(7))?;
            for r in 0..b.num_rows() {
                let opt_i64 = |a: &Int64Array| (!a.is_null(r)).then(|| a.value(r));
                let opt_str = |a: &StringArray| (!a.is_null(r)).then(|| a.value(r).to_string());
                out.push(Event {
                    seq: seq.value(r),
                    at: DateTime::from_timestamp_micros(at.value(r)).unwrap_or_default(),
                    actor: actor.value(r).to_string(),
                    action: action.value(r).to_string(),
                    alias: opt_str(&alias),
                    version: opt_i64(&version),
                    previous_version: opt_i64(&prev),
                    forced: forced.value(r),
                    reason: reason.value(r).to_string(),
                    details: opt_str(&details),
                });
            }
        }
        Ok(out)
    }

    pub async fn aliases(&self) -> Result<Aliases> {
        Ok(Aliases::replay(&self.events().await?))
    }

    /// Every version with its aliases.
    pub async fn list(&self) -> Result<Vec<ModelVersion>> {
        let aliases = self.aliases().await?;
        Ok(self
            .versions()
            .await?
            .into_iter()
            .map(|record| ModelVersion {
                aliases: aliases.of(record.version),
                archived: aliases.archived.contains(&record.version),
                record,
            })
            .collect())
    }

    /// A version by number (`3`, `v3`) or alias (`champion`, `challenger`, `shadow`, `canary`).
    pub async fn get(&self, which: &str) -> Result<ModelVersion> {
        let aliases = self.aliases().await?;
        let wanted = match which.trim() {
            CHAMPION => aliases.champion.ok_or_else(|| {
                Error::invalid("there is no champion yet: train and promote a model")
            })?,
            CHALLENGER => aliases
                .challenger
                .ok_or_else(|| Error::invalid("there is no challenger"))?,
            SHADOW => aliases
                .shadow
                .ok_or_else(|| Error::invalid("there is no shadow model"))?,
            CANARY => aliases
                .canary
                .map(|c| c.version)
                .ok_or_else(|| Error::invalid("there is no canary"))?,
            other => other.trim_start_matches('v').parse::<i64>().map_err(|_| {
                Error::invalid(format!(
                    "'{other}' is neither a version number nor an alias (champion, challenger, \
                     shadow, canary)"
                ))
            })?,
        };
        let record = self
            .versions()
            .await?
            .into_iter()
            .find(|r| r.version == wanted)
            .ok_or_else(|| Error::invalid(format!("model version {wanted} does not exist")))?;
        Ok(ModelVersion {
            aliases: aliases.of(wanted),
            archived: aliases.archived.contains(&wanted),
            record,
        })
    }

    /// Reads a version's artifact, checks its sha256, that it parses as a scorable model of
    /// the version's family and that it takes the version's features.
    pub async fn load_artifact(&self, record: &VersionRecord) -> Result<(Vec<u8>, LoadedModel)> {
        let store = self.lake.files(MODELS_FOLDER)?;
        let rel = record
            .artifact
            .strip_prefix(&format!("{MODELS_FOLDER}/"))
            .unwrap_or(&record.artifact);
        let bytes = store
            .get(&StorePath::from(rel))
            .await
            .map_err(|e| {
                Error::Model(format!(
                    "model version {}: artifact {} is missing or unreadable: {e}",
                    record.version, record.artifact
                ))
            })?
            .bytes()
            .await
            .map_err(|e| Error::Model(format!("reading artifact {}: {e}", record.artifact)))?
            .to_vec();
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != record.artifact_sha256 {
            return Err(Error::Model(format!(
                "model version {}: artifact {} is corrupt (sha256 {sha}, registered {})",
                record.version, record.artifact, record.artifact_sha256
            )));
        }
        let model = LoadedModel::from_bytes(record.model_family, &bytes).map_err(|e| {
            Error::Model(format!(
                "model version {}: artifact unusable as a {}: {e}",
                record.version,
                record.model_family.describe()
            ))
        })?;
        model
            .check_features(&record.feature_names)
            .map_err(|e| Error::Model(format!("model version {}: {e}", record.version)))?;
        Ok((bytes, model))
    }

    /// Registers a new version: validates and stores the artifact, claims the next version
    /// number, writes the record, the model card and the audit row. The first version of a
    /// lake becomes champion; later ones become challenger.
    pub async fn register(&self, new: NewVersion) -> Result<VersionRecord> {
        let family = new.model_family;
        if new.params.family() != family {
            return Err(Error::Model(format!(
                "refusing to register a {} with {}'s training parameters",
                family.describe(),
                new.params.family().library()
            )));
        }
        let model = LoadedModel::from_bytes(family, &new.model_file).map_err(|e| {
            Error::Model(format!(
                "refusing to register an unusable {}: {e}",
                family.describe()
            ))
        })?;
        model
            .check_features(&new.feature_names)
            .map_err(|e| Error::Model(format!("refusing to register the model: {e}")))?;
        let sha = hex::encode(Sha256::digest(&new.model_file));
        let rel = format!("artifacts/{sha}.{}", family.extension());
        self.lake
            .files(MODELS_FOLDER)?
            .put(
                &StorePath::from(rel.as_str()),
                PutPayload::from(new.model_file.clone()),
            )
            .await
            .map_err(|e| Error::Model(format!("cannot store the model artifact: {e}")))?;
        let importance = model.importance(&new.feature_names);

        let mut record = VersionRecord {
            version: 0,
            created_at: Utc::now(),
            created_by: new.created_by,
            note: new.note,
            feature_set: new.feature_set,
            feature_sql: new.feature_sql,
            feature_names: new.feature_names,
            periods: new.periods,
            params: new.params,
            rounds: new.rounds,
            metrics: new.metrics,
            lineage: new.lineage,
            model_family: family,
            importance,
            artifact: format!("{MODELS_FOLDER}/{rel}"),
            artifact_sha256: sha,
            curves: new.curves,
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let table = self.lake.table(&MODEL_VERSIONS).await?;
            record.version = self
                .versions()
                .await?
                .iter()
                .map(|r| r.version)
                .max()
                .unwrap_or(0)
                + 1;
            let batch = version_batch(&record)?;
            let claim = Transaction::new("fraudlake.model_versions", record.version);
            // `evolve`: a table made before `model_family` gains the column here.
            let write = evolve(
                &MODEL_VERSIONS,
                table
                    .write(vec![batch])
                    .with_save_mode(SaveMode::Append)
                    .with_commit_properties(
                        commit_note("register model").with_application_transaction(claim),
                    ),
            )
            .await;
            match write {
                Ok(_) => break,
                Err(e) if is_conflict(&e) && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(
                        attempt,
                        "version {} taken concurrently, retrying",
                        record.version
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let aliases = self.aliases().await?;
        let (alias, reason) = if aliases.champion.is_none() {
            (CHAMPION, "first model of this lake")
        } else {
            (CHALLENGER, "newly registered")
        };
        self.record_event(EventDraft {
            actor: record.created_by.clone(),
            action: "promote",
            alias: Some(alias),
            version: Some(record.version),
            previous_version: if alias == CHAMPION {
                None
            } else {
                aliases.challenger
            },
            forced: false,
            reason: reason.to_string(),
            details: None,
        })
        .await?;
        self.write_card(&record).await?;
        Ok(record)
    }

    /// Writes `models/v<N>/card.md` and `card.html`; returns their lake URLs.
    pub async fn write_card(&self, record: &VersionRecord) -> Result<(String, String)> {
        let store = self.lake.files(MODELS_FOLDER)?;
        let dir = format!("v{}", record.version);
        let md = card::markdown(record);
        let html = card::html(record)
            .map_err(|e| Error::Model(format!("cannot render the model card: {e}")))?;
        for (name, body) in [("card.md", md), ("card.html", html)] {
            store
                .put(
                    &StorePath::from(format!("{dir}/{name}")),
                    PutPayload::from(body.into_bytes()),
                )
                .await
                .map_err(|e| Error::Model(format!("cannot write the model card: {e}")))?;
        }
        Ok((
            self.lake.file_url(MODELS_FOLDER, &format!("{dir}/card.md")),
            self.lake
                .file_url(MODELS_FOLDER, &format!("{dir}/card.html")),
        ))
    }

    /// Appends one audit row, claiming the next sequence number (retries on conflict).
    pub async fn record_event(&self, draft: EventDraft<'_>) -> Result<Event> {
        for attempt in 1..=MAX_ATTEMPTS {
            let table = self.lake.table(&MODEL_EVENTS).await?;
            let seq = self.events().await?.last().map_or(0, |e| e.seq) + 1;
            let event = Event {
                seq,
                at: Utc::now(),
                actor: draft.actor.clone(),
                action: draft.action.to_string(),
                alias: draft.alias.map(str::to_string),
                version: draft.version,
                previous_version: draft.previous_version,
                forced: draft.forced,
                reason: draft.reason.clone(),
                details: draft.details.clone(),
            };
            let write = table
                .write(vec![event_batch(&event)?])
                .with_save_mode(SaveMode::Append)
                .with_commit_properties(
                    commit_note(&format!("model {}", draft.action)).with_application_transaction(
                        Transaction::new("fraudlake.model_events", seq),
                    ),
                )
                .await;
            match write {
                Ok(_) => return Ok(event),
                Err(e) if is_conflict(&e) && attempt < MAX_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Model(
            "could not record the event after repeated conflicts".into(),
        ))
    }
}

/// An audit row before it gets its sequence number and time.
#[derive(Debug, Clone)]
pub struct EventDraft<'a> {
    pub actor: String,
    pub action: &'a str,
    pub alias: Option<&'a str>,
    pub version: Option<i64>,
    pub previous_version: Option<i64>,
    pub forced: bool,
    pub reason: String,
    pub details: Option<String>,
}

fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_)
                    | TransactionError::VersionAlreadyExists(_)
            }
    )
}

fn date32(s: &str) -> Result<i32> {
    let d: chrono::NaiveDate = s
        .parse()
        .map_err(|_| Error::Model(format!("bad date '{s}' in a model record")))?;
    Ok(columns::day_number(d))
}

fn version_batch(r: &VersionRecord) -> Result<RecordBatch> {
    let json = serde_json::to_string(r)
        .map_err(|e| Error::Model(format!("cannot encode the record: {e}")))?;
    let l = &r.lineage;
    let cols: Vec<Arc<dyn Array>> = vec![
        Arc::new(Int64Array::from(vec![r.version])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![r.created_at.timestamp_micros()])
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from(vec![r.created_by.as_str()])),
        Arc::new(StringArray::from(vec![r.note.as_str()])),
        Arc::new(StringArray::from(vec![r.feature_set.as_str()])),
        Arc::new(Float64Array::from(vec![r.metrics.auc_roc])),
        Arc::new(Float64Array::from(vec![r.metrics.average_precision])),
        Arc::new(Float64Array::from(vec![r.metrics.card_precision_at_100])),
        Arc::new(Date32Array::from(vec![date32(&l.train_from)?])),
        Arc::new(Date32Array::from(vec![date32(&l.train_to)?])),
        Arc::new(Date32Array::from(vec![date32(&l.test_from)?])),
        Arc::new(Date32Array::from(vec![date32(&l.test_to)?])),
        Arc::new(Int64Array::from(vec![l.train_rows as i64])),
        Arc::new(Int64Array::from(vec![l.train_frauds as i64])),
        Arc::new(StringArray::from(vec![r.artifact.as_str()])),
        Arc::new(StringArray::from(vec![r.artifact_sha256.as_str()])),
        Arc::new(StringArray::from(vec![json])),
        Arc::new(StringArray::from(vec![r.model_family.name()])),
    ];
    Ok(RecordBatch::try_new(versions_schema(), cols)?)
}

fn event_batch(e: &Event) -> Result<RecordBatch> {
    let cols: Vec<Arc<dyn Array>> = vec![
        Arc::new(Int64Array::from(vec![e.seq])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![e.at.timestamp_micros()]).with_timezone("UTC"),
        ),
        Arc::new(StringArray::from(vec![e.actor.as_str()])),
        Arc::new(StringArray::from(vec![e.action.as_str()])),
        Arc::new(StringArray::from(vec![e.alias.as_deref()])),
        Arc::new(Int64Array::from(vec![e.version])),
        Arc::new(Int64Array::from(vec![e.previous_version])),
        Arc::new(BooleanArray::from(vec![e.forced])),
        Arc::new(StringArray::from(vec![e.reason.as_str()])),
        Arc::new(StringArray::from(vec![e.details.as_deref()])),
    ];
    Ok(RecordBatch::try_new(events_schema(), cols)?)
}

/// Metrics by name, for JSON output and the gate.
pub fn metric_map(m: &Metrics) -> BTreeMap<String, Option<f64>> {
    crate::protocol::METRIC_NAMES
        .iter()
        .map(|n| {
            let v = match *n {
                "log_loss" => m.log_loss,
                "brier_score" => m.brier_score,
                other => m.score(other).ok().flatten(),
            };
            (n.to_string(), v)
        })
        .collect()
}

/// Who is acting, for audit rows: `FRAUDLAKE_ACTOR`, else the OS user.
pub fn actor() -> String {
    std::env::var("FRAUDLAKE_ACTOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, alias: Option<&str>, version: i64, details: Option<&str>) -> Event {
        Event {
            seq: 0,
            at: DateTime::<Utc>::default(),
            actor: "test".into(),
            action: action.into(),
            alias: alias.map(str::to_string),
            version: Some(version),
            previous_version: None,
            forced: false,
            reason: String::new(),
            details: details.map(str::to_string),
        }
    }

    #[test]
    fn a_rollout_replays_shadow_then_canary_then_champion() {
        let percent = canary_details(10.0);
        let mut log = vec![
            event("promote", Some(CHAMPION), 1, None),
            event("promote", Some(CHALLENGER), 2, None),
            event(ACTION_START, Some(SHADOW), 2, None),
        ];
        let a = Aliases::replay(&log);
        assert_eq!((a.champion, a.shadow), (Some(1), Some(2)));
        assert_eq!(a.of(2), vec![CHALLENGER.to_string(), SHADOW.to_string()]);

        // Shadow -> canary: the shadow alias moves.
        log.push(event(ACTION_START, Some(CANARY), 2, Some(percent.as_str())));
        log.push(event(ACTION_ANALYSIS, Some(CANARY), 2, Some("{}")));
        let a = Aliases::replay(&log);
        assert_eq!(a.shadow, None);
        assert_eq!(
            a.canary,
            Some(Canary {
                version: 2,
                percent: 10.0
            })
        );

        // Canary -> champion: the canary ends.
        log.push(event("promote", Some(CHAMPION), 2, None));
        let a = Aliases::replay(&log);
        assert_eq!((a.champion, a.canary, a.challenger), (Some(2), None, None));
        assert_eq!(a.champion_history, vec![1]);
    }

    #[test]
    fn stops_and_rollbacks_end_only_the_version_they_name() {
        let quarter = canary_details(25.0);
        let log = vec![
            event(ACTION_START, Some(CANARY), 3, Some(quarter.as_str())),
            event(ACTION_START, Some(SHADOW), 4, None),
            // Written from a stale read: version 5 is neither.
            event("rollback", Some(CANARY), 5, None),
            event(ACTION_STOP, Some(SHADOW), 5, None),
        ];
        let a = Aliases::replay(&log);
        assert_eq!(a.canary.map(|c| (c.version, c.percent)), Some((3, 25.0)));
        assert_eq!(a.shadow, Some(4));

        let mut log = log;
        log.push(event("rollback", Some(CANARY), 3, None));
        log.push(event("archive", None, 4, None));
        let a = Aliases::replay(&log);
        assert_eq!((a.canary, a.shadow), (None, None));
    }

    fn record_v1() -> VersionRecord {
        VersionRecord {
            version: 1,
            created_at: Utc::now(),
            created_by: "an older fraudlake".into(),
            note: String::new(),
            feature_set: "abc".into(),
            feature_sql: "SELECT 1".into(),
            feature_names: vec!["amount".into(), "merchant".into()],
            periods: Periods {
                train_start: chrono::NaiveDate::from_ymd_opt(2018, 4, 1).expect("date"),
                train_days: 7,
                delay_days: 7,
                test_days: 7,
            },
            params: TrainParams::default(),
            rounds: 1,
            metrics: Metrics::default(),
            lineage: Lineage {
                tables: Vec::new(),
                train_from: "2018-04-01".into(),
                train_to: "2018-04-07".into(),
                test_from: "2018-04-15".into(),
                test_to: "2018-04-21".into(),
                train_rows: 100,
                train_frauds: 5,
                test_rows: 10,
                test_frauds: 2,
                label_policy: String::new(),
                labels_overridden: Vec::new(),
                imported_from: None,
            },
            model_family: ModelFamily::XGBoost,
            importance: Vec::new(),
            artifact: "models/artifacts/00.json".into(),
            artifact_sha256: "00".into(),
            curves: None,
        }
    }

    /// `model_versions` as fraudlake wrote it before `model_family`: without its last column.
    fn old_versions_schema() -> SchemaRef {
        let fields: Vec<Field> = versions_schema()
            .fields()
            .iter()
            .filter(|f| f.name() != "model_family")
            .map(|f| Field::clone(f))
            .collect();
        Arc::new(Schema::new(fields))
    }

    const OLD_VERSIONS: TableDef = TableDef {
        name: MODEL_VERSIONS_TABLE,
        description: "model_versions before model_family",
        schema: old_versions_schema,
        partition_by: &[],
    };

    #[tokio::test]
    async fn a_registry_made_before_model_family_reads_as_xgboost_and_gains_the_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).expect("lake");
        let registry = Registry::new(lake.clone());

        // Version 1 as an older fraudlake wrote it: no column, no field in the record.
        let v1 = record_v1();
        let mut json = serde_json::to_value(&v1).expect("record");
        json.as_object_mut()
            .expect("an object")
            .remove("model_family");
        // Its parameters were XGBoost's alone, without the family tag.
        json["params"]
            .as_object_mut()
            .expect("params")
            .remove("model");
        let full = version_batch(&v1).expect("batch");
        let mut cols: Vec<Arc<dyn Array>> = full.columns()[..full.num_columns() - 2].to_vec();
        cols.push(Arc::new(StringArray::from(vec![json.to_string()])));
        let old = RecordBatch::try_new(old_versions_schema(), cols).expect("old batch");
        lake.append(&OLD_VERSIONS, vec![old], "test")
            .await
            .expect("old row");
        let versions = registry.versions().await.expect("versions");
        assert_eq!(versions[0].model_family, ModelFamily::XGBoost);
        assert_eq!(versions[0].params, TrainParams::default());
        // Made before curves too: none, and its card renders without charts.
        assert_eq!(versions[0].curves, None);
        let page = card::html(&versions[0]).expect("card");
        assert!(!page.contains("<svg"), "{page}");

        // A LightGBM version: stored as .txt, the table gains the column.
        let v2 = registry
            .register(NewVersion {
                created_by: "test".into(),
                note: String::new(),
                feature_set: "abc".into(),
                feature_sql: "SELECT 1".into(),
                feature_names: vec!["amount".into(), "merchant".into()],
                periods: v1.periods,
                params: TrainParams::defaults(ModelFamily::LightGBM),
                rounds: 2,
                metrics: Metrics::default(),
                lineage: Lineage {
                    imported_from: Some("model.txt".into()),
                    ..v1.lineage.clone()
                },
                model_family: ModelFamily::LightGBM,
                model_file: crate::lightgbm::tests::TINY.as_bytes().to_vec(),
                curves: None,
            })
            .await
            .expect("registers");
        assert_eq!(v2.version, 2);
        assert_eq!(v2.model_family, ModelFamily::LightGBM);
        assert!(
            v2.artifact.starts_with("models/artifacts/") && v2.artifact.ends_with(".txt"),
            "{}",
            v2.artifact
        );
        assert_eq!(v2.importance[0].0, "amount");
        let (bytes, model) = registry.load_artifact(&v2).await.expect("loads");
        assert_eq!(bytes, crate::lightgbm::tests::TINY.as_bytes());
        assert_eq!(model.family(), ModelFamily::LightGBM);

        let families: Vec<ModelFamily> = registry
            .versions()
            .await
            .expect("versions")
            .iter()
            .map(|r| r.model_family)
            .collect();
        assert_eq!(families, [ModelFamily::XGBoost, ModelFamily::LightGBM]);
        let table = lake
            .load(MODEL_VERSIONS_TABLE)
            .await
            .expect("load")
            .expect("the table");
        let ctx = fraudlake_pipeline::lake::new_session();
        register(&ctx, MODEL_VERSIONS_TABLE, &table)
            .await
            .expect("register");
        let batches = ctx
            .sql("SELECT model_family FROM model_versions ORDER BY version")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("rows");
        let mut column = Vec::new();
        for b in &batches {
            let a = columns::utf8(b.column(0)).expect("strings");
            column.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())));
        }
        assert_eq!(column, [None, Some("lightgbm".to_string())]);

        // A model whose features are not the version's is refused at registration.
        let wrong = registry
            .register(NewVersion {
                created_by: "test".into(),
                note: String::new(),
                feature_set: "abc".into(),
                feature_sql: "SELECT 1".into(),
                feature_names: vec!["merchant".into(), "amount".into()],
                periods: v1.periods,
                params: TrainParams::defaults(ModelFamily::LightGBM),
                rounds: 2,
                metrics: Metrics::default(),
                lineage: v1.lineage.clone(),
                model_family: ModelFamily::LightGBM,
                model_file: crate::lightgbm::tests::TINY.as_bytes().to_vec(),
                curves: None,
            })
            .await
            .expect_err("swapped features");
        assert!(
            wrong.to_string().contains("feature names differ"),
            "{wrong}"
        );
    }

    #[test]
    fn unreadable_canary_details_decide_for_nobody() {
        for details in [None, Some("not json"), Some(r#"{"percent": 250}"#)] {
            let a = Aliases::replay(&[event(ACTION_START, Some(CANARY), 7, details)]);
            assert_eq!(a.canary.map(|c| c.percent), Some(0.0), "{details:?}");
        }
    }
}
