//! Sources seen as AWS shows them (issue 28, item 12): a template whose image is an SSM parameter is
//! judged by the AMI the parameter resolves to; AMIs of other owners that are deprecated, and the
//! account's own disabled ones, are read; a template a service manages is shown but not fixed; a
//! group with a MixedInstancesPolicy is judged by every template it can launch from; Spot Fleet
//! requests are read like EC2 Fleets. The sandbox, as EC2, answers none of these unless asked.

use e2e::{sdk_config, spawn_app, TestApp};
use serde_json::json;
use shared::sources::{SourceKind, SourcePosture, SourceView, SourcesView};

const REGION: &str = "us-east-1";

async fn sources_view(app: &TestApp) -> Vec<SourceView> {
    let (status, body) = app.get("/sources").await;
    assert_eq!(status, 200, "{body}");
    let view: SourcesView = serde_json::from_value(body).expect("a SourcesView");
    // The hub's own sources: every place has the same seeded ones.
    view.sources
        .into_iter()
        .filter(|s| s.region == REGION && s.account == sandbox::ACCOUNT_ID)
        .collect()
}

fn find<'a>(sources: &'a [SourceView], kind: SourceKind, name: &str) -> &'a SourceView {
    sources
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .unwrap_or_else(|| panic!("no {kind:?} {name} in {sources:?}"))
}

async fn ec2(app: &TestApp) -> aws_sdk_ec2::Client {
    let conf = sdk_config(app.state.sandbox_url.as_deref().unwrap(), REGION, 1).await;
    aws_sdk_ec2::Client::new(&conf)
}

#[tokio::test]
async fn a_template_whose_image_is_an_ssm_parameter_is_judged_by_the_ami_it_resolves_to() {
    let app = spawn_app().await;
    let ec2 = ec2(&app).await;
    // EC2 answers the parameter as given unless asked to resolve it.
    let as_given = ec2
        .describe_launch_template_versions()
        .launch_template_name("al2023-ssm")
        .versions("$Default")
        .send()
        .await
        .unwrap();
    let image = as_given.launch_template_versions()[0]
        .launch_template_data()
        .unwrap()
        .image_id()
        .unwrap()
        .to_owned();
    assert!(image.starts_with("resolve:ssm:/aws/service/"), "{image}");
    let resolved = ec2
        .describe_launch_template_versions()
        .launch_template_name("al2023-ssm")
        .versions("$Default")
        .resolve_alias(true)
        .send()
        .await
        .unwrap();
    let ami = resolved.launch_template_versions()[0]
        .launch_template_data()
        .unwrap()
        .image_id()
        .unwrap()
        .to_owned();
    assert!(ami.starts_with("ami-"), "{ami}");

    // Amazon's AMI is marked v2.0: a launch that leaves HttpTokens unset requires tokens.
    let sources = sources_view(&app).await;
    let template = find(&sources, SourceKind::LaunchTemplate, "al2023-ssm");
    assert_eq!(template.posture, SourcePosture::RequiresTokens, "{template:?}");
    assert!(template.detail.contains(&ami), "{template:?}");
}

#[tokio::test]
async fn deprecated_amis_of_other_owners_and_the_account_s_disabled_amis_are_read() {
    let app = spawn_app().await;
    let ec2 = ec2(&app).await;
    let names = |out: aws_sdk_ec2::operation::describe_images::DescribeImagesOutput| -> Vec<String> {
        out.images()
            .iter()
            .map(|i| i.name().unwrap_or_default().to_owned())
            .collect()
    };
    // As EC2: hidden unless asked for.
    let plain = names(ec2.describe_images().send().await.unwrap());
    assert!(
        !plain
            .iter()
            .any(|n| n == "golden-base-2021.07" || n == "retired-app-2020.01"),
        "{plain:?}"
    );
    let all = names(
        ec2.describe_images()
            .include_deprecated(true)
            .include_disabled(true)
            .send()
            .await
            .unwrap(),
    );
    assert!(
        all.iter().any(|n| n == "golden-base-2021.07") && all.iter().any(|n| n == "retired-app-2020.01"),
        "{all:?}"
    );

    let sources = sources_view(&app).await;
    let golden = find(&sources, SourceKind::Image, "golden-base-2021.07");
    assert_eq!(golden.posture, SourcePosture::AllowsImdsv1, "{golden:?}");
    assert!(golden.instances > 0, "instances came from it: {golden:?}");
    assert!(
        golden.detail.contains("deprecated") && golden.detail.contains("210987654321"),
        "{golden:?}"
    );
    assert!(
        golden.related.iter().any(|r| r.starts_with("Spot Fleet sfr-")),
        "a Spot Fleet launch specification uses it: {golden:?}"
    );
    let retired = find(&sources, SourceKind::Image, "retired-app-2020.01");
    assert!(retired.instances > 0, "{retired:?}");
    assert!(retired.detail.contains("disabled"), "{retired:?}");
}

#[tokio::test]
async fn a_template_a_service_manages_is_shown_but_not_offered_as_fixable() {
    let app = spawn_app().await;
    let sources = sources_view(&app).await;
    let managed = find(&sources, SourceKind::LaunchTemplate, "ecs-managed-capacity");
    assert_eq!(managed.posture, SourcePosture::AllowsImdsv1, "{managed:?}");
    assert!(!managed.fixable, "{managed:?}");
    let advice = managed.advice.clone().unwrap_or_default();
    assert!(advice.contains("ecs.amazonaws.com"), "{managed:?}");
    let id = managed.id.replace(':', "%3A");
    let (status, body) = app.post(&format!("/sources/{id}/preview"), &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "NotFixable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ecs.amazonaws.com"),
        "{body}"
    );
}

#[tokio::test]
async fn a_mixed_instances_group_is_judged_by_every_template_it_launches_and_spot_fleets_are_read() {
    let app = spawn_app().await;
    let sources = sources_view(&app).await;
    // Its policy's template (batch, $Latest) requires tokens; an override launches web, which does not.
    let mixed = find(&sources, SourceKind::AutoScalingGroup, "mixed-asg");
    assert_eq!(mixed.posture, SourcePosture::AllowsImdsv1, "{mixed:?}");
    assert!(mixed.detail.contains("web"), "{mixed:?}");
    let web = find(&sources, SourceKind::LaunchTemplate, "web");
    assert!(web.related.iter().any(|r| r == "mixed-asg"), "{web:?}");
    // A group on two templates is fixed through each template.
    assert!(!mixed.fixable, "{mixed:?}");
    let worker = find(&sources, SourceKind::LaunchTemplate, "worker");
    assert!(
        worker.related.iter().any(|r| r.starts_with("Spot Fleet sfr-")),
        "{worker:?}"
    );
}
