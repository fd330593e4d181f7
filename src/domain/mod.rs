//! The pure core: what an account is, which commands it accepts and which
//! events they produce. No async, no I/O, no clock, no randomness — time and
//! generated ids come in as values — so the simulation and the property tests
//! can drive it exhaustively.

mod account;
mod amount;
mod caller;
mod ids;
mod timestamp;

pub use account::{Account, Command, Effects, Event, Fingerprint, Refusal, decide, evolve, replay};
pub use amount::{Amount, AmountError, TRANSFER_AMOUNT_MIN};
pub use caller::{Caller, authorize, authorize_access, authorize_feed, may_read};
pub use ids::{AccountId, IdError, OwnerId, TransactionId};
pub use timestamp::Timestamp;
