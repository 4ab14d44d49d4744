//! Sign-in (`/auth/login`, `/auth/logout`, `/auth/me`) and, for admins, users, API tokens and the log of
//! sign-ins and account changes (`/users`, `/tokens`, `/audit/auth`).

use super::described::{doc, ApiRouter};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use shared::api::Via;
use shared::api::{
    AuthEventPage, ChangePasswordRequest, CreateTokenRequest, CreateUserRequest, CreatedToken, LoginRequest,
    Me, Role, SetRoleRequest, TokenView, UserView,
};

use super::{ApiJson, ApiQuery};
use crate::auth::accounts::Accounts;
use crate::auth::accounts::AuthEventFilter;
use crate::auth::{self, Identity, LoginGate};
use crate::error::AppError;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::default()
        .post(
            "/auth/login",
            login,
            doc("Sign in; sets the session cookie")
                .body::<LoginRequest>()
                .answers::<Me>(200),
        )
        .post(
            "/auth/logout",
            logout,
            doc("Sign out; ends the session and its event streams"),
        )
        .get("/auth/me", me, doc("Who is signed in").answers::<Me>(200))
        .post(
            "/auth/password",
            change_password,
            doc("Change one's own password (required after the first sign-in)")
                .body::<ChangePasswordRequest>()
                .answers::<Me>(200),
        )
        .get("/users", users, doc("Users").answers::<Vec<UserView>>(200))
        .post(
            "/users",
            add_user,
            doc("Add a user").body::<CreateUserRequest>().empty(201),
        )
        .post(
            "/users/{name}/disable",
            disable_user,
            doc("Disable a user (never the last enabled admin)"),
        )
        .post("/users/{name}/enable", enable_user, doc("Enable a user again"))
        .post(
            "/users/{name}/role",
            set_role,
            doc("Change a user's role").body::<SetRoleRequest>(),
        )
        .post(
            "/users/{name}/accounts",
            set_accounts,
            doc("Limit a user to accounts, or to none").body::<shared::api::UserAccountsRequest>(),
        )
        .post(
            "/users/{name}/password",
            set_password,
            doc("Set a user's password").body::<PasswordBody>(),
        )
        .get(
            "/tokens",
            tokens,
            doc("API tokens").answers::<Vec<TokenView>>(200),
        )
        .post(
            "/tokens",
            create_token,
            doc("Create an API token; its secret is in this answer only")
                .body::<CreateTokenRequest>()
                .answers::<CreatedToken>(201),
        )
        .post("/tokens/{id}/revoke", revoke_token, doc("Revoke an API token"))
        .get(
            "/audit/auth",
            auth_events,
            doc("Sign-ins and account changes, newest first, paged")
                .query::<AuthEventQuery>()
                .answers::<AuthEventPage>(200),
        )
}

/// The longest user name a sign-in may carry (user names are at most 64 characters); longer ones are
/// refused before anything is checked or written.
const MAX_LOGIN_NAME: usize = 64;

