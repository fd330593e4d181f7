//! The feed readers judged: their concatenated pages against the final
//! log's feed (nothing rewound, altered or skipped), and their own sequence
//! (each account in order, a transfer's legs adjacent).

use std::collections::{BTreeMap, BTreeSet};

use accounts::domain::{AccountId, Event, TransactionId};
use accounts::http::FeedEventBody;

use super::Log;
use crate::client::ReaderRecord;
use crate::plan::READERS;

/// A feed reader's concatenated pages against the final log: every answer
/// a 200 or a retryable failure, positions strictly increasing, each event
/// the committed one at its position, and nothing skipped — the reader's
/// sequence is exactly the final feed up to the last position it was given,
/// or all of it once it caught up. Also, on its own sequence: each
/// account's events in sequence order and both legs of a transfer adjacent.
pub(super) fn check_feed(log: &Log, reader: &ReaderRecord, violations: &mut Vec<String>) {
    let name = READERS[reader.reader];
    check_tokens(name, reader, violations);
    let Some(seen) = read_pages(name, reader, violations) else {
        return;
    };
    let before = violations.len();
    check_against_log(name, log, reader, &seen, violations);
    if violations.len() > before {
        return;
    }
    check_own_order(name, log, &seen, violations);
}

/// The reader's probes with an owner's token: the feed is the admin's, and
/// a past state is its owner's only.
fn check_tokens(name: &str, reader: &ReaderRecord, violations: &mut Vec<String>) {
    if let Some(Ok(answer)) = &reader.as_owner
        && answer.status.is_success()
    {
        violations.push(format!(
            "{name}: an owner's token read the feed ({}), where the contract answers 403",
            answer.status
        ));
    }
    if let Some((owner, Ok(answer))) = &reader.past_state_as_owner
        && answer.status.is_success()
        && answer.json()["ownerId"] != owner.to_string()
    {
        violations.push(format!(
            "{name}: owner {owner} read someone else's state at version 1: {}",
            answer.body
        ));
    }
}

/// The reader's pages, concatenated; `None` (with the violation) where an
/// answer is neither a page nor a retryable failure, or the reader asked
/// from somewhere else than its last position.
fn read_pages(
    name: &str,
    reader: &ReaderRecord,
    violations: &mut Vec<String>,
) -> Option<Vec<FeedEventBody>> {
    let mut seen: Vec<FeedEventBody> = Vec::new();
    for attempt in &reader.attempts {
        let Ok(answer) = &attempt.reply else {
            continue;
        };
        let status = answer.status.as_u16();
        if status == 408 || status >= 500 {
            continue;
        }
        if status != 200 {
            violations.push(format!(
                "{name}: the feed after {} answered {status} {}",
                attempt.after, answer.body
            ));
            return None;
        }
        let expected_after = seen.last().map_or(0, |e| e.position);
        if attempt.after != expected_after {
            violations.push(format!(
                "{name}: asked after {} where its last position was {expected_after}",
                attempt.after
            ));
            return None;
        }
        match serde_json::from_str::<Vec<FeedEventBody>>(&answer.body) {
            Ok(page) => seen.extend(page),
            Err(error) => {
                violations.push(format!(
                    "{name}: a feed page that is not a list of feed events ({error}): {}",
                    answer.body
                ));
                return None;
            }
        }
    }
    Some(seen)
}

/// A feed event as a report names it: its position, account (by index
/// where the log knows it), sequence number and type.
fn describe(log: &Log, e: &FeedEventBody) -> String {
    let account = log
        .index_of(e.account_id)
        .map_or_else(|| e.account_id.to_string(), |index| format!("a{index}"));
    format!(
        "position {} ({account} #{} {})",
        e.position,
        e.event.sequence_number,
        e.event.event.type_name()
    )
}

