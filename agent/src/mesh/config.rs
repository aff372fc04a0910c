//! What the daemon tells the mesh at start.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use libp2p::Multiaddr;

/// Configuration of one agent's mesh.
#[derive(Clone)]
pub struct MeshConfig {
    /// Agent name (`--name`), announced to peers through identify.
    pub name: String,
    /// The agent's identity; load it with [`super::load_or_create_keypair`].
    pub keypair: Keypair,
    /// Addresses to listen on (`--listen`); `/ip4/127.0.0.1/tcp/0` picks a free port.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through (`--join`), with or without a `/p2p/<peer id>` suffix.
    pub join: Vec<Multiaddr>,
    /// Pre-shared cluster key (`--cluster-key-file`); `None` runs an open mesh.
    pub cluster_key: Option<PreSharedKey>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Default timeout of [`super::MeshHandle::request`], and how long an inbound request
    /// may wait for the daemon's answer.
    pub request_timeout: Duration,
    /// Capacity of the event channel to the daemon; gossip beyond it is dropped.
    pub event_capacity: usize,
    /// While no peer is connected, the join addresses are dialled again this often, so
    /// agents started in any order find each other.
    pub rejoin_interval: Duration,
    /// Ping interval; a peer that misses a ping for `2 * ping_interval` is disconnected.
    pub ping_interval: Duration,
    /// Peers dialled because discovery (Kademlia) found them, at most: links cost pings,
    /// identify and gossip control traffic each, so a full mesh makes every agent's cost
    /// grow with the mesh. Requests dial whom they need regardless.
    pub max_discovery_links: usize,
}

impl MeshConfig {
    /// A configuration with the defaults: listen on `/ip4/0.0.0.0/tcp/7946`, no join
    /// addresses, no cluster key, mDNS on.
    pub fn new(name: impl Into<String>, keypair: Keypair) -> Self {
        Self {
            name: name.into(),
            keypair,
            listen: vec![default_listen_addr()],
            join: Vec::new(),
            cluster_key: None,
            mdns: true,
            request_timeout: Duration::from_secs(30),
            event_capacity: 1024,
            rejoin_interval: Duration::from_secs(2),
            ping_interval: Duration::from_secs(5),
            max_discovery_links: 8,
        }
    }
}

impl std::fmt::Debug for MeshConfig {
    // By hand, so that the keys never end up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshConfig")
            .field("name", &self.name)
            .field("peer_id", &self.keypair.public().to_peer_id())
            .field("listen", &self.listen)
            .field("join", &self.join)
            .field(
                "cluster_key",
                &self.cluster_key.map(|key| key.fingerprint().to_string()),
            )
            .field("mdns", &self.mdns)
            .field("request_timeout", &self.request_timeout)
            .field("event_capacity", &self.event_capacity)
            .finish_non_exhaustive()
    }
}

/// `/ip4/0.0.0.0/tcp/7946`, the spec's default `--listen`.
pub fn default_listen_addr() -> Multiaddr {
    Multiaddr::empty()
        .with(libp2p::multiaddr::Protocol::Ip4(
            std::net::Ipv4Addr::UNSPECIFIED,
        ))
        .with(libp2p::multiaddr::Protocol::Tcp(7946))
}