async fn login(State(state): State<AppState>, req: Request) -> Result<Response, AppError> {
    let headers: HeaderMap = req.headers().clone();
    let addr = state
        .auth
        .client_address(&headers, auth::peer(req.extensions()))
        .map_or_else(|| "?".to_owned(), |a| a.to_string());
    if headers.contains_key(header::ORIGIN) && !auth::same_origin(&state.auth, &headers) {
        return Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "CrossSiteRequest",
            "sign in from the console's own page",
        ));
    }
    let ApiJson(body) = ApiJson::<LoginRequest>::from_request_inner(req, &state).await?;
    if body.username.chars().count() > MAX_LOGIN_NAME {
        return Err(AppError::field(
            "username",
            format!("a user name has at most {MAX_LOGIN_NAME} characters"),
        ));
    }
    let now = state.store.clock.now_ms();
    match state.login_throttle.gate(&body.username, &addr, now).await? {
        LoginGate::Locked { wait_ms, audit_key } => {
            // One counted event per address (or user and address) and window, however many attempts.
            state
                .metrics
                .sign_ins
                .get_or_create(&crate::metrics::SignInLabels { outcome: "throttled" })
                .inc();
            match state.login_throttle.throttled_row(&audit_key, now).await? {
                Some(row) => state.store.count_auth_event(row).await?,
                None => {
                    let row = state
                        .store
                        .auth_event("login-throttled", None, Some(&body.username), Some(&addr))
                        .await?;
                    state
                        .login_throttle
                        .note_throttled_row(&audit_key, row, now)
                        .await?;
                }
            }
            let secs = (wait_ms + 999) / 1000;
            let mut resp = AppError::refused(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyAttempts",
                format!("too many failed sign-ins; try again in {secs} s"),
            )
            .into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
            return Ok(resp);
        }
        LoginGate::Proceed { delay_ms } if delay_ms > 0 => {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms as u64)).await;
        }
        LoginGate::Proceed { .. } => {}
    }
    let verified = check_password(&state, &body.username, &body.password).await?;
    match verified {
        Some(identity) => {
            state.login_throttle.succeeded(&body.username, &addr).await?;
            let secret = Accounts(&state.store)
                .create_session(
                    &identity.name,
                    state.auth.session_ttl.as_millis() as i64,
                    identity.own_credential,
                )
                .await?;
            state
                .metrics
                .sign_ins
                .get_or_create(&crate::metrics::SignInLabels { outcome: "ok" })
                .inc();
            state
                .store
                .auth_event("login", Some(&identity.name), None, Some(&addr))
                .await?;
            let me = Me {
                name: identity.name,
                role: identity.role,
                via: Via::Session.as_str().into(),
                must_change_password: identity.must_change_password,
                events_seq: state.events.seq(),
            };
            let mut resp = Json(me).into_response();
            resp.headers_mut()
                .insert(header::SET_COOKIE, auth::session_cookie(&state.auth, &secret));
            Ok(resp)
        }
        None => {
            // The lock runs from the failure, not from the request: checking the password (queued
            // behind others under load) must not eat into it.
            let failed_at = state.store.clock.now_ms();
            state
                .login_throttle
                .failed(&body.username, &addr, failed_at)
                .await?;
            state
                .metrics
                .sign_ins
                .get_or_create(&crate::metrics::SignInLabels { outcome: "failed" })
                .inc();
            state
                .store
                .auth_event("login-failed", None, Some(&body.username), Some(&addr))
                .await?;
            Err(AppError::refused(
                StatusCode::UNAUTHORIZED,
                "InvalidCredentials",
                "wrong user name or password",
            ))
        }
    }
}

/// Checks a password. Hashing is deliberately slow: it runs on the blocking pool, a few at a time, so
/// sign-ins never hold up the async workers that answer everyone else.
async fn check_password(state: &AppState, name: &str, password: &str) -> Result<Option<Identity>, AppError> {
    let _permit = state
        .password_checks
        .acquire()
        .await
        .map_err(AppError::internal)?;
    Accounts(&state.store).verify_login(name, password).await
}

async fn logout(
    State(state): State<AppState>,
    identity: Option<Extension<Identity>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Some(secret) = auth::session_secret(&state.auth, &headers)? {
        Accounts(&state.store).end_session(&secret).await?;
        if let Some(Extension(i)) = identity {
            state
                .store
                .auth_event("logout", Some(&i.name), None, None)
                .await?;
        }
        state.access_changed();
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, auth::session_cookie(&state.auth, ""));
    Ok(resp)
}

async fn me(State(state): State<AppState>, Extension(i): Extension<Identity>) -> Json<Me> {
    Json(Me {
        name: i.name,
        role: i.role,
        via: i.via.as_str().into(),
        must_change_password: i.must_change_password,
        events_seq: state.events.seq(),
    })
}

