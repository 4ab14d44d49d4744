//! A run across accounts and Regions read as SSM models it: each location is a step with its
//! `StepExecution.TargetLocation`, the run has `TargetLocations`, and when GetAutomationExecution
//! shows only the first steps (`StepExecutionsTruncated`) the rest are read with
//! DescribeAutomationStepExecutions, a page per watcher round, so every location is counted.

use e2e::{spawn_app_with, AppOptions, TestApp};
use serde_json::{json, Value};
use shared::api::{ExecutionDetail, PreviewResponse};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Starts `Env=prod` → IMDSv2 required in every account and Region of the sandbox (the console
/// narrows it to the places its preview finds instances in) and returns the places and the run.
async fn enforce_prod_everywhere(app: &TestApp, accounts: usize) -> (BTreeSet<String>, String) {
    let (_, identity) = app.get("/identity").await;
    let regions: Vec<String> = serde_json::from_value(identity["regions"].clone()).unwrap();
    let request = json!({"parameters": {"EnforceIMDSv2": "required"},
        "rate_control": {"targets": {"tag": {"key": "Env", "value": "prod"}},
                         "max_concurrency": "100%", "max_errors": "100%"},
        "target_locations": [{"accounts": sandbox::account_ids(accounts), "regions": regions,
                              "target_location_max_concurrency": "100%",
                              "target_location_max_errors": "100%"}],
        "override": {"reason": "organisation-wide drill, signed off by every team"}});
    let (status, preview) = app.post("/executions/preview", &request).await;
    assert_eq!(status, 200, "{preview}");
    let preview: PreviewResponse = serde_json::from_value(preview).unwrap();
    let (status, body) = app.post("/executions", &request).await;
    assert_eq!(status, 201, "{body}");
    (
        preview.places.into_iter().collect(),
        body["execution_id"].as_str().unwrap().to_owned(),
    )
}

/// The run's detail once every location is counted as done (the watcher reads the steps SSM left
/// out of GetAutomationExecution a page per round, and once more after the run ends).
async fn detail_when_counted(app: &TestApp, run: &str, places: usize) -> ExecutionDetail {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = app.get(&format!("/executions/{run}")).await;
        assert_eq!(status, 200, "{body}");
        let detail: ExecutionDetail = serde_json::from_value(body).unwrap();
        // None until the watcher has read the run once.
        let p = detail
            .rate_control
            .as_ref()
            .map(|rc| rc.progress.clone())
            .unwrap_or_default();
        if detail.summary.status.is_terminal() && p.succeeded + p.failed + p.cancelled == places as u32 {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "{places} locations never all counted: {} {p:?}, {} steps",
            detail.summary.status.as_str(),
            detail.steps.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every location is a step named by SSM's TargetLocation, none forgotten or counted twice.
fn assert_every_location_counted(detail: &ExecutionDetail, places: &BTreeSet<String>) {
    let p = &detail.rate_control.as_ref().unwrap().progress;
    assert_eq!(p.unit, "locations", "{p:?}");
    assert_eq!(
        (p.total, p.succeeded, p.failed, p.not_run),
        (places.len() as u32, places.len() as u32, 0, 0),
        "{p:?}"
    );
    let stepped: BTreeSet<String> = detail
        .steps
        .iter()
        .filter_map(|s| s.target_location.clone())
        .collect();
    assert_eq!(&stepped, places);
    assert!(
        detail
            .steps
            .iter()
            .all(|s| !s.inputs.contains_key("TargetLocation")),
        "SSM has no TargetLocation input; the location is the step's own field"
    );
}

#[tokio::test]
async fn a_run_across_more_than_a_hundred_locations_counts_every_location_and_changes_every_instance() {
    // 55 accounts × 2 Regions, ten instances in each: more locations than GetAutomationExecution shows.
    let app = spawn_app_with(AppOptions {
        fleet: 1100,
        accounts: 55,
        ..AppOptions::default()
    })
    .await;
    let since = e2e::now_ms();
    let (places, run) = enforce_prod_everywhere(&app, 55).await;
    assert!(places.len() > 100, "{} places", places.len());
    let detail = detail_when_counted(&app, &run, places.len()).await;
    assert_every_location_counted(&detail, &places);

    // The steps SSM left out cost a page per round in the read budget, no more than the run's own reads.
    let gets = app.sandbox.count_calls("ssm:GetAutomationExecution", since);
    let pages = app
        .sandbox
        .count_calls("ssm:DescribeAutomationStepExecutions", since);
    let pages_per_sweep = places.len().div_ceil(50);
    assert!(
        pages >= pages_per_sweep && pages <= gets,
        "{pages} step pages for {gets} reads of the run"
    );

    // Every location's instances were changed.
    app.refresh_fleet().await;
    let missed: Vec<Value> = app
        .instances()
        .await
        .into_iter()
        .filter(|i| {
            i["tags"]["Env"] == "prod"
                && i["state"] == "running"
                && i["metadata"]["http_tokens"] != "required"
        })
        .collect();
    assert!(missed.is_empty(), "not enforced: {missed:#?}");
}

#[tokio::test]
async fn every_location_is_counted_however_many_steps_ssm_shows_before_it_truncates() {
    // AWS does not document how many steps GetAutomationExecution answers: with four, a run across six
    // locations is read through DescribeAutomationStepExecutions all the same.
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    app.sandbox.set_faults(sandbox::Faults {
        steps_in_get: Some(4),
        ..Default::default()
    });
    let (places, run) = enforce_prod_everywhere(&app, 3).await;
    assert_eq!(places.len(), 6, "{places:?}");
    let detail = detail_when_counted(&app, &run, places.len()).await;
    assert_every_location_counted(&detail, &places);
}

#[tokio::test]
async fn the_sandbox_answers_a_run_across_accounts_in_the_fields_ssm_models() {
    let (_sb, url) = e2e::standalone_sandbox(sandbox::SandboxConfig {
        fleet_size: 60,
        accounts: 3,
        speed: 600.0,
        ..sandbox::SandboxConfig::default()
    })
    .await;
    let ssm = aws_sdk_ssm::Client::new(&e2e::sdk_config(&url, "us-east-1", 1).await);
    let accounts = sandbox::account_ids(3);
    let location = aws_sdk_ssm::types::TargetLocation::builder()
        .set_accounts(Some(accounts.clone()))
        .regions("us-east-1")
        .regions("eu-west-1")
        .target_location_max_concurrency("6")
        .target_location_max_errors("6")
        .build();
    let id = ssm
        .start_automation_execution()
        .document_name(shared::RUNBOOK)
        .parameters("EnforceIMDSv2", vec!["required".to_owned()])
        .target_parameter_name("InstanceId")
        .targets(
            aws_sdk_ssm::types::Target::builder()
                .key("tag:Env")
                .values("prod")
                .build(),
        )
        .target_locations(location)
        .send()
        .await
        .unwrap()
        .automation_execution_id()
        .unwrap()
        .to_owned();
    let ex = e2e::ssm_execution(&ssm, &id).await;
    // The run echoes its TargetLocations; each step is one account and Region, in its TargetLocation.
    assert_eq!(ex.target_locations().len(), 1);
    assert_eq!(ex.target_locations()[0].accounts(), accounts.as_slice());
    let mut places = BTreeSet::new();
    for step in ex.step_executions() {
        let l = step
            .target_location()
            .expect("a location step has its TargetLocation");
        assert_eq!((l.accounts().len(), l.regions().len()), (1, 1), "{l:?}");
        assert_eq!(l.target_location_max_concurrency(), Some("6"));
        assert!(!step.inputs().is_some_and(|i| i.contains_key("TargetLocation")));
        places.insert(format!("{}/{}", l.accounts()[0], l.regions()[0]));
    }
    assert_eq!(places.len(), 6, "{places:?}");
    // Listed as CrossAccount, and found by that type only.
    let of_type = |t: &'static str| {
        let (ssm, id) = (ssm.clone(), id.clone());
        async move {
            ssm.describe_automation_executions()
                .filters(
                    aws_sdk_ssm::types::AutomationExecutionFilter::builder()
                        .key(aws_sdk_ssm::types::AutomationExecutionFilterKey::AutomationType)
                        .values(t)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap()
                .automation_execution_metadata_list()
                .iter()
                .filter(|m| m.automation_execution_id() == Some(id.as_str()))
                .map(|m| m.automation_type().map(|t| t.as_str().to_owned()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        of_type("CrossAccount").await,
        vec![Some("CrossAccount".to_owned())]
    );
    assert!(of_type("Local").await.is_empty());
    // DescribeAutomationStepExecutions takes pages of 1 to 50, as the model says.
    for bad in [0, 51] {
        let err = ssm
            .describe_automation_step_executions()
            .automation_execution_id(&id)
            .max_results(bad)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            aws_sdk_ssm::error::ProvideErrorMetadata::code(&err),
            Some("ValidationException"),
            "MaxResults {bad}"
        );
    }
}
