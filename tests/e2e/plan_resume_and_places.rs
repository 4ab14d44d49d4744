//! What the second outside review broke, held: a plan's wave that never ran (rejected, refused) is
//! asked for again on resume, never counted done; a Region the console does not manage is refused,
//! not taken for "nothing matches there"; a place denied after a run keeps its last reading instead
//! of breaking every fleet page.

use e2e::{spawn_app, spawn_app_with, AppOptions, Person, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn plan_view(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/plans/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn plan_until(app: &TestApp, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let p = plan_view(app, id).await;
        if done(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "never got there: {p:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// a place in the console's own account in a Region the console does not manage is "left out"
/// as having no matching instance, though it was never read; the same Region in a member account
/// refuses the whole start.
#[tokio::test]
async fn a_region_the_console_does_not_manage_is_refused_for_its_own_account_too() {
    let app = spawn_app_with(AppOptions {
        fleet: 24,
        accounts: 2,
        ..AppOptions::default()
    })
    .await;
    let accounts = sandbox::account_ids(2);
    let (_, identity) = app.get("/identity").await;
    let regions: Vec<String> = serde_json::from_value(identity["regions"].clone()).unwrap();
    let inst = app
        .instances()
        .await
        .into_iter()
        .find(|i| i["account"] == accounts[0].as_str())
        .unwrap();
    let name = inst["tags"]["Name"].as_str().unwrap().to_owned();
    let body = |acct: &str| {
        json!({"parameters": {"EnforceIMDSv2": "required"},
        "rate_control": {"targets": {"tag": {"key": "Name", "value": name}}, "max_concurrency": "10", "max_errors": "0"},
        "target_locations": [{"accounts": [acct, accounts[0]], "regions": [regions[0], regions[1], "ap-south-2"]}],
        "override": {"reason": "the teams signed off on this"}})
    };
    let (s_hub, hub) = app.post("/executions/preview", &body(&accounts[0])).await;
    let (s_mem, mem) = app.post("/executions/preview", &body(&accounts[1])).await;
    for (status, answer) in [(s_hub, &hub), (s_mem, &mem)] {
        assert_eq!(status, 400, "{answer}");
        let answer: shared::api::ErrorBody = serde_json::from_value(answer.clone()).unwrap();
        assert_eq!(
            answer.error.field.as_deref(),
            Some("target_locations"),
            "{answer:?}"
        );
        assert!(answer.error.message.contains("ap-south-2"), "{answer:?}");
    }
    assert!(
        !(s_hub == 200 && hub["places_left_out"].to_string().contains("ap-south-2")),
        "ap-south-2 was never read but is reported as a place without a matching instance"
    );
}

/// a plan's canary wave whose approval was rejected is skipped by resume ("Done") and the next,
/// larger wave runs.
#[tokio::test]
async fn resuming_after_a_rejected_wave_asks_for_it_again_and_never_runs_the_next_first() {
    let app = spawn_app().await;
    let otto = Person::new(&app, "otto", "operator").await;
    let (s, b) = app.put("/approval-policy", &json!({"tags": ["Env=dev"]})).await;
    assert_eq!(s, 200, "{b}");
    let wave = |name: &str| {
        json!({"name": name, "region": "us-east-1", "targets": {"tag": {"key": "Env", "value": name}},
        "override": {"reason": "plan approval test"}})
    };
    let (_, created) = app
        .post(
            "/plans",
            &json!({"name": "canary rejected", "waves": [wave("dev"), wave("prod")],
        "halt": {"rejected_calls": 1_000_000}}),
        )
        .await;
    let plan = created["plan_id"].as_str().unwrap().to_owned();
    app.post(&format!("/plans/{plan}/start"), &json!({})).await;
    let p = plan_until(&app, &plan, Duration::from_secs(30), |p| {
        p["waves"][0]["status"] == "held"
    })
    .await;
    let id = p["waves"][0]["record_id"].as_i64().unwrap();
    let (s, b) = otto
        .post(
            &app,
            &format!("/approvals/{id}/reject"),
            &json!({"comment": "dev is mid-release, no"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    plan_until(&app, &plan, Duration::from_secs(30), |p| p["status"] == "halted").await;
    let (s, b) = app.post(&format!("/plans/{plan}/resume"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = plan_view(&app, &plan).await;
    assert_ne!(
        p["waves"][0]["status"], "done",
        "the rejected canary wave never ran but is Done: {p:#}"
    );
    // It is asked for again: held, with a new approval; prod has not run.
    let p = plan_until(&app, &plan, Duration::from_secs(30), |p| {
        p["waves"][0]["status"] == "held"
    })
    .await;
    assert_ne!(
        p["waves"][0]["record_id"].as_i64(),
        Some(id),
        "a new start: {p:#}"
    );
    assert_eq!(p["waves"][1]["status"], "pending", "{p:#}");
    assert!(app.sandbox.execution_ids().is_empty(), "nothing ran");
}

/// a wave SSM refused (AccessDenied on StartAutomationExecution, fixed since) is never tried
/// again: resume adopts the refused record and the plan completes with nothing run.
#[tokio::test]
async fn a_wave_ssm_refused_is_sent_again_on_resume() {
    let app = spawn_app().await;
    app.sandbox.set_faults(sandbox::Faults {
        deny: ["ssm:StartAutomationExecution".to_owned()].into_iter().collect(),
        ..Default::default()
    });
    let (_, created) = app
        .post(
            "/plans",
            &json!({"name": "refused once", "waves": [
        {"name": "dev", "region": "us-east-1", "targets": {"tag": {"key": "Env", "value": "dev"}},
         "override": {"reason": "plan refusal test"}}], "halt": {"rejected_calls": 1_000_000}}),
        )
        .await;
    let plan = created["plan_id"].as_str().unwrap().to_owned();
    app.post(&format!("/plans/{plan}/start"), &json!({})).await;
    plan_until(&app, &plan, Duration::from_secs(30), |p| p["status"] == "halted").await;
    // The permission is fixed; the operator resumes.
    app.sandbox.set_faults(sandbox::Faults::default());
    let (s, b) = app.post(&format!("/plans/{plan}/resume"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = plan_view(&app, &plan).await;
    if p["status"] == "halted" {
        let (s, b) = app.post(&format!("/plans/{plan}/resume"), &json!({})).await;
        assert_eq!(s, 200, "{b}");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let p = plan_view(&app, &plan).await;
    assert!(
        !app.sandbox.execution_ids().is_empty(),
        "the wave was never sent, plan is {}",
        p["status"]
    );
}

/// a single-account run ends; the Region is then denied (an SCP rolls out). The fleet's partial
/// re-read of that place fails and every fleet page fails from then on, although a full reading
/// keeps a denied Region.
#[tokio::test]
async fn a_place_denied_after_a_run_keeps_its_last_reading_and_every_fleet_page_answers() {
    let app = spawn_app_with(AppOptions {
        fleet: 24,
        accounts: 2,
        ..AppOptions::default()
    })
    .await;
    let member = sandbox::account_ids(2)[1].clone();
    let (_, identity) = app.get("/identity").await;
    let regions: Vec<String> = serde_json::from_value(identity["regions"].clone()).unwrap();
    let r = regions[1].clone();
    let inst = app
        .instances()
        .await
        .into_iter()
        .find(|i| {
            i["account"] == member.as_str()
                && i["region"] == r.as_str()
                && i["state"] == "running"
                && i["metadata"]["http_endpoint"] == "enabled"
        })
        .unwrap();
    let id = inst["instance_id"].as_str().unwrap();
    let (s, b) = app.post("/executions", &json!({"account": member, "region": r,
        "parameters": {"InstanceId": id, "EnforceIMDSv2": "required"}, "override": {"reason": "the teams signed off on this"}})).await;
    assert_eq!(s, 201, "{b}");
    app.wait_done(b["execution_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.sandbox.set_faults(sandbox::Faults {
        denied_regions: [format!("{member}/{r}")].into_iter().collect(),
        ..Default::default()
    });
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (s1, b1) = app.get("/instances?limit=5").await;
        let (s2, _) = app.get("/dashboard").await;
        let (s3, _) = app.get("/accounts").await;
        seen.push((s1, s2, s3, b1["error"].clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        seen.iter()
            .all(|(a, b, c, _)| *a == 200 && *b == 200 && *c == 200),
        "fleet pages fail: {seen:#?}"
    );
}
