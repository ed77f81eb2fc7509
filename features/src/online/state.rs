//! Per-entity event history behind a trait. The in-memory store serves one process; the
//! trait is the seam where a shared store (Redis) can back several scoring replicas (such a
//! store keeps a local [`History`] per entity and writes changes through).

use std::collections::HashMap;

/// Which history: one per (window step, entity columns) of the compiled plan, and one
/// entity value (a customer id, a terminal id, or a pair of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntityKey {
    pub group: u32,
    pub entity: i64,
    /// The second column's value for a pair (`PARTITION BY customer_id, terminal_id`: the
    /// terminal); 0 for an entity of one column. The group says which it is.
    pub entity2: i64,
}

/// The time-ordered events of one entity: for each, its event time, tx_id and the aggregate
/// arguments of its group's windows (`None` = SQL NULL), stored column-wise with prefix sums
/// and prefix counts of every argument, so a SUM/AVG/COUNT over any frame is two binary
/// searches and two subtractions, whatever the window length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Events before `start` are evicted (compacted lazily).
    start: usize,
    times: Vec<i64>,
    tx_ids: Vec<i64>,
    /// `args[k][i]`: argument `k` of event `i`.
    args: Vec<Vec<Option<f64>>>,
    /// `sums[k][i]`: sum of the non-null `args[k][..i]` (one longer than `times`).
    sums: Vec<Vec<f64>>,
    /// `counts[k][i]`: number of non-null `args[k][..i]`.
    counts: Vec<Vec<u64>>,
}

impl History {
    fn new(width: usize) -> Self {
        History {
            args: vec![Vec::new(); width],
            sums: vec![vec![0.0]; width],
            counts: vec![vec![0]; width],
            ..Default::default()
        }
    }

    /// Event times, oldest first.
    pub fn times(&self) -> &[i64] {
        &self.times[self.start..]
    }

    /// tx_id of each event.
    pub fn tx_ids(&self) -> &[i64] {
        &self.tx_ids[self.start..]
    }

    /// Argument `k` of event `i` (indexes as in [`History::times`]).
    #[inline]
    pub fn arg(&self, i: usize, k: usize) -> Option<f64> {
        self.args[k][self.start + i]
    }

    /// Sum and count of the non-null arguments `k` of events `range`.
    #[inline]
    pub fn sum_count(&self, k: usize, range: std::ops::Range<usize>) -> (f64, u64) {
        let (lo, hi) = (self.start + range.start, self.start + range.end);
        (
            self.sums[k][hi] - self.sums[k][lo],
            self.counts[k][hi] - self.counts[k][lo],
        )
    }

    pub fn len(&self) -> usize {
        self.times.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index range of events with `from_ns <= time <= to_ns`.
    #[inline]
    pub fn range(&self, from_ns: i64, to_ns: i64) -> std::ops::Range<usize> {
        let t = self.times();
        // Frames ending at the current transaction usually cover the newest event: no search.
        let hi = match t.last() {
            Some(&newest) if newest > to_ns => t.partition_point(|&x| x <= to_ns),
            _ => t.len(),
        };
        let lo = t[..hi].partition_point(|&x| x < from_ns);
        lo..hi.max(lo)
    }

    /// Recomputes the prefix sums from absolute index `from` on.
    fn refresh_prefix(&mut self, from: usize) {
        for k in 0..self.args.len() {
            let (args, sums, counts) = (&self.args[k], &mut self.sums[k], &mut self.counts[k]);
            sums.truncate(from + 1);
            counts.truncate(from + 1);
            let (mut s, mut c) = (sums[from], counts[from]);
            for v in &args[from..] {
                if let Some(v) = v {
                    s += v;
                    c += 1;
                }
                sums.push(s);
                counts.push(c);
            }
        }
    }

    fn insert(&mut self, time_ns: i64, tx_id: i64, args: &[Option<f64>]) {
        let at = self.start + self.times().partition_point(|&x| x <= time_ns);
        self.times.insert(at, time_ns);
        self.tx_ids.insert(at, tx_id);
        for (column, v) in self.args.iter_mut().zip(args) {
            column.insert(at, *v);
        }
        self.refresh_prefix(at); // O(1) for the usual in-order arrival
    }

    /// Drops events older than `before_ns`; returns how many.
    fn evict(&mut self, before_ns: i64) -> usize {
        let n = self.times().partition_point(|&x| x < before_ns);
        self.start += n;
        if self.start > 64 && self.start * 2 > self.times.len() {
            let cut = self.start;
            self.times.drain(..cut);
            self.tx_ids.drain(..cut);
            for column in &mut self.args {
                column.drain(..cut);
            }
            // Rebase the prefix sums so they stay small (precision) as history rolls on.
            for k in 0..self.sums.len() {
                self.sums[k].drain(..cut);
                self.counts[k].drain(..cut);
            }
            self.start = 0;
            self.refresh_prefix_rebased();
        }
        n
    }

    fn refresh_prefix_rebased(&mut self) {
        for k in 0..self.args.len() {
            self.sums[k] = vec![0.0];
            self.counts[k] = vec![0];
        }
        self.refresh_prefix(0);
    }

    fn update(&mut self, time_ns: i64, tx_id: i64, args: &[Option<f64>]) -> bool {
        let r = self.range(time_ns, time_ns);
        for i in r {
            if self.tx_ids()[i] == tx_id {
                let at = self.start + i;
                for (column, v) in self.args.iter_mut().zip(args) {
                    column[at] = *v;
                }
                self.refresh_prefix(at);
                return true;
            }
        }
        false
    }
}

/// Storage of per-entity, event-time ordered histories.
pub trait EntityStore: Send + Sync {
    /// The history of `key`, if it has one.
    fn history(&self, key: EntityKey) -> Option<&History>;
    /// Inserts an event in time order (after existing equal times), then drops events older
    /// than `horizon_ns` before the entity's newest event.
    fn insert(
        &mut self,
        key: EntityKey,
        time_ns: i64,
        tx_id: i64,
        args: &[Option<f64>],
        horizon_ns: i64,
    );
    /// Replaces the arguments of one stored event (a label arrived); false if not found.
    fn update_args(
        &mut self,
        key: EntityKey,
        time_ns: i64,
        tx_id: i64,
        args: &[Option<f64>],
    ) -> bool;
    /// Drops the events of `group` older than `before_ns`, and entities left with none.
    fn evict(&mut self, group: u32, before_ns: i64);
    /// Number of entities with history.
    fn entities(&self) -> usize;
    /// Number of stored events.
    fn events(&self) -> usize;
}

/// The default store: a hash map (foldhash: ids are not attacker-chosen keys here, and
/// SipHash cost a third of the replay time) of flat histories.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: HashMap<EntityKey, History, foldhash::fast::FixedState>,
    events: usize,
}

