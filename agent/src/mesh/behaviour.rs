//! The composed libp2p behaviour of an agent and how each part is configured.

use std::time::Duration;

use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{behaviour::toggle::Toggle, NetworkBehaviour};
use libp2p::{identify, mdns, ping, StreamProtocol};

use super::codec::{MeshCodec, RPC_PROTOCOL};
use super::gossip::{GOSSIP_TOPIC, MAX_GOSSIP_BYTES, VOTERS_TOPIC};
use super::{MeshConfig, MeshError};

/// The identify protocol version every Saturn agent announces: `/saturn/id/` and the wire
/// version ([`saturn_consensus::WIRE_VERSION`]). Peers announcing another are disconnected:
/// strangers quietly, Saturn agents of another version with a warning (see
/// [`peer_version`]).
pub const IDENTIFY_PROTOCOL: &str = concat!("/saturn/id/", saturn_consensus::wire_version!());

/// What every Saturn agent's identify protocol version starts with.
const IDENTIFY_PREFIX: &str = "/saturn/id/";

/// Kademlia protocol name, distinct from the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/saturn/kad/1");

/// Prefix of identify's agent version; the agent name follows after one space.
const AGENT_VERSION_PREFIX: &str = concat!("saturn-agent/", env!("CARGO_PKG_VERSION"));

/// Every protocol an agent speaks, driven by one swarm.
#[derive(NetworkBehaviour)]
pub struct MeshBehaviour {
    /// Exchanges names, listen addresses and protocols on every connection.
    pub identify: identify::Behaviour,
    /// Measures round-trip time; failures close the connection (see the swarm loop).
    pub ping: ping::Behaviour,
    /// Peer discovery through the join addresses.
    pub kad: kad::Behaviour<MemoryStore>,
    /// Peer discovery on the local network, when enabled.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Soft state: heartbeats and news.
    pub gossipsub: gossipsub::Behaviour,
    /// Opaque typed request-response (Raft, logs, control).
    pub rpc: request_response::Behaviour<MeshCodec>,
}

impl MeshBehaviour {
    /// Builds every behaviour from the configuration.
    pub fn new(keypair: &Keypair, config: &MeshConfig) -> Result<Self, MeshError> {
        let peer_id = keypair.public().to_peer_id();
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), keypair.public())
                .with_agent_version(agent_version(&config.name)),
        );
        let ping = ping::Behaviour::new(
            ping::Config::new()
                .with_interval(config.ping_interval)
                .with_timeout(config.ping_interval * 2),
        );
        let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config());
        // Agents are servers of the DHT even without confirmed external addresses (a LAN,
        // loopback in tests); otherwise nobody would answer lookups.
        kad.set_mode(Some(kad::Mode::Server));
        let mdns = if config.mdns {
            let behaviour = mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|err| MeshError::Build(format!("mDNS: {err}")))?;
            Some(behaviour)
        } else {
            None
        };
        let rpc = request_response::Behaviour::with_codec(
            MeshCodec,
            [(RPC_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(256),
        );
        Ok(Self {
            identify,
            ping,
            kad,
            mdns: mdns.into(),
            gossipsub: gossipsub(keypair)?,
            rpc,
        })
    }
}

fn kad_config() -> kad::Config {
    let mut config = kad::Config::new(KAD_PROTOCOL);
    // Rarely: a bootstrap dials up to 20 peers, links an agent that does not vote then
    // closes again (see `links`); membership and heartbeats carry the addresses it needs.
    config.set_periodic_bootstrap_interval(Some(Duration::from_secs(300)));
    config
}

