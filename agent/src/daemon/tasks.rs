//! The daemon's small long-running tasks: the mesh event loop, heartbeats, the Raft
//! watcher, the quorum fence and the leader's scheduler, plus the data-dir lock.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use saturn_consensus::codec::{decode, encode};
use saturn_consensus::{AgentNode, ConsensusNode};
use tokio::sync::{mpsc, watch};

use super::logs::{read_local, LogsRequest};
use super::services::Services;
use super::soft::SoftState;
use super::{membership, raft_net, DaemonSettings};
use crate::api::ExtraMetric;
use crate::cluster::{now_ms, Cluster, NodeCluster, Unavailable};
use crate::executor::watchdog::Lease;
use crate::mesh::{Channel, Gossip, GpuLoad, Heartbeat, MeshEvent, MeshHandle, MeshResponse, Topic};

/// Holds an exclusive lock on the data dir for the agent's lifetime: two agents on one
/// data dir would corrupt each other's Raft log.
pub fn lock_data_dir(data_dir: &Path) -> Result<nix::fcntl::Flock<File>> {
    let path = data_dir.join("agent.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("data dir {} is not writable", data_dir.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, _)) => bail!("data dir {} is in use by another saturn-agent", data_dir.display()),
    }
}

/// What each agent said (in its last heartbeat) about belonging to a cluster.
#[derive(Clone, Default)]
pub struct Members(Arc<Mutex<BTreeMap<String, Said>>>);

/// An agent's last word on membership.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Said {
    member: bool,
    forms: bool,
}

impl Members {
    fn set(&self, name: &str, member: bool, forms: bool) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), Said { member, forms });
    }

    fn said(&self, name: &str) -> Said {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied().unwrap_or_default()
    }

    /// Alive agents that belong to no cluster yet and may form one (`--bootstrap-expect`):
    /// the candidates for forming one. Agents given only `--join` are never founders.
    /// Empty as soon as any alive agent says it is a member: a cluster exists, and its
    /// leader will add this agent as a learner, so forming another would split the mesh.
    pub fn not_members_fn(&self, soft: Arc<SoftState>) -> impl Fn() -> Vec<AgentNode> + Send + 'static {
        let members = self.clone();
        move || {
            let alive = soft.alive_nodes(Instant::now());
            if alive.iter().any(|n| members.said(&n.name).member) {
                return Vec::new();
            }
            alive.into_iter().filter(|n| members.said(&n.name).forms).collect()
        }
    }
}

/// Routes mesh events: Raft and log requests to their servers (each on its own task, so
/// the mesh is never blocked), heartbeats to the soft state. Heartbeats of another
/// cluster are ignored (and counted): its agents are no part of this one's health,
/// formation or membership.
pub async fn mesh_events(
    mut events: mpsc::Receiver<MeshEvent>,
    node: Arc<ConsensusNode>,
    soft: Arc<SoftState>,
    data_dir: PathBuf,
    members: Members,
    checkpoints: crate::checkpoint::serve::CheckpointServer,
) {
    let raft = node.server();
    while let Some(event) = events.recv().await {
        match event {
            MeshEvent::Request(request) => {
                let (peer, request, responder) = request.into_parts();
                match request.channel {
                    Channel::Raft => raft_net::serve(raft.clone(), peer, request.body, responder),
                    Channel::Logs if !is_member_peer(&node, &peer) => {
                        tracing::debug!(%peer, "log request from a peer that is not a member refused");
                        responder.send(MeshResponse::Err("logs are served to members of this cluster only".into()));
                    }
                    Channel::Logs => {
                        let data_dir = data_dir.clone();
                        tokio::task::spawn_blocking(move || {
                            let answer = decode::<LogsRequest>("logs request", &request.body)
                                .map_err(|e| e.to_string())
                                .and_then(|req| read_local(&data_dir, &req).map_err(|e| e.to_string()))
                                .and_then(|resp| encode("logs response", &resp).map_err(|e| e.to_string()));
                            responder.send(match answer {
                                Ok(bytes) => MeshResponse::Ok(bytes),
                                Err(why) => MeshResponse::Err(why),
                            });
                        });
                    }
                    // Checkpoints are the cluster's model weights: only members (of this
                    // cluster: a foreign cluster's agents are never members) may pull them.
                    Channel::Checkpoint if !is_member_peer(&node, &peer) => {
                        tracing::debug!(%peer, "checkpoint request from a peer that is not a member refused");
                        responder.send(MeshResponse::Err("checkpoints are served to members of this cluster only".into()));
                    }
                    Channel::Checkpoint => checkpoints.serve(request.body, responder),
                }
            }
            MeshEvent::Gossip { gossip: Gossip::Heartbeat(heartbeat), from } => {
                if heartbeat.peer_id != from.to_string() {
                    tracing::debug!(%from, claimed = %heartbeat.peer_id, "heartbeat with a forged sender dropped");
                    continue;
                }
                if let Some(theirs) = foreign_cluster(node.cluster_id().as_ref(), heartbeat.cluster.as_deref()) {
                    node.guard().count_foreign(theirs, "heartbeats");
                    continue;
                }
                members.set(&heartbeat.name, heartbeat.member, heartbeat.forms);
                soft.on_heartbeat(heartbeat, Instant::now(), now_ms());
            }
            MeshEvent::PeerIdentified { .. } | MeshEvent::PeerDisconnected { .. } => {}
        }
    }
}

