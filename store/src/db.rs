//! The store's database: SQLite in the data directory (one process), or PostgreSQL (several replicas),
//! behind one small async interface. Queries are written once, in the SQL both understand, with
//! numbered `?N` parameters; [`postgres_sql`] turns them into PostgreSQL's `$N`. Rows come back owned,
//! as [`Value`]s, or are mapped where they are through a [`RowRef`], so the code that maps them is
//! the same for both.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use rusqlite::types::{ToSqlOutput, ValueRef};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::error::StoreError;

/// A parameter or a cell: the four kinds of value the store keeps.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// What can be bound as a parameter (see [`args!`](crate::args)).
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for usize {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// What a cell can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;

    /// From a text moved out of its row (only texts can be; the rest copy).
    fn from_text(text: String) -> Option<Self> {
        Self::from_value(&Value::Text(text))
    }
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Real(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn from_text(text: String) -> Option<Self> {
        Some(text)
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }

    fn from_text(text: String) -> Option<Self> {
        T::from_text(text).map(Some)
    }
}

/// A row, read whole.
#[derive(Debug)]
pub struct Row(Vec<Value>);

impl Row {
    /// The cell at `i` as a `T`; a wrong kind or a missing column is the store's error.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let cell = self
            .0
            .get(i)
            .ok_or_else(|| StoreError::corrupt(format!("no column {i}")))?;
        T::from_value(cell).ok_or_else(|| wrong_kind::<T>(i, cell))
    }

    /// [`Row::get`] that moves a text out instead of copying it (the cell is left empty): for the
    /// rows lists read by the page.
    pub fn take<T: FromValue>(&mut self, i: usize) -> Result<T, StoreError> {
        let cell = self
            .0
            .get_mut(i)
            .ok_or_else(|| StoreError::corrupt(format!("no column {i}")))?;
        let value = std::mem::replace(cell, Value::Null);
        match value {
            Value::Text(text) => T::from_text(text).ok_or_else(|| wrong_kind::<T>(i, &Value::Null)),
            other => T::from_value(&other).ok_or_else(|| wrong_kind::<T>(i, &other)),
        }
    }
}

fn wrong_kind<T>(i: usize, cell: &Value) -> StoreError {
    StoreError::corrupt(format!(
        "store: column {i} holds {cell:?}, not a {}",
        std::any::type_name::<T>()
    ))
}

/// A row where the database keeps it, read cell by cell without copying its texts: SQLite's
/// current row, or one of PostgreSQL's.
pub enum RowRef<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a tokio_postgres::Row),
}

impl RowRef<'_> {
    /// The text at `i`, borrowed; None for NULL. Anything else is the store's error.
    pub fn text(&self, i: usize) -> Result<Option<&str>, StoreError> {
        match self {
            RowRef::Sqlite(r) => match r.get_ref(i).map_err(sqlite_error)? {
                ValueRef::Null => Ok(None),
                ValueRef::Text(t) => std::str::from_utf8(t)
                    .map(Some)
                    .map_err(|e| StoreError::corrupt(format!("column {i}: {e}"))),
                other => Err(StoreError::corrupt(format!(
                    "store: column {i} holds a {:?}, not a text",
                    other.data_type()
                ))),
            },
            RowRef::Postgres(r) => r
                .try_get::<_, Option<&str>>(i)
                .map_err(|e| StoreError::corrupt(format!("column {i}: {e}"))),
        }
    }

    /// The integer at `i` (a flag is 0 or 1); None for NULL.
    pub fn int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self {
            RowRef::Sqlite(r) => match r.get_ref(i).map_err(sqlite_error)? {
                ValueRef::Null => Ok(None),
                ValueRef::Integer(v) => Ok(Some(v)),
                other => Err(StoreError::corrupt(format!(
                    "store: column {i} holds a {:?}, not an integer",
                    other.data_type()
                ))),
            },
            RowRef::Postgres(r) => match postgres_cell(r, i)? {
                Value::Null => Ok(None),
                Value::Int(v) => Ok(Some(v)),
                other => Err(wrong_kind::<i64>(i, &other)),
            },
        }
    }

    /// [`RowRef::text`] of a column that may not be NULL.
    pub fn required_text(&self, i: usize) -> Result<&str, StoreError> {
        self.text(i)?.ok_or_else(|| null_cell(i))
    }

    /// [`RowRef::int`] of a column that may not be NULL.
    pub fn required_int(&self, i: usize) -> Result<i64, StoreError> {
        self.int(i)?.ok_or_else(|| null_cell(i))
    }

    /// The row copied whole, as [`Value`]s.
    pub fn to_row(&self) -> Result<Row, StoreError> {
        match self {
            RowRef::Sqlite(r) => {
                let width = r.as_ref().column_count();
                let mut cells = Vec::with_capacity(width);
                for i in 0..width {
                    cells.push(sqlite_cell(r.get_ref(i).map_err(sqlite_error)?));
                }
                Ok(Row(cells))
            }
            RowRef::Postgres(r) => (0..r.len())
                .map(|i| postgres_cell(r, i))
                .collect::<Result<_, _>>()
                .map(Row),
        }
    }
}

