//! [`AgentServices`] of the running agent: what the API, the executor loop and the
//! checkpoint tasks call, backed by the cluster port, the soft state and the mesh.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use saturn_consensus::{ConsensusNode, JobId};

use super::logs::{self, LogsRequest, LogsResponse};
use super::soft::SoftState;
use crate::api::{AgentServices, ExtraMetric, LogPiece, RaftView, ServiceError, SoftView};
use crate::cluster::{Cluster, NodeCluster};
use crate::mesh::{Channel, MeshHandle};
use crate::peer::{self, AskError};

/// The running agent as the API sees it.
pub struct Services {
    /// This agent's name.
    pub name: String,
    /// Its data dir (job logs are read from here).
    pub data_dir: PathBuf,
    /// The consensus node (Raft metrics, the cluster guard).
    pub node: Arc<ConsensusNode>,
    /// The cluster port over `node`.
    pub cluster: Arc<NodeCluster>,
    /// Heartbeats and health.
    pub soft: Arc<SoftState>,
    /// The mesh.
    pub mesh: MeshHandle,
    /// Leader changes seen (maintained by the daemon's Raft watcher).
    pub leader_changes: Arc<AtomicU64>,
    /// Extra samples (the scheduler's statistics).
    pub extra: Arc<Mutex<Vec<ExtraMetric>>>,
    /// Checkpoint replication totals (shared with the checkpoint tasks).
    pub checkpoint_stats: Arc<crate::checkpoint::CheckpointStats>,
}

impl Services {
    /// Services over these parts.
    pub fn new(name: String, data_dir: PathBuf, node: Arc<ConsensusNode>, soft: Arc<SoftState>, mesh: MeshHandle) -> Self {
        Self {
            name,
            data_dir,
            cluster: Arc::new(NodeCluster::new(node.clone())),
            node,
            soft,
            mesh,
            leader_changes: Arc::new(AtomicU64::new(0)),
            extra: Arc::new(Mutex::new(Vec::new())),
            checkpoint_stats: Arc::default(),
        }
    }

    async fn read_attempt_log(&self, host: &str, request: LogsRequest) -> Result<LogsResponse, ServiceError> {
        if host == self.name {
            return logs::read_local(&self.data_dir, &request).map_err(|e| ServiceError::Internal(format!("reading the log: {e}")));
        }
        let peer = match peer::peer_of(&self.cluster.state(), host) {
            Ok(peer) => peer,
            Err(AskError::UnknownAgent(_)) => return Err(ServiceError::NotFound(format!("host {host} of the job is unknown"))),
            Err(err) => return Err(ServiceError::Internal(err.to_string())),
        };
        match peer::ask(&self.mesh, peer, Channel::Logs, ["logs request", "logs response"], &request, None).await {
            Ok(response) => Ok(response),
            Err(AskError::Codec(err)) => Err(ServiceError::Internal(err.to_string())),
            Err(AskError::Refused(why)) => Err(ServiceError::Unavailable(format!("{host}: {why}"))),
            Err(err) => Err(ServiceError::Unavailable(format!("cannot reach {host} for the log: {err}"))),
        }
    }
}

#[async_trait]
impl AgentServices for Services {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn cluster(&self) -> Arc<dyn Cluster> {
        self.cluster.clone()
    }

    fn raft(&self) -> RaftView {
        let metrics = self.node.metrics();
        let name_of = |id: &u64| metrics.nodes.get(id).map(|n| n.name.clone());
        RaftView {
            leader: metrics.leader_node.as_ref().map(|n| n.name.clone()),
            term: metrics.term,
            is_leader: metrics.is_leader,
            voters: metrics.voters.iter().filter_map(name_of).collect(),
            learners: metrics.learners.iter().filter_map(name_of).collect(),
            // Every applied entry is committed; openraft 0.9 exposes no separate commit index.
            commit_index: metrics.applied_index.unwrap_or(0),
            applied_index: metrics.applied_index.unwrap_or(0),
            leader_changes: self.leader_changes.load(Ordering::Relaxed),
            members: metrics.nodes.values().cloned().collect(),
        }
    }

