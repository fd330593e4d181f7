//! The database's faults, in two parts: `plan` holds the database host's
//! faults as plan data (partitions and reply faults on an instance's link,
//! slow commits, crashes, failovers), applied by the world at their times;
//! `draw` holds the faults the database itself injects into the calls it
//! serves (latency, refusals, connections killed around COMMIT), drawn per
//! call inside the plan's store windows.

pub mod draw;
pub mod plan;
