//! The one-file binary (`--features embed-frontend`, as `./x.sh release` builds it) serves the
//! frontend it carries, with no `--static-dir`: the page, the hashed assets as immutable, the WASM as
//! `application/wasm` and byte for byte what the build wrote (its brotli file to browsers that take it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// x.sh builds the binary with the frontend inside and names it here (`./x.sh test` always does).
const BINARY_ENV: &str = "IMDS_CONSOLE_EMBEDDED_BIN";

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend/dist")
}

#[tokio::test]
async fn the_one_file_binary_serves_the_frontend_it_carries() {
    let binary = std::env::var(BINARY_ENV).unwrap_or_else(|_| {
        panic!("{BINARY_ENV} is not set: run the tests with ./x.sh test, which builds that binary")
    });
    let tmp = tempfile::tempdir().unwrap();
    let mut command = Command::new(&binary);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-fleet",
            "5",
            "--data-dir",
        ])
        .arg(tmp.path().join("data"))
        // Not from the checkout: the binary must not need it.
        .current_dir(tmp.path());
    let console = crate::Serving::start(command);
    let base = console.url.clone();
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move { client.get(url).send().await.expect("it answers") }
    };
    let page = get("/fleet".into()).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let html = page.text().await.unwrap();
    assert_eq!(html, std::fs::read_to_string(dist().join("index.html")).unwrap());
    let main_js = html
        .split('"')
        .find(|s| s.starts_with("/main-") && s.ends_with(".js"))
        .expect("index.html names main.js")
        .to_owned();
    let main = get(main_js).await;
    assert_eq!(
        main.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let main = main.text().await.unwrap();
    let wasm_path = main
        .split('"')
        .find(|s| s.ends_with("/frontend_bg.wasm"))
        .expect("main.js names the WASM")
        .to_owned();
    let wasm = get(wasm_path.clone()).await;
    assert_eq!(wasm.status(), 200);
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    let served = wasm.bytes().await.unwrap();
    let built = std::fs::read(dist().join(wasm_path.trim_start_matches('/'))).unwrap();
    assert!(served == built, "the served WASM differs from the built one");
    // The build's brotli file, to a browser that takes it.
    let compressed = client
        .get(format!("{base}{wasm_path}"))
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "br");
    assert_eq!(compressed.headers()["content-type"], "application/wasm");
    let packed = compressed.bytes().await.unwrap();
    let built_br = std::fs::read(dist().join(format!("{}.br", wasm_path.trim_start_matches('/')))).unwrap();
    assert!(
        packed == built_br,
        "the served brotli file differs from the built one"
    );
    assert_eq!(get("/favicon.ico".into()).await.status(), 404);
}
