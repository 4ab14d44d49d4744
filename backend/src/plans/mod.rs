//! Rollout plans: waves started one after another by the server, each a run of the runbook with its
//! own targets, followed by a bake time during which the wave's instances are watched for refused
//! IMDSv1 calls (CloudWatch `MetadataNoTokenRejected`). Above the plan's threshold the plan halts by
//! itself, names the instances, and rolls the wave back if the plan says so.
//!
//! A plan lives in the store, rewritten at each step, so a restart resumes it where it was (a bake's
//! end is an absolute time). A wave's run is recorded with the wave's marker in the same write as the
//! run itself, so a crash between starting a wave and saving the plan adopts that run instead of
//! starting the wave twice. One driver steps every plan, serialised with the API's changes by one lock.
//! A wave the approval policy covers waits for a second person, as any start does.

use shared::api::InstanceUsage;
use shared::plans::{
    PlanList, PlanPreview, PlanRequest, PlanStatus, PlanSummary, PlanTarget, PlanView, ResumeRequest,
    WavePreview, WaveStatus, WaveView,
};
use shared::RunStatus;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

mod rollback;

use crate::aws::cloudwatch::{self, UsageMetric};
use crate::error::AppError;
use crate::runs;
use crate::state::AppState;

/// How often a wave's instances are asked about refused calls (a GetMetricData per account and
/// Region of the wave and per 500 instances, each instance one metric): once a minute of AWS time,
/// the finest period EC2 publishes `MetadataNoTokenRejected` at (detailed monitoring), so no read
/// pays for data it already had. A 1,000-instance wave baking an hour is 60,000 metrics (BENCHMARKS.md).
const REFUSAL_CHECK_EVERY: Duration = Duration::from_secs(60);
/// Against a sped-up sandbox the minute shrinks with its clock, but not below this.
const REFUSAL_CHECK_AT_LEAST: Duration = Duration::from_secs(2);

fn refusal_check_every(state: &AppState) -> Duration {
    REFUSAL_CHECK_EVERY
        .div_f64(state.bake_speed.max(0.001))
        .max(REFUSAL_CHECK_AT_LEAST)
}

/// What the driver keeps between steps that the store need not: when each plan was last checked.
#[derive(Default)]
pub struct PlanDriver {
    /// Held while a plan is read, changed and saved (the driver's step and the API's actions).
    pub lock: tokio::sync::Mutex<()>,
    checked: std::sync::Mutex<HashMap<String, Instant>>,
}

fn now(state: &AppState) -> (i64, String) {
    let ms = state.store.clock.now_ms();
    let t = aws_smithy_types::DateTime::from_millis(ms);
    (ms, crate::aws::rfc3339(Some(&t)).unwrap_or_default())
}

