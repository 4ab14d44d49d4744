//! Rollout plans: waves run one after another, each a rate-controlled run of the runbook with its own
//! targets, followed by a bake time; the plan halts by itself when the wave's instances start refusing
//! IMDSv1 calls (CloudWatch `MetadataNoTokenRejected`) above the plan's threshold.

use serde::{Deserialize, Serialize};

use crate::api::{
    InstanceUsage, OverrideInput, ParametersInput, RateControlInput, StartExecutionRequest,
    TargetLocationInput, TargetsInput,
};
use crate::params::{FieldError, ValidationErrors};

/// The most waves a plan has.
pub const MAX_WAVES: usize = 20;
/// The longest bake: a week.
pub const MAX_BAKE_MINUTES: u32 = 7 * 24 * 60;

/// `POST /api/v1/plans`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct PlanRequest {
    pub name: String,
    pub waves: Vec<WaveInput>,
    #[serde(default)]
    pub halt: HaltInput,
}

/// One wave, in the shapes a run takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct WaveInput {
    pub name: String,
    /// The member account (the console's own when absent); leave out with `target_locations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub targets: TargetsInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_locations: Option<Vec<TargetLocationInput>>,
    #[serde(default)]
    pub parameters: ParametersInput,
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: String,
    #[serde(default = "default_max_errors")]
    pub max_errors: String,
    /// Minutes to wait after the wave's run succeeded before the next wave may start.
    #[serde(default)]
    pub bake_minutes: u32,
    /// Start the wave even though its instances still call IMDSv1; recorded with its run.
    #[serde(rename = "override", default, skip_serializing_if = "Option::is_none")]
    pub override_gate: Option<OverrideInput>,
}

fn default_max_concurrency() -> String {
    "10".to_owned()
}
fn default_max_errors() -> String {
    "0".to_owned()
}

/// When the plan stops by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct HaltInput {
    /// IMDSv1 calls refused on the current wave's instances (since the wave started) that halt the
    /// plan; at least 1.
    #[serde(default = "one")]
    pub rejected_calls: u64,
    /// Also roll the halted wave back at once (otherwise it is offered).
    #[serde(default)]
    pub rollback: bool,
    /// A CloudWatch alarm (on MetadataNoTokenRejected, say) that SSM itself watches during each
    /// wave's run, stopping it when the alarm fires (StartAutomationExecution's AlarmConfiguration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_name: Option<String>,
}

fn one() -> u64 {
    1
}

impl Default for HaltInput {
    fn default() -> Self {
        HaltInput {
            rejected_calls: 1,
            rollback: false,
            alarm_name: None,
        }
    }
}

impl WaveInput {
    /// The run this wave starts, as `POST /executions` would take it (the plan adds its alarm).
    pub fn start_request(&self) -> StartExecutionRequest {
        StartExecutionRequest {
            account: self.account.clone(),
            region: self.region.clone(),
            parameters: ParametersInput {
                instance_id: None,
                ..self.parameters.clone()
            },
            rate_control: Some(RateControlInput {
                targets: self.targets.clone(),
                max_concurrency: self.max_concurrency.clone(),
                max_errors: self.max_errors.clone(),
            }),
            target_locations: self.target_locations.clone(),
            override_gate: self.override_gate.clone(),
            alarm_name: None,
        }
    }
}

impl PlanRequest {
    /// Wave `i`'s run, with the plan's alarm.
    pub fn wave_start(&self, i: usize) -> StartExecutionRequest {
        StartExecutionRequest {
            alarm_name: self.halt.alarm_name.clone(),
            ..self.waves[i].start_request()
        }
    }

