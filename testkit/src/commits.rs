//! Commits built by hand, shaped as the engine writes them, for the suites
//! that drive a store without the engine (the store contract, the feed's
//! guarantee, group commit under connection kills, the store benchmark),
//! and the whole feed read back.

use accounts::domain::{AccountId, Event, Fingerprint, OwnerId, Timestamp, TransactionId};
use accounts::store::{Commit, EventStore, FeedEvent, RecordedEvent, TransactionRecord};

/// When every hand-built event is recorded; not a whole second, so a store
/// that dropped the milliseconds would be caught.
pub const RECORDED_AT: Timestamp = Timestamp::from_unix_millis(1_795_000_000_123);

/// The fingerprint of the hand-built commits that do not name their own.
pub const FINGERPRINT: &str = "test";

pub fn recorded(
    account_id: AccountId,
    sequence_number: u64,
    transaction_id: TransactionId,
    event: Event,
) -> RecordedEvent {
    RecordedEvent {
        account_id,
        sequence_number,
        transaction_id,
        event,
        recorded_at: RECORDED_AT,
    }
}

pub fn record(
    account_id: AccountId,
    transaction_id: TransactionId,
    fingerprint: &str,
) -> TransactionRecord {
    TransactionRecord {
        account_id,
        transaction_id,
        fingerprint: Fingerprint(fingerprint.to_owned()),
    }
}

pub fn opened(owner: OwnerId) -> Event {
    Event::AccountOpened { owner_id: owner }
}

pub fn deposited(amount: i64, balance: i64) -> Event {
    Event::MoneyDeposited {
        amount_deposited: amount,
        balance,
        transfer_from: None,
    }
}

/// One event on one account, with its transaction record.
pub fn single(account_id: AccountId, sequence: u64, tx: TransactionId, event: Event) -> Commit {
    commit_of(vec![(account_id, sequence, event)], tx)
}

/// These events (account, sequence number, event) under one transactionId,
/// in account order as the engine writes them, the transaction recorded
/// once on each account.
pub fn commit_of(events: Vec<(AccountId, u64, Event)>, tx: TransactionId) -> Commit {
    let mut commit = Commit::default();
    for (account_id, sequence_number, event) in events {
        commit
            .events
            .push(recorded(account_id, sequence_number, tx, event));
    }
    commit.events.sort_by_key(|event| event.account_id);
    for event in &commit.events {
        if commit.transactions.last().map(|t| t.account_id) != Some(event.account_id) {
            let record = record(event.account_id, tx, FINGERPRINT);
            commit.transactions.push(record);
        }
    }
    commit
}

/// A transfer of `amount` as one commit; each side is (account, sequence
/// number of its leg, balance after it).
pub fn transfer(
    from: (AccountId, u64, i64),
    to: (AccountId, u64, i64),
    amount: i64,
    tx: TransactionId,
) -> Commit {
    let (source, source_sequence, source_balance) = from;
    let (target, target_sequence, target_balance) = to;
    let withdrawn = Event::MoneyWithdrawn {
        amount_withdrawn: amount,
        balance: source_balance,
        transfer_to: Some(target),
    };
    let received = Event::MoneyDeposited {
        amount_deposited: amount,
        balance: target_balance,
        transfer_from: Some(source),
    };
    let mut commit = commit_of(
        vec![
            (source, source_sequence, withdrawn),
            (target, target_sequence, received),
        ],
        tx,
    );
    let fingerprint = format!("transfer from={source} to={target} amount={amount}");
    for record in &mut commit.transactions {
        record.fingerprint = Fingerprint(fingerprint.clone());
    }
    commit
}

/// The whole feed, read in pages that resume after the last position.
pub async fn whole_feed(store: &dyn EventStore) -> Vec<FeedEvent> {
    let mut feed: Vec<FeedEvent> = Vec::new();
    loop {
        let after = feed.last().map_or(0, |event| event.position);
        let page = store.feed(after, 97).await.expect("feed");
        if page.is_empty() {
            return feed;
        }
        feed.extend(page);
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_commit_is_in_account_order_with_one_record_per_account() {
        let (low, high) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let (low, high) = (AccountId::from_uuid(low), AccountId::from_uuid(high));
        let tx = TransactionId::from_uuid(Uuid::from_u128(3));
        let commit = transfer((high, 4, 0), (low, 7, 5), 5, tx);
        let events: Vec<(AccountId, u64)> = commit
            .events
            .iter()
            .map(|e| (e.account_id, e.sequence_number))
            .collect();
        assert_eq!(events, [(low, 7), (high, 4)]);
        let records: Vec<AccountId> = commit.transactions.iter().map(|t| t.account_id).collect();
        assert_eq!(records, [low, high]);
        let fingerprint = format!("transfer from={high} to={low} amount=5");
        assert!(
            commit
                .transactions
                .iter()
                .all(|t| t.fingerprint.0 == fingerprint)
        );
        let two = commit_of(
            vec![(low, 1, deposited(1, 1)), (low, 2, deposited(1, 2))],
            tx,
        );
        assert_eq!(two.transactions.len(), 1);
    }
}
