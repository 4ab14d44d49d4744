//! `/api/v1/executions`: start a run (recorded before it is sent), list history, read one run, stop it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use shared::api::{
    ExecutionDetail, ExecutionPage, InstanceUsage, InstanceView, PreviewResponse, RollbackResponse,
    StartExecutionRequest, StartExecutionResponse,
};
use shared::{preview, InstanceId, RunStatus, StartPlan, Targets};
use std::collections::BTreeMap;
use std::time::Duration;

use super::{ApiJson, ApiQuery};
use crate::auth::AccountScope;
use crate::auth::Identity;
use crate::aws::{ec2, ssm};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{HistoryFilter, RunRow};
use crate::usage;
use crate::{runs, watcher};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/executions", post(start).get(list))
        .route("/executions/{id}", get(detail))
        .route("/executions/preview", post(preview_start))
        .route("/executions/{id}/stop", post(stop))
        .route("/executions/{id}/rollback", post(rollback))
        .route("/executions/{id}/rollback/preview", post(rollback_preview))
}

/// Checks that the targets exist (SSM itself would only fail later, in a step) and returns their
/// current options, which are kept with the record.
async fn resolve_targets(
    state: &AppState,
    account: &str,
    region: &str,
    plan: &StartPlan,
) -> Result<Vec<shared::api::InstanceView>, AppError> {
    let clients = &crate::inventory::clients_for(state, account, region).await?;
    // Where the targets were looked for, as the person would say it.
    let place = if account.is_empty() {
        region.to_owned()
    } else {
        format!("account {account}, {region}")
    };
    let (selection, field) = match (&plan.rate_control, &plan.parameters.instance_id) {
        (Some(rc), _) => match &rc.targets {
            Targets::InstanceIds(ids) => (
                OwnedSelection::Ids(ids.iter().map(|i| i.to_string()).collect()),
                "rate_control.targets.instance_ids",
            ),
            Targets::Tag { key, value } => (
                OwnedSelection::Tag(key.clone(), value.clone()),
                "rate_control.targets.tag",
            ),
        },
        (None, Some(id)) => (OwnedSelection::Ids(vec![id.to_string()]), "parameters.InstanceId"),
        (None, None) => return Err(AppError::field("parameters.InstanceId", "required")),
    };
    let found = match &selection {
        OwnedSelection::Ids(ids) => ec2::describe(clients, ec2::Selection::Ids(ids)).await,
        OwnedSelection::Tag(k, v) => ec2::describe(clients, ec2::Selection::Tag { key: k, value: v }).await,
    };
    match found {
        Ok(list) if list.is_empty() => Err(AppError::field(
            field,
            format!("no instance in {place} matches these targets"),
        )),
        Ok(list) => Ok(list),
        Err(AppError::Aws { code, message, .. }) if code.starts_with("InvalidInstanceID") => {
            Err(AppError::field(field, format!("{message} in {place}")))
        }
        Err(e) => Err(e),
    }
}

enum OwnedSelection {
    Ids(Vec<String>),
    Tag(String, String),
}

/// A validated start, its region, and its targets as they are now (with IMDSv1 usage when it matters).
struct Assessment {
    /// The member account; '' for the console's own.
    account: String,
    region: String,
    targets: Vec<InstanceView>,
    /// Targets whose IMDSv1 callers the run would break.
    users: Vec<InstanceUsage>,
}

