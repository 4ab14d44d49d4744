//! A wave's rollback, carried out until it is done: asked for by the plan's halt or by a person; the
//! wave's run is told to stop first (SSM's run must end before its instances can be restored), the
//! rollback starts once the run has ended, attempts AWS could not take are retried with a growing
//! gap, and its runs are followed to their end. The plan page shows each step (`WaveRollback`).

use shared::plans::{PlanView, RollbackStatus, WaveRollback, WaveView};
use shared::RunStatus;

use super::{millis, now};
use crate::aws::AwsFault;
use crate::error::AppError;
use crate::runs::{self, RollbackBy};
use crate::state::AppState;
use crate::store::RunRow;

/// The first retry's gap; each one after doubles it, up to [`MAX_RETRY_GAP_MS`].
const FIRST_RETRY_GAP_MS: i64 = 5_000;
const MAX_RETRY_GAP_MS: i64 = 300_000;

/// Asks for wave `i`'s rollback on behalf of `who` (a person, or `plan <name>` for its halt). A run
/// still going is told to stop now; the driver starts the rollback when it has ended.
pub(super) async fn ask(state: &AppState, plan: &mut PlanView, i: usize, who: &str, by_person: bool) {
    let (_, at) = now(state);
    let mut rollback = WaveRollback {
        status: RollbackStatus::Waiting,
        requested_by: who.to_owned(),
        requested_at: at,
        by_person,
        attempts: 0,
        next_attempt_at: None,
        record_ids: Vec::new(),
        after_record_id: state.store.last_record_id().await.unwrap_or(i64::MAX),
        message: None,
    };
    if let Some(row) = run_of(state, &plan.waves[i]).await {
        if row.status.can_stop() {
            rollback.message = Some(stop(state, &row, who).await);
        }
    }
    plan.waves[i].rollback = Some(rollback);
}

/// One step of wave `i`'s rollback: start it once the run has ended, or follow its runs.
pub(super) async fn follow(state: &AppState, plan: &mut PlanView, i: usize) {
    let Some(mut rollback) = plan.waves[i].rollback.clone() else {
        return;
    };
    match rollback.status {
        RollbackStatus::Waiting => start(state, plan, i, &mut rollback).await,
        RollbackStatus::Running | RollbackStatus::Held => {
            follow_runs(state, &mut plan.waves[i], &mut rollback).await;
        }
        RollbackStatus::Done | RollbackStatus::Failed => return,
    }
    plan.waves[i].rollback = Some(rollback);
}

async fn run_of(state: &AppState, wave: &WaveView) -> Option<RunRow> {
    let id = wave.record_id?;
    state.store.by_record_id(id).await.ok().flatten()
}

/// Tells the wave's run to stop; says what happened.
async fn stop(state: &AppState, row: &RunRow, who: &str) -> String {
    let exec = row.execution_id.clone().unwrap_or_default();
    match runs::stop(state, row, who).await {
        // A conflict: it ended meanwhile, or is already stopping.
        Ok(()) | Err(AppError::Conflict { .. }) => {
            format!("run {exec} was told to stop; the rollback starts once it has ended")
        }
        Err(e) => format!("run {exec} could not be stopped ({e}); the rollback starts once it has ended"),
    }
}

/// Whether the same attempt may pass later: anything but AWS refusing the request itself. A
/// rollback is the plan's safety net, so credentials that are missing now (an expired sign-in)
/// are waited for too.
fn worth_retrying(e: &AppError) -> bool {
    match e {
        AppError::Aws { fault, .. } => *fault != AwsFault::Refused,
        AppError::AwsUnavailable(_) | AppError::Internal { .. } => true,
        _ => false,
    }
}

