//! The security review's findings (issue 10), each as the request that showed it: identity headers
//! (ALB mode, duplicates, groups), sign-in throttling and the bounded audit of it, CSV injection,
//! origins, cookies, headers, the last admin, viewers' lookups, event streams after sign-out, the
//! sandbox and web pages, and what the audit trail records.

use e2e::{now_ms, sdk_config, spawn_app, spawn_app_with, standalone_sandbox, AppOptions, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// The auth log, newest first, as the admin sees it (`query` without `?`).
async fn auth_log(app: &TestApp, query: &str) -> Value {
    let (status, page) = app.get(&format!("/audit/auth?{query}")).await;
    assert_eq!(status, 200, "{page}");
    page
}

fn proxy_app(extra: &[&str]) -> AppOptions {
    let mut args = vec!["--trusted-proxy".to_owned(), "127.0.0.1".to_owned()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    AppOptions {
        extra_args: args,
        ..AppOptions::default()
    }
}

/// A sign-in as a client behind the trusted proxy at `client`.
async fn login_from(app: &TestApp, client: &str, user: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", client)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn in_alb_mode_plain_proxy_headers_establish_no_identity() {
    let keys = tempfile::tempdir().unwrap();
    let app = spawn_app_with(proxy_app(&[
        "--alb-arn",
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/imds/1",
        "--alb-key-dir",
        &keys.path().display().to_string(),
        "--sso-group-role",
        "platform=admin",
    ]))
    .await;
    let resp = reqwest::Client::new()
        .get(app.url("/auth/me"))
        .header("x-forwarded-user", "mallory")
        .header("x-forwarded-groups", "platform")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "only a verified ALB token may sign someone in"
    );
}

#[tokio::test]
async fn an_identity_header_or_session_cookie_sent_twice_is_refused() {
    let app = spawn_app_with(proxy_app(&["--sso-group-role", "platform=operator"])).await;
    let client = reqwest::Client::new();
    let resp = client
        .get(app.url("/auth/me"))
        .header("x-forwarded-user", "mallory")
        .header("x-forwarded-user", "alice")
        .header("x-forwarded-groups", "platform")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "DuplicateIdentityHeader");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-forwarded-user"));

    let resp = client
        .get(app.url("/executions"))
        .header("authorization", format!("Bearer {}", app.admin_token))
        .header("authorization", "Bearer imds_other")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let pw = app.add_user("olga", "viewer").await;
    let cookie = app.session("olga", &pw).await;
    let resp = client
        .get(app.url("/executions"))
        .header(
            "cookie",
            format!("{cookie}; imds_session=chosen-by-a-sibling-site"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client
        .get(app.url("/executions"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the cookie once is fine");
}

#[tokio::test]
async fn groups_are_split_on_commas_only() {
    let app = spawn_app_with(proxy_app(&[
        "--sso-group-role",
        "platform=operator",
        "--sso-group-role",
        "readers=viewer",
    ]))
    .await;
    let me = |groups: &'static str| {
        reqwest::Client::new()
            .get(app.url("/auth/me"))
            .header("x-forwarded-user", "eve@example.com")
            .header("x-forwarded-groups", groups)
            .send()
    };
    assert_eq!(
        me("external platform").await.unwrap().status(),
        401,
        "the group \"external platform\" is not \"platform\""
    );
    let body: Value = me("external platform, readers")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["role"], "viewer");
}

#[tokio::test]
async fn a_guesser_behind_the_proxy_locks_only_themselves_and_the_owner_gets_in() {
    let app = spawn_app_with(proxy_app(&[])).await;
    let pw = app.add_user("dana", "operator").await;
    let attacker = "203.0.113.66";
    for _ in 0..5 {
        assert_eq!(
            login_from(&app, attacker, "dana", "wrong-guess-000")
                .await
                .status(),
            401
        );
    }
    let resp = login_from(&app, attacker, "dana", "wrong-guess-000").await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        login_from(&app, attacker, "dana", &pw).await.status(),
        429,
        "the guesser's own address cannot test the right password either"
    );
    assert_eq!(
        login_from(&app, attacker, "admin", "anything-at-all")
            .await
            .status(),
        429,
        "a locked address is locked for every user"
    );
    // The owner, elsewhere behind the same proxy, is not kept out.
    assert_eq!(login_from(&app, "198.51.100.7", "dana", &pw).await.status(), 200);

    let page = auth_log(&app, "kind=login-failed").await;
    let addresses: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        vec![attacker; 5],
        "the client's address, not the proxy's"
    );
    let log = auth_log(&app, "").await;
    assert!(!log.to_string().contains(&pw), "no password in the audit log");
}

