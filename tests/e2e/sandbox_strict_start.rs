//! StartAutomationExecution is at least as strict as SSM's model, through the real aws-sdk client
//! and boto3: TargetLocations' ExcludeAccounts is checked and leaves its accounts out, and the
//! request's members the model bounds (role names, Regions, rate strings, Mode, tags, alarm names)
//! are refused when out of bounds.

use aws_sdk_ssm::types::{Target, TargetLocation};
use e2e::{sdk_config, standalone_sandbox};
use sandbox::SandboxConfig;
use std::collections::BTreeSet;

fn config(accounts: usize) -> SandboxConfig {
    SandboxConfig {
        fleet_size: 40,
        speed: 600.0,
        accounts,
        ..SandboxConfig::default()
    }
}

fn prod_targets() -> Target {
    Target::builder().key("tag:Env").values("prod").build()
}

#[tokio::test]
async fn exclude_accounts_is_checked_and_leaves_an_account_or_a_whole_unit_out() {
    let (_sb, url) = standalone_sandbox(config(4)).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let accounts = sandbox::account_ids(4);
    let start = |location: TargetLocation| {
        ssm.start_automation_execution()
            .document_name(shared::RUNBOOK)
            .parameters("EnforceIMDSv2", vec!["required".to_owned()])
            .target_parameter_name("InstanceId")
            .targets(prod_targets())
            .target_locations(location)
            .send()
    };
    // The whole organisation but the Workloads unit and one more account: only the root's own
    // account is left.
    let location = TargetLocation::builder()
        .accounts("r-sand")
        .include_child_organization_units(true)
        .regions("us-east-1")
        .exclude_accounts("ou-sand-workloads")
        .exclude_accounts(&accounts[2])
        .build();
    let id = start(location)
        .await
        .expect("started")
        .automation_execution_id()
        .unwrap()
        .to_owned();
    let ex = e2e::ssm_execution(&ssm, &id).await;
    let places: BTreeSet<String> = ex
        .step_executions()
        .iter()
        .filter_map(|s| s.target_location())
        .flat_map(|l| l.accounts().to_vec())
        .collect();
    assert_eq!(places, BTreeSet::from([accounts[0].clone()]), "{ex:?}");
    // An exclusion that is neither an account ID nor an OU ID, and an empty list, are refused.
    for bad in [vec!["r-sand".to_owned()], vec!["12345".to_owned()], vec![]] {
        let location = TargetLocation::builder()
            .accounts(&accounts[0])
            .regions("us-east-1")
            .set_exclude_accounts(Some(bad.clone()))
            .build();
        let err = start(location).await.expect_err("refused");
        assert_eq!(
            aws_sdk_ssm::error::ProvideErrorMetadata::code(&err),
            Some("ValidationException"),
            "{bad:?}: {err:?}"
        );
    }
}

/// Each call sends what the model refuses, with botocore's own checks off so the request reaches
/// the sandbox as a client that skips them would send it.
const BOTO3: &str = r#"
import json, os, sys
try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError:
    sys.exit("boto3 is missing: ./x.sh test installs it (pip install boto3)")
kw = dict(endpoint_url=os.environ["SANDBOX"], region_name="us-east-1",
          aws_access_key_id="AKIDBOTO3", aws_secret_access_key="secret",
          config=Config(parameter_validation=False))
ssm = boto3.client("ssm", **kw)
account = os.environ["ACCOUNT"]
out = {}
def start(name, **extra):
    req = dict(DocumentName="AWSSupport-ConfigureEC2Metadata", Parameters={"EnforceIMDSv2": ["required"]},
               TargetParameterName="InstanceId", Targets=[{"Key": "tag:Env", "Values": ["prod"]}])
    req.update(extra)
    try:
        ssm.start_automation_execution(**req)
        out[name] = "accepted"
    except ClientError as e:
        out[name] = e.response["Error"]["Code"]
def loc(**extra):
    l = {"Accounts": [account], "Regions": ["us-east-1"]}
    l.update(extra)
    return [l]
