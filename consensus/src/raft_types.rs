//! The openraft type configuration and the aliases the rest of the crate uses.

use std::io::Cursor;

use crate::command::CommandResult;
use crate::proposal::Proposal;
use crate::node::{AgentNode, NodeId};

openraft::declare_raft_types!(
    /// Saturn's Raft types: a log entry carries a batch of [`Proposal`]s (commands with a
    /// retry id; concurrent proposals are group-committed), apply returns one [`CommandResult`] per
    /// proposal, members are [`AgentNode`]s with `u64` ids, snapshots are
    /// in-memory byte buffers (the state is small: jobs, profiles, a plan).
    pub TypeConfig:
        D = Vec<Proposal>,
        R = Vec<CommandResult>,
        NodeId = NodeId,
        Node = AgentNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft instance of Saturn.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// Stored membership (membership plus the log id that set it).
pub type StoredMembership = openraft::StoredMembership<NodeId, AgentNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, AgentNode>;
/// A snapshot with its data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// Raft metrics.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, AgentNode>;
