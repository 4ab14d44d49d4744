//! The packaging. On every test run, without a container engine or a cluster: the image's runtime
//! settings start the one-file binary as its unprivileged user, the Kubernetes manifests validate
//! against Kubernetes's schemas and each container's settings pass the binary's own check, and the
//! systemd unit passes systemd's check and its commands the binary's. With `./x.sh image` (CI runs it
//! after the suites): the image built from the Dockerfile, run by podman.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The binary the image and the unit install: the one with the frontend inside, as x.sh builds it.
fn one_file_binary() -> PathBuf {
    std::env::var("IMDS_CONSOLE_EMBEDDED_BIN")
        .unwrap_or_else(|_| panic!("IMDS_CONSOLE_EMBEDDED_BIN is not set: run the tests with ./x.sh test"))
        .into()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// A directory standing in for a container's root file system, searchable by every user as in an
/// image (directories made in it get the usual 0755).
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o755);
        Root { dir }
    }

    /// `path` (absolute inside the container) on this machine.
    fn at(&self, path: &str) -> PathBuf {
        self.dir.path().join(path.trim_start_matches('/'))
    }

    fn install_binary(&self, path: &str) -> PathBuf {
        let to = self.at(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(one_file_binary(), &to).unwrap();
        set_mode(&to, 0o755);
        to
    }

    /// A directory the container's user owns (a volume).
    fn owned_dir(&self, path: &str, uid: u32) -> PathBuf {
        let dir = self.at(path);
        std::fs::create_dir_all(&dir).unwrap();
        if running_as_root() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
        }
        dir
    }

    fn write(&self, path: &str, body: &str) -> PathBuf {
        let file = self.at(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, body).unwrap();
        set_mode(&file, 0o644);
        file
    }

    /// An environment value naming a path inside the container, as a path on this machine.
    fn map_value(&self, value: &str, mounts: &[String]) -> String {
        match mounts.iter().find(|m| value.starts_with(m.as_str())) {
            Some(_) => self.at(value).display().to_string(),
            None => value.to_owned(),
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `program args…` as user `uid` (when this test runs as root, as in CI; otherwise as this user,
/// who is not root either), with exactly `env` and a default PATH.
fn as_user(uid: u32, program: &Path, args: &[String], env: &BTreeMap<String, String>) -> Command {
    let mut cmd = if running_as_root() {
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_owned(),
            "--".to_owned(),
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env)
        .current_dir("/");
    cmd
}

fn succeeded(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The runtime stage of the Dockerfile: its instructions after the last FROM, continuation lines
/// joined, comments dropped.
fn runtime_stage() -> Vec<(String, String)> {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let joined = dockerfile.replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, rest) = l.split_once(' ').unwrap_or((l, ""));
            (op.to_ascii_uppercase(), rest.trim().to_owned())
        })
        .collect();
    let last_from = instructions.iter().rposition(|(op, _)| op == "FROM").unwrap();
    instructions[last_from..].to_vec()
}

/// The console at `url` answers its health check and serves the page the binary carries.
async fn serves_the_console(url: &str) {
    let health = reqwest::get(format!("{url}/api/v1/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let page = reqwest::get(format!("{url}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text().await.unwrap().contains("/main-"),
        "the page the binary carries"
    );
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not an exec-form list: {text}: {e}"))
}

#[tokio::test]
async fn the_image_s_settings_start_the_one_file_binary_as_its_unprivileged_user() {
    let stage = runtime_stage();
    let one = |op: &str| -> Vec<String> {
        stage
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, r)| r.clone())
            .collect()
    };
    // The binary the build stage made is what the entrypoint runs.
    let entrypoint = json_list(&one("ENTRYPOINT")[0]);
    let cmd = json_list(&one("CMD")[0]);
    let copied = one("COPY")
        .into_iter()
        .find(|c| c.starts_with("--from=build"))
        .expect("the runtime stage copies the binary from the build stage");
    assert!(
        copied.ends_with(&format!(" {}", entrypoint[0])),
        "{copied} vs {entrypoint:?}"
    );
    // It runs as the user the stage creates, never as root.
    let user = one("USER")[0].clone();
    let uid: u32 = user.split(':').next().unwrap().parse().unwrap();
    assert_ne!(uid, 0);
    assert!(
        one("RUN").iter().any(|r| r.contains(&format!("--uid {uid}"))),
        "the stage creates user {uid}"
    );
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in one("ENV") {
        for pair in e.split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV key=value");
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    let volume = json_list(&one("VOLUME")[0]);
    assert_eq!(
        env.get("IMDS_CONSOLE_DATA_DIR"),
        volume.first(),
        "the data directory is the volume"
    );

    let root = Root::new();
    let binary = root.install_binary(&entrypoint[0]);
    let data = root.owned_dir(&volume[0], uid);
    env.insert("IMDS_CONSOLE_DATA_DIR".into(), data.display().to_string());
    let mut args: Vec<String> = entrypoint[1..].to_vec();
    args.extend(cmd);

    let mut check_args = args.clone();
    check_args.push("--check-config".into());
    let out = as_user(uid, &binary, &check_args, &env).output().unwrap();
    let said = succeeded("the image's --check-config", &out);
    assert!(
        said.contains("configuration OK: embedded sandbox")
            && said.contains(&format!("listening on {}", env["IMDS_CONSOLE_LISTEN"])),
        "{said}"
    );

    // Served as the image would (on this machine's loopback, not the image's 0.0.0.0:8080).
    env.insert("IMDS_CONSOLE_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("IMDS_CONSOLE_SANDBOX_FLEET".into(), "5".into());
    let console = crate::Serving::start(as_user(uid, &binary, &args, &env));
    serves_the_console(&console.url).await;
    drop(console);
    // What it keeps is its own and no one else's.
    let mut kept = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        if running_as_root() {
            assert_eq!(meta.uid(), uid);
        }
        assert_eq!(meta.mode() & 0o077, 0, "{:o}", meta.mode());
        kept += 1;
    }
    assert!(kept > 0, "the store is in the volume");
}

/// Each container of the sample deployment, as `kubernetes_settings.py` reads it.
#[derive(serde::Deserialize)]
struct Container {
    name: String,
    command: Option<Vec<String>>,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    files: BTreeMap<String, String>,
    dirs: Vec<String>,
    user: u32,
}

/// `text` with the settings its comments offer (`# key = value` lines) switched on.
fn with_offered_settings(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_manifests_validate_and_each_container_s_settings_pass_the_binary_s_check() {
    let manifest = repo().join("deploy/kubernetes/imds-console.yaml");
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(&manifest)
        .output()
        .expect("kubernetes-validate (./x.sh test installs it)");
    succeeded("kubernetes-validate --strict", &out);

    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/process/kubernetes_settings.py"))
        .arg(&manifest)
        .output()
        .unwrap();
    let containers: Vec<Container> =
        serde_json::from_str(&succeeded("kubernetes_settings.py", &out)).unwrap();
    assert_eq!(
        containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["check-config", "imds-console"]
    );
    for c in &containers {
        assert!(c.command.is_none(), "{}: the image's entrypoint runs", c.name);
        assert_ne!(c.user, 0, "{}", c.name);
        // Run as written, and with every setting its file offers in a comment switched on.
        for offered in [false, true] {
            let root = Root::new();
            let binary = root.install_binary("/usr/local/bin/imds-console");
            let mut mounts: Vec<String> = c
                .files
                .keys()
                .map(|f| f.rsplit_once('/').unwrap().0.to_owned())
                .collect();
            for (path, body) in &c.files {
                root.write(
                    path,
                    &if offered {
                        with_offered_settings(body)
                    } else {
                        body.clone()
                    },
                );
            }
            for dir in &c.dirs {
                root.owned_dir(dir, c.user);
                mounts.push(dir.clone());
            }
            let env: BTreeMap<String, String> = c
                .env
                .iter()
                .map(|(k, v)| (k.clone(), root.map_value(v, &mounts)))
                .collect();
            let mut args = c.args.clone();
            if !args.iter().any(|a| a == "--check-config") {
                args.push("--check-config".into());
            }
            let out = as_user(c.user, &binary, &args, &env).output().unwrap();
            let said = succeeded(&format!("{} (comments switched on: {offered})", c.name), &out);
            assert!(said.contains("configuration OK: aws"), "{}: {said}", c.name);
            assert!(said.contains("regions: us-east-1"), "{}: {said}", c.name);
        }
    }
}

#[test]
fn the_systemd_unit_passes_systemd_s_check_and_its_commands_the_binary_s() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/imds-console.service")).unwrap();
    let root = Root::new();
    let binary = root.install_binary("/usr/local/bin/imds-console");
    let config = root.write(
        "/etc/imds-console/imds-console.toml",
        "region = [\"us-east-1\"]\n",
    );
    let local = unit
        .replace("/usr/local/bin/imds-console", &binary.display().to_string())
        .replace(
            "/etc/imds-console/imds-console.toml",
            &config.display().to_string(),
        );
    let unit_file = root.write("/etc/systemd/system/imds-console.service", &local);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_file)
        .output()
        .expect("systemd-analyze (./x.sh test installs systemd)");
    succeeded("systemd-analyze verify", &out);
    // systemd only warns about a key it does not know; here that is a failure.
    let warnings = text(&out.stderr);
    assert!(!warnings.contains("Unknown"), "{warnings}");

    let value = |key: &str| -> Vec<String> {
        local
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    // The service's data directory is its StateDirectory, which systemd makes for its dynamic user.
    assert_eq!(value("StateDirectory"), ["imds-console"]);
    let mut env: BTreeMap<String, String> = value("Environment")
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert_eq!(env["IMDS_CONSOLE_DATA_DIR"], "/var/lib/imds-console");
    let state = root.owned_dir("/var/lib/imds-console", 61_000);
    env.insert("IMDS_CONSOLE_DATA_DIR".into(), state.display().to_string());
    let pre = value("ExecStartPre");
    let start = value("ExecStart");
    assert_eq!(pre.len(), 1);
    assert_eq!(
        pre[0],
        format!("{} --check-config", start[0]),
        "the check runs the service's own command"
    );
    let words: Vec<String> = pre[0].split_whitespace().map(str::to_owned).collect();
    let out = as_user(61_000, Path::new(&words[0]), &words[1..], &env)
        .output()
        .unwrap();
    let said = succeeded("the unit's ExecStartPre", &out);
    assert!(said.contains("configuration OK: embedded sandbox"), "{said}");
}

/// The image `./x.sh image` built from the Dockerfile (it names it in IMDS_CONSOLE_IMAGE and runs
/// this test): what `docker run` would start, run here by podman.
fn built_image() -> String {
    std::env::var("IMDS_CONSOLE_IMAGE")
        .unwrap_or_else(|_| panic!("IMDS_CONSOLE_IMAGE is not set: run this test with ./x.sh image"))
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().expect("podman runs")
}

/// `podman run --rm` as `docker run` would, with what this machine needs said outright: runc (crun
/// refuses a mixed cgroup v1/v2 host), and open-file and process limits below this machine's
/// (podman's defaults are above what a container may be given here).
fn podman_run() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args([
        "--runtime=runc",
        "run",
        "--rm",
        "--pull=never",
        "--ulimit=nofile=4096:4096",
        "--ulimit=nproc=4096:4096",
    ]);
    cmd
}