async fn assess(state: &AppState, plan: &StartPlan, with_usage: bool) -> Result<Assessment, AppError> {
    let region = plan
        .region
        .as_ref()
        .map_or_else(|| state.regions[0].clone(), |r| r.as_str().to_owned());
    state.region(Some(&region))?;
    let account = plan
        .account
        .as_ref()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let mut targets = if plan.target_locations.is_empty() {
        resolve_targets(state, &account, &region, plan).await?
    } else {
        // Across accounts and Regions: the preview and the readiness check cover every place.
        let hub = crate::routes::identity::resolve(state).await?.account;
        let mut all = Vec::new();
        for (acct, r) in crate::org::places(state, &plan.target_locations).await? {
            let acct = if acct == hub { String::new() } else { acct };
            match resolve_targets(state, &acct, &r, plan).await {
                Ok(found) => all.extend(found),
                // A place with no tagged instance is not an error; an unreachable one is.
                Err(AppError::Validation(_)) => {}
                Err(e) => {
                    return Err(AppError::field(
                        "target_locations",
                        format!("cannot read account {acct} in {r}: {e}"),
                    ))
                }
            }
        }
        if all.is_empty() {
            return Err(AppError::field(
                "rate_control.targets.tag",
                "no instance in these accounts and Regions matches this tag",
            ));
        }
        all
    };
    let mut users = Vec::new();
    // A rollout over instance IDs goes least risky first, which needs each one's IMDSv1 use.
    let ordered = plan
        .rate_control
        .as_ref()
        .is_some_and(|rc| matches!(rc.targets, Targets::InstanceIds(_)));
    if with_usage || plan.blocks_imdsv1() || ordered {
        usage::annotate(state, &mut targets).await?;
        if ordered {
            preview::rollout_order(&mut targets);
        }
        users = targets
            .iter()
            .filter(|t| preview::breaks_imdsv1_users(&plan.parameters, t))
            .map(|t| InstanceUsage {
                instance_id: t.instance_id.clone(),
                imdsv1_calls: t.imdsv1_calls.unwrap_or(0),
            })
            .collect();
    }
    Ok(Assessment {
        account,
        region,
        targets,
        users,
    })
}

async fn start(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    ApiJson(req): ApiJson<StartExecutionRequest>,
) -> Result<(StatusCode, Json<StartExecutionResponse>), AppError> {
    let mut plan = req.validate().map_err(AppError::Validation)?;
    let a = assess(&state, &plan, false).await?;
    if !a.users.is_empty() && plan.override_reason.is_none() {
        return Err(AppError::Imdsv1InUse(a.users));
    }
    runs::follow_rollout_order(&mut plan, &a.targets);
    let place = runs::Place {
        account: &a.account,
        region: &a.region,
    };
    let receipt = runs::record_and_send(&state, &place, &plan, &a.targets, None, &who.name).await?;
    Ok(match receipt.execution_id {
        Some(id) => (
            StatusCode::CREATED,
            Json(StartExecutionResponse {
                execution_id: Some(id),
                record_id: receipt.record_id,
                status: RunStatus::InProgress,
                message: None,
            }),
        ),
        None => (
            StatusCode::ACCEPTED,
            Json(StartExecutionResponse {
                execution_id: None,
                record_id: receipt.record_id,
                status: RunStatus::Queued,
                message: Some(
                    "SSM's limit of concurrent automations in this account and Region is reached. The \
                     console has recorded the start and sends it as soon as SSM has room; it appears in \
                     History then, and in the audit log now."
                        .into(),
                ),
            }),
        ),
    })
}

/// What a start would do, per target, without starting anything.
async fn preview_start(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<StartExecutionRequest>,
) -> Result<Json<PreviewResponse>, AppError> {
    let plan = req.validate().map_err(AppError::Validation)?;
    let a = assess(&state, &plan, true).await?;
    let window_days = (state.usage_window.as_secs() / 86_400) as u32;
    Ok(Json(PreviewResponse {
        region: a.region,
        window_days,
        blocked: !a.users.is_empty(),
        targets: a
            .targets
            .iter()
            .map(|t| preview::preview(&plan.parameters, t, window_days))
            .collect(),
    }))
}

async fn rollback(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RollbackResponse>), AppError> {
    let reply = runs::rollback(&state, &id, &who.name).await?;
    Ok((StatusCode::CREATED, Json(reply)))
}

/// What a rollback would restore, without starting it.
async fn rollback_preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<shared::api::RollbackPreview>, AppError> {
    let plan = runs::plan_rollback(&state, &id).await?;
    let window_days = (state.usage_window.as_secs() / 86_400) as u32;
    Ok(Json(shared::api::RollbackPreview {
        runs: plan.starts.len(),
        targets: plan
            .starts
            .iter()
            .flat_map(|s| {
                s.targets
                    .iter()
                    .map(|t| preview::preview(&s.plan.parameters, t, window_days))
            })
            .collect(),
        notes: plan.notes,
        skipped: plan.skipped,
    }))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    status: Option<String>,
    instance_id: Option<String>,
    requester: Option<String>,
    parent: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// An RFC 3339 time in the store's own form (so text order is time order).
pub(super) fn normalise_time(name: &str, raw: Option<&str>) -> Result<Option<String>, AppError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let parsed = aws_smithy_types::DateTime::from_str(raw, aws_smithy_types::date_time::Format::DateTime)
        .map_err(|_| {
            AppError::BadQuery(format!(
                "{name} \"{raw}\" is not an RFC 3339 time such as 2026-11-26T09:00:00Z"
            ))
        })?;
    Ok(crate::aws::rfc3339(Some(&parsed)))
}