/// The reader's sequence against the final feed: positions strictly
/// increasing, each event the committed one, nothing committed skipped.
fn check_against_log(
    name: &str,
    log: &Log,
    reader: &ReaderRecord,
    seen: &[FeedEventBody],
    violations: &mut Vec<String>,
) {
    for pair in seen.windows(2) {
        if pair[1].position <= pair[0].position {
            violations.push(format!(
                "feed-rewind: {name}: {} came after {}: positions must strictly increase (a duplicate or a rewind)",
                describe(log, &pair[1]),
                describe(log, &pair[0])
            ));
        }
    }
    // Each event is the committed one at its position: what a reader was
    // given is never taken back, by a failover or anything else.
    let committed: BTreeMap<u64, FeedEventBody> = log
        .feed
        .iter()
        .map(|e| (e.position, FeedEventBody::from(e)))
        .collect();
    for event in seen {
        match committed.get(&event.position) {
            Some(expected) if expected == event => {}
            Some(expected) => violations.push(format!(
                "feed-rewind: {name}: was given {}, which is not the committed event at that position, {}",
                describe(log, event),
                describe(log, expected)
            )),
            None => violations.push(format!(
                "feed-rewind: {name}: was given {}, which is not in the final log (an uncommitted event, or one taken back)",
                describe(log, event)
            )),
        }
    }
    check_skipped(name, log, reader, seen, &committed, violations);
}

/// Nothing committed is skipped: up to the last position the reader was
/// given (a committed event below it can never appear later), or all of
/// the log once it caught up.
fn check_skipped(
    name: &str,
    log: &Log,
    reader: &ReaderRecord,
    seen: &[FeedEventBody],
    committed: &BTreeMap<u64, FeedEventBody>,
    violations: &mut Vec<String>,
) {
    let last = seen.last().map_or(0, |e| e.position);
    let given: BTreeSet<u64> = seen.iter().map(|e| e.position).collect();
    let missing: Vec<&FeedEventBody> = committed
        .values()
        .filter(|e| (reader.caught_up || e.position <= last) && !given.contains(&e.position))
        .collect();
    if let Some(first) = missing.first() {
        violations.push(format!(
            "{name}: skipped {} committed event(s), the first {}{}",
            missing.len(),
            describe(log, first),
            if reader.caught_up {
                " (it caught up with the final log)"
            } else {
                ""
            }
        ));
    }
}

