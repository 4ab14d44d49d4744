//! The store's contract, on both databases: every test here runs once on SQLite and once on
//! PostgreSQL (a fresh database each), through the same public operations the server uses.

use backend::auth::accounts::Accounts;
use backend::auth::accounts::AuthEventFilter;
use backend::store::{ExecutionUpdate, HistoryFilter, NewRun, Store};
use shared::api::{PostureCounts, Role};
use shared::RunStatus;

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    (Store::open(dir.path()).expect("open SQLite"), dir)
}

async fn postgres() -> Option<(Store, String)> {
    let server = e2e::postgres::server()?;
    let url = e2e::postgres::fresh_database(&server).await;
    Some((Store::connect(&url).await.expect("connect"), url))
}

/// Each test once per database.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = super::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some((store, _url)) = super::postgres().await {
                        super::$name(store).await;
                    }
                }
            )*
        }
    };
}

on_both_databases!(
    a_run_is_recorded_before_it_is_sent_and_followed_to_its_end,
    history_pages_newest_first_and_filters_by_status_instance_account_and_time,
    a_rate_control_run_keeps_its_children_once_each,
    discovery_never_duplicates_a_run_the_console_started,
    an_approval_is_decided_once_when_two_people_decide_together,
    users_sessions_tokens_and_the_sign_in_log,
    webhooks_settings_and_the_posture_trend,
);

fn new_run<'a>(token: &'a str, instances: &'a [String], params: &'a serde_json::Value) -> NewRun<'a> {
    NewRun {
        client_token: token,
        account: "",
        region: "us-east-1",
        document_name: "AWSSupport-ConfigureEC2Metadata",
        requester: "alice",
        parameters: params,
        targets: None,
        instance_id: instances.first().map(String::as_str),
        instance_ids: instances,
        override_reason: None,
        prior_options: None,
        rollback_of: None,
        plan_wave: None,
        span: None,
        approval: None,
        review: None,
    }
}

fn update<'a>(status: &'a str, start: Option<&'a str>) -> ExecutionUpdate<'a> {
    ExecutionUpdate {
        status,
        start_time: start,
        end_time: None,
        failure_message: None,
        detail: None,
        document_version: Some("7"),
        now_ms: 1,
    }
}

/// Records and acknowledges a run in `account`, started at `start`; returns its execution ID.
async fn started(store: &Store, n: usize, account: &str, instance: &str, start: &str) -> String {
    let params = serde_json::json!({"InstanceId": [instance]});
    let instances = vec![instance.to_owned()];
    let token = format!("token-{n}");
    let mut run = new_run(&token, &instances, &params);
    run.account = account;
    let id = store.record_start(&run).await.expect("record");
    let execution = format!("exec-{n:03}");
    store.set_execution_id(id, &execution).await.expect("ack");
    store
        .update_execution(&execution, &update("Success", Some(start)))
        .await
        .expect("update");
    execution
}