/// Gossipsub with signed messages, strict validation, bounded size and peer scoring in
/// which one invalid message graylists its forwarder for a while.
fn gossipsub(keypair: &Keypair) -> Result<gossipsub::Behaviour, MeshError> {
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(500))
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .validation_mode(ValidationMode::Strict)
        // Every message is decoded by the swarm loop before it is forwarded.
        .validate_messages()
        .build()
        .map_err(|err| MeshError::Build(format!("gossipsub config: {err}")))?;
    let mut behaviour =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(keypair.clone()), config)
            .map_err(|err| MeshError::Build(format!("gossipsub: {err}")))?;
    behaviour
        .with_peer_score(score_params(), PeerScoreThresholds::default())
        .map_err(|err| MeshError::Build(format!("gossipsub scoring: {err}")))?;
    // Both topics at first: an agent that belongs to no cluster yet hears everyone (for
    // formation); the daemon leaves the soft topic once it is a member that does not vote.
    for topic in [GOSSIP_TOPIC, VOTERS_TOPIC] {
        behaviour
            .subscribe(&IdentTopic::new(topic))
            .map_err(|err| MeshError::Build(format!("gossipsub subscribe: {err}")))?;
    }
    Ok(behaviour)
}

fn score_params() -> PeerScoreParams {
    let topic = TopicScoreParams {
        topic_weight: 1.0,
        // Heartbeat traffic is low and bursty: do not punish quiet mesh peers (P3).
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: score = weight * count^2, so one invalid message scores -100, below the
        // graylist threshold (-80); the count decays by 10% a second.
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.9,
        ..TopicScoreParams::default()
    };
    let mut params = PeerScoreParams {
        // Several agents may share a host (demo, tests): do not penalise shared IPs.
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    };
    for name in [GOSSIP_TOPIC, VOTERS_TOPIC] {
        params.topics.insert(IdentTopic::new(name).hash(), topic.clone());
    }
    params
}

/// The identify agent version announcing `name`.
pub fn agent_version(name: &str) -> String {
    format!("{AGENT_VERSION_PREFIX} {name}")
}

/// Who a peer is, from what it announced in identify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerVersion<'a> {
    /// A Saturn agent of this wire version, named.
    Compatible(&'a str),
    /// A Saturn agent of another wire version (an older or newer build): it cannot read this
    /// cluster's log, nor this agent its.
    OtherVersion {
        /// Its name.
        name: &'a str,
        /// Its wire version (`1` for the agents built before versions were announced).
        version: &'a str,
    },
    /// Not a Saturn agent.
    Stranger,
}

/// Classifies a peer by its identify protocol version and agent version.
pub fn peer_version<'a>(protocol_version: &'a str, agent_version: &'a str) -> PeerVersion<'a> {
    let Some(name) = agent_name(agent_version) else { return PeerVersion::Stranger };
    match protocol_version.strip_prefix(IDENTIFY_PREFIX) {
        _ if protocol_version == IDENTIFY_PROTOCOL => PeerVersion::Compatible(name),
        Some(version) if !version.is_empty() => PeerVersion::OtherVersion { name, version },
        _ => PeerVersion::Stranger,
    }
}

/// The agent name inside a peer's identify agent version, if it is a Saturn agent.
pub fn agent_name(agent_version: &str) -> Option<&str> {
    let (prefix, name) = agent_version.split_once(' ')?;
    (prefix.starts_with("saturn-agent/") && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_name_survives_identify_and_strangers_have_none() {
        assert_eq!(agent_name(&agent_version("node a")), Some("node a"));
        assert_eq!(agent_name("rust-libp2p/0.57.0"), None);
        assert_eq!(agent_name("kubo/0.30 node-a"), None);
        assert_eq!(agent_name("saturn-agent/0.1.0 "), None);
    }

    #[test]
    fn a_saturn_agent_of_another_wire_version_is_told_from_a_stranger() {
        let me = agent_version("node-a");
        assert_eq!(peer_version(IDENTIFY_PROTOCOL, &me), PeerVersion::Compatible("node-a"));
        assert_eq!(peer_version("/saturn/id/1", &me), PeerVersion::OtherVersion { name: "node-a", version: "1" });
        assert_eq!(peer_version("/saturn/id/", &me), PeerVersion::Stranger);
        assert_eq!(peer_version("/ipfs/0.1.0", &me), PeerVersion::Stranger);
        assert_eq!(peer_version(IDENTIFY_PROTOCOL, "kubo/0.30 node-a"), PeerVersion::Stranger);
        assert!(IDENTIFY_PROTOCOL.ends_with(&format!("/{}", saturn_consensus::WIRE_VERSION)));
    }
}
