//! Property tests that replay: a proptest runner with a fixed seed and no
//! failure files, so every run of a property sees the same cases.

use proptest::test_runner::{Config, RngSeed, TestRunner};

/// A runner of `cases` cases drawn from `seed`.
pub fn runner(cases: u32, seed: u64) -> TestRunner {
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    })
}
