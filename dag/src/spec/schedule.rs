//! Cron schedules in a time zone and the instants they fire at.
//!
//! Schedules are parsed with `croner` 3 (seconds optional; [`Schedule::six_field`] gives the
//! form with seconds). Fire times are croner's matches turned into instants by the rules of the
//! DAG's time zone (`chrono-tz`) at each date, so they are right across DST changes: a fixed
//! time in the spring gap fires once at the end of the gap, one in the repeated autumn hour
//! fires once, the first time, and interval patterns keep their real-time interval. The
//! scheduler fires exactly these instants (it sleeps until the next one and computes the one
//! after at each fire). It used to hand the six-field form to tokio-cron-scheduler 0.15, whose
//! `Job::new_tz` froze the zone's UTC offset of the moment the job was created, an hour off
//! after each DST change (issue #22).
//!
//! Apart from the loader because this is the one part with its own arithmetic (local time
//! versus real time), tested on its own.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use chrono::{DateTime, LocalResult, Offset, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, JobType};

use super::error::{ScheduleError, SpecErrorKind};

/// [`Schedule::between`] (and so [`super::DagSpec::fire_times_between`]) refuses ranges with
/// more fire times than this.
pub const MAX_FIRE_TIMES: usize = 100_000;

/// A validated cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    six_field: String,
    cron: Cron,
    timezone: Tz,
    /// croner's "interval" pattern (wildcard or stepped seconds, minutes or hours): runs in
    /// both passes of a repeated local hour. Fixed-time patterns run once.
    interval: bool,
    /// How far local order can differ from real-time order in this zone.
    lookahead: chrono::TimeDelta,
}

/// The expression as written.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.six_field == other.six_field && self.timezone == other.timezone
    }
}

impl Schedule {
    /// Parses a 5-field (`min hour dom mon dow`) or 6-field (`sec min hour dom mon dow`)
    /// expression, or one of `@yearly @annually @monthly @weekly @daily @midnight @hourly`,
    /// as croner does with seconds optional and no year field.
    pub fn parse(expr: &str, timezone: Tz) -> Result<Schedule, SpecErrorKind> {
        let trimmed = expr.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ => trimmed,
        };
        let invalid = |message: String| SpecErrorKind::InvalidSchedule {
            expr: expr.to_string(),
            message,
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expanded)
            .map_err(|e| invalid(e.to_string()))?;
        let mut fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() == 5 {
            fields.insert(0, "0");
        }
        let (Some(dom), Some(dow)) = (fields.get(3), fields.get(5)) else {
            return Err(invalid(format!(
                "expected 5 or 6 fields, got {}",
                fields.len()
            )));
        };
        let restricted = |f: &str| f != "*" && f != "?";
        if restricted(dom) && restricted(dow) && !dow.starts_with('+') {
            return Err(SpecErrorKind::AmbiguousSchedule {
                expr: expr.to_string(),
            });
        }
        let schedule = Schedule {
            expr: expr.to_string(),
            six_field: fields.join(" "),
            interval: cron.determine_job_type() == JobType::IntervalWildcard,
            cron,
            timezone,
            lookahead: if has_offset_changes(timezone) {
                chrono::TimeDelta::hours(3)
            } else {
                chrono::TimeDelta::zero()
            },
        };
        // Any fixed instant will do: without a year field a pattern that fires once fires forever.
        if let Some(reference) = DateTime::from_timestamp(1_704_067_200, 0) {
            if schedule.next_after(reference, 1).is_empty() {
                return Err(SpecErrorKind::ScheduleNeverFires {
                    expr: expr.to_string(),
                });
            }
        }
        Ok(schedule)
    }

    /// The expression as written in the file.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The 6-field form (`sec min hour dom mon dow`), as `dag show` prints it and as cron
    /// implementations that require seconds read it.
    pub fn six_field(&self) -> &str {
        &self.six_field
    }

    /// The time zone the fields are read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The parsed croner pattern.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    /// Fire times strictly after `after`, increasing, as an endless iterator (it ends only
    /// if the schedule does).
    pub fn iter_after(&self, after: DateTime<Utc>) -> FireTimes<'_> {
        // Whole seconds: croner keeps the cursor's fraction of a second in what it finds, and
        // a fire time is a whole second (the loop in `scheduler` starts from `Utc::now()`).
        let start = after
            .checked_sub_signed(self.lookahead)
            .unwrap_or(after)
            .trunc_subsecs(0);
        FireTimes {
            schedule: self,
            cursor: Some(start.with_timezone(&self.timezone)),
            after,
            frontier: None,
            pending: BinaryHeap::new(),
        }
    }

    /// The next `n` fire times strictly after `after` (fewer only if the schedule ends).
    pub fn next_after(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.iter_after(after).take(n).collect()
    }

    /// Fire times `t` with `from < t <= to`, increasing.
    pub fn between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
        let mut out = Vec::new();
        for t in self.iter_after(from).take_while(|t| *t <= to) {
            if out.len() == MAX_FIRE_TIMES {
                return Err(ScheduleError::TooMany {
                    limit: MAX_FIRE_TIMES,
                    from,
                    to,
                });
            }
            out.push(t);
        }
        Ok(out)
    }

    /// The last fire time strictly before `at`.
    pub fn previous_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner's backward search mishandles DST gaps; search forward from further and
        // further back instead (a leap-day schedule can be 8 years from its previous run).
        const LOOKBACK_SECS: [i64; 7] = [
            60,
            3600,
            86_400,
            8 * 86_400,
            32 * 86_400,
            367 * 86_400,
            3_300 * 86_400,
        ];
        LOOKBACK_SECS.iter().find_map(|&secs| {
            let from = at.checked_sub_signed(chrono::TimeDelta::seconds(secs))?;
            self.iter_after(from).take_while(|t| *t < at).last()
        })
    }

    /// The instants of a local time croner found: both of an ambiguous time (DST end) for an
    /// interval pattern, the first one for a fixed-time pattern (croner's rule).
    fn instants(&self, found: &DateTime<Tz>) -> Vec<DateTime<Utc>> {
        match self.timezone.from_local_datetime(&found.naive_local()) {
            LocalResult::Ambiguous(a, b) if self.interval => {
                let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
                vec![a.min(b), a.max(b)]
            }
            _ => vec![found.with_timezone(&Utc)],
        }
    }
}

