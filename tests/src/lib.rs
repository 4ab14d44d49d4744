//! Helpers for the end-to-end suites: start the real server (with its embedded sandbox) on a random
//! port, talk to it over HTTP, and build real AWS SDK clients pointed at a sandbox.

use backend::auth::accounts::Accounts;
use serde_json::Value;
use std::time::{Duration, Instant};

pub use backend::AppState;

pub mod postgres;

/// A running console with its sandbox, in a throwaway data directory.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub sandbox: sandbox::Sandbox,
    pub data_dir: tempfile::TempDir,
    pub admin_token: String,
}

/// How to start a test console.
#[derive(Clone, Debug)]
pub struct AppOptions {
    pub fleet: usize,
    /// Accounts of the sandbox's organisation (1: the console's own account only).
    pub accounts: usize,
    pub speed: f64,
    pub poll_ms: u64,
    pub read_rate: f64,
    pub start_rate: f64,
    pub static_dir: Option<String>,
    pub discover_secs: u64,
    /// How long an unclear start waits for SSM's list before it is sent again (1 s: the sandbox
    /// lists at once unless a test makes it lag).
    pub unclear_start_wait_secs: u64,
    /// More `serve` flags.
    pub extra_args: Vec<String>,
}

impl Default for AppOptions {
    fn default() -> Self {
        // Fast enough that a run takes well under a second, slow enough to watch it move.
        AppOptions {
            fleet: 40,
            accounts: 1,
            speed: 300.0,
            poll_ms: 100,
            read_rate: 100.0,
            start_rate: 50.0,
            static_dir: None,
            discover_secs: 30,
            unclear_start_wait_secs: 1,
            extra_args: Vec::new(),
        }
    }
}

