//! The typed client of `/api/v1`, using the `shared` wire types. One error type: the network failed, or
//! the server answered with its JSON error.

use leptos::prelude::window;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::api::{
    ApiError, ErrorBody, ExecutionDetail, ExecutionPage, Identity, InstanceList, PreviewResponse,
    RollbackResponse, StartExecutionRequest, StartExecutionResponse,
};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The server could not be reached.
    Network(String),
    /// The server said no.
    Api { status: u16, error: ApiError },
}

impl ClientError {
    /// What went wrong and what to do, for a person.
    pub fn explain(&self) -> String {
        match self {
            ClientError::Network(m) => format!("The console server could not be reached ({m}). Check that it is running; this page retries by itself."),
            ClientError::Api { status, error } => {
                let hint = match (*status, error.code.as_str()) {
                    (401, _) => " Sign in again.",
                    (403, "Forbidden") => " Ask an admin for a role that allows this.",
                    (403, c) if c.contains("AccessDenied") || c.contains("Unauthorized") => {
                        " The server's AWS role lacks this permission: add it to the role's IAM policy."
                    }
                    (429, "TooManyAttempts") => "",
                    (429, _) | (_, "ThrottlingException") => " AWS is throttling requests; wait a moment and try again.",
                    (503, _) => " AWS could not be reached; try again shortly.",
                    _ => "",
                };
                // The message first, in words, then what to do; the code last, for a search or a ticket.
                let message = error.message.trim_end_matches('.');
                format!("{message}.{hint} ({}, HTTP {status})", error.code)
            }
        }
    }

    /// The server answered 401: the session has ended (the sign-in dialog says so).
    pub fn signed_out(&self) -> bool {
        matches!(self, ClientError::Api { status: 401, .. })
    }

    pub fn field_errors(&self) -> Option<shared::ValidationErrors> {
        match self {
            ClientError::Api { error, .. } if !error.fields.is_empty() => {
                Some(shared::ValidationErrors(error.fields.clone()))
            }
            _ => None,
        }
    }
}

// Only the parse is generic: the request and the reading of the reply (and of an error) are one
// copy each, shared by the 40-odd typed calls, which each added their own copy of the whole path
// (about 1.6 KB of WASM each) when the functions below were generic end to end. The browser's own
// `fetch` is called directly: a wrapper library's request builder, its error type (and the JSON
// error formatting it carries) were kilobytes of the shell that every page's first load paid for.

/// What the browser said when a request could not be made or its reply not read ("Failed to fetch").
fn network(e: JsValue) -> ClientError {
    ClientError::Network(
        e.dyn_into::<js_sys::Error>()
            .map_or_else(|_| "no answer".into(), |e| String::from(e.message())),
    )
}

/// Sends a request (a JSON body when there is one) and reads its reply: the body when the server
/// said yes, its error otherwise.
async fn exchange(method: &str, path: &str, body: Option<String>) -> Result<String, ClientError> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(body) = body {
        let headers = web_sys::Headers::new().map_err(network)?;
        headers.set("content-type", "application/json").map_err(network)?;
        init.set_headers(&headers);
        init.set_body(&JsValue::from(body));
    }
    let url = format!("/api/v1{path}");
    let resp: web_sys::Response = JsFuture::from(window().fetch_with_str_and_init(&url, &init))
        .await
        .map_err(network)?
        .unchecked_into();
    let text = JsFuture::from(resp.text().map_err(network)?)
        .await
        .map_err(network)?
        .as_string()
        .unwrap_or_default();
    if resp.ok() {
        return Ok(text);
    }
    let status = resp.status();
    if status == 401 {
        crate::session::refused();
    }
    Err(ClientError::Api {
        status,
        error: serde_json::from_str::<ErrorBody>(&text).map_or_else(
            |_| ApiError {
                code: "HttpError".into(),
                message: resp.status_text(),
                field: None,
                fields: vec![],
                instances: vec![],
                request_id: None,
            },
            |body| body.error,
        ),
    })
}

fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ClientError> {
    // Which field did not parse is for a developer's tools, not for the person reading the page.
    serde_json::from_str(text).map_err(|_| ClientError::Network("an unreadable reply".into()))
}

pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ClientError> {
    parse(&exchange("GET", path, None).await?)
}

