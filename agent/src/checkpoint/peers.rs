//! [`Peers`] over the mesh: agent names resolved to peer ids from the replicated state,
//! requests on `Channel::Checkpoint`.

use std::sync::Arc;

use async_trait::async_trait;
use saturn_consensus::codec::{decode, encode};
use saturn_consensus::ConsensusNode;

use super::wire::{CheckpointRequest, CheckpointResponse};
use super::Peers;
use crate::mesh::{Channel, MeshHandle, MeshRequest, MeshResponse, PeerId};

/// The mesh as seen by checkpoint pulls.
pub struct MeshPeers {
    /// The mesh.
    pub mesh: MeshHandle,
    /// The replicated state (who is who).
    pub node: Arc<ConsensusNode>,
}

#[async_trait]
impl Peers for MeshPeers {
    async fn ask(&self, host: &str, request: CheckpointRequest) -> Result<CheckpointResponse, String> {
        let peer_id = self
            .node
            .read(|state| state.agents.get(host).map(|a| a.node.peer_id.clone()))
            .ok_or_else(|| format!("no agent named {host}"))?;
        let peer: PeerId = peer_id.parse().map_err(|_| format!("bad peer id of {host}"))?;
        let body = encode("checkpoint request", &request).map_err(|e| e.to_string())?;
        match self.mesh.request(peer, MeshRequest { channel: Channel::Checkpoint, body }).await {
            Ok(MeshResponse::Ok(bytes)) => decode("checkpoint response", &bytes).map_err(|e| e.to_string()),
            Ok(MeshResponse::Err(why)) => Err(why),
            Err(err) => Err(format!("cannot reach {host}: {err}")),
        }
    }
}
