//! What is done at the shell counts as someone else's doing: a password typed there (`user add`,
//! `user passwd`) is replaced at the user's first sign-in, and the shell's change is audited as a reset.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::Serving;

/// `imds-console ARGS --data-dir DATA`, with `stdin` typed in; panics unless it succeeds.
fn at_the_shell(data: &Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imds-console"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_password_set_at_the_shell_must_be_replaced_and_its_reset_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    at_the_shell(
        &data,
        &["user", "add", "boss", "--role", "admin"],
        "Boss-at-the-shell-1\n",
    );
    at_the_shell(
        &data,
        &["user", "add", "op2", "--role", "operator"],
        "Op2-at-the-shell-1\n",
    );
    at_the_shell(&data, &["user", "passwd", "op2"], "Op2-at-the-shell-2\n");
    let token = at_the_shell(&data, &["token", "create", "--user", "boss"], "");
    let console = Serving::start({
        let mut c = Command::new(env!("CARGO_BIN_EXE_imds-console"));
        c.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-fleet",
            "5",
            "--data-dir",
        ])
        .arg(&data);
        c
    });
    let signed_in = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", console.url))
        .header("origin", &console.url)
        .json(&serde_json::json!({"username": "op2", "password": "Op2-at-the-shell-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let me: shared::api::Me = reqwest::Client::new()
        .get(format!("{}/api/v1/auth/me", console.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        me.must_change_password,
        "the shell's password is op2's to replace: {me:?}"
    );
    let log: shared::api::AuthEventPage = reqwest::Client::new()
        .get(format!("{}/api/v1/audit/auth?kind=password-reset", console.url))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log.events.len(), 1, "{log:?}");
    assert_eq!(
        (log.events[0].actor.as_deref(), log.events[0].subject.as_deref()),
        (Some("cli"), Some("op2"))
    );
}
