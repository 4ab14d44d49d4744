//! EC2's request budget and pages that never wait for AWS (issue 28, items 14 and 15): runs that end
//! in one place are read again in a few batched DescribeInstances calls, a page is answered from the
//! last reading while a read is slow or throttled, and the sources page likewise; and CloudWatch usage
//! (item 16) is read for the instances a page shows, not the whole fleet.

use e2e::{spawn_app_with, AppOptions, TestApp};
use serde_json::json;
use shared::api::InstanceList;
use shared::sources::SourcesView;
use std::time::{Duration, Instant};

const TOKEN: &str = "metrics-scraper-token-0123";

fn options(refresh_secs: u64) -> AppOptions {
    AppOptions {
        speed: 60.0,
        extra_args: vec![
            "--metrics-token".into(),
            TOKEN.into(),
            "--fleet-refresh-secs".into(),
            refresh_secs.to_string(),
        ],
        ..AppOptions::default()
    }
}

/// The console's own count of AWS call attempts to `operation` with `outcome` (`/metrics`).
async fn aws_calls(app: &TestApp, service: &str, operation: &str, outcome: &str) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!(
        r#"imds_console_aws_calls_total{{service="{service}",operation="{operation}",outcome="{outcome}"}}"#
    );
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

async fn page(app: &TestApp) -> InstanceList {
    let (status, body) = app.get("/instances?limit=500").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

fn tokens_of(list: &InstanceList, id: &str) -> String {
    list.instances
        .iter()
        .find(|i| i.instance_id == id)
        .map(|i| i.metadata.http_tokens.clone())
        .unwrap_or_default()
}

/// Starts a run enforcing IMDSv2 on `id`; returns its execution ID.
async fn enforce(app: &TestApp, id: &str) -> String {
    let (status, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    assert_eq!(status, 201, "{body}");
    body["execution_id"].as_str().unwrap().to_owned()
}

/// Pages until the fleet shows `id` with `tokens` and no refresh is pending, or `within` passes.
async fn until_shown(app: &TestApp, id: &str, tokens: &str, within: Duration) -> InstanceList {
    let deadline = Instant::now() + within;
    loop {
        let list = page(app).await;
        if tokens_of(&list, id) == tokens && !list.refreshing {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "{id} not shown with HttpTokens {tokens} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn runs_ending_in_one_place_are_read_again_in_a_few_batched_describe_instances_calls() {
    let app = spawn_app_with(AppOptions {
        fleet: 200,
        ..options(3600)
    })
    .await;
    let quiet: Vec<String> = app.quiet("us-east-1").await.into_iter().take(30).collect();
    assert!(quiet.len() >= 20, "quiet instances to enforce: {quiet:?}");
    let before = aws_calls(&app, "ec2", "DescribeInstances", "ok").await;
    // Viewers keep the Fleet page open while the runs end: each page used to read the places
    // changed since the last one again.
    let viewer = {
        let app_base = app.base.clone();
        let http = app.http.clone();
        tokio::spawn(async move {
            loop {
                let _ = http
                    .get(format!("{app_base}/api/v1/instances?limit=50"))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let mut runs = Vec::new();
    for id in &quiet {
        runs.push(enforce(&app, id).await);
    }
    for run in &runs {
        app.wait_done(run, Duration::from_secs(60)).await;
    }
    let burst = started.elapsed();
    for id in &quiet {
        until_shown(&app, id, "required", Duration::from_secs(30)).await;
    }
    viewer.abort();
    let calls = aws_calls(&app, "ec2", "DescribeInstances", "ok").await - before;
    // One target check per start, then the re-reads: the runs that ended within a second in
    // us-east-1 are one call (the changed instances by ID), not one call per run or per page.
    let rereads = calls - quiet.len() as u64;
    let passes = burst.as_secs() + 2;
    assert!(
        rereads <= passes,
        "{} runs ended in one place within {burst:?}: {rereads} DescribeInstances re-reads ({calls} calls with \
         the starts' checks), more than one a second",
        quiet.len()
    );
}

#[tokio::test]
async fn a_fleet_page_is_answered_from_the_last_reading_while_ec2_is_slow() {
    let app = spawn_app_with(options(3600)).await;
    let id = app.quiet("us-east-1").await.remove(0);
    let run = enforce(&app, &id).await;
    // From now on every DescribeInstances takes 30 s: the re-read after the run is in flight.
    app.sandbox.set_faults(sandbox::Faults {
        rules: vec![sandbox::FaultRule {
            operation: "ec2:DescribeInstances".into(),
            latency_ms: 30_000,
            ..Default::default()
        }],
        ..Default::default()
    });
    let since = e2e::now_ms();
    app.wait_done(&run, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.sandbox.count_calls("ec2:DescribeInstances", since) == 0 {
        assert!(
            Instant::now() < deadline,
            "the re-read after the run never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A page now cannot have waited for that read: it shows the instance as it was, and says a
    // newer reading is coming.
    let list = page(&app).await;
    assert_eq!(
        tokens_of(&list, &id),
        "optional",
        "the last reading, before the run"
    );
    assert!(list.refreshing, "the page says a newer reading is being made");
    let (status, body) = app.get("/fleet/summary").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.get("/dashboard").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.sandbox.count_calls("ec2:DescribeInstances", since),
        1,
        "one read in flight, and no page asked for another"
    );
}

#[tokio::test]
async fn a_throttled_re_read_keeps_the_last_reading_and_backs_off_until_ec2_has_room() {
    let app = spawn_app_with(options(3600)).await;
    let id = app.quiet("us-east-1").await.remove(0);
    let run = enforce(&app, &id).await;
    // EC2's bucket for DescribeInstances is empty and does not refill.
    let spent = sandbox::Faults {
        ec2_request_budget: sandbox::Ec2RequestBudget {
            non_mutating: sandbox::TokenBucket {
                capacity: 0.0,
                refill_per_second: 0.0,
            },
            ..Default::default()
        },
        ..Default::default()
    };
    app.sandbox.set_faults(spent);
    let since = e2e::now_ms();
    app.wait_done(&run, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while aws_calls(&app, "ec2", "DescribeInstances", "throttled").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the re-read after the run was never throttled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = page(&app).await;
    assert_eq!(tokens_of(&list, &id), "optional", "the last reading is kept");
    assert!(list.refreshing, "the changed place waits to be read again");
    // Backing off: in three seconds, a first pass and at most one more, each the SDK's attempts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = app.sandbox.count_calls("ec2:DescribeInstances", since);
    assert!(
        (3..=6).contains(&attempts),
        "{attempts} DescribeInstances attempts in 3 s against an empty bucket"
    );
    // EC2 has room again: the change is read.
    app.sandbox.set_faults(sandbox::Faults::default());
    until_shown(&app, &id, "required", Duration::from_secs(60)).await;
}

#[tokio::test]
async fn the_sources_page_is_answered_from_the_last_reading_while_the_next_is_slow() {
    let app = spawn_app_with(options(1)).await;
    let (status, body) = app.get("/sources").await;
    assert_eq!(status, 200, "{body}");
    let first: SourcesView = serde_json::from_value(body).unwrap();
    assert!(!first.places.is_empty() && first.places.iter().all(|p| p.as_of.is_some()));
    // Every later reading of launch templates takes 30 s.
    app.sandbox.set_faults(sandbox::Faults {
        rules: vec![sandbox::FaultRule {
            operation: "ec2:DescribeLaunchTemplates".into(),
            latency_ms: 30_000,
            ..Default::default()
        }],
        ..Default::default()
    });
    // Past the refresh period: the next listing starts a refresh and serves the last reading.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let since = e2e::now_ms();
    for _ in 0..3 {
        let (status, body) = app.get("/sources").await;
        assert_eq!(status, 200, "{body}");
        let again: SourcesView = serde_json::from_value(body).unwrap();
        assert_eq!(again.places, first.places, "the last reading, as it was");
        assert_eq!(again.sources, first.sources);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.sandbox.count_calls("ec2:DescribeLaunchTemplates", since) == 0 {
        assert!(Instant::now() < deadline, "no refresh of the sources started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One refresh at a time, each place read once, side by side: three listings did not add more.
    let places = first.places.len();
    assert!(
        app.sandbox.count_calls("ec2:DescribeLaunchTemplates", since) <= places,
        "one refresh for three listings"
    );
}

#[tokio::test]
async fn usage_is_read_for_the_instances_a_page_shows_not_for_the_whole_fleet() {
    let app = spawn_app_with(AppOptions {
        fleet: 1_000,
        ..options(3600)
    })
    .await;
    // CloudWatch refuses the console while the fleet is first read: no instance has a figure.
    app.sandbox.set_faults(sandbox::Faults {
        deny: ["cloudwatch:GetMetricData".to_owned()].into(),
        ..Default::default()
    });
    let (status, body) = app.get("/instances?limit=20").await;
    assert_eq!(status, 200, "{body}");
    let first: InstanceList = serde_json::from_value(body).unwrap();
    assert!(first.total >= 900, "{} instances", first.total);
    let known = |list: &InstanceList| {
        list.instances
            .iter()
            .filter(|i| i.imdsv1_calls.is_some() || i.imdsv1_rejected.is_some())
            .count()
    };
    assert_eq!(known(&first), 0, "no figures without CloudWatch");
    // The page's own background read of its rows is refused too (a refusal is not retried).
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.sandbox.count_calls("cloudwatch:GetMetricData", 0) < 2 {
        assert!(Instant::now() < deadline, "the shown rows were never asked for");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.sandbox.set_faults(sandbox::Faults::default());
    // A page of 20 rows: those 20 are read in the background, and the next page has their figures.
    let since = e2e::now_ms();
    let (status, body) = app.get("/instances?limit=20").await;
    assert_eq!(status, 200, "{body}");
    let shown: InstanceList = serde_json::from_value(body).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let again = loop {
        let (_, body) = app.get("/instances?limit=20").await;
        let again: InstanceList = serde_json::from_value(body).unwrap();
        if known(&again) == shown.instances.len() {
            break again;
        }
        assert!(
            Instant::now() < deadline,
            "the shown instances never got their figures"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        again.instances.iter().map(|i| &i.instance_id).collect::<Vec<_>>(),
        shown.instances.iter().map(|i| &i.instance_id).collect::<Vec<_>>()
    );
    // One GetMetricData per account and Region of the page, and the rest of the fleet unread.
    let places: std::collections::BTreeSet<(&str, &str)> = shown
        .instances
        .iter()
        .map(|i| (i.account.as_str(), i.region.as_str()))
        .collect();
    assert_eq!(
        app.sandbox.count_calls("cloudwatch:GetMetricData", since),
        places.len(),
        "one call per place shown"
    );
    let whole = page(&app).await;
    assert_eq!(
        known(&whole),
        shown.instances.len(),
        "the instances not shown have no figure yet"
    );
}

#[tokio::test]
async fn a_run_ending_in_a_place_has_that_place_s_sources_read_again_and_no_other() {
    let app = spawn_app_with(options(3600)).await;
    let since = e2e::now_ms();
    let (status, body) = app.get("/sources").await;
    assert_eq!(status, 200, "{body}");
    let first: SourcesView = serde_json::from_value(body).unwrap();
    let per_place = app.sandbox.count_calls("ec2:DescribeLaunchTemplates", since) / first.places.len();
    assert!(per_place >= 1 && first.places.len() >= 2, "{first:?}");
    app.finished_run().await;
    // The next listing serves the last reading and reads us-east-1 again behind it.
    let since = e2e::now_ms();
    let (status, body) = app.get("/sources").await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let refreshed = loop {
        let (_, body) = app.get("/sources").await;
        let view: SourcesView = serde_json::from_value(body).unwrap();
        if view.places != first.places {
            break view;
        }
        assert!(Instant::now() < deadline, "the run's place was never read again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let changed: Vec<&str> = refreshed
        .places
        .iter()
        .zip(&first.places)
        .filter(|(now, before)| now.as_of != before.as_of)
        .map(|(now, _)| now.region.as_str())
        .collect();
    assert_eq!(changed, ["us-east-1"], "only the run's place");
    assert_eq!(
        app.sandbox.count_calls("ec2:DescribeLaunchTemplates", since),
        per_place,
        "one place's reading"
    );
}
