//! The agent's peer-to-peer mesh: one libp2p swarm, owned by one task, driven through a
//! [`MeshHandle`] and reporting [`MeshEvent`]s.
//!
//! Map:
//! - [`config`]: [`MeshConfig`], what the daemon passes at start.
//! - [`identity`]: the persistent node key (`<data_dir>/node.key`), hence the peer id.
//! - [`cluster_key`]: the `--cluster-key-file` pre-shared key (swarm.key format).
//! - [`transport`]: TCP (+ private network) + noise + yamux.
//! - [`behaviour`]: identify, ping, kad, mDNS, gossipsub and request-response together.
//! - [`codec`]: request-response envelopes ([`MeshRequest`], [`MeshResponse`]) and their
//!   bounded wire format.
//! - [`gossip`]: the soft state gossiped on `saturn/v1/soft` ([`Gossip`]).
//! - [`event`]: what the daemon receives ([`MeshEvent`], [`InboundRequest`]).
//! - [`handle`]: what the daemon calls ([`MeshHandle`]).
//! - [`links`]: which connections an agent keeps ([`LinkPolicy`]).
//! - `swarm_loop`, `swarm_events`: the task that owns the swarm.
//!
//! ```no_run
//! # async fn demo(data_dir: &std::path::Path) -> Result<(), saturn_agent::mesh::MeshError> {
//! use saturn_agent::mesh::{self, MeshConfig, MeshEvent, MeshResponse};
//! let keypair = mesh::load_or_create_keypair(data_dir)?;
//! let config = MeshConfig::new("node-a", keypair);
//! let (handle, mut events) = mesh::spawn(config).await?;
//! while let Some(event) = events.recv().await {
//!     if let MeshEvent::Request(request) = event {
//!         // Answer from another task if it takes time; the mesh keeps running.
//!         request.respond(MeshResponse::Ok(Vec::new()));
//!     }
//! }
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

// libp2p's `NetworkBehaviour` derive generates an event enum without doc comments.
#[allow(missing_docs)]
pub mod behaviour;
pub mod cluster_key;
pub mod codec;
pub mod config;
mod error;
pub mod event;
pub mod gossip;
pub mod handle;
pub mod identity;
pub mod links;
mod swarm_events;
mod swarm_loop;
pub mod transport;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::gossipsub::IdentTopic;
use libp2p::swarm::SwarmEvent;
use libp2p::{Swarm, SwarmBuilder};
use tokio::sync::mpsc;

pub use cluster_key::{generate_cluster_key, read_cluster_key, write_cluster_key, PreSharedKey};
pub use codec::{Channel, MeshRequest, MeshResponse, MAX_RPC_BYTES};
pub use config::MeshConfig;
pub use error::MeshError;
pub use event::{InboundRequest, MeshEvent, PeerInfo, Responder};
pub use gossip::{Gossip, GpuLoad, Heartbeat, Topic, GOSSIP_TOPIC, MAX_GOSSIP_BYTES, VOTERS_TOPIC};
pub use handle::{MeshHandle, MeshStats};
pub use identity::load_or_create_keypair;
pub use links::LinkPolicy;
pub use libp2p::{Multiaddr, PeerId};

use behaviour::MeshBehaviour;
use handle::Counters;
use swarm_loop::SwarmLoop;

/// How long [`spawn`] waits for the listeners to report their addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a wildcard listener may take, after its first address, to report the rest.
const WILDCARD_SETTLE: Duration = Duration::from_secs(2);

/// Capacity of the command channel from the handles.
const COMMAND_CAPACITY: usize = 256;

/// Starts the mesh: builds the swarm, listens (waiting until every listen address is
/// bound, so that [`MeshHandle::listen_addrs`] is complete), dials the join addresses and
/// spawns the task that owns the swarm. Must be called inside a tokio runtime.
pub async fn spawn(
    config: MeshConfig,
) -> Result<(MeshHandle, mpsc::Receiver<MeshEvent>), MeshError> {
    let mut swarm = build_swarm(&config)?;
    listen(&mut swarm, &config).await?;
    let (commands_tx, commands) = mpsc::channel(COMMAND_CAPACITY);
    let (events_tx, events) = mpsc::channel(config.event_capacity.max(1));
    let counters = Arc::new(Counters::default());
    let local_peer_id = *swarm.local_peer_id();
    let mut task = SwarmLoop {
        swarm,
        commands,
        events: events_tx,
        pending_events: VecDeque::new(),
        outbound: HashMap::new(),
        replies: FuturesUnordered::new(),
        peers: HashMap::new(),
        other_versions: HashMap::new(),
        join: config.join.clone(),
        topic: IdentTopic::new(GOSSIP_TOPIC),
        voters_topic: IdentTopic::new(VOTERS_TOPIC),
        request_timeout: config.request_timeout,
        rejoin_interval: config.rejoin_interval,
        max_discovery_links: config.max_discovery_links,
        counters: counters.clone(),
        links: links::Links::default(),
    };
    for addr in &config.join {
        // A join address that is down now is retried while we are alone.
        if let Err(err) = task.dial_addr(addr.clone()) {
            tracing::warn!(%err, "cannot join");
        }
    }
    tracing::info!(peer_id = %local_peer_id, name = %config.name, "mesh started");
    tokio::spawn(task.run());
    let handle = MeshHandle {
        commands: commands_tx,
        local_peer_id,
        request_timeout: config.request_timeout,
        counters,
    };
    Ok((handle, events))
}

