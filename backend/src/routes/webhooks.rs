//! `/webhooks` (admins): where the console tells other systems what happened, each with its recent
//! deliveries, and a test message to check one (see `webhooks`).

use super::described::{doc, ApiRouter};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;
use shared::webhooks::{CreateWebhookRequest, WebhookList};

use super::ApiJson;
use crate::auth::Identity;
use crate::error::AppError;
use crate::state::AppState;
use crate::webhooks;

pub fn router() -> ApiRouter {
    ApiRouter::default()
        .get(
            "/webhooks",
            list,
            doc("Webhooks and their recent deliveries").answers::<WebhookList>(200),
        )
        .post(
            "/webhooks",
            create,
            doc("Add a webhook")
                .body::<CreateWebhookRequest>()
                .answers::<WebhookCreated>(201),
        )
        .post(
            "/webhooks/{id}/{action}",
            act,
            doc("Enable, disable, test or delete a webhook"),
        )
}

async fn list(State(state): State<AppState>) -> Result<Json<WebhookList>, AppError> {
    Ok(Json(webhooks::list(&state).await?))
}

async fn create(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    ApiJson(req): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookCreated>), AppError> {
    let id = webhooks::create(&state, &req, &who.name).await?;
    Ok((StatusCode::CREATED, Json(WebhookCreated { webhook_id: id })))
}

/// `test` queues a test message to this webhook (the sender posts it at once); `delete` removes one.
async fn act(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path((id, action)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::NotFound(format!("webhook \"{id}\": webhook IDs are numbers")))?;
    if !state.store.webhooks().await?.iter().any(|w| w.0 == id) {
        return Err(AppError::NotFound(format!("no webhook {id}")));
    }
    match action.as_str() {
        "delete" => webhooks::delete(&state, id, &who.name).await?,
        "test" => {
            webhooks::notify_one(
                &state,
                &webhooks::Notice {
                    event: "test",
                    summary: format!("a test message from {}", who.name),
                    data: json!({ "webhook_id": id }),
                },
                id,
            )
            .await
        }
        other => {
            return Err(AppError::NotFound(format!(
                "no webhook action \"{other}\": test or delete"
            )))
        }
    }
    Ok(StatusCode::ACCEPTED)
}

/// The new webhook's ID.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct WebhookCreated {
    webhook_id: i64,
}
