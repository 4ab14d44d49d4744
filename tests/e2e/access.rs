//! Access control through HTTP: every route against every kind of caller, cross-site requests,
//! brute-force sign-ins, sign-on proxy headers, and the audit of sign-ins and account changes.

use backend::auth::accounts::Accounts;
use e2e::{spawn_app, spawn_app_with, AppOptions, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// A caller: how it authenticates.
#[derive(Debug, Clone)]
enum Caller {
    Anonymous,
    Cookie(&'static str, String),
    Bearer(&'static str, String),
}

impl Caller {
    fn name(&self) -> &'static str {
        match self {
            Caller::Anonymous => "no identity",
            Caller::Cookie(n, _) | Caller::Bearer(n, _) => n,
        }
    }
}

async fn call(app: &TestApp, caller: &Caller, method: Method, path: &str, body: Option<&Value>) -> u16 {
    answer(app, caller, method, path, body, false).await.0
}

/// The status, and the body unless it is the event stream (`read_body` false), which never ends.
async fn answer(
    app: &TestApp,
    caller: &Caller,
    method: Method,
    path: &str,
    body: Option<&Value>,
    read_body: bool,
) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, app.url(path));
    match caller {
        Caller::Anonymous => {}
        // A browser sends its cookie with the page's own Origin.
        Caller::Cookie(_, cookie) => req = req.header("cookie", cookie).header("origin", app.base.clone()),
        Caller::Bearer(_, token) => req = req.bearer_auth(token),
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = if read_body {
        resp.text().await.unwrap_or_default()
    } else {
        String::new()
    };
    (status, text)
}

#[tokio::test]
async fn every_route_answers_each_kind_of_caller_as_the_policy_says() {
    let app = spawn_app().await;
    // EnforceIMDSv2=optional on an instance that already allows IMDSv1 changes nothing, so a rollback
    // always finds nothing to do (409) and the table stays independent of call order.
    let instance = app
        .pick("us-east-1", |i| {
            i["metadata"]["http_tokens"] == "optional" && i["metadata"]["http_endpoint"] == "enabled"
        })
        .await
        .remove(0);
    let (_, started) = app
        .post(
            "/executions",
            &json!({"parameters": {"InstanceId": instance, "EnforceIMDSv2": "optional"}}),
        )
        .await;
    let exec = started["execution_id"].as_str().unwrap().to_owned();
    app.wait_done(&exec, Duration::from_secs(30)).await;

    let viewer_pw = app.add_user("vera", "viewer").await;
    let operator_pw = app.add_user("otto", "operator").await;
    let gone_pw = app.add_user("gone", "operator").await;
    let viewer = Caller::Cookie("viewer", app.session("vera", &viewer_pw).await);
    let operator = Caller::Cookie("operator", app.session("otto", &operator_pw).await);
    let admin = Caller::Bearer("admin", app.admin_token.clone());
    let gone_cookie = app.session("gone", &gone_pw).await;
    let (status, _) = app.post("/users/gone/disable", &json!({})).await;
    assert_eq!(status, 204);
    let disabled = Caller::Cookie("disabled user", gone_cookie);
    // A token otto made at the shell, then revoked by the admin.
    let (tok_id, tok_secret, _, _) = Accounts(&app.state.store)
        .create_token("otto", None, None, None, false)
        .await
        .unwrap();
    let (status, _) = app.post(&format!("/tokens/{tok_id}/revoke"), &json!({})).await;
    assert_eq!(status, 204);
    let revoked = Caller::Bearer("revoked token", tok_secret);
    let expired_secret = Accounts(&app.state.store)
        .create_session("otto", -1, true)
        .await
        .unwrap();
    let expired = Caller::Cookie("expired session", format!("imds_session={expired_secret}"));

    let start = json!({"parameters": {"InstanceId": instance, "EnforceIMDSv2": "optional"}});
    let mut n = 0;
    // (method, path, body, role needed: 0 public, 1 viewer, 2 operator, 3 admin, status when allowed)
    let routes: Vec<(Method, String, Option<Value>, u8, u16)> = vec![
        (Method::GET, "/health".into(), None, 0, 200),
        (Method::GET, "/identity".into(), None, 1, 200),
        (Method::GET, "/auth/me".into(), None, 1, 200),
        (Method::GET, "/instances".into(), None, 1, 200),
        (Method::GET, "/executions".into(), None, 1, 200),
        (Method::GET, format!("/executions/{exec}"), None, 1, 200),
        (Method::GET, "/audit".into(), None, 1, 200),
        (Method::GET, "/audit?format=csv".into(), None, 1, 200),
        (
            Method::POST,
            "/executions/preview".into(),
            Some(start.clone()),
            2,
            200,
        ),
        (Method::POST, "/executions".into(), Some(start.clone()), 2, 201),
        (
            Method::POST,
            format!("/executions/{exec}/stop"),
            Some(json!({})),
            2,
            409,
        ),
        (
            Method::POST,
            format!("/executions/{exec}/rollback"),
            Some(json!({})),
            2,
            409,
        ),
        (
            Method::POST,
            format!("/executions/{exec}/rollback/preview"),
            Some(json!({})),
            2,
            409,
        ),
        (Method::GET, "/plans".into(), None, 1, 200),
        (Method::GET, "/approvals".into(), None, 1, 200),
        (Method::GET, "/webhooks".into(), None, 3, 200),
        (Method::GET, "/approval-policy".into(), None, 1, 200),
        (
            Method::PUT,
            "/approval-policy".into(),
            Some(json!({"tags": []})),
            3,
            200,
        ),
        (
            Method::POST,
            "/approvals/999999/approve".into(),
            Some(json!({})),
            2,
            404,
        ),
        (
            Method::POST,
            "/plans/no-such-plan/preview".into(),
            Some(json!({})),
            2,
            404,
        ),
        (Method::GET, "/sources".into(), None, 1, 200),
        (Method::GET, "/sources/fixes".into(), None, 1, 200),
        (
            Method::POST,
            format!(
                "/sources/account_default%3A{}%3Aus-east-1/preview",
                sandbox::ACCOUNT_ID
            ),
            Some(json!({})),
            2,
            200,
        ),
        (
            Method::POST,
            "/sources/fixes/no-such-fix/revert".into(),
            Some(json!({})),
            2,
            404,
        ),
        (Method::GET, "/users".into(), None, 3, 200),
        (Method::GET, "/tokens".into(), None, 3, 200),
        (Method::GET, "/audit/auth".into(), None, 3, 200),
        (Method::POST, "/users".into(), None, 3, 201),
        // Everyone signed in makes their own tokens (the body names the caller, below).
        (Method::POST, "/tokens".into(), None, 1, 201),
    ];
    let callers = [
        (Caller::Anonymous, 0u8),
        (viewer, 1),
        (operator, 2),
        (admin, 3),
        (disabled, 0),
        (revoked, 0),
        (expired, 0),
    ];
    for (method, path, body, needs, ok) in &routes {
        for (caller, level) in &callers {
            let body = if path == "/users" && *method == Method::POST {
                n += 1;
                Some(json!({"name": format!("new{n}"), "role": "viewer", "password": "a-long-password-1"}))
            } else if path == "/tokens" && *method == Method::POST {
                let own = match caller.name() {
                    "viewer" => "vera",
                    "operator" => "otto",
                    "admin" => "admin",
                    _ => "gone",
                };
                Some(json!({ "user": own }))
            } else {
                body.clone()
            };
            let status = call(&app, caller, method.clone(), path, body.as_ref()).await;
            let expected = if *needs == 0 || (*level >= *needs) {
                *ok
            } else if *level == 0 {
                401
            } else {
                403
            };
            assert_eq!(status, expected, "{method} {path} as {}", caller.name());
        }
    }
    // Runs record who started them.
    let (_, page) = app.get("/executions?requester=otto").await;
    assert!(!page["executions"].as_array().unwrap().is_empty());
}

/// The role a caller holds, from the document's `x-required-role` vocabulary: 0 none .. 3 admin.
fn rank(role: &str) -> u8 {
    match role {
        "none" => 0,
        "viewer" => 1,
        "operator" => 2,
        "admin" => 3,
        other => panic!("the document names a role the test does not know: {other}"),
    }
}

/// Every operation the OpenAPI document lists, not a hand-kept list, against a caller of each role:
/// no identity gets 401 wherever a role is needed, a lower role 403, and the role the document
/// names (or a higher one) is let through to the handler (never 401 or 403). Path parameters name
/// nothing and bodies are empty, so nothing changes; each call has a fresh session, so an operation
/// that ends or changes its caller's session cannot spoil the next.
#[tokio::test]
async fn every_operation_in_the_openapi_document_admits_exactly_the_role_it_names() {
    let app = spawn_app().await;
    app.add_user("vera", "viewer").await;
    app.add_user("otto", "operator").await;
    app.add_user("ada", "admin").await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    let users = [("viewer", "vera"), ("operator", "otto"), ("admin", "ada")];
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "zz-none" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in item.as_object().unwrap() {
            let needs = rank(op["x-required-role"].as_str().expect("x-required-role"));
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let body = (method != Method::GET).then(|| json!({}));
            let mut callers = vec![(Caller::Anonymous, 0u8)];
            for (role, user) in users {
                let secret = Accounts(&app.state.store)
                    .create_session(user, 3_600_000, true)
                    .await
                    .unwrap();
                callers.push((Caller::Cookie(role, format!("imds_session={secret}")), rank(role)));
            }
            for (caller, level) in &callers {
                let (status, answer) = answer(
                    &app,
                    caller,
                    method.clone(),
                    &concrete,
                    body.as_ref(),
                    path != "/events",
                )
                .await;
                let who = caller.name();
                if *level >= needs {
                    assert!(
                        status != 401 && status != 403,
                        "{method} {path} as {who}: the document lets this role in, the console answered {status} {answer}"
                    );
                } else {
                    let expected = if *level == 0 { 401 } else { 403 };
                    assert_eq!(status, expected, "{method} {path} as {who}");
                }
                checked += 1;
            }
        }
    }
    // Every operation, four callers each: the API has grown past the hand-kept table's 29 routes.
    assert!(checked >= 4 * 48, "{checked} calls");
}

