//! What a database error means for the store contract. Every error is
//! first given its [`ErrorClass`] — a conflict (the dialect's own codes,
//! [`SqlDialect::is_conflict`]), a server that refuses writes, a lost
//! connection, another refusal, a client-side error — and then its
//! meaning where it arose: before COMMIT nothing can have been written
//! ([`before_commit`]), at COMMIT the outcome may be unknown
//! ([`at_commit`]). Kept in one place so that a new SQLSTATE or error
//! number is added once for every store.

use sqlx::error::DatabaseError;

use super::dialect::SqlDialect;
use crate::store::{AppendError, StoreError};

/// Maps an error of a read (load, events, ping): nothing was written.
pub(in crate::store) fn read_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => StoreError::Corrupt(error.to_string()),
        other => unavailable(other),
    }
}

pub(in crate::store) fn unavailable(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::PoolTimedOut => {
            StoreError::Unavailable("no database connection available in time".to_owned())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// What a database error says about the write that met it and about the
/// connection it came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorClass {
    /// Another writer got there first (the dialect's conflict codes): the
    /// statement wrote nothing; reload and decide again.
    Conflict,
    /// The server refuses to write at all — a read-only server, a standby,
    /// a primary being demoted or restarted, a server starting up or
    /// shutting down (PostgreSQL `25006`, `57P03`; MariaDB 1290, 1836,
    /// 1792). The statement wrote nothing, and the connection leads to a
    /// server that is no writable primary: it is closed, not pooled again.
    NotWritable,
    /// The connection is gone: closed by the network or the server, or the
    /// server terminated the session (`08*`, `57P01`, `57P02`, MariaDB
    /// 2006, 2013, 1053, 1927). Before COMMIT nothing was written; at
    /// COMMIT the outcome is unknown (PostgreSQL commits locally before it
    /// waits for a synchronous standby, and a session terminated during
    /// that wait has committed).
    ConnectionLost,
    /// Any other refusal by the server (a constraint the schema should
    /// never meet, a syntax error): before COMMIT nothing was written.
    Refused,
    /// An error of the client side (no pooled connection in time, a value
    /// that did not decode): nothing about the server.
    Client,
}

/// The class of an SQLSTATE that means the same on every database, if it
/// is one of those: class 08 is "connection exception" in PostgreSQL's and
/// MySQL's SQLSTATEs alike, `25006` a write in a read-only transaction.
fn sqlstate_class(code: &str) -> Option<ErrorClass> {
    match code {
        // 57P01 admin shutdown (also pg_terminate_backend), 57P02 crash
        // shutdown; 70100 is MariaDB's "connection was killed".
        "57P01" | "57P02" | "70100" => Some(ErrorClass::ConnectionLost),
        code if code.starts_with("08") => Some(ErrorClass::ConnectionLost),
        // 57P03 "cannot connect now": the server is starting, recovering or
        // shutting down, and was never sent a statement.
        "25006" | "57P03" => Some(ErrorClass::NotWritable),
        _ => None,
    }
}

/// The class of a MySQL/MariaDB error number, if it is one of those whose
/// SQLSTATE (mostly the generic `HY000`) does not say it.
fn mysql_number_class(number: u16) -> Option<ErrorClass> {
    match number {
        // ER_OPTION_PREVENTS_STATEMENT (read_only / super_read_only),
        // ER_READ_ONLY_MODE, ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION.
        1290 | 1836 | 1792 => Some(ErrorClass::NotWritable),
        // CR_SERVER_GONE_ERROR, CR_SERVER_LOST (client codes that proxies
        // and some servers send too), ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED.
        2006 | 2013 | 1053 | 1927 => Some(ErrorClass::ConnectionLost),
        _ => None,
    }
}

/// The class of `error`, the dialect's conflicts told by `is_conflict`.
fn class_of(error: &sqlx::Error, is_conflict: fn(&dyn DatabaseError) -> bool) -> ErrorClass {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => ErrorClass::ConnectionLost,
        sqlx::Error::Database(database) => {
            let number = database
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .and_then(|mysql| mysql_number_class(mysql.number()));
            let code = database.code();
            number
                .or_else(|| code.as_deref().and_then(sqlstate_class))
                .unwrap_or(if is_conflict(database.as_ref()) {
                    ErrorClass::Conflict
                } else {
                    ErrorClass::Refused
                })
        }
        _ => ErrorClass::Client,
    }
}

