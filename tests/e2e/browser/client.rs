//! The client never strands anyone (issue 30): a page whose code cannot be fetched offers a reload
//! instead of trapping, an expired session signs in again in place with the form kept, and dialogs
//! hold the focus while they are open.

use super::*;

/// A copy of the built pages, which a test may take files from (as an upgrade does to the old
/// hashed chunks a tab still names).
fn copy_of_the_pages() -> tempfile::TempDir {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                copy(&path, &to.join(entry.file_name()));
            } else {
                std::fs::copy(&path, to.join(entry.file_name())).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(std::path::Path::new(&dist_dir()), dir.path());
    dir
}

/// Moves every file of the copy whose name starts with `prefix` (a module, its bundle, their
/// compressed forms) into `aside`, or back from it.
fn move_files(from: &std::path::Path, to: &std::path::Path, prefix: &str) -> usize {
    let mut moved = 0;
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            moved += move_files(&path, &to.join(entry.file_name()), prefix);
        } else if entry.file_name().to_string_lossy().starts_with(prefix) {
            std::fs::rename(&path, to.join(entry.file_name())).unwrap();
            moved += 1;
        }
    }
    moved
}

#[tokio::test]
async fn a_page_whose_code_cannot_be_fetched_offers_a_reload_instead_of_trapping() {
    let pages = copy_of_the_pages();
    let aside = tempfile::tempdir().unwrap();
    let app = spawn_app_with(AppOptions {
        static_dir: Some(pages.path().display().to_string()),
        ..AppOptions::default()
    })
    .await;
    let b = browser().await;
    let c = &b.client;
    login(c, &app.base, "admin", &admin_password(&app)).await;
    // The History page's own module is gone, as the old hashed modules are after an upgrade.
    assert!(move_files(pages.path(), aside.path(), "split_page_history") >= 2);
    click(c, "nav a[href='/history']").await;
    wait_text(c, "[data-testid=code-unavailable]", |t| {
        t.contains("could not be fetched")
    })
    .await;
    wait_text(c, "#reload", |t| t == "Reload the page").await;
    // The app still answers (no trap): another page opens from the navigation.
    click(c, "nav a[href='/fleet']").await;
    wait_count_at_least(c, "[data-testid=fleet] tbody tr", 1).await;
    // Coming back fetches the module again (a failure is not kept); the reload, once the files are
    // there, shows the page.
    click(c, "nav a[href='/history']").await;
    wait_count(c, "[data-testid=code-unavailable]", 1).await;
    move_files(aside.path(), pages.path(), "split_page_history");
    click(c, "#reload").await;
    wait_count(c, "#f-instance", 1).await;
    wait_absent(c, "[data-testid=code-unavailable]").await;
    b.close().await;
}

