//! How members reach each other: the [`Transport`] trait (implemented over libp2p by the
//! agent, in memory by [`mem_transport`](crate::mem_transport)), and openraft's network
//! built on top of it.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use crate::cluster_id::ClusterGuard;
use crate::node::{AgentNode, NodeId};
use crate::raft_types::TypeConfig;
use crate::rpc::{Envelope, RaftRequest, RaftResponse};

/// Why a request got no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request was certainly not delivered (no connection to the target).
    #[error("{0} is unreachable")]
    Unreachable(String),
    /// The request may or may not have been delivered and handled (timeout, connection
    /// lost mid-call).
    #[error("request failed: {0}")]
    Failed(String),
}

/// Request/response delivery between members.
///
/// `call` sends `request` to member `target` (reachable through `node`'s addresses),
/// where the receiver passes it, with the sender's authenticated node id, to
/// [`RaftServer::handle`](crate::RaftServer::handle), and returns that function's
/// response. Implementations must be safe to call concurrently; a call may be abandoned
/// (its future dropped) on timeout.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Delivers one request and waits for its response.
    async fn call(&self, target: NodeId, node: &AgentNode, request: Envelope) -> Result<RaftResponse, TransportError>;
}

/// openraft's network factory over a [`Transport`]: every request leaves in an
/// [`Envelope`] with this member's cluster id.
#[derive(Clone)]
pub struct Network {
    transport: Arc<dyn Transport>,
    guard: Arc<ClusterGuard>,
}

impl Network {
    /// Wraps `transport`; requests carry the id `guard` holds at the time they are sent.
    pub fn new(transport: Arc<dyn Transport>, guard: Arc<ClusterGuard>) -> Self {
        Network { transport, guard }
    }
}

/// A client for one target member.
pub struct Connection {
    target: NodeId,
    node: AgentNode,
    transport: Arc<dyn Transport>,
    guard: Arc<ClusterGuard>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &AgentNode) -> Connection {
        Connection { target, node: node.clone(), transport: self.transport.clone(), guard: self.guard.clone() }
    }
}

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, AgentNode, RaftError<NodeId, E>>;

impl Connection {
    /// Sends `request` within `ttl` and returns the response, or the network failure.
    async fn send<E: std::error::Error>(&self, request: RaftRequest, ttl: Duration) -> Result<RaftResponse, RpcError<E>> {
        let envelope = Envelope { cluster: self.guard.id(), request };
        let call = self.transport.call(self.target, &self.node, envelope);
        match tokio::time::timeout(ttl, call).await {
            // Refused before the target's Raft saw it (another cluster, not a member):
            // unreachable as far as Raft goes, so openraft backs off instead of retrying hot.
            Ok(Ok(RaftResponse::Refused(refusal))) => {
                let why = TransportError::Unreachable(format!("{} {refusal}", self.node));
                Err(RPCError::Unreachable(Unreachable::new(&why)))
            }
            Ok(Ok(response)) => Ok(response),
            Ok(Err(TransportError::Unreachable(why))) => Err(RPCError::Unreachable(Unreachable::new(&TransportError::Unreachable(why)))),
            Ok(Err(failed)) => Err(RPCError::Network(NetworkError::new(&failed))),
            Err(_elapsed) => Err(RPCError::Network(NetworkError::new(&TransportError::Failed(format!(
                "no response from {} within {ttl:?}",
                self.node
            ))))),
        }
    }

    fn remote<E: std::error::Error>(&self, error: RaftError<NodeId, E>) -> RpcError<E> {
        RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), error))
    }

    fn mismatch<E: std::error::Error>(&self) -> RpcError<E> {
        let why = TransportError::Failed(format!("{} answered with a response of the wrong kind", self.node));
        RPCError::Network(NetworkError::new(&why))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        match self.send(RaftRequest::AppendEntries(rpc), option.hard_ttl()).await? {
            RaftResponse::AppendEntries(answer) => answer.map_err(|e| self.remote(e)),
            _ => Err(self.mismatch()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        match self.send(RaftRequest::InstallSnapshot(rpc), option.hard_ttl()).await? {
            RaftResponse::InstallSnapshot(answer) => answer.map_err(|e| self.remote(e)),
            _ => Err(self.mismatch()),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        match self.send(RaftRequest::Vote(rpc), option.hard_ttl()).await? {
            RaftResponse::Vote(answer) => answer.map_err(|e| self.remote(e)),
            _ => Err(self.mismatch()),
        }
    }
}