impl AppOptions {
    /// These options, with webhooks allowed to reach loopback (where the tests' receivers listen).
    pub fn with_local_webhooks(mut self) -> AppOptions {
        self.extra_args.push("--webhook-allow".into());
        self.extra_args.push("127.0.0.1".into());
        self
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(opts: AppOptions) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    spawn_app_in(opts, data_dir).await
}

/// The PostgreSQL database of a test's data directory: made at its first start, the same after a
/// restart.
async fn database_of(dir: &std::path::Path) -> String {
    let file = dir.join("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return url;
    }
    let server =
        postgres::server().expect("IMDS_CONSOLE_E2E_STORE=postgres needs IMDS_CONSOLE_TEST_POSTGRES");
    let url = postgres::fresh_database(&server).await;
    std::fs::write(&file, &url).expect("note the test database");
    url
}

/// Starts a console on an existing data directory (to test restarts).
pub async fn spawn_app_in(opts: AppOptions, data_dir: tempfile::TempDir) -> TestApp {
    let mut argv: Vec<String> = vec![
        "imds-console".into(),
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.path().display().to_string(),
        "--sandbox-fleet".into(),
        opts.fleet.to_string(),
        "--sandbox-accounts".into(),
        opts.accounts.to_string(),
        "--sandbox-speed".into(),
        opts.speed.to_string(),
        "--poll-ms".into(),
        opts.poll_ms.to_string(),
        "--ssm-read-rate".into(),
        opts.read_rate.to_string(),
        "--ssm-start-rate".into(),
        opts.start_rate.to_string(),
        "--discover-secs".into(),
        opts.discover_secs.to_string(),
        "--unclear-start-wait-secs".into(),
        opts.unclear_start_wait_secs.to_string(),
        // The tests act as the first admin, also when single sign-on is configured.
        "--bootstrap-admin".into(),
    ];
    argv.extend(opts.extra_args.iter().cloned());
    if postgres::for_every_console() && !argv.iter().any(|a| a == "--database-url") {
        argv.push("--database-url".into());
        argv.push(database_of(data_dir.path()).await);
    }
    if let Some(dir) = &opts.static_dir {
        argv.push("--static-dir".into());
        argv.push(dir.clone());
    }
    let cli = <backend::config::Cli as clap::Parser>::parse_from(argv);
    let backend::config::Command::Serve(args) = cli.command else {
        unreachable!("serve")
    };
    let state = backend::startup::build_state(&args).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let sandbox = state.sandbox.clone().expect("embedded sandbox");
    // Tests act as an admin through an API token, the way a script would.
    let (_, admin_token, _, _) = Accounts(&state.store)
        .create_token("admin", None, Some("tests"), None, true)
        .await
        .expect("admin token");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {admin_token}").parse().expect("header"),
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client");
    tokio::spawn(backend::run(listener, state.clone()));
    TestApp {
        base,
        http,
        state,
        sandbox,
        data_dir,
        admin_token,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .expect("PUT");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The whole fleet as the API shows it, every page.
    pub async fn instances(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, body) = self.get(&format!("/instances?limit=500&cursor={cursor}")).await;
            assert_eq!(status, 200, "{body}");
            all.extend(body["instances"].as_array().cloned().unwrap_or_default());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => return all,
            }
        }
    }

    /// Running instances in `region` whose options satisfy `pred`.
    pub async fn pick(&self, region: &str, pred: impl Fn(&Value) -> bool) -> Vec<String> {
        self.instances()
            .await
            .into_iter()
            .filter(|i| i["region"] == region && i["state"] == "running" && pred(i))
            .map(|i| i["instance_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Running instances of `region` where enforcing breaks nobody (no IMDSv1 calls in the window) and
    /// whose endpoint is on, so the readiness check lets a run through.
    pub async fn quiet(&self, region: &str) -> Vec<String> {
        self.pick(region, |i| {
            i["metadata"]["http_endpoint"] == "enabled" && i["imdsv1_calls"].as_u64().unwrap_or(0) == 0
        })
        .await
    }

    /// A running us-east-1 instance tagged `Env=env` whose software does not call IMDSv1.
    pub async fn quiet_tagged(&self, env: &str) -> String {
        self.instances()
            .await
            .into_iter()
            .find(|i| {
                i["region"] == "us-east-1"
                    && i["tags"]["Env"] == env
                    && i["state"] == "running"
                    && i["imdsv1_calls"].as_u64().unwrap_or(0) == 0
            })
            .unwrap_or_else(|| panic!("a quiet {env} instance in us-east-1"))["instance_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Polls an execution until its status is terminal (or the deadline passes) and returns its detail.
    /// Enforces IMDSv2 on one quiet instance of us-east-1 and waits for the run to end: a finished run
    /// for the pages and exports to show. Returns its execution ID.
    pub async fn finished_run(&self) -> String {
        let id = self.quiet("us-east-1").await.remove(0);
        let (status, body) = self
            .post(
                "/executions",
                &serde_json::json!({"parameters": {"InstanceId": id}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let exec = body["execution_id"].as_str().unwrap_or_default().to_owned();
        self.wait_done(&exec, Duration::from_secs(30)).await;
        exec
    }

    pub async fn wait_done(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.get(&format!("/executions/{id}")).await;
            assert_eq!(status, 200, "{body}");
            let s = body["summary"]["status"].as_str().unwrap_or_default().to_owned();
            if shared::RunStatus::parse(&s).is_terminal() {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} still {s} after {within:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signs in with a password and returns the session cookie (`imds_session=...`).
    pub async fn session(&self, user: &str, password: &str) -> String {
        let resp = reqwest::Client::new()
            .post(self.url("/auth/login"))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), 200, "login of {user}");
        let cookie = resp.headers()["set-cookie"].to_str().expect("cookie").to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        cookie.split(';').next().expect("name=value").to_owned()
    }

    /// Adds a user through the API (as the admin) and returns their password, `NAME-password-123`.
    pub async fn add_user(&self, name: &str, role: &str) -> String {
        let password = format!("{name}-password-123");
        let (status, body) = self
            .post(
                "/users",
                &serde_json::json!({"name": name, "role": role, "password": password}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        password
    }

    /// Adds an operator limited to `accounts` through the API and signs them in; returns the cookie.
    pub async fn limited_operator(&self, name: &str, accounts: &[&str]) -> String {
        let password = format!("{name}-password-123");
        let (status, body) = self
            .post(
                "/users",
                &serde_json::json!({"name": name, "role": "operator", "password": password, "accounts": accounts}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        self.session(name, &password).await
    }

    /// Adds a user who then chooses their own password (the admin chose the first) and signs in with
    /// it: a session that may approve. Returns the session cookie.
    pub async fn own_session(&self, name: &str, role: &str) -> String {
        let first = self.add_user(name, role).await;
        let cookie = self.session(name, &first).await;
        let own = format!("{name}-own-choice-42");
        let resp = reqwest::Client::new()
            .post(self.url("/auth/password"))
            .header("cookie", &cookie)
            .header("origin", &self.base)
            .json(&serde_json::json!({"current_password": first, "new_password": own}))
            .send()
            .await
            .expect("password change");
        assert_eq!(resp.status(), 200, "{name} chooses a password");
        self.session(name, &own).await
    }

    /// Forgets the fleet cache so the next read asks EC2 again.
    /// The audit record with this ID (null when there is none yet).
    pub async fn audit_record(&self, record_id: i64) -> Value {
        let (status, body) = self.get("/audit").await;
        assert_eq!(status, 200, "{body}");
        body.as_array()
            .into_iter()
            .flatten()
            .find(|r| r["record_id"] == record_id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Polls the audit record until `done` holds; panics with it after `within`.
    pub async fn audit_record_until(
        &self,
        record_id: i64,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let r = self.audit_record(record_id).await;
            if done(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "never got there: {r}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The plan as the API gives it, decoded into the wire type.
    pub async fn plan_view(&self, id: &str) -> shared::plans::PlanView {
        let (status, plan) = self.get(&format!("/plans/{id}")).await;
        assert_eq!(status, 200, "{plan}");
        serde_json::from_value(plan).expect("a PlanView")
    }

    /// Polls the plan, typed, until `done` holds; panics with the plan after `within`.
    pub async fn plan_view_until(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&shared::plans::PlanView) -> bool,
    ) -> shared::plans::PlanView {
        let deadline = Instant::now() + within;
        loop {
            let plan = self.plan_view(id).await;
            if done(&plan) {
                return plan;
            }
            assert!(Instant::now() < deadline, "the plan never got there: {plan:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn refresh_fleet(&self) {
        self.state.invalidate_fleet().await;
    }

    /// Reads the fleet and its IMDSv1 usage again at the next request, as after both caches expire.
    pub async fn reread_fleet_and_usage(&self) {
        self.state.usage.forget().await;
        self.state.invalidate_fleet().await;
    }
}

/// Reads a Server-Sent Events stream until what arrived so far satisfies `done`; panics after `within`
/// or when the stream ends first. Returns everything read.
pub async fn read_events_until(
    resp: &mut reqwest::Response,
    done: impl Fn(&str) -> bool,
    within: std::time::Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = String::new();
    while !done(&seen) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("the events did not arrive within {within:?}; got: {seen}"))
            .expect("the stream reads")
            .unwrap_or_else(|| panic!("the stream ended; got: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

/// The fields a 400 `ValidationError` names, in order.
pub fn error_fields(body: &Value) -> Vec<&str> {
    body["error"]["fields"]
        .as_array()
        .map(|fields| fields.iter().filter_map(|f| f["field"].as_str()).collect())
        .unwrap_or_default()
}

/// Real SDK clients pointed at a sandbox URL, with static credentials. `attempts` 1 turns retries off.
pub async fn sdk_config(url: &str, region: &str, attempts: u32) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(url)
        .credentials_provider(aws_credential_types::Credentials::from_keys(
            "AKIDTEST",
            "test-secret",
            None,
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts))
        .load()
        .await
}

/// A standalone sandbox on a random loopback port.
pub async fn standalone_sandbox(config: sandbox::SandboxConfig) -> (sandbox::Sandbox, String) {
    let sb = sandbox::Sandbox::start(config).expect("sandbox");
    let addr = sb
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    (sb, format!("http://{addr}"))
}

/// Now, in epoch milliseconds (the sandbox's call log uses them).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// A signed-in person, as a browser sends their requests (session cookie and the console's Origin).
pub struct Person {
    pub name: String,
    pub cookie: String,
}

impl Person {
    /// A new user of `role` who has chosen their own password and signed in with it: their session
    /// may approve.
    pub async fn new(app: &TestApp, name: &str, role: &str) -> Person {
        Person {
            name: name.to_owned(),
            cookie: app.own_session(name, role).await,
        }
    }

    async fn send(&self, app: &TestApp, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .request(method, app.url(path))
            .header("cookie", &self.cookie)
            .header("origin", &app.base)
            .json(body)
            .send()
            .await
            .expect("request");
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
        self.send(app, reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, app: &TestApp, path: &str, body: &Value) -> u16 {
        self.send(app, reqwest::Method::PUT, path, body).await.0
    }
}

/// An automation execution as SSM's GetAutomationExecution gives it (for tests that read the
/// sandbox directly through the SDK).
pub async fn ssm_execution(ssm: &aws_sdk_ssm::Client, id: &str) -> aws_sdk_ssm::types::AutomationExecution {
    ssm.get_automation_execution()
        .automation_execution_id(id)
        .send()
        .await
        .expect("GetAutomationExecution")
        .automation_execution()
        .cloned()
        .expect("an execution")
}
