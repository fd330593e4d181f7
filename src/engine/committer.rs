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
//!
//! A commit chained onto others in flight (see [`super::chain`]) is sent
//! only behind them in the same batch, where the store's batch rules refuse
//! it with them, or once they landed; otherwise it is refused here as a
//! conflict. Batches are written one at a time, so a predecessor in an
//! earlier batch is settled by the time a later batch is formed.

use std::sync::Arc;
use std::time::Duration;

use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::chain::Link;
use super::queue::{Full, TaskQueue};
use crate::store::{AppendError, Commit, EventStore, GroupCommit};

/// Most members of one batch: large batches amortise the flush, but one
/// member's conflict can split a SQL batch into single writes, and a batch
/// holds its callers until the slowest member is written.
pub const BATCH_MAX: usize = 64;

type Answer = Result<(), AppendError>;

/// A commit with its link (its outcome, for the commits chained onto it)
/// and the links of the commits it is chained onto.
pub struct Chained {
    pub commit: Commit,
    pub link: Arc<Link>,
    pub onto: Vec<Arc<Link>>,
}

struct Pending {
    chained: Chained,
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
    pub async fn append(&self, chained: Chained) -> Answer {
        if self.direct {
            return self.append_directly(chained).await;
        }
        let deadline = Instant::now() + self.timeout;
        let (reply, answer) = oneshot::channel();
        if let Err(full) = self.enqueue(Pending { chained, reply }, deadline).await {
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

    /// A batch of one in the caller's task, once the commits it is chained
    /// onto are settled. Dropping the caller drops the store's future, as a
    /// batch nobody waits for any more is dropped.
    async fn append_directly(&self, chained: Chained) -> Answer {
        let deadline = Instant::now() + self.timeout;
        for link in &chained.onto {
            if tokio::time::timeout_at(deadline, link.settled())
                .await
                .is_err()
            {
                return Err(no_answer(self.timeout));
            }
        }
        if let Some(refusal) = chain_refusals(std::slice::from_ref(&chained))
            .pop()
            .flatten()
        {
            chained.link.settle(false);
            return Err(refusal);
        }
        let commits = std::slice::from_ref(&chained.commit);
        let written = tokio::time::timeout_at(deadline, self.store.append_batch(commits)).await;
        let answer = answers(written, 1, self.timeout).pop();
        let answer = answer.expect("one answer per member");
        chained.link.settle(answer.is_ok());
        answer
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
        let (open, closed): (Vec<Pending>, Vec<Pending>) = waiting
            .drain(..)
            .partition(|pending| !pending.reply.is_closed());
        closed
            .iter()
            .for_each(|gone| gone.chained.link.settle(false));
        let (members, refused) = refuse_broken_chains(open);
        for (pending, refusal) in refused {
            pending.chained.link.settle(false);
            let _ = pending.reply.send(Err(refusal));
        }
        if members.is_empty() {
            continue;
        }
        batch_sizes.observe(members.len() as f64);
        let mut commits = Vec::with_capacity(members.len());
        let mut links = Vec::with_capacity(members.len());
        let mut replies = Vec::with_capacity(members.len());
        for Pending { chained, reply } in members {
            commits.push(chained.commit);
            links.push(chained.link);
            replies.push(reply);
        }
        let written = tokio::select! {
            biased;
            // Nobody waits for the batch any more: it is dropped as a single
            // append was with its request, so that a request that gave up
            // before its commit was written leaves nothing behind.
            () = all_closed(&mut replies) => {
                links.iter().for_each(|link| link.settle(false));
                continue;
            }
            written = tokio::time::timeout(timeout, store.append_batch(&commits)) => written,
        };
        let answers = answers(written, commits.len(), timeout);
        for ((reply, link), answer) in replies.into_iter().zip(&links).zip(answers) {
            link.settle(answer.is_ok());
            // A caller gone meanwhile has answered "unknown" already.
            let _ = reply.send(answer);
        }
    }
}

/// Splits a batch into the members that may go to the store and those
/// chained onto a commit that did not land, or that is neither settled nor
/// before them in this batch (which could let them land on a state they
/// were not decided on), or onto a member refused here.
fn refuse_broken_chains(batch: Vec<Pending>) -> (Vec<Pending>, Vec<(Pending, AppendError)>) {
    let chains: Vec<&Chained> = batch.iter().map(|pending| &pending.chained).collect();
    let refusals = chain_refusals_of(&chains);
    let mut members = Vec::with_capacity(batch.len());
    let mut refused = Vec::new();
    for (pending, refusal) in batch.into_iter().zip(refusals) {
        match refusal {
            Some(refusal) => refused.push((pending, refusal)),
            None => members.push(pending),
        }
    }
    (members, refused)
}

fn chain_refusals(batch: &[Chained]) -> Vec<Option<AppendError>> {
    chain_refusals_of(&batch.iter().collect::<Vec<_>>())
}

/// For each member of a batch, in order, the conflict that refuses it
/// before the store, if any (see [`refuse_broken_chains`]).
fn chain_refusals_of(batch: &[&Chained]) -> Vec<Option<AppendError>> {
    let mut refusals: Vec<Option<AppendError>> = Vec::with_capacity(batch.len());
    for (member, chained) in batch.iter().enumerate() {
        let broken = chained.onto.iter().find_map(|link| {
            let before = (0..member).find(|&earlier| Arc::ptr_eq(&batch[earlier].link, link));
            match (link.outcome(), before) {
                (Some(true), _) => None,
                (Some(false), _) => Some("which did not land".to_owned()),
                (None, Some(earlier)) if refusals[earlier].is_none() => None,
                (None, Some(earlier)) => Some(format!("member {earlier} of the batch, refused")),
                (None, None) => Some("which is not written before it".to_owned()),
            }
        });
        refusals.push(broken.map(|why| {
            AppendError::Conflict(format!(
                "decided on the state a commit in flight leaves, {why}"
            ))
        }));
    }
    refusals
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
