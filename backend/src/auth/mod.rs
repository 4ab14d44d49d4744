//! Who is asking, and may they: built-in accounts (session cookie or bearer token) or a trusted sign-on
//! proxy's headers; one policy table for every `/api/v1` route; cross-site request checks; sign-in
//! throttling. The requester recorded on runs is the identity found here.

pub mod accounts;
pub mod alb;
pub mod policy;
mod sightings;
mod throttle;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared::api::Role;
use shared::api::Via;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use accounts::Identity;
pub use policy::{may_see_plan, required_role, AccountScope};
pub use sightings::SsoSightings;
pub use throttle::*;

use crate::auth::accounts::Accounts;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::Store;

pub const SESSION_COOKIE: &str = "imds_session";
/// The session cookie's name over HTTPS.
pub const SECURE_SESSION_COOKIE: &str = "__Host-imds_session";

/// How identities are found.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Sign-on proxies whose identity headers are trusted (by peer address). Empty: SSO is off.
    pub trusted_proxies: Vec<IpAddr>,
    pub sso_user_header: String,
    pub sso_groups_header: String,
    /// Group -> role; a user gets the highest role of their groups.
    pub sso_group_roles: BTreeMap<String, Role>,
    /// Group -> the accounts it is limited to (`--sso-group-role GROUP=ROLE@ID+ID`); a group not
    /// listed here sees every account.
    pub sso_group_accounts: BTreeMap<String, Vec<String>>,
    /// An AWS Application Load Balancer's OIDC token (`x-amzn-oidc-data`) as the identity source.
    pub alb: Option<alb::AlbConfig>,
    pub session_ttl: Duration,
    /// Set cookies with `Secure` (the console is served over TLS, directly or by its proxy); the session
    /// cookie then also takes the `__Host-` prefix, so no sibling host can set or shadow it.
    pub secure_cookies: bool,
    /// The header in which a trusted proxy names the client's address (its last entry is the one the
    /// proxy appended).
    pub client_ip_header: String,
    /// The console's own origin (`https://imds.example.com`), which state-changing requests must come
    /// from. None: the scheme the console serves (https with TLS or secure cookies) and the Host asked for.
    pub public_origin: Option<String>,
    /// Which Host names requests may use: Some(name), that one (--public-url's) besides IP addresses
    /// and localhost; Some(None), IP addresses and localhost only; None, any (tests of other parts).
    pub known_host: Option<Option<String>>,
}

impl AuthConfig {
    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.trusted_proxies.contains(&ip))
    }

    /// Where a request comes from: the peer, or, behind a trusted proxy, the client the proxy names.
    pub fn client_address(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        if !self.trusts(peer) {
            return peer;
        }
        let named = headers
            .get_all(self.client_ip_header.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|a| a.trim().parse().ok());
        named.or(peer)
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
            request_id: crate::telemetry::request_id(),
        },
    };
    (status, axum::Json(body)).into_response()
}

/// Whether a request's Host is one this console answers to (see [`AuthConfig::known_host`]).
pub fn host_known(cfg: &AuthConfig, uri: &axum::http::Uri, headers: &HeaderMap) -> bool {
    let Some(known) = &cfg.known_host else {
        return true;
    };
    // HTTP/2 names the host in the request's authority; HTTP/1.1 in Host. A request naming none is
    // refused: every browser names one.
    let Some(host) = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host
            .rsplit_once(':')
            .map_or(host, |(h, _)| h)
            .to_ascii_lowercase(),
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || known.as_deref() == Some(name.trim_end_matches('.'))
}

/// Refuses a request by a Host name the console was not told about (DNS rebinding).
pub async fn check_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if host_known(&state.auth, req.uri(), req.headers()) {
        return next.run(req).await;
    }
    refuse(
        StatusCode::MISDIRECTED_REQUEST,
        "UnknownHost",
        "this console answers to its IP addresses and to the name given with --public-url; start it with --public-url https://<name> to use a name"
            .into(),
    )
}

/// Every value of cookie `name` the request carries.
pub fn cookie_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .collect()
}