#[tokio::test]
async fn a_cross_origin_post_with_a_valid_cookie_is_refused() {
    let app = spawn_app().await;
    let pw = app.add_user("oscar", "operator").await;
    let cookie = app.session("oscar", &pw).await;
    let id = app.quiet("us-east-1").await.remove(0);
    let body = json!({"parameters": {"InstanceId": id}});
    let client = reqwest::Client::new();
    for origin in [Some("https://evil.example"), None] {
        let mut req = client
            .post(app.url("/executions"))
            .header("cookie", &cookie)
            .json(&body);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "origin {origin:?}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "CrossSiteRequest");
    }
    let resp = client
        .post(app.url("/executions"))
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        201,
        "the same request from our own page goes through"
    );
    // Logging out ends the session on the server.
    let resp = client
        .post(app.url("/auth/logout"))
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = client
        .get(app.url("/executions"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn brute_force_sign_ins_are_slowed_down_and_audited() {
    let app = spawn_app().await;
    let pw = app.add_user("bob", "viewer").await;
    let client = reqwest::Client::new();
    let login = |password: &str| {
        client
            .post(app.url("/auth/login"))
            .json(&json!({"username": "bob", "password": password}))
            .send()
    };
    assert_eq!(login(&pw).await.unwrap().status(), 200);
    for _ in 0..5 {
        assert_eq!(login("wrong-guess-000").await.unwrap().status(), 401);
    }
    let resp = login("wrong-guess-000").await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        login(&pw).await.unwrap().status(),
        429,
        "from the guessing address, even the right password waits its turn"
    );
    // (That the lock ends, and that other addresses get in, is tested without waiting: the
    // throttle's unit tests and security::a_guesser_behind_the_proxy_locks_only_themselves...)
    let (status, _) = app.post("/tokens", &json!({"user": "admin"})).await;
    assert_eq!(status, 201);

    let (_, events) = app.get("/audit/auth").await;
    let events = events["events"].clone();
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "user-added",
        "token-created",
        "token-used",
        "login-failed",
        "login-throttled",
        "login",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    assert!(!events.to_string().contains(&pw), "no password in the audit log");
}

#[tokio::test]
async fn a_trusted_sign_on_proxy_sets_the_identity_and_an_untrusted_one_cannot() {
    let args = |proxy: &str| AppOptions {
        extra_args: vec![
            "--trusted-proxy".into(),
            proxy.into(),
            "--sso-group-role".into(),
            "imds-operators=operator".into(),
            "--sso-group-role".into(),
            "readers=viewer".into(),
        ],
        ..AppOptions::default()
    };
    let app = spawn_app_with(args("127.0.0.1")).await;
    let client = reqwest::Client::new();
    let me = |groups: &'static str| {
        client
            .get(app.url("/auth/me"))
            .header("x-forwarded-user", "alice@example.com")
            .header("x-forwarded-groups", groups)
            .send()
    };
    let resp = me("readers,imds-operators").await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (body["name"].as_str(), body["role"].as_str(), body["via"].as_str()),
        (Some("alice@example.com"), Some("operator"), Some("sso"))
    );
    assert_eq!(
        me("readers").await.unwrap().json::<Value>().await.unwrap()["role"],
        "viewer"
    );
    assert_eq!(
        me("strangers").await.unwrap().status(),
        401,
        "no mapped group, no identity"
    );

    let untrusted = spawn_app_with(args("10.9.8.7")).await;
    let resp = client
        .get(untrusted.url("/auth/me"))
        .header("x-forwarded-user", "mallory")
        .header("x-forwarded-groups", "imds-operators")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "headers from an untrusted address are ignored"
    );
}

