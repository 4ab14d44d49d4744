//! `GET /api/v1/health`: the server is up (it makes no AWS call).

use axum::routing::get;
use axum::{Json, Router};
use shared::api::Health;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(|| async { Json(Health { status: "ok".into() }) }))
}
