//! The permission check people run before their first real run (`imds-console doctor`, and the admin
//! page): may the console's identity, and the AutomationAssumeRole if one is given, do every action
//! the console and the runbook need? Nothing is changed to find out: reads of an execution that does
//! not exist, a start SSM must refuse for its parameters, EC2's DryRun, and, where the caller may use
//! it, IAM's policy simulator.

use shared::api::{CheckResult, PermissionCheck, PermissionReport};
use shared::RUNBOOK;
use std::collections::BTreeMap;

use crate::aws::{probe, ssm, sts, RegionClients};
use crate::error::AppError;
use crate::org::Org;

const CONSOLE: &str = "console";
const ASSUME_ROLE: &str = "assume role";

const ADMINISTRATION_ROLE: &str = "administration role";
/// The execution role AWS's multi-account automation assumes in each location when the run names
/// none.
const EXECUTION_ROLE: &str = "AWS-SystemsManager-AutomationExecutionRole";

/// Checks every region's clients; fails only when the console cannot say who it is. With
/// `across_accounts`, also what runs across accounts need: passing the hub's administration role to
/// SSM, and that role assuming the execution role in the other accounts.
pub async fn check(
    clients: &BTreeMap<String, RegionClients>,
    assume_role: Option<&str>,
    across_accounts: bool,
    org: Option<&Org>,
) -> Result<PermissionReport, AppError> {
    let first = clients
        .values()
        .next()
        .ok_or_else(|| AppError::internal("no region configured"))?;
    let identity = sts::caller_identity_anywhere(clients.values()).await?;
    let mut checks = Vec::new();
    for (region, c) in clients {
        region_checks(c, region, assume_role, &mut checks).await;
    }
    let console_principal = console_principal(first, &identity.arn).await;
    // Fixing a launch template needs a template to dry-run against; the simulator answers instead.
    let mut console_simulated = vec![
        "ssm:AddTagsToResource",
        "ec2:CreateLaunchTemplateVersion",
        "ec2:ModifyLaunchTemplate",
        "ec2:DeleteLaunchTemplateVersions",
    ];
    if assume_role.is_some() {
        console_simulated.push("iam:PassRole");
    }
    simulated(
        first,
        CONSOLE,
        console_principal.as_deref(),
        &console_simulated,
        assume_role,
        &mut checks,
    )
    .await;
    if across_accounts {
        // A run across accounts is run as the hub's administration role (the console passes it as
        // AutomationAssumeRole when the run names none), which assumes each location's execution role.
        let partition = crate::org::partition_of(&identity.arn);
        let admin = format!(
            "arn:{partition}:iam::{}:role/{}",
            identity.account,
            crate::runs::ADMINISTRATION_ROLE
        );
        simulated(
            first,
            CONSOLE,
            console_principal.as_deref(),
            &["iam:PassRole"],
            Some(&admin),
            &mut checks,
        )
        .await;
        simulated(
            first,
            ADMINISTRATION_ROLE,
            Some(&admin),
            &["sts:AssumeRole"],
            Some(&format!("arn:{partition}:iam::*:role/{EXECUTION_ROLE}")),
            &mut checks,
        )
        .await;
        if let Some(org) = org.filter(|o| o.is_multi_account()) {
            member_checks(org, &identity.account, partition, first, &mut checks).await;
        }
    }
    if let Some(role) = assume_role {
        // What the runbook's steps do as the role, and the role passing itself to the children of a
        // rate-control run.
        simulated(
            first,
            ASSUME_ROLE,
            Some(role),
            &[
                "ec2:DescribeInstances",
                "ec2:ModifyInstanceMetadataOptions",
                "ssm:StartAutomationExecution",
                "ssm:GetAutomationExecution",
            ],
            None,
            &mut checks,
        )
        .await;
        simulated(
            first,
            ASSUME_ROLE,
            Some(role),
            &["iam:PassRole"],
            Some(role),
            &mut checks,
        )
        .await;
    }
    Ok(PermissionReport {
        identity: identity.arn,
        assume_role: assume_role.map(str::to_owned),
        checks,
    })
}