async fn start(state: &AppState, plan: &mut PlanView, i: usize, rollback: &mut WaveRollback) {
    let (now_ms, _) = now(state);
    if rollback
        .next_attempt_at
        .as_deref()
        .and_then(millis)
        .is_some_and(|due| now_ms < due)
    {
        return;
    }
    let Some(exec) = plan.waves[i].execution_id.clone() else {
        rollback.status = RollbackStatus::Done;
        rollback.message = Some("the wave's run never started: there is nothing to roll back".into());
        return;
    };
    if let Some(row) = run_of(state, &plan.waves[i]).await {
        if !row.status.is_terminal() {
            if row.status.can_stop() && rollback.attempts == 0 && rollback.message.is_none() {
                rollback.message = Some(stop(state, &row, &rollback.requested_by).await);
            }
            return;
        }
    }
    // Sent before the console stopped, and not noted: adopted, never sent twice.
    match state.store.rollbacks_of(&exec, rollback.after_record_id).await {
        Ok(sent) if !sent.is_empty() => {
            rollback.status = RollbackStatus::Running;
            rollback.record_ids = sent.iter().map(|r| r.id).collect();
            rollback.message = Some("its runs were sent before the console restarted".into());
            return;
        }
        Ok(_) => {}
        // Read again at the next step.
        Err(_) => return,
    }
    // A person's rollback is held for a second person as a run's would be; the plan's own restores
    // at once, on behalf of whoever runs the plan now.
    let (requester, by) = if rollback.by_person {
        (rollback.requested_by.clone(), RollbackBy::Person)
    } else {
        (
            plan.requesters
                .last()
                .cloned()
                .unwrap_or_else(|| plan.requester.clone()),
            RollbackBy::PlanHalt,
        )
    };
    match runs::rollback(state, &exec, &requester, by).await {
        Ok(r) => {
            plan.waves[i].rollback_execution_ids = r.execution_ids;
            rollback.next_attempt_at = None;
            let notes = (!r.notes.is_empty()).then(|| r.notes.join("; "));
            if r.record_ids.is_empty() {
                rollback.status = RollbackStatus::Done;
                rollback.message = Some(notes.unwrap_or_else(|| "nothing was left to restore".to_owned()));
            } else {
                rollback.status = RollbackStatus::Running;
                rollback.record_ids = r.record_ids;
                rollback.message = notes;
            }
        }
        Err(AppError::Conflict { code, .. }) if code == "StillRunning" => {}
        Err(e) if worth_retrying(&e) => {
            rollback.attempts += 1;
            let gap = (FIRST_RETRY_GAP_MS << (rollback.attempts - 1).min(10)).min(MAX_RETRY_GAP_MS);
            let due = store::rfc3339_ms(now_ms + gap);
            rollback.message = Some(format!(
                "attempt {} could not start the rollback ({e}); trying again at {due}",
                rollback.attempts
            ));
            rollback.next_attempt_at = Some(due);
        }
        Err(e) => {
            rollback.status = RollbackStatus::Failed;
            rollback.message = Some(format!("the rollback could not start: {e}"));
        }
    }
}

/// SSM's reason a run did not succeed, when the watcher has it.
fn failure_of(row: &RunRow) -> String {
    row.detail
        .as_deref()
        .and_then(|d| serde_json::from_str::<shared::api::ExecutionDetail>(d).ok())
        .and_then(|d| d.failure_message)
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

async fn follow_runs(state: &AppState, wave: &mut WaveView, rollback: &mut WaveRollback) {
    let mut rows = Vec::new();
    for id in &rollback.record_ids {
        match state.store.by_record_id(*id).await {
            Ok(Some(row)) => rows.push(row),
            // Read again at the next step.
            Ok(None) | Err(_) => return,
        }
    }
    for row in &rows {
        if let Some(exec) = &row.execution_id {
            if !wave.rollback_execution_ids.contains(exec) {
                wave.rollback_execution_ids.push(exec.clone());
            }
        }
    }
    if rows.iter().all(|r| r.status.is_terminal()) {
        let failed: Vec<String> = rows
            .iter()
            .filter(|r| r.status != RunStatus::Success)
            .map(|r| {
                let name = r
                    .execution_id
                    .clone()
                    .unwrap_or_else(|| format!("record {}", r.id));
                format!("{name} ended {}{}", r.status, failure_of(r))
            })
            .collect();
        if failed.is_empty() {
            rollback.status = RollbackStatus::Done;
            rollback.message = Some(format!(
                "rolled back by {}",
                wave.rollback_execution_ids.join(", ")
            ));
        } else {
            rollback.status = RollbackStatus::Failed;
            rollback.message = Some(format!(
                "the rollback did not finish: {}; roll the wave back again once the cause is fixed",
                failed.join("; ")
            ));
        }
    } else if let Some(held) = rows.iter().find(|r| r.status == RunStatus::AwaitingApproval) {
        rollback.status = RollbackStatus::Held;
        rollback.message = Some(format!(
            "waits for a second person's approval (approval {})",
            held.id
        ));
    } else {
        rollback.status = RollbackStatus::Running;
    }
}
