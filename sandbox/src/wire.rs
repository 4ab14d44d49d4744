//! The HTTP front of the sandbox: tells the four protocols apart, applies injected faults, counts
//! every call, and writes each protocol's own error shape.
//!
//! Requests are recognised the way AWS's endpoints would see them: SSM by `X-Amz-Target: AmazonSSM.*`,
//! CloudWatch by its rpcv2Cbor path, EC2, STS, IAM and Auto Scaling by the form's `Version`. The region comes from the
//! SigV4 credential scope; signatures are not checked.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::faults::{Faults, Injected};
use crate::fleet::Scope;
use crate::{lock, timefmt, Sandbox};

/// An AWS error: HTTP status, error code and message, written in the protocol of the service.
#[derive(Debug)]
pub(crate) struct AwsError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub(crate) fn client(code: &str, message: impl Into<String>) -> AwsError {
        AwsError {
            status: StatusCode::BAD_REQUEST,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Ssm,
    Ec2,
    CloudWatch,
    /// CloudWatch in awsJson1_0, as botocore (boto3, the AWS CLI) sends it.
    CloudWatchJson,
    Sts,
    Iam,
    /// AWS Organizations (awsJson1_1).
    Organizations,
    /// Auto Scaling (awsQuery).
    AutoScaling,
}

impl Service {
    fn prefix(self) -> &'static str {
        match self {
            Service::Ssm => "ssm",
            Service::Ec2 => "ec2",
            Service::CloudWatch | Service::CloudWatchJson => "cloudwatch",
            Service::Sts => "sts",
            Service::Iam => "iam",
            Service::Organizations => "organizations",
            Service::AutoScaling => "autoscaling",
        }
    }
}

pub(crate) fn router(sb: Sandbox) -> Router {
    Router::new()
        .route("/_sandbox/faults", get(get_faults).put(put_faults))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/calls", get(calls))
        .fallback(dispatch)
        .layer(axum::middleware::from_fn(refuse_web_pages))
        .with_state(sb)
}

/// SDKs and CLIs never send `Origin`; browsers always do on cross-origin requests. Refusing it keeps a
/// web page open in the same browser from changing the demo fleet or its faults through a
/// form-encoded EC2 call or `PUT /_sandbox/faults`.
async fn refuse_web_pages(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.headers().contains_key(axum::http::header::ORIGIN) {
        return (
            StatusCode::FORBIDDEN,
            "the sandbox answers AWS SDKs and CLIs, not web pages (a request with an Origin header)",
        )
            .into_response();
    }
    next.run(req).await
}

async fn get_faults(State(sb): State<Sandbox>) -> Json<Faults> {
    Json(sb.faults())
}

async fn put_faults(State(sb): State<Sandbox>, Json(faults): Json<Faults>) -> StatusCode {
    sb.set_faults(faults);
    StatusCode::NO_CONTENT
}

#[derive(serde::Deserialize)]
struct StatsQuery {
    #[serde(default)]
    since_ms: u64,
}

/// Calls since `since_ms` per operation, with each operation's and each service's busiest second, so
/// tests and benchmarks can check a budget where AWS would count it.
async fn calls(
    State(sb): State<Sandbox>,
    axum::extract::Query(q): axum::extract::Query<StatsQuery>,
) -> Json<serde_json::Value> {
    let ops: Vec<serde_json::Value> = sb
        .calls_since(q.since_ms)
        .into_iter()
        .map(|c| {
            let peak = sb.peak_per_second(&c.operation, q.since_ms);
            json!({"operation": c.operation, "count": c.count, "peak_per_second": peak})
        })
        .collect();
    let services: serde_json::Map<String, serde_json::Value> = [
        "ssm",
        "ec2",
        "cloudwatch",
        "sts",
        "iam",
        "organizations",
        "autoscaling",
    ]
    .iter()
    .map(|svc| {
        let peak = sb.peak_per_second(&format!("{svc}:*"), q.since_ms);
        ((*svc).to_owned(), json!({"peak_per_second": peak}))
    })
    .collect();
    Json(json!({ "operations": ops, "services": services }))
}

async fn stats(
    State(sb): State<Sandbox>,
    axum::extract::Query(q): axum::extract::Query<StatsQuery>,
) -> Json<serde_json::Value> {
    Json(json!({ "calls": sb.calls_since(q.since_ms) }))
}

/// Region and service from `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request`.
/// The account a caller acts in, told by its access key as AWS does: keys the sandbox's STS AssumeRole
/// issued (`ASIA` + the account + a suffix) act in that account; any other key is the management
/// account's.
fn caller_account(headers: &HeaderMap) -> String {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or_default();
    key.strip_prefix("ASIA")
        .and_then(|rest| rest.get(..12))
        .filter(|acct| acct.bytes().all(|b| b.is_ascii_digit()))
        .map_or_else(|| crate::ACCOUNT_ID.to_owned(), str::to_owned)
}

