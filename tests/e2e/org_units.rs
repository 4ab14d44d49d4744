//! Runs that name an organizational unit, against nested units and the inactive accounts under them:
//! the console reaches the child unit's accounts it previews, and never the suspended one, whatever
//! SSM does with an inactive account (the sandbox's `inactive_accounts` choice): it sends SSM the
//! active accounts it resolved, not the unit.

use e2e::{spawn_app_with, AppOptions};
use sandbox::{Faults, InactiveAccounts};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test]
async fn a_unit_run_reaches_its_child_units_accounts_and_no_inactive_one_under_either_choice() {
    for choice in [InactiveAccounts::Skip, InactiveAccounts::FailLocation] {
        let app = spawn_app_with(AppOptions {
            fleet: 300,
            accounts: 4,
            ..AppOptions::default()
        })
        .await;
        app.sandbox.set_faults(Faults {
            inactive_accounts: choice,
            ..app.sandbox.faults()
        });
        let members = sandbox::account_ids(4);
        // Workloads holds member-1; Production inside it holds member-3 and the suspended member.
        let body = json!({
            "parameters": {},
            "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}},
                             "max_concurrency": "10", "max_errors": "100%"},
            "target_locations": [{"accounts": ["ou-sand-workloads"], "regions": ["us-east-1"],
                                  "target_location_max_concurrency": "3"}],
            "override": {"reason": "Workloads unit drill, child units included."}
        });
        let (status, preview) = app.post("/executions/preview", &body).await;
        assert_eq!(status, 200, "{preview}");
        let previewed: BTreeSet<&str> = preview["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["account"].as_str().unwrap())
            .collect();
        assert_eq!(
            previewed,
            BTreeSet::from([members[1].as_str(), members[3].as_str()]),
            "{choice:?}: {preview}"
        );
        let (status, started) = app.post("/executions", &body).await;
        assert_eq!(status, 201, "{choice:?}: {started}");
        let done = app
            .wait_done(started["execution_id"].as_str().unwrap(), Duration::from_secs(60))
            .await;
        assert_eq!(
            done["rate_control"]["progress"]["total"], 2,
            "{choice:?}: the two active members, one Region: {done}"
        );
        assert_eq!(done["summary"]["status"], "Success", "{choice:?}: {done}");
    }
}
