//! `/plans`: rollout plans, created as drafts, previewed wave by wave, then started, paused, resumed
//! or cancelled; the server runs them (see `plans`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use shared::plans::{PlanList, PlanPreview, PlanRequest, PlanView, ResumeRequest};

use super::ApiJson;
use crate::auth::{AccountScope, Identity};
use crate::error::AppError;
use crate::plans;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/plans", post(create).get(list))
        .route("/plans/{id}", get(show))
        .route("/plans/{id}/preview", post(preview))
        .route("/plans/{id}/{action}", post(act))
}

#[derive(serde::Serialize)]
struct Created {
    plan_id: String,
    plan: PlanView,
}

async fn create(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    ApiJson(req): ApiJson<PlanRequest>,
) -> Result<(StatusCode, Json<Created>), AppError> {
    let plan = plans::create(&state, req, &who.name)?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            plan_id: plan.plan_id.clone(),
            plan,
        }),
    ))
}

async fn list(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
) -> Result<Json<PlanList>, AppError> {
    Ok(Json(plans::list(&state, &scope)?))
}

async fn show(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
    Path(id): Path<String>,
) -> Result<Json<PlanView>, AppError> {
    plans::get(&state, &id)
        .ok()
        .filter(|p| crate::auth::may_see_plan(&scope, p))
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no plan {id}")))
}

async fn preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PlanPreview>, AppError> {
    Ok(Json(plans::preview_plan(&state, &id).await?))
}

async fn act(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<PlanView>, AppError> {
    let action = plans::Action::parse(&action).ok_or_else(|| {
        AppError::NotFound(format!(
            "no plan action \"{action}\": start, pause, resume or cancel"
        ))
    })?;
    // The body is optional (only resume takes one: an override reason).
    let resume: ResumeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResumeRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::BadJson(e.to_string()))?
    };
    let plan = plans::act(&state, &id, action, &resume, &who.name).await?;
    // Start and resume take effect at once, not at the driver's next round.
    plans::step(&state, &plan.plan_id).await?;
    Ok(Json(plans::get(&state, &plan.plan_id)?))
}
