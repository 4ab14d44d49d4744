//! Sign-in (`/auth/login`, `/auth/logout`, `/auth/me`) and, for admins, users, API tokens and the log of
//! sign-ins and account changes (`/users`, `/tokens`, `/audit/auth`).

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use shared::api::{
    AuthEvent, CreateTokenRequest, CreateUserRequest, CreatedToken, LoginRequest, Me, TokenView, UserView,
};

use super::ApiJson;
use crate::auth::{self, Identity};
use crate::error::AppError;
use crate::state::AppState;
use crate::watcher::now_ms;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/users", get(users).post(add_user))
        .route("/users/{name}/disable", post(disable_user))
        .route("/users/{name}/password", post(set_password))
        .route("/tokens", get(tokens).post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/audit/auth", get(auth_events))
}

fn address(req: &Request) -> Option<String> {
    auth::peer(req.extensions()).map(|p| p.to_string())
}

async fn login(State(state): State<AppState>, req: Request) -> Result<Response, AppError> {
    let addr = address(&req);
    let headers: HeaderMap = req.headers().clone();
    if headers.contains_key(header::ORIGIN) && !auth::same_origin(&headers) {
        return Err(AppError::Conflict {
            code: "CrossSiteRequest".into(),
            message: "sign in from the console's own page".into(),
        });
    }
    let ApiJson(body) = ApiJson::<LoginRequest>::from_request_inner(req, &state).await?;
    let now = now_ms();
    let keys = [
        format!("user:{}", body.username),
        format!("addr:{}", addr.as_deref().unwrap_or("?")),
    ];
    let wait = keys
        .iter()
        .map(|k| state.login_throttle.wait_ms(k, now))
        .max()
        .unwrap_or(0);
    if wait > 0 {
        state
            .store
            .auth_event("login-throttled", None, Some(&body.username), addr.as_deref())?;
        let secs = (wait + 999) / 1000;
        let mut resp = AppError::Conflict {
            code: "TooManyAttempts".into(),
            message: format!("too many failed sign-ins; try again in {secs} s"),
        }
        .into_response();
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        return Ok(resp);
    }
    match state.store.verify_login(&body.username, &body.password)? {
        Some(identity) => {
            for k in &keys {
                state.login_throttle.succeeded(k);
            }
            let secret = state
                .store
                .create_session(&identity.name, state.auth.session_ttl.as_millis() as i64)?;
            state
                .store
                .auth_event("login", Some(&identity.name), None, addr.as_deref())?;
            let me = Me {
                name: identity.name,
                role: identity.role,
                via: "session".into(),
            };
            let mut resp = Json(me).into_response();
            resp.headers_mut()
                .insert(header::SET_COOKIE, auth::session_cookie(&state.auth, &secret));
            Ok(resp)
        }
        None => {
            for k in &keys {
                state.login_throttle.failed(k, now);
            }
            state
                .store
                .auth_event("login-failed", None, Some(&body.username), addr.as_deref())?;
            let mut resp = AppError::Conflict {
                code: "InvalidCredentials".into(),
                message: "wrong user name or password".into(),
            }
            .into_response();
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(resp)
        }
    }
}

async fn logout(
    State(state): State<AppState>,
    identity: Option<Extension<Identity>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Some(secret) = auth::cookie_value(&headers, auth::SESSION_COOKIE) {
        state.store.end_session(&secret)?;
        if let Some(Extension(i)) = identity {
            state.store.auth_event("logout", Some(&i.name), None, None)?;
        }
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, auth::session_cookie(&state.auth, ""));
    Ok(resp)
}

async fn me(Extension(i): Extension<Identity>) -> Json<Me> {
    Json(Me {
        name: i.name,
        role: i.role,
        via: i.via.into(),
    })
}

async fn users(State(state): State<AppState>) -> Result<Json<Vec<UserView>>, AppError> {
    Ok(Json(state.store.users()?))
}

async fn add_user(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> Result<StatusCode, AppError> {
    state.store.add_user(&req.name, req.role, &req.password)?;
    state.store.auth_event(
        "user-added",
        Some(&admin.name),
        Some(&format!("{} ({})", req.name, req.role.as_str())),
        None,
    )?;
    Ok(StatusCode::CREATED)
}

async fn disable_user(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    state.store.disable_user(&name)?;
    state
        .store
        .auth_event("user-disabled", Some(&admin.name), Some(&name), None)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
struct PasswordBody {
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, AppError> {
    state.store.set_password(&name, &body.password)?;
    state
        .store
        .auth_event("password-changed", Some(&admin.name), Some(&name), None)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tokens(State(state): State<AppState>) -> Result<Json<Vec<TokenView>>, AppError> {
    Ok(Json(state.store.tokens()?))
}

async fn create_token(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), AppError> {
    let (id, token, role) = state.store.create_token(&req.user, req.role)?;
    state.store.auth_event(
        "token-created",
        Some(&admin.name),
        Some(&format!("token {id} for {} ({})", req.user, role.as_str())),
        None,
    )?;
    Ok((StatusCode::CREATED, Json(CreatedToken { id, token, role })))
}

async fn revoke_token(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    state.store.revoke_token(id)?;
    state.store.auth_event(
        "token-revoked",
        Some(&admin.name),
        Some(&format!("token {id}")),
        None,
    )?;
    Ok(StatusCode::NO_CONTENT)
}

async fn auth_events(State(state): State<AppState>) -> Result<Json<Vec<AuthEvent>>, AppError> {
    Ok(Json(state.store.auth_events(1000)?))
}
