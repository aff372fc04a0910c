//! The receiving side of the [`Transport`](crate::Transport): [`RaftServer::handle`]
//! turns an incoming [`RaftRequest`] into its [`RaftResponse`].

use openraft::error::{ClientWriteError, RaftError};

use crate::raft_types::Raft;
use crate::rpc::{ForwardError, RaftRequest, RaftResponse};

/// Answers requests addressed to one member. Cheap to clone.
#[derive(Clone)]
pub struct RaftServer {
    raft: Raft,
}

impl RaftServer {
    pub(crate) fn new(raft: Raft) -> Self {
        RaftServer { raft }
    }

    /// Handles one request from another member and returns the response to send back.
    pub async fn handle(&self, request: RaftRequest) -> RaftResponse {
        match request {
            RaftRequest::AppendEntries(rpc) => RaftResponse::AppendEntries(self.raft.append_entries(rpc).await),
            RaftRequest::Vote(rpc) => RaftResponse::Vote(self.raft.vote(rpc).await),
            RaftRequest::InstallSnapshot(rpc) => RaftResponse::InstallSnapshot(self.raft.install_snapshot(rpc).await),
            RaftRequest::Propose(proposal) => {
                let answer = match self.raft.client_write(proposal).await {
                    Ok(written) => Ok(written.data),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => {
                        Err(ForwardError::NotLeader { leader: to.leader_id.zip(to.leader_node) })
                    }
                    Err(other) => Err(ForwardError::Failed(other.to_string())),
                };
                RaftResponse::Propose(answer)
            }
        }
    }
}
