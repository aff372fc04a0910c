//! How the swarm task reacts to what the network does: connections, identification,
//! discovery, gossip validation and request-response traffic.

use std::io;

use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::request_response::{self, OutboundFailure};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, kad, mdns, ping, PeerId};
use saturn_consensus::WIRE_VERSION;

use super::behaviour::{peer_version, MeshBehaviourEvent, PeerVersion};
use super::codec::{MeshResponse, WireRequest};
use super::event::MeshEvent;
use super::gossip::{Gossip, GossipDecodeError};
use super::handle::Counters;
use super::swarm_loop::SwarmLoop;

impl SwarmLoop {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<MeshBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "mesh listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.peers.entry(peer_id).or_default();
                self.count_links();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "disconnected");
                self.count_links();
                if self.peers.remove(&peer_id).is_some() {
                    self.deliver(MeshEvent::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                // Strangers without the cluster key, port scanners, garbage: all end here.
                tracing::debug!(from = %send_back_addr, %error, "incoming connection refused");
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                tracing::warn!(?addresses, ?reason, "mesh listener closed");
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: MeshBehaviourEvent) {
        match event {
            MeshBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.on_identified(peer_id, info)
            }
            MeshBehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(failure),
            }) => {
                // A connection that cannot carry a ping cannot carry Raft either; closing
                // it lets requests redial instead of waiting on a dead socket.
                tracing::debug!(%peer, %failure, "ping failed, closing connection");
                self.swarm.close_connection(connection);
            }
            // Discovery links up to a bound, not a full mesh: links cost pings, identify and
            // gossip control traffic per peer, so a full mesh makes every agent's cost grow
            // with the mesh. Raft and log requests dial whom they need (the leader reaches
            // every member), and gossip crosses the mesh through these links.
            MeshBehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. })
                if !self.swarm.is_connected(&peer)
                    && self.swarm.connected_peers().count() < self.max_discovery_links =>
            {
                self.dial_peer(peer)
            }
            MeshBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.add_peer_address(peer, addr);
                    self.dial_peer(peer);
                }
            }
            MeshBehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            MeshBehaviourEvent::Rpc(event) => self.on_rpc_event(event),
            _ => {}
        }
    }

    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        let name = match peer_version(&info.protocol_version, &info.agent_version) {
            PeerVersion::Compatible(name) => name.to_owned(),
            PeerVersion::OtherVersion { name, version } => {
                let (name, version) = (name.to_owned(), version.to_owned());
                return self.refuse_other_version(peer, name, version);
            }
            PeerVersion::Stranger => {
                tracing::info!(%peer, agent = %info.agent_version, protocol = %info.protocol_version,
                    "not a saturn-agent, disconnecting");
                let _ = self.swarm.disconnect_peer_id(peer);
                return;
            }
        };
        for addr in &info.listen_addrs {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
        }
        let state = self.peers.entry(peer).or_default();
        let first_time = state.name.is_none();
        if state.name.as_deref() == Some(name.as_str()) && state.addrs == info.listen_addrs {
            return;
        }
        state.name = Some(name.clone());
        state.addrs = info.listen_addrs.clone();
        if first_time && self.explores() {
            // A new member: look for the peers it knows (and let them find us).
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        self.deliver(MeshEvent::PeerIdentified {
            peer,
            name,
            addrs: info.listen_addrs,
        });
    }

    /// Hangs up on a Saturn agent of another wire version and stops dialling it: the two
    /// cannot read each other's Raft log, so they must never share a cluster. Said once per
    /// version, counted per connection.
    fn refuse_other_version(&mut self, peer: PeerId, name: String, version: String) {
        Counters::bump(&self.counters.other_versions);
        if !self.other_versions.values().any(|seen| *seen == version) {
            tracing::warn!(%peer, agent = %name, theirs = %version, ours = WIRE_VERSION,
                "agent {name} runs Saturn wire version {version}, this agent {WIRE_VERSION}: agents of different \
                 versions cannot share a cluster (neither can read the other's log), so it is disconnected; \
                 upgrade every agent together (stop them all, install one build, start them: data dirs are kept)");
        }
        self.other_versions.insert(peer, version);
        self.swarm.behaviour_mut().kad.remove_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// Validates gossip before it is forwarded: garbage and forgeries are rejected (the
    /// forwarder's score drops, a few rejections graylist it), unknown newer kinds ignored.
    fn on_gossip(&mut self, via: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let verdict = match (message.source, Gossip::decode(&message.data)) {
            (Some(author), Ok(gossip)) if is_authentic(&gossip, &author) => {
                self.deliver_gossip(MeshEvent::Gossip {
                    from: author,
                    gossip,
                });
                MessageAcceptance::Accept
            }
            (_, Err(GossipDecodeError::UnknownKind(kind))) => {
                tracing::debug!(%via, kind, "ignoring gossip of an unknown kind");
                MessageAcceptance::Ignore
            }
            (author, result) => {
                tracing::warn!(%via, ?author, error = ?result.err(), "rejecting malformed or forged gossip");
                Counters::bump(&self.counters.gossip_rejected);
                MessageAcceptance::Reject
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &via, verdict);
    }

    fn on_rpc_event(&mut self, event: request_response::Event<WireRequest, MeshResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => match request {
                    WireRequest::Valid(request) => self.on_inbound_request(peer, request, channel),
                    // Dropping the channel resets the stream: no answer for garbage.
                    WireRequest::Malformed(reason) => self.cut_off(peer, &reason),
                },
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.outbound.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if matches!(&error, OutboundFailure::Io(err) if err.kind() == io::ErrorKind::InvalidData)
                {
                    self.cut_off(peer, &error.to_string());
                }
                if let Some(reply) = self.outbound.remove(&request_id) {
                    let _ = reply.send(Err(super::MeshError::outbound(&peer, error)));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn count_links(&self) {
        let links = self.swarm.connected_peers().count() as u64;
        self.counters.links.store(links, std::sync::atomic::Ordering::Relaxed);
    }

    /// A peer sent an oversized or undecodable frame: it is broken or hostile, and none of
    /// its other streams can be trusted either, so it is disconnected. Its gossip score is
    /// left alone: muting a buggy agent's heartbeats would make a live agent look dead.
    fn cut_off(&mut self, peer: PeerId, reason: &str) {
        tracing::warn!(%peer, %reason, "malformed request-response frame, disconnecting peer");
        Counters::bump(&self.counters.bad_requests);
        let _ = self.swarm.disconnect_peer_id(peer);
    }
}

/// A heartbeat must be signed by the peer it speaks for (gossipsub checked the signature).
fn is_authentic(gossip: &Gossip, author: &PeerId) -> bool {
    match gossip {
        Gossip::Heartbeat(heartbeat) => heartbeat.peer_id == author.to_string(),
    }
}