/// The session cookie's value; a request that carries it twice is refused, because a cookie set by a
/// sibling site could then stand beside ours and choose the session.
pub fn session_secret(cfg: &AuthConfig, headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let mut values = cookie_values(headers, cfg.cookie_name());
    if values.len() > 1 {
        return Err(duplicate(cfg.cookie_name()));
    }
    Ok(values.pop())
}

fn duplicate(name: &str) -> AppError {
    AppError::refused(
        StatusCode::BAD_REQUEST,
        "DuplicateIdentityHeader",
        format!("{name} appears more than once; send it once"),
    )
}

/// The only value of an identity header. A second copy is refused: a proxy that appends its own would
/// otherwise let the client's copy, which comes first, decide who the caller is.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, AppError> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(duplicate(name));
    }
    Ok(first.and_then(|v| v.to_str().ok()))
}

pub fn peer(req_ext: &axum::http::Extensions) -> Option<IpAddr> {
    req_ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Whether a state-changing request comes from our own pages: its Origin (or, failing that, Referer)
/// is the console's origin, scheme, host and port alike.
pub fn same_origin(cfg: &AuthConfig, headers: &HeaderMap) -> bool {
    let expected = match &cfg.public_origin {
        Some(origin) => normalise_origin(origin),
        None => {
            let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
                return false;
            };
            let scheme = if cfg.secure_cookies { "https" } else { "http" };
            normalise_origin(&format!("{scheme}://{host}"))
        }
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match (source.and_then(normalise_origin), expected) {
        (Some(got), Some(want)) => got == want,
        _ => false,
    }
}

/// `scheme://host:port` of a URL, lower-cased, with the scheme's default port made explicit.
pub fn normalise_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    // An IPv6 host keeps its brackets; a port follows the host after a colon.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (inside, after) = v6.split_once(']')?;
            (format!("[{inside}]"), after.strip_prefix(':').unwrap_or(""))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h.to_owned(), p),
            None => (authority.clone(), ""),
        },
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let with_port = format!("{host}:{}", if port.is_empty() { default_port } else { port });
    Some(format!("{scheme}://{with_port}"))
}

/// The identity of a request, from a trusted proxy's headers, a bearer token or a session cookie.
async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Option<Identity>, AppError> {
    let cfg = &state.auth;
    if cfg.trusts(peer) {
        if let Some(alb_cfg) = &cfg.alb {
            // An ALB passes its clients' headers through, so in ALB mode only its signed token may
            // establish a sign-on identity; X-Forwarded-User and friends are the client's own words.
            if let Some(token) = single(headers, "x-amzn-oidc-data")? {
                let now = state.store.clock.now_ms() / 1000;
                return Ok(match alb::verify(alb_cfg, token, now) {
                    Ok((user, groups)) => sso_identity(state, user, groups.iter().map(String::as_str)),
                    Err(e) => {
                        tracing::warn!(error = %e, "refused an ALB identity token");
                        None
                    }
                });
            }
        } else if let Some(user) = single(headers, &cfg.sso_user_header)?.filter(|u| !u.is_empty()) {
            let groups = single(headers, &cfg.sso_groups_header)?.unwrap_or("");
            // Groups are comma-separated; a group name may contain spaces ("external platform").
            return Ok(sso_identity(
                state,
                user.to_owned(),
                groups.split(',').map(str::trim),
            ));
        }
    }
    if let Some(auth) = single(headers, header::AUTHORIZATION.as_str())? {
        let Some(token) = auth.strip_prefix("Bearer ") else {
            return Ok(None);
        };
        return Ok(match Accounts(&state.store).token_identity(token.trim()).await? {
            Some((identity, id, log)) => {
                if log {
                    state
                        .store
                        .auth_event(
                            "token-used",
                            Some(&identity.name),
                            Some(&format!("token {id}")),
                            cfg.client_address(headers, peer)
                                .map(|p| p.to_string())
                                .as_deref(),
                        )
                        .await?;
                }
                Some(identity)
            }
            None => None,
        });
    }
    match session_secret(cfg, headers)? {
        Some(secret) => Accounts(&state.store).session_identity(&secret).await,
        None => Ok(None),
    }
}