/// Fire times of a [`Schedule`] after an instant, increasing ([`Schedule::iter_after`]).
///
/// croner searches in local time, so around a DST change its matches are not in real-time
/// order (the second 02:00 of the autumn night comes after the first 02:30), and its own
/// iterator skips every other second of a per-second pattern. This iterator asks croner
/// for one local match at a time and releases instants in UTC order once no later local
/// match can precede them (the largest offset change, 3 hours, is the look-ahead; none in a
/// zone without DST).
#[derive(Debug)]
pub struct FireTimes<'a> {
    schedule: &'a Schedule,
    /// Where croner's next search starts; `None` once it found nothing more.
    cursor: Option<DateTime<Tz>>,
    /// The last instant returned (or the start).
    after: DateTime<Utc>,
    /// The earliest instant of the last local match found.
    frontier: Option<DateTime<Utc>>,
    pending: BinaryHeap<Reverse<DateTime<Utc>>>,
}

impl Iterator for FireTimes<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            if let Some(&Reverse(top)) = self.pending.peek() {
                let settled = match (&self.cursor, self.frontier) {
                    (None, _) => true,
                    (Some(_), Some(f)) => f > top + self.schedule.lookahead,
                    (Some(_), None) => false,
                };
                if settled {
                    self.pending.pop();
                    if top > self.after {
                        self.after = top;
                        return Some(top);
                    }
                    continue;
                }
            }
            // Nothing settled: find the next local match (or stop when croner has none).
            let cursor = self.cursor.take()?;
            if let Ok(found) = self.schedule.cron.find_next_occurrence(&cursor, false) {
                let instants = self.schedule.instants(&found);
                self.frontier = instants.first().copied();
                self.pending.extend(
                    instants
                        .into_iter()
                        .filter(|t| *t > self.after)
                        .map(Reverse),
                );
                self.cursor = Some(found);
            }
        }
    }
}

/// Whether the zone's UTC offset changes between 2000 and 2040 (DST or a change of
/// standard time), sampled on the 1st and 15th of every month.
fn has_offset_changes(tz: Tz) -> bool {
    let offset = |secs: i64| {
        DateTime::from_timestamp(secs, 0).map(|t| {
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        })
    };
    let first = offset(946_684_800);
    (0..80 * 12).any(|half_month| offset(946_684_800 + half_month * 1_314_900) != first)
}

pub(crate) fn parse_timezone(name: &str) -> Result<Tz, SpecErrorKind> {
    name.parse::<Tz>()
        .map_err(|_| SpecErrorKind::InvalidTimezone {
            name: name.to_string(),
            suggestion: chrono_tz::TZ_VARIANTS
                .iter()
                .find(|tz| tz.name().eq_ignore_ascii_case(name.trim()))
                .map(|tz| tz.name().to_string()),
        })
}
