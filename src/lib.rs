//! accounts: an event-sourced bank-account service.
//!
//! Layers, inside out: [`domain`] (pure rules), [`engine`] (load → decide →
//! append with optimistic concurrency), [`store`] (one contract, several
//! backends), [`http`] (the REST API and its serve loop); [`auth`] verifies
//! and mints the bearer tokens of the optional authentication.

pub mod app;
pub mod auth;
pub mod config;
pub mod domain;
pub mod engine;
pub mod follow;
pub mod http;
pub mod metrics;
pub mod probe;
pub mod store;
