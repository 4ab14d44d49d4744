//! Crash safety of the real binary: a console killed at any point of a start (before sending it, after
//! SSM accepted it but before the ID was stored, mid-request by SIGKILL, after acknowledging it) ends
//! up, after a restart, with exactly one execution and one complete record. The sandbox runs in this
//! test process, so it outlives the console like AWS does.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Console {
    child: Child,
    base: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `imds-console serve` on a random port against `sandbox_url`; returns once it listens.
fn console(data_dir: &std::path::Path, sandbox_url: &str, crash_at: Option<&str>) -> Console {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imds-console"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--poll-ms",
        "100",
        "--ssm-start-rate",
        "50",
        "--ssm-read-rate",
        "50",
        // A start the crash left unclear is sent again a second after SSM's list did not show it.
        "--unclear-start-wait-secs",
        "1",
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .args(["--sandbox-url", sandbox_url])
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    match crash_at {
        Some(point) => cmd.env("IMDS_CONSOLE_CRASH_AT", point),
        None => cmd.env_remove("IMDS_CONSOLE_CRASH_AT"),
    };
    let mut child = cmd.spawn().expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the console says where it listens")
            .expect("readable");
        if let Some(url) = line.split(" is at ").nth(1) {
            break url.trim().to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Console { child, base }
}

/// An API token for the first admin (created by the first start), made with the CLI.
pub(crate) fn admin_token(data_dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_imds-console"))
        .args(["token", "create", "--user", "admin", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("token create runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub(crate) fn client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn sandbox() -> (sandbox::Sandbox, String) {
    let config = sandbox::SandboxConfig {
        fleet_size: 20,
        speed: 300.0,
        ..sandbox::SandboxConfig::default()
    };
    let sb = sandbox::Sandbox::start(config).expect("sandbox");
    let addr = sb.serve("127.0.0.1:0".parse().unwrap()).await.expect("serve");
    (sb, format!("http://{addr}"))
}

/// POSTs a start for one instance (EnforceIMDSv2 defaults to required).
async fn start_run(http: &reqwest::Client, base: &str, id: &str) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{base}/api/v1/executions"))
        .json(&json!({"parameters": {"InstanceId": id}}))
        .send()
        .await
}

async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON reply")
}

async fn quiet_instance(http: &reqwest::Client, base: &str) -> String {
    let list: Value = get_json(http, format!("{base}/api/v1/instances")).await;
    list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["region"] == "us-east-1"
                && i["state"] == "running"
                && i["metadata"]["http_endpoint"] == "enabled"
                && i["imdsv1_calls"].as_u64().unwrap_or(0) == 0
        })
        .expect("an instance")["instance_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for the restarted console to show exactly one run, finished, with a complete record.
async fn exactly_one_complete_run(http: &reqwest::Client, base: &str, sb: &sandbox::Sandbox) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let audit: Value = get_json(http, format!("{base}/api/v1/audit")).await;
        let records = audit.as_array().unwrap();
        assert_eq!(records.len(), 1, "one record: {audit}");
        let r = &records[0];
        if r["status"] == "Success" {
            assert_eq!(
                sb.execution_ids(),
                vec![r["execution_id"].as_str().unwrap().to_owned()],
                "one execution"
            );
            assert!(r["client_token"].as_str().is_some_and(|t| t.len() == 36));
            assert!(r["prior_options"]
                .as_str()
                .is_some_and(|p| p.contains("http_tokens")));
            assert!(r["outputs"]
                .as_str()
                .is_some_and(|o| o.contains("describeMetadataOptions.IMDSv2")));
            let page: Value = get_json(http, format!("{base}/api/v1/executions")).await;
            assert_eq!(page["executions"].as_array().unwrap().len(), 1);
            return;
        }
        assert!(Instant::now() < deadline, "the run never completed: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn crash_during_a_start(point: &str) {
    let (sb, url) = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = console(dir.path(), &url, Some(point));
    let http = client(&admin_token(dir.path()));
    let id = quiet_instance(&http, &first.base).await;
    let reply = start_run(&http, &first.base, &id).await;
    assert!(reply.is_err(), "the console died mid-request at {point}");
    let status = first.child.wait().unwrap();
    assert!(!status.success(), "aborted at {point}");
    let expected_before = usize::from(point == "after-start");
    assert_eq!(
        sb.execution_ids().len(),
        expected_before,
        "executions in SSM before the restart"
    );

    let second = console(dir.path(), &url, None);
    exactly_one_complete_run(&http, &second.base, &sb).await;
}

/// The default and latest version of a launch template, as EC2 says.
async fn template_versions(url: &str, template_id: &str) -> (i64, i64) {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(backend::aws::http_client())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_credential_types::Credentials::from_keys(
            "AKIDTEST", "secret", None,
        ))
        .load()
        .await;
    let out = aws_sdk_ec2::Client::new(&conf)
        .describe_launch_templates()
        .launch_template_ids(template_id)
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    let t = &out.launch_templates()[0];
    (
        t.default_version_number().unwrap(),
        t.latest_version_number().unwrap(),
    )
}

/// A source fix killed after its record (or after its template version was made) is sent again at
/// restart and ends with exactly one new version, made the default, and the record applied.
async fn crash_during_a_source_fix(point: &str) {
    let (_sb, url) = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = console(dir.path(), &url, Some(point));
    let http = client(&admin_token(dir.path()));
    let sources: Value = get_json(&http, format!("{}/api/v1/sources", first.base)).await;
    let web = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "launch_template" && s["name"] == "web" && s["region"] == "us-east-1")
        .expect("the web template")
        .clone();
    let template = web["resource_id"].as_str().unwrap();
    let reply = http
        .post(format!(
            "{}/api/v1/sources/{}/fix",
            first.base,
            web["id"].as_str().unwrap()
        ))
        .json(&json!({"override_reason": "crash test of a source fix"}))
        .send()
        .await;
    if let Ok(r) = reply {
        panic!(
            "the console answered at {point}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    assert!(!first.child.wait().unwrap().success());
    let made = usize::from(point == "source-fix-version-created") as i64;
    assert_eq!(
        template_versions(&url, template).await,
        (1, 1 + made),
        "before the restart"
    );

    let second = console(dir.path(), &url, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    let fix = loop {
        let fixes: Value = get_json(&http, format!("{}/api/v1/sources/fixes", second.base)).await;
        let fixes = fixes["fixes"].as_array().unwrap().clone();
        assert_eq!(fixes.len(), 1, "one record: {fixes:?}");
        if fixes[0]["status"] != "sending" {
            break fixes[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the fix was never sent again: {fixes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(fix["status"], "applied", "{fix}");
    assert_eq!(fix["applied"]["default_version"], 2, "{fix}");
    assert_eq!(
        template_versions(&url, template).await,
        (2, 2),
        "sent once at restart"
    );
}

/// Polls a plan until `done` holds (30 s at most).
async fn plan_until(http: &reqwest::Client, base: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let plan = get_json(http, format!("{base}/api/v1/plans/{id}")).await;
        if done(&plan) {
            return plan;
        }
        assert!(Instant::now() < deadline, "the plan never got there: {plan:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_plan_killed_mid_bake_resumes_after_a_restart_and_starts_each_wave_once() {
    let (sb, url) = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let first = console(dir.path(), &url, None);
    let http = client(&admin_token(dir.path()));
    let wave = |name: &str, bake: u32| {
        json!({"name": name, "region": "us-east-1", "targets": {"tag": {"key": "Env", "value": name}},
               "bake_minutes": bake, "max_concurrency": "5",
               "override": {"reason": "restart test of a plan"}})
    };
    let created: Value = http
        .post(format!("{}/api/v1/plans", first.base))
        .json(
            &json!({"name": "survives restarts", "waves": [wave("dev", 3), wave("staging", 0)],
                      "halt": {"rejected_calls": 1_000_000}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["plan_id"].as_str().expect("created").to_owned();
    http.post(format!("{}/api/v1/plans/{id}/start", first.base))
        .send()
        .await
        .unwrap();
    // Three sandbox minutes at the console's --sandbox-speed (30): six seconds of bake.
    let baking = plan_until(&http, &first.base, &id, |p| p["waves"][0]["status"] == "baking").await;
    drop(first);
    assert_eq!(
        sb.execution_ids().len(),
        1,
        "only the first wave ran before the restart"
    );

    let second = console(dir.path(), &url, None);
    let done = plan_until(&http, &second.base, &id, |p| p["status"] == "completed").await;
    assert_eq!(sb.execution_ids().len(), 2, "each wave started once: {done:#}");
    let bake_until = baking["waves"][0]["bake_until"].as_str().unwrap();
    let staging_started = done["waves"][1]["started_at"].as_str().unwrap();
    assert!(
        staging_started >= bake_until,
        "staging waited out the bake: {done:#}"
    );
    assert_eq!(
        done["waves"][0]["execution_id"],
        baking["waves"][0]["execution_id"]
    );
}

/// A console killed while starting a plan's first wave (after its run's record, or after SSM
/// accepted it) ends, after a restart, with that wave's one run adopted and the plan completed.
async fn crash_during_a_plan_wave(point: &str) {
    let (sb, url) = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = console(dir.path(), &url, Some(point));
    let http = client(&admin_token(dir.path()));
    let created: Value = http
        .post(format!("{}/api/v1/plans", first.base))
        .json(&json!({"name": "crash test", "halt": {"rejected_calls": 1_000_000},
            "waves": [{"name": "dev", "region": "us-east-1", "targets": {"tag": {"key": "Env", "value": "dev"}},
                       "override": {"reason": "crash test of a plan wave"}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["plan_id"].as_str().expect("created").to_owned();
    let reply = http
        .post(format!("{}/api/v1/plans/{id}/start", first.base))
        .send()
        .await;
    assert!(reply.is_err(), "the console died starting the wave at {point}");
    assert!(!first.child.wait().unwrap().success());

    let second = console(dir.path(), &url, None);
    let done = plan_until(&http, &second.base, &id, |p| p["status"] == "completed").await;
    assert_eq!(
        sb.execution_ids(),
        vec![done["waves"][0]["execution_id"].as_str().unwrap().to_owned()],
        "one run for the wave: {done:#}"
    );
}

#[tokio::test]
async fn a_plan_killed_after_recording_its_wave_s_run_adopts_that_run_at_restart() {
    crash_during_a_plan_wave("after-record").await;
}

#[tokio::test]
async fn a_plan_killed_after_ssm_accepted_its_wave_s_run_adopts_that_run_at_restart() {
    crash_during_a_plan_wave("after-start").await;
}

#[tokio::test]
async fn a_source_fix_killed_after_its_record_is_sent_once_at_restart() {
    crash_during_a_source_fix("source-fix-recorded").await;
}

#[tokio::test]
async fn a_source_fix_killed_after_its_new_version_makes_no_second_version_at_restart() {
    crash_during_a_source_fix("source-fix-version-created").await;
}

#[tokio::test]
async fn killed_after_recording_but_before_sending_the_run_is_sent_once_after_restart() {
    crash_during_a_start("after-record").await;
}

#[tokio::test]
async fn killed_after_ssm_accepted_but_before_storing_the_id_the_run_is_not_duplicated() {
    crash_during_a_start("after-start").await;
}

#[tokio::test]
async fn sigkill_while_the_start_is_in_flight_loses_and_duplicates_nothing() {
    let (sb, url) = sandbox().await;
    // The start takes a while to answer, so the kill lands while it is in flight.
    sb.set_faults(sandbox::Faults {
        rules: vec![sandbox::FaultRule {
            operation: "ssm:StartAutomationExecution".into(),
            latency_ms: 1500,
            ..Default::default()
        }],
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut first = console(dir.path(), &url, None);
    let http = client(&admin_token(dir.path()));
    let id = quiet_instance(&http, &first.base).await;
    let post = {
        let http = http.clone();
        let url = format!("{}/api/v1/executions", first.base);
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({"parameters": {"InstanceId": id}}))
                .send()
                .await
        })
    };
    // Kill once the start has reached SSM and is waiting out its latency, not after a guessed delay.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sb
        .calls_since(0)
        .iter()
        .any(|c| c.operation == "ssm:StartAutomationExecution")
    {
        assert!(Instant::now() < deadline, "the start never reached the sandbox");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.child.kill().expect("SIGKILL");
    first.child.wait().unwrap();
    assert!(post.await.unwrap().is_err());
    sb.set_faults(sandbox::Faults::default());

    let second = console(dir.path(), &url, None);
    exactly_one_complete_run(&http, &second.base, &sb).await;
}

#[tokio::test]
async fn killed_after_acknowledging_the_run_is_watched_to_the_end_after_restart() {
    let (sb, url) = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = console(dir.path(), &url, None);
    let http = client(&admin_token(dir.path()));
    let id = quiet_instance(&http, &first.base).await;
    let reply = start_run(&http, &first.base, &id).await.unwrap();
    assert_eq!(reply.status(), 201);
    first.child.kill().expect("SIGKILL");
    first.child.wait().unwrap();

    let second = console(dir.path(), &url, None);
    exactly_one_complete_run(&http, &second.base, &sb).await;
}

#[test]
fn the_account_commands_work_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imds-console"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&["user", "add", "carol", "--role", "operator"], "short\n");
    assert!(!ok && err.contains("at least 12"), "{err}");
    let (ok, out, _) = run(
        &["user", "add", "carol", "--role", "operator"],
        "a-good-long-password\n",
    );
    assert!(ok && out.contains("added carol (operator)"), "{out}");
    let (ok, out, _) = run(&["user", "list"], "");
    assert!(ok && out.contains("carol\toperator\tenabled"), "{out}");
    let (ok, token, _) = run(
        &[
            "token",
            "create",
            "--user",
            "carol",
            "--role",
            "viewer",
            "--name",
            "nightly report",
            "--expires-in-days",
            "30",
        ],
        "",
    );
    assert!(ok && token.trim().starts_with("imds_"), "{token}");
    let (ok, _, err) = run(
        &["token", "create", "--user", "carol", "--expires-in-days", "0"],
        "",
    );
    assert!(!ok && err.contains("--expires-in-days: 1 to 365 days"), "{err}");
    let (ok, _, err) = run(&["token", "create", "--user", "carol", "--role", "admin"], "");
    assert!(!ok && err.contains("at most the role operator"), "{err}");
    let (ok, out, _) = run(&["token", "revoke", "1"], "");
    assert!(ok && out.contains("revoked token 1"), "{out}");
    let (ok, out, _) = run(&["token", "list"], "");
    assert!(
        ok && out.contains("1\tnightly report\tcarol\tviewer\trevoked\texpires "),
        "{out}"
    );
    let (ok, _, _) = run(&["user", "disable", "carol"], "");
    assert!(ok);
    let (ok, out, _) = run(&["user", "enable", "carol"], "");
    assert!(ok && out.contains("enabled carol"), "{out}");
    let (ok, out, _) = run(&["user", "role", "carol", "admin"], "");
    assert!(ok && out.contains("carol is now admin"), "{out}");
    let (ok, _, err) = run(&["user", "disable", "carol"], "");
    assert!(!ok && err.contains("last enabled admin"), "{err}");
    // The standalone sandbox refuses to listen beyond loopback unless told to.
    let (ok, _, err) = run(&["sandbox", "--listen", "0.0.0.0:0"], "");
    assert!(!ok && err.contains("not a loopback address"), "{err}");
}
