//! A small harness for mesh scenarios: agents on loopback with mDNS off, whose events
//! are recorded and whose inbound requests are answered by a scripted responder.
//!
//! Responder script, by channel: `Raft` echoes the body, `Logs` answers the agent's
//! name, `Checkpoint` drops the request unanswered.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use saturn_agent::mesh::{
    self, Channel, Gossip, MeshConfig, MeshEvent, MeshHandle, MeshResponse, Multiaddr, PeerId,
    PreSharedKey,
};
use tempfile::TempDir;

/// How long any scenario step may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What an agent's daemon has seen so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// Peers identified, with the names they announced.
    pub names: HashMap<PeerId, String>,
    /// Gossip received, with its author.
    pub gossip: Vec<(PeerId, Gossip)>,
    /// Peers whose last connection closed.
    pub disconnected: Vec<PeerId>,
}

/// One running agent mesh with its recorded events.
pub struct Agent {
    pub name: String,
    pub handle: MeshHandle,
    pub seen: Arc<Mutex<Seen>>,
    pub dir: TempDir,
    /// Events of an agent whose daemon never reads them (see [`AgentSpec::start_asleep`]).
    pub unread_events: Option<tokio::sync::mpsc::Receiver<MeshEvent>>,
}

/// How to start a test agent.
pub struct AgentSpec {
    pub name: &'static str,
    pub join: Vec<Multiaddr>,
    pub cluster_key: Option<PreSharedKey>,
    pub dir: Option<TempDir>,
    pub event_capacity: usize,
}

impl AgentSpec {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            join: Vec::new(),
            cluster_key: None,
            dir: None,
            event_capacity: 1024,
        }
    }

    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    pub fn join(mut self, addr: Multiaddr) -> Self {
        self.join.push(addr);
        self
    }

    pub fn key(mut self, key: PreSharedKey) -> Self {
        self.cluster_key = Some(key);
        self
    }

    pub fn dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Starts the agent with a daemon that records events and answers requests.
    pub async fn start(self) -> Agent {
        let mut agent = self.start_asleep().await;
        let events = agent.unread_events.take().expect("events");
        tokio::spawn(run_daemon(agent.name.clone(), events, agent.seen.clone()));
        agent
    }

    /// Starts the agent with a daemon that never reads its events.
    pub async fn start_asleep(self) -> Agent {
        let dir = match self.dir {
            Some(dir) => dir,
            None => TempDir::new().expect("temp dir"),
        };
        let keypair = mesh::load_or_create_keypair(dir.path()).expect("node key");
        let mut config = MeshConfig::new(self.name, keypair);
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
        config.join = self.join;
        config.cluster_key = self.cluster_key;
        config.mdns = false;
        config.request_timeout = Duration::from_secs(10);
        config.rejoin_interval = Duration::from_millis(200);
        config.event_capacity = self.event_capacity;
        let (handle, events) = mesh::spawn(config).await.expect("mesh starts");
        Agent {
            name: self.name.to_owned(),
            handle,
            seen: Arc::new(Mutex::new(Seen::default())),
            dir,
            unread_events: Some(events),
        }
    }
}

async fn run_daemon(
    name: String,
    mut events: tokio::sync::mpsc::Receiver<MeshEvent>,
    seen: Arc<Mutex<Seen>>,
) {
    while let Some(event) = events.recv().await {
        let mut seen = seen.lock().expect("lock");
        match event {
            MeshEvent::PeerIdentified { peer, name, .. } => {
                seen.names.insert(peer, name);
            }
            MeshEvent::PeerDisconnected { peer } => seen.disconnected.push(peer),
            MeshEvent::Gossip { from, gossip } => seen.gossip.push((from, gossip)),
            MeshEvent::Request(request) => match request.request.channel {
                Channel::Raft => {
                    let body = request.request.body.clone();
                    request.respond(MeshResponse::Ok(body));
                }
                Channel::Logs => {
                    request.respond(MeshResponse::Ok(name.clone().into_bytes()));
                }
                Channel::Checkpoint => drop(request),
            },
        }
    }
}

impl Agent {
    pub fn peer_id(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    /// The agent's address with `/p2p/<peer id>`.
    pub async fn addr(&self) -> Multiaddr {
        self.tcp_addr()
            .await
            .with_p2p(self.peer_id())
            .expect("p2p suffix")
    }

    /// The agent's address without `/p2p`.
    pub async fn tcp_addr(&self) -> Multiaddr {
        let addrs = self.handle.listen_addrs().await.expect("listen addrs");
        addrs.into_iter().next().expect("one listen address")
    }

    /// The TCP port the agent listens on.
    pub async fn port(&self) -> u16 {
        let addr = self.tcp_addr().await;
        addr.iter()
            .find_map(|protocol| match protocol {
                Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .expect("a TCP listen address")
    }

    /// The name this agent learned for `peer`, if identified.
    pub fn name_of(&self, peer: &PeerId) -> Option<String> {
        self.seen.lock().expect("lock").names.get(peer).cloned()
    }

    /// Gossip this agent received from `author`.
    pub fn gossip_from(&self, author: &PeerId) -> Vec<Gossip> {
        let seen = self.seen.lock().expect("lock");
        seen.gossip
            .iter()
            .filter(|(from, _)| from == author)
            .map(|(_, g)| g.clone())
            .collect()
    }
}

/// Polls `check` until it holds, failing the test after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
