//! Request and response bodies of the `/api/v1` JSON API.
//!
//! Requests arrive as loose "input" shapes (strings where a person types) so that validation can
//! report every bad field at once; `StartExecutionRequest::validate` turns them into typed values.

use serde::{Deserialize, Serialize};

use crate::status::RunStatus;
use std::collections::BTreeMap;

pub use crate::params::MetadataOptions;

/// `POST /api/v1/executions` (and `/preview`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct StartExecutionRequest {
    /// The member account the run acts in (the console assumes its member role there); the console's
    /// own account when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub parameters: ParametersInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_control: Option<RateControlInput>,
    /// Run the rate-controlled targets (a tag) in several accounts and Regions as one multi-account,
    /// multi-Region automation (SSM's TargetLocations), with SSM's field names in snake case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_locations: Option<Vec<TargetLocationInput>>,
    /// Start even though targets still use IMDSv1; the reason is recorded with the run.
    #[serde(rename = "override", default, skip_serializing_if = "Option::is_none")]
    pub override_gate: Option<OverrideInput>,
    /// A CloudWatch alarm SSM watches during the run (its AlarmConfiguration): in ALARM, SSM stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_name: Option<String>,
}

/// One of SSM's TargetLocations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct TargetLocationInput {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// How many locations at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_location_max_concurrency: Option<String>,
    /// Failed locations tolerated (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_location_max_errors: Option<String>,
    /// The role Automation assumes in each account (default AWS-SystemsManager-AutomationExecutionRole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_name: Option<String>,
    /// Instances at once within each location (default: the run's max_concurrency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_max_concurrency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_max_errors: Option<String>,
    /// Instances of this location's one account and Region to run on instead of the run's tag
    /// (SSM's TargetLocation.Targets, which takes precedence over the run's Targets): at most 50.
    /// How a run across accounts leaves some instances out, in one start.
    #[serde(default)]
    pub instance_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct OverrideInput {
    #[serde(default)]
    pub reason: String,
}

/// The runbook parameters under their document names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub enum TargetsInput {
    InstanceIds(Vec<String>),
    Tag { key: String, value: String },
}

/// The reply to a start: 201 with the execution ID, or 202 when SSM's concurrency quota is full and
/// the console has queued the start (recorded, sent again when SSM has room; no execution ID yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StartExecutionResponse {
    pub execution_id: Option<String>,
    /// The console's record of the start (the audit trail's `record_id`).
    pub record_id: i64,
    pub status: RunStatus,
    /// Why a start is queued, and what happens next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Health {
    pub status: String,
    /// Whether this replica leads: runs the watcher, plan steps and webhook deliveries (one of
    /// several replicas on PostgreSQL; always, on SQLite).
    pub leader: bool,
}

/// `GET /api/v1/identity`: who the server acts as, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Identity {
    /// `sandbox` or `aws`.
    pub mode: String,
    pub account: String,
    pub arn: String,
    pub regions: Vec<String>,
}

/// One run in the history list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecutionSummary {
    pub execution_id: String,
    /// The member account it ran in; empty for the console's own account.
    #[serde(default)]
    pub account: String,
    pub region: String,
    pub document_name: String,
    /// SSM's status (InProgress, Success, Failed, Cancelled, ...), on the wire as SSM's string.
    pub status: RunStatus,
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
    /// Who approved it, when the approval policy held it for a second person. Given to scripts and
    /// the audit export; the browser does not decode it in lists (its first-load bytes), and the run
    /// page reads [`ExecutionDetail::approved_by`].
    #[cfg(not(target_arch = "wasm32"))]
    #[serde(default)]
    pub approved_by: Option<String>,
}

