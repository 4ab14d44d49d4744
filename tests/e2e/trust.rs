//! Who may do what, where: per-account roles from sign-on groups, the two-person rule through plans,
//! rollbacks and credentials someone else made (issue 27's medium and low items).

use backend::auth::accounts::Accounts;
use e2e::{spawn_app_with, AppOptions, Person, TestApp};
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
        .header(
            "x-forwarded-user",
            reqwest::header::HeaderValue::from_bytes(user.as_bytes()).unwrap(),
        )
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
    let carol_starts = |body: Value| {
        as_sso(
            &app,
            "carol",
            groups,
            reqwest::Method::POST,
            "/executions",
            Some(body),
        )
    };
    // An operator in team-a's account only, though the viewer group covers every account.
    let (_, accounts) = as_sso(&app, "carol", groups, reqwest::Method::GET, "/accounts", None).await;
    assert_eq!(
        accounts["accounts"].as_array().unwrap().len(),
        3,
        "a viewer everywhere: {accounts}"
    );
    let there = quiet_in(&app, &ids[2]).await;
    let (status, refused) =
        carol_starts(json!({"account": ids[2], "region": "us-east-1", "parameters": {"InstanceId": there}}))
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
    let (status, started) =
        carol_starts(json!({"account": ids[1], "region": "us-east-1", "parameters": {"InstanceId": here}}))
            .await;
    assert_eq!(status, 201, "{started}");
    let started: StartExecutionResponse = serde_json::from_value(started).unwrap();
    app.wait_done(&started.execution_id.unwrap(), Duration::from_secs(30))
        .await;
    // In the console's own account she is a viewer too: no start there.
    let hub = quiet_in(&app, sandbox::ACCOUNT_ID).await;
    let (status, refused) = carol_starts(json!({"parameters": {"InstanceId": hub}})).await;
    assert_eq!(status, 403, "{refused}");
}

