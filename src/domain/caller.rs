//! Who is asking, and what they may touch (docs/API.md, "Authentication and
//! owner scoping"). The HTTP layer decides who is asking from the request's
//! bearer token; these rules decide what that caller may do, once, next to
//! the other rules, so the engine and the simulation apply the very same ones.

use super::{Account, Command, OwnerId, Refusal};

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// Authentication is off: anyone who reaches the port may do everything,
    /// as in the API without tokens.
    Anyone,
    /// A token with the admin scope: may do everything.
    Admin,
    /// A token whose subject is this owner: their own accounts only.
    Owner(OwnerId),
}

impl Caller {
    /// Whether the caller may act as `owner`: open an account for them,
    /// read and move the money of their accounts.
    pub fn acts_for(self, owner: OwnerId) -> bool {
        match self {
            Caller::Anyone | Caller::Admin => true,
            Caller::Owner(subject) => subject == owner,
        }
    }
}

/// Whether `caller` may send `command` to the account whose state is
/// `source` (rule 3 of the order of checks, next to existence):
/// - opening is only for oneself: another owner is `OpenForAnotherOwner`
///   (403), whether or not the id exists;
/// - every other command needs access to the account, see [`authorize_access`].
///
/// A transfer's target is not checked: money may be sent to anyone's open
/// account.
pub fn authorize(caller: Caller, command: &Command, source: &Account) -> Result<(), Refusal> {
    match command {
        Command::Open { owner_id } if caller.acts_for(*owner_id) => Ok(()),
        Command::Open { .. } => Err(Refusal::OpenForAnotherOwner),
        _ => authorize_access(caller, source),
    }
}

/// Whether `caller` may read `account`: its state, its events, and anything
/// an answer could say about it — its operations, amounts, balances and
/// counterparties. The one rule behind every access check and behind every
/// error message that could describe an account (a transactionId recorded
/// on a transfer's target, for one): what the caller may not read, no
/// answer mentions. An unknown account is nobody's, so no owner reads it.
pub fn may_read(caller: Caller, account: &Account) -> bool {
    match (caller, account.owner_id()) {
        (Caller::Anyone | Caller::Admin, _) => true,
        (Caller::Owner(subject), Some(owner)) => subject == owner,
        (Caller::Owner(_), None) => false,
    }
}

/// Whether `caller` may see or act on `account` (state, versions, events,
/// deposit, withdraw, close, a transfer's source): [`may_read`]. Someone
/// else's account is refused exactly as an unknown one is
/// (`AccountNotFound`), so that account ids cannot be probed.
pub fn authorize_access(caller: Caller, account: &Account) -> Result<(), Refusal> {
    match may_read(caller, account) {
        true => Ok(()),
        false => Err(Refusal::AccountNotFound),
    }
}

/// Whether `caller` may read the store-wide feed of every account's events:
/// admins only (and anyone while authentication is off).
pub fn authorize_feed(caller: Caller) -> Result<(), Refusal> {
    match caller {
        Caller::Anyone | Caller::Admin => Ok(()),
        Caller::Owner(_) => Err(Refusal::AdminOnly),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::{AccountId, Amount};

    fn owner(n: u128) -> OwnerId {
        OwnerId::from_uuid(Uuid::from_u128(n))
    }

    fn open_of(n: u128) -> Account {
        Account::Open {
            owner_id: owner(n),
            balance: 5,
        }
    }

    fn every_command_but_open() -> Vec<Command> {
        let amount = Amount::new(1).unwrap();
        vec![
            Command::Deposit { amount },
            Command::Withdraw { amount },
            Command::Transfer {
                target: AccountId::from_uuid(Uuid::from_u128(99)),
                amount,
            },
            Command::Close,
        ]
    }

    #[test]
    fn anyone_and_admins_may_do_everything() {
        for caller in [Caller::Anyone, Caller::Admin] {
            for state in [
                Account::Unopened,
                open_of(1),
                Account::Closed { owner_id: owner(1) },
            ] {
                assert_eq!(authorize_access(caller, &state), Ok(()));
                for command in every_command_but_open() {
                    assert_eq!(authorize(caller, &command, &state), Ok(()));
                }
                let open = Command::Open { owner_id: owner(2) };
                assert_eq!(authorize(caller, &open, &state), Ok(()));
            }
            assert_eq!(authorize_feed(caller), Ok(()));
        }
    }

    #[test]
    fn an_owner_reaches_their_own_accounts_open_or_closed() {
        let caller = Caller::Owner(owner(1));
        for state in [open_of(1), Account::Closed { owner_id: owner(1) }] {
            assert_eq!(authorize_access(caller, &state), Ok(()));
            for command in every_command_but_open() {
                assert_eq!(authorize(caller, &command, &state), Ok(()));
            }
        }
    }

    #[test]
    fn someone_elses_account_is_refused_as_an_unknown_one() {
        let caller = Caller::Owner(owner(1));
        let unknown = authorize_access(caller, &Account::Unopened);
        assert_eq!(unknown, Err(Refusal::AccountNotFound));
        for state in [open_of(2), Account::Closed { owner_id: owner(2) }] {
            assert_eq!(authorize_access(caller, &state), unknown);
            for command in every_command_but_open() {
                assert_eq!(authorize(caller, &command, &state), unknown, "{command:?}");
            }
        }
    }

    #[test]
    fn an_owner_opens_only_for_themselves() {
        let caller = Caller::Owner(owner(1));
        for state in [Account::Unopened, open_of(1), open_of(2)] {
            let own = Command::Open { owner_id: owner(1) };
            assert_eq!(authorize(caller, &own, &state), Ok(()));
            let other = Command::Open { owner_id: owner(2) };
            assert_eq!(
                authorize(caller, &other, &state),
                Err(Refusal::OpenForAnotherOwner)
            );
        }
    }

    #[test]
    fn an_owner_reads_only_their_own_accounts() {
        let caller = Caller::Owner(owner(1));
        assert!(may_read(caller, &open_of(1)));
        assert!(may_read(caller, &Account::Closed { owner_id: owner(1) }));
        assert!(!may_read(caller, &open_of(2)));
        assert!(!may_read(caller, &Account::Closed { owner_id: owner(2) }));
        assert!(!may_read(caller, &Account::Unopened));
        for caller in [Caller::Anyone, Caller::Admin] {
            assert!(may_read(caller, &open_of(2)));
            assert!(may_read(caller, &Account::Unopened));
        }
    }

    #[test]
    fn the_feed_is_for_admins() {
        assert_eq!(
            authorize_feed(Caller::Owner(owner(1))),
            Err(Refusal::AdminOnly)
        );
    }
}
