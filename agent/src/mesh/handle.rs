//! The daemon's side of the mesh: a cloneable handle that sends commands to the swarm task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::codec::{MeshRequest, MeshResponse, MAX_RPC_BYTES};
use super::event::PeerInfo;
use super::gossip::{Gossip, Topic};
use super::MeshError;

/// Room left in a frame for the envelope around a body.
const ENVELOPE_OVERHEAD: usize = 16;

/// A command to the swarm task; every answer comes back through a oneshot so that the
/// swarm loop never waits on its caller.
#[derive(Debug)]
pub(crate) enum Command {
    Request {
        peer: PeerId,
        request: MeshRequest,
        reply: oneshot::Sender<Result<MeshResponse, MeshError>>,
    },
    Publish {
        topic: Topic,
        gossip: Gossip,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    SubscribeSoft {
        subscribed: bool,
    },
    Links {
        policy: Option<super::LinkPolicy>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Counters of what the mesh dropped or refused, shared between the swarm task and handles.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) gossip_events_dropped: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) gossip_rejected: AtomicU64,
    pub(crate) bad_requests: AtomicU64,
    pub(crate) other_versions: AtomicU64,
    /// Peers connected now (a gauge, set by the swarm task).
    pub(crate) links: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the mesh dropped or refused since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeshStats {
    /// Gossip not delivered because the event consumer was behind.
    pub gossip_events_dropped: u64,
    /// Other events (requests, peer news) dropped because the consumer was far behind;
    /// a dropped request is answered with an error.
    pub events_dropped: u64,
    /// Gossip messages rejected as malformed or forged (their forwarders are penalised).
    pub gossip_rejected: u64,
    /// Request-response streams that carried oversized or malformed frames (the peer is
    /// disconnected).
    pub bad_requests: u64,
    /// Connections from or to Saturn agents of another wire version, closed after identify.
    pub other_versions: u64,
    /// Peers this agent is linked to now (bounded for an agent that does not vote; see
    /// [`super::links`]).
    pub links: u64,
}

/// Handle to a running mesh; cheap to clone. When the last handle is dropped the swarm
/// task stops.
#[derive(Debug, Clone)]
pub struct MeshHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) local_peer_id: PeerId,
    pub(crate) request_timeout: Duration,
    pub(crate) counters: Arc<Counters>,
}

impl MeshHandle {
    /// This agent's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Sends `request` to `peer` and waits for the answer, at most the configured
    /// request timeout. Dials the peer if needed (addresses from identify, kad, mDNS or
    /// [`Self::add_address`]).
    pub async fn request(
        &self,
        peer: PeerId,
        request: MeshRequest,
    ) -> Result<MeshResponse, MeshError> {
        self.request_with_timeout(peer, request, self.request_timeout)
            .await
    }

    /// [`Self::request`] with its own timeout (capped by the configured one, which bounds
    /// how long the swarm keeps the request).
    pub async fn request_with_timeout(
        &self,
        peer: PeerId,
        request: MeshRequest,
        timeout: Duration,
    ) -> Result<MeshResponse, MeshError> {
        let size = request.body.len();
        if size + ENVELOPE_OVERHEAD > MAX_RPC_BYTES {
            return Err(MeshError::TooLarge {
                size,
                limit: MAX_RPC_BYTES - ENVELOPE_OVERHEAD,
            });
        }
        let answer = self.ask(|reply| Command::Request {
            peer,
            request,
            reply,
        });
        match tokio::time::timeout(timeout, answer).await {
            Ok(result) => result?,
            Err(_) => Err(MeshError::Timeout {
                peer: peer.to_string(),
            }),
        }
    }

    /// Publishes `gossip` to every subscribed peer. Fails with [`MeshError::Publish`] while
    /// no peer is subscribed yet (normal right after start; heartbeats can ignore it).
    pub async fn publish(&self, gossip: Gossip) -> Result<(), MeshError> {
        self.publish_to(Topic::Soft, gossip).await
    }

    /// Publishes `gossip` on `topic`.
    pub async fn publish_to(&self, topic: Topic, gossip: Gossip) -> Result<(), MeshError> {
        self.ask(|reply| Command::Publish { topic, gossip, reply }).await?
    }

    /// Subscribes to the soft-state topic ([`super::GOSSIP_TOPIC`]) or leaves it: a member
    /// that does not vote leaves it, so that it never receives the heartbeats of every
    /// other agent (the voters and agents outside a cluster stay).
    pub async fn subscribe_soft(&self, subscribed: bool) -> Result<(), MeshError> {
        self.commands
            .send(Command::SubscribeSoft { subscribed })
            .await
            .map_err(|_| MeshError::Shutdown)
    }

    /// Bounds this agent's links (see [`super::links`]): with a policy, the swarm keeps
    /// links to its peers, its gossip mesh and recently used peers, up to the discovery
    /// bound in all, and closes the rest; with `None` it keeps every link.
    pub async fn bound_links(&self, policy: Option<super::LinkPolicy>) -> Result<(), MeshError> {
        self.commands
            .send(Command::Links { policy })
            .await
            .map_err(|_| MeshError::Shutdown)
    }

    /// Dials an address (with or without `/p2p/<peer id>`).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), MeshError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Tells the mesh where `peer` can be reached.
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), MeshError> {
        self.commands
            .send(Command::AddAddress { peer, addr })
            .await
            .map_err(|_| MeshError::Shutdown)
    }

    /// The peers connected right now, with names and addresses once identified.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, MeshError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// The addresses this agent listens on (ports resolved, wildcards expanded).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, MeshError> {
        self.ask(|reply| Command::ListenAddrs { reply }).await
    }

    /// Counters of what the mesh dropped or refused.
    pub fn stats(&self) -> MeshStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MeshStats {
            gossip_events_dropped: read(&self.counters.gossip_events_dropped),
            events_dropped: read(&self.counters.events_dropped),
            gossip_rejected: read(&self.counters.gossip_rejected),
            bad_requests: read(&self.counters.bad_requests),
            other_versions: read(&self.counters.other_versions),
            links: read(&self.counters.links),
        }
    }

    /// Stops the swarm task and waits until it has closed every connection and listener.
    /// Other handles then get [`MeshError::Shutdown`].
    pub async fn shutdown(&self) {
        // An error means the task is already gone, which is what was asked.
        let _ = self.ask(|done| Command::Shutdown { done }).await;
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MeshError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| MeshError::Shutdown)?;
        answer.await.map_err(|_| MeshError::Shutdown)
    }
}
