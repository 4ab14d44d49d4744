//! The only code that touches AWS SDK types: building the clients and turning SDK replies and errors
//! into our own types. Everything above this module speaks `shared` and domain types.

pub mod cloudwatch;
pub mod ec2;
pub mod launch;
pub mod organizations;
pub mod probe;
pub mod ssm;
pub mod sts;

use crate::metrics::{AwsCallCounter, Metrics};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_smithy_types::date_time::Format;
use axum::http::StatusCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::AppError;

/// The clients for one region. Cloning is cheap (they share their connection pool).
#[derive(Clone, Debug)]
pub struct RegionClients {
    pub region: String,
    pub ssm: aws_sdk_ssm::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub sts: aws_sdk_sts::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// IAM is global; only `doctor` calls it (the policy simulator).
    pub iam: aws_sdk_iam::Client,
    /// Organizations is global; only the hub's clients list accounts with it.
    pub organizations: aws_sdk_organizations::Client,
    /// Auto Scaling groups: where replaced instances come from.
    pub autoscaling: aws_sdk_autoscaling::Client,
}

/// Where the clients point.
#[derive(Clone, Debug)]
pub enum Target {
    /// The sandbox at this URL, with throwaway static credentials.
    Sandbox(String),
    /// Real AWS, with the standard credential chain (and AWS_ENDPOINT_URL when set).
    Aws,
}

/// How long an AWS call may take: one hung call must not stall the single watcher loop.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    /// Waiting for the first byte of a reply.
    pub read: Duration,
    /// One attempt, and the whole call with its retries.
    pub attempt: Duration,
    pub operation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(20),
            attempt: Duration::from_secs(30),
            operation: Duration::from_secs(60),
        }
    }
}

/// Our HTTPS client: rustls with ring (no C build), honouring `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`
/// and `NO_PROXY` as the SDK's default client and the AWS CLI do.
pub fn http_client() -> aws_sdk_ssm::config::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut conn = aws_smithy_http_client::ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::Ring));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

/// The loader every client and lookup starts from: our HTTP client and timeouts, and (for real AWS)
/// the standard chains for credentials (environment, profiles with assume-role chains,
/// `credential_process`, IAM Identity Center, web identity, container and instance roles) and region
/// (environment, profile, instance metadata).
fn loader(timeouts: Timeouts) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .read_timeout(timeouts.read)
                .operation_attempt_timeout(timeouts.attempt)
                .operation_timeout(timeouts.operation)
                .build(),
        )
}

/// The hub's configuration for one region: the console's own credentials.
async fn hub_config(target: &Target, region: &str, timeouts: Timeouts) -> aws_config::SdkConfig {
    let mut loader = loader(timeouts).region(Region::new(region.to_owned()));
    if let Target::Sandbox(url) = target {
        loader = loader.endpoint_url(url.clone()).credentials_provider(
            aws_credential_types::Credentials::from_keys("AKIDSANDBOX", "sandbox-secret", None),
        );
    }
    loader.load().await
}

/// Every client of one region, each counting its calls in `metrics`.
fn region_clients(region: &str, conf: &aws_config::SdkConfig, metrics: &Arc<Metrics>) -> RegionClients {
    let counter = || AwsCallCounter(metrics.clone());
    RegionClients {
        region: region.to_owned(),
        ssm: aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(conf)
                .interceptor(counter())
                .build(),
        ),
        ec2: aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(conf)
                .interceptor(counter())
                .build(),
        ),
        sts: aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(conf)
                .interceptor(counter())
                .build(),
        ),
        cloudwatch: aws_sdk_cloudwatch::Client::from_conf(
            aws_sdk_cloudwatch::config::Builder::from(conf)
                .interceptor(counter())
                .build(),
        ),
        iam: aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(conf)
                .interceptor(counter())
                .build(),
        ),
        organizations: aws_sdk_organizations::Client::from_conf(
            aws_sdk_organizations::config::Builder::from(conf)
                .interceptor(counter())
                .build(),
        ),
        autoscaling: aws_sdk_autoscaling::Client::from_conf(
            aws_sdk_autoscaling::config::Builder::from(conf)
                .interceptor(counter())
                .build(),
        ),
    }
}

/// Builds one set of clients per region.
pub async fn clients(
    target: &Target,
    regions: &[String],
    timeouts: Timeouts,
    metrics: &Arc<Metrics>,
) -> BTreeMap<String, RegionClients> {
    let mut out = BTreeMap::new();
    for region in regions {
        let conf = hub_config(target, region, timeouts).await;
        out.insert(region.clone(), region_clients(region, &conf, metrics));
    }
    out
}