/// `GET /api/v1/executions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecutionPage {
    pub executions: Vec<ExecutionSummary>,
    /// Pass as `cursor` for the next (older) page.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/executions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecutionDetail {
    pub summary: ExecutionSummary,
    /// SSM's Parameters of the execution; for a run across accounts and Regions started here, also
    /// `TargetLocations`: each location as the console sent it (after narrowing to the places with
    /// targets), read from its record rather than SSM's echo, one value per location:
    /// `Accounts a b · Regions r · TargetLocationMaxConcurrency n · TargetLocationMaxErrors n ·
    /// Targets ParameterValues i-… i-…` (SSM's member names; a limit not listed was not sent and is
    /// SSM's default).
    pub parameters: BTreeMap<String, Vec<String>>,
    pub outputs: BTreeMap<String, Vec<String>>,
    pub failure_message: Option<String>,
    pub steps: Vec<StepView>,
    pub rate_control: Option<RateControlView>,
    pub children: Vec<ExecutionSummary>,
    /// Why the IMDSv1 readiness check was overridden, when it was.
    #[serde(default)]
    pub override_reason: Option<String>,
    /// The run this one rolls back.
    #[serde(default)]
    pub rollback_of: Option<String>,
    /// The runs that rolled this one back.
    #[serde(default)]
    pub rolled_back_by: Vec<String>,
    /// Each target's options before the run, as recorded when it started.
    #[serde(default)]
    pub prior_options: BTreeMap<String, MetadataOptions>,
    /// Who approved it, when the approval policy held it for a second person.
    #[serde(default)]
    pub approved_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RateControlView {
    pub target_parameter_name: String,
    pub targets: Vec<String>,
    pub max_concurrency: String,
    pub max_errors: String,
    pub progress: Progress,
}

/// A rate-control parent's children by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Progress {
    pub total: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub running: u32,
    pub waiting: u32,
    pub cancelled: u32,
    /// Targets a finished run never started (it was stopped, or MaxErrors was reached).
    #[serde(default)]
    pub not_run: u32,
    /// What is counted: instances, or `locations` (account-Regions) for a run across accounts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StepView {
    pub name: String,
    pub action: String,
    pub status: RunStatus,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub inputs: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, Vec<String>>,
    pub failure_message: Option<String>,
    pub failure_stage: Option<String>,
    pub failure_type: Option<String>,
    /// For a step of a run across accounts and Regions, where it runs: `account/region`, read from
    /// SSM's StepExecution.TargetLocation (several accounts or Regions joined by commas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_location: Option<String>,
}

/// `GET /api/v1/instances`: one page of the instances matching the query (`shared::fleet::FleetQuery`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InstanceList {
    pub instances: Vec<InstanceView>,
    /// How many instances match the query, on every page.
    #[serde(default)]
    pub total: usize,
    /// Pass as `cursor` for the next page; None on the last.
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// When the inventory was read from EC2 (RFC 3339).
    #[serde(default)]
    pub as_of: Option<String>,
    /// A newer reading is being made (places where runs just ended, or the periodic refresh): this
    /// page is the last reading, served without waiting for EC2.
    #[serde(default)]
    pub refreshing: bool,
}

