//! `serve --aws` as a new user on a real account would run it, against the sandbox standing in for AWS:
//! credentials from a `credential_process` profile, every call through the HTTP proxy the environment
//! names, the region from instance metadata, and a clear refusal to start without credentials.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A forwarding HTTP proxy on loopback that counts the requests it carries.
async fn counting_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(relay(client, counter.clone()));
        }
    });
    (url, count)
}

/// Reads the first request's head to find the target (`GET http://host:port/path HTTP/1.1`), then
/// relays both ways, counting each request line that goes upstream.
async fn relay(client: TcpStream, count: Arc<AtomicUsize>) {
    let (mut from_client, mut to_client) = client.into_split();
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match from_client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let first = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let Some(target) = first
        .split_whitespace()
        .nth(1)
        .and_then(|u| u.strip_prefix("http://"))
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned)
    else {
        return;
    };
    let Ok(upstream) = TcpStream::connect(&target).await else {
        return;
    };
    let (mut from_upstream, mut to_upstream) = upstream.into_split();
    let requests = |bytes: &[u8]| bytes.windows(11).filter(|w| w == b" HTTP/1.1\r\n").count();
    count.fetch_add(requests(&head), Ordering::SeqCst);
    if to_upstream.write_all(&head).await.is_err() {
        return;
    }
    let up = async move {
        loop {
            match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    count.fetch_add(requests(&buf[..n]), Ordering::SeqCst);
                    if to_upstream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let down = tokio::io::copy(&mut from_upstream, &mut to_client);
    let _ = tokio::join!(up, down);
}

/// A stand-in for the EC2 instance metadata service that knows only the region (IMDSv2: token first).
async fn metadata_service(region: &'static str) -> String {
    use axum::routing::{get, put};
    let app = axum::Router::new()
        .route(
            "/latest/api/token",
            put(|| async {
                (
                    [("x-aws-ec2-metadata-token-ttl-seconds", "21600")],
                    "a-session-token",
                )
            }),
        )
        .route(
            "/latest/meta-data/placement/region",
            get(move |headers: axum::http::HeaderMap| async move {
                if headers.contains_key("x-aws-ec2-metadata-token") {
                    (axum::http::StatusCode::OK, region)
                } else {
                    (axum::http::StatusCode::UNAUTHORIZED, "")
                }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A profile whose credentials come from a script, which leaves a mark each time it runs.
fn credential_process_profile(dir: &Path, works: bool) -> std::path::PathBuf {
    let script = dir.join("creds.sh");
    let body = if works {
        format!(
            "#!/bin/sh\ntouch {}\necho '{{\"Version\": 1, \"AccessKeyId\": \"AKIDFROMPROCESS\", \"SecretAccessKey\": \"process-secret\"}}'\n",
            dir.join("ran").display()
        )
    } else {
        "#!/bin/sh\necho 'the token expired; run: aws sso login' >&2\nexit 1\n".to_owned()
    };
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join("config");
    std::fs::write(
        &config,
        format!("[profile imds]\ncredential_process = {}\n", script.display()),
    )
    .unwrap();
    config
}

fn serve_aws(dir: &Path, config: &Path, endpoint: &str, proxy: &str, imds: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imds-console"));
    cmd.args(["serve", "--aws", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .env("AWS_CONFIG_FILE", config)
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env("AWS_PROFILE", "imds")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
        .env("HTTP_PROXY", proxy)
        .env(
            "RUST_LOG",
            std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    for var in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_EC2_METADATA_DISABLED",
        "NO_PROXY",
        "no_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

#[tokio::test]
async fn serve_aws_uses_a_credential_process_profile_the_proxy_and_the_metadata_region() {
    let sb = sandbox::Sandbox::start(sandbox::SandboxConfig {
        fleet_size: 10,
        ..sandbox::SandboxConfig::default()
    })
    .unwrap();
    let endpoint = format!(
        "http://{}",
        sb.serve("127.0.0.1:0".parse().unwrap()).await.unwrap()
    );
    let (proxy, carried) = counting_proxy().await;
    let imds = metadata_service("eu-west-1").await;
    let dir = tempfile::tempdir().unwrap();
    let config = credential_process_profile(dir.path(), true);
    let mut child = serve_aws(dir.path(), &config, &endpoint, &proxy, &imds)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _running = Running(child);
    let (identity, base) = tokio::task::spawn_blocking(move || {
        let mut identity = String::new();
        let mut lines = BufReader::new(stderr).lines();
        loop {
            let line = lines.next().expect("the console starts").unwrap();
            if line.contains("AWS identity") {
                identity = line.clone();
            }
            if let Some(url) = line.split(" is at ").nth(1) {
                std::thread::spawn(move || for _ in lines {});
                return (identity, url.trim().to_owned());
            }
        }
    })
    .await
    .unwrap();
    assert!(
        identity.contains("account") && identity.contains("regions eu-west-1"),
        "it says who and where it is: {identity}"
    );
    assert!(dir.path().join("ran").exists(), "the credential_process ran");
    let token = Command::new(env!("CARGO_BIN_EXE_imds-console"))
        .args(["token", "create", "--user", "admin", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let before = carried.load(Ordering::SeqCst);
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/instances"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["region"] == "eu-west-1"));
    let after = carried.load(Ordering::SeqCst);
    assert!(
        before >= 1,
        "STS and the metadata service went through the proxy ({before})"
    );
    assert!(
        after > before,
        "EC2 went through the proxy ({before} then {after})"
    );
}

#[tokio::test]
async fn serve_aws_without_credentials_stops_with_a_clear_message() {
    let (proxy, _) = counting_proxy().await;
    let imds = metadata_service("eu-west-1").await;
    let dir = tempfile::tempdir().unwrap();
    let config = credential_process_profile(dir.path(), false);
    let out = tokio::task::spawn_blocking({
        let mut cmd = serve_aws(dir.path(), &config, "http://127.0.0.1:9", &proxy, &imds);
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot use AWS") && err.contains("the token expired; run: aws sso login"),
        "the cause, as the credential process gave it: {err}"
    );
}

#[tokio::test]
async fn doctor_prints_each_denied_action_with_its_fix_and_fails() {
    let sb = sandbox::Sandbox::start(sandbox::SandboxConfig {
        fleet_size: 5,
        ..sandbox::SandboxConfig::default()
    })
    .unwrap();
    let endpoint = format!(
        "http://{}",
        sb.serve("127.0.0.1:0".parse().unwrap()).await.unwrap()
    );
    let role = "arn:aws:iam::123456789012:role/ImdsAutomation";
    let doctor = || {
        let endpoint = endpoint.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_imds-console"))
                    .args(["doctor", "--sandbox-url", &endpoint, "--region", "us-east-1"])
                    .args(["--assume-role", role])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let clean = doctor().await;
    let table = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{table}");
    assert!(table.contains("Every checked action is allowed."), "{table}");

    sb.set_faults(sandbox::Faults {
        deny: ["cloudwatch:GetMetricData".to_owned()].into(),
        assume_role_deny: ["iam:PassRole".to_owned()].into(),
        ..Default::default()
    });
    let denied = doctor().await;
    let table = String::from_utf8_lossy(&denied.stdout);
    assert!(!denied.status.success(), "a denial fails the command: {table}");
    let row = |action: &str, principal: &str| {
        table
            .lines()
            .find(|l| l.starts_with(action) && l.contains(principal))
            .unwrap_or_else(|| panic!("no {action} row for {principal}: {table}"))
            .to_owned()
    };
    let cw = row("cloudwatch:GetMetricData", "console");
    assert!(
        cw.contains("DENIED") && cw.contains("console's IAM policy"),
        "{cw}"
    );
    let pass = row("iam:PassRole", "assume role");
    assert!(pass.contains("DENIED") && pass.contains(role), "{pass}");
    assert!(row("ssm:StartAutomationExecution", "console").contains("allowed"));
    assert!(table.contains("2 action(s) denied."), "{table}");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("permission(s) denied"));
}