async fn region_checks(
    c: &RegionClients,
    region: &str,
    assume_role: Option<&str>,
    out: &mut Vec<PermissionCheck>,
) {
    let row = |action: &str, method: &str, (result, detail): (CheckResult, String)| PermissionCheck {
        principal: CONSOLE.into(),
        action: action.into(),
        region: Some(region.to_owned()),
        fix: fix(CONSOLE, action, result, None),
        result,
        method: method.into(),
        detail,
    };
    let instances = probe::ec2_some_instance(c).await;
    let instance = instances.as_ref().ok().cloned().flatten();
    out.push(row(
        "ec2:DescribeInstances",
        "call",
        judge(instances.map(|_| ()), &[]),
    ));
    out.push(row(
        "ssm:DescribeAutomationExecutions",
        "call",
        judge(probe::ssm_describe(c, RUNBOOK).await, &[]),
    ));
    const NOT_FOUND: &[&str] = &["NotFound"];
    out.push(row(
        "ssm:GetAutomationExecution",
        "call on a made-up execution",
        judge(probe::ssm_get(c).await, NOT_FOUND),
    ));
    out.push(row(
        "ssm:DescribeAutomationStepExecutions",
        "call on a made-up execution",
        judge(probe::ssm_describe_steps(c).await, NOT_FOUND),
    ));
    out.push(row(
        "ssm:StopAutomationExecution",
        "call on a made-up execution",
        judge(probe::ssm_stop(c).await, NOT_FOUND),
    ));
    let start = match probe::ssm_start_refused(c, RUNBOOK).await {
        Ok(Some(id)) => {
            // SSM accepted an InstanceId its runbook refuses: stop the run at once and say so.
            let _ = ssm::stop(c, &id).await;
            (
                CheckResult::Allowed,
                format!("allowed, but SSM started {id} for an invalid InstanceId (stopped)"),
            )
        }
        Ok(None) => (CheckResult::Allowed, "allowed".into()),
        Err(e) => judge(Err(e), &["InvalidAutomationExecutionParameters", "Validation"]),
    };
    out.push(row(
        "ssm:StartAutomationExecution",
        "start refused for its parameters",
        start,
    ));
    out.push(row(
        "cloudwatch:GetMetricData",
        "call",
        judge(probe::cloudwatch_read(c).await, &[]),
    ));
    // Runs and plans with a halt alarm check first that it exists where they run.
    out.push(row(
        "cloudwatch:DescribeAlarms",
        "call",
        judge(
            crate::aws::cloudwatch::alarm_exists(c, "imds-console-doctor")
                .await
                .map(|_| ()),
            &[],
        ),
    ));
    for (action, answer) in probe::launch_sources_reads(c).await {
        out.push(row(action, "call", judge(answer, &[])));
    }
    out.push(row(
        "ec2:ModifyInstanceMetadataDefaults",
        "dry run",
        judge(probe::ec2_defaults_dry_run(c).await, &["DryRunOperation"]),
    ));
    // Without an AutomationAssumeRole the runbook changes instances with the console's permissions.
    if assume_role.is_none() {
        let result = match &instance {
            Some(id) => judge(probe::ec2_modify_dry_run(c, id).await, &["DryRunOperation"]),
            None => (
                CheckResult::Unchecked,
                "no instance in this region to dry-run against".into(),
            ),
        };
        out.push(row("ec2:ModifyInstanceMetadataOptions", "dry run", result));
    }
}

/// Member accounts' roles read at once: enough to check 20 accounts in a few seconds, few enough to
/// stay far below IAM's and STS's request rates.
const MEMBERS_AT_ONCE: usize = 8;

