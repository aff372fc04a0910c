//! [`Cluster`] over the agent's consensus node.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use saturn_consensus::{ClusterState, Command, CommandResult, ConsensusNode};
use tokio::sync::watch;

use super::{Cluster, HostView, Unavailable};

/// The running agent's cluster: its consensus node.
pub struct NodeCluster {
    node: Arc<ConsensusNode>,
    /// The last state copy handed out, with the applied index it was taken at: copies are
    /// made at most once per apply however many readers ask.
    cache: Mutex<(u64, Arc<ClusterState>)>,
}

impl NodeCluster {
    /// The cluster as `node` sees it.
    pub fn new(node: Arc<ConsensusNode>) -> Self {
        NodeCluster { node, cache: Mutex::new((u64::MAX, Arc::new(ClusterState::default()))) }
    }
}

#[async_trait]
impl Cluster for NodeCluster {
    fn state(&self) -> Arc<ClusterState> {
        let applied = *self.node.subscribe().borrow();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != applied {
            *cache = (applied, Arc::new(self.node.state()));
        }
        cache.1.clone()
    }

    fn host_view(&self, host: &str) -> HostView {
        // Read in place under the state's lock: the copy is of this host's few jobs only.
        self.node.read(|state| HostView::of(state, host))
    }

    fn is_leader(&self) -> bool {
        self.node.is_leader()
    }

    async fn propose(&self, command: Command) -> Result<CommandResult, Unavailable> {
        self.node.propose(command).await.map_err(|e| Unavailable(e.to_string()))
    }

    fn applied(&self) -> watch::Receiver<u64> {
        self.node.subscribe()
    }
}
