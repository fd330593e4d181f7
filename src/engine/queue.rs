//! The hand-off both batchers use (the group committer and the loader): a
//! channel to one task that takes whatever is waiting as its next batch.
//!
//! The task is spawned on the first item, on the runtime of the caller, so
//! an engine built outside a runtime, or used from a new one after the old
//! one stopped, still works; it ends when the queue is dropped with the
//! engine.

use std::sync::Mutex;

use tokio::sync::mpsc;

pub struct TaskQueue<T> {
    sender: Mutex<Option<mpsc::UnboundedSender<T>>>,
}

impl<T: Send + 'static> TaskQueue<T> {
    pub fn new() -> Self {
        TaskQueue {
            sender: Mutex::new(None),
        }
    }

    /// Hands `item` to the task, first starting it with `start` if there is
    /// none yet or the one there was is gone with its runtime.
    pub fn send<F>(&self, item: T, start: impl FnOnce(mpsc::UnboundedReceiver<T>) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let item = match sender.as_ref() {
            Some(running) => match running.send(item) {
                Ok(()) => return,
                Err(mpsc::error::SendError(item)) => item,
            },
            None => item,
        };
        let (fresh, receiver) = mpsc::unbounded_channel();
        let sent = fresh.send(item);
        debug_assert!(sent.is_ok(), "the receiver is right here");
        tokio::spawn(start(receiver));
        *sender = Some(fresh);
    }
}
