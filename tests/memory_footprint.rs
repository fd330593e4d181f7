//! What an event costs the memory store: 500,000 deposits as the engine
//! writes them (the event, its idempotency record with the command's
//! fingerprint, a snapshot every 50 events) over 1,000 accounts, through the
//! store's own API, with the process's resident set read from
//! /proc/self/statm before and after. Ignored in the debug suite (a
//! measurement of the release build, alone in its process); CI runs it as
//! `just memory-footprint`:
//!
//! ```sh
//! cargo test --release --test memory_footprint -- --ignored --nocapture
//! ```

use accounts::domain::{
    Account, AccountId, Amount, Command, Event, OwnerId, Timestamp, TransactionId,
};
use accounts::engine::{Entropy, SeededEntropy};
use accounts::store::{
    Commit, EventStore, MemoryStore, RecordedEvent, Snapshot, TransactionRecord,
};

const EVENTS: u64 = 500_000;
const ACCOUNTS: u64 = 1_000;
const SNAPSHOT_EVERY: u64 = 50;
/// The target of issue 10: at most this much resident memory per event.
const BYTES_PER_EVENT_MAX: f64 = 100.0;

#[tokio::test(flavor = "current_thread")]
#[ignore = "a measurement of the release build: `just memory-footprint` (CI runs it)"]
async fn a_stored_event_costs_at_most_100_bytes_of_resident_memory() {
    let store = MemoryStore::new();
    let entropy = SeededEntropy::new(3);
    let accounts: Vec<(AccountId, OwnerId)> = (0..ACCOUNTS)
        .map(|_| {
            (
                AccountId::from_uuid(entropy.uuid()),
                OwnerId::from_uuid(entropy.uuid()),
            )
        })
        .collect();
    let before = resident_bytes();
    let mut versions = vec![0u64; accounts.len()];
    for n in 0..EVENTS {
        let index = (n % ACCOUNTS) as usize;
        let (account, owner) = accounts[index];
        let version = versions[index];
        let commit = if version == 0 {
            engine_commit(
                account,
                1,
                Command::Open { owner_id: owner },
                Event::AccountOpened { owner_id: owner },
                owner,
                &entropy,
            )
        } else {
            let deposit = Event::MoneyDeposited {
                amount_deposited: 1,
                balance: version as i64,
                transfer_from: None,
            };
            let command = Command::Deposit {
                amount: Amount::new(1).unwrap(),
            };
            engine_commit(account, version + 1, command, deposit, owner, &entropy)
        };
        store.append(&commit).await.expect("append");
        versions[index] += 1;
    }
    let after = resident_bytes();
    let per_event = (after - before) as f64 / EVENTS as f64;
    eprintln!(
        "memory store: {EVENTS} events over {ACCOUNTS} accounts, resident {:.1} MiB → {:.1} MiB: \
         {per_event:.1} bytes per event (bound {BYTES_PER_EVENT_MAX})",
        before as f64 / 1_048_576.0,
        after as f64 / 1_048_576.0
    );
    // Everything is still there and readable.
    let feed = store.feed(EVENTS - 1, 10).await.unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].position, EVENTS);
    assert!(
        per_event <= BYTES_PER_EVENT_MAX,
        "{per_event:.1} bytes per event, more than {BYTES_PER_EVENT_MAX}"
    );
}

/// A commit as the engine builds it: the event, the idempotency record with
/// the command's fingerprint, and a snapshot every `SNAPSHOT_EVERY` events.
fn engine_commit(
    account: AccountId,
    sequence: u64,
    command: Command,
    event: Event,
    owner: OwnerId,
    entropy: &SeededEntropy,
) -> Commit {
    let transaction_id = TransactionId::from_uuid(entropy.uuid());
    let recorded_at = Timestamp::from_unix_millis(1_795_000_000_000 + sequence as i64);
    let snapshots = if sequence.is_multiple_of(SNAPSHOT_EVERY) {
        vec![Snapshot {
            account_id: account,
            sequence_number: sequence,
            state: Account::Open {
                owner_id: owner,
                balance: sequence as i64 - 1,
            },
            recorded_until: Some(recorded_at),
        }]
    } else {
        Vec::new()
    };
    Commit {
        events: vec![RecordedEvent {
            account_id: account,
            sequence_number: sequence,
            transaction_id,
            event,
            recorded_at,
        }],
        transactions: vec![TransactionRecord {
            account_id: account,
            transaction_id,
            fingerprint: command.fingerprint(account),
        }],
        snapshots,
    }
}

/// The resident set size, from the second field of /proc/self/statm.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("a resident page count");
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page_size as u64
}