/// A start of one quiet us-east-1 instance by `person`, held for approval (every start is).
async fn held_quiet_start(app: &TestApp, person: &Person) -> StartExecutionResponse {
    let id = app.quiet("us-east-1").await.remove(0);
    let (status, held) = person
        .post(app, "/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    assert_eq!(status, 202, "{held}");
    serde_json::from_value(held).unwrap()
}

async fn hold_every_start(app: &TestApp) {
    let (status, policy) = app
        .put("/approval-policy", &json!({"more_than_instances": 0}))
        .await;
    assert_eq!(status, 200, "{policy}");
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
        ["op2", "op1"],
        "the approver sees who caused it: first on whose behalf it is sent (who started the plan)"
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
    // The wave is sent on behalf of whoever started the plan last, and its record names them.
    assert_eq!(app.audit_record(held).await["requester"], "op2");
}

#[tokio::test]
async fn a_held_start_is_not_sent_for_someone_who_may_no_longer_start_it() {
    let app = e2e::spawn_app().await;
    let op1 = Person::new(&app, "op1", "operator").await;
    let op3 = Person::new(&app, "op3", "operator").await;
    hold_every_start(&app).await;
    let held = held_quiet_start(&app, &op1).await;
    // op1 is moved to another account before anyone approves.
    let (status, _) = app
        .post("/users/op1/accounts", &json!({"accounts": ["200000000001"]}))
        .await;
    assert_eq!(status, 204);
    let sent = app.sandbox.execution_ids().len();
    let (status, refused) = op3
        .post(
            &app,
            &format!("/approvals/{}/approve", held.record_id),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    let refused: ErrorBody = serde_json::from_value(refused).unwrap();
    assert_eq!(refused.error.code, "RequesterNoLongerAllowed");
    assert!(refused.error.message.contains("op1"), "{refused:?}");
    assert_eq!(app.sandbox.execution_ids().len(), sent, "nothing was sent");
    // Rejecting it is still possible.
    let (status, _) = op3
        .post(&app, &format!("/approvals/{}/reject", held.record_id), &json!({}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_plan_starts_no_wave_for_a_sign_on_user_whose_groups_no_longer_let_them() {
    let app = spawn_app_with(AppOptions {
        extra_args: vec![
            "--trusted-proxy".into(),
            "127.0.0.1".into(),
            "--sso-group-role".into(),
            "ops=operator".into(),
            "--sso-group-role".into(),
            "sec=viewer".into(),
        ],
        ..AppOptions::default()
    })
    .await;
    let wave = |name: &str, bake: u32| {
        json!({"name": name, "region": "us-east-1", "targets": {"tag": {"key": "Env", "value": name}},
               "parameters": {"EnforceIMDSv2": "optional"}, "bake_minutes": bake})
    };
    let (status, created) = as_sso(
        &app,
        "alice",
        "ops",
        reqwest::Method::POST,
        "/plans",
        Some(
            json!({"name": "dev then staging", "waves": [wave("dev", 60), wave("staging", 0)],
                    "halt": {"rejected_calls": 1_000_000}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["plan_id"].as_str().unwrap().to_owned();
    let (status, _) = as_sso(
        &app,
        "alice",
        "ops",
        reqwest::Method::POST,
        &format!("/plans/{id}/start"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200);
    // Her identity provider now puts her in the viewers' group only; her next request says so.
    let (status, me) = as_sso(&app, "alice", "sec", reqwest::Method::GET, "/auth/me", None).await;
    assert_eq!((status, me["role"].clone()), (200, json!("viewer")));
    let plan = app
        .plan_view_until(&id, Duration::from_secs(40), |p| {
            p.status != shared::plans::PlanStatus::Running
        })
        .await;
    assert_eq!(plan.status, shared::plans::PlanStatus::Halted, "{plan:?}");
    assert!(plan.reason.as_deref().unwrap_or("").contains("alice"), "{plan:?}");
    assert_eq!(plan.waves[1].status, shared::plans::WaveStatus::Pending);
}

#[tokio::test]
async fn an_admin_cannot_approve_as_someone_else_by_minting_their_token_or_setting_their_password() {
    let app = e2e::spawn_app().await;
    let op1 = Person::new(&app, "op1", "operator").await;
    hold_every_start(&app).await;
    let id = app.quiet("us-east-1").await.remove(0);
    let (status, held) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    assert_eq!(status, 202, "{held}");
    let held: StartExecutionResponse = serde_json::from_value(held).unwrap();
    let approval = held.record_id;

    // No token for someone else, whoever asks.
    let (status, refused) = app.post("/tokens", &json!({"user": "op1"})).await;
    assert_eq!(status, 403, "{refused}");
    let refused: ErrorBody = serde_json::from_value(refused).unwrap();
    assert_eq!(refused.error.code, "TokenForAnother");

    // A token made at the shell for op1 is not op1's own credential: it cannot approve.
    let (_, shell_token, _, _) = Accounts(&app.state.store)
        .create_token("op1", None, None, None, false)
        .await
        .unwrap();
    let resp = reqwest::Client::new()
        .post(app.url(&format!("/approvals/{approval}/approve")))
        .bearer_auth(shell_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let refused: ErrorBody = resp.json().await.unwrap();
    assert_eq!(refused.error.code, "ForeignCredential");

    // The admin resets op1's password: the reset is audited, op1 must choose a new one, and a session
    // signed in with the admin's password cannot approve, even after that change.
    let (status, _) = app
        .post(
            "/users/op1/password",
            &json!({"password": "chosen-by-the-admin-1"}),
        )
        .await;
    assert_eq!(status, 204);
    let (_, log) = app.get("/audit/auth?kind=password-reset").await;
    assert!(log.to_string().contains("password-reset"), "{log}");
    let impostor = app.session("op1", "chosen-by-the-admin-1").await;
    let as_impostor = |path: String, body: Value| {
        let req = reqwest::Client::new()
            .post(app.url(&path))
            .header("cookie", &impostor)
            .header("origin", &app.base)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default())
        }
    };
    let (status, refused) = as_impostor(format!("/approvals/{approval}/approve"), json!({})).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "PasswordChangeRequired");
    // The forced change; the session it continues in still signed in with the admin's password.
    let resp = reqwest::Client::new()
        .post(app.url("/auth/password"))
        .header("cookie", &impostor)
        .header("origin", &app.base)
        .json(&json!({"current_password": "chosen-by-the-admin-1", "new_password": "the-admin-again-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let continued = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let resp = reqwest::Client::new()
        .post(app.url(&format!("/approvals/{approval}/approve")))
        .header("cookie", continued)
        .header("origin", &app.base)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let refused: ErrorBody = resp.json().await.unwrap();
    assert_eq!(refused.error.code, "ForeignCredential");
    drop(op1);
    // Each refusal a handler gave is in the audit trail, as the access layer's own are.
    let (_, page) = app.get("/audit/auth?kind=change-refused&limit=100").await;
    let page: shared::api::AuthEventPage = serde_json::from_value(page).unwrap();
    let subjects: Vec<String> = page.events.iter().filter_map(|e| e.subject.clone()).collect();
    for refusal in [
        "POST /tokens: TokenForAnother",
        "POST /approvals/{id}/{decision}: ForeignCredential",
        "POST /approvals/{id}/{decision}: PasswordChangeRequired",
    ] {
        assert!(subjects.iter().any(|s| s == refusal), "{refusal}: {subjects:?}");
    }

    // Whoever signs in with a password they chose is the account's owner as far as the console can
    // tell (the reset, the change and the sign-ins are in the audit trail: SECURITY.md). Such a
    // session approves, and the record says how its approver authenticated.
    let own = app.session("op1", "the-admin-again-2").await;
    let resp = reqwest::Client::new()
        .post(app.url(&format!("/approvals/{approval}/approve")))
        .header("cookie", own)
        .header("origin", &app.base)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let approved: shared::approvals::ApprovalView = resp.json().await.unwrap();
    assert_eq!(approved.decided_by.as_deref(), Some("op1"));
    assert_eq!(approved.decided_via.as_deref(), Some("session"));
}

#[tokio::test]
async fn head_is_held_to_the_policy_of_get() {
    let app = e2e::spawn_app().await;
    let cookie = app.own_session("vic", "viewer").await;
    let (_, document) = app.get("/openapi.json").await;
    let mut tried = 0;
    for (template, item) in document["paths"].as_object().unwrap() {
        let Some(get) = item.get("get") else { continue };
        if get["x-required-role"] != "admin" || template.contains('{') {
            continue;
        }
        let head = reqwest::Client::new()
            .head(app.url(template))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 403, "HEAD {template} as a viewer");
        tried += 1;
    }
    assert!(tried >= 5, "{tried}");
}

#[tokio::test]
async fn a_rollback_of_a_run_that_needed_approval_waits_for_a_second_person_too() {
    let app = e2e::spawn_app().await;
    let op1 = Person::new(&app, "op1", "operator").await;
    let op2 = Person::new(&app, "op2", "operator").await;
    hold_every_start(&app).await;
    let held = held_quiet_start(&app, &op1).await;
    let (status, approved) = op2
        .post(
            &app,
            &format!("/approvals/{}/approve", held.record_id),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    let approved: shared::approvals::ApprovalView = serde_json::from_value(approved).unwrap();
    let exec = approved.execution_id.expect("sent when approved");
    app.wait_done(&exec, Duration::from_secs(30)).await;
    let sent_before = app.sandbox.execution_ids().len();
    // op1 alone cannot turn IMDSv1 back on for an approved change: the rollback is held.
    let (status, reply) = op1
        .post(&app, &format!("/executions/{exec}/rollback"), &json!({}))
        .await;
    assert_eq!(status, 201, "{reply}");
    let reply: shared::api::RollbackResponse = serde_json::from_value(reply).unwrap();
    assert!(reply.execution_ids.is_empty(), "{reply:?}");
    assert!(
        reply.notes.iter().any(|n| n.contains("held for a second person")),
        "{reply:?}"
    );
    assert_eq!(app.sandbox.execution_ids().len(), sent_before, "nothing was sent");
    let (_, list) = app.get("/approvals").await;
    let list: shared::approvals::ApprovalList = serde_json::from_value(list).unwrap();
    assert_eq!(list.approvals.len(), 1, "{:?}", list.approvals);
    assert_eq!(list.approvals[0].requester, "op1");
}

#[tokio::test]
async fn an_open_event_stream_follows_its_users_new_account_list() {
    let ids = sandbox::account_ids(3);
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let cookie = app.limited_operator("olga", &[&ids[1]]).await;
    let mut stream = reqwest::Client::new()
        .get(app.url("/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    // Her accounts change while the stream is open: from the first member to the second.
    let (status, _) = app
        .post("/users/olga/accounts", &json!({"accounts": [ids[2]]}))
        .await;
    assert_eq!(status, 204);
    let start_in = |account: String| {
        let app = &app;
        async move {
            let id = quiet_in(app, &account).await;
            let (status, body) = app
                .post(
                    "/executions",
                    &json!({"account": account, "region": "us-east-1", "parameters": {"InstanceId": id}}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            let started: StartExecutionResponse = serde_json::from_value(body).unwrap();
            let exec = started.execution_id.unwrap();
            app.wait_done(&exec, Duration::from_secs(30)).await;
            exec
        }
    };
    let no_longer_hers = start_in(ids[1].clone()).await;
    let now_hers = start_in(ids[2].clone()).await;
    let seen = e2e::read_events_until(
        &mut stream,
        |s| s.contains(&now_hers) && s.contains("Success"),
        Duration::from_secs(30),
    )
    .await;
    assert!(!seen.contains(&no_longer_hers), "{seen}");
}

#[tokio::test]
async fn a_flood_of_refused_changes_is_one_counted_short_audit_entry() {
    let app = e2e::spawn_app().await;
    let cookie = app.own_session("otto", "operator").await;
    let client = reqwest::Client::new();
    for n in 0..300 {
        let resp = client
            .post(app.url(&format!("/users/{}{n}/disable", "x".repeat(8_000))))
            .header("cookie", &cookie)
            .header("origin", &app.base)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
    }
    let (_, page) = app.get("/audit/auth?kind=change-refused").await;
    let page: shared::api::AuthEventPage = serde_json::from_value(page).unwrap();
    assert_eq!(page.events.len(), 1, "{:?}", page.events);
    let event = &page.events[0];
    assert_eq!(event.count, 300);
    assert_eq!(event.actor.as_deref(), Some("otto"));
    assert_eq!(
        event.subject.as_deref(),
        Some("POST /users/{name}/disable: Forbidden")
    );
}

#[tokio::test]
async fn an_admin_is_never_limited_to_accounts() {
    let app = e2e::spawn_app().await;
    let (status, refused) = app
        .post(
            "/users",
            &json!({"name": "ada", "role": "admin", "password": "ada-password-123", "accounts": ["200000000001"]}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    let refused: ErrorBody = serde_json::from_value(refused).unwrap();
    assert_eq!(refused.error.field.as_deref(), Some("accounts"));
    app.add_user("ada", "admin").await;
    let (status, _) = app
        .post("/users/ada/accounts", &json!({"accounts": ["200000000001"]}))
        .await;
    assert_eq!(status, 400, "a limit on an admin");
    let (status, _) = app
        .post(
            "/users",
            &json!({"name": "lim", "role": "operator", "password": "lim-password-123", "accounts": ["200000000001"]}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app.post("/users/lim/role", &json!({"role": "admin"})).await;
    assert_eq!(status, 400, "a limited user made admin");
    let (_, users) = app.get("/users").await;
    let users: Vec<shared::api::UserView> = serde_json::from_value(users).unwrap();
    assert!(users
        .iter()
        .all(|u| u.role != shared::api::Role::Admin || u.accounts.is_none()));
}

#[tokio::test]
async fn tokens_expire_by_default_and_stay_revoked_when_their_user_comes_back() {
    let app = e2e::spawn_app().await;
    let (status, made) = app.post("/tokens", &json!({"user": "admin"})).await;
    assert_eq!(status, 201, "{made}");
    let made: shared::api::CreatedToken = serde_json::from_value(made).unwrap();
    let expires = made.expires_at.expect("a default lifetime");
    let days =
        (aws_smithy_types::DateTime::from_str(&expires, aws_smithy_types::date_time::Format::DateTime)
            .unwrap()
            .secs()
            - (e2e::now_ms() / 1000) as i64)
            / 86_400;
    assert!((89..=90).contains(&days), "{expires}");

    let cookie = app.own_session("otto", "operator").await;
    let resp = reqwest::Client::new()
        .post(app.url("/tokens"))
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .json(&json!({"user": "otto", "name": "otto's script"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "everyone makes their own tokens");
    let token: shared::api::CreatedToken = resp.json().await.unwrap();
    let with_token = || {
        reqwest::Client::new()
            .get(app.url("/identity"))
            .bearer_auth(token.token.clone())
            .send()
    };
    assert_eq!(with_token().await.unwrap().status(), 200);
    assert_eq!(app.post("/users/otto/disable", &json!({})).await.0, 204);
    assert_eq!(app.post("/users/otto/enable", &json!({})).await.0, 204);
    assert_eq!(
        with_token().await.unwrap().status(),
        401,
        "re-enabling otto does not bring his token back"
    );
}

/// A plan op1 made and started; while its first wave bakes, `change` is made to op1 (an admin's
/// request: path and body); the plan must halt naming op1 and `why`, its second wave never started.
async fn plan_halts_for_op1_when(change: (&str, Value), why: &str) {
    let app = e2e::spawn_app().await;
    let op1 = Person::new(&app, "op1", "operator").await;
    let wave = |name: &str, bake: u32| {
        json!({"name": name, "region": "us-east-1", "targets": {"tag": {"key": "Env", "value": name}},
               "parameters": {"EnforceIMDSv2": "optional"}, "bake_minutes": bake})
    };
    let (status, created) = op1
        .post(
            &app,
            "/plans",
            &json!({"name": "dev then staging", "waves": [wave("dev", 60), wave("staging", 0)],
                    "halt": {"rejected_calls": 1_000_000}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["plan_id"].as_str().unwrap().to_owned();
    let (_, log) = app.get("/audit/auth?kind=plan-created").await;
    let log: shared::api::AuthEventPage = serde_json::from_value(log).unwrap();
    assert_eq!(log.events.len(), 1);
    assert_eq!(log.events[0].actor.as_deref(), Some("op1"));
    assert!(log.events[0].subject.as_deref().unwrap_or("").contains(&id));

    let (status, _) = op1.post(&app, &format!("/plans/{id}/start"), &json!({})).await;
    assert_eq!(status, 200);
    // While dev bakes, op1 changes: staging does not start.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, plan) = app.get(&format!("/plans/{id}")).await;
        let plan: shared::plans::PlanView = serde_json::from_value(plan).unwrap();
        if plan.waves[0].status == shared::plans::WaveStatus::Baking {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{plan:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, answer) = app.post(change.0, &change.1).await;
    assert!(status == 200 || status == 204, "{status} {answer}");
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let plan = loop {
        let (_, plan) = app.get(&format!("/plans/{id}")).await;
        let plan: shared::plans::PlanView = serde_json::from_value(plan).unwrap();
        if plan.status != shared::plans::PlanStatus::Running {
            break plan;
        }
        assert!(std::time::Instant::now() < deadline, "{plan:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(plan.status, shared::plans::PlanStatus::Halted, "{plan:?}");
    let reason = plan.reason.as_deref().unwrap_or("");
    assert!(reason.contains("op1") && reason.contains(why), "{plan:?}");
    assert_eq!(plan.waves[1].status, shared::plans::WaveStatus::Pending);
    assert_eq!(app.sandbox.execution_ids().len(), 1, "only dev ran");
}

#[tokio::test]
async fn a_plan_is_audited_when_made_and_starts_no_wave_for_a_disabled_person() {
    plan_halts_for_op1_when(("/users/op1/disable", json!({})), "disabled").await;
}

#[tokio::test]
async fn a_plan_starts_no_wave_for_a_person_made_viewer() {
    plan_halts_for_op1_when(
        ("/users/op1/role", json!({"role": "viewer"})),
        "may no longer start runs in 123456789012",
    )
    .await;
}

#[tokio::test]
async fn a_plan_starts_no_wave_for_a_person_no_longer_in_its_account() {
    plan_halts_for_op1_when(
        ("/users/op1/accounts", json!({"accounts": ["200000000001"]})),
        "may no longer start runs in 123456789012",
    )
    .await;
}

#[tokio::test]
async fn a_request_by_a_host_name_the_console_was_not_told_is_refused() {
    let app = spawn_app_with(AppOptions {
        extra_args: vec!["--public-url".into(), "https://imds.example.test".into()],
        ..AppOptions::default()
    })
    .await;
    let health = |host: &'static str| {
        reqwest::Client::new()
            .get(app.url("/health"))
            .header("host", host)
            .send()
    };
    assert_eq!(health("rebound.evil.example").await.unwrap().status(), 421);
    // Without --public-url, on loopback too, only addresses and localhost answer.
    let plain = e2e::spawn_app().await;
    let resp = reqwest::Client::new()
        .get(plain.url("/health"))
        .header("host", "rebound.evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 421);
    assert_eq!(health("imds.example.test").await.unwrap().status(), 200);
    assert_eq!(health("localhost").await.unwrap().status(), 200);
    // The tests' own requests go to 127.0.0.1:port.
    assert_eq!(app.get("/health").await.0, 200);
}

#[tokio::test]
async fn names_are_unique_in_any_case_and_text_holds_no_control_or_direction_characters() {
    let app = spawn_app_with(AppOptions {
        extra_args: vec![
            "--trusted-proxy".into(),
            "127.0.0.1".into(),
            "--sso-group-role".into(),
            "ops=operator".into(),
        ],
        ..AppOptions::default()
    })
    .await;
    let (status, refused) = app
        .post(
            "/users",
            &json!({"name": "ADMIN", "role": "viewer", "password": "a-long-password-1"}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    // A sign-on name is held to the length of built-in ones, with no control or invisible characters,
    // and to their characters with what directories add (spaces, DOMAIN\name, apostrophes, +).
    let long = "e".repeat(65);
    for bad in [
        "eve\tsmith",
        long.as_str(),
        "a;b",
        "a,b",
        "../x",
        "eve:admin",
        "eve\u{3164}",
        "eve\u{E0041}x",
    ] {
        let (status, _) = as_sso(&app, bad, "ops", reqwest::Method::GET, "/auth/me", None).await;
        assert_eq!(status, 401, "{bad:?}");
    }
    for good in [
        "eve.smith@example.com",
        "Eve O'Brien",
        "CORP\\eve",
        "eve+ops@example.com",
    ] {
        let (status, _) = as_sso(&app, good, "ops", reqwest::Method::GET, "/auth/me", None).await;
        assert_eq!(status, 200, "{good:?}");
    }

    let id = app.quiet("us-east-1").await.remove(0);
    for reason in [
        "fine\u{202e}txet desrever",
        "two\nlines of reason",
        "reason long\u{2028}=HYPERLINK(1)",
        "reason long\u{200b}\u{2060}\u{feff} hidden",
    ] {
        let (status, refused) = app
            .post(
                "/executions",
                &json!({"parameters": {"InstanceId": id}, "override": {"reason": reason}}),
            )
            .await;
        assert_eq!(status, 400, "{refused}");
        let refused: ErrorBody = serde_json::from_value(refused).unwrap();
        assert_eq!(refused.error.field.as_deref(), Some("override.reason"));
    }
    let (status, refused) = app
        .post(
            "/plans",
            &json!({"name": "dev\u{2066} first", "halt": {"rejected_calls": 5}, "waves": [{
                "name": "dev", "region": "us-east-1", "targets": {"tag": {"key": "Env", "value": "dev"}}}]}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(e2e::error_fields(&refused), ["name"]);
    hold_every_start(&app).await;
    let (_, held) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    let held: StartExecutionResponse = serde_json::from_value(held).unwrap();
    let reviewer = Person::new(&app, "rev", "operator").await;
    let (status, refused) = reviewer
        .post(
            &app,
            &format!("/approvals/{}/reject", held.record_id),
            &json!({"comment": "no\r\nadmin approved this"}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["field"], "comment");
}

#[tokio::test]
async fn a_lookup_of_an_unrecorded_run_asks_aws_only_for_someone_who_may_see_the_consoles_account() {
    let ids = sandbox::account_ids(2);
    let app = spawn_app_with(AppOptions {
        accounts: 2,
        ..AppOptions::default()
    })
    .await;
    let cookie = app.limited_operator("mem", &[&ids[1]]).await;
    let since = e2e::now_ms();
    let unknown = "0b5e1c9a-1111-4222-8333-944455566677";
    for _ in 0..3 {
        let resp = reqwest::Client::new()
            .get(app.url(&format!("/executions/{unknown}")))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }
    assert_eq!(
        app.sandbox.count_calls("ssm:GetAutomationExecution", since),
        0,
        "nothing was asked of SSM in an account she may not see"
    );
    // The admin's lookup does ask (in the console's own account).
    let (status, _) = app.get(&format!("/executions/{unknown}")).await;
    assert_eq!(status, 404);
    assert!(app.sandbox.count_calls("ssm:GetAutomationExecution", since) > 0);
}

#[tokio::test]
async fn a_run_outside_someone_s_accounts_reads_exactly_like_one_that_does_not_exist() {
    let ids = sandbox::account_ids(2);
    let app = spawn_app_with(AppOptions {
        accounts: 2,
        ..AppOptions::default()
    })
    .await;
    // A run recorded in the second account, which "hub" (limited to the console's own) may not see.
    let instance = app
        .instances()
        .await
        .into_iter()
        .find(|i| i["account"] == ids[1].as_str() && i["state"] == "running")
        .expect("an instance in the second account");
    let (status, body) = app
        .post(
            "/executions",
            &json!({"account": ids[1], "region": instance["region"],
                    "parameters": {"InstanceId": instance["instance_id"], "EnforceIMDSv2": "optional"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let hidden: StartExecutionResponse = serde_json::from_value(body).unwrap();
    let record = hidden.record_id;
    let hidden = hidden.execution_id.unwrap();
    let cookie = app.limited_operator("hub", &[&ids[0]]).await;
    let read = |id: String| {
        let cookie = cookie.clone();
        let url = app.url(&format!("/executions/{id}"));
        async move {
            let resp = reqwest::Client::new()
                .get(url)
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: ErrorBody = resp.json().await.unwrap();
            (status, body.error.code, body.error.message.replace(&id, "ID"))
        }
    };
    let unknown = "0b5e1c9a-1111-4222-8333-944455566677".to_owned();
    // Finished and recorded so, the watcher asks SSM nothing more about it.
    app.audit_record_until(record, Duration::from_secs(30), |r| r["status"] == "Success")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ssm_calls_of = |since| app.sandbox.count_calls("ssm:GetAutomationExecution", since);
    let since = e2e::now_ms();
    let hidden_answer = read(hidden.clone()).await;
    let hidden_calls = ssm_calls_of(since);
    let unknown_answer = {
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let since = e2e::now_ms();
        let answer = read(unknown.clone()).await;
        assert_eq!(
            ssm_calls_of(since),
            hidden_calls,
            "the same SSM calls, so the same time"
        );
        answer
    };
    assert_eq!(hidden_calls, app.state.regions.len(), "one lookup per Region");
    assert_eq!(hidden_answer.0, 404, "{hidden_answer:?}");
    assert_eq!(hidden_answer, unknown_answer, "the same answer for both");
    // Right after a lookup, both are throttled alike.
    let (hidden_again, unknown_again) = (read(hidden.clone()).await, read(unknown).await);
    assert_eq!(hidden_again.0, 429, "{hidden_again:?}");
    assert_eq!(
        (hidden_again.0, hidden_again.1),
        (unknown_again.0, unknown_again.1)
    );
    // Stopping it is refused as if it did not exist, and the attempt is in the audit trail.
    let resp = reqwest::Client::new()
        .post(app.url(&format!("/executions/{hidden}/stop")))
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let (_, page) = app.get("/audit/auth?kind=change-refused").await;
    let page: shared::api::AuthEventPage = serde_json::from_value(page).unwrap();
    assert_eq!(
        page.events
            .iter()
            .filter_map(|e| e.subject.as_deref())
            .collect::<Vec<_>>(),
        ["POST /executions/{id}/stop: NotFound"]
    );
}

#[tokio::test]
async fn a_rollback_is_judged_as_a_whole_not_place_by_place() {
    let ids = sandbox::account_ids(2);
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 2,
        ..AppOptions::default()
    })
    .await;
    // A run across two accounts, before any approval policy.
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"EnforceIMDSv2": "required"},
                    "rate_control": {"targets": {"tag": {"key": "Env", "value": "dev"}}, "max_concurrency": "10", "max_errors": "100%"},
                    "target_locations": [{"accounts": [ids[0], ids[1]], "regions": ["us-east-1"]}],
                    "override": {"reason": "the dev teams signed off on this"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let run: StartExecutionResponse = serde_json::from_value(body).unwrap();
    let run = run.execution_id.unwrap();
    app.wait_done(&run, Duration::from_secs(60)).await;
    let (status, preview) = app
        .post(&format!("/executions/{run}/rollback/preview"), &json!({}))
        .await;
    assert_eq!(status, 200, "{preview}");
    let preview: shared::api::RollbackPreview = serde_json::from_value(preview).unwrap();
    assert!(preview.runs >= 2, "one rollback start per account: {preview:?}");
    let total = preview.targets.len();
    // The policy holds runs on more instances than any one account has, fewer than all.
    let (status, _) = app
        .put("/approval-policy", &json!({"more_than_instances": total - 1}))
        .await;
    assert_eq!(status, 200);
    let otto = Person::new(&app, "otto", "operator").await;
    let sent_before = app.sandbox.execution_ids().len();
    let (status, reply) = otto
        .post(&app, &format!("/executions/{run}/rollback"), &json!({}))
        .await;
    assert_eq!(status, 201, "{reply}");
    let reply: shared::api::RollbackResponse = serde_json::from_value(reply).unwrap();
    assert!(reply.execution_ids.is_empty(), "{reply:?}");
    assert_eq!(app.sandbox.execution_ids().len(), sent_before, "nothing was sent");
}

#[tokio::test]
async fn a_misspelt_field_is_refused_naming_it_and_changes_nothing() {
    let app = e2e::spawn_app().await;
    app.add_user("viewer1", "viewer").await;
    let policy_before = app.get("/approval-policy").await.1;
    for (method, path, body, field) in [
        (
            "POST",
            "/users/viewer1/accounts",
            json!({"account": ["200000000001"]}),
            "account",
        ),
        (
            "POST",
            "/users",
            json!({"name": "typo1", "role": "operator", "password": "Sup3rLongPassw0rd!", "acounts": ["200000000001"]}),
            "acounts",
        ),
        (
            "PUT",
            "/approval-policy",
            json!({"Tags": ["Env=prod"], "overrides": true}),
            "Tags",
        ),
        (
            "POST",
            "/tokens",
            json!({"user": "admin", "Role": "viewer", "name": "ci-readonly"}),
            "Role",
        ),
        (
            "POST",
            "/plans",
            json!({"name": "p", "waves": [{"name": "w", "targets": {"tag": {"key": "Env", "value": "dev"}},
                   "paramters": {}}], "halt": {}}),
            "waves[0].paramters",
        ),
    ] {
        let (status, answer) = match method {
            "PUT" => app.put(path, &body).await,
            _ => app.post(path, &body).await,
        };
        assert_eq!(status, 400, "{path}: {answer}");
        let error: ErrorBody = serde_json::from_value(answer).unwrap();
        assert_eq!(error.error.field.as_deref(), Some(field), "{path}: {error:?}");
        assert!(
            error.error.message.contains("is not a field this request takes"),
            "{path}: {error:?}"
        );
    }
    let (_, users) = app.get("/users").await;
    let users: Vec<shared::api::UserView> = serde_json::from_value(users).unwrap();
    assert!(users.iter().all(|u| u.name != "typo1"));
    assert!(users.iter().any(|u| u.name == "viewer1" && u.accounts.is_none()));
    assert_eq!(app.get("/approval-policy").await.1, policy_before);
    let (_, tokens) = app.get("/tokens").await;
    assert!(!tokens.to_string().contains("ci-readonly"), "{tokens}");
    // Inside a target, and in a query string, the same.
    let (status, answer) = app
        .post(
            "/executions/preview",
            &json!({"parameters": {}, "rate_control": {"targets": {"tag": {"key": "Env", "value": "dev", "valeu": "x"}}}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("valeu"),
        "{answer}"
    );
    for path in [
        "/audit?format=json&statuss=Failed",
        "/executions?requestor=op1",
        "/approvals?al=true",
        "/instances?acount=200000000001",
        "/fleet/summary?bye=region",
    ] {
        let (status, answer) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {answer}");
        let error: ErrorBody = serde_json::from_value(answer).unwrap();
        assert!(
            error
                .error
                .message
                .contains("is not a parameter this request takes"),
            "{path}: {error:?}"
        );
    }
}

#[tokio::test]
async fn an_automation_assume_role_of_another_account_is_refused_before_anything_is_sent() {
    let ids = sandbox::account_ids(3);
    let app = spawn_app_with(AppOptions {
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let instance = quiet_in(&app, &ids[1]).await;
    let region = app
        .instances()
        .await
        .into_iter()
        .find(|i| i["instance_id"] == instance.as_str())
        .unwrap()["region"]
        .as_str()
        .unwrap()
        .to_owned();
    let start_in = |partition: &str, role_account: &str| {
        json!({"account": ids[1], "region": region,
               "parameters": {"InstanceId": instance,
                              "AutomationAssumeRole": format!("arn:{partition}:iam::{role_account}:role/ImdsAutomation")}})
    };
    let start = |role_account: &str| start_in("aws", role_account);
    let sent = app.sandbox.execution_ids().len();
    // A role of the run's own account in another partition is no role here either.
    let (status, refused) = app.post("/executions", &start_in("aws-us-gov", &ids[1])).await;
    assert_eq!(status, 400, "{refused}");
    let refused: ErrorBody = serde_json::from_value(refused).unwrap();
    assert_eq!(
        refused.error.field.as_deref(),
        Some("parameters.AutomationAssumeRole")
    );
    assert!(
        refused.error.message.contains("aws-us-gov partition"),
        "{refused:?}"
    );
    let (status, refused) = app.post("/executions", &start(&ids[2])).await;
    assert_eq!(status, 400, "{refused}");
    let refused: ErrorBody = serde_json::from_value(refused).unwrap();
    assert_eq!(
        refused.error.field.as_deref(),
        Some("parameters.AutomationAssumeRole")
    );
    assert!(refused.error.message.contains(&ids[1]), "{refused:?}");
    assert_eq!(app.sandbox.execution_ids().len(), sent, "nothing was sent");
    let (status, body) = app.post("/executions", &start(&ids[1])).await;
    assert_eq!(status, 201, "a role of the run's own account: {body}");
}

#[tokio::test]
async fn guessing_the_current_password_from_a_session_is_throttled_and_audited() {
    let app = e2e::spawn_app().await;
    let cookie = app.own_session("gus", "operator").await;
    let change = |current: String| {
        let req = reqwest::Client::new()
            .post(app.url("/auth/password"))
            .header("cookie", &cookie)
            .header("origin", &app.base)
            .json(&json!({"current_password": current, "new_password": "Another-long-password-9"}));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let mut answers = Vec::new();
    for n in 0..8 {
        answers.push(change(format!("guess-number-{n}")).await);
    }
    assert_eq!(&answers[..5], [400; 5], "{answers:?}");
    assert!(
        answers[5..].iter().all(|s| *s == 429),
        "locked after five: {answers:?}"
    );
    let (_, log) = app.get("/audit/auth?kind=password-change-failed").await;
    let log: shared::api::AuthEventPage = serde_json::from_value(log).unwrap();
    assert_eq!(log.events.len(), 5, "{log:?}");
    assert!(log.events.iter().all(|e| e.actor.as_deref() == Some("gus")));
}