/// The error of a write to a server that refuses writes.
fn not_writable_error(error: &sqlx::Error) -> StoreError {
    let message = match error {
        sqlx::Error::Database(database) => database.message().to_owned(),
        other => other.to_string(),
    };
    StoreError::Unavailable(format!(
        "the database refuses writes (a standby, or a primary being demoted or restarted): {message}"
    ))
}

/// Maps an error raised before COMMIT was sent: the transaction cannot have
/// landed (the server rolls it back when the connection drops), so anything
/// but a conflict means "nothing written, store unavailable".
pub(in crate::store) fn before_commit<DB: SqlDialect>(error: sqlx::Error) -> AppendError {
    match (class_of(&error, DB::is_conflict), &error) {
        (ErrorClass::Conflict, sqlx::Error::Database(database)) => {
            AppendError::Conflict(database.message().to_owned())
        }
        (ErrorClass::NotWritable, _) => AppendError::Store(not_writable_error(&error)),
        (ErrorClass::Refused, sqlx::Error::Database(database)) => {
            // Not a conflict and not the network: a constraint or statement
            // the schema should never refuse. Still nothing was written.
            tracing::error!(error = %database, "database refused an append");
            AppendError::Store(StoreError::Unavailable(format!(
                "database refused the write: {}",
                database.message()
            )))
        }
        _ => AppendError::Store(unavailable(error)),
    }
}

/// Maps an error of the COMMIT itself (on PostgreSQL: of the one autocommit
/// statement that writes a batch). A refusal the database reports as a
/// conflict rolled the transaction back, and so did a refusal to write at
/// all (the server answered with an error, it did not commit); anything
/// else — the reply lost, the connection dropped, the session terminated
/// mid-commit — leaves the outcome unknown, and only reading the
/// transactionId back can tell.
pub(in crate::store) fn at_commit<DB: SqlDialect>(error: sqlx::Error) -> AppendError {
    match (class_of(&error, DB::is_conflict), &error) {
        (ErrorClass::Conflict, sqlx::Error::Database(database)) => {
            AppendError::Conflict(database.message().to_owned())
        }
        (ErrorClass::NotWritable, _) => AppendError::Store(not_writable_error(&error)),
        _ => AppendError::Ambiguous(error.to_string()),
    }
}

/// Whether an error says the connection itself is gone (closed by the
/// server or the network, the server shutting down or killing it) rather
/// than anything about the statement: the statement may be sent again on
/// another connection if sending it twice is harmless.
pub(in crate::store) fn connection_lost(error: &sqlx::Error) -> bool {
    class_of(error, |_| false) == ErrorClass::ConnectionLost
}

/// Whether an error says the server refuses writes (see
/// [`ErrorClass::NotWritable`]).
pub(in crate::store) fn not_writable(error: &sqlx::Error) -> bool {
    class_of(error, |_| false) == ErrorClass::NotWritable
}

/// Where in an append a database error arose, for the tests: before COMMIT
/// was sent (nothing can have been written) or at the COMMIT itself.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteStage {
    BeforeCommit,
    AtCommit,
}

/// What an error of an append means for the store contract — exactly the
/// mapping the stores apply ([`before_commit`], [`at_commit`] with `DB`'s
/// conflict codes), for the tests to feed errors to.
#[cfg(test)]
fn classify_write_error<DB: SqlDialect>(stage: WriteStage, error: sqlx::Error) -> AppendError {
    match stage {
        WriteStage::BeforeCommit => before_commit::<DB>(error),
        WriteStage::AtCommit => at_commit::<DB>(error),
    }
}

