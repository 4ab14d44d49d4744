//! The fleet at scale: pages a browser can reach to the last row, filters, the summary per region,
//! account and tag, and the "broken since enforcement" posture (issues 12 and 13).

use e2e::{spawn_app_with, AppOptions};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test]
async fn two_thousand_instances_page_to_the_last_row_and_filter_on_the_server() {
    let app = spawn_app_with(AppOptions {
        fleet: 2_000,
        ..AppOptions::default()
    })
    .await;
    let (status, first) = app.get("/instances").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["instances"].as_array().unwrap().len(),
        100,
        "a page, not the fleet"
    );
    assert_eq!(first["total"], 2_000);
    assert!(first["as_of"].is_string());

    // Walking the cursor reaches every instance exactly once, in order.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let (_, page) = app
            .get(&format!("/instances?limit=250&sort=id&cursor={cursor}"))
            .await;
        pages += 1;
        seen.extend(
            page["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["instance_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 8);
    assert_eq!(seen.len(), 2_000);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 2_000, "no overlap");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "sorted by ID");

    // Filters narrow the total; the summary's groups add up to it.
    let (_, west) = app
        .get("/instances?region=eu-west-1&compliance=noncompliant&limit=5")
        .await;
    let (_, summary) = app.get("/fleet/summary?by=region&compliance=noncompliant").await;
    let group = summary["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "eu-west-1")
        .unwrap();
    assert_eq!(west["total"], group["counts"]["total"], "{summary}");
    assert!(west["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["region"] == "eu-west-1" && i["compliant"] == false));
    let (_, all) = app.get("/fleet/summary?by=account").await;
    assert_eq!(all["all"]["total"], 2_000);
    let account = all["groups"][0]["key"].as_str().unwrap().to_owned();
    assert_eq!(account.len(), 12, "{all}");
    let (_, by_team) = app.get("/fleet/summary?by=tag:Team").await;
    let sum: u64 = by_team["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["counts"]["total"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 2_000, "{by_team}");

    // A typo is an error that names the parameter, not an empty page.
    for (query, field) in [
        ("/instances?sort=colour", "sort"),
        ("/instances?limit=5000", "limit"),
        ("/instances?compliance=green", "compliance"),
        ("/fleet/summary?by=colour", "by"),
    ] {
        let (status, body) = app.get(query).await;
        assert_eq!(
            (status, body["error"]["field"].clone()),
            (400, json!(field)),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn an_instance_whose_software_is_refused_after_enforcement_is_broken_not_compliant() {
    let app = spawn_app_with(AppOptions::default()).await;
    // The busiest IMDSv1 user: its software keeps calling, and is refused once IMDSv2 is required.
    let user = app
        .instances()
        .await
        .into_iter()
        .filter(|i| {
            i["region"] == "us-east-1"
                && i["state"] == "running"
                && i["metadata"]["http_endpoint"] == "enabled"
                && i["compliant"] == false
        })
        .max_by_key(|i| i["imdsv1_calls"].as_u64().unwrap_or(0))
        .map(|i| i["instance_id"].as_str().unwrap().to_owned())
        .unwrap();
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": user},
                    "override": {"reason": "Testing what breaks: the agent is being replaced today."}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let done = app
        .wait_done(body["execution_id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(done["summary"]["status"], "Success");
    // Refusals show once the software has called again (CloudWatch sums them per period).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let row: Value = loop {
        app.reread_fleet_and_usage().await;
        let (_, broken) = app.get("/instances?compliance=broken&limit=500").await;
        if let Some(row) = broken["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["instance_id"] == user)
        {
            break row.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{user} is not listed as broken: {broken}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(row["compliant"], true, "IMDSv2 is required on it now");
    assert!(row["imdsv1_rejected"].as_u64().unwrap() > 0, "{row}");
    let (_, summary) = app.get("/fleet/summary").await;
    assert!(summary["all"]["broken"].as_u64().unwrap() >= 1, "{summary}");
    let (_, compliant) = app.get("/instances?compliance=compliant&limit=500").await;
    assert!(
        compliant["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["instance_id"] == user),
        "\"compliant\" still means IMDSv2 required; \"broken\" is the narrower posture"
    );
}

#[tokio::test]
async fn an_organisation_s_accounts_are_inventoried_through_their_role_and_an_unreachable_one_says_why() {
    let app = spawn_app_with(AppOptions {
        fleet: 300,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    // The second member account has no role the console may assume.
    let members = sandbox::account_ids(3);
    app.sandbox.set_faults(sandbox::Faults {
        missing_roles: [members[2].clone()].into(),
        ..Default::default()
    });
    let (status, list) = app.get("/accounts").await;
    assert_eq!(status, 200, "{list}");
    let accounts = list["accounts"].as_array().unwrap();
    assert_eq!(
        accounts.len(),
        3,
        "the organisation's accounts, listed by Organizations: {list}"
    );
    assert_eq!(accounts[0]["account_id"], sandbox::ACCOUNT_ID);
    assert_eq!(accounts[0]["hub"], true);
    assert_eq!(accounts[1]["name"], "member-1");
    assert_eq!(accounts[1]["reachable"], true, "{list}");
    let missing = &accounts[2];
    assert_eq!(missing["reachable"], false, "{list}");
    let reason = missing["reason"].as_str().unwrap();
    assert!(
        reason.contains("sts:AssumeRole") && reason.contains("ImdsConsoleMember"),
        "{reason}"
    );

    // Every reachable account's instances are in the fleet, each with its account.
    let seen: u64 = accounts.iter().map(|a| a["instances"].as_u64().unwrap()).sum();
    let (_, page) = app.get("/instances?limit=1").await;
    assert_eq!(page["total"], seen);
    assert!(seen > 150 && seen < 300, "two of three accounts: {seen}");
    let (_, by_account) = app.get("/fleet/summary?by=account").await;
    let keys: Vec<&str> = by_account["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [sandbox::ACCOUNT_ID, members[1].as_str()], "{by_account}");
    let (_, member) = app
        .get(&format!("/instances?account={}&limit=500", members[1]))
        .await;
    assert!(member["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["account"] == members[1].as_str()));
    assert!(
        member["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["imdsv1_calls"].is_u64()),
        "IMDSv1 usage is read in the member's own account"
    );
}

/// A running instance of `account` in `region` that allows IMDSv1 but has not used it: enforcing
/// changes it and breaks nothing.
async fn quiet_instance_of(app: &e2e::TestApp, account: &str, region: &str) -> String {
    let (_, page) = app
        .get(&format!(
            "/instances?account={account}&region={region}&compliance=imdsv1_allowed&state=running&limit=500"
        ))
        .await;
    page["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["http_endpoint"] == "enabled" && i["imdsv1_calls"] == 0)
        .unwrap_or_else(|| panic!("no quiet instance in {account} {region}: {page}"))["instance_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_run_on_a_member_account_s_instance_is_started_there_through_the_member_role() {
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let member = sandbox::account_ids(3)[1].clone();
    let target = quiet_instance_of(&app, &member, "eu-west-1").await;

    // In the console's own account the instance does not exist; the error says where it looked.
    let (status, body) = app
        .post(
            "/executions",
            &json!({"region": "eu-west-1", "parameters": {"InstanceId": target}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("eu-west-1"),
        "{body}"
    );

    let (status, body) = app
        .post(
            "/executions",
            &json!({"account": member, "region": "eu-west-1", "parameters": {"InstanceId": target}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["execution_id"].as_str().unwrap().to_owned();
    let done = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(done["summary"]["status"], "Success", "{done}");
    assert_eq!(done["summary"]["account"], member.as_str());

    // The execution lives in the member account, as in AWS: the hub's SSM does not know it.
    let url = app.state.sandbox_url.clone().unwrap();
    let hub_ssm = aws_sdk_ssm::Client::new(&e2e::sdk_config(&url, "eu-west-1", 1).await);
    let err = hub_ssm
        .get_automation_execution()
        .automation_execution_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .is_some_and(|e| e.is_automation_execution_not_found_exception()));
    app.refresh_fleet().await;
    let (_, now) = app.get(&format!("/instances?account={member}&q={target}")).await;
    assert_eq!(
        now["instances"][0]["metadata"]["http_tokens"], "required",
        "{now}"
    );

    // A bad account is a field error, and starts nothing.
    let (status, body) = app
        .post(
            "/executions",
            &json!({"account": "12345", "parameters": {"InstanceId": target}}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (400, json!("account")),
        "{body}"
    );
}

#[tokio::test]
async fn one_call_enforces_a_tag_across_every_account_and_region_as_one_target_locations_run() {
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let accounts = sandbox::account_ids(3);
    let regions = ["us-east-1", "eu-west-1"];
    let since = e2e::now_ms();
    let (status, body) = app
        .post(
            "/executions",
            &json!({
                "parameters": {},
                "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}},
                                 "max_concurrency": "10", "max_errors": "100%"},
                "target_locations": [{"accounts": accounts, "regions": regions,
                                      "target_location_max_concurrency": "2",
                                      "target_location_max_errors": "100%"}],
                "override": {"reason": "Organisation-wide drill: every web instance, all accounts."}
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let starts = app.sandbox.count_calls("ssm:StartAutomationExecution", since);
    assert_eq!(
        starts, 1,
        "one StartAutomationExecution with TargetLocations, no loop"
    );
    let parent = body["execution_id"].as_str().unwrap().to_owned();
    let done = app.wait_done(&parent, Duration::from_secs(60)).await;
    let progress = &done["rate_control"]["progress"];
    assert_eq!(progress["unit"], "locations", "{done}");
    assert_eq!(progress["total"], 6, "3 accounts × 2 regions: {progress}");
    let steps: BTreeSet<String> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    for a in &accounts {
        for r in regions {
            assert!(steps.contains(&format!("{a}/{r}")), "{steps:?}");
        }
    }

    // Every running web instance, in every account and region, now requires tokens.
    app.refresh_fleet().await;
    let web = app
        .instances()
        .await
        .into_iter()
        .filter(|i| i["tags"]["Team"] == "web" && i["state"] == "running")
        .collect::<Vec<_>>();
    let owners: BTreeSet<&str> = web.iter().map(|i| i["account"].as_str().unwrap()).collect();
    assert_eq!(owners.len(), 3, "web instances in each account");
    for i in &web {
        assert_eq!(i["metadata"]["http_tokens"], "required", "{i}");
    }

    // Rolling it back restores each instance in its own account and region.
    let (status, back) = app
        .post(&format!("/executions/{parent}/rollback"), &json!({}))
        .await;
    assert_eq!(status, 201, "{back}");
    let runs = back["execution_ids"].as_array().unwrap();
    assert!(
        runs.len() >= 3,
        "a run per account and region that changed: {back}"
    );
    for r in runs {
        app.wait_done(r.as_str().unwrap(), Duration::from_secs(60)).await;
    }
    app.refresh_fleet().await;
    let restored = app
        .instances()
        .await
        .into_iter()
        .filter(|i| i["tags"]["Team"] == "web" && i["state"] == "running")
        .filter(|i| i["metadata"]["http_tokens"] == "optional")
        .count();
    assert!(
        restored > 0,
        "instances that allowed IMDSv1 before allow it again"
    );

    // A run across accounts targets a tag, and names accounts, units or roots.
    let (status, bad) = app
        .post(
            "/executions/preview",
            &json!({"parameters": {}, "rate_control": {"targets": {"instance_ids": ["i-0123456789abcdef0"]},
                    "max_concurrency": "1", "max_errors": "0"},
                    "target_locations": [{"accounts": ["ou-ab12"], "regions": ["us-east-1"]}]}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    let fields = e2e::error_fields(&bad);
    assert!(fields.contains(&"target_locations"), "{bad}");
    assert!(fields.contains(&"target_locations[0].accounts"), "{bad}");
}

#[tokio::test]
async fn an_account_scoped_operator_sees_only_its_accounts_and_is_refused_changes_elsewhere() {
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 3,
        extra_args: vec![
            "--trusted-proxy".into(),
            "127.0.0.1".into(),
            "--sso-group-role".into(),
            format!("team-b=operator@{}", sandbox::account_ids(3)[2]),
        ],
        ..AppOptions::default()
    })
    .await;
    let ids = sandbox::account_ids(3);
    let (mine, other) = (ids[1].clone(), ids[2].clone());
    // The admin runs something in the console's own account first.
    let mut hub_quiet = app
        .pick("us-east-1", |i| {
            i["account"] == sandbox::ACCOUNT_ID
                && i["metadata"]["http_endpoint"] == "enabled"
                && i["imdsv1_calls"].as_u64().unwrap_or(0) == 0
        })
        .await;
    let hub_target = hub_quiet.remove(0);
    let (status, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": hub_target}}))
        .await;
    assert_eq!(status, 201, "{body}");
    let hub_run = body["execution_id"].as_str().unwrap().to_owned();
    app.wait_done(&hub_run, Duration::from_secs(30)).await;

    let (status, body) = app
        .post(
            "/users",
            &json!({"name": "olga", "role": "operator", "password": "olga-password-123", "accounts": [mine]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let cookie = app.session("olga", "olga-password-123").await;
    let client = reqwest::Client::new();
    let as_olga_get = |path: String| {
        let req = client.get(app.url(&path)).header("cookie", cookie.clone());
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default())
        }
    };
    let as_olga_post = |path: String, body: Value| {
        let req = client
            .post(app.url(&path))
            .header("cookie", cookie.clone())
            .header("origin", app.base.clone())
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default())
        }
    };

    // Reads are filtered to her account.
    let (_, accounts) = as_olga_get("/accounts".into()).await;
    let listed: Vec<&str> = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [mine.as_str()]);
    let (_, fleet) = as_olga_get("/instances?limit=500".into()).await;
    let instances = fleet["instances"].as_array().unwrap();
    assert!(!instances.is_empty());
    assert!(instances.iter().all(|i| i["account"] == mine.as_str()), "{fleet}");
    let (_, history) = as_olga_get("/executions".into()).await;
    assert_eq!(history["executions"].as_array().unwrap().len(), 0, "{history}");
    let (status, _) = as_olga_get(format!("/executions/{hub_run}")).await;
    assert_eq!(status, 404, "a run outside her accounts does not exist for her");

    // Changes outside her account are refused, naming it; inside, they go through.
    let target = instances
        .iter()
        .find(|i| {
            i["state"] == "running"
                && i["compliant"] == false
                && i["metadata"]["http_endpoint"] == "enabled"
                && i["imdsv1_calls"] == 0
        })
        .unwrap();
    let region = target["region"].as_str().unwrap();
    for (account, body) in [
        (Value::Null, json!({"parameters": {"InstanceId": hub_target}})),
        (
            json!(other),
            json!({"account": other, "region": region, "parameters": {"InstanceId": target["instance_id"]}}),
        ),
    ] {
        let (status, refused) = as_olga_post("/executions".into(), body).await;
        assert_eq!(status, 403, "{account}: {refused}");
        assert_eq!(refused["error"]["code"], "AccountNotAllowed");
    }
    // An organizational unit could reach accounts outside her list: refused too.
    let (status, refused) = as_olga_post(
        "/executions".into(),
        json!({"parameters": {},
               "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}}, "max_concurrency": "1", "max_errors": "0"},
               "target_locations": [{"accounts": [mine, "ou-sand-workloads"], "regions": ["us-east-1"]}]}),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (403, json!("AccountNotAllowed")),
        "{refused}"
    );
    let (status, refused) = as_olga_post(format!("/executions/{hub_run}/rollback"), json!({})).await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (404, json!("NotFound")),
        "a run she may not see does not exist for her"
    );
    // Her live stream carries her runs, not the console account's.
    let mut stream = client
        .get(app.url("/events"))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    let other_hub_target = hub_quiet.remove(0);
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": other_hub_target}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let hidden = body["execution_id"].as_str().unwrap().to_owned();
    app.wait_done(&hidden, Duration::from_secs(30)).await;
    let (status, started) = as_olga_post(
        "/executions".into(),
        json!({"account": mine, "region": region, "parameters": {"InstanceId": target["instance_id"]}}),
    )
    .await;
    assert_eq!(status, 201, "{started}");
    let hers = started["execution_id"].as_str().unwrap().to_owned();
    let seen = e2e::read_events_until(
        &mut stream,
        |seen| seen.contains(&hers) && seen.contains("\"status\":\"Success\""),
        Duration::from_secs(30),
    )
    .await;
    assert!(!seen.contains(&hidden), "{seen}");
    let (_, history) = as_olga_get("/executions".into()).await;
    assert_eq!(history["executions"].as_array().unwrap().len(), 1, "{history}");
    // So does the audit export.
    let (status, audit) = as_olga_get("/audit".into()).await;
    assert_eq!(status, 200, "{audit}");
    let records = audit.as_array().unwrap();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["account"], mine.as_str());
    let (_, all) = app.get("/audit").await;
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["account"] == sandbox::ACCOUNT_ID));

    // A sign-on group can be limited the same way.
    let resp = client
        .get(app.url("/accounts"))
        .header("x-forwarded-user", "bob")
        .header("x-forwarded-groups", "team-b")
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let listed: Vec<&str> = body["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [other.as_str()], "{body}");
}

#[tokio::test]
async fn members_can_come_from_an_organizational_unit_and_an_unknown_one_is_reported() {
    // The root holds the management account and two units (member-1 in Workloads, with member-3 in
    // Production inside it; member-2 in Sandboxes): the root reaches every account through its
    // units, and Workloads reaches member-3 through its child unit.
    for (unit, expected) in [
        ("r-sand", 4),
        ("ou-sand-workloads", 3),
        ("ou-sand-production", 2),
        ("ou-sand-sandboxes", 2),
        ("ou-zzzz-aaaaaaaa", 1),
    ] {
        let app = spawn_app_with(AppOptions {
            fleet: 60,
            accounts: 4,
            extra_args: vec!["--organizational-unit".into(), unit.into()],
            ..AppOptions::default()
        })
        .await;
        let (status, list) = app.get("/accounts").await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(
            list["accounts"].as_array().unwrap().len(),
            expected,
            "{unit}: {list}"
        );
        // The organisation's suspended and closed members are never targets.
        for inactive in ["299999999991", "299999999992"] {
            assert!(!list.to_string().contains(inactive), "{unit}: {list}");
        }
        if expected == 1 {
            let problem = list["organization_error"].as_str().unwrap();
            assert!(
                problem.contains(unit) && problem.contains("ParentNotFound"),
                "{problem}"
            );
        } else {
            assert!(list["organization_error"].is_null(), "{list}");
        }
    }
}

#[tokio::test]
async fn the_dashboard_shows_the_posture_now_day_by_day_and_what_changed_today() {
    let app = spawn_app_with(AppOptions::default()).await;
    let (status, first) = app.get("/dashboard").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["now"]["total"], 40);
    let trend = first["trend"].as_array().unwrap();
    assert_eq!(trend.len(), 1, "today's reading: {first}");
    assert_eq!(
        trend[0]["counts"], first["now"],
        "the day's reading is the fleet now"
    );

    // A reading from an earlier day, as the console would have stored it then.
    let yesterday = app.state.store.clock.day(1);
    let earlier = shared::api::PostureCounts {
        total: 40,
        compliant: 3,
        ..Default::default()
    };
    app.state
        .store
        .record_posture(&yesterday, sandbox::ACCOUNT_ID, &earlier)
        .await
        .unwrap();
    let id = app.quiet("us-east-1").await.remove(0);
    let (status, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    assert_eq!(status, 201, "{body}");
    app.wait_done(body["execution_id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    app.refresh_fleet().await;
    let (_, d) = app.get("/dashboard").await;
    let days: Vec<&str> = d["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["day"].as_str().unwrap())
        .collect();
    assert_eq!(days, [yesterday.as_str(), &app.state.store.clock.day(0)], "{d}");
    assert_eq!(d["trend"][0]["counts"]["compliant"], 3);
    assert_eq!(
        d["trend"][1]["counts"]["compliant"],
        first["now"]["compliant"].as_u64().unwrap() + 1,
        "the enforced instance counts today"
    );
    assert_eq!(d["today"]["runs"], 1, "{d}");
    assert_eq!(d["today"]["instances"], 1);
    assert_eq!(d["today"]["people"], json!(["admin"]));
    assert_eq!(d["by_region"].as_array().unwrap().len(), 2);
    assert!(d["in_flight"].as_array().unwrap().is_empty(), "{d}");
}

#[tokio::test]
async fn an_old_inventory_is_refreshed_once_in_the_background_for_every_viewer_and_an_unreachable_account_keeps_its_last_reading(
) {
    let app = spawn_app_with(AppOptions {
        fleet: 300,
        accounts: 3,
        extra_args: vec!["--fleet-refresh-secs".into(), "2".into()],
        ..AppOptions::default()
    })
    .await;
    let (_, before) = app.get("/accounts").await;
    let member = sandbox::account_ids(3)[2].clone();
    let old = before["accounts"][2].clone();
    assert_eq!(old["account_id"], member.as_str());
    assert_eq!(old["reachable"], true, "{before}");
    let old_as_of = old["as_of"].as_str().unwrap().to_owned();

    // Outside the console, one instance of the console's account is enforced, and the member
    // account's role is deleted (its sessions are refused from then on, as in AWS).
    let (_, page) = app
        .get("/instances?region=us-east-1&compliance=imdsv1_allowed&state=running&limit=1")
        .await;
    let id = page["instances"][0]["instance_id"].as_str().unwrap().to_owned();
    let url = app.state.sandbox_url.clone().unwrap();
    aws_sdk_ec2::Client::new(&e2e::sdk_config(&url, "us-east-1", 1).await)
        .modify_instance_metadata_options()
        .instance_id(&id)
        .http_tokens(aws_sdk_ec2::types::HttpTokensState::Required)
        .send()
        .await
        .unwrap();
    // Each DescribeInstances of the refresh takes 2 s, so the refresh cannot end while the viewers
    // below are answered (it did once on a busy machine, when nothing slowed it): what they get is
    // decided by the console, not by the race.
    app.sandbox.set_faults(sandbox::Faults {
        missing_roles: [member.clone()].into(),
        rules: vec![sandbox::FaultRule::parse("ec2:DescribeInstances:latency_ms=2000").unwrap()],
        ..Default::default()
    });
    // The inventory's age passes the refresh interval (2 s).
    tokio::time::sleep(Duration::from_millis(2_200)).await;

    // Twenty viewers at once are all served the old reading at once; one refresh runs behind them.
    let since = e2e::now_ms();
    let viewers = (0..20).map(|_| app.get("/instances?limit=1"));
    for (status, body) in futures_util::future::join_all(viewers).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["as_of"], before["as_of"],
            "served from the old reading: {body}"
        );
    }
    app.sandbox.set_faults(sandbox::Faults {
        missing_roles: [member.clone()].into(),
        ..Default::default()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let refreshed = loop {
        let (_, now) = app.get(&format!("/instances?q={id}")).await;
        if now["instances"][0]["metadata"]["http_tokens"] == "required" {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "never refreshed: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(refreshed["as_of"], before["as_of"]);
    assert_eq!(
        app.sandbox.count_calls("ec2:DescribeInstances", since),
        6,
        "one refresh for twenty viewers: two regions in each account (a refusal in one Region says \
         nothing of the next, so the unreachable one is asked in both)"
    );

    // The account whose role is gone keeps its last reading, with that reading's age and the reason.
    let (_, after) = app.get("/accounts").await;
    let gone = &after["accounts"][2];
    assert_eq!(gone["reachable"], false, "{after}");
    assert!(
        gone["reason"].as_str().unwrap().contains("not authorized"),
        "{gone}"
    );
    assert_eq!(gone["instances"], old["instances"], "{gone}");
    assert_eq!(gone["as_of"], old_as_of.as_str(), "the age of what is shown");
    assert_ne!(after["accounts"][0]["as_of"], old_as_of.as_str());
    let (_, kept) = app.get(&format!("/instances?account={member}&limit=1")).await;
    assert_eq!(kept["total"], old["instances"]);
}

#[tokio::test]
async fn a_finished_run_has_its_own_account_and_region_read_again_and_no_other() {
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let member = sandbox::account_ids(3)[1].clone();
    let target = quiet_instance_of(&app, &member, "eu-west-1").await;
    // Counted from before the start: with PostgreSQL the leader reads a changed place again on its
    // own within a quarter second of the run's end, which may come before the test sees the end.
    let since = e2e::now_ms();
    let (status, body) = app
        .post(
            "/executions",
            &json!({"account": member, "region": "eu-west-1", "parameters": {"InstanceId": target}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let done = app
        .wait_done(body["execution_id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(done["summary"]["status"], "Success", "{done}");

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, now) = app.get(&format!("/instances?account={member}&q={target}")).await;
        if now["instances"][0]["metadata"]["http_tokens"] == "required" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the change never showed: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.sandbox.count_calls("ec2:DescribeInstances", since),
        2,
        "the target read once before the start, then only the run's account and region read again, not 3 accounts × 2 regions"
    );
    let (_, all) = app.get("/instances?limit=1").await;
    assert_eq!(all["total"], 120, "the other places are kept: {all}");
}

#[tokio::test]
async fn each_account_and_region_has_its_own_ssm_budget_as_ssm_counts_its_quotas() {
    let app = spawn_app_with(AppOptions {
        accounts: 3,
        read_rate: 0.5,
        ..AppOptions::default()
    })
    .await;
    let (status, _) = app.get("/accounts").await;
    assert_eq!(status, 200);
    let member = sandbox::account_ids(3)[1].clone();
    let held = app.state.limits(&member, "us-east-1");
    let _slot = held.read.acquire().await;
    assert!(
        app.state.limits(&member, "us-east-1").read.try_acquire().is_err(),
        "one budget per account and region"
    );
    assert!(app.state.limits(&member, "eu-west-1").read.try_acquire().is_ok());
    assert!(app
        .state
        .limits(&sandbox::account_ids(3)[2], "us-east-1")
        .read
        .try_acquire()
        .is_ok());
    assert!(
        std::sync::Arc::ptr_eq(
            &app.state.limits(sandbox::ACCOUNT_ID, "us-east-1"),
            &app.state.limits("", "us-east-1")
        ),
        "the console's own account by its ID or as ''"
    );
}

#[tokio::test]
async fn a_tag_rollout_can_target_an_organizational_unit_which_ssm_resolves_and_the_preview_lists() {
    let app = spawn_app_with(AppOptions {
        fleet: 300,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let members = sandbox::account_ids(3);
    let body = json!({
        "parameters": {},
        "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}},
                         "max_concurrency": "10", "max_errors": "100%"},
        "target_locations": [{"accounts": ["ou-sand-workloads"], "regions": ["us-east-1", "eu-west-1"],
                              "target_location_max_concurrency": "2", "target_location_max_errors": "100%"}],
        "override": {"reason": "Workloads unit drill: every web instance there."}
    });
    let (status, preview) = app.post("/executions/preview", &body).await;
    assert_eq!(status, 200, "{preview}");
    let accounts: BTreeSet<&str> = preview["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["account"].as_str().unwrap())
        .collect();
    assert_eq!(
        accounts,
        BTreeSet::from([members[1].as_str()]),
        "the unit's one member: {preview}"
    );

    let since = e2e::now_ms();
    let (status, started) = app.post("/executions", &body).await;
    assert_eq!(status, 201, "{started}");
    let starts = app.sandbox.count_calls("ssm:StartAutomationExecution", since);
    assert_eq!(starts, 1);
    let done = app
        .wait_done(started["execution_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(
        done["rate_control"]["progress"]["total"], 2,
        "one member × 2 Regions: {done}"
    );
    assert_eq!(done["summary"]["status"], "Success", "{done}");

    // A malformed unit is a field error that starts nothing.
    let mut bad = body.clone();
    bad["target_locations"][0]["accounts"] = json!(["ou-x"]);
    let (status, refused) = app.post("/executions", &bad).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["field"], "target_locations[0].accounts");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("organizational unit"));
}

#[tokio::test]
async fn the_fleet_exports_every_match_as_csv_or_json() {
    let app = spawn_app_with(AppOptions {
        fleet: 600,
        ..AppOptions::default()
    })
    .await;
    let (_, page) = app.get("/instances?region=eu-west-1&limit=1").await;
    let total = page["total"].as_u64().unwrap() as usize;
    assert!(total > 100, "more than a page: {total}");
    let resp = app
        .http
        .get(app.url("/instances?region=eu-west-1&format=csv&limit=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("imds-console-fleet.csv"));
    let csv = resp.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "\"instance_id\",\"account\",\"region\",\"name\",\"state\",\"http_tokens\",\"http_endpoint\",\"hop_limit\",\"metadata_state\",\"posture\",\"imdsv1_calls\",\"imdsv1_rejected\",\"image_id\",\"launched_from\",\"tags\"",
        "every cell quoted"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), total, "every match, not a page");
    assert!(rows.iter().all(|r| r.contains(",\"eu-west-1\",")));
    let (status, json) = app.get("/instances?region=eu-west-1&format=json").await;
    assert_eq!(status, 200);
    assert_eq!(json.as_array().unwrap().len(), total);
    let (status, bad) = app.get("/instances?format=xlsx").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["field"], "format");
}

#[tokio::test]
async fn member_accounts_are_reached_in_the_consoles_own_partition() {
    // A sandbox playing GovCloud: its STS names the console arn:aws-us-gov:..., and refuses to assume
    // a role ARN of another partition, as AWS does.
    let app = spawn_app_with(AppOptions {
        fleet: 60,
        accounts: 3,
        extra_args: vec!["--sandbox-partition".into(), "aws-us-gov".into()],
        ..AppOptions::default()
    })
    .await;
    let (_, identity) = app.get("/identity").await;
    let identity: shared::api::Identity = serde_json::from_value(identity).unwrap();
    assert!(identity.arn.starts_with("arn:aws-us-gov:"), "{}", identity.arn);
    let (_, accounts) = app.get("/accounts").await;
    let accounts: shared::api::AccountList = serde_json::from_value(accounts).unwrap();
    assert_eq!(accounts.accounts.len(), 3);
    assert!(
        accounts.accounts.iter().all(|a| a.reachable),
        "every member is reached through arn:aws-us-gov:iam::…: {:?}",
        accounts.accounts
    );
}

#[tokio::test]
async fn a_run_across_the_organisations_root_reaches_the_accounts_in_its_units() {
    // SSM does not walk child units unless IncludeChildOrganizationUnits says so, and the sandbox
    // resolves roots and units as SSM does: the members sit in units under the root.
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let member = sandbox::account_ids(3)[2].clone();
    let in_member = app
        .pick("us-east-1", |i| {
            i["account"] == member.as_str()
                && i["tags"]["Env"] == "dev"
                && i["state"] == "running"
                && i["metadata"]["http_tokens"] == "optional"
        })
        .await
        .remove(0);
    assert!(
        enforced_across(
            &app,
            ("Env", "dev"),
            json!({"accounts": ["r-sand"], "regions": ["us-east-1"]}),
            &in_member
        )
        .await,
        "the member account under a unit was reached"
    );
}

#[tokio::test]
async fn a_run_across_more_than_fifty_accounts_is_sent_as_ssm_takes_it() {
    // SSM takes at most 50 accounts in one TargetLocation, and the sandbox refuses more as AWS does:
    // the console sends a location of 60 accounts as two.
    let app = spawn_app_with(AppOptions {
        fleet: 240,
        accounts: 60,
        ..AppOptions::default()
    })
    .await;
    let ids = sandbox::account_ids(60);
    let beyond_fifty: Vec<String> = ids[50..].to_vec();
    // An instance the run reaches only through the second piece (the fleet is seeded: always the same).
    let far = app
        .pick("us-east-1", move |i| {
            beyond_fifty.iter().any(|a| i["account"] == a.as_str())
                && i["tags"]["Team"] == "web"
                && i["state"] == "running"
                && i["metadata"]["http_tokens"] == "optional"
        })
        .await
        .remove(0);
    let location =
        json!({"accounts": ids, "regions": ["us-east-1"], "target_location_max_concurrency": "60"});
    assert!(
        enforced_across(&app, ("Team", "web"), location, &far).await,
        "an account past the fiftieth was reached"
    );
}

/// Enforces IMDSv2 on every instance tagged `key=value` in `location` (one TargetLocation), waits for
/// the run to end and reads the fleet again; then says whether `instance` now requires tokens.
async fn enforced_across(
    app: &e2e::TestApp,
    (key, value): (&str, &str),
    location: Value,
    instance: &str,
) -> bool {
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"EnforceIMDSv2": "required"},
                    "rate_control": {"targets": {"tag": {"key": key, "value": value}}, "max_concurrency": "10", "max_errors": "100%"},
                    "target_locations": [location],
                    "override": {"reason": "the teams signed off on this"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let run = body["execution_id"].as_str().unwrap().to_owned();
    app.wait_done(&run, Duration::from_secs(120)).await;
    app.refresh_fleet().await;
    let (_, found) = app.get(&format!("/instances?q={instance}")).await;
    found["instances"][0]["metadata"]["http_tokens"] == "required"
}

#[tokio::test]
async fn a_tag_rollout_to_every_account_and_region_goes_only_where_instances_match_whatever_ssm_does_with_an_empty_location(
) {
    // "Every reachable account and Region" names places where the tag matches nothing. What SSM does
    // with such a location is undocumented: the sandbox fails it (and with a location error
    // threshold of 0 the rest never runs) or lets it succeed. Either way the console sends only the
    // places its preview found instances in, and the instance is enforced.
    for empty in [sandbox::EmptyTargets::Failed, sandbox::EmptyTargets::Success] {
        let app = spawn_app_with(AppOptions {
            fleet: 120,
            accounts: 3,
            ..AppOptions::default()
        })
        .await;
        app.sandbox.set_faults(sandbox::Faults {
            empty_targets: empty,
            ..Default::default()
        });
        let accounts = sandbox::account_ids(3);
        let (_, identity) = app.get("/identity").await;
        let regions: Vec<String> = serde_json::from_value(identity["regions"].clone()).unwrap();
        assert!(regions.len() >= 2, "{identity}");
        let member = accounts[2].clone();
        let instance = app
            .instances()
            .await
            .into_iter()
            .find(|i| {
                i["account"] == member.as_str()
                    && i["region"] == regions[1].as_str()
                    && i["state"] == "running"
                    && i["metadata"]["http_tokens"] == "optional"
                    && i["metadata"]["http_endpoint"] == "enabled"
            })
            .expect("an instance of the member in the second Region");
        let id = instance["instance_id"].as_str().unwrap().to_owned();
        let name = instance["tags"]["Name"].as_str().unwrap().to_owned();
        let request = json!({"parameters": {"EnforceIMDSv2": "required"},
            "rate_control": {"targets": {"tag": {"key": "Name", "value": name}}, "max_concurrency": "7", "max_errors": "1"},
            "target_locations": [{"accounts": accounts, "regions": regions,
                "target_location_max_concurrency": "2", "target_location_max_errors": "1"}],
            "override": {"reason": "the teams signed off on this"}});
        let (status, preview) = app.post("/executions/preview", &request).await;
        assert_eq!(status, 200, "{preview}");
        let preview: shared::api::PreviewResponse = serde_json::from_value(preview).unwrap();
        assert_eq!(
            preview.places,
            vec![format!("{member}/{}", regions[1])],
            "{empty:?}"
        );
        assert_eq!(
            preview.places_left_out.len(),
            accounts.len() * regions.len() - 1,
            "{empty:?}: {preview:?}"
        );
        let (status, started) = app.post("/executions", &request).await;
        assert_eq!(status, 201, "{empty:?}: {started}");
        let started: shared::api::StartExecutionResponse = serde_json::from_value(started).unwrap();
        assert!(
            started.message.as_deref().is_some_and(|m| m.contains("left out")),
            "{started:?}"
        );
        let run = started.execution_id.expect("sent");
        let done = app.wait_done(&run, Duration::from_secs(120)).await;
        assert_eq!(done["summary"]["status"], "Success", "{empty:?}: {done}");
        // The run page shows what was sent: the one place with matches, with the limits typed.
        let detail: shared::api::ExecutionDetail = serde_json::from_value(done).unwrap();
        assert_eq!(
            detail.parameters.get("TargetLocations"),
            Some(&vec![format!(
                "Accounts {member} · Regions {} · TargetLocationMaxConcurrency 2 · TargetLocationMaxErrors 1",
                regions[1]
            )])
        );
        let rc = detail.rate_control.expect("rate control");
        assert_eq!((rc.max_concurrency.as_str(), rc.max_errors.as_str()), ("7", "1"));
        app.refresh_fleet().await;
        let (_, found) = app.get(&format!("/instances?q={id}")).await;
        assert_eq!(
            found["instances"][0]["metadata"]["http_tokens"], "required",
            "{empty:?}: {found}"
        );
    }
}

#[tokio::test]
async fn a_region_an_scp_denies_leaves_the_rest_of_the_account_readable() {
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 3,
        // Read again in the background every second, each reading built on the last.
        extra_args: vec!["--fleet-refresh-secs".into(), "1".into()],
        ..AppOptions::default()
    })
    .await;
    let member = sandbox::account_ids(3)[1].clone();
    let (_, identity) = app.get("/identity").await;
    let regions: Vec<String> = serde_json::from_value(identity["regions"].clone()).unwrap();
    let denied = regions[1].clone();
    let in_denied = |list: &[Value]| {
        list.iter()
            .filter(|i| i["account"] == member.as_str() && i["region"] == denied.as_str())
            .count()
    };
    let before = app.instances().await;
    assert!(in_denied(&before) > 0, "the member has instances in {denied}");

    // The organisation's service control policy denies one Region in the member account.
    app.sandbox.set_faults(sandbox::Faults {
        denied_regions: [format!("{member}/{denied}")].into_iter().collect(),
        ..Default::default()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let view = loop {
        // A page read starts the background refresh once the reading is a second old.
        app.instances().await;
        let (status, accounts) = app.get("/accounts").await;
        assert_eq!(status, 200, "{accounts}");
        let accounts: shared::api::AccountList = serde_json::from_value(accounts).unwrap();
        let view = accounts
            .accounts
            .into_iter()
            .find(|a| a.account_id == member)
            .expect("the member is listed");
        if !view.regions_unreachable.is_empty() || !view.reachable {
            break view;
        }
        assert!(std::time::Instant::now() < deadline, "never read again: {view:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        view.reachable,
        "one denied Region is not a dead account: {view:?}"
    );
    assert_eq!(view.regions_unreachable.len(), 1, "{view:?}");
    let problem = &view.regions_unreachable[0];
    assert_eq!(problem.region, denied);
    assert!(
        problem.reason.contains("UnauthorizedOperation") && problem.reason.contains("service control policy"),
        "AWS's words: {problem:?}"
    );
    assert!(
        problem.as_of.is_some(),
        "its last reading is kept, with its age: {problem:?}"
    );
    // Its other Regions are read now, and the denied one keeps its last reading.
    let after = app.instances().await;
    assert_eq!(in_denied(&after), in_denied(&before));
    assert!(after
        .iter()
        .any(|i| i["account"] == member.as_str() && i["region"] != denied.as_str()));
    // The day's posture is today's reading: the kept Region's old instances are shown, not counted.
    let (_, dashboard) = app.get("/dashboard").await;
    let dashboard: shared::api::Dashboard = serde_json::from_value(dashboard).unwrap();
    let today = dashboard.trend.last().expect("today's reading");
    assert_eq!(
        today.counts.total + in_denied(&after),
        dashboard.now.total,
        "{dashboard:?}"
    );
}
