//! Rollout plans (issue 15): waves run one after another with their bake times at sandbox speed, a
//! wave whose instances start refusing IMDSv1 calls halts the plan and names them, the readiness
//! check holds a wave until someone gives a reason, and bad plans say what is wrong.

use e2e::{spawn_app, TestApp};
use serde_json::{json, Value};
use shared::plans::{PlanStatus, RollbackStatus};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn wave(name: &str, targets: &Value, bake_minutes: u32) -> Value {
    json!({
        "name": name,
        "region": "us-east-1",
        "targets": targets,
        "parameters": {"EnforceIMDSv2": "required"},
        "max_concurrency": "5",
        "max_errors": "0",
        "bake_minutes": bake_minutes,
        "override": {"reason": "plan test: the app teams signed off"}
    })
}

fn env(value: &str) -> Value {
    json!({"tag": {"key": "Env", "value": value}})
}

/// Polls the plan until `done` holds; panics with the plan after `WAIT`.
async fn plan_until(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, plan) = app.get(&format!("/plans/{id}")).await;
        assert_eq!(status, 200, "{plan}");
        if done(&plan) {
            return plan;
        }
        assert!(Instant::now() < deadline, "the plan never got there: {plan:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn millis(rfc3339: &Value) -> i64 {
    let t = rfc3339
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {rfc3339}"));
    aws_smithy_types::DateTime::from_str(t, aws_smithy_types::date_time::Format::DateTime)
        .unwrap()
        .to_millis()
        .unwrap()
}

