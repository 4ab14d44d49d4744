//! Halt alarms as AWS treats them: SSM stops a run whose alarm it cannot read, so the console checks
//! that a run's or plan's alarm exists where the run goes, and a run across accounts watches it in each
//! location (TargetLocationAlarmConfiguration), run as the hub's administration role.

use e2e::{spawn_app_with, AppOptions};
use sandbox::Faults;
use serde_json::json;
use std::time::Duration;

/// SSM credentials acting in `account` (the sandbox tells the account by an STS-issued key's digits).
async fn ssm_in(url: &str, account: &str, region: &str) -> aws_sdk_ssm::Client {
    let conf = e2e::sdk_config(url, region, 1).await;
    aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(&conf)
            .credentials_provider(aws_credential_types::Credentials::from_keys(
                format!("ASIA{account}TEST"),
                "test-secret",
                Some("token".to_owned()),
            ))
            .build(),
    )
}

#[tokio::test]
async fn ssm_stops_a_run_whose_alarm_it_cannot_read_unless_told_to_ignore_it() {
    let (sb, url) = e2e::standalone_sandbox(sandbox::SandboxConfig {
        fleet_size: 4,
        ..sandbox::SandboxConfig::default()
    })
    .await;
    sb.set_faults(Faults {
        alarms: ["imds-v1-calls".to_owned()].into(),
        ..Faults::default()
    });
    let conf = e2e::sdk_config(&url, "us-east-1", 1).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let instance = ec2.describe_instances().send().await.unwrap().reservations()[0].instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    let start = |alarm: &'static str, ignore: bool| {
        let ssm = ssm.clone();
        let instance = instance.clone();
        async move {
            ssm.start_automation_execution()
                .document_name("AWSSupport-ConfigureEC2Metadata")
                .parameters("InstanceId", vec![instance])
                .parameters("EnforceIMDSv2", vec!["required".to_owned()])
                .alarm_configuration(
                    aws_sdk_ssm::types::AlarmConfiguration::builder()
                        .ignore_poll_alarm_failure(ignore)
                        .alarms(aws_sdk_ssm::types::Alarm::builder().name(alarm).build().unwrap())
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .expect("SSM starts it")
                .automation_execution_id()
                .unwrap()
                .to_owned()
        }
    };
    let end = |id: String| {
        let ssm = ssm.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let got = ssm
                    .get_automation_execution()
                    .automation_execution_id(&id)
                    .send()
                    .await
                    .unwrap();
                let ex = got.automation_execution().unwrap().clone();
                let status = ex.automation_execution_status().unwrap().as_str().to_owned();
                if ["Success", "Failed", "Cancelled", "TimedOut"].contains(&status.as_str()) {
                    return (status, ex.failure_message().unwrap_or_default().to_owned());
                }
                assert!(tokio::time::Instant::now() < deadline, "{id} still {status}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (status, why) = end(start("no-such-alarm", false).await).await;
    assert_eq!(status, "Cancelled", "{why}");
    assert!(
        why.contains("no-such-alarm") && why.contains("could not be read"),
        "{why}"
    );
    let (status, why) = end(start("no-such-alarm", true).await).await;
    assert_eq!(status, "Success", "IgnorePollAlarmFailure: {why}");
    let (status, why) = end(start("imds-v1-calls", false).await).await;
    assert_eq!(status, "Success", "an alarm that exists and is OK: {why}");
}

#[tokio::test]
async fn a_run_or_a_plan_whose_alarm_does_not_exist_where_it_runs_is_refused_at_its_field() {
    let app = spawn_app_with(AppOptions::default()).await;
    app.sandbox.set_faults(Faults {
        alarms: ["123456789012/us-east-1/imds-refusals".to_owned()].into(),
        ..Faults::default()
    });
    let id = app.quiet("us-east-1").await.remove(0);
    let before = app.get("/executions").await.1;
    for path in ["/executions/preview", "/executions"] {
        let (status, body) = app
            .post(
                path,
                &json!({"parameters": {"InstanceId": id}, "alarm_name": "no-such-alarm"}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["field"].clone()),
            (400, json!("alarm_name")),
            "{path}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("no CloudWatch alarm named no-such-alarm") && message.contains("us-east-1"),
            "{message}"
        );
    }
    assert_eq!(
        app.get("/executions").await.1,
        before,
        "a refused start records nothing"
    );
    let (status, body) = app
        .post(
            "/executions/preview",
            &json!({"parameters": {"InstanceId": id}, "alarm_name": "imds-refusals"}),
        )
        .await;
    assert_eq!(status, 200, "an alarm where the run goes: {body}");

    // A plan: its alarm must be where every wave runs (here us-east-1 and eu-west-1).
    let wave = |name: &str, region: &str| {
        json!({"name": name, "region": region, "targets": {"tag": {"key": "Env", "value": "dev"}},
               "parameters": {"EnforceIMDSv2": "required"}, "max_concurrency": "5", "max_errors": "0",
               "bake_minutes": 0})
    };
    let plan = |alarm: &str| {
        json!({"name": "alarmed", "waves": [wave("east", "us-east-1"), wave("west", "eu-west-1")],
               "halt": {"alarm_name": alarm}})
    };
    let (status, body) = app.post("/plans", &plan("imds-refusals")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "halt.alarm_name", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("eu-west-1"),
        "names where it is missing: {body}"
    );
    app.sandbox.set_faults(Faults {
        alarms: ["imds-refusals".to_owned()].into(),
        ..Faults::default()
    });
    let (status, body) = app.post("/plans", &plan("imds-refusals")).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_run_across_accounts_watches_its_alarm_in_each_location_as_the_administration_role() {
    let app = spawn_app_with(AppOptions {
        fleet: 60,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let accounts = sandbox::account_ids(3);
    let url = app.state.sandbox_url.clone().unwrap();
    let request = json!({
        "parameters": {},
        "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}},
                         "max_concurrency": "10", "max_errors": "100%"},
        "target_locations": [{"accounts": accounts, "regions": ["us-east-1"],
                              "target_location_max_concurrency": "3",
                              "target_location_max_errors": "100%"}],
        "override": {"reason": "Alarm drill across the organisation."},
        "alarm_name": "imds-refusals"
    });
    // Only in the hub: every other account would have its run stopped at once.
    app.sandbox.set_faults(Faults {
        alarms: [format!("{}/us-east-1/imds-refusals", accounts[0])].into(),
        ..Faults::default()
    });
    let (status, body) = app.post("/executions/preview", &request).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "alarm_name", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&accounts[1]) && message.contains(&accounts[2]),
        "{message}"
    );

    app.sandbox.set_faults(Faults {
        alarms: ["imds-refusals".to_owned()].into(),
        ..Faults::default()
    });
    let (status, body) = app.post("/executions", &request).await;
    assert_eq!(status, 201, "{body}");
    let parent = body["execution_id"].as_str().unwrap().to_owned();
    let hub = ssm_in(&url, &accounts[0], "us-east-1").await;
    let got = hub
        .get_automation_execution()
        .automation_execution_id(&parent)
        .send()
        .await
        .unwrap();
    let ex = got.automation_execution().unwrap();
    assert_eq!(
        ex.parameters().unwrap()["AutomationAssumeRole"],
        [format!(
            "arn:aws:iam::{}:role/AWS-SystemsManager-AutomationAdministrationRole",
            accounts[0]
        )],
        "run as the hub's administration role"
    );
    assert!(
        ex.alarm_configuration().is_none(),
        "nothing runs in the hub's own place to watch"
    );
    // Each location's run watches the alarm in its own account.
    let done = app.wait_done(&parent, Duration::from_secs(60)).await;
    let children: Vec<(String, String)> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let place = s["name"].as_str()?;
            let child = s["outputs"]["ExecutionId"][0].as_str()?;
            Some((place.split('/').next()?.to_owned(), child.to_owned()))
        })
        .collect();
    assert_eq!(children.len(), 3, "{done}");
    for (account, child) in children {
        let got = ssm_in(&url, &account, "us-east-1")
            .await
            .get_automation_execution()
            .automation_execution_id(&child)
            .send()
            .await
            .unwrap();
        let ex = got.automation_execution().unwrap();
        assert_eq!(
            ex.alarm_configuration().map(|c| c.alarms()[0].name()),
            Some("imds-refusals"),
            "{account}"
        );
        assert_eq!(ex.automation_execution_status().unwrap().as_str(), "Success");
    }
}

