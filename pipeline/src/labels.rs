//! Which label of a transaction counts: the label precedence policy.
//!
//! Labels come from sources of different trust: a chargeback file from the card scheme
//! (`ingest:<file>`), an analyst through the API (`api:<key_id>`), the simulator, a DAG. If the
//! latest label simply won, one API caller could flip a chargeback that the next `train` reads
//! and that moves the online `terminal_risk_*` features. So every reader picks, per `tx_id`,
//! the label of the most trusted source and, within that source kind, the latest one.
//!
//! A source's *kind* is the text before its first `:` (`ingest:cb.csv` -> `ingest`,
//! `api:1f2e...` -> `api`, `simulator` -> `simulator`; `file` is another name for `ingest`).
//! The policy lists kinds from most to least trusted; unlisted kinds rank below every listed
//! one and equal among themselves. Default: `ingest > api > everything else`.
//!
//! The SQL keeps the one-integer-MAX trick of the feature view (one MAX per tx_id instead of a
//! window function, see `fraudlake_features::definition::view_sql`): the key is
//! `rank * 2^55 + labeled_at_us * 2 + is_fraud`. `labeled_at * 2` stays below 2^55 until the
//! year 2255, and up to 255 ranks fit in an i64.

use crate::error::{Error, Result};

/// `2^55`: the rank's weight in the sort key (see the module comment).
pub const RANK_WEIGHT: i64 = 1 << 55;

/// The precedence of label source kinds, most trusted first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelPolicy {
    kinds: Vec<String>,
}

impl Default for LabelPolicy {
    /// Chargeback files over analysts' API labels over everything else.
    fn default() -> Self {
        LabelPolicy {
            kinds: vec!["ingest".into(), "api".into()],
        }
    }
}

/// The kind of a label source: the text before its first `:`, with `file` read as `ingest`.
pub fn source_kind(source: &str) -> &str {
    let kind = source.split(':').next().unwrap_or(source).trim();
    if kind == "file" {
        "ingest"
    } else {
        kind
    }
}

