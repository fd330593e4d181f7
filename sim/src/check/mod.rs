//! The checker: judges a recorded history — the requests with their sent
//! and answered times and answers, and the committed log with the time each
//! event landed — and nothing else, so any runner that records one (the
//! turmoil worlds, or real processes) can reuse it through [`check`].
//!
//! Beyond what was written (gap-free streams, legal transitions,
//! conservation, provenance, exactly-once), every answer is judged against a
//! reference model, per account (linearizability): the model's state at a
//! moment is the fold of the events that had landed by then, and each answer
//! must be the one the contract's order of checks gives for some state the
//! account had inside the request's window (sent → answered). A transfer's
//! two accounts may be seen at different moments of the window, as the
//! engine loads them one after the other.
//!
//! By concept: `stream` judges what was written on its own, `model` holds
//! the reference model, `answers` judges the requests against it, `feed`
//! the feed readers, and `coverage` names the branches the history reached.

mod answers;
mod coverage;
mod feed;
mod model;
mod stream;

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use accounts::domain::{AccountId, OwnerId};
use accounts::store::{EventStore, FeedEvent, Loaded, MemoryStore, RecordedEvent};

pub use self::coverage::{BRANCHES, branches};
use self::model::Model;
use crate::client::{OpRecord, ReaderRecord};
use crate::landing::Landings;

/// One account as the store holds it after the run.
pub struct AccountLog {
    pub id: AccountId,
    /// Every event, from sequence number 1.
    pub events: Vec<RecordedEvent>,
    /// When each event landed (same index as `events`), on the clock of the
    /// requests' windows, to within `History::skew` either way (a runner
    /// that knows landing times only roughly widens the skew).
    pub landed: Vec<Duration>,
    /// What a load returns: the latest snapshot and the events after it.
    pub loaded: Loaded,
}

pub struct Log {
    pub accounts: Vec<AccountLog>,
    /// The store-wide feed of the final log, in position order (empty where
    /// the runner has no feed readers).
    pub feed: Vec<FeedEvent>,
}

/// A recorded run: everything the checker looks at.
pub struct History<'a> {
    pub log: &'a Log,
    /// Owner ids by index, as `Action::Open` and `Who::Owner` name them.
    pub owners: &'a [OwnerId],
    /// Every operation, with every attempt's window and reply.
    pub records: &'a [OpRecord],
    /// Every feed reader's requests and replies.
    pub readers: &'a [ReaderRecord],
    /// How far apart two hosts' clocks may read at one moment (turmoil
    /// advances each host through a tick on its own), and so how far off a
    /// landing time may be: every window is widened by it on both sides.
    pub skew: Duration,
    /// When the run's clock read zero (unix ms): `?at=` offsets
    /// (`Past::At`) are relative to it.
    pub clock_zero_ms: i64,
}

/// The memory store answers without ever waiting, so its futures complete on
/// their first poll; no runtime needed.
pub(crate) fn at_once<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the memory store never waits"),
    }
}

impl Log {
    /// The final log of `accounts` (by index), stamped with `landings`.
    pub fn read(store: &MemoryStore, accounts: &[AccountId], landings: &Landings) -> Log {
        let accounts = accounts
            .iter()
            .map(|&id| {
                let events = at_once(store.events(id, 1, usize::MAX))
                    .expect("the memory store does not fail");
                let landed = events
                    .iter()
                    .map(|e| landings.get(id, e.sequence_number).unwrap_or_default())
                    .collect();
                AccountLog {
                    id,
                    events,
                    landed,
                    loaded: at_once(store.load(id, None)).expect("the memory store does not fail"),
                }
            })
            .collect();
        let feed = at_once(store.feed(0, usize::MAX)).expect("the memory store does not fail");
        Log { accounts, feed }
    }

    pub fn event_count(&self) -> usize {
        self.accounts.iter().map(|a| a.events.len()).sum()
    }

    /// One line per event, for the digest.
    pub fn lines(&self) -> Vec<String> {
        self.accounts
            .iter()
            .flat_map(|account| account.events.iter().map(|e| format!("{e:?}")))
            .collect()
    }

    fn index_of(&self, id: AccountId) -> Option<usize> {
        self.accounts.iter().position(|a| a.id == id)
    }
}

pub fn check(history: &History) -> Vec<String> {
    let log = history.log;
    let records = history.records;
    let mut violations = Vec::new();
    for (index, account) in log.accounts.iter().enumerate() {
        stream::check_stream(index, account, &mut violations);
    }
    stream::check_transfers(log, &mut violations);
    let model = Model::new(history);
    answers::check_provenance(&model, &mut violations);
    // Before the sums: a lost operation is named where it happened.
    for record in records {
        answers::check_answers(&model, record, &mut violations);
    }
    stream::check_conservation(log, records, &mut violations);
    for reader in history.readers {
        feed::check_feed(log, reader, &mut violations);
    }
    // What has a name says what went wrong; much of the rest follows from it.
    let (mut named, rest): (Vec<String>, Vec<String>) = violations
        .into_iter()
        .partition(|v| NAMED.iter().any(|name| v.starts_with(name)));
    named.extend(rest);
    named
}

/// The violations reported by name, first in a report.
pub const NAMED: [&str; 2] = ["lost-acknowledged", "feed-rewind"];
