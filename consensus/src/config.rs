//! How a consensus node is tuned: Raft timings, snapshot policy, proposal deadline.

use std::time::Duration;

use crate::node::{node_id_for_peer, AgentNode, NodeId};

/// Configuration of one [`ConsensusNode`](crate::ConsensusNode).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This member; its Raft id is [`node_id_for_peer`] of its peer id.
    pub node: AgentNode,
    /// Leader heartbeat period.
    pub heartbeat_interval: Duration,
    /// Election timeout range: a follower that hears no leader for a random time in
    /// `[min, max)` starts an election.
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot once this many entries were applied since the last one.
    pub snapshot_every_logs: u64,
    /// Entries kept in the log behind a snapshot (so slightly lagging members catch up
    /// from the log instead of a full snapshot); older ones are purged.
    pub logs_kept_after_snapshot: u64,
    /// How long [`propose`](crate::ConsensusNode::propose) keeps retrying (leader
    /// unknown, leader changing) before it gives up.
    pub propose_timeout: Duration,
}

impl NodeConfig {
    /// Defaults for a LAN mesh: 150 ms heartbeats, elections after about 1.2–1.8 s of silence.
    ///
    /// openraft 0.9 adds a leader lease of `election_timeout.1` before a follower's own
    /// random timeout (and checks timers every 1.5 heartbeats), so a follower that heard
    /// the leader last at `t` stands for election at `t + max + [min, max)` plus a tick:
    /// 1.2–1.8 s here, where 1–2 s gave 3–4 s (leader failover measured by
    /// `tests/examples/mesh_bench.rs`). Still five or more heartbeats of silence before
    /// anyone stands, and an AppendEntries (its timeout is one heartbeat) of 150 ms.
    pub fn new(node: AgentNode) -> Self {
        NodeConfig {
            node,
            heartbeat_interval: Duration::from_millis(150),
            election_timeout: (Duration::from_millis(400), Duration::from_millis(800)),
            snapshot_every_logs: 5000,
            logs_kept_after_snapshot: 1000,
            propose_timeout: Duration::from_secs(10),
        }
    }

    /// Fast timings for in-process tests: 50 ms heartbeats, elections after 150–300 ms.
    pub fn fast(node: AgentNode) -> Self {
        NodeConfig {
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
            propose_timeout: Duration::from_secs(5),
            ..NodeConfig::new(node)
        }
    }

    /// This member's Raft node id.
    pub fn node_id(&self) -> NodeId {
        node_id_for_peer(&self.node.peer_id)
    }

    /// The openraft configuration, validated.
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, Box<openraft::ConfigError>> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = openraft::Config {
            cluster_name: "saturn".to_string(),
            heartbeat_interval: millis(self.heartbeat_interval),
            election_timeout_min: millis(self.election_timeout.0),
            election_timeout_max: millis(self.election_timeout.1),
            // A snapshot chunk must arrive well within this even on a slow link.
            install_snapshot_timeout: millis(self.election_timeout.1).max(1000),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every_logs),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            ..Default::default()
        };
        config.validate().map_err(Box::new)
    }
}
