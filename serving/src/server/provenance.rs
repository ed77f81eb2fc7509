//! Label provenance for `POST /labels`: before a label is applied, the server finds the label
//! that counts for its transaction now (the lake's labels under the precedence policy, plus
//! the labels this process accepted that may not be committed yet), records it as the new
//! row's `previous_is_fraud`/`previous_source`, counts a flip in
//! `fraud_label_flips_total{source,applied}`, and does not apply a label that a more trusted
//! source contradicts: that row is stored with the reason in `note`, the online state keeps
//! the trusted label, and training (which reads labels by the same policy) ignores it.
//!
//! /labels requests are serialized by the book's lock, so two requests for one transaction
//! see each other. The lake lookup reads only the request's tx_ids; the table handle is kept
//! and brought up to date incrementally rather than reloaded per request.

use std::collections::HashMap;

use crate::error::{Error, Result};
use deltalake::arrow::array::{Array, BooleanArray, Int64Array, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use fraudlake_pipeline::labels::LabelPolicy;
use fraudlake_pipeline::lake::tables::{Provenance, LABELS};
use fraudlake_pipeline::Lake;

/// The label that counts for a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub rank: i64,
    pub labeled_at_us: i64,
    pub is_fraud: bool,
    pub source: String,
}

impl Current {
    fn key(&self) -> (i64, i64, bool) {
        (self.rank, self.labeled_at_us, self.is_fraud)
    }
}

/// What to do with one incoming label.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether it becomes the label that counts (and is applied online).
    pub applies: bool,
    /// Whether it says the opposite of the label that counted.
    pub flips: bool,
    pub provenance: Provenance,
}

/// Decides one label against the label that counts now. Pure, so it is tested alone.
pub fn judge(
    policy: &LabelPolicy,
    current: Option<&Current>,
    is_fraud: bool,
    source: &str,
) -> Verdict {
    let rank = policy.rank(source);
    let flips = current.is_some_and(|c| c.is_fraud != is_fraud);
    let outranked = current.filter(|c| c.rank > rank);
    let note = match outranked {
        Some(c) if flips => Some(format!(
            "not applied: {} is more trusted ({}) and says is_fraud={}",
            c.source,
            policy.describe(),
            c.is_fraud
        )),
        Some(c) => Some(format!("agrees with {}, which is more trusted", c.source)),
        None => None,
    };
    Verdict {
        applies: outranked.is_none(),
        flips,
        provenance: Provenance {
            source: source.to_string(),
            previous_is_fraud: current.map(|c| c.is_fraud),
            previous_source: current.map(|c| c.source.clone()),
            note,
        },
    }
}

/// Labels accepted by this process, and the lake's `labels` table as last read.
pub struct LabelBook {
    pub policy: LabelPolicy,
    table: Option<deltalake::DeltaTable>,
    accepted: HashMap<i64, Current>,
}

/// Past this many, accepted labels are forgotten once the lake writer has committed them.
const MAX_ACCEPTED: usize = 200_000;

impl LabelBook {
    pub fn new(policy: LabelPolicy) -> LabelBook {
        LabelBook {
            policy,
            table: None,
            accepted: HashMap::new(),
        }
    }

