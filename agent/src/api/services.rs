//! What the HTTP API needs from the running agent, as a trait so handlers are tested
//! without a mesh or Raft.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use saturn_consensus::JobId;

use crate::cluster::{Cluster, Unavailable};

/// The agent's view of Raft at this instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RaftView {
    /// Name of the leader, if one is known.
    pub leader: Option<String>,
    /// Current term.
    pub term: u64,
    /// Whether this agent is the leader.
    pub is_leader: bool,
    /// Names of the voters.
    pub voters: Vec<String>,
    /// Names of the learners.
    pub learners: Vec<String>,
    /// Last log index known committed.
    pub commit_index: u64,
    /// Last log index applied to the state machine.
    pub applied_index: u64,
    /// Leader changes this agent has seen since it started.
    pub leader_changes: u64,
    /// Every Raft member (voters and learners) with how to reach it.
    pub members: Vec<saturn_consensus::AgentNode>,
}

/// Soft state from gossip: which agents are alive and what their GPUs are doing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SoftView {
    /// Agent name → alive by the failure detector (this agent counts itself alive).
    pub alive: BTreeMap<String, bool>,
    /// (agent, GPU index) → utilisation percent from the latest heartbeat.
    pub utilization: BTreeMap<(String, u32), f64>,
}

/// A piece of a job's log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogPiece {
    /// The bytes.
    pub data: Vec<u8>,
    /// Offset to ask for next.
    pub next_offset: u64,
}

/// Errors the services report to handlers.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The cluster could not commit the write (no leader, no quorum, deadline).
    #[error("the cluster could not commit the request: {0}")]
    Unavailable(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl From<Unavailable> for ServiceError {
    fn from(err: Unavailable) -> Self {
        ServiceError::Unavailable(err.0)
    }
}

/// What the API calls on the agent.
#[async_trait]
pub trait AgentServices: Send + Sync + 'static {
    /// This agent's name.
    fn name(&self) -> String;
    /// The replicated cluster: state, proposals, leadership (the port every part of the
    /// agent reaches it through).
    fn cluster(&self) -> Arc<dyn Cluster>;
    /// Raft as this agent sees it.
    fn raft(&self) -> RaftView;
    /// Gossip view.
    fn soft(&self) -> SoftView;
    /// Reads a job's log from `offset` (fetched from the host that ran the job).
    async fn read_log(&self, job: &JobId, offset: u64, max_bytes: usize) -> Result<LogPiece, ServiceError>;
    /// Extra samples appended to `/metrics` (the scheduler's statistics).
    fn extra_metrics(&self) -> Vec<ExtraMetric> {
        Vec::new()
    }
}

/// A sample an agent adds to `/metrics` besides those read from the replicated state.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtraMetric {
    /// Name without the `saturn_` prefix (and, for a counter, without `_total`).
    pub name: String,
    /// Help text.
    pub help: String,
    /// The value.
    pub value: f64,
    /// Only ever grows (until the process or, for the scheduler's, its leadership ends):
    /// exposed as a Prometheus counter, `saturn_NAME_total`; a gauge otherwise.
    pub counter: bool,
}
