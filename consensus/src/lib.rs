//! Saturn's replicated cluster state.
//!
//! Every agent holds the same Raft log (openraft 0.9, durable in redb); applying it yields
//! the same [`ClusterState`] on every agent, so any agent can take over scheduling. The
//! crate does no networking itself: members talk through a [`Transport`] (libp2p in the
//! agent, [`mem_transport`] in tests).
//!
//! # Using it
//! ```no_run
//! # use std::sync::Arc;
//! # use saturn_consensus::*;
//! # async fn example(transport: Arc<dyn Transport>, me: AgentNode) -> Result<(), Box<dyn std::error::Error>> {
//! let node = ConsensusNode::start(NodeConfig::new(me.clone()), "./saturn-data/raft".as_ref(), transport).await?;
//! // Route every incoming RaftRequest to node.server().handle(request).await.
//! let server: RaftServer = node.server();
//! // Exactly one agent forms the cluster (see membership::formation).
//! node.initialize([(node.id(), me)].into()).await?;
//! // Any member may propose; followers forward to the leader.
//! let CommandResult::Submitted { jobs } = node.propose(Command::SubmitJobs { specs: vec![], at_ms: 0 }).await? else {
//!     return Ok(());
//! };
//! // Executors wait for applies and reconcile against the state.
//! let mut applied = node.subscribe();
//! applied.changed().await?;
//! let running_here = node.read(|state| state.attempts_on_host("node-a").count());
//! # let _ = (server, jobs, running_here);
//! # Ok(()) }
//! ```
//!
//! # Rules the state machine enforces (whoever proposes)
//! Ids, attempt numbers and plan epochs are assigned at apply; a job never has two live
//! attempts; a GPU is held by at most one live attempt and is freed only by that
//! attempt's `Exited` or by its host being declared down; events naming a stale attempt
//! are ignored. Apply reads no clock: timestamps (`at_ms`) come inside commands.
//!
//! # Map
//! - [`job`]: what a user submits ([`JobSpec`]), job ids, placements.
//! - [`early_stop`]: a sweep's early-stopping rule and the metric recorded at its rungs.
//! - [`node`]: cluster members ([`AgentNode`]), [`node_id_for_peer`], [`GpuInfo`].
//! - [`command`]: [`Command`] (the only way state changes), [`CommandResult`], [`Rejection`].
//! - [`state`]: [`ClusterState`] and its records and queries; [`apply`] holds the
//!   deterministic transitions ([`ClusterState::apply`]).
//! - [`checkpoint`]: per-job checkpoint records ([`CheckpointRecord`]) and job notes.
//! - [`proposal`]: what a log entry carries; retry de-duplication.
//! - [`consensus_node`]: [`ConsensusNode`], the handle (propose, read, watch, metrics,
//!   membership, shutdown); [`config`]: [`NodeConfig`]; [`metrics`]: [`NodeMetrics`].
//! - [`cluster_id`]: the cluster's id, carried by every message and checked on arrival.
//! - [`membership`]: pure membership policy (formation, learners, odd voter set).
//! - [`rpc`], [`transport`], [`server`]: the wire messages, the [`Transport`] trait a
//!   mesh implements, and [`RaftServer::handle`] for incoming requests.
//! - [`mem_transport`]: in-process transport with faults, for tests and benchmarks.
//! - `batcher` (internal): group commit of concurrent proposals into one log entry.
//! - [`raft_types`]: the openraft [`TypeConfig`].
//! - [`codec`]: the bincode encoding used on disk and on the wire.
//! - [`storage`]: durable log, vote and snapshots in redb; the in-memory state machine.
#![deny(missing_docs)]

/// The version of what agents exchange that an agent of another version cannot read: the
/// Raft log and snapshots (bincode of [`Command`] and [`ClusterState`]) and the RPC envelopes.
/// It names the mesh's identify and request-response protocols (`/saturn/id/<v>`,
/// `/saturn/rpc/<v>`), so agents of different versions refuse each other on connect, with a
/// warning that says so, instead of stalling on entries they cannot decode. Bump it with
/// every change to those encodings (a variant appended, a field added); the
/// `wire_version_follows_the_encoding` test of `tests/log_encoding.rs` fails until you do.
/// A macro so that protocol names can be built with `concat!`.
#[macro_export]
macro_rules! wire_version {
    () => {
        "2"
    };
}

/// [`wire_version!`] as a constant.
pub const WIRE_VERSION: &str = wire_version!();

pub mod apply;
mod batcher;
pub mod cluster_id;
pub mod checkpoint;
pub mod codec;
pub mod command;
pub mod config;
pub mod consensus_node;
pub mod early_stop;
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
pub use early_stop::{EarlyStop, MetricMode, RungRecord, StopRule};
pub use checkpoint::{CheckpointRecord, JobNote};
pub use job::{HostGpus, JobId, JobSpec, Placement};
pub use node::{node_id_for_peer, AgentNode, GpuInfo, NodeId};
pub use raft_types::TypeConfig;
pub use state::{
    AgentRecord, AttemptStatus, ClusterState, Counters, GpuHolder, GpuSlot, JobRecord, JobState, LiveAttempt,
};
pub use config::NodeConfig;
pub use consensus_node::{ConsensusNode, MembershipError, ProposeError, ShutdownError, StartError};
pub use metrics::{NodeMetrics, Role};
pub use cluster_id::{ClusterGuard, ClusterId, Refusal};
pub use rpc::{Envelope, ForwardError, RaftRequest, RaftResponse};
pub use server::RaftServer;
pub use transport::{Transport, TransportError};
