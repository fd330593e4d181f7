//! The deterministic simulation of the accounts service (see
//! docs/simulation.md): turmoil worlds running the real router and engine,
//! generated workloads and fault plans, and a checker of money conservation
//! and exactly-once.

pub mod bugs;
pub mod check;
pub mod client;
pub mod db;
pub mod dbfaults;
pub mod histories;
pub mod landing;
pub mod live;
pub mod net;
pub mod plan;
pub mod replica;
pub mod sweep;
pub mod trace;
pub mod world;
