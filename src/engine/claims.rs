//! Claims on client transactionIds: a request holds its transactionId for
//! as long as it runs, so an identical request on this instance (a client's
//! retry sent while the first is still running, or the same request sent
//! twice at once) waits for the first to finish instead of conflicting with
//! it, and is then answered from what the first left: "already applied"
//! from the cache when it landed, a load when its outcome is unknown.
//!
//! A claim changes no answer, only when a waiting request starts: the
//! claims of other instances are not seen here, and the store still decides
//! which commit carrying a transactionId lands.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use crate::domain::TransactionId;

/// The transactionIds claimed now. Waiters watch for the holder's drop.
#[derive(Default)]
pub struct Claims {
    held: Mutex<HashMap<TransactionId, watch::Receiver<()>>>,
}

/// A held claim, released when dropped (also when the request is dropped
/// with its future).
pub struct Claim<'a> {
    claims: &'a Claims,
    transaction_id: TransactionId,
    _holder: watch::Sender<()>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.claims.lock().remove(&self.transaction_id);
        // `_holder` drops after this, waking the waiters.
    }
}

impl Claims {
    fn lock(&self) -> MutexGuard<'_, HashMap<TransactionId, watch::Receiver<()>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `transaction_id`, first waiting for whoever holds it.
    pub async fn claim(&self, transaction_id: TransactionId) -> Claim<'_> {
        loop {
            let mut holder = {
                let mut held = self.lock();
                match held.get(&transaction_id) {
                    Some(holder) => holder.clone(),
                    None => {
                        let (sender, receiver) = watch::channel(());
                        held.insert(transaction_id, receiver);
                        return Claim {
                            claims: self,
                            transaction_id,
                            _holder: sender,
                        };
                    }
                }
            };
            // Nothing is ever sent: this ends when the holder's claim drops.
            while holder.changed().await.is_ok() {}
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_claimed_transaction_waits_for_the_holder_and_nothing_stays_behind() {
        let claims = Arc::new(Claims::default());
        let id = TransactionId::from_uuid(Uuid::from_u128(3));
        let held = claims.claim(id).await;
        let waiter = tokio::spawn({
            let claims = claims.clone();
            async move {
                let _claim = claims.claim(id).await;
                tokio::time::Instant::now()
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!waiter.is_finished());
        let released = tokio::time::Instant::now();
        drop(held);
        assert_eq!(waiter.await.unwrap(), released);
        assert_eq!(claims.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_leaves_the_claim_to_the_next() {
        let claims = Arc::new(Claims::default());
        let id = TransactionId::from_uuid(Uuid::from_u128(4));
        let held = claims.claim(id).await;
        let gone = tokio::spawn({
            let claims = claims.clone();
            async move {
                let _claim = claims.claim(id).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        gone.abort();
        drop(held);
        let _next = claims.claim(id).await;
        assert_eq!(claims.len(), 1);
    }
}
