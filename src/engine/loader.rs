//! Batched loads: the loads of requests that arrive together go to the store
//! in one [`EventStore::load_many`] — one statement, one round trip — and
//! each request gets its own answer.
//!
//! Natural batching, as in the [`committer`](super::committer): no timer. A
//! load joins only a batch whose query has not been sent yet, so its query
//! runs after the request arrived and before it is answered — a read still
//! shows the account as the store held it at some point inside the request,
//! which is all that several instances over one database allow (a read can
//! never be answered from this instance's memory). Up to
//! [`LOADS_IN_FLIGHT`] batches are in the store at once; a load that finds
//! every one of them busy waits for the next, with whatever else arrives
//! meanwhile, so batches grow only when the store is the bottleneck and a
//! lone load waits for nothing.
//!
//! Only stores that say batching pays ([`EventStore::loads_in_batches`])
//! are loaded through the batcher; the others are asked directly.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::queue::TaskQueue;
use crate::domain::{AccountId, TransactionId};
use crate::store::{EventStore, Loaded, StoreError};

/// Most loads of one batch: one statement over 64 accounts is still a few
/// hundred microseconds of database time, and the batch answers its
/// callers only when the whole statement has.
pub const LOADS_MAX: usize = 64;

/// Batches in the store at once. More keeps a lone load from waiting behind
/// a batch; fewer makes batches larger under load, each costing one
/// statement and one round trip (and sqlx's ping when the connection goes
/// back to the pool) instead of one per load. Measured on PostgreSQL, 32
/// clients reading 64 accounts on two cores (`just bench --quick`): 4 in
/// flight gave 7.8k GETs/s at 67 µs of service CPU each, 8 gave 5.1k/s at
/// 116 µs, 2 gave 11.9k/s at 55 µs, 1 gave 11.4k/s at 52 µs.
pub const LOADS_IN_FLIGHT: usize = 2;

type Answer = Result<Loaded, StoreError>;

struct Pending {
    request: (AccountId, Option<TransactionId>),
    reply: oneshot::Sender<Answer>,
}

pub struct Loader {
    store: Arc<dyn EventStore>,
    timeout: Duration,
    queue: TaskQueue<Pending>,
}

impl Loader {
    pub fn new(store: Arc<dyn EventStore>, timeout: Duration) -> Loader {
        Loader {
            store,
            timeout,
            queue: TaskQueue::new(),
        }
    }

    /// What [`EventStore::load_many`] answers for `requests`, each load in
    /// a batch with whatever else is waiting (if the store batches loads).
    pub async fn load_many(
        &self,
        requests: &[(AccountId, Option<TransactionId>)],
    ) -> Result<Vec<Loaded>, StoreError> {
        if !self.store.loads_in_batches() {
            return self.store.load_many(requests).await;
        }
        let deadline = Instant::now() + self.timeout;
        let mut answers: Vec<oneshot::Receiver<Answer>> = Vec::with_capacity(requests.len());
        for &request in requests {
            let (reply, answer) = oneshot::channel();
            self.enqueue(Pending { request, reply }, deadline).await?;
            answers.push(answer);
        }
        let mut loaded = Vec::with_capacity(answers.len());
        for answer in answers {
            loaded.push(
                answer.await.map_err(|_| {
                    StoreError::Unavailable("the load batcher stopped".to_owned())
                })??,
            );
        }
        Ok(loaded)
    }

    async fn enqueue(&self, pending: Pending, deadline: Instant) -> Result<(), StoreError> {
        let start = |receiver| load_batches(self.store.clone(), receiver, self.timeout);
        Ok(self.queue.send(pending, deadline, start).await?)
    }
}

/// The batcher's task: waits for a free slot, takes everything waiting (up
/// to [`LOADS_MAX`]) and sends it as one batch, and again. It ends when the
/// engine, and with it the sender, is dropped.
async fn load_batches(
    store: Arc<dyn EventStore>,
    mut queue: mpsc::Receiver<Pending>,
    timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(LOADS_IN_FLIGHT));
    let mut waiting = Vec::with_capacity(LOADS_MAX);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if queue.recv_many(&mut waiting, LOADS_MAX).await == 0 {
            return;
        }
        // A caller that stopped waiting needs no answer.
        let batch: Vec<Pending> = waiting
            .drain(..)
            .filter(|pending| !pending.reply.is_closed())
            .collect();
        if batch.is_empty() {
            continue;
        }
        let store = store.clone();
        tokio::spawn(async move {
            let requests: Vec<_> = batch.iter().map(|pending| pending.request).collect();
            let answers: Vec<Answer> =
                match tokio::time::timeout(timeout, store.load_many(&requests)).await {
                    Ok(Ok(loaded)) if loaded.len() == requests.len() => {
                        loaded.into_iter().map(Ok).collect()
                    }
                    Ok(Ok(loaded)) => vec![
                        Err(StoreError::Corrupt(format!(
                            "a load of {} accounts was answered with {}",
                            requests.len(),
                            loaded.len()
                        )));
                        requests.len()
                    ],
                    Ok(Err(error)) => vec![Err(error); requests.len()],
                    Err(_) => vec![
                        Err(StoreError::Unavailable(format!(
                            "no answer within {} ms",
                            timeout.as_millis()
                        )));
                        requests.len()
                    ],
                };
            drop(slot);
            for (pending, answer) in batch.into_iter().zip(answers) {
                let _ = pending.reply.send(answer);
            }
        });
    }
}
