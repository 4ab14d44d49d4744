//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default: info for our crates, warn for the rest),
//! as text or, with `--log-format json` (`IMDS_CONSOLE_LOG_FORMAT=json`), one JSON object per line for
//! a log pipeline. Every request gets an ID (the caller's `X-Request-Id` when it is a plain token, else
//! a new one): its log lines carry it in their span, its response in `X-Request-Id`, and an error
//! body in `error.request_id`, so a person can quote it and an operator find the lines.

use axum::http::HeaderValue;
use tracing::Instrument;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,backend=info,imds_console=info,sandbox=info,tower_http=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

tokio::task_local! {
    /// The ID of the request being served on this task.
    static REQUEST_ID: String;
}

/// The ID of the request being served, for error bodies.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

const HEADER: &str = "x-request-id";

/// Gives each request its ID (see the module comment) and serves it inside a span that carries it.
pub async fn with_request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let span =
        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req).instrument(span)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}
