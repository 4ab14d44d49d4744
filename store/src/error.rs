//! `StoreError`: what can go wrong in the store, kept apart from HTTP (the server decides what a
//! client sees) and with the database's own words and causes, which is what an operator needs.

/// A failure of the store. Apart from [`StoreError::NotFound`] and [`StoreError::Conflict`], none is
/// the client's fault: the server answers 500 and logs the whole message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row (a user, a token) for a change that needs one; the server answers 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// The change would break a rule the store keeps in one transaction (a name taken, the last
    /// enabled admin); the server answers 409 with `code`.
    #[error("{code}: {message}")]
    Conflict { code: &'static str, message: String },
    /// The database cannot be reached (pool exhausted, connection refused, TLS refused).
    #[error("store: cannot reach the database: {0}")]
    Unreachable(String),
    /// A statement broke a unique or foreign-key constraint; the database names which.
    #[error("store: {0}")]
    Constraint(String),
    /// The database refused or failed a statement.
    #[error("store: {0}")]
    Database(String),
    /// A row does not read as this code wrote it (a column missing, NULL or of another kind), or a
    /// kept JSON value no longer parses.
    #[error("store: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A kept value (JSON text) that does not read back.
    pub fn corrupt(what: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(what.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Constraint(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        match e.as_db_error() {
            // Class 23: integrity constraint violations.
            Some(db) if db.code().code().starts_with("23") => {
                StoreError::Constraint(format!("{}: {}", db.code().code(), db.message()))
            }
            Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
            None => StoreError::Database(crate::db::with_causes(&e)),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> StoreError {
        StoreError::Corrupt(e.to_string())
    }
}
