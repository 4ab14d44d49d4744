//! A run's status: SSM's automation statuses plus the console's own for a start SSM has not (yet)
//! acknowledged, one type for the server, the store and the browser.
//!
//! On the wire and in the store it is SSM's string (`InProgress`, `Success`, ...), so nothing that
//! reads the API sees a change; a status SSM adds later survives as [`RunStatus::Other`].

use serde::{Deserialize, Serialize};
use std::fmt;

// Serialized by hand as its string (`into = "String"` is kept for the schema): through `into`,
// serde would clone every status into a new String, one per row of a history page.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(from = "String", into = "String")]
pub enum RunStatus {
    // The console's own, before SSM has the run.
    /// Written to the store; the start is being sent.
    Recorded,
    /// SSM said "not now" (its concurrency quota or throttling): nothing was started; the console
    /// sends it again when SSM has room.
    Queued,
    /// SSM's answer was lost or unclear (a 5xx, a timeout): the console is looking for the run.
    Unknown,
    /// SSM refused the start: nothing was started.
    Refused,
    /// Held until a second person approves it; nothing is sent until then.
    AwaitingApproval,
    /// A second person rejected the held start, or its approval expired: nothing was sent. (SSM
    /// uses the same word for an automation whose approval step was rejected.)
    Rejected,
    // SSM's.
    /// Waiting in SSM's queue for the concurrency quota.
    Pending,
    InProgress,
    Waiting,
    Cancelling,
    Success,
    Failed,
    TimedOut,
    Cancelled,
    Other(String),
}

/// How a status reads at a glance (the badge's colour and icon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Waiting,
    Running,
    Succeeded,
    Failed,
    Stopped,
}

impl Tone {
    /// Where a run of this tone goes in a list that puts what needs a look first: failures, then
    /// what is running, waiting, stopped, and last what succeeded.
    pub fn attention(self) -> u8 {
        match self {
            Tone::Failed => 0,
            Tone::Running => 1,
            Tone::Waiting => 2,
            Tone::Stopped => 3,
            Tone::Succeeded => 4,
        }
    }
}

/// SSM's terminal automation statuses that have no variant of their own.
const OTHER_TERMINAL: &[&str] = &[
    "ChangeCalendarOverrideRejected",
    "CompletedWithSuccess",
    "CompletedWithFailure",
    "Exited",
];