/// The same, fed with real errors of real databases.
#[cfg(test)]
mod real_errors;

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::error::ErrorKind;
    use sqlx::{MySql, Postgres};

    use super::*;

    /// A database error that carries nothing but an SQLSTATE, as a server
    /// would send it.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(formatter, "error {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl DatabaseError for Coded {
        fn message(&self) -> &str {
            "refused"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn database(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Coded(code)))
    }

    /// Every SQLSTATE a failover, a restart or a demotion produces, and the
    /// ones that must stay what they were.
    const POSTGRES: &[(&str, ErrorClass)] = &[
        ("25006", ErrorClass::NotWritable),
        ("57P03", ErrorClass::NotWritable),
        ("57P01", ErrorClass::ConnectionLost),
        ("57P02", ErrorClass::ConnectionLost),
        ("08000", ErrorClass::ConnectionLost),
        ("08003", ErrorClass::ConnectionLost),
        ("08006", ErrorClass::ConnectionLost),
        ("08001", ErrorClass::ConnectionLost),
        ("08P01", ErrorClass::ConnectionLost),
        ("23505", ErrorClass::Conflict),
        ("40001", ErrorClass::Conflict),
        ("40P01", ErrorClass::Conflict),
        ("23514", ErrorClass::Refused),
        ("42601", ErrorClass::Refused),
        ("57014", ErrorClass::Refused),
    ];

    #[test]
    fn postgres_sqlstates_map_onto_their_classes() {
        for &(code, class) in POSTGRES {
            assert_eq!(
                class_of(&database(code), Postgres::is_conflict),
                class,
                "{code}"
            );
        }
    }

    #[test]
    fn mysql_error_numbers_map_onto_their_classes() {
        let table = [
            (1290, Some(ErrorClass::NotWritable)),
            (1836, Some(ErrorClass::NotWritable)),
            (1792, Some(ErrorClass::NotWritable)),
            (2006, Some(ErrorClass::ConnectionLost)),
            (2013, Some(ErrorClass::ConnectionLost)),
            (1053, Some(ErrorClass::ConnectionLost)),
            (1927, Some(ErrorClass::ConnectionLost)),
            (1062, None),
            (1213, None),
            (3819, None),
        ];
        for (number, class) in table {
            assert_eq!(mysql_number_class(number), class, "{number}");
        }
        // MariaDB's SQLSTATEs for the same: a killed connection, a shutdown.
        assert_eq!(sqlstate_class("70100"), Some(ErrorClass::ConnectionLost));
        assert_eq!(sqlstate_class("08S01"), Some(ErrorClass::ConnectionLost));
        assert_eq!(sqlstate_class("HY000"), None);
    }

    #[test]
    fn network_and_client_errors_have_their_classes() {
        let io = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            class_of(&io(), MySql::is_conflict),
            ErrorClass::ConnectionLost
        );
        assert_eq!(
            class_of(&sqlx::Error::PoolTimedOut, Postgres::is_conflict),
            ErrorClass::Client
        );
    }

    /// A refusal to write is "nothing written, unavailable" at either stage
    /// — never a success, never ambiguous; a lost connection is ambiguous
    /// only at COMMIT.
    #[test]
    fn a_refusal_to_write_is_unavailable_and_a_lost_commit_ambiguous() {
        for stage in [WriteStage::BeforeCommit, WriteStage::AtCommit] {
            for code in ["25006", "57P03"] {
                let classified = classify_write_error::<Postgres>(stage, database(code));
                assert!(
                    matches!(classified, AppendError::Store(StoreError::Unavailable(_))),
                    "{code} at {stage:?}: {classified:?}"
                );
            }
        }
        for code in ["57P01", "57P02", "08006"] {
            let before = classify_write_error::<Postgres>(WriteStage::BeforeCommit, database(code));
            assert!(
                matches!(before, AppendError::Store(StoreError::Unavailable(_))),
                "{code}"
            );
            let at = classify_write_error::<Postgres>(WriteStage::AtCommit, database(code));
            assert!(matches!(at, AppendError::Ambiguous(_)), "{code}: {at:?}");
        }
        let at = classify_write_error::<Postgres>(WriteStage::AtCommit, sqlx::Error::PoolTimedOut);
        assert!(matches!(at, AppendError::Ambiguous(_)), "{at:?}");
    }
}