#[tokio::test]
async fn a_sign_in_flood_writes_a_bounded_audit_that_pages() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    // An overlong name is refused before anything is checked or written.
    let resp = client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "x".repeat(10_000), "password": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["field"], "username");

    // 5 failures lock the address for 1 s, then 2 s, 4 s... 200 more attempts: whatever the machine's
    // speed (a lock may end mid-flood and let one more failure through), the throttled ones are one
    // counted event, not a row each.
    let mut throttled = 0;
    let mut failed = 0;
    for n in 0..205 {
        let status = client
            .post(app.url("/auth/login"))
            .json(&json!({"username": "admin", "password": format!("guess-{n}")}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        match status {
            429 => throttled += 1,
            401 => failed += 1,
            other => panic!("attempt {n}: {other}"),
        }
        if n < 5 {
            assert_eq!(status, 401, "attempt {n} is within the free ones");
        }
    }
    assert!(failed < 15, "{failed} attempts got through the doubling locks");
    let page = auth_log(&app, "kind=login-throttled").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["count"], throttled);
    assert_eq!(events[0]["subject"], "admin");

    // The view pages, so real events stay reachable however many there are.
    let all = auth_log(&app, "limit=1000").await;
    let total = all["events"].as_array().unwrap().len();
    assert!(all["next_cursor"].is_null());
    assert!(total <= failed + 5, "{total} rows for 206 attempts: {all}");
    let first = auth_log(&app, "limit=2").await;
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = auth_log(&app, &format!("limit=2&cursor={cursor}")).await;
    let ids = |p: &Value| -> Vec<i64> {
        p["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    assert!(
        ids(&second).iter().all(|id| ids(&first).iter().all(|f| f > id)),
        "older events on the next page"
    );
    assert_eq!(
        auth_log(&app, "user=admin&kind=login-failed").await["events"]
            .as_array()
            .unwrap()
            .len(),
        failed
    );
    let (status, _) = app.get("/audit/auth?limit=0").await;
    assert_eq!(status, 400);
    let (status, _) = app.get("/audit/auth?cursor=abc").await;
    assert_eq!(status, 400);
}

/// The run audit as its CSV export.
async fn audit_csv(app: &TestApp) -> String {
    let resp = app.http.get(app.url("/audit?format=csv")).send().await.unwrap();
    resp.text().await.unwrap()
}

#[tokio::test]
async fn a_formula_in_a_reason_is_text_in_the_csv_export() {
    let app = spawn_app().await;
    let user = app
        .pick("us-east-1", |i| i["imdsv1_calls"].as_u64().unwrap_or(0) > 0)
        .await
        .remove(0);
    let reason = "=HYPERLINK(\"http://evil.example\",\"open\")";
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": user}, "override": {"reason": reason}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let text = audit_csv(&app).await;
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let headers = rows.headers().unwrap().clone();
    let col = headers.iter().position(|h| h == "override_reason").unwrap();
    let row = rows.records().next().unwrap().unwrap();
    assert_eq!(&row[col], format!("'{reason}"));
    // Every cell is quoted, so a spreadsheet splitting on another separator still sees one cell.
    assert!(
        text.lines()
            .next()
            .unwrap()
            .split(',')
            .all(|h| h.starts_with('"') && h.ends_with('"')),
        "{text}"
    );

    // A formula after a separator a spreadsheet might split on (here `;`) is neutralised too.
    let other = app
        .pick("us-east-1", |i| i["imdsv1_calls"].as_u64().unwrap_or(0) > 0)
        .await
        .into_iter()
        .find(|i| *i != user)
        .unwrap();
    let sneaky = "reason ok;=cmd|' /C calc'!A0";
    let (status, body) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": other}, "override": {"reason": sneaky}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let text = audit_csv(&app).await;
    assert!(text.contains("reason ok;'=cmd|' /C calc'!A0"), "{text}");
    assert!(!text.contains(";=cmd"), "{text}");
    let (_, json_export) = app.get("/audit").await;
    assert!(
        json_export
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["override_reason"] == reason),
        "JSON keeps the exact text"
    );
}

