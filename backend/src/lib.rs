//! imds-console's server: the `/api/v1` JSON API over SSM Automation and EC2, the watcher that follows
//! runs, the audit store, and the host of the browser app.
//!
//! `app(state)` builds the router and `run(listener, state)` serves it, so tests bind port 0 and talk
//! HTTP to the real thing; `startup` builds the state from the command line.

pub mod admin;
pub mod approvals;
pub mod auth;
pub mod aws;
pub use store::clock;
pub mod config;
pub mod config_file;
pub mod crash;
pub mod doctor;
pub mod embedded;
pub mod error;
pub mod inventory;
pub mod leader;
pub mod metrics;
pub mod org;
pub mod outbound;
pub mod plans;
pub mod relay;
pub mod routes;
pub mod runs;
pub mod sources;
pub mod startup;
pub mod state;
pub use store;
pub mod telemetry;
pub mod tls;
pub mod usage;
pub mod watcher;
pub mod webhooks;

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::Router;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

pub use state::AppState;

/// The largest request body accepted (a start request is a few hundred bytes).
const BODY_LIMIT: usize = 64 * 1024;

/// Our WASM runs without inline script: `wasm-unsafe-eval` allows compiling the module, nothing else.
const CSP: &str =
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// The whole HTTP surface: `/api/v1/*` and the frontend.
pub fn app(state: AppState) -> Router {
    let static_dir = state.static_dir.clone();
    let state_for_host = state.clone();
    let https = state.auth.secure_cookies;
    let metrics = Router::new()
        .route("/metrics", axum::routing::get(metrics::serve))
        .with_state(state.clone());
    let api = routes::api()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // Outside authentication, so that its refusals are counted too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .with_state(state);
    let mut router = Router::new().nest("/api/v1", api).merge(metrics);
    router = match &static_dir {
        Some(dir) if dir.join("index.html").exists() => {
            // Client-side routes (/executions/..., /fleet) all load index.html; a missing file (a name
            // with an extension, such as /favicon.ico) is a 404, not the page.
            let index = dir.join("index.html");
            let pages = tower::service_fn(move |req: axum::extract::Request| {
                let index = index.clone();
                async move {
                    if names_a_file(req.uri().path()) {
                        return Ok::<_, std::convert::Infallible>(
                            (axum::http::StatusCode::NOT_FOUND, "no such file").into_response(),
                        );
                    }
                    let served = ServeFile::new(index).try_call(req).await;
                    Ok(served.map_or_else(
                        |_| axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                        IntoResponse::into_response,
                    ))
                }
            });
            // The build's brotli and gzip files (name.br, name.gz) are sent as they are when the browser
            // takes them; the compression layer leaves an encoded answer alone.
            let files = ServeDir::new(dir)
                .precompressed_br()
                .precompressed_gzip()
                .fallback(pages);
            router.fallback_service(files).layer(
                axum::middleware::map_response(cache_headers),
            )
        }
        _ if embedded::present() => router
            .fallback(|uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
                embedded::answer(embedded::FILES, &uri, &headers)
            })
            .layer(axum::middleware::map_response(cache_headers)),
        _ => router.fallback(|| async {
            axum::response::Html(
                "<!doctype html><title>imds-console</title><p>The frontend is not built. Run <code>./x.sh run</code>, \
                 which builds it, or pass --static-dir. The API is at <a href=\"/api/v1/health\">/api/v1</a>.</p>",
            )
        }),
    };
    // Outermost: a request by an unknown Host name reaches nothing.
    router = router.layer(axum::middleware::from_fn_with_state(
        state_for_host,
        auth::check_host,
    ));
    if https {
        // Served over TLS (here or by the proxy in front): browsers must never fall back to plain HTTP.
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    router
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(axum::middleware::map_response(security_headers))
        // gzip for JSON (a 10,000-instance fleet is 3.3 MB raw, 0.25 MB gzip) at its fastest level:
        // at the default level deflate was a fifth of a history page's cost, for a few hundred bytes
        // less on the wire. Static assets are compressed once, at build time, at the highest levels
        // (served as they are). The default predicate leaves event streams uncompressed so they flush
        // at once.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::compression::CompressionLevel::Fastest),
        )
        .layer(tower_http::trace::TraceLayer::new_for_http())
        // Outermost, so that every line a request logs (the trace layer's included) carries its ID.
        .layer(axum::middleware::from_fn(telemetry::with_request_id))
}

