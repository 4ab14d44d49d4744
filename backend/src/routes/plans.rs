//! `/plans`: rollout plans, created as drafts, previewed wave by wave, then started, paused, resumed
//! or cancelled; the server runs them (see `plans`).

use super::described::{doc, ApiRouter};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use shared::plans::{PlanList, PlanPreview, PlanRequest, PlanView, ResumeRequest};

use super::ApiJson;
use crate::auth::{AccountScope, Identity};
use crate::error::AppError;
use crate::plans;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::default()
        .post(
            "/plans",
            create,
            doc("Create a rollout plan (waves with bake times and a halt threshold)")
                .body::<PlanRequest>()
                .answers::<Created>(201),
        )
        .get("/plans", list, doc("Rollout plans").answers::<PlanList>(200))
        .get(
            "/plans/{id}",
            show,
            doc("One plan: its waves, runs and halts").answers::<PlanView>(200),
        )
        .post(
            "/plans/{id}/preview",
            preview,
            doc("What each wave would change").answers::<PlanPreview>(200),
        )
        .post(
            "/plans/{id}/{action}",
            act,
            doc("Start, pause, resume or cancel a plan (resume may give an override reason)")
                .optional_body::<ResumeRequest>()
                .answers::<PlanView>(200),
        )
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct Created {
    plan_id: String,
    plan: PlanView,
}

async fn create(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    ApiJson(req): ApiJson<PlanRequest>,
) -> Result<(StatusCode, Json<Created>), AppError> {
    let plan = plans::create(&state, req, &who.name).await?;
    state
        .store
        .auth_event(
            "plan-created",
            Some(&who.name),
            Some(&format!(
                "plan {} \"{}\" ({} waves)",
                plan.plan_id,
                plan.name,
                plan.waves.len()
            )),
            None,
        )
        .await?;
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
    Ok(Json(plans::list(&state, &scope).await?))
}

/// One plan (the policy has already refused a plan outside the caller's accounts, `AccountRule::Plan`).
async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<PlanView>, AppError> {
    Ok(Json(plans::get(&state, &id).await?))
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
    Ok(Json(plans::get(&state, &plan.plan_id).await?))
}
