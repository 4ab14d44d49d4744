//! `GET /api/v1/identity`: mode, account, ARN and regions (STS GetCallerIdentity, asked once).

use super::described::{doc, ApiRouter};
use axum::extract::State;
use axum::Json;
use shared::api::Identity;

use crate::error::AppError;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::default().get(
        "/identity",
        identity,
        doc("The console's AWS identity and regions").answers::<Identity>(200),
    )
}

async fn identity(State(state): State<AppState>) -> Result<Json<Identity>, AppError> {
    Ok(Json(resolve(&state).await?))
}

/// Who the console is in AWS (STS GetCallerIdentity, asked once and kept).
pub async fn resolve(state: &AppState) -> Result<Identity, AppError> {
    let id = state
        .identity
        .get_or_try_init(|| async {
            // Through the first Region whose STS answers (an account may turn a Region's STS off).
            let in_order: Vec<&crate::aws::RegionClients> = state
                .regions
                .iter()
                .filter_map(|r| state.clients.get(r))
                .collect();
            let who = crate::aws::sts::caller_identity_anywhere(in_order).await?;
            Ok::<_, AppError>(Identity {
                mode: state.mode.to_owned(),
                account: who.account,
                arn: who.arn,
                regions: state.regions.clone(),
            })
        })
        .await?;
    Ok(id.clone())
}