/// A signed-in user changes their own password (required first for a generated one). Every session of
/// theirs ends; this one continues with a fresh session cookie.
async fn change_password(
    State(state): State<AppState>,
    Extension(i): Extension<Identity>,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<Response, AppError> {
    if i.via != Via::Session {
        return Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "NotABuiltInSession",
            "only a signed-in built-in account changes its password here",
        ));
    }
    // Whoever holds a session could otherwise guess the password here without end: wrong current
    // passwords count as failed sign-ins of the user (from a place of their own, so they lock only
    // password changes, and slow sign-ins as guessing does) and are audited.
    let place = format!("password-change:{}", i.name);
    let now = state.store.clock.now_ms();
    if let LoginGate::Locked { wait_ms, .. } = state.login_throttle.gate(&i.name, &place, now).await? {
        let secs = (wait_ms + 999) / 1000;
        let mut resp = AppError::refused(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyAttempts",
            format!("too many wrong current passwords; try again in {secs} s"),
        )
        .into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        return Ok(resp);
    }
    // The current password is checked first, so that no other answer tells a right guess.
    let verified = check_password(&state, &i.name, &body.current_password).await?;
    if verified.is_none() {
        let failed_at = state.store.clock.now_ms();
        state.login_throttle.failed(&i.name, &place, failed_at).await?;
        state
            .store
            .auth_event("password-change-failed", Some(&i.name), Some(&i.name), None)
            .await?;
        return Err(AppError::field(
            "current_password",
            "this is not your current password",
        ));
    }
    state.login_throttle.succeeded(&i.name, &place).await?;
    if body.new_password == body.current_password {
        return Err(AppError::field(
            "new_password",
            "choose a password different from the current one",
        ));
    }
    Accounts(&state.store)
        .set_password(&i.name, &body.new_password, None)
        .await
        .map_err(|e| match e {
            AppError::BadQuery(m) => AppError::field("new_password", m),
            other => other,
        })?;
    crate::admin::forget_first_password(&state.data_dir, &i.name);
    state
        .store
        .auth_event("password-changed", Some(&i.name), Some(&i.name), None)
        .await?;
    state.access_changed();
    // A session that signed in with someone else's password stays so after the change: the person
    // at the keyboard knew that password. The next sign-in with the new one is their own.
    let secret = Accounts(&state.store)
        .create_session(
            &i.name,
            state.auth.session_ttl.as_millis() as i64,
            i.own_credential,
        )
        .await?;
    let mut resp = Json(Me {
        name: i.name,
        role: i.role,
        via: Via::Session.as_str().into(),
        must_change_password: false,
        events_seq: state.events.seq(),
    })
    .into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, auth::session_cookie(&state.auth, &secret));
    Ok(resp)
}

async fn users(State(state): State<AppState>) -> Result<Json<Vec<UserView>>, AppError> {
    Ok(Json(state.store.users().await?))
}