/// The other cluster's id when a heartbeat comes from an agent of another cluster than
/// this one (both have ids and they differ); agents without an id yet are candidates.
pub fn foreign_cluster<'a>(mine: Option<&saturn_consensus::ClusterId>, theirs: Option<&'a str>) -> Option<&'a str> {
    match (mine, theirs) {
        (Some(mine), Some(theirs)) if mine.0 != theirs => Some(theirs),
        _ => None,
    }
}

/// Whether `peer` is a voter or learner of this agent's Raft membership.
fn is_member_peer(node: &ConsensusNode, peer: &crate::mesh::PeerId) -> bool {
    node.metrics().nodes.contains_key(&saturn_consensus::node_id_for_peer(&peer.to_string()))
}

/// Publishes this agent's heartbeat (identity, GPU load, membership) every interval.
pub async fn heartbeats(
    settings: DaemonSettings,
    me: AgentNode,
    mesh: MeshHandle,
    node: Arc<ConsensusNode>,
    soft: Arc<SoftState>,
    members: Members,
) {
    let mut seq = 0;
    let mut subscribed_soft: Option<bool> = None;
    let everyone = super::gossip_everyone();
    let mut tick = tokio::time::interval(settings.heartbeat);
    loop {
        tick.tick().await;
        seq += 1;
        let busy: Vec<bool> = node.read(|state| {
            settings.gpus.iter().map(|gpu| state.gpu_holder(&settings.name, gpu.index).is_some()).collect()
        });
        let gpus = settings
            .gpus
            .iter()
            .zip(busy)
            .map(|(gpu, busy)| GpuLoad {
                index: gpu.index,
                model: gpu.model.clone(),
                memory_mib: gpu.memory_mib,
                // Simulated GPUs are as busy as the state says; real ones would be sampled.
                utilization_pct: if busy { 100 } else { 0 },
                busy,
            })
            .collect();
        let member = membership::is_member(&node);
        let forms = settings.bootstrap_expect.is_some();
        members.set(&me.name, member, forms);
        let heartbeat = Heartbeat {
            name: me.name.clone(),
            peer_id: me.peer_id.clone(),
            addrs: me.addrs.clone(),
            seq,
            at_ms: now_ms(),
            gpus,
            member,
            forms,
            cluster: node.cluster_id().map(|id| id.0),
            healthy: soft.self_healthy(),
        };
        soft.on_heartbeat(heartbeat.clone(), Instant::now(), now_ms());
        // Voters speak to everyone; the others only to the voters (and to agents forming
        // a cluster), and only voters and would-be founders listen to everyone: an agent's
        // gossip cost is then the same whatever the size of the mesh (see ARCHITECTURE.md).
        // An agent waiting to join does not listen either: many joiners at once would
        // otherwise relay each other's heartbeats to each other.
        let metrics = node.metrics();
        let voter = metrics.role == saturn_consensus::Role::Voter && !everyone;
        let hears_everyone = voter || (!member && forms) || everyone;
        if !hears_everyone {
            let voters = metrics.voters.iter().filter_map(|id| metrics.nodes.get(id).map(|n| n.name.clone())).collect();
            soft.retain_only(&voters);
        }
        if subscribed_soft != Some(hears_everyone) {
            if mesh.subscribe_soft(hears_everyone).await.is_ok() {
                subscribed_soft = Some(hears_everyone);
            }
        }
        let topic = if voter { Topic::Voters } else { Topic::Soft };
        // No subscriber yet is normal right after start.
        let _ = mesh.publish_to(topic, Gossip::Heartbeat(heartbeat)).await;
    }
}

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