/// Clients that act in another account through `role_arn`, assumed with the console's own
/// credentials (STS AssumeRole, refreshed before they expire). Nothing is called until a client is
/// used, so an account whose role is missing fails at its first call, with AWS's reason.
pub async fn assumed_clients(
    target: &Target,
    regions: &[String],
    timeouts: Timeouts,
    role_arn: &str,
    metrics: &Arc<Metrics>,
) -> BTreeMap<String, RegionClients> {
    let mut out = BTreeMap::new();
    // One session for every Region, assumed through the STS of the console's first Region whose STS
    // answers: a session from a Regional STS endpoint is valid in every Region, and a Region's STS may
    // be off (not activated, an opt-in Region the hub has not enabled), which must not make the
    // account unreachable.
    let mut through = Vec::new();
    for region in regions {
        let sts_home = hub_config(target, region, timeouts).await;
        through.push(
            aws_config::sts::AssumeRoleProvider::builder(role_arn)
                .session_name("imds-console")
                .configure(&sts_home)
                .build()
                .await,
        );
    }
    let shared =
        aws_credential_types::provider::SharedCredentialsProvider::new(AssumeThroughFirstAnswering(through));
    // One cache too: a provider keeps its cache partition across clones, so every Region's clients
    // use the one session (one AssumeRole an hour per account, not one per Region).
    let cache = aws_config::identity::IdentityCache::lazy().build();
    for region in regions {
        let hub = hub_config(target, region, timeouts).await;
        let conf = hub
            .into_builder()
            .credentials_provider(shared.clone())
            .identity_cache(cache.clone())
            .build();
        out.insert(region.clone(), region_clients(region, &conf, metrics));
    }
    out
}

/// Assumes a role through the STS of the first Region that answers: a Region whose STS is off
/// (`RegionDisabledException`) passes to the next; any other answer (a refusal, throttling) is the
/// answer, so a missing role costs one AssumeRole, not one per Region.
#[derive(Debug)]
struct AssumeThroughFirstAnswering(Vec<aws_config::sts::AssumeRoleProvider>);

impl aws_credential_types::provider::ProvideCredentials for AssumeThroughFirstAnswering {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let mut first_error = None;
            for provider in &self.0 {
                match provider.provide_credentials().await {
                    Ok(credentials) => return Ok(credentials),
                    Err(e) if sts_off_there(&e) => {
                        first_error.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(first_error.unwrap_or_else(|| {
                aws_credential_types::provider::error::CredentialsError::not_loaded(
                    "no Region to assume the role through",
                )
            }))
        })
    }
}

/// Whether an error, or one under it, is STS saying it is off in that Region.
pub fn sts_off_there(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let text = format!("{c:?}");
        if text.contains("RegionDisabledException") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The region the SDK would use by default (AWS_REGION, profile, or instance metadata on EC2), for
/// --aws without --region.
pub async fn default_region(timeouts: Timeouts) -> Option<String> {
    let conf = loader(timeouts).load().await;
    conf.region().map(|r| r.to_string())
}

/// What happened on the wire, which alone decides whether a call may be sent again: never the HTTP
/// status the console answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsFault {
    /// AWS said "too many" (a throttling code, whatever its HTTP status: EC2 answers 503): nothing
    /// was done; the same call later may pass.
    Throttled,
    /// SSM's concurrent-automation quota and its queue are full: nothing was started.
    QuotaFull,
    /// AWS refused the request (a 4xx: parameters, permissions, expired or unknown credentials, an
    /// opt-in Region): nothing was done, and sending it again gets the same answer.
    Refused,
    /// AWS answered with its own fault (a 5xx, or a reply that does not parse): the work may have
    /// been done.
    ServerFault,
    /// No answer came (a timeout, a connection that broke): the request may have arrived.
    Unanswered,
    /// The request never left: no credentials could be had (an expired sign-in, a failing credential
    /// process, a role AWS refused to let us assume), or it could not be built or signed.
    NotSent,
    /// The request never left because its credentials could not be had for a reason that may pass:
    /// the credential service (STS assuming the member role) throttled, failed or did not answer.
    CredentialsDelayed,
}

/// Whether `e`, or anything it wraps, is a credential provider's failure.
fn is_credentials_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<aws_credential_types::provider::error::CredentialsError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether a credential provider's failure in `e` may pass: it timed out, or STS (assuming the
/// member role) throttled, failed or did not answer. A refusal (AccessDenied, an expired token) or
/// missing credentials do not pass by waiting.
fn credentials_may_come(e: &(dyn std::error::Error + 'static)) -> bool {
    use aws_credential_types::provider::error::CredentialsError;
    type AssumeRoleFailure = SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError>;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(CredentialsError::ProviderTimedOut(_)) = c.downcast_ref::<CredentialsError>() {
            return true;
        }
        if let Some(sts) = c.downcast_ref::<AssumeRoleFailure>() {
            return !matches!(fault_of(sts), AwsFault::Refused | AwsFault::NotSent);
        }
        cause = c.source();
    }
    false
}

/// The SDK's error for any operation, with the HTTP response it came with (if any).
type SdkError<E> =
    aws_sdk_ssm::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>;

