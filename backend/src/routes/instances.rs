//! `GET /api/v1/instances` (one page of the fleet: filters, sort, cursor), `GET
//! /api/v1/fleet/summary` (counts per region, account or tag) and `GET /api/v1/accounts` (each managed
//! account and whether it could be read), all from one inventory snapshot that every viewer shares,
//! so that AWS is asked once per refresh, not once per browser or page.

use super::described::{doc, ApiRouter};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use shared::api::{AccountList, FleetSummary, InstanceList};
use shared::fleet::FleetQuery;

use super::ApiQuery;
use crate::auth::AccountScope;
use crate::error::AppError;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::default()
        .get(
            "/instances",
            list,
            doc("The fleet, filtered, sorted and paged; or every match as CSV or JSON")
                .query::<Export>()
                .query::<FleetQuery>()
                .answers::<shared::api::InstanceList>(200),
        )
        .get(
            "/fleet/summary",
            summary,
            doc("The fleet's posture counted by account, region or a tag")
                .query::<GroupBy>()
                .query::<FleetQuery>()
                .answers::<FleetSummary>(200),
        )
        .get(
            "/accounts",
            accounts,
            doc("The accounts the console manages, and why any cannot be reached")
                .answers::<AccountList>(200),
        )
}

fn checked(q: &FleetQuery) -> Result<(), AppError> {
    q.validate().map_err(|e| AppError::field(e.field, e.message))
}

/// `format=csv|json`: every matching instance as a file to download, instead of a page.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct Export {
    format: Option<String>,
}

/// One instance as a CSV row (tags as `Key=value` separated by `; `).
#[derive(serde::Serialize)]
struct FleetRow<'a> {
    instance_id: &'a str,
    account: &'a str,
    region: &'a str,
    name: &'a str,
    state: &'a str,
    http_tokens: &'a str,
    http_endpoint: &'a str,
    hop_limit: u8,
    metadata_state: &'a str,
    posture: &'static str,
    imdsv1_calls: Option<u64>,
    imdsv1_rejected: Option<u64>,
    image_id: &'a str,
    launched_from: String,
    tags: String,
}

/// The most instances one export holds.
const EXPORT_LIMIT: usize = 100_000;

async fn list(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
    ApiQuery(export): ApiQuery<Export>,
    ApiQuery(q): ApiQuery<FleetQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    super::only_known_query::<Export, FleetQuery>(raw.as_deref())?;
    checked(&q)?;
    let snap = crate::inventory::snapshot(&state).await?;
    if let Some(format) = export.format.as_deref() {
        let all = FleetQuery {
            cursor: None,
            limit: None,
            ..q
        };
        let rows: Vec<&shared::api::InstanceView> = snap
            .instances
            .iter()
            .filter(|i| scope.allows(&i.account) && all.matches(i))
            .take(EXPORT_LIMIT)
            .collect();
        return match format {
            "json" => Ok(Json(rows).into_response()),
            "csv" => {
                let flat: Vec<FleetRow> = rows
                    .iter()
                    .map(|i| FleetRow {
                        instance_id: &i.instance_id,
                        account: &i.account,
                        region: &i.region,
                        name: i.name.as_deref().unwrap_or_default(),
                        state: &i.state,
                        http_tokens: &i.metadata.http_tokens,
                        http_endpoint: &i.metadata.http_endpoint,
                        hop_limit: i.metadata.http_put_response_hop_limit,
                        metadata_state: &i.metadata.state,
                        posture: shared::fleet::Posture::of(i).as_str(),
                        imdsv1_calls: i.imdsv1_calls,
                        imdsv1_rejected: i.imdsv1_rejected,
                        image_id: i.image_id.as_deref().unwrap_or_default(),
                        launched_from: shared::fleet::origin_text(i),
                        tags: i
                            .tags
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join("; "),
                    })
                    .collect();
                super::audit::csv_download(&flat, "imds-console-fleet.csv")
            }
            other => Err(AppError::field(
                "format",
                format!("\"{other}\" is not an export format; use csv or json"),
            )),
        };
    }
    let (instances, total, next_cursor) = q.page_within(&snap.instances, |i| scope.allows(&i.account));
    crate::usage::shown(&state, &instances);
    Ok(Json(InstanceList {
        instances,
        total,
        next_cursor,
        as_of: Some(snap.as_of),
        refreshing: crate::inventory::refreshing(&state),
    })
    .into_response())
}

/// The grouping; the same query string also carries the filters (a second extractor, since
/// `serde(flatten)` loses the types of query values).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct GroupBy {
    by: Option<String>,
}

async fn summary(
    State(state): State<AppState>,
    Extension(scope): Extension<AccountScope>,
    ApiQuery(group): ApiQuery<GroupBy>,
    ApiQuery(filter): ApiQuery<FleetQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Json<FleetSummary>, AppError> {
    super::only_known_query::<GroupBy, FleetQuery>(raw.as_deref())?;
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
