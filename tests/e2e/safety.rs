//! Enforcing safely: the IMDSv1 readiness check (409 unless overridden with a reason), the preview
//! against what the run then did, rollback to the exact prior options, and batched usage reads.

use e2e::{now_ms, spawn_app, spawn_app_with, AppOptions, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn starts_since(app: &TestApp, since: u64) -> usize {
    app.sandbox.count_calls("ssm:StartAutomationExecution", since)
}

fn uses_v1(i: &Value) -> bool {
    i["metadata"]["http_tokens"] == "optional"
        && i["metadata"]["http_endpoint"] == "enabled"
        && i["imdsv1_calls"].as_u64().unwrap_or(0) > 0
}

fn quiet(i: &Value) -> bool {
    i["metadata"]["http_tokens"] == "optional"
        && i["metadata"]["http_endpoint"] == "enabled"
        && i["imdsv1_calls"] == 0
}

fn options(i: &Value) -> (Value, Value, Value) {
    let m = &i["metadata"];
    (
        m["http_tokens"].clone(),
        m["http_endpoint"].clone(),
        m["http_put_response_hop_limit"].clone(),
    )
}

async fn fleet_by_id(app: &TestApp) -> std::collections::HashMap<String, Value> {
    app.refresh_fleet().await;
    app.instances()
        .await
        .into_iter()
        .map(|i| (i["instance_id"].as_str().unwrap().to_owned(), i))
        .collect()
}

#[tokio::test]
async fn enforcing_where_imdsv1_is_used_is_refused_unless_overridden_with_a_reason() {
    let app = spawn_app().await;
    let id = app.pick("us-east-1", uses_v1).await.remove(0);
    let since = now_ms();
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": id, "EnforceIMDSv2": "required"}}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "Imdsv1InUse");
    assert_eq!(body["error"]["instances"][0]["instance_id"], json!(id));
    assert!(body["error"]["instances"][0]["imdsv1_calls"].as_u64().unwrap() > 0);
    assert!(body["error"]["message"].as_str().unwrap().contains(&id));
    assert_eq!(starts_since(&app, since), 0, "nothing was started");

    // Setting IMDSv2 optional does not break anyone, so it is not gated.
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": id, "EnforceIMDSv2": "optional"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Let it finish: two runs on one instance at once race their modify steps, and whichever applies
    // last decides what the other's assert step sees.
    app.wait_done(body["execution_id"].as_str().unwrap(), WAIT).await;

    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": id}, "override": {"reason": "later"}}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (400, json!("override.reason")),
        "{body}"
    );

    let reason = "Legacy agent replaced on this host; the remaining calls are our canary.";
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": id}, "override": {"reason": reason}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let detail = app.wait_done(body["execution_id"].as_str().unwrap(), WAIT).await;
    assert_eq!(detail["summary"]["status"], "Success", "{detail}");
    assert_eq!(detail["override_reason"], reason);
}

