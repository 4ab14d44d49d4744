//! The console's HTTP API against its embedded sandbox: the runbook's three paths, rate control, stop,
//! every bad field, malformed JSON, unknown IDs, AWS refusals carried through, history and live events.

use e2e::{now_ms, spawn_app, spawn_app_with, AppOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn steps(detail: &Value) -> Vec<String> {
    detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn instance(app: &e2e::TestApp, id: &str) -> Value {
    app.refresh_fleet().await;
    app.instances()
        .await
        .into_iter()
        .find(|i| i["instance_id"] == id)
        .expect("instance listed")
}

#[tokio::test]
async fn health_and_identity_report_sandbox_mode() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/health").await,
        (200, json!({"status": "ok", "leader": true}))
    );
    let (status, id) = app.get("/identity").await;
    assert_eq!(status, 200);
    assert_eq!(id["mode"], "sandbox");
    assert_eq!(id["account"], sandbox::ACCOUNT_ID);
    assert_eq!(id["regions"], json!(["us-east-1", "eu-west-1"]));
}

#[tokio::test]
async fn enforcing_an_instance_runs_to_success_and_the_fleet_shows_required() {
    let app = spawn_app().await;
    let id = app
        .pick("us-east-1", |i| {
            i["metadata"]["http_tokens"] == "optional" && i["imdsv1_calls"] == 0
        })
        .await
        .remove(0);
    let hop_before = instance(&app, &id).await["metadata"]["http_put_response_hop_limit"].clone();
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": id, "EnforceIMDSv2": "required"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let exec = body["execution_id"].as_str().unwrap().to_owned();
    let detail = app.wait_done(&exec, WAIT).await;
    assert_eq!(detail["summary"]["status"], "Success", "{detail}");
    assert_eq!(detail["summary"]["instance_id"], json!(id));
    assert_eq!(detail["summary"]["requester"], "admin");
    assert_eq!(steps(&detail)[2], "maintainHopLimitAndConfigureImdsVersion");
    assert_eq!(detail["parameters"]["HttpPutResponseHopLimit"], json!(["0"]));
    assert_eq!(
        detail["outputs"]["describeMetadataOptions.IMDSv2"],
        json!(["required"])
    );
    let after = instance(&app, &id).await;
    assert_eq!(after["metadata"]["http_tokens"], "required");
    assert_eq!(
        after["metadata"]["http_put_response_hop_limit"], hop_before,
        "hop limit 0 keeps it"
    );
    assert_eq!(after["compliant"], true);
    // History lists it, newest first, and filters by instance.
    let (_, page) = app.get(&format!("/executions?instance_id={id}")).await;
    assert_eq!(page["executions"][0]["execution_id"], json!(exec));
    assert_eq!(page["executions"][0]["status"], "Success");
}