impl EntityStore for MemoryStore {
    fn history(&self, key: EntityKey) -> Option<&History> {
        self.map.get(&key)
    }

    fn insert(
        &mut self,
        key: EntityKey,
        time_ns: i64,
        tx_id: i64,
        args: &[Option<f64>],
        horizon_ns: i64,
    ) {
        let h = self
            .map
            .entry(key)
            .or_insert_with(|| History::new(args.len()));
        h.insert(time_ns, tx_id, args);
        self.events += 1;
        let newest = h.times().last().copied().unwrap_or(time_ns);
        self.events -= h.evict(newest.saturating_sub(horizon_ns));
    }

    fn update_args(
        &mut self,
        key: EntityKey,
        time_ns: i64,
        tx_id: i64,
        args: &[Option<f64>],
    ) -> bool {
        self.map
            .get_mut(&key)
            .is_some_and(|h| h.update(time_ns, tx_id, args))
    }

    fn evict(&mut self, group: u32, before_ns: i64) {
        let mut dropped = 0;
        self.map.retain(|key, h| {
            if key.group == group {
                dropped += h.evict(before_ns);
            }
            !h.is_empty()
        });
        self.events -= dropped;
    }

    fn entities(&self) -> usize {
        self.map.len()
    }

    fn events(&self) -> usize {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &MemoryStore, k: EntityKey) -> Vec<i64> {
        s.history(k)
            .map(|h| h.tx_ids().to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn keeps_time_order_evicts_beyond_horizon_and_updates() {
        let mut s = MemoryStore::default();
        let k = EntityKey {
            group: 0,
            entity: 7,
            entity2: 0,
        };
        s.insert(k, 10, 1, &[Some(1.0)], 100);
        s.insert(k, 30, 3, &[Some(3.0)], 100);
        s.insert(k, 20, 2, &[Some(2.0)], 100); // a late arrival lands in order
        assert_eq!(ids(&s, k), vec![1, 2, 3]);
        let h = s.history(k).unwrap();
        assert_eq!(h.range(0, 25), 0..2);
        assert_eq!(h.range(20, 20), 1..2);
        assert_eq!(h.arg(1, 0), Some(2.0));
        assert_eq!(h.sum_count(0, 0..3), (6.0, 3));
        assert_eq!(h.sum_count(0, 1..3), (5.0, 2));
        s.insert(k, 125, 4, &[Some(4.0)], 100); // evicts t=10 and t=20 (older than 125-100)
        assert_eq!(ids(&s, k), vec![3, 4]);
        assert_eq!(s.events(), 2);
        assert!(s.update_args(k, 30, 3, &[None]));
        assert_eq!(s.history(k).unwrap().arg(0, 0), None);
        assert!(!s.update_args(k, 30, 99, &[None]));
        s.evict(0, 1_000);
        assert_eq!(s.entities(), 0);
        assert_eq!(s.events(), 0);
    }

    #[test]
    fn compaction_keeps_contents() {
        let mut s = MemoryStore::default();
        let k = EntityKey {
            group: 1,
            entity: 1,
            entity2: 0,
        };
        for i in 0..1000 {
            s.insert(k, i * 10, i, &[Some(i as f64), None], 200);
        }
        let h = s.history(k).unwrap();
        assert_eq!(h.len(), 21);
        assert_eq!(h.tx_ids()[0], 979);
        assert_eq!(h.arg(0, 0), Some(979.0));
        assert_eq!(h.arg(0, 1), None);
        assert_eq!(h.sum_count(0, 0..21), ((979..1000).sum::<i64>() as f64, 21));
        assert_eq!(h.sum_count(1, 0..21), (0.0, 0));
    }

    /// Two pairs sharing a customer (or a terminal) are two histories.
    #[test]
    fn pairs_are_distinct_entities() {
        let mut s = MemoryStore::default();
        let pair = |entity, entity2| EntityKey {
            group: 2,
            entity,
            entity2,
        };
        s.insert(pair(1, 5), 10, 1, &[Some(1.0)], 100);
        s.insert(pair(1, 6), 20, 2, &[Some(2.0)], 100);
        s.insert(pair(2, 5), 30, 3, &[Some(3.0)], 100);
        s.insert(pair(1, 5), 40, 4, &[Some(4.0)], 100);
        assert_eq!(s.entities(), 3);
        assert_eq!(
            s.history(pair(1, 5)).map(|h| h.tx_ids().to_vec()),
            Some(vec![1, 4])
        );
        assert_eq!(s.history(pair(1, 6)).map(|h| h.len()), Some(1));
        assert!(s.history(pair(5, 1)).is_none());
    }
}
