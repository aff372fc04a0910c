//! Group commit: concurrent proposals on the leader share one log entry.
//!
//! openraft 0.9 appends every `client_write` as its own entry, and our log store makes
//! every append durable with an fsync before Raft may count it, so the leader's commit
//! rate would be capped at the disk's fsync rate. The batcher keeps a few writes in
//! flight; proposals arriving meanwhile are queued and go out together in the next
//! entry, so under load one fsync commits many proposals, while a lone proposal pays no
//! wait. More than one write in flight keeps a few proposers from falling into lockstep
//! behind a single round trip (each batch would then hold one proposal).

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::CommandResult;
use crate::node::{AgentNode, NodeId};
use crate::proposal::Proposal;
use crate::raft_types::Raft;

/// Most proposals in one entry (bounds entry size and the snapshot-free replay unit).
const MAX_BATCH: usize = 256;
/// Proposals that may wait for the write in flight before `write` waits for room.
const QUEUE: usize = 4096;
/// Entries being committed at once.
const IN_FLIGHT: usize = 4;

/// Why a write did not commit.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// This node is not the leader; it names the one it knows of.
    NotLeader(Option<(NodeId, AgentNode)>),
    /// The write failed; whether it was committed is unknown.
    Failed(String),
    /// The Raft core stopped.
    Stopped(String),
}

struct Pending {
    proposal: Proposal,
    reply: oneshot::Sender<Result<CommandResult, WriteError>>,
}

/// Handle to the batching task of one node. Cheap to clone; the task ends (and releases
/// its Raft handle once its writes in flight end) when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<Pending>,
}

impl Batcher {
    /// Starts the batching task for `raft`.
    pub(crate) fn start(raft: Raft) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, pending));
        Batcher { queue }
    }

    /// Commits `proposal` through the local Raft node (which must lead) and returns what
    /// applying it did.
    pub(crate) async fn write(&self, proposal: Proposal) -> Result<CommandResult, WriteError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || WriteError::Stopped("batching task ended".to_string());
        self.queue.send(Pending { proposal, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(raft: Raft, mut pending: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Take the permit before the batch: while all writes are in flight, proposals
        // keep queueing and the next batch takes them all.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let Some(first) = pending.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            write_batch(&raft, batch).await;
            drop(permit);
        });
    }
}

/// Commits one batch as one entry and answers every proposer in it.
async fn write_batch(raft: &Raft, batch: Vec<Pending>) {
    let (proposals, replies): (Vec<Proposal>, Vec<_>) = batch.into_iter().map(|p| (p.proposal, p.reply)).unzip();
    let count = proposals.len();
    match raft.client_write(proposals).await {
        Ok(written) if written.data.len() == count => {
            for (reply, result) in replies.into_iter().zip(written.data) {
                let _caller_gone = reply.send(Ok(result));
            }
        }
        Ok(written) => {
            let why = format!("{} results for {count} proposals", written.data.len());
            answer_all(replies, || WriteError::Failed(why.clone()));
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => {
            let leader = to.leader_id.zip(to.leader_node);
            answer_all(replies, || WriteError::NotLeader(leader.clone()));
        }
        Err(RaftError::APIError(other)) => answer_all(replies, || WriteError::Failed(other.to_string())),
        Err(RaftError::Fatal(fatal)) => answer_all(replies, || WriteError::Stopped(fatal.to_string())),
    }
}

fn answer_all(
    replies: Vec<oneshot::Sender<Result<CommandResult, WriteError>>>,
    error: impl Fn() -> WriteError,
) {
    for reply in replies {
        let _caller_gone = reply.send(Err(error()));
    }
}