fn credential_scope(headers: &HeaderMap) -> Option<(String, String)> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    let mut parts = cred.split('/');
    let (_key, _date, region, service) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some((region.to_owned(), service.to_owned()))
}

pub(crate) fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn dispatch(State(sb): State<Sandbox>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let scope = credential_scope(&headers);
    let region = scope
        .as_ref()
        .map_or_else(|| sb.inner.config.regions[0].clone(), |s| s.0.clone());
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let path = uri.path().to_owned();

    let account = caller_account(&headers);
    let security_token = headers.get("x-amz-security-token").and_then(|v| v.to_str().ok());
    let caller = crate::sts::caller_arn(security_token, &account, &sb.inner.config.partition);
    // A temporary key (`ASIA`) is valid only with the session token issued with it, as in AWS.
    let temporary_without_token = security_token.is_none()
        && headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("Credential=ASIA"));
    let (service, op, params) = if let Some(op) = target.strip_prefix("AmazonSSM.") {
        (Service::Ssm, op.to_owned(), Vec::new())
    } else if let Some(op) = target.strip_prefix("AWSOrganizationsV20161128.") {
        (Service::Organizations, op.to_owned(), Vec::new())
    } else if let Some(op) = path.strip_prefix("/service/GraniteServiceVersion20100801/operation/") {
        (Service::CloudWatch, op.to_owned(), Vec::new())
    } else if let Some(op) = target.strip_prefix("GraniteServiceVersion20100801.") {
        (Service::CloudWatchJson, op.to_owned(), Vec::new())
    } else {
        let params = form(&body);
        let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone());
        let action = get("Action").unwrap_or_default();
        let service = match (get("Version").as_deref(), scope.as_ref().map(|s| s.1.as_str())) {
            (Some("2011-06-15"), _) | (_, Some("sts")) => Service::Sts,
            (Some("2016-11-15"), _) | (_, Some("ec2")) => Service::Ec2,
            (Some("2010-05-08"), _) | (_, Some("iam")) => Service::Iam,
            (Some("2011-01-01"), _) | (_, Some("autoscaling")) => Service::AutoScaling,
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    "The sandbox does not know this request: send SSM, EC2, CloudWatch, STS, IAM, Organizations or Auto Scaling calls.",
                )
                    .into_response()
            }
        };
        (service, action, params)
    };
    let op_key = format!("{}:{op}", service.prefix());
    let now = timefmt::now_ms();
    lock(&sb.inner.calls).record(now, op_key.clone());

    let at = Scope {
        account: &account,
        region: &region,
    };
    let faults = sb.faults();
    let roll = sb.world().roll();
    let (injected, latency_ms) = faults.decide(&op_key, roll);
    if latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency_ms)).await;
    }
    // A deleted role takes its policies with it: the sessions it issued are refused from then on.
    let caller_role = caller
        .split_once(":assumed-role/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_default();
    let role_gone = service != Service::Sts
        && account != crate::ACCOUNT_ID
        && (faults.missing_roles.contains(&account)
            || faults.missing_roles.contains(&format!("{account}/{caller_role}")));
    let region_denied = service != Service::Sts
        && (faults.denied_regions.contains(&region)
            || faults.denied_regions.contains(&format!("{account}/{region}")));
    // EC2 counts every request against its action's bucket, whatever becomes of it after.
    let over_ec2_budget = service == Service::Ec2
        && !lock(&sb.inner.ec2_buckets).take(
            &faults.ec2_request_budget,
            &account,
            &region,
            &op,
            std::time::Instant::now(),
        );
    let sts_disabled = service == Service::Sts && faults.sts_disabled_regions.contains(&region);
    // A Region the sandbox does not serve is one the account has not enabled, or one of another
    // partition: AWS refuses the credentials there. IAM and Organizations are global (signed for
    // their partition's one Region), so they answer wherever the SDK signs them.
    let region_not_enabled = !matches!(service, Service::Iam | Service::Organizations)
        && !sb.inner.config.regions.contains(&region);
    let result = match injected {
        _ if region_not_enabled => Err(region_not_enabled_error(service)),
        _ if temporary_without_token => Err(invalid_token_error(service)),
        _ if sts_disabled => Err(AwsError::client(
            "RegionDisabledException",
            format!(
                "STS is not activated in this region for account:{account}. Your account administrator can activate STS in this region using the IAM Console."
            ),
        )),
        _ if over_ec2_budget => Err(throttle_error(service)),
        _ if role_gone => Err(denied_error(service, &caller, &op_key, &region)),
        _ if region_denied => Err(scp_denied_error(service, &caller, &op_key, &region)),
        Injected::Throttle => Err(throttle_error(service)),
        Injected::Error500 => Err(internal_error(service)),
        Injected::ExpiredToken => Err(AwsError::client(
            "ExpiredTokenException",
            "The security token included in the request is expired",
        )),
        Injected::Denied if service != Service::Sts => Err(denied_error(service, &caller, &op_key, &region)),
        Injected::Error500After => {
            // The work is done; only the reply is lost.
            let _ = carry_out(&sb, service, &at, &caller, &op, &body, &params);
            Err(internal_error(service))
        }
        _ => carry_out(&sb, service, &at, &caller, &op, &body, &params),
    };
    match result {
        Ok(resp) => resp,
        Err(err) => {
            tracing::debug!(op = %op_key, code = %err.code, "sandbox answered with an error");
            render_error(service, &op, &err)
        }
    }
}

