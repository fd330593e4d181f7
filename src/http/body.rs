//! JSON bodies. Key order comes from the field order of these structs, as
//! ../shared/API.md prescribes it.

use serde::{Deserialize, Serialize};

use crate::domain::{Account, AccountId, Event, OwnerId, Timestamp, TransactionId};
use crate::store::RecordedEvent;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountBody {
    pub account_id: AccountId,
    pub owner_id: OwnerId,
    pub balance: i64,
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

/// One event of the stream. Also the format of the golden fixtures, so it
/// must keep decoding what it once wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventBody {
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
