//! The receiving side of the [`Transport`](crate::Transport): [`RaftServer::handle`]
//! turns an incoming [`RaftRequest`] into its [`RaftResponse`].

use crate::batcher::{Batcher, WriteError};
use crate::raft_types::Raft;
use crate::rpc::{ForwardError, RaftRequest, RaftResponse};

/// Answers requests addressed to one member. Cheap to clone.
#[derive(Clone)]
pub struct RaftServer {
    raft: Raft,
    batcher: Batcher,
}

impl RaftServer {
    pub(crate) fn new(raft: Raft, batcher: Batcher) -> Self {
        RaftServer { raft, batcher }
    }

    /// Handles one request from another member and returns the response to send back.
    pub async fn handle(&self, request: RaftRequest) -> RaftResponse {
        match request {
            RaftRequest::AppendEntries(rpc) => RaftResponse::AppendEntries(self.raft.append_entries(rpc).await),
            RaftRequest::Vote(rpc) => RaftResponse::Vote(self.raft.vote(rpc).await),
            RaftRequest::InstallSnapshot(rpc) => RaftResponse::InstallSnapshot(self.raft.install_snapshot(rpc).await),
            RaftRequest::Propose(proposal) => {
                let answer = match self.batcher.write(proposal).await {
                    Ok(result) => Ok(result),
                    Err(WriteError::NotLeader(leader)) => Err(ForwardError::NotLeader { leader }),
                    Err(WriteError::Failed(why) | WriteError::Stopped(why)) => Err(ForwardError::Failed(why)),
                };
                RaftResponse::Propose(answer)
            }
        }
    }
}
