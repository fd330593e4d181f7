//! The write of MariaDB and SQLite: one transaction per batch, several
//! statements in it (the stored heads and records read, the rows inserted,
//! the feed positions taken), then COMMIT. PostgreSQL writes a batch in one
//! autocommit statement of its own instead (`postgres.rs`).

use std::collections::BTreeSet;
use std::pin::Pin;

use sqlx::pool::PoolConnection;
use sqlx::query_builder::Separated;
use sqlx::{
    AssertSqlSafe, Connection, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Transaction,
    Type,
};

use super::batch::{Attempt, Stored, failed, passing};
use super::dialect::SqlDialect;
use super::errors::{at_commit, before_commit, connection_lost, not_writable};
use super::pool::{Pooled, Use};
use super::rows::{EventValues, bigint, parse_account, parse_transaction, row_values};
use crate::store::{AppendError, Commit, StoreError};

/// Why an attempt at a transaction stopped before COMMIT was sent: nothing
/// was written either way.
pub(in crate::store) enum Stopped {
    /// The connection is gone (see [`connection_lost`]), or leads to a
    /// server that refuses writes ([`not_writable`]): the server rolls the
    /// transaction back, so the attempt may be made again (on another
    /// connection, which may reach a new primary).
    Lost(sqlx::Error),
    /// The answer of every member still to be written.
    Failed(AppendError),
}

impl Stopped {
    fn of<DB: SqlDialect>(error: sqlx::Error) -> Stopped {
        if connection_lost(&error) || not_writable(&error) {
            Stopped::Lost(error)
        } else {
            Stopped::Failed(before_commit::<DB>(error))
        }
    }
}

impl From<AppendError> for Stopped {
    fn from(error: AppendError) -> Stopped {
        Stopped::Failed(error)
    }
}

impl From<StoreError> for Stopped {
    fn from(error: StoreError) -> Stopped {
        Stopped::Failed(AppendError::Store(error))
    }
}

