//! Settings from a `--config` file: the command line wins over the environment, which wins over the
//! file; `serve --check-config` reports every problem at once and starts nothing; a console starts
//! from the file alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn console(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imds-console"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A settings file in a new directory, its data directory (`DIR/data`, not created) named first.
/// Returns the directory (removed when dropped), the data directory and the file's path.
fn settings(more: &str) -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let path = tmp.path().join("imds-console.toml");
    std::fs::write(&path, format!("data-dir = \"{}\"\n{more}", data.display())).unwrap();
    (tmp, data, path.display().to_string())
}

/// A settings file of exactly `body`.
fn file_of(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

#[test]
fn the_command_line_wins_over_the_environment_which_wins_over_the_file() {
    let (_tmp, data, file) =
        settings("listen = \"127.0.0.1:9001\"\nregion = [\"eu-west-1\"]\nsandbox_fleet = 10\n");
    let check = |args: &[&str], env: &[(&str, &str)]| {
        let out = console(args, env);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let from_file = check(&["serve", "--config", &file, "--check-config"], &[]);
    assert!(
        from_file.contains("listening on 127.0.0.1:9001")
            && from_file.contains(&format!("data in {}", data.display()))
            && from_file.contains("regions: eu-west-1"),
        "{from_file}"
    );
    // The file named by the environment instead of the flag.
    let by_env = check(&["serve", "--check-config"], &[("IMDS_CONSOLE_CONFIG", &file)]);
    assert!(by_env.contains("listening on 127.0.0.1:9001"), "{by_env}");
    let env_wins = check(
        &["serve", "--config", &file, "--check-config"],
        &[("IMDS_CONSOLE_LISTEN", "127.0.0.1:9002")],
    );
    assert!(env_wins.contains("listening on 127.0.0.1:9002"), "{env_wins}");
    let flag_wins = check(
        &[
            "serve",
            "--config",
            &file,
            "--check-config",
            "--listen",
            "127.0.0.1:9003",
            "--region",
            "us-east-1",
        ],
        &[("IMDS_CONSOLE_LISTEN", "127.0.0.1:9002")],
    );
    assert!(
        flag_wins.contains("listening on 127.0.0.1:9003") && flag_wins.contains("regions: us-east-1"),
        "{flag_wins}"
    );
    assert!(!data.exists(), "checking created the data directory");
}

#[test]
fn check_config_names_every_problem_and_changes_nothing() {
    let (_tmp, data, file) = settings(
        "tls-cert = \"/nonexistent/cert.pem\"\ntls-key = \"/nonexistent/key.pem\"\n\
         metrics-token = \"short\"\naccount = [\"12345\"]\nsso-group-role = [\"platform=captain\"]\n",
    );
    let out = console(&["serve", "--config", &file, "--check-config"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for problem in [
        "4 problem(s)",
        "cannot read the certificate chain /nonexistent/cert.pem",
        "--metrics-token: at least 16 characters",
        "account \"12345\" is not an AWS account ID (12 digits)",
        "--sso-group-role \"platform=captain\": \"captain\" is not a role",
    ] {
        assert!(err.contains(problem), "missing {problem:?} in: {err}");
    }
    assert!(!data.exists(), "checking created the data directory");
}

#[test]
fn a_file_that_is_not_settings_is_refused_with_the_key_or_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let unknown = file_of(tmp.path(), "unknown.toml", "listne = \"127.0.0.1:1\"\n");
    let out = console(&["serve", "--config", &unknown, "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`listne` is not a setting of imds-console"),
        "{}",
        text(&out.stderr)
    );
    // A value of the right shape that clap refuses is refused as the flag would be.
    let bad = file_of(tmp.path(), "bad.toml", "listen = \"nowhere\"\n");
    let out = console(&["serve", "--config", &bad, "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--listen") && err.contains("nowhere"), "{err}");
}

#[tokio::test]
async fn a_console_starts_from_its_config_file_alone() {
    let (_tmp, data, file) = settings("listen = \"127.0.0.1:0\"\nsandbox-fleet = 5\n");
    let mut command = Command::new(env!("CARGO_BIN_EXE_imds-console"));
    command.args(["serve", "--config", &file]);
    let console = crate::Serving::start(command);
    let health = reqwest::get(format!("{}/api/v1/health", console.url)).await;
    drop(console);
    assert_eq!(health.expect("it answers").status(), 200);
    assert!(
        data.join("first-admin-password").exists(),
        "the data directory the file names was used"
    );
}

#[test]
fn help_and_check_config_print_no_secret() {
    let secret = "metrics-token-from-the-environment-0123";
    let help = console(&["serve", "--help"], &[("IMDS_CONSOLE_METRICS_TOKEN", secret)]);
    assert!(help.status.success());
    assert!(
        !text(&help.stdout).contains(secret),
        "serve --help printed the metrics token"
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data").display().to_string();
    let check = console(
        &[
            "serve",
            "--check-config",
            "--data-dir",
            &data,
            "--sandbox-url",
            "http://someone:sandbox-password@127.0.0.1:4566",
        ],
        &[],
    );
    let out = text(&check.stdout) + &text(&check.stderr);
    assert!(check.status.success(), "{out}");
    assert!(
        out.contains("sandbox at") && !out.contains("sandbox-password"),
        "{out}"
    );
}
