//! JSON bodies. Key order comes from the field order of these structs, as
//! docs/API.md prescribes it; the OpenAPI schemas are derived from them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Account, AccountId, Event, OwnerId, Timestamp, TransactionId};
use crate::store::{FeedEvent, RecordedEvent};

/// An account's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Account)]
pub struct AccountBody {
    pub account_id: AccountId,
    pub owner_id: OwnerId,
    /// Minor units (cents); never negative.
    #[schema(minimum = 0)]
    pub balance: i64,
    /// false once closed.
    pub open: bool,
}

impl AccountBody {
    /// `None` for an account that was never opened.
    pub fn new(account_id: AccountId, account: &Account) -> Option<AccountBody> {
        Some(AccountBody {
            account_id,
            owner_id: account.owner_id()?,
            balance: account.balance(),
            open: matches!(account, Account::Open { .. }),
        })
    }
}

/// One event of an account's stream, oldest first. Also the format of the golden fixtures, so it
/// must keep decoding what it once wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Event)]
pub struct EventBody {
    #[schema(minimum = 1)]
    pub sequence_number: u64,
    pub transaction_id: TransactionId,
    #[serde(
        flatten,
        serialize_with = "EventDetails::write",
        deserialize_with = "EventDetails::read"
    )]
    #[schema(value_type = EventDetails)]
    pub event: Event,
    pub recorded_at: Timestamp,
}

/// What happened to an account. The balance after the event is part of it so
/// that a reader of the stream never has to add anything up.
// (Not a doc comment, which would land in the OpenAPI document.) The event
// inside an `EventBody` as the API writes it: the HTTP layer's, with its
// schema, so that the domain knows nothing of the API document. Both
// conversions match every variant, so a new event does not compile until it
// has its form here.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(tag = "type")]
enum EventDetails {
    #[serde(rename_all = "camelCase")]
    AccountOpened {
        owner_id: OwnerId,
    },
    #[serde(rename_all = "camelCase")]
    MoneyDeposited {
        #[schema(minimum = 1)]
        amount_deposited: i64,
        #[schema(minimum = 0)]
        balance: i64,
        /// Present when the deposit is the receiving half of a transfer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_from: Option<AccountId>,
    },
    #[serde(rename_all = "camelCase")]
    MoneyWithdrawn {
        #[schema(minimum = 1)]
        amount_withdrawn: i64,
        #[schema(minimum = 0)]
        balance: i64,
        /// Present when the withdrawal is the sending half of a transfer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_to: Option<AccountId>,
    },
    AccountClosed,
}

impl EventDetails {
    /// Writes [`EventBody::event`] in the API's form.
    fn write<S: serde::Serializer>(event: &Event, serializer: S) -> Result<S::Ok, S::Error> {
        let details = match *event {
            Event::AccountOpened { owner_id } => EventDetails::AccountOpened { owner_id },
            Event::MoneyDeposited {
                amount_deposited,
                balance,
                transfer_from,
            } => EventDetails::MoneyDeposited {
                amount_deposited,
                balance,
                transfer_from,
            },
            Event::MoneyWithdrawn {
                amount_withdrawn,
                balance,
                transfer_to,
            } => EventDetails::MoneyWithdrawn {
                amount_withdrawn,
                balance,
                transfer_to,
            },
            Event::AccountClosed => EventDetails::AccountClosed,
        };
        details.serialize(serializer)
    }

    fn read<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Event, D::Error> {
        Ok(match EventDetails::deserialize(deserializer)? {
            EventDetails::AccountOpened { owner_id } => Event::AccountOpened { owner_id },
            EventDetails::MoneyDeposited {
                amount_deposited,
                balance,
                transfer_from,
            } => Event::MoneyDeposited {
                amount_deposited,
                balance,
                transfer_from,
            },
            EventDetails::MoneyWithdrawn {
                amount_withdrawn,
                balance,
                transfer_to,
            } => Event::MoneyWithdrawn {
                amount_withdrawn,
                balance,
                transfer_to,
            },
            EventDetails::AccountClosed => Event::AccountClosed,
        })
    }
}

impl From<&RecordedEvent> for EventBody {
    fn from(recorded: &RecordedEvent) -> Self {
        EventBody {
            sequence_number: recorded.sequence_number,
            transaction_id: recorded.transaction_id,
            event: recorded.event.clone(),
            recorded_at: recorded.recorded_at,
        }
    }
}

/// One event of the store-wide feed: its position and account in front of
/// the stream's event object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = FeedEvent)]
pub struct FeedEventBody {
    /// ≥ 1, strictly increasing over the whole store; gaps are allowed.
    #[schema(minimum = 1)]
    pub position: u64,
    pub account_id: AccountId,
    #[serde(flatten)]
    pub event: EventBody,
}

impl From<&FeedEvent> for FeedEventBody {
    fn from(feed: &FeedEvent) -> Self {
        FeedEventBody {
            position: feed.position,
            account_id: feed.event.account_id,
            event: EventBody::from(&feed.event),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    /// The API's event form is the one it had when it was the domain's serde
    /// form (which the stores still write): same keys, same values, and it
    /// reads back.
    #[test]
    fn an_event_body_carries_the_event_as_the_domain_writes_it() {
        let id = |n| AccountId::from_uuid(Uuid::from_u128(n));
        for event in [
            Event::AccountOpened {
                owner_id: OwnerId::from_uuid(Uuid::from_u128(9)),
            },
            Event::MoneyDeposited {
                amount_deposited: 7,
                balance: 7,
                transfer_from: Some(id(2)),
            },
            Event::MoneyWithdrawn {
                amount_withdrawn: 3,
                balance: 4,
                transfer_to: None,
            },
            Event::AccountClosed,
        ] {
            let body = EventBody {
                sequence_number: 1,
                transaction_id: TransactionId::from_uuid(Uuid::from_u128(5)),
                event: event.clone(),
                recorded_at: Timestamp::from_unix_millis(0),
            };
            let json = serde_json::to_value(&body).unwrap();
            let mut expected = serde_json::to_value(&event).unwrap();
            for key in ["sequenceNumber", "transactionId", "recordedAt"] {
                expected[key] = json[key].clone();
            }
            assert_eq!(json, expected);
            assert_eq!(serde_json::from_value::<EventBody>(json).unwrap(), body);
        }
    }
}
