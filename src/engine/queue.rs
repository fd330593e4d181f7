//! The hand-off both batchers use (the group committer and the loader): a
//! bounded channel to one task that takes whatever is waiting as its next
//! batch.
//!
//! The task is spawned on the first item, on the runtime of the caller, so
//! an engine built outside a runtime, or used from a new one after the old
//! one stopped, still works; it ends when the queue is dropped with the
//! engine.
//!
//! At [`QUEUE_MAX`] waiting items a sender waits for room (back-pressure):
//! the queue fills only when the store is slower than the commands arrive,
//! and each caller bounds that wait with its store timeout, after which it
//! answers "store unavailable" knowing that its item was never sent.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most items waiting in one queue. At least twice the default HTTP
/// concurrency limit (a transfer loads two accounts; `http` asserts this),
/// so at the defaults load shedding in front of the engine, not this bound,
/// is what a flood meets; the bound caps the memory of an engine driven
/// harder than that.
pub const QUEUE_MAX: usize = 2048;

/// The item did not get into the queue before the deadline: it was never
/// handed to the task.
#[derive(Debug, PartialEq, Eq)]
pub struct Full {
    pub waited: Duration,
}

impl From<Full> for crate::store::StoreError {
    fn from(full: Full) -> Self {
        crate::store::StoreError::Unavailable(format!(
            "the batch queue stayed full for {} ms",
            full.waited.as_millis()
        ))
    }
}

pub struct TaskQueue<T> {
    sender: Mutex<Option<mpsc::Sender<T>>>,
    capacity: usize,
}

impl<T: Send + 'static> TaskQueue<T> {
    pub fn new() -> Self {
        TaskQueue::with_capacity(QUEUE_MAX)
    }

    /// A queue holding at most `capacity` (≥ 1) waiting items.
    pub fn with_capacity(capacity: usize) -> Self {
        TaskQueue {
            sender: Mutex::new(None),
            capacity: capacity.max(1),
        }
    }

    /// Hands `item` to the task, first starting it with `start` if there is
    /// none yet or the one there was is gone with its runtime; waits for
    /// room while the queue is full, until `deadline`.
    pub async fn send<F>(
        &self,
        mut item: T,
        deadline: Instant,
        start: impl FnOnce(mpsc::Receiver<T>) -> F,
    ) -> Result<(), Full>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let began = Instant::now();
        let mut start = Some(start);
        loop {
            let running = self.lock().clone().filter(|s| !s.is_closed());
            if let Some(running) = running {
                match tokio::time::timeout_at(deadline, running.send(item)).await {
                    Ok(Ok(())) => return Ok(()),
                    // The task is gone with its runtime: start another.
                    Ok(Err(mpsc::error::SendError(back))) => item = back,
                    Err(_) => {
                        return Err(Full {
                            waited: began.elapsed(),
                        });
                    }
                }
            }
            let mut slot = self.lock();
            if slot.as_ref().is_some_and(|s| !s.is_closed()) {
                // Another caller restarted the task meanwhile.
                continue;
            }
            let (fresh, receiver) = mpsc::channel(self.capacity);
            let sent = fresh.try_send(item);
            debug_assert!(sent.is_ok(), "a new channel has room");
            let start = start.take().expect("the task is started once per call");
            tokio::spawn(start(receiver));
            *slot = Some(fresh);
            return Ok(());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<T>>> {
        self.sender.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;
    use tokio::time::Instant;

    use super::{Full, TaskQueue};

    /// A full queue makes the sender wait, and a sender whose deadline
    /// passes first gets `Full` (its item was not queued); once the task
    /// takes items, senders get through again.
    #[tokio::test(start_paused = true)]
    async fn a_full_queue_holds_senders_until_their_deadline() {
        let queue = TaskQueue::<u32>::with_capacity(2);
        let (release, released) = oneshot::channel::<()>();
        let (took, mut taken) = tokio::sync::mpsc::unbounded_channel();
        let task = move |mut receiver: tokio::sync::mpsc::Receiver<u32>| async move {
            let _ = released.await;
            while let Some(item) = receiver.recv().await {
                let _ = took.send(item);
            }
        };
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(queue.send(1, soon, task).await, Ok(()));
        assert_eq!(queue.send(2, soon, |_| async {}).await, Ok(()));
        assert_eq!(
            queue.send(3, soon, |_| async {}).await,
            Err(Full {
                waited: Duration::from_millis(100)
            })
        );
        release.send(()).unwrap();
        let later = Instant::now() + Duration::from_millis(100);
        assert_eq!(queue.send(4, later, |_| async {}).await, Ok(()));
        let mut items = Vec::new();
        for _ in 0..3 {
            items.push(taken.recv().await.unwrap());
        }
        assert_eq!(items, [1, 2, 4], "3 was never queued");
    }
}
