//! Request and response bodies of the `/api/v1` JSON API.
//!
//! Requests arrive as loose "input" shapes (strings where a person types) so that validation can
//! report every bad field at once; `StartExecutionRequest::validate` turns them into typed values.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::params::MetadataOptions;

/// `POST /api/v1/executions` (and `/preview`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartExecutionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub parameters: ParametersInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_control: Option<RateControlInput>,
}

/// The runbook parameters under their document names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParametersInput {
    #[serde(rename = "InstanceId", default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(rename = "EnforceIMDSv2", default, skip_serializing_if = "Option::is_none")]
    pub enforce_imdsv2: Option<String>,
    #[serde(rename = "MetadataAccess", default, skip_serializing_if = "Option::is_none")]
    pub metadata_access: Option<String>,
    /// A number or its string form; anything else is reported as a field error.
    #[serde(
        rename = "HttpPutResponseHopLimit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub hop_limit: Option<serde_json::Value>,
    #[serde(
        rename = "AutomationAssumeRole",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub assume_role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateControlInput {
    pub targets: TargetsInput,
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: String,
    #[serde(default = "default_max_errors")]
    pub max_errors: String,
}

fn default_max_concurrency() -> String {
    "10".to_owned()
}
fn default_max_errors() -> String {
    "0".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetsInput {
    InstanceIds(Vec<String>),
    Tag { key: String, value: String },
}

/// 201 reply to a start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartExecutionResponse {
    pub execution_id: String,
}

/// `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// `GET /api/v1/identity`: who the server acts as, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// `sandbox` or `aws`.
    pub mode: String,
    pub account: String,
    pub arn: String,
    pub regions: Vec<String>,
}

/// One run in the history list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    pub execution_id: String,
    pub region: String,
    pub document_name: String,
    /// SSM's own status string: InProgress, Success, Failed, Cancelled, ...
    pub status: String,
    /// The instance of a simple run, or of a rate-control child.
    pub instance_id: Option<String>,
    /// For a rate-control parent: what it targets, such as `tag:Team=web` or `3 instances`.
    pub targets: Option<String>,
    pub parent_execution_id: Option<String>,
    pub requester: Option<String>,
    /// RFC 3339.
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    /// Whether this console started it (false: seen in SSM only).
    pub started_here: bool,
}

/// `GET /api/v1/executions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionPage {
    pub executions: Vec<ExecutionSummary>,
    /// Pass as `cursor` for the next (older) page.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/executions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionDetail {
    pub summary: ExecutionSummary,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub outputs: BTreeMap<String, Vec<String>>,
    pub failure_message: Option<String>,
    pub steps: Vec<StepView>,
    pub rate_control: Option<RateControlView>,
    pub children: Vec<ExecutionSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateControlView {
    pub target_parameter_name: String,
    pub targets: Vec<String>,
    pub max_concurrency: String,
    pub max_errors: String,
    pub progress: Progress,
}

/// A rate-control parent's children by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub total: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub running: u32,
    pub waiting: u32,
    pub cancelled: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub name: String,
    pub action: String,
    pub status: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub inputs: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, Vec<String>>,
    pub failure_message: Option<String>,
    pub failure_stage: Option<String>,
    pub failure_type: Option<String>,
}

/// `GET /api/v1/instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceList {
    pub instances: Vec<InstanceView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub instance_id: String,
    pub region: String,
    pub name: Option<String>,
    /// running, stopped, ...
    pub state: String,
    pub tags: BTreeMap<String, String>,
    pub metadata: MetadataOptions,
    pub compliant: bool,
}

/// Every error reply: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// Ours (ValidationError, NotFound, BadJson, ...) or AWS's own code, carried through.
    pub code: String,
    pub message: String,
    /// The first bad field, for a validation error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every bad field, for a validation error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<crate::FieldError>,
}

/// A change pushed over `GET /api/v1/events` (Server-Sent Events, event name `execution`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionEvent {
    pub execution_id: String,
    pub status: String,
    pub parent_execution_id: Option<String>,
}
