//! [`ConsensusNode`]: one member's Raft node, durable storage and the applied state, behind
//! a handle that proposes from any member and reads locally.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};

use crate::batcher::{Batcher, WriteError};
use openraft::{ChangeMembers, ServerState};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster_id::{ClusterGuard, ClusterId, ClusterIdError};
use crate::command::{Command, CommandResult};
use crate::config::NodeConfig;
use crate::membership::MembershipAction;
use crate::metrics::NodeMetrics;
use crate::node::{AgentNode, NodeId};
use crate::proposal::{Proposal, ProposalId};
use crate::raft_types::{Raft, RaftMetrics};
use crate::rpc::{Envelope, ForwardError, RaftRequest, RaftResponse};
use crate::server::RaftServer;
use crate::state::ClusterState;
use crate::storage::{self, SharedState, StoreError};
use crate::transport::{Network, Transport};

/// The node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid (e.g. election timeout not above the heartbeat).
    #[error("invalid raft configuration: {0}")]
    Config(#[from] Box<openraft::ConfigError>),
    /// The data directory or its database could not be opened.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// openraft refused to start (its storage returned an error while loading).
    #[error("raft failed to start: {0}")]
    Raft(String),
    /// The cluster id file is unreadable.
    #[error(transparent)]
    ClusterId(#[from] ClusterIdError),
}

/// A proposal was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No leader committed it before the deadline (no quorum reachable, or elections
    /// kept failing). It may still be committed later; re-proposing is safe only for
    /// idempotent commands.
    #[error("no leader committed the proposal within {waited:?} (last problem: {last_problem})")]
    Timeout {
        /// How long we tried.
        waited: Duration,
        /// The last reason a try failed.
        last_problem: String,
    },
    /// This node is shutting down or its Raft core stopped.
    #[error("consensus node stopped: {0}")]
    Stopped(String),
}

/// A membership change was not made.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// Membership changes are made by the leader; this node is not it.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The cluster was already initialised (harmless when re-running formation).
    #[error("cluster already initialised")]
    AlreadyInitialized,
    /// The new cluster's id could not be stored.
    #[error(transparent)]
    ClusterId(#[from] ClusterIdError),
    /// openraft refused the change (e.g. another change is in progress).
    #[error("membership change refused: {0}")]
    Refused(String),
}

/// The node stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("raft core did not stop cleanly: {0}")]
pub struct ShutdownError(String);

/// A running member.
pub struct ConsensusNode {
    id: NodeId,
    node: AgentNode,
    raft: Raft,
    batcher: Batcher,
    shared: SharedState,
    transport: Arc<dyn Transport>,
    guard: Arc<ClusterGuard>,
    /// Identifies this incarnation's proposals (see [`ProposalId`]).
    client: u64,
    next_seq: AtomicU64,
    propose_timeout: Duration,
}

impl ConsensusNode {
    /// Opens (or creates) the storage in `data_dir`, restores the state from it and starts
    /// the Raft node. Incoming requests must then be routed to [`server`](Self::server).
    /// A fresh node is not part of any cluster until [`initialize`](Self::initialize)d or
    /// added by a leader.
    pub async fn start(config: NodeConfig, data_dir: &Path, transport: Arc<dyn Transport>) -> Result<Self, StartError> {
        let raft_config = Arc::new(config.raft_config()?);
        let (log_store, state_machine) = storage::open(data_dir)?;
        let shared = state_machine.shared();
        let id = config.node_id();
        let guard = Arc::new(ClusterGuard::open(data_dir)?);
        let network = Network::new(transport.clone(), guard.clone());
        let raft = Raft::new(id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        tokio::spawn(mint_when_leading(raft.metrics(), guard.clone()));
        Ok(ConsensusNode {
            guard,
            id,
            node: config.node,
            batcher: Batcher::start(raft.clone()),
            raft,
            shared,
            transport,
            client: rand::random(),
            next_seq: AtomicU64::new(1),
            propose_timeout: config.propose_timeout,
        })
    }

    /// This member's Raft id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This member.
    pub fn agent_node(&self) -> &AgentNode {
        &self.node
    }

    /// The handler a transport calls with requests addressed to this member.
    pub fn server(&self) -> RaftServer {
        RaftServer::new(self.raft.clone(), self.batcher.clone(), self.guard.clone())
    }

    /// The underlying openraft handle (for `wait()` and other low-level use).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// A copy of the applied state.
    pub fn state(&self) -> ClusterState {
        self.shared.read().state.clone()
    }

    /// Runs `read` on the applied state without copying it. Keep it short: it holds a
    /// lock that apply waits for.
    pub fn read<R>(&self, read: impl FnOnce(&ClusterState) -> R) -> R {
        read(&self.shared.read().state)
    }

    /// A watch of the last applied log index; it changes on every apply, so an executor
    /// can wait on it and then reconcile against [`state`](Self::state).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.subscribe()
    }

