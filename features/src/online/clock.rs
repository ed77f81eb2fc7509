//! Event time of the online state: a watermark that one request cannot move far.
//!
//! Eviction (idle entities, the retry memory) and the "late" flag are relative to the
//! watermark, so a single far-future timestamp must not reach it: before this, one `/score`
//! dated today against the 2018 lake moved it by years and the next sweep dropped every
//! entity's history. The rules, as stream processors do it (Flink's bounded out-of-orderness,
//! Kafka Streams' grace):
//!
//! * The watermark is the newest accepted event time. An event more than `max_skew` ahead of
//!   it is refused (or clamped to the watermark, by policy), so one event moves it at most
//!   `max_skew`; history is kept `max_skew` longer than the windows need, so events up to
//!   `max_skew` behind it get exactly the in-order features. Older ones are scored, flagged late.
//! * Liveness after a gap (a restart after downtime, traffic resuming after a quiet night):
//!   when at least `quorum` of the last `2 * quorum - 1` arrivals (a majority) were ahead, the
//!   traffic agrees that time moved on, and the watermark jumps to the median of those ahead
//!   times. A minority of skewed clients never moves it; a majority of traffic does.

use std::collections::VecDeque;

/// Nanoseconds in an hour.
pub const HOUR_NS: i64 = 3_600 * 1_000_000_000;

/// What to do with an event too far ahead of the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SkewPolicy {
    /// Refuse the request (the server answers 422 naming `tx_ts`).
    #[default]
    Refuse,
    /// Score and store it at the watermark's time instead.
    Clamp,
}

impl std::str::FromStr for SkewPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "refuse" => Ok(SkewPolicy::Refuse),
            "clamp" => Ok(SkewPolicy::Clamp),
            other => Err(format!(
                "event skew policy '{other}' is not one of: refuse, clamp"
            )),
        }
    }
}

/// The event-time rules of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTimeRules {
    /// How far ahead of the watermark an event may be, and how far behind it one still gets
    /// exact features (history is kept this much longer than the windows need).
    pub max_skew_ns: i64,
    pub policy: SkewPolicy,
    /// Ahead arrivals, among the last `2 * quorum - 1`, that move the watermark (at least 1).
    pub quorum: usize,
}

impl Default for EventTimeRules {
    fn default() -> Self {
        EventTimeRules {
            max_skew_ns: HOUR_NS,
            policy: SkewPolicy::Refuse,
            quorum: 100,
        }
    }
}

/// How an admitted event's time relates to the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Within `max_skew` of the watermark (either side): features equal the in-order ones.
    OnTime,
    /// More than `max_skew` behind the watermark: scored with the history still held, which may
    /// lack events at the far end of its windows.
    Late,
    /// Was too far ahead; scored and stored at the watermark's time (microseconds).
    Clamped { requested_ts_us: i64 },
}

/// An event refused for being too far ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahead {
    /// Its position in the batch.
    pub index: usize,
    pub tx_ts_us: i64,
    /// The watermark it was judged against, in microseconds.
    pub watermark_us: i64,
    pub max_skew_ns: i64,
}

/// The watermark and the quorum tracker.
#[derive(Debug, Clone)]
pub struct EventClock {
    rules: EventTimeRules,
    /// Newest accepted event time (ns); `i64::MIN` before the first one.
    watermark_ns: i64,
    /// Arrivals judged so far (accepted or not).
    arrivals: u64,
    /// The most recent ahead arrivals: (arrival number, event time), at most `quorum`.
    ahead: VecDeque<(u64, i64)>,
    jumps: u64,
}

impl EventClock {
    pub fn new(rules: EventTimeRules) -> Self {
        EventClock {
            rules: EventTimeRules {
                quorum: rules.quorum.max(1),
                max_skew_ns: rules.max_skew_ns.max(0),
                ..rules
            },
            watermark_ns: i64::MIN,
            arrivals: 0,
            ahead: VecDeque::new(),
            jumps: 0,
        }
    }

    pub fn rules(&self) -> &EventTimeRules {
        &self.rules
    }

    /// The watermark in event-time nanoseconds, if any event was seen.
    pub fn watermark_ns(&self) -> Option<i64> {
        (self.watermark_ns != i64::MIN).then_some(self.watermark_ns)
    }

    /// Times the watermark jumped by quorum.
    pub fn jumps(&self) -> u64 {
        self.jumps
    }

    /// An event was applied: the watermark follows it (callers admit events first, so this
    /// moves at most `max_skew` per event; replays of the lake in order need no admission).
    pub fn advance(&mut self, event_ns: i64) {
        self.watermark_ns = self.watermark_ns.max(event_ns);
    }

    /// Judges one arrival with event time `event_ns` against `watermark_ns` (the watermark as
    /// it will be once the events before it in the same batch are applied). `None`: ahead.
    pub fn judge(&mut self, event_ns: i64, watermark_ns: i64) -> Option<Timing> {
        self.arrivals += 1;
        if watermark_ns == i64::MIN {
            return Some(Timing::OnTime); // the first event of an empty state sets the clock
        }
        let skew = self.rules.max_skew_ns;
        if event_ns > watermark_ns.saturating_add(skew) {
            self.note_ahead(event_ns);
            return None;
        }
        Some(if event_ns < watermark_ns.saturating_sub(skew) {
            Timing::Late
        } else {
            Timing::OnTime
        })
    }