/// Ends the browser's session on the server, as its expiry does: the browser still sends the
/// cookie, and the server answers 401 to it.
async fn end_the_browser_s_session(c: &Client, app: &e2e::TestApp) {
    let cookie = c
        .get_named_cookie("imds_session")
        .await
        .expect("the browser holds the session cookie");
    let resp = reqwest::Client::new()
        .post(app.url("/auth/logout"))
        .header("cookie", format!("imds_session={}", cookie.value()))
        // A cookie's POST must come from the console's own origin (as the browser's would).
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let me = reqwest::Client::new()
        .get(app.url("/auth/me"))
        .header("cookie", format!("imds_session={}", cookie.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "the session has ended");
}

#[tokio::test]
async fn a_session_that_ends_mid_review_signs_in_again_in_place_and_keeps_the_review() {
    let app = app_with_pages(AppOptions::default()).await;
    let id = app.quiet("us-east-1").await.remove(0);
    let b = browser().await;
    let c = &b.client;
    let password = login(c, &app.base, "admin", &admin_password(&app)).await;
    goto(c, &format!("{}/execute?instance={id}", app.base)).await;
    click(c, "#review").await;
    wait_text(c, "[data-testid=confirm]", |t| t.contains(&id)).await;
    wait_prop(c, "#start", "disabled", |v| v == "false").await;

    end_the_browser_s_session(c, &app).await;
    click(c, "#start").await;
    // Not a lost connection nor the API's text: a sign-in over the page, which stays as it was.
    wait_text(c, "[data-testid=sign-in-again]", |t| {
        t.contains("session has ended")
    })
    .await;
    wait_absent(c, "[data-testid=me]").await;
    wait_absent(c, "[data-testid=start-error]").await;
    wait_absent(c, ".conn-lost").await;
    wait_text(c, "[data-testid=confirm]", |t| t.contains(&id)).await;
    assert!(
        c.current_url().await.unwrap().path().starts_with("/execute"),
        "the address stays the page's"
    );

    type_into(c, "[data-testid=sign-in-again] #login-user", "admin").await;
    type_into(c, "[data-testid=sign-in-again] #login-password", &password).await;
    click(c, "[data-testid=sign-in-again] #login-submit").await;
    wait_absent(c, "[data-testid=sign-in-again]").await;
    wait_text(c, "[data-testid=me]", |t| t.starts_with("admin")).await;
    // The review is still there: one press starts the run.
    click(c, "#start").await;
    let started = text_of(c, "[data-testid=started] a").await;
    assert_eq!(started.len(), 36, "an execution ID: {started}");
    b.close().await;
}

/// What has the focus: its id, its test id, and whether it is inside an open dialog.
async fn focus(c: &Client) -> (String, String, bool) {
    let v = c
        .execute(
            "const a = document.activeElement;
             return [a.id || '', a.dataset.testid || '', !!a.closest('[aria-modal=true]')];",
            vec![],
        )
        .await
        .unwrap();
    (
        v[0].as_str().unwrap_or_default().to_owned(),
        v[1].as_str().unwrap_or_default().to_owned(),
        v[2].as_bool().unwrap_or_default(),
    )
}

/// Waits until the focus satisfies `ok`.
async fn wait_focus(c: &Client, what: &str, ok: impl Fn(&(String, String, bool)) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = focus(c).await;
        if ok(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the focus is on {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Presses a key (a WebDriver key code) where the focus is.
async fn press(c: &Client, keys: &str) {
    c.active_element().await.unwrap().send_keys(keys).await.unwrap();
}

const TAB: &str = "\u{E004}";
const SHIFT_TAB: &str = "\u{E008}\u{E004}";
const ESCAPE: &str = "\u{E00C}";

#[tokio::test]
async fn dialogs_hold_the_focus_and_a_start_hands_it_to_its_answer() {
    let app = app_with_pages(AppOptions::default()).await;
    // Taken before the finished run enforces the first of them.
    let id = app.quiet("us-east-1").await.remove(1);
    let done = app.finished_run().await;
    let b = browser().await;
    let c = &b.client;
    login(c, &app.base, "admin", &admin_password(&app)).await;

    // Revert: the focus moves into the dialog and Tab, either way, never leaves it.
    goto(c, &format!("{}/executions/{done}", app.base)).await;
    wait_text(c, "[data-testid=exec-status]", |t| t == "Success").await;
    click(c, "#revert").await;
    wait_count(c, "[aria-modal=true]", 1).await;
    wait_focus(c, "the dialog opened", |f| f.2).await;
    wait_prop(c, "#modal-confirm", "disabled", |v| v == "false").await;
    for keys in [TAB, TAB, TAB, SHIFT_TAB, SHIFT_TAB, SHIFT_TAB, SHIFT_TAB] {
        press(c, keys).await;
        let now = focus(c).await;
        assert!(now.2, "Tab left the dialog for {now:?}");
    }
    // Escape cancels, and the focus goes back to the button that opened the dialog.
    press(c, ESCAPE).await;
    wait_absent(c, "[aria-modal=true]").await;
    wait_focus(c, "the dialog closed", |f| f.0 == "revert").await;

    // After Start, the focus is on the start's answer, not lost on the page's body.
    goto(c, &format!("{}/execute?instance={id}", app.base)).await;
    click(c, "#review").await;
    click(c, "#start").await;
    wait_count(c, "[data-testid=started] a", 1).await;
    wait_focus(c, "started", |f| f.1 == "started").await;
    b.close().await;
}
