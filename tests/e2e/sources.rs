//! Sources of new IMDSv1 instances (issue 14): launch templates and account defaults are fixed with a
//! preview and a record first, a group's scale-out in the sandbox shows the cure (and, reverted, the
//! regression), and what cannot be fixed here says what to do instead.

use e2e::{sdk_config, spawn_app, TestApp};
use serde_json::{json, Value};
use shared::sources::{
    SourceFix, SourceFixPreview, SourceFixes, SourceKind, SourcePosture, SourceState, SourceView, SourcesView,
};

const REGION: &str = "us-east-1";

struct Aws {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
}

async fn aws(app: &TestApp) -> Aws {
    let conf = sdk_config(app.state.sandbox_url.as_deref().unwrap(), REGION, 1).await;
    Aws {
        ec2: aws_sdk_ec2::Client::new(&conf),
        autoscaling: aws_sdk_autoscaling::Client::new(&conf),
    }
}

async fn source(app: &TestApp, kind: &str, name: &str) -> Value {
    let (status, body) = app.get("/sources").await;
    assert_eq!(status, 200, "{body}");
    body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind && s["name"] == name && s["region"] == REGION)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} {name} in {body}"))
}

fn path_of(id: &str) -> String {
    id.replace(':', "%3A")
}

impl Aws {
    /// The group's instances that are not terminated, and the metadata options of the newest.
    async fn scale_out(&self, group: &str) -> (usize, Option<String>) {
        let before = self.group_instances(group).await;
        self.autoscaling
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(before.len() as i32 + 1)
            .send()
            .await
            .expect("SetDesiredCapacity");
        let after = self.group_instances(group).await;
        let new: Vec<&String> = after.iter().filter(|i| !before.contains(i)).collect();
        let tokens = match new.first() {
            None => None,
            Some(id) => {
                let out = self
                    .ec2
                    .describe_instances()
                    .instance_ids(*id)
                    .send()
                    .await
                    .expect("DescribeInstances");
                let inst = &out.reservations()[0].instances()[0];
                inst.metadata_options()
                    .and_then(|m| m.http_tokens())
                    .map(|t| t.as_str().to_owned())
            }
        };
        (new.len(), tokens)
    }

    async fn group_instances(&self, group: &str) -> Vec<String> {
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .expect("DescribeAutoScalingGroups");
        out.auto_scaling_groups()[0]
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect()
    }

    async fn default_version(&self, template_id: &str) -> i64 {
        let out = self
            .ec2
            .describe_launch_templates()
            .launch_template_ids(template_id)
            .send()
            .await
            .expect("DescribeLaunchTemplates");
        out.launch_templates()[0].default_version_number().unwrap()
    }

    async fn last_activity(&self, group: &str) -> (String, String) {
        let out = self
            .autoscaling
            .describe_scaling_activities()
            .auto_scaling_group_name(group)
            .send()
            .await
            .expect("DescribeScalingActivities");
        let a = &out.activities()[0];
        (
            a.status_code().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            a.status_message().unwrap_or_default().to_owned(),
        )
    }
}