/// The dialects that write a batch in one transaction of several statements
/// (MariaDB and SQLite), and what the shared write needs of them: how a
/// transaction begins, how feed positions are taken, and — in the `where`
/// clause, once for every function of the write — the binds, row decodings
/// and executor the statements use. The functions are provided methods
/// because Rust does not imply a trait's `where` clause at the places that
/// name the trait: as free functions, each needed the whole clause again.
pub(in crate::store) trait TransactionWrite: SqlDialect
where
    Self::Arguments: IntoArguments<Self>,
    for<'c> &'c mut Self::Connection: Executor<'c, Database = Self>,
    for<'q> &'q str: Encode<'q, Self> + Type<Self>,
    for<'q> i64: Encode<'q, Self> + Type<Self>,
    for<'q> Option<i64>: Encode<'q, Self> + Type<Self>,
    (String, Option<i64>, Option<String>): for<'r> FromRow<'r, Self::Row>,
{
    /// The statement that begins the transaction, each database its own
    /// way, which says why the heads it reads cannot move unnoticed before
    /// COMMIT; `None`: the database's plain BEGIN.
    const BEGIN: Option<&'static str>;

    /// Takes `count` feed positions inside an append's transaction and
    /// returns the first: the database's own way, the last statement
    /// before the events are inserted and COMMIT is sent.
    fn reserve_positions(
        connection: &mut Self::Connection,
        count: i64,
    ) -> Pin<Box<dyn Future<Output = Result<i64, sqlx::Error>> + Send + '_>>;

    /// The write of MariaDB and SQLite, in one transaction begun with
    /// [`TransactionWrite::BEGIN`]: what the store holds for the batch, in
    /// one query; which members fit; their idempotency records and
    /// snapshots, one multi-row INSERT per table; the positions; the events;
    /// and COMMIT.
    ///
    /// A connection found dead before COMMIT was sent (one that died idle in
    /// the pool, or was cut off mid-transaction) wrote nothing, so the
    /// attempt is made once more on a connection that has just answered; a
    /// COMMIT that fails is never sent again (its outcome is unknown:
    /// `Ambiguous`).
    async fn write_in_transaction(pooled: &Pooled<Self>, members: &[&Commit]) -> Attempt {
        let everyone = |error: AppendError| Attempt::Answered(vec![Err(error); members.len()]);
        let connection = pooled.acquire(Use::Write).await;
        let lost = match Self::write_once(pooled, connection, members).await {
            Ok(attempt) => return attempt,
            Err(lost) => lost,
        };
        tracing::debug!(error = %lost, "connection lost or refused before COMMIT; writing the batch again");
        let connection = pooled.acquire_checked(Use::Write).await;
        match Self::write_once(pooled, connection, members).await {
            Ok(attempt) => attempt,
            Err(lost) => everyone(before_commit::<Self>(lost)),
        }
    }

    /// One attempt of [`TransactionWrite::write_in_transaction`]; `Err`: the connection was lost
    /// (or refused to write) before COMMIT was sent. A connection that refused
    /// is closed rather than pooled again, with its idle neighbours.
    async fn write_once(
        pooled: &Pooled<Self>,
        connection: Result<PoolConnection<Self>, sqlx::Error>,
        members: &[&Commit],
    ) -> Result<Attempt, sqlx::Error> {
        let mut connection = match connection {
            Ok(connection) => connection,
            Err(error) => {
                return match Stopped::of::<Self>(error) {
                    Stopped::Lost(error) => Err(error),
                    Stopped::Failed(error) => {
                        Ok(Attempt::Answered(vec![Err(error); members.len()]))
                    }
                };
            }
        };
        let written = Self::write_on(&mut connection, members).await;
        if let Err(error) = &written {
            pooled.discard_if_not_writable(&mut connection, error);
        }
        written
    }

    /// The statements of one attempt on `connection`.
    async fn write_on(
        connection: &mut Self::Connection,
        members: &[&Commit],
    ) -> Result<Attempt, sqlx::Error> {
        let everyone = |error: AppendError| Attempt::Answered(vec![Err(error); members.len()]);
        let stopped =
            |stopped: Stopped, answers: Option<Vec<Result<(), AppendError>>>| match stopped {
                Stopped::Lost(error) => Err(error),
                Stopped::Failed(error) => Ok(match answers {
                    Some(answers) => Attempt::Answered(failed(answers, &error)),
                    None => everyone(error),
                }),
            };
        let begun = match Self::BEGIN {
            // A `&'static str` that the compiler cannot see as one across the
            // await in this generic function.
            Some(statement) => Connection::begin_with(connection, AssertSqlSafe(statement)).await,
            None => Connection::begin(connection).await,
        };
        let mut transaction = match begun {
            Ok(transaction) => transaction,
            Err(error) => return stopped(Stopped::of::<Self>(error), None),
        };
        let stored = match Self::read_stored(&mut transaction, members).await {
            Ok(stored) => stored,
            Err(error) => return stopped(error, None),
        };
        let answers = stored.check(members);
        let passing = passing(members, &answers);
        if passing.is_empty() {
            // Dropping the transaction rolls it back.
            return Ok(Attempt::Answered(answers));
        }
        if let Err(error) = Self::insert_rows(&mut transaction, &passing).await {
            return match error {
                Stopped::Failed(conflict @ AppendError::Conflict(_)) => {
                    Ok(Attempt::Split(conflict))
                }
                other => stopped(other, Some(answers)),
            };
        }
        Ok(match transaction.commit().await {
            Ok(()) => Attempt::Answered(answers),
            Err(error) => match at_commit::<Self>(error) {
                conflict @ AppendError::Conflict(_) => Attempt::Split(conflict),
                other => Attempt::Answered(failed(answers, &other)),
            },
        })
    }

    /// The heads of the members' accounts and which of their transactionIds are
    /// recorded, in one query.
    async fn read_stored(
        transaction: &mut Transaction<'_, Self>,
        members: &[&Commit],
    ) -> Result<Stored, Stopped> {
        let text = |ids: BTreeSet<String>| ids.into_iter().collect::<Vec<_>>();
        let accounts = text(
            members
                .iter()
                .flat_map(|member| member.events.iter().map(|e| e.account_id.to_string()))
                .collect(),
        );
        let recorded_accounts = text(
            members
                .iter()
                .flat_map(|member| member.transactions.iter().map(|t| t.account_id.to_string()))
                .collect(),
        );
        let transactions = text(
            members
                .iter()
                .flat_map(|m| m.transactions.iter().map(|t| t.transaction_id.to_string()))
                .collect(),
        );
        let mut query = QueryBuilder::<Self>::new("");
        // One scalar MAX per account, not one MAX … GROUP BY over the list:
        // SQLite answers the scalar form from the primary key's last entry, but
        // walks every event of the account for the grouped one (a 100,000-event
        // account: 0.02 ms against 140 ms).
        for (index, account) in accounts.iter().enumerate() {
            if index > 0 {
                query.push(" UNION ALL ");
            }
            query.push("SELECT CAST(");
            query.push_bind(account.as_str());
            query.push(" AS CHAR), (SELECT MAX(sequence_number) FROM events WHERE account_id = ");
            query.push_bind(account.as_str());
            query.push("), CAST(NULL AS CHAR)");
        }
        if !transactions.is_empty() {
            if !accounts.is_empty() {
                query.push(" UNION ALL ");
            }
            // Every pair of the two lists: a superset of the records asked
            // for, through the primary key; the exact pairs are kept below.
            query.push(
                "SELECT account_id, CAST(NULL AS SIGNED), CAST(transaction_id AS CHAR) \
                 FROM applied_transactions WHERE account_id IN ",
            );
            Self::push_list(&mut query, &recorded_accounts);
            query.push(" AND transaction_id IN ");
            Self::push_list(&mut query, &transactions);
        }
        let rows = query
            .build_query_as::<(String, Option<i64>, Option<String>)>()
            .fetch_all(&mut **transaction)
            .await
            .map_err(|error| Stopped::of::<Self>(error))?;
        let mut stored = Stored::default();
        for (account, head, transaction) in rows {
            let transaction = transaction.as_deref().map(parse_transaction).transpose()?;
            stored.add(parse_account(&account)?, head, transaction)?;
        }
        Ok(stored)
    }

    /// `(?, ?, …)` binding `values`.
    fn push_list(query: &mut QueryBuilder<Self>, values: &[String]) {
        query.push("(");
        let mut separated = query.separated(", ");
        for value in values {
            separated.push_bind(value.as_str());
        }
        query.push(")");
    }

    /// The rows of the members that fit: idempotency records and snapshots in
    /// canonical account order (so that two batches never wait on each other's
    /// rows in opposite orders), then the positions, then the events in
    /// position order.
    async fn insert_rows(
        transaction: &mut Transaction<'_, Self>,
        passing: &[&Commit],
    ) -> Result<(), Stopped> {
        let mut rows = row_values(passing.iter().copied())?;
        rows.transactions.sort_by(|a, b| {
            (&a.account_id, &a.transaction_id).cmp(&(&b.account_id, &b.transaction_id))
        });
        rows.snapshots.sort_by(|a, b| {
            (&a.account_id, a.sequence_number).cmp(&(&b.account_id, b.sequence_number))
        });
        insert(
            transaction,
            "INSERT INTO applied_transactions (account_id, transaction_id, fingerprint) ",
            &rows.transactions,
            |mut row, record| {
                row.push_bind(record.account_id.as_str())
                    .push_bind(record.transaction_id.as_str())
                    .push_bind(record.fingerprint.as_str());
            },
        )
        .await?;
        insert(
            transaction,
            "INSERT INTO snapshots (account_id, sequence_number, state, recorded_until_ms) ",
            &rows.snapshots,
            |mut row, snapshot| {
                row.push_bind(snapshot.account_id.as_str())
                    .push_bind(snapshot.sequence_number)
                    .push_bind(snapshot.state.as_str())
                    .push_bind(snapshot.recorded_until_ms);
            },
        )
        .await?;
        if rows.events.is_empty() {
            return Ok(());
        }
        let first = Self::reserve_positions(&mut **transaction, bigint(rows.events.len()))
            .await
            .map_err(|error| Stopped::of::<Self>(error))?;
        let positioned: Vec<(i64, &EventValues)> = (first..).zip(&rows.events).collect();
        insert(
            transaction,
            "INSERT INTO events \
             (position, account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms) ",
            &positioned,
            |mut row, (position, event)| {
                row.push_bind(*position)
                    .push_bind(event.account_id.as_str())
                    .push_bind(event.sequence_number)
                    .push_bind(event.transaction_id.as_str())
                    .push_bind(event.event_type)
                    .push_bind(event.payload.as_str())
                    .push_bind(event.recorded_at_ms);
            },
        )
        .await
    }
}

/// One multi-row INSERT of `rows` (none: no statement), `push_row` binding
/// one row's values. A free function, not a method of [`TransactionWrite`]:
/// as a method, the closure in its future made the compiler fail to prove
/// the write `Send` ("implementation of `FnMut` is not general enough").
async fn insert<DB, Item>(
    transaction: &mut Transaction<'_, DB>,
    statement: &str,
    rows: &[Item],
    push_row: impl FnMut(Separated<'_, DB, &'static str>, &Item),
) -> Result<(), Stopped>
where
    DB: SqlDialect,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = QueryBuilder::<DB>::new(statement);
    insert.push_values(rows, push_row);
    insert
        .build()
        .execute(&mut **transaction)
        .await
        .map_err(|error| Stopped::of::<DB>(error))?;
    Ok(())
}
