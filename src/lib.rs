//! accounts: an event-sourced bank-account service.
//!
//! Layers, inside out: [`domain`] (pure rules), [`engine`] (load → decide →
//! append with optimistic concurrency), [`store`] (one contract, several
//! backends), [`http`] (the REST API and its serve loop).

pub mod app;
pub mod config;
pub mod domain;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod probe;
pub mod store;