    /// The label that counts now for each of `tx_ids` that has one.
    pub async fn current(&mut self, lake: &Lake, tx_ids: &[i64]) -> Result<HashMap<i64, Current>> {
        let mut out: HashMap<i64, Current> = HashMap::new();
        if !tx_ids.is_empty() {
            match self.table.as_mut() {
                Some(t) => t.update_state().await?,
                None => self.table = lake.load(LABELS.name).await?,
            }
        }
        if let (Some(table), false) = (&self.table, tx_ids.is_empty()) {
            let ctx = fraudlake_pipeline::lake::new_session();
            fraudlake_pipeline::lake::register(&ctx, LABELS.name, table).await?;
            let ids: Vec<String> = tx_ids.iter().map(i64::to_string).collect();
            let sql = format!(
                "SELECT tx_id, source, is_fraud, CAST(labeled_at AS BIGINT), {} FROM labels \
                 WHERE tx_id IN ({})",
                self.policy.rank_sql(),
                ids.join(",")
            );
            for b in ctx.sql(&sql).await?.collect().await? {
                let col = |i: usize, t: DataType| cast(b.column(i), &t);
                let (tx, source, fraud, at, rank) = (
                    col(0, DataType::Int64)?,
                    col(1, DataType::Utf8)?,
                    col(2, DataType::Boolean)?,
                    col(3, DataType::Int64)?,
                    col(4, DataType::Int64)?,
                );
                let bad = || Error::invalid("labels: unexpected column types");
                let tx = tx.as_any().downcast_ref::<Int64Array>().ok_or_else(bad)?;
                let source = source
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(bad)?;
                let fraud = fraud
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(bad)?;
                let at = at.as_any().downcast_ref::<Int64Array>().ok_or_else(bad)?;
                let rank = rank.as_any().downcast_ref::<Int64Array>().ok_or_else(bad)?;
                for r in 0..b.num_rows() {
                    let row = Current {
                        rank: rank.value(r),
                        labeled_at_us: at.value(r),
                        is_fraud: fraud.value(r),
                        source: source.value(r).to_string(),
                    };
                    keep_best(&mut out, tx.value(r), row);
                }
            }
        }
        for id in tx_ids {
            if let Some(c) = self.accepted.get(id) {
                keep_best(&mut out, *id, c.clone());
            }
        }
        Ok(out)
    }

    /// Remembers a label that now counts (until the lake has it).
    pub fn accept(&mut self, tx_id: i64, current: Current) {
        keep_best(&mut self.accepted, tx_id, current);
    }

    /// Whether the accepted labels should be forgotten (after a writer flush).
    pub fn is_full(&self) -> bool {
        self.accepted.len() > MAX_ACCEPTED
    }

    pub fn forget_accepted(&mut self) {
        self.accepted.clear();
    }
}

fn keep_best(map: &mut HashMap<i64, Current>, tx_id: i64, row: Current) {
    if map.get(&tx_id).is_none_or(|c| c.key() < row.key()) {
        map.insert(tx_id, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(policy: &LabelPolicy, source: &str, is_fraud: bool) -> Current {
        Current {
            rank: policy.rank(source),
            labeled_at_us: 1,
            is_fraud,
            source: source.into(),
        }
    }

    #[test]
    fn an_api_label_cannot_flip_a_chargeback() {
        let p = LabelPolicy::default();
        let cb = current(&p, "ingest:cb.csv", false);
        let v = judge(&p, Some(&cb), true, "api:k1");
        assert!(!v.applies && v.flips);
        assert_eq!(v.provenance.previous_is_fraud, Some(false));
        assert_eq!(
            v.provenance.previous_source.as_deref(),
            Some("ingest:cb.csv")
        );
        assert!(v
            .provenance
            .note
            .as_deref()
            .is_some_and(|n| n.contains("not applied")));
        // An API label over the simulator's, or over another API label, applies.
        let sim = current(&p, "simulate:seed=7", true);
        let v = judge(&p, Some(&sim), false, "api:k1");
        assert!(v.applies && v.flips && v.provenance.note.is_none());
        let api = current(&p, "api:k2", true);
        assert!(judge(&p, Some(&api), false, "api:k1").applies);
        // A first label applies and flips nothing.
        let v = judge(&p, None, true, "api:k1");
        assert!(v.applies && !v.flips && v.provenance.previous_is_fraud.is_none());
        // Another precedence turns it around.
        let q = LabelPolicy::parse("api,ingest").expect("policy");
        let cb = current(&q, "ingest:cb.csv", false);
        assert!(judge(&q, Some(&cb), true, "api:k1").applies);
    }

    #[test]
    fn the_best_label_is_kept() {
        let p = LabelPolicy::default();
        let mut m = HashMap::new();
        keep_best(&mut m, 1, current(&p, "ingest:a", false));
        keep_best(&mut m, 1, current(&p, "api:k", true));
        assert_eq!(m[&1].source, "ingest:a");
    }
}