#[tokio::test]
async fn doctor_checks_the_roles_runs_across_accounts_need_and_reading_alarms() {
    let app = spawn_app_with(AppOptions {
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    async fn report(app: &e2e::TestApp) -> shared::api::PermissionReport {
        let (status, body) = app.get("/doctor").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).expect("a PermissionReport")
    }
    let row = |r: &shared::api::PermissionReport, principal: &str, action: &str| {
        r.checks
            .iter()
            .find(|c| c.principal == principal && c.action == action)
            .unwrap_or_else(|| panic!("{principal} {action}: {r:?}"))
            .clone()
    };
    let clean = report(&app).await;
    let admin = row(&clean, "administration role", "sts:AssumeRole");
    assert_eq!(admin.result, shared::api::CheckResult::Allowed, "{admin:?}");
    let pass = clean
        .checks
        .iter()
        .filter(|c| c.principal == "console" && c.action == "iam:PassRole")
        .count();
    assert_eq!(pass, 1, "passing the administration role: {clean:?}");
    assert_eq!(
        row(&clean, "console", "cloudwatch:DescribeAlarms").result,
        shared::api::CheckResult::Allowed
    );

    let app = spawn_app_with(AppOptions {
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    app.sandbox.set_faults(Faults {
        deny: ["cloudwatch:DescribeAlarms".to_owned()].into(),
        assume_role_deny: ["sts:AssumeRole".to_owned()].into(),
        ..Faults::default()
    });
    let denied = report(&app).await;
    let admin = row(&denied, "administration role", "sts:AssumeRole");
    assert_eq!(admin.result, shared::api::CheckResult::Denied, "{admin:?}");
    let fix = admin.fix.unwrap();
    assert!(
        fix.contains("AWS-SystemsManager-AutomationAdministrationRole")
            && fix.contains("AWS-SystemsManager-AutomationExecutionRole"),
        "{fix}"
    );
    assert_eq!(
        row(&denied, "console", "cloudwatch:DescribeAlarms").result,
        shared::api::CheckResult::Denied
    );
}

#[tokio::test]
async fn doctor_checks_the_execution_role_in_each_member_account() {
    use shared::api::CheckResult;
    let app = spawn_app_with(AppOptions {
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let members = ["200000000001", "200000000002"];
    // The execution role is missing in one member account; the other's may not change instances.
    app.sandbox.set_faults(Faults {
        missing_roles: ["200000000002/AWS-SystemsManager-AutomationExecutionRole".to_owned()].into(),
        assume_role_deny: ["ec2:ModifyInstanceMetadataOptions".to_owned()].into(),
        ..Faults::default()
    });
    let (status, body) = app.get("/doctor").await;
    assert_eq!(status, 200, "{body}");
    let report: shared::api::PermissionReport = serde_json::from_value(body).expect("a PermissionReport");
    let row = |account: &str, action: &str| {
        report
            .checks
            .iter()
            .find(|c| c.principal == format!("execution role in {account}") && c.action == action)
            .unwrap_or_else(|| panic!("{account} {action}: {report:?}"))
            .clone()
    };
    let exists = row(members[0], "iam:GetRole");
    assert_eq!(exists.result, CheckResult::Allowed, "{exists:?}");
    assert!(
        exists
            .detail
            .contains("arn:aws:iam::200000000001:role/AWS-SystemsManager-AutomationExecutionRole"),
        "{exists:?}"
    );
    assert_eq!(
        row(members[0], "ec2:DescribeInstances").result,
        CheckResult::Allowed
    );
    let modify = row(members[0], "ec2:ModifyInstanceMetadataOptions");
    assert_eq!(modify.result, CheckResult::Denied, "{modify:?}");
    assert!(modify
        .fix
        .unwrap()
        .contains("AWS-SystemsManager-AutomationExecutionRole's policy in 200000000001"));
    let missing = row(members[1], "iam:GetRole");
    assert_eq!(missing.result, CheckResult::Denied, "{missing:?}");
    assert!(
        missing.detail.contains("does not exist in 200000000002"),
        "{missing:?}"
    );
    assert!(missing
        .fix
        .unwrap()
        .contains("Create AWS-SystemsManager-AutomationExecutionRole in 200000000002"));
    // Nothing is simulated for a role that does not exist; the console's own account is checked too
    // (a root or "every account" names it).
    assert!(!report
        .checks
        .iter()
        .any(|c| c.principal == "execution role in 200000000002" && c.action != "iam:GetRole"));
    assert_eq!(row("123456789012", "iam:GetRole").result, CheckResult::Allowed);
}

#[tokio::test]
async fn doctor_fails_where_the_console_cannot_reach_an_account_or_list_the_organisation() {
    use shared::api::CheckResult;
    let (sb, url) = e2e::standalone_sandbox(sandbox::SandboxConfig {
        accounts: 3,
        ..sandbox::SandboxConfig::default()
    })
    .await;
    // The console's own account lacks the execution role; one member lacks the console's role.
    sb.set_faults(Faults {
        missing_roles: [
            "123456789012/AWS-SystemsManager-AutomationExecutionRole".to_owned(),
            "200000000001/ImdsConsoleMember".to_owned(),
        ]
        .into(),
        ..Faults::default()
    });
    let target = backend::aws::Target::Sandbox(url);
    let regions = vec!["us-east-1".to_owned()];
    let metrics: std::sync::Arc<backend::metrics::Metrics> = std::sync::Arc::default();
    let clients = backend::aws::clients(&target, &regions, backend::aws::Timeouts::default(), &metrics).await;
    let org = || {
        backend::org::Org::new(
            Vec::new(),
            true,
            Vec::new(),
            "ImdsConsoleMember".into(),
            backend::org::ClientSettings {
                target: target.clone(),
                timeouts: backend::aws::Timeouts::default(),
                regions: regions.clone(),
                metrics: metrics.clone(),
            },
        )
    };
    let report = backend::doctor::check(&clients, None, true, Some(&org()))
        .await
        .unwrap();
    let find = |principal: &str, action: &str| {
        report
            .checks
            .iter()
            .find(|c| c.principal == principal && c.action == action)
            .unwrap_or_else(|| panic!("{principal} {action}: {report:?}"))
            .clone()
    };
    let hub = find("execution role in 123456789012", "iam:GetRole");
    assert_eq!(hub.result, CheckResult::Denied, "{hub:?}");
    let unreachable = find("console", "sts:AssumeRole");
    assert_eq!(unreachable.result, CheckResult::Denied, "{unreachable:?}");
    assert!(unreachable.detail.contains("200000000001"), "{unreachable:?}");
    assert!(unreachable
        .fix
        .unwrap()
        .contains("deploy/member-role.yaml in 200000000001"));
    assert!(report.denied() >= 2);

    // An organisation the console may not list is not a pass either.
    sb.set_faults(Faults {
        deny: ["organizations:ListAccounts".to_owned()].into(),
        ..Faults::default()
    });
    let report = backend::doctor::check(&clients, None, true, Some(&org()))
        .await
        .unwrap();
    let listing = report
        .checks
        .iter()
        .find(|c| c.action == "organizations:ListAccounts")
        .unwrap_or_else(|| panic!("{report:?}"));
    assert_eq!(listing.result, CheckResult::Denied, "{listing:?}");
}
#[tokio::test]
async fn doctor_finds_an_identity_center_role_under_its_region_s_path() {
    let app = spawn_app_with(AppOptions::default()).await;
    let clients = app.state.clients.values().next().unwrap().clone();
    let sso = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0123abcd/jane@example.com";
    let found = backend::doctor::console_principal(&clients, sso).await;
    assert_eq!(
        found.as_deref(),
        Some("arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123abcd")
    );
    app.sandbox.set_faults(Faults {
        identity_center_region: Some("eu-west-1".to_owned()),
        ..Faults::default()
    });
    let found = backend::doctor::console_principal(&clients, sso).await;
    assert_eq!(
        found.as_deref(),
        Some("arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123abcd"),
        "the path names Identity Center's Region"
    );
    // Other roles are as STS names them.
    assert_eq!(
        backend::doctor::console_principal(&clients, "arn:aws:sts::123456789012:assumed-role/Ops/x")
            .await
            .as_deref(),
        Some("arn:aws:iam::123456789012:role/Ops")
    );
}

#[tokio::test]
async fn only_roles_that_exist_can_be_assumed_simulated_or_run_as() {
    let (sb, url) = e2e::standalone_sandbox(sandbox::SandboxConfig {
        fleet_size: 8,
        accounts: 2,
        ..sandbox::SandboxConfig::default()
    })
    .await;
    let member = &sandbox::account_ids(2)[1];
    let conf = e2e::sdk_config(&url, "us-east-1", 1).await;
    let sts = aws_sdk_sts::Client::new(&conf);
    let iam = aws_sdk_iam::Client::new(&conf);
    let assume = |role: &str| {
        sts.assume_role()
            .role_arn(format!("arn:aws:iam::{member}:role/{role}"))
            .role_session_name("check")
            .send()
    };
    assert!(assume("ImdsConsoleMember").await.is_ok());
    let refused = assume("ImdsConsoleMembr").await.unwrap_err();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&refused),
        Some("AccessDenied")
    );
    let missing = iam
        .get_role()
        .role_name("ImdsConsoleMembr")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_iam::error::ProvideErrorMetadata::code(&missing),
        Some("NoSuchEntity")
    );
    let missing = iam
        .simulate_principal_policy()
        .policy_source_arn("arn:aws:iam::123456789012:role/DoesNotExist")
        .action_names("ec2:DescribeInstances")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_iam::error::ProvideErrorMetadata::code(&missing),
        Some("NoSuchEntity")
    );
    // A role the fault settings add exists.
    sb.set_faults(Faults {
        roles: [format!("{member}/ImdsConsoleMembr")].into(),
        ..Faults::default()
    });
    assert!(assume("ImdsConsoleMembr").await.is_ok());

    // SSM cannot run as a role that does not exist, nor reach a location without its execution role.
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let err = ssm
        .start_automation_execution()
        .document_name("AWSSupport-ConfigureEC2Metadata")
        .parameters("InstanceId", vec!["i-0123456789abcdef0".to_owned()])
        .parameters(
            "AutomationAssumeRole",
            vec!["arn:aws:iam::123456789012:role/NoSuchAutomationRole".to_owned()],
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_ssm::error::ProvideErrorMetadata::code(&err),
        Some("InvalidAutomationExecutionParametersException")
    );
    let parent = ssm
        .start_automation_execution()
        .document_name("AWSSupport-ConfigureEC2Metadata")
        .parameters("EnforceIMDSv2", vec!["required".to_owned()])
        .target_parameter_name("InstanceId")
        .targets(
            aws_sdk_ssm::types::Target::builder()
                .key("tag:Env")
                .values("prod")
                .build(),
        )
        .target_locations(
            aws_sdk_ssm::types::TargetLocation::builder()
                .accounts(member.as_str())
                .regions("us-east-1")
                .execution_role_name("NoSuchExecutionRole")
                .target_location_max_errors("100%")
                .build(),
        )
        .send()
        .await
        .expect("SSM starts it")
        .automation_execution_id()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let step = loop {
        let got = ssm
            .get_automation_execution()
            .automation_execution_id(&parent)
            .send()
            .await
            .unwrap();
        let ex = got.automation_execution().unwrap().clone();
        if let Some(step) = ex.step_executions().iter().find(|s| {
            s.step_status()
                .is_some_and(|st| st.as_str() != "Pending" && st.as_str() != "InProgress")
        }) {
            break step.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{ex:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(step.step_status().unwrap().as_str(), "Failed", "{step:?}");
    assert!(
        step.failure_message()
            .unwrap_or_default()
            .contains("NoSuchExecutionRole"),
        "{step:?}"
    );
}
