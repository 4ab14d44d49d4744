//! The standalone sandbox speaks EC2 and Auto Scaling as boto3 expects: after the console (a second
//! process, pointed at it with --sandbox-url) fixes a launch template and the account default,
//! boto3 reads the new template version and the defaults back, and a scale-out it asks for launches
//! an IMDSv2-only instance.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with `args` and returns it with the text after `marker` on its first stderr
/// line that has it.
fn start(args: &[&str], marker: &'static str) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imds-console"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(marker).nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let found = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{args:?} never said '{marker}'"));
    (Killed(child), found)
}

const READ_BACK: &str = r#"
import json, os, sys
try:
    import boto3
except ImportError:
    sys.exit("boto3 is missing: ./x.sh test installs it (pip install boto3)")
kw = dict(endpoint_url=os.environ["SANDBOX"], region_name="us-east-1",
          aws_access_key_id="AKIDBOTO3", aws_secret_access_key="secret")
ec2 = boto3.client("ec2", **kw)
asg = boto3.client("autoscaling", **kw)
template = os.environ["TEMPLATE"]
version = ec2.describe_launch_template_versions(LaunchTemplateId=template, Versions=["$Default"])["LaunchTemplateVersions"][0]
defaults = ec2.get_instance_metadata_defaults()["AccountLevel"]
group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web-asg"])["AutoScalingGroups"][0]
before = {i["InstanceId"] for i in group["Instances"]}
asg.set_desired_capacity(AutoScalingGroupName="web-asg", DesiredCapacity=len(before) + 1)
after = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web-asg"])["AutoScalingGroups"][0]
new = sorted({i["InstanceId"] for i in after["Instances"]} - before)
launched = ec2.describe_instances(InstanceIds=new)["Reservations"][0]["Instances"][0]
print(json.dumps({
    "version": version["VersionNumber"],
    "description": version.get("VersionDescription", ""),
    "template_tokens": version["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"],
    "template_hop": version["LaunchTemplateData"]["MetadataOptions"].get("HttpPutResponseHopLimit"),
    "default_tokens": defaults.get("HttpTokens"),
    "default_hop": defaults.get("HttpPutResponseHopLimit"),
    "managed_by": defaults.get("ManagedBy"),
    "launched_tokens": launched["MetadataOptions"]["HttpTokens"],
    "launched_version": {t["Key"]: t["Value"] for t in launched["Tags"]}.get("aws:ec2launchtemplate:version"),
}))
"#;

#[tokio::test]
async fn boto3_reads_the_console_s_template_version_and_account_default_back_from_the_standalone_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let (_sandbox, sandbox_url) = start(
        &["sandbox", "--listen", "127.0.0.1:0", "--sandbox-fleet", "30"],
        "sandbox listening on ",
    );
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    let (_console, base) = start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-url",
            &sandbox_url,
            "--data-dir",
            data,
        ],
        " is at ",
    );
    let token = crate::crash::admin_token(&tmp.path().join("data"));
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{base}/api/v1{path}");

    let sources: serde_json::Value = http
        .get(api("/sources"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let find = |kind: &str, name: &str| {
        sources["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == kind && s["name"] == name && s["region"] == "us-east-1")
            .unwrap_or_else(|| panic!("no {kind} {name}: {sources}"))
            .clone()
    };
    let web = find("launch_template", "web");
    let default = find("account_default", "Instance metadata defaults");
    for (source, body) in [
        (
            &web,
            serde_json::json!({"hop_limit": 2, "override_reason": "checked by the boto3 test"}),
        ),
        (
            &default,
            serde_json::json!({"hop_limit": 3, "override_reason": "checked by the boto3 test"}),
        ),
    ] {
        let resp = http
            .post(api(&format!("/sources/{}/fix", source["id"].as_str().unwrap())))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }

    let out = Command::new("python3")
        .args(["-c", READ_BACK])
        .env("SANDBOX", &sandbox_url)
        .env("TEMPLATE", web["resource_id"].as_str().unwrap())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["version"], 2, "{read}");
    assert!(
        read["description"]
            .as_str()
            .unwrap()
            .starts_with("imds-console fix "),
        "{read}"
    );
    assert_eq!(read["template_tokens"], "required", "{read}");
    assert_eq!(read["template_hop"], 2, "{read}");
    assert_eq!(read["default_tokens"], "required", "{read}");
    assert_eq!(read["default_hop"], 3, "{read}");
    assert_eq!(read["managed_by"], "account", "{read}");
    assert_eq!(read["launched_tokens"], "required", "{read}");
    assert_eq!(read["launched_version"], "2", "{read}");
}