start("role_pattern", TargetLocations=loc(ExecutionRoleName="bad role!"))
start("role_long", TargetLocations=loc(ExecutionRoleName="r" * 65))
start("region_unknown", TargetLocations=loc(Regions=["mars-north-9"]))
start("region_case", TargetLocations=loc(Regions=["US-EAST-1"]))
start("location_concurrency_long", TargetLocations=loc(TargetLocationMaxConcurrency="10000000"))
start("location_errors_long", TargetLocations=loc(TargetLocationMaxErrors="10000000"))
start("targets_concurrency_long", TargetLocations=loc(TargetsMaxConcurrency="10000000"))
start("targets_errors_long", TargetLocations=loc(TargetsMaxErrors="10000000"))
start("concurrency_long", MaxConcurrency="10000000")
start("errors_long", MaxErrors="10000000")
start("mode", Mode="Bogus")
start("interactive", Mode="Interactive")
start("tag_without_value", Tags=[{"Key": "team"}])
start("blank_alarm", AlarmConfiguration={"Alarms": [{"Name": "   "}]})
start("locations_url", TargetLocationsURL="https://bucket.s3.amazonaws.com/locations.json")
start("ok_auto_empty_tag", Mode="Auto", Tags=[{"Key": "team", "Value": ""}],
      TargetLocations=loc(ExecutionRoleName="AWS-SystemsManager-AutomationExecutionRole", Regions=["ap-south-1"]))
print(json.dumps(out))
"#;

#[tokio::test]
async fn start_refuses_what_the_model_bounds_as_boto3_sends_it() {
    let (_sb, url) = standalone_sandbox(config(2)).await;
    let account = sandbox::account_ids(2)[1].clone();
    let sandbox_url = url.clone();
    // On a blocking thread: the sandbox answers boto3 from this test's runtime meanwhile.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", BOTO3])
            .env("SANDBOX", &sandbox_url)
            .env("ACCOUNT", &account)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (call, code) in [
        ("role_pattern", "ValidationException"),
        ("role_long", "ValidationException"),
        ("region_unknown", "InvalidTarget"),
        ("region_case", "InvalidTarget"),
        ("location_concurrency_long", "ValidationException"),
        ("location_errors_long", "ValidationException"),
        ("targets_concurrency_long", "ValidationException"),
        ("targets_errors_long", "ValidationException"),
        ("concurrency_long", "ValidationException"),
        ("errors_long", "ValidationException"),
        ("mode", "ValidationException"),
        ("interactive", "InvalidAutomationExecutionParametersException"),
        ("tag_without_value", "ValidationException"),
        ("blank_alarm", "ValidationException"),
        ("locations_url", "InvalidAutomationExecutionParametersException"),
        ("ok_auto_empty_tag", "accepted"),
    ] {
        assert_eq!(read[call], code, "{call}: {read}");
    }
}

