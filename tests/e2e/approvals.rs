//! Two-person approval (issue 15): a start the policy covers is recorded and held, its requester
//! cannot approve it, another operator's approval sends it; a rejection or an expiry ends it; a plan's
//! wave waits the same way.

use e2e::{spawn_app, Person, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn set_policy(app: &TestApp, policy: &Value) {
    let resp = app
        .http
        .put(app.url("/approval-policy"))
        .json(policy)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

#[tokio::test]
async fn a_prod_tagged_run_waits_its_requester_cannot_approve_it_and_another_operator_starts_it() {
    let app = spawn_app().await;
    let olga = Person::new(&app, "olga", "operator").await;
    assert_eq!(
        olga.put(&app, "/approval-policy", &json!({"tags": ["Env=prod"]}))
            .await,
        403,
        "admins set the policy"
    );
    set_policy(&app, &json!({"tags": ["Env=prod"], "expires_after_hours": 24})).await;
    let (_, policy) = app.get("/approval-policy").await;
    assert_eq!(policy["tags"], json!(["Env=prod"]));

    let prod = app.quiet_tagged("prod").await;
    let (status, held) = olga
        .post(&app, "/executions", &json!({"parameters": {"InstanceId": prod}}))
        .await;
    assert_eq!(status, 202, "{held}");
    assert_eq!(held["status"], "AwaitingApproval");
    assert!(held["execution_id"].is_null());
    assert!(held["message"].as_str().unwrap().contains("Env=prod"), "{held}");
    assert!(
        app.sandbox.execution_ids().is_empty(),
        "nothing is sent before approval"
    );
    let id = held["record_id"].as_i64().unwrap();
    let (_, pending) = app.get("/approvals").await;
    let a = &pending["approvals"][0];
    assert_eq!(a["approval_id"], id);
    assert_eq!(a["requester"], "olga");
    assert_eq!(a["why"], "targets tagged Env=prod");
    assert_eq!(a["instance_id"], prod.as_str());
    let (_, dashboard) = app.get("/dashboard").await;
    assert_eq!(dashboard["approvals_pending"], 1);

    let (status, own) = olga
        .post(&app, &format!("/approvals/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, 403, "{own}");
    assert_eq!(own["error"]["code"], "OwnApproval");
    let (status, approved) = app
        .post(
            &format!("/approvals/{id}/approve"),
            &json!({"comment": "checked the change window"}),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "admin");
    let exec = approved["execution_id"]
        .as_str()
        .expect("sent at once")
        .to_owned();
    let done = app.wait_done(&exec, Duration::from_secs(30)).await;
    assert_eq!(done["summary"]["status"], "Success", "{done}");
    assert_eq!(done["summary"]["requester"], "olga");
    // The run page, History and the audit export name who approved it.
    let detail: shared::api::ExecutionDetail = serde_json::from_value(done.clone()).unwrap();
    assert_eq!(detail.approved_by.as_deref(), Some("admin"));
    assert_eq!(detail.summary.approved_by.as_deref(), Some("admin"));
    let (_, page) = app.get("/executions").await;
    let page: shared::api::ExecutionPage = serde_json::from_value(page).unwrap();
    let listed = page.executions.iter().find(|e| e.execution_id == exec).unwrap();
    assert_eq!(listed.approved_by.as_deref(), Some("admin"));
    let (_, audit) = app.get("/audit").await;
    let audit: Vec<shared::api::AuditRecord> = serde_json::from_value(audit).unwrap();
    let record = audit
        .iter()
        .find(|r| r.execution_id.as_deref() == Some(exec.as_str()))
        .unwrap();
    assert_eq!(record.approved_by.as_deref(), Some("admin"));
    let csv = app
        .http
        .get(app.url("/audit?format=csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.lines().next().unwrap().contains("\"approved_by\""), "{csv}");
    let (status, again) = app.post(&format!("/approvals/{id}/reject"), &json!({})).await;
    assert_eq!(status, 409, "decided once: {again}");
    let (_, all) = app.get("/approvals?all=true").await;
    assert_eq!(all["approvals"][0]["comment"], "checked the change window");
    let (_, pending) = app.get("/approvals").await;
    assert!(pending["approvals"].as_array().unwrap().is_empty());

    // A dev instance is not covered: it starts at once.
    let dev = app.quiet_tagged("dev").await;
    let (status, started) = olga
        .post(&app, "/executions", &json!({"parameters": {"InstanceId": dev}}))
        .await;
    assert_eq!(status, 201, "{started}");
}

#[tokio::test]
async fn a_rejected_or_expired_start_never_runs_and_says_why() {
    let app = spawn_app().await;
    let otto = Person::new(&app, "otto", "operator").await;
    set_policy(&app, &json!({"tags": ["Env=prod"], "expires_after_hours": 2})).await;
    let prod = app.quiet_tagged("prod").await;
    let (_, held) = app
        .post("/executions", &json!({"parameters": {"InstanceId": prod}}))
        .await;
    let id = held["record_id"].as_i64().unwrap();
    let (status, rejected) = otto
        .post(
            &app,
            &format!("/approvals/{id}/reject"),
            &json!({"comment": "not during the freeze"}),
        )
        .await;
    assert_eq!(status, 200, "{rejected}");
    let (_, audit) = app.get(&format!("/audit?instance_id={prod}")).await;
    let record = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["record_id"] == id)
        .unwrap()
        .clone();
    assert_eq!(record["status"], "Rejected");
    assert_eq!(
        record["failure_message"],
        "rejected by otto: not during the freeze"
    );

    let (_, held) = app
        .post("/executions", &json!({"parameters": {"InstanceId": prod}}))
        .await;
    let id = held["record_id"].as_i64().unwrap();
    app.state.store.clock.advance(Duration::from_secs(3 * 3600));
    let (_, all) = app.get("/approvals?all=true").await;
    let expired = all["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["approval_id"] == id)
        .unwrap()
        .clone();
    assert_eq!(expired["status"], "expired", "{all}");
    let (status, late) = otto
        .post(&app, &format!("/approvals/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, 409, "{late}");
    assert!(app.sandbox.execution_ids().is_empty(), "neither ran");
    let (status, bad) = otto.post(&app, "/approvals/abc/approve", &json!({})).await;
    assert_eq!(status, 404, "{bad}");
    let bad_policy = app
        .http
        .put(app.url("/approval-policy"))
        .json(&json!({"tags": ["prod"], "expires_after_hours": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_policy.status(), 400);
    let body: Value = bad_policy.json().await.unwrap();
    let fields = e2e::error_fields(&body);
    assert_eq!(fields, ["tags[0]", "expires_after_hours"]);
}

#[tokio::test]
async fn a_plan_s_prod_wave_waits_for_approval_then_runs() {
    let app = spawn_app().await;
    let otto = Person::new(&app, "otto", "operator").await;
    set_policy(&app, &json!({"tags": ["Env=prod"]})).await;
    let wave = |name: &str| {
        json!({"name": name, "region": "us-east-1", "targets": {"tag": {"key": "Env", "value": name}},
               "override": {"reason": "plan approval test"}})
    };
    let (_, created) = app
        .post(
            "/plans",
            &json!({"name": "needs a second person for prod", "waves": [wave("dev"), wave("prod")],
                                "halt": {"rejected_calls": 1_000_000}}),
        )
        .await;
    let plan = created["plan_id"].as_str().unwrap().to_owned();
    app.post(&format!("/plans/{plan}/start"), &json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let (_, pending) = app.get("/approvals").await;
        if let Some(a) = pending["approvals"].as_array().unwrap().first() {
            break a["approval_id"].as_i64().unwrap();
        }
        if Instant::now() > deadline {
            let (_, p) = app.get(&format!("/plans/{plan}")).await;
            panic!("the prod wave never asked for approval: {p:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, p) = app.get(&format!("/plans/{plan}")).await;
    assert_eq!(p["waves"][0]["status"], "done", "{p:#}");
    assert_eq!(p["waves"][1]["record_id"], id, "{p:#}");
    // The held wave says it waits for approval, and which one: not "running".
    let view: shared::plans::PlanView = serde_json::from_value(p.clone()).unwrap();
    assert_eq!(view.waves[1].status, shared::plans::WaveStatus::Held, "{p:#}");
    assert!(
        view.waves[1]
            .message
            .as_deref()
            .is_some_and(|m| m.contains(&format!("approval {id}"))),
        "{p:#}"
    );
    assert_eq!(app.sandbox.execution_ids().len(), 1, "only dev ran");
    let (status, _) = otto
        .post(&app, &format!("/approvals/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, p) = app.get(&format!("/plans/{plan}")).await;
        if p["status"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "the plan never completed: {p:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.sandbox.execution_ids().len(), 2);
}

#[tokio::test]
async fn the_approver_sees_what_the_requester_reviewed_and_an_endpoint_turned_off_loudly() {
    let app = spawn_app().await;
    let olga = Person::new(&app, "olga", "operator").await;
    set_policy(&app, &json!({"tags": ["Env=prod"]})).await;
    let prod = app.quiet_tagged("prod").await;
    let (status, held) = olga
        .post(
            &app,
            "/executions",
            &json!({"parameters": {"InstanceId": prod, "MetadataAccess": "disabled"}}),
        )
        .await;
    assert_eq!(status, 202, "{held}");
    let (status, list) = app.get("/approvals").await;
    assert_eq!(status, 200, "{list}");
    let list: shared::approvals::ApprovalList = serde_json::from_value(list).unwrap();
    let a = &list.approvals[0];
    let start = a.start.as_ref().expect("what the start would send");
    assert_eq!(start.parameters.metadata_access.as_str(), "disabled");
    assert_eq!(a.review.len(), 1, "{a:?}");
    let row = &a.review[0];
    assert_eq!(row.instance_id, prod);
    assert_eq!(row.after.http_endpoint, "disabled", "{row:?}");
    assert!(row.changes.iter().any(|c| c.contains("http_endpoint")), "{row:?}");
    assert!(
        !row.warnings.is_empty(),
        "the requester's warnings reach the approver: {row:?}"
    );
}
