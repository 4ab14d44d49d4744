//! Account scope against any request: every operation of the OpenAPI document that names an object
//! in its path or accounts in its body, tried by operators limited to other accounts, with the ID
//! percent-encoded each way and bodies the loose JSON readers choke on. Never a 2xx outside their
//! accounts. The routes come from the document (`x-account-rule`), so a route added later is tried too.

use e2e::{spawn_app_with, AppOptions, TestApp};
use reqwest::Method;
use serde_json::json;
use shared::api::{ErrorBody, ExecutionPage, StartExecutionResponse};
use std::collections::BTreeMap;
use std::time::Duration;

/// A signed-in person, talking as the browser does (cookie and the console's Origin).
struct Person {
    name: &'static str,
    cookie: String,
}

impl Person {
    async fn new(app: &TestApp, name: &'static str, accounts: &[&str]) -> Person {
        Person {
            name,
            cookie: app.limited_operator(name, accounts).await,
        }
    }

    /// Sends `body` as it is written (raw JSON text, which may hold what a JSON value cannot).
    async fn send(&self, app: &TestApp, method: &Method, path: &str, body: Option<&str>) -> (u16, String) {
        let mut req = reqwest::Client::new()
            .request(method.clone(), format!("{}/api/v1{path}", app.base))
            .header("cookie", &self.cookie)
            .header("origin", &app.base);
        if let Some(text) = body {
            req = req
                .header("content-type", "application/json")
                .body(text.to_owned());
        }
        let resp = req.send().await.expect("request");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }
}

/// The ID written each way a path can carry it: as it is, and with each character class
/// percent-encoded (digits, letters, punctuation, everything, lower-case escapes, the first character).
fn encodings(id: &str) -> Vec<String> {
    let encode = |pick: &dyn Fn(char) -> bool, lower: bool| -> String {
        id.chars()
            .map(|c| match (pick(c), lower) {
                (true, false) => format!("%{:02X}", c as u32),
                (true, true) => format!("%{:02x}", c as u32),
                (false, _) => c.to_string(),
            })
            .collect()
    };
    let mut out = vec![
        id.to_owned(),
        encode(&|c| c.is_ascii_digit(), false),
        encode(&|c| c.is_ascii_alphabetic(), false),
        encode(&|c| !c.is_ascii_alphanumeric(), false),
        encode(&|_| true, false),
        encode(&|_| true, true),
        format!("%{:02X}{}", id.as_bytes()[0], &id[1..]),
    ];
    out.dedup();
    out.sort();
    out.dedup();
    out
}

/// `base` (a JSON object's text) with one more member whose text is `member`.
fn with_member(base: &str, member: &str) -> String {
    let inner = base
        .trim()
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .expect("an object");
    if inner.trim().is_empty() {
        format!("{{{member}}}")
    } else {
        format!("{{{member},{inner}}}")
    }
}

