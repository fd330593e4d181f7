//! Group commit: the commits of commands that arrive together go to the
//! store in one [`EventStore::append_batch`] — one transaction, one WAL
//! flush — and each command gets its own member's answer.
//!
//! One task per engine writes one batch at a time; whatever arrives while a
//! batch is in the store is the next batch (natural batching: no timer, so
//! a lone command waits for nothing, and under load batches grow by
//! themselves), up to [`BATCH_MAX`] members. The task is spawned on the
//! first append, on the runtime of the caller (so an engine built outside a
//! runtime, or used from a new one after the old one stopped, still works),
//! and ends when the engine is dropped.
//!
//! A store that gains nothing from batching ([`GroupCommit::Direct`]: the
//! memory store) is appended to in the caller's task instead, a batch of
//! one under the same timeout and with the same answers: no channel hop and
//! no task wake-up per command.

use std::sync::Arc;
use std::time::Duration;

use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::queue::{Full, TaskQueue};
use crate::store::{AppendError, Commit, EventStore, GroupCommit};

/// Most members of one batch: large batches amortise the flush, but one
/// member's conflict can split a SQL batch into single writes, and a batch
/// holds its callers until the slowest member is written.
pub const BATCH_MAX: usize = 64;

type Answer = Result<(), AppendError>;

struct Pending {
    commit: Commit,
    reply: oneshot::Sender<Answer>,
}

pub struct Committer {
    store: Arc<dyn EventStore>,
    /// The store's [`EventStore::group_commit`], asked once.
    direct: bool,
    timeout: Duration,
    batch_sizes: Histogram,
    queue: TaskQueue<Pending>,
}

impl Committer {
    pub fn new(store: Arc<dyn EventStore>, timeout: Duration, batch_sizes: Histogram) -> Self {
        Committer {
            direct: store.group_commit() == GroupCommit::Direct,
            store,
            timeout,
            batch_sizes,
            queue: TaskQueue::new(),
        }
    }

    /// Appends `commit` with whatever else is waiting. The answer is the
    /// store's for this member; a batch that does not answer within the
    /// store timeout (counted from now, so also a wait behind the batch
    /// before) is ambiguous for every member: it may still land.
    pub async fn append(&self, commit: Commit) -> Answer {
        if self.direct {
            return self.append_directly(&commit).await;
        }
        let deadline = Instant::now() + self.timeout;
        let (reply, answer) = oneshot::channel();
        if let Err(full) = self.enqueue(Pending { commit, reply }, deadline).await {
            return Err(AppendError::Store(full.into()));
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(answer)) => answer,
            // The task stopped with the runtime: the batch may have been sent.
            Ok(Err(_)) => Err(AppendError::Ambiguous(
                "the group committer stopped".to_owned(),
            )),
            Err(_) => Err(no_answer(self.timeout)),
        }
    }

    /// A batch of one in the caller's task. Dropping the caller drops the
    /// store's future, as a batch nobody waits for any more is dropped.
    async fn append_directly(&self, commit: &Commit) -> Answer {
        let commits = std::slice::from_ref(commit);
        let written = tokio::time::timeout(self.timeout, self.store.append_batch(commits)).await;
        let answer = answers(written, 1, self.timeout).pop();
        answer.expect("one answer per member")
    }

    async fn enqueue(&self, pending: Pending, deadline: Instant) -> Result<(), Full> {
        // The clones are made only when the task (re)starts, not per append.
        let start = |receiver| {
            write_batches(
                self.store.clone(),
                receiver,
                self.timeout,
                self.batch_sizes.clone(),
            )
        };
        self.queue.send(pending, deadline, start).await
    }
}

/// The committer's task: takes everything waiting (up to [`BATCH_MAX`]),
/// writes it as one batch, answers each member, and again.
async fn write_batches(
    store: Arc<dyn EventStore>,
    mut queue: mpsc::Receiver<Pending>,
    timeout: Duration,
    batch_sizes: Histogram,
) {
    let mut waiting = Vec::with_capacity(BATCH_MAX);
    while queue.recv_many(&mut waiting, BATCH_MAX).await > 0 {
        // A caller that stopped waiting (timed out, or its request was
        // dropped) has answered "unknown" already; not sending its commit
        // keeps that answer's window as small as it can be.
        let (commits, replies): (Vec<Commit>, Vec<oneshot::Sender<Answer>>) = waiting
            .drain(..)
            .filter(|pending| !pending.reply.is_closed())
            .map(|pending| (pending.commit, pending.reply))
            .unzip();
        if commits.is_empty() {
            continue;
        }
        batch_sizes.observe(commits.len() as f64);
        let mut replies = replies;
        let written = tokio::select! {
            biased;
            // Nobody waits for the batch any more: it is dropped as a single
            // append was with its request, so that a request that gave up
            // before its commit was written leaves nothing behind.
            () = all_closed(&mut replies) => continue,
            written = tokio::time::timeout(timeout, store.append_batch(&commits)) => written,
        };
        let answers = answers(written, commits.len(), timeout);
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A caller gone meanwhile has answered "unknown" already.
            let _ = reply.send(answer);
        }
    }
}

/// Each member's answer to a batch of `members` written within `timeout`
/// (`Err`: it was not).
fn answers(
    written: Result<Vec<Answer>, tokio::time::error::Elapsed>,
    members: usize,
    timeout: Duration,
) -> Vec<Answer> {
    match written {
        Ok(answers) if answers.len() == members => answers,
        // A store that miscounts its answers cannot say which landed.
        Ok(answers) => vec![
            Err(AppendError::Ambiguous(format!(
                "a batch of {members} was answered with {} results",
                answers.len()
            )));
            members
        ],
        // The batch may still complete after we stop waiting.
        Err(_) => vec![Err(no_answer(timeout)); members],
    }
}

fn no_answer(timeout: Duration) -> AppendError {
    AppendError::Ambiguous(format!("no answer within {} ms", timeout.as_millis()))
}

/// Completes when every caller has stopped waiting.
async fn all_closed(replies: &mut [oneshot::Sender<Answer>]) {
    for reply in replies {
        reply.closed().await;
    }
}
