//! `GET /api/v1/health`: the server is up (it makes no AWS call).

use super::described::{doc, ApiRouter};
use axum::Json;
use shared::api::Health;

pub fn router() -> ApiRouter {
    ApiRouter::default().get(
        "/health",
        || async { Json(Health { status: "ok".into() }) },
        doc("Whether the console answers").answers::<Health>(200),
    )
}
