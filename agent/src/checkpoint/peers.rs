//! [`Peers`] over the mesh: agent names resolved to peer ids from the replicated state,
//! requests on `Channel::Checkpoint`.

use std::sync::Arc;

use async_trait::async_trait;

use super::wire::{CheckpointRequest, CheckpointResponse};
use super::Peers;
use crate::cluster::Cluster;
use crate::mesh::{Channel, MeshHandle};
use crate::peer::{self, AskError};

/// The mesh as seen by checkpoint pulls.
pub struct MeshPeers {
    /// The mesh.
    pub mesh: MeshHandle,
    /// The replicated state (who is who).
    pub cluster: Arc<dyn Cluster>,
}

#[async_trait]
impl Peers for MeshPeers {
    async fn ask(&self, host: &str, request: CheckpointRequest) -> Result<CheckpointResponse, String> {
        let peer = peer::peer_of(&self.cluster.state(), host).map_err(|e| e.to_string())?;
        match peer::ask(&self.mesh, peer, Channel::Checkpoint, ["checkpoint request", "checkpoint response"], &request, None).await {
            Ok(response) => Ok(response),
            Err(AskError::Refused(why)) => Err(why),
            Err(AskError::Mesh(err)) => Err(format!("cannot reach {host}: {err}")),
            Err(err) => Err(err.to_string()),
        }
    }
}
