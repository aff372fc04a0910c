//! A small in-process cluster for scenario tests: real redb storage in temp dirs, the
//! in-memory transport, fast Raft timings, and waits that poll with deadlines.
#![allow(dead_code)] // each test file uses part of the harness

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use saturn_consensus::mem_transport::MemRouter;
use saturn_consensus::{AgentNode, ClusterState, ConsensusNode, NodeConfig, NodeId, StartError};
use tempfile::TempDir;
use tokio::time::Instant;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The node record of test agent number `i`.
pub fn agent(i: usize) -> AgentNode {
    AgentNode { name: format!("node-{i}"), peer_id: format!("peer-{i}"), addrs: vec![format!("/memory/{i}")] }
}

/// A set of members sharing one simulated network.
pub struct Cluster {
    pub router: MemRouter,
    root: TempDir,
    pub configs: BTreeMap<NodeId, NodeConfig>,
    pub nodes: BTreeMap<NodeId, ConsensusNode>,
    /// Ids in creation order: `ids[i]` is agent `i`.
    pub ids: Vec<NodeId>,
}

impl Cluster {
    /// Starts `n` members (not yet a cluster).
    pub async fn start(n: usize, seed: u64) -> Cluster {
        Self::start_with(n, seed, |_| {}).await
    }

    /// Starts `n` members with a config tweak.
    pub async fn start_with(n: usize, seed: u64, tweak: impl Fn(&mut NodeConfig)) -> Cluster {
        let root = tempfile::tempdir().expect("temp dir for the test cluster");
        let mut cluster =
            Cluster { router: MemRouter::new(seed), root, configs: BTreeMap::new(), nodes: BTreeMap::new(), ids: vec![] };
        for i in 0..n {
            let mut config = NodeConfig::fast(agent(i));
            tweak(&mut config);
            cluster.add(config).await;
        }
        cluster
    }

    /// Starts `n` members and forms a cluster with all of them as voters.
    pub async fn form(n: usize, seed: u64) -> Cluster {
        let cluster = Self::start(n, seed).await;
        cluster.initialize_all().await;
        cluster
    }

    /// Initialises the cluster from the first member with every member as a voter, and
    /// waits for a leader.
    pub async fn initialize_all(&self) {
        let voters: BTreeMap<NodeId, AgentNode> =
            self.configs.iter().map(|(id, config)| (*id, config.node.clone())).collect();
        self.node(self.ids[0]).initialize(voters).await.expect("initialize");
        self.wait_leader(&self.ids).await;
    }

    /// Adds and starts one more member.
    pub async fn add(&mut self, config: NodeConfig) -> NodeId {
        let id = config.node_id();
        self.configs.insert(id, config);
        self.ids.push(id);
        self.restart(id).await;
        id
    }

    fn dir(&self, id: NodeId) -> PathBuf {
        self.root.path().join(id.to_string())
    }

    /// Starts member `id` from its directory. A killed member's storage is released only
    /// once its Raft core noticed it was dropped, so opening is retried until then.
    pub async fn restart(&mut self, id: NodeId) {
        let config = self.configs[&id].clone();
        let deadline = Instant::now() + WAIT;
        let node = loop {
            match ConsensusNode::start(config.clone(), &self.dir(id), self.router.transport(id)).await {
                Ok(node) => break node,
                Err(StartError::Storage(e)) if Instant::now() < deadline => {
                    tracing::debug!("storage of {id} still held: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("restarting {id}: {e}"),
            }
        };
        self.router.serve(id, node.server());
        self.nodes.insert(id, node);
    }

    /// Kills member `id` like `kill -9`: no shutdown, it just stops answering.
    pub fn kill(&mut self, id: NodeId) {
        self.router.remove(id);
        self.nodes.remove(&id);
    }

    pub fn node(&self, id: NodeId) -> &ConsensusNode {
        &self.nodes[&id]
    }

    /// Waits until every live member of `among` names the same leader, itself in `among`.
    pub async fn wait_leader(&self, among: &[NodeId]) -> NodeId {
        let live: Vec<NodeId> = among.iter().copied().filter(|id| self.nodes.contains_key(id)).collect();
        self.poll("a common leader", || {
            let leaders: BTreeSet<Option<NodeId>> = live.iter().map(|id| self.node(*id).metrics().leader).collect();
            match leaders.into_iter().collect::<Vec<_>>().as_slice() {
                [Some(leader)] if live.contains(leader) && self.node(*leader).is_leader() => Some(*leader),
                _ => None,
            }
        })
        .await
    }

    /// Waits until some live member leads, and returns it (the one of the highest term if
    /// a deposed leader has not noticed yet). Members outside the cluster are ignored.
    pub async fn find_leader(&self) -> NodeId {
        self.poll("some leader", || {
            let leaders = self.nodes.values().filter(|node| node.is_leader());
            leaders.max_by_key(|node| node.metrics().term).map(|node| node.id())
        })
        .await
    }

    /// Waits until every member in `ids` has applied at least `index`.
    pub async fn wait_applied(&self, ids: &[NodeId], index: u64) {
        for id in ids {
            let what = format!("node {id} to apply index {index}");
            self.node(*id).raft().wait(Some(WAIT)).applied_index_at_least(Some(index), what).await.expect("applied");
        }
    }

    /// The highest applied index among `ids`.
    pub fn max_applied(&self, ids: &[NodeId]) -> u64 {
        ids.iter().filter_map(|id| self.nodes.get(id)?.metrics().applied_index).max().unwrap_or(0)
    }

    /// Waits until every live member has applied everything any of them applied, and
    /// returns their states (which must then be identical).
    pub async fn converge(&self) -> Vec<ClusterState> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let index = self.max_applied(&ids);
        self.wait_applied(&ids, index).await;
        ids.iter().map(|id| self.node(*id).state()).collect()
    }

    /// Polls `check` every 10 ms until it returns `Some`, failing the test after [`WAIT`].
    pub async fn poll<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        poll(what, &mut check).await
    }
}

/// Polls `check` every 10 ms until it returns `Some`, failing the test after [`WAIT`].
pub async fn poll<T>(what: &str, check: &mut impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("off"));
    let _already_set = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}
