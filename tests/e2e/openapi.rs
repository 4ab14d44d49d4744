//! The OpenAPI document: it validates as OpenAPI 3.1, every operation it lists is routed (a request
//! to it is answered by its handler, never by the API's fallback or a 405), the roles it names are
//! the policy table's, and its schemas are the wire types.

use e2e::spawn_app;
use serde_json::Value;

/// The API's own answer to a route it does not have.
const FALLBACK: &str = "no such API route";

#[tokio::test]
async fn the_openapi_document_validates_and_lists_exactly_the_routed_operations() {
    let app = spawn_app().await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");

    // Valid OpenAPI 3.1, by an implementation that is not ours.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
        ])
        .arg(file.path())
        .output()
        .expect("python3 runs");
    assert!(
        check.status.success(),
        "openapi-spec-validator (./x.sh test installs it) refused the document: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Every listed operation reaches a handler. The probe itself can tell: an unrouted path and a
    // wrong method are caught.
    let probe = |method: &str, path: &str| {
        let url = app.url(path);
        let request = match method {
            "get" => app.http.get(url),
            "post" => app.http.post(url).json(&serde_json::json!({})),
            "put" => app.http.put(url).json(&serde_json::json!({})),
            other => panic!("the document has a {other} operation; probe it too"),
        };
        // The event stream never ends: its status is the answer.
        let stream = path == "/events";
        async move {
            let resp = request.send().await.expect("the console answers");
            let status = resp.status().as_u16();
            let body = if stream {
                String::new()
            } else {
                resp.text().await.unwrap_or_default()
            };
            (status, body)
        }
    };
    let (status, body) = probe("get", "/no-such-thing").await;
    assert!(status == 404 && body.contains(FALLBACK), "{status} {body}");
    let (status, _) = probe("put", "/health").await;
    assert_eq!(status, 405);
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            // Path parameters get values that name nothing, so nothing is changed.
            let concrete: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { "zz-none" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let (status, body) = probe(method, &concrete).await;
            assert!(
                status != 405 && !(status == 404 && body.contains(FALLBACK)),
                "{method} {path} is in the document but not routed: {status} {body}"
            );
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path}"
            );
            assert!(
                op["responses"]["default"].is_object(),
                "{method} {path} has no error answer"
            );
        }
    }
    assert!(operations >= 49, "only {operations} operations");

    // The roles are the policy table's.
    let role = |path: &str, method: &str| doc["paths"][path][method]["x-required-role"].clone();
    assert_eq!(role("/health", "get"), "none");
    assert_eq!(role("/auth/login", "post"), "none");
    assert_eq!(role("/executions", "get"), "viewer");
    assert_eq!(role("/executions", "post"), "operator");
    assert_eq!(role("/users", "post"), "admin");
    assert_eq!(role("/approval-policy", "get"), "viewer");
    assert_eq!(role("/approval-policy", "put"), "admin");
    assert_eq!(doc["paths"]["/health"]["get"]["security"], serde_json::json!([]));

    // Bodies and answers are the wire types, with the runbook's parameters in them.
    let start = &doc["paths"]["/executions"]["post"];
    let body_ref = start["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    assert_eq!(body_ref, "#/components/schemas/StartExecutionRequest");
    let schemas = &doc["components"]["schemas"];
    for name in [
        "StartExecutionRequest",
        "ExecutionDetail",
        "ApiError",
        "PlanRequest",
        "InstanceView",
    ] {
        assert!(schemas[name].is_object(), "no schema {name}");
    }
    let history: Vec<&Value> = doc["paths"]["/executions"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert!(
        history
            .iter()
            .any(|p| p["name"] == "status" && p["in"] == "query"),
        "the history filters are query parameters: {history:?}"
    );
}