/// A JSON body, as text once (so the requests that carry one are not generic).
fn json_body<B: Serialize>(body: &B) -> Result<String, ClientError> {
    serde_json::to_string(body)
        .map_err(|_| ClientError::Network("a request that could not be written".into()))
}

async fn post_text(path: &str, body: String) -> Result<String, ClientError> {
    exchange("POST", path, Some(body)).await
}

pub async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ClientError> {
    parse(&post_text(path, json_body(body)?).await?)
}

/// Sends a JSON PUT (a setting replaced whole) and returns the reply.
pub async fn put<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ClientError> {
    parse(&exchange("PUT", path, Some(json_body(body)?)).await?)
}

pub async fn me() -> Result<shared::api::Me, ClientError> {
    get("/auth/me").await
}

pub async fn login(req: &shared::api::LoginRequest) -> Result<shared::api::Me, ClientError> {
    post("/auth/login", req).await
}

/// Ends the session (the reply has no body).
pub async fn logout() -> Result<(), ClientError> {
    act("/auth/logout").await
}

pub async fn users() -> Result<Vec<shared::api::UserView>, ClientError> {
    get("/users").await
}

pub async fn tokens() -> Result<Vec<shared::api::TokenView>, ClientError> {
    get("/tokens").await
}

/// POSTs an action on what `path` names (its body an empty JSON object) and reads the reply.
pub async fn post_action<T: DeserializeOwned>(path: &str) -> Result<T, ClientError> {
    parse(&post_text(path, "{}".into()).await?)
}

/// POSTs an action on what `path` names and ignores the reply's body.
pub async fn act(path: &str) -> Result<(), ClientError> {
    post_text(path, "{}".into()).await.map(|_| ())
}

/// POSTs and expects no body back (201/204).
pub async fn post_empty<B: Serialize>(path: &str, body: &B) -> Result<(), ClientError> {
    post_text(path, json_body(body)?).await.map(|_| ())
}

pub async fn create_token(
    req: &shared::api::CreateTokenRequest,
) -> Result<shared::api::CreatedToken, ClientError> {
    post("/tokens", req).await
}

pub async fn identity() -> Result<Identity, ClientError> {
    get("/identity").await
}

pub async fn instances() -> Result<InstanceList, ClientError> {
    get("/instances").await
}

pub async fn start(req: &StartExecutionRequest) -> Result<StartExecutionResponse, ClientError> {
    post("/executions", req).await
}

pub async fn preview(req: &StartExecutionRequest) -> Result<PreviewResponse, ClientError> {
    post("/executions/preview", req).await
}

pub async fn rollback_preview(id: &str) -> Result<shared::api::RollbackPreview, ClientError> {
    post_action(&format!("/executions/{id}/rollback/preview")).await
}

pub async fn rollback(id: &str) -> Result<RollbackResponse, ClientError> {
    post_action(&format!("/executions/{id}/rollback")).await
}

/// Asks SSM to stop a run; what it answers is read from the run itself afterwards.
pub async fn stop(id: &str) -> Result<(), ClientError> {
    act(&format!("/executions/{id}/stop")).await
}

pub async fn execution(id: &str) -> Result<ExecutionDetail, ClientError> {
    get(&format!("/executions/{id}")).await
}

/// One page of history; `query` is the URL query without `?` (filters, cursor).
pub async fn history(query: &str) -> Result<ExecutionPage, ClientError> {
    get(&format!("/executions?{query}")).await
}

/// Percent-encodes a query value.
pub fn enc(v: &str) -> String {
    js_sys::encode_uri_component(v).as_string().unwrap_or_default()
}

/// A timestamp in the viewer's own locale and time zone, with the zone named (the pickers and the
/// tables then agree on the format).
pub fn local_time(rfc3339: Option<&str>) -> String {
    match rfc3339 {
        Some(t) => {
            let d = js_sys::Date::new(&JsValue::from_str(t));
            let options = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&options, &"dateStyle".into(), &"medium".into());
            let _ = js_sys::Reflect::set(&options, &"timeStyle".into(), &"long".into());
            d.to_locale_string("default", &options)
                .as_string()
                .unwrap_or_else(|| t.to_owned())
        }
        None => "–".to_owned(),
    }
}