/// `GET /api/v1/fleet/summary?by=region|account|tag:KEY`: the fleet's posture, in all and per group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FleetSummary {
    pub by: String,
    pub all: PostureCounts,
    pub groups: Vec<GroupCounts>,
    pub as_of: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PostureCounts {
    pub total: usize,
    /// IMDSv2 required (or metadata off) and nothing refused since.
    pub compliant: usize,
    /// IMDSv2 required, but software still calls IMDSv1 and is refused: broken since enforcement.
    pub broken: usize,
    /// IMDSv1 allowed and used in the look-back window: enforcing would break it.
    pub imdsv1_in_use: usize,
    /// IMDSv1 allowed, no IMDSv1 calls seen (or usage unknown).
    pub imdsv1_allowed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupCounts {
    /// The region, account or tag value (`(none)` for instances without the tag).
    pub key: String,
    pub counts: PostureCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InstanceView {
    pub instance_id: String,
    /// The AWS account that owns it.
    #[serde(default)]
    pub account: String,
    pub region: String,
    pub name: Option<String>,
    /// running, stopped, ...
    pub state: String,
    pub tags: BTreeMap<String, String>,
    pub metadata: MetadataOptions,
    pub compliant: bool,
    /// IMDSv1 calls that succeeded in the look-back window (CloudWatch MetadataNoToken), for instances
    /// that still allow IMDSv1; None when unknown.
    #[serde(default)]
    pub imdsv1_calls: Option<u64>,
    /// IMDSv1 calls refused because IMDSv1 is off (MetadataNoTokenRejected), for compliant instances.
    #[serde(default)]
    pub imdsv1_rejected: Option<u64>,
    /// The AMI it was launched from.
    #[serde(default)]
    pub image_id: Option<String>,
}

/// A page of instances as a picker reads it (`GET /instances`): the same wire object as
/// [`InstanceList`], of which it reads only what a picker shows (the rest is ignored), so that a page
/// that only offers instances to choose from does not carry the code that reads whole views (on the
/// Execute page, about 8 KB of its first load).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InstanceChoices {
    pub instances: Vec<InstanceChoice>,
}

/// An instance to choose: a subset of [`InstanceView`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InstanceChoice {
    pub instance_id: String,
    #[serde(default)]
    pub account: String,
    pub region: String,
    pub name: Option<String>,
    pub metadata: MetadataOptions,
}

/// Tags EC2 and Auto Scaling put on what they launch: where an instance came from.
pub const TAG_AUTO_SCALING_GROUP: &str = "aws:autoscaling:groupName";
pub const TAG_LAUNCH_TEMPLATE_ID: &str = "aws:ec2launchtemplate:id";
pub const TAG_LAUNCH_TEMPLATE_VERSION: &str = "aws:ec2launchtemplate:version";

impl InstanceView {
    /// Its launch template and version, as EC2 tagged it.
    pub fn launch_template(&self) -> Option<(&str, &str)> {
        Some((
            self.tags.get(TAG_LAUNCH_TEMPLATE_ID)?.as_str(),
            self.tags
                .get(TAG_LAUNCH_TEMPLATE_VERSION)
                .map_or("", String::as_str),
        ))
    }

    pub fn auto_scaling_group(&self) -> Option<&str> {
        self.tags.get(TAG_AUTO_SCALING_GROUP).map(String::as_str)
    }
}

/// An instance and its IMDSv1 calls, in a readiness refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InstanceUsage {
    pub instance_id: String,
    pub imdsv1_calls: u64,
}

/// `POST /api/v1/executions/preview`: what a start would do to each target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PreviewResponse {
    pub region: String,
    /// The IMDSv1 look-back window, in days.
    pub window_days: u32,
    /// The start would be refused (IMDSv1 in use) unless it carries an override.
    pub blocked: bool,
    /// For a run across accounts and Regions, where it goes (`account/Region`): only the places
    /// where instances match.
    #[serde(default)]
    pub places: Vec<String>,
    /// The places its locations name where no instance matches: left out of the start (what SSM
    /// does with a location without targets is undocumented).
    #[serde(default)]
    pub places_left_out: Vec<String>,
    pub targets: Vec<PreviewTarget>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PreviewTarget {
    pub instance_id: String,
    /// Where it is: a run across accounts and Regions previews every place.
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub region: String,
    pub name: Option<String>,
    pub state: String,
    pub current: MetadataOptions,
    pub after: MetadataOptions,
    /// Human-readable changes, such as `http_tokens: optional -> required`; empty when nothing changes.
    pub changes: Vec<String>,
    pub imdsv1_calls: Option<u64>,
    pub warnings: Vec<String>,
}

