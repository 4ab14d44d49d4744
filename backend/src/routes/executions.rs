//! `/api/v1/executions`: start a run (recorded before it is sent), list history, read one run, stop it.

use super::described::{doc, ApiRouter};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use shared::api::{
    ExecutionDetail, ExecutionPage, PreviewResponse, RollbackResponse, StartExecutionRequest,
    StartExecutionResponse,
};
use shared::{preview, InstanceId, RunStatus, StartPlan};
use std::collections::BTreeMap;
use std::time::Duration;

use super::{ApiJson, ApiQuery};
use crate::auth::AccountScope;
use crate::auth::Identity;
use crate::aws::ssm;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{HistoryFilter, RunRow};
use crate::{runs, watcher};

pub fn router() -> ApiRouter {
    ApiRouter::default()
        .post(
            "/executions",
            start,
            doc("Start a run of AWSSupport-ConfigureEC2Metadata (recorded before it is sent)")
                .body::<StartExecutionRequest>()
                .answers::<StartExecutionResponse>(201),
        )
        .get(
            "/executions",
            list,
            doc("Run history, newest first, filtered and paged")
                .query::<HistoryQuery>()
                .answers::<ExecutionPage>(200),
        )
        .get(
            "/executions/{id}",
            detail,
            doc("One run: its steps, outputs, children and record").answers::<ExecutionDetail>(200),
        )
        .post(
            "/executions/preview",
            preview_start,
            doc("What a start would change, instance by instance, and whether IMDSv1 is still in use")
                .body::<StartExecutionRequest>()
                .answers::<PreviewResponse>(200),
        )
        .post(
            "/executions/{id}/stop",
            stop,
            doc("Stop a run").answers::<Stopping>(202),
        )
        .post(
            "/executions/{id}/rollback",
            rollback,
            doc("Restore what a run changed").answers::<RollbackResponse>(201),
        )
        .post(
            "/executions/{id}/rollback/preview",
            rollback_preview,
            doc("What a rollback would restore, instance by instance")
                .answers::<shared::api::RollbackPreview>(200),
        )
}

