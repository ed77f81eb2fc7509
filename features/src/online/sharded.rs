//! A map from tx_id split into many small maps, for the engine's memory of recent
//! transactions (a million entries and more on a busy server).
//!
//! Why: a hash map grows by doubling, and one doubling rehashes every entry at once. For the
//! one map the engine had, that was a single stall of ~150 ms on the request thread at about
//! 460k entries (allocating and zeroing the new table's huge pages, then moving the entries;
//! `perf record` under `bench/run.sh h`), twice as long at the next doubling: the cold-start
//! tail of issue #24, since a server's first minutes are when the map grows. Split in
//! [`SHARDS`] maps by a hash of the key, each grows on its own, with 1/[`SHARDS`] of the work,
//! and the growths fall on different requests.

use std::collections::HashMap;

type Shard<V> = HashMap<i64, V, foldhash::fast::FixedState>;

/// Number of maps (a power of two).
pub const SHARDS: usize = 64;

/// A map from tx_id to `V`, in [`SHARDS`] maps.
pub struct Sharded<V> {
    shards: Vec<Shard<V>>,
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl<V> Sharded<V> {
    /// The shard of `key`: the top bits of a multiplicative hash (tx_ids are often
    /// sequential; their low bits alone would fill the shards in turn, which is fine, but
    /// other id schemes may share low bits).
    fn shard(key: i64) -> usize {
        ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARDS.trailing_zeros()))
            as usize
    }

    pub fn get(&self, key: &i64) -> Option<&V> {
        self.shards[Self::shard(*key)].get(key)
    }

    pub fn get_mut(&mut self, key: &i64) -> Option<&mut V> {
        self.shards[Self::shard(*key)].get_mut(key)
    }

    pub fn contains_key(&self, key: &i64) -> bool {
        self.shards[Self::shard(*key)].contains_key(key)
    }

    pub fn insert(&mut self, key: i64, value: V) -> Option<V> {
        self.shards[Self::shard(key)].insert(key, value)
    }

    pub fn remove(&mut self, key: &i64) -> Option<V> {
        self.shards[Self::shard(*key)].remove(key)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_one_map_and_spreads_sequential_and_strided_ids() {
        let mut m = Sharded::default();
        for id in 0..10_000i64 {
            assert_eq!(m.insert(id * 64, id), None);
        }
        assert_eq!(m.insert(64, -1), Some(1));
        assert_eq!(m.get(&64), Some(&-1));
        *m.get_mut(&128).expect("present") += 5;
        assert_eq!(m.get(&128), Some(&7));
        assert!(m.contains_key(&0) && !m.contains_key(&1));
        assert_eq!(m.remove(&0), Some(0));
        assert_eq!(m.remove(&0), None);
        assert_eq!(m.len(), 9_999);
        assert!(!m.is_empty());
        // Ids with equal low bits (a stride of 64) still land in every shard, evenly.
        let sizes: Vec<usize> = m.shards.iter().map(|s| s.len()).collect();
        let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
        assert!(
            lo.is_some_and(|l| *l > 100) && hi.is_some_and(|h| *h < 220),
            "{sizes:?}"
        );
        for id in [i64::MIN, -1, i64::MAX] {
            m.insert(id, 0);
            assert!(m.contains_key(&id));
        }
    }
}
