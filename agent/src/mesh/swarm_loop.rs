//! The task that owns the swarm: one `select!` over swarm events, daemon commands,
//! answers to inbound requests and event delivery. Nothing in it awaits anything slow:
//! answers travel through oneshots, events through a bounded channel that is only
//! written when it has room.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use libp2p::gossipsub::{IdentTopic, PublishError};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use super::behaviour::MeshBehaviour;
use super::codec::{MeshResponse, WireRequest};
use super::event::{InboundRequest, MeshEvent, PeerInfo};
use super::gossip::MAX_GOSSIP_BYTES;
use super::handle::{Command, Counters};
use super::MeshError;

/// Important events (requests, peer news) waiting for room in the event channel beyond
/// this are dropped; a consumer this far behind is broken, and memory must stay bounded.
const MAX_PENDING_EVENTS: usize = 4096;

/// An answer to an inbound request, ready to be written back to the peer.
type ReadyReply = (ResponseChannel<MeshResponse>, MeshResponse);

/// What the mesh knows of a connected peer.
#[derive(Debug, Default)]
pub(super) struct PeerState {
    pub(super) name: Option<String>,
    pub(super) addrs: Vec<Multiaddr>,
}

/// State of the swarm task.
pub(super) struct SwarmLoop {
    pub(super) swarm: Swarm<MeshBehaviour>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) events: mpsc::Sender<MeshEvent>,
    /// Events that found the channel full, delivered in order as room appears.
    pub(super) pending_events: VecDeque<MeshEvent>,
    /// Outbound requests waiting for their answer.
    pub(super) outbound:
        HashMap<OutboundRequestId, oneshot::Sender<Result<MeshResponse, MeshError>>>,
    /// Inbound requests waiting for the daemon's answer.
    pub(super) replies: FuturesUnordered<BoxFuture<'static, ReadyReply>>,
    pub(super) peers: HashMap<PeerId, PeerState>,
    /// Saturn agents of another wire version, and theirs: never dialled again.
    pub(super) other_versions: HashMap<PeerId, String>,
    pub(super) join: Vec<Multiaddr>,
    pub(super) topic: IdentTopic,
    pub(super) voters_topic: IdentTopic,
    pub(super) request_timeout: Duration,
    pub(super) rejoin_interval: Duration,
    pub(super) max_discovery_links: usize,
    pub(super) counters: Arc<Counters>,
    pub(super) links: super::links::Links,
}

