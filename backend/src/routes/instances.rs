//! `GET /api/v1/instances` (one page of the fleet: filters, sort, cursor), `GET
//! /api/v1/fleet/summary` (counts per region, account or tag) and `GET /api/v1/accounts` (each managed
//! account and whether it could be read), all from one inventory snapshot that every viewer shares,
//! so that AWS is asked once per refresh, not once per browser or page.

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use shared::api::{AccountList, FleetSummary, InstanceList};
use shared::fleet::FleetQuery;

use super::ApiQuery;
use crate::auth::AccountScope;
use crate::error::AppError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/instances", get(list))
        .route("/fleet/summary", get(summary))
        .route("/accounts", get(accounts))
}

fn checked(q: &FleetQuery) -> Result<(), AppError> {
    q.validate().map_err(|e| AppError::field(e.field, e.message))
}

async fn list(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
    ApiQuery(q): ApiQuery<FleetQuery>,
) -> Result<Json<InstanceList>, AppError> {
    checked(&q)?;
    let snap = crate::inventory::snapshot(&state).await?;
    let (instances, total, next_cursor) = q.page_within(&snap.instances, |i| scope.allows(&i.account));
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
    Extension(scope): Extension<AccountScope>,
    ApiQuery(group): ApiQuery<GroupBy>,
    ApiQuery(filter): ApiQuery<FleetQuery>,
) -> Result<Json<FleetSummary>, AppError> {
    checked(&filter)?;
    let by = group.by.unwrap_or_else(|| "region".into());
    let snap = crate::inventory::snapshot(&state).await?;
    let matching = snap
        .instances
        .iter()
        .filter(|i| scope.allows(&i.account) && filter.matches(i));
    let (all, groups) = shared::fleet::summarise(matching, &by)
        .ok_or_else(|| AppError::field("by", "must be region, account, or tag:KEY (such as tag:Team)"))?;
    Ok(Json(FleetSummary {
        by,
        all,
        groups,
        as_of: Some(snap.as_of),
    }))
}

async fn accounts(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
) -> Result<Json<AccountList>, AppError> {
    let snap = crate::inventory::snapshot(&state).await?;
    Ok(Json(AccountList {
        accounts: snap
            .accounts
            .iter()
            .filter(|a| scope.allows(&a.account_id))
            .cloned()
            .collect(),
        organization_error: snap.organization_error.clone(),
        as_of: Some(snap.as_of),
    }))
}
