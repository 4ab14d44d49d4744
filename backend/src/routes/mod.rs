//! The `/api/v1` routes, one module per resource, and the JSON extractor that reports bad bodies as
//! our own errors.

pub mod accounts;
pub mod approvals;
pub mod audit;
pub mod dashboard;
pub mod doctor;
pub mod events;
pub mod executions;
pub mod health;
pub mod identity;
pub mod instances;
pub mod plans;
pub mod sources;
pub mod webhooks;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::Router;

use crate::error::AppError;
use crate::state::AppState;

pub fn api() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(accounts::router())
        .merge(audit::router())
        .merge(dashboard::router())
        .merge(doctor::router())
        .merge(identity::router())
        .merge(executions::router())
        .merge(instances::router())
        .merge(sources::router())
        .merge(plans::router())
        .merge(approvals::router())
        .merge(webhooks::router())
        .merge(events::router())
        .fallback(|| async { AppError::NotFound("no such API route; see README for /api/v1".into()) })
}

/// `Json<T>` whose rejection is an `AppError::BadJson` with serde's explanation.
pub struct ApiJson<T>(pub T);

impl<T> ApiJson<T>
where
    axum::Json<T>: FromRequest<AppState, Rejection = JsonRejection>,
{
    /// Reads the body inside a handler that needed the request first.
    pub async fn from_request_inner(req: Request, state: &AppState) -> Result<Self, AppError> {
        <Self as FromRequest<AppState>>::from_request(req, state).await
    }
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;
    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(AppError::BadJson(e.body_text())),
        }
    }
}

/// `Query<T>` whose rejection is an `AppError::BadQuery`.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(AppError::BadQuery(e.body_text())),
        }
    }
}
