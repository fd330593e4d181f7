//! What a live run observed, in the shape the simulation's checker judges:
//! the log as read back through the API after the run (every account's
//! event stream), what a load from the database returns (its snapshot and
//! tail), and every exchange the clients had. Then the same checker, and
//! the checks only a live run can make.

use accounts::domain::AccountId;
use accounts::http::EventBody;
use accounts::store::{Loaded, RecordedEvent};

use std::time::Duration;

use crate::check::{self, AccountLog, History, Log};
use crate::live::client::LiveRecord;
use crate::plan::Plan;

/// How far off a live landing time may be. Events carry the time they were
/// decided, not the time they landed, and a binary stopped (SIGSTOP) between
/// the two, or a commit the database finishes after its connection was
/// killed, lands seconds later; so live windows are widened past any plan's
/// length. Answers are then judged against every state an account had during
/// the run (a refusal or a read no state explains is still caught); what was
/// written is judged exactly, as in the simulation.
const LIVE_SKEW: Duration = Duration::from_secs(60);

/// One account after the run.
#[derive(Clone, Debug)]
pub struct ObservedAccount {
    pub id: AccountId,
    /// The whole stream as `GET /api/account/{id}/events` answered it.
    pub events: Vec<EventBody>,
    /// The account's events as the database holds them (a direct read).
    pub stored: Option<Vec<RecordedEvent>>,
    /// What a load from the database returns; without it, the whole
    /// stream without a snapshot.
    pub loaded: Option<Loaded>,
}

#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub accounts: Vec<ObservedAccount>,
    pub records: Vec<LiveRecord>,
    /// Lines of the instances' logs that report a panic.
    pub panics: Vec<String>,
    /// The wall clock (unix ms) when the run's clock read zero: turns the
    /// events' `recordedAt` into times on the clients' clock.
    pub started_unix_ms: i64,
    /// What kept the run from observing everything (a read-back that
    /// failed): the run fails, as a run that cannot be judged.
    pub incomplete: Vec<String>,
}

fn recorded(id: AccountId, body: &EventBody) -> RecordedEvent {
    RecordedEvent {
        account_id: id,
        sequence_number: body.sequence_number,
        transaction_id: body.transaction_id,
        event: body.event.clone(),
        recorded_at: body.recorded_at,
    }
}

impl Observed {
    /// The checker's log: the API's streams, and the database's loads.
    pub fn log(&self) -> Log {
        let accounts = self
            .accounts
            .iter()
            .map(|account| {
                let events: Vec<RecordedEvent> = account
                    .events
                    .iter()
                    .map(|body| recorded(account.id, body))
                    .collect();
                let loaded = account.loaded.clone().unwrap_or_else(|| Loaded {
                    snapshot: None,
                    events: events.clone(),
                    transaction: None,
                });
                // An event is stamped when it is decided, before it lands;
                // `LIVE_SKEW` covers the rest.
                let landed = events
                    .iter()
                    .map(|e| {
                        let ms = e.recorded_at.unix_millis() - self.started_unix_ms;
                        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                    })
                    .collect();
                AccountLog {
                    id: account.id,
                    events,
                    landed,
                    loaded,
                }
            })
            .collect();
        Log {
            accounts,
            feed: Vec::new(),
        }
    }
}

