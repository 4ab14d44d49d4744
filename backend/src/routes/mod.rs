//! The `/api/v1` routes, one module per resource, and the JSON extractor that reports bad bodies as
//! our own errors.

pub mod accounts;
pub mod approvals;
pub mod audit;
pub mod dashboard;
pub mod described;
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

use crate::auth::policy::{BodyConsumed, CheckedBody};
use crate::error::AppError;
use crate::state::AppState;

pub fn api() -> Router<AppState> {
    let (router, mut operations) = described().into_parts();
    let self_description = described::Operation {
        method: axum::http::Method::GET,
        path: "/openapi.json",
        doc: described::doc("This document: the API in OpenAPI 3.1").media(
            200,
            "application/json",
            "The OpenAPI 3.1 document of /api/v1",
        ),
    };
    operations.push(self_description);
    let document = std::sync::Arc::new(described::openapi(&operations));
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { axum::Json((*document).clone()) }
            }),
        )
        .fallback(|| async { AppError::NotFound("no such API route; see GET /api/v1/openapi.json".into()) })
}

/// Every route of `/api/v1` with its description (the OpenAPI document is made from it).
pub fn described() -> described::ApiRouter {
    described::ApiRouter::default()
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
}

/// `Json<T>` whose rejection is an `AppError::BadJson` with serde's explanation.
pub struct ApiJson<T>(pub T);

impl<T> ApiJson<T>
where
    axum::Json<T>: FromRequest<AppState, Rejection = JsonRejection>,
    T: Send + Sync + 'static,
{
    /// Reads the body inside a handler that needed the request first.
    pub async fn from_request_inner(req: Request, state: &AppState) -> Result<Self, AppError> {
        <Self as FromRequest<AppState>>::from_request(req, state).await
    }
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    T: Send + Sync + 'static,
    S: Send + Sync,
{
    type Rejection = AppError;
    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        // The body the access policy parsed, checked and decided on is the one the handler gets.
        if let Some(checked) = req.extensions().get::<CheckedBody<T>>() {
            if let Some(v) = checked.take() {
                return Ok(ApiJson(v));
            }
        }
        if req.extensions().get::<BodyConsumed>().is_some() {
            return Err(AppError::internal(format!(
                "the access policy read this route's body as another type than {}; the policy table and the handler disagree",
                std::any::type_name::<T>()
            )));
        }
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(bad_json(e.body_text())),
        }
    }
}

/// Refuses query parameters that neither `A` nor `B` takes, for a route that reads one query string
/// as two types (each ignoring the other's keys, so neither can refuse unknown ones itself). The
/// names come from the types' JSON schemas, the ones the API document shows.
pub fn only_known_query<A: schemars::JsonSchema, B: schemars::JsonSchema>(
    raw: Option<&str>,
) -> Result<(), AppError> {
    let names = |schema: schemars::Schema| -> Vec<String> {
        schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut known = names(schemars::schema_for!(A));
    known.extend(names(schemars::schema_for!(B)));
    for (key, _) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !known.iter().any(|k| *k == key) {
            known.sort();
            return Err(AppError::field(
                &key,
                format!(
                    "{key} is not a parameter this request takes (it takes {}): check its spelling.",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A query string the typed request refused: a parameter it does not take (a misspelt filter would
/// otherwise be ignored and every row answered) is a field error naming it and what it takes.
fn bad_query(text: String) -> AppError {
    let Some((_, rest)) = text.split_once("unknown field `") else {
        return AppError::BadQuery(text);
    };
    let Some((name, expected)) = rest.split_once('`') else {
        return AppError::BadQuery(text);
    };
    let takes = expected
        .trim_start_matches(", expected ")
        .trim_start_matches("one of ")
        .replace('`', "");
    AppError::field(
        name,
        format!("{name} is not a parameter this request takes (it takes {takes}): check its spelling."),
    )
}

/// A body the typed request refused. A field the request does not take (a misspelling would
/// otherwise be ignored and a setting silently left as it was) is a field error naming it and what
/// the request takes; anything else is serde's explanation.
fn bad_json(text: String) -> AppError {
    let detail = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(&text);
    let Some((path, rest)) = detail.split_once(": unknown field `") else {
        return AppError::BadJson(text);
    };
    let Some((name, expected)) = rest.split_once('`') else {
        return AppError::BadJson(text);
    };
    let takes = expected
        .split(" at line ")
        .next()
        .unwrap_or_default()
        .trim_start_matches(", expected ")
        .trim_start_matches("one of ")
        .replace('`', "");
    let takes = if takes.is_empty() || takes.starts_with("there are no fields") {
        "no fields".to_owned()
    } else {
        takes
    };
    AppError::field(
        path,
        format!("{name} is not a field this request takes (it takes {takes}): check its spelling."),
    )
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
            Err(e) => Err(bad_query(e.body_text())),
        }
    }
}