/// `POST /api/v1/executions/{id}/rollback/preview`: what a rollback would restore, instance by
/// instance (the same preview as a start), without starting anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RollbackPreview {
    /// The runs it would start (one per distinct set of prior options, account and Region).
    pub runs: usize,
    pub targets: Vec<PreviewTarget>,
    pub notes: Vec<String>,
    /// Instances the rollback leaves alone: gone or terminated since, or where the account enforces
    /// IMDSv2 at launch (EC2 refuses optional tokens there); the notes say which and why.
    pub skipped: Vec<String>,
}

/// `POST /api/v1/executions/{id}/rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RollbackResponse {
    /// The runs started to restore the prior options (one per distinct set of prior options).
    pub execution_ids: Vec<String>,
    /// The instances being restored.
    pub instances: Vec<String>,
    /// Anything that cannot be restored exactly, and each instance skipped, with the reason.
    pub notes: Vec<String>,
    /// Instances that were terminated or are gone since, so nothing was restored on them.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// The console's record of each rollback start: sent, queued until SSM has room, or held for a
    /// second person.
    #[serde(default)]
    pub record_ids: Vec<i64>,
}

/// Every error reply: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// For a readiness refusal (409 Imdsv1InUse): the instances that still use IMDSv1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceUsage>,
    /// The request's ID, as in its `X-Request-Id` header and the server's log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A change pushed over `GET /api/v1/events` (Server-Sent Events, event name `execution`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecutionEvent {
    pub execution_id: String,
    pub status: RunStatus,
    pub parent_execution_id: Option<String>,
    /// The account the run acts in ('' for the console's own): a stream shows only the caller's.
    #[serde(default)]
    pub account: String,
    /// Every account a run across accounts acts in (empty for a run in one account): a stream shows
    /// such a run only to someone who may see all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
}

/// One run in the audit export (`GET /api/v1/audit?format=json|csv`): flat, so CSV holds it whole.
/// JSON-valued fields (parameters, prior options, outputs) are JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditRecord {
    pub record_id: i64,
    pub created_at: String,
    pub requester: Option<String>,
    /// The account the run acted in.
    #[serde(default)]
    pub account: String,
    pub region: String,
    pub document_name: String,
    pub document_version: Option<String>,
    pub client_token: Option<String>,
    pub execution_id: Option<String>,
    /// SSM's status, or the console's own before SSM has the run: Recorded (being sent), Queued
    /// (SSM said not now), Unknown (being looked for), Refused (SSM said no).
    pub status: RunStatus,
    pub instance_id: Option<String>,
    pub targets: Option<String>,
    /// Space-separated instance IDs the run covered.
    pub instance_ids: String,
    pub parameters: String,
    pub override_reason: Option<String>,
    pub prior_options: Option<String>,
    pub outputs: Option<String>,
    pub failure_message: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub rollback_of: Option<String>,
    /// Comma-separated execution IDs.
    pub rolled_back_by: Option<String>,
    pub started_here: bool,
    /// Who asked for the run to be stopped, if anyone did through the console.
    #[serde(default)]
    pub stopped_by: Option<String>,
    /// Who approved it, when the approval policy held it for a second person.
    #[serde(default)]
    pub approved_by: Option<String>,
}

/// What a person or script may do: viewers read, operators also start/stop/preview/roll back, admins
/// also manage users and tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(raw: &str) -> Result<Role, String> {
        match raw {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("\"{raw}\" is not a role: use viewer, operator or admin")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A session cookie, after signing in with a password.
    Session,
    /// A bearer API token.
    Token,
    /// The trusted sign-on proxy's (or ALB's) identity headers.
    Sso,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Session => "session",
            Via::Token => "token",
            Via::Sso => "sso",
        }
    }
}

/// `GET /api/v1/auth/me`: who this request is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Me {
    pub name: String,
    pub role: Role,
    /// `session`, `token` or `sso` ([`Via::as_str`]): text on the wire, so the browser's shell needs
    /// no decoder for it (every byte of the shell is in every page's first load).
    pub via: String,
    /// The password was generated (the first admin's): choose a new one before anything else.
    #[serde(default)]
    pub must_change_password: bool,
    /// The number of the last live event so far: the browser's first event stream starts after it
    /// (`/events?after=`), so nothing that happens while the pages read their data is missed.
    #[serde(default)]
    pub events_seq: u64,
}

