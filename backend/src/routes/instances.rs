//! `GET /api/v1/instances`: the fleet with its metadata options and compliance, shared by all viewers
//! through a short cache so that EC2 is asked once per refresh, not once per browser.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use shared::api::{InstanceList, InstanceView};
use std::time::Instant;

use super::ApiQuery;
use crate::aws::ec2::{self, Selection};
use crate::error::AppError;
use crate::state::{AppState, FLEET_TTL};

pub fn router() -> Router<AppState> {
    Router::new().route("/instances", get(list))
}

#[derive(Debug, Deserialize)]
struct InstanceQuery {
    region: Option<String>,
    compliant: Option<bool>,
}

/// The whole fleet, from the cache when it is fresh.
pub async fn fleet(state: &AppState) -> Result<Vec<InstanceView>, AppError> {
    let mut cache = state.fleet.lock().await;
    if let Some((at, list)) = cache.as_ref() {
        if at.elapsed() < FLEET_TTL {
            return Ok(list.clone());
        }
    }
    let mut all = Vec::new();
    for clients in state.clients.values() {
        all.extend(ec2::describe(clients, Selection::All).await?);
    }
    *cache = Some((Instant::now(), all.clone()));
    Ok(all)
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<InstanceQuery>,
) -> Result<Json<InstanceList>, AppError> {
    let mut all = fleet(&state).await?;
    // Usage is a second opinion: when CloudWatch cannot answer, the fleet still shows (usage unknown).
    if let Err(e) = crate::usage::annotate(&state, &mut all).await {
        tracing::warn!(error = %e, "IMDSv1 usage unavailable");
    }
    let instances = all
        .into_iter()
        .filter(|i| q.region.as_ref().is_none_or(|r| &i.region == r))
        .filter(|i| q.compliant.is_none_or(|c| i.compliant == c))
        .collect();
    Ok(Json(InstanceList { instances }))
}