/// Each member account, as the console reaches it (its member role): does the execution role a run
/// across accounts assumes there exist (IAM GetRole), and may it do what the runbook's steps do
/// there (IAM's simulator, asked in that account)? A run whose location lacks the role fails only in
/// that location, after the others changed, so doctor says which accounts lack it before a run.
async fn member_checks(
    org: &Org,
    hub: &str,
    partition: &str,
    hub_clients: &RegionClients,
    out: &mut Vec<PermissionCheck>,
) {
    use futures_util::StreamExt;
    let (accounts, problem) = org.accounts(hub, hub_clients).await;
    if let Some(problem) = problem {
        // A console that cannot list its organisation sees none of its members: not a pass.
        out.push(PermissionCheck {
            principal: CONSOLE.into(),
            action: "organizations:ListAccounts".into(),
            region: None,
            result: CheckResult::Denied,
            method: "call".into(),
            detail: format!(
                "{problem}; the execution role is checked only in the accounts that could be listed"
            ),
            fix: Some(
                "Allow organizations:ListAccounts (and, with --organizational-unit, organizations:ListAccountsForParent \
                 and ListOrganizationalUnitsForParent) for the console's identity: without it the console sees no \
                 member account."
                    .into(),
            ),
        });
    }
    // Every account a run across accounts can reach, the console's own included: a root or "every
    // account" names it too, and its location fails like any other without the role.
    let rows: Vec<Vec<PermissionCheck>> = futures_util::stream::iter(accounts)
        .map(|account| async move {
            let mut rows = Vec::new();
            if account.hub {
                let how = "call as the console".to_owned();
                execution_role_checks(hub_clients, &account.id, how, &mut rows).await;
            } else {
                let clients = org.member_clients(&account.id, partition).await;
                if let Some(c) = clients.values().next() {
                    let how = format!("call as the member role ({})", org.member_role);
                    execution_role_checks(c, &account.id, how, &mut rows).await;
                }
            }
            rows
        })
        .buffered(MEMBERS_AT_ONCE)
        .collect()
        .await;
    out.extend(rows.into_iter().flatten());
}

async fn execution_role_checks(
    c: &RegionClients,
    account: &str,
    how: String,
    out: &mut Vec<PermissionCheck>,
) {
    let principal = format!("execution role in {account}");
    let row = |result: CheckResult, detail: String, fix: Option<String>| PermissionCheck {
        principal: principal.clone(),
        action: "iam:GetRole".into(),
        region: None,
        result,
        method: how.clone(),
        detail,
        fix,
    };
    match probe::role_arn(c, EXECUTION_ROLE).await {
        Ok(arn) => {
            out.push(row(CheckResult::Allowed, format!("{arn} exists"), None));
            // What the runbook's steps do in that account, as that role; and resolving a tag target.
            simulated(
                c,
                &principal,
                Some(&arn),
                &[
                    "ec2:DescribeInstances",
                    "ec2:ModifyInstanceMetadataOptions",
                    "tag:GetResources",
                ],
                None,
                out,
            )
            .await;
        }
        Err(AppError::Aws { code, .. }) if code == "NoSuchEntity" => out.push(row(
            CheckResult::Denied,
            format!("{EXECUTION_ROLE} does not exist in {account}: a run across accounts fails there"),
            Some(format!(
                "Create {EXECUTION_ROLE} in {account} (AWS's multi-account Automation setup), trusting {} of the \
                 console's account, or leave {account} out of runs across accounts.",
                crate::runs::ADMINISTRATION_ROLE
            )),
        )),
        // The member role could not be assumed: the console cannot act in that account at all.
        Err(
            e @ AppError::Aws {
                fault: crate::aws::AwsFault::NotSent,
                ..
            },
        ) => out.push(PermissionCheck {
            principal: CONSOLE.into(),
            action: "sts:AssumeRole".into(),
            region: None,
            result: CheckResult::Denied,
            method: how.clone(),
            detail: format!("the console cannot act in {account}: {e}"),
            fix: Some(format!(
                "Deploy deploy/member-role.yaml in {account} (the member role, trusting the console's account), or \
                 leave {account} out of the console's accounts."
            )),
        }),
        Err(e) => out.push(row(
            CheckResult::Unchecked,
            format!("cannot read the roles of {account} ({e}); check {EXECUTION_ROLE} there by hand"),
            Some(format!(
                "Allow iam:GetRole and iam:SimulatePrincipalPolicy on {EXECUTION_ROLE} to the identity doctor reads \
                 {account} as ({how}; deploy/member-role.yaml allows them), so that doctor can check it."
            )),
        )),
    }
}