/// `POST /api/v1/auth/password`: change one's own password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

/// A built-in account, as admins see it (never its password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: String,
    /// The accounts the user is limited to; None: every account.
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct CreateUserRequest {
    pub name: String,
    pub role: Role,
    pub password: String,
    /// Limit the user to these accounts (like AWS ASR's account operators); absent: every account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<String>>,
}

/// `POST /api/v1/users/{name}/accounts`: the accounts a user is limited to (null: every account).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct UserAccountsRequest {
    pub accounts: Option<Vec<String>>,
}

/// An API token, as admins see it (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenView {
    pub id: i64,
    /// What it is for, such as "CI pipeline".
    #[serde(default)]
    pub name: Option<String>,
    pub user: String,
    pub role: Role,
    pub created_at: String,
    pub revoked: bool,
    pub last_used_at: Option<String>,
    /// When it stops working (RFC 3339); None: until revoked.
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub expired: bool,
}

/// The longest a token may be given to live, in days.
pub const MAX_TOKEN_DAYS: u32 = 365;
/// The longest token name.
pub const MAX_TOKEN_NAME: usize = 64;

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct CreateTokenRequest {
    pub user: String,
    /// At most the user's own role; defaults to it.
    #[serde(default)]
    pub role: Option<Role>,
    /// What it is for (up to 64 characters).
    #[serde(default)]
    pub name: Option<String>,
    /// Days until it stops working (1 to 365); absent: the console's default (`--token-days`, 90
    /// unless set).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A token's name and lifetime, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub name: Option<String>,
    pub days: Option<u32>,
}

impl CreateTokenRequest {
    /// The name and lifetime, checked: `(field, message)` for the first that is not allowed.
    pub fn checked(&self) -> Result<TokenSpec, (&'static str, String)> {
        let name = self.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        if let Some(n) = name {
            if n.chars().count() > MAX_TOKEN_NAME || crate::params::check_plain_text(n).is_err() {
                return Err((
                    "name",
                    format!("at most {MAX_TOKEN_NAME} characters, no control characters or direction marks"),
                ));
            }
        }
        if let Some(d) = self.expires_in_days {
            if !(1..=MAX_TOKEN_DAYS).contains(&d) {
                return Err((
                    "expires_in_days",
                    format!("1 to {MAX_TOKEN_DAYS} days, or leave it out for the console's default lifetime"),
                ));
            }
        }
        Ok(TokenSpec {
            name: name.map(str::to_owned),
            days: self.expires_in_days,
        })
    }
}

/// The one time a token is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedToken {
    pub id: i64,
    pub token: String,
    pub role: Role,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A sign-in, failed sign-in, token use or user change, from the audit store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthEvent {
    pub id: i64,
    pub at: String,
    /// login, login-failed, login-throttled, logout, sso-login, token-used, token-created,
    /// token-revoked, user-added, user-disabled, user-enabled, role-changed, password-changed,
    /// password-reset, change-refused, run-stopped, plan-created.
    pub kind: String,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub address: Option<String>,
    /// How many attempts this event stands for: repeated throttled sign-ins from one address (and
    /// user), and one person's repeated refused change of one route, are one event per window,
    /// counted.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// `GET /api/v1/audit/auth`: a page of events, newest first; pass `next_cursor` as `cursor` for more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthEventPage {
    pub events: Vec<AuthEvent>,
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/users/{name}/role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct SetRoleRequest {
    pub role: Role,
}

/// `GET /api/v1/doctor` and `imds-console doctor`: whether the console's identity, and the
/// AutomationAssumeRole if one is given, may do each action the console and the runbook need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PermissionReport {
    /// The console's identity (STS ARN).
    pub identity: String,
    pub assume_role: Option<String>,
    pub checks: Vec<PermissionCheck>,
}

