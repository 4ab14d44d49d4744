//! Several consoles on one PostgreSQL database, as real processes against one sandbox (in this test
//! process, so it outlives them like AWS does): one leads and the other takes over within seconds when
//! the leader is killed mid-run, recording the run's end once; a run started on one streams live to a
//! client of the other; and the SSM read budget holds for both together.

use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::crash::client;
use crate::Serving;

/// The PostgreSQL server (`./x.sh test` starts it and sets the variable); a fresh database on it.
async fn fresh_database() -> Option<String> {
    let Ok(server) = std::env::var("IMDS_CONSOLE_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs IMDS_CONSOLE_TEST_POSTGRES"
        );
        eprintln!("IMDS_CONSOLE_TEST_POSTGRES is not set: skipping");
        return None;
    };
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let name = format!("imds_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let (base, _) = server.rsplit_once('/').expect("a URL ending in /database");
    Some(format!("{base}/{name}"))
}

async fn sandbox(speed: f64) -> (sandbox::Sandbox, String) {
    let config = sandbox::SandboxConfig {
        fleet_size: 30,
        speed,
        ..sandbox::SandboxConfig::default()
    };
    let sb = sandbox::Sandbox::start(config).expect("sandbox");
    let addr = sb.serve("127.0.0.1:0".parse().unwrap()).await.expect("serve");
    (sb, format!("http://{addr}"))
}

/// A replica on `database` against `sandbox_url`, with a data directory of its own.
fn replica(database: &str, sandbox_url: &str, dir: &std::path::Path, read_rate: &str) -> Serving {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imds-console"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--poll-ms",
        "100",
        "--unclear-start-wait-secs",
        "1",
    ])
    .args(["--ssm-read-rate", read_rate, "--ssm-start-rate", "20"])
    .args(["--database-url", database, "--sandbox-url", sandbox_url])
    .arg("--data-dir")
    .arg(dir)
    .env("RUST_LOG", "warn");
    Serving::start(cmd)
}

