//! The hand-off both batchers use (the group committer and the loader): a
//! bounded channel to one task that takes whatever is waiting as its next
//! batch.
//!
//! The task is spawned on the first item, on the runtime of the caller, so
//! an engine built outside a runtime, or used from a new one after the old
//! one stopped, still works; it ends when the queue is dropped with the
//! engine.
//!
//! At [`QUEUE_MAX`] waiting items a sender awaits a free place: the
//! back-pressure reaches the request, whose own timeout (and the HTTP
//! concurrency limit, which sheds with 503 `overloaded`) bounds the wait.

use std::sync::Mutex;

use tokio::sync::mpsc;

/// Most items waiting for the task. Far above what one task takes per
/// batch (64 commits or loads) and what the HTTP concurrency limit lets
/// in, so it is reached only if the task stalls; then memory stays bounded.
pub const QUEUE_MAX: usize = 4096;

pub struct TaskQueue<T> {
    sender: Mutex<Option<mpsc::Sender<T>>>,
}

impl<T: Send + 'static> TaskQueue<T> {
    pub fn new() -> Self {
        TaskQueue {
            sender: Mutex::new(None),
        }
    }

    /// Hands `item` to the task, first starting it with `start` if there is
    /// none yet or the one there was is gone with its runtime; waits while
    /// [`QUEUE_MAX`] items are waiting. An item whose task stops before
    /// taking it is dropped: its reply channel closes, which the caller
    /// answers as a stopped batcher.
    pub async fn send<F>(&self, item: T, start: impl FnOnce(mpsc::Receiver<T>) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let sender = {
            let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
            match sender.as_ref() {
                Some(running) if !running.is_closed() => running.clone(),
                _ => {
                    let (fresh, receiver) = mpsc::channel(QUEUE_MAX);
                    tokio::spawn(start(receiver));
                    sender.insert(fresh).clone()
                }
            }
        };
        let _ = sender.send(item).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// A full queue makes the sender wait (it neither drops the item nor
    /// grows), and a place freed by the task lets it in.
    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_at_the_bound_until_the_task_takes_an_item() {
        let queue = TaskQueue::new();
        let (take_one, taken) = oneshot::channel::<()>();
        let (received_tx, received) = oneshot::channel();
        let start = |mut receiver: mpsc::Receiver<usize>| async move {
            let _ = taken.await;
            let first = receiver.recv().await;
            let _ = received_tx.send(first);
            std::future::pending::<()>().await;
        };
        queue.send(0, start).await;
        for item in 1..QUEUE_MAX {
            queue.send(item, |_| async {}).await;
        }
        let over =
            tokio::time::timeout(Duration::from_secs(60), queue.send(QUEUE_MAX, |_| async {}))
                .await;
        assert!(
            over.is_err(),
            "item {} was let in over the bound",
            QUEUE_MAX + 1
        );
        take_one.send(()).unwrap();
        assert_eq!(received.await.unwrap(), Some(0));
        tokio::time::timeout(Duration::from_secs(60), queue.send(QUEUE_MAX, |_| async {}))
            .await
            .expect("a freed place lets the sender in");
    }
}