async fn add_user(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> Result<StatusCode, AppError> {
    // Checked before the user exists, so a bad list adds nobody.
    if req.role == Role::Admin && req.accounts.is_some() {
        return Err(crate::auth::accounts::admin_limit_refused(&req.name));
    }
    let accounts = req
        .accounts
        .as_deref()
        .map(crate::auth::accounts::check_account_list)
        .transpose()?;
    Accounts(&state.store)
        .add_user(&req.name, req.role, &req.password, Some(&admin.name))
        .await?;
    Accounts(&state.store)
        .set_user_accounts(&req.name, accounts.as_deref())
        .await?;
    let scope = accounts.map_or_else(String::new, |a| format!(", accounts {}", a.join(" ")));
    state
        .store
        .auth_event(
            "user-added",
            Some(&admin.name),
            Some(&format!("{} ({}{scope})", req.name, req.role.as_str())),
            None,
        )
        .await?;
    Ok(StatusCode::CREATED)
}

async fn set_accounts(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<shared::api::UserAccountsRequest>,
) -> Result<StatusCode, AppError> {
    Accounts(&state.store)
        .set_user_accounts(&name, req.accounts.as_deref())
        .await?;
    let what = req
        .accounts
        .map_or_else(|| "every account".to_owned(), |a| a.join(" "));
    state
        .store
        .auth_event(
            "accounts-changed",
            Some(&admin.name),
            Some(&format!("{name}: {what}")),
            None,
        )
        .await?;
    state.access_changed();
    Ok(StatusCode::NO_CONTENT)
}

async fn disable_user(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    state.store.disable_user(&name).await?;
    state
        .store
        .auth_event("user-disabled", Some(&admin.name), Some(&name), None)
        .await?;
    state.access_changed();
    Ok(StatusCode::NO_CONTENT)
}

async fn enable_user(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    state.store.enable_user(&name).await?;
    state
        .store
        .auth_event("user-enabled", Some(&admin.name), Some(&name), None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_role(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SetRoleRequest>,
) -> Result<StatusCode, AppError> {
    Accounts(&state.store).set_role(&name, body.role).await?;
    state
        .store
        .auth_event(
            "role-changed",
            Some(&admin.name),
            Some(&format!("{name} ({})", body.role.as_str())),
            None,
        )
        .await?;
    state.access_changed();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, AppError> {
    // Someone else's new password is theirs to replace: they must choose one at their next sign-in,
    // and until they sign in with it, their sessions cannot approve.
    let by_other = (name != admin.name).then_some(admin.name.as_str());
    Accounts(&state.store)
        .set_password(&name, &body.password, by_other)
        .await?;
    state
        .store
        .auth_event(
            if by_other.is_some() {
                "password-reset"
            } else {
                "password-changed"
            },
            Some(&admin.name),
            Some(&name),
            None,
        )
        .await?;
    state.access_changed();
    Ok(StatusCode::NO_CONTENT)
}

async fn tokens(State(state): State<AppState>) -> Result<Json<Vec<TokenView>>, AppError> {
    Ok(Json(state.store.tokens().await?))
}

async fn create_token(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), AppError> {
    // A token acts as its owner, so only its owner makes one: an admin minting one for someone else
    // could act, and approve, as them.
    if req.user != admin.name || admin.via == Via::Sso {
        return Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "TokenForAnother",
            format!(
                "{} cannot make a token for {}: tokens are made by their owner, signed in as themselves",
                admin.name, req.user
            ),
        ));
    }
    let shared::api::TokenSpec { name, days } = req
        .checked()
        .map_err(|(field, message)| AppError::field(field, message))?;
    let days = days.or(Some(state.token_days));
    let (id, token, role, expires_at) = Accounts(&state.store)
        .create_token(&req.user, req.role, name.as_deref(), days, admin.own_credential)
        .await?;
    let what = name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
    let until = expires_at
        .as_deref()
        .map(|e| format!(", until {e}"))
        .unwrap_or_default();
    state
        .store
        .auth_event(
            "token-created",
            Some(&admin.name),
            Some(&format!(
                "token {id}{what} for {} ({}{until})",
                req.user,
                role.as_str()
            )),
            None,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id,
            token,
            role,
            name,
            expires_at,
        }),
    ))
}

async fn revoke_token(
    State(state): State<AppState>,
    Extension(admin): Extension<Identity>,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    state.store.revoke_token(id).await?;
    state
        .store
        .auth_event(
            "token-revoked",
            Some(&admin.name),
            Some(&format!("token {id}")),
            None,
        )
        .await?;
    state.access_changed();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AuthEventQuery {
    kind: Option<String>,
    user: Option<String>,
    address: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// The log of sign-ins and account changes, a page at a time (100 by default, at most 1,000).
async fn auth_events(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuthEventQuery>,
) -> Result<Json<AuthEventPage>, AppError> {
    let before_id = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            AppError::BadQuery(format!(
                "cursor \"{c}\": pass the next_cursor of the previous page"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::BadQuery(format!("limit {limit}: use 1 to 1000")));
    }
    let (events, next) = state
        .store
        .auth_events(&AuthEventFilter {
            kind: q.kind.filter(|k| !k.is_empty()),
            user: q.user.filter(|u| !u.is_empty()),
            address: q.address.filter(|a| !a.is_empty()),
            before_id,
            limit,
        })
        .await?;
    Ok(Json(AuthEventPage {
        events,
        next_cursor: next.map(|id| id.to_string()),
    }))
}
