//! STS (awsQuery): GetCallerIdentity, which needs no permission in AWS either, and AssumeRole into the
//! organisation's accounts. The credentials it issues carry their account (`ASIA` + account ID + a
//! suffix) and the role in their session token, so the sandbox tells accounts apart by credentials
//! alone, as AWS does. A role is missing in the accounts `Faults::missing_roles` names.

use axum::response::Response;

use crate::ec2::esc;
use crate::fleet::Scope;
use crate::wire::{ok_xml, AwsError};
use crate::Sandbox;

const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The session token the sandbox issues: it names the account, role and session.
pub(crate) fn session_token(account: &str, role: &str, session: &str) -> String {
    format!("sandbox-session:{account}:{role}:{session}")
}

/// The caller's ARN from its session token (otherwise the console role's session in `account`, the
/// account its access key names, so the ARN and the account always agree), in the sandbox's
/// partition.
pub(crate) fn caller_arn(token: Option<&str>, account: &str, partition: &str) -> String {
    token
        .and_then(|t| t.strip_prefix("sandbox-session:"))
        .and_then(|rest| {
            let mut parts = rest.splitn(3, ':');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .map_or_else(
            || {
                format!(
                    "arn:{partition}:sts::{account}:assumed-role/{}/console",
                    crate::iam::CONSOLE_ROLE
                )
            },
            |(account, role, session)| {
                format!("arn:{partition}:sts::{account}:assumed-role/{role}/{session}")
            },
        )
}

pub(crate) fn handle(
    sb: &Sandbox,
    at: &Scope<'_>,
    caller: &str,
    op: &str,
    params: &[(String, String)],
) -> Result<Response, AwsError> {
    let rid = uuid::Uuid::new_v4();
    match op {
        "GetCallerIdentity" => ok_xml(format!(
            "<GetCallerIdentityResponse xmlns=\"{NS}\"><GetCallerIdentityResult>\
             <Arn>{arn}</Arn><UserId>AROASANDBOXEXAMPLE:console</UserId>\
             <Account>{acct}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata>\
             </GetCallerIdentityResponse>",
            arn = esc(caller),
            acct = at.account,
        )),
        "AssumeRole" => assume_role(sb, caller, params, &rid.to_string()),
        other => Err(AwsError::client(
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    }
}

fn assume_role(
    sb: &Sandbox,
    caller: &str,
    params: &[(String, String)],
    rid: &str,
) -> Result<Response, AwsError> {
    let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
    let role_arn = get("RoleArn").unwrap_or_default();
    // The model's arnType: 20 to 2048 characters, for RoleArn and each PolicyArns entry; and at
    // most 10 managed policies a session (the AssumeRole API reference).
    let arn_length = |at: &str, arn: &str| {
        let len = arn.chars().count();
        if (20..=2048).contains(&len) {
            Ok(())
        } else {
            Err(invalid(&format!("Value at '{at}' failed to satisfy constraint: Member must have length between 20 and 2048 (got {len})")))
        }
    };
    arn_length("roleArn", role_arn)?;
    let policy_arns: Vec<&str> = (1..)
        .map_while(|n| get(&format!("PolicyArns.member.{n}.arn")))
        .collect();
    if policy_arns.len() > 10 {
        return Err(invalid(&format!(
            "Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10 (got {}): a session takes at most 10 managed policy ARNs",
            policy_arns.len()
        )));
    }
    for (n, arn) in policy_arns.iter().enumerate() {
        arn_length(&format!("policyArns.{}.member.arn", n + 1), arn)?;
    }
    let session = session_name(get("RoleSessionName"))?;
    let duration_secs = duration_seconds(get("DurationSeconds"))?;
    crate::sts_strict::external_id_and_policy(get("ExternalId"), get("Policy"))?;
    let re = regex::Regex::new(r"^arn:([a-z-]+):iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)$")
        .expect("pattern");
    let partition = sb.inner.config.partition.as_str();
    // A role of another partition is no role here (AWS partitions do not share IAM).
    let Some(m) = re.captures(role_arn).filter(|m| &m[1] == partition) else {
        return Err(AwsError::client(
            "ValidationError",
            format!("{role_arn} is invalid"),
        ));
    };
    let (account, role) = (m[2].to_owned(), m[3].to_owned());
    let in_org = crate::account_ids(sb.inner.config.accounts).contains(&account);
    let faults = sb.faults();
    if !in_org || !crate::faults::role_exists(&faults.roles, &faults.missing_roles, &account, &role) {
        return Err(AwsError {
            status: axum::http::StatusCode::FORBIDDEN,
            code: "AccessDenied".into(),
            message: format!(
                "User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ),
        });
    }
    crate::sts_strict::within_max_session(duration_secs)?;
    let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase();
    let expires = crate::timefmt::iso(crate::timefmt::now_ms() + duration_secs * 1000);
    ok_xml(format!(
        "<AssumeRoleResponse xmlns=\"{NS}\"><AssumeRoleResult>\
         <Credentials><AccessKeyId>ASIA{account}{suffix}</AccessKeyId><SecretAccessKey>sandbox-secret</SecretAccessKey>\
         <SessionToken>{token}</SessionToken><Expiration>{expires}</Expiration></Credentials>\
         <AssumedRoleUser><AssumedRoleId>AROASANDBOX{suffix}:{session}</AssumedRoleId>\
         <Arn>arn:{partition}:sts::{account}:assumed-role/{role}/{session}</Arn></AssumedRoleUser>\
         </AssumeRoleResult><ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></AssumeRoleResponse>",
        token = esc(&session_token(&account, &role, session)),
        session = esc(session),
    ))
}

/// STS's validation message for one member, as its awsQuery front writes it.
fn invalid(message: &str) -> AwsError {
    AwsError::client(
        "ValidationError",
        format!("1 validation error detected: {message}"),
    )
}

/// RoleSessionName as the model constrains it: required, 2 to 64 characters of `[\w+=,.@-]`.
fn session_name(raw: Option<&str>) -> Result<&str, AwsError> {
    let Some(name) = raw else {
        return Err(invalid(
            "Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null",
        ));
    };
    let len = name.chars().count();
    if len < 2 {
        return Err(invalid(&format!("Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2")));
    }
    if len > 64 {
        return Err(invalid(&format!("Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must have length less than or equal to 64")));
    }
    // `\w` of the model is Java's: ASCII letters, digits and underscore only.
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(invalid(&format!("Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*")));
    }
    Ok(name)
}

/// DurationSeconds: 900 to 43200 (the model's range); one hour when left out, as in STS.
fn duration_seconds(raw: Option<&str>) -> Result<u64, AwsError> {
    let Some(raw) = raw else {
        return Ok(3600);
    };
    let value: i64 = raw.parse().map_err(|_| {
        invalid(&format!(
            "Value '{raw}' at 'durationSeconds' failed to satisfy constraint: Member must be an integer"
        ))
    })?;
    if value < 900 {
        return Err(invalid(&format!("Value '{value}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900")));
    }
    if value > 43_200 {
        return Err(invalid(&format!("Value '{value}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to 43200")));
    }
    Ok(value as u64)
}
