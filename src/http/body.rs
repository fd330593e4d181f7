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
    #[serde(flatten)]
    pub event: Event,
    pub recorded_at: Timestamp,
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