impl PermissionReport {
    pub fn denied(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.result == CheckResult::Denied)
            .count()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PermissionCheck {
    /// `console` or `assume role`.
    pub principal: String,
    /// The IAM action, such as `ssm:StartAutomationExecution`.
    pub action: String,
    /// None for global actions (IAM, STS).
    pub region: Option<String>,
    pub result: CheckResult,
    /// How it was found out: a harmless call, EC2's dry run, or IAM's policy simulator.
    pub method: String,
    /// AWS's answer, or why it could not be checked.
    pub detail: String,
    /// What to change when it is denied.
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    Allowed,
    Denied,
    /// Could not be checked (no instance to dry-run against, the simulator not allowed, ...).
    Unchecked,
}

/// `GET /api/v1/accounts`: the accounts the console manages, and whether it could read each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AccountList {
    pub accounts: Vec<AccountView>,
    /// Why the organisation's account list could not be read, when it could not.
    pub organization_error: Option<String>,
    pub as_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AccountView {
    pub account_id: String,
    pub name: Option<String>,
    /// The account the console runs in.
    pub hub: bool,
    pub reachable: bool,
    /// Why it could not be read (a missing role, a denied call), AWS's words.
    pub reason: Option<String>,
    pub instances: usize,
    /// When its instances were last read in full (RFC 3339). An account that cannot be read now keeps
    /// the instances of its last reading, this old, beside the reason.
    #[serde(default)]
    pub as_of: Option<String>,
    /// Regions of a readable account that could not be read (a service control policy's deny, a
    /// Region not opted in): each keeps its last reading's instances, and says why and how old.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions_unreachable: Vec<RegionProblem>,
}

/// A Region of an account that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RegionProblem {
    pub region: String,
    /// AWS's words.
    pub reason: String,
    /// When the instances kept for it were read (RFC 3339); None: never.
    pub as_of: Option<String>,
}

/// `GET /api/v1/dashboard`: the team's view of the migration, within the caller's accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Dashboard {
    /// The fleet now.
    pub now: PostureCounts,
    pub by_account: Vec<GroupCounts>,
    pub by_region: Vec<GroupCounts>,
    /// One point per day (oldest first), up to a year back.
    pub trend: Vec<TrendPoint>,
    /// Since midnight UTC.
    pub today: Today,
    /// Runs still going.
    pub in_flight: Vec<ExecutionSummary>,
    pub as_of: Option<String>,
    /// Sources that still let new instances allow IMDSv1 (templates, groups, AMIs, account
    /// defaults); None until the console has read them.
    #[serde(default)]
    pub sources_to_fix: Option<usize>,
    /// Starts waiting for a second person's approval.
    #[serde(default)]
    pub approvals_pending: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TrendPoint {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub counts: PostureCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Today {
    pub runs: usize,
    pub instances: usize,
    pub people: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picker_reads_the_instances_the_server_lists() {
        let view = InstanceView {
            instance_id: "i-0123456789abcdef0".into(),
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            name: Some("web-1".into()),
            state: "running".into(),
            tags: BTreeMap::from([("Team".into(), "web".into())]),
            metadata: MetadataOptions {
                http_tokens: "optional".into(),
                ..MetadataOptions::default()
            },
            compliant: false,
            imdsv1_calls: Some(3),
            ..InstanceView::default()
        };
        let page = InstanceList {
            instances: vec![view.clone()],
            total: 1,
            next_cursor: None,
            as_of: None,
            refreshing: false,
        };
        let choices: InstanceChoices = serde_json::from_str(&serde_json::to_string(&page).unwrap()).unwrap();
        assert_eq!(
            choices.instances,
            vec![InstanceChoice {
                instance_id: view.instance_id,
                account: view.account,
                region: view.region,
                name: view.name,
                metadata: view.metadata,
            }]
        );
    }
}
