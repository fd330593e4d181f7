//! What the three SQL stores share, one concern per file:
//!
//! - [`dialect`]: [`SqlDialect`], what each database says for itself (its
//!   conflict codes), implemented in its own module, so that the code here
//!   never names a database module: `postgres.rs`, `mysql.rs` and
//!   `sqlite.rs` use `sql/`, never the other way round.
//! - [`rows`]: the rows the queries return and the values the INSERTs bind,
//!   and their decoding into events, snapshots and records (and back).
//! - [`errors`]: what a database error means for the store contract — a
//!   conflict, a server that refuses writes, a lost connection, an outage —
//!   before COMMIT and at it.
//! - [`pool`]: opening the pool (the first connection awaited, the schema
//!   migrated) and using it (the wait measured, a dead connection read past).
//! - [`queries`]: the reads whose SQL each dialect writes but whose running
//!   and decoding do not differ: load, events, feed, ping.
//! - [`batch`]: group commit — which members of a batch are answered before
//!   any database is asked, and the split into one-by-one writes when a
//!   concurrent writer got in the way.
//! - [`write`]: [`TransactionWrite`], the write of MariaDB and SQLite, one
//!   transaction of several statements per batch.
//!
//! Split along these seams because each changes for its own reasons: a new
//! SQLSTATE touches `errors` alone, a new column `rows`, a pool setting
//! `pool`, a new way of writing `write`.
//!
//! Everything here is generic over the sqlx `Database`; each database module
//! keeps its own SQL where placeholders, casts and types differ. MariaDB and
//! SQLite use all of it. PostgreSQL does not: it binds native `uuid`,
//! `jsonb` and arrays of them where the others bind text, so it has its own
//! write (one autocommit statement per batch, not [`write`]'s transaction),
//! its own row decoding (from the binary `uuid` and `jsonb` values) and so
//! its own load, events and feed paths, all in `postgres.rs`. Sharing them
//! would give up what those native types buy (no parsing or casting on the
//! server, events decoded straight from the `jsonb` bytes). PostgreSQL
//! shares the pool, the error mapping, the group commit of [`batch`], the
//! number conversions of [`rows`] and the ping.

mod batch;
mod dialect;
mod errors;
mod pool;
mod queries;
mod rows;
mod write;

pub(super) use batch::{Attempt, BatchWriter, Stored, append_batch, failed, first_heads, passing};
pub(super) use dialect::SqlDialect;
pub(super) use errors::{at_commit, before_commit, not_writable, read_error};
pub(super) use pool::{Pooled, Use, connect_options, open_pool, pool_options};
pub(super) use queries::{events, feed, load, ping};
pub(super) use rows::{ManyLoadRow, assemble_many, bigint, distinct_requests, sequence_to_sql};
pub(super) use write::TransactionWrite;
