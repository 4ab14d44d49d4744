//! `GET /metrics`: the console's health in Prometheus's text format (OpenMetrics), for the monitoring a
//! team already runs. Counters and histograms are kept as things happen (AWS calls, budget waits, HTTP
//! requests) and the fleet's compliance when an inventory is kept; the runs by status are read from
//! the store when scraped. A scrape never causes an AWS call, nor waits for one.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// An AWS call's labels: `outcome` is one of `ok`, `throttled`, `client_error`, `server_error`,
/// `no_response`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    pub service: String,
    pub operation: String,
    pub outcome: &'static str,
}

/// Which SSM budget a call waited for (`read`, `start`, `lookup`), and where.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    pub budget: String,
    pub region: String,
}

/// An API request's method, route template and status (closed sets: see [`observe`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// A status: of a refused request (401, 403, 429), or of runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

/// A sign-in's outcome: `ok`, `failed`, `throttled`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignInLabels {
    pub outcome: &'static str,
}

/// Where instances are and their posture.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FleetLabels {
    pub account: String,
    pub region: String,
    pub posture: &'static str,
}

/// Every metric the console exports.
pub struct Metrics {
    registry: Registry,
    /// AWS calls (each HTTP attempt, retries included, as AWS counts them) by service, operation and
    /// outcome: `ok`, `throttled`, `client_error`, `server_error`, `no_response`.
    pub aws_calls: Family<AwsCallLabels, Counter>,
    /// Seconds a call waited for its SSM budget, by budget (`read`, `start`, `lookup`).
    pub budget_wait: Family<BudgetLabels, Histogram>,
    /// Seconds since the watcher last finished a round.
    pub watcher_lag: Gauge<f64, AtomicU64>,
    /// HTTP requests by method, route group and status, with their duration.
    pub http: Family<HttpLabels, Histogram>,
    /// Requests refused (401, 403, 429) by status.
    pub refused: Family<StatusLabels, Counter>,
    /// Sign-ins by outcome (`ok`, `failed`, `throttled`).
    pub sign_ins: Family<SignInLabels, Counter>,
    /// Open live event streams.
    pub sse_clients: Gauge,
    /// Runs by status, read from the store at each scrape.
    pub runs: Family<StatusLabels, Gauge>,
    /// The fleet's instances by account, region and posture, from the cached inventory.
    pub fleet: Family<FleetLabels, Gauge>,
    /// 1 while this replica leads (runs the watcher, plans and deliveries), else 0.
    pub leader: Gauge,
}

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("imds_console");
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS calls by service, operation and outcome",
            aws_calls.clone(),
        );
        let budget_wait =
            Family::<BudgetLabels, Histogram>::new_with_constructor(seconds as fn() -> Histogram);
        registry.register(
            "budget_wait_seconds",
            "Time a call waited for its SSM budget",
            budget_wait.clone(),
        );
        let watcher_lag = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "watcher_lag_seconds",
            "Seconds since the watcher last finished a round",
            watcher_lag.clone(),
        );
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(seconds as fn() -> Histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests and their duration",
            http.clone(),
        );
        let refused = Family::<StatusLabels, Counter>::default();
        registry.register(
            "refused_requests",
            "Requests refused with 401, 403 or 429",
            refused.clone(),
        );
        let sign_ins = Family::<SignInLabels, Counter>::default();
        registry.register("sign_ins", "Password sign-ins by outcome", sign_ins.clone());
        let sse_clients = Gauge::default();
        registry.register("sse_clients", "Open live event streams", sse_clients.clone());
        let runs = Family::<StatusLabels, Gauge>::default();
        registry.register("runs", "Runs recorded, by status", runs.clone());
        let fleet = Family::<FleetLabels, Gauge>::default();
        registry.register(
            "fleet_instances",
            "Instances by account, region and posture",
            fleet.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads (runs the watcher, plans and deliveries)",
            leader.clone(),
        );
        Metrics {
            leader,
            registry,
            aws_calls,
            budget_wait,
            watcher_lag,
            http,
            refused,
            sign_ins,
            sse_clients,
            runs,
            fleet,
        }
    }
}