/// A named volume and the containers of one test, removed at the end whatever happened.
struct Podman {
    volume: String,
    containers: Vec<String>,
}

impl Podman {
    fn new() -> Podman {
        let volume = format!("imds-console-test-{}", std::process::id());
        succeeded("podman volume create", &podman(&["volume", "create", &volume]));
        Podman {
            volume,
            containers: Vec::new(),
        }
    }

    /// `podman run --rm` of the image with the volume where the image declares it, and `args` after it.
    fn run(&mut self, args: &[&str]) -> Command {
        let name = format!("{}-{}", self.volume, self.containers.len());
        self.containers.push(name.clone());
        let mut cmd = podman_run();
        // The host's network: the console listens on loopback, as tests here must.
        cmd.args([
            "--network=host",
            "--env=IMDS_CONSOLE_LISTEN=127.0.0.1:0",
            "--env=IMDS_CONSOLE_SANDBOX_FLEET=5",
            "--env=RUST_LOG=info",
        ])
        .arg(format!("--name={name}"))
        .arg(format!("--volume={}:/var/lib/imds-console", self.volume))
        .arg(built_image())
        .args(args);
        cmd
    }

    fn last(&self) -> &str {
        self.containers.last().unwrap()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman(&["rm", "--force", "--time=0", c]);
        }
        let _ = podman(&["volume", "rm", "--force", &self.volume]);
    }
}

