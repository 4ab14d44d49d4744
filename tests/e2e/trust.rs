//! Who may do what, where: per-account roles from sign-on groups, the two-person rule through plans,
//! rollbacks and credentials someone else made (issue 27's medium and low items).

use e2e::{spawn_app_with, AppOptions, TestApp};
use serde_json::{json, Value};
use shared::api::{ErrorBody, StartExecutionResponse};
use std::time::Duration;

/// A request as a sign-on user behind the trusted proxy, from the console's own pages.
async fn as_sso(
    app: &TestApp,
    user: &str,
    groups: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, app.url(path))
        .header("x-forwarded-user", user)
        .header("x-forwarded-groups", groups)
        .header("origin", &app.base);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

/// A quiet instance (no IMDSv1 calls, endpoint on) in `account`.
async fn quiet_in(app: &TestApp, account: &str) -> String {
    let account = account.to_owned();
    app.pick("us-east-1", move |i| {
        i["account"] == account.as_str()
            && i["state"] == "running"
            && i["metadata"]["http_endpoint"] == "enabled"
            && i["imdsv1_calls"].as_u64().unwrap_or(0) == 0
    })
    .await
    .remove(0)
}

#[tokio::test]
async fn a_sign_on_users_role_in_an_account_is_the_highest_group_that_covers_that_account() {
    let ids = sandbox::account_ids(3);
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 3,
        extra_args: vec![
            "--trusted-proxy".into(),
            "127.0.0.1".into(),
            "--sso-group-role".into(),
            format!("team-a=operator@{}", ids[1]),
            "--sso-group-role".into(),
            "security=viewer".into(),
        ],
        ..AppOptions::default()
    })
    .await;
    let groups = "team-a,security";
    // An operator in team-a's account only, though the viewer group covers every account.
    let (_, accounts) = as_sso(&app, "carol", groups, reqwest::Method::GET, "/accounts", None).await;
    assert_eq!(
        accounts["accounts"].as_array().unwrap().len(),
        3,
        "a viewer everywhere: {accounts}"
    );
    let there = quiet_in(&app, &ids[2]).await;
    let (status, refused) = as_sso(
        &app,
        "carol",
        groups,
        reqwest::Method::POST,
        "/executions",
        Some(json!({"account": ids[2], "region": "us-east-1", "parameters": {"InstanceId": there}})),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    let refused: ErrorBody = serde_json::from_value(refused).unwrap();
    assert_eq!(refused.error.code, "AccountNotAllowed");
    assert!(
        refused.error.message.contains("viewer") && refused.error.message.contains(&ids[2]),
        "{}",
        refused.error.message
    );
    let here = quiet_in(&app, &ids[1]).await;
    let (status, started) = as_sso(
        &app,
        "carol",
        groups,
        reqwest::Method::POST,
        "/executions",
        Some(json!({"account": ids[1], "region": "us-east-1", "parameters": {"InstanceId": here}})),
    )
    .await;
    assert_eq!(status, 201, "{started}");
    let started: StartExecutionResponse = serde_json::from_value(started).unwrap();
    app.wait_done(&started.execution_id.unwrap(), Duration::from_secs(30))
        .await;
    // In the console's own account she is a viewer too: no start there.
    let hub = quiet_in(&app, sandbox::ACCOUNT_ID).await;
    let (status, refused) = as_sso(
        &app,
        "carol",
        groups,
        reqwest::Method::POST,
        "/executions",
        Some(json!({"parameters": {"InstanceId": hub}})),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
}

/// A built-in user signed in, talking as the browser does.
struct Person {
    name: &'static str,
    cookie: String,
}

impl Person {
    async fn new(app: &TestApp, name: &'static str, role: &str) -> Person {
        let password = app.add_user(name, role).await;
        Person {
            name,
            cookie: app.session(name, &password).await,
        }
    }

    async fn post(&self, app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(app.url(path))
            .header("cookie", &self.cookie)
            .header("origin", &app.base)
            .json(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or_default())
    }
}

async fn hold_every_start(app: &TestApp) {
    let resp = app
        .http
        .put(app.url("/approval-policy"))
        .json(&json!({"more_than_instances": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn whoever_created_started_or_resumed_a_plan_cannot_approve_its_held_wave() {
    let app = e2e::spawn_app().await;
    let op1 = Person::new(&app, "op1", "operator").await;
    let op2 = Person::new(&app, "op2", "operator").await;
    let op3 = Person::new(&app, "op3", "operator").await;
    hold_every_start(&app).await;
    let (status, created) = op1
        .post(
            &app,
            "/plans",
            &json!({"name": "dev first", "halt": {"rejected_calls": 5}, "waves": [{
                "name": "dev", "region": "us-east-1", "targets": {"tag": {"key": "Env", "value": "dev"}},
                "parameters": {"EnforceIMDSv2": "required"},
                "override": {"reason": "the dev teams signed off on this"}}]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let plan_id = created["plan_id"].as_str().unwrap().to_owned();
    // op2 starts op1's plan; its wave is held for a second person.
    let (status, plan) = op2
        .post(&app, &format!("/plans/{plan_id}/start"), &json!({}))
        .await;
    assert_eq!(status, 200, "{plan}");
    let plan: shared::plans::PlanView = serde_json::from_value(plan).unwrap();
    assert_eq!(plan.requesters, ["op1", "op2"]);
    let held = plan.waves[0].record_id.expect("the wave's run is recorded, held");
    let (_, list) = app.get("/approvals").await;
    let list: shared::approvals::ApprovalList = serde_json::from_value(list).unwrap();
    let approval = list
        .approvals
        .iter()
        .find(|a| a.approval_id == held)
        .expect("the held wave waits for approval");
    assert_eq!(
        approval.requesters,
        ["op1", "op2"],
        "the approver sees who caused it"
    );
    // Neither the creator nor the starter may approve it; a third person may.
    for person in [&op1, &op2] {
        let (status, refused) = person
            .post(&app, &format!("/approvals/{held}/approve"), &json!({}))
            .await;
        assert_eq!(status, 403, "{}: {refused}", person.name);
        let refused: ErrorBody = serde_json::from_value(refused).unwrap();
        assert_eq!(refused.error.code, "OwnApproval", "{}", person.name);
    }
    let (status, approved) = op3
        .post(&app, &format!("/approvals/{held}/approve"), &json!({}))
        .await;
    assert_eq!(status, 200, "{approved}");
    let approved: shared::approvals::ApprovalView = serde_json::from_value(approved).unwrap();
    assert_eq!(approved.decided_by.as_deref(), Some("op3"));
}