impl SwarmLoop {
    /// Runs until shutdown is asked or every handle is dropped.
    pub(super) async fn run(mut self) {
        let mut rejoin = tokio::time::interval(self.rejoin_interval);
        rejoin.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut trim = tokio::time::interval(super::links::TRIM_EVERY);
        trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let done = loop {
            // An owned permit does not borrow `self`, which the other branches need whole.
            let events = self.events.clone();
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { done }) => break Some(done),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                Some((channel, response)) = self.replies.next(), if !self.replies.is_empty() => {
                    // Err: the request timed out or its connection closed; nothing to do.
                    let _ = self.swarm.behaviour_mut().rpc.send_response(channel, response);
                }
                permit = events.reserve_owned(), if !self.pending_events.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.pending_events.pop_front() {
                            permit.send(event);
                        }
                    }
                    // The daemon stopped listening: drop (and thereby answer) everything.
                    Err(_) => self.pending_events.clear(),
                },
                _ = rejoin.tick() => self.rejoin_if_alone(),
                _ = trim.tick() => self.tend_links(),
            }
        };
        tracing::debug!("mesh stopping");
        drop(self);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_request(&peer, WireRequest::Valid(request));
                self.outbound.insert(id, reply);
                self.links.used(peer);
            }
            Command::Publish { topic, gossip, reply } => {
                let _ = reply.send(self.publish(topic, &gossip));
            }
            Command::SubscribeSoft { subscribed } => {
                let topic = self.topic.clone();
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                if subscribed {
                    if let Err(err) = gossipsub.subscribe(&topic) {
                        tracing::warn!(%err, "cannot subscribe to the soft-state topic");
                    }
                } else {
                    gossipsub.unsubscribe(&topic);
                }
            }
            Command::Links { policy } => self.set_link_policy(policy),
            Command::Dial { addr, reply } => {
                let _ = reply.send(self.dial_addr(addr));
            }
            Command::AddAddress { peer, addr } => self.add_peer_address(peer, addr),
            Command::Peers { reply } => {
                let peers = self
                    .peers
                    .iter()
                    .map(|(peer, state)| PeerInfo {
                        peer: *peer,
                        name: state.name.clone(),
                        addrs: state.addrs.clone(),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            // Handled in `run`, which owns the loop.
            Command::Shutdown { done } => {
                let _ = done.send(());
            }
        }
    }

    fn publish(&mut self, topic: super::gossip::Topic, gossip: &super::gossip::Gossip) -> Result<(), MeshError> {
        let bytes = gossip.encode().map_err(MeshError::Publish)?;
        if bytes.len() > MAX_GOSSIP_BYTES {
            return Err(MeshError::TooLarge {
                size: bytes.len(),
                limit: MAX_GOSSIP_BYTES,
            });
        }
        let ident = match topic {
            super::gossip::Topic::Soft => self.topic.clone(),
            super::gossip::Topic::Voters => self.voters_topic.clone(),
        };
        match self.swarm.behaviour_mut().gossipsub.publish(ident, bytes) {
            Ok(_) => Ok(()),
            Err(PublishError::NoPeersSubscribedToTopic) => Err(MeshError::Publish(format!(
                "no peer subscribed to {} yet",
                topic.name()
            ))),
            Err(err) => Err(MeshError::Publish(err.to_string())),
        }
    }

    /// Dials `addr`; with a `/p2p/` suffix the peer's address is also remembered so that
    /// requests and lookups can reach it later.
    pub(super) fn dial_addr(&mut self, addr: Multiaddr) -> Result<(), MeshError> {
        if let Some((peer, transport_addr)) = split_peer_id(&addr) {
            if peer == *self.swarm.local_peer_id() {
                return Ok(());
            }
            self.add_peer_address(peer, transport_addr);
        }
        self.swarm
            .dial(addr.clone())
            .map_err(|err| MeshError::Dial {
                addr: addr.to_string(),
                reason: err.to_string(),
            })
    }

    pub(super) fn add_peer_address(&mut self, peer: PeerId, addr: Multiaddr) {
        let behaviour = self.swarm.behaviour_mut();
        behaviour.kad.add_address(&peer, addr.clone());
        self.swarm.add_peer_address(peer, addr);
    }

    /// Dials a known peer unless already connected or dialling, or of another version.
    pub(super) fn dial_peer(&mut self, peer: PeerId) {
        if self.other_versions.contains_key(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(err) = self.swarm.dial(opts) {
            tracing::debug!(%peer, %err, "cannot dial discovered peer");
        }
    }

    /// While no peer is connected, dial the join addresses again: the first agents of a
    /// cluster start in any order.
    fn rejoin_if_alone(&mut self) {
        if self.swarm.connected_peers().next().is_some() {
            return;
        }
        for addr in self.join.clone() {
            if let Err(err) = self.dial_addr(addr) {
                tracing::debug!(%err, "rejoin");
            }
        }
    }

    /// Delivers an event the daemon must see (requests, peer news), queueing it while the
    /// channel is full.
    pub(super) fn deliver(&mut self, event: MeshEvent) {
        if self.events.is_closed() {
            return;
        }
        if !self.pending_events.is_empty() {
            self.queue(event);
            return;
        }
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => self.queue(event),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn queue(&mut self, event: MeshEvent) {
        if self.pending_events.len() < MAX_PENDING_EVENTS {
            self.pending_events.push_back(event);
        } else {
            // Dropping a request drops its responder, which answers the peer with an error.
            Counters::bump(&self.counters.events_dropped);
        }
    }

    /// Delivers gossip only if there is room right now: it is soft state, a newer
    /// heartbeat follows shortly, and the swarm must never wait for the consumer.
    pub(super) fn deliver_gossip(&mut self, event: MeshEvent) {
        let delivered = self.pending_events.is_empty() && self.events.try_send(event).is_ok();
        if !delivered && !self.events.is_closed() {
            Counters::bump(&self.counters.gossip_events_dropped);
        }
    }

    /// Hands an inbound request to the daemon and arranges for its answer (or its absence)
    /// to be written back without the loop ever waiting for it.
    pub(super) fn on_inbound_request(
        &mut self,
        peer: PeerId,
        request: super::codec::MeshRequest,
        channel: ResponseChannel<MeshResponse>,
    ) {
        self.links.used(peer);
        let (reply, answer) = oneshot::channel();
        let timeout = self.request_timeout;
        self.replies.push(
            async move {
                let response = match tokio::time::timeout(timeout, answer).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(_)) => {
                        MeshResponse::Err("the agent dropped the request without answering".into())
                    }
                    Err(_) => MeshResponse::Err("the agent did not answer in time".into()),
                };
                (channel, response)
            }
            .boxed(),
        );
        self.deliver(MeshEvent::Request(InboundRequest::new(
            peer, request, reply,
        )));
    }
}

/// Splits `/ip4/../tcp/../p2p/<id>` into the peer id and the address without it.
pub(super) fn split_peer_id(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut transport = addr.clone();
    match transport.pop() {
        Some(Protocol::P2p(peer)) => Some((peer, transport)),
        _ => None,
    }
}
