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