#[tokio::test]
async fn the_cross_site_check_compares_scheme_host_and_port() {
    let app = spawn_app().await;
    let pw = app.add_user("owen", "operator").await;
    let cookie = app.session("owen", &pw).await;
    let id = app.quiet("us-east-1").await.remove(0);
    let post = |origin: String| {
        reqwest::Client::new()
            .post(app.url("/executions/preview"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .json(&json!({"parameters": {"InstanceId": id}}))
            .send()
    };
    let https_twin = app.base.replace("http://", "https://");
    assert_eq!(post(https_twin).await.unwrap().status(), 403);
    assert_eq!(post(app.base.clone()).await.unwrap().status(), 200);

    let public = spawn_app_with(AppOptions {
        extra_args: vec!["--public-url".into(), "https://imds.example.com".into()],
        ..AppOptions::default()
    })
    .await;
    let pw = public.add_user("owen", "operator").await;
    let cookie = public.session("owen", &pw).await;
    let id = public.quiet("us-east-1").await.remove(0);
    for (origin, status) in [("https://imds.example.com", 200), (public.base.as_str(), 403)] {
        let resp = reqwest::Client::new()
            .post(public.url("/executions/preview"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .json(&json!({"parameters": {"InstanceId": id}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "origin {origin}");
    }
}

#[tokio::test]
async fn the_last_enabled_admin_stays_and_users_can_be_enabled_again() {
    let app = spawn_app().await;
    let (status, body) = app.post("/users/admin/disable", &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "LastAdmin");
    let (status, _) = app.post("/users/admin/role", &json!({"role": "operator"})).await;
    assert_eq!(status, 409);
    let ada = app.add_user("ada", "admin").await;
    app.add_user("vic", "viewer").await;
    let (status, _) = app.post("/users/vic/disable", &json!({})).await;
    assert_eq!(status, 204);
    let (status, _) = app.post("/users/vic/enable", &json!({})).await;
    assert_eq!(status, 204);
    assert!(
        app.session("vic", "vic-password-123").await.contains('='),
        "vic signs in again"
    );
    let (status, _) = app.post("/users/nobody/enable", &json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = app.post("/users/admin/role", &json!({"role": "operator"})).await;
    assert_eq!(status, 204, "another admin exists now");
    // ada is now the last admin, and cannot disable herself either.
    let cookie = app.session("ada", &ada).await;
    let resp = reqwest::Client::new()
        .post(app.url("/users/ada/disable"))
        .header("cookie", cookie)
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
}

#[tokio::test]
async fn api_answers_are_not_cached_and_https_consoles_send_hsts_and_host_cookies() {
    let app = spawn_app().await;
    let resp = app
        .http
        .post(app.url("/tokens"))
        .json(&json!({"user": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()["cache-control"],
        "no-store",
        "a new token is never cached"
    );
    let resp = app.http.get(app.url("/executions")).send().await.unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(!resp.headers().contains_key("strict-transport-security"));

    let secure = spawn_app_with(AppOptions {
        extra_args: vec!["--secure-cookies".into()],
        ..AppOptions::default()
    })
    .await;
    let pw = secure.add_user("hana", "viewer").await;
    let resp = reqwest::Client::new()
        .post(secure.url("/auth/login"))
        .json(&json!({"username": "hana", "password": pw}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("__Host-imds_session=") && cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
}

#[tokio::test]
async fn viewers_lookups_of_unknown_runs_never_delay_stop_and_read_only_our_runbook() {
    let app = spawn_app_with(AppOptions {
        read_rate: 3.0,
        speed: 3.0,
        ..AppOptions::default()
    })
    .await;
    let pw = app.add_user("vera", "viewer").await;
    let cookie = app.session("vera", &pw).await;
    let id = app.quiet("us-east-1").await.remove(0);
    let (status, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    assert_eq!(status, 201, "{body}");
    let run = body["execution_id"].as_str().unwrap().to_owned();

    // 40 lookups of made-up IDs at once, while an operator stops the run.
    let since = now_ms();
    let lookups: Vec<_> = (0..40)
        .map(|n| {
            let url = app.url(&format!("/executions/00000000-0000-4000-8000-{n:012}"));
            let cookie = cookie.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(url)
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let (status, body) = app.post(&format!("/executions/{run}/stop"), &json!({})).await;
    assert_eq!(status, 202, "{body}");
    // Calls made before Stop was answered: had the lookups shared (and queued on) the watcher's read
    // budget, Stop would have waited behind all 40 of them.
    let gets_before_stop = app.sandbox.count_calls("ssm:GetAutomationExecution", since);
    assert!(
        gets_before_stop < 20,
        "Stop waited for {gets_before_stop} GetAutomationExecution calls"
    );
    let mut statuses = Vec::new();
    for l in lookups {
        statuses.push(l.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 404 || *s == 429), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 30,
        "the lookup budget is not a queue: {statuses:?}"
    );
    assert_eq!(app.wait_done(&run, WAIT).await["summary"]["status"], "Cancelled");

    // An execution of another document is not shown, even to an admin.
    let conf = sdk_config(app.state.sandbox_url.as_deref().unwrap(), "us-east-1", 1).await;
    let other = aws_sdk_ssm::Client::new(&conf)
        .start_automation_execution()
        .document_name("AWSConfigRemediation-EnforceEC2InstanceIMDSv2")
        .parameters("InstanceId", vec![id.clone()])
        .parameters(
            "AutomationAssumeRole",
            vec!["arn:aws:iam::123456789012:role/ImdsAutomation".to_owned()],
        )
        .send()
        .await
        .expect("started another document")
        .automation_execution_id()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = app.get(&format!("/executions/{other}")).await;
        if status == 404 {
            break;
        }
        assert_eq!(status, 429, "{body}");
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn an_open_event_stream_ends_when_its_user_signs_out_or_is_disabled() {
    let app = spawn_app().await;
    for end in ["logout", "disable"] {
        let name = format!("sam-{end}");
        let pw = app.add_user(&name, "viewer").await;
        let cookie = app.session(&name, &pw).await;
        let mut stream = reqwest::Client::new()
            .get(app.url("/events"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        let (status, _) = if end == "logout" {
            let resp = reqwest::Client::new()
                .post(app.url("/auth/logout"))
                .header("cookie", &cookie)
                .header("origin", &app.base)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), ())
        } else {
            (
                app.post(&format!("/users/{name}/disable"), &json!({})).await.0,
                (),
            )
        };
        assert_eq!(status, 204);
        // The stream ends (no more chunks) instead of staying open for events.
        let ended = tokio::time::timeout(WAIT, async {
            while let Some(_chunk) = stream.chunk().await.unwrap_or(None) {}
        })
        .await;
        assert!(ended.is_ok(), "the stream of {name} stayed open after {end}");
    }
}

#[tokio::test]
async fn the_audit_records_sso_sign_ins_refused_changes_and_who_stopped_a_run() {
    let app = spawn_app_with(AppOptions {
        speed: 3.0,
        ..proxy_app(&["--sso-group-role", "readers=viewer"])
    })
    .await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let resp = client
            .get(app.url("/executions"))
            .header("x-forwarded-user", "rita@example.com")
            .header("x-forwarded-groups", "readers")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let id = app.quiet("us-east-1").await.remove(0);
    let resp = client
        .post(app.url("/executions"))
        .header("x-forwarded-user", "rita@example.com")
        .header("x-forwarded-groups", "readers")
        .header("origin", &app.base)
        .json(&json!({"parameters": {"InstanceId": id}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let sso = auth_log(&app, "kind=sso-login").await;
    assert_eq!(
        sso["events"].as_array().unwrap().len(),
        1,
        "one per session, not per request: {sso}"
    );
    assert_eq!(sso["events"][0]["actor"], "rita@example.com");
    let refused = auth_log(&app, "kind=change-refused").await;
    assert_eq!(refused["events"][0]["actor"], "rita@example.com");
    assert!(refused["events"][0]["subject"]
        .as_str()
        .unwrap()
        .starts_with("POST /executions"));

    let (_, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": id}}))
        .await;
    let run = body["execution_id"].as_str().unwrap().to_owned();
    let (status, _) = app.post(&format!("/executions/{run}/stop"), &json!({})).await;
    assert_eq!(status, 202);
    app.wait_done(&run, WAIT).await;
    let (_, audit) = app.get("/audit").await;
    let record = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["execution_id"] == run.as_str())
        .unwrap()
        .clone();
    assert_eq!(record["stopped_by"], "admin");
}

#[tokio::test]
async fn the_standalone_sandbox_refuses_web_pages() {
    let (_sb, url) = standalone_sandbox(sandbox::SandboxConfig::default()).await;
    let client = reqwest::Client::new();
    let resp = client
        .put(format!("{url}/_sandbox/faults"))
        .header("origin", "https://evil.example")
        .json(&json!({"rules": [], "deny": ["ssm:StartAutomationExecution"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = client
        .post(&url)
        .header("origin", "https://evil.example")
        .form(&[("Action", "DescribeInstances"), ("Version", "2016-11-15")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let faults: Value = client
        .get(format!("{url}/_sandbox/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["deny"], json!([]), "nothing changed");
}

#[tokio::test]
async fn a_session_ends_when_its_hours_are_up() {
    let app = spawn_app_with(AppOptions {
        extra_args: vec!["--session-hours".into(), "2".into()],
        ..AppOptions::default()
    })
    .await;
    let password = app.add_user("carol", "viewer").await;
    let cookie = app.session("carol", &password).await;
    let me = |cookie: String| {
        let url = app.url("/auth/me");
        async move {
            reqwest::Client::new()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(me(cookie.clone()).await, 200);
    app.state.store.clock.advance(Duration::from_secs(3600 + 60));
    assert_eq!(me(cookie.clone()).await, 200, "one hour in, the session lasts");
    app.state.store.clock.advance(Duration::from_secs(3600));
    assert_eq!(me(cookie).await, 401, "past two hours, the session has ended");
}

/// Password checks run on the blocking pool, not on the threads that answer requests. This test runs
/// the console on one thread (the test's own runtime): while four sign-ins hash their passwords, the
/// health check must keep answering. Were argon2 run on that thread, each hash would hold it, and
/// at most one health check could slip in between two hashes.
#[tokio::test(flavor = "current_thread")]
async fn sign_ins_hash_off_the_request_threads_so_other_requests_go_on() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let app = spawn_app().await;
    let password = app.add_user("hasher", "viewer").await;
    let signing_in = AtomicBool::new(true);
    let health_checks = async {
        let mut answered = 0u32;
        while signing_in.load(Ordering::Relaxed) {
            let resp = app.http.get(app.url("/health")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            answered += 1;
        }
        answered
    };
    let sign_ins = async {
        let logins = (0..4).map(|_| app.session("hasher", &password));
        let started = Instant::now();
        futures_util::future::join_all(logins).await;
        signing_in.store(false, Ordering::Relaxed);
        started.elapsed()
    };
    let (answered, took) = tokio::join!(health_checks, sign_ins);
    assert!(
        answered >= 20,
        "only {answered} health checks answered during four sign-ins ({took:?})"
    );
}