fn null_cell(i: usize) -> StoreError {
    StoreError::corrupt(format!("column {i} is NULL"))
}

/// Which database, and how to reach it.
#[derive(Clone)]
pub enum Db {
    Sqlite(Arc<Sqlite>),
    Postgres(Pool),
}

/// SQLite's connections: one writer at a time (SQLite's own model), through which every statement
/// and transaction goes, and read-only connections for the hot reads of every request ([`Db::read`]),
/// which WAL mode lets run beside each other and beside the writer. With the writer alone, requests
/// queued for it left a core idle under load.
pub struct Sqlite {
    writer: Arc<Mutex<rusqlite::Connection>>,
    readers: Vec<Arc<Mutex<rusqlite::Connection>>>,
    next_reader: AtomicUsize,
}

/// One connection for a few statements or a transaction. Dropped inside a transaction that was
/// not committed, it rolls back (SQLite) or is closed instead of going back to the pool (PostgreSQL,
/// whose server then rolls back).
pub struct Conn {
    link: Link,
    in_transaction: bool,
}

enum Link {
    Sqlite(OwnedMutexGuard<rusqlite::Connection>),
    Postgres(Option<Box<Object>>),
}

#[allow(clippy::needless_pass_by_value)] // the shape map_err wants
fn sqlite_error(e: rusqlite::Error) -> StoreError {
    StoreError::from(e)
}

#[allow(clippy::needless_pass_by_value)] // the shape map_err wants
fn postgres_error(e: tokio_postgres::Error) -> StoreError {
    // The server's own message (which constraint, which column) is what an operator needs.
    StoreError::from(e)
}

/// An error and its causes, outermost first ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer"): the outer words alone rarely say what to fix.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

impl Db {
    /// SQLite through `writer`, and `readers` (read-only connections to the same file) for
    /// [`Db::read`]; without readers, reads go through the writer.
    pub fn sqlite(writer: rusqlite::Connection, readers: Vec<rusqlite::Connection>) -> Db {
        Db::Sqlite(Arc::new(Sqlite {
            writer: Arc::new(Mutex::new(writer)),
            readers: readers.into_iter().map(|r| Arc::new(Mutex::new(r))).collect(),
            next_reader: AtomicUsize::new(0),
        }))
    }

    /// A pool of up to `size` connections to `target`; nothing connects until it is used.
    pub fn postgres(target: &PostgresTarget, size: usize) -> Result<Db, String> {
        let manager = Manager::from_config(
            target.config.clone(),
            target.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| format!("--database-url: {e}"))?;
        Ok(Db::Postgres(pool))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    pub async fn conn(&self) -> Result<Conn, StoreError> {
        let link = match self {
            Db::Sqlite(c) => Link::Sqlite(c.writer.clone().lock_owned().await),
            Db::Postgres(pool) => {
                Link::Postgres(Some(Box::new(pool.get().await.map_err(|e| {
                    StoreError::Unreachable(format!("PostgreSQL: {}", with_causes(&e)))
                })?)))
            }
        };
        Ok(Conn {
            link,
            in_transaction: false,
        })
    }

    /// A connection inside a transaction; [`Conn::commit`] ends it.
    pub async fn begin(&self) -> Result<Conn, StoreError> {
        let mut conn = self.conn().await?;
        conn.batch("BEGIN").await?;
        conn.in_transaction = true;
        Ok(conn)
    }

    pub async fn execute(&self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        self.conn().await?.execute(sql, args).await
    }

    pub async fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        self.conn().await?.query(sql, args).await
    }

    pub async fn query_opt(&self, sql: &str, args: &[Value]) -> Result<Option<Row>, StoreError> {
        self.conn().await?.query_opt(sql, args).await
    }

    pub async fn query_one(&self, sql: &str, args: &[Value]) -> Result<Row, StoreError> {
        self.conn().await?.query_one(sql, args).await
    }