/// How often the job watchdogs' lease is renewed.
const LEASE_RENEWAL: Duration = Duration::from_millis(400);

/// When this agent last heard from a majority of the voters (itself counted as heard
/// now): the majority-th most recent of their last heartbeats. `None` when it never has.
pub fn quorum_heard(voters: &[(bool, Option<Duration>)]) -> Option<Duration> {
    let mut silences: Vec<Duration> = voters
        .iter()
        .filter_map(|(me, silent)| if *me { Some(Duration::ZERO) } else { *silent })
        .collect();
    silences.sort();
    silences.get(voters.len() / 2).copied()
}

/// Publishes `fenced = true` once this agent has not heard from a majority of the voters
/// for `fence_after`, measured from the last heartbeats themselves (not from the failure
/// detector's verdict, which comes seconds later), so a partitioned agent stops its jobs
/// well before the majority, which waits the full grace period, runs them elsewhere.
/// It also renews the `lease` its jobs' watchdogs check (as long as this task runs,
/// fenced or not: the fence stops the jobs of a running agent): a frozen or hung agent
/// stops renewing it, and the watchdogs stop the jobs it no longer can.
pub async fn fence(
    node: Arc<ConsensusNode>,
    soft: Arc<SoftState>,
    fence_after: Duration,
    fenced: watch::Sender<bool>,
    lease: Lease,
) {
    let started = Instant::now();
    let mut renewed: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        let metrics = node.metrics();
        let cut_off = if metrics.voters.is_empty() {
            false
        } else {
            let voters: Vec<(bool, Option<Duration>)> = metrics
                .voters
                .iter()
                .map(|id| {
                    let name = metrics.nodes.get(id).map(|n| n.name.as_str()).unwrap_or("");
                    (*id == metrics.id, soft.silent_for(name, now))
                })
                .collect();
            // Just started: nobody heard yet is not a partition.
            let silence = quorum_heard(&voters).unwrap_or_else(|| now.duration_since(started));
            silence > fence_after
        };
        if renewed.is_none_or(|at| now.duration_since(at) >= LEASE_RENEWAL) {
            match lease.renew() {
                Ok(()) => renewed = Some(now),
                Err(err) => tracing::warn!(path = %lease.path().display(), %err, "cannot renew the job watchdogs' lease"),
            }
        }
        if *fenced.borrow() != cut_off {
            if cut_off {
                tracing::warn!("no quorum of voters heard for {fence_after:?}: fencing this agent's jobs");
            } else {
                tracing::info!("quorum heard again: fence lifted");
            }
            fenced.send_replace(cut_off);
        }
    }
}

/// The scheduler's view of this agent: the cluster port (its state snapshot is copied
/// once per apply and shared with the API and the executor loop) and the soft state's
/// health.
pub struct SchedulerCluster {
    cluster: Arc<NodeCluster>,
    soft: Arc<SoftState>,
}

#[async_trait::async_trait]
impl crate::scheduler::Cluster for SchedulerCluster {
    type Error = Unavailable;

    fn is_leader(&self) -> bool {
        self.cluster.is_leader()
    }

    fn state(&self) -> Arc<saturn_consensus::ClusterState> {
        self.cluster.state()
    }

    fn health(&self) -> BTreeMap<String, crate::scheduler::AgentHealth> {
        self.soft.health(Instant::now())
    }

    fn now_ms(&self) -> u64 {
        self.cluster.now_ms()
    }

    async fn propose(&self, command: saturn_consensus::Command) -> Result<saturn_consensus::CommandResult, Self::Error> {
        self.cluster.propose(command).await
    }

