//! The crates' layers as ARCHITECTURE.md draws them, held by the dependency graph Cargo resolves:
//! `shared` at the bottom; `store` on it alone, knowing neither HTTP nor AWS; the sandbox sharing no
//! code with the console; the server (`backend`) on top. And the layered crates stay small enough to
//! read: no source file over 800 lines, each opening with a `//!` line.

use std::collections::{BTreeMap, BTreeSet};

/// Every workspace package's dependencies (direct and indirect), by package name, for this build.
fn closures() -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        // For this machine's platform: the lock's packages for others are never downloaded.
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
        ])
        .arg(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let edges: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                // Normal dependencies only: a crate's tests may use what its code must not.
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), deps)
        })
        .collect();
    meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let root = m.as_str().unwrap();
            let mut seen = BTreeSet::new();
            let mut todo = vec![root];
            while let Some(id) = todo.pop() {
                for dep in edges.get(id).into_iter().flatten() {
                    if seen.insert(name_of[dep].to_owned()) {
                        todo.push(dep);
                    }
                }
            }
            (name_of[root].to_owned(), seen)
        })
        .collect()
}

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    let all = closures();
    // The graph is read: the store's own database driver is in its closure.
    assert!(all["store"].contains("rusqlite"), "{:?}", all["store"]);
    let forbidden = |krate: &str, names: &[&str], prefixes: &[&str]| {
        let bad: Vec<&String> = all[krate]
            .iter()
            .filter(|d| names.contains(&d.as_str()) || prefixes.iter().any(|p| d.starts_with(p)))
            .collect();
        assert!(bad.is_empty(), "{krate} must not depend on {bad:?}");
    };
    // The wire types and validation, shared with the browser: nothing of the server's.
    forbidden(
        "shared",
        &[
            "store",
            "backend",
            "sandbox",
            "axum",
            "tokio-postgres",
            "rusqlite",
        ],
        &["aws-"],
    );
    // The store: SQL only. No HTTP server, no AWS, no console.
    forbidden(
        "store",
        &["backend", "sandbox", "axum", "tower-http", "hyper-util"],
        &["aws-"],
    );
    // The sandbox catches the console's bugs only if it shares none of its code.
    forbidden("sandbox", &["backend", "store"], &["aws-sdk-"]);
    assert!(
        all["backend"].contains("store"),
        "the server keeps its records in the store crate"
    );
}

#[test]
fn the_layered_crates_files_are_small_and_say_what_they_are() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    for krate in ["store/src"] {
        let mut dirs = vec![root.join(krate)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let lines = text.lines().count();
                if lines > 800 {
                    problems.push(format!("{}: {lines} lines (at most 800)", path.display()));
                }
                if !text.starts_with("//!") {
                    problems.push(format!("{}: does not open with a //! line", path.display()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
