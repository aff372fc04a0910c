//! Raft over the mesh: the consensus crate's [`Transport`] carried by libp2p
//! request-response on `Channel::Raft`, and the inbound side that hands requests to the
//! local Raft server without ever blocking the swarm's loop.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use saturn_consensus::codec::{decode, encode};
use saturn_consensus::{node_id_for_peer, AgentNode, Envelope, NodeId, RaftResponse, RaftServer, Transport, TransportError};

use crate::mesh::{Channel, MeshError, MeshHandle, MeshResponse, PeerId, Responder};
use crate::peer::{self, AskError};

/// Longest a Raft RPC may take over the mesh (snapshots of a large state included).
const RAFT_RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// [`Transport`] over the mesh.
pub struct MeshTransport {
    mesh: MeshHandle,
    /// Peers whose addresses from the Raft membership were already given to the mesh.
    introduced: Mutex<HashSet<String>>,
}

impl MeshTransport {
    /// A transport sending through `mesh`.
    pub fn new(mesh: MeshHandle) -> Self {
        Self { mesh, introduced: Mutex::new(HashSet::new()) }
    }

    /// Tells the mesh where a member listens, once: after a restart the membership is
    /// all this agent knows of its peers until they are rediscovered.
    async fn introduce(&self, node: &AgentNode) {
        let first_time = self
            .introduced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(node.peer_id.clone());
        if !first_time {
            return;
        }
        let Some((peer, addrs)) = peer::mesh_address(node) else { return };
        for addr in addrs {
            let _ = self.mesh.add_address(peer, addr).await;
        }
    }
}

#[async_trait]
impl Transport for MeshTransport {
    async fn call(&self, _target: NodeId, node: &AgentNode, request: Envelope) -> Result<RaftResponse, TransportError> {
        // Every Raft RPC comes here (heartbeats every 150 ms): the addresses are parsed
        // only the first time.
        let peer = peer::peer_id(node).ok_or_else(|| TransportError::Failed(format!("{node}: not a valid peer id")))?;
        self.introduce(node).await;
        let names = ["raft request", "raft response"];
        match peer::ask(&self.mesh, peer, Channel::Raft, names, &request, Some(RAFT_RPC_TIMEOUT)).await {
            Ok(response) => Ok(response),
            Err(AskError::Mesh(MeshError::Timeout { .. })) => Err(TransportError::Failed(format!("{}: no answer in time", node.name))),
            Err(AskError::Mesh(err)) => Err(TransportError::Unreachable(format!("{}: {err}", node.name))),
            Err(err) => Err(TransportError::Failed(format!("{}: {err}", node.name))),
        }
    }
}

/// Answers one inbound Raft request on its own task. `peer` is the sender as the mesh
/// authenticated it (noise): the server admits or refuses the request by that identity
/// and by the cluster id the request carries.
pub fn serve(server: RaftServer, peer: PeerId, body: Vec<u8>, responder: Responder) {
    tokio::spawn(async move {
        let from = node_id_for_peer(&peer.to_string());
        let response = match decode::<Envelope>("raft request", &body) {
            Ok(request) => match encode("raft response", &server.handle(from, request).await) {
                Ok(bytes) => MeshResponse::Ok(bytes),
                Err(err) => MeshResponse::Err(err.to_string()),
            },
            Err(err) => MeshResponse::Err(format!("malformed raft request: {err}")),
        };
        responder.send(response);
    });
}
