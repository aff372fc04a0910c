//! The receiving side of the [`Transport`](crate::Transport): [`RaftServer::handle`]
//! checks who sent an incoming [`Envelope`] and for which cluster, then turns its
//! [`RaftRequest`] into the [`RaftResponse`].

use std::sync::Arc;

use crate::batcher::{Batcher, WriteError};
use crate::cluster_id::{ClusterGuard, Refusal};
use crate::node::NodeId;
use crate::raft_types::Raft;
use crate::rpc::{Envelope, ForwardError, RaftRequest, RaftResponse};

/// Answers requests addressed to one member. Cheap to clone.
#[derive(Clone)]
pub struct RaftServer {
    raft: Raft,
    batcher: Batcher,
    guard: Arc<ClusterGuard>,
}

impl RaftServer {
    pub(crate) fn new(raft: Raft, batcher: Batcher, guard: Arc<ClusterGuard>) -> Self {
        RaftServer { raft, batcher, guard }
    }

    /// Handles one request from member `from` (as the transport authenticated it, e.g. the
    /// node id of the libp2p peer that sent it) and returns the response to send back.
    ///
    /// Refused before Raft sees it (see [`admit`]): a message of another cluster, a
    /// forwarded proposal from a peer that is not a member, a vote or an append claiming to
    /// come from someone other than its sender, a vote from a non-member.
    pub async fn handle(&self, from: NodeId, envelope: Envelope) -> RaftResponse {
        let Envelope { cluster, request } = envelope;
        let (what, may_adopt) = match &request {
            RaftRequest::AppendEntries(_) => ("append-entries", true),
            RaftRequest::Vote(_) => ("a vote request", true),
            RaftRequest::InstallSnapshot(_) => ("a snapshot", true),
            RaftRequest::Propose(_) => ("a forwarded proposal", false),
        };
        let peer = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            let peer =
                Peer { from, is_member: membership.get_node(&from).is_some(), no_membership: membership.nodes().next().is_none() };
            peer
        };
        if let Err(refusal) = admit(&peer, &request) {
            tracing::debug!(from, %refusal, "{what} refused");
            return RaftResponse::Refused(refusal);
        }
        if let Err(refusal) = self.guard.admit(cluster.as_ref(), may_adopt, what) {
            return RaftResponse::Refused(refusal);
        }
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

/// The sender of a request as the receiver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its node id (authenticated by the transport).
    pub from: NodeId,
    /// Whether it is in the receiver's membership (voter or learner).
    pub is_member: bool,
    /// Whether the receiver has no membership at all (belongs to no cluster yet).
    pub no_membership: bool,
}

/// Who may ask what, pure:
/// - a forwarded proposal only from a member (a stranger on the mesh cannot write the state);
/// - a vote request only from a member, or to an agent that belongs to no cluster yet
///   (formation), and only for its sender;
/// - append-entries and snapshots only from the leader they name (a member cannot relay
///   or pose as another); whether that leader is of this cluster is the cluster id's check.
///   A leader that is not in the receiver's own (possibly stale) membership is accepted:
///   a member that missed the entry adding it must still be able to catch up.
pub fn admit(peer: &Peer, request: &RaftRequest) -> Result<(), Refusal> {
    let refuse = |reason: String| Err(Refusal { reason, cluster: None });
    let claimed = match request {
        RaftRequest::AppendEntries(rpc) => rpc.vote.leader_id().voted_for(),
        RaftRequest::Vote(rpc) => rpc.vote.leader_id().voted_for(),
        RaftRequest::InstallSnapshot(rpc) => rpc.vote.leader_id().voted_for(),
        RaftRequest::Propose(_) => {
            return if peer.is_member {
                Ok(())
            } else {
                refuse(format!("node {} is not a member: only members forward proposals", peer.from))
            };
        }
    };
    if claimed != Some(peer.from) {
        return refuse(format!("node {} sent a request in the name of node {claimed:?}", peer.from));
    }
    if matches!(request, RaftRequest::Vote(_)) && !peer.is_member && !peer.no_membership {
        return refuse(format!("node {} is not a member and cannot stand for election", peer.from));
    }
    Ok(())
}
