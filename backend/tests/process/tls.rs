//! HTTPS: the binary serves the API over TLS with a certificate it is given, session cookies are
//! Secure, and plain HTTP on that port gets nowhere. Uses Debian's openssl and curl as the peer.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
}

#[test]
fn the_console_serves_https_with_secure_cookies() {
    assert!(
        have("openssl") && have("curl"),
        "this test needs openssl and curl (Debian's, on every machine of this kind)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));

    let mut child = Command::new(env!("CARGO_BIN_EXE_imds-console"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the console starts").unwrap();
        if let Some(url) = line.split(" is at ").nth(1) {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let password = std::fs::read_to_string(dir.path().join("data/first-admin-password")).unwrap();
    let password = password.trim();

    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "--cacert"])
            .arg(&cert)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        curl(&[&format!("{base}/api/v1/health")]),
        r#"{"status":"ok","leader":true}"#
    );
    let login = curl(&[
        "-i",
        "-H",
        "content-type: application/json",
        "-d",
        &format!(r#"{{"username":"admin","password":"{password}"}}"#),
        &format!("{base}/api/v1/auth/login"),
    ]);
    let cookie = login
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect(&login)
        .to_owned();
    assert!(
        cookie.contains("__Host-imds_session=") && cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert!(
        login
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "{login}"
    );
    let plain = Command::new("curl")
        .args(["-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(base.replace("https://", "http://") + "/api/v1/health")
        .output()
        .unwrap();
    assert_ne!(
        String::from_utf8_lossy(&plain.stdout),
        "200",
        "plain HTTP is not served on the TLS port"
    );
    let _ = child.kill();
    let _ = child.wait();
}
