//! The reads whose SQL each dialect writes but whose running and decoding
//! are alike on MariaDB and SQLite: load, events, feed, and the ping that
//! checks the database takes writes (PostgreSQL uses the ping too; it runs
//! and decodes its reads itself, `postgres.rs`).

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use super::errors::{read_error, unavailable};
use super::pool::Pooled;
use super::rows::{EventRow, FeedRow, LoadRow, assemble, bigint, decode_event, decode_feed};
use crate::domain::AccountId;
use crate::store::{FeedEvent, Loaded, RecordedEvent, StoreError};

/// Runs the load query `build` makes (its binds differ per dialect) and
/// assembles the account's state from its rows.
pub(in crate::store) async fn load<'q, DB>(
    pooled: &Pooled<DB>,
    account: AccountId,
    build: impl Fn() -> sqlx::query::QueryAs<'q, DB, LoadRow, DB::Arguments>,
) -> Result<Loaded, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    LoadRow: for<'r> FromRow<'r, DB::Row>,
{
    let rows = pooled
        .read(|mut connection| {
            let query = build();
            async move { query.fetch_all(&mut *connection).await }
        })
        .await
        .map_err(read_error)?;
    assemble(account, rows)
}

/// Reads up to `limit` events of `account` from sequence number `from` on
/// with `query`, whose three parameters are account, from and limit.
pub(in crate::store) async fn events<DB>(
    pooled: &Pooled<DB>,
    query: &'static str,
    account: AccountId,
    from: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    EventRow: for<'r> FromRow<'r, DB::Row>,
{
    let rows: Vec<EventRow> = pooled
        .read(|mut connection| async move {
            sqlx::query_as(query)
                .bind(account.to_string())
                .bind(bigint(from))
                .bind(bigint(limit))
                .fetch_all(&mut *connection)
                .await
        })
        .await
        .map_err(read_error)?;
    rows.into_iter()
        .map(|row| decode_event(account, row))
        .collect()
}

/// Reads a page of the feed with `query`, whose two parameters are the
/// position to start after and the limit.
pub(in crate::store) async fn feed<DB>(
    pooled: &Pooled<DB>,
    query: &'static str,
    after: u64,
    limit: usize,
) -> Result<Vec<FeedEvent>, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    FeedRow: for<'r> FromRow<'r, DB::Row>,
{
    let rows: Vec<FeedRow> = pooled
        .read(|mut connection| async move {
            sqlx::query_as(query)
                .bind(bigint(after))
                .bind(bigint(limit))
                .fetch_all(&mut *connection)
                .await
        })
        .await
        .map_err(read_error)?;
    rows.into_iter().map(decode_feed).collect()
}

/// Whether the database answers and takes writes — on any connection: one
/// that died idle says nothing about the database, so it is read past like
/// any read. `read_only` is the dialect's query answering one integer,
/// non-zero when the server (or this session) cannot write: a standby, a
/// server in recovery, a read-only one. Such a connection is closed with
/// its idle neighbours, as after a write it refused
/// ([`Pooled::discard_if_not_writable`]), so that the next check and the
/// next write go out on new connections.
pub(in crate::store) async fn ping<DB>(
    pooled: &Pooled<DB>,
    read_only: &'static str,
) -> Result<(), StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    // A second look on a new connection: a session left over from before
    // (its own read-only default, or a server since demoted and replaced
    // behind the address) says nothing about where new connections go.
    for _ in 0..2 {
        let refuses = pooled
            .read(|mut connection| async move {
                let (refuses,): (i64,) = sqlx::query_as(read_only)
                    .fetch_one(&mut *connection)
                    .await?;
                if refuses != 0 {
                    connection.close_on_drop();
                }
                Ok(refuses != 0)
            })
            .await
            .map_err(unavailable)?;
        if !refuses {
            return Ok(());
        }
        pooled.close_idle();
    }
    Err(StoreError::Unavailable(
        "the database does not take writes (a standby, in recovery, or read-only)".to_owned(),
    ))
}
