//! The sandbox driven by the real aws-sdk clients: runbook paths step by step as the published document
//! defines them, rate control, paging, idempotency, faults and every error code as the SDK types it.

use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::{AutomationExecutionStatus, Target};
use e2e::{sdk_config, standalone_sandbox};
use sandbox::{Faults, SandboxConfig};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const DOC: &str = "AWSSupport-ConfigureEC2Metadata";

fn fast(fleet: usize) -> SandboxConfig {
    SandboxConfig {
        fleet_size: fleet,
        speed: 600.0,
        ..SandboxConfig::default()
    }
}

struct Env {
    sb: sandbox::Sandbox,
    ssm: aws_sdk_ssm::Client,
    ec2: aws_sdk_ec2::Client,
}

async fn env(config: SandboxConfig) -> Env {
    let (sb, url) = standalone_sandbox(config).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    Env {
        sb,
        ssm: aws_sdk_ssm::Client::new(&conf),
        ec2: aws_sdk_ec2::Client::new(&conf),
    }
}

/// Running instances of us-east-1 with the given HttpTokens.
async fn running(ec2: &aws_sdk_ec2::Client, tokens: &str) -> Vec<String> {
    let out = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("metadata-options.http-tokens")
                .values(tokens)
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("metadata-options.http-endpoint")
                .values("enabled")
                .build(),
        )
        .send()
        .await
        .expect("describe");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect()
}

fn params(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
        .collect()
}

async fn wait(ssm: &aws_sdk_ssm::Client, id: &str) -> aws_sdk_ssm::types::AutomationExecution {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = ssm
            .get_automation_execution()
            .automation_execution_id(id)
            .send()
            .await
            .expect("get");
        let ex = out.automation_execution().expect("execution").clone();
        let status = ex.automation_execution_status().expect("status").clone();
        if !matches!(
            status,
            AutomationExecutionStatus::Inprogress
                | AutomationExecutionStatus::Pending
                | AutomationExecutionStatus::Cancelling
        ) {
            return ex;
        }
        assert!(Instant::now() < deadline, "execution {id} did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn step_names(ex: &aws_sdk_ssm::types::AutomationExecution) -> Vec<String> {
    ex.step_executions()
        .iter()
        .map(|s| s.step_name().unwrap_or_default().to_owned())
        .collect()
}

async fn metadata(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> aws_sdk_ec2::types::InstanceMetadataOptionsResponse {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("describe");
    out.reservations()[0].instances()[0]
        .metadata_options()
        .expect("metadata")
        .clone()
}

#[tokio::test]
async fn enforce_with_hop_limit_zero_follows_path_a_and_keeps_the_limit() {
    let e = env(fast(20)).await;
    let id = running(&e.ec2, "optional").await.remove(0);
    let before = metadata(&e.ec2, &id).await;
    let exec = e
        .ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[
            ("InstanceId", &id),
            ("EnforceIMDSv2", "required"),
        ])))
        .send()
        .await
        .expect("start");
    let ex = wait(&e.ssm, exec.automation_execution_id().unwrap()).await;
    assert_eq!(
        ex.automation_execution_status(),
        Some(&AutomationExecutionStatus::Success)
    );
    assert_eq!(
        step_names(&ex),
        [
            "branchOnMetadataAccess",
            "branchOnHttpPutResponseHopLimit",
            "maintainHopLimitAndConfigureImdsVersion",
            "waitBeforeAssertingIMDSv2State",
            "branchOnIMDSv2Option",
            "assertIMDSv2IsEnforced",
            "describeMetadataOptions"
        ]
    );
    let actions: Vec<&str> = ex.step_executions().iter().map(|s| s.action().unwrap()).collect();
    assert_eq!(actions[3], "aws:sleep");
    let after = metadata(&e.ec2, &id).await;
    assert_eq!(after.http_tokens().unwrap().as_str(), "required");
    assert_eq!(
        after.http_put_response_hop_limit(),
        before.http_put_response_hop_limit()
    );
    // Resolved parameters include the document's defaults, as SSM reports them.
    let p = ex.parameters().unwrap();
    assert_eq!(p["HttpPutResponseHopLimit"], ["0"]);
    assert_eq!(p["MetadataAccess"], ["enabled"]);
    assert_eq!(
        ex.outputs().unwrap()["describeMetadataOptions.IMDSv2"],
        ["required"]
    );
    // Every step moved through its states and has times.
    for s in ex.step_executions() {
        assert_eq!(
            s.step_status().unwrap().as_str(),
            "Success",
            "{:?}",
            s.step_name()
        );
        assert!(s.execution_start_time().is_some() && s.execution_end_time().is_some());
    }
}

