//! Who is asking, and may they: built-in accounts (session cookie or bearer token) or a trusted sign-on
//! proxy's headers; one policy table for every `/api/v1` route; cross-site request checks; sign-in
//! throttling. The requester recorded on runs is the identity found here.

pub mod accounts;
pub mod alb;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared::api::Role;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

pub use accounts::Identity;

use crate::error::AppError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "imds_session";

/// How identities are found.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Sign-on proxies whose identity headers are trusted (by peer address). Empty: SSO is off.
    pub trusted_proxies: Vec<IpAddr>,
    pub sso_user_header: String,
    pub sso_groups_header: String,
    /// Group -> role; a user gets the highest role of their groups.
    pub sso_group_roles: BTreeMap<String, Role>,
    /// An AWS Application Load Balancer's OIDC token (`x-amzn-oidc-data`) as the identity source.
    pub alb: Option<alb::AlbConfig>,
    pub session_ttl: Duration,
    /// Set cookies with `Secure` (the console is served over TLS, directly or by its proxy).
    pub secure_cookies: bool,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    Needs(Role),
}

/// The policy for every route: reads need a viewer, changes an operator, accounts an admin.
fn access(method: &Method, path: &str) -> Access {
    let admin_area = path.starts_with("/users") || path.starts_with("/tokens") || path == "/audit/auth";
    match path {
        "/health" | "/auth/login" | "/auth/logout" => Access::Public,
        _ if admin_area => Access::Needs(Role::Admin),
        _ if method == Method::GET || method == Method::HEAD => Access::Needs(Role::Viewer),
        _ => Access::Needs(Role::Operator),
    }
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    let body = shared::api::ErrorBody {
        error: shared::api::ApiError {
            code: code.into(),
            message,
            field: None,
            fields: vec![],
            instances: vec![],
        },
    };
    (status, axum::Json(body)).into_response()
}

pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub fn peer(req_ext: &axum::http::Extensions) -> Option<IpAddr> {
    req_ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Whether a state-changing request comes from our own pages: its Origin (or, failing that, Referer)
/// names the host it was sent to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else { return false };
    let authority = source
        .split("://")
        .nth(1)
        .map(|rest| rest.split('/').next().unwrap_or(""));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// The identity of a request, from a trusted proxy's headers, a bearer token or a session cookie.
fn identify(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Option<Identity>, AppError> {
    let cfg = &state.auth;
    if let (Some(ip), false) = (peer, cfg.trusted_proxies.is_empty()) {
        if cfg.trusted_proxies.contains(&ip) {
            if let (Some(alb_cfg), Some(token)) = (
                &cfg.alb,
                headers.get("x-amzn-oidc-data").and_then(|v| v.to_str().ok()),
            ) {
                let now = crate::watcher::now_ms() / 1000;
                return Ok(match alb::verify(alb_cfg, token, now) {
                    Ok((user, groups)) => {
                        let role = groups
                            .iter()
                            .filter_map(|g| cfg.sso_group_roles.get(g.as_str()))
                            .max()
                            .copied();
                        role.map(|role| Identity {
                            name: user,
                            role,
                            via: "sso",
                        })
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refused an ALB identity token");
                        None
                    }
                });
            }
            if let Some(user) = headers
                .get(cfg.sso_user_header.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|u| !u.is_empty())
            {
                let groups = headers
                    .get(cfg.sso_groups_header.as_str())
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let role = groups
                    .split([',', ' '])
                    .filter_map(|g| cfg.sso_group_roles.get(g.trim()))
                    .max()
                    .copied();
                return Ok(role.map(|role| Identity {
                    name: user.to_owned(),
                    role,
                    via: "sso",
                }));
            }
        }
    }
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let Some(token) = auth.strip_prefix("Bearer ") else {
            return Ok(None);
        };
        return Ok(match state.store.token_identity(token.trim())? {
            Some((identity, id, log)) => {
                if log {
                    state.store.auth_event(
                        "token-used",
                        Some(&identity.name),
                        Some(&format!("token {id}")),
                        peer.map(|p| p.to_string()).as_deref(),
                    )?;
                }
                Some(identity)
            }
            None => None,
        });
    }
    match cookie_value(headers, SESSION_COOKIE) {
        Some(secret) => state.store.session_identity(&secret),
        None => Ok(None),
    }
}

/// The middleware in front of `/api/v1`: identifies the caller, applies the policy and the
/// cross-site check, and passes the identity on to the handlers.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req
        .uri()
        .path()
        .strip_prefix("/api/v1")
        .unwrap_or(req.uri().path())
        .to_owned();
    let needs = access(req.method(), &path);
    let peer = peer(req.extensions());
    let identity = match identify(&state, req.headers(), peer) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    if let (Access::Needs(_), None) = (needs, &identity) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "sign in at /login, or send Authorization: Bearer <token>".into(),
        );
    }
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Cookies (ours or a sign-on proxy's) ride along on cross-site requests; bearer tokens do not.
    let cookie_borne = identity.as_ref().is_some_and(|i| i.via != "token");
    if unsafe_method && cookie_borne && !same_origin(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "CrossSiteRequest",
            "state-changing requests must come from the console's own pages (Origin or Referer) or carry a bearer token".into(),
        );
    }
    if let (Access::Needs(role), Some(i)) = (needs, &identity) {
        if i.role < role {
            return refuse(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "{} is a {}; this needs the {} role",
                    i.name,
                    i.role.as_str(),
                    role.as_str()
                ),
            );
        }
    }
    if let Some(i) = identity {
        req.extensions_mut().insert(i);
    }
    next.run(req).await
}

