//! `/sources`: where new IMDSv1 instances come from, and the fixes of those sources.

use super::described::{doc, ApiRouter};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use shared::sources::{SourceFix, SourceFixPreview, SourceFixRequest, SourceFixes, SourcesView};

use super::ApiJson;
use crate::auth::{AccountScope, Identity};
use crate::error::AppError;
use crate::sources;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::default()
        .get(
            "/sources",
            list,
            doc("Where new IMDSv1 instances come from: account defaults, launch templates, groups")
                .answers::<SourcesView>(200),
        )
        .get(
            "/sources/fixes",
            fixes,
            doc("Fixes made to sources, newest first").answers::<SourceFixes>(200),
        )
        .post(
            "/sources/fixes/{fix_id}/revert",
            revert,
            doc("Undo a source fix").answers::<SourceFix>(200),
        )
        .post(
            "/sources/{id}/preview",
            preview,
            doc("What fixing a source would change and refuse")
                .body::<SourceFixRequest>()
                .answers::<SourceFixPreview>(200),
        )
        .post(
            "/sources/{id}/fix",
            fix,
            doc("Make a source launch IMDSv2-only instances (recorded before it is sent)")
                .body::<SourceFixRequest>()
                .answers::<SourceFix>(201),
        )
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
        fixes: sources::fixes(&state, &scope).await?,
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
