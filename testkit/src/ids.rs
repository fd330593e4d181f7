//! Ids for tests: deterministic ones named by a number, fresh ones unique in
//! the test process, and random ones unique across runs (for databases that
//! outlive a run).

use std::sync::atomic::{AtomicU64, Ordering};

use accounts::domain::OwnerId;
use accounts::engine::{Entropy, SeededEntropy};
use uuid::Uuid;

/// `id(1)` is `00000000-0000-0000-0000-000000000001`.
pub fn id(n: u128) -> String {
    Uuid::from_u128(n).hyphenated().to_string()
}

/// A UUID not used before in this test process (deterministic: a counter).
pub fn fresh_uuid() -> Uuid {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = u128::from(NEXT.fetch_add(1, Ordering::SeqCst));
    Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | n)
}

/// [`fresh_uuid`] as text.
pub fn fresh_id() -> String {
    fresh_uuid().to_string()
}

/// An owner not used before in this test process.
pub fn fresh_owner() -> OwnerId {
    OwnerId::from_uuid(fresh_uuid())
}

/// A random UUID from operating-system entropy.
pub fn random_uuid() -> Uuid {
    SeededEntropy::from_os().uuid()
}