async fn a_run_is_recorded_before_it_is_sent_and_followed_to_its_end(store: Store) {
    let params = serde_json::json!({"InstanceId": ["i-0a"], "EnforceIMDSv2": ["required"]});
    // The same instance twice is one target.
    let instances = vec!["i-0b".to_owned(), "i-0a".to_owned(), "i-0a".to_owned()];
    let id = store
        .record_start(&new_run("tok-1", &instances, &params))
        .await
        .expect("record");
    let row = store.by_record_id(id).await.unwrap().expect("recorded");
    assert_eq!(row.status, RunStatus::from("Recorded"));
    assert_eq!(row.execution_id, None);
    assert_eq!(store.instance_count(id).await.unwrap(), 2);
    let waiting = store.unsettled(&["Recorded", "Unknown"]).await.unwrap();
    assert_eq!(waiting.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    assert_eq!(store.run_tag_of(id).await.unwrap().as_deref(), Some("tok-1"));
    let plan: serde_json::Value = serde_json::from_str(&store.plan_of(id).await.unwrap().unwrap()).unwrap();
    assert_eq!(plan, params);

    // An unclear answer keeps the record; a fresh token is recorded before the start is sent again.
    store.set_unknown(id, "timed out").await.unwrap();
    store.set_client_token(id, "tok-2").await.unwrap();
    let row = store.by_record_id(id).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.client_token.as_deref()),
        ("Unknown", Some("tok-2"))
    );

    store.set_execution_id(id, "exec-1").await.unwrap();
    let row = store
        .by_execution_id("exec-1")
        .await
        .unwrap()
        .expect("acknowledged");
    assert_eq!((row.id, row.status.as_str()), (id, "InProgress"));
    assert!(store
        .unsettled(&["Recorded", "Unknown"])
        .await
        .unwrap()
        .is_empty());
    // Acknowledged: SSM's word, not ours, sets its status from now on.
    store.set_refused(id, "too late").await.unwrap();
    assert_eq!(
        store.by_record_id(id).await.unwrap().unwrap().status.as_str(),
        "InProgress"
    );
    assert_eq!(store.in_flight().await.unwrap().len(), 1);

    let running = update("InProgress", Some("2026-12-06T10:00:00Z"));
    assert!(
        !store.update_execution("exec-1", &running).await.unwrap(),
        "same status"
    );
    store.set_stopped_by("exec-1", "bob").await.unwrap();
    let done = ExecutionUpdate {
        end_time: Some("2026-12-06T10:01:00Z"),
        detail: Some("{\"cached\":true}"),
        now_ms: 42,
        ..update("Cancelled", None)
    };
    assert!(store.update_execution("exec-1", &done).await.unwrap(), "a change");
    let row = store.by_execution_id("exec-1").await.unwrap().unwrap();
    assert_eq!(row.start_time.as_deref(), Some("2026-12-06T10:00:00Z"), "kept");
    assert_eq!(row.detail.as_deref(), Some("{\"cached\":true}"));
    assert_eq!(row.detail_at_ms, Some(42));
    assert!(store.in_flight().await.unwrap().is_empty());
    store.add_rolled_back_by("exec-1", "exec-2").await.unwrap();
    store.add_rolled_back_by("exec-1", "exec-3").await.unwrap();

    let audit = store
        .audit(&HistoryFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    let a = &audit[0];
    assert_eq!(a.instance_ids, "i-0a i-0b", "sorted, once each");
    assert_eq!(a.stopped_by.as_deref(), Some("bob"));
    assert_eq!(a.document_version.as_deref(), Some("7"));
    assert_eq!(a.rolled_back_by.as_deref(), Some("exec-2,exec-3"));
    assert!(a.started_here);
    assert_eq!(
        store.runs_by_status().await.unwrap(),
        [("Cancelled".to_owned(), 1)]
    );
}