/// The accounts the caller behind these headers may read now, if they may still read at all (an open
/// event stream asks this again when access may have changed, and follows the answer).
pub async fn read_scope(state: &AppState, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<AccountScope> {
    let identity = identify(state, headers, peer).await.ok().flatten()?;
    if identity.role < Role::Viewer {
        return None;
    }
    let hub = if identity.accounts.is_some() {
        crate::routes::identity::resolve(state).await.ok()?.account
    } else {
        String::new()
    };
    Some(AccountScope {
        allowed: identity.accounts,
        hub,
    })
}

/// A sign-on user's identity: the grants of their mapped groups, none without one.
fn sso_identity<'g>(
    state: &AppState,
    user: String,
    groups: impl Iterator<Item = &'g str>,
) -> Option<Identity> {
    // A sign-on name is held to the length of built-in names and refuses what no name should hold (it is
    // written to the audit trail, runs, approvals and CSV files): one that breaks the rules signs nobody
    // in. Directory names keep their form (`CORP\jane O'Brien`).
    if let Err(why) = accounts::check_sso_name(&user) {
        tracing::warn!(error = %why, "refused a sign-on user name");
        return None;
    }
    // Each mapped group grants its role in its accounts (every account when the group has no list);
    // the role in an account is the highest grant covering it, so an unlimited viewer group does not
    // lift another group's account limit on operating.
    let grants: Vec<accounts::Grant> = groups
        .filter_map(|g| {
            let role = *state.auth.sso_group_roles.get(g)?;
            Some(accounts::Grant {
                role,
                accounts: state.auth.sso_group_accounts.get(g).cloned(),
            })
        })
        .collect();
    Identity::of_grants(user, Via::Sso, false, grants)
}

