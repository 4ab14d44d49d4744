//! The PostgreSQL server the suites can run against: `IMDS_CONSOLE_TEST_POSTGRES` names it (a URL
//! whose user may create databases; `./x.sh test` starts Debian's server and sets it), and each test
//! gets a database of its own.

/// The server's URL, if one is configured. Under CI it must be: a suite that silently skipped
/// PostgreSQL would prove nothing there.
pub fn server() -> Option<String> {
    match std::env::var("IMDS_CONSOLE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs IMDS_CONSOLE_TEST_POSTGRES (./x.sh test sets it)"
            );
            eprintln!("IMDS_CONSOLE_TEST_POSTGRES is not set: skipping the PostgreSQL half");
            None
        }
    }
}

/// Whether the end-to-end suites keep their consoles' stores in PostgreSQL
/// (`IMDS_CONSOLE_E2E_STORE=postgres`) rather than in SQLite.
pub fn for_every_console() -> bool {
    std::env::var("IMDS_CONSOLE_E2E_STORE").is_ok_and(|s| s == "postgres")
}

/// A new, empty database on the server; returns its URL.
pub async fn fresh_database(server: &str) -> String {
    let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL server");
    tokio::spawn(connection);
    let name = format!("imds_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    // The same server and credentials, the new database.
    let (base, _) = server.rsplit_once('/').expect("a URL ending in /database");
    format!("{base}/{name}")
}
