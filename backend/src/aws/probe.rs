//! Calls that ask AWS whether an action is allowed without changing anything, for `doctor`: reads of
//! a made-up execution, a start SSM must refuse for its parameters, EC2's DryRun, and IAM's policy
//! simulator. Each returns AWS's answer as our error type; `doctor` decides what the answer means.

use aws_sdk_ec2::types::Filter;
use std::collections::HashMap;

use super::{sdk_error, RegionClients};
use crate::error::AppError;

/// An execution ID that exists nowhere: reads and stops of it answer "not found" when allowed.
pub const NO_SUCH_EXECUTION: &str = "00000000-0000-4000-8000-000000000000";

/// An InstanceId the runbook's pattern refuses, so SSM validates the start and starts nothing.
pub const NOT_AN_INSTANCE: &str = "doctor-not-an-instance";

pub async fn ssm_get(c: &RegionClients) -> Result<(), AppError> {
    c.ssm
        .get_automation_execution()
        .automation_execution_id(NO_SUCH_EXECUTION)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| sdk_error("ssm:GetAutomationExecution", &e))
}

pub async fn ssm_describe_steps(c: &RegionClients) -> Result<(), AppError> {
    c.ssm
        .describe_automation_step_executions()
        .automation_execution_id(NO_SUCH_EXECUTION)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| sdk_error("ssm:DescribeAutomationStepExecutions", &e))
}

pub async fn ssm_stop(c: &RegionClients) -> Result<(), AppError> {
    c.ssm
        .stop_automation_execution()
        .automation_execution_id(NO_SUCH_EXECUTION)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| sdk_error("ssm:StopAutomationExecution", &e))
}

pub async fn ssm_describe(c: &RegionClients, document: &str) -> Result<(), AppError> {
    super::ssm::recent_page(c, document, None).await.map(|_| ())
}

/// A start SSM must refuse for its InstanceId. Returns the execution ID if SSM started one anyway
/// (the caller stops it), which would mean the runbook's pattern changed.
pub async fn ssm_start_refused(c: &RegionClients, document: &str) -> Result<Option<String>, AppError> {
    let params: HashMap<String, Vec<String>> =
        HashMap::from([("InstanceId".to_owned(), vec![NOT_AN_INSTANCE.to_owned()])]);
    c.ssm
        .start_automation_execution()
        .document_name(document)
        .set_parameters(Some(params))
        .send()
        .await
        .map(|out| out.automation_execution_id().map(str::to_owned))
        .map_err(|e| sdk_error("ssm:StartAutomationExecution", &e))
}

/// DescribeInstances, a few: the ID of one, to dry-run a change against.
pub async fn ec2_some_instance(c: &RegionClients) -> Result<Option<String>, AppError> {
    let out = c
        .ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .values("stopped")
                .build(),
        )
        .max_results(5)
        .send()
        .await
        .map_err(|e| sdk_error("ec2:DescribeInstances", &e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.instance_id().map(str::to_owned)))
}

/// ModifyInstanceMetadataOptions with DryRun: `DryRunOperation` when allowed.
pub async fn ec2_modify_dry_run(c: &RegionClients, instance: &str) -> Result<(), AppError> {
    c.ec2
        .modify_instance_metadata_options()
        .instance_id(instance)
        .http_tokens(aws_sdk_ec2::types::HttpTokensState::Required)
        .dry_run(true)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| sdk_error("ec2:ModifyInstanceMetadataOptions", &e))
}

/// The reads that find where new instances come from (the Sources page), one harmless call each.
pub async fn launch_sources_reads(c: &RegionClients) -> Vec<(&'static str, Result<(), AppError>)> {
    vec![
        (
            "ec2:GetInstanceMetadataDefaults",
            super::launch::metadata_defaults(c).await.map(|_| ()),
        ),
        (
            "ec2:DescribeLaunchTemplates",
            c.ec2
                .describe_launch_templates()
                .max_results(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("ec2:DescribeLaunchTemplates", &e)),
        ),
        (
            "ec2:DescribeLaunchTemplateVersions",
            c.ec2
                .describe_launch_template_versions()
                .versions("$Default")
                .max_results(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("ec2:DescribeLaunchTemplateVersions", &e)),
        ),
        (
            "ec2:DescribeImages",
            c.ec2
                .describe_images()
                .filters(
                    Filter::builder()
                        .name("image-id")
                        .values("ami-00000000000000000")
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("ec2:DescribeImages", &e)),
        ),
        (
            "ec2:DescribeFleets",
            c.ec2
                .describe_fleets()
                .max_results(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("ec2:DescribeFleets", &e)),
        ),
        (
            "ec2:DescribeSpotFleetRequests",
            c.ec2
                .describe_spot_fleet_requests()
                .max_results(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("ec2:DescribeSpotFleetRequests", &e)),
        ),
        (
            "autoscaling:DescribeAutoScalingGroups",
            c.autoscaling
                .describe_auto_scaling_groups()
                .max_records(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("autoscaling:DescribeAutoScalingGroups", &e)),
        ),
        (
            "autoscaling:DescribeLaunchConfigurations",
            c.autoscaling
                .describe_launch_configurations()
                .max_records(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("autoscaling:DescribeLaunchConfigurations", &e)),
        ),
    ]
}

/// Setting the account's metadata defaults, as a dry run (for fixing that source).
pub async fn ec2_defaults_dry_run(c: &RegionClients) -> Result<(), AppError> {
    c.ec2
        .modify_instance_metadata_defaults()
        .http_tokens(aws_sdk_ec2::types::MetadataDefaultHttpTokensState::Required)
        .dry_run(true)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| sdk_error("ec2:ModifyInstanceMetadataDefaults", &e))
}

pub async fn cloudwatch_read(c: &RegionClients) -> Result<(), AppError> {
    super::cloudwatch::usage(
        c,
        &[(
            "i-00000000000000000".to_owned(),
            super::cloudwatch::UsageMetric::NoToken,
        )],
        std::time::Duration::from_secs(3600),
    )
    .await
    .map(|_| ())
}

/// IAM's policy simulator for a user, group or role: each action and whether it is allowed.
pub async fn simulate(
    c: &RegionClients,
    principal_arn: &str,
    actions: &[&str],
    resource: Option<&str>,
) -> Result<Vec<(String, bool)>, AppError> {
    let out = c
        .iam
        .simulate_principal_policy()
        .policy_source_arn(principal_arn)
        .set_action_names(Some(actions.iter().map(|a| (*a).to_owned()).collect()))
        .set_resource_arns(resource.map(|r| vec![r.to_owned()]))
        .send()
        .await
        .map_err(|e| sdk_error("iam:SimulatePrincipalPolicy", &e))?;
    Ok(out
        .evaluation_results()
        .iter()
        .map(|r| {
            (
                r.eval_action_name().to_owned(),
                r.eval_decision().as_str() == "allowed",
            )
        })
        .collect())
}

/// IAM GetRole: the role's ARN, its path included.
pub async fn role_arn(c: &RegionClients, name: &str) -> Result<String, AppError> {
    let out = c
        .iam
        .get_role()
        .role_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("iam:GetRole", &e))?;
    out.role()
        .map(|r| r.arn().to_owned())
        .ok_or_else(|| AppError::internal("IAM answered GetRole without the role"))
}