/// The middleware in front of `/api/v1`: identifies the caller, applies the policy and the
/// cross-site check, and passes the identity on to the handlers.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // The policy is the matched route's, by its template (`/executions/{id}`), never read off the raw
    // path. A path that matched no route, or a method the route does not have, needs a signed-in
    // viewer and then gets its 404 or 405.
    let template = req.extensions().get::<axum::extract::MatchedPath>().map(|m| {
        m.as_str()
            .strip_prefix("/api/v1")
            .unwrap_or(m.as_str())
            .to_owned()
    });
    let policy = template
        .as_deref()
        .and_then(|t| policy::policy(req.method(), t))
        .unwrap_or(policy::Policy {
            role: Some(Role::Viewer),
            accounts: policy::AccountRule::Unscoped,
        });
    let peer = peer(req.extensions());
    let identity = match identify(&state, req.headers(), peer).await {
        Ok(i) => i,
        Err(e) => return no_store(e.into_response()),
    };
    if let (Some(_), None) = (policy.role, &identity) {
        return no_store(refuse(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "sign in at /login, or send Authorization: Bearer <token>".into(),
        ));
    }
    let address = state
        .auth
        .client_address(req.headers(), peer)
        .map(|a| a.to_string());
    if let Some(i) = identity.as_ref().filter(|i| i.via == Via::Sso) {
        state.sso_sightings.saw(&i.name, &i.grants);
        if state
            .sso_sightings
            .first_in(&i.name, state.auth.session_ttl, state.store.clock.now_ms())
        {
            if let Err(e) = state
                .store
                .auth_event(
                    "sso-login",
                    Some(&i.name),
                    Some(i.role.as_str()),
                    address.as_deref(),
                )
                .await
            {
                return no_store(AppError::from(e).into_response());
            }
        }
    }
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Cookies (ours or a sign-on proxy's) ride along on cross-site requests; bearer tokens do not.
    let cookie_borne = identity.as_ref().is_some_and(|i| i.via != Via::Token);
    let refusal = if unsafe_method && cookie_borne && !same_origin(&state.auth, req.headers()) {
        Some((
            "CrossSiteRequest",
            "state-changing requests must come from the console's own pages (Origin or Referer) or carry a bearer token".to_owned(),
        ))
    } else {
        match (policy.role, &identity) {
            (Some(role), Some(i)) if i.role < role => Some((
                "Forbidden",
                format!(
                    "{} is a {}; this needs the {} role",
                    i.name,
                    i.role.as_str(),
                    role.as_str()
                ),
            )),
            _ => None,
        }
    };
    let refusal = refusal.or_else(|| {
        // A generated first password must be replaced before the session may do anything else.
        identity
            .as_ref()
            .filter(|i| {
                i.must_change_password
                    && !matches!(
                        template.as_deref(),
                        Some("/auth/me" | "/auth/logout" | "/auth/password")
                    )
            })
            .map(|_| {
                (
                    "PasswordChangeRequired",
                    "choose a new password first (POST /api/v1/auth/password)".to_owned(),
                )
            })
    });
    if let Some((code, message)) = refusal {
        // A refused change is evidence too: who tried what.
        if let (true, Some(i)) = (unsafe_method, &identity) {
            let what = refused_what(req.method(), template.as_deref(), code);
            if let Err(e) = audit_refusal(&state, &i.name, &what, address.as_deref()).await {
                return no_store(e.into_response());
            }
        }
        return no_store(refuse(StatusCode::FORBIDDEN, code, message));
    }
    let Some(i) = identity else {
        req.extensions_mut().insert(AccountScope::default());
        return no_store(next.run(req).await);
    };
    let method = req.method().clone();
    let name = i.name.clone();
    let limited = i.varies_by_account();
    let mut unseen = false;
    let resp = match policy::check_accounts(&state, &i, policy, req).await {
        Ok((mut checked, _)) => {
            checked.extensions_mut().insert(i);
            next.run(checked).await
        }
        Err(refused) => {
            unseen = limited && matches!(refused, AppError::NotFound(_));
            refused.into_response()
        }
    };
    // Every refused change is evidence: the policy's (another account: 403, or 404 for an object
    // outside the caller's accounts) and the handlers' own (their own approval, a token for someone
    // else, a credential someone else made).
    let code = match resp.extensions().get::<crate::error::Refusal>() {
        Some(refusal) => Some(refusal.0.clone()),
        None => unseen.then(|| "NotFound".to_owned()),
    };
    if let (true, Some(code)) = (unsafe_method, code) {
        let what = refused_what(&method, template.as_deref(), &code);
        let _ = audit_refusal(&state, &name, &what, address.as_deref()).await;
    }
    no_store(resp)
}

/// A refused change as the audit trail names it: method and route template (closed sets, so a request
/// cannot make the entry long), and the refusal's code.
fn refused_what(method: &Method, template: Option<&str>, code: &str) -> String {
    let route = template
        .and_then(policy::route_template)
        .unwrap_or("(no such route)");
    let method = match *method {
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "another method",
    };
    format!("{method} {route}: {code}")
}

/// Records a refused change, aggregated like throttled sign-ins: one row per person and refusal in a
/// sign-in window, counting the repeats, so a flood of refused requests cannot fill the trail.
async fn audit_refusal(
    state: &AppState,
    who: &str,
    what: &str,
    address: Option<&str>,
) -> Result<(), AppError> {
    let now = state.store.clock.now_ms();
    let key = format!("refused:{who}\n{what}");
    match state.login_throttle.throttled_row(&key, now).await? {
        Some(row) => Ok(state.store.count_auth_event(row).await?),
        None => {
            let row = state
                .store
                .auth_event("change-refused", Some(who), Some(what), address)
                .await?;
            state.login_throttle.note_throttled_row(&key, row, now).await
        }
    }
}