impl RunStatus {
    /// Every terminal status as it is written on the wire and in the store (for queries).
    pub const TERMINAL: &'static [&'static str] = &[
        "Success",
        "Failed",
        "TimedOut",
        "Cancelled",
        "Refused",
        "Rejected",
        "ChangeCalendarOverrideRejected",
        "CompletedWithSuccess",
        "CompletedWithFailure",
        "Exited",
    ];

    pub fn parse(s: &str) -> RunStatus {
        match s {
            "Recorded" => RunStatus::Recorded,
            "Queued" => RunStatus::Queued,
            "Unknown" => RunStatus::Unknown,
            "Refused" => RunStatus::Refused,
            "AwaitingApproval" => RunStatus::AwaitingApproval,
            "Rejected" => RunStatus::Rejected,
            "Pending" => RunStatus::Pending,
            "InProgress" => RunStatus::InProgress,
            "Waiting" => RunStatus::Waiting,
            "Cancelling" => RunStatus::Cancelling,
            "Success" => RunStatus::Success,
            "Failed" => RunStatus::Failed,
            "TimedOut" => RunStatus::TimedOut,
            "Cancelled" => RunStatus::Cancelled,
            other => RunStatus::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            RunStatus::Recorded => "Recorded",
            RunStatus::Queued => "Queued",
            RunStatus::Unknown => "Unknown",
            RunStatus::Refused => "Refused",
            RunStatus::AwaitingApproval => "AwaitingApproval",
            RunStatus::Rejected => "Rejected",
            RunStatus::Pending => "Pending",
            RunStatus::InProgress => "InProgress",
            RunStatus::Waiting => "Waiting",
            RunStatus::Cancelling => "Cancelling",
            RunStatus::Success => "Success",
            RunStatus::Failed => "Failed",
            RunStatus::TimedOut => "TimedOut",
            RunStatus::Cancelled => "Cancelled",
            RunStatus::Other(s) => s,
        }
    }

    /// Whether the run will not change any more. A refused start is final; an unknown one is not.
    pub fn is_terminal(&self) -> bool {
        Self::TERMINAL.contains(&self.as_str())
    }

    /// Whether it can still be stopped in SSM.
    pub fn can_stop(&self) -> bool {
        matches!(
            self,
            RunStatus::Pending | RunStatus::InProgress | RunStatus::Waiting
        )
    }

    pub fn tone(&self) -> Tone {
        match self {
            RunStatus::Recorded
            | RunStatus::Queued
            | RunStatus::Unknown
            | RunStatus::AwaitingApproval
            | RunStatus::Pending
            | RunStatus::Waiting => Tone::Waiting,
            RunStatus::InProgress | RunStatus::Cancelling => Tone::Running,
            RunStatus::Success => Tone::Succeeded,
            RunStatus::Failed | RunStatus::TimedOut | RunStatus::Refused => Tone::Failed,
            RunStatus::Cancelled | RunStatus::Rejected => Tone::Stopped,
            RunStatus::Other(s) if s == "CompletedWithSuccess" => Tone::Succeeded,
            RunStatus::Other(s) if OTHER_TERMINAL.contains(&s.as_str()) => Tone::Failed,
            RunStatus::Other(_) => Tone::Running,
        }
    }

    /// What a person reads.
    pub fn label(&self) -> &str {
        match self {
            RunStatus::Recorded => "Starting",
            RunStatus::Queued => "Queued by the console",
            RunStatus::Unknown => "Checking with SSM",
            RunStatus::AwaitingApproval => "Waiting for approval",
            RunStatus::Pending => "Waiting (SSM queue)",
            RunStatus::InProgress => "In progress",
            RunStatus::TimedOut => "Timed out",
            other => other.as_str(),
        }
    }
}

impl From<String> for RunStatus {
    fn from(s: String) -> Self {
        RunStatus::parse(&s)
    }
}

impl From<&str> for RunStatus {
    fn from(s: &str) -> Self {
        RunStatus::parse(s)
    }
}

impl From<RunStatus> for String {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl Serialize for RunStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_wire_string() {
        for s in [
            "Recorded",
            "Queued",
            "Unknown",
            "Refused",
            "AwaitingApproval",
            "Rejected",
            "Pending",
            "InProgress",
            "Waiting",
            "Cancelling",
            "Success",
            "Failed",
            "TimedOut",
            "Cancelled",
            "CompletedWithFailure",
            "SomethingNew",
        ] {
            let parsed = RunStatus::parse(s);
            assert_eq!(parsed.as_str(), s);
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<RunStatus>(&json).unwrap(), parsed);
        }
    }

    #[test]
    fn queued_and_pending_runs_are_waiting_not_finished() {
        for s in [RunStatus::Queued, RunStatus::Pending, RunStatus::Unknown] {
            assert!(!s.is_terminal(), "{s}");
            assert_eq!(s.tone(), Tone::Waiting, "{s}");
        }
        assert!(RunStatus::Refused.is_terminal());
        // A held start waits for a person, it is not running; a rejected one ran nothing.
        assert_eq!(RunStatus::parse("AwaitingApproval"), RunStatus::AwaitingApproval);
        assert_eq!(RunStatus::AwaitingApproval.tone(), Tone::Waiting);
        assert!(!RunStatus::AwaitingApproval.is_terminal());
        assert!(!RunStatus::AwaitingApproval.can_stop());
        assert_eq!(RunStatus::parse("Rejected"), RunStatus::Rejected);
        assert!(RunStatus::Rejected.is_terminal());
        assert_eq!(RunStatus::Rejected.tone(), Tone::Stopped);
        assert!(RunStatus::parse("CompletedWithFailure").is_terminal());
        assert!(!RunStatus::parse("SomethingNew").is_terminal());
        assert!(RunStatus::Pending.can_stop());
        assert!(!RunStatus::Cancelling.can_stop());
    }
}
