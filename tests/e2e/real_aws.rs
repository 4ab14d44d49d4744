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
