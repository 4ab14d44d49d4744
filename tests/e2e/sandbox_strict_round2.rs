//! The sandbox against the outside attack on issue 28, through the real aws-sdk clients: nested
//! organizational units that SSM reaches only with IncludeChildOrganizationUnits, what it does with
//! the inactive accounts under a unit (a fault choice), and the other places the sandbox was kinder
//! than AWS.

use aws_sdk_ssm::types::{Target, TargetLocation};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use e2e::{sdk_config, standalone_sandbox};
use sandbox::{Faults, InactiveAccounts, SandboxConfig};
use std::collections::BTreeSet;
use std::time::Duration;

fn config(accounts: usize) -> SandboxConfig {
    SandboxConfig {
        fleet_size: 40,
        speed: 600.0,
        accounts,
        ..SandboxConfig::default()
    }
}

/// A run of the runbook on every `Env=prod` instance of `location`.
async fn start_in(ssm: &aws_sdk_ssm::Client, location: TargetLocation) -> String {
    ssm.start_automation_execution()
        .document_name(shared::RUNBOOK)
        .parameters("EnforceIMDSv2", vec!["required".to_owned()])
        .target_parameter_name("InstanceId")
        .targets(Target::builder().key("tag:Env").values("prod").build())
        .target_locations(location)
        .send()
        .await
        .expect("started")
        .automation_execution_id()
        .unwrap()
        .to_owned()
}

