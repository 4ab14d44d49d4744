//! The API boundary between browser and server: wire types and runbook parameter validation.
//!
//! Everything here compiles for both wasm32 (the Leptos frontend) and the server, so a value the
//! browser accepts is exactly a value the server accepts. Validation follows the published
//! `AWSSupport-ConfigureEC2Metadata` document (see `params`).

pub mod api;
pub mod approvals;
pub mod fleet;
pub mod params;
pub mod plans;
pub mod preview;
pub mod sources;
pub mod status;
pub mod webhooks;

pub use params::{
    split_list, EnforceImdsV2, FieldError, HopLimit, InstanceId, MaxConcurrency, MaxErrors, MetadataAccess,
    RoleArn, RunbookParameters, StartPlan, Targets, ValidationErrors,
};
pub use status::{RunStatus, Tone};

/// The runbook this console runs.
pub const RUNBOOK: &str = "AWSSupport-ConfigureEC2Metadata";
