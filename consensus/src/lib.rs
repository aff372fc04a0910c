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
//! - [`raft_types`]: the openraft [`TypeConfig`].
#![deny(missing_docs)]

pub mod apply;
pub mod command;
pub mod job;
pub mod node;
pub mod raft_types;
pub mod serde_seq;
pub mod state;

pub use command::{
    Attempt, AttemptEvent, Command, CommandResult, DispatchKind, JobPhase, PlannedAssignment, ProfileKey,
    ProfileResult, Rejection, StoredPlan, STEP_TIME_METRIC,
};
pub use job::{HostGpus, JobId, JobSpec, Placement};
pub use node::{node_id_for_peer, AgentNode, GpuInfo, NodeId};
pub use raft_types::TypeConfig;
pub use state::{AgentRecord, AttemptStatus, ClusterState, Counters, GpuHolder, GpuSlot, JobRecord, JobState, LiveAttempt};