const STATUSES: &[&str] = &[
    "Pending",
    "InProgress",
    "Waiting",
    "Success",
    "TimedOut",
    "Cancelling",
    "Cancelled",
    "Failed",
    "Recorded",
    "CompletedWithSuccess",
    "CompletedWithFailure",
    "Exited",
];

fn parse_cursor(raw: &str) -> Option<(String, i64)> {
    let (t, id) = raw.rsplit_once('~')?;
    Some((t.to_owned(), id.parse().ok()?))
}

async fn list(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<ExecutionPage>, AppError> {
    if let Some(s) = q.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(AppError::BadQuery(format!(
            "status \"{s}\" is not an SSM status; use one of {}",
            STATUSES.join(", ")
        )));
    }
    if let Some(i) = q.instance_id.as_deref() {
        InstanceId::parse(i).map_err(|m| AppError::BadQuery(format!("instance_id: {m}")))?;
    }
    let cursor =
        match q.cursor.as_deref() {
            Some(c) => Some(parse_cursor(c).ok_or_else(|| {
                AppError::BadQuery(format!("cursor \"{c}\" is not one this server gave out"))
            })?),
            None => None,
        };
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::BadQuery(format!(
            "limit {limit} is out of range; use 1 to 500"
        )));
    }
    let filter = HistoryFilter {
        since: normalise_time("since", q.since.as_deref())?,
        until: normalise_time("until", q.until.as_deref())?,
        status: q.status,
        instance_id: q.instance_id,
        requester: q.requester,
        parent: q.parent,
        cursor,
        limit,
        accounts: scope.as_recorded(),
    };
    let (rows, next) = state.store.history(&filter)?;
    Ok(Json(ExecutionPage {
        executions: rows.iter().map(RunRow::summary).collect(),
        next_cursor: next.map(|(t, id)| format!("{t}~{id}")),
    }))
}

