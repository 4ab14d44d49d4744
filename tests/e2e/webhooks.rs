//! Webhooks (issue 15): a local HTTP server stands in for the receiving system; it fails the first
//! delivery, which is retried and recorded, and then hears of runs, approvals and tests, in the JSON
//! and Slack formats. Only admins manage webhooks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use e2e::{spawn_app_with, AppOptions};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A stand-in for the receiving system (also used by the plans suite).
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    /// (path, body) of every request answered 200.
    got: Arc<Mutex<Vec<(String, Value)>>>,
    /// Requests answered 500 so far (the first one of each path is).
    failed: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(r): State<Receiver>, uri: axum::http::Uri, body: String) -> StatusCode {
    let path = uri.path().to_owned();
    {
        let mut failed = r.failed.lock().unwrap();
        if !failed.contains(&path) {
            failed.push(path);
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    r.got
        .lock()
        .unwrap()
        .push((path, serde_json::from_str(&body).unwrap_or(Value::Null)));
    StatusCode::OK
}

pub(crate) async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/{*path}", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

impl Receiver {
    /// Waits until a body on `path` satisfies `ok`, advancing the console's clock so retries are due.
    pub(crate) async fn wait_for(
        &self,
        app: &e2e::TestApp,
        path: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((_, v)) = self.got.lock().unwrap().iter().find(|(p, v)| p == path && ok(v)) {
                return v.clone();
            }
            assert!(
                Instant::now() < deadline,
                "nothing matching on {path}: {:?}",
                self.got.lock().unwrap()
            );
            app.state.store.clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn webhooks_hear_of_runs_and_approvals_in_json_and_slack_after_a_transient_failure() {
    let app = spawn_app_with(AppOptions::default().with_local_webhooks()).await;
    let (rx, url) = receiver().await;
    let (status, created) = app
        .post(
            "/webhooks",
            &json!({"url": format!("{url}/json"), "format": "json"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let json_hook = created["webhook_id"].as_i64().unwrap();
    let (status, _) = app
        .post(
            "/webhooks",
            &json!({"url": format!("{url}/slack/T000/B000/secret"), "format": "slack"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, bad) = app
        .post("/webhooks", &json!({"url": "ftp://x", "format": "json"}))
        .await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["field"], "url");

    // A run: started and ended reach both, the first delivery of each after a 500.
    let id = app.quiet("us-east-1").await.remove(0);
    let (_, started) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    let exec = started["execution_id"].as_str().unwrap().to_owned();
    let begun = rx
        .wait_for(&app, "/json", |v| {
            v["event"] == "run.started" && v["data"]["execution_id"] == exec.as_str()
        })
        .await;
    assert_eq!(begun["data"]["requester"], "admin");
    rx.wait_for(&app, "/json", |v| {
        v["event"] == "run.ended" && v["data"]["status"] == "Success"
    })
    .await;
    let slack = rx
        .wait_for(&app, "/slack/T000/B000/secret", |v| {
            v["text"]
                .as_str()
                .is_some_and(|t| t.contains(&exec) && t.contains("ended Success"))
        })
        .await;
    assert!(
        slack["text"].as_str().unwrap().starts_with("imds-console: "),
        "{slack}"
    );

    // A start that needs approval is announced.
    app.http
        .put(app.url("/approval-policy"))
        .json(&json!({"tags": ["Env=prod"]}))
        .send()
        .await
        .unwrap();
    let prod = app.quiet_tagged("prod").await;
    let (status, held) = app
        .post("/executions", &json!({"parameters": {"InstanceId": prod}}))
        .await;
    assert_eq!(status, 202, "{held}");
    let asked = rx
        .wait_for(&app, "/json", |v| v["event"] == "approval.needed")
        .await;
    assert_eq!(asked["data"]["approval_id"], held["record_id"]);

    // The test button; and the record admins see: the failed first attempt, then delivered.
    let (status, _) = app.post(&format!("/webhooks/{json_hook}/test"), &json!({})).await;
    assert_eq!(status, 202);
    rx.wait_for(&app, "/json", |v| v["event"] == "test").await;
    let slack_tests = rx
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, v)| {
            p.starts_with("/slack") && v["text"].as_str().unwrap_or("").contains("a test message")
        })
        .count();
    assert_eq!(slack_tests, 0, "a test goes to the webhook it was sent from only");
    let (_, hooks) = app.get("/webhooks").await;
    let hook = hooks["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["webhook_id"] == json_hook)
        .unwrap()
        .clone();
    let deliveries = hook["deliveries"].as_array().unwrap();
    let first = deliveries.last().unwrap();
    assert_eq!(first["event"], "run.started", "{hook:#}");
    assert_eq!(first["attempts"], 2, "{hook:#}");
    assert_eq!(first["status"], "delivered");
    assert_eq!(first["last_error"], "HTTP 500 Internal Server Error");
    let (_, all) = app.get("/webhooks").await;
    let slack_hook = all["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["format"] == "slack")
        .unwrap()
        .clone();
    assert!(
        !slack_hook["url"].as_str().unwrap().contains("secret"),
        "{slack_hook}"
    );

    // Operators do not manage webhooks; a deleted one hears nothing more.
    let password = app.add_user("otto", "operator").await;
    let cookie = app.session("otto", &password).await;
    let refused = reqwest::Client::new()
        .post(app.url("/webhooks"))
        .header("cookie", cookie)
        .header("origin", &app.base)
        .json(&json!({"url": format!("{url}/x"), "format": "json"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let (status, _) = app
        .post(&format!("/webhooks/{json_hook}/delete"), &json!({}))
        .await;
    assert_eq!(status, 202);
    let (_, after) = app.get("/webhooks").await;
    assert_eq!(after["webhooks"].as_array().unwrap().len(), 1);
}

/// A receiver that answers every POST with a redirect to `to`.
async fn redirector(to: String) -> String {
    let app = axum::Router::new().route(
        "/{*path}",
        post(move || {
            let to = to.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn webhooks_reach_no_private_address_by_any_spelling_and_follow_no_redirect() {
    let app = spawn_app_with(AppOptions::default().with_local_webhooks()).await;
    // 127.0.0.1 is allowed here (and so localhost); everything else private stays refused, however it
    // is written.
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://127.0.0.2:9/",
        "http://[::1]:9/",
        "http://0.0.0.0:9/",
        "http://10.1.2.3/",
        "https://hooks.example.com:x@evil.example/",
        "https://user:secret@hooks.example.com/hook",
    ] {
        let (status, refused) = app
            .post("/webhooks", &json!({"url": url, "format": "json"}))
            .await;
        assert_eq!(status, 400, "{url}: {refused}");
        let refused: shared::api::ErrorBody = serde_json::from_value(refused).unwrap();
        assert_eq!(refused.error.field.as_deref(), Some("url"), "{url}");
    }
    let (_, hooks) = app.get("/webhooks").await;
    assert_eq!(
        hooks["webhooks"].as_array().unwrap().len(),
        0,
        "nothing was added"
    );

    // A hook that redirects (to the receiver, which the console may reach) is not followed.
    let (rx, target) = receiver().await;
    let bouncer = redirector(format!("{target}/bounced")).await;
    let (status, created) = app
        .post(
            "/webhooks",
            &json!({"url": format!("{bouncer}/hook"), "format": "json"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["webhook_id"].as_i64().unwrap();
    let (status, _) = app.post(&format!("/webhooks/{id}/test"), &json!({})).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivery = loop {
        let (_, hooks) = app.get("/webhooks").await;
        let list: shared::webhooks::WebhookList = serde_json::from_value(hooks).unwrap();
        let d = list.webhooks[0].deliveries.first().cloned();
        if let Some(d) = d.filter(|d| d.attempts > 0) {
            break d;
        }
        assert!(Instant::now() < deadline, "no attempt");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        delivery.status, "pending",
        "a redirect is a failed attempt: {delivery:?}"
    );
    assert!(
        delivery.last_error.as_deref().unwrap_or("").contains("307"),
        "{delivery:?}"
    );
    assert!(
        rx.got.lock().unwrap().is_empty() && rx.failed.lock().unwrap().is_empty(),
        "the redirect was not followed"
    );
}