/// The fault of an SDK error, from what happened on the wire.
pub fn fault_of<E>(err: &SdkError<E>) -> AwsFault
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let throttled =
        |c: &str| c.contains("Throttl") || c == "RequestLimitExceeded" || c == "TooManyRequestsException";
    match err {
        SdkError::ServiceError(e) => match err.code() {
            Some(c) if throttled(c) => AwsFault::Throttled,
            Some("AutomationExecutionLimitExceededException") => AwsFault::QuotaFull,
            _ if e.raw().status().is_client_error() => AwsFault::Refused,
            _ => AwsFault::ServerFault,
        },
        SdkError::ResponseError(_) => AwsFault::ServerFault,
        SdkError::TimeoutError(_) => AwsFault::Unanswered,
        SdkError::DispatchFailure(e) if e.as_connector_error().is_some_and(|c| credentials_may_come(c)) => {
            AwsFault::CredentialsDelayed
        }
        SdkError::DispatchFailure(e)
            if e.is_user() || e.as_connector_error().is_some_and(|c| is_credentials_failure(c)) =>
        {
            AwsFault::NotSent
        }
        SdkError::DispatchFailure(_) => AwsFault::Unanswered,
        SdkError::ConstructionFailure(_) => AwsFault::NotSent,
        _ => AwsFault::ServerFault,
    }
}

/// Turns an SDK error into ours, carrying AWS's code and message through, with what happened on the
/// wire ([`AwsFault`]) and the status the console answers with.
pub fn sdk_error<E>(action: &str, err: &SdkError<E>) -> AppError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let fault = fault_of(err);
    match err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("Unknown").to_owned();
            let message = err.message().unwrap_or("AWS gave no message").to_owned();
            let status = match code.as_str() {
                c if c.contains("AccessDenied") || c == "UnauthorizedOperation" || c == "AuthFailure" => {
                    StatusCode::FORBIDDEN
                }
                c if c.contains("NotFound") => StatusCode::NOT_FOUND,
                _ if matches!(fault, AwsFault::Throttled | AwsFault::QuotaFull) => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                "IdempotentParameterMismatch" | "InvalidAutomationStatusUpdateException" => {
                    StatusCode::CONFLICT
                }
                c if c.starts_with("Invalid") || c.contains("Validation") || c.contains("Parameter") => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::BAD_GATEWAY,
            };
            let message = if status == StatusCode::FORBIDDEN && !message.contains(action) {
                format!("{message} (the console needs {action})")
            } else {
                message
            };
            AppError::Aws {
                status,
                code,
                message,
                fault,
            }
        }
        SdkError::DispatchFailure(e) if matches!(fault, AwsFault::NotSent | AwsFault::CredentialsDelayed) => {
            AppError::Aws {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: if e.as_connector_error().is_some_and(|c| is_credentials_failure(c)) {
                    "CredentialsUnavailable".into()
                } else {
                    "NotSent".into()
                },
                message: format!(
                    "{action} was not sent: {}",
                    e.as_connector_error()
                        .map_or_else(|| format!("{e:?}"), |c| store::db::with_causes(c))
                ),
                fault,
            }
        }
        SdkError::TimeoutError(_) => AppError::AwsUnavailable(format!("{action} timed out")),
        SdkError::DispatchFailure(e) => AppError::AwsUnavailable(format!("{action}: {e:?}")),
        _ => AppError::Aws {
            status: StatusCode::BAD_GATEWAY,
            code: err.code().unwrap_or("Unknown").to_owned(),
            message: format!(
                "{action}: {}",
                err.message().map_or_else(|| format!("{err}"), str::to_owned)
            ),
            fault,
        },
    }
}

/// RFC 3339 text of an SDK timestamp, always with milliseconds (see `fixed_millis`).
pub fn rfc3339(t: Option<&aws_smithy_types::DateTime>) -> Option<String> {
    t.and_then(|t| t.fmt(Format::DateTime).ok())
        .map(|s| fixed_millis(&s))
}

/// `…:05Z` and `…:05.5Z` become `…:05.000Z` and `…:05.500Z`: one width, so that comparing the text
/// compares the times (the store filters and sorts on it).
pub fn fixed_millis(rfc3339: &str) -> String {
    let Some(body) = rfc3339.strip_suffix('Z') else {
        return rfc3339.to_owned();
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    let mut millis: String = frac.chars().take(3).collect();
    while millis.len() < 3 {
        millis.push('0');
    }
    format!("{whole}.{millis}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_get_a_fixed_width() {
        assert_eq!(
            super::fixed_millis("2026-11-26T09:00:00Z"),
            "2026-11-26T09:00:00.000Z"
        );
        assert_eq!(
            super::fixed_millis("2026-11-26T09:00:00.5Z"),
            "2026-11-26T09:00:00.500Z"
        );
        assert_eq!(
            super::fixed_millis("2026-11-26T09:00:00.123456Z"),
            "2026-11-26T09:00:00.123Z"
        );
        assert!(super::fixed_millis("2026-11-26T09:00:00Z") < super::fixed_millis("2026-11-26T09:00:00.5Z"));
    }
}