#[tokio::test]
async fn a_launch_template_allowing_imdsv1_is_fixed_after_a_preview_and_reverted_to_its_prior_default() {
    let app = spawn_app().await;
    let aws = aws(&app).await;
    let web = source(&app, "launch_template", "web").await;
    assert_eq!(web["posture"], "allows_imdsv1", "{web}");
    assert!(
        web["related"].as_array().unwrap().contains(&json!("web-asg")),
        "{web}"
    );
    assert!(
        web["instances"].as_u64().unwrap() > 0,
        "instances came from it: {web}"
    );
    let template_id = web["resource_id"].as_str().unwrap().to_owned();
    let id = path_of(web["id"].as_str().unwrap());

    // Before: the group launches IMDSv1 instances.
    assert_eq!(aws.scale_out("web-asg").await, (1, Some("optional".to_owned())));

    let (status, preview) = app
        .post(&format!("/sources/{id}/preview"), &json!({"hop_limit": 2}))
        .await;
    assert_eq!(status, 200, "{preview}");
    let changes: Vec<&str> = preview["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(changes.contains(&"HttpTokens: optional → required"), "{preview}");
    assert!(changes.contains(&"Default version: 1 → 2"), "{preview}");
    assert_eq!(preview["groups"][0], "web-asg ($Default)", "{preview}");
    assert_eq!(
        aws.default_version(&template_id).await,
        1,
        "a preview changes nothing"
    );

    // While instances from the template still call IMDSv1, the fix needs a written reason.
    if preview["needs_override"] == true {
        let (status, refused) = app.post(&format!("/sources/{id}/fix"), &json!({})).await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(
            aws.default_version(&template_id).await,
            1,
            "a refused fix changes nothing"
        );
    }
    let (status, fix) = app
        .post(
            &format!("/sources/{id}/fix"),
            &json!({"hop_limit": 2, "override_reason": "the web tier's new AMI ships IMDSv2-only software"}),
        )
        .await;
    assert_eq!(status, 201, "{fix}");
    assert_eq!(fix["status"], "applied");
    assert_eq!(fix["prior"]["default_version"], 1);
    assert_eq!(fix["applied"]["default_version"], 2);
    assert_eq!(aws.default_version(&template_id).await, 2);

    // The record: who, why, and the prior state.
    let (_, fixes) = app.get("/sources/fixes").await;
    let recorded = &fixes["fixes"][0];
    assert_eq!(recorded["fix_id"], fix["fix_id"]);
    assert_eq!(recorded["requester"], "admin");
    assert_eq!(
        recorded["override_reason"],
        "the web tier's new AMI ships IMDSv2-only software"
    );
    assert_eq!(recorded["prior"]["options"]["http_tokens"], "optional");

    // The cure: the next scale-out launches an IMDSv2-only instance, and the source says so.
    assert_eq!(aws.scale_out("web-asg").await, (1, Some("required".to_owned())));
    assert_eq!(
        source(&app, "launch_template", "web").await["posture"],
        "requires_tokens"
    );
    assert_eq!(
        source(&app, "auto_scaling_group", "web-asg").await["posture"],
        "requires_tokens"
    );

    // Revert: the prior default version again, and new instances allow IMDSv1 again.
    let fix_id = fix["fix_id"].as_str().unwrap();
    let (status, reverted) = app
        .post(&format!("/sources/fixes/{fix_id}/revert"), &json!({}))
        .await;
    assert_eq!(status, 200, "{reverted}");
    assert_eq!(reverted["status"], "reverted");
    assert_eq!(reverted["reverted_by"], "admin");
    assert_eq!(aws.default_version(&template_id).await, 1);
    assert_eq!(aws.scale_out("web-asg").await, (1, Some("optional".to_owned())));
    let (status, again) = app
        .post(&format!("/sources/fixes/{fix_id}/revert"), &json!({}))
        .await;
    assert_eq!(status, 409, "a revert happens once: {again}");
}

#[tokio::test]
async fn the_account_default_is_set_with_launch_enforcement_and_reverted() {
    let app = spawn_app().await;
    let aws = aws(&app).await;
    let default = source(&app, "account_default", "Instance metadata defaults").await;
    assert_eq!(default["posture"], "allows_imdsv1", "{default}");
    // The worker template launches an Auto Scaling group and an EC2 Fleet.
    let worker = source(&app, "launch_template", "worker").await;
    let related = worker["related"].to_string();
    assert!(
        related.contains("worker-asg") && related.contains("EC2 Fleet fleet-"),
        "{worker}"
    );
    let id = path_of(default["id"].as_str().unwrap());

    let (status, preview) = app
        .post(
            &format!("/sources/{id}/preview"),
            &json!({"hop_limit": 2, "enforce_at_launch": true}),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    let changes = preview["changes"].to_string();
    assert!(
        changes.contains("HttpTokens: no preference → required"),
        "{preview}"
    );
    assert!(
        changes.contains("HttpTokensEnforced: no preference → enabled"),
        "{preview}"
    );
    // The web template asks for optional itself: enforcement would refuse its launches, and the
    // preview says so before anything changes.
    let refused = preview["refused_after"].to_string();
    assert!(
        refused.contains("launch template web") && refused.contains("Auto Scaling group web-asg"),
        "{preview}"
    );
    assert!(
        !refused.contains("worker"),
        "the worker template follows the default: {preview}"
    );

    let (status, fix) = app
        .post(
            &format!("/sources/{id}/fix"),
            &json!({"hop_limit": 2, "enforce_at_launch": true, "override_reason": "new launches only; checked with the app teams"}),
        )
        .await;
    assert_eq!(status, 201, "{fix}");
    assert_eq!(
        fix["prior"]["http_tokens"],
        Value::Null,
        "no preference before: {fix}"
    );
    let read = aws.ec2.get_instance_metadata_defaults().send().await.unwrap();
    let level = read.account_level().unwrap();
    assert_eq!(level.http_tokens().map(|t| t.as_str()), Some("required"));
    assert_eq!(level.http_tokens_enforced().map(|t| t.as_str()), Some("enabled"));
    assert_eq!(level.http_put_response_hop_limit(), Some(2));

    // The worker template leaves tokens unset: it now launches IMDSv2-only. The web template's
    // launches are refused, as EC2 refuses them, and its source says so.
    assert_eq!(
        aws.scale_out("worker-asg").await,
        (1, Some("required".to_owned()))
    );
    assert_eq!(aws.scale_out("web-asg").await, (0, None));
    let (status, message) = aws.last_activity("web-asg").await;
    assert_eq!(status, "Failed");
    assert!(message.contains("HttpTokensEnforced"), "{message}");
    assert_eq!(
        source(&app, "launch_template", "web").await["posture"],
        "launch_refused"
    );

    let fix_id = fix["fix_id"].as_str().unwrap();
    let (status, reverted) = app
        .post(&format!("/sources/fixes/{fix_id}/revert"), &json!({}))
        .await;
    assert_eq!(status, 200, "{reverted}");
    let read = aws.ec2.get_instance_metadata_defaults().send().await.unwrap();
    let level = read.account_level().unwrap();
    assert_eq!(level.http_tokens(), None, "no preference again");
    assert_eq!(level.http_tokens_enforced(), None);
    assert_eq!(level.http_put_response_hop_limit(), None);
    assert_eq!(aws.scale_out("web-asg").await, (1, Some("optional".to_owned())));
}

#[tokio::test]
async fn reverting_a_default_fix_leaves_a_change_made_since_alone() {
    use aws_sdk_ec2::types::{DefaultHttpTokensEnforcedState, MetadataDefaultHttpTokensState};
    let app = spawn_app().await;
    let aws = aws(&app).await;
    let default = source(&app, "account_default", "Instance metadata defaults").await;
    let id = path_of(default["id"].as_str().unwrap());
    let (status, fix) = app
        .post(
            &format!("/sources/{id}/fix"),
            &json!({"hop_limit": 2, "override_reason": "new launches only; checked with the app teams"}),
        )
        .await;
    assert_eq!(status, 201, "{fix}");
    let fix: SourceFix = serde_json::from_value(fix).unwrap();
    // The security team turns on launch enforcement and another hop limit after the fix.
    aws.ec2
        .modify_instance_metadata_defaults()
        .http_tokens(MetadataDefaultHttpTokensState::Required)
        .http_put_response_hop_limit(3)
        .http_tokens_enforced(DefaultHttpTokensEnforcedState::Enabled)
        .send()
        .await
        .unwrap();
    let (status, refused) = app
        .post(&format!("/sources/fixes/{}/revert", fix.fix_id), &json!({}))
        .await;
    assert_eq!(status, 409, "{refused}");
    let refused: shared::api::ErrorBody = serde_json::from_value(refused).unwrap();
    assert_eq!(refused.error.code, "ChangedSinceFix");
    assert!(
        refused
            .error
            .message
            .contains("hop limit 3, launch enforcement enabled"),
        "{}",
        refused.error.message
    );
    let read = aws.ec2.get_instance_metadata_defaults().send().await.unwrap();
    let level = read.account_level().unwrap();
    assert_eq!(
        level.http_tokens_enforced().map(|t| t.as_str()),
        Some("enabled"),
        "their change stays"
    );
    assert_eq!(level.http_put_response_hop_limit(), Some(3));
    let (_, fixes) = app.get("/sources/fixes").await;
    let fixes: Vec<SourceFix> = serde_json::from_value(fixes["fixes"].clone()).unwrap();
    let still = fixes.iter().find(|f| f.fix_id == fix.fix_id).unwrap();
    assert_eq!(still.status, "applied", "nothing was reverted: {still:?}");

    // Back as the fix left them, the revert goes through.
    aws.ec2
        .modify_instance_metadata_defaults()
        .http_put_response_hop_limit(2)
        .http_tokens_enforced(DefaultHttpTokensEnforcedState::NoPreference)
        .send()
        .await
        .unwrap();
    let (status, reverted) = app
        .post(&format!("/sources/fixes/{}/revert", fix.fix_id), &json!({}))
        .await;
    assert_eq!(status, 200, "{reverted}");
    let read = aws.ec2.get_instance_metadata_defaults().send().await.unwrap();
    assert_eq!(read.account_level().unwrap().http_tokens(), None);
}

#[tokio::test]
async fn defaults_managed_by_a_declarative_policy_get_the_policy_text_and_are_not_changed() {
    let app = spawn_app().await;
    let aws = aws(&app).await;
    app.sandbox.set_faults(sandbox::Faults {
        declarative_policy: [sandbox::ACCOUNT_ID.to_owned()].into(),
        ..sandbox::Faults::default()
    });
    let default = source(&app, "account_default", "Instance metadata defaults").await;
    assert_eq!(default["fixable"], false, "{default}");
    assert!(
        default["advice"].as_str().unwrap().contains("declarative policy"),
        "{default}"
    );
    let id = path_of(default["id"].as_str().unwrap());
    let (status, preview) = app
        .post(
            &format!("/sources/{id}/preview"),
            &json!({"enforce_at_launch": true}),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["managed_by_policy"], true);
    let policy: Value =
        serde_json::from_str(preview["policy_text"].as_str().unwrap()).expect("the policy text is JSON");
    assert_eq!(
        policy["ec2_attributes"]["instance_metadata_defaults"]["http_tokens"]["@@assign"],
        "required"
    );
    // AWS's declarative policy syntax has no launch-enforcement attribute: the text invents none,
    // and the preview says in words what the policy cannot do.
    assert!(
        policy["ec2_attributes"]["instance_metadata_defaults"]
            .get("http_tokens_enforced")
            .is_none(),
        "{policy}"
    );
    let preview: shared::sources::SourceFixPreview = serde_json::from_value(preview).unwrap();
    assert!(
        preview
            .warnings
            .iter()
            .any(|w| w.contains("no attribute for enforcing IMDSv2 at launch")),
        "{:?}",
        preview.warnings
    );
    let (status, refused) = app
        .post(
            &format!("/sources/{id}/fix"),
            &json!({"override_reason": "trying anyway, for the test"}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        refused["error"]["code"], "ManagedByDeclarativePolicy",
        "{refused}"
    );
    let read = aws.ec2.get_instance_metadata_defaults().send().await.unwrap();
    assert_eq!(
        read.account_level().unwrap().http_tokens(),
        None,
        "nothing changed"
    );
}

#[tokio::test]
async fn bad_source_requests_say_what_is_wrong_and_change_nothing() {
    let app = spawn_app().await;
    let aws = aws(&app).await;
    let web = source(&app, "launch_template", "web").await;
    let template_id = web["resource_id"].as_str().unwrap().to_owned();
    let id = path_of(web["id"].as_str().unwrap());

    let (status, body) = app.post("/sources/not-a-source/preview", &json!({})).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kind:account:region"),
        "{body}"
    );
    let (status, body) = app
        .post(
            &format!("/sources/{id}/fix"),
            &json!({"hop_limit": 65, "override_reason": "ok"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let fields = body["error"]["fields"].to_string();
    assert!(
        fields.contains("hop_limit") && fields.contains("override_reason"),
        "{body}"
    );
    let image = source(&app, "image", "legacy-app-2019.03").await;
    let (status, body) = app
        .post(
            &format!("/sources/{}/fix", path_of(image["id"].as_str().unwrap())),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--imds-support v2.0"),
        "{body}"
    );
    let (status, body) = app.post("/sources/fixes/no-such-fix/revert", &json!({})).await;
    assert_eq!(status, 404, "{body}");

    // AWS refuses the change: the fix is recorded as failed with AWS's reason, nothing changed.
    app.sandbox.set_faults(sandbox::Faults {
        deny: ["ec2:CreateLaunchTemplateVersion".to_owned()].into(),
        ..sandbox::Faults::default()
    });
    let (status, body) = app
        .post(
            &format!("/sources/{id}/fix"),
            &json!({"override_reason": "recorded even when AWS says no"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (_, fixes) = app.get("/sources/fixes").await;
    assert_eq!(fixes["fixes"][0]["status"], "failed", "{fixes}");
    assert!(
        fixes["fixes"][0]["error"]
            .as_str()
            .unwrap()
            .contains("UnauthorizedOperation"),
        "{fixes}"
    );
    app.sandbox.set_faults(sandbox::Faults::default());
    assert_eq!(aws.default_version(&template_id).await, 1);

    // Viewers see the sources and cannot fix them.
    let password = app.add_user("vera", "viewer").await;
    let cookie = app.session("vera", &password).await;
    let browser = reqwest::Client::new();
    let list = browser
        .get(app.url("/sources"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let fix = browser
        .post(app.url(&format!("/sources/{id}/fix")))
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .json(&json!({"override_reason": "a viewer trying to change it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fix.status(), 403);
}

/// Every source of the test's Region, decoded as the browser decodes it.
async fn sources_view(app: &TestApp) -> Vec<SourceView> {
    let (status, body) = app.get("/sources").await;
    assert_eq!(status, 200, "{body}");
    let view: SourcesView = serde_json::from_value(body).expect("a SourcesView");
    view.sources.into_iter().filter(|s| s.region == REGION).collect()
}

fn find<'a>(sources: &'a [SourceView], kind: SourceKind, name: &str) -> &'a SourceView {
    sources
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .unwrap_or_else(|| panic!("no {kind:?} {name} in {sources:?}"))
}

#[tokio::test]
async fn a_group_on_a_launch_configuration_is_judged_by_the_configuration_s_metadata_options() {
    let app = spawn_app().await;
    let sources = sources_view(&app).await;
    // legacy-lc sets HttpTokens optional itself: IMDSv1 allowed, whatever the default says.
    let legacy = find(&sources, SourceKind::AutoScalingGroup, "legacy-asg");
    assert_eq!(legacy.posture, SourcePosture::AllowsImdsv1, "{legacy:?}");
    assert!(
        legacy.detail.contains("legacy-lc sets HttpTokens optional"),
        "{legacy:?}"
    );
    assert_eq!(legacy.related, ["legacy-lc"], "{legacy:?}");
    assert!(
        !legacy.fixable,
        "a launch configuration cannot be changed: {legacy:?}"
    );
    assert!(
        legacy
            .advice
            .as_deref()
            .unwrap_or_default()
            .contains("launch template"),
        "{legacy:?}"
    );
    // imdsv2-lc requires tokens (on an AMI not marked v2.0): only its own options say so.
    let modern = find(&sources, SourceKind::AutoScalingGroup, "imdsv2-lc-asg");
    assert_eq!(modern.posture, SourcePosture::RequiresTokens, "{modern:?}");
    assert!(
        modern.detail.contains("imdsv2-lc sets HttpTokens required"),
        "{modern:?}"
    );
    assert!(!modern.fixable && modern.advice.is_none(), "{modern:?}");

    // Not fixable here: the refusal names the configuration and what to do.
    let (status, refused) = app
        .post(&format!("/sources/{}/preview", path_of(&legacy.id)), &json!({}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "NotFixable", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("legacy-lc"),
        "{refused}"
    );

    // Enforcing tokens at launch refuses the configuration that asks for optional, and only it.
    let default = find(&sources, SourceKind::AccountDefault, "Instance metadata defaults");
    let (status, preview) = app
        .post(
            &format!("/sources/{}/preview", path_of(&default.id)),
            &json!({"enforce_at_launch": true}),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    let preview: SourceFixPreview = serde_json::from_value(preview).unwrap();
    assert!(
        preview
            .refused_after
            .iter()
            .any(|r| r == "Auto Scaling group legacy-asg"),
        "{preview:?}"
    );
    assert!(
        !preview.refused_after.iter().any(|r| r.contains("imdsv2-lc-asg")),
        "{preview:?}"
    );
    let (status, fix) = app
        .post(
            &format!("/sources/{}/fix", path_of(&default.id)),
            &json!({"enforce_at_launch": true, "override_reason": "new launches only; checked with the app teams"}),
        )
        .await;
    assert_eq!(status, 201, "{fix}");
    let sources = sources_view(&app).await;
    assert_eq!(
        find(&sources, SourceKind::AutoScalingGroup, "legacy-asg").posture,
        SourcePosture::LaunchRefused
    );
    assert_eq!(
        find(&sources, SourceKind::AutoScalingGroup, "imdsv2-lc-asg").posture,
        SourcePosture::RequiresTokens
    );
}

impl Aws {
    /// The template's default and latest version numbers, and the HttpTokens `$Latest` launches with.
    async fn versions(&self, template_id: &str) -> (i64, i64, Option<String>) {
        let out = self
            .ec2
            .describe_launch_templates()
            .launch_template_ids(template_id)
            .send()
            .await
            .expect("DescribeLaunchTemplates");
        let t = &out.launch_templates()[0];
        let latest = self
            .ec2
            .describe_launch_template_versions()
            .launch_template_id(template_id)
            .versions("$Latest")
            .send()
            .await
            .expect("DescribeLaunchTemplateVersions");
        let tokens = latest.launch_template_versions()[0]
            .launch_template_data()
            .and_then(|d| d.metadata_options())
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str().to_owned());
        (
            t.default_version_number().unwrap(),
            t.latest_version_number().unwrap(),
            tokens,
        )
    }

    async fn version_exists(&self, template_id: &str, version: i64) -> bool {
        self.ec2
            .describe_launch_template_versions()
            .launch_template_id(template_id)
            .versions(version.to_string())
            .send()
            .await
            .is_ok_and(|o| !o.launch_template_versions().is_empty())
    }

    async fn make_default(&self, template_id: &str, version: i64) {
        self.ec2
            .modify_launch_template()
            .launch_template_id(template_id)
            .default_version(version.to_string())
            .send()
            .await
            .expect("ModifyLaunchTemplate");
    }
}

async fn fix_template(app: &TestApp, id: &str) -> SourceFix {
    let (status, fix) = app
        .post(
            &format!("/sources/{}/fix", path_of(id)),
            &json!({"override_reason": "the web tier's new AMI ships IMDSv2-only software"}),
        )
        .await;
    assert_eq!(status, 201, "{fix}");
    serde_json::from_value(fix).expect("a SourceFix")
}

fn made(fix: &SourceFix) -> i64 {
    match &fix.applied {
        Some(SourceState::LaunchTemplate { default_version, .. }) => *default_version,
        other => panic!("not a template fix: {other:?}"),
    }
}

#[tokio::test]
async fn reverting_a_template_fix_deletes_its_version_and_leaves_a_later_change_alone() {
    let app = spawn_app().await;
    let aws = aws(&app).await;
    let sources = sources_view(&app).await;
    let web = find(&sources, SourceKind::LaunchTemplate, "web").clone();
    let template = web.resource_id.clone();

    // A fix, reverted: the default goes back and the fix's version is gone, so what `$Latest`
    // launches allows IMDSv1 again too.
    let fix = fix_template(&app, &web.id).await;
    let version = made(&fix);
    assert_eq!(
        aws.versions(&template).await,
        (version, version, Some("required".into()))
    );
    let (status, reverted) = app
        .post(&format!("/sources/fixes/{}/revert", fix.fix_id), &json!({}))
        .await;
    assert_eq!(status, 200, "{reverted}");
    let reverted: SourceFix = serde_json::from_value(reverted).unwrap();
    assert_eq!(reverted.status, "reverted");
    assert_eq!(reverted.error, None, "nothing left changed: {reverted:?}");
    assert_eq!(aws.versions(&template).await, (1, 1, Some("optional".into())));
    assert!(!aws.version_exists(&template, version).await);

    // Another fix, then someone makes a version of their own the default: the revert refuses and
    // changes nothing.
    let fix = fix_template(&app, &web.id).await;
    let version = made(&fix);
    let theirs = aws
        .ec2
        .create_launch_template_version()
        .launch_template_id(&template)
        .source_version(version.to_string())
        .version_description("the web team's own change")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .instance_type(aws_sdk_ec2::types::InstanceType::M6iXlarge)
                .build(),
        )
        .send()
        .await
        .expect("CreateLaunchTemplateVersion")
        .launch_template_version()
        .and_then(|v| v.version_number())
        .unwrap();
    aws.make_default(&template, theirs).await;
    let (status, refused) = app
        .post(&format!("/sources/fixes/{}/revert", fix.fix_id), &json!({}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "ChangedSinceFix", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("is now {theirs}")),
        "{refused}"
    );
    assert_eq!(aws.versions(&template).await.0, theirs, "nothing was reverted");
    assert!(aws.version_exists(&template, version).await);
    let (_, fixes) = app.get("/sources/fixes").await;
    let fixes: SourceFixes = serde_json::from_value(fixes).unwrap();
    assert_eq!(fixes.fixes[0].status, "applied", "{fixes:?}");

    // They put the fix's version back as the default; EC2 will not delete versions now. The revert
    // still moves the default back and says plainly what stays changed.
    aws.make_default(&template, version).await;
    app.sandbox.set_faults(sandbox::Faults {
        deny: ["ec2:DeleteLaunchTemplateVersions".to_owned()].into(),
        ..sandbox::Faults::default()
    });
    let (status, reverted) = app
        .post(&format!("/sources/fixes/{}/revert", fix.fix_id), &json!({}))
        .await;
    app.sandbox.set_faults(sandbox::Faults::default());
    assert_eq!(status, 200, "{reverted}");
    let reverted: SourceFix = serde_json::from_value(reverted).unwrap();
    assert_eq!(reverted.status, "reverted");
    let left = reverted.error.clone().unwrap_or_default();
    assert!(
        left.contains(&format!("EC2 kept version {version}")) && left.contains("$Latest"),
        "{reverted:?}"
    );
    assert!(
        left.contains(&format!("Version {theirs} was made after the fix")),
        "{reverted:?}"
    );
    assert_eq!(aws.versions(&template).await.0, 1);
    assert!(aws.version_exists(&template, version).await);
}

#[tokio::test]
async fn a_template_fix_keeps_what_latest_launches_when_latest_is_not_the_default() {
    use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
    let app = spawn_app().await;
    let aws = aws(&app).await;
    let sources = sources_view(&app).await;
    let web = find(&sources, SourceKind::LaunchTemplate, "web").clone();
    let template = web.resource_id.clone();
    let (default, _, _) = aws.versions(&template).await;
    // Someone made a newer version (another instance type) without making it the default: groups
    // and fleets on $Latest launch it.
    let theirs = aws
        .ec2
        .create_launch_template_version()
        .launch_template_id(&template)
        .source_version(default.to_string())
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .instance_type(InstanceType::T3Small)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .launch_template_version()
        .unwrap()
        .version_number()
        .unwrap();
    let instance_type = |version: i64| {
        let ec2 = aws.ec2.clone();
        let template = template.clone();
        async move {
            let out = ec2
                .describe_launch_template_versions()
                .launch_template_id(&template)
                .versions(version.to_string())
                .send()
                .await
                .unwrap();
            let data = out.launch_template_versions()[0]
                .launch_template_data()
                .unwrap()
                .clone();
            (
                data.instance_type().map(|t| t.as_str().to_owned()),
                data.metadata_options()
                    .and_then(|m| m.http_tokens())
                    .map(|t| t.as_str().to_owned()),
            )
        }
    };
    let default_type = instance_type(default).await.0;
    assert_ne!(default_type.as_deref(), Some("t3.small"));

    let (status, preview) = app
        .post(&format!("/sources/{}/preview", path_of(&web.id)), &json!({}))
        .await;
    assert_eq!(status, 200, "{preview}");
    let preview: shared::sources::SourceFixPreview = serde_json::from_value(preview).unwrap();
    assert!(
        preview
            .changes
            .iter()
            .any(|c| c.contains(&format!("copied from latest version {theirs}"))),
        "{:?}",
        preview.changes
    );

    let fix = fix_template(&app, &web.id).await;
    let Some(SourceState::LaunchTemplate {
        default_version: made,
        latest_version: made_latest,
        ..
    }) = fix.applied.clone()
    else {
        panic!("{fix:?}")
    };
    assert_eq!((made, made_latest), (theirs + 1, theirs + 2), "{fix:?}");
    assert_eq!(
        aws.versions(&template).await,
        (made, made_latest, Some("required".into()))
    );
    // $Latest launches their instance type, now with tokens required; $Default the default's.
    assert_eq!(
        instance_type(made_latest).await,
        (Some("t3.small".into()), Some("required".into()))
    );
    assert_eq!(instance_type(made).await, (default_type, Some("required".into())));

    let (status, reverted) = app
        .post(&format!("/sources/fixes/{}/revert", fix.fix_id), &json!({}))
        .await;
    assert_eq!(status, 200, "{reverted}");
    let reverted: SourceFix = serde_json::from_value(reverted).unwrap();
    assert_eq!(reverted.error, None, "nothing left changed: {reverted:?}");
    assert_eq!(aws.versions(&template).await.0, default);
    assert_eq!(
        aws.versions(&template).await.1,
        theirs,
        "their version is $Latest again"
    );
    assert!(!aws.version_exists(&template, made).await);
    assert!(!aws.version_exists(&template, made_latest).await);
}
