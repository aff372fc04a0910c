//! Watches Raft for leader changes: counts them (for `/v1/status`) and logs them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use saturn_consensus::ConsensusNode;

/// Counts leader changes and logs them.
pub async fn watch_raft(node: Arc<ConsensusNode>, leader_changes: Arc<AtomicU64>) {
    let mut metrics = node.raft_metrics();
    let mut leader = None;
    loop {
        let current = metrics.borrow().current_leader;
        if current != leader && current.is_some() {
            leader_changes.fetch_add(1, Ordering::Relaxed);
            let name = node.metrics().leader_node.map(|n| n.name).unwrap_or_default();
            tracing::info!(leader = %name, term = metrics.borrow().current_term, "leader elected");
        }
        leader = current;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
