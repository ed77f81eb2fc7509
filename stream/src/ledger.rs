//! The consumed offsets, kept in the lake itself. Each Delta commit of a landing carries one
//! `txn` action per topic partition it consumed from (app id `<group>/<topic>/<partition>`,
//! version = the last offset it includes): the rows and the offsets become visible in the same
//! atomic commit. The broker's committed offsets are only a hint kept in step afterwards; the
//! lake is the truth, so a crash between the two neither drops nor repeats a message.

use std::collections::BTreeMap;

use deltalake::kernel::Transaction as Txn;
use deltalake::DeltaTable;

use crate::Result;

/// A topic partition.
pub type TopicPartition = (String, i32);

/// The Delta application id of a group's consumption of one topic partition.
pub fn app_id(group: &str, topic: &str, partition: i32) -> String {
    format!("{group}/{topic}/{partition}")
}

/// The last offset `table` holds of each of `partitions` for `group` (absent: none yet).
pub async fn versions(
    table: &DeltaTable,
    group: &str,
    partitions: impl IntoIterator<Item = &TopicPartition>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let mut out = BTreeMap::new();
    let snapshot = table.snapshot()?;
    let log_store = table.log_store();
    for (topic, partition) in partitions {
        let id = app_id(group, topic, *partition);
        if let Some(v) = snapshot.transaction_version(log_store.as_ref(), id).await? {
            out.insert((topic.clone(), *partition), v);
        }
    }
    Ok(out)
}

/// The `txn` actions recording `last` (the last offset per partition) for `group`.
pub fn actions(group: &str, last: &BTreeMap<TopicPartition, i64>) -> Vec<Txn> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    last.iter()
        .map(|((topic, partition), offset)| {
            Txn::new_with_last_update(app_id(group, topic, *partition), *offset, Some(now_ms))
        })
        .collect()
}
