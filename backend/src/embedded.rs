//! The frontend built into the binary (`--features embed-frontend`, see build.rs): served like a
//! `--static-dir`, with the same rules for client-side routes and missing files.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/embedded_frontend.rs"));

/// Whether this binary carries a frontend.
pub fn present() -> bool {
    FILES.iter().any(|(path, _)| *path == "/index.html")
}

/// The answer for `uri` from `files` (sorted by path): the file; index.html for a client-side route
/// (a last segment without a dot, such as `/fleet` or `/executions/…`); 404 for a missing file. Where
/// the build left `name.br` or `name.gz` and the browser accepts that encoding, those bytes are sent.
pub fn answer(files: &'static [(&'static str, &'static [u8])], uri: &Uri, headers: &HeaderMap) -> Response {
    let find = |p: &str| {
        files
            .binary_search_by(|(name, _)| (*name).cmp(p))
            .ok()
            .map(|i| files[i].1)
    };
    let path = uri.path();
    let name = match find(path) {
        Some(_) => path,
        None if crate::names_a_file(path) => {
            return (StatusCode::NOT_FOUND, "no such file").into_response();
        }
        None if find("/index.html").is_some() => "/index.html",
        None => return (StatusCode::NOT_FOUND, "no frontend in this binary").into_response(),
    };
    let accepted = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // `gzip, br;q=0.8`: a coding is taken when listed with no weight or a weight above 0.
    let takes = |coding: &str| {
        accepted.split(',').any(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            parts.next() == Some(coding)
                && parts.all(|p| {
                    p.strip_prefix("q=")
                        .is_none_or(|q| q.parse::<f32>().is_ok_and(|q| q > 0.0))
                })
        })
    };
    let encoded = [("br", ".br"), ("gzip", ".gz")]
        .into_iter()
        .find_map(|(coding, suffix)| {
            takes(coding).then(|| find(&format!("{name}{suffix}")).map(|b| (coding, b)))?
        });
    let mut res = match encoded {
        Some((coding, bytes)) => {
            let mut res = bytes.into_response();
            res.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
            res
        }
        None => find(name).unwrap_or_default().into_response(),
    };
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
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
        ("/pkg-0123456789abcdef/frontend_bg.wasm.br", b"BROTLI"),
        ("/pkg-0123456789abcdef/frontend_bg.wasm.gz", b"GZIP"),
    ];

    async fn get(path: &str) -> (StatusCode, String, Vec<u8>) {
        get_encoded(path, "").await.1
    }

    /// The answer's content encoding, and its status, type and body.
    async fn get_encoded(path: &str, accept: &str) -> (String, (StatusCode, String, Vec<u8>)) {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
        let res = answer(SITE, &path.parse().unwrap(), &headers);
        let coding = res
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let status = res.status();
        let kind = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (coding, (status, kind, body.to_vec()))
    }

    #[tokio::test]
    async fn the_build_s_compressed_files_go_to_browsers_that_take_them() {
        let wasm = "/pkg-0123456789abcdef/frontend_bg.wasm";
        let (coding, (_, kind, body)) = get_encoded(wasm, "gzip, deflate, br, zstd").await;
        assert_eq!(
            (coding.as_str(), kind.as_str(), &body[..]),
            ("br", "application/wasm", &b"BROTLI"[..])
        );
        let (coding, (_, _, body)) = get_encoded(wasm, "gzip").await;
        assert_eq!((coding.as_str(), &body[..]), ("gzip", &b"GZIP"[..]));
        let (coding, (_, _, body)) = get_encoded(wasm, "br;q=0, gzip").await;
        assert_eq!((coding.as_str(), &body[..]), ("gzip", &b"GZIP"[..]));
        let (coding, _) = get_encoded(wasm, "gzip;q=0.2, br;q=0.5").await;
        assert_eq!(coding, "br");
        let (coding, (_, _, body)) = get_encoded(wasm, "identity").await;
        assert_eq!((coding.as_str(), &body[..]), ("", &b"\0asm"[..]));
        // Nothing was built compressed for this one: it goes as it is.
        let (coding, _) = get_encoded("/main-0123456789abcdef.js", "br").await;
        assert_eq!(coding, "");
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
