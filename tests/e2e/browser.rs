//! The built page in headless Chromium (Debian's chromium + chromedriver, through fantoccini): the form
//! renders from WASM under the CSP, a bad value shows its field error, a good submit shows the new run
//! in the history and follows it live to Success; the detail page, a history deep link and the fleet.

use e2e::{spawn_app_with, AppOptions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn browser() -> Browser {
    let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        PathBuf::from(&driver_bin).exists() && PathBuf::from(&chromium).exists(),
        "browser tests need Debian's chromium and chromium-driver; ./x.sh test installs them"
    );
    let port = free_port();
    let driver = Command::new(&driver_bin)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--disable-quic", "--window-size=1400,1000",
                     format!("--user-data-dir={}", profile.path().display())]
        }
    });
    let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a browser session: {e}"),
        }
    };
    Browser {
        client,
        driver,
        _profile: profile,
    }
}

/// Waits for the element, then clicks it.
async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits until the element's text satisfies `ok`.
async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await {
            if let Ok(t) = el.text().await {
                if ok(&t) {
                    return t;
                }
            }
        }
        assert!(Instant::now() < deadline, "{css} never showed the expected text");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in through the login page and waits until the header shows who is signed in.
async fn login(c: &Client, base: &str, user: &str, password: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    let name = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#login-user"))
        .await
        .unwrap();
    name.send_keys(user).await.unwrap();
    c.find(Locator::Css("#login-password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    c.find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let me = text_of(c, "[data-testid=me]").await;
    assert!(me.starts_with(user), "{me}");
}

fn admin_password(app: &e2e::TestApp) -> String {
    app.state
        .bootstrap_password
        .clone()
        .expect("the first start created the admin")
}

/// A console that serves the built pages.
async fn app_with_pages(opts: AppOptions) -> e2e::TestApp {
    spawn_app_with(AppOptions {
        static_dir: Some(dist_dir()),
        ..opts
    })
    .await
}

fn dist_dir() -> String {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../frontend/dist"));
    assert!(
        dir.join("frontend_bg.wasm").exists(),
        "build the frontend first: ./x.sh test does ({})",
        dir.display()
    );
    dir.display().to_string()
}

#[tokio::test]
async fn a_person_enforces_imdsv2_in_the_browser_and_follows_it_live() {
    let app = app_with_pages(AppOptions {
        speed: 60.0,
        ..AppOptions::default()
    })
    .await;
    let id = app
        .pick("us-east-1", |i| {
            i["metadata"]["http_tokens"] == "optional" && i["imdsv1_calls"] == 0
        })
        .await
        .remove(0);
    let b = browser().await;
    let c = &b.client;
    login(c, &app.base, "admin", &admin_password(&app)).await;

    c.goto(&format!("{}/execute", app.base)).await.unwrap();
    // Rendered by the WASM app, under the Content-Security-Policy.
    assert_eq!(text_of(c, ".banner-sandbox").await, "SANDBOX");
    let input = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#instance-id"))
        .await
        .unwrap();

    // A bad value shows its field error before anything is sent.
    input.send_keys("i-bad").await.unwrap();
    let err = text_of(c, "#err-instance").await;
    assert!(err.contains("not an instance ID"), "{err}");
    let hop = c.find(Locator::Css("#hop")).await.unwrap();
    hop.clear().await.unwrap();
    hop.send_keys("99").await.unwrap();
    assert!(text_of(c, "#err-hop").await.contains("0 to 64"));
    hop.clear().await.unwrap();
    hop.send_keys("0").await.unwrap();

    // A good value: review, confirm, start.
    input.clear().await.unwrap();
    input.send_keys(&id).await.unwrap();
    assert!(
        c.find(Locator::Css("#err-instance")).await.is_err(),
        "the error goes away"
    );
    c.find(Locator::Css("#review"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let confirm = text_of(c, "[data-testid=confirm]").await;
    assert!(
        confirm.contains(&id) && confirm.contains("tokens optional") && confirm.contains("tokens required"),
        "{confirm}"
    );
    c.find(Locator::Css("#start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let started = text_of(c, "[data-testid=started] a").await;
    assert_eq!(started.len(), 36, "an execution ID: {started}");

    // The history shows it, and it reaches Success live, without a reload.
    let row = format!("tr[data-execution-id='{started}'] .status");
    wait_text(c, &row, |t| t == "Success").await;

    // Its detail page shows the step timeline.
    c.goto(&format!("{}/executions/{started}", app.base))
        .await
        .unwrap();
    wait_text(c, "[data-testid=exec-status]", |t| t == "Success").await;
    let steps = text_of(c, "[data-testid=steps]").await;
    assert!(
        steps.contains("assertIMDSv2IsEnforced") && steps.contains("describeMetadataOptions"),
        "{steps}"
    );

    // A filtered history deep link survives a fresh load.
    c.goto(&format!("{}/history?status=Success&instance_id={id}", app.base))
        .await
        .unwrap();
    wait_text(c, &format!("tr[data-execution-id='{started}'] .status"), |t| {
        t == "Success"
    })
    .await;
    assert_eq!(
        c.find(Locator::Css("#f-instance"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(id.as_str())
    );

    // The fleet now shows the instance as compliant.
    app.refresh_fleet().await;
    c.goto(&format!("{}/fleet", app.base)).await.unwrap();
    let filter = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#fleet-filter"))
        .await
        .unwrap();
    filter.send_keys(&id).await.unwrap();
    let row = wait_text(c, &format!("tr[data-instance-id='{id}']"), |t| {
        t.contains("required")
    })
    .await;
    assert!(row.contains("compliant"), "{row}");

    // An unknown address shows the not-found page, not a blank one.
    c.goto(&format!("{}/no/such/page", app.base)).await.unwrap();
    assert!(text_of(c, "h1").await.contains("Page not found"));
    b.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn an_aws_side_refusal_is_shown_in_the_browser() {
    let app = app_with_pages(AppOptions::default()).await;
    let id = app.quiet("us-east-1").await.remove(0);
    app.sandbox.set_faults(sandbox::Faults {
        deny: ["ssm:StartAutomationExecution".to_owned()].into(),
        ..Default::default()
    });
    let b = browser().await;
    let c = &b.client;
    login(c, &app.base, "admin", &admin_password(&app)).await;
    c.goto(&format!("{}/execute?instance={id}", app.base))
        .await
        .unwrap();
    click(c, "#review").await;
    click(c, "#start").await;
    let err = text_of(c, "[data-testid=start-error]").await;
    assert!(
        err.contains("AccessDeniedException") && err.contains("ssm:StartAutomationExecution"),
        "{err}"
    );
    b.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn a_blocked_enforce_needs_a_written_reason_and_the_run_can_be_reverted() {
    let app = app_with_pages(AppOptions::default()).await;
    let id = app
        .pick("us-east-1", |i| {
            i["metadata"]["http_tokens"] == "optional" && i["imdsv1_calls"].as_u64().unwrap_or(0) > 0
        })
        .await
        .remove(0);
    let b = browser().await;
    let c = &b.client;
    login(c, &app.base, "admin", &admin_password(&app)).await;
    c.goto(&format!("{}/execute?instance={id}", app.base))
        .await
        .unwrap();
    click(c, "#review").await;
    let gate = text_of(c, "[data-testid=gate]").await;
    assert!(gate.contains(&id) && gate.contains("calls"), "{gate}");
    let start = c.find(Locator::Css("#start")).await.unwrap();
    assert_eq!(
        start.attr("disabled").await.unwrap().as_deref(),
        Some("true"),
        "no start without a reason"
    );
    c.find(Locator::Css("#override-reason"))
        .await
        .unwrap()
        .send_keys("Agent upgraded; calls are from a test cron")
        .await
        .unwrap();
    start.click().await.unwrap();
    let started = text_of(c, "[data-testid=started] a").await;

    c.goto(&format!("{}/executions/{started}", app.base))
        .await
        .unwrap();
    wait_text(c, "[data-testid=exec-status]", |t| t == "Success").await;
    assert_eq!(
        text_of(c, "[data-testid=override]").await,
        "Agent upgraded; calls are from a test cron"
    );
    c.find(Locator::Css("#revert"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.accept_alert().await.unwrap();
    let reverted = text_of(c, "[data-testid=reverted] a").await;
    assert_eq!(reverted.len(), 36, "{reverted}");
    let d = app.wait_done(&reverted, Duration::from_secs(30)).await;
    assert_eq!(d["rollback_of"], serde_json::json!(started));
    app.refresh_fleet().await;
    let inst = app
        .instances()
        .await
        .into_iter()
        .find(|i| i["instance_id"] == id.as_str())
        .unwrap();
    assert_eq!(
        inst["metadata"]["http_tokens"], "optional",
        "reverted to its prior options"
    );
    b.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn the_first_admin_adds_an_operator_who_can_start_and_a_viewer_who_cannot() {
    let app = app_with_pages(AppOptions::default()).await;
    let id = app.quiet("us-east-1").await.remove(0);
    let b = browser().await;
    let c = &b.client;

    // A visitor is sent to the login page, and back after signing in.
    c.goto(&format!("{}/history", app.base)).await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#login-user"))
        .await
        .unwrap();
    c.find(Locator::Css("#login-user"))
        .await
        .unwrap()
        .send_keys("admin")
        .await
        .unwrap();
    c.find(Locator::Css("#login-password"))
        .await
        .unwrap()
        .send_keys("not the password")
        .await
        .unwrap();
    c.find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text_of(c, "[data-testid=login-error]")
        .await
        .contains("wrong user name or password"));
    login(c, &app.base, "admin", &admin_password(&app)).await;

    c.goto(&format!("{}/admin", app.base)).await.unwrap();
    for (name, role) in [("olivia", "operator"), ("victor", "viewer")] {
        let field = c
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("#new-user-name"))
            .await
            .unwrap();
        field.clear().await.unwrap();
        field.send_keys(name).await.unwrap();
        c.find(Locator::Css(&format!("#new-user-role option[value='{role}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let pw = c.find(Locator::Css("#new-user-password")).await.unwrap();
        pw.clear().await.unwrap();
        pw.send_keys(&format!("{name}-password-123")).await.unwrap();
        c.find(Locator::Css("#add-user"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_text(c, &format!("tr[data-user='{name}']"), |t| t.contains(role)).await;
    }
    c.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#login-user"))
        .await
        .unwrap();

    // The operator starts a run.
    login(c, &app.base, "olivia", "olivia-password-123").await;
    c.goto(&format!("{}/execute?instance={id}", app.base))
        .await
        .unwrap();
    click(c, "#review").await;
    click(c, "#start").await;
    let started = text_of(c, "[data-testid=started] a").await;
    let d = app.wait_done(&started, Duration::from_secs(30)).await;
    assert_eq!(
        d["summary"]["requester"], "olivia",
        "the run records who started it"
    );
    c.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The viewer can look but not start.
    login(c, &app.base, "victor", "victor-password-123").await;
    c.goto(&format!("{}/execute?instance={id}", app.base))
        .await
        .unwrap();
    assert!(text_of(c, "[data-testid=viewer-note]").await.contains("viewer"));
    let review = c.find(Locator::Css("#review")).await.unwrap();
    assert_eq!(review.attr("disabled").await.unwrap().as_deref(), Some("true"));
    c.goto(&format!("{}/history", app.base)).await.unwrap();
    wait_text(c, &format!("tr[data-execution-id='{started}'] .status"), |t| {
        t == "Success"
    })
    .await;
    b.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn an_enforce_from_a_fleet_selection_reaches_its_total_and_a_run_can_be_stopped() {
    let app = app_with_pages(AppOptions {
        speed: 10.0,
        ..AppOptions::default()
    })
    .await;
    let ids: Vec<String> = app
        .pick("us-east-1", |i| {
            i["metadata"]["http_tokens"] == "optional" && i["imdsv1_calls"] == 0
        })
        .await
        .into_iter()
        .take(3)
        .collect();
    assert_eq!(ids.len(), 3);
    let b = browser().await;
    let c = &b.client;
    login(c, &app.base, "admin", &admin_password(&app)).await;

    // Filter the fleet and select three instances.
    c.goto(&format!("{}/fleet", app.base)).await.unwrap();
    let filter = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#fleet-filter"))
        .await
        .unwrap();
    for id in &ids {
        filter.clear().await.unwrap();
        filter.send_keys(id).await.unwrap();
        wait_text(c, "[data-testid=fleet] tbody", |t| t.contains(id.as_str())).await;
        let rows = c
            .find_all(Locator::Css("[data-testid=fleet] tbody tr"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "the filter leaves one row");
        c.find(Locator::Css(&format!(
            "tr[data-instance-id='{id}'] input[type=checkbox]"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    }
    let enforce = c.find(Locator::Css("#enforce-selected")).await.unwrap();
    assert_eq!(enforce.text().await.unwrap(), "Enforce IMDSv2 on 3 selected");
    enforce.click().await.unwrap();

    // The execute page opens in rate-control mode with the three targets.
    let targets = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#targets"))
        .await
        .unwrap();
    let listed = targets.prop("value").await.unwrap().unwrap_or_default();
    assert!(ids.iter().all(|id| listed.contains(id.as_str())), "{listed}");
    c.find(Locator::Css("#review"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(c, "#start").await;
    let parent = text_of(c, "[data-testid=started] a").await;

    // Its detail page shows the progress live until all three are done.
    c.goto(&format!("{}/executions/{parent}", app.base))
        .await
        .unwrap();
    wait_text(c, "[data-testid=progress-text]", |t| {
        t.starts_with("3 of 3 done: 3 succeeded")
    })
    .await;
    wait_text(c, "[data-testid=exec-status]", |t| t == "Success").await;

    // A run in progress can be stopped from its page.
    let other = app.quiet("eu-west-1").await.remove(0);
    let (status, body) = app
        .post(
            "/executions",
            &serde_json::json!({"region": "eu-west-1", "parameters": {"InstanceId": other}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let slow = body["execution_id"].as_str().unwrap().to_owned();
    c.goto(&format!("{}/executions/{slow}", app.base)).await.unwrap();
    click(c, "#stop").await;
    c.accept_alert().await.unwrap();
    wait_text(c, "[data-testid=exec-status]", |t| t == "Cancelled").await;
    b.client.clone().close().await.unwrap();
}
