//! The running agent: wires the mesh, Raft, the executor, the scheduler and the API
//! together. Each part is its own task; they meet only through the consensus node (hard
//! state), the soft state (gossip) and channels.
//!
//! - [`raft_net`]: Raft RPCs over the mesh.
//! - [`membership`]: cluster formation and voter upkeep.
//! - [`soft`]: heartbeats and the failure detector.
//! - [`executor_loop`]: the glue between the cluster port and the process table: carries
//!   out `executor::reconcile`'s actions and reports what the processes say.
//! - [`services`]: what the API and loops call on the agent.
//! - [`logs`]: job logs across hosts.
//! - `inbound`: mesh requests (Raft, logs, checkpoints) and heartbeats in.
//! - `heartbeats`: this agent's heartbeat out.
//! - `fence`: the quorum fence and the job watchdogs' lease.
//! - `leader_watch`: leader changes, counted and logged.
//! - `scheduler_task`: the scheduler over the cluster port, and its metrics.
//! - `data_dir`: one agent per data dir.

pub mod executor_loop;
pub mod logs;
pub mod membership;
pub mod raft_net;
pub mod services;
pub mod soft;
mod data_dir;
mod fence;
mod heartbeats;
mod inbound;
mod leader_watch;
mod scheduler_task;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use saturn_consensus::{AgentNode, Command, ConsensusNode, GpuInfo, NodeConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AgentServices, ApiState};
use crate::cluster::{Cluster, Retry};
use crate::checkpoint::peers::MeshPeers;
use crate::checkpoint::serve::CheckpointServer;
use crate::checkpoint::{Checkpoints, Store};
use crate::executor::watchdog::{Lease, WatchdogSettings};
use crate::executor::{ExecutorConfig, ProcessTable};
use crate::mesh::{self, MeshConfig, Multiaddr, PreSharedKey};
use crate::scheduler::config::SchedulerConfig;

/// Everything the daemon needs to start, already validated.
#[derive(Clone, Debug)]
pub struct DaemonSettings {
    /// Agent name.
    pub name: String,
    /// Data dir (Raft, node key, job logs, checkpoints).
    pub data_dir: PathBuf,
    /// Mesh listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through.
    pub join: Vec<Multiaddr>,
    /// Addresses to announce instead of the listen addresses, when set.
    pub advertise: Vec<Multiaddr>,
    /// Agents that form a new cluster together; `None`: this agent never forms one, it
    /// waits to be added (given `--join` without `--bootstrap-expect`).
    pub bootstrap_expect: Option<usize>,
    /// HTTP API address.
    pub api: SocketAddr,
    /// Token every API request must carry (loopback included).
    pub api_token: Option<String>,
    /// This host's GPUs.
    pub gpus: Vec<GpuInfo>,
    /// Pre-shared mesh key.
    pub cluster_key: Option<PreSharedKey>,
    /// mDNS discovery on the LAN.
    pub mdns: bool,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// How long an agent may be silent before its jobs are moved elsewhere.
    pub grace_period: Duration,
    /// SIGTERM → SIGKILL grace for job processes.
    pub kill_grace: Duration,
    /// How long a gang's ranks may take to rendezvous (`--rendezvous-timeout-s`).
    pub rendezvous_timeout: Duration,
    /// Scheduler knobs.
    pub scheduler: SchedulerConfig,
    /// Extra environment for every job process (e.g. records for tests).
    pub job_env: std::collections::BTreeMap<String, String>,
    /// Shared checkpoint storage (`--checkpoint-root`), when given.
    pub checkpoint_root: Option<PathBuf>,
    /// Replicas, size cap, rate.
    pub checkpoint: crate::checkpoint::CheckpointSettings,
    /// `CUDA_VISIBLE_DEVICES` names of this host's MIG instances (`gpus::cuda_ids`).
    pub cuda_ids: std::collections::BTreeMap<u32, String>,
}

impl DaemonSettings {
    /// How long without a quorum before this agent stops its jobs. Half the grace
    /// period, so a cut-off agent has stopped its processes well before the leader
    /// declares it down and gives its GPUs' work to others.
    pub fn fence_after(&self) -> Duration {
        self.grace_period / 2
    }

    /// How old the agent's lease may get before a job's watchdog kills the job (SIGTERM
    /// at ¾ of it): 4/5 of the grace period, so a frozen or hung agent's jobs are gone
    /// before the leader runs them elsewhere.
    pub fn watchdog_silence(&self) -> Duration {
        self.grace_period * 4 / 5
    }
}