    /// Checks the plan and each wave as a run; errors name the wave (`waves[1].rate_control...`).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            errors.push(
                "name",
                "required: 1 to 100 characters, such as \"IMDSv2 dev → prod\"",
            );
        } else if let Err(m) = crate::params::check_plain_text(name) {
            errors.push("name", m);
        }
        if self.waves.is_empty() || self.waves.len() > MAX_WAVES {
            errors.push("waves", format!("a plan has 1 to {MAX_WAVES} waves"));
        }
        crate::params::validate_alarm_name(self.halt.alarm_name.as_deref(), "halt.alarm_name", &mut errors);
        if self.halt.rejected_calls == 0 {
            errors.push(
                "halt.rejected_calls",
                "at least 1: the refused IMDSv1 calls that halt the plan",
            );
        }
        for (i, w) in self.waves.iter().enumerate() {
            if w.name.trim().is_empty() || w.name.chars().count() > 60 {
                errors.push(
                    format!("waves[{i}].name"),
                    "required: 1 to 60 characters, such as dev",
                );
            } else if let Err(m) = crate::params::check_plain_text(w.name.trim()) {
                errors.push(format!("waves[{i}].name"), m);
            }
            if w.bake_minutes > MAX_BAKE_MINUTES {
                errors.push(
                    format!("waves[{i}].bake_minutes"),
                    format!("0 to {MAX_BAKE_MINUTES} minutes (a week)"),
                );
            }
            if let Err(e) = w.start_request().validate() {
                for FieldError { field, message } in e.0 {
                    errors.push(format!("waves[{i}].{field}"), message);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Where a plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Created, previewed, not started.
    Draft,
    Running,
    /// No new wave starts; a wave already running goes on in SSM.
    Paused,
    /// Stopped by itself: refusals above the threshold, a wave that failed, or one the readiness
    /// check blocked. Resume goes on with the next step.
    Halted,
    Cancelled,
    Completed,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Draft => "draft",
            PlanStatus::Running => "running",
            PlanStatus::Paused => "paused",
            PlanStatus::Halted => "halted",
            PlanStatus::Cancelled => "cancelled",
            PlanStatus::Completed => "completed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, PlanStatus::Cancelled | PlanStatus::Completed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum WaveStatus {
    Pending,
    /// Its start waits for a second person's approval: nothing is sent until then.
    Held,
    /// Its run is in SSM.
    Running,
    /// Its run succeeded; waiting out the bake time while refusals are watched.
    Baking,
    Done,
    /// Its run did not succeed, or the readiness check refused it.
    Failed,
    /// Refusals above the threshold.
    Halted,
    Cancelled,
}

impl WaveStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WaveStatus::Pending => "pending",
            WaveStatus::Held => "held",
            WaveStatus::Running => "running",
            WaveStatus::Baking => "baking",
            WaveStatus::Done => "done",
            WaveStatus::Failed => "failed",
            WaveStatus::Halted => "halted",
            WaveStatus::Cancelled => "cancelled",
        }
    }
}

/// Where a wave's rollback stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RollbackStatus {
    /// Asked for; waiting for the wave's run to end (it was told to stop), or for the next attempt
    /// after AWS could not take the last one.
    Waiting,
    /// Its runs are started (or queued by the console until SSM has room).
    Running,
    /// A rollback run waits for a second person's approval.
    Held,
    /// Every rollback run succeeded, or there was nothing left to restore.
    Done,
    /// A rollback run failed or was refused; a person can ask again.
    Failed,
}

impl RollbackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackStatus::Waiting => "waiting",
            RollbackStatus::Running => "running",
            RollbackStatus::Held => "held",
            RollbackStatus::Done => "done",
            RollbackStatus::Failed => "failed",
        }
    }

    /// Whether the console still has work to do on it.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RollbackStatus::Waiting | RollbackStatus::Running | RollbackStatus::Held
        )
    }
}

/// A wave's rollback: asked for by the plan's halt or by a person, carried through by the console
/// until it is done (the wave's run stopped and ended first, attempts AWS could not take retried).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WaveRollback {
    pub status: RollbackStatus,
    /// Who asked: `plan <name>` for the plan's halt, else a person's name.
    pub requested_by: String,
    pub requested_at: String,
    /// Whether a person asked (their rollback waits for a second person where a run's would).
    pub by_person: bool,
    /// Attempts AWS (or the console) could not take.
    pub attempts: u32,
    /// When the next attempt is due (RFC 3339), after one that failed.
    pub next_attempt_at: Option<String>,
    /// The console's records of the rollback runs (each one's status is in History).
    pub record_ids: Vec<i64>,
    /// The newest record when it was asked for: rollback records after it are this rollback's, so
    /// a console that stopped between sending them and noting them adopts them instead of sending
    /// them again.
    #[serde(default)]
    pub after_record_id: i64,
    /// What it is doing or why it stopped, in a sentence.
    pub message: Option<String>,
}

