//! `GET /api/v1/doctor?assume_role=ARN`: the permission check of `imds-console doctor`, for admins
//! on the console. One check runs at a time and its answer is kept for a minute, so that repeated
//! clicks do not repeat a dozen AWS calls per region.

use super::described::{doc, ApiRouter};
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use shared::api::PermissionReport;
use std::time::{Duration, Instant};

use super::ApiQuery;
use crate::error::AppError;
use crate::state::AppState;

/// How long a report is reused.
const REUSE_FOR: Duration = Duration::from_secs(60);

pub fn router() -> ApiRouter {
    ApiRouter::default().get(
        "/doctor",
        doctor,
        doc("Check every AWS permission the console and the runbook need, changing nothing")
            .query::<DoctorQuery>()
            .answers::<PermissionReport>(200),
    )
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DoctorQuery {
    assume_role: Option<String>,
}

async fn doctor(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DoctorQuery>,
) -> Result<Json<PermissionReport>, AppError> {
    let role = q.assume_role.filter(|r| !r.trim().is_empty());
    if let Some(r) = &role {
        shared::RoleArn::parse(r).map_err(|message| AppError::field("assume_role", message))?;
    }
    let mut last = state.doctor.lock().await;
    if let Some((at, report)) = last.as_ref() {
        if at.elapsed() < REUSE_FOR && report.assume_role == role {
            return Ok(Json(report.clone()));
        }
    }
    let report = crate::doctor::check(
        &state.clients,
        role.as_deref(),
        state.org.is_multi_account(),
        Some(&state.org),
    )
    .await?;
    *last = Some((Instant::now(), report.clone()));
    Ok(Json(report))
}