    /// A read outside any transaction, for the queries every request makes (its identity, a page of
    /// history). It sees every write committed before it starts. On SQLite it runs on a read-only
    /// connection, a free one if there is one; on PostgreSQL it is [`Db::query`].
    pub async fn read(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        self.read_map(sql, args, |r| r.to_row()).await
    }

    /// [`Db::read`] that maps each row where it is, its texts borrowed from the database's own
    /// buffers: for a page of many rows, built straight into what the page shows.
    pub async fn read_map<T>(
        &self,
        sql: &str,
        args: &[Value],
        map: impl FnMut(&RowRef<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let reader = match self {
            Db::Sqlite(sqlite) if !sqlite.readers.is_empty() => {
                let free = sqlite
                    .readers
                    .iter()
                    .find_map(|r| r.clone().try_lock_owned().ok());
                match free {
                    Some(reader) => reader,
                    None => {
                        let i = sqlite.next_reader.fetch_add(1, Ordering::Relaxed) % sqlite.readers.len();
                        sqlite.readers[i].clone().lock_owned().await
                    }
                }
            }
            _ => return self.conn().await?.query_map(sql, args, map).await,
        };
        let mut conn = Conn {
            link: Link::Sqlite(reader),
            in_transaction: false,
        };
        conn.query_map(sql, args, map).await
    }

    /// [`Db::read`] of at most one row.
    pub async fn read_opt(&self, sql: &str, args: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.read(sql, args).await?.into_iter().next())
    }
}

impl Conn {
    /// Statements without parameters, several at once.
    pub async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match &mut self.link {
            Link::Sqlite(c) => c.execute_batch(sql).map_err(sqlite_error),
            Link::Postgres(c) => client(c)?
                .batch_execute(&postgres_sql(sql))
                .await
                .map_err(postgres_error),
        }
    }

    /// Runs a statement; returns how many rows it changed.
    pub async fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        match &mut self.link {
            Link::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql).map_err(sqlite_error)?;
                let n = stmt
                    .execute(rusqlite::params_from_iter(args))
                    .map_err(sqlite_error)?;
                Ok(n as u64)
            }
            Link::Postgres(c) => {
                let (c, stmt) = prepared(c, sql).await?;
                c.execute(&stmt, &postgres_args(args))
                    .await
                    .map_err(postgres_error)
            }
        }
    }

    pub async fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        self.query_map(sql, args, |r| r.to_row()).await
    }

    /// Runs a query and maps each row where it is (see [`Db::read_map`]).
    pub async fn query_map<T>(
        &mut self,
        sql: &str,
        args: &[Value],
        mut map: impl FnMut(&RowRef<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match &mut self.link {
            Link::Sqlite(c) => {
                // The same few shapes of query come again and again: SQLite keeps them compiled.
                let mut stmt = c.prepare_cached(sql).map_err(sqlite_error)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(args))
                    .map_err(sqlite_error)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(sqlite_error)? {
                    out.push(map(&RowRef::Sqlite(r))?);
                }
                Ok(out)
            }
            Link::Postgres(c) => {
                let (c, stmt) = prepared(c, sql).await?;
                let rows = c
                    .query(&stmt, &postgres_args(args))
                    .await
                    .map_err(postgres_error)?;
                rows.iter().map(|r| map(&RowRef::Postgres(r))).collect()
            }
        }
    }

    pub async fn query_opt(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args).await?.into_iter().next())
    }

    pub async fn query_one(&mut self, sql: &str, args: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, args)
            .await?
            .ok_or_else(|| StoreError::corrupt("store: the query returned no row"))
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.batch("COMMIT").await?;
        self.in_transaction = false;
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.in_transaction {
            return;
        }
        match &mut self.link {
            Link::Sqlite(c) => {
                let _ = c.execute_batch("ROLLBACK");
            }
            Link::Postgres(c) => {
                if let Some(object) = c.take() {
                    // Closed, not pooled: the server rolls the transaction back.
                    drop(Object::take(*object));
                }
            }
        }
    }
}

/// Where PostgreSQL is and how to reach it: the parsed URL, and TLS when the URL asks for it with
/// `sslmode=require`. The server's certificate is then verified, its name included, against
/// `--database-ca-file` (a managed database's CA bundle, such as Amazon RDS's) or the system's
/// roots: what libpq calls `verify-full`. Without `sslmode=require` the connection is plain (a
/// local or private-network server); `prefer` is not honoured, so that a certificate that does not
/// verify is never silently traded for a plain connection.
#[derive(Clone)]
pub struct PostgresTarget {
    pub config: tokio_postgres::Config,
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
}

/// A connection on its own (not pooled): the leader's lock, the relay's LISTEN.
pub type PostgresConnection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
        tokio_postgres::Socket,
    >>::Stream,
