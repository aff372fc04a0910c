//! What the mesh tells the daemon.

use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::codec::{MeshRequest, MeshResponse};
use super::gossip::Gossip;

/// An event from the mesh, received on the channel returned by [`super::spawn`].
#[derive(Debug)]
pub enum MeshEvent {
    /// A connected peer told us who it is (sent again when its name or addresses change).
    PeerIdentified {
        /// The peer.
        peer: PeerId,
        /// Its agent name (`--name`).
        name: String,
        /// The addresses it listens on.
        addrs: Vec<Multiaddr>,
    },
    /// The last connection to a peer closed. Not a verdict on its health: use the
    /// failure detector over heartbeats for that.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A valid gossip message (already decoded and checked).
    Gossip {
        /// The peer that wrote and signed it (not necessarily the one that forwarded it).
        from: PeerId,
        /// The message.
        gossip: Gossip,
    },
    /// A peer asks something; answer through [`InboundRequest::respond`].
    Request(InboundRequest),
}

/// A request from a peer waiting for the daemon's answer.
///
/// Answer at leisure (the swarm keeps running), within the mesh's request timeout.
/// Dropping it unanswered sends the peer an error response.
#[derive(Debug)]
pub struct InboundRequest {
    /// Who asks.
    pub peer: PeerId,
    /// What it asks.
    pub request: MeshRequest,
    reply: Responder,
}

impl InboundRequest {
    pub(crate) fn new(
        peer: PeerId,
        request: MeshRequest,
        reply: oneshot::Sender<MeshResponse>,
    ) -> Self {
        Self {
            peer,
            request,
            reply: Responder(reply),
        }
    }

    /// Answers the request; `false` if it is too late (timed out, connection lost).
    pub fn respond(self, response: MeshResponse) -> bool {
        self.reply.send(response)
    }

    /// Splits the request from its responder, to move the responder into another task.
    pub fn into_parts(self) -> (PeerId, MeshRequest, Responder) {
        (self.peer, self.request, self.reply)
    }
}

/// Sends the answer to one inbound request.
#[derive(Debug)]
pub struct Responder(oneshot::Sender<MeshResponse>);

impl Responder {
    /// Answers the request; `false` if it is too late (timed out, connection lost).
    pub fn send(self, response: MeshResponse) -> bool {
        self.0.send(response).is_ok()
    }

    /// Whether the request still waits for an answer.
    pub fn is_waiting(&self) -> bool {
        !self.0.is_closed()
    }
}

/// A connected peer as the mesh knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub peer: PeerId,
    /// Its agent name, once identify has told us.
    pub name: Option<String>,
    /// The addresses it listens on, once identify has told us.
    pub addrs: Vec<Multiaddr>,
}