/// What AWS's answer to a harmless call means: allowed when it succeeded or failed for a reason AWS
/// gives only after authorising the call (`allowed_codes`), denied on an authorisation error, and
/// unchecked otherwise (a timeout, an unexpected error).
fn judge(answer: Result<(), AppError>, allowed_codes: &[&str]) -> (CheckResult, String) {
    match answer {
        Ok(()) => (CheckResult::Allowed, "allowed".into()),
        Err(AppError::Aws { status, message, .. }) if status == axum::http::StatusCode::FORBIDDEN => {
            (CheckResult::Denied, message)
        }
        Err(AppError::Aws { code, .. }) if allowed_codes.iter().any(|c| code.contains(c)) => (
            CheckResult::Allowed,
            format!("allowed (AWS answered {code} after authorising the call)"),
        ),
        Err(e) => (CheckResult::Unchecked, e.to_string()),
    }
}

/// Asks IAM's policy simulator about `actions` for a principal; rows say "unchecked" when the
/// simulator may not be used or the principal has no IAM ARN.
async fn simulated(
    c: &RegionClients,
    principal: &str,
    arn: Option<&str>,
    actions: &[&str],
    resource: Option<&str>,
    out: &mut Vec<PermissionCheck>,
) {
    let answer = match arn {
        Some(arn) => probe::simulate(c, arn, actions, resource).await,
        None => Err(AppError::internal(
            "the identity is not an IAM user or role the simulator knows",
        )),
    };
    for action in actions {
        let (result, detail) = match &answer {
            Ok(decisions) => match decisions.iter().find(|(a, _)| a == action) {
                Some((_, true)) => (CheckResult::Allowed, "allowed".to_owned()),
                Some((_, false)) => (
                    CheckResult::Denied,
                    format!(
                        "IAM's policy simulator: {action} is not allowed for {}{}",
                        arn.unwrap_or_default(),
                        resource.map(|r| format!(" on {r}")).unwrap_or_default()
                    ),
                ),
                None => (CheckResult::Unchecked, "the simulator gave no answer".into()),
            },
            Err(e) => (
                CheckResult::Unchecked,
                format!("cannot ask IAM's policy simulator ({e}); check this one by hand"),
            ),
        };
        out.push(PermissionCheck {
            principal: principal.into(),
            action: (*action).into(),
            region: None,
            fix: fix(principal, action, result, resource),
            result,
            method: "IAM policy simulator".into(),
            detail,
        });
    }
}

fn fix(principal: &str, action: &str, result: CheckResult, resource: Option<&str>) -> Option<String> {
    (result == CheckResult::Denied).then(|| match (principal, action) {
        (CONSOLE, "iam:PassRole") => format!(
            "Allow iam:PassRole on {} for the console's identity, with iam:PassedToService = ssm.amazonaws.com (README: AWS permissions).",
            resource.unwrap_or("the AutomationAssumeRole")
        ),
        (CONSOLE, "ec2:ModifyInstanceMetadataOptions") => "Allow ec2:ModifyInstanceMetadataOptions for the console's identity, or give runs an AutomationAssumeRole that has it.".into(),
        (CONSOLE, _) => format!("Add {action} to the console's IAM policy (README: AWS permissions)."),
        (ADMINISTRATION_ROLE, _) => format!(
            "Create {} in the console's account (AWS's multi-account Automation setup), allowed to \
             sts:AssumeRole {} in each account; and create that execution role in every account runs go to.",
            crate::runs::ADMINISTRATION_ROLE,
            resource.unwrap_or(EXECUTION_ROLE)
        ),
        (p, _) if p.starts_with("execution role in ") => format!(
            "Add {action} to {EXECUTION_ROLE}'s policy in {}: runs across accounts run the runbook's steps there as it.",
            p.trim_start_matches("execution role in ")
        ),
        (_, "iam:PassRole") => format!(
            "Allow the AutomationAssumeRole iam:PassRole on itself ({}): Automation passes it to the children of rate-control runs.",
            resource.unwrap_or("its own ARN")
        ),
        _ => format!("Add {action} to the AutomationAssumeRole's policy; the runbook's steps call it as that role."),
    })
}