>;

impl PostgresTarget {
    pub fn parse(url: &str, ca_file: Option<&std::path::Path>) -> Result<PostgresTarget, String> {
        use rustls_pki_types::pem::PemObject;
        use tokio_postgres::config::SslMode;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("--database-url: not a PostgreSQL URL: {e}"))?;
        let require = matches!(config.get_ssl_mode(), SslMode::Require);
        if !require {
            config.ssl_mode(SslMode::Disable);
        }
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        match ca_file {
            Some(file) => {
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("--database-ca-file {}: {e}", file.display()))?;
                if certs.is_empty() {
                    return Err(format!(
                        "--database-ca-file {}: no certificate in it",
                        file.display()
                    ));
                }
                roots.add_parsable_certificates(certs);
            }
            None if require => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
            None => {}
        }
        let tls = tokio_rustls::rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(PostgresTarget {
            config,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        })
    }

    /// One connection of its own; the caller drives (or spawns) the connection half.
    pub async fn connect(
        &self,
    ) -> Result<(tokio_postgres::Client, PostgresConnection), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }
}

/// The pooled connection and `sql` prepared on it (kept prepared, per connection, by the pool).
async fn prepared<'c>(
    c: &'c mut Option<Box<Object>>,
    sql: &str,
) -> Result<(&'c mut Object, tokio_postgres::Statement), StoreError> {
    let c = client(c)?;
    let stmt = c
        .prepare_cached(&postgres_sql(sql))
        .await
        .map_err(postgres_error)?;
    Ok((c, stmt))
}

fn client(c: &mut Option<Box<Object>>) -> Result<&mut Object, StoreError> {
    c.as_deref_mut()
        .ok_or_else(|| StoreError::corrupt("store: the connection is gone"))
}

/// The SQL both understand, in PostgreSQL's words: `?N` parameters become `$N`, and SQLite's
/// `group_concat` is `string_agg`.
pub fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    // Every query passes here: copy again only for the one that needs it.
    if out.contains("group_concat(") {
        out = out.replace("group_concat(", "string_agg(");
    }
    out
}

/// A migration written for SQLite, for PostgreSQL: 64-bit integers, identity keys, and text that
/// sorts byte by byte as SQLite's does (timestamps and cursors compare as strings).
pub fn postgres_ddl(sql: &str) -> String {
    sql.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
    .replace("INTEGER", "BIGINT")
    .replace(" TEXT", " TEXT COLLATE \"C\"")
}

fn sqlite_cell(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        // Valid UTF-8 (all the store writes) takes the fast path.
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(match std::str::from_utf8(t) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(t).into_owned(),
        }),
    }
}

fn postgres_cell(r: &tokio_postgres::Row, i: usize) -> Result<Value, StoreError> {
    let column = r
        .columns()
        .get(i)
        .ok_or_else(|| StoreError::corrupt(format!("no column {i}")))?;
    let ty = column.type_();
    let cell = match *ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::INT2 => r
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::BOOL => r
            .try_get::<_, Option<bool>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::FLOAT8 => r.try_get::<_, Option<f64>>(i).map(|v| v.map(Value::Real)),
        Type::FLOAT4 => r
            .try_get::<_, Option<f32>>(i)
            .map(|v| v.map(|v| Value::Real(v.into()))),
        _ => r.try_get::<_, Option<String>>(i).map(|v| v.map(Value::Text)),
    }
    .map_err(|e| StoreError::corrupt(format!("column {} ({ty}): {e}", column.name())))?;
    Ok(cell.unwrap_or(Value::Null))
}

fn postgres_args(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Int(i) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Owned(rusqlite::types::Value::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// A value binds to whatever type PostgreSQL inferred for its parameter (a count to BIGINT or
/// INTEGER, a flag to BOOLEAN), as SQLite's loose typing lets the same query do.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => i.to_string().to_sql(ty, out),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_sql(ty, out),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                _ => s.as_str().to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_and_group_concat_become_postgres_words() {
        assert_eq!(
            postgres_sql("SELECT group_concat(a, ' ') FROM t WHERE x = ?1 AND y IN (?2, ?12) AND z = '?'"),
            "SELECT string_agg(a, ' ') FROM t WHERE x = $1 AND y IN ($2, $12) AND z = '?'"
        );
    }

    #[test]
    fn migrations_get_64_bit_identity_keys_and_byte_ordered_text() {
        assert_eq!(
            postgres_ddl("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, s TEXT);"),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, s TEXT COLLATE \"C\");"
        );
    }
}
