//! `/approvals` and `/approval-policy`: starts held for a second person, their decisions, and the
//! policy that says which starts need one (see `approvals`).

use super::described::{doc, ApiRouter};
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use shared::approvals::{ApprovalList, ApprovalPolicy, ApprovalView, DecisionRequest};

use super::{ApiJson, ApiQuery};
use crate::approvals;
use crate::auth::{AccountScope, Identity};
use crate::error::AppError;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::default()
        .get(
            "/approvals",
            list,
            doc("Starts held for a second person, and decided ones")
                .query::<ListQuery>()
                .answers::<ApprovalList>(200),
        )
        .post(
            "/approvals/{id}/{decision}",
            decide,
            doc("Approve or reject a held start (decision: approve or reject)")
                .body::<DecisionRequest>()
                .answers::<ApprovalView>(200),
        )
        .get(
            "/approval-policy",
            get_policy,
            doc("Which starts need a second person").answers::<ApprovalPolicy>(200),
        )
        .put(
            "/approval-policy",
            put_policy,
            doc("Set which starts need a second person")
                .body::<ApprovalPolicy>()
                .answers::<ApprovalPolicy>(200),
        )
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Every approval, decided ones included (default: the pending ones).
    #[serde(default)]
    all: bool,
}

async fn list(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ApprovalList>, AppError> {
    Ok(Json(approvals::list(&state, &scope, !q.all).await?))
}

async fn decide(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path((id, decision)): Path<(String, String)>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Json<ApprovalView>, AppError> {
    let id = crate::auth::policy::approval_id(&id)
        .ok_or_else(|| AppError::NotFound(format!("approval \"{id}\": approval IDs are numbers")))?;
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(AppError::NotFound(format!(
                "no decision \"{other}\": approve or reject"
            )))
        }
    };
    Ok(Json(
        approvals::decide(&state, id, approve, &who, req.comment.as_deref()).await?,
    ))
}

async fn get_policy(State(state): State<AppState>) -> Result<Json<ApprovalPolicy>, AppError> {
    Ok(Json(approvals::policy(&state).await?))
}

async fn put_policy(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    ApiJson(policy): ApiJson<ApprovalPolicy>,
) -> Result<Json<ApprovalPolicy>, AppError> {
    approvals::set_policy(&state, &policy, &who.name).await?;
    Ok(Json(approvals::policy(&state).await?))
}