fn build_swarm(config: &MeshConfig) -> Result<Swarm<MeshBehaviour>, MeshError> {
    let transport = transport::build_transport(&config.keypair, config.cluster_key)?;
    let behaviour = MeshBehaviour::new(&config.keypair, config)?;
    let swarm = SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|never| match never {})?
        .with_behaviour(|_| behaviour)
        .map_err(|never| match never {})?
        // Agents keep their links: a cluster is a handful of hosts, and Raft and gossip
        // want them open; dead links are found by ping.
        .with_swarm_config(|swarm| {
            swarm.with_idle_connection_timeout(Duration::from_secs(u64::MAX))
        })
        .build();
    Ok(swarm)
}

/// How many addresses a listener on `addr` reports: one, or for a wildcard
/// (`/ip4/0.0.0.0`, `/ip6/::`) one per address of that family on this host's interfaces.
fn expected_addresses(addr: &libp2p::Multiaddr) -> usize {
    use libp2p::multiaddr::Protocol;
    let family_v4 = match addr.iter().next() {
        Some(Protocol::Ip4(ip)) if ip.is_unspecified() => true,
        Some(Protocol::Ip6(ip)) if ip.is_unspecified() => false,
        _ => return 1,
    };
    let count = if_addrs::get_if_addrs()
        .map(|interfaces| interfaces.iter().filter(|i| i.ip().is_ipv4() == family_v4).count())
        .unwrap_or(1);
    count.max(1)
}

/// Listens on every configured address and waits until each is bound and, for a
/// wildcard, has reported every address of the host (or [`WILDCARD_SETTLE`] after its
/// first): the addresses the agent announces are read right after this, and a gang's
/// `MASTER_ADDR` must be one its peers can reach, not only loopback.
async fn listen(swarm: &mut Swarm<MeshBehaviour>, config: &MeshConfig) -> Result<(), MeshError> {
    let mut waiting = HashMap::new();
    let mut expected = HashMap::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|err| MeshError::Listen {
                addr: addr.to_string(),
                reason: err.to_string(),
            })?;
        waiting.insert(id, addr.clone());
        expected.insert(id, expected_addresses(addr));
    }
    let mut reported: HashMap<_, usize> = HashMap::new();
    let mut settle_at: Option<tokio::time::Instant> = None;
    let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
    while expected.iter().any(|(id, want)| reported.get(id).copied().unwrap_or(0) < *want) {
        let all_bound = reported.len() == waiting.len();
        let until = if all_bound { settle_at.unwrap_or(deadline).min(deadline) } else { deadline };
        let Ok(event) = tokio::time::timeout_at(until, swarm.select_next_some()).await else {
            if all_bound {
                tracing::debug!(?reported, ?expected, "a wildcard listener reported fewer addresses than the host has");
                break;
            }
            return Err(MeshError::Listen {
                addr: format!("{:?}", waiting.values().collect::<Vec<_>>()),
                reason: "no address bound in time".into(),
            });
        };
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "mesh listening");
                *reported.entry(listener_id).or_default() += 1;
                settle_at.get_or_insert_with(|| tokio::time::Instant::now() + WILDCARD_SETTLE);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } if waiting.contains_key(&listener_id) => {
                return Err(listen_failed(&waiting, listener_id, format!("{reason:?}")));
            }
            SwarmEvent::ListenerError {
                listener_id, error, ..
            } if waiting.contains_key(&listener_id) => {
                return Err(listen_failed(&waiting, listener_id, error.to_string()));
            }
            // Nothing is connected yet; nothing else can happen that matters.
            other => tracing::debug!(?other, "event before listening"),
        }
    }
    Ok(())
}

fn listen_failed(
    waiting: &HashMap<libp2p::core::transport::ListenerId, libp2p::Multiaddr>,
    listener: libp2p::core::transport::ListenerId,
    reason: String,
) -> MeshError {
    MeshError::Listen {
        addr: waiting
            .get(&listener)
            .map(ToString::to_string)
            .unwrap_or_default(),
        reason,
    }
}
