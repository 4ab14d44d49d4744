//! Tests of the real `imds-console` binary as a process: crash safety (killed at each point of a start),
//! JSON logs with request IDs, boto3 against the standalone sandbox,
//! HTTPS with --tls-cert/--tls-key, the files it leaves on disk, and its packaging (image, Kubernetes,
//! systemd).

mod aws;
mod boto3;
mod config;
mod crash;
mod embedded;
mod files;
mod logs;
mod packaging;
mod replicas;
mod shell;
mod tls;

/// A console started from `command` (its stderr is read here), and the URL it says it serves at;
/// the rest of its log is drained so it never blocks. Killed when dropped.
pub struct Serving {
    pub child: std::process::Child,
    pub url: String,
}

impl Serving {
    pub fn start(mut command: std::process::Command) -> Serving {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("it says where it listens")
                .expect("a log line");
            if let Some(at) = line.split(" is at ").nth(1) {
                break at.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Serving { child, url }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
