//! The runbook's own EC2 calls spend the account's request budget, as in AWS: when EC2 throttles one,
//! the console reports what Automation made of it under each of the sandbox's `ec2_throttled_step`
//! choices (the step fails once its attempts are spent, or it waits inside the step).

use e2e::{spawn_app_with, AppOptions, TestApp};
use sandbox::{Ec2RequestBudget, Ec2ThrottledStep, Faults, TokenBucket};
use serde_json::json;
use std::time::Duration;

/// The default budget, with the mutating actions' bucket (ModifyInstanceMetadataOptions) cut to one
/// call refilled at `refill` a second.
fn one_modify(refill: f64) -> Ec2RequestBudget {
    Ec2RequestBudget {
        mutating: TokenBucket {
            capacity: 1.0,
            refill_per_second: refill,
        },
        ..Ec2RequestBudget::default()
    }
}

/// Starts the runbook on one instance through the console; returns the execution ID.
async fn start(app: &TestApp, instance: &str) -> String {
    let body = json!({"parameters": {"InstanceId": instance, "EnforceIMDSv2": "required"}});
    let (status, started) = app.post("/executions", &body).await;
    assert_eq!(status, 201, "{started}");
    started["execution_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_run_whose_change_ec2_throttles_fails_or_waits_as_automation_does() {
    for choice in [Ec2ThrottledStep::FailAttempt, Ec2ThrottledStep::RetryInStep] {
        let app = spawn_app_with(AppOptions {
            fleet: 60,
            ..AppOptions::default()
        })
        .await;
        let quiet = app.quiet("us-east-1").await;
        let faults = Faults {
            ec2_request_budget: one_modify(0.01),
            ec2_throttled_step: choice,
            ..app.sandbox.faults()
        };
        app.sandbox.set_faults(faults.clone());
        // The first run spends the bucket's one ModifyInstanceMetadataOptions.
        let first = start(&app, &quiet[0]).await;
        let done = app.wait_done(&first, Duration::from_secs(30)).await;
        assert_eq!(done["summary"]["status"], "Success", "{choice:?}: {done}");
        let second = start(&app, &quiet[1]).await;
        match choice {
            Ec2ThrottledStep::FailAttempt => {
                let done = app.wait_done(&second, Duration::from_secs(30)).await;
                assert_eq!(done["summary"]["status"], "Failed", "{done}");
                assert!(
                    done.to_string().contains("RequestLimitExceeded"),
                    "the console shows EC2's refusal: {done}"
                );
            }
            Ec2ThrottledStep::RetryInStep => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let (_, view) = app.get(&format!("/executions/{second}")).await;
                assert_eq!(view["summary"]["status"], "InProgress", "waiting on EC2: {view}");
                app.sandbox.set_faults(Faults {
                    ec2_request_budget: one_modify(1_000.0),
                    ..faults
                });
                let done = app.wait_done(&second, Duration::from_secs(30)).await;
                assert_eq!(done["summary"]["status"], "Success", "{done}");
            }
        }
    }
}
