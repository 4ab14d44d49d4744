//! The frontend built into the binary (`--features embed-frontend`, see build.rs): served like a
//! `--static-dir`, with the same rules for client-side routes and missing files.

use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/embedded_frontend.rs"));

/// Whether this binary carries a frontend.
pub fn present() -> bool {
    FILES.iter().any(|(path, _)| *path == "/index.html")
}

/// The answer for `uri` from `files` (sorted by path): the file; index.html for a client-side route
/// (a last segment without a dot, such as `/fleet` or `/executions/…`); 404 for a missing file.
pub fn answer(files: &'static [(&'static str, &'static [u8])], uri: &Uri) -> Response {
    let path = uri.path();
    let find = |p: &str| {
        files
            .binary_search_by(|(name, _)| (*name).cmp(p))
            .ok()
            .map(|i| files[i].1)
    };
    let (name, bytes) = match find(path) {
        Some(bytes) => (path, bytes),
        None if path.rsplit('/').next().unwrap_or_default().contains('.') => {
            return (StatusCode::NOT_FOUND, "no such file").into_response();
        }
        None => match find("/index.html") {
            Some(bytes) => ("/index.html", bytes),
            None => return (StatusCode::NOT_FOUND, "no frontend in this binary").into_response(),
        },
    };
    let mut res = bytes.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    res
}

/// The types the built frontend uses; `application/wasm` is what lets browsers compile while fetching.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SITE: &[(&str, &[u8])] = &[
        ("/index.html", b"<!doctype html>"),
        ("/main-0123456789abcdef.js", b"import"),
        ("/pkg-0123456789abcdef/frontend_bg.wasm", b"\0asm"),
    ];

    async fn get(path: &str) -> (StatusCode, String, Vec<u8>) {
        let res = answer(SITE, &path.parse().unwrap());
        let status = res.status();
        let kind = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, kind, body.to_vec())
    }

    #[tokio::test]
    async fn files_routes_and_missing_files_are_answered_as_from_a_directory() {
        assert_eq!(
            get("/pkg-0123456789abcdef/frontend_bg.wasm").await,
            (StatusCode::OK, "application/wasm".into(), b"\0asm".to_vec())
        );
        let (status, kind, _) = get("/main-0123456789abcdef.js").await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::OK, "text/javascript; charset=utf-8")
        );
        // Client-side routes are the page.
        for route in ["/", "/fleet", "/executions/abc-123"] {
            assert_eq!(
                get(route).await,
                (
                    StatusCode::OK,
                    "text/html; charset=utf-8".into(),
                    b"<!doctype html>".to_vec()
                ),
                "{route}"
            );
        }
        assert_eq!(get("/favicon.ico").await.0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_binary_built_without_the_feature_carries_no_frontend() {
        assert_eq!(present(), cfg!(feature = "embed-frontend"));
    }
}
