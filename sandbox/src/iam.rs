//! IAM (awsQuery): SimulatePrincipalPolicy, so that a permission check can be shown against the same
//! deny lists the other services enforce: the sandbox's own console role gets the caller's
//! (`Faults::deny`), any other role the AutomationAssumeRole's (`Faults::assume_role_deny`); and
//! GetRole, for a role's path (IAM Identity Center's roles carry their Region in it).

use axum::response::Response;

use crate::ec2::esc;
use crate::wire::{ok_xml, AwsError};
use crate::Sandbox;

/// The role the sandbox's callers act as (its STS identity is a session of it).
pub(crate) const CONSOLE_ROLE: &str = "ImdsConsoleSandbox";

pub(crate) fn handle(
    sb: &Sandbox,
    account: &str,
    op: &str,
    params: &[(String, String)],
) -> Result<Response, AwsError> {
    match op {
        "SimulatePrincipalPolicy" => simulate(sb, params),
        "GetRole" => get_role(sb, account, params),
        other => Err(AwsError::client(
            "InvalidAction",
            format!("The sandbox does not emulate iam:{other}."),
        )),
    }
}

fn members<'a>(params: &'a [(String, String)], list: &str) -> Vec<&'a str> {
    let prefix = format!("{list}.member.");
    let mut found: Vec<(usize, &str)> = params
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.parse().ok()?, v.as_str())))
        .collect();
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, v)| v).collect()
}

fn simulate(sb: &Sandbox, params: &[(String, String)]) -> Result<Response, AwsError> {
    let source = params
        .iter()
        .find(|(k, _)| k == "PolicySourceArn")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    // IAM takes users, groups and roles, never an STS session ARN.
    let re =
        regex::Regex::new(r"^arn:([a-z-]+):iam::\d{12}:(role|user|group)/[\w+=,.@/-]+$").expect("pattern");
    let in_partition = re
        .captures(source)
        .is_some_and(|m| m[1] == *sb.inner.config.partition);
    if !in_partition {
        return Err(AwsError::client(
            "InvalidInput",
            format!("Invalid ARN {source}: PolicySourceArn must be the ARN of an IAM user, group or role."),
        ));
    }
    if let Some(m) = regex::Regex::new(r"^arn:[a-z-]+:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)$")
        .expect("pattern")
        .captures(source)
    {
        no_such_role(sb, &m[1], &m[2])?;
    }
    let actions = members(params, "ActionNames");
    if actions.is_empty() {
        return Err(AwsError::client(
            "ValidationError",
            "1 validation error detected: Value null at 'actionNames' failed to satisfy constraint: Member must not be null",
        ));
    }
    let resources = members(params, "ResourceArns");
    let resource = resources.first().copied().unwrap_or("*");
    let faults = sb.faults();
    let denied = if source.ends_with(&format!(":role/{CONSOLE_ROLE}")) {
        &faults.deny
    } else {
        &faults.assume_role_deny
    };
    let results: String = actions
        .iter()
        .map(|action| {
            let decision = if denied.contains(*action) {
                "implicitDeny"
            } else {
                "allowed"
            };
            format!(
                "<member><EvalActionName>{}</EvalActionName><EvalResourceName>{}</EvalResourceName>\
                 <EvalDecision>{decision}</EvalDecision><MatchedStatements/><MissingContextValues/></member>",
                esc(action),
                esc(resource)
            )
        })
        .collect();
    ok_xml(format!(
        "<SimulatePrincipalPolicyResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">\
         <SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated><EvaluationResults>{results}</EvaluationResults>\
         </SimulatePrincipalPolicyResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>\
         </SimulatePrincipalPolicyResponse>",
        uuid::Uuid::new_v4()
    ))
}

/// Every role the sandbox is asked about exists in the caller's account (it has no IAM store); an
/// IAM Identity Center role lives under `aws-reserved/sso.amazonaws.com/`, with the Identity Center
/// Region after it unless that is us-east-1.
fn get_role(sb: &Sandbox, account: &str, params: &[(String, String)]) -> Result<Response, AwsError> {
    let name = params
        .iter()
        .find(|(k, _)| k == "RoleName")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let re = regex::Regex::new(r"^[\w+=,.@-]{1,64}$").expect("pattern");
    if !re.is_match(name) {
        return Err(AwsError::client(
            "ValidationError",
            format!("1 validation error detected: Value '{name}' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"),
        ));
    }
    no_such_role(sb, account, name)?;
    let path = if name.starts_with("AWSReservedSSO_") {
        match sb.faults().identity_center_region.filter(|r| r != "us-east-1") {
            Some(region) => format!("/aws-reserved/sso.amazonaws.com/{region}/"),
            None => "/aws-reserved/sso.amazonaws.com/".to_owned(),
        }
    } else {
        "/".to_owned()
    };
    let arn = format!(
        "arn:{}:iam::{account}:role{path}{name}",
        sb.inner.config.partition
    );
    ok_xml(format!(
        "<GetRoleResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><GetRoleResult><Role>\
         <Path>{}</Path><RoleName>{}</RoleName><RoleId>AROASANDBOX{:012}</RoleId><Arn>{}</Arn>\
         <CreateDate>2024-01-01T00:00:00Z</CreateDate><MaxSessionDuration>3600</MaxSessionDuration></Role></GetRoleResult>\
         <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></GetRoleResponse>",
        esc(&path),
        esc(name),
        name.len(),
        esc(&arn),
        uuid::Uuid::new_v4()
    ))
}

/// IAM's answer for a role that does not exist in the account (see `Faults::roles`).
fn no_such_role(sb: &Sandbox, account: &str, name: &str) -> Result<(), AwsError> {
    let faults = sb.faults();
    if crate::faults::role_exists(&faults.roles, &faults.missing_roles, account, name) {
        return Ok(());
    }
    Err(AwsError {
        status: axum::http::StatusCode::NOT_FOUND,
        code: "NoSuchEntity".into(),
        message: format!("The role with name {name} cannot be found."),
    })
}