#[tokio::test]
async fn enforce_with_a_hop_limit_follows_path_b_and_sets_it() {
    let e = env(fast(20)).await;
    let id = running(&e.ec2, "optional").await.remove(0);
    let exec = e
        .ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[
            ("InstanceId", &id),
            ("EnforceIMDSv2", "required"),
            ("HttpPutResponseHopLimit", "5"),
        ])))
        .send()
        .await
        .expect("start");
    let ex = wait(&e.ssm, exec.automation_execution_id().unwrap()).await;
    assert_eq!(
        ex.automation_execution_status(),
        Some(&AutomationExecutionStatus::Success)
    );
    assert_eq!(
        step_names(&ex),
        [
            "branchOnMetadataAccess",
            "branchOnHttpPutResponseHopLimit",
            "setHopLimitAndConfigureImdsVersion",
            "castHttpPutResponseHopLimit",
            "waitBeforeAssertingHopLimit",
            "assertHopLimit",
            "branchOnIMDSv2Option",
            "assertIMDSv2IsEnforced",
            "describeMetadataOptions"
        ]
    );
    let cast = &ex.step_executions()[3];
    assert_eq!(cast.action(), Some("aws:executeScript"));
    assert_eq!(cast.outputs().unwrap()["HttpPutResponseHopLimitString"], ["5"]);
    assert_eq!(metadata(&e.ec2, &id).await.http_put_response_hop_limit(), Some(5));
    assert_eq!(
        ex.outputs().unwrap()["describeMetadataOptions.HttpPutResponseHopLimit"],
        ["5"]
    );
}

#[tokio::test]
async fn disabling_metadata_follows_path_c_and_ignores_the_rest() {
    let e = env(fast(20)).await;
    let id = running(&e.ec2, "optional").await.remove(0);
    let exec = e
        .ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[
            ("InstanceId", &id),
            ("MetadataAccess", "disabled"),
            ("EnforceIMDSv2", "required"),
        ])))
        .send()
        .await
        .expect("start");
    let ex = wait(&e.ssm, exec.automation_execution_id().unwrap()).await;
    assert_eq!(
        ex.automation_execution_status(),
        Some(&AutomationExecutionStatus::Success)
    );
    assert_eq!(
        step_names(&ex),
        [
            "branchOnMetadataAccess",
            "disableMetadataAccess",
            "waitBeforeAssertingMetadataState",
            "assertMetadataIsDisabled",
            "describeMetadataOptions"
        ]
    );
    let md = metadata(&e.ec2, &id).await;
    assert_eq!(md.http_endpoint().unwrap().as_str(), "disabled");
    assert_eq!(
        md.http_tokens().unwrap().as_str(),
        "optional",
        "disabled ignores EnforceIMDSv2"
    );
    // A fresh change is pending until EC2 applies it; omitted fields keep their values.
    let out = e
        .ec2
        .modify_instance_metadata_options()
        .instance_id(&id)
        .http_tokens(aws_sdk_ec2::types::HttpTokensState::Required)
        .send()
        .await
        .unwrap();
    let opts = out.instance_metadata_options().unwrap();
    assert_eq!(opts.state().unwrap().as_str(), "pending");
    assert_eq!(opts.http_endpoint().unwrap().as_str(), "disabled");
}