#[tokio::test]
#[ignore = "needs the image the Dockerfile builds: ./x.sh image builds it and runs this test"]
async fn the_built_image_serves_the_console_as_its_user_and_keeps_its_store_in_the_volume() {
    let image = built_image();
    let inspect = succeeded(
        "podman image inspect",
        &podman(&[
            "image",
            "inspect",
            "--format={{.Config.User}} {{json .Config.Entrypoint}}",
            &image,
        ]),
    );
    assert_eq!(inspect.trim(), r#"10001:10001 ["/usr/local/bin/imds-console"]"#);
    let mut pod = Podman::new();

    // The image's own settings pass its check (listening where the image says, on every address).
    let out = podman_run()
        .args([&image, "serve", "--check-config"])
        .output()
        .unwrap();
    let said = succeeded("the image's serve --check-config", &out);
    assert!(
        said.contains("configuration OK: embedded sandbox") && said.contains("listening on 0.0.0.0:8080"),
        "{said}"
    );

    // First start: the console makes its store in the volume, as the image's user.
    let console = crate::Serving::start(pod.run(&[]));
    serves_the_console(&console.url).await;
    let status = succeeded(
        "podman exec",
        &podman(&["exec", pod.last(), "cat", "/proc/1/status"]),
    );
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_owned();
    assert_eq!(
        uid_line.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["10001"; 4],
        "the console runs as the image's user: {uid_line}"
    );
    succeeded("podman stop", &podman(&["stop", "--time=10", pod.last()]));
    drop(console);

    let mountpoint = succeeded(
        "podman volume inspect",
        &podman(&["volume", "inspect", "--format={{.Mountpoint}}", &pod.volume]),
    );
    let volume = PathBuf::from(mountpoint.trim());
    let meta = std::fs::metadata(&volume).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (10001, 10001, 0o700),
        "the volume's directory"
    );
    let mut kept = 0;
    for entry in std::fs::read_dir(&volume).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let (name, mode) = (entry.file_name(), meta.mode());
        assert_eq!(meta.uid(), 10001, "{name:?}");
        assert_eq!(
            mode & 0o077,
            0,
            "{name:?} is {mode:o}: only its owner may read the store"
        );
        kept += 1;
    }
    assert!(kept > 0, "the store is in the volume");

    // What is in the volume outlives the container: a token made by a second container works in a
    // third.
    let out = pod
        .run(&["token", "create", "--user", "admin", "--name", "image test"])
        .output()
        .unwrap();
    let token = succeeded("token create in the image", &out).trim().to_owned();
    let console = crate::Serving::start(pod.run(&[]));
    let me = reqwest::Client::new()
        .get(format!("{}/api/v1/auth/me", console.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "the token from the volume's store");
    assert!(me.text().await.unwrap().contains("\"admin\""));
}