#[tokio::test]
async fn a_hop_limit_change_sets_the_limit() {
    let app = spawn_app().await;
    let id = app.quiet("eu-west-1").await.remove(0);
    let (status, body) = app
        .post(
            "/executions",
            &json!({"region": "eu-west-1", "parameters": {"InstanceId": id, "HttpPutResponseHopLimit": 3}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let detail = app.wait_done(body["execution_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(detail["summary"]["status"], "Success", "{detail}");
    assert!(steps(&detail).contains(&"assertHopLimit".to_owned()));
    assert_eq!(detail["summary"]["region"], "eu-west-1");
    let after = instance(&app, &id).await;
    assert_eq!(after["metadata"]["http_put_response_hop_limit"], 3);
    assert_eq!(after["metadata"]["http_tokens"], "required");
}

#[tokio::test]
async fn disabling_the_endpoint_turns_metadata_off() {
    let app = spawn_app().await;
    let id = app.quiet("us-east-1").await.remove(0);
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": id, "MetadataAccess": "disabled"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let detail = app.wait_done(body["execution_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(detail["summary"]["status"], "Success");
    assert_eq!(steps(&detail)[1], "disableMetadataAccess");
    let after = instance(&app, &id).await;
    assert_eq!(after["metadata"]["http_endpoint"], "disabled");
    assert_eq!(after["compliant"], true);
}

#[tokio::test]
async fn a_rate_controlled_run_covers_every_target_with_children_and_progress() {
    let app = spawn_app().await;
    let ids: Vec<String> = app
        .pick("us-east-1", |i| {
            i["metadata"]["http_tokens"] == "optional" && i["imdsv1_calls"] == 0
        })
        .await
        .into_iter()
        .take(4)
        .collect();
    assert_eq!(ids.len(), 4);
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"EnforceIMDSv2": "required"},
                    "rate_control": {"targets": {"instance_ids": ids}, "max_concurrency": "2", "max_errors": "0"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let parent = body["execution_id"].as_str().unwrap().to_owned();
    let detail = app.wait_done(&parent, WAIT).await;
    assert_eq!(detail["summary"]["status"], "Success", "{detail}");
    // The watcher may record the last child a poll after the parent finishes.
    let mut detail = detail;
    let deadline = Instant::now() + WAIT;
    while detail["rate_control"]["progress"]["succeeded"] != 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        detail = app.get(&format!("/executions/{parent}")).await.1;
    }
    let rc = &detail["rate_control"];
    assert_eq!(rc["max_concurrency"], "2");
    assert_eq!(
        rc["progress"],
        json!({"total": 4, "succeeded": 4, "failed": 0, "running": 0, "waiting": 0, "cancelled": 0, "not_run": 0})
    );
    let children = detail["children"].as_array().unwrap();
    assert_eq!(children.len(), 4);
    for c in children {
        assert_eq!(c["parent_execution_id"], json!(parent));
        let child = app.wait_done(c["execution_id"].as_str().unwrap(), WAIT).await;
        assert_eq!(child["summary"]["status"], "Success");
        assert!(ids.contains(&child["summary"]["instance_id"].as_str().unwrap().to_owned()));
    }
    for id in &ids {
        assert_eq!(instance(&app, id).await["metadata"]["http_tokens"], "required");
    }
    // The parent appears in the history of each target instance.
    let (_, page) = app.get(&format!("/executions?instance_id={}", ids[2])).await;
    assert_eq!(page["executions"][0]["execution_id"], json!(parent));
}

#[tokio::test]
async fn stopping_a_run_cancels_it() {
    let app = spawn_app_with(AppOptions {
        speed: 3.0,
        ..AppOptions::default()
    })
    .await;
    let id = app.quiet("us-east-1").await.remove(0);
    let (_, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    let exec = body["execution_id"].as_str().unwrap().to_owned();
    // Stop it once it runs (its 30-second wait takes 10 s here), not after a guessed delay.
    let deadline = Instant::now() + WAIT;
    while app.get(&format!("/executions/{exec}")).await.1["summary"]["status"] != "InProgress" {
        assert!(Instant::now() < deadline, "{exec} never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = app.post(&format!("/executions/{exec}/stop"), &json!({})).await;
    assert_eq!(status, 202, "{body}");
    let detail = app.wait_done(&exec, WAIT).await;
    assert_eq!(detail["summary"]["status"], "Cancelled");
    assert!(detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["status"] == "Cancelled"));
    let (status, body) = app.post(&format!("/executions/{exec}/stop"), &json!({})).await;
    assert_eq!(status, 409, "stopping a finished run is a conflict: {body}");
    assert_eq!(body["error"]["code"], "InvalidAutomationStatusUpdateException");
}

#[tokio::test]
async fn a_stopped_rollout_counts_its_unstarted_targets_as_not_run_not_waiting() {
    let app = spawn_app_with(AppOptions {
        speed: 3.0,
        ..AppOptions::default()
    })
    .await;
    let ids: Vec<String> = app.quiet("us-east-1").await.into_iter().take(4).collect();
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {}, "rate_control": {"targets": {"instance_ids": ids},
                    "max_concurrency": "1", "max_errors": "0"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let parent = body["execution_id"].as_str().unwrap().to_owned();
    // Stop it once its first child runs (one at a time, each waits 10 s here).
    let deadline = Instant::now() + WAIT;
    while app.get(&format!("/executions/{parent}")).await.1["rate_control"]["progress"]["running"] != 1 {
        assert!(Instant::now() < deadline, "{parent}: no child ever ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = app.post(&format!("/executions/{parent}/stop"), &json!({})).await;
    assert_eq!(status, 202, "{body}");
    let done = app.wait_done(&parent, WAIT).await;
    assert_eq!(done["summary"]["status"], "Cancelled", "{done}");
    let deadline = Instant::now() + WAIT;
    let progress = loop {
        let p = app.get(&format!("/executions/{parent}")).await.1["rate_control"]["progress"].clone();
        if p["running"] == 0 {
            break p;
        }
        assert!(Instant::now() < deadline, "{p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        progress["waiting"], 0,
        "nothing waits once the run has ended: {progress}"
    );
    assert_eq!(
        progress["not_run"].as_u64().unwrap() + progress["cancelled"].as_u64().unwrap(),
        4,
        "{progress}"
    );
    assert!(progress["not_run"].as_u64().unwrap() >= 1, "{progress}");
}

#[tokio::test]
async fn each_bad_field_is_named_and_starts_nothing() {
    let app = spawn_app().await;
    let good = app.quiet("us-east-1").await.remove(0);
    let since = now_ms();
    let cases = [
        (
            json!({"parameters": {"InstanceId": "i-nope"}}),
            "parameters.InstanceId",
        ),
        (json!({"parameters": {}}), "parameters.InstanceId"),
        (
            json!({"parameters": {"InstanceId": good, "EnforceIMDSv2": "always"}}),
            "parameters.EnforceIMDSv2",
        ),
        (
            json!({"parameters": {"InstanceId": good, "MetadataAccess": "off"}}),
            "parameters.MetadataAccess",
        ),
        (
            json!({"parameters": {"InstanceId": good, "HttpPutResponseHopLimit": 65}}),
            "parameters.HttpPutResponseHopLimit",
        ),
        (
            json!({"parameters": {"InstanceId": good, "HttpPutResponseHopLimit": "x"}}),
            "parameters.HttpPutResponseHopLimit",
        ),
        (
            json!({"parameters": {"InstanceId": good, "AutomationAssumeRole": "admin"}}),
            "parameters.AutomationAssumeRole",
        ),
        (
            json!({"region": "mars-1", "parameters": {"InstanceId": good}}),
            "region",
        ),
        (
            json!({"region": "ap-south-1", "parameters": {"InstanceId": good}}),
            "region",
        ),
        (
            json!({"parameters": {"InstanceId": "i-0000000000000bad0"}}),
            "parameters.InstanceId",
        ),
        (
            json!({"parameters": {}, "rate_control": {"targets": {"instance_ids": []}, "max_concurrency": "1", "max_errors": "0"}}),
            "rate_control.targets.instance_ids",
        ),
        (
            json!({"parameters": {}, "rate_control": {"targets": {"instance_ids": [good]}, "max_concurrency": "0", "max_errors": "0"}}),
            "rate_control.max_concurrency",
        ),
        (
            json!({"parameters": {}, "rate_control": {"targets": {"instance_ids": [good]}, "max_concurrency": "1", "max_errors": "101%"}}),
            "rate_control.max_errors",
        ),
        (
            json!({"parameters": {}, "rate_control": {"targets": {"tag": {"key": "", "value": "x"}}}}),
            "rate_control.targets.tag.key",
        ),
        (
            json!({"parameters": {}, "rate_control": {"targets": {"tag": {"key": "Team", "value": "nobody"}}}}),
            "rate_control.targets.tag",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = app.post("/executions", &body).await;
        assert_eq!(status, 400, "{body} -> {reply}");
        assert_eq!(reply["error"]["code"], "ValidationError", "{reply}");
        assert_eq!(reply["error"]["field"], field, "{body} -> {reply}");
        assert!(!reply["error"]["message"].as_str().unwrap().is_empty());
    }
    let starts = app.sandbox.count_calls("ssm:StartAutomationExecution", since);
    assert_eq!(starts, 0, "no bad request reached SSM");
    let (_, page) = app.get("/executions").await;
    assert_eq!(page["executions"], json!([]));
}

#[tokio::test]
async fn malformed_json_and_unknown_ids_are_client_errors() {
    let app = spawn_app().await;
    let resp = app
        .http
        .post(app.url("/executions"))
        .header("content-type", "application/json")
        .body("{\"parameters\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BadJson");
    let resp = app
        .http
        .post(app.url("/executions"))
        .header("content-type", "application/json")
        .body("[1,2]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let (status, body) = app.get("/executions/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "NotFound");
    let (status, _) = app.get("/executions/not-an-id").await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post(
            "/executions/00000000-0000-0000-0000-000000000000/stop",
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = app.get("/executions?status=Sleeping").await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("BadQuery")));
    let (status, _) = app.get("/executions?cursor=garbage").await;
    assert_eq!(status, 400);
    let (status, _) = app.get("/no-such-route").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_aws_refusal_is_carried_through_with_the_missing_permission() {
    let app = spawn_app().await;
    let id = app.quiet("us-east-1").await.remove(0);
    app.sandbox.set_faults(sandbox::Faults {
        deny: ["ssm:StartAutomationExecution".to_owned()].into(),
        ..Default::default()
    });
    let (status, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "AccessDeniedException");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ssm:StartAutomationExecution"));
    let (_, page) = app.get("/executions").await;
    assert_eq!(page["executions"], json!([]), "a refused start is not a run");

    app.sandbox.set_faults(sandbox::Faults::default());
    let (status, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id, "AutomationAssumeRole": "arn:aws:iam::999999999999:role/Other"}}))
        .await;
    // A role SSM could not pass (another account's) is refused by the console before SSM sees it.
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["field"], "parameters.AutomationAssumeRole",
        "{body}"
    );
}

#[tokio::test]
async fn history_pages_newest_first_and_filters_by_status() {
    let app = spawn_app().await;
    let ids = app.quiet("us-east-1").await;
    let mut started = Vec::new();
    for id in ids.iter().take(5) {
        let (status, body) = app
            .post("/executions", &json!({"parameters": {"InstanceId": id}}))
            .await;
        assert_eq!(status, 201);
        started.push(body["execution_id"].as_str().unwrap().to_owned());
    }
    for e in &started {
        app.wait_done(e, WAIT).await;
    }
    let (_, first) = app.get("/executions?limit=2").await;
    let (_, second) = app
        .get(&format!(
            "/executions?limit=2&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ))
        .await;
    let (_, third) = app
        .get(&format!(
            "/executions?limit=2&cursor={}",
            second["next_cursor"].as_str().unwrap()
        ))
        .await;
    let listed: Vec<String> = [first, second, third.clone()]
        .iter()
        .flat_map(|p| {
            p["executions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["execution_id"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut newest_first = started.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    assert!(third["next_cursor"].is_null());
    let (_, done) = app.get("/executions?status=Success").await;
    assert_eq!(done["executions"].as_array().unwrap().len(), 5);
    let (_, none) = app.get("/executions?status=Failed").await;
    assert_eq!(none["executions"], json!([]));
    // A time window: everything started before now, nothing after.
    let later = "2099-01-01T00:00:00Z";
    let (_, before) = app.get(&format!("/executions?until={later}")).await;
    assert_eq!(before["executions"].as_array().unwrap().len(), 5);
    let (_, after) = app.get(&format!("/executions?since={later}")).await;
    assert_eq!(after["executions"], json!([]));
    let first_start = newest_first.last().unwrap();
    let (_, d) = app.get(&format!("/executions/{first_start}")).await;
    let (_, from_first) = app
        .get(&format!(
            "/executions?since={}",
            d["summary"]["start_time"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        from_first["executions"].as_array().unwrap().len(),
        5,
        "since is inclusive"
    );
    let (status, _) = app.get("/executions?since=yesterday").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn live_events_arrive_over_server_sent_events() {
    let app = spawn_app().await;
    let id = app.quiet("us-east-1").await.remove(0);
    let mut resp = app.http.get(app.url("/events")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (_, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    let exec = body["execution_id"].as_str().unwrap().to_owned();
    let seen = e2e::read_events_until(&mut resp, |seen| seen.contains("\"status\":\"Success\""), WAIT).await;
    assert!(seen.contains(&exec));
    assert!(seen.contains("event: execution"));
    assert!(seen.contains("id: "));
}

#[tokio::test]
async fn the_server_sends_security_headers() {
    let app = spawn_app().await;
    let resp = app.http.get(format!("{}/", app.base)).send().await.unwrap();
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn a_rollout_lists_its_failed_children_first_then_by_start_time() {
    let app = spawn_app().await;
    let ids: Vec<String> = app.quiet("us-east-1").await.into_iter().take(4).collect();
    app.sandbox.set_faults(sandbox::Faults {
        broken_instances: [ids[2].clone()].into(),
        ..Default::default()
    });
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"EnforceIMDSv2": "required"},
                    "rate_control": {"targets": {"instance_ids": ids}, "max_concurrency": "1", "max_errors": "100%"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let parent = body["execution_id"].as_str().unwrap().to_owned();
    app.wait_done(&parent, WAIT).await;
    let deadline = Instant::now() + WAIT;
    let detail = loop {
        let (_, d) = app.get(&format!("/executions/{parent}")).await;
        let p = &d["rate_control"]["progress"];
        if p["succeeded"] == 3 && p["failed"] == 1 {
            break d;
        }
        assert!(Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let children = detail["children"].as_array().unwrap();
    assert_eq!(
        children[0]["instance_id"],
        ids[2].as_str(),
        "the failure first: {detail}"
    );
    assert_eq!(children[0]["status"], "Failed");
    let started: Vec<&str> = children[1..]
        .iter()
        .map(|c| c["start_time"].as_str().unwrap())
        .collect();
    let mut sorted = started.clone();
    sorted.sort_unstable();
    assert_eq!(started, sorted, "then in the order they started");
}

#[tokio::test]
async fn a_rollout_by_instance_id_reaches_the_least_risky_instances_first() {
    let app = spawn_app_with(AppOptions {
        fleet: 200,
        ..AppOptions::default()
    })
    .await;
    let pick = |calls: bool, env: &'static str| {
        let app = &app;
        async move {
            app.pick("us-east-1", move |i| {
                i["metadata"]["http_endpoint"] == "enabled"
                    && i["tags"]["Env"] == env
                    && (i["imdsv1_calls"].as_u64().unwrap_or(0) > 0) == calls
            })
            .await
            .remove(0)
        }
    };
    let user = pick(true, "dev").await;
    let prod = pick(false, "prod").await;
    let dev = pick(false, "dev").await;
    let body = json!({"parameters": {"EnforceIMDSv2": "required"},
        "rate_control": {"targets": {"instance_ids": [user, prod, dev]}, "max_concurrency": "1", "max_errors": "0"},
        "override": {"reason": "Order drill: the user instance is fixed already."}});
    let (status, preview) = app.post("/executions/preview", &body).await;
    assert_eq!(status, 200, "{preview}");
    let order: Vec<&str> = preview["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [dev.as_str(), prod.as_str(), user.as_str()], "{preview}");
    let (status, started) = app.post("/executions", &body).await;
    assert_eq!(status, 201, "{started}");
    let done = app
        .wait_done(started["execution_id"].as_str().unwrap(), WAIT)
        .await;
    assert_eq!(
        done["rate_control"]["targets"],
        json!([dev, prod, user]),
        "sent to SSM in that order: {done}"
    );
}

#[tokio::test]
async fn a_stream_opened_after_the_session_was_read_replays_what_happened_in_between() {
    let app = spawn_app().await;
    let (_, me) = app.get("/auth/me").await;
    let seq = me["events_seq"].as_u64().unwrap();
    let exec = app.finished_run().await;
    // Opened only now, as a page that read its data first would: the run's events still arrive.
    let mut resp = app
        .http
        .get(app.url(&format!("/events?after={seq}")))
        .send()
        .await
        .unwrap();
    e2e::read_events_until(
        &mut resp,
        |seen| seen.contains(&exec) && seen.contains("\"status\":\"Success\""),
        WAIT,
    )
    .await;
    let (_, later) = app.get("/auth/me").await;
    assert!(later["events_seq"].as_u64().unwrap() > seq);
    let (status, bad) = app.get("/events?after=yesterday").await;
    assert_eq!(status, 400, "{bad}");
}