#[tokio::test]
async fn a_reused_client_token_with_other_locations_tags_or_alarms_is_a_mismatch() {
    let (_sb, url) = standalone_sandbox(config(2)).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let accounts = sandbox::account_ids(2);
    let token = "6d0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
    let start = |account: &str, tag: &str, alarm: &str| {
        ssm.start_automation_execution()
            .document_name(shared::RUNBOOK)
            .parameters("EnforceIMDSv2", vec!["required".to_owned()])
            .target_parameter_name("InstanceId")
            .targets(prod_targets())
            .target_locations(
                TargetLocation::builder()
                    .accounts(account)
                    .regions("us-east-1")
                    .build(),
            )
            .tags(
                aws_sdk_ssm::types::Tag::builder()
                    .key("team")
                    .value(tag)
                    .build()
                    .unwrap(),
            )
            .alarm_configuration(
                aws_sdk_ssm::types::AlarmConfiguration::builder()
                    .alarms(aws_sdk_ssm::types::Alarm::builder().name(alarm).build().unwrap())
                    .build()
                    .unwrap(),
            )
            .client_token(token)
            .send()
    };
    let first = start(&accounts[0], "a", "imds-v1-calls").await.unwrap();
    let again = start(&accounts[0], "a", "imds-v1-calls").await.unwrap();
    assert_eq!(first.automation_execution_id(), again.automation_execution_id());
    for (account, tag, alarm) in [
        (&accounts[1], "a", "imds-v1-calls"),
        (&accounts[0], "b", "imds-v1-calls"),
        (&accounts[0], "a", "other-alarm"),
    ] {
        let err = start(account, tag, alarm).await.expect_err("a mismatch");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_idempotent_parameter_mismatch()),
            "{account} {tag} {alarm}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_location_s_child_runs_under_arns_of_the_sandbox_s_partition() {
    let (_sb, url) = standalone_sandbox(SandboxConfig {
        partition: "aws-us-gov".to_owned(),
        regions: sandbox::default_regions("aws-us-gov"),
        ..config(2)
    })
    .await;
    let conf = sdk_config(&url, "us-gov-west-1", 1).await;
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let member = sandbox::account_ids(2)[1].clone();
    let id = ssm
        .start_automation_execution()
        .document_name(shared::RUNBOOK)
        .parameters("EnforceIMDSv2", vec!["required".to_owned()])
        .target_parameter_name("InstanceId")
        .targets(prod_targets())
        .target_locations(
            TargetLocation::builder()
                .accounts(&member)
                .regions("us-gov-west-1")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .automation_execution_id()
        .unwrap()
        .to_owned();
    // The location's step starts its child on the engine's next tick.
    let mut child = None;
    for _ in 0..100 {
        let parent = e2e::ssm_execution(&ssm, &id).await;
        assert!(
            parent
                .executed_by()
                .is_some_and(|a| a.starts_with("arn:aws-us-gov:sts::")),
            "{parent:?}"
        );
        child = parent.step_executions()[0]
            .outputs()
            .and_then(|o| o.get("ExecutionId"))
            .and_then(|v| v.first())
            .cloned();
        if child.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let child = child.expect("the location's child started");
    let creds = aws_sdk_sts::Client::new(&conf)
        .assume_role()
        .role_arn(format!("arn:aws-us-gov:iam::{member}:role/ImdsConsoleMember"))
        .role_session_name("partition-test")
        .send()
        .await
        .unwrap()
        .credentials()
        .unwrap()
        .clone();
    let member_conf = conf
        .to_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(
                creds.access_key_id(),
                creds.secret_access_key(),
                Some(creds.session_token().to_owned()),
                None,
                "assumed",
            ),
        ))
        .build();
    let theirs = aws_sdk_ssm::Client::new(&member_conf)
        .get_automation_execution()
        .automation_execution_id(&child)
        .send()
        .await
        .unwrap()
        .automation_execution()
        .cloned()
        .unwrap();
    assert_eq!(
        theirs.executed_by(),
        Some(
            format!("arn:aws-us-gov:sts::{member}:assumed-role/AWS-SystemsManager-AutomationExecutionRole/Automation")
                .as_str()
        ),
        "{theirs:?}"
    );
}

