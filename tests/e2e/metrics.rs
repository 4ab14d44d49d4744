//! `GET /metrics` (issue 16): Prometheus text for the console's AWS calls, budgets, runs, fleet,
//! sign-ins and HTTP requests, open only to the configured addresses or token.

use e2e::{spawn_app, spawn_app_with, AppOptions};
use serde_json::json;

const TOKEN: &str = "metrics-scraper-token-0123";

async fn scrape(app: &e2e::TestApp, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{}/metrics", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The value of the sample whose line starts with `prefix` (metric name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_are_off_unless_an_address_or_token_is_configured() {
    let app = spawn_app().await;
    let (status, body) = scrape(&app, Some(TOKEN)).await;
    assert_eq!(status, 404);
    assert!(body.contains("--metrics-token"), "{body}");
}

#[tokio::test]
async fn metrics_count_aws_calls_runs_the_fleet_sign_ins_and_refusals() {
    let app = spawn_app_with(AppOptions {
        extra_args: vec![
            "--metrics-token".into(),
            TOKEN.into(),
            "--fleet-refresh-secs".into(),
            "3600".into(),
        ],
        ..AppOptions::default()
    })
    .await;
    assert_eq!(scrape(&app, None).await.0, 403);
    assert_eq!(scrape(&app, Some("a-wrong-token-of-some-length")).await.0, 403);

    app.finished_run().await;
    // A refused request and a failed sign-in.
    let anonymous = reqwest::Client::new();
    let refused = anonymous.get(app.url("/instances")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let failed = anonymous
        .post(app.url("/auth/login"))
        .header("origin", app.base.clone())
        .json(&json!({"username": "admin", "password": "not-the-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);

    // The fleet's gauges come from the cached inventory, never from AWS for a scrape: a scrape that
    // meets an inventory read in progress (one starts after the run) leaves them as they were, which
    // on the first scrape is absent. The next scrape after the read has them.
    let fleet_line =
        r#"imds_console_fleet_instances{account="123456789012",region="us-east-1",posture="compliant"}"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (status, text) = loop {
        let (status, text) = scrape(&app, Some(TOKEN)).await;
        if status != 200 || sample(&text, fleet_line).is_some() || std::time::Instant::now() > deadline {
            break (status, text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200, "{text}");
    let starts = sample(
        &text,
        r#"imds_console_aws_calls_total{service="ssm",operation="StartAutomationExecution",outcome="ok"}"#,
    );
    assert_eq!(starts, Some(1.0), "{text}");
    assert_eq!(
        sample(&text, r#"imds_console_runs{status="Success"}"#),
        Some(1.0),
        "{text}"
    );
    let compliant = sample(&text, fleet_line);
    assert!(compliant.is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"imds_console_http_request_duration_seconds_count{method="POST",route="/executions",status="201"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, r#"imds_console_refused_requests_total{status="401"}"#).is_some_and(|n| n >= 2.0));
    assert_eq!(
        sample(&text, r#"imds_console_sign_ins_total{outcome="failed"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(sample(
        &text,
        r#"imds_console_budget_wait_seconds_count{budget="start",region="us-east-1"}"#
    )
    .is_some_and(|n| n >= 1.0));
    assert!(
        sample(&text, "imds_console_watcher_lag_seconds").is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "imds_console_leader"),
        Some(1.0),
        "one console leads"
    );
    assert!(text.trim_end().ends_with("# EOF"));

    // Nothing else reads EC2 while the throttles are counted: this read takes the places the run
    // changed (which the leader's follower loop would otherwise read again at the same moment, with
    // PostgreSQL), and the inventory stays fresh for an hour, so no background refresh starts.
    let (status, body) = app.get("/instances").await;
    assert_eq!(status, 200, "{body}");
    // Throttles are counted as AWS counts them: every attempt, retries included.
    app.sandbox.set_faults(sandbox::Faults {
        rules: vec![sandbox::FaultRule {
            operation: "ec2:DescribeInstances".into(),
            throttle: 1.0,
            ..Default::default()
        }],
        ..Default::default()
    });
    app.refresh_fleet().await;
    let (status, _) = app.get("/instances").await;
    assert_ne!(status, 200);
    let (_, text) = scrape(&app, Some(TOKEN)).await;
    let throttled = sample(
        &text,
        r#"imds_console_aws_calls_total{service="ec2",operation="DescribeInstances",outcome="throttled"}"#,
    );
    // Each Region is read (one throttled Region does not stop the next), each with the SDK's three
    // attempts.
    let regions = app.get("/identity").await.1["regions"].as_array().unwrap().len();
    assert_eq!(
        throttled,
        Some(3.0 * regions as f64),
        "the SDK's three attempts in each of {regions} Regions: {text}"
    );
}

#[tokio::test]
async fn made_up_paths_and_methods_add_no_metric_labels_however_many_arrive() {
    let app = spawn_app_with(AppOptions {
        extra_args: vec!["--metrics-token".into(), TOKEN.into()],
        ..AppOptions::default()
    })
    .await;
    let anonymous = reqwest::Client::new();
    // One of each first, so every label set the made-up requests could reach exists before counting.
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("imds_console_http_request_duration_seconds_count"))
            .count()
    };
    let made_up = |n: usize| {
        let path = format!("/x{n}-{}/{n}", "y".repeat(2_000));
        let method = reqwest::Method::from_bytes(format!("M{n}").as_bytes()).unwrap();
        (path, method)
    };
    for n in 0..2 {
        let (path, method) = made_up(n);
        anonymous.get(app.url(&path)).send().await.unwrap();
        anonymous
            .request(method, app.url("/executions"))
            .send()
            .await
            .unwrap();
    }
    let (_, before) = scrape(&app, Some(TOKEN)).await;
    for n in 2..300 {
        let (path, method) = made_up(n);
        let resp = anonymous.get(app.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        anonymous
            .request(method, app.url("/executions"))
            .send()
            .await
            .unwrap();
    }
    let (_, after) = scrape(&app, Some(TOKEN)).await;
    assert_eq!(series(&after), series(&before), "{after}");
    assert!(
        !after.contains("yyyy") && !after.contains("M299"),
        "no request text in labels"
    );
    assert!(
        after.contains(r#"method="GET",route="other",status="401""#),
        "unmatched paths share one label: {after}"
    );
    assert!(after.len() < 64 * 1024, "{} bytes", after.len());
}
