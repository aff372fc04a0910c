//! Saturn's replicated cluster state.
//!
//! Every agent holds the same Raft log; applying it yields the same [`ClusterState`]
//! on every agent, so any agent can take over scheduling.
//!
//! # Map
//! - [`job`]: what a user submits ([`JobSpec`]), job ids, placements.
//! - [`node`]: cluster members ([`AgentNode`]), [`node_id_for_peer`], [`GpuInfo`].
//! - [`command`]: [`Command`] (the only way state changes) and [`CommandResult`].
//! - [`state`]: [`ClusterState`] and its records and queries; [`apply`] holds the
//!   deterministic transitions ([`ClusterState::apply`]).
//! - [`proposal`]: what a log entry carries; retry de-duplication.
//! - [`membership`]: pure membership policy (formation, learners, odd voter set).
//! - `batcher` (internal): group commit of concurrent proposals into one log entry.
//! - [`raft_types`]: the openraft [`TypeConfig`].
//! - [`codec`]: the bincode encoding used on disk and on the wire.
//! - [`storage`]: durable log, vote and snapshots in redb; the in-memory state machine.
#![deny(missing_docs)]

pub mod apply;
mod batcher;
pub mod codec;
pub mod command;
pub mod config;
pub mod consensus_node;
pub mod job;
pub mod mem_transport;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod proposal;
pub mod raft_types;
pub mod rpc;
pub mod serde_seq;
pub mod server;
pub mod state;
pub mod storage;
pub mod transport;

pub use command::{
    Attempt, AttemptEvent, Command, CommandResult, DispatchKind, JobPhase, PlannedAssignment, ProfileKey,
    ProfileResult, Rejection, StoredPlan, STEP_TIME_METRIC,
};
pub use job::{HostGpus, JobId, JobSpec, Placement};
pub use node::{node_id_for_peer, AgentNode, GpuInfo, NodeId};
pub use raft_types::TypeConfig;
pub use state::{AgentRecord, AttemptStatus, ClusterState, Counters, GpuHolder, GpuSlot, JobRecord, JobState, LiveAttempt};
pub use config::NodeConfig;
pub use consensus_node::{ConsensusNode, MembershipError, ProposeError, ShutdownError, StartError};
pub use metrics::{NodeMetrics, Role};
pub use rpc::{ForwardError, RaftRequest, RaftResponse};
pub use server::RaftServer;
pub use transport::{Transport, TransportError};
