//! What the binary leaves on disk: a data directory only its user can enter, database files only its
//! user can read, and the first admin's generated password in a private file, never in the log; no
//! built-in admin at all when single sign-on is configured, unless asked for.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Running {
    child: Child,
    /// Everything it logged until it listened.
    log: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path, extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imds-console"))
        .args(["serve", "--listen", "127.0.0.1:0", "--sandbox-fleet", "5"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    loop {
        let line = lines.next().expect("it says where it listens").unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains(" is at ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Running { child, log }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_data_directory_and_its_files_are_private_and_the_first_password_is_not_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let running = serve(&data, &[]);
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in ["imds-console.db", "imds-console.db-wal", "imds-console.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let password_file = data.join("first-admin-password");
    assert_eq!(mode(&password_file), 0o600);
    let password = std::fs::read_to_string(&password_file).unwrap();
    let password = password.trim();
    assert_eq!(password.len(), 24);
    assert!(
        !running.log.contains(password),
        "the password is not in the log: {}",
        running.log
    );
    assert!(
        running.log.contains(&password_file.display().to_string()),
        "the log names the file: {}",
        running.log
    );
    drop(running);

    // A data directory made looser by hand is tightened again at the next start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("imds-console.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let again = serve(&data, &[]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("imds-console.db")), 0o600);
    assert!(!again.log.contains("first start"), "the admin exists already");
}

#[test]
fn with_single_sign_on_no_built_in_admin_is_made_unless_asked_for() {
    let users = |data: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_imds-console"))
            .args(["user", "list", "--data-dir"])
            .arg(data)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let sso = tmp.path().join("sso");
    drop(serve(&sso, &["--trusted-proxy", "127.0.0.1"]));
    assert_eq!(users(&sso), "", "SSO only: no built-in admin");
    assert!(!sso.join("first-admin-password").exists());

    let asked = tmp.path().join("asked");
    drop(serve(
        &asked,
        &["--trusted-proxy", "127.0.0.1", "--bootstrap-admin"],
    ));
    assert!(users(&asked).starts_with("admin\tadmin\tenabled"));
    assert!(asked.join("first-admin-password").exists());
}
