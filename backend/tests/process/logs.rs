//! `--log-format json`: one JSON object per log line, and every line a request logs carries its ID,
//! which its response and error body carry too.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn json_logs_carry_each_request_s_id_as_its_response_does() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imds-console"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-fleet",
            "5",
        ])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("RUST_LOG", "info,tower_http=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut base = None;
    while base.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("it says where it listens");
        if let Some(at) = line.split(" is at ").nth(1) {
            base = Some(at.trim().to_owned());
        } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
        }
    }
    let base = base.unwrap();

    // A caller's own ID is kept; the refusal names it in the body and the header.
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/instances"))
        .header("x-request-id", "trace-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-request-id"], "trace-4711");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "trace-4711", "{body}");
    // One that is not a plain token is replaced by a fresh one.
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/instances"))
        .header("x-request-id", "has spaces; and=more")
        .send()
        .await
        .unwrap();
    let fresh = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(fresh.len(), 36, "{fresh}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break None;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let ours = v["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|s| s["request_id"] == "trace-4711"))
            .cloned();
        if let Some(span) = ours {
            break Some(span);
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let span = found.expect("a log line of the request, with its ID");
    assert_eq!(span["path"], "/api/v1/instances", "{span}");
}
