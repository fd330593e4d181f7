//! The one test kit of accounts, used by `tests/`, `sim/`, `fuzz/` and the
//! end-to-end harness:
//! - [`instance`]: an instance wired by the library's `InstanceBuilder` with
//!   a fixed clock and seeded entropy, in-process or on a loopback socket;
//! - [`client`]: one typed API client (both URL styles, every operation,
//!   the read side, raw requests) over pluggable [`Transport`]s, built on
//!   [`api`] (every URL, once) and returning [`Answer`]s with their
//!   assertions;
//! - [`auth`]: the secret of instances with authentication on, and the
//!   tokens they accept;
//! - [`stores`]: wrapper stores — slow, held, failing, conflicting,
//!   ambiguous, counting;
//! - [`commits`]: commits built by hand for the suites that drive a store
//!   directly;
//! - [`database`]: a fresh store of every kind per test, and connection
//!   kills;
//! - [`envoy`]: the deploy kit's Envoy policy on loopback ports;
//! - [`process`]: the real binary as a child; [`raw`]: bytes on a socket;
//!   [`history`]: the scripted history behind the pinned event streams;
//!   [`properties`]: proptest runners with fixed seeds.
//!
//! The library's own unit tests cannot use the kit's library types (it
//! depends on the library, so in `cargo test --lib` they would be another
//! crate's); what carries none — [`database`]'s fresh databases and
//! connections — they may (the store's error classification does).

pub mod answer;
pub mod api;
pub mod auth;
pub mod client;
pub mod commits;
pub mod database;
pub mod envoy;
pub mod history;
pub mod ids;
pub mod instance;
pub mod metrics;
pub mod process;
pub mod properties;
pub mod raw;
pub mod stores;

pub use answer::{Answer, NoAnswer, Reply};
pub use api::{ApiRequest, Style};
pub use auth::Tokens;
pub use axum::http::{Method, StatusCode};
pub use client::{
    Call, Client, EventStream, FeedMessage, InProcess, Socket, Streaming, Transport, position,
};
pub use database::{Backend, TestStore};
pub use ids::{fresh_id, fresh_owner, fresh_uuid, id};
pub use instance::{Served, TestInstance};
pub use stores::{Decorated, Decorator, Fault, Instrumented, InstrumentedStore, Read};