    /// Records an ahead arrival; when a quorum of recent traffic is ahead, the watermark jumps
    /// to the median of those times. Returns whether it jumped.
    fn note_ahead(&mut self, event_ns: i64) -> bool {
        let quorum = self.rules.quorum;
        self.ahead.push_back((self.arrivals, event_ns));
        while self.ahead.len() > quorum {
            self.ahead.pop_front();
        }
        let recent = self
            .ahead
            .front()
            .is_some_and(|&(n, _)| self.arrivals - n < 2 * quorum as u64 - 1);
        if self.ahead.len() < quorum || !recent {
            return false;
        }
        let mut times: Vec<i64> = self.ahead.iter().map(|&(_, t)| t).collect();
        let mid = times.len() / 2;
        let median = *times.select_nth_unstable(mid).1;
        self.ahead.clear();
        if median <= self.watermark_ns {
            return false;
        }
        tracing::warn!(
            from_ns = self.watermark_ns,
            to_ns = median,
            quorum,
            "event-time watermark jumped: most recent traffic is ahead of it"
        );
        self.watermark_ns = median;
        self.jumps += 1;
        true
    }
}

/// The anchor of a lake's history, robust to a few far-future rows: the newest of the newest
/// `2 * quorum` event times that is no further ahead of their median than twice as far as the
/// oldest of them is behind it, or `quiet` if that is more, plus `max_skew` (rows beyond are
/// outliers). `quiet` (a day, in the caller's units) is the daily cycle: the newest rows of a
/// lake with little traffic can be a busy morning and a thin evening, and the evening's last
/// rows are not outliers. `newest` is sorted ascending; `None` if empty.
pub fn robust_anchor(newest: &[i64], max_skew: i64, quiet: i64) -> Option<i64> {
    let median = *newest.get(newest.len().saturating_sub(1) / 2)?;
    let below = median.saturating_sub(newest[0]);
    let limit = median
        .saturating_add(below.saturating_mul(2).max(quiet))
        .saturating_add(max_skew);
    newest.iter().rev().find(|&&t| t <= limit).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(quorum: usize) -> EventTimeRules {
        EventTimeRules {
            max_skew_ns: 10,
            policy: SkewPolicy::Refuse,
            quorum,
        }
    }

    #[test]
    fn judges_ahead_late_and_on_time_against_the_skew() {
        let mut c = EventClock::new(rules(3));
        assert_eq!(c.judge(1_000, i64::MIN), Some(Timing::OnTime));
        c.advance(1_000);
        assert_eq!(c.judge(1_010, 1_000), Some(Timing::OnTime));
        assert_eq!(c.judge(1_011, 1_000), None);
        assert_eq!(c.judge(990, 1_000), Some(Timing::OnTime));
        assert_eq!(c.judge(989, 1_000), Some(Timing::Late));
        assert_eq!(c.watermark_ns(), Some(1_000));
    }

    #[test]
    fn a_minority_ahead_never_moves_the_watermark_a_majority_does() {
        let mut c = EventClock::new(rules(4));
        c.advance(1_000);
        // One in three arrivals far ahead, forever: never a quorum of the last 8.
        for i in 0..300 {
            let w = c.watermark_ns().unwrap_or(i64::MIN);
            if i % 3 == 0 {
                assert_eq!(c.judge(1_000_000, w), None);
            } else {
                assert!(c.judge(1_000, w).is_some());
            }
        }
        assert_eq!(c.watermark_ns(), Some(1_000));
        assert_eq!(c.jumps(), 0);
        for _ in 0..8 {
            assert!(c.judge(1_001, 1_000).is_some());
        }
        // Traffic resumes after a gap: every arrival is ahead; the 4th moves the watermark
        // to the median of the four.
        for (i, t) in [5_000, 5_001, 5_002, 5_003].into_iter().enumerate() {
            assert_eq!(c.judge(t, 1_000), None);
            assert_eq!(c.jumps(), u64::from(i == 3));
        }
        assert_eq!(c.watermark_ns(), Some(5_002));
        assert_eq!(c.judge(5_004, 5_002), Some(Timing::OnTime));
    }

    #[test]
    fn the_anchor_ignores_far_future_rows() {
        let day = 86_400;
        let mut times: Vec<i64> = (0..199).map(|i| 1_000_000 + i * 30).collect();
        times.push(1_000_000 + 3000 * day); // one row years ahead
        times.sort_unstable();
        assert_eq!(robust_anchor(&times, 3600, day), Some(1_000_000 + 198 * 30));
        // Without outliers the anchor is the newest time.
        times.pop();
        assert_eq!(robust_anchor(&times, 3600, day), times.last().copied());
        assert_eq!(robust_anchor(&[], 3600, day), None);
        assert_eq!(robust_anchor(&[7], 3600, day), Some(7));
        // A quiet night (a gap wider than the skew) among the newest rows is not an outlier.
        let gap: Vec<i64> = (0..150)
            .map(|i| i * 60)
            .chain((0..50).map(|i| 9_000 + 7_200 + i * 60))
            .collect();
        assert_eq!(robust_anchor(&gap, 3600, day), gap.last().copied());
        // A busy morning then a thin evening (the newest rows of a small lake): the evening's
        // last rows are not outliers, though far past twice the morning's spread.
        let evening: Vec<i64> = (0..100)
            .map(|i| i * 144)
            .chain((0..100).map(|i| 14_400 + i * 360))
            .collect();
        assert_eq!(robust_anchor(&evening, 3600, day), evening.last().copied());
        assert!(robust_anchor(&evening, 3600, 0) < evening.last().copied());
    }
}
