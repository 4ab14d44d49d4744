//! `GET /api/v1/audit`: every run record (including refused starts), filtered like history, as JSON
//! or CSV for export.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::ApiQuery;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::HistoryFilter;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(export))
}

/// The most records one export holds.
const EXPORT_LIMIT: usize = 100_000;

#[derive(Debug, Deserialize)]
struct AuditQuery {
    format: Option<String>,
    status: Option<String>,
    instance_id: Option<String>,
    requester: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

async fn export(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, AppError> {
    let filter = HistoryFilter {
        status: q.status,
        instance_id: q.instance_id,
        requester: q.requester,
        since: super::executions::normalise_time("since", q.since.as_deref())?,
        until: super::executions::normalise_time("until", q.until.as_deref())?,
        limit: EXPORT_LIMIT,
        ..HistoryFilter::default()
    };
    let records = state.store.audit(&filter)?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(records).into_response()),
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in &records {
                w.serialize(r).map_err(AppError::internal)?;
            }
            let body = w.into_inner().map_err(AppError::internal)?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"imds-console-audit.csv\"",
                    ),
                ],
                body,
            )
                .into_response())
        }
        other => Err(AppError::BadQuery(format!(
            "format \"{other}\" is not supported; use json or csv"
        ))),
    }
}
