//! `GET /api/v1/instances` (one page of the fleet: filters, sort, cursor) and `GET
//! /api/v1/fleet/summary` (counts per region, account or tag), both from one inventory snapshot that
//! every viewer shares, so that EC2 and CloudWatch are asked once per refresh, not once per browser
//! or page.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use shared::api::{FleetSummary, InstanceList};
use shared::fleet::FleetQuery;
use std::sync::Arc;
use std::time::Instant;

use super::ApiQuery;
use crate::aws::ec2::{self, Selection};
use crate::error::AppError;
use crate::state::{AppState, FleetSnapshot, FLEET_TTL};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/instances", get(list))
        .route("/fleet/summary", get(summary))
}

/// The inventory with IMDSv1 usage: read again when older than [`FLEET_TTL`], one reader at a time.
pub async fn snapshot(state: &AppState) -> Result<FleetSnapshot, AppError> {
    let mut cache = state.fleet.lock().await;
    if let Some(s) = cache.as_ref() {
        if s.read_at.elapsed() < FLEET_TTL {
            return Ok(s.clone());
        }
    }
    let mut all = Vec::new();
    for clients in state.clients.values() {
        all.extend(ec2::describe(clients, Selection::All).await?);
    }
    // Usage is a second opinion: when CloudWatch cannot answer, the fleet still shows (usage unknown).
    if let Err(e) = crate::usage::annotate(state, &mut all).await {
        tracing::warn!(error = %e, "IMDSv1 usage unavailable");
    }
    let snap = FleetSnapshot {
        read_at: Instant::now(),
        as_of: crate::store::now_rfc3339(),
        instances: Arc::new(all),
    };
    *cache = Some(snap.clone());
    Ok(snap)
}

fn checked(q: &FleetQuery) -> Result<(), AppError> {
    q.validate().map_err(|e| {
        AppError::Validation(shared::ValidationErrors(vec![shared::FieldError {
            field: e.field.into(),
            message: e.message,
        }]))
    })
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<FleetQuery>,
) -> Result<Json<InstanceList>, AppError> {
    checked(&q)?;
    let snap = snapshot(&state).await?;
    let (instances, total, next_cursor) = q.page(&snap.instances);
    Ok(Json(InstanceList {
        instances,
        total,
        next_cursor,
        as_of: Some(snap.as_of),
    }))
}

/// The grouping; the same query string also carries the filters (a second extractor, since
/// `serde(flatten)` loses the types of query values).
#[derive(Debug, Deserialize)]
struct GroupBy {
    by: Option<String>,
}

async fn summary(
    State(state): State<AppState>,
    ApiQuery(group): ApiQuery<GroupBy>,
    ApiQuery(filter): ApiQuery<FleetQuery>,
) -> Result<Json<FleetSummary>, AppError> {
    checked(&filter)?;
    let by = group.by.unwrap_or_else(|| "region".into());
    let snap = snapshot(&state).await?;
    let matching = snap.instances.iter().filter(|i| filter.matches(i));
    let (all, groups) = shared::fleet::summarise(matching, &by).ok_or_else(|| {
        AppError::Validation(shared::ValidationErrors(vec![shared::FieldError {
            field: "by".into(),
            message: "must be region, account, or tag:KEY (such as tag:Team)".into(),
        }]))
    })?;
    Ok(Json(FleetSummary {
        by,
        all,
        groups,
        as_of: Some(snap.as_of),
    }))
}
