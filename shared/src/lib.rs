//! The API boundary between browser and server: wire types and runbook parameter validation.
//!
//! Everything here compiles for both wasm32 (the Leptos frontend) and the server, so a value the
//! browser accepts is exactly a value the server accepts. Validation follows the published
//! `AWSSupport-ConfigureEC2Metadata` document (see `params`).

pub mod api;
pub mod fleet;
pub mod params;
pub mod preview;

pub use params::{
    split_list, EnforceImdsV2, FieldError, HopLimit, InstanceId, MaxConcurrency, MaxErrors, MetadataAccess,
    RoleArn, RunbookParameters, StartPlan, Targets, ValidationErrors,
};

/// The runbook this console runs.
pub const RUNBOOK: &str = "AWSSupport-ConfigureEC2Metadata";

/// SSM's terminal automation statuses. Everything else is still moving.
pub const TERMINAL_STATUSES: &[&str] = &[
    "Success",
    "Failed",
    "TimedOut",
    "Cancelled",
    "Rejected",
    "ChangeCalendarOverrideRejected",
    "CompletedWithSuccess",
    "CompletedWithFailure",
    "Exited",
];

/// Whether an SSM automation status is final.
pub fn is_terminal_status(status: &str) -> bool {
    TERMINAL_STATUSES.contains(&status)
}