    /// Leader, term, role and log positions as this member sees them now.
    pub fn metrics(&self) -> NodeMetrics {
        NodeMetrics::from_raft(&self.raft.metrics().borrow())
    }

    /// openraft's metrics watch.
    pub fn raft_metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.raft.metrics()
    }

    /// Commits `command` through the leader (this member if it leads, else forwarded)
    /// and returns what applying it did. Retries across leader changes until the
    /// configured deadline; a retry never applies the command twice (see
    /// [`proposal`](crate::proposal)).
    pub async fn propose(&self, command: Command) -> Result<CommandResult, ProposeError> {
        let id = ProposalId { client: self.client, seq: self.next_seq.fetch_add(1, Ordering::Relaxed) };
        let proposal = Proposal { id, command };
        let started = Instant::now();
        let deadline = started + self.propose_timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let last_problem = match self.try_propose(&proposal, deadline).await {
                Ok(result) => return Ok(result),
                Err(Try::Stopped(why)) => return Err(ProposeError::Stopped(why)),
                Err(Try::Again(why)) => why,
            };
            if Instant::now() >= deadline {
                return Err(ProposeError::Timeout { waited: started.elapsed(), last_problem });
            }
            // Retry as soon as the leader changes, or after a short pause otherwise.
            let pause = Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now()));
            let _changed_or_paused = tokio::time::timeout(pause, metrics.changed()).await;
        }
    }

    async fn try_propose(&self, proposal: &Proposal, deadline: Instant) -> Result<CommandResult, Try> {
        let leader = self.raft.current_leader().await;
        let target = match leader {
            Some(leader) if leader != self.id => self.member_node(leader).map(|node| (leader, node)),
            // A leader cut off from its quorum never answers; the deadline bounds the wait.
            _ => match tokio::time::timeout_at(deadline, self.batcher.write(proposal.clone())).await {
                Ok(Ok(result)) => return Ok(result),
                Ok(Err(WriteError::NotLeader(leader))) => leader,
                Ok(Err(WriteError::Failed(why))) => return Err(Try::Again(why)),
                Ok(Err(WriteError::Stopped(why))) => return Err(Try::Stopped(why)),
                Err(_elapsed) => return Err(Try::Again("the leader (this node) did not commit in time".to_string())),
            },
        };
        let Some((leader, node)) = target else { return Err(Try::Again("no leader known".to_string())) };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let envelope = Envelope { cluster: self.guard.id(), request: RaftRequest::Propose(proposal.clone()) };
        let call = self.transport.call(leader, &node, envelope);
        // A leader that hangs (host frozen, link silent) keeps its connection open and never
        // answers. Give up on it as soon as this node stops following it (an election
        // started, another leader won) and retry there: the proposal id makes that safe.
        let answer = tokio::select! {
            answer = tokio::time::timeout(remaining, call) => answer,
            () = stopped_following(self.raft.metrics(), leader) => {
                return Err(Try::Again(format!("{node} is no longer the leader")));
            }
        };
        match answer {
            Ok(Ok(RaftResponse::Propose(Ok(result)))) => Ok(result),
            Ok(Ok(RaftResponse::Propose(Err(ForwardError::NotLeader { .. })))) => {
                Err(Try::Again(format!("{node} is no longer the leader")))
            }
            Ok(Ok(RaftResponse::Propose(Err(e)))) => Err(Try::Again(e.to_string())),
            Ok(Ok(RaftResponse::Refused(refusal))) => Err(Try::Again(format!("{node}: {refusal}"))),
            Ok(Ok(_)) => Err(Try::Again(format!("{node} answered a proposal with another kind of response"))),
            Ok(Err(e)) => Err(Try::Again(format!("forwarding to {node}: {e}"))),
            Err(_elapsed) => Err(Try::Again(format!("forwarding to {node}: no answer"))),
        }
    }

    fn member_node(&self, id: NodeId) -> Option<AgentNode> {
        self.raft.metrics().borrow().membership_config.membership().get_node(&id).cloned()
    }

    /// Forms a new cluster with `voters` (this member among them), under a new cluster
    /// id stored first (the other voters adopt it from the first request they get). Call
    /// on exactly one member (see [`membership::formation`](crate::membership)).
    pub async fn initialize(&self, voters: BTreeMap<NodeId, AgentNode>) -> Result<(), MembershipError> {
        if self.guard.id().is_none() && !self.is_member() {
            self.guard.adopt(&ClusterId::generate())?;
        }
        match self.raft.initialize(voters).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Err(MembershipError::AlreadyInitialized),
            Err(e) => Err(MembershipError::Refused(e.to_string())),
        }
    }

    /// Adds one learner ([`add_learners`](Self::add_learners) of one). Leader only.
    pub async fn add_learner(&self, id: NodeId, node: AgentNode) -> Result<(), MembershipError> {
        self.add_learners(BTreeMap::from([(id, node)])).await
    }

    /// Adds learners in one membership change; returns once it is committed, without
    /// waiting for them to catch up. Leader only.
    pub async fn add_learners(&self, nodes: BTreeMap<NodeId, AgentNode>) -> Result<(), MembershipError> {
        let change = ChangeMembers::AddNodes(nodes);
        self.raft.change_membership(change, false).await.map(drop).map_err(membership_error)
    }

    /// Makes exactly `voters` the voters; former voters not listed stay as learners.
    /// Every new voter must already be a member. Leader only.
    pub async fn change_voters(&self, voters: BTreeSet<NodeId>) -> Result<(), MembershipError> {
        self.raft.change_membership(voters, true).await.map(drop).map_err(membership_error)
    }

    /// Removes learners (a voter must first be demoted with
    /// [`change_voters`](Self::change_voters)). Leader only.
    pub async fn remove_learners(&self, ids: BTreeSet<NodeId>) -> Result<(), MembershipError> {
        let change = ChangeMembers::RemoveNodes(ids);
        self.raft.change_membership(change, false).await.map(drop).map_err(membership_error)
    }

    /// Carries out the actions of [`plan_membership`](crate::membership::plan_membership),
    /// in order, stopping at the first refused one. Leader only.
    pub async fn carry_out(&self, actions: &[MembershipAction]) -> Result<(), MembershipError> {
        for action in actions {
            match action {
                MembershipAction::AddLearners { nodes } => self.add_learners(nodes.clone()).await?,
                MembershipAction::ChangeVoters { voters } => self.change_voters(voters.clone()).await?,
                MembershipAction::RemoveLearners { ids } => self.remove_learners(ids.clone()).await?,
            }
        }
        Ok(())
    }

    /// The id of the cluster this member belongs to (`None` until it forms or joins one).
    pub fn cluster_id(&self) -> Option<ClusterId> {
        self.guard.id()
    }

    /// Messages of another cluster refused or ignored since start (see
    /// [`ClusterGuard::count_foreign`] for those seen outside Raft).
    pub fn guard(&self) -> &Arc<ClusterGuard> {
        &self.guard
    }

    /// Whether this node belongs to a cluster (has any Raft membership).
    pub fn is_member(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let member = metrics.membership_config.membership().nodes().next().is_some();
        member
    }

    /// Resolves when openraft's core has stopped (a panic, a fatal storage error, or a
    /// shutdown), with the reason. An agent whose core stopped without being asked to can
    /// no longer replicate or apply anything and must not pass for healthy.
    pub async fn core_stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the Raft core task ended (panic)".to_string();
            }
        }
    }

    /// Test hook: makes this member's next apply fail with a fatal storage error, which
    /// stops its Raft core (as a failing disk would), then proposes a no-op so that an
    /// apply happens. Never called outside tests (the agent calls it only when its
    /// failpoint environment variable is set).
    pub async fn kill_core_for_test(&self) {
        self.shared.fail_next_apply();
        let noop = Command::CancelJob { job: crate::job::JobId::from_seq(u64::MAX), at_ms: 0 };
        let _ = self.propose(noop).await;
    }

    /// Whether this member currently leads.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Stops the Raft node (the storage is closed once the core has stopped).
    pub async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.raft.shutdown().await.map_err(|e| ShutdownError(e.to_string()))
    }
}

