//! IAM (awsQuery): SimulatePrincipalPolicy, so that a permission check can be shown against the same
//! deny lists the other services enforce: the sandbox's own console role gets the caller's
//! (`Faults::deny`), any other role the AutomationAssumeRole's (`Faults::assume_role_deny`).

use axum::response::Response;

use crate::ec2::esc;
use crate::wire::{ok_xml, AwsError};
use crate::Sandbox;

/// The role the sandbox's callers act as (its STS identity is a session of it).
pub(crate) const CONSOLE_ROLE: &str = "ImdsConsoleSandbox";

pub(crate) fn handle(sb: &Sandbox, op: &str, params: &[(String, String)]) -> Result<Response, AwsError> {
    match op {
        "SimulatePrincipalPolicy" => simulate(sb, params),
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