#[tokio::test]
async fn a_change_that_never_takes_fails_the_assert_then_still_describes() {
    let e = env(fast(20)).await;
    let id = running(&e.ec2, "optional").await.remove(0);
    e.sb.set_faults(Faults {
        broken_instances: [id.clone()].into(),
        ..Faults::default()
    });
    let exec = e
        .ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[
            ("InstanceId", &id),
            ("EnforceIMDSv2", "required"),
        ])))
        .send()
        .await
        .expect("start");
    let ex = wait(&e.ssm, exec.automation_execution_id().unwrap()).await;
    // onFailure step:describeMetadataOptions goes on, and isCritical makes the run Failed.
    assert_eq!(
        ex.automation_execution_status(),
        Some(&AutomationExecutionStatus::Failed)
    );
    let names = step_names(&ex);
    assert_eq!(
        names[names.len() - 2..],
        ["assertIMDSv2IsEnforced", "describeMetadataOptions"]
    );
    let assert_step = &ex.step_executions()[names.len() - 2];
    assert_eq!(assert_step.step_status().unwrap().as_str(), "Failed");
    assert_eq!(
        assert_step.failure_details().unwrap().failure_type(),
        Some("Verification")
    );
    assert!(
        ex.failure_message().unwrap().contains("required"),
        "{:?}",
        ex.failure_message()
    );
}

#[tokio::test]
async fn the_config_remediation_runbook_runs_too() {
    let e = env(fast(20)).await;
    let id = running(&e.ec2, "optional").await.remove(0);
    let exec = e
        .ssm
        .start_automation_execution()
        .document_name("AWSConfigRemediation-EnforceEC2InstanceIMDSv2")
        .set_parameters(Some(params(&[
            ("InstanceId", &id),
            (
                "AutomationAssumeRole",
                "arn:aws:iam::123456789012:role/ImdsAutomation",
            ),
        ])))
        .send()
        .await
        .expect("start");
    let ex = wait(&e.ssm, exec.automation_execution_id().unwrap()).await;
    assert_eq!(
        ex.automation_execution_status(),
        Some(&AutomationExecutionStatus::Success)
    );
    assert_eq!(
        step_names(&ex),
        [
            "ModifyInstanceMetadataHopLimitBranch",
            "ModifyInstanceMetadataOptionsNoEditHop",
            "GetInstanceMetadataOptions",
            "VerifyEC2IMDSv2Enforced"
        ]
    );
    assert_eq!(
        metadata(&e.ec2, &id).await.http_tokens().unwrap().as_str(),
        "required"
    );
}