/// Outcome of one try to commit a proposal.
enum Try {
    /// Worth retrying (no leader, leader changed, link failed).
    Again(String),
    /// Never going to work.
    Stopped(String),
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, AgentNode>>) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(to)) => MembershipError::NotLeader { leader: to.leader_id },
        other => MembershipError::Refused(other.to_string()),
    }
}

/// Makes a cluster id when this member leads a cluster that has none (formed before
/// cluster ids existed): its requests then carry it, and every member adopts it.
async fn mint_when_leading(mut metrics: watch::Receiver<RaftMetrics>, guard: Arc<ClusterGuard>) {
    loop {
        let leading = metrics.borrow_and_update().state == ServerState::Leader;
        if leading && guard.id().is_none() {
            match guard.adopt(&ClusterId::generate()) {
                Ok(id) => tracing::info!(cluster = %id, "this cluster had no id (formed by an older version): made one"),
                Err(err) => tracing::error!(%err, "cannot store a cluster id"),
            }
        }
        if guard.id().is_some() || metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves once `metrics` no longer name `leader` as the current leader; never while
/// they do (nor after the Raft core stopped: the caller's deadline then applies).
async fn stopped_following(mut metrics: watch::Receiver<RaftMetrics>, leader: NodeId) {
    loop {
        if metrics.borrow_and_update().current_leader != Some(leader) {
            return;
        }
        if metrics.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
