//! [`NodeMetrics`]: what one member knows about the cluster's Raft, in Saturn's words.

use std::collections::{BTreeMap, BTreeSet};

use openraft::ServerState;
use serde::{Deserialize, Serialize};

use crate::node::{AgentNode, NodeId};
use crate::raft_types::RaftMetrics;

/// A member's role in the membership (the `role` of `saturn status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Counts towards quorums.
    Voter,
    /// Holds the full state but does not vote.
    Learner,
    /// Not (yet) in the membership.
    Outsider,
}

/// A member's view of Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMetrics {
    /// This member.
    pub id: NodeId,
    /// The leader this member follows (itself when leading).
    pub leader: Option<NodeId>,
    /// The leader's node record, when it is a member.
    pub leader_node: Option<AgentNode>,
    /// Current term.
    pub term: u64,
    /// Role in the membership.
    pub role: Role,
    /// Whether this member leads now.
    pub is_leader: bool,
    /// Voters of the current membership.
    pub voters: BTreeSet<NodeId>,
    /// Learners of the current membership.
    pub learners: BTreeSet<NodeId>,
    /// Every member's node record.
    pub nodes: BTreeMap<NodeId, AgentNode>,
    /// Index of the last entry in this member's log.
    pub last_log_index: Option<u64>,
    /// On the leader: the highest index a majority of voters has stored, i.e. the commit
    /// index (openraft 0.9 does not publish it, so it is derived from replication
    /// progress). `None` on other members, which only know `applied_index`.
    pub committed_index: Option<u64>,
    /// Index of the last entry applied to its state (every applied entry is committed).
    pub applied_index: Option<u64>,
    /// Last entry included in its latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Last entry purged from its log.
    pub purged_index: Option<u64>,
}

impl NodeMetrics {
    /// Converts openraft's metrics.
    pub fn from_raft(raft: &RaftMetrics) -> Self {
        let membership = raft.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        let nodes: BTreeMap<NodeId, AgentNode> = membership.nodes().map(|(id, node)| (*id, node.clone())).collect();
        let role = if voters.contains(&raft.id) {
            Role::Voter
        } else if learners.contains(&raft.id) {
            Role::Learner
        } else {
            Role::Outsider
        };
        let committed_index = quorum_index(raft, &voters);
        NodeMetrics {
            id: raft.id,
            leader: raft.current_leader,
            leader_node: raft.current_leader.and_then(|id| nodes.get(&id).cloned()),
            term: raft.current_term,
            role,
            is_leader: raft.state == ServerState::Leader,
            voters,
            learners,
            nodes,
            last_log_index: raft.last_log_index,
            committed_index,
            applied_index: raft.last_applied.map(|id| id.index),
            snapshot_index: raft.snapshot.map(|id| id.index),
            purged_index: raft.purged.map(|id| id.index),
        }
    }
}

/// The index stored by a majority of `voters`, from the leader's replication progress.
fn quorum_index(raft: &RaftMetrics, voters: &BTreeSet<NodeId>) -> Option<u64> {
    let replication = raft.replication.as_ref()?;
    let mut stored: Vec<u64> = voters
        .iter()
        .map(|id| match id == &raft.id {
            true => raft.last_log_index.unwrap_or(0),
            false => replication.get(id).copied().flatten().map_or(0, |log_id| log_id.index),
        })
        .collect();
    // Sorted descending, the majority-th value is stored by at least a majority.
    stored.sort_unstable_by(|a, b| b.cmp(a));
    stored.get(voters.len() / 2).copied()
}
