//! With the `embed-frontend` feature, the built frontend (`frontend/dist`, or the directory named by
//! `IMDS_CONSOLE_FRONTEND_DIST`) goes into the binary, so a release ships as one file. Without it the
//! table of embedded files is empty and the console serves `--static-dir` (or the checkout's build).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=IMDS_CONSOLE_FRONTEND_DIST");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_frontend.rs");
    let mut table =
        String::from("/// The embedded frontend: each file's URL path and bytes, sorted by path.\n");
    table.push_str("pub static FILES: &[(&str, &[u8])] = &[\n");
    if std::env::var_os("CARGO_FEATURE_EMBED_FRONTEND").is_some() {
        let dist = std::env::var_os("IMDS_CONSOLE_FRONTEND_DIST").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend/dist"),
            PathBuf::from,
        );
        assert!(
            dist.join("index.html").is_file(),
            "embed-frontend: {} holds no index.html; build the frontend first (./x.sh release does)",
            dist.display()
        );
        println!("cargo:rerun-if-changed={}", dist.display());
        let mut files = Vec::new();
        collect(&dist, &dist, &mut files);
        files.sort();
        for (url, path) in files {
            println!("cargo:rerun-if-changed={}", path.display());
            table.push_str(&format!(
                "    ({url:?}, include_bytes!({:?})),\n",
                path.display().to_string()
            ));
        }
    }
    table.push_str("];\n");
    std::fs::write(&out, table).expect("OUT_DIR is writable");
}

/// Every file under `dir`, as (`/relative/url/path`, absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a readable directory entry").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let relative = path.strip_prefix(root).expect("under the root");
            let url = format!("/{}", relative.to_string_lossy().replace('\\', "/"));
            let absolute = path.canonicalize().expect("the file exists");
            files.push((url, absolute));
        }
    }
}