#[tokio::test]
async fn rate_control_never_exceeds_max_concurrency_and_runs_every_target() {
    let e = env(SandboxConfig {
        fleet_size: 60,
        speed: 300.0,
        ..SandboxConfig::default()
    })
    .await;
    let ids: Vec<String> = running(&e.ec2, "optional").await.into_iter().take(6).collect();
    assert_eq!(ids.len(), 6);
    let exec = e
        .ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[("EnforceIMDSv2", "required")])))
        .target_parameter_name("InstanceId")
        .targets(
            Target::builder()
                .key("ParameterValues")
                .set_values(Some(ids.clone()))
                .build(),
        )
        .max_concurrency("2")
        .max_errors("0")
        .send()
        .await
        .expect("start");
    let parent = exec.automation_execution_id().unwrap().to_owned();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kids = e
            .ssm
            .describe_automation_executions()
            .filters(
                aws_sdk_ssm::types::AutomationExecutionFilter::builder()
                    .key(aws_sdk_ssm::types::AutomationExecutionFilterKey::ParentExecutionId)
                    .values(&parent)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("children");
        let running = kids
            .automation_execution_metadata_list()
            .iter()
            .filter(|k| k.automation_execution_status() == Some(&AutomationExecutionStatus::Inprogress))
            .count();
        peak = peak.max(running);
        let p = e
            .ssm
            .get_automation_execution()
            .automation_execution_id(&parent)
            .send()
            .await
            .unwrap();
        let status = p
            .automation_execution()
            .unwrap()
            .automation_execution_status()
            .unwrap()
            .clone();
        if status == AutomationExecutionStatus::Success {
            assert_eq!(kids.automation_execution_metadata_list().len(), 6);
            assert!(kids
                .automation_execution_metadata_list()
                .iter()
                .all(|k| k.parent_automation_execution_id() == Some(parent.as_str())));
            break;
        }
        assert_ne!(status, AutomationExecutionStatus::Failed);
        assert!(Instant::now() < deadline, "parent did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(peak <= 2, "{peak} children ran at once with MaxConcurrency 2");
    assert!(peak >= 1);
    let ex = wait(&e.ssm, &parent).await;
    assert!(ex
        .step_executions()
        .iter()
        .all(|s| s.action() == Some("aws:executeAutomation")));
    let steps: Vec<String> = step_names(&ex);
    assert_eq!(steps, ids, "one step per target, named after it");
    assert_eq!(ex.resolved_targets().unwrap().parameter_values(), ids.as_slice());
    for id in &ids {
        assert_eq!(
            metadata(&e.ec2, id).await.http_tokens().unwrap().as_str(),
            "required"
        );
    }
}

#[tokio::test]
async fn max_errors_stops_new_children_once_exceeded() {
    let e = env(SandboxConfig {
        fleet_size: 60,
        speed: 300.0,
        ..SandboxConfig::default()
    })
    .await;
    let ids: Vec<String> = running(&e.ec2, "optional").await.into_iter().take(6).collect();
    // The first two targets (run first, one at a time) are broken: the second failure exceeds MaxErrors 1.
    e.sb.set_faults(Faults {
        broken_instances: ids[..2].iter().cloned().collect(),
        ..Faults::default()
    });
    let exec = e
        .ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[("EnforceIMDSv2", "required")])))
        .target_parameter_name("InstanceId")
        .targets(
            Target::builder()
                .key("ParameterValues")
                .set_values(Some(ids.clone()))
                .build(),
        )
        .max_concurrency("1")
        .max_errors("1")
        .send()
        .await
        .expect("start");
    let ex = wait(&e.ssm, exec.automation_execution_id().unwrap()).await;
    assert_eq!(
        ex.automation_execution_status(),
        Some(&AutomationExecutionStatus::Failed)
    );
    let statuses: Vec<&str> = ex
        .step_executions()
        .iter()
        .map(|s| s.step_status().unwrap().as_str())
        .collect();
    assert_eq!(
        statuses,
        [
            "Failed",
            "Failed",
            "Cancelled",
            "Cancelled",
            "Cancelled",
            "Cancelled"
        ]
    );
    let counters = ex.progress_counters().unwrap();
    assert_eq!((counters.failed_steps(), counters.cancelled_steps()), (2, 4));
}

#[tokio::test]
async fn rate_control_by_tag_resolves_against_the_fleet() {
    let e = env(fast(40)).await;
    let exec = e
        .ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[("EnforceIMDSv2", "required")])))
        .target_parameter_name("InstanceId")
        .targets(Target::builder().key("tag:Team").values("web").build())
        .max_concurrency("50%")
        .max_errors("100%")
        .send()
        .await
        .expect("start");
    let ex = wait(&e.ssm, exec.automation_execution_id().unwrap()).await;
    let web = e
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:Team")
                .values("web")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut expected: Vec<String> = web
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(
        ex.resolved_targets().unwrap().parameter_values(),
        expected.as_slice()
    );
}

