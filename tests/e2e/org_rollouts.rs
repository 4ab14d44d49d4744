//! Rollouts across an organisation at its scale (10,000 instances in 40 accounts): leaving the
//! IMDSv1 users out of a run across accounts in one start, and the run page showing the
//! TargetLocations the console really sent.

use e2e::{spawn_app_with, AppOptions, TestApp};
use serde_json::{json, Value};
use shared::api::{ExecutionDetail, PreviewResponse, PreviewTarget, StartExecutionResponse};
use std::collections::BTreeMap;
use std::time::Duration;

/// The instances enforcing would break (IMDSv1 calls in the window), as the review counts them.
fn breaks(t: &PreviewTarget) -> bool {
    t.imdsv1_calls.unwrap_or(0) > 0 && t.after.is_compliant() && !t.current.is_compliant()
}

async fn options_of(app: &TestApp, ids: &[String]) -> BTreeMap<String, String> {
    let wanted: std::collections::BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    app.instances()
        .await
        .into_iter()
        .filter(|i| wanted.contains(i["instance_id"].as_str().unwrap_or_default()))
        .map(|i: Value| {
            (
                i["instance_id"].as_str().unwrap().to_owned(),
                i["metadata"]["http_tokens"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn skipping_the_imdsv1_users_of_a_rollout_across_forty_accounts_runs_the_rest_in_one_start_as_sent() {
    // 10,000 instances in 40 accounts and 2 Regions: `Team=web` matches about 25 in each of the 80
    // places, some of whose software still calls IMDSv1. The review offers to skip those; across
    // accounts the rest are named per place (a location of one account and Region listing at most
    // 50 IDs: SSM's TargetLocation.Targets), still one StartAutomationExecution.
    let accounts_n = 40;
    let app = spawn_app_with(AppOptions {
        fleet: 10_000,
        accounts: accounts_n,
        ..AppOptions::default()
    })
    .await;
    let accounts = sandbox::account_ids(accounts_n);
    let (_, identity) = app.get("/identity").await;
    let regions: Vec<String> = serde_json::from_value(identity["regions"].clone()).unwrap();
    let settings = json!({"target_location_max_concurrency": "20", "target_location_max_errors": "1"});
    let mut every = json!({"accounts": accounts, "regions": regions});
    every
        .as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    let request = json!({"parameters": {"EnforceIMDSv2": "required"},
        "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}}, "max_concurrency": "25", "max_errors": "3"},
        "target_locations": [every]});
    let (status, preview) = app.post("/executions/preview", &request).await;
    assert_eq!(status, 200, "{preview}");
    let preview: PreviewResponse = serde_json::from_value(preview).unwrap();
    assert!(preview.blocked, "some web instances call IMDSv1");
    let users: Vec<String> = preview
        .targets
        .iter()
        .filter(|t| breaks(t))
        .map(|t| t.instance_id.clone())
        .collect();
    let mut rest: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for t in preview
        .targets
        .iter()
        .filter(|t| !breaks(t) && !t.changes.is_empty())
    {
        rest.entry((t.account.clone(), t.region.clone()))
            .or_default()
            .push(t.instance_id.clone());
    }
    assert!(rest.len() > 50, "most places have some: {}", rest.len());
    assert!(rest.values().all(|ids| ids.len() <= 50));
    let locations: Vec<Value> = rest
        .iter()
        .map(|((account, region), ids)| {
            let mut l = json!({"accounts": [account], "regions": [region], "instance_ids": ids});
            l.as_object_mut()
                .unwrap()
                .extend(settings.as_object().unwrap().clone());
            l
        })
        .collect();
    let mut skip = request.clone();
    skip["target_locations"] = json!(locations);
    // No override: what would break is left out.
    let (status, started) = app.post("/executions", &skip).await;
    assert_eq!(status, 201, "{started}");
    let started: StartExecutionResponse = serde_json::from_value(started).unwrap();
    let run = started.execution_id.expect("sent");
    let done = app.wait_done(&run, Duration::from_secs(600)).await;
    let detail: ExecutionDetail = serde_json::from_value(done).unwrap();
    assert_eq!(detail.summary.status, shared::RunStatus::Success, "{detail:?}");
    // The run page shows what was sent: the run's own limits as typed, and every location with its
    // place, its limits and its instances (not SSM's echo of the first location's limits).
    let rc = detail.rate_control.as_ref().expect("a rate-control run");
    assert_eq!((rc.max_concurrency.as_str(), rc.max_errors.as_str()), ("25", "3"));
    let sent: Vec<String> = rest
        .iter()
        .map(|((account, region), ids)| {
            format!(
                "Accounts {account} · Regions {region} · TargetLocationMaxConcurrency 20 · TargetLocationMaxErrors 1 · Targets ParameterValues {}",
                ids.join(" ")
            )
        })
        .collect();
    assert_eq!(detail.parameters.get("TargetLocations"), Some(&sent));
    app.refresh_fleet().await;
    let changed: Vec<String> = rest.values().flatten().cloned().collect();
    let after = options_of(&app, &changed).await;
    assert_eq!(after.len(), changed.len());
    assert!(
        after.values().all(|t| t == "required"),
        "every instance of the rest is enforced"
    );
    let kept = options_of(&app, &users).await;
    assert!(
        kept.values().all(|t| t == "optional"),
        "the IMDSv1 users keep their options: {kept:?}"
    );
}

#[tokio::test]
async fn a_location_listing_instance_ids_names_one_place_and_at_most_fifty_of_its_instances() {
    let app = spawn_app_with(AppOptions {
        fleet: 200,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let accounts = sandbox::account_ids(3);
    let all = app.instances().await;
    let of = |account: &str, region: &str| -> Vec<String> {
        all.iter()
            .filter(|i| i["account"] == account && i["region"] == region)
            .map(|i| i["instance_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let ids = of(&accounts[1], "eu-west-1");
    let base = json!({"parameters": {"EnforceIMDSv2": "required"},
        "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}}},
        "override": {"reason": "the teams signed off on this"}});
    let with = |locations: Value| {
        let mut r = base.clone();
        r["target_locations"] = locations;
        r
    };
    // Two accounts: IDs exist in one.
    let (status, body) = app
        .post(
            "/executions/preview",
            &with(json!([{"accounts": [accounts[1], accounts[2]], "regions": ["eu-west-1"], "instance_ids": [ids[0]]}])),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(e2e::error_fields(&body), vec!["target_locations[0].instance_ids"]);
    // More than a Target takes.
    let many: Vec<String> = (0..51).map(|n| format!("i-0{n:016x}")).collect();
    let (status, body) = app
        .post(
            "/executions/preview",
            &with(json!([{"accounts": [accounts[1]], "regions": ["eu-west-1"], "instance_ids": many}])),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("at most 50"), "{body}");
    // An instance of another place is named as such, not taken for "nothing there".
    let elsewhere = of(&accounts[2], "us-east-1");
    let (status, body) = app
        .post(
            "/executions/preview",
            &with(json!([{"accounts": [accounts[1]], "regions": ["eu-west-1"], "instance_ids": [elsewhere[0]]}])),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(e2e::error_fields(&body), vec!["target_locations[0].instance_ids"]);
    // A place named by a location of IDs and by another.
    let (status, body) = app
        .post(
            "/executions/preview",
            &with(
                json!([{"accounts": [accounts[1]], "regions": ["eu-west-1"], "instance_ids": [ids[0]]},
                {"accounts": [accounts[1]], "regions": ["eu-west-1", "us-east-1"]}]),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("name it once"), "{body}");
}