/// Runs the agent until `shutdown` resolves; then stops cleanly: jobs are asked to
/// checkpoint and handed back, Raft and the mesh are closed.
pub async fn run(settings: DaemonSettings, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("data dir {} is not writable", settings.data_dir.display()))?;
    let _lock = data_dir::lock_data_dir(&settings.data_dir)?;
    let api_listener = tokio::net::TcpListener::bind(settings.api)
        .await
        .with_context(|| format!("cannot listen for the API on {}", settings.api))?;

    let keypair = mesh::load_or_create_keypair(&settings.data_dir)?;
    let mut mesh_config = MeshConfig::new(settings.name.clone(), keypair);
    mesh_config.listen = settings.listen.clone();
    mesh_config.join = settings.join.clone();
    mesh_config.mdns = settings.mdns;
    mesh_config.cluster_key = settings.cluster_key;
    if gossip_everyone() {
        mesh_config.max_discovery_links = usize::MAX;
    }
    let (mesh, mesh_events) = mesh::spawn(mesh_config).await?;
    let addrs = if settings.advertise.is_empty() { mesh.listen_addrs().await? } else { settings.advertise.clone() };
    let me = AgentNode {
        name: settings.name.clone(),
        peer_id: mesh.local_peer_id().to_string(),
        addrs: addrs.iter().map(ToString::to_string).collect(),
    };
    tracing::info!(name = %me.name, peer_id = %me.peer_id, addrs = ?me.addrs, gpus = settings.gpus.len(), wire_version = saturn_consensus::WIRE_VERSION, "agent starting");

    let transport = Arc::new(raft_net::MeshTransport::new(mesh.clone()));
    let node_config = NodeConfig::new(me.clone());
    let node = Arc::new(
        ConsensusNode::start(node_config, &settings.data_dir.join("raft"), transport)
            .await
            .context("cannot open the Raft storage")?,
    );
    let soft = Arc::new(soft::SoftState::new(&settings.name, settings.heartbeat));
    let services = Arc::new(services::Services::new(
        settings.name.clone(),
        settings.data_dir.clone(),
        node.clone(),
        soft.clone(),
        mesh.clone(),
    ));

    let mut executor_config = ExecutorConfig::new(&settings.data_dir);
    executor_config.process.extra_env = settings.job_env.clone();
    let lease = Lease::new(&settings.data_dir.join("lease"));
    // Renewed before any job can start: a lease left by an earlier run of this agent (it
    // crashed, it was restarted) would otherwise look like a frozen agent to a new job's
    // watchdog, which would kill the job at once.
    if let Err(err) = lease.renew() {
        tracing::warn!(path = %lease.path().display(), %err, "cannot renew the job watchdogs' lease");
    }
    executor_config.process.watchdog = Some(WatchdogSettings {
        program: std::env::current_exe().context("cannot locate the saturn-agent executable")?,
        lease: lease.path().to_owned(),
        max_silence: settings.watchdog_silence(),
        kill_grace: settings.kill_grace,
    });
    let (table, process_events, orphans) = ProcessTable::open(executor_config).await?;
    if !orphans.is_empty() {
        tracing::warn!(count = orphans.len(), "ended job processes left by a previous run of this agent");
    }

    let mut ckpt = checkpoints(&settings, mesh.clone(), services.cluster.clone())?;
    ckpt.stats = services.checkpoint_stats.clone();
    let ckpt_server = CheckpointServer { ckpt: ckpt.clone(), services: services.clone() };
    // The one shutdown signal: every task ends when it is cancelled (those with something
    // to finish watch it themselves; the others are simply not polled again).
    let shutdown_signal = CancellationToken::new();
    let mut tasks = Tasks { shutdown: shutdown_signal.clone(), handles: Vec::new() };
    let (fenced_tx, fenced) = watch::channel(false);
    tasks.spawn(inbound::mesh_events(mesh_events, node.clone(), soft.clone(), settings.data_dir.clone(), ckpt_server));
    tasks.spawn(crate::checkpoint::replicate::run(ckpt.clone(), services.clone(), services.cluster.applied()));
    tasks.spawn(heartbeats::heartbeats(settings.clone(), me.clone(), mesh.clone(), services.cluster.clone(), node.clone(), soft.clone()));
    tasks.spawn(leader_watch::watch_raft(node.clone(), services.leader_changes.clone()));
    tasks.spawn(fence::fence(node.clone(), soft.clone(), settings.fence_after(), fenced_tx, lease));
    tasks.spawn(membership::run(
        node.clone(),
        soft.clone(),
        settings.bootstrap_expect,
        settings.join.iter().map(ToString::to_string).collect(),
        settings.grace_period,
        {
            let soft = soft.clone();
            move || soft.founders(std::time::Instant::now())
        },
    ));
    let exec_config = executor_loop::ExecutorLoopConfig {
        agent: settings.name.clone(),
        data_dir: settings.data_dir.clone(),
        kill_grace: settings.kill_grace,
        fence_kill_grace: settings.kill_grace.min(settings.grace_period / 4),
        rendezvous_timeout: settings.rendezvous_timeout,
        cuda_ids: settings.cuda_ids.clone(),
    };
    let executor = tokio::spawn(executor_loop::run(
        exec_config,
        ckpt,
        services.clone(),
        table.clone(),
        process_events,
        services.cluster.applied(),
        fenced.clone(),
        shutdown_signal.clone(),
    ));
    tasks.spawn(scheduler_task::scheduler(settings.clone(), soft.clone(), services.clone()));
    // An agent whose --checkpoint-root is not the cluster's shared storage must not run.
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<anyhow::Error>(1);
    if let Some(root) = settings.checkpoint_root.clone() {
        let services: Arc<dyn AgentServices> = services.clone();
        tasks.spawn(async move {
            if let Err(err) = crate::checkpoint::root::verify(root, services).await {
                let _ = fatal_tx.send(anyhow::Error::new(err)).await;
            }
        });
    }

    let api_state = ApiState { services: services.clone(), token: settings.api_token.as_deref().map(Arc::from) };
    let api_task = tokio::spawn(api::serve(api_listener, api_state, shutdown_signal.clone().cancelled_owned()));
    if let Some(dir) = std::env::var_os(KILL_CONSENSUS_ENV) {
        let trigger = PathBuf::from(dir).join(&settings.name);
        tasks.spawn(kill_consensus_when(node.clone(), trigger));
    }
    tracing::info!(api = %settings.api, cluster = ?node.cluster_id().map(|id| id.0), "agent ready");

    let core = node.clone();
    let core_stopped = async move { core.core_stopped().await };
    enum Ended {
        Shutdown,
        DeadCore(String),
        Fatal(anyhow::Error),
    }
    let ended = tokio::select! {
        () = shutdown => Ended::Shutdown,
        reason = core_stopped => Ended::DeadCore(reason),
        Some(err) = fatal_rx.recv() => Ended::Fatal(err),
    };
    let fatal = match ended {
        Ended::Shutdown => None,
        Ended::Fatal(err) => {
            tracing::error!("{err:#}");
            Some(err)
        }
        Ended::DeadCore(reason) => {
            // Never a zombie that gossips as healthy: say so (status and the next
            // heartbeats), stop the jobs (nothing can be reported for them any more) and
            // exit 1, so that a supervisor (systemd, Slurm) restarts the agent on its data dir.
            soft.mark_self_unhealthy();
            tracing::error!(%reason, "the consensus core stopped; this agent can no longer take part and exits");
            // Nothing can be reported any more: the executor stops at once; the heartbeats
            // go on a little, saying so, while the processes stop.
            executor.abort();
            let (heartbeat, stopping) = (settings.heartbeat, shutdown_signal.clone());
            let _ = tokio::join!(
                async move {
                    tokio::time::sleep(heartbeat * 2).await;
                    stopping.cancel();
                },
                table.shutdown(settings.kill_grace.min(settings.grace_period / 4)),
            );
            tasks.join(Duration::from_secs(1)).await;
            mesh.shutdown().await;
            anyhow::bail!("the consensus core stopped: {}", reason.replace('\n', " "));
        }
    };
    tracing::info!("stopping: handing running jobs back");
    hand_back_jobs(&settings.name, services.cluster.as_ref()).await;
    shutdown_signal.cancel();
    table.shutdown(settings.kill_grace).await;
    // Give the reports of the exits a moment to be committed.
    let _ = tokio::time::timeout(Duration::from_secs(3), executor).await;
    tasks.join(Duration::from_secs(1)).await;
    let _ = api_task.await;
    if let Err(err) = node.shutdown().await {
        tracing::warn!(%err, "Raft did not stop cleanly");
    }
    mesh.shutdown().await;
    tracing::info!("stopped");
    fatal.map_or(Ok(()), Err)
}