impl Metrics {
    /// The fleet's instances by account, region and posture, counted when an inventory is kept.
    pub fn count_fleet(&self, instances: &[shared::api::InstanceView]) {
        let mut counts: std::collections::BTreeMap<(&str, &str, &'static str), i64> = Default::default();
        for i in instances {
            *counts
                .entry((&i.account, &i.region, shared::fleet::Posture::of(i).as_str()))
                .or_default() += 1;
        }
        self.fleet.clear();
        for ((account, region, posture), n) in counts {
            self.fleet
                .get_or_create(&FleetLabels {
                    account: account.to_owned(),
                    region: region.to_owned(),
                    posture,
                })
                .set(n);
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Counts every AWS call attempt of the client it is added to.
#[derive(Debug)]
pub struct AwsCallCounter(pub Arc<Metrics>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for AwsCallCounter {
    fn name(&self) -> &'static str {
        "imds-console AWS call counter"
    }

    fn read_after_attempt(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let (service, operation) = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map_or(("unknown".to_owned(), "unknown".to_owned()), |m| {
                (m.service().to_ascii_lowercase(), m.name().to_owned())
            });
        let outcome = match context.response() {
            None => "no_response",
            Some(r) => {
                let status = r.status().as_u16();
                let body = r.body().bytes().unwrap_or_default();
                let throttled = status == 429
                    || (status >= 400
                        && [
                            &b"Throttl"[..],
                            b"RequestLimitExceeded",
                            b"TooManyRequests",
                            b"Rate exceeded",
                        ]
                        .iter()
                        .any(|w| body.windows(w.len()).any(|x| x == *w)));
                match status {
                    _ if throttled => "throttled",
                    200..=299 => "ok",
                    400..=499 => "client_error",
                    _ => "server_error",
                }
            }
        };
        self.0
            .aws_calls
            .get_or_create(&AwsCallLabels {
                service,
                operation,
                outcome,
            })
            .inc();
        Ok(())
    }
}

/// Who may read `/metrics`: addresses, a token, or nobody (the default: it answers 404 then).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub addresses: Vec<std::net::IpAddr>,
    token_hash: Option<[u8; 32]>,
}

impl Access {
    pub fn from_args(args: &crate::config::ServeArgs) -> Result<Access, String> {
        if let Some(t) = &args.metrics_token {
            if t.len() < 16 {
                return Err("--metrics-token: at least 16 characters".into());
            }
        }
        Ok(Access {
            addresses: args.metrics_allow.clone(),
            token_hash: args.metrics_token.as_deref().map(digest),
        })
    }

    pub fn is_open(&self) -> bool {
        !self.addresses.is_empty() || self.token_hash.is_some()
    }

    /// Whether a scrape from `client` with `bearer` may read the metrics.
    pub fn allows(&self, client: Option<std::net::IpAddr>, bearer: Option<&str>) -> bool {
        let by_address = client.is_some_and(|c| self.addresses.contains(&c));
        // Compared as digests, so the comparison takes the same time however much of it matches.
        let by_token = matches!((&self.token_hash, bearer), (Some(h), Some(b)) if *h == digest(b));
        by_address || by_token
    }
}

fn digest(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}

/// Times each API request and counts refusals, by method, route and status. The labels come from
/// closed sets, so no request can add label values: the route is the matched route's template
/// (`/executions/{id}`) when it is in the policy table, else `other`; the method one of the HTTP
/// methods the API could have, else `OTHER`.
pub async fn observe(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (method, route) = labels(&req);
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state
        .metrics
        .http
        .get_or_create(&HttpLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status: status.to_string(),
        })
        .observe(started.elapsed().as_secs_f64());
    if matches!(status, 401 | 403 | 429) {
        state
            .metrics
            .refused
            .get_or_create(&StatusLabels {
                status: status.to_string(),
            })
            .inc();
    }
    resp
}

/// A request's method and route labels, from closed sets.
fn labels(req: &axum::extract::Request) -> (&'static str, &'static str) {
    use axum::http::Method;
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().strip_prefix("/api/v1").unwrap_or(m.as_str()))
        .and_then(crate::auth::policy::route_template)
        .unwrap_or("other");
    (method, route)
}

/// `GET /metrics`, for the addresses and the token the console was given (`--metrics-allow`,
/// `--metrics-token`); 404 when neither was, 403 for anyone else.
pub async fn serve(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    if !state.metrics_access.is_open() {
        return (
            StatusCode::NOT_FOUND,
            "metrics are off: start the console with --metrics-allow ADDRESS or --metrics-token TOKEN",
        )
            .into_response();
    }
    let client = state
        .auth
        .client_address(req.headers(), crate::auth::peer(req.extensions()));
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !state.metrics_access.allows(client, bearer) {
        return (
            StatusCode::FORBIDDEN,
            "not an address or token allowed to read the metrics",
        )
            .into_response();
    }
    refresh_gauges(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The values read when scraped: runs by status from the store and the watcher's lag (the fleet's
/// counts are set when an inventory is kept, never read from AWS for a scrape).
async fn refresh_gauges(state: &crate::state::AppState) {
    let m = &state.metrics;
    m.leader.set(i64::from(state.leadership.is_leader()));
    m.runs.clear();
    match state.store.runs_by_status().await {
        Ok(counts) => {
            for (status, n) in counts {
                m.runs.get_or_create(&StatusLabels { status }).set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count the runs"),
    }
    if let Some(at) = *state
        .watcher_round
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        m.watcher_lag.set(at.elapsed().as_secs_f64());
    }
}