/// The IAM principal behind the console's STS identity, as the policy simulator takes it. An IAM
/// Identity Center role's path carries the Identity Center Region when that is not us-east-1
/// (`aws-reserved/sso.amazonaws.com/eu-west-1/`), which the STS ARN does not show: IAM's GetRole
/// says; without it, the us-east-1 form is the guess.
pub async fn console_principal(c: &RegionClients, sts_arn: &str) -> Option<String> {
    let guess = iam_principal(sts_arn)?;
    let Some(name) = guess
        .rsplit('/')
        .next()
        .filter(|n| n.starts_with("AWSReservedSSO_"))
    else {
        return Some(guess);
    };
    match probe::role_arn(c, name).await {
        Ok(arn) => Some(arn),
        Err(e) => {
            tracing::info!(error = %e, role = name, "cannot read the sign-on role's path; assuming us-east-1's");
            Some(guess)
        }
    }
}

/// The IAM principal behind an STS identity: an assumed role's role (IAM Identity Center's roles live
/// under their reserved path), or a user as is. None for the root user or a federated user.
pub fn iam_principal(sts_arn: &str) -> Option<String> {
    let rest = sts_arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    match service {
        "sts" => {
            let role = resource.strip_prefix("assumed-role/")?.split('/').next()?;
            let path = if role.starts_with("AWSReservedSSO_") {
                "aws-reserved/sso.amazonaws.com/"
            } else {
                ""
            };
            Some(format!("arn:{partition}:iam::{account}:role/{path}{role}"))
        }
        "iam" if resource.starts_with("user/") || resource.starts_with("role/") => Some(sts_arn.to_owned()),
        _ => None,
    }
}

/// The report as a table for a terminal: action, principal, region, result, and the fix.
pub fn table(report: &PermissionReport) -> String {
    let mut out = format!("Identity: {}\n", report.identity);
    if let Some(role) = &report.assume_role {
        out.push_str(&format!("AutomationAssumeRole: {role}\n"));
    }
    out.push('\n');
    let rows: Vec<[String; 5]> = report
        .checks
        .iter()
        .map(|c| {
            [
                c.action.clone(),
                c.principal.clone(),
                c.region.clone().unwrap_or_else(|| "global".into()),
                match c.result {
                    CheckResult::Allowed => "allowed".into(),
                    CheckResult::Denied => "DENIED".into(),
                    CheckResult::Unchecked => "unchecked".into(),
                },
                c.fix.clone().unwrap_or_else(|| match c.result {
                    CheckResult::Unchecked => c.detail.clone(),
                    _ => String::new(),
                }),
            ]
        })
        .collect();
    let header = ["ACTION", "PRINCIPAL", "REGION", "RESULT", "FIX"].map(str::to_owned);
    let mut widths = [0usize; 4];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (w, cell) in widths.iter().zip(r.iter()) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        line.push_str(&r[4]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let denied = report.denied();
    out.push_str(&if denied == 0 {
        "\nEvery checked action is allowed.\n".to_owned()
    } else {
        format!("\n{denied} action(s) denied.\n")
    });
    out
}

#[cfg(test)]
mod tests {
    use super::iam_principal;

    #[test]
    fn sts_identities_map_to_the_iam_principal_the_simulator_takes() {
        assert_eq!(
            iam_principal("arn:aws:sts::123456789012:assumed-role/ImdsConsole/i-0abc").as_deref(),
            Some("arn:aws:iam::123456789012:role/ImdsConsole")
        );
        assert_eq!(
            iam_principal(
                "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0123abcd/jane@example.com"
            )
            .as_deref(),
            Some(
                "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123abcd"
            )
        );
        assert_eq!(
            iam_principal("arn:aws-us-gov:iam::123456789012:user/ops").as_deref(),
            Some("arn:aws-us-gov:iam::123456789012:user/ops")
        );
        assert_eq!(iam_principal("arn:aws:iam::123456789012:root"), None);
        assert_eq!(iam_principal("not an arn"), None);
    }
}