#[tokio::test]
async fn a_three_wave_plan_runs_dev_then_staging_then_prod_with_bake_times_between() {
    let app = spawn_app().await;
    let (status, created) = app
        .post(
            "/plans",
            &json!({
                "name": "IMDSv2: dev, staging, prod",
                "waves": [wave("dev", &env("dev"), 5), wave("staging", &env("staging"), 5), wave("prod", &env("prod"), 0)],
                "halt": {"rejected_calls": 1_000_000}
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["plan_id"].as_str().unwrap().to_owned();
    assert_eq!(created["plan"]["status"], "draft");

    let (status, preview) = app.post(&format!("/plans/{id}/preview"), &json!({})).await;
    assert_eq!(status, 200, "{preview}");
    let waves = preview["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 3);
    assert!(
        waves
            .iter()
            .all(|w| w["targets"].as_u64().unwrap() > 0 && w["error"].is_null()),
        "{preview}"
    );
    assert!(app.sandbox.execution_ids().is_empty(), "a preview starts nothing");

    let (status, started) = app.post(&format!("/plans/{id}/start"), &json!({})).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "running");
    assert_eq!(started["waves"][0]["status"], "running", "{started}");
    assert_eq!(started["waves"][1]["status"], "pending");

    // While dev bakes, staging waits.
    let baking = plan_until(&app, &id, |p| p["waves"][0]["status"] == "baking").await;
    assert_eq!(baking["waves"][1]["status"], "pending", "{baking:#}");
    let done = plan_until(&app, &id, |p| p["status"] == "completed").await;
    let w = done["waves"].as_array().unwrap();
    assert!(w.iter().all(|w| w["status"] == "done"), "{done:#}");
    // Each wave started after the previous one's bake (5 sandbox minutes: 1 s at speed 300).
    for pair in w.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            millis(&after["started_at"]) >= millis(&before["bake_until"]),
            "{done:#}"
        );
        assert!(
            millis(&before["bake_until"]) - millis(&before["ended_at"]) >= 900,
            "{done:#}"
        );
    }
    let runs: Vec<&str> = w.iter().map(|w| w["execution_id"].as_str().unwrap()).collect();
    assert_eq!(app.sandbox.execution_ids(), runs, "one run per wave, in order");
    for exec in &runs {
        let (_, d) = app.get(&format!("/executions/{exec}")).await;
        assert_eq!(d["summary"]["status"], "Success", "{d}");
    }
    let (_, list) = app.get("/plans").await;
    assert_eq!(list["plans"][0]["waves_done"], 3, "{list}");
    let (status, again) = app.post(&format!("/plans/{id}/start"), &json!({})).await;
    assert_eq!(status, 409, "a completed plan does not start again: {again}");
}

#[tokio::test]
async fn a_wave_whose_instances_start_refusing_imdsv1_halts_the_plan_names_them_and_rolls_back() {
    let app = e2e::spawn_app_with(e2e::AppOptions::default().with_local_webhooks()).await;
    let users = app
        .pick("us-east-1", |i| {
            i["state"] == "running"
                && i["metadata"]["http_tokens"] == "optional"
                && i["metadata"]["http_endpoint"] == "enabled"
                && i["imdsv1_calls"].as_u64().unwrap_or(0) > 0
        })
        .await;
    assert!(!users.is_empty(), "the seeded fleet has IMDSv1 users");
    let first: Vec<String> = users.iter().take(2).cloned().collect();
    let (rx, url) = crate::webhooks::receiver().await;
    let (status, _) = app
        .post(
            "/webhooks",
            &json!({"url": format!("{url}/hook"), "format": "json"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, created) = app
        .post(
            "/plans",
            &json!({
                "name": "halts on refusals",
                "waves": [wave("canary", &json!({"instance_ids": first}), 60), wave("prod", &env("prod"), 0)],
                "halt": {"rejected_calls": 1, "rollback": true}
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["plan_id"].as_str().unwrap().to_owned();
    app.post(&format!("/plans/{id}/start"), &json!({})).await;
    let halted = plan_until(&app, &id, |p| p["status"] == "halted").await;
    let canary = &halted["waves"][0];
    assert_eq!(canary["status"], "halted", "{halted:#}");
    let named: Vec<&str> = canary["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["instance_id"].as_str().unwrap())
        .collect();
    assert!(
        !named.is_empty() && named.iter().all(|n| first.contains(&n.to_string())),
        "{halted:#}"
    );
    assert!(
        halted["reason"].as_str().unwrap().contains(named[0]),
        "{halted:#}"
    );
    assert_eq!(halted["waves"][1]["status"], "pending", "prod never started");
    // The halt is told, naming the instances (the receiver fails its first delivery, which is retried).
    let told = rx.wait_for(&app, "/hook", |v| v["event"] == "plan.halted").await;
    assert!(
        told["data"]["rejected"]
            .as_array()
            .unwrap()
            .contains(&json!(named[0])),
        "{told}"
    );
    rx.wait_for(&app, "/hook", |v| {
        v["event"] == "wave.failed" && v["data"]["wave"] == "canary"
    })
    .await;
    // The plan said to roll the wave back: its rollback run restores the canaries.
    let rollback = canary["rollback_execution_ids"][0]
        .as_str()
        .expect("a rollback run")
        .to_owned();
    let done = app.wait_done(&rollback, WAIT).await;
    assert_eq!(done["summary"]["status"], "Success", "{done}");
    app.refresh_fleet().await;
    for inst in app
        .instances()
        .await
        .iter()
        .filter(|i| first.contains(&i["instance_id"].as_str().unwrap().to_owned()))
    {
        assert_eq!(inst["metadata"]["http_tokens"], "optional", "{inst}");
    }
}

#[tokio::test]
async fn a_wave_the_readiness_check_blocks_waits_for_a_reason_and_bad_plans_name_their_fields() {
    let app = spawn_app().await;
    let users = app
        .pick("us-east-1", |i| {
            i["state"] == "running"
                && i["metadata"]["http_tokens"] == "optional"
                && i["imdsv1_calls"].as_u64().unwrap_or(0) > 0
        })
        .await;
    let mut blocked = wave("canary", &json!({"instance_ids": [users[0]]}), 0);
    blocked.as_object_mut().unwrap().remove("override");
    let (_, created) = app
        .post(
            "/plans",
            &json!({"name": "needs a reason", "waves": [blocked], "halt": {"rejected_calls": 1_000_000}}),
        )
        .await;
    let id = created["plan_id"].as_str().unwrap().to_owned();
    let (_, preview) = app.post(&format!("/plans/{id}/preview"), &json!({})).await;
    assert_eq!(preview["waves"][0]["blocked"], true, "{preview}");
    let (_, started) = app.post(&format!("/plans/{id}/start"), &json!({})).await;
    assert_eq!(started["status"], "halted", "{started:#}");
    assert!(
        started["reason"].as_str().unwrap().contains(&users[0]),
        "{started:#}"
    );
    assert!(app.sandbox.execution_ids().is_empty(), "nothing started");
    let (status, short) = app
        .post(&format!("/plans/{id}/resume"), &json!({"override_reason": "ok"}))
        .await;
    assert_eq!(status, 400, "{short}");
    assert_eq!(short["error"]["field"], "override_reason");
    let (status, resumed) = app
        .post(
            &format!("/plans/{id}/resume"),
            &json!({"override_reason": "the canary's agent was upgraded"}),
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    let done = plan_until(&app, &id, |p| p["status"] == "completed").await;
    let exec = done["waves"][0]["execution_id"].as_str().unwrap();
    let (_, audit) = app.get(&format!("/audit?instance_id={}", users[0])).await;
    let record = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["execution_id"] == exec)
        .unwrap();
    assert_eq!(
        record["override_reason"], "the canary's agent was upgraded (given by admin on resuming the plan)",
        "the record credits the override to whoever gave it"
    );

    // Bad plans: each field named, nothing saved.
    let (status, bad) = app
        .post(
            "/plans",
            &json!({"name": "", "waves": [{"name": "x", "targets": {"tag": {"key": "Env", "value": "dev"}}, "max_concurrency": "lots", "bake_minutes": 99999}]}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    let fields = e2e::error_fields(&bad);
    assert_eq!(
        fields,
        [
            "name",
            "waves[0].bake_minutes",
            "waves[0].rate_control.max_concurrency"
        ],
        "{bad}"
    );
    let (_, list) = app.get("/plans").await;
    assert_eq!(list["plans"].as_array().unwrap().len(), 1);
    let (status, _) = app.post(&format!("/plans/{id}/explode"), &json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = app.post("/plans/no-such-plan/start", &json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn ssm_stops_a_wave_whose_alarm_fires_and_the_plan_halts_naming_it() {
    let app = spawn_app().await;
    app.sandbox.set_faults(sandbox::Faults {
        alarms_in_alarm: ["imds-refusals-web".to_owned()].into(),
        ..sandbox::Faults::default()
    });
    let (status, created) = app
        .post(
            "/plans",
            &json!({
                "name": "stopped by its alarm",
                "waves": [wave("dev", &env("dev"), 0), wave("prod", &env("prod"), 0)],
                "halt": {"rejected_calls": 1_000_000, "alarm_name": "imds-refusals-web"}
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["plan_id"].as_str().unwrap().to_owned();
    app.post(&format!("/plans/{id}/start"), &json!({})).await;
    let halted = plan_until(&app, &id, |p| p["status"] == "halted").await;
    let reason = halted["reason"].as_str().unwrap();
    assert!(
        reason.contains("Cancelled") && reason.contains("imds-refusals-web"),
        "{halted:#}"
    );
    assert_eq!(halted["waves"][1]["status"], "pending", "prod never started");
    // SSM was given the alarm with the run.
    let exec = halted["waves"][0]["execution_id"].as_str().unwrap();
    let conf = e2e::sdk_config(app.state.sandbox_url.as_deref().unwrap(), "us-east-1", 1).await;
    let got = aws_sdk_ssm::Client::new(&conf)
        .get_automation_execution()
        .automation_execution_id(exec)
        .send()
        .await
        .unwrap();
    let ex = got.automation_execution().unwrap();
    assert_eq!(
        ex.alarm_configuration().unwrap().alarms()[0].name(),
        "imds-refusals-web"
    );
    assert_eq!(ex.triggered_alarms()[0].name(), "imds-refusals-web");
    let (status, bad) = app
        .post(
            "/plans",
            &json!({"name": "x", "waves": [wave("dev", &env("dev"), 0)], "halt": {"alarm_name": " \u{7}"}}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["field"], "halt.alarm_name");
}

/// A slow sandbox (one instance's runbook takes seconds) and instances whose software calls IMDSv1,
/// so a wave of one at a time is still running when its first instances start refusing calls.
async fn slow_app_and_imdsv1_users() -> (TestApp, Vec<String>) {
    let app = e2e::spawn_app_with(e2e::AppOptions {
        speed: 3.0,
        ..e2e::AppOptions::default()
    })
    .await;
    let users = app
        .pick("us-east-1", |i| {
            i["metadata"]["http_tokens"] == "optional"
                && i["metadata"]["http_endpoint"] == "enabled"
                && i["imdsv1_calls"].as_u64().unwrap_or(0) > 0
        })
        .await;
    assert!(users.len() >= 3, "the seeded fleet has IMDSv1 users: {users:?}");
    (app, users.into_iter().take(6).collect())
}

fn one_at_a_time(name: &str, ids: &[String]) -> Value {
    let mut w = wave(name, &json!({"instance_ids": ids}), 0);
    w["max_concurrency"] = json!("1");
    w
}

#[tokio::test]
async fn a_plan_that_halts_mid_run_stops_the_run_then_rolls_back_what_it_changed_by_itself() {
    let (app, users) = slow_app_and_imdsv1_users().await;
    let (status, created) = app
        .post(
            "/plans",
            &json!({
                "name": "halts while its wave runs",
                "waves": [one_at_a_time("canary", &users)],
                "halt": {"rejected_calls": 1, "rollback": true}
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["plan_id"].as_str().unwrap().to_owned();
    let (status, _) = app.post(&format!("/plans/{id}/start"), &json!({})).await;
    assert_eq!(status, 200);

    // The halt comes while the run is still going: the run is told to stop, and the rollback waits
    // for it to end instead of failing on "StillRunning".
    let halted = app
        .plan_view_until(&id, WAIT, |p| p.status == PlanStatus::Halted)
        .await;
    let exec = halted.waves[0].execution_id.clone().expect("the wave's run");
    let asked = halted.waves[0]
        .rollback
        .clone()
        .expect("a rollback was asked for");
    assert_eq!(asked.requested_by, "plan halts while its wave runs");
    assert!(!asked.by_person);
    assert_ne!(asked.status, RollbackStatus::Failed, "{halted:#?}");

    // Then, with nobody asking, the rollback runs and finishes.
    let done = app
        .plan_view_until(&id, WAIT * 2, |p| {
            p.waves[0]
                .rollback
                .as_ref()
                .is_some_and(|r| !r.status.is_active())
        })
        .await;
    let rollback = done.waves[0].rollback.clone().unwrap();
    assert_eq!(rollback.status, RollbackStatus::Done, "{done:#?}");
    assert!(!done.waves[0].rollback_execution_ids.is_empty(), "{done:#?}");
    let run = app.wait_done(&exec, WAIT).await;
    assert_eq!(
        run["summary"]["status"], "Cancelled",
        "the halt stopped the run before it reached every instance: {run}"
    );
    for rb in &done.waves[0].rollback_execution_ids {
        let ended = app.wait_done(rb, WAIT).await;
        assert_eq!(ended["summary"]["status"], "Success", "{ended}");
    }
    // Every instance of the wave allows IMDSv1 again, as before the plan.
    app.refresh_fleet().await;
    let back: Vec<Value> = app
        .instances()
        .await
        .into_iter()
        .filter(|i| users.contains(&i["instance_id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(back.len(), users.len());
    for inst in back {
        assert_eq!(inst["metadata"]["http_tokens"], "optional", "{inst}");
    }
}

#[tokio::test]
async fn a_halted_plans_wave_can_be_rolled_back_by_hand_and_not_while_the_plan_runs() {
    let (app, users) = slow_app_and_imdsv1_users().await;
    let (status, created) = app
        .post(
            "/plans",
            &json!({
                "name": "rolled back by hand",
                "waves": [one_at_a_time("canary", &users[..2])],
                "halt": {"rejected_calls": 1, "rollback": false}
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["plan_id"].as_str().unwrap().to_owned();
    let (status, _) = app.post(&format!("/plans/{id}/start"), &json!({})).await;
    assert_eq!(status, 200);
    let (status, refused) = app.post(&format!("/plans/{id}/rollback"), &json!({})).await;
    assert_eq!(
        status, 409,
        "a running plan may start more: pause or cancel first: {refused}"
    );
    let refused: shared::api::ErrorBody = serde_json::from_value(refused).unwrap();
    assert_eq!(refused.error.code, "PlanStatus");

    let halted = app
        .plan_view_until(&id, WAIT, |p| p.status == PlanStatus::Halted)
        .await;
    assert!(
        halted.waves[0].rollback.is_none(),
        "the plan did not say to roll back"
    );
    let (status, asked) = app.post(&format!("/plans/{id}/rollback"), &json!({})).await;
    assert_eq!(status, 200, "{asked}");
    let asked: shared::plans::PlanView = serde_json::from_value(asked).unwrap();
    let rollback = asked.waves[0].rollback.clone().expect("asked for");
    assert!(rollback.by_person);
    assert_eq!(rollback.requested_by, "admin");
    let (status, again) = app.post(&format!("/plans/{id}/rollback"), &json!({})).await;
    assert_eq!(status, 409, "one rollback at a time: {again}");

    let done = app
        .plan_view_until(&id, WAIT * 2, |p| {
            p.waves[0]
                .rollback
                .as_ref()
                .is_some_and(|r| !r.status.is_active())
        })
        .await;
    assert_eq!(
        done.waves[0].rollback.as_ref().unwrap().status,
        RollbackStatus::Done,
        "{done:#?}"
    );
    app.refresh_fleet().await;
    for inst in app
        .instances()
        .await
        .iter()
        .filter(|i| users[..2].contains(&i["instance_id"].as_str().unwrap().to_owned()))
    {
        assert_eq!(inst["metadata"]["http_tokens"], "optional", "{inst}");
    }
}