#[tokio::test]
async fn a_rate_controlled_run_by_tag_is_gated_the_same_way() {
    let app = spawn_app().await;
    let user = app
        .instances()
        .await
        .into_iter()
        .find(|i| i["state"] == "running" && uses_v1(i))
        .expect("a v1 user");
    let (team, region) = (
        user["tags"]["Team"].as_str().unwrap(),
        user["region"].as_str().unwrap(),
    );
    let since = now_ms();
    let (status, body) = app
        .post(
            "/executions",
            &json!({"region": region, "parameters": {"EnforceIMDSv2": "required"},
                    "rate_control": {"targets": {"tag": {"key": "Team", "value": team}}, "max_concurrency": "2", "max_errors": "0"}}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let named: Vec<&str> = body["error"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect();
    assert!(
        named.contains(&user["instance_id"].as_str().unwrap()),
        "{named:?}"
    );
    assert_eq!(starts_since(&app, since), 0);
}

#[tokio::test]
async fn the_preview_matches_field_by_field_what_the_run_then_did() {
    let app = spawn_app().await;
    let ids: Vec<String> = app.pick("us-east-1", quiet).await.into_iter().take(3).collect();
    assert_eq!(ids.len(), 3);
    let req = json!({"parameters": {"EnforceIMDSv2": "required", "HttpPutResponseHopLimit": 2},
                     "rate_control": {"targets": {"instance_ids": ids}, "max_concurrency": "3", "max_errors": "0"}});
    let (status, preview) = app.post("/executions/preview", &req).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["blocked"], false);
    assert_eq!(preview["window_days"], 14);
    let targets = preview["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3);
    for t in targets {
        assert_eq!(t["after"]["http_tokens"], "required");
        assert!(
            t["changes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "http_tokens: optional -> required"),
            "{t}"
        );
        assert_eq!(t["imdsv1_calls"], 0);
    }
    let (status, body) = app.post("/executions", &req).await;
    assert_eq!(status, 201, "{body}");
    app.wait_done(body["execution_id"].as_str().unwrap(), WAIT).await;
    let fleet = fleet_by_id(&app).await;
    for t in targets {
        let actual = &fleet[t["instance_id"].as_str().unwrap()]["metadata"];
        for field in ["http_tokens", "http_endpoint", "http_put_response_hop_limit"] {
            assert_eq!(
                actual[field], t["after"][field],
                "{field} of {}",
                t["instance_id"]
            );
        }
    }
    // Previewing the same run again: nothing changes any more, and it says so.
    let (_, again) = app.post("/executions/preview", &req).await;
    for t in again["targets"].as_array().unwrap() {
        assert_eq!(t["changes"], json!([]));
        assert!(t["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("nothing changes")));
    }
}

#[tokio::test]
async fn the_preview_warns_about_stopped_instances_and_names_imdsv1_users() {
    let app = spawn_app().await;
    let all = app.instances().await;
    let stopped = all
        .iter()
        .find(|i| i["state"] == "stopped" && i["region"] == "us-east-1")
        .expect("a stopped instance");
    let (_, p) = app
        .post(
            "/executions/preview",
            &json!({"parameters": {"InstanceId": stopped["instance_id"]}}),
        )
        .await;
    let warnings = p["targets"][0]["warnings"].to_string();
    assert!(warnings.contains("applies when it next starts"), "{warnings}");
    let user = app.pick("us-east-1", uses_v1).await.remove(0);
    let (_, p) = app
        .post(
            "/executions/preview",
            &json!({"parameters": {"InstanceId": user}}),
        )
        .await;
    assert_eq!(p["blocked"], true);
    assert!(
        p["targets"][0]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("IMDSv1 calls in the last 14 days"),
        "{p}"
    );
}

#[tokio::test]
async fn rollback_returns_every_changed_instance_to_its_exact_prior_options() {
    let app = spawn_app().await;
    let ids: Vec<String> = app.pick("eu-west-1", quiet).await.into_iter().take(4).collect();
    assert_eq!(ids.len(), 4);
    let before = fleet_by_id(&app).await;
    let (status, body) = app
        .post(
            "/executions",
            &json!({"region": "eu-west-1", "parameters": {"EnforceIMDSv2": "required", "HttpPutResponseHopLimit": 5},
                    "rate_control": {"targets": {"instance_ids": ids}, "max_concurrency": "4", "max_errors": "0"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let original = body["execution_id"].as_str().unwrap().to_owned();
    app.wait_done(&original, WAIT).await;
    let changed = fleet_by_id(&app).await;
    assert!(ids
        .iter()
        .all(|id| changed[id]["metadata"]["http_put_response_hop_limit"] == 5));

    // The preview says exactly what the rollback will restore, instance by instance, and starts nothing.
    let since = e2e::now_ms();
    let (status, preview) = app
        .post(&format!("/executions/{original}/rollback/preview"), &json!({}))
        .await;
    assert_eq!(status, 200, "{preview}");
    let targets = preview["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 4, "{preview}");
    for t in targets {
        let id = t["instance_id"].as_str().unwrap();
        assert_eq!(t["current"]["http_put_response_hop_limit"], 5);
        assert_eq!(
            t["after"]["http_put_response_hop_limit"], before[id]["metadata"]["http_put_response_hop_limit"],
            "{t}"
        );
        assert_eq!(t["after"]["http_tokens"], before[id]["metadata"]["http_tokens"]);
        assert!(!t["changes"].as_array().unwrap().is_empty());
    }
    assert_eq!(app.sandbox.count_calls("ssm:StartAutomationExecution", since), 0);

    let (status, rb) = app
        .post(&format!("/executions/{original}/rollback"), &json!({}))
        .await;
    assert_eq!(status, 201, "{rb}");
    let mut restored: Vec<String> = rb["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect();
    restored.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(restored, expected);
    for e in rb["execution_ids"].as_array().unwrap() {
        let d = app.wait_done(e.as_str().unwrap(), WAIT).await;
        assert_eq!(d["summary"]["status"], "Success", "{d}");
        assert_eq!(d["rollback_of"], json!(original), "linked back");
    }
    let after = fleet_by_id(&app).await;
    for id in &ids {
        assert_eq!(
            options(&after[id]),
            options(&before[id]),
            "{id} is back to its prior options"
        );
    }
    let (_, d) = app.get(&format!("/executions/{original}")).await;
    assert_eq!(d["rolled_back_by"], rb["execution_ids"], "linked forward");
    assert_eq!(d["prior_options"].as_object().unwrap().len(), 4);

    // Rolling back twice finds nothing left to restore.
    let (status, body) = app
        .post(&format!("/executions/{original}/rollback"), &json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("NothingToRollBack"))
    );
}

#[tokio::test]
async fn a_full_usage_refresh_of_ten_thousand_instances_takes_at_most_twenty_calls() {
    let app = spawn_app_with(AppOptions {
        fleet: 10_000,
        ..AppOptions::default()
    })
    .await;
    let since = now_ms();
    let all = app.instances().await;
    assert_eq!(all.len(), 10_000);
    assert!(
        all.iter()
            .all(|i| i["imdsv1_calls"].is_u64() || i["imdsv1_rejected"].is_u64()),
        "every instance has a figure"
    );
    let calls = app.sandbox.count_calls("cloudwatch:GetMetricData", since);
    assert!(
        (1..=20).contains(&calls),
        "{calls} GetMetricData calls for 10,000 instances"
    );
    // A second read within the cache's life asks CloudWatch nothing.
    let since = now_ms();
    app.instances().await;
    assert_eq!(app.sandbox.count_calls("cloudwatch:GetMetricData", since), 0);
}