fn looks_like_execution_id(id: &str) -> bool {
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

async fn detail(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
    Path(id): Path<String>,
) -> Result<Json<ExecutionDetail>, AppError> {
    if !looks_like_execution_id(&id) {
        return Err(AppError::NotFound(format!(
            "execution \"{id}\": execution IDs are 36-character UUIDs"
        )));
    }
    let Some(row) = state.store.by_execution_id(&id)? else {
        return foreign_detail(&state, &id).await.map(Json);
    };
    // Outside the caller's accounts, the run does not exist for them.
    if !scope.allows(&row.account) {
        return Err(AppError::NotFound(format!(
            "execution {id} was not started by this console"
        )));
    }
    if let Some(cached) = cached_detail(&state, &row) {
        return Ok(Json(cached));
    }
    if row.parent_execution_id.is_none() && row.detail.is_none() && !row.status.is_terminal() {
        // The watcher has not reached this run yet: answer from our record now; the steps follow
        // (with an event) when it does. No SSM call on a viewer's behalf.
        return Ok(Json(provisional_detail(&state, &row)?));
    }
    // A child nobody has looked at lately: fetch once, concurrent viewers waiting for that one fetch.
    let _guard = state.detail_fetch.lock().await;
    let row = state.store.by_execution_id(&id)?.unwrap_or(row);
    if let Some(cached) = cached_detail(&state, &row) {
        return Ok(Json(cached));
    }
    Ok(Json(watcher::refresh(&state, &row).await?))
}

/// What our record says about a run SSM has not been asked about yet.
fn provisional_detail(state: &AppState, row: &RunRow) -> Result<ExecutionDetail, AppError> {
    let plan: Option<StartPlan> = row
        .started_here
        .then(|| state.store.plan_of(row.id).ok().flatten())
        .flatten()
        .and_then(|p| serde_json::from_str(&p).ok());
    let parameters = plan
        .map(|p| p.parameters.to_ssm().into_iter().collect())
        .unwrap_or_default();
    let mut detail = ExecutionDetail {
        summary: row.summary(),
        parameters,
        outputs: BTreeMap::new(),
        failure_message: None,
        steps: Vec::new(),
        rate_control: None,
        children: Vec::new(),
        override_reason: None,
        rollback_of: None,
        rolled_back_by: Vec::new(),
        prior_options: BTreeMap::new(),
    };
    runs::complete(state, &mut detail, row)?;
    Ok(detail)
}

/// How old a child execution's stored steps may be when someone looks at it.
const CHILD_DETAIL_TTL: Duration = Duration::from_secs(3);

/// The stored detail when it is final, kept current by the watcher, or fresh enough.
fn cached_detail(state: &AppState, row: &RunRow) -> Option<ExecutionDetail> {
    let json = row.detail.as_deref()?;
    let mut detail: ExecutionDetail = serde_json::from_str(json).ok()?;
    let final_ = detail.summary.status.is_terminal() && detail.summary.status == row.status;
    // Top-level runs in flight are kept current by the watcher (and viewers hear of changes over SSE);
    // a child's steps are refreshed on view, at most every CHILD_DETAIL_TTL.
    let watched = row.parent_execution_id.is_none();
    let fresh = row
        .detail_at_ms
        .is_some_and(|at| state.store.clock.now_ms() - at < CHILD_DETAIL_TTL.as_millis() as i64);
    if !(final_ || watched || fresh) {
        return None;
    }
    // The summary's status comes from the store, which the watcher keeps current for children too.
    detail.summary.status = row.status.clone();
    runs::complete(state, &mut detail, row).ok()?;
    Some(detail)
}

/// A run this console did not start: look for it in each region, within the lookup budget (429 when it
/// is spent, never a queue), and only among executions of our runbook.
async fn foreign_detail(state: &AppState, id: &str) -> Result<ExecutionDetail, AppError> {
    for clients in state.clients.values() {
        let limits = state.limits("", &clients.region);
        let slot = limits.lookup.try_acquire();
        let found = match slot {
            Ok(_slot) => ssm::get(clients, id).await,
            Err(wait) => {
                let secs = wait.as_secs() + 1;
                return Err(AppError::refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    "LookupThrottled",
                    format!("execution {id} is not in this console's records, and looking it up in SSM is rate-limited; try again in {secs} s"),
                ));
            }
        };
        match found {
            Ok(ex) if ex.document_name != shared::RUNBOOK => break,
            Ok(ex) => {
                let row = RunRow {
                    id: 0,
                    client_token: None,
                    execution_id: Some(id.to_owned()),
                    account: String::new(),
                    region: clients.region.clone(),
                    document_name: ex.document_name.clone(),
                    requester: None,
                    status: ex.status.clone(),
                    instance_id: None,
                    targets: None,
                    parent_execution_id: ex.parent_id.clone(),
                    start_time: ex.start_time.clone(),
                    end_time: ex.end_time.clone(),
                    detail: None,
                    detail_at_ms: None,
                    started_here: false,
                    created_at: String::new(),
                    override_reason: None,
                    prior_options: None,
                    rollback_of: None,
                    rolled_back_by: None,
                };
                return Ok(runs::detail_of(&row, &ex));
            }
            Err(AppError::Aws { code, .. }) if code == "AutomationExecutionNotFoundException" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(AppError::NotFound(format!(
        "execution {id} is not known to this console or to SSM in {}",
        state.regions.join(", ")
    )))
}

async fn stop(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    if !looks_like_execution_id(&id) {
        return Err(AppError::NotFound(format!(
            "execution \"{id}\": execution IDs are 36-character UUIDs"
        )));
    }
    let row = state
        .store
        .by_execution_id(&id)?
        .ok_or_else(|| AppError::NotFound(format!("execution {id} was not started by this console")))?;
    let clients = crate::inventory::clients_for(&state, &row.account, &row.region).await?;
    let stopped = {
        let limits = state.limits(&row.account, &row.region);
        let _slot = limits.read.acquire().await;
        ssm::stop(&clients, &id).await
    };
    match stopped {
        Ok(()) => {}
        Err(AppError::Aws { code, message, .. }) if code == "InvalidAutomationStatusUpdateException" => {
            return Err(AppError::Conflict { code, message });
        }
        Err(e) => return Err(e),
    }
    state.store.set_stopped_by(&id, &who.name)?;
    state
        .store
        .auth_event("run-stopped", Some(&who.name), Some(&id), None)?;
    state.events.publish(shared::api::ExecutionEvent {
        execution_id: id.clone(),
        status: "Cancelling".into(),
        parent_execution_id: row.parent_execution_id.clone(),
        account: row.account.clone(),
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "execution_id": id, "status": "Cancelling" })),
    ))
}