fn millis(rfc3339: &str) -> Option<i64> {
    aws_smithy_types::DateTime::from_str(rfc3339, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .map(|t| t.to_millis().unwrap_or(0))
}

/// `POST /plans`: a validated plan, saved as a draft.
pub async fn create(state: &AppState, req: PlanRequest, requester: &str) -> Result<PlanView, AppError> {
    req.validate().map_err(AppError::Validation)?;
    if let Some(alarm) = &req.halt.alarm_name {
        // SSM stops a run whose alarm it cannot read: the alarm must be where every wave runs.
        runs::check_alarm(state, alarm, &wave_places(state, &req).await?, "halt.alarm_name").await?;
    }
    let (_, at) = now(state);
    let plan = PlanView {
        plan_id: uuid::Uuid::new_v4().to_string(),
        name: req.name.trim().to_owned(),
        status: PlanStatus::Draft,
        requester: requester.to_owned(),
        requesters: vec![requester.to_owned()],
        created_at: at.clone(),
        updated_at: at,
        halt: req.halt.clone(),
        reason: None,
        waves: req
            .waves
            .iter()
            .map(|w| WaveView {
                name: w.name.trim().to_owned(),
                status: WaveStatus::Pending,
                bake_minutes: w.bake_minutes,
                record_id: None,
                execution_id: None,
                started_at: None,
                ended_at: None,
                bake_until: None,
                targets: Vec::new(),
                rejected: Vec::new(),
                rollback_execution_ids: Vec::new(),
                rollback: None,
                message: None,
            })
            .collect(),
        request: req,
    };
    state.store.save_plan(&plan).await?;
    Ok(plan)
}

/// Every place (account, '' for the console's own, and Region) the plan's waves name, with the
/// accounts under units and roots.
async fn wave_places(state: &AppState, req: &PlanRequest) -> Result<Vec<(String, String)>, AppError> {
    let hub = crate::routes::identity::resolve(state).await?.account;
    let mut places = std::collections::BTreeSet::new();
    for i in 0..req.waves.len() {
        let start = req.wave_start(i).validate().map_err(AppError::Validation)?;
        if start.target_locations.is_empty() {
            let region = start
                .region
                .as_ref()
                .map_or_else(|| state.regions[0].clone(), |r| r.as_str().to_owned());
            let account = start
                .account
                .as_ref()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default();
            places.insert((if account == hub { String::new() } else { account }, region));
        } else {
            for (account, region) in crate::org::places(state, &start.target_locations).await? {
                places.insert((if account == hub { String::new() } else { account }, region));
            }
        }
    }
    Ok(places.into_iter().collect())
}

pub async fn get(state: &AppState, plan_id: &str) -> Result<PlanView, AppError> {
    state
        .store
        .plan(plan_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no plan {plan_id}")))
}

pub async fn list(state: &AppState, scope: &crate::auth::AccountScope) -> Result<PlanList, AppError> {
    Ok(PlanList {
        plans: state
            .store
            .plans(&[], 200)
            .await?
            .into_iter()
            .filter(|p| crate::auth::may_see_plan(scope, p))
            .map(|p| PlanSummary {
                waves: p.waves.len(),
                waves_done: p.waves.iter().filter(|w| w.status == WaveStatus::Done).count(),
                current: p
                    .waves
                    .iter()
                    .find(|w| {
                        matches!(
                            w.status,
                            WaveStatus::Running | WaveStatus::Held | WaveStatus::Baking
                        )
                    })
                    .map(|w| w.name.clone()),
                plan_id: p.plan_id,
                name: p.name,
                status: p.status,
                requester: p.requester,
                created_at: p.created_at,
            })
            .collect(),
    })
}

/// `POST /plans/{id}/preview`: each wave assessed as its start would be now (targets, changes, the
/// readiness check). Waves are independent here: a later wave's targets are read as they are now.
pub async fn preview_plan(state: &AppState, plan_id: &str) -> Result<PlanPreview, AppError> {
    let plan = get(state, plan_id).await?;
    let mut waves = Vec::new();
    for (i, wave) in plan.waves.iter().enumerate() {
        let start = plan
            .request
            .wave_start(i)
            .validate()
            .map_err(AppError::Validation)?;
        waves.push(match runs::assess(state, &start, true).await {
            Ok(a) => WavePreview {
                name: wave.name.clone(),
                targets: a.targets.len(),
                changes: a
                    .targets
                    .iter()
                    .filter(|t| start.parameters.apply_to(&t.metadata) != t.metadata)
                    .count(),
                blocked: !a.users.is_empty() && start.override_reason.is_none(),
                imdsv1_instances: a.users,
                error: None,
            },
            Err(e) => WavePreview {
                name: wave.name.clone(),
                targets: 0,
                changes: 0,
                blocked: true,
                imdsv1_instances: Vec::new(),
                error: Some(e.to_string()),
            },
        });
    }
    Ok(PlanPreview { waves })
}

/// An action on a plan: start, pause, resume or cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Pause,
    Resume,
    Cancel,
    /// Roll back the last wave that ran (a plan that is not running: pause or cancel it first).
    Rollback,
}

impl Action {
    pub fn parse(raw: &str) -> Option<Action> {
        match raw {
            "start" => Some(Action::Start),
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            "cancel" => Some(Action::Cancel),
            "rollback" => Some(Action::Rollback),
            _ => None,
        }
    }
}

/// Applies `action` (the driver takes it from there); an action that does not fit the plan's status
/// is a 409 saying what would.
pub async fn act(
    state: &AppState,
    plan_id: &str,
    action: Action,
    resume: &ResumeRequest,
    who: &str,
) -> Result<PlanView, AppError> {
    let _guard = state.plans.lock.lock().await;
    let mut plan = get(state, plan_id).await?;
    let conflict = |what: &str| AppError::Conflict {
        code: "PlanStatus".into(),
        message: format!(
            "plan \"{}\" is {}: it cannot {what}",
            plan.name,
            plan.status.as_str()
        ),
    };
    // Whoever starts or resumes a plan causes its sends from then on: recorded by name, so that
    // none of them approves a wave held for a second person.
    // The last of them is the one its next waves start on behalf of.
    if matches!(action, Action::Start | Action::Resume) {
        plan.requesters.retain(|r| r != who);
        plan.requesters.push(who.to_owned());
    }
    match (action, plan.status) {
        (Action::Start, PlanStatus::Draft) => plan.status = PlanStatus::Running,
        (Action::Pause, PlanStatus::Running) => plan.status = PlanStatus::Paused,
        (Action::Resume, PlanStatus::Paused | PlanStatus::Halted) => {
            let reason = resume
                .override_reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty());
            if let Some(r) = reason {
                shared::params::check_plain_text(r).map_err(|m| AppError::field("override_reason", m))?;
                if r.chars().count() < shared::params::MIN_OVERRIDE_REASON {
                    return Err(AppError::field(
                        "override_reason",
                        format!(
                            "write why it is safe to proceed (at least {} characters)",
                            shared::params::MIN_OVERRIDE_REASON
                        ),
                    ));
                }
            }
            // A halted wave is over: the plan goes on with the next one. A wave the readiness check
            // blocked goes again, with the reason if one is given.
            if let Some(i) = plan.waves.iter().position(|w| w.status != WaveStatus::Done) {
                // A wave whose start never ran (refused, rejected, its approval or its queue
                // expired) is asked for again: it is never "done" without having run.
                let never_ran = match plan.waves[i].record_id {
                    Some(id) => state
                        .store
                        .by_record_id(id)
                        .await?
                        .is_some_and(|r| r.execution_id.is_none() && r.status.is_terminal()),
                    None => false,
                };
                let wave = &mut plan.waves[i];
                if never_ran {
                    wave.record_id = None;
                    wave.execution_id = None;
                    wave.status = WaveStatus::Failed;
                }
                match wave.status {
                    WaveStatus::Halted | WaveStatus::Failed if wave.record_id.is_some() => {
                        wave.status = WaveStatus::Done;
                        wave.message = Some(format!(
                            "{} (resumed past it by {who})",
                            wave.message.clone().unwrap_or_default()
                        ));
                    }
                    WaveStatus::Failed | WaveStatus::Pending => {
                        wave.status = WaveStatus::Pending;
                        if let Some(r) = reason {
                            // The run's record credits the override to whoever gave it.
                            plan.request.waves[i].override_gate = Some(shared::api::OverrideInput {
                                reason: format!("{r} (given by {who} on resuming the plan)"),
                            });
                        }
                    }
                    _ => {}
                }
            }
            plan.status = PlanStatus::Running;
            plan.reason = None;
        }
        (Action::Cancel, status) if !status.is_final() => {
            // Starts of its waves not sent yet are never sent: a held one is withdrawn, a queued
            // one refused (an unclear one is refused once SSM's list shows nothing, see `runs`).
            for wave in &plan.waves {
                let Some(id) = wave.record_id else { continue };
                let Some(row) = state.store.by_record_id(id).await? else {
                    continue;
                };
                let why = format!("withdrawn: plan \"{}\" was cancelled by {who}", plan.name);
                match row.status {
                    RunStatus::AwaitingApproval => {
                        state
                            .store
                            .decide_approval(id, "rejected", who, None, Some(&why), Some(&why))
                            .await?;
                    }
                    RunStatus::Queued => state.store.set_refused(id, &why).await?,
                    _ => {}
                }
            }
            if let Some(wave) = plan
                .waves
                .iter_mut()
                .find(|w| matches!(w.status, WaveStatus::Running | WaveStatus::Held))
            {
                let row = match wave.record_id {
                    Some(id) => state.store.by_record_id(id).await?,
                    None => None,
                };
                if let Some(row) = row {
                    if row.status.can_stop() {
                        // A run that ended meanwhile is fine: there is nothing left to stop.
                        match runs::stop(state, &row, who).await {
                            Ok(()) | Err(AppError::Conflict { .. }) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                wave.status = WaveStatus::Cancelled;
            }
            for wave in plan.waves.iter_mut().filter(|w| w.status == WaveStatus::Pending) {
                wave.status = WaveStatus::Cancelled;
            }
            plan.status = PlanStatus::Cancelled;
            plan.reason = Some(format!("cancelled by {who}"));
        }
        (Action::Rollback, PlanStatus::Draft | PlanStatus::Running) => {
            return Err(conflict(
                "roll a wave back while it may start more (pause or cancel it first)",
            ))
        }
        (Action::Rollback, _) => {
            let Some(i) = plan.waves.iter().rposition(|w| w.execution_id.is_some()) else {
                return Err(AppError::Conflict {
                    code: "NothingToRollBack".into(),
                    message: format!(
                        "no wave of plan \"{}\" has run: there is nothing to roll back",
                        plan.name
                    ),
                });
            };
            if plan.waves[i].rolling_back() {
                return Err(AppError::Conflict {
                    code: "RollbackUnderWay".into(),
                    message: format!("wave {} is already being rolled back", plan.waves[i].name),
                });
            }
            if plan.waves[i]
                .rollback
                .as_ref()
                .is_some_and(|r| r.status == shared::plans::RollbackStatus::Done)
            {
                return Err(AppError::Conflict {
                    code: "NothingToRollBack".into(),
                    message: format!("wave {} is rolled back already", plan.waves[i].name),
                });
            }
            // A later wave held for approval would run after this one is rolled back.
            for w in &plan.waves[i + 1..] {
                let held = match w.record_id {
                    Some(id) => state
                        .store
                        .by_record_id(id)
                        .await?
                        .is_some_and(|r| r.status == RunStatus::AwaitingApproval),
                    None => false,
                };
                if held {
                    return Err(AppError::Conflict {
                        code: "WaveAwaitingApproval".into(),
                        message: format!(
                            "wave {} waits for approval (approval {}): cancel the plan, which withdraws it, or have it decided, before rolling back wave {}",
                            w.name,
                            w.record_id.unwrap_or_default(),
                            plan.waves[i].name
                        ),
                    });
                }
            }
            rollback::ask(state, &mut plan, i, who, true).await;
        }
        (Action::Start, _) => return Err(conflict("start (only a draft starts)")),
        (Action::Pause, _) => return Err(conflict("pause (only a running plan pauses)")),
        (Action::Resume, _) => return Err(conflict("resume (only a paused or halted plan resumes)")),
        (Action::Cancel, _) => return Err(conflict("be cancelled (it has ended)")),
    }
    plan.updated_at = now(state).1;
    state.store.save_plan(&plan).await?;
    let event = match action {
        Action::Rollback => "plan-rollback".to_owned(),
        _ => format!("plan-{}", plan.status.as_str()),
    };
    state
        .store
        .auth_event(&event, Some(who), Some(&plan.plan_id), None)
        .await?;
    Ok(plan)
}

/// The driver: steps every running plan, forever, at the watcher's pace.
pub async fn drive(state: AppState) {
    let mut tick = tokio::time::interval(state.poll.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Held starts (a plan's waves among them) expire even when nobody looks at them.
        if let Err(e) = crate::approvals::expire_due(&state).await {
            tracing::warn!(error = %e, "could not expire approvals");
        }
        let running = match state
            .store
            .plans(&[PlanStatus::Running.as_str()], usize::MAX)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the running plans");
                continue;
            }
        };
        let mut ids: Vec<String> = running.into_iter().map(|p| p.plan_id).collect();
        match state.store.plans_rolling_back().await {
            Ok(more) => ids.extend(more.into_iter().filter(|m| !ids.contains(m)).collect::<Vec<_>>()),
            Err(e) => tracing::warn!(error = %e, "could not read the plans rolling back"),
        }
        for plan_id in ids {
            if let Err(e) = step(&state, &plan_id).await {
                tracing::warn!(plan = %plan_id, error = %e, "a plan step failed; trying again");
            }
        }
    }
}

/// One step of one plan: start the next wave, follow the running one, end a bake, or halt; and
/// carry on any wave's rollback, whatever the plan's status.
pub async fn step(state: &AppState, plan_id: &str) -> Result<(), AppError> {
    let _guard = state.plans.lock.lock().await;
    let mut plan = get(state, plan_id).await?;
    let before = plan.clone();
    if plan.status == PlanStatus::Running {
        advance(state, &mut plan).await?;
    }
    for i in 0..plan.waves.len() {
        if plan.waves[i].rolling_back() {
            rollback::follow(state, &mut plan, i).await;
        }
    }
    if plan != before {
        plan.updated_at = now(state).1;
        state.store.save_plan(&plan).await?;
        tell(state, &before, &plan).await;
    }
    Ok(())
}

/// Tells the webhooks what a step changed: waves started, ended or failed, and a halt.
async fn tell(state: &AppState, before: &PlanView, after: &PlanView) {
    for (old, new) in before.waves.iter().zip(&after.waves) {
        if old.status == new.status {
            continue;
        }
        let (event, what) = match new.status {
            WaveStatus::Running => ("wave.started", "started"),
            WaveStatus::Baking => ("wave.ended", "ended; baking"),
            WaveStatus::Failed | WaveStatus::Halted => ("wave.failed", "failed"),
            _ => continue,
        };
        crate::webhooks::notify(
            state,
            &crate::webhooks::Notice {
                event,
                summary: format!(
                    "plan \"{}\": wave {} {what}{}",
                    after.name,
                    new.name,
                    new.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                data: serde_json::json!({"plan_id": after.plan_id, "wave": new.name, "status": new.status.as_str(),
                    "execution_id": new.execution_id}),
            },
        ).await;
    }
    if after.status == PlanStatus::Halted && before.status != PlanStatus::Halted {
        let rejected: Vec<&str> = after
            .waves
            .iter()
            .flat_map(|w| w.rejected.iter().map(|r| r.instance_id.as_str()))
            .collect();
        crate::webhooks::notify(
            state,
            &crate::webhooks::Notice {
                event: "plan.halted",
                summary: format!(
                    "plan \"{}\" halted: {}",
                    after.name,
                    after.reason.clone().unwrap_or_default()
                ),
                data: serde_json::json!({"plan_id": after.plan_id, "reason": after.reason, "rejected": rejected}),
            },
        ).await;
    }
}

async fn advance(state: &AppState, plan: &mut PlanView) -> Result<(), AppError> {
    loop {
        let Some(i) = plan.waves.iter().position(|w| w.status != WaveStatus::Done) else {
            plan.status = PlanStatus::Completed;
            return Ok(());
        };
        match plan.waves[i].status {
            WaveStatus::Pending => return start_wave(state, plan, i).await,
            WaveStatus::Running | WaveStatus::Held => {
                follow_run(state, plan, i).await?;
                match plan.waves[i].status {
                    WaveStatus::Running => return watch_refusals(state, plan, i).await,
                    WaveStatus::Held => return Ok(()),
                    _ => {}
                }
            }
            WaveStatus::Baking => {
                watch_refusals(state, plan, i).await?;
                if plan.waves[i].status != WaveStatus::Baking {
                    return Ok(());
                }
                let (now_ms, _) = now(state);
                let until = plan.waves[i].bake_until.as_deref().and_then(millis).unwrap_or(0);
                if now_ms < until {
                    return Ok(());
                }
                plan.waves[i].status = WaveStatus::Done;
            }
            // A wave that ended badly halts the plan (resume decides what comes next).
            WaveStatus::Failed | WaveStatus::Halted | WaveStatus::Cancelled => {
                plan.status = PlanStatus::Halted;
                return Ok(());
            }
            WaveStatus::Done => unreachable!("found a wave that is not done"),
        }
    }
}

/// The plan a wave's marker (`plan-id/index`, see [`marker`]) belongs to.
pub fn plan_id_of(marker: &str) -> &str {
    marker.rsplit_once('/').map_or(marker, |(id, _)| id)
}

fn marker(plan: &PlanView, i: usize) -> String {
    format!("{}/{i}", plan.plan_id)
}

async fn start_wave(state: &AppState, plan: &mut PlanView, i: usize) -> Result<(), AppError> {
    // A crash after the wave's run was recorded but before the plan was saved: adopt that run (not a
    // start that never ran, which a resume asks for again).
    if let Some(row) = state
        .store
        .by_plan_wave(&marker(plan, i))
        .await?
        .filter(|r| !(r.execution_id.is_none() && r.status.is_terminal()))
    {
        let wave = &mut plan.waves[i];
        wave.record_id = Some(row.id);
        wave.execution_id = row.execution_id.clone();
        wave.started_at = Some(row.created_at.clone());
        wave.targets = targets_of(&row);
        wave.status = WaveStatus::Running;
        return Ok(());
    }
    let start = plan
        .request
        .wave_start(i)
        .validate()
        .map_err(AppError::Validation)?;
    let halt = |plan: &mut PlanView, message: String| {
        plan.waves[i].message = Some(message.clone());
        plan.status = PlanStatus::Halted;
        plan.reason = Some(format!("wave {}: {message}", plan.waves[i].name));
    };
    // A wave is sent on behalf of whoever last started or resumed the plan (its creator until then):
    // once they are disabled, the plan starts no more waves until an enabled operator resumes it,
    // taking it over.
    let answerable = plan.requesters.last().unwrap_or(&plan.requester).clone();
    if state.store.user_disabled(&answerable).await? {
        halt(
            plan,
            format!("{answerable}, on whose behalf its waves start, is disabled; an enabled operator resumes it to take it over"),
        );
        return Ok(());
    }
    let hub = crate::routes::identity::resolve(state).await?.account;
    let accounts = crate::auth::policy::start_accounts(&start, &hub);
    if let Some(why) = crate::auth::no_longer_answerable(state, &answerable, &accounts).await? {
        halt(
            plan,
            format!("{why}; an operator who may resumes the plan to take it over"),
        );
        return Ok(());
    }
    let a = match runs::assess(state, &start, false).await {
        Ok(a) => a,
        Err(e) => {
            plan.waves[i].status = WaveStatus::Failed;
            halt(plan, format!("could not start: {e}"));
            return Ok(());
        }
    };
    if !a.users.is_empty() && start.override_reason.is_none() {
        halt(
            plan,
            format!(
                "{} instance(s) still call IMDSv1 ({}); resume with an override reason to run it anyway",
                a.users.len(),
                a.users
                    .iter()
                    .take(5)
                    .map(|u| u.instance_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return Ok(());
    }
    let mut start = start;
    a.send_where_targets_are(&mut start);
    runs::follow_rollout_order(&mut start, &a.targets);
    let place = runs::Place {
        account: &a.account,
        region: &a.region,
    };
    let wave_marker = marker(plan, i);
    // Sent on behalf of whoever last started or resumed the plan: the run names them.
    let requester = answerable.clone();
    // A wave the approval policy covers waits for a second person like any start: its run is held,
    // and the wave follows it from there (approved: sent; rejected or expired: the wave fails).
    let origin = runs::Origin::PlanWave(&wave_marker);
    let why = crate::approvals::needed(state, &start, &a.targets).await?;
    let sent = crate::approvals::hold_or_send(
        state,
        &place,
        &start,
        &a.targets,
        origin,
        &requester,
        why.as_deref(),
    )
    .await;
    let held = matches!(sent, Ok(crate::approvals::Sent::Held(_)));
    let sent = sent.map(|sent| match sent {
        crate::approvals::Sent::Held(record_id) => runs::StartReceipt {
            record_id,
            execution_id: None,
        },
        crate::approvals::Sent::Started(receipt) => receipt,
    });
    match sent {
        Ok(receipt) => {
            let wave = &mut plan.waves[i];
            wave.record_id = Some(receipt.record_id);
            wave.execution_id = receipt.execution_id;
            wave.started_at = Some(now(state).1);
            // What an earlier attempt said (a readiness check that held it) is over.
            (wave.status, wave.message) = if held {
                (WaveStatus::Held, Some(held_message(receipt.record_id)))
            } else {
                (WaveStatus::Running, None)
            };
            // Watched for refusals: the instances this wave turns IMDSv1 off on.
            wave.targets = a
                .targets
                .iter()
                .filter(|t| {
                    !t.metadata.is_compliant() && start.parameters.apply_to(&t.metadata).is_compliant()
                })
                .map(|t| PlanTarget {
                    instance_id: t.instance_id.clone(),
                    account: t.account.clone(),
                    region: t.region.clone(),
                })
                .collect();
        }
        Err(e) => {
            plan.waves[i].status = WaveStatus::Failed;
            halt(plan, format!("SSM refused the start: {e}"));
        }
    }
    Ok(())
}

/// What a wave waiting for approval says.
fn held_message(record_id: i64) -> String {
    format!(
        "its start waits for a second person's approval (approval {record_id}); nothing is sent until then"
    )
}

/// The targets a recorded run changed from allowing IMDSv1 (from its prior options).
fn targets_of(row: &crate::store::RunRow) -> Vec<PlanTarget> {
    let prior: BTreeMap<String, serde_json::Value> = row
        .prior_options
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    prior
        .into_iter()
        .filter(|(_, v)| v["http_tokens"] != "required" && v["http_endpoint"] != "disabled")
        .map(|(id, v)| PlanTarget {
            instance_id: id,
            account: v["account"].as_str().unwrap_or(&row.account).to_owned(),
            region: v["region"].as_str().unwrap_or(&row.region).to_owned(),
        })
        .collect()
}

/// Follows the wave's run in the store (the watcher keeps it current): success starts the bake,
/// anything else ends the wave.
async fn follow_run(state: &AppState, plan: &mut PlanView, i: usize) -> Result<(), AppError> {
    let row = match plan.waves[i].record_id {
        Some(id) => state.store.by_record_id(id).await?,
        None => None,
    };
    let Some(row) = row else {
        return Ok(());
    };
    let wave = &mut plan.waves[i];
    wave.execution_id = row.execution_id.clone();
    if row.status == RunStatus::AwaitingApproval {
        wave.status = WaveStatus::Held;
        wave.message = Some(held_message(row.id));
        return Ok(());
    }
    if wave.status == WaveStatus::Held {
        // Approved: sent (or queued for SSM's room) from here on.
        wave.status = WaveStatus::Running;
        wave.message = None;
    }
    if !row.status.is_terminal() {
        return Ok(());
    }
    let (now_ms, at) = now(state);
    wave.ended_at = Some(at);
    if row.status == RunStatus::Success {
        wave.status = WaveStatus::Baking;
        // Against the sandbox a bake minute passes at the sandbox's speed, as its runbook sleeps do.
        let bake_ms = (f64::from(wave.bake_minutes) * 60_000.0 / state.bake_speed.max(0.001)) as i64;
        let until = aws_smithy_types::DateTime::from_millis(now_ms + bake_ms);
        wave.bake_until = crate::aws::rfc3339(Some(&until));
    } else {
        // SSM's reason (a failed step, the alarm that stopped it, a rejection) says what happened.
        let why = row
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str::<shared::api::ExecutionDetail>(d).ok())
            .and_then(|d| d.failure_message)
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let message = format!("its run ended {}{why}", row.status.as_str());
        wave.status = WaveStatus::Failed;
        plan.status = PlanStatus::Halted;
        plan.reason = Some(format!("wave {}: {message}", wave.name));
        wave.message = Some(message);
    }
    Ok(())
}

/// Asks CloudWatch how many IMDSv1 calls the wave's instances have had refused since the wave
/// started; at or above the plan's threshold the plan halts (and rolls the wave back if it says so).
async fn watch_refusals(state: &AppState, plan: &mut PlanView, i: usize) -> Result<(), AppError> {
    {
        let mut checked = state
            .plans
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = marker(plan, i);
        let every = refusal_check_every(state);
        if checked.get(&key).is_some_and(|t| t.elapsed() < every) {
            return Ok(());
        }
        checked.insert(key, Instant::now());
    }
    let wave = &plan.waves[i];
    if wave.targets.is_empty() {
        return Ok(());
    }
    let started = wave.started_at.as_deref().and_then(millis).unwrap_or(0);
    let since = Duration::from_millis(u64::try_from(now(state).0 - started).unwrap_or(0))
        .max(Duration::from_secs(60));
    let mut places: BTreeMap<(String, String), Vec<(String, UsageMetric)>> = BTreeMap::new();
    for t in &wave.targets {
        places
            .entry((t.account.clone(), t.region.clone()))
            .or_default()
            .push((t.instance_id.clone(), UsageMetric::Rejected));
    }
    let mut rejected: Vec<InstanceUsage> = Vec::new();
    // One place that cannot be read (a removed member role, throttling) does not blind the check
    // to the others: their refused calls still halt the plan; the failure is reported after.
    let mut unread: Option<AppError> = None;
    for ((account, region), queries) in places {
        let read = async {
            let clients = crate::inventory::clients_for(state, &account, &region).await?;
            cloudwatch::usage(&clients, &queries, since).await
        };
        let sums = match read.await {
            Ok(sums) => sums,
            Err(e) => {
                tracing::warn!(plan = %plan.plan_id, %account, %region, error = %e, "cannot read a wave's refused calls there");
                unread.get_or_insert(e);
                continue;
            }
        };
        rejected.extend(
            sums.into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(id, n)| InstanceUsage {
                    instance_id: id,
                    imdsv1_calls: n,
                }),
        );
    }
    rejected.sort_by(|a, b| {
        b.imdsv1_calls
            .cmp(&a.imdsv1_calls)
            .then(a.instance_id.cmp(&b.instance_id))
    });
    let total: u64 = rejected.iter().map(|r| r.imdsv1_calls).sum();
    plan.waves[i].rejected = rejected;
    if total < plan.halt.rejected_calls {
        return unread.map_or(Ok(()), Err);
    }
    let wave = &mut plan.waves[i];
    let names: Vec<&str> = wave.rejected.iter().map(|r| r.instance_id.as_str()).collect();
    let message = format!(
        "{total} IMDSv1 call(s) refused on {} instance(s) since the wave started ({}): their software still uses IMDSv1",
        names.len(),
        names.join(", ")
    );
    wave.status = WaveStatus::Halted;
    wave.message = Some(message.clone());
    plan.status = PlanStatus::Halted;
    plan.reason = Some(format!("wave {}: {message}", wave.name));
    if plan.halt.rollback && plan.waves[i].execution_id.is_some() {
        let who = format!("plan {}", plan.name);
        rollback::ask(state, plan, i, &who, false).await;
        plan.reason = Some(format!(
            "{} The wave is being rolled back.",
            plan.reason.clone().unwrap_or_default()
        ));
        rollback::follow(state, plan, i).await;
    }
    Ok(())
}