/// The execution once it has ended.
async fn ended(ssm: &aws_sdk_ssm::Client, id: &str) -> aws_sdk_ssm::types::AutomationExecution {
    for _ in 0..400 {
        let ex = e2e::ssm_execution(ssm, id).await;
        let status = ex.automation_execution_status().unwrap().as_str().to_owned();
        if !matches!(
            status.as_str(),
            "Pending" | "InProgress" | "Cancelling" | "Waiting"
        ) {
            return ex;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} did not end");
}

/// The accounts of a TargetLocations run's location steps.
fn location_accounts(ex: &aws_sdk_ssm::types::AutomationExecution) -> BTreeSet<String> {
    ex.step_executions()
        .iter()
        .filter_map(|s| s.target_location())
        .flat_map(|l| l.accounts().to_vec())
        .collect()
}

#[tokio::test]
async fn units_nest_and_ssm_walks_a_units_children_only_when_asked_to() {
    let (_sb, url) = standalone_sandbox(config(4)).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let accounts = sandbox::account_ids(4);
    // Organizations: Workloads holds member-1 and the unit Production, which holds member-3.
    let orgs = aws_sdk_organizations::Client::new(&conf);
    let children = orgs
        .list_organizational_units_for_parent()
        .parent_id("ou-sand-workloads")
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = children
        .organizational_units()
        .iter()
        .filter_map(|u| u.id())
        .collect();
    assert_eq!(ids, ["ou-sand-production"]);
    let direct = |parent: &'static str| {
        let orgs = orgs.clone();
        async move {
            orgs.list_accounts_for_parent()
                .parent_id(parent)
                .send()
                .await
                .unwrap()
                .accounts()
                .iter()
                .filter(|a| a.state().map(|s| s.as_str()) == Some("ACTIVE"))
                .filter_map(|a| a.id().map(str::to_owned))
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(direct("ou-sand-workloads").await, [accounts[1].clone()]);
    assert_eq!(direct("ou-sand-production").await, [accounts[3].clone()]);

    // SSM: the unit alone reaches member-1; with its children, member-3 too.
    let ssm = aws_sdk_ssm::Client::new(&conf);
    for (include_children, expected) in [
        (false, vec![accounts[1].clone()]),
        (true, vec![accounts[1].clone(), accounts[3].clone()]),
    ] {
        let location = TargetLocation::builder()
            .accounts("ou-sand-workloads")
            .regions("us-east-1")
            .target_location_max_errors("100%")
            .include_child_organization_units(include_children)
            .build();
        let ex = ended(&ssm, &start_in(&ssm, location).await).await;
        assert_eq!(
            location_accounts(&ex),
            expected.into_iter().collect::<BTreeSet<_>>(),
            "IncludeChildOrganizationUnits={include_children}: {ex:?}"
        );
    }
}

#[tokio::test]
async fn an_inactive_account_under_a_unit_is_skipped_or_fails_its_location_as_the_faults_say() {
    // The suspended member sits in Production, under Workloads.
    let (sb, url) = standalone_sandbox(config(4)).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let accounts = sandbox::account_ids(4);
    let location = || {
        TargetLocation::builder()
            .accounts("ou-sand-workloads")
            .include_child_organization_units(true)
            .regions("us-east-1")
            .target_location_max_concurrency("3")
            .target_location_max_errors("100%")
            .build()
    };
    let ex = ended(&ssm, &start_in(&ssm, location()).await).await;
    assert_eq!(
        location_accounts(&ex),
        BTreeSet::from([accounts[1].clone(), accounts[3].clone()]),
        "skipped by default: {ex:?}"
    );
    sb.set_faults(Faults {
        inactive_accounts: InactiveAccounts::FailLocation,
        ..Faults::default()
    });
    let ex = ended(&ssm, &start_in(&ssm, location()).await).await;
    let suspended = ex
        .step_executions()
        .iter()
        .find(|s| {
            s.target_location()
                .is_some_and(|l| l.accounts() == ["299999999991"])
        })
        .unwrap_or_else(|| panic!("a location for the suspended account: {ex:?}"));
    assert_eq!(suspended.step_status().unwrap().as_str(), "Failed", "{ex:?}");
}

/// A budget of one call per action, refilled at `refill` a second, for every EC2 action.
fn one_call_budget(refill: f64) -> sandbox::Ec2RequestBudget {
    let bucket = sandbox::TokenBucket {
        capacity: 1.0,
        refill_per_second: refill,
    };
    sandbox::Ec2RequestBudget {
        enabled: true,
        non_mutating: bucket,
        mutating: bucket,
    }
}

/// A running instance of the management account in us-east-1 (read before the budget is lowered).
async fn running_instance(ec2: &aws_sdk_ec2::Client) -> String {
    let found = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .unwrap();
    found.reservations()[0].instances()[0]
        .instance_id()
        .unwrap()
        .to_owned()
}

/// A run of the runbook on one instance, in the caller's own account and Region.
async fn start_on(ssm: &aws_sdk_ssm::Client, instance: &str) -> String {
    ssm.start_automation_execution()
        .document_name(shared::RUNBOOK)
        .parameters("InstanceId", vec![instance.to_owned()])
        .parameters("EnforceIMDSv2", vec!["required".to_owned()])
        .send()
        .await
        .expect("started")
        .automation_execution_id()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_runbooks_ec2_calls_spend_the_accounts_budget_and_a_throttled_step_fails_by_default() {
    let (sb, url) = standalone_sandbox(config(1)).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let instance = running_instance(&ec2).await;
    sb.set_faults(Faults {
        ec2_request_budget: one_call_budget(0.01),
        ..Faults::default()
    });
    // The run's first DescribeInstances takes the bucket's one token; its next ones are throttled,
    // and each attempt of the step fails on it.
    let ex = ended(&ssm, &start_on(&ssm, &instance).await).await;
    assert_eq!(
        ex.automation_execution_status().unwrap().as_str(),
        "Failed",
        "{ex:?}"
    );
    assert!(
        ex.step_executions()
            .iter()
            .any(|s| s.failure_message().is_some_and(
                |m| m.contains("(RequestLimitExceeded) when calling the DescribeInstances operation")
            )),
        "{ex:?}"
    );
    // The console's own call finds the bucket the run spent.
    let refused = ec2.describe_instances().send().await.unwrap_err();
    assert_eq!(
        refused.as_service_error().and_then(|e| e.meta().code()),
        Some("RequestLimitExceeded"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_throttled_step_can_retry_inside_the_step_until_ec2_takes_the_call() {
    let (sb, url) = standalone_sandbox(config(1)).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let instance = running_instance(&ec2).await;
    let faults = Faults {
        ec2_request_budget: one_call_budget(0.01),
        ec2_throttled_step: sandbox::Ec2ThrottledStep::RetryInStep,
        ..Faults::default()
    };
    sb.set_faults(faults.clone());
    let id = start_on(&ssm, &instance).await;
    // Sandbox minutes go by (600 a real second): the run waits on EC2, no attempt is spent.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let ex = e2e::ssm_execution(&ssm, &id).await;
    assert_eq!(
        ex.automation_execution_status().unwrap().as_str(),
        "InProgress",
        "{ex:?}"
    );
    // Once the buckets refill, the same step goes on and the run ends well.
    sb.set_faults(Faults {
        ec2_request_budget: one_call_budget(1_000.0),
        ..faults
    });
    let ex = ended(&ssm, &id).await;
    assert_eq!(
        ex.automation_execution_status().unwrap().as_str(),
        "Success",
        "{ex:?}"
    );
}

/// The code of an SDK error.
fn code_of<E: ProvideErrorMetadata>(err: &E) -> String {
    err.code().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_role_or_region_of_another_partition_cannot_be_used_in_a_start() {
    let assume =
        |partition: &str| format!("arn:{partition}:iam::{}:role/ImdsAutomation", sandbox::ACCOUNT_ID);
    for (played, region, foreign) in [
        ("aws", "us-east-1", vec!["aws-us-gov", "aws-cn"]),
        ("aws-us-gov", "us-gov-west-1", vec!["aws", "aws-cn"]),
    ] {
        let (_sb, url) = standalone_sandbox(SandboxConfig {
            partition: played.to_owned(),
            regions: sandbox::default_regions(played),
            ..config(2)
        })
        .await;
        let conf = sdk_config(&url, region, 1).await;
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let ssm = aws_sdk_ssm::Client::new(&conf);
        let instance = running_instance(&ec2).await;
        let start_as = |role: String| {
            ssm.start_automation_execution()
                .document_name(shared::RUNBOOK)
                .parameters("InstanceId", vec![instance.clone()])
                .parameters("EnforceIMDSv2", vec!["required".to_owned()])
                .parameters("AutomationAssumeRole", vec![role])
                .send()
        };
        for other in foreign {
            let refused = start_as(assume(other)).await.unwrap_err();
            let refused = refused.into_service_error();
            assert_eq!(
                code_of(&refused),
                "InvalidAutomationExecutionParametersException",
                "{played} sandbox, {other} role: {refused:?}"
            );
            assert_eq!(
                refused.meta().message(),
                Some("The defined assume role is unable to be assumed."),
                "{refused:?}"
            );
        }
        start_as(assume(played))
            .await
            .expect("a role of its own partition is taken");
    }

    // A GovCloud start may name GovCloud Regions only.
    let (_sb, url) = standalone_sandbox(SandboxConfig {
        partition: "aws-us-gov".to_owned(),
        regions: sandbox::default_regions("aws-us-gov"),
        ..config(2)
    })
    .await;
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(&url, "us-gov-west-1", 1).await);
    let member = sandbox::account_ids(2)[1].clone();
    let in_regions = |regions: &[&str]| {
        let mut location = TargetLocation::builder().accounts(&member);
        for r in regions {
            location = location.regions(*r);
        }
        ssm.start_automation_execution()
            .document_name(shared::RUNBOOK)
            .parameters("EnforceIMDSv2", vec!["required".to_owned()])
            .target_parameter_name("InstanceId")
            .targets(Target::builder().key("tag:Env").values("prod").build())
            .target_locations(location.build())
            .send()
    };
    for regions in [&["us-gov-west-1", "us-east-1"][..], &["cn-north-1"][..]] {
        let refused = in_regions(regions).await.unwrap_err().into_service_error();
        assert_eq!(code_of(&refused), "InvalidTarget", "{regions:?}: {refused:?}");
        assert!(
            refused
                .meta()
                .message()
                .unwrap_or_default()
                .contains("aws-us-gov partition"),
            "{refused:?}"
        );
    }
    in_regions(&["us-gov-west-1", "us-gov-east-1"])
        .await
        .expect("GovCloud Regions are taken");
}

#[tokio::test]
async fn a_start_may_not_give_a_tag_key_twice() {
    let (_sb, url) = standalone_sandbox(config(1)).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let instance = running_instance(&aws_sdk_ec2::Client::new(&conf)).await;
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let tag = |value: &str| {
        aws_sdk_ssm::types::Tag::builder()
            .key("team")
            .value(value)
            .build()
            .unwrap()
    };
    let start = |tags: Vec<aws_sdk_ssm::types::Tag>| {
        ssm.start_automation_execution()
            .document_name(shared::RUNBOOK)
            .parameters("InstanceId", vec![instance.clone()])
            .parameters("EnforceIMDSv2", vec!["required".to_owned()])
            .set_tags(Some(tags))
            .send()
    };
    let refused = start(vec![tag("a"), tag("b")])
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code_of(&refused), "ValidationException", "{refused:?}");
    assert!(
        refused.meta().message().unwrap_or_default().contains("team"),
        "{refused:?}"
    );
    start(vec![tag("a")]).await.expect("one tag per key is taken");
}