/// The browser's protections, on every answer. A script, module or stylesheet kept as immutable
/// (see [`cache_headers`]) is never a document, so the headers that only documents heed (the
/// content security policy, framing) and a date nobody revalidates against are left off them: they
/// were a third of each such answer's headers, and a first page load fetches eight of them.
async fn security_headers(mut res: axum::response::Response) -> axum::response::Response {
    let headers = res.headers_mut();
    let subresource = headers
        .get(header::CACHE_CONTROL)
        .is_some_and(|v| v.as_bytes().ends_with(b"immutable"))
        && headers.get(header::CONTENT_TYPE).is_some_and(|v| {
            let v = v.as_bytes();
            v.starts_with(b"text/javascript")
                || v.starts_with(b"application/javascript")
                || v.starts_with(b"application/wasm")
                || v.starts_with(b"application/octet-stream")
                || v.starts_with(b"text/css")
        });
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if subresource {
        headers.remove(header::LAST_MODIFIED);
    } else {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    res
}

/// Assets whose names carry a hash of their content never change: browsers keep them a year. They
/// are `name-<hash>.ext` (main.js, the stylesheet) and everything under `pkg-<hash>/` (the split WASM
/// bundle), see x.sh. Everything else the frontend serves (index.html, the client-side routes) is
/// revalidated on each load, so an upgrade reaches every browser at once.
async fn cache_headers(uri: axum::http::Uri, mut res: axum::response::Response) -> axum::response::Response {
    if uri.path().starts_with("/api/") || res.headers().contains_key(header::CACHE_CONTROL) {
        return res;
    }
    let value = if is_fingerprinted(uri.path()) && res.status().is_success() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    res
}

/// Whether a path names a file (its last segment has a dot, as `/favicon.ico`) rather than a
/// client-side route (`/fleet`, `/executions/…`): a missing file is a 404, a route is index.html.
pub(crate) fn names_a_file(path: &str) -> bool {
    path.rsplit('/').next().unwrap_or_default().contains('.')
}

/// `/name-<16 hex digits>.ext` or `/pkg-<16 hex digits>/…`, as x.sh names the built assets.
fn is_fingerprinted(path: &str) -> bool {
    let hashed = |stem: &str| {
        stem.rsplit_once('-')
            .is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some(dir), Some(file), None) => dir.starts_with("pkg-") && hashed(dir) && !file.is_empty(),
        (Some(file), None, None) => file.rsplit_once('.').is_some_and(|(stem, _)| hashed(stem)),
        _ => false,
    }
}

/// Serves the app on `listener`, with the leader's work beside it, until the process ends.
pub async fn run(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    start_background_work(&state).await;
    // Peer addresses decide whether a sign-on proxy's headers are trusted, and key sign-in throttling.
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

/// Starts the background work that only the leader does ([`leader`]), and follows the lead: a
/// replica that leads at start-up settles what was left before it serves (so a restarted console
/// answers with its history settled); one that takes the lead later does so then.
pub async fn start_background_work(state: &AppState) {
    let mut leadership = state.leadership.clone();
    let mut tasks = if leadership.is_leader() {
        Some(take_the_lead(state).await)
    } else {
        None
    };
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            if tasks.is_none() {
                leadership.until_leader().await;
                tasks = Some(take_the_lead(&state).await);
            }
            leadership.until_lost().await;
            // Stopped like a crash, which every one of them survives: the next leader resumes.
            for task in tasks.take().into_iter().flatten() {
                task.abort();
            }
        }
    });
}

/// The leader's work: settle what earlier leaders and dead replicas left, then watch runs, drive
/// plans and deliver webhooks until the lead is lost.
async fn take_the_lead(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    runs::reconcile_on_taking_the_lead(state).await;
    sources::resume_unfinished(state).await;
    let mut tasks = vec![
        tokio::spawn(watcher::run(state.clone())),
        tokio::spawn(plans::drive(state.clone())),
        tokio::spawn(webhooks::deliver(state.clone())),
    ];
    if state.store.is_postgres() {
        tasks.push(tokio::spawn(inventory::serve_followers(state.clone())));
    }
    tasks
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod fingerprint_tests {
    use super::is_fingerprinted;

    #[test]
    fn hashed_names_and_the_hashed_bundle_directory_are_fingerprinted() {
        assert!(is_fingerprinted("/main-0123456789abcdef.js"));
        assert!(is_fingerprinted("/pkg-0123456789abcdef/chunk_12.wasm"));
        assert!(is_fingerprinted("/pkg-0123456789abcdef/__wasm_split.js"));
        assert!(!is_fingerprinted("/index.html"));
        assert!(!is_fingerprinted("/main-0123.js"));
        assert!(!is_fingerprinted("/pkg-0123456789abcdef/"));
        assert!(!is_fingerprinted("/pkg-nothexnothexnoth/frontend.js"));
        assert!(!is_fingerprinted("/fleet-0123456789abcdef/x/y"));
        assert!(!is_fingerprinted("/fleet"));
    }
}