/// An admin token made with the CLI against the shared database.
fn admin_token(database: &str, dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_imds-console"))
        .args([
            "token",
            "create",
            "--user",
            "admin",
            "--database-url",
            database,
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .expect("token create runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    let reply = http.get(&url).send().await.expect("request");
    reply.json().await.expect("JSON")
}

/// Starts a run on `base` with `body`; returns its execution ID.
async fn start(http: &reqwest::Client, base: &str, body: Value) -> String {
    let reply = http
        .post(format!("{base}/api/v1/executions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let reply: Value = reply.json().await.unwrap();
    reply["execution_id"].as_str().expect("started").to_owned()
}

async fn leads(http: &reqwest::Client, base: &str) -> bool {
    get(http, format!("{base}/api/v1/health")).await["leader"] == true
}

/// Instances in us-east-1 that are running, reachable and have no IMDSv1 calls.
async fn quiet_instances(http: &reqwest::Client, base: &str) -> Vec<String> {
    let list = get(http, format!("{base}/api/v1/instances")).await;
    list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["region"] == "us-east-1"
                && i["state"] == "running"
                && i["metadata"]["http_endpoint"] == "enabled"
                && i["imdsv1_calls"].as_u64().unwrap_or(0) == 0
        })
        .map(|i| i["instance_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Two replicas, the first leading (it started first) and the second following.
struct Pair {
    leader: Serving,
    follower: Serving,
    http: reqwest::Client,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn pair(database: &str, sandbox_url: &str, read_rate: &str) -> Pair {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = replica(database, sandbox_url, a.path(), read_rate);
    let http = client(&admin_token(database, a.path()));
    assert!(leads(&http, &leader.url).await, "the first replica leads");
    let follower = replica(database, sandbox_url, b.path(), read_rate);
    assert!(!leads(&http, &follower.url).await, "the second follows");
    Pair {
        leader,
        follower,
        http,
        _dirs: (a, b),
    }
}

#[tokio::test]
async fn a_replica_takes_over_when_the_leader_is_killed_mid_run_and_records_its_end_once() {
    let Some(database) = fresh_database().await else {
        return;
    };
    // Slow enough that the run is still going when its watcher dies.
    let (sb, sandbox_url) = sandbox(10.0).await;
    let Pair {
        mut leader,
        follower,
        http,
        _dirs,
    } = pair(&database, &sandbox_url, "20").await;
    let base = follower.url.clone();

    // Sent by the follower: whichever replica receives a start records and sends it.
    let id = quiet_instances(&http, &base).await.remove(0);
    let execution = start(&http, &base, json!({"parameters": {"InstanceId": id}})).await;
    let detail = get(&http, format!("{base}/api/v1/executions/{execution}")).await;
    assert_eq!(detail["summary"]["status"], "InProgress", "{detail}");

    leader.child.kill().expect("kill the leader");
    leader.child.wait().unwrap();
    let killed = Instant::now();
    while !leads(&http, &base).await {
        assert!(killed.elapsed() < Duration::from_secs(15), "nobody took the lead");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = killed.elapsed();
    eprintln!(
        "the follower led {} ms after the leader was killed",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(10), "took over in {took:?}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let audit = get(&http, format!("{base}/api/v1/audit")).await;
        let records = audit.as_array().unwrap();
        assert_eq!(records.len(), 1, "one record: {audit}");
        if records[0]["status"] == "Success" {
            break records[0].clone();
        }
        assert!(Instant::now() < deadline, "the run never finished: {audit}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(record["execution_id"], execution.as_str());
    assert!(record["end_time"].as_str().is_some(), "{record}");
    assert_eq!(sb.execution_ids(), [execution], "one execution in SSM");
    let page = get(&http, format!("{base}/api/v1/executions")).await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 1, "{page}");
}

#[tokio::test]
async fn a_run_started_on_one_replica_streams_live_to_a_client_of_the_other() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let (_sb, sandbox_url) = sandbox(300.0).await;
    let pair = pair(&database, &sandbox_url, "20").await;
    let mut stream = pair
        .http
        .get(format!("{}/api/v1/events", pair.follower.url))
        .send()
        .await
        .expect("the follower's event stream")
        .bytes_stream();
    let id = quiet_instances(&pair.http, &pair.leader.url).await.remove(0);
    let execution = start(
        &pair.http,
        &pair.leader.url,
        json!({"parameters": {"InstanceId": id}}),
    )
    .await;
    // Every status the run goes through, as the follower's client hears it.
    let mut heard = String::new();
    let heard_success = tokio::time::timeout(Duration::from_secs(30), async {
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = stream.next().await {
            heard.push_str(&String::from_utf8_lossy(&chunk));
            if heard
                .lines()
                .any(|l| l.contains(&execution) && l.contains("\"Success\""))
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(heard_success, Ok(true), "the follower's stream: {heard}");
}

#[tokio::test]
async fn ssm_reads_stay_within_the_budget_with_both_replicas_reading() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let (sb, sandbox_url) = sandbox(2.0).await;
    // Three reads a second for the two together: the leader's watcher follows a rollout while the
    // follower refreshes its children's steps for a viewer.
    let pair = pair(&database, &sandbox_url, "3").await;
    let ids: Vec<String> = quiet_instances(&pair.http, &pair.leader.url)
        .await
        .into_iter()
        .take(8)
        .collect();
    let parent = start(
        &pair.http,
        &pair.follower.url,
        json!({"parameters": {"EnforceIMDSv2": "required"},
            "rate_control": {"targets": {"instance_ids": ids}, "max_concurrency": "2", "max_errors": "0"}}),
    )
    .await;
    let since = now_ms() + 1_000;
    let until = Instant::now() + Duration::from_secs(12);
    let mut child_views = 0;
    while Instant::now() < until {
        let children = get(
            &pair.http,
            format!("{}/api/v1/executions?parent={parent}", pair.follower.url),
        )
        .await;
        for child in children["executions"].as_array().into_iter().flatten() {
            let id = child["execution_id"].as_str().unwrap();
            get(
                &pair.http,
                format!("{}/api/v1/executions/{id}", pair.follower.url),
            )
            .await;
            child_views += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The window as counted: from `since` to now (the last views may have ended past `until`).
    let window_s = (now_ms() - since) as f64 / 1000.0;
    let leader_reads = sb.count_calls("ssm:DescribeAutomationExecutions", since);
    let reads = sb.count_calls("ssm:GetAutomationExecution", since) + leader_reads;
    let peak = sb.peak_per_second("ssm:*", since);
    eprintln!("{child_views} child views; {reads} SSM reads in {window_s:.1} s; peak {peak} a second");
    assert!(child_views > 20, "the follower was asked to read: {child_views}");
    assert!(leader_reads > 0, "the leader read the rollout's children");
    // One over the budget at most, for a call that started at the end of one window and arrived in
    // the next: each replica alone would allow three, both together six.
    assert!(peak <= 4, "peak {peak} SSM calls in a second, budget 3");
    assert!(
        reads as f64 <= 3.0 * window_s + 2.0,
        "{reads} reads in {window_s:.1} s, budget 3 a second"
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn sessions_and_sign_in_throttling_hold_across_replicas() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let (_sb, sandbox_url) = sandbox(300.0).await;
    let pair = pair(&database, &sandbox_url, "20").await;
    let (a, b) = (&pair.leader.url, &pair.follower.url);
    let reply = pair
        .http
        .post(format!("{a}/api/v1/users"))
        .json(&json!({"name": "bob", "role": "viewer", "password": "bob's long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let anonymous = reqwest::Client::new();
    let login = |base: &str, password: &str| {
        anonymous
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": "bob", "password": password}))
            .send()
    };
    // A session made on one replica is good on the other.
    let signed_in = login(a, "bob's long password").await.unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let me = anonymous
        .get(format!("{b}/api/v1/auth/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    // Guesses spread over both replicas count together: the sixth is refused wherever it lands.
    for n in 0..5 {
        let base = if n % 2 == 0 { a } else { b };
        assert_eq!(login(base, "a wrong guess!!").await.unwrap().status(), 401);
    }
    for base in [a, b] {
        assert_eq!(
            login(base, "a wrong guess!!").await.unwrap().status(),
            429,
            "{base}"
        );
    }
}

#[tokio::test]
async fn only_the_leader_reads_ec2_and_a_follower_serves_its_fleet() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let (_sb, sandbox_url) = sandbox(300.0).await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = replica(&database, &sandbox_url, a.path(), "20");
    let http = client(&admin_token(&database, a.path()));
    // A follower that cannot reach AWS at all: whatever fleet it shows came from the leader.
    let follower = replica(&database, "http://127.0.0.1:9", b.path(), "20");
    let from_leader = get(&http, format!("{}/api/v1/instances", leader.url)).await;
    let from_follower = get(&http, format!("{}/api/v1/instances", follower.url)).await;
    let ids = |v: &Value| -> Vec<String> {
        v["instances"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|i| i["instance_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&from_follower).len(), 30, "{from_follower}");
    assert_eq!(ids(&from_follower), ids(&from_leader));
    drop(leader);
}

#[tokio::test]
async fn viewers_lookups_of_unknown_runs_share_one_budget_across_replicas() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let (sb, sandbox_url) = sandbox(300.0).await;
    let pair = pair(&database, &sandbox_url, "20").await;
    // Let start-up reads settle, then look up runs this console never heard of, from both replicas.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let since = now_ms();
    let until = Instant::now() + Duration::from_secs(4);
    let (mut answered, mut refused) = (0, 0);
    let mut n = 0;
    while Instant::now() < until {
        let base = if n % 2 == 0 {
            &pair.leader.url
        } else {
            &pair.follower.url
        };
        let id = format!("{n:08x}-0000-4000-8000-{n:012x}");
        let reply = pair
            .http
            .get(format!("{base}/api/v1/executions/{id}"))
            .send()
            .await
            .unwrap();
        match reply.status().as_u16() {
            429 => refused += 1,
            _ => answered += 1,
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let window_s = (now_ms() - since) as f64 / 1000.0;
    let lookups = sb.count_calls("ssm:GetAutomationExecution", since);
    eprintln!("{n} lookups asked, {answered} answered, {refused} refused; {lookups} SSM calls in 4 s");
    assert!(refused > 0, "the budget refused some");
    // One lookup a second per region (two regions), for both replicas together: 8 in 4 s, and one
    // more per region at the window's edge. Each replica alone would allow as many again.
    assert!(
        lookups as f64 <= 2.0 * window_s + 2.0,
        "{lookups} lookups in {window_s:.1} s"
    );
}
