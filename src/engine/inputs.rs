//! Time and randomness, handed to the engine rather than read from globals,
//! so a simulation can replay any run from its seed.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use uuid::Uuid;

use crate::domain::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock, for production.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            });
        Timestamp::from_unix_millis(millis)
    }
}

/// A clock that reads a fixed instant plus whatever a test sets.
pub struct FixedClock(Mutex<Timestamp>);

impl FixedClock {
    pub fn new(at: Timestamp) -> FixedClock {
        FixedClock(Mutex::new(at))
    }

    pub fn set(&self, at: Timestamp) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A source of random numbers: retry jitter, generated transaction and
/// request ids.
pub trait Entropy: Send + Sync + 'static {
    fn next_u64(&self) -> u64;

    /// A random (version 4) UUID drawn from this source.
    fn uuid(&self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    fn below(&self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }
}

/// A named, stable algorithm (Xoshiro256++) so that a seed means the same run
/// across versions of the rand crates.
pub struct SeededEntropy(Mutex<Xoshiro256PlusPlus>);

impl SeededEntropy {
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy(Mutex::new(Xoshiro256PlusPlus::seed_from_u64(seed)))
    }

    /// Seeded once from the operating system, for production.
    pub fn from_os() -> SeededEntropy {
        let mut seed = [0u8; 8];
        // Without OS randomness, ids still have to be unique per process;
        // the time is a poor but workable seed.
        if getrandom::fill(&mut seed).is_err() {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            seed = (nanos as u64).to_le_bytes();
        }
        SeededEntropy::new(u64::from_le_bytes(seed))
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).next_u64()
    }
}