fn carry_out(
    sb: &Sandbox,
    service: Service,
    at: &Scope<'_>,
    caller: &str,
    op: &str,
    body: &Bytes,
    params: &[(String, String)],
) -> Result<Response, AwsError> {
    match service {
        Service::Ssm => crate::ssm::handle(sb, at, op, body),
        Service::Ec2 => crate::ec2::handle(sb, at, op, params),
        Service::Sts => crate::sts::handle(sb, at, caller, op, params),
        Service::Iam => crate::iam::handle(sb, at.account, op, params),
        Service::CloudWatch => crate::cloudwatch::handle(sb, at, op, body),
        Service::CloudWatchJson => crate::cloudwatch::handle_json(sb, at, op, body),
        Service::Organizations => crate::organizations::handle(sb, at, op, body),
        Service::AutoScaling => crate::autoscaling::handle(sb, at, op, params),
    }
}

/// AWS's answer to a temporary access key sent without its session token, in each service's words.
/// AWS's answer in a Region the account has not enabled (an opt-in Region) or of another partition.
fn region_not_enabled_error(service: Service) -> AwsError {
    let (code, message) = match service {
        Service::Ec2 => (
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
        ),
        Service::Ssm | Service::Organizations | Service::CloudWatch | Service::CloudWatchJson => (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        Service::Sts | Service::Iam | Service::AutoScaling => (
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ),
    };
    AwsError {
        status: StatusCode::FORBIDDEN,
        code: code.into(),
        message: message.into(),
    }
}

fn invalid_token_error(service: Service) -> AwsError {
    let code = match service {
        Service::Ec2 => "AuthFailure",
        Service::Ssm | Service::Organizations | Service::CloudWatch | Service::CloudWatchJson => {
            "UnrecognizedClientException"
        }
        Service::Sts | Service::Iam | Service::AutoScaling => "InvalidClientTokenId",
    };
    AwsError {
        status: StatusCode::FORBIDDEN,
        code: code.into(),
        message: "The security token included in the request is invalid: a temporary access key (ASIA...) needs the session token issued with it.".into(),
    }
}

fn throttle_error(service: Service) -> AwsError {
    match service {
        Service::Ssm => AwsError::client("ThrottlingException", "Rate exceeded"),
        Service::Organizations => AwsError::client("TooManyRequestsException", "Rate exceeded"),
        Service::Ec2 => AwsError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "RequestLimitExceeded".into(),
            message: "Request limit exceeded.".into(),
        },
        Service::CloudWatch
        | Service::CloudWatchJson
        | Service::Sts
        | Service::Iam
        | Service::AutoScaling => AwsError::client("Throttling", "Rate exceeded"),
    }
}

fn internal_error(service: Service) -> AwsError {
    let code = match service {
        Service::Ssm => "InternalServerError",
        Service::Organizations => "ServiceException",
        Service::Ec2 => "InternalError",
        Service::CloudWatch | Service::CloudWatchJson => "InternalServiceError",
        Service::Sts | Service::Iam | Service::AutoScaling => "InternalFailure",
    };
    AwsError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: code.into(),
        message: "An internal error has occurred.".into(),
    }
}

fn denied_error(service: Service, who: &str, action: &str, region: &str) -> AwsError {
    denied_because(
        service,
        who,
        action,
        region,
        &format!("because no identity-based policy allows the {action} action"),
    )
}

/// An explicit deny in the organisation's service control policy, as AWS words it.
fn scp_denied_error(service: Service, who: &str, action: &str, region: &str) -> AwsError {
    denied_because(
        service,
        who,
        action,
        region,
        "with an explicit deny in a service control policy",
    )
}