#[tokio::test]
async fn stopping_a_running_execution_and_a_parent_cancels_them() {
    // Slow enough that the 30-second sleep (10 s here) is still running when we stop.
    let e = env(SandboxConfig {
        fleet_size: 20,
        speed: 3.0,
        ..SandboxConfig::default()
    })
    .await;
    let ids = running(&e.ec2, "optional").await;
    let one = e
        .ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[("InstanceId", &ids[0])])))
        .send()
        .await
        .unwrap();
    let parent = e
        .ssm
        .start_automation_execution()
        .document_name(DOC)
        .target_parameter_name("InstanceId")
        .targets(
            Target::builder()
                .key("ParameterValues")
                .set_values(Some(ids[1..4].to_vec()))
                .build(),
        )
        .max_concurrency("1")
        .send()
        .await
        .unwrap();
    // Stop once both are running (not after a guessed delay); the 30-second sleep keeps them there.
    for id in [
        one.automation_execution_id().unwrap(),
        parent.automation_execution_id().unwrap(),
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = e
                .ssm
                .get_automation_execution()
                .automation_execution_id(id)
                .send()
                .await
                .expect("get");
            let status = out
                .automation_execution()
                .and_then(|x| x.automation_execution_status())
                .cloned();
            if status == Some(AutomationExecutionStatus::Inprogress) {
                break;
            }
            assert!(Instant::now() < deadline, "{id} never ran: {status:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for id in [
        one.automation_execution_id().unwrap(),
        parent.automation_execution_id().unwrap(),
    ] {
        e.ssm
            .stop_automation_execution()
            .automation_execution_id(id)
            .send()
            .await
            .expect("stop");
        let ex = wait(&e.ssm, id).await;
        assert_eq!(
            ex.automation_execution_status(),
            Some(&AutomationExecutionStatus::Cancelled),
            "{id}"
        );
        // A second stop is refused with SSM's own error.
        let err = e
            .ssm
            .stop_automation_execution()
            .automation_execution_id(id)
            .send()
            .await
            .unwrap_err();
        assert!(err
            .as_service_error()
            .unwrap()
            .is_invalid_automation_status_update_exception());
    }
}

#[tokio::test]
async fn describe_instances_pages_every_instance_exactly_once_at_ten_thousand() {
    let e = env(SandboxConfig {
        fleet_size: 10_000,
        regions: vec!["us-east-1".into()],
        ..SandboxConfig::default()
    })
    .await;
    let mut seen = std::collections::HashSet::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let out = e
            .ec2
            .describe_instances()
            .max_results(1000)
            .set_next_token(token.take())
            .send()
            .await
            .expect("page");
        pages += 1;
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            assert!(
                seen.insert(i.instance_id().unwrap().to_owned()),
                "duplicate {:?}",
                i.instance_id()
            );
        }
        match out.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10_000);
    assert_eq!(pages, 10);
    // Filters combine with paging.
    let out = e
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("metadata-options.http-tokens")
                .values("required")
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag-key")
                .values("Team")
                .build(),
        )
        .max_results(5)
        .send()
        .await
        .unwrap();
    let got: Vec<_> = out.reservations().iter().flat_map(|r| r.instances()).collect();
    assert_eq!(got.len(), 5);
    assert!(got
        .iter()
        .all(|i| i.metadata_options().unwrap().http_tokens().unwrap().as_str() == "required"));
}

#[tokio::test]
async fn a_client_token_makes_a_start_idempotent() {
    let e = env(fast(20)).await;
    let ids = running(&e.ec2, "optional").await;
    let token = "3f2a6a58-9e2b-4b8e-9d8c-0a1b2c3d4e5f";
    let start = |id: &str| {
        e.ssm
            .start_automation_execution()
            .document_name(DOC)
            .set_parameters(Some(params(&[("InstanceId", id)])))
            .client_token(token)
            .send()
    };
    let a = start(&ids[0]).await.unwrap();
    let b = start(&ids[0]).await.unwrap();
    assert_eq!(a.automation_execution_id(), b.automation_execution_id());
    let err = start(&ids[1]).await.unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_idempotent_parameter_mismatch(),
        "{err:?}"
    );
}

