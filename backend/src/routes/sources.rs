//! `/sources`: where new IMDSv1 instances come from, and the fixes of those sources.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use shared::sources::{SourceFix, SourceFixPreview, SourceFixRequest, SourceFixes, SourcesView};

use super::ApiJson;
use crate::auth::{AccountScope, Identity};
use crate::error::AppError;
use crate::sources;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sources", get(list))
        .route("/sources/fixes", get(fixes))
        .route("/sources/fixes/{fix_id}/revert", post(revert))
        .route("/sources/{id}/preview", post(preview))
        .route("/sources/{id}/fix", post(fix))
}

async fn list(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
) -> Result<Json<SourcesView>, AppError> {
    Ok(Json(sources::list(&state, &scope).await?))
}

async fn fixes(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
) -> Result<Json<SourceFixes>, AppError> {
    Ok(Json(SourceFixes {
        fixes: sources::fixes(&state, &scope)?,
    }))
}

async fn preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SourceFixRequest>,
) -> Result<Json<SourceFixPreview>, AppError> {
    Ok(Json(sources::preview(&state, &id, &req).await?))
}

async fn fix(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SourceFixRequest>,
) -> Result<(StatusCode, Json<SourceFix>), AppError> {
    Ok((
        StatusCode::CREATED,
        Json(sources::fix(&state, &id, &req, &who.name).await?),
    ))
}

async fn revert(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(fix_id): Path<String>,
) -> Result<Json<SourceFix>, AppError> {
    Ok(Json(sources::revert(&state, &fix_id, &who.name).await?))
}
