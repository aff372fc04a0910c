//! The messages members exchange: Raft's RPCs and forwarded proposals.
//!
//! A transport moves a [`RaftRequest`] to its target and brings back the
//! [`RaftResponse`]. Both encode with [`codec`](crate::codec) (bincode 2, serde API,
//! standard config); no serde attribute that bincode cannot round-trip is used.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::cluster_id::{ClusterId, Refusal};
use crate::command::CommandResult;
use crate::node::{AgentNode, NodeId};
use crate::proposal::Proposal;
use crate::raft_types::TypeConfig;

/// What travels between members: a [`RaftRequest`] with the sender's cluster id, checked
/// by the receiver before the request reaches Raft (see [`cluster_id`](crate::cluster_id)).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's cluster id; `None` while it belongs to no cluster with an id.
    pub cluster: Option<ClusterId>,
    /// The request.
    pub request: RaftRequest,
}

/// A request from one member to another.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// Leader → follower: replicate entries (or heartbeat).
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Candidate → member: request a vote.
    Vote(VoteRequest<NodeId>),
    /// Leader → lagging member: one chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Any member → the leader: commit this proposal on my behalf.
    Propose(Proposal),
}

/// The answer to a [`RaftRequest`], variant for variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    /// Answer to [`RaftRequest::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`RaftRequest::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`RaftRequest::InstallSnapshot`].
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// Answer to [`RaftRequest::Propose`]: the applied result, or why not.
    Propose(Result<CommandResult, ForwardError>),
    /// Any request refused before it reached Raft: another cluster's, or from a peer that
    /// is not a member.
    Refused(Refusal),
}

/// Why a forwarded proposal was not committed by the member it was sent to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The receiver is not the leader (any more); it names the leader it knows of.
    #[error("not the leader; leader is {leader:?}")]
    NotLeader {
        /// The leader the receiver knows of, if any.
        leader: Option<(NodeId, AgentNode)>,
    },
    /// The receiver is shutting down or failed; the outcome is unknown.
    #[error("forwarded proposal failed: {0}")]
    Failed(String),
}