/// Everything wrong with the run: the simulation's checker on what the
/// clients saw and the log they read back, plus the live run's own checks.
pub fn judge(plan: &Plan, observed: &Observed) -> Vec<String> {
    let mut violations: Vec<String> = observed
        .incomplete
        .iter()
        .map(|problem| format!("the run could not be observed: {problem}"))
        .collect();
    if !violations.is_empty() {
        return violations;
    }
    let log = observed.log();
    let records: Vec<_> = observed
        .records
        .iter()
        .map(LiveRecord::to_op_record)
        .collect();
    let owners = plan.owner_ids();
    violations.extend(check::check(&History {
        log: &log,
        owners: &owners,
        records: &records,
        readers: &[],
        skew: LIVE_SKEW,
        clock_zero_ms: observed.started_unix_ms,
    }));
    for (index, account) in observed.accounts.iter().enumerate() {
        if let Some(stored) = &account.stored {
            let through_api: Vec<EventBody> = stored.iter().map(EventBody::from).collect();
            if through_api != account.events {
                violations.push(format!(
                    "a{index}: the API reads back {} events, the database holds {} (or they differ)",
                    account.events.len(),
                    stored.len()
                ));
            }
        }
    }
    violations.extend(
        observed
            .panics
            .iter()
            .map(|line| format!("an instance panicked: {line}")),
    );
    violations
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use accounts::domain::{Event, Timestamp};
    use axum::http::{HeaderMap, StatusCode};
    use testkit::{Answer, NoAnswer, Reply};

    use super::*;
    use crate::client::Phase;
    use crate::live::client::LiveAttempt;
    use crate::plan::{Action, Op, Style, Who};

    /// One client: open a0, deposit 10, withdraw 4, transfer 3 to a1 (after
    /// opening it), read a0.
    fn plan() -> Plan {
        let mut plan = Plan::from_seed(11);
        plan.instances = 2;
        plan.accounts = 2;
        plan.faults.clear();
        plan.store_windows.clear();
        plan.db_faults.clear();
        plan.fail_rate = 0.0;
        let op = |action| Op {
            think_ms: 0,
            action,
            style: Style::Path,
            instance: 0,
            resend: false,
            reuse: None,
            caller: Who::Anyone,
            overlap: false,
        };
        plan.clients = vec![vec![
            op(Action::Open {
                account: 0,
                owner: 0,
            }),
            op(Action::Deposit {
                account: 0,
                amount: 10,
            }),
            op(Action::Withdraw {
                account: 0,
                amount: 4,
            }),
            op(Action::Open {
                account: 1,
                owner: 1,
            }),
            op(Action::Transfer {
                from: 0,
                to: 1,
                amount: 3,
            }),
            op(Action::GetState { account: 0 }),
        ]];
        plan
    }

    fn answer(status: u16, body: &str) -> Reply {
        Ok(Answer::new(
            StatusCode::from_u16(status).expect("a status"),
            HeaderMap::new(),
            body.as_bytes(),
        ))
    }

    /// A state read's answer, with the version it folds as its ETag.
    fn state_answer(body: &str, version: u64) -> Reply {
        let mut headers = HeaderMap::new();
        let etag = format!("\"{version}\"");
        headers.insert("etag", etag.parse().expect("a header value"));
        Ok(Answer::new(StatusCode::OK, headers, body.as_bytes()))
    }

    fn record(plan: &Plan, index: usize, replies: Vec<Reply>) -> LiveRecord {
        let action = plan.clients[0][index].action.clone();
        LiveRecord {
            client: 0,
            index,
            transaction: action
                .has_transaction()
                .then(|| plan.transaction_id(0, index)),
            action,
            attempts: replies
                .into_iter()
                .enumerate()
                .map(|(n, reply)| LiveAttempt {
                    sent: Duration::from_millis(100 * index as u64 + n as u64),
                    answered: Duration::from_millis(100 * index as u64 + n as u64 + 5),
                    phase: Phase::First,
                    instance: n % 2,
                    reply,
                })
                .collect(),
        }
    }

    fn body(plan: &Plan, account: usize, sequence: u64, op: usize, event: Event) -> EventBody {
        EventBody {
            sequence_number: sequence,
            // An open's transactionId is the service's own; any unused one.
            transaction_id: plan.transaction_id(9, op),
            event,
            recorded_at: Timestamp::from_unix_millis(
                1_000 + 10 * (account as i64 + sequence as i64),
            ),
        }
    }

    /// An event client 0's operation `op` recorded, under its transactionId.
    fn by_client(plan: &Plan, account: usize, sequence: u64, op: usize, event: Event) -> EventBody {
        EventBody {
            transaction_id: plan.transaction_id(0, op),
            ..body(plan, account, sequence, op, event)
        }
    }

    /// a0's stream: opened, 10 deposited, 4 withdrawn, 3 sent to a1.
    fn a0_events(plan: &Plan) -> Vec<EventBody> {
        vec![
            body(
                plan,
                0,
                1,
                0,
                Event::AccountOpened {
                    owner_id: plan.owner_id(0),
                },
            ),
            by_client(
                plan,
                0,
                2,
                1,
                Event::MoneyDeposited {
                    amount_deposited: 10,
                    balance: 10,
                    transfer_from: None,
                },
            ),
            by_client(
                plan,
                0,
                3,
                2,
                Event::MoneyWithdrawn {
                    amount_withdrawn: 4,
                    balance: 6,
                    transfer_to: None,
                },
            ),
            by_client(
                plan,
                0,
                4,
                4,
                Event::MoneyWithdrawn {
                    amount_withdrawn: 3,
                    balance: 3,
                    transfer_to: Some(plan.account_id(1)),
                },
            ),
        ]
    }

    /// a1's stream: opened, then the 3 from a0.
    fn a1_events(plan: &Plan) -> Vec<EventBody> {
        vec![
            body(
                plan,
                1,
                1,
                3,
                Event::AccountOpened {
                    owner_id: plan.owner_id(1),
                },
            ),
            by_client(
                plan,
                1,
                2,
                4,
                Event::MoneyDeposited {
                    amount_deposited: 3,
                    balance: 3,
                    transfer_from: Some(plan.account_id(0)),
                },
            ),
        ]
    }

    /// The history a correct service gives the plan, as the API would read
    /// it back.
    fn observed(plan: &Plan) -> Observed {
        let (a0, a1) = (plan.account_id(0), plan.account_id(1));
        let (a0_events, a1_events) = (a0_events(plan), a1_events(plan));
        let state = format!(
            r#"{{"accountId":"{a0}","ownerId":"{}","balance":3,"open":true}}"#,
            plan.owner_id(0)
        );
        Observed {
            accounts: vec![
                ObservedAccount {
                    id: a0,
                    events: a0_events,
                    stored: None,
                    loaded: None,
                },
                ObservedAccount {
                    id: a1,
                    events: a1_events,
                    stored: None,
                    loaded: None,
                },
            ],
            started_unix_ms: 0,
            records: vec![
                record(plan, 0, vec![answer(201, "")]),
                // A lost answer, then the retry's success: one event.
                record(plan, 1, vec![Err(NoAnswer::Timeout), answer(204, "")]),
                record(plan, 2, vec![answer(204, "")]),
                record(plan, 3, vec![answer(201, "")]),
                record(plan, 4, vec![answer(204, "")]),
                record(plan, 5, vec![state_answer(&state, 4)]),
            ],
            panics: Vec::new(),
            incomplete: Vec::new(),
        }
    }

    #[test]
    fn a_correct_history_passes() {
        let plan = plan();
        assert_eq!(judge(&plan, &observed(&plan)), Vec::<String>::new());
    }

    #[test]
    fn a_success_without_its_event_is_flagged() {
        let plan = plan();
        let mut observed = observed(&plan);
        // The deposit of op #1 never landed, yet the client was told 204
        // (what the `ack-without-forwarding` bug does); later balances are
        // shifted to stay self-consistent, so only the answers betray it.
        let events = &mut observed.accounts[0].events;
        events.remove(1);
        for (n, event) in events.iter_mut().enumerate() {
            event.sequence_number = n as u64 + 1;
        }
        observed.accounts[0].events[1].event = Event::MoneyWithdrawn {
            amount_withdrawn: 4,
            balance: -4,
            transfer_to: None,
        };
        let violations = judge(&plan, &observed);
        assert!(
            violations.iter().any(|v| v.contains("client-0 #1")
                && v.starts_with("lost-acknowledged: ")
                && v.contains("nothing is recorded")),
            "{violations:#?}"
        );
    }

    #[test]
    fn a_refusal_whose_write_landed_is_flagged() {
        let plan = plan();
        let mut observed = observed(&plan);
        // The retry of op #1 is reported refused although the deposit landed
        // (what the `unknown-as-refusal` bug does).
        observed.records[1].attempts[1].reply = answer(
            400,
            r#"{"code":"insufficient_balance","message":"the balance does not cover the amount"}"#,
        );
        let violations = judge(&plan, &observed);
        assert!(
            violations
                .iter()
                .any(|v| v.contains("client-0 #1") && v.contains("refused, yet 1 events")),
            "{violations:#?}"
        );
    }

    #[test]
    fn a_read_back_that_differs_from_the_database_a_panic_or_a_failed_read_are_flagged() {
        let plan = plan();
        let mut observed = observed(&plan);
        let mut stored: Vec<RecordedEvent> = observed.accounts[1]
            .events
            .iter()
            .map(|e| recorded(observed.accounts[1].id, e))
            .collect();
        observed.accounts[1].stored = Some(stored.clone());
        assert_eq!(judge(&plan, &observed), Vec::<String>::new());
        stored.pop();
        observed.accounts[1].stored = Some(stored);
        observed.panics = vec!["thread 'tokio-runtime-worker' panicked at src/x.rs".to_owned()];
        let violations = judge(&plan, &observed);
        assert!(
            violations
                .iter()
                .any(|v| v.starts_with("a1: the API reads back 2 events, the database holds 1")),
            "{violations:#?}"
        );
        assert!(
            violations
                .iter()
                .any(|v| v.starts_with("an instance panicked")),
            "{violations:#?}"
        );
        observed.incomplete = vec!["GET events of a0: no answer".to_owned()];
        assert_eq!(
            judge(&plan, &observed),
            vec!["the run could not be observed: GET events of a0: no answer".to_owned()]
        );
    }
}
