//! The states of runs and task attempts and what triggered a run, as types.
//!
//! They used to be strings compared in some thirty places (`state == "failed"`), where a typo
//! is a silent bug. The lake keeps them as strings (`dag_runs.state`, `task_runs.state`,
//! `dag_runs.trigger`: the tables' schemas and values are unchanged), so each type has the
//! stored name ([`RunState::as_str`], also its `Display` and serde form) and `FromStr` to read
//! it back.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Defines a string-backed enum: variants with their stored names, `as_str`, `Display`,
/// `FromStr` (naming the accepted values) and `Serialize` as the stored name.
macro_rules! named {
    ($(#[$m:meta])* $vis:vis enum $name:ident ($what:literal) {
        $($(#[$vm:meta])* $variant:ident = $text:literal),* $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vm])* $variant),*
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The name stored in the lake and printed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<$name, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        format!("unknown {} {s:?} (known: {})", $what, names.join(", "))
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

named! {
    /// A DAG run's state (`dag_runs.state`).
    pub enum RunState ("run state") {
        /// Started and not finished (or its process died: `Runner::recover` closes it).
        Running = "running",
        /// Every task succeeded or was skipped.
        Success = "success",
        /// A task failed, or an upstream failure stopped one.
        Failed = "failed",
    }
}

named! {
    /// A task attempt's state (`task_runs.state`).
    pub enum TaskState ("task state") {
        /// The attempt is running.
        Running = "running",
        /// The attempt succeeded.
        Success = "success",
        /// The attempt failed (or the task could not start: its condition did not evaluate,
        /// or the run lost its claim).
        Failed = "failed",
        /// Not run: its condition was false, or an upstream task was skipped.
        Skipped = "skipped",
        /// Not run: an upstream task failed.
        UpstreamFailed = "upstream_failed",
    }
}

named! {
    /// What started a run (`dag_runs.trigger`).
    pub enum Trigger ("trigger") {
        /// Its schedule fired.
        Schedule = "schedule",
        /// `fraudlake dag run`.
        Manual = "manual",
        /// `fraudlake dag backfill`.
        Backfill = "backfill",
        /// A fire time missed while no scheduler ran (`catchup = true`).
        Catchup = "catchup",
    }
}

impl TaskState {
    /// Whether this state fails the run (and blocks the tasks downstream).
    pub fn is_failure(self) -> bool {
        matches!(self, TaskState::Failed | TaskState::UpstreamFailed)
    }

    /// Whether the attempt has ended (it is no longer running).
    pub fn is_finished(self) -> bool {
        self != TaskState::Running
    }
}

impl RunState {
    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        self != RunState::Running
    }
}

impl Trigger {
    /// Whether the scheduler started the run (on time or catching up): the runs catch-up
    /// counts from. Manual runs and backfills do not move the schedule.
    pub fn is_scheduled(self) -> bool {
        matches!(self, Trigger::Schedule | Trigger::Catchup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>(), Ok(*s));
        }
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>(), Ok(*s));
        }
        for t in Trigger::ALL {
            assert_eq!(t.to_string().parse::<Trigger>(), Ok(*t));
        }
        assert_eq!(TaskState::UpstreamFailed.as_str(), "upstream_failed");
        assert_eq!(
            "done".parse::<RunState>(),
            Err("unknown run state \"done\" (known: running, success, failed)".to_string())
        );
        assert_eq!(
            serde_json::to_string(&Trigger::Catchup).unwrap_or_default(),
            "\"catchup\""
        );
    }
}