/// The agent's background tasks under its one shutdown signal.
struct Tasks {
    shutdown: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Tasks {
    /// Runs `task` until it ends or the shutdown signal is given.
    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let shutdown = self.shutdown.clone();
        self.handles.push(tokio::spawn(async move {
            shutdown.run_until_cancelled_owned(task).await;
        }));
    }

    /// Waits for every task to end after the signal, up to `deadline`; aborts the rest.
    async fn join(self, deadline: Duration) {
        let aborts: Vec<_> = self.handles.iter().map(tokio::task::JoinHandle::abort_handle).collect();
        if tokio::time::timeout(deadline, futures::future::join_all(self.handles)).await.is_err() {
            tracing::warn!("a task did not stop in time after the shutdown signal; aborting it");
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

/// This agent's checkpoint store (`DATA_DIR/checkpoint-store`, or the shared
/// `--checkpoint-root`) and pulls over the mesh.
fn checkpoints(settings: &DaemonSettings, mesh: mesh::MeshHandle, cluster: Arc<dyn Cluster>) -> Result<Checkpoints> {
    let peers = Arc::new(MeshPeers { mesh, cluster });
    let (root, shared) = match &settings.checkpoint_root {
        Some(root) => (root.clone(), true),
        None => (settings.data_dir.join("checkpoint-store"), false),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("checkpoint store {} is not writable", root.display()))?;
    let mut checkpoint = settings.checkpoint.clone();
    if shared {
        // Every agent sees the one copy: nothing to replicate.
        checkpoint.replicas = 0;
    }
    let mut ckpt = Checkpoints::new(settings.name.clone(), Store::new(root), checkpoint, peers);
    ckpt.shared = shared;
    Ok(ckpt)
}

/// Benchmark knob (tests/examples/scale_bench): `SATURN_GOSSIP_EVERYONE=1` restores the
/// design before flat per-agent cost — every agent hears every heartbeat, and dials every
/// peer it discovers (a full mesh) — so one run can compare both.
pub const GOSSIP_EVERYONE_ENV: &str = "SATURN_GOSSIP_EVERYONE";

/// Whether [`GOSSIP_EVERYONE_ENV`] is set.
pub fn gossip_everyone() -> bool {
    std::env::var_os(GOSSIP_EVERYONE_ENV).is_some_and(|v| v == "1")
}

/// `saturn-agent --reset-data --yes-really`: removes the Raft state of `data_dir` (log,
/// snapshots, cluster id), keeping the node key and job logs, so that the agent can join
/// another cluster. An agent that belongs to a cluster never leaves it otherwise. Refused
/// without the confirmation, or while an agent runs on the data dir.
pub fn reset_data(data_dir: &std::path::Path, confirmed: bool) -> Result<String> {
    let raft = data_dir.join("raft");
    if !confirmed {
        anyhow::bail!(
            "--reset-data deletes {} (this agent's Raft log and cluster id): it then belongs to no cluster; add --yes-really to do it",
            raft.display()
        );
    }
    if !data_dir.exists() {
        return Ok(format!("{} does not exist: nothing to reset", data_dir.display()));
    }
    let _lock = data_dir::lock_data_dir(data_dir)?;
    if !raft.exists() {
        return Ok(format!("{} holds no cluster state: nothing to reset", data_dir.display()));
    }
    std::fs::remove_dir_all(&raft).with_context(|| format!("cannot remove {}", raft.display()))?;
    Ok(format!("removed {}: start the agent with --join (or --bootstrap-expect) to join or form a cluster", raft.display()))
}

/// Test hook (documented in tests/README.md): when this environment variable names a
/// directory, the agent kills its own consensus core (a fatal storage error on the next
/// apply) as soon as a file named like the agent exists in it — the way tests make a
/// consensus core die in-process.
pub const KILL_CONSENSUS_ENV: &str = "SATURN_TEST_KILL_CONSENSUS_DIR";

async fn kill_consensus_when(node: Arc<ConsensusNode>, trigger: PathBuf) {
    while !trigger.exists() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!(trigger = %trigger.display(), "test hook: killing this agent's consensus core");
    node.kill_core_for_test().await;
}

/// Preempts this agent's running attempts (one try each, [`Retry::ONCE`], of at most
/// 3 s: the agent is stopping), so that their exits on SIGTERM are hand-backs (the jobs
/// go back to `scheduled` at their checkpoint) rather than failures. A preemption rather
/// than a `HandBack` event: the gang's other hosts must stop their part too.
async fn hand_back_jobs(agent: &str, cluster: &dyn Cluster) {
    let mine: Vec<_> = cluster.host_view(agent).attempts().map(|(record, live)| (record.id.clone(), live.attempt)).collect();
    for (job, attempt) in mine {
        let preempt = |at_ms| Command::Preempt { job: job.clone(), attempt, at_ms };
        let proposed = crate::cluster::propose_retrying(cluster, Retry::ONCE, preempt, |_| false);
        if !matches!(tokio::time::timeout(Duration::from_secs(3), proposed).await, Ok(true)) {
            tracing::warn!(%job, "could not hand the job back; the leader will reschedule it after the grace period");
        }
    }
}