async fn history_pages_newest_first_and_filters_by_status_instance_account_and_time(store: Store) {
    // Seven runs; two start at the same second, so the cursor must break the tie by record.
    let times = [
        "2026-12-01T00:00:00Z",
        "2026-12-02T00:00:00Z",
        "2026-12-03T00:00:00Z",
        "2026-12-03T00:00:00Z",
        "2026-12-04T00:00:00Z",
        "2026-12-05T00:00:00.5Z",
        "2026-12-05T00:00:00Z",
    ];
    let mut ids = Vec::new();
    for (n, t) in times.iter().enumerate() {
        let account = if n % 2 == 0 { "" } else { "111122223333" };
        ids.push(started(&store, n, account, &format!("i-{n}"), t).await);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (rows, next) = store
            .history(&HistoryFilter {
                limit: 3,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(rows.len() <= 3);
        seen.extend(rows.into_iter().map(|r| r.execution_id));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // Newest first by start time compared as text, byte by byte, on both databases (SQLite's order;
    // PostgreSQL's text columns are COLLATE "C"), ties newest record first.
    assert_eq!(
        seen,
        ["exec-006", "exec-005", "exec-004", "exec-003", "exec-002", "exec-001", "exec-000"]
    );

    let only = |f: HistoryFilter| {
        let store = store.clone();
        async move {
            let (rows, _) = store.history(&HistoryFilter { limit: 50, ..f }).await.unwrap();
            rows.into_iter().map(|r| r.execution_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        only(HistoryFilter {
            instance_id: Some("i-3".into()),
            ..Default::default()
        })
        .await,
        ["exec-003"]
    );
    assert_eq!(
        only(HistoryFilter {
            accounts: Some(vec!["111122223333".into()]),
            ..Default::default()
        })
        .await,
        ["exec-005", "exec-003", "exec-001"]
    );
    assert!(only(HistoryFilter {
        accounts: Some(Vec::new()),
        ..Default::default()
    })
    .await
    .is_empty());
    assert_eq!(
        only(HistoryFilter {
            since: Some("2026-12-03T00:00:00Z".into()),
            until: Some("2026-12-04T00:00:00Z".into()),
            ..Default::default()
        })
        .await,
        ["exec-003", "exec-002"]
    );
    assert!(only(HistoryFilter {
        status: Some("Failed".into()),
        ..Default::default()
    })
    .await
    .is_empty());
    assert_eq!(
        only(HistoryFilter {
            requester: Some("alice".into()),
            ..Default::default()
        })
        .await
        .len(),
        7
    );
    let (runs, instances, people) = store
        .started_since("2000-01-01T00:00:00Z", None, None)
        .await
        .unwrap();
    assert_eq!((runs, instances, people), (7, 7, vec!["alice".to_owned()]));
    let (runs, _, _) = store
        .started_since("2000-01-01T00:00:00Z", Some(&[String::new()]), None)
        .await
        .unwrap();
    assert_eq!(runs, 4);

    // A run across accounts shows only within a scope that holds every account it acts in.
    let hub = "123456789012".to_owned();
    let (member, other) = ("200000000001".to_owned(), "200000000002".to_owned());
    let params = serde_json::json!({});
    let ids = ["i-0aaaaaaaaaaaaaaa1".to_owned()];
    let across = store
        .record_start(&NewRun {
            span: Some(",123456789012,200000000001,200000000002,"),
            ..new_run("across-accounts", &ids, &params)
        })
        .await
        .unwrap();
    let across_id = "acc0acc0-0000-4000-8000-000000000001";
    store.set_execution_id(across, across_id).await.unwrap();
    let listed = |within: Vec<String>| {
        let store = store.clone();
        async move {
            let filter = HistoryFilter {
                accounts: Some(vec![String::new()]),
                within: Some(within),
                limit: 100,
                ..HistoryFilter::default()
            };
            store
                .history(&filter)
                .await
                .unwrap()
                .0
                .iter()
                .any(|r| r.execution_id == across_id)
        }
    };
    assert!(
        !listed(vec![hub.clone(), member.clone()]).await,
        "one of its accounts is not theirs"
    );
    assert!(listed(vec![hub.clone(), member.clone(), other.clone()]).await);
}

async fn a_rate_control_run_keeps_its_children_once_each(store: Store) {
    let parent_id = started(&store, 1, "", "i-p", "2026-12-06T09:00:00Z").await;
    let parent = store.by_execution_id(&parent_id).await.unwrap().unwrap();
    for (n, status) in [(1, "InProgress"), (2, "Pending")] {
        let child = format!("child-{n}");
        let inst = format!("i-c{n}");
        assert!(store
            .upsert_child(&parent, &child, Some(&inst), status, None, None)
            .await
            .unwrap());
    }
    assert!(!store
        .upsert_child(&parent, "child-1", Some("i-c1"), "InProgress", None, None)
        .await
        .unwrap());
    assert!(store
        .upsert_child(
            &parent,
            "child-1",
            Some("i-c1"),
            "Success",
            Some("2026-12-06T09:00:01Z"),
            Some("2026-12-06T09:00:02Z")
        )
        .await
        .unwrap());
    let (children, _) = store
        .history(&HistoryFilter {
            parent: Some(parent_id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got: Vec<(String, String)> = children
        .iter()
        .map(|c| (c.execution_id.clone(), c.status.as_str().to_owned()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("child-1".into(), "Success".into()),
            ("child-2".into(), "Pending".into())
        ]
    );
    // The parent lists its own instance and its children's.
    assert_eq!(store.instance_count(parent.id).await.unwrap(), 3);
    store.set_children_synced(&parent_id, false).await.unwrap();
    assert_eq!(
        store.in_flight().await.unwrap().len(),
        1,
        "children still to read"
    );
    store.set_children_synced(&parent_id, true).await.unwrap();
    assert!(store.in_flight().await.unwrap().is_empty());
}

async fn discovery_never_duplicates_a_run_the_console_started(store: Store) {
    let discover = || {
        store.record_foreign(
            "us-east-1",
            "exec-f",
            "AWSSupport-ConfigureEC2Metadata",
            Some("i-f"),
            "Success",
            None,
        )
    };
    assert!(discover().await.unwrap(), "new");
    assert!(!discover().await.unwrap(), "known");
    // Discovery saw our own start before its acknowledgement was stored: ours wins, once.
    let params = serde_json::json!({});
    let instances = vec!["i-f".to_owned()];
    let id = store
        .record_start(&new_run("tok", &instances, &params))
        .await
        .unwrap();
    store.set_execution_id(id, "exec-f").await.unwrap();
    let row = store.by_execution_id("exec-f").await.unwrap().unwrap();
    assert_eq!(row.id, id);
    assert!(row.started_here);
    let (rows, _) = store
        .history(&HistoryFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

async fn an_approval_is_decided_once_when_two_people_decide_together(store: Store) {
    let params = serde_json::json!({});
    let instances = vec!["i-1".to_owned()];
    let mut run = new_run("tok", &instances, &params);
    run.approval = Some(("production", "2026-12-07T00:00:00Z"));
    let id = store.record_start(&run).await.unwrap();
    assert_eq!(
        store.by_record_id(id).await.unwrap().unwrap().status.as_str(),
        "AwaitingApproval"
    );
    assert_eq!(store.approvals(true, 10).await.unwrap().len(), 1);
    let (a, b) = tokio::join!(
        store.decide_approval(id, "approved", "bob", Some("session"), None, None),
        store.decide_approval(
            id,
            "rejected",
            "carol",
            Some("session"),
            Some("no"),
            Some("rejected by carol")
        ),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one decision wins: {a} {b}");
    let approval = store.approval(id).await.unwrap().unwrap();
    let run = store.by_record_id(id).await.unwrap().unwrap();
    match approval.status.as_str() {
        "approved" => assert_eq!(run.status.as_str(), "Recorded"),
        "rejected" => assert_eq!(run.status.as_str(), "Rejected"),
        other => panic!("{other}"),
    }
    assert!(store.approvals(true, 10).await.unwrap().is_empty());
    assert_eq!(store.approvals(false, 10).await.unwrap().len(), 1);
}

async fn users_sessions_tokens_and_the_sign_in_log(store: Store) {
    Accounts(&store)
        .add_user("admin", Role::Admin, "a long admin password", None)
        .await
        .unwrap();
    let again = Accounts(&store)
        .add_user("admin", Role::Viewer, "another long password", None)
        .await;
    assert!(format!("{:?}", again.unwrap_err()).contains("UserExists"));
    Accounts(&store)
        .add_user("vic", Role::Viewer, "a long viewer password", None)
        .await
        .unwrap();
    assert_eq!(store.user_count().await.unwrap(), 2);
    assert!(Accounts(&store)
        .verify_login("vic", "wrong password!")
        .await
        .unwrap()
        .is_none());
    assert!(Accounts(&store)
        .verify_login("nobody", "a long viewer password")
        .await
        .unwrap()
        .is_none());
    let vic = Accounts(&store)
        .verify_login("vic", "a long viewer password")
        .await
        .unwrap()
        .expect("signed in");
    assert_eq!(vic.role, Role::Viewer);

    let secret = Accounts(&store)
        .create_session("vic", 60_000, true)
        .await
        .unwrap();
    assert_eq!(
        Accounts(&store)
            .session_identity(&secret)
            .await
            .unwrap()
            .unwrap()
            .name,
        "vic"
    );
    Accounts(&store)
        .set_user_accounts("vic", Some(&["111122223333".to_owned()]))
        .await
        .unwrap();
    let scoped = Accounts(&store).session_identity(&secret).await.unwrap().unwrap();
    assert_eq!(scoped.accounts, Some(vec!["111122223333".to_owned()]));
    Accounts(&store).set_role("vic", Role::Operator).await.unwrap();
    assert!(
        Accounts(&store)
            .session_identity(&secret)
            .await
            .unwrap()
            .is_none(),
        "a role change ends sessions"
    );
    let expired = Accounts(&store).create_session("vic", -1, true).await.unwrap();
    assert!(Accounts(&store)
        .session_identity(&expired)
        .await
        .unwrap()
        .is_none());

    // The last enabled admin stays.
    let last = store.disable_user("admin").await.unwrap_err();
    assert!(format!("{last:?}").contains("LastAdmin"), "{last:?}");
    assert!(
        store.users().await.unwrap().iter().all(|u| !u.disabled),
        "nothing changed"
    );

    let (token_id, token, role, _) = Accounts(&store)
        .create_token("vic", Some(Role::Viewer), Some("ci"), Some(30), true)
        .await
        .unwrap();
    assert_eq!(role, Role::Viewer);
    let too_high = Accounts(&store)
        .create_token("vic", Some(Role::Admin), None, None, true)
        .await;
    assert!(format!("{:?}", too_high.unwrap_err()).contains("RoleTooHigh"));
    let (who, id, log) = Accounts(&store)
        .token_identity(&token)
        .await
        .unwrap()
        .expect("live token");
    assert_eq!((who.name.as_str(), id, log), ("vic", token_id, true));
    let (_, _, log) = Accounts(&store).token_identity(&token).await.unwrap().unwrap();
    assert!(!log, "the first use in an hour is logged, not every use");
    store.disable_user("vic").await.unwrap();
    assert!(Accounts(&store).token_identity(&token).await.unwrap().is_none());
    store.enable_user("vic").await.unwrap();
    store.revoke_token(token_id).await.unwrap();
    assert!(Accounts(&store).token_identity(&token).await.unwrap().is_none());
    assert!(store.tokens().await.unwrap()[0].revoked);

    for n in 0..5 {
        let id = store
            .auth_event("login-failed", None, Some("vic"), Some(&format!("10.0.0.{n}")))
            .await
            .unwrap();
        store.count_auth_event(id).await.unwrap();
    }
    let (page, next) = store
        .auth_events(&AuthEventFilter {
            user: Some("vic".into()),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 3);
    assert!(page.iter().all(|e| e.count == 2));
    let (rest, end) = store
        .auth_events(&AuthEventFilter {
            user: Some("vic".into()),
            before_id: next,
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((rest.len(), end), (2, None));
}

async fn webhooks_settings_and_the_posture_trend(store: Store) {
    assert_eq!(store.setting("approval-policy").await.unwrap(), None);
    store.set_setting("approval-policy", "{\"a\":1}").await.unwrap();
    store.set_setting("approval-policy", "{\"a\":2}").await.unwrap();
    assert_eq!(
        store.setting("approval-policy").await.unwrap().as_deref(),
        Some("{\"a\":2}")
    );

    let hook = store
        .add_webhook("https://hooks.example/x", "slack", "alice")
        .await
        .unwrap();
    let queued = store
        .queue_deliveries("run.ended", "a run ended", 1_000, None, |format| {
            format!("body for {format}")
        })
        .await
        .unwrap();
    assert_eq!(queued, 1);
    let due = store.due_deliveries(1_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].1, due[0].3.as_str(), due[0].4),
        (hook, "body for slack", 0)
    );
    store
        .record_attempt(due[0].0, false, Some("503"), Some(5_000))
        .await
        .unwrap();
    assert!(
        store.due_deliveries(1_000, 10).await.unwrap().is_empty(),
        "retried later"
    );
    store.record_attempt(due[0].0, true, None, None).await.unwrap();
    let delivered = store.deliveries(hook, 10).await.unwrap();
    assert_eq!(
        (delivered[0].status.as_str(), delivered[0].attempts),
        ("delivered", 2)
    );
    assert_eq!(delivered[0].last_error.as_deref(), Some("503"));
    assert!(store.delete_webhook(hook).await.unwrap());
    assert!(!store.delete_webhook(hook).await.unwrap());
    assert!(store.webhooks().await.unwrap().is_empty());

    let counts = |total, compliant| PostureCounts {
        total,
        compliant,
        ..Default::default()
    };
    store
        .record_posture("2026-12-01", "", &counts(10, 2))
        .await
        .unwrap();
    store
        .record_posture("2026-12-01", "", &counts(10, 4))
        .await
        .unwrap();
    store
        .record_posture("2026-12-01", "111122223333", &counts(5, 5))
        .await
        .unwrap();
    store
        .record_posture("2026-12-02", "", &counts(10, 9))
        .await
        .unwrap();
    let trend = store.posture_trend("2026-11-01", None).await.unwrap();
    let days: Vec<(&str, usize, usize)> = trend
        .iter()
        .map(|(d, c)| (d.as_str(), c.total, c.compliant))
        .collect();
    assert_eq!(days, [("2026-12-01", 15, 9), ("2026-12-02", 10, 9)]);
    store.prune_posture("2026-12-02").await.unwrap();
    assert_eq!(store.posture_trend("2026-11-01", None).await.unwrap().len(), 1);
}

/// (SQLite's half is the store's unit test.)
#[tokio::test]
async fn a_postgres_store_written_by_a_newer_version_is_refused() {
    let Some((_, url)) = postgres().await else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("UPDATE imds_console_schema SET version = 99")
        .await
        .unwrap();
    let err = Store::connect(&url).await.err().expect("refused");
    assert!(err.contains("schema version 99"), "{err}");
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let Some(server) = e2e::postgres::server() else {
        return;
    };
    let url = e2e::postgres::fresh_database(&server).await;
    let (a, b, c) = tokio::join!(Store::connect(&url), Store::connect(&url), Store::connect(&url));
    let (a, b, _c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    Accounts(&a)
        .add_user("admin", Role::Admin, "a long admin password", None)
        .await
        .unwrap();
    assert_eq!(b.user_count().await.unwrap(), 1, "one database");
}

/// `sslmode=require` is TLS with the server's certificate verified, name included: with the CA that
/// signed it the store connects encrypted; with CAs that did not, it refuses to connect.
/// (`./x.sh test` names Debian's own server certificate, made for `localhost`, as the CA.)
#[tokio::test]
async fn sslmode_require_connects_over_tls_and_verifies_the_server() {
    let Some(server) = e2e::postgres::server() else {
        return;
    };
    let Some(ca) = std::env::var_os("IMDS_CONSOLE_TEST_POSTGRES_CA") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs IMDS_CONSOLE_TEST_POSTGRES_CA"
        );
        return;
    };
    let url = e2e::postgres::fresh_database(&server).await;
    let database = url.rsplit('/').next().unwrap().to_owned();
    // The certificate names localhost; the connection still goes to 127.0.0.1.
    let tls_url = format!(
        "{}?sslmode=require&hostaddr=127.0.0.1",
        url.replace("@127.0.0.1:", "@localhost:")
    );
    let target =
        backend::store::db::PostgresTarget::parse(&tls_url, Some(std::path::Path::new(&ca))).unwrap();
    let store = Store::connect_to(&target)
        .await
        .expect("a verified TLS connection");
    Accounts(&store)
        .add_user("admin", Role::Admin, "a long admin password", None)
        .await
        .unwrap();

    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let encrypted: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1 AND s.ssl",
            &[&database],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "the store's connections are encrypted");

    // The public CAs did not sign it: refused, neither trusted nor downgraded to plain text.
    let public_cas = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
    let unverified = backend::store::db::PostgresTarget::parse(&tls_url, Some(public_cas)).unwrap();
    let refused = Store::connect_to(&unverified)
        .await
        .err()
        .expect("another CA's certificate is refused");
    assert!(
        refused.contains("certificate") || refused.contains("UnknownIssuer"),
        "{refused}"
    );
}

#[tokio::test]
async fn every_time_the_console_writes_comes_from_its_one_clock() {
    let app = e2e::spawn_app().await;
    // Two days on: a wall-clock reading beside the console's clock would write today's date.
    app.state
        .store
        .clock
        .advance(std::time::Duration::from_secs(2 * 86_400));
    let day = app.state.store.clock.day(0);
    app.add_user("clocky", "viewer").await;
    let (_, users) = app.get("/users").await;
    let users: Vec<shared::api::UserView> = serde_json::from_value(users).unwrap();
    let user = users.iter().find(|u| u.name == "clocky").unwrap();
    assert!(user.created_at.starts_with(&day), "{} on {day}", user.created_at);
    let (status, hook) = app
        .post(
            "/webhooks",
            &serde_json::json!({"url": "https://hooks.example.com/imds", "format": "json"}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let (_, hooks) = app.get("/webhooks").await;
    let hooks: shared::webhooks::WebhookList = serde_json::from_value(hooks).unwrap();
    let hook = &hooks.webhooks[0];
    assert!(hook.created_at.starts_with(&day), "{} on {day}", hook.created_at);
    let (_, events) = app.get("/audit/auth").await;
    let events: shared::api::AuthEventPage = serde_json::from_value(events).unwrap();
    let added = events.events.iter().find(|e| e.kind == "user-added").unwrap();
    assert!(added.at.starts_with(&day), "{added:?} on {day}");
}