async fn start(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    ApiJson(req): ApiJson<StartExecutionRequest>,
) -> Result<(StatusCode, Json<StartExecutionResponse>), AppError> {
    let mut plan = req.validate().map_err(AppError::Validation)?;
    let a = runs::assess(&state, &plan, false).await?;
    if !a.users.is_empty() && plan.override_reason.is_none() {
        return Err(AppError::Imdsv1InUse(a.users));
    }
    let asked_locations = plan.target_locations.len();
    a.send_where_targets_are(&mut plan);
    runs::follow_rollout_order(&mut plan, &a.targets);
    let place = runs::Place {
        account: &a.account,
        region: &a.region,
    };
    let why = crate::approvals::needed(&state, &plan, &a.targets).await?;
    let sent = crate::approvals::hold_or_send(
        &state,
        &place,
        &plan,
        &a.targets,
        runs::Origin::Request,
        &who.name,
        why.as_deref(),
    )
    .await?;
    let receipt = match sent {
        crate::approvals::Sent::Started(receipt) => receipt,
        crate::approvals::Sent::Held(id) => {
            let why = why.unwrap_or_default();
            let expires_at = state
                .store
                .approval(id)
                .await?
                .map(|a| a.expires_at)
                .unwrap_or_default();
            return Ok((
                StatusCode::ACCEPTED,
                Json(StartExecutionResponse {
                    execution_id: None,
                    record_id: id,
                    status: RunStatus::from(crate::store::STATUS_AWAITING_APPROVAL),
                    message: Some(format!(
                        "This start needs a second person ({why}). Another operator or admin approves or \
                         rejects it on the Approvals page (approval {id}, until {expires_at}); nothing is \
                         sent to AWS until then."
                    )),
                }),
            ));
        }
    };
    Ok(match receipt.execution_id {
        Some(id) => (
            StatusCode::CREATED,
            Json(StartExecutionResponse {
                execution_id: Some(id),
                record_id: receipt.record_id,
                status: RunStatus::InProgress,
                message: left_out_note(&a, asked_locations),
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

/// For a run across accounts and Regions that leaves places out, sentences saying so, and that
/// SSM applies location limits to each location it is sent as.
fn left_out_note(a: &runs::Assessment, asked_locations: usize) -> Option<String> {
    let split = (a.locations.len() > asked_locations).then(|| {
        format!(
            " It goes to SSM as {} TargetLocations (accounts with matches in different Regions), and SSM \
             applies the location concurrency and error limits to each of them.",
            a.locations.len()
        )
    });
    let left_out = (!a.left_out.is_empty()).then(|| {
        let sent: usize = a.locations.iter().map(|l| l.places().len()).sum();
        format!(
            "Sent to the {sent} account-Region(s) where instances match; {} named but without a matching \
             instance were left out ({}{}).",
            a.left_out.len(),
            a.left_out
                .iter()
                .take(10)
                .map(|(acct, r)| format!("{acct}/{r}"))
                .collect::<Vec<_>>()
                .join(", "),
            if a.left_out.len() > 10 { ", …" } else { "" }
        )
    });
    match (left_out, split) {
        (None, None) => None,
        (l, s) => Some(
            format!("{}{}", l.unwrap_or_default(), s.unwrap_or_default())
                .trim()
                .to_owned(),
        ),
    }
}

/// What a start would do, per target, without starting anything.
async fn preview_start(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<StartExecutionRequest>,
) -> Result<Json<PreviewResponse>, AppError> {
    let plan = req.validate().map_err(AppError::Validation)?;
    let a = runs::assess(&state, &plan, true).await?;
    let window_days = (state.usage_window.as_secs() / 86_400) as u32;
    Ok(Json(PreviewResponse {
        region: a.region,
        window_days,
        blocked: !a.users.is_empty(),
        places: a
            .locations
            .iter()
            .flat_map(|l| l.places())
            .map(|(acct, r)| format!("{acct}/{r}"))
            .collect(),
        places_left_out: a.left_out.iter().map(|(acct, r)| format!("{acct}/{r}")).collect(),
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
    let reply = runs::rollback(&state, &id, &who.name, runs::RollbackBy::Person).await?;
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

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
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
    "AwaitingApproval",
    "Rejected",
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
        within: scope.allowed.clone(),
    };
    let (rows, next) = state.store.history(&filter).await?;
    Ok(Json(ExecutionPage {
        executions: rows,
        next_cursor: next.map(|(t, id)| format!("{t}~{id}")),
    }))
}

fn looks_like_execution_id(id: &str) -> bool {
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ExecutionDetail>, AppError> {
    if !looks_like_execution_id(&id) {
        return Err(AppError::NotFound(format!(
            "execution \"{id}\": execution IDs are 36-character UUIDs"
        )));
    }
    // The policy has already refused a run outside the caller's accounts (`AccountRule::Run`).
    let Some(row) = state.store.by_execution_id(&id).await? else {
        return foreign_detail(&state, &id).await.map(Json);
    };
    if let Some(cached) = cached_detail(&state, &row).await {
        return Ok(Json(cached));
    }
    if row.parent_execution_id.is_none() && row.detail.is_none() && !row.status.is_terminal() {
        // The watcher has not reached this run yet: answer from our record now; the steps follow
        // (with an event) when it does. No SSM call on a viewer's behalf.
        return Ok(Json(provisional_detail(&state, &row).await?));
    }
    // A child nobody has looked at lately: fetch once, concurrent viewers waiting for that one fetch.
    let _guard = state.detail_fetch.lock().await;
    let row = state.store.by_execution_id(&id).await?.unwrap_or(row);
    if let Some(cached) = cached_detail(&state, &row).await {
        return Ok(Json(cached));
    }
    Ok(Json(watcher::refresh(&state, &row).await?))
}

/// What our record says about a run SSM has not been asked about yet.
async fn provisional_detail(state: &AppState, row: &RunRow) -> Result<ExecutionDetail, AppError> {
    let recorded = if row.started_here {
        state.store.plan_of(row.id).await.ok().flatten()
    } else {
        None
    };
    let plan: Option<StartPlan> = recorded.and_then(|p| serde_json::from_str(&p).ok());
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
        approved_by: None,
    };
    runs::complete(state, &mut detail, row).await?;
    Ok(detail)
}

/// How old a child execution's stored steps may be when someone looks at it.
const CHILD_DETAIL_TTL: Duration = Duration::from_secs(3);

/// The stored detail when it is final, kept current by the watcher, or fresh enough.
async fn cached_detail(state: &AppState, row: &RunRow) -> Option<ExecutionDetail> {
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
    runs::complete(state, &mut detail, row).await.ok()?;
    Some(detail)
}

/// A run this console did not start: look for it in each region, within the lookup budget (429 when it
/// is spent, never a queue), and only among executions of our runbook.
async fn foreign_detail(state: &AppState, id: &str) -> Result<ExecutionDetail, AppError> {
    for clients in state.clients.values() {
        let found = runs::in_lookup_slot(state, &clients.region, id, ssm::get(clients, id)).await?;
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
                    span: None,
                    unsettled_at_ms: None,
                };
                return Ok(runs::detail_of(&row, &ex));
            }
            Err(AppError::Aws { code, .. }) if code == "AutomationExecutionNotFoundException" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(runs::unknown_to_ssm(state, id))
}

async fn stop(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Stopping>), AppError> {
    if !looks_like_execution_id(&id) {
        return Err(AppError::NotFound(format!(
            "execution \"{id}\": execution IDs are 36-character UUIDs"
        )));
    }
    let row = state
        .store
        .by_execution_id(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("execution {id} was not started by this console")))?;
    runs::stop(&state, &row, &who.name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Stopping {
            execution_id: id,
            status: "Cancelling",
        }),
    ))
}

/// The answer to a stop: SSM is cancelling the run.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Stopping {
    execution_id: String,
    /// Always `Cancelling`: the watcher reports when it has stopped.
    status: &'static str,
}
