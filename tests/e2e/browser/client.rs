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