/// The body variants: as it is, then with an unknown field holding a lone surrogate, an array 129
/// deep, a number beyond f64, and (given) duplicate keys that name an allowed account first.
fn hostile_bodies(base: &str, duplicates: &[String]) -> Vec<(String, String)> {
    let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
    let mut out = vec![
        ("as it is".to_owned(), base.to_owned()),
        ("lone surrogate".to_owned(), with_member(base, r#""x":"\udc00""#)),
        (
            "129 deep".to_owned(),
            with_member(base, &format!(r#""x":{deep}"#)),
        ),
        ("1e999".to_owned(), with_member(base, r#""x":1e999"#)),
    ];
    for (i, member) in duplicates.iter().enumerate() {
        out.push((format!("duplicate key {i}"), with_member(base, member)));
    }
    out
}

/// Values of path parameters that do not name an object.
fn choices(param: &str) -> Vec<&'static str> {
    match param {
        "action" => vec!["start", "resume", "pause", "cancel"],
        "decision" => vec!["approve", "reject"],
        other => panic!("the test does not know path parameter {{{other}}}: say which values it takes"),
    }
}

#[tokio::test]
async fn operators_limited_to_some_accounts_never_act_or_read_outside_them_whatever_the_request_looks_like() {
    let app = spawn_app_with(AppOptions {
        fleet: 120,
        accounts: 3,
        ..AppOptions::default()
    })
    .await;
    let ids = sandbox::account_ids(3);
    let (hub, mine, other) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let region = "us-east-1";
    let quiet_in = |account: String| {
        let app = &app;
        async move {
            app.pick(region, move |i| {
                i["account"] == account.as_str()
                    && i["state"] == "running"
                    && i["metadata"]["http_endpoint"] == "enabled"
                    && i["imdsv1_calls"].as_u64().unwrap_or(0) == 0
            })
            .await
        }
    };
    let theirs = quiet_in(other.clone()).await;
    let own = quiet_in(mine.clone()).await;
    assert!(theirs.len() >= 2 && !own.is_empty(), "{theirs:?} {own:?}");

    // The objects in the other account, made by the admin: a run, a plan, a source and its fix, and
    // (last, since it holds every later start) a start held for approval.
    let start_there = json!({"account": other, "region": region,
        "parameters": {"InstanceId": theirs[0], "EnforceIMDSv2": "optional"}});
    let (status, body) = app.post("/executions", &start_there).await;
    assert_eq!(status, 201, "{body}");
    let started: StartExecutionResponse = serde_json::from_value(body).unwrap();
    let run = started.execution_id.expect("sent");
    app.wait_done(&run, Duration::from_secs(30)).await;
    // A run across accounts: recorded in the console's own account (its parent runs there), acting in
    // the other one too.
    let across = json!({"parameters": {"EnforceIMDSv2": "optional"},
        "rate_control": {"targets": {"tag": {"key": "Env", "value": "dev"}}, "max_concurrency": "5", "max_errors": "0"},
        "target_locations": [{"accounts": [hub, other], "regions": [region]}]});
    let (status, body) = app.post("/executions", &across).await;
    assert_eq!(status, 201, "{body}");
    let across_run: StartExecutionResponse = serde_json::from_value(body).unwrap();
    let across_run = across_run.execution_id.expect("sent");
    let wave = |name: &str, account: &str| {
        json!({"name": name, "account": account, "region": region,
               "targets": {"tag": {"key": "Env", "value": "dev"}}, "parameters": {}})
    };
    let plan_there = json!({"name": "theirs", "waves": [wave("b", &other)], "halt": {"rejected_calls": 5}});
    let (status, body) = app.post("/plans", &plan_there).await;
    assert_eq!(status, 201, "{body}");
    let plan = body["plan_id"].as_str().unwrap().to_owned();
    let source = format!("account_default:{other}:{region}");
    let (status, body) = app
        .post(
            &format!("/sources/{source}/fix"),
            &json!({"override_reason": "the other team's fix, made by the admin"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let fix = body["fix_id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .put("/approval-policy", &json!({"more_than_instances": 0}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post(
            "/executions",
            &json!({"account": other, "region": region, "parameters": {"InstanceId": theirs[1]}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let held: StartExecutionResponse = serde_json::from_value(body).unwrap();
    let (status, body) = app.post("/executions", &across).await;
    assert_eq!(status, 202, "{body}");
    let held_across: StartExecutionResponse = serde_json::from_value(body).unwrap();

    let objects: BTreeMap<&str, Vec<String>> = [
        ("run", vec![run.clone(), across_run.clone()]),
        ("plan", vec![plan.clone()]),
        (
            "approval",
            vec![held.record_id.to_string(), held_across.record_id.to_string()],
        ),
        ("source", vec![source]),
        ("source-fix", vec![fix]),
    ]
    .into();
    // Bodies that act in the other account, and their duplicate-key forms whose first copy names an
    // account the person may use.
    let tag_across = json!({"parameters": {}, "rate_control": {"targets": {"tag": {"key": "Env", "value": "dev"}},
        "max_concurrency": "1", "max_errors": "0"},
        "target_locations": [{"accounts": [other], "regions": [region]}]});
    let start_bodies = [start_there.to_string(), tag_across.to_string()];
    let start_duplicates = vec![
        format!(r#""account":"{mine}""#),
        format!(r#""target_locations":[{{"accounts":["{mine}"],"regions":["{region}"]}}]"#),
    ];
    let plan_bodies = [
        plan_there.to_string(),
        json!({"name": "across", "waves": [{"name": "b", "region": region,
            "targets": {"tag": {"key": "Env", "value": "dev"}}, "parameters": {},
            "target_locations": [{"accounts": [other], "regions": [region]}]}]})
        .to_string(),
    ];
    let plan_duplicates = vec![format!(r#""waves":[{}]"#, wave("a", &mine))];

    let scoped = Person::new(&app, "scoped", &[&mine]).await;
    let scopedhub = Person::new(&app, "scopedhub", &[&hub, &mine]).await;
    let (_, document) = app.get("/openapi.json").await;
    let mut tried = BTreeMap::<&str, usize>::new();
    for (template, item) in document["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let rule = op["x-account-rule"].as_str().unwrap();
            let method: Method = method.to_uppercase().parse().unwrap();
            // Which requests this operation gets: (path, body variants, what a refusal must be).
            let mut requests: Vec<(String, Vec<(String, String)>)> = Vec::new();
            match rule {
                "none" | "filter" => continue,
                "start-body" | "plan-body" => {
                    let (bases, dups) = if rule == "start-body" {
                        (&start_bodies, &start_duplicates)
                    } else {
                        (&plan_bodies, &plan_duplicates)
                    };
                    for base in bases {
                        requests.push((template.clone(), hostile_bodies(base, dups)));
                    }
                }
                kind => {
                    let ids = objects.get(kind).unwrap_or_else(|| {
                        panic!("{method} {template}: the test has no object for rule {kind}")
                    });
                    let mut paths = vec![template.clone()];
                    for param in template
                        .split('/')
                        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                        .filter(|p| !["id", "fix_id"].contains(p))
                    {
                        paths = paths
                            .iter()
                            .flat_map(|p| {
                                choices(param)
                                    .into_iter()
                                    .map(move |v| p.replace(&format!("{{{param}}}"), v))
                            })
                            .collect();
                    }
                    let bodies = if method == Method::GET {
                        vec![]
                    } else {
                        hostile_bodies("{}", &[r#""comment":"a","comment":"b""#.to_owned()])
                    };
                    for path in paths {
                        let param = if path.contains("{fix_id}") {
                            "{fix_id}"
                        } else {
                            "{id}"
                        };
                        for encoded in ids.iter().flat_map(|id| encodings(id)) {
                            requests.push((path.replace(param, &encoded), bodies.clone()));
                        }
                    }
                }
            }
            for person in [&scoped, &scopedhub] {
                for (path, bodies) in &requests {
                    let sends: Vec<(String, Option<String>)> = if bodies.is_empty() {
                        vec![("no body".into(), None)]
                    } else {
                        bodies.iter().map(|(k, b)| (k.clone(), Some(b.clone()))).collect()
                    };
                    for (kind, body) in sends {
                        let (status, answer) = person.send(&app, &method, path, body.as_deref()).await;
                        if method == Method::GET {
                            // HEAD is answered by the GET handler, so it is held to GET's rule.
                            // A run is answered as an unknown one would be: for someone who may look
                            // runs up in the console's own account, that lookup can be throttled.
                            let (head, _) = person.send(&app, &Method::HEAD, path, None).await;
                            assert!(
                                head == 404 || (head == 429 && rule == "run"),
                                "{} HEAD {path}: {head}",
                                person.name
                            );
                        }
                        *tried.entry(rule).or_default() += 1;
                        let what = format!("{} {method} {path} ({kind}) -> {status} {answer}", person.name);
                        assert!(!(200..300).contains(&status), "a 2xx outside the account: {what}");
                        // A read of another account's object is a 404; a change is refused naming the
                        // account (or, for a body the typed struct refuses, a 400 before any decision).
                        let error: ErrorBody =
                            serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {what}"));
                        if method == Method::GET {
                            assert!(
                                status == 404
                                    || (status, error.error.code.as_str()) == (429, "LookupThrottled")
                                        && rule == "run",
                                "{what}"
                            );
                        } else if !rule.ends_with("-body") {
                            // An object in accounts they may not see does not exist for them.
                            assert_eq!(status, 404, "{what}");
                        } else if kind == "as it is" {
                            assert_eq!(
                                (status, error.error.code.as_str()),
                                (403, "AccountNotAllowed"),
                                "{what}"
                            );
                        } else {
                            assert!(
                                (status, error.error.code.as_str()) == (403, "AccountNotAllowed")
                                    || status == 400,
                                "{what}"
                            );
                        }
                    }
                }
            }
        }
    }
    // Every kind of rule was tried, many times.
    for rule in [
        "start-body",
        "plan-body",
        "run",
        "plan",
        "approval",
        "source",
        "source-fix",
    ] {
        assert!(tried.get(rule).copied().unwrap_or(0) >= 10, "{rule}: {tried:?}");
    }
    // The encodings reach the same object for someone who may see it, so the refusals above are about
    // the account, not an ID that did not decode.
    for encoded in encodings(&run) {
        let (status, body) = app.get(&format!("/executions/{encoded}")).await;
        assert_eq!(status, 200, "{encoded}: {body}");
    }
    // Nothing was recorded for them.
    for person in [&scoped, &scopedhub] {
        let (_, page) = app.get(&format!("/executions?requester={}", person.name)).await;
        let page: ExecutionPage = serde_json::from_value(page).unwrap();
        assert!(page.executions.is_empty(), "{:?}", page.executions);
    }
    let (_, plans) = app.get("/plans").await;
    let plans: shared::plans::PlanList = serde_json::from_value(plans).unwrap();
    assert_eq!(plans.plans.len(), 1, "only the admin's plan");

    // Lists show a run across accounts only to someone who may see every account it acts in: the
    // operator of the console's own account and one member does not see the run across the other.
    let mut stream = reqwest::Client::new()
        .get(format!("{}/api/v1/events?after=0", app.base))
        .header("cookie", &scopedhub.cookie)
        .send()
        .await
        .unwrap();
    for path in ["/executions", "/audit", "/dashboard"] {
        let (status, answer) = scopedhub.send(&app, &Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert!(
            !answer.contains(&across_run),
            "{path} shows the run across accounts: {answer}"
        );
    }
    let (_, dashboard) = scopedhub.send(&app, &Method::GET, "/dashboard", None).await;
    let dashboard: shared::api::Dashboard = serde_json::from_str(&dashboard).unwrap();
    assert_eq!(dashboard.today.runs, 0, "neither run today is all theirs");
    // A run in the console's own account is theirs: its events arrive, the other run's never did.
    let (status, _) = app.put("/approval-policy", &json!({})).await;
    assert_eq!(status, 200);
    let mine_too = quiet_in(hub.clone()).await.remove(0);
    let (status, body) = app
        .post("/executions", &json!({"parameters": {"InstanceId": mine_too}}))
        .await;
    assert_eq!(status, 201, "{body}");
    let visible: StartExecutionResponse = serde_json::from_value(body).unwrap();
    let visible = visible.execution_id.unwrap();
    let seen = e2e::read_events_until(&mut stream, |s| s.contains(&visible), Duration::from_secs(30)).await;
    assert!(!seen.contains(&across_run), "{seen}");
}