    async fn changed(&self) {
        self.cluster.changed().await
    }
}

/// Runs the scheduler (it decides only while this agent leads) and publishes its
/// statistics as metrics.
pub async fn scheduler(settings: DaemonSettings, soft: Arc<SoftState>, services: Arc<Services>) {
    let cluster = Arc::new(SchedulerCluster { cluster: services.cluster.clone(), soft });
    let scheduler = crate::scheduler::Scheduler::new(cluster, settings.scheduler.clone());
    let mut stats = scheduler.stats();
    let extra = services.extra.clone();
    tokio::spawn(async move {
        while stats.changed().await.is_ok() {
            let metrics = scheduler_metrics(&stats.borrow());
            *extra.lock().unwrap_or_else(|p| p.into_inner()) = metrics;
        }
    });
    scheduler.run(std::future::pending::<()>()).await;
}

/// The scheduler's statistics as Prometheus samples.
fn scheduler_metrics(stats: &crate::scheduler::SchedulerStats) -> Vec<ExtraMetric> {
    let metric = |counter: bool| {
        move |name: &str, help: &str, value: f64| ExtraMetric { name: name.into(), help: help.into(), value, counter }
    };
    let (gauge, counter) = (metric(false), metric(true));
    let profiling = &stats.profiling;
    vec![
        gauge("scheduler_leading", "1 while this agent schedules (leads)", f64::from(u8::from(stats.leading))),
        counter("scheduler_rounds", "decision rounds run while leading", stats.rounds as f64),
        counter("planner_solves", "re-plans run by this agent", stats.solves as f64),
        gauge("planner_solve_seconds", "wall time of the last re-plan", stats.last_solve_ms as f64 / 1000.0),
        gauge("planner_predicted_makespan_seconds", "makespan predicted by the last re-plan", stats.predicted_makespan_s),
        gauge("planner_baseline_makespan_seconds", "max-heuristic makespan on the last re-plan's instance", stats.baseline_makespan_s),
        gauge("planner_lower_bound_seconds", "lower bound of the last re-plan's instance", stats.lower_bound_s),
        counter("scheduler_plans_committed", "plans this agent committed while leading", stats.plans_committed as f64),
        counter("scheduler_preemptions_decided", "preemptions this agent decided", stats.preemptions_decided as f64),
        counter("scheduler_proposals_rejected", "proposals the state machine rejected", stats.proposals_rejected as f64),
        // Computed from the state (the up hosts' grid): may shrink when a host leaves.
        gauge("profiling_seconds", "GPU-seconds spent in trial runs", profiling.gpu_seconds),
        gauge("profiling_full_grid_seconds", "GPU-seconds the full profiling grid would have cost", profiling.full_grid_gpu_seconds),
        gauge("profiling_saved_seconds", "GPU-seconds of profiling saved against the full grid", profiling.saved_gpu_seconds),
        gauge("profiling_trials", "trial runs recorded", profiling.trials as f64),
        gauge("profiling_full_grid_trials", "trial runs the full grid would take", profiling.full_grid_trials as f64),
    ]
}

#[cfg(test)]
mod tests {
    use super::quorum_heard;
    use std::time::Duration;

    fn s(secs: u64) -> Option<Duration> {
        Some(Duration::from_secs(secs))
    }

    #[test]
    fn a_quorum_is_heard_when_a_majority_spoke_recently() {
        // Me plus one of two others: a majority of three heard now-ish.
        assert_eq!(quorum_heard(&[(true, None), (false, s(1)), (false, s(30))]), s(1));
        // Both others silent: the majority was last heard when the fresher one spoke.
        assert_eq!(quorum_heard(&[(true, None), (false, s(7)), (false, s(30))]), s(7));
        // Five voters need three: me and the two freshest.
        assert_eq!(quorum_heard(&[(true, None), (false, s(2)), (false, s(4)), (false, s(9)), (false, None)]), s(4));
        // Never heard from anyone else.
        assert_eq!(quorum_heard(&[(true, None), (false, None), (false, None)]), None);
        assert_eq!(quorum_heard(&[(true, None)]), Some(Duration::ZERO));
    }
}
