//! The console's own store (SQLite in the data directory, or PostgreSQL for several replicas): one
//! append-only record per run, written before the run is sent to SSM, so history outlives SSM's
//! retention and a crash loses nothing.
//!
//! The SQL is written once, in the words both databases share (see [`db`]), and the migrations are
//! the same for both.

/// Binds parameters for [`Db`] queries: `args![a, b]` (anything [`db::ToValue`], by reference).
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        &[$($crate::db::ToValue::to_value(&$x)),*]
    };
}

/// PostgreSQL's clock in epoch milliseconds, for the shared SSM budgets' SQL (written out once,
/// so the SQL is a constant and no string is built per SSM call).
macro_rules! postgres_now_ms {
    () => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    };
}

pub mod clock;
pub mod db;
mod error;
mod migrations;

mod approvals;
mod fleet;
mod history;
mod plans;
mod runs;
mod sources;
mod users;
mod webhooks;

pub use approvals::ApprovalRow;
pub use error::StoreError;
pub use fleet::POSTURE_KEEP_DAYS;
use migrations::MIGRATIONS;
pub use runs::*;
pub use users::*;
pub use webhooks::*;

use rusqlite::Connection;
use std::path::{Path, PathBuf};

use db::Db;

#[derive(Clone)]
pub struct Store {
    db: Db,
    /// The console's time: sessions, tokens and timestamps read it.
    pub clock: clock::Clock,
}

/// The data directory (0700) and the database files in it (0600) are for the console's user only, also
/// when they were created by an older version or under a looser umask.
fn restrict_to_owner(dir: &Path, db: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot restrict {}: {e}", p.display()))
    };
    set(dir, 0o700)?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if file.exists() {
            set(&file, 0o600)?;
        }
    }
    Ok(())
}

/// `2026-12-07T19:26:49.123Z`: UTC with exactly three fractional digits, one width, so that
/// comparing the text compares the times (the store filters and sorts on it).
pub fn rfc3339_ms(epoch_ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(epoch_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

/// Where the store lives: `--database-url`, else the data directory's SQLite file.
pub enum Location<'a> {
    Directory(&'a Path),
    Postgres(Box<db::PostgresTarget>),
}

impl<'a> Location<'a> {
    /// `--database-url` (with `--database-ca-file`) when given, else the data directory.
    pub fn of(
        data_dir: &'a Path,
        database_url: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<Location<'a>, String> {
        Ok(match database_url {
            Some(url) => Location::Postgres(Box::new(db::PostgresTarget::parse(url, ca_file)?)),
            None => Location::Directory(data_dir),
        })
    }
}

/// How many connections one replica keeps to PostgreSQL.
const POSTGRES_POOL_SIZE: usize = 16;

/// An arbitrary, fixed key for PostgreSQL's advisory lock that serialises migrations between replicas
/// starting together.
const MIGRATION_LOCK: i64 = 0x13d5_c0de;

impl Store {
    /// Opens the store where `at` says: [`Store::open`] or [`Store::connect`].
    pub async fn open_at(at: Location<'_>) -> Result<Store, String> {
        match at {
            Location::Directory(dir) => Store::open(dir),
            Location::Postgres(target) => Store::connect_to(&target).await,
        }
    }

    /// Opens (or creates) the SQLite store in `dir`, runs pending migrations, and refuses a newer
    /// schema.
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        let path = dir.join("imds-console.db");
        let mut conn = Connection::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| e.to_string())?;
        restrict_to_owner(dir, &path)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| e.to_string())?;
        with_connection_settings(&conn)?;
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| e.to_string())?;
        check_version(version, &path.display().to_string())?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction().map_err(|e| e.to_string())?;
            tx.execute_batch(sql)
                .map_err(|e| format!("migration {}: {e}", i + 1))?;
            tx.pragma_update(None, "user_version", i + 1)
                .map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
        }
        // Read-only connections for the reads of every request, one per core (at most four).
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let mut readers = Vec::with_capacity(cores);
        for _ in 0..cores {
            let reader = Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| format!("cannot open {} to read: {e}", path.display()))?;
            with_connection_settings(&reader)?;
            readers.push(reader);
        }
        Ok(Store {
            db: Db::sqlite(conn, readers),
            clock: clock::Clock::default(),
        })
    }

    /// Connects to PostgreSQL at `url`, runs pending migrations (one replica at a time, each in one
    /// transaction), and refuses a newer schema.
    pub async fn connect(url: &str) -> Result<Store, String> {
        Store::connect_to(&db::PostgresTarget::parse(url, None)?).await
    }

    /// [`Store::connect`] to a parsed target.
    pub async fn connect_to(target: &db::PostgresTarget) -> Result<Store, String> {
        let db = Db::postgres(target, POSTGRES_POOL_SIZE)?;
        let fail = |e: StoreError| format!("--database-url: {e}");
        let mut conn = db.begin().await.map_err(fail)?;
        conn.execute("SELECT pg_advisory_xact_lock(?1)", args![MIGRATION_LOCK])
            .await
            .map_err(fail)?;
        conn.batch("CREATE TABLE IF NOT EXISTS imds_console_schema (version BIGINT NOT NULL)")
            .await
            .map_err(fail)?;
        let version = match conn
            .query_opt("SELECT version FROM imds_console_schema", args![])
            .await
            .map_err(fail)?
        {
            Some(row) => row.get::<i64>(0).map_err(fail)? as usize,
            None => {
                conn.execute("INSERT INTO imds_console_schema (version) VALUES (0)", args![])
                    .await
                    .map_err(fail)?;
                0
            }
        };
        check_version(version, "the PostgreSQL database")?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            conn.batch(&db::postgres_ddl(sql))
                .await
                .map_err(|e| format!("migration {}: {e}", i + 1))?;
            conn.execute("UPDATE imds_console_schema SET version = ?1", args![i + 1])
                .await
                .map_err(fail)?;
        }
        conn.commit().await.map_err(fail)?;
        Ok(Store {
            db,
            clock: clock::Clock::default(),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.db.is_postgres()
    }
}

/// What every SQLite connection of the store (the writer and the readers) is set up with.
fn with_connection_settings(conn: &Connection) -> Result<(), String> {
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    // Every statement the store runs stays compiled (rusqlite keeps 16 by default, fewer than the
    // store has, so busy periods recompiled the same few over and over).
    conn.set_prepared_statement_cache_capacity(256);
    // Reads through a memory map instead of a read() call per page: the history and token queries
    // of every request read the same few pages.
    conn.pragma_update(None, "mmap_size", 256i64 << 20)
        .map_err(|e| e.to_string())
}

fn check_version(version: usize, what: &str) -> Result<(), String> {
    if version > MIGRATIONS.len() {
        return Err(format!(
            "{what} has schema version {version}, newer than this build understands ({}); use a newer imds-console",
            MIGRATIONS.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_written_by_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).expect("new store");
        let conn = Connection::open(dir.path().join("imds-console.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(err.contains("schema version 99"), "{err}");
    }
}