/// API answers (sessions, tokens, the audit trail) must not stay in a browser's or proxy's cache.
fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The Set-Cookie header for a session (or for ending it, with an empty value).
pub fn session_cookie(cfg: &AuthConfig, secret: &str) -> HeaderValue {
    let max_age = if secret.is_empty() {
        0
    } else {
        cfg.session_ttl.as_secs()
    };
    let secure = if cfg.secure_cookies { "; Secure" } else { "" };
    let name = cfg.cookie_name();
    HeaderValue::from_str(&format!(
        "{name}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("imds_session=; Max-Age=0"))
}

/// Why `user` may no longer have a start sent on their behalf in `accounts` ('' is the console's
/// own): a built-in user below operator or not covering one of them, or a sign-on user whose last
/// request granted less. None when they still may (a sign-on user not seen since the console
/// started is taken at the word of the request that caused the start).
pub async fn no_longer_answerable(
    state: &AppState,
    user: &str,
    accounts: &[String],
) -> Result<Option<String>, AppError> {
    let hub = crate::routes::identity::resolve(state).await?.account;
    let grants = match state.store.enabled_user_role(user).await? {
        Some(role) => vec![accounts::Grant {
            role,
            accounts: state.store.user_accounts(user).await?,
        }],
        None => match state.sso_sightings.last_grants(user) {
            Some(grants) => grants,
            None => return Ok(None),
        },
    };
    let role_in = |account: &str| {
        let account = if account.is_empty() { hub.as_str() } else { account };
        grants
            .iter()
            .filter(|g| {
                g.accounts
                    .as_ref()
                    .is_none_or(|ids| ids.iter().any(|a| a == account))
            })
            .map(|g| g.role)
            .max()
    };
    let outside: Vec<String> = accounts
        .iter()
        .filter(|a| role_in(a) < Some(Role::Operator))
        .map(|a| if a.is_empty() { hub.clone() } else { a.clone() })
        .collect();
    Ok((!outside.is_empty()).then(|| {
        format!(
            "{user}, on whose behalf it would be sent, may no longer start runs in {}",
            outside.join(", ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            client_ip_header: "x-forwarded-for".into(),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn origin_must_match_scheme_host_and_port() {
        let cfg = config();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!same_origin(&cfg, &h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&cfg, &h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://127.0.0.1:8080"));
        assert!(!same_origin(&cfg, &h), "another scheme is another origin");
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&cfg, &h));
        h.remove(header::ORIGIN);
        h.insert(
            header::REFERER,
            HeaderValue::from_static("http://127.0.0.1:8080/execute"),
        );
        assert!(same_origin(&cfg, &h));

        let public = AuthConfig {
            public_origin: Some("https://imds.example.com".into()),
            ..config()
        };
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://imds.example.com:443"),
        );
        assert!(same_origin(&public, &h), "the default port is the same origin");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://imds.example.com"),
        );
        assert!(!same_origin(&public, &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://imds.example.com:8443"),
        );
        assert!(!same_origin(&public, &h));
    }

    #[test]
    fn a_console_beyond_loopback_answers_only_to_its_addresses_localhost_and_its_public_name() {
        let with_host = |h: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_static(h));
            m
        };
        let path: axum::http::Uri = "/api/v1/health".parse().unwrap();
        let known = |cfg: &AuthConfig, h: &HeaderMap| host_known(cfg, &path, h);
        let any = config();
        assert!(known(&any, &with_host("rebound.evil.example:8080")));
        let bare = AuthConfig {
            known_host: Some(None),
            ..config()
        };
        for ok in ["10.0.0.5:8080", "[fd00::5]:8080", "localhost:8080", "127.0.0.1"] {
            assert!(known(&bare, &with_host(ok)), "{ok}");
        }
        assert!(!known(&bare, &with_host("rebound.evil.example:8080")));
        let named = AuthConfig {
            known_host: Some(Some("imds.example.com".into())),
            ..config()
        };
        assert!(known(&named, &with_host("IMDS.example.com")));
        assert!(!known(&named, &with_host("imds.example.com.evil.example")));
        // HTTP/2's authority counts as the host; a request naming no host is refused.
        let h2: axum::http::Uri = "http://rebound.evil.example:8080/api/v1/health".parse().unwrap();
        assert!(!host_known(&bare, &h2, &HeaderMap::new()));
        assert!(!host_known(&bare, &path, &HeaderMap::new()));
    }

    #[test]
    fn origins_normalise() {
        assert_eq!(
            normalise_origin("HTTP://Example.COM/x").as_deref(),
            Some("http://example.com:80")
        );
        assert_eq!(
            normalise_origin("https://[::1]:8443/").as_deref(),
            Some("https://[::1]:8443")
        );
        assert_eq!(normalise_origin("https://a@b.example"), None);
        assert_eq!(normalise_origin("null"), None);
    }

    /// A throttle over a fresh store of its own.
    fn throttle() -> (LoginThrottle, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (LoginThrottle::new(Store::open(dir.path()).unwrap()), dir)
    }

    #[tokio::test]
    async fn a_pair_locks_for_longer_each_time_and_unlocks_when_the_lock_ends() {
        let (t, _dir) = throttle();
        for _ in 0..4 {
            t.failed("a", "10.0.0.1", 0).await.unwrap();
        }
        assert_eq!(
            t.gate("a", "10.0.0.1", 0).await.unwrap(),
            LoginGate::Proceed { delay_ms: 0 }
        );
        t.failed("a", "10.0.0.1", 0).await.unwrap();
        assert!(matches!(
            t.gate("a", "10.0.0.1", 0).await.unwrap(),
            LoginGate::Locked { wait_ms: 1000, .. }
        ));
        t.failed("a", "10.0.0.1", 1000).await.unwrap();
        assert!(matches!(
            t.gate("a", "10.0.0.1", 1000).await.unwrap(),
            LoginGate::Locked { wait_ms: 2000, .. }
        ));
        assert_eq!(
            t.gate("a", "10.0.0.1", 3000).await.unwrap(),
            LoginGate::Proceed { delay_ms: 0 }
        );
    }

    #[tokio::test]
    async fn another_address_is_slowed_never_locked_out() {
        let (t, _dir) = throttle();
        for n in 0..12 {
            t.failed("admin", &format!("10.0.0.{n}"), 0).await.unwrap();
        }
        // Twelve guessers: the user is slowed for everyone, but nobody elsewhere is refused.
        match t.gate("admin", "192.168.1.5", 0).await.unwrap() {
            LoginGate::Proceed { delay_ms } => assert!((250..=MAX_USER_DELAY_MS).contains(&delay_ms)),
            other => panic!("{other:?}"),
        }
        t.succeeded("admin", "192.168.1.5").await.unwrap();
        assert_eq!(
            t.gate("admin", "192.168.1.5", 0).await.unwrap(),
            LoginGate::Proceed { delay_ms: 0 }
        );
    }

    #[tokio::test]
    async fn a_locked_address_is_locked_for_every_user_and_aggregates_by_address() {
        let (t, _dir) = throttle();
        for n in 0..5 {
            t.failed(&format!("user{n}"), "10.0.0.9", 0).await.unwrap();
        }
        match t.gate("carol", "10.0.0.9", 0).await.unwrap() {
            LoginGate::Locked { audit_key, .. } => assert_eq!(audit_key, "addr:10.0.0.9"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_client_address_comes_from_a_trusted_proxy_only() {
        let cfg = AuthConfig {
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
            ..config()
        };
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 10.1.2.3"));
        let proxy = Some("127.0.0.1".parse().unwrap());
        let other = Some("10.9.9.9".parse().unwrap());
        assert_eq!(cfg.client_address(&h, proxy), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(cfg.client_address(&h, other), other);
    }

    #[test]
    fn an_identity_header_sent_twice_is_refused() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-user", HeaderValue::from_static("alice"));
        assert_eq!(single(&h, "x-forwarded-user").unwrap(), Some("alice"));
        h.append("x-forwarded-user", HeaderValue::from_static("admin"));
        assert!(single(&h, "x-forwarded-user").is_err());
        let cfg = config();
        let mut c = HeaderMap::new();
        c.insert(
            header::COOKIE,
            HeaderValue::from_static("imds_session=a; imds_session=b"),
        );
        assert!(session_secret(&cfg, &c).is_err());
    }
}