/// AWS's words for a refusal, naming the caller (`who`: the caller's ARN as STS gives it, in the
/// sandbox's partition).
fn denied_because(service: Service, who: &str, action: &str, region: &str, why: &str) -> AwsError {
    match service {
        Service::Ec2 => AwsError::client(
            "UnauthorizedOperation",
            format!("You are not authorized to perform this operation. User: {who} is not authorized to perform: {action} {why}"),
        ),
        Service::CloudWatch | Service::CloudWatchJson | Service::Iam | Service::AutoScaling => AwsError::client("AccessDenied", format!("User: {who} is not authorized to perform: {action} {why}")),
        // Organizations names no resource in its refusal.
        Service::Organizations => AwsError::client(
            "AccessDeniedException",
            "You don't have permissions to access this resource.",
        ),
        _ => AwsError::client(
            "AccessDeniedException",
            format!(
                "User: {who} is not authorized to perform: {action} on resource: arn:{}:ssm:{region}:{}:* {why}",
                partition_of(who),
                account_of(who)
            ),
        ),
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn render_error(service: Service, op: &str, err: &AwsError) -> Response {
    let rid = request_id();
    match service {
        Service::Ssm | Service::Organizations => {
            let body = json!({ "__type": err.code, "message": err.message }).to_string();
            json_response(err.status, body, &rid)
        }
        Service::CloudWatchJson => {
            let body = json!({ "__type": err.code, "message": err.message }).to_string();
            with_query_error(json_response(err.status, body, &rid), err)
        }
        Service::Ec2 => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>",
                crate::ec2::esc(&err.code),
                crate::ec2::esc(&err.message)
            );
            xml_response(err.status, body, &rid)
        }
        Service::Sts | Service::Iam | Service::AutoScaling => {
            let ns = match service {
                Service::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
                Service::AutoScaling => "http://autoscaling.amazonaws.com/doc/2011-01-01/",
                _ => "https://sts.amazonaws.com/doc/2011-06-15/",
            };
            let body = format!(
                "<ErrorResponse xmlns=\"{ns}\"><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>",
                crate::ec2::esc(&err.code),
                crate::ec2::esc(&err.message)
            );
            xml_response(err.status, body, &rid)
        }
        Service::CloudWatch => {
            let value = ciborium::Value::Map(vec![
                (
                    ciborium::Value::Text("__type".into()),
                    ciborium::Value::Text(err.code.clone()),
                ),
                (
                    ciborium::Value::Text("message".into()),
                    ciborium::Value::Text(err.message.clone()),
                ),
            ]);
            tracing::trace!(op, "cloudwatch error");
            with_query_error(cbor_response(err.status, &value, &rid), err)
        }
    }
}

/// CloudWatch is `awsQueryCompatible`: its errors also carry the Query protocol's code and fault.
fn with_query_error(mut resp: Response, err: &AwsError) -> Response {
    let fault = if err.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{};{fault}", err.code)) {
        resp.headers_mut().insert("x-amzn-query-error", v);
    }
    resp
}

pub(crate) fn json_response(status: StatusCode, body: String, rid: &str) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

pub(crate) fn ok_json(value: &serde_json::Value) -> Result<Response, AwsError> {
    Ok(json_response(StatusCode::OK, value.to_string(), &request_id()))
}

pub(crate) fn xml_response(status: StatusCode, body: String, rid: &str) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/xml;charset=UTF-8"));
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

pub(crate) fn ok_xml(body: String) -> Result<Response, AwsError> {
    Ok(xml_response(StatusCode::OK, body, &request_id()))
}

pub(crate) fn cbor_response(status: StatusCode, value: &ciborium::Value, rid: &str) -> Response {
    let mut bytes = Vec::new();
    if let Err(e) = ciborium::into_writer(value, &mut bytes) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("CBOR encoding failed: {e}"),
        )
            .into_response();
    }
    let mut resp = (status, bytes).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/cbor"));
    h.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

pub(crate) fn ok_cbor(value: &ciborium::Value) -> Result<Response, AwsError> {
    Ok(cbor_response(StatusCode::OK, value, &request_id()))
}

/// The partition and account of an ARN (`arn:PARTITION:service:region:ACCOUNT:...`).
fn partition_of(arn: &str) -> &str {
    arn.split(':').nth(1).unwrap_or("aws")
}

fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or(crate::ACCOUNT_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_and_service_come_from_the_credential_scope() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/eu-west-1/ssm/aws4_request, SignedHeaders=host, Signature=abc",
            ),
        );
        assert_eq!(credential_scope(&h), Some(("eu-west-1".into(), "ssm".into())));
    }
}
