//! Reaching another agent over the mesh by what the replicated state records of it
//! ([`AgentNode`]: name, peer id, addresses): the one place that turns a member into a
//! mesh address, and a typed request into a mesh round trip. Raft's transport, log reads,
//! checkpoint pulls and the link policy all go through it.

use std::time::Duration;

use saturn_consensus::codec::{decode, encode, CodecError};
use saturn_consensus::{AgentNode, ClusterState};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::mesh::{Channel, MeshError, MeshHandle, MeshRequest, MeshResponse, Multiaddr, PeerId};

/// Why a request to another agent got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The state records no agent of that name.
    #[error("no agent named {0}")]
    UnknownAgent(String),
    /// The state records a peer id that does not parse.
    #[error("{0}: not a valid peer id")]
    BadPeerId(String),
    /// The request or the answer could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The other agent answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The mesh could not carry the request (not reachable, no answer in time, ...).
    #[error(transparent)]
    Mesh(#[from] MeshError),
}

/// A member's peer id (`None`: the recorded one does not parse).
pub fn peer_id(node: &AgentNode) -> Option<PeerId> {
    node.peer_id.parse().ok()
}

/// A member's peer id and the addresses it listens on that parse (`None`: its recorded
/// peer id does not parse).
pub fn mesh_address(node: &AgentNode) -> Option<(PeerId, Vec<Multiaddr>)> {
    Some((peer_id(node)?, node.addrs.iter().filter_map(|addr| addr.parse().ok()).collect()))
}

/// The peer id of the agent named `host` in `state`.
pub fn peer_of(state: &ClusterState, host: &str) -> Result<PeerId, AskError> {
    let record = state.agents().get(host).ok_or_else(|| AskError::UnknownAgent(host.to_owned()))?;
    peer_id(&record.node).ok_or_else(|| AskError::BadPeerId(host.to_owned()))
}

/// Sends `request` to `peer` on `channel` and decodes its answer; `names` name the
/// request and the answer in codec errors. `timeout`: the mesh's own when `None`.
pub async fn ask<Req: Serialize, Resp: DeserializeOwned>(
    mesh: &MeshHandle,
    peer: PeerId,
    channel: Channel,
    names: [&'static str; 2],
    request: &Req,
    timeout: Option<Duration>,
) -> Result<Resp, AskError> {
    let request = MeshRequest { channel, body: encode(names[0], request)? };
    let answer = match timeout {
        Some(timeout) => mesh.request_with_timeout(peer, request, timeout).await?,
        None => mesh.request(peer, request).await?,
    };
    match answer {
        MeshResponse::Ok(bytes) => Ok(decode(names[1], &bytes)?),
        MeshResponse::Err(why) => Err(AskError::Refused(why)),
    }
}
