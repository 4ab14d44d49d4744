//! Where the sandbox is as strict as AWS (issue 11) and the console must still work: SSM's tag and
//! Target key patterns.

use aws_sdk_ssm::types::{Tag, Target};
use e2e::{sdk_config, spawn_app_with, standalone_sandbox, AppOptions};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_requester_whose_name_ssm_tags_refuse_starts_a_run_and_is_kept_exactly() {
    let app = spawn_app_with(AppOptions {
        extra_args: vec![
            "--trusted-proxy".into(),
            "127.0.0.1".into(),
            "--sso-group-role".into(),
            "platform=operator".into(),
        ],
        ..AppOptions::default()
    })
    .await;
    let id = app.quiet("us-east-1").await.remove(0);
    let name = "CORP\\jane O'Brien";
    let resp = reqwest::Client::new()
        .post(app.url("/executions"))
        .header("x-forwarded-user", name)
        .header("x-forwarded-groups", "platform")
        .header("origin", &app.base)
        .json(&json!({"parameters": {"InstanceId": id}}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    let detail = app
        .wait_done(body["execution_id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(detail["summary"]["status"], "Success");
    assert_eq!(
        detail["summary"]["requester"], name,
        "the store keeps the name exactly"
    );
}

#[tokio::test]
async fn a_target_tag_key_ssm_refuses_is_a_field_error_before_anything_is_sent() {
    let app = spawn_app_with(AppOptions::default()).await;
    let (status, body) = app
        .post(
            "/executions/preview",
            &json!({"parameters": {}, "rate_control": {"targets": {"tag": {"key": "cost+center", "value": "42"}},
                    "max_concurrency": "1", "max_errors": "0"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "rate_control.targets.tag.key");
    assert!(body["error"]["message"].as_str().unwrap().contains('+'));
}

#[tokio::test]
async fn the_sandbox_refuses_tags_and_target_keys_as_ssm_does() {
    let (_sb, url) = standalone_sandbox(sandbox::SandboxConfig::default()).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let start = || {
        ssm.start_automation_execution()
            .document_name(shared::RUNBOOK)
            .target_parameter_name("InstanceId")
            .max_concurrency("1")
            .max_errors("0")
    };
    let err = start()
        .targets(Target::builder().key("tag:Team").values("web").build())
        .tags(
            Tag::builder()
                .key("requester")
                .value("CORP\\jane")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    let service = err.into_service_error();
    assert_eq!(
        aws_sdk_ssm::error::ProvideErrorMetadata::code(&service),
        Some("ValidationException")
    );
    assert!(
        format!("{service:?}").contains("tags.1.member.value"),
        "{service:?}"
    );

    let err = start()
        .targets(Target::builder().key("tag:cost+center").values("42").build())
        .send()
        .await
        .unwrap_err();
    let service = err.into_service_error();
    assert!(
        format!("{service:?}").contains("targets.1.member.key"),
        "{service:?}"
    );

    let ok = start()
        .targets(Target::builder().key("tag:Team").values("web").build())
        .tags(
            Tag::builder()
                .key("requester")
                .value("CORP_jane O_Brien")
                .build()
                .unwrap(),
        )
        .send()
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

/// Executions of our runbook on `instance` in the sandbox.
async fn runs_on(app: &e2e::TestApp, instance: &str) -> usize {
    let conf = sdk_config(app.state.sandbox_url.as_deref().unwrap(), "us-east-1", 1).await;
    let out = aws_sdk_ssm::Client::new(&conf)
        .describe_automation_executions()
        .max_results(50)
        .send()
        .await
        .unwrap();
    let mut n = 0;
    for m in out.automation_execution_metadata_list() {
        let id = m.automation_execution_id().unwrap();
        let ex = aws_sdk_ssm::Client::new(&conf)
            .get_automation_execution()
            .automation_execution_id(id)
            .send()
            .await
            .unwrap();
        let params = ex
            .automation_execution()
            .unwrap()
            .parameters()
            .cloned()
            .unwrap_or_default();
        if params
            .get("InstanceId")
            .is_some_and(|v| v.iter().any(|i| i == instance))
        {
            n += 1;
        }
    }
    n
}

/// The audit record of the newest start.
async fn newest_record(app: &e2e::TestApp) -> serde_json::Value {
    app.get("/audit").await.1[0].clone()
}

#[tokio::test]
async fn an_unclear_start_is_recorded_as_unknown_then_found_or_sent_once_whatever_ssm_does_with_tokens() {
    let modes = [
        sandbox::TokenReuse::SameExecution,
        sandbox::TokenReuse::Error,
        sandbox::TokenReuse::Expires { after_ms: 0 },
    ];
    for (mode, reply_lost) in modes.iter().flat_map(|m| [(*m, true), (*m, false)]) {
        let app = spawn_app_with(AppOptions {
            discover_secs: 1,
            ..AppOptions::default()
        })
        .await;
        let id = app.quiet("us-east-1").await.remove(0);
        // The start is carried out and its reply lost, or it fails before anything starts: either way
        // the console hears a 500.
        app.sandbox.set_faults(sandbox::Faults {
            rules: vec![sandbox::FaultRule {
                operation: "ssm:StartAutomationExecution".into(),
                error_500_after: if reply_lost { 1.0 } else { 0.0 },
                error_500: if reply_lost { 0.0 } else { 1.0 },
                ..Default::default()
            }],
            client_token_reuse: mode,
            ..Default::default()
        });
        let (status, body) = app
            .post("/executions", &json!({"parameters": {"InstanceId": id}}))
            .await;
        let case = format!("{mode:?}, reply lost: {reply_lost}");
        assert_eq!(status, 503, "{case}: {body}");
        assert_eq!(body["error"]["code"], "StartOutcomeUnknown", "{case}");
        let record = newest_record(&app).await;
        assert_eq!(
            record["status"], "Unknown",
            "{case}: never Refused when the run may exist"
        );
        assert_eq!(
            runs_on(&app, &id).await,
            usize::from(reply_lost),
            "{case}: one attempt only"
        );

        // SSM answers again: the watcher finds the run by its tag, or sends it once with a new token.
        app.sandbox.set_faults(sandbox::Faults {
            client_token_reuse: mode,
            ..Default::default()
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let execution = loop {
            let r = newest_record(&app).await;
            if let Some(e) = r["execution_id"].as_str() {
                break e.to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "{case}: never settled: {r}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let done = app.wait_done(&execution, Duration::from_secs(30)).await;
        assert_eq!(done["summary"]["status"], "Success", "{case}");
        assert_eq!(runs_on(&app, &id).await, 1, "{case}: exactly one run");
    }
}

#[tokio::test]
async fn a_rollback_after_a_target_was_terminated_restores_the_others_and_names_it() {
    let app = spawn_app_with(AppOptions::default()).await;
    let ids: Vec<String> = app
        .pick("us-east-1", |i| {
            i["metadata"]["http_tokens"] == "optional" && i["imdsv1_calls"] == 0
        })
        .await
        .into_iter()
        .take(3)
        .collect();
    assert_eq!(ids.len(), 3);
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"EnforceIMDSv2": "required"},
                    "rate_control": {"targets": {"instance_ids": ids}, "max_concurrency": "3", "max_errors": "0"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let run = body["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.wait_done(&run, Duration::from_secs(30)).await["summary"]["status"],
        "Success"
    );

    let conf = sdk_config(app.state.sandbox_url.as_deref().unwrap(), "us-east-1", 1).await;
    aws_sdk_ec2::Client::new(&conf)
        .terminate_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .expect("terminated");

    let (status, rb) = app.post(&format!("/executions/{run}/rollback"), &json!({})).await;
    assert_eq!(status, 201, "{rb}");
    assert_eq!(rb["skipped"], json!([ids[0]]));
    assert!(rb["notes"].to_string().contains(&ids[0]), "{rb}");
    let mut restored: Vec<String> = serde_json::from_value(rb["instances"].clone()).unwrap();
    restored.sort();
    let mut others = ids[1..].to_vec();
    others.sort();
    assert_eq!(restored, others);
    for e in rb["execution_ids"].as_array().unwrap() {
        let d = app.wait_done(e.as_str().unwrap(), Duration::from_secs(30)).await;
        assert_eq!(d["summary"]["status"], "Success", "{d}");
    }
    app.refresh_fleet().await;
    for inst in app.instances().await {
        if others.contains(&inst["instance_id"].as_str().unwrap().to_owned()) {
            assert_eq!(inst["metadata"]["http_tokens"], "optional", "restored: {inst}");
        }
    }
}

#[tokio::test]
async fn a_terminated_instance_stays_visible_for_a_while_then_describing_it_by_id_fails() {
    // At this speed EC2's hour of visibility lasts 3 s.
    let (_sb, url) = standalone_sandbox(sandbox::SandboxConfig {
        speed: 1_200.0,
        ..sandbox::SandboxConfig::default()
    })
    .await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let all = ec2.describe_instances().send().await.unwrap();
    let id = all.reservations()[0].instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    let out = ec2.terminate_instances().instance_ids(&id).send().await.unwrap();
    assert_eq!(
        out.terminating_instances()[0]
            .current_state()
            .and_then(|s| s.name())
            .map(|n| n.as_str()),
        Some("terminated")
    );
    let seen = ec2.describe_instances().instance_ids(&id).send().await.unwrap();
    assert_eq!(
        seen.reservations()[0].instances()[0]
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str()),
        Some("terminated")
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let err = loop {
        match ec2.describe_instances().instance_ids(&id).send().await {
            Err(e) => break e,
            Ok(_) => {
                assert!(std::time::Instant::now() < deadline, "never purged");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(
        aws_sdk_ec2::error::ProvideErrorMetadata::code(&err.into_service_error()),
        Some("InvalidInstanceID.NotFound")
    );
    let by_filter = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-id")
                .values(&id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        by_filter.reservations().is_empty(),
        "a filter finds nothing and fails nothing"
    );
}

#[tokio::test]
async fn a_thousand_target_rollout_is_watched_within_the_read_budget_to_its_true_total() {
    // One region, since SSM's quotas (and so the budget) are per region and the sandbox counts calls
    // of all regions together.
    let app = spawn_app_with(AppOptions {
        fleet: 5_000,
        speed: 1_000.0,
        read_rate: 6.0,
        poll_ms: 100,
        discover_secs: 5,
        extra_args: vec!["--region".into(), "us-east-1".into()],
        ..AppOptions::default()
    })
    .await;
    let (status, body) = app
        .post(
            "/executions",
            &json!({"region": "us-east-1", "parameters": {"EnforceIMDSv2": "optional"},
                    "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}},
                                     "max_concurrency": "250", "max_errors": "100%"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let run = body["execution_id"].as_str().unwrap().to_owned();
    let since = e2e::now_ms();
    // Watched to the end: every child seen finished, and the total is every target, not the 50 SSM shows.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let progress = loop {
        let (_, d) = app.get(&format!("/executions/{run}")).await;
        let p = d["rate_control"]["progress"].clone();
        let total = p["total"].as_u64().unwrap_or(0);
        let finished = p["succeeded"].as_u64().unwrap_or(0)
            + p["failed"].as_u64().unwrap_or(0)
            + p["cancelled"].as_u64().unwrap_or(0);
        if shared::RunStatus::parse(d["summary"]["status"].as_str().unwrap_or("")).is_terminal()
            && total > 0
            && finished == total
        {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not watched to the end: {p}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let total = progress["total"].as_u64().unwrap();
    assert!(
        total > 900,
        "a thousand-odd targets, not the 50 SSM lists: {progress}"
    );
    let peak = app.sandbox.peak_per_second("ssm:*", since);
    assert!(
        peak <= 6,
        "{peak} SSM calls in one second with a read budget of 6"
    );
}

#[tokio::test]
async fn the_sandbox_reports_calls_per_operation_and_the_busiest_second() {
    let (_sb, url) = standalone_sandbox(sandbox::SandboxConfig::default()).await;
    let since = e2e::now_ms();
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    for _ in 0..3 {
        ec2.describe_regions().send().await.unwrap();
    }
    let calls: serde_json::Value = reqwest::get(format!("{url}/_sandbox/calls?since_ms={since}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = calls["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation"] == "ec2:DescribeRegions")
        .cloned()
        .unwrap();
    assert_eq!(op["count"], 3);
    assert_eq!(op["peak_per_second"], 3);
    assert_eq!(calls["services"]["ec2"]["peak_per_second"], 3);
    assert_eq!(calls["services"]["ssm"]["peak_per_second"], 0);
}

#[tokio::test]
async fn past_ssms_concurrency_quota_runs_wait_in_its_queue_then_the_console_queues_and_sends_them_once() {
    let app = spawn_app_with(AppOptions {
        speed: 20.0,
        discover_secs: 1,
        ..AppOptions::default()
    })
    .await;
    // One run at a time, one waiting in SSM's queue: the third start is refused with
    // AutomationExecutionLimitExceededException.
    app.sandbox.set_faults(sandbox::Faults {
        automation_quota: sandbox::AutomationQuota {
            running: 1,
            queued: 1,
        },
        ..Default::default()
    });
    let ids = app.quiet("us-east-1").await;
    let mut replies = Vec::new();
    for id in &ids[..3] {
        replies.push(
            app.post("/executions", &json!({"parameters": {"InstanceId": id}}))
                .await,
        );
    }
    assert_eq!(replies[0].0, 201, "{}", replies[0].1);
    assert_eq!(replies[1].0, 201, "{}", replies[1].1);
    let (status, queued) = &replies[2];
    assert_eq!(*status, 202, "{queued}");
    assert_eq!(queued["status"], "Queued");
    assert!(queued["execution_id"].is_null(), "{queued}");
    assert!(queued["message"]
        .as_str()
        .unwrap()
        .contains("concurrent automations"));

    // SSM shows the second run as Pending (waiting in its queue), and so does the console.
    let second = replies[1].1["execution_id"].as_str().unwrap().to_owned();
    let ssm = aws_sdk_ssm::Client::new(
        &sdk_config(app.state.sandbox_url.as_deref().unwrap(), "us-east-1", 1).await,
    );
    let in_ssm = ssm
        .get_automation_execution()
        .automation_execution_id(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(
        in_ssm
            .automation_execution()
            .and_then(|e| e.automation_execution_status())
            .map(|s| s.as_str()),
        Some("Pending")
    );
    let record_id = queued["record_id"].as_i64().unwrap();
    let record = app.audit_record(record_id).await;
    assert_eq!(record["status"], "Queued", "{record}");

    // As runs finish, SSM admits the waiting one and the console sends the queued start: three runs,
    // each exactly once, all successful.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let third = loop {
        let r = app.audit_record(record_id).await;
        if let Some(e) = r["execution_id"].as_str() {
            break e.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "never sent: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let first = replies[0].1["execution_id"].as_str().unwrap();
    for e in [first, second.as_str(), third.as_str()] {
        let done = app.wait_done(e, Duration::from_secs(60)).await;
        assert_eq!(done["summary"]["status"], "Success", "{done}");
    }
    for id in &ids[..3] {
        assert_eq!(runs_on(&app, id).await, 1, "{id}: exactly one run");
    }
}

const AUTOMATION_ROLE: &str = "arn:aws:iam::123456789012:role/ImdsAutomation";

fn check<'a>(report: &'a serde_json::Value, principal: &str, action: &str) -> Vec<&'a serde_json::Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["principal"] == principal && c["action"] == action)
        .collect()
}

#[tokio::test]
async fn doctor_names_each_action_the_sandboxs_deny_lists_refuse_and_changes_nothing() {
    let app = spawn_app_with(AppOptions::default()).await;
    let (status, clean) = app.get("/doctor").await;
    assert_eq!(status, 200, "{clean}");
    assert!(
        clean["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["result"] == "allowed"),
        "{clean}"
    );
    // Every region is checked, the runbook's own change by dry run.
    let dry = check(&clean, "console", "ec2:ModifyInstanceMetadataOptions");
    assert_eq!(dry.len(), app.state.regions.len(), "{clean}");
    assert!(dry.iter().all(|c| c["method"] == "dry run"));

    // The Sources page's reads and the account default's change are checked too.
    for action in [
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:GetInstanceMetadataDefaults",
    ] {
        assert_eq!(
            check(&clean, "console", action).len(),
            app.state.regions.len(),
            "{action}: {clean}"
        );
    }
    assert_eq!(
        check(&clean, "console", "ec2:ModifyInstanceMetadataDefaults")[0]["method"],
        "dry run"
    );

    app.sandbox.set_faults(sandbox::Faults {
        deny: [
            "ssm:StartAutomationExecution".to_owned(),
            "autoscaling:DescribeAutoScalingGroups".to_owned(),
            "ec2:ModifyInstanceMetadataDefaults".to_owned(),
        ]
        .into(),
        assume_role_deny: [
            "ec2:ModifyInstanceMetadataOptions".to_owned(),
            "iam:PassRole".to_owned(),
        ]
        .into(),
        ..Default::default()
    });
    let before = app.sandbox.execution_ids().len();
    let (status, report) = app.get(&format!("/doctor?assume_role={AUTOMATION_ROLE}")).await;
    assert_eq!(status, 200, "{report}");
    for action in [
        "ssm:StartAutomationExecution",
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:ModifyInstanceMetadataDefaults",
    ] {
        for c in check(&report, "console", action) {
            assert_eq!(c["result"], "denied", "{c}");
            assert!(c["fix"].as_str().unwrap().contains("console's IAM policy"), "{c}");
        }
    }
    assert_eq!(
        check(&report, "console", "ec2:DescribeImages")[0]["result"],
        "allowed"
    );
    assert_eq!(
        check(&report, "assume role", "ec2:ModifyInstanceMetadataOptions")[0]["result"],
        "denied"
    );
    let pass = check(&report, "assume role", "iam:PassRole")[0];
    assert_eq!(pass["result"], "denied");
    assert!(pass["fix"].as_str().unwrap().contains(AUTOMATION_ROLE), "{pass}");
    assert_eq!(
        check(&report, "assume role", "ec2:DescribeInstances")[0]["result"],
        "allowed"
    );
    assert_eq!(check(&report, "console", "iam:PassRole")[0]["result"], "allowed");
    for c in check(&report, "console", "ssm:GetAutomationExecution") {
        assert_eq!(c["result"], "allowed", "{c}");
    }
    assert_eq!(
        app.sandbox.execution_ids().len(),
        before,
        "the check starts nothing"
    );

    let (status, bad) = app.get("/doctor?assume_role=not-an-arn").await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["field"], "assume_role");
    let viewer = app.add_user("vic", "viewer").await;
    let cookie = app.session("vic", &viewer).await;
    let resp = reqwest::Client::new()
        .get(app.url("/doctor"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn runs_fail_with_access_denied_where_their_assume_role_lacks_a_permission() {
    let app = spawn_app_with(AppOptions::default()).await;
    app.sandbox.set_faults(sandbox::Faults {
        assume_role_deny: ["ec2:ModifyInstanceMetadataOptions".to_owned()].into(),
        ..Default::default()
    });
    let ids = app.quiet("us-east-1").await;
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": ids[0], "AutomationAssumeRole": AUTOMATION_ROLE}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let done = app
        .wait_done(body["execution_id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(done["summary"]["status"], "Failed", "{done}");
    let failed = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"] == "Failed")
        .unwrap();
    let message = failed["failure_message"].as_str().unwrap();
    assert!(
        message.contains("UnauthorizedOperation") && message.contains("ec2:ModifyInstanceMetadataOptions"),
        "{message}"
    );
    assert!(message.contains("assumed-role/ImdsAutomation/"), "{message}");

    // Without iam:PassRole on itself, the role cannot be handed to a rate-control run's children.
    app.sandbox.set_faults(sandbox::Faults {
        assume_role_deny: ["iam:PassRole".to_owned()].into(),
        ..Default::default()
    });
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"AutomationAssumeRole": AUTOMATION_ROLE},
                    "rate_control": {"targets": {"instance_ids": [ids[1], ids[2]]},
                                     "max_concurrency": "2", "max_errors": "1"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let done = app
        .wait_done(body["execution_id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(done["summary"]["status"], "Failed", "{done}");
    assert!(
        done["steps"].as_array().unwrap().iter().all(|s| {
            s["status"] == "Failed"
                && s["failure_message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("iam:PassRole")
        }),
        "{done}"
    );
}

#[tokio::test]
async fn the_sandbox_is_an_organisation_whose_accounts_are_told_apart_by_their_credentials() {
    let (_sb, url) = standalone_sandbox(sandbox::SandboxConfig {
        fleet_size: 60,
        accounts: 3,
        faults: sandbox::Faults {
            missing_roles: [sandbox::account_ids(3)[2].clone()].into(),
            ..Default::default()
        },
        ..sandbox::SandboxConfig::default()
    })
    .await;
    let hub = sdk_config(&url, "us-east-1", 1).await;
    let org = aws_sdk_organizations::Client::new(&hub);
    let listed = org.list_accounts().send().await.unwrap();
    let active: Vec<&str> = listed
        .accounts()
        .iter()
        .filter(|a| a.state() == Some(&aws_sdk_organizations::types::AccountState::Active))
        .filter_map(|a| a.id())
        .collect();
    assert_eq!(active, sandbox::account_ids(3));
    // The organisation also has a suspended and a closed member, told by `State` alone: the retired
    // `Status` is not sent.
    let others: Vec<(&str, &str)> = listed
        .accounts()
        .iter()
        .filter(|a| a.state() != Some(&aws_sdk_organizations::types::AccountState::Active))
        .map(|a| (a.id().unwrap_or_default(), a.state().map_or("", |s| s.as_str())))
        .collect();
    assert_eq!(
        others,
        [("299999999991", "SUSPENDED"), ("299999999992", "CLOSED")]
    );
    assert!(listed.accounts().iter().all(|a| a.status().is_none()));

    // AssumeRole into a member gives credentials that act in the member account only.
    let member = &sandbox::account_ids(3)[1];
    let role = format!("arn:aws:iam::{member}:role/ImdsConsoleMember");
    let sts = aws_sdk_sts::Client::new(&hub);
    let creds = sts
        .assume_role()
        .role_arn(&role)
        .role_session_name("test")
        .send()
        .await
        .unwrap();
    let c = creds.credentials().unwrap();
    let as_member = hub
        .to_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                None,
                "assumed",
            ),
        ))
        .build();
    let who = aws_sdk_sts::Client::new(&as_member)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(who.account(), Some(member.as_str()));
    assert_eq!(
        who.arn(),
        Some(format!("arn:aws:sts::{member}:assumed-role/ImdsConsoleMember/test").as_str())
    );
    let owners = |out: aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput| {
        out.reservations()
            .iter()
            .map(|r| r.owner_id().unwrap_or_default().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let theirs = aws_sdk_ec2::Client::new(&as_member)
        .describe_instances()
        .send()
        .await
        .unwrap();
    assert_eq!(owners(theirs), [member.clone()].into());
    let ours = aws_sdk_ec2::Client::new(&hub)
        .describe_instances()
        .send()
        .await
        .unwrap();
    assert_eq!(owners(ours), [sandbox::ACCOUNT_ID.to_owned()].into());

    // Only the management account lists the organisation; a missing role cannot be assumed.
    let err = aws_sdk_organizations::Client::new(&as_member)
        .list_accounts()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_ssm::error::ProvideErrorMetadata::code(&err),
        Some("AccessDeniedException")
    );
    let err = sts
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{}:role/ImdsConsoleMember",
            sandbox::account_ids(3)[2]
        ))
        .role_session_name("test")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_ssm::error::ProvideErrorMetadata::code(&err),
        Some("AccessDenied")
    );
}

#[tokio::test]
async fn where_imdsv2_is_enforced_at_launch_ec2_refuses_optional_and_rollbacks_say_so() {
    let app = spawn_app_with(AppOptions::default()).await;
    let id = app.quiet("us-east-1").await.remove(0);
    // A run requires tokens; then the account enforces IMDSv2 at launch in the Region.
    let (status, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    assert_eq!(status, 201, "{body}");
    let run = body["execution_id"].as_str().unwrap().to_owned();
    app.wait_done(&run, Duration::from_secs(30)).await;
    let source = format!("account_default:{}:us-east-1", sandbox::ACCOUNT_ID);
    let (status, preview) = app
        .post(
            &format!("/sources/{source}/preview"),
            &json!({"enforce_at_launch": true}),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    let preview: shared::sources::SourceFixPreview = serde_json::from_value(preview).unwrap();
    assert!(
        preview
            .warnings
            .iter()
            .any(|w| w.contains("Revert") && w.contains("HttpTokensEnforced")),
        "the fix says it stops reverts: {:?}",
        preview.warnings
    );
    let (status, fix) = app
        .post(
            &format!("/sources/{source}/fix"),
            &json!({"enforce_at_launch": true, "override_reason": "every workload here is IMDSv2-only now"}),
        )
        .await;
    assert_eq!(status, 201, "{fix}");

    // EC2 refuses optional tokens there, as the sandbox does through the SDK.
    let url = app.state.sandbox_url.clone().unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let err = ec2
        .modify_instance_metadata_options()
        .instance_id(&id)
        .http_tokens(aws_sdk_ec2::types::HttpTokensState::Optional)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_ec2::error::ProvideErrorMetadata::code(&err),
        Some("UnsupportedOperation")
    );

    // The rollback preview names the instance it cannot restore, and why; the rollback sends nothing.
    let (status, preview) = app
        .post(&format!("/executions/{run}/rollback/preview"), &json!({}))
        .await;
    assert_eq!(status, 409, "{preview}");
    let refused: shared::api::ErrorBody = serde_json::from_value(preview).unwrap();
    assert!(
        refused.error.message.contains(&id) && refused.error.message.contains("HttpTokensEnforced"),
        "{}",
        refused.error.message
    );
    // A run that asks for optional tokens there would fail at its step, as on AWS: its preview and
    // its start say so before anything is sent.
    let other = app
        .quiet("us-east-1")
        .await
        .into_iter()
        .find(|i| *i != id)
        .unwrap();
    let sent = app.sandbox.execution_ids().len();
    for path in ["/executions/preview", "/executions"] {
        let (status, body) = app
            .post(
                path,
                &json!({"parameters": {"InstanceId": other, "EnforceIMDSv2": "optional"}}),
            )
            .await;
        assert_eq!(status, 400, "{path}: {body}");
        let refused: shared::api::ErrorBody = serde_json::from_value(body).unwrap();
        assert_eq!(refused.error.field.as_deref(), Some("parameters.EnforceIMDSv2"));
        assert!(
            refused.error.message.contains("HttpTokensEnforced")
                && refused.error.message.contains("us-east-1"),
            "{}",
            refused.error.message
        );
    }
    assert_eq!(app.sandbox.execution_ids().len(), sent, "nothing was sent");
    // Turning the endpoint off is not a change of tokens: still allowed.
    let (status, body) = app
        .post(
            "/executions/preview",
            &json!({"parameters": {"InstanceId": other, "EnforceIMDSv2": "optional", "MetadataAccess": "disabled"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_unclear_start_is_not_sent_again_while_ssms_list_has_not_caught_up() {
    // SSM takes the start but its reply is lost, and its list shows a new run only 3 s later. A
    // console that took "not listed" for "never started" would send it again at once: two runs.
    const LAG_MS: u64 = 3_000;
    let app = spawn_app_with(AppOptions {
        discover_secs: 1,
        unclear_start_wait_secs: 6,
        ..AppOptions::default()
    })
    .await;
    let id = app.quiet("us-east-1").await.remove(0);
    app.sandbox.set_faults(sandbox::Faults {
        rules: vec![sandbox::FaultRule {
            operation: "ssm:StartAutomationExecution".into(),
            error_500_after: 1.0,
            ..Default::default()
        }],
        list_lag_ms: LAG_MS,
        ..Default::default()
    });
    let (status, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    assert_eq!(status, 503, "{body}");
    let record_id = newest_record(&app).await["record_id"].as_i64().unwrap();
    app.sandbox.set_faults(sandbox::Faults {
        list_lag_ms: LAG_MS,
        ..Default::default()
    });
    // The watcher finds the run once SSM lists it, and adopts it.
    let settled = app
        .audit_record_until(record_id, Duration::from_secs(30), |r| {
            r["execution_id"].as_str().is_some()
        })
        .await;
    let execution = settled["execution_id"].as_str().unwrap();
    let done = app.wait_done(execution, Duration::from_secs(30)).await;
    assert_eq!(done["summary"]["status"], "Success", "{done}");
    // Anything sent again would be listed by now.
    tokio::time::sleep(Duration::from_millis(LAG_MS + 500)).await;
    assert_eq!(runs_on(&app, &id).await, 1, "exactly one run");
    assert_eq!(
        app.sandbox.execution_ids().len(),
        1,
        "exactly one start reached SSM"
    );
}

#[tokio::test]
async fn a_start_refused_for_expired_credentials_is_refused_and_never_sent_later() {
    let app = spawn_app_with(AppOptions {
        discover_secs: 1,
        ..AppOptions::default()
    })
    .await;
    let id = app.quiet("us-east-1").await.remove(0);
    app.sandbox.set_faults(sandbox::Faults {
        rules: vec![sandbox::FaultRule {
            operation: "ssm:StartAutomationExecution".into(),
            expired_token: 1.0,
            ..Default::default()
        }],
        ..Default::default()
    });
    let (status, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    let body: shared::api::ErrorBody = serde_json::from_value(body).unwrap();
    assert_eq!(body.error.code, "ExpiredTokenException", "{body:?}");
    assert_ne!(status, 503, "a definite refusal, not an unclear start");
    let record = newest_record(&app).await;
    assert_eq!(record["status"], "Refused", "{record}");
    // Credentials come back: the refused start stays refused; nothing is sent on its behalf.
    app.sandbox.set_faults(sandbox::Faults::default());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        app.audit_record(record["record_id"].as_i64().unwrap()).await["status"],
        "Refused"
    );
    assert!(app.sandbox.execution_ids().is_empty(), "nothing started");
}

#[tokio::test]
async fn a_queued_start_that_waited_past_its_expiry_is_not_sent() {
    let app = spawn_app_with(AppOptions {
        discover_secs: 1,
        speed: 1.0,
        ..AppOptions::default()
    })
    .await;
    // SSM's quota is full for as long as the test looks: the third start is queued by the console.
    app.sandbox.set_faults(sandbox::Faults {
        automation_quota: sandbox::AutomationQuota {
            running: 1,
            queued: 1,
        },
        ..Default::default()
    });
    let ids = app.quiet("us-east-1").await;
    let mut last = None;
    for id in &ids[..3] {
        last = Some(
            app.post("/executions", &json!({"parameters": {"InstanceId": id}}))
                .await,
        );
    }
    let (status, queued) = last.unwrap();
    assert_eq!(status, 202, "{queued}");
    let record_id = queued["record_id"].as_i64().unwrap();
    // An hour later (the console's clock moved), the readiness check it passed is stale: it is
    // not sent, and says why.
    app.state.store.clock.advance(Duration::from_secs(61 * 60));
    let refused = app
        .audit_record_until(record_id, Duration::from_secs(20), |r| r["status"] == "Refused")
        .await;
    assert!(refused["execution_id"].is_null(), "{refused}");
    let (_, detail) = app.get("/audit").await;
    assert!(
        detail.to_string().contains("waited more than 60 minutes"),
        "the record says why: {refused}"
    );
    assert_eq!(
        app.sandbox.execution_ids().len(),
        2,
        "the queued start never reached SSM"
    );
}