#[tokio::test]
async fn an_application_load_balancer_token_signs_the_user_in() {
    use base64::Engine;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;
    let keys = tempfile::tempdir().unwrap();
    let key = p256::ecdsa::SigningKey::from_slice(&[3u8; 32]).unwrap();
    let pem = key
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    std::fs::write(keys.path().join("k1"), pem).unwrap();
    let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/imds/1";
    let app = spawn_app_with(AppOptions {
        extra_args: vec![
            "--trusted-proxy".into(),
            "127.0.0.1".into(),
            "--alb-arn".into(),
            arn.into(),
            "--alb-key-dir".into(),
            keys.path().display().to_string(),
            "--sso-group-role".into(),
            "platform=operator".into(),
        ],
        ..AppOptions::default()
    })
    .await;
    let enc = |v: Value| base64::engine::general_purpose::URL_SAFE.encode(v.to_string());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let signed = format!(
        "{}.{}",
        enc(json!({"alg": "ES256", "kid": "k1", "signer": arn, "typ": "JWT", "exp": exp})),
        enc(json!({"email": "pat@example.com", "groups": ["platform"], "exp": exp}))
    );
    let sig: p256::ecdsa::Signature = key.sign(signed.as_bytes());
    let token = format!(
        "{signed}.{}",
        base64::engine::general_purpose::URL_SAFE.encode(sig.to_bytes())
    );
    let client = reqwest::Client::new();
    let me: Value = client
        .get(app.url("/auth/me"))
        .header("x-amzn-oidc-data", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("pat@example.com"), Some("operator"))
    );
    let forged = format!(
        "{signed}.{}",
        base64::engine::general_purpose::URL_SAFE.encode([1u8; 64])
    );
    let resp = client
        .get(app.url("/auth/me"))
        .header("x-amzn-oidc-data", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn a_token_has_a_name_and_stops_working_when_it_expires() {
    let app = spawn_app().await;
    app.add_user("ci", "operator").await;
    let (status, made) = app
        .post(
            "/tokens",
            &json!({"user": "admin", "name": "Deploy pipeline", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["name"], "Deploy pipeline");
    let expires = made["expires_at"].as_str().unwrap().to_owned();
    let secret = made["token"].as_str().unwrap().to_owned();
    let with_token = |secret: String| {
        let req = reqwest::Client::new()
            .get(app.url("/identity"))
            .bearer_auth(secret);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(with_token(secret.clone()).await, 200);
    let (_, list) = app.get("/tokens").await;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == made["id"])
        .unwrap()
        .clone();
    assert_eq!(listed["name"], "Deploy pipeline");
    assert_eq!(listed["expires_at"], expires.as_str());
    assert_eq!(listed["expired"], false);

    // Thirty-one days later it no longer opens anything, and the list says why.
    app.state.store.clock.advance(Duration::from_secs(31 * 86_400));
    assert_eq!(with_token(secret).await, 401);
    let (_, list) = app.get("/tokens").await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == made["id"] && t["expired"] == true));

    // A lifetime or name out of bounds is refused, naming the field, and makes no token.
    let before = app.get("/tokens").await.1.as_array().unwrap().len();
    for (body, field) in [
        (json!({"user": "admin", "expires_in_days": 0}), "expires_in_days"),
        (
            json!({"user": "admin", "expires_in_days": 366}),
            "expires_in_days",
        ),
        (json!({"user": "admin", "name": "x".repeat(65)}), "name"),
    ] {
        let (status, refused) = app.post("/tokens", &body).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["error"]["field"], field, "{refused}");
    }
    assert_eq!(app.get("/tokens").await.1.as_array().unwrap().len(), before);
}