impl LabelPolicy {
    /// A policy from kinds, most trusted first (`["ingest", "api", "simulator"]`).
    pub fn new(kinds: &[String]) -> Result<LabelPolicy> {
        let mut out: Vec<String> = Vec::new();
        for k in kinds {
            let k = source_kind(k).to_string();
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(Error::invalid(format!(
                    "label precedence: '{k}' is not a source kind (letters, digits, '_' or '-'; e.g. ingest, api, simulator)"
                )));
            }
            if out.contains(&k) {
                return Err(Error::invalid(format!(
                    "label precedence: '{k}' is listed twice"
                )));
            }
            out.push(k);
        }
        if out.is_empty() || out.len() > 200 {
            return Err(Error::invalid(
                "label precedence: list between 1 and 200 source kinds, most trusted first",
            ));
        }
        Ok(LabelPolicy { kinds: out })
    }

    /// Parses `ingest>api>simulator` or `ingest,api,simulator`.
    pub fn parse(text: &str) -> Result<LabelPolicy> {
        let kinds: Vec<String> = text
            .split([',', '>'])
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Self::new(&kinds)
    }

    /// The kinds, most trusted first.
    pub fn kinds(&self) -> &[String] {
        &self.kinds
    }

    /// Higher is more trusted; unlisted kinds get 0.
    pub fn rank(&self, source: &str) -> i64 {
        let kind = source_kind(source);
        self.kinds
            .iter()
            .position(|k| k == kind)
            .map_or(0, |i| (self.kinds.len() - i) as i64)
    }

    /// `ingest > api > (others)`, for messages and the model card.
    pub fn describe(&self) -> String {
        format!("{} > (others)", self.kinds.join(" > "))
    }

    /// The rank of the `source` column as a SQL expression.
    pub fn rank_sql(&self) -> String {
        // Kinds are checked to be plain words in `new`, so they are safe inside quotes.
        let mut sql = String::from("CASE split_part(source, ':', 1)");
        for k in &self.kinds {
            let rank = self.rank(k);
            sql.push_str(&format!(" WHEN '{k}' THEN {rank}"));
            if k == "ingest" {
                sql.push_str(&format!(" WHEN 'file' THEN {rank}"));
            }
        }
        sql.push_str(" ELSE 0 END");
        sql
    }

    /// The sort key of a label row: rank, then labeled_at, then fraud on ties.
    pub fn key_sql(&self) -> String {
        format!(
            "(({}) * {RANK_WEIGHT} + CAST(labeled_at AS BIGINT) * 2 + CAST(is_fraud AS BIGINT))",
            self.rank_sql()
        )
    }

    /// One row per tx_id: `tx_id, is_fraud, labeled_at` (microseconds) of the label that
    /// counts under this policy. Selects from a table or view named `labels`.
    pub fn effective_sql(&self) -> String {
        format!(
            "SELECT tx_id, k % 2 = 1 AS is_fraud, (k % {RANK_WEIGHT}) / 2 AS labeled_at \
             FROM (SELECT tx_id, MAX({}) AS k FROM labels GROUP BY tx_id)",
            self.key_sql()
        )
    }

    /// Label rows that lost to a more trusted source saying the opposite, counted by
    /// (overridden source, source kept).
    pub fn overridden_sql(&self) -> String {
        let key = self.key_sql();
        let rank = self.rank_sql();
        format!(
            "WITH r AS (SELECT tx_id, source, is_fraud, {rank} AS trust, {key} AS k FROM labels), \
             b AS (SELECT tx_id, MAX(k) AS k FROM r GROUP BY tx_id), \
             e AS (SELECT r.tx_id, MIN(r.source) AS source, bool_or(r.is_fraud) AS is_fraud, MAX(r.trust) AS trust \
                   FROM r JOIN b ON r.tx_id = b.tx_id AND r.k = b.k GROUP BY r.tx_id) \
             SELECT r.source AS source, e.source AS kept, COUNT(*) AS n \
             FROM r JOIN e ON r.tx_id = e.tx_id \
             WHERE r.trust < e.trust AND r.is_fraud <> e.is_fraud \
             GROUP BY r.source, e.source ORDER BY n DESC, source, kept"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::Int64Array;
    use deltalake::arrow::datatypes::DataType;

    #[test]
    fn ranks_follow_the_listed_order() {
        let p = LabelPolicy::default();
        assert!(p.rank("ingest:chargebacks.csv") > p.rank("api:0123abcd"));
        assert!(p.rank("api") > p.rank("simulator"));
        assert_eq!(p.rank("file:x.csv"), p.rank("ingest:y.csv"));
        assert_eq!(p.rank("dag"), 0);
        let q = LabelPolicy::parse("api > ingest").expect("policy");
        assert!(q.rank("api:k") > q.rank("ingest:f"));
        assert!(LabelPolicy::parse("api, api").is_err());
        assert!(LabelPolicy::parse("x'; DROP").is_err());
        assert!(LabelPolicy::parse("").is_err());
    }

    #[test]
    fn the_key_keeps_time_and_fraud_below_the_rank() {
        // The latest time representable this way is far in the future. Checked when this
        // compiles (the values are constants).
        const YEAR_2200_US: i64 = 7_258_118_400_000_000;
        const { assert!(YEAR_2200_US * 2 + 1 < RANK_WEIGHT) };
        const { assert!(200 * RANK_WEIGHT + RANK_WEIGHT - 1 > 0) };
    }

    /// A lake made before the provenance columns: its labels stay readable, and the next
    /// label write adds the columns (older rows read as null).
    #[tokio::test]
    async fn an_old_labels_table_gains_the_provenance_columns() {
        use crate::lake::tables::{LabelColumns, Provenance, LABELS};
        use crate::lake::Lake;
        use deltalake::arrow::datatypes::Schema;
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&dir.path().display().to_string()).expect("lake");
        let full = (LABELS.schema)();
        let old = Schema::new(full.fields()[..5].to_vec());
        lake.create("labels", &old, &[], "labels before provenance")
            .await
            .expect("create");
        let mut cols = LabelColumns::default();
        cols.tx_id.push(1);
        cols.is_fraud.push(false);
        cols.fraud_scenario.push(None);
        cols.labeled_at_us.push(10);
        let batch = cols.clone().into_batch("ingest:cb.csv").expect("batch");
        let old_batch = batch.project(&[0, 1, 2, 3, 4]).expect("project");
        let table = lake.load("labels").await.expect("load").expect("table");
        table
            .write(vec![old_batch])
            .with_save_mode(deltalake::protocol::SaveMode::Append)
            .await
            .expect("old write");
        cols.is_fraud[0] = true;
        cols.labeled_at_us[0] = 20;
        cols.provenance.push(Provenance {
            source: "api:k".into(),
            previous_is_fraud: Some(false),
            previous_source: Some("ingest:cb.csv".into()),
            note: Some("not applied".into()),
        });
        lake.append(
            &LABELS,
            vec![cols.into_batch("unused").expect("batch")],
            "test",
        )
        .await
        .expect("append with the new columns");
        let ctx = lake.session(&[]).await.expect("session");
        let rows = ctx
            .sql(&format!(
                "SELECT (SELECT COUNT(*) FROM labels), (SELECT COUNT(note) FROM labels), \
                 (SELECT CAST(is_fraud AS BIGINT) FROM ({}))",
                LabelPolicy::default().effective_sql()
            ))
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let get = |i: usize| {
            let c =
                deltalake::arrow::compute::cast(rows[0].column(i), &DataType::Int64).expect("cast");
            c.as_any()
                .downcast_ref::<Int64Array>()
                .expect("i64")
                .value(0)
        };
        assert_eq!((get(0), get(1)), (2, 1));
        assert_eq!(get(2), 0, "the chargeback outranks the API label");
    }

    #[tokio::test]
    async fn sql_picks_the_most_trusted_then_the_latest() {
        use deltalake::arrow::array::{
            BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
        };
        use deltalake::arrow::datatypes::{Field, Schema};
        use std::sync::Arc;
        let schema = Arc::new(Schema::new(vec![
            Field::new("tx_id", DataType::Int64, false),
            Field::new("is_fraud", DataType::Boolean, false),
            Field::new("labeled_at", crate::lake::tables::utc_micros(), false),
            Field::new("source", DataType::Utf8, false),
        ]));
        // tx 1: chargeback genuine, later an API fraud (must lose); tx 2: simulator fraud,
        // later API genuine (must win); tx 3: two API labels, the later wins.
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 1, 2, 2, 3, 3])),
                Arc::new(BooleanArray::from(vec![
                    false, true, true, false, true, false,
                ])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![10, 20, 10, 20, 10, 20])
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![
                    "ingest:cb.csv",
                    "api:k1",
                    "simulator",
                    "api:k1",
                    "api:k1",
                    "api:k2",
                ])),
            ],
        )
        .expect("batch");
        let ctx = crate::lake::new_session();
        let table = deltalake::datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])
            .expect("table");
        ctx.register_table("labels", Arc::new(table))
            .expect("register");
        let p = LabelPolicy::default();
        let rows = ctx
            .sql(&format!(
                "SELECT tx_id, is_fraud, labeled_at FROM ({}) ORDER BY tx_id",
                p.effective_sql()
            ))
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let b = &rows[0];
        let fraud = b
            .column(1)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("bool");
        let at = b
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("i64");
        assert_eq!(
            (0..3).map(|i| fraud.value(i)).collect::<Vec<_>>(),
            vec![false, false, false]
        );
        assert_eq!(at.value(0), 10, "the chargeback's time");
        assert_eq!(at.value(1), 20);
        let over = ctx
            .sql(&p.overridden_sql())
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let n: usize = over.iter().map(|b| b.num_rows()).sum();
        // Only the API flip of the chargeback lost (the simulator's fraud lost too, but to a
        // more trusted API label: also an override).
        assert_eq!(n, 2, "{over:?}");
    }
}
