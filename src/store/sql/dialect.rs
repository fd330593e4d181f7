//! The one thing every SQL database must say for itself before the shared
//! code can map its errors: which of them mean "another writer got there
//! first". Each database module implements [`SqlDialect`] for its sqlx
//! `Database`; the shared code asks `DB::is_conflict`, so it names no
//! database module and the arrows point one way: `postgres.rs`, `mysql.rs`
//! and `sqlite.rs` use `sql/`, never the other way round.

use sqlx::Database;
use sqlx::error::DatabaseError;

/// A database the SQL stores speak, with its own idea of a conflict.
pub(in crate::store) trait SqlDialect: Database {
    /// Whether `error` says another writer got there first (a sequence
    /// number or transactionId taken, a serialization failure, a deadlock):
    /// the statement wrote nothing, and reloading and deciding again cures
    /// it.
    fn is_conflict(error: &dyn DatabaseError) -> bool;
}
