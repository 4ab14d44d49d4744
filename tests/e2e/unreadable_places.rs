//! A place the console can no longer reach (a member role removed, an account suspended) is named,
//! and holds back nothing else: a rollback across accounts restores the places it can read.

use e2e::{spawn_app_with, AppOptions};
use serde_json::json;
use shared::api::{RollbackPreview, RollbackResponse};
use std::time::Duration;

#[tokio::test]
async fn a_rollback_across_accounts_restores_the_places_it_can_read_and_names_the_one_it_cannot() {
    let app = spawn_app_with(AppOptions {
        fleet: 60,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let accounts = sandbox::account_ids(3);
    let (status, body) = app
        .post(
            "/executions",
            &json!({
                "parameters": {},
                "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}},
                                 "max_concurrency": "10", "max_errors": "100%"},
                "target_locations": [{"accounts": accounts, "regions": ["us-east-1"],
                                      "target_location_max_concurrency": "3",
                                      "target_location_max_errors": "100%"}],
                "override": {"reason": "Drill: every web instance in us-east-1, all accounts."}
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let parent = body["execution_id"].as_str().unwrap().to_owned();
    app.wait_done(&parent, Duration::from_secs(60)).await;

    // The third account's member role is removed: the console cannot read it any more.
    let lost = accounts[2].clone();
    app.sandbox.set_faults(sandbox::Faults {
        missing_roles: [lost.clone()].into(),
        ..sandbox::Faults::default()
    });
    let (status, preview) = app
        .post(&format!("/executions/{parent}/rollback/preview"), &json!({}))
        .await;
    assert_eq!(status, 200, "{preview}");
    let preview: RollbackPreview = serde_json::from_value(preview).unwrap();
    let note = preview
        .notes
        .iter()
        .find(|n| n.starts_with(&format!("{lost} us-east-1: cannot be read")))
        .unwrap_or_else(|| panic!("the unreachable place is named: {:?}", preview.notes));
    assert!(note.contains("roll back again"), "{note}");
    assert!(preview.runs >= 1, "the other places are restored: {preview:?}");
    assert!(preview.targets.iter().all(|t| t.account != lost), "{preview:?}");
    assert!(!preview.skipped.is_empty(), "{preview:?}");

    let (status, back) = app
        .post(&format!("/executions/{parent}/rollback"), &json!({}))
        .await;
    assert_eq!(status, 201, "{back}");
    let back: RollbackResponse = serde_json::from_value(back).unwrap();
    for id in &back.execution_ids {
        let done = app.wait_done(id, Duration::from_secs(60)).await;
        assert_eq!(done["summary"]["status"], "Success", "{done}");
    }
}

#[tokio::test]
async fn a_place_the_halt_check_cannot_read_does_not_blind_it_to_refusals_elsewhere() {
    let app = spawn_app_with(AppOptions {
        fleet: 60,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let accounts = sandbox::account_ids(3);
    // A tag that IMDSv1 users in the console's own account carry.
    let hub_users = app
        .instances()
        .await
        .into_iter()
        .filter(|i| {
            i["account"] == accounts[0].as_str()
                && i["region"] == "us-east-1"
                && i["state"] == "running"
                && i["metadata"]["http_tokens"] == "optional"
                && i["metadata"]["http_endpoint"] == "enabled"
                && i["imdsv1_calls"].as_u64().unwrap_or(0) > 0
                && i["tags"]["Env"].is_string()
        })
        .collect::<Vec<_>>();
    let env = hub_users
        .first()
        .expect("the seeded fleet has IMDSv1 users in the console's account")["tags"]["Env"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, created) = app
        .post(
            "/plans",
            &json!({
                "name": "across two accounts",
                "waves": [{
                    "name": "canary",
                    "targets": {"tag": {"key": "Env", "value": env}},
                    "target_locations": [{"accounts": [accounts[0], accounts[2]], "regions": ["us-east-1"],
                                          "target_location_max_concurrency": "2",
                                          "target_location_max_errors": "100%"}],
                    "parameters": {"EnforceIMDSv2": "required"},
                    "max_concurrency": "10",
                    "max_errors": "100%",
                    "bake_minutes": 60,
                    "override": {"reason": "plan test: the app teams signed off"}
                }],
                "halt": {"rejected_calls": 1}
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["plan_id"].as_str().unwrap().to_owned();
    let (status, started) = app.post(&format!("/plans/{id}/start"), &json!({})).await;
    assert_eq!(status, 200, "{started}");
    // The console's role in the third account goes (the automation's own roles stay): the console
    // can no longer read that account's metrics.
    app.sandbox.set_faults(sandbox::Faults {
        missing_roles: [format!("{}/ImdsConsoleMember", accounts[2])].into(),
        ..sandbox::Faults::default()
    });
    let halted = app
        .plan_view_until(&id, Duration::from_secs(90), |p| {
            p.status == shared::plans::PlanStatus::Halted || p.status.is_final()
        })
        .await;
    assert_eq!(halted.status, shared::plans::PlanStatus::Halted, "{halted:?}");
    let reason = halted.reason.clone().unwrap_or_default();
    assert!(reason.contains("IMDSv1 call(s) refused"), "{reason}");
}

#[tokio::test]
async fn a_region_whose_sts_is_off_does_not_make_member_accounts_unreachable() {
    let config = sandbox::SandboxConfig {
        accounts: 2,
        ..sandbox::SandboxConfig::default()
    };
    let regions: Vec<String> = config.regions.clone();
    let (sb, url) = e2e::standalone_sandbox(config).await;
    assert!(regions.len() >= 2, "{regions:?}");
    // STS answers only in the console's first Region; the member is read in every Region.
    sb.set_faults(sandbox::Faults {
        sts_disabled_regions: regions[1..].iter().cloned().collect(),
        ..sandbox::Faults::default()
    });
    let member = sandbox::account_ids(2)[1].clone();
    let clients = backend::aws::assumed_clients(
        &backend::aws::Target::Sandbox(url.clone()),
        &regions,
        backend::aws::Timeouts::default(),
        &format!("arn:aws:iam::{member}:role/ImdsConsoleMember"),
        &std::sync::Arc::default(),
    )
    .await;
    for region in &regions {
        let read = clients[region].ec2.describe_instances().send().await;
        assert!(read.is_ok(), "{region}: {read:?}");
    }
    let assumed = sb.count_calls("sts:AssumeRole", 0);
    assert_eq!(assumed, 1, "one session for every Region");

    // STS off in the console's first Region: the next Region's STS says who the console is and
    // gives the member's session.
    sb.set_faults(sandbox::Faults {
        sts_disabled_regions: [regions[0].clone()].into(),
        ..sandbox::Faults::default()
    });
    let target = backend::aws::Target::Sandbox(url.clone());
    let own = backend::aws::clients(
        &target,
        &regions,
        backend::aws::Timeouts::default(),
        &std::sync::Arc::default(),
    )
    .await;
    let who = backend::aws::sts::caller_identity_anywhere(regions.iter().map(|r| &own[r]))
        .await
        .expect("another Region's STS answers");
    assert_eq!(who.account, sandbox::ACCOUNT_ID);
    let clients = backend::aws::assumed_clients(
        &target,
        &regions,
        backend::aws::Timeouts::default(),
        &format!("arn:aws:iam::{member}:role/ImdsConsoleMember"),
        &std::sync::Arc::default(),
    )
    .await;
    for region in &regions {
        let read = clients[region].ec2.describe_instances().send().await;
        assert!(read.is_ok(), "{region}: {read:?}");
    }
}
