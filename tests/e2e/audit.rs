//! The audit trail and the live watcher: runs started outside the console, the JSON/CSV export, records
//! across a restart, throttled SSM, and many viewers within SSM's read budget.

use e2e::{now_ms, sdk_config, spawn_app, spawn_app_in, spawn_app_with, AppOptions};
use serde_json::{json, Value};
use shared::api::AuditRecord;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn runs_started_outside_the_console_appear_in_history_marked_as_such() {
    let app = spawn_app_with(AppOptions {
        discover_secs: 1,
        ..AppOptions::default()
    })
    .await;
    let id = app.quiet("us-east-1").await.remove(0);
    let conf = sdk_config(app.state.sandbox_url.as_deref().unwrap(), "us-east-1", 3).await;
    let out = aws_sdk_ssm::Client::new(&conf)
        .start_automation_execution()
        .document_name(shared::RUNBOOK)
        .parameters("InstanceId", vec![id.clone()])
        .parameters("EnforceIMDSv2", vec!["required".to_owned()])
        .send()
        .await
        .expect("started outside the console");
    let exec = out.automation_execution_id().unwrap().to_owned();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, page) = app.get(&format!("/executions?instance_id={id}")).await;
        if let Some(row) = page["executions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["execution_id"] == exec.as_str())
        {
            assert_eq!(row["started_here"], false);
            assert!(row["requester"].is_null());
            if row["status"] == "Success" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the outside run never showed up: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let detail = app.wait_done(&exec, WAIT).await;
    assert_eq!(detail["summary"]["started_here"], false);
    assert_eq!(detail["steps"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn the_csv_export_round_trips_every_field_of_the_json_export() {
    let app = spawn_app().await;
    let ids = app.quiet("us-east-1").await;
    let user = app
        .pick("us-east-1", |i| i["imdsv1_calls"].as_u64().unwrap_or(0) > 0)
        .await
        .remove(0);
    let (_, a) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": ids[0], "HttpPutResponseHopLimit": 2}}),
        )
        .await;
    let (_, b) = app
        .post("/executions", &json!({"parameters": {"InstanceId": user}, "override": {"reason": "Reviewed, \"quoted\", with a comma"}}))
        .await;
    for e in [&a, &b] {
        app.wait_done(e["execution_id"].as_str().unwrap(), WAIT).await;
    }
    let (status, rb) = app
        .post(
            &format!("/executions/{}/rollback", a["execution_id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(status, 201, "{rb}");
    app.wait_done(rb["execution_ids"][0].as_str().unwrap(), WAIT)
        .await;
    app.sandbox.set_faults(sandbox::Faults {
        deny: ["ssm:StartAutomationExecution".to_owned()].into(),
        ..Default::default()
    });
    let (status, _) = app
        .post("/executions", &json!({"parameters": {"InstanceId": ids[1]}}))
        .await;
    assert_eq!(status, 403);
    app.sandbox.set_faults(sandbox::Faults::default());
    // Let the watcher record the rollback run's final state.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, json_export) = app.get("/audit?format=json").await;
    assert_eq!(status, 200);
    let from_json: Vec<AuditRecord> = serde_json::from_value(json_export).unwrap();
    assert_eq!(from_json.len(), 4, "two runs, a rollback and a refused start");
    assert_eq!(from_json[0].status, "Refused");
    assert!(from_json[0].execution_id.is_none());
    assert_eq!(from_json[1].rollback_of.as_deref(), a["execution_id"].as_str());
    assert_eq!(
        from_json[2].override_reason.as_deref(),
        Some("Reviewed, \"quoted\", with a comma")
    );
    assert_eq!(
        from_json[3].rolled_back_by.as_deref(),
        rb["execution_ids"][0].as_str()
    );
    assert!(from_json[3]
        .outputs
        .as_deref()
        .is_some_and(|o| o.contains("describeMetadataOptions.HttpPutResponseHopLimit")));
    assert_eq!(from_json[3].document_version.as_deref(), Some("7"));

    let resp = app.http.get(app.url("/audit?format=csv")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let text = resp.text().await.unwrap();
    let from_csv: Vec<AuditRecord> = csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("valid CSV");
    assert_eq!(from_csv, from_json, "every field survives CSV");

    let (_, filtered) = app.get(&format!("/audit?instance_id={user}")).await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    let (status, _) = app.get("/audit?format=xml").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn audit_records_survive_a_restart() {
    let first = spawn_app().await;
    let id = first.quiet("us-east-1").await.remove(0);
    let (_, body) = first
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    let exec = body["execution_id"].as_str().unwrap().to_owned();
    first.wait_done(&exec, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, before) = first.get("/audit").await;
    let dir = first.data_dir;
    let second = spawn_app_in(AppOptions::default(), dir).await;
    let (_, after) = second.get("/audit").await;
    assert_eq!(after, before);
    let (_, d) = second.get(&format!("/executions/{exec}")).await;
    assert_eq!(d["summary"]["status"], "Success");
}

#[tokio::test]
async fn fifty_starts_against_throttling_ssm_give_exactly_fifty_runs_and_records() {
    let app = spawn_app().await;
    let ids = app.quiet("us-east-1").await;
    app.sandbox.set_faults(sandbox::Faults {
        rules: vec![sandbox::FaultRule {
            operation: "ssm:*".into(),
            throttle: 0.3,
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut tasks = Vec::new();
    for n in 0..50 {
        let body = json!({"parameters": {"InstanceId": ids[n % ids.len()], "EnforceIMDSv2": "optional"}});
        let http = app.http.clone();
        let url = app.url("/executions");
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut started = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201, "{body}");
        started.push(body["execution_id"].as_str().unwrap().to_owned());
    }
    started.sort();
    started.dedup();
    assert_eq!(started.len(), 50);
    let mut in_ssm = app.sandbox.execution_ids();
    in_ssm.sort();
    assert_eq!(in_ssm, started, "exactly the fifty executions, none twice");
    let (_, audit) = app.get("/audit").await;
    let records = audit.as_array().unwrap();
    assert_eq!(records.len(), 50);
    assert!(records.iter().all(|r| r["execution_id"].is_string()));
}

#[tokio::test]
async fn a_hundred_viewers_of_twenty_runs_stay_within_the_ssm_read_budget() {
    // Slow runs (a 30-second sleep takes 6 s) so they are all in flight while people watch.
    let app = spawn_app_with(AppOptions {
        speed: 5.0,
        read_rate: 3.0,
        poll_ms: 200,
        ..AppOptions::default()
    })
    .await;
    let ids = app.quiet("us-east-1").await;
    let mut runs = Vec::new();
    for n in 0..20 {
        let (status, body) = app
            .post(
                "/executions",
                &json!({"parameters": {"InstanceId": ids[n % ids.len()], "EnforceIMDSv2": "optional"}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        runs.push(body["execution_id"].as_str().unwrap().to_owned());
    }
    let since = now_ms();
    let mut viewers = Vec::new();
    for v in 0..100 {
        let http = app.http.clone();
        let events = app.url("/events");
        let detail = app.url(&format!("/executions/{}", runs[v % runs.len()]));
        viewers.push(tokio::spawn(async move {
            let mut stream = http.get(events).send().await.unwrap();
            let end = Instant::now() + Duration::from_secs(4);
            let mut reads = 0;
            while Instant::now() < end {
                assert_eq!(http.get(&detail).send().await.unwrap().status(), 200);
                reads += 1;
                let _ = tokio::time::timeout(Duration::from_millis(200), stream.chunk()).await;
            }
            reads
        }));
    }
    let mut reads = 0;
    for v in viewers {
        reads += v.await.unwrap();
    }
    assert!(reads > 500, "the viewers really read: {reads}");
    let peak = app.sandbox.peak_per_second("ssm:*", since);
    assert!(
        (1..=3).contains(&peak),
        "{peak} SSM reads in one second with a budget of 3"
    );
    let total = app.sandbox.count_calls("ssm:*", since);
    assert!(
        total <= 3 * 5,
        "{total} SSM calls in about 4 s for {reads} viewer reads"
    );
}

#[tokio::test]
async fn an_event_stream_resumes_after_the_last_event_id_it_saw() {
    let app = spawn_app().await;
    let id = app.quiet("us-east-1").await.remove(0);
    let (_, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    let exec = body["execution_id"].as_str().unwrap().to_owned();
    app.wait_done(&exec, WAIT).await;
    // A client that saw nothing yet (Last-Event-ID 0) gets what happened, in order, then live events.
    let mut resp = app
        .http
        .get(app.url("/events"))
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    let seen = e2e::read_events_until(
        &mut resp,
        |seen| seen.contains("\"status\":\"Success\""),
        Duration::from_secs(10),
    )
    .await;
    assert!(seen.contains("id: 1\n"), "{seen}");
    assert!(seen.find("InProgress").unwrap() < seen.find("Success").unwrap());
}
