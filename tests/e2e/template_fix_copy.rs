//! A launch template's fix is a copy of its version but for the tokens. EC2 makes a version from a
//! SourceVersion by letting each parameter the request gives replace the inherited one whole, and
//! drops inherited EBS snapshots unless they are given again: the sandbox applies both rules, and
//! the console sends the whole metadata block and the block device mappings with their snapshots.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptionsRequest, RequestLaunchTemplateData,
    ResponseLaunchTemplateData,
};
use e2e::{sdk_config, spawn_app, TestApp};
use serde_json::json;
use shared::sources::{SourceFix, SourceKind, SourceState, SourcesView};

const REGION: &str = "us-east-1";

async fn ec2(app: &TestApp) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&sdk_config(app.state.sandbox_url.as_deref().unwrap(), REGION, 1).await)
}

/// The seeded `web` template of us-east-1: its source ID (for the console) and its template ID.
async fn web_template(app: &TestApp) -> (String, String) {
    let (status, body) = app.get("/sources").await;
    assert_eq!(status, 200, "{body}");
    let view: SourcesView = serde_json::from_value(body).unwrap();
    let web = view
        .sources
        .into_iter()
        .find(|s| s.kind == SourceKind::LaunchTemplate && s.name == "web" && s.region == REGION)
        .expect("the seeded web template");
    (web.id, web.resource_id)
}

async fn version_data(ec2: &aws_sdk_ec2::Client, template: &str, version: i64) -> ResponseLaunchTemplateData {
    ec2.describe_launch_template_versions()
        .launch_template_id(template)
        .versions(version.to_string())
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions")
        .launch_template_versions()[0]
        .launch_template_data()
        .cloned()
        .expect("launch template data")
}

#[tokio::test]
async fn a_template_fix_copies_the_whole_version_and_changes_only_the_tokens() {
    let app = spawn_app().await;
    let ec2 = ec2(&app).await;
    let (source_id, template) = web_template(&app).await;
    let before = version_data(&ec2, &template, 1).await;
    // What the fix must carry: a full metadata block with the endpoint unset, and snapshot volumes.
    let md = before.metadata_options().unwrap();
    assert_eq!(md.http_endpoint(), None, "{md:?}");
    assert!(
        md.instance_metadata_tags().is_some() && md.http_protocol_ipv6().is_some(),
        "{md:?}"
    );
    assert!(
        before
            .block_device_mappings()
            .iter()
            .any(|m| m.ebs().and_then(|e| e.snapshot_id()).is_some()),
        "{before:?}"
    );

    let (status, fix) = app
        .post(
            &format!("/sources/{}/fix", source_id.replace(':', "%3A")),
            &json!({"override_reason": "the web tier's new AMI ships IMDSv2-only software"}),
        )
        .await;
    assert_eq!(status, 201, "{fix}");
    let fix: SourceFix = serde_json::from_value(fix).unwrap();
    let Some(SourceState::LaunchTemplate { default_version, .. }) = fix.applied else {
        panic!("not a template fix: {fix:?}")
    };
    let after = version_data(&ec2, &template, default_version).await;

    assert_eq!(
        after.metadata_options().unwrap().http_tokens(),
        Some(&LaunchTemplateHttpTokensState::Required)
    );
    // Everything else as it was: the same data once the tokens are set back.
    let mut restored_md = after.metadata_options().unwrap().clone();
    restored_md.http_tokens = md.http_tokens().cloned();
    let mut restored = after.clone();
    restored.metadata_options = Some(restored_md);
    assert_eq!(
        restored, before,
        "the new version differs from its source beyond HttpTokens"
    );
}

#[tokio::test]
async fn a_new_version_from_a_source_version_follows_ec2_s_overwrite_rules() {
    let app = spawn_app().await;
    let ec2 = ec2(&app).await;
    let (_, template) = web_template(&app).await;
    let source = version_data(&ec2, &template, 1).await;
    let create = |data: RequestLaunchTemplateData| {
        ec2.create_launch_template_version()
            .launch_template_id(&template)
            .source_version("1")
            .launch_template_data(data)
            .send()
    };

    // MetadataOptions given in part: the block is replaced whole, the members not given are gone;
    // the inherited volumes stay, without their snapshots.
    let made = create(
        RequestLaunchTemplateData::builder()
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(LaunchTemplateHttpTokensState::Required)
                    .build(),
            )
            .build(),
    )
    .await
    .expect("CreateLaunchTemplateVersion");
    let data = made
        .launch_template_version()
        .and_then(|v| v.launch_template_data())
        .unwrap();
    let md = data.metadata_options().unwrap();
    assert_eq!(
        (
            md.http_tokens(),
            md.http_put_response_hop_limit(),
            md.instance_metadata_tags(),
            md.http_protocol_ipv6()
        ),
        (Some(&LaunchTemplateHttpTokensState::Required), None, None, None),
        "{md:?}"
    );
    assert_eq!(
        data.block_device_mappings().len(),
        source.block_device_mappings().len()
    );
    for (new, old) in data
        .block_device_mappings()
        .iter()
        .zip(source.block_device_mappings())
    {
        assert_eq!(new.device_name(), old.device_name());
        assert_eq!(new.ebs().and_then(|e| e.snapshot_id()), None, "{new:?}");
        assert_eq!(
            new.ebs().and_then(|e| e.volume_size()),
            old.ebs().and_then(|e| e.volume_size())
        );
    }

    // A value EC2 does not take is refused, and nothing is made.
    let err = create(
        RequestLaunchTemplateData::builder()
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_protocol_ipv6("sometimes".into())
                    .build(),
            )
            .build(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
}