#[tokio::test]
async fn every_error_code_reaches_the_sdk_typed() {
    let e = env(fast(20)).await;
    let id = running(&e.ec2, "optional").await.remove(0);
    let ssm = &e.ssm;

    let err = ssm
        .start_automation_execution()
        .document_name("No-Such-Doc")
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_automation_definition_not_found_exception());

    for (name, value) in [
        ("HttpPutResponseHopLimit", "65"),
        ("EnforceIMDSv2", "always"),
        ("Bogus", "x"),
    ] {
        let err = ssm
            .start_automation_execution()
            .document_name(DOC)
            .set_parameters(Some(params(&[("InstanceId", &id), (name, value)])))
            .send()
            .await
            .unwrap_err();
        let svc = err.as_service_error().unwrap();
        assert!(
            svc.is_invalid_automation_execution_parameters_exception(),
            "{name}"
        );
        assert!(
            svc.message().unwrap().contains(name),
            "message names {name}: {:?}",
            svc.message()
        );
    }
    let err = ssm
        .start_automation_execution()
        .document_name(DOC)
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .message()
        .unwrap()
        .contains("InstanceId"));

    let err = ssm
        .get_automation_execution()
        .automation_execution_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_automation_execution_not_found_exception());

    let err = e
        .ec2
        .describe_instances()
        .instance_ids("i-0000000000000bad0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidInstanceID.NotFound"));
    let err = e
        .ec2
        .describe_instances()
        .instance_ids("foobar")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidInstanceID.Malformed"));
    let err = e
        .ec2
        .modify_instance_metadata_options()
        .instance_id(&id)
        .http_put_response_hop_limit(99)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"));

    // Throttling, in each service's own code.
    e.sb.set_faults(Faults {
        rules: vec![sandbox::FaultRule {
            operation: "*".into(),
            throttle: 1.0,
            ..Default::default()
        }],
        ..Faults::default()
    });
    let err = ssm
        .get_automation_execution()
        .automation_execution_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"));
    let err = e.ec2.describe_instances().send().await.unwrap_err();
    assert_eq!(err.code(), Some("RequestLimitExceeded"));

    // Denied actions.
    e.sb.set_faults(Faults {
        deny: ["ssm:StartAutomationExecution".to_owned()].into(),
        ..Faults::default()
    });
    let err = ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[("InstanceId", &id)])))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert!(err.message().unwrap().contains("ssm:StartAutomationExecution"));
}

#[tokio::test]
async fn cloudwatch_and_sts_answer_the_rust_sdk() {
    let (_sb, url) = standalone_sandbox(fast(60)).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let who = aws_sdk_sts::Client::new(&conf)
        .get_caller_identity()
        .send()
        .await
        .expect("sts");
    assert_eq!(who.account(), Some(sandbox::ACCOUNT_ID));

    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let ids = running(&ec2, "optional").await;
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let now = std::time::SystemTime::now();
    let mut req = cw
        .get_metric_data()
        .start_time(aws_smithy_types::DateTime::from(
            now - Duration::from_secs(14 * 86_400),
        ))
        .end_time(aws_smithy_types::DateTime::from(now));
    for (n, id) in ids.iter().enumerate() {
        use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
        let metric = Metric::builder()
            .namespace("AWS/EC2")
            .metric_name("MetadataNoToken")
            .dimensions(Dimension::builder().name("InstanceId").value(id).build())
            .build();
        req = req.metric_data_queries(
            MetricDataQuery::builder()
                .id(format!("m{n}"))
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric)
                        .period(86_400)
                        .stat("Sum")
                        .build(),
                )
                .build(),
        );
    }
    let out = req.send().await.expect("GetMetricData");
    let results = out.metric_data_results();
    assert_eq!(results.len(), ids.len());
    let sums: Vec<f64> = results.iter().map(|r| r.values().iter().sum()).collect();
    assert!(
        sums.iter().any(|s| *s > 0.0),
        "some instances still use IMDSv1: {sums:?}"
    );
    assert!(sums.contains(&0.0), "some do not: {sums:?}");
    assert!(results
        .iter()
        .all(|r| r.values().len() == r.timestamps().len() && r.values().len() == 14));
}

