//! What an outside review of plan rollbacks, approvals and start settling broke, held: a cancelled
//! or paused plan's held or queued wave is never sent, an approved start is sent once and counted
//! from its approval, a plan's rollback is never started twice nor recorded as failed when it was
//! done, and a member role STS throttles is a start to send later, not a refusal.

use e2e::{spawn_app, spawn_app_with, AppOptions, Person, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn set_policy(app: &TestApp, policy: &Value) {
    let (status, body) = app.put("/approval-policy", policy).await;
    assert_eq!(status, 200, "{body}");
}

/// A held start approved two hours after it was asked for, while SSM throttles it once: the approval
/// is an explicit decision; the start must be sent when SSM has room, not expired as stale.
#[tokio::test]
async fn an_approved_start_throttled_once_is_not_expired_for_its_hold_time() {
    let app = spawn_app_with(AppOptions {
        discover_secs: 1,
        ..AppOptions::default()
    })
    .await;
    let olga = Person::new(&app, "olga", "operator").await;
    let otto = Person::new(&app, "otto", "operator").await;
    set_policy(&app, &json!({"tags": ["Env=prod"], "expires_after_hours": 24})).await;
    let prod = app.quiet_tagged("prod").await;
    let (status, held) = olga
        .post(&app, "/executions", &json!({"parameters": {"InstanceId": prod}}))
        .await;
    assert_eq!(status, 202, "{held}");
    let id = held["record_id"].as_i64().unwrap();
    // The approver comes back after lunch: two hours, well within the hold's 24.
    app.state.store.clock.advance(Duration::from_secs(2 * 3600));
    app.sandbox.set_faults(sandbox::Faults {
        rules: vec![sandbox::FaultRule {
            operation: "ssm:StartAutomationExecution".into(),
            throttle: 1.0,
            ..Default::default()
        }],
        ..Default::default()
    });
    let (status, approved) = otto
        .post(&app, &format!("/approvals/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, 200, "{approved}");
    // SSM has room again a moment later.
    app.sandbox.set_faults(sandbox::Faults::default());
    let r = app
        .audit_record_until(id, Duration::from_secs(20), |r| {
            r["execution_id"].as_str().is_some() || r["status"] == "Refused"
        })
        .await;
    assert!(
        r["execution_id"].as_str().is_some(),
        "an approved start, throttled once, was thrown away: {r}"
    );
}

/// A plan whose prod wave is held for approval is cancelled; the held start must not be sendable.
#[tokio::test]
async fn a_cancelled_plans_held_wave_is_not_sent_when_approved_later() {
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
            &json!({"name": "cancel while held", "waves": [wave("prod")],
                    "halt": {"rejected_calls": 1_000_000}}),
        )
        .await;
    let plan = created["plan_id"].as_str().unwrap().to_owned();
    app.post(&format!("/plans/{plan}/start"), &json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let (_, pending) = app.get("/approvals").await;
        if let Some(a) = pending["approvals"].as_array().unwrap().first() {
            break a["approval_id"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, cancelled) = app.post(&format!("/plans/{plan}/cancel"), &json!({})).await;
    assert_eq!(status, 200, "{cancelled}");
    // The cancel withdrew the held wave: nothing is pending, and approving it is refused.
    let (_, pending) = app.get("/approvals").await;
    let pending: shared::approvals::ApprovalList = serde_json::from_value(pending).unwrap();
    assert!(pending.approvals.is_empty(), "{pending:?}");
    let (status, approved) = otto
        .post(&app, &format!("/approvals/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, 409, "{approved}");
    assert_eq!(approved["error"]["code"], "ApprovalDecided");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.audit_record(id).await["status"], "Rejected");
    assert!(
        app.sandbox.execution_ids().is_empty(),
        "a cancelled plan's wave ran after all: {:?}",
        app.sandbox.execution_ids()
    );
}

/// A plan that is cancelled while its wave's start is queued (SSM's quota full): the queued start
/// must not be sent later.
#[tokio::test]
async fn a_cancelled_plans_queued_wave_is_not_sent_later() {
    let app = spawn_app_with(AppOptions {
        speed: 1.0,
        ..AppOptions::default()
    })
    .await;
    app.sandbox.set_faults(sandbox::Faults {
        automation_quota: sandbox::AutomationQuota {
            running: 0,
            queued: 0,
        },
        ..Default::default()
    });
    let ids = app.quiet("us-east-1").await;
    let (_, created) = app
        .post(
            "/plans",
            &json!({"name": "cancel while queued", "waves": [{"name": "w", "region": "us-east-1",
                    "targets": {"instance_ids": [ids[0]]}, "override": {"reason": "review test of queueing"}}],
                    "halt": {"rejected_calls": 1_000_000}}),
        )
        .await;
    let plan = created["plan_id"].as_str().unwrap().to_owned();
    let (status, started) = app.post(&format!("/plans/{plan}/start"), &json!({})).await;
    assert_eq!(status, 200, "{started}");
    let record_id = started["waves"][0]["record_id"].as_i64().expect("a record");
    assert_eq!(app.audit_record(record_id).await["status"], "Queued");
    let (status, cancelled) = app.post(&format!("/plans/{plan}/cancel"), &json!({})).await;
    assert_eq!(status, 200, "{cancelled}");
    app.sandbox.set_faults(sandbox::Faults::default());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let r = app.audit_record(record_id).await;
    assert_eq!(r["status"], "Refused", "{r}");
    assert!(
        app.sandbox.execution_ids().is_empty(),
        "a cancelled plan's queued wave was sent after the cancel: {r}"
    );
}

/// A halted plan whose wave the plan rolled back by itself, to the end.
async fn rolled_back_plan() -> (TestApp, String, Vec<String>) {
    let app = spawn_app_with(AppOptions {
        speed: 3.0,
        ..AppOptions::default()
    })
    .await;
    let users: Vec<String> = app
        .pick("us-east-1", |i| {
            i["metadata"]["http_tokens"] == "optional"
                && i["metadata"]["http_endpoint"] == "enabled"
                && i["imdsv1_calls"].as_u64().unwrap_or(0) > 0
        })
        .await
        .into_iter()
        .take(3)
        .collect();
    let mut w = json!({"name": "canary", "region": "us-east-1", "targets": {"instance_ids": users},
        "parameters": {"EnforceIMDSv2": "required"}, "max_concurrency": "3", "max_errors": "0",
        "bake_minutes": 0, "override": {"reason": "review: the app teams signed off"}});
    w["bake_minutes"] = json!(30);
    let (status, created) = app
        .post(
            "/plans",
            &json!({"name": "review rollback", "waves": [w], "halt": {"rejected_calls": 1, "rollback": true}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["plan_id"].as_str().unwrap().to_owned();
    let (status, _) = app.post(&format!("/plans/{id}/start"), &json!({})).await;
    assert_eq!(status, 200);
    (app, id, users)
}

#[tokio::test]
async fn a_second_rollback_after_one_that_finished_is_refused_not_recorded_as_failed() {
    let (app, id, _) = rolled_back_plan().await;
    let done = app
        .plan_view_until(&id, Duration::from_secs(120), |p| {
            p.waves[0]
                .rollback
                .as_ref()
                .is_some_and(|r| !r.status.is_active())
        })
        .await;
    assert_eq!(
        done.waves[0].rollback.as_ref().unwrap().status,
        shared::plans::RollbackStatus::Done
    );
    let (status, again) = app.post(&format!("/plans/{id}/rollback"), &json!({})).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "NothingToRollBack");
    let after = app.plan_view(&id).await;
    assert_eq!(
        after.waves[0].rollback.as_ref().unwrap().status,
        shared::plans::RollbackStatus::Done,
        "the wave was rolled back; a second ask turned the record into: {:?} (HTTP {status})",
        after.waves[0].rollback
    );
}

/// The console dies after the rollback's runs were sent and before the plan was saved (one step
/// does both, the save last): the stored plan still says Waiting. After the restart the driver
/// starts the rollback again.
#[tokio::test]
async fn a_rollback_resumed_after_a_crash_is_not_started_twice() {
    let (app, id, _) = rolled_back_plan().await;
    let running = app
        .plan_view_until(&id, Duration::from_secs(120), |p| {
            p.waves[0]
                .rollback
                .as_ref()
                .is_some_and(|r| r.status == shared::plans::RollbackStatus::Running)
        })
        .await;
    let first_ids = running.waves[0].rollback.as_ref().unwrap().record_ids.clone();
    let sent_before = app.sandbox.execution_ids().len();
    {
        // What the store held at the crash: the rollback asked for, its runs not yet noted.
        let _guard = app.state.plans.lock.lock().await;
        let mut p = app.state.store.plan(&id).await.unwrap().unwrap();
        let rb = p.waves[0].rollback.as_mut().unwrap();
        rb.status = shared::plans::RollbackStatus::Waiting;
        rb.record_ids.clear();
        rb.message = None;
        p.waves[0].rollback_execution_ids.clear();
        app.state.store.save_plan(&p).await.unwrap();
    }
    let done = app
        .plan_view_until(&id, Duration::from_secs(120), |p| {
            p.waves[0]
                .rollback
                .as_ref()
                .is_some_and(|r| !r.status.is_active())
        })
        .await;
    eprintln!(
        "first rollback records {first_ids:?}; after the restart: {:?}",
        done.waves[0].rollback
    );
    assert_eq!(
        app.sandbox.execution_ids().len(),
        sent_before,
        "a second rollback run was started"
    );
    assert_eq!(
        done.waves[0].rollback.as_ref().unwrap().status,
        shared::plans::RollbackStatus::Done,
        "{:?}",
        done.waves[0].rollback
    );
}

/// A plan paused while its second wave waits for approval: "roll back the last wave" rolls back
/// the first, and the held second wave can still be approved and sent while the plan is paused.
#[tokio::test]
async fn rollback_of_a_paused_plan_whose_last_wave_is_held() {
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
            &json!({"name": "paused while held", "waves": [wave("dev"), wave("prod")],
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
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, paused) = app.post(&format!("/plans/{plan}/pause"), &json!({})).await;
    assert_eq!(status, 200, "{paused}");
    // Rolling dev back while prod waits for approval would leave prod to run after it: refused,
    // saying what to do.
    let (status, rb) = app.post(&format!("/plans/{plan}/rollback"), &json!({})).await;
    assert_eq!(status, 409, "{rb}");
    assert_eq!(rb["error"]["code"], "WaveAwaitingApproval");
    let before = app.sandbox.execution_ids().len();
    // And the held wave of a paused plan is not sent by an approval.
    let (status, approved) = otto
        .post(&app, &format!("/approvals/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, 409, "{approved}");
    assert_eq!(approved["error"]["code"], "PlanNotRunning");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.sandbox.execution_ids().len(),
        before,
        "a paused plan's wave was sent, after its previous wave was rolled back"
    );
}

/// With PostgreSQL (several replicas possible; SQLite has no orphan sweep): a start held for two hours is approved; while the
/// approval's send is on its way (SSM slow to answer), the leader's orphan sweep takes the Recorded,
/// old-looking record for one whose sender died.
async fn approved_while_the_orphan_sweep_runs(extra: Vec<String>) -> (TestApp, i64) {
    let app = spawn_app_with(AppOptions {
        discover_secs: 1,
        extra_args: extra,
        ..AppOptions::default()
    })
    .await;
    let olga = Person::new(&app, "olga", "operator").await;
    let otto = Person::new(&app, "otto", "operator").await;
    set_policy(&app, &json!({"tags": ["Env=prod"], "expires_after_hours": 24})).await;
    let prod = app.quiet_tagged("prod").await;
    let (status, held) = olga
        .post(&app, "/executions", &json!({"parameters": {"InstanceId": prod}}))
        .await;
    assert_eq!(status, 202, "{held}");
    let id = held["record_id"].as_i64().unwrap();
    app.state.store.clock.advance(Duration::from_secs(2 * 3600));
    app.sandbox.set_faults(sandbox::Faults {
        rules: vec![sandbox::FaultRule {
            operation: "ssm:StartAutomationExecution".into(),
            latency_ms: 4_000,
            ..Default::default()
        }],
        ..Default::default()
    });
    let (status, approved) = otto
        .post(&app, &format!("/approvals/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, 200, "{approved}");
    app.sandbox.set_faults(sandbox::Faults::default());
    tokio::time::sleep(Duration::from_secs(8)).await;
    (app, id)
}

#[tokio::test]
async fn an_approved_start_is_sent_once_with_a_longer_expiry() {
    let (app, id) =
        approved_while_the_orphan_sweep_runs(vec!["--start-expiry-minutes".into(), "600".into()]).await;
    let r = app.audit_record(id).await;
    assert!(r["execution_id"].as_str().is_some(), "{r}");
    assert_eq!(
        app.sandbox.execution_ids().len(),
        1,
        "one approved start ran {:?}",
        app.sandbox.execution_ids()
    );
}

#[tokio::test]
async fn an_approved_start_in_flight_is_not_refused_as_expired() {
    let (app, id) = approved_while_the_orphan_sweep_runs(vec![]).await;
    let r = app.audit_record(id).await;
    assert_ne!(r["status"], "Refused", "{r}");
}

/// A start in a member account whose AssumeRole STS throttles (or answers with a 5xx): nothing
/// was sent, and the same start a moment later would pass. It must not be a definite refusal.
#[tokio::test]
async fn a_throttled_assume_role_is_not_a_definite_refusal() {
    let (_sb, url) = e2e::standalone_sandbox(sandbox::SandboxConfig {
        fleet_size: 10,
        accounts: 2,
        faults: sandbox::Faults {
            rules: vec![sandbox::FaultRule {
                operation: "sts:AssumeRole".into(),
                throttle: 1.0,
                ..Default::default()
            }],
            ..Default::default()
        },
        ..sandbox::SandboxConfig::default()
    })
    .await;
    let hub = e2e::sdk_config(&url, "us-east-1", 1).await;
    let member = sandbox::account_ids(2)[1].clone();
    let provider =
        aws_config::sts::AssumeRoleProvider::builder(format!("arn:aws:iam::{member}:role/ImdsConsoleMember"))
            .session_name("imds-console")
            .configure(&hub)
            .build()
            .await;
    let conf = hub
        .into_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            provider,
        ))
        .build();
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let err = ssm
        .start_automation_execution()
        .document_name("AWSSupport-ConfigureEC2Metadata")
        .send()
        .await
        .expect_err("no credentials while STS throttles");
    let ours = backend::aws::sdk_error("ssm:StartAutomationExecution", &err);
    let outcome = backend::runs::classify(&ours);
    assert_ne!(
        outcome,
        backend::runs::StartOutcome::Refused,
        "STS throttling the member role's AssumeRole made the start a definite refusal: {ours}"
    );
}