/// An instance of a wave, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlanTarget {
    pub instance_id: String,
    pub account: String,
    pub region: String,
}

/// One wave as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WaveView {
    pub name: String,
    pub status: WaveStatus,
    pub bake_minutes: u32,
    pub record_id: Option<i64>,
    pub execution_id: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// When the bake ends (RFC 3339).
    pub bake_until: Option<String>,
    pub targets: Vec<PlanTarget>,
    /// Refused IMDSv1 calls per instance since the wave started (instances with none left out).
    pub rejected: Vec<InstanceUsage>,
    pub rollback_execution_ids: Vec<String>,
    /// Its rollback, once one was asked for.
    #[serde(default)]
    pub rollback: Option<WaveRollback>,
    pub message: Option<String>,
}

impl WaveView {
    /// Whether its rollback still needs the console's work.
    pub fn rolling_back(&self) -> bool {
        self.rollback.as_ref().is_some_and(|r| r.status.is_active())
    }
}

/// `GET /api/v1/plans/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlanView {
    pub plan_id: String,
    pub name: String,
    pub status: PlanStatus,
    /// Who created it.
    pub requester: String,
    /// Everyone who caused a send of its waves, by name: its creator, then whoever started or
    /// resumed it (an override reason included). None of them may approve its held waves.
    #[serde(default)]
    pub requesters: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub halt: HaltInput,
    /// Why the plan halted or failed, in a sentence.
    pub reason: Option<String>,
    pub request: PlanRequest,
    pub waves: Vec<WaveView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlanList {
    pub plans: Vec<PlanSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlanSummary {
    pub plan_id: String,
    pub name: String,
    pub status: PlanStatus,
    pub requester: String,
    pub created_at: String,
    pub waves: usize,
    pub waves_done: usize,
    /// The wave now running or baking, by name.
    pub current: Option<String>,
}

/// `POST /api/v1/plans/{id}/preview`: each wave as a start's preview would see it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlanPreview {
    pub waves: Vec<WavePreview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WavePreview {
    pub name: String,
    pub targets: usize,
    /// Instances that would change.
    pub changes: usize,
    /// The readiness check: instances still calling IMDSv1 (the wave needs an override while any do).
    pub blocked: bool,
    pub imdsv1_instances: Vec<InstanceUsage>,
    /// Why the wave cannot be assessed (no instance matches, an account is unreachable).
    pub error: Option<String>,
}

/// `POST /api/v1/plans/{id}/resume`: a wave the readiness check blocked may go on with a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct ResumeRequest {
    #[serde(default)]
    pub override_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(name: &str, tag: &str) -> WaveInput {
        WaveInput {
            name: name.into(),
            account: None,
            region: Some("us-east-1".into()),
            targets: TargetsInput::Tag {
                key: "Env".into(),
                value: tag.into(),
            },
            target_locations: None,
            parameters: ParametersInput::default(),
            max_concurrency: "5".into(),
            max_errors: "0".into(),
            bake_minutes: 30,
            override_gate: None,
        }
    }

    #[test]
    fn a_plan_is_checked_wave_by_wave_with_each_field_named() {
        let ok = PlanRequest {
            name: "IMDSv2 dev to prod".into(),
            waves: vec![wave("dev", "dev"), wave("prod", "prod")],
            halt: HaltInput::default(),
        };
        assert_eq!(ok.validate(), Ok(()));
        let mut bad = ok.clone();
        bad.name = " ".into();
        bad.waves[1].bake_minutes = MAX_BAKE_MINUTES + 1;
        bad.waves[1].max_concurrency = "lots".into();
        bad.halt.rejected_calls = 0;
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "name",
                "halt.rejected_calls",
                "waves[1].bake_minutes",
                "waves[1].rate_control.max_concurrency"
            ]
        );
        let empty = PlanRequest { waves: vec![], ..ok };
        assert_eq!(empty.validate().unwrap_err().0[0].field, "waves");
    }
}