#[tokio::test]
async fn sandbox_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("sandbox-state.json");
    let config = SandboxConfig {
        fleet_size: 20,
        speed: 600.0,
        state_file: Some(state_file.clone()),
        ..SandboxConfig::default()
    };
    let (sb, url) = standalone_sandbox(config.clone()).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let (ssm, ec2) = (aws_sdk_ssm::Client::new(&conf), aws_sdk_ec2::Client::new(&conf));
    let id = running(&ec2, "optional").await.remove(0);
    let exec = ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[
            ("InstanceId", &id),
            ("EnforceIMDSv2", "required"),
        ])))
        .send()
        .await
        .unwrap();
    let exec_id = exec.automation_execution_id().unwrap().to_owned();
    wait(&ssm, &exec_id).await;
    sb.save().unwrap();

    let (_sb2, url2) = standalone_sandbox(config).await;
    let conf2 = sdk_config(&url2, "us-east-1", 1).await;
    let ssm2 = aws_sdk_ssm::Client::new(&conf2);
    let ex = ssm2
        .get_automation_execution()
        .automation_execution_id(&exec_id)
        .send()
        .await
        .expect("still there");
    assert_eq!(
        ex.automation_execution().unwrap().automation_execution_status(),
        Some(&AutomationExecutionStatus::Success)
    );
    assert_eq!(
        metadata(&aws_sdk_ec2::Client::new(&conf2), &id)
            .await
            .http_tokens()
            .unwrap()
            .as_str(),
        "required"
    );
}

#[tokio::test]
async fn cloudwatch_also_answers_botocore_in_aws_json_1_0() {
    let (_sb, url) = standalone_sandbox(fast(20)).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let id = running(&aws_sdk_ec2::Client::new(&conf), "optional")
        .await
        .remove(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let body = serde_json::json!({
        "MetricDataQueries": [{"Id": "m1", "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": "MetadataNoToken",
            "Dimensions": [{"Name": "InstanceId", "Value": id}]}, "Period": 86400, "Stat": "Sum"}}],
        "StartTime": now - 3.0 * 86400.0, "EndTime": now
    });
    // What botocore sends (the AWS CLI and boto3 use awsJson1_0 for CloudWatch).
    let resp = reqwest::Client::new()
        .post(&url)
        .header("x-amz-target", "GraniteServiceVersion20100801.GetMetricData")
        .header("content-type", "application/x-amz-json-1.0")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=x")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let out: serde_json::Value = resp.json().await.unwrap();
    let r = &out["MetricDataResults"][0];
    assert_eq!(r["Id"], "m1");
    assert_eq!(r["Values"].as_array().unwrap().len(), 3);
    assert_eq!(r["Timestamps"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn the_runbooks_are_served_as_documents_and_injected_500s_reach_the_sdk() {
    let e = env(fast(10)).await;
    let d = e
        .ssm
        .describe_document()
        .name(DOC)
        .send()
        .await
        .expect("DescribeDocument");
    let doc = d.document().unwrap();
    assert_eq!(doc.document_version(), Some("7"));
    let names: Vec<&str> = doc.parameters().iter().filter_map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "AutomationAssumeRole",
            "EnforceIMDSv2",
            "HttpPutResponseHopLimit",
            "InstanceId",
            "MetadataAccess"
        ]
    );
    let g = e.ssm.get_document().name(DOC).send().await.expect("GetDocument");
    assert!(g
        .content()
        .unwrap()
        .contains("\"name\": \"branchOnMetadataAccess\""));
    let err = e
        .ssm
        .describe_document()
        .name("Nope-Doc")
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_invalid_document());

    e.sb.set_faults(Faults {
        rules: vec![sandbox::FaultRule {
            operation: "ssm:DescribeDocument".into(),
            error_500: 1.0,
            ..Default::default()
        }],
        ..Faults::default()
    });
    let err = e.ssm.describe_document().name(DOC).send().await.unwrap_err();
    assert_eq!(err.code(), Some("InternalServerError"));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
}
