//! `GET /api/v1/health`: the server is up, and whether it leads (it makes no AWS or database call).

use super::described::{doc, ApiRouter};
use axum::extract::State;
use axum::Json;
use shared::api::Health;

use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::default().get(
        "/health",
        |State(state): State<AppState>| async move {
            Json(Health {
                status: "ok".into(),
                leader: state.leadership.is_leader(),
            })
        },
        doc("Whether the console answers, and whether this replica leads").answers::<Health>(200),
    )
}