    fn soft(&self) -> SoftView {
        self.soft.view(Instant::now())
    }

    async fn read_log(&self, job: &JobId, cursor: u64, max_bytes: usize) -> Result<LogPiece, ServiceError> {
        let state = self.cluster.state();
        let record = state.job(job).ok_or_else(|| ServiceError::NotFound(format!("no job {job}")))?;
        if record.attempt == 0 {
            return Ok(LogPiece { data: Vec::new(), next_offset: cursor });
        }
        let (attempt, offset) = logs::split_cursor(cursor);
        let attempt = attempt.min(record.attempt);
        let host = logs::host_of(&state, job, attempt).unwrap_or_else(|| self.name.clone());
        let request = LogsRequest {
            job: job.0.clone(),
            attempt,
            offset,
            max_bytes: max_bytes.min(logs::MAX_PIECE) as u32,
        };
        let response = match self.read_attempt_log(&host, request).await {
            Ok(response) => response,
            // An earlier attempt whose host is gone: skip it rather than stall the reader.
            Err(_) if attempt < record.attempt => LogsResponse { data: Vec::new(), next_offset: offset },
            Err(err) => return Err(err),
        };
        Ok(logs::piece(attempt, record.attempt, response))
    }

    fn extra_metrics(&self) -> Vec<ExtraMetric> {
        let mut metrics = self.extra.lock().unwrap_or_else(|p| p.into_inner()).clone();
        metrics.push(ExtraMetric {
            name: "foreign_cluster_messages".into(),
            help: "messages of another cluster (Raft requests, forwarded proposals, heartbeats) refused or ignored".into(),
            value: self.node.guard().foreign_messages() as f64,
            counter: true,
        });
        metrics.extend(checkpoint_metrics(&self.checkpoint_stats));
        metrics.extend(mesh_metrics(self.mesh.stats()));
        metrics
    }
}

/// The mesh's links and what it dropped or refused.
fn mesh_metrics(stats: crate::mesh::MeshStats) -> Vec<ExtraMetric> {
    let metric = |name: &str, help: &str, value: u64, counter: bool| ExtraMetric { name: name.into(), help: help.into(), value: value as f64, counter };
    vec![
        metric("mesh_links", "Peers this agent is connected to now (bounded for an agent that does not vote).", stats.links, false),
        metric("mesh_gossip_rejected", "Gossip messages rejected as malformed or forged.", stats.gossip_rejected, true),
        metric("mesh_gossip_events_dropped", "Gossip not delivered because the daemon was behind.", stats.gossip_events_dropped, true),
        metric("mesh_events_dropped", "Requests and peer news dropped because the daemon was far behind.", stats.events_dropped, true),
        metric("mesh_bad_requests", "Request streams that carried oversized or malformed frames.", stats.bad_requests, true),
        metric(
            "mesh_other_version_refusals",
            "Connections with Saturn agents of another wire version, closed (upgrade every agent together).",
            stats.other_versions,
            true,
        ),
    ]
}

/// Checkpoint replication samples: bytes moved (rate() of them is the replication
/// throughput), copies, failures, and the lag of the last replica.
fn checkpoint_metrics(stats: &crate::checkpoint::CheckpointStats) -> Vec<ExtraMetric> {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
    let metric = |name: &str, help: &str, value: f64, counter: bool| ExtraMetric { name: name.into(), help: help.into(), value, counter };
    vec![
        metric("checkpoint_bytes_received", "Checkpoint bytes pulled from other agents (replicas and fetches).", load(&stats.bytes_received), true),
        metric("checkpoint_bytes_sent", "Checkpoint bytes served to other agents.", load(&stats.bytes_sent), true),
        metric("checkpoint_copies", "Checkpoint replicas pulled and verified here.", load(&stats.copies), true),
        metric("checkpoint_fetch_failures", "Checkpoint pulls or fetches that failed (another holder is tried).", load(&stats.failures), true),
        metric(
            "checkpoint_replication_lag_seconds",
            "Time from a checkpoint's record to its last replica's verification here.",
            load(&stats.last_lag_ms) / 1000.0,
            false,
        ),
    ]
}