/// Failed sign-ins per user and per address; past the free attempts each failure locks for longer.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, i64, i64)>>,
}

/// Failures allowed in a window before sign-in slows down.
const FREE_ATTEMPTS: u32 = 5;
const WINDOW_MS: i64 = 15 * 60 * 1000;
const MAX_LOCK_MS: i64 = 15 * 60 * 1000;

impl LoginThrottle {
    /// Milliseconds until `key` may try again (0: now).
    pub fn wait_ms(&self, key: &str, now: i64) -> i64 {
        let map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key).map_or(0, |(_, _, until)| (until - now).max(0))
    }

    pub fn failed(&self, key: &str, now: i64) {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = map.entry(key.to_owned()).or_insert((0, now, 0));
        if now - e.1 > WINDOW_MS {
            *e = (0, now, 0);
        }
        e.0 += 1;
        if e.0 >= FREE_ATTEMPTS {
            let lock = (1000i64 << (e.0 - FREE_ATTEMPTS).min(20)).min(MAX_LOCK_MS);
            e.2 = now + lock;
        }
    }

    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// The Set-Cookie header for a session (or for ending it, with an empty value).
pub fn session_cookie(cfg: &AuthConfig, secret: &str) -> HeaderValue {
    let max_age = if secret.is_empty() {
        0
    } else {
        cfg.session_ttl.as_secs()
    };
    let secure = if cfg.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("imds_session=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_covers_reads_changes_and_accounts() {
        assert_eq!(access(&Method::GET, "/health"), Access::Public);
        assert_eq!(access(&Method::GET, "/executions"), Access::Needs(Role::Viewer));
        assert_eq!(
            access(&Method::POST, "/executions/preview"),
            Access::Needs(Role::Operator)
        );
        assert_eq!(access(&Method::GET, "/users"), Access::Needs(Role::Admin));
        assert_eq!(
            access(&Method::POST, "/tokens/3/revoke"),
            Access::Needs(Role::Admin)
        );
        assert_eq!(access(&Method::GET, "/audit/auth"), Access::Needs(Role::Admin));
        assert_eq!(access(&Method::GET, "/audit"), Access::Needs(Role::Viewer));
    }

    #[test]
    fn origin_must_name_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert(
            header::REFERER,
            HeaderValue::from_static("http://127.0.0.1:8080/execute"),
        );
        assert!(same_origin(&h));
    }

    #[test]
    fn failures_past_the_free_ones_lock_for_longer_each_time() {
        let t = LoginThrottle::default();
        for _ in 0..4 {
            t.failed("user:a", 0);
        }
        assert_eq!(t.wait_ms("user:a", 0), 0);
        t.failed("user:a", 0);
        assert_eq!(t.wait_ms("user:a", 0), 1000);
        t.failed("user:a", 0);
        assert_eq!(t.wait_ms("user:a", 0), 2000);
        t.succeeded("user:a");
        assert_eq!(t.wait_ms("user:a", 0), 0);
    }
}