/// On the reader's own sequence: each account in sequence order, a
/// transfer's legs adjacent.
fn check_own_order(name: &str, log: &Log, seen: &[FeedEventBody], violations: &mut Vec<String>) {
    let mut sequence: BTreeMap<AccountId, u64> = BTreeMap::new();
    for event in seen {
        let previous = sequence.insert(event.account_id, event.event.sequence_number);
        if previous.is_some_and(|p| p >= event.event.sequence_number) {
            violations.push(format!(
                "{name}: {} came after #{} of the same account",
                describe(log, event),
                previous.unwrap_or_default()
            ));
        }
    }
    let is_leg = |e: &FeedEventBody| {
        matches!(
            e.event.event,
            Event::MoneyWithdrawn {
                transfer_to: Some(_),
                ..
            } | Event::MoneyDeposited {
                transfer_from: Some(_),
                ..
            }
        )
    };
    let mut legs: BTreeMap<TransactionId, Vec<usize>> = BTreeMap::new();
    for (index, event) in seen.iter().enumerate() {
        if is_leg(event) {
            legs.entry(event.event.transaction_id)
                .or_default()
                .push(index);
        }
    }
    for indexes in legs.values() {
        if let [a, b] = indexes[..]
            && b != a + 1
        {
            violations.push(format!(
                "{name}: the legs of a transfer, {} and {}, are not adjacent",
                describe(log, &seen[a]),
                describe(log, &seen[b])
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use accounts::domain::{AccountId, Event, OwnerId, Timestamp, TransactionId};
    use accounts::http::FeedEventBody;
    use accounts::store::{FeedEvent, RecordedEvent};
    use axum::http::{HeaderMap, StatusCode};
    use testkit::Answer;
    use uuid::Uuid;

    use super::check_feed;
    use crate::check::Log;
    use crate::client::{FeedAttempt, ReaderRecord};

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// a0 and a1 opened, then a transfer of 5 from a0 to a1: positions 1–4.
    fn log() -> Log {
        let (a0, a1) = (AccountId::from_uuid(id(1)), AccountId::from_uuid(id(2)));
        let transfer = TransactionId::from_uuid(id(9));
        let event = |position, account_id, sequence_number, transaction_id, event| FeedEvent {
            position,
            event: RecordedEvent {
                account_id,
                sequence_number,
                transaction_id,
                event,
                recorded_at: Timestamp::from_unix_millis(0),
            },
        };
        let opened = |n| Event::AccountOpened {
            owner_id: OwnerId::from_uuid(id(n)),
        };
        Log {
            accounts: Vec::new(),
            feed: vec![
                event(1, a0, 1, TransactionId::from_uuid(id(7)), opened(3)),
                event(2, a1, 1, TransactionId::from_uuid(id(8)), opened(4)),
                event(
                    3,
                    a0,
                    2,
                    transfer,
                    Event::MoneyWithdrawn {
                        amount_withdrawn: 5,
                        balance: 0,
                        transfer_to: Some(a1),
                    },
                ),
                event(
                    4,
                    a1,
                    2,
                    transfer,
                    Event::MoneyDeposited {
                        amount_deposited: 5,
                        balance: 5,
                        transfer_from: Some(a0),
                    },
                ),
            ],
        }
    }

    /// A reader that was given these pages (as the final log's events, or
    /// as the bodies given), asking after its last position each time.
    fn reader(pages: &[Vec<FeedEventBody>], caught_up: bool) -> ReaderRecord {
        let mut after = 0;
        let attempts = pages
            .iter()
            .map(|page| {
                let attempt = FeedAttempt {
                    at: Duration::ZERO,
                    answered: Duration::ZERO,
                    instance: 0,
                    after,
                    reply: Ok(Answer {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                        body: serde_json::to_string(page).expect("serializes"),
                    }),
                };
                after = page.last().map_or(after, |e| e.position);
                attempt
            })
            .collect();
        ReaderRecord {
            reader: 0,
            attempts,
            caught_up,
            as_owner: None,
            past_state_as_owner: None,
        }
    }

    fn judge(pages: &[&[usize]], caught_up: bool) -> Vec<String> {
        let log = log();
        let bodies: Vec<FeedEventBody> = log.feed.iter().map(FeedEventBody::from).collect();
        let pages: Vec<Vec<FeedEventBody>> = pages
            .iter()
            .map(|page| page.iter().map(|&i| bodies[i].clone()).collect())
            .collect();
        let mut violations = Vec::new();
        check_feed(&log, &reader(&pages, caught_up), &mut violations);
        violations
    }

    #[test]
    fn a_reader_that_saw_the_whole_log_once_passes() {
        assert_eq!(judge(&[&[0, 1], &[2, 3], &[]], true), Vec::<String>::new());
        // Not caught up: a prefix of the log is all it owes.
        assert_eq!(judge(&[&[0], &[1, 2]], false), Vec::<String>::new());
    }

    #[test]
    fn skips_duplicates_and_order_are_flagged() {
        let skipped = judge(&[&[0, 1], &[3], &[]], true);
        assert!(
            skipped.iter().any(|v| v.contains("skipped 1")),
            "{skipped:?}"
        );
        // A skip below the last position given, even before catching up.
        let gap = judge(&[&[0, 2]], false);
        assert!(gap.iter().any(|v| v.contains("skipped 1")), "{gap:?}");
        let missing_tail = judge(&[&[0, 1], &[2]], true);
        assert!(
            missing_tail.iter().any(|v| v.contains("skipped 1")),
            "{missing_tail:?}"
        );
        let duplicate = judge(&[&[0, 1], &[1, 2]], false);
        assert!(
            duplicate.iter().any(|v| v.contains("strictly increase")),
            "{duplicate:?}"
        );
    }

    #[test]
    fn an_uncommitted_or_altered_event_is_flagged() {
        let log = log();
        let mut phantom = FeedEventBody::from(&log.feed[3]);
        phantom.position = 5;
        let mut altered = FeedEventBody::from(&log.feed[1]);
        altered.event.sequence_number = 7;
        let first = FeedEventBody::from(&log.feed[0]);
        for (page, expected) in [
            (vec![first.clone(), phantom], "not in the final log"),
            (vec![first, altered], "not the committed event"),
        ] {
            let mut violations = Vec::new();
            check_feed(&log, &reader(&[page], false), &mut violations);
            assert!(
                violations.iter().any(|v| v.contains(expected)),
                "{violations:?}"
            );
        }
    }

    #[test]
    fn a_refused_page_is_flagged() {
        let mut record = reader(&[Vec::new()], false);
        if let Ok(answer) = &mut record.attempts[0].reply {
            answer.status = StatusCode::FORBIDDEN;
        }
        let mut violations = Vec::new();
        check_feed(&log(), &record, &mut violations);
        assert!(
            violations.iter().any(|v| v.contains("answered 403")),
            "{violations:?}"
        );
    }
}