#[tokio::test]
async fn a_location_its_alarm_stopped_is_counted_in_its_parent_s_failure_message() {
    let (sb, url) = standalone_sandbox(config(2)).await;
    sb.set_faults(sandbox::Faults {
        alarms_in_alarm: ["imds-refusals".to_owned()].into(),
        ..sandbox::Faults::default()
    });
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let member = sandbox::account_ids(2)[1].clone();
    let id = ssm
        .start_automation_execution()
        .document_name(shared::RUNBOOK)
        .parameters("EnforceIMDSv2", vec!["required".to_owned()])
        .target_parameter_name("InstanceId")
        .targets(prod_targets())
        .target_locations(
            TargetLocation::builder()
                .accounts(&member)
                .regions("us-east-1")
                .target_location_alarm_configuration(
                    aws_sdk_ssm::types::AlarmConfiguration::builder()
                        .alarms(
                            aws_sdk_ssm::types::Alarm::builder()
                                .name("imds-refusals")
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .automation_execution_id()
        .unwrap()
        .to_owned();
    let mut last = None;
    for _ in 0..200 {
        let ex = e2e::ssm_execution(&ssm, &id).await;
        let status = ex.automation_execution_status().unwrap().as_str().to_owned();
        if !matches!(status.as_str(), "Pending" | "InProgress" | "Cancelling") {
            last = Some(ex);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ex = last.expect("the run ended");
    assert_eq!(
        ex.step_executions()[0].step_status().unwrap().as_str(),
        "Cancelled",
        "{ex:?}"
    );
    assert_eq!(
        ex.automation_execution_status().unwrap().as_str(),
        "Failed",
        "{ex:?}"
    );
    assert_eq!(
        ex.failure_message(),
        Some("0 of 1 child executions failed and 1 was cancelled (MaxErrors 0)."),
        "{ex:?}"
    );
}

#[tokio::test]
async fn every_arn_the_sandbox_gives_out_names_its_partition() {
    let (sb, url) = standalone_sandbox(SandboxConfig {
        partition: "aws-cn".to_owned(),
        ..config(2)
    })
    .await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let mut arns: Vec<String> = Vec::new();
    let orgs = aws_sdk_organizations::Client::new(&conf);
    let org = orgs.describe_organization().send().await.unwrap();
    arns.extend(org.organization().and_then(|o| o.arn()).map(str::to_owned));
    let accounts = orgs.list_accounts().send().await.unwrap();
    arns.extend(
        accounts
            .accounts()
            .iter()
            .filter_map(|a| a.arn())
            .map(str::to_owned),
    );
    let units = orgs
        .list_organizational_units_for_parent()
        .parent_id("r-sand")
        .send()
        .await
        .unwrap();
    arns.extend(
        units
            .organizational_units()
            .iter()
            .filter_map(|u| u.arn())
            .map(str::to_owned),
    );
    let groups = aws_sdk_autoscaling::Client::new(&conf)
        .describe_auto_scaling_groups()
        .send()
        .await
        .unwrap();
    arns.extend(
        groups
            .auto_scaling_groups()
            .iter()
            .filter_map(|g| g.auto_scaling_group_arn())
            .map(str::to_owned),
    );
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let templates = ec2.describe_launch_templates().send().await.unwrap();
    arns.extend(
        templates
            .launch_templates()
            .iter()
            .filter_map(|t| t.created_by())
            .map(str::to_owned),
    );
    let versions = ec2
        .describe_launch_template_versions()
        .launch_template_id(templates.launch_templates()[0].launch_template_id().unwrap())
        .send()
        .await
        .unwrap();
    arns.extend(
        versions
            .launch_template_versions()
            .iter()
            .filter_map(|v| v.created_by())
            .map(str::to_owned),
    );
    // A refusal names the caller as STS does.
    sb.set_faults(sandbox::Faults {
        deny: ["ssm:DescribeAutomationExecutions".to_owned()].into(),
        ..sandbox::Faults::default()
    });
    let refused = aws_sdk_ssm::Client::new(&conf)
        .describe_automation_executions()
        .send()
        .await
        .unwrap_err();
    let message = refused
        .as_service_error()
        .and_then(|e| e.meta().message())
        .unwrap()
        .to_owned();
    assert!(
        message.contains("User: arn:aws-cn:sts::") && message.contains("on resource: arn:aws-cn:ssm:"),
        "{message}"
    );
    assert!(arns.len() >= 8, "{arns:?}");
    for arn in &arns {
        assert!(arn.starts_with("arn:aws-cn:"), "{arn} in {arns:?}");
    }
}

#[tokio::test]
async fn a_location_s_own_targets_are_bounded_as_the_run_s_and_answered_with_its_step() {
    let (_sb, url) = standalone_sandbox(config(2)).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let member = sandbox::account_ids(2)[1].clone();
    let start = |targets: Vec<Target>| {
        ssm.start_automation_execution()
            .document_name(shared::RUNBOOK)
            .parameters("EnforceIMDSv2", vec!["required".to_owned()])
            .target_parameter_name("InstanceId")
            .targets(prod_targets())
            .target_locations(
                TargetLocation::builder()
                    .accounts(&member)
                    .regions("us-east-1")
                    .set_targets(Some(targets))
                    .build(),
            )
            .send()
    };
    let ids = |n: usize| -> Vec<String> { (0..n).map(|k| format!("i-0{k:016x}")).collect() };
    let by_id = |n: usize| {
        Target::builder()
            .key("ParameterValues")
            .set_values(Some(ids(n)))
            .build()
    };
    // The model's AutomationTargets: at most one Target, at most 50 values.
    for bad in [vec![by_id(51)], vec![by_id(1), prod_targets()]] {
        let err = start(bad).await.expect_err("refused");
        assert_eq!(
            aws_sdk_ssm::error::ProvideErrorMetadata::code(&err),
            Some("ValidationException"),
            "{err:?}"
        );
    }
    let id = start(vec![by_id(2)])
        .await
        .expect("started")
        .automation_execution_id()
        .unwrap()
        .to_owned();
    let ex = e2e::ssm_execution(&ssm, &id).await;
    let location = ex.step_executions()[0].target_location().expect("its place");
    assert_eq!(location.targets()[0].values(), ids(2).as_slice(), "{ex:?}");
}
