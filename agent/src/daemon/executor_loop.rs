//! Connects the replicated state to this agent's job processes, level-triggered:
//! whenever the state changes (and every second anyway), the processes that run here are
//! made to match the live attempts the state assigns to this agent, and what the
//! processes report is proposed back as `JobEvent`s.
//!
//! Fencing: the executor acts only on applied state, never on proposals, and it stops
//! every process here when this agent is cut off from a quorum (`fenced`), so a
//! partitioned agent cannot keep GPUs busy with attempts the majority has given away.
//! What the fence stops, and what a previous run of this agent left behind, is handed
//! back rather than failed (see [`hand_back`](super::hand_back)).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use saturn_consensus::{AttemptEvent as StateEvent, AttemptStatus, DispatchKind, JobId, JobRecord, LiveAttempt};
use tokio::sync::{mpsc, watch};

use crate::api::AgentServices;
use crate::cluster::{self, now_ms, Cluster, HostView, Retry};
use crate::checkpoint::{restore, take, Checkpoints};
use super::gang;
use super::hand_back::HandBacks;
use crate::executor::{AttemptEvent, AttemptKey, AttemptSpec, Gang, ProcessEvent, ProcessTable};

/// How often the processes are reconciled even when the state does not change.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// Settings of the executor loop.
#[derive(Clone, Debug)]
pub struct ExecutorLoopConfig {
    /// This agent's name.
    pub agent: String,
    /// Data dir (checkpoint dirs live under it).
    pub data_dir: PathBuf,
    /// SIGTERM → SIGKILL grace for stopped attempts.
    pub kill_grace: Duration,
    /// SIGTERM → SIGKILL grace when fenced: short, because the leader gives the jobs'
    /// work to others once the host-loss grace period ends, and the fence starts only
    /// halfway through it.
    pub fence_kill_grace: Duration,
    /// `--rendezvous-timeout-s`: how long a gang's ranks may take to meet
    /// (`SATURN_RENDEZVOUS_TIMEOUT_S`; a job's own `env` may set it longer or shorter).
    pub rendezvous_timeout: Duration,
    /// `CUDA_VISIBLE_DEVICES` names of this host's MIG instances, by Saturn index.
    pub cuda_ids: BTreeMap<u32, String>,
}

/// Runs the reconcile loop and the event reporter until `shutdown` flips.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: ExecutorLoopConfig,
    ckpt: Checkpoints,
    services: Arc<dyn AgentServices>,
    table: ProcessTable,
    events: mpsc::UnboundedReceiver<AttemptEvent>,
    mut applied: watch::Receiver<u64>,
    mut fenced: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let hand_backs = HandBacks::default();
    let reporter = tokio::spawn(report_events(services.clone(), events, hand_backs.clone(), ckpt.clone(), config.clone()));
    let mut memory = Memory {
        exits_seen: BTreeMap::new(),
        hand_backs,
        started_at_ms: now_ms(),
        ckpt,
        preparing: Arc::new(std::sync::Mutex::new(BTreeSet::new())),
    };
    loop {
        if *shutdown.borrow() {
            break;
        }
        let cut_off = *fenced.borrow_and_update();
        reconcile(&config, &services, &table, cut_off, &mut memory).await;
        tokio::select! {
            _ = applied.changed() => {}
            _ = fenced.changed() => {}
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            _ = shutdown.changed() => {}
        }
    }
    reporter.abort();
}

/// How long an exit may stay unreported in the state before the reconcile loop reports
/// it again. The event reporter normally commits it (after the attempt's last progress
/// and step time) within moments; reporting it earlier would overtake those.
const EXIT_REPORT_AGAIN_AFTER: Duration = Duration::from_secs(10);

/// What the reconcile loop carries from one round to the next.
struct Memory {
    /// When each exited-but-still-live attempt was first noticed.
    exits_seen: BTreeMap<AttemptKey, Instant>,
    /// Exits to report as hand-backs.
    hand_backs: HandBacks,
    /// When this run of the agent started (Unix ms).
    started_at_ms: u64,
    /// Checkpoint store and pulls.
    ckpt: Checkpoints,
    /// Attempts whose checkpoint is being restored before they start.
    preparing: Arc<std::sync::Mutex<BTreeSet<AttemptKey>>>,
}

/// One reconcile round: start what must run here, stop everything else.
async fn reconcile(
    config: &ExecutorLoopConfig,
    services: &Arc<dyn AgentServices>,
    table: &ProcessTable,
    fenced: bool,
    memory: &mut Memory,
) {
    let hand_backs = &memory.hand_backs;
    if fenced {
        let stopped = table.retain(&BTreeSet::new(), config.fence_kill_grace);
        for key in &stopped {
            hand_backs.add(key.clone());
        }
        if !stopped.is_empty() {
            tracing::warn!(?stopped, "cut off from the cluster's quorum: stopping every job process here");
        }
        return;
    }
    // Only this host's attempts: a copy of the whole state on every apply, on every
    // agent, is what limited a 10,000-job cluster.
    let view = services.cluster().host_view(&config.agent);
    let mut keep = BTreeSet::new();
    for (record, live) in view.attempts() {
        let key = AttemptKey::new(record.id.0.clone(), live.attempt);
        keep.insert(key.clone());
        // Dispatched before this run of the agent started: the state it was read from may
        // be stale (a restarted agent applies the log it missed only now), and a process
        // of it may have run and ended already. Never started; handed back instead.
        let from_before_start = live.dispatched_at_ms < memory.started_at_ms && table.finished(&key).is_none();
        match live.status {
            _ if from_before_start => hand_back_unstarted(services, table, hand_backs, &key, "ended when its agent restarted"),
            AttemptStatus::Stopping => {
                table.stop(&key, config.kill_grace);
            }
            // Started already (or ended): nothing to build; the ports below are probed
            // only for an attempt about to start.
            AttemptStatus::Running if table.running().contains(&key) || table.finished(&key).is_some() => {}
            // Fetch first: a training attempt starts once its rank-0 host has restored
            // the checkpoint it announces (`resumed`); rank 0 does that here.
            AttemptStatus::Running if live.kind == DispatchKind::Train && !live.resumed => {
                if live.placement.first().is_some_and(|hg| hg.host == config.agent) {
                    prepare_checkpoint(config, services, table, memory, &record.id, key.clone());
                }
            }
            AttemptStatus::Running => match attempt_spec(config, &view, record, live, port_is_free) {
                Some(spec) => match rendezvous_port_taken(&spec, port_is_free) {
                    Some(error) => fail_unstarted(services, table, &key, error),
                    None => {
                        table.ensure_running(&spec).await;
                    }
                },
                None => tracing::warn!(job = %record.id, "cannot build the attempt's spec; not starting it"),
            },
        }
        // An exit whose report was not committed (leader change, partition) is reported
        // again: the state still lists the attempt as live until it is.
        if let Some(exited) = table.finished(&key) {
            let first_seen = *memory.exits_seen.entry(key.clone()).or_insert_with(Instant::now);
            if table.pid(&key).is_none() && first_seen.elapsed() > EXIT_REPORT_AGAIN_AFTER {
                propose_event(services.as_ref(), &key, exited, &mut Vec::new(), hand_backs).await;
            }
        }
    }
    memory.exits_seen.retain(|key, _| keep.contains(key));
    let running: BTreeSet<AttemptKey> = table.running().into_iter().collect();
    hand_backs.retain(|key| keep.contains(key) || running.contains(key));
    let stale = table.retain(&keep, config.kill_grace);
    if !stale.is_empty() {
        tracing::info!(?stale, "stopping attempts the cluster no longer runs here");
    }
}

/// Marks an attempt of a former run of this agent as ended here (never to be started)
/// and reports its exit as a hand-back, so its job resumes from its last checkpoint in a
/// new attempt.
fn hand_back_unstarted(services: &Arc<dyn AgentServices>, table: &ProcessTable, hand_backs: &HandBacks, key: &AttemptKey, why: &str) {
    tracing::info!(%key, why, "handing back an attempt that was never started");
    let exited = ProcessEvent::Exited { code: None, signal: None, error: Some(why.to_string()) };
    table.mark_finished(key, exited.clone());
    hand_backs.add(key.clone());
    let (services, hand_backs, key) = (services.clone(), hand_backs.clone(), key.clone());
    tokio::spawn(async move { propose_event(services.as_ref(), &key, exited, &mut Vec::new(), &hand_backs).await });
}

/// Starts restoring the checkpoint of a training attempt whose rank 0 is this host
/// (once per attempt), then reports the step restored, or hands the attempt back.
fn prepare_checkpoint(
    config: &ExecutorLoopConfig,
    services: &Arc<dyn AgentServices>,
    table: &ProcessTable,
    memory: &Memory,
    job: &JobId,
    key: AttemptKey,
) {
    if !memory.preparing.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
        return;
    }
    let (ckpt, services, table, hand_backs) = (memory.ckpt.clone(), services.clone(), table.clone(), memory.hand_backs.clone());
    let (preparing, job, live_dir) = (memory.preparing.clone(), job.clone(), crate::executor::checkpoint_dir(&config.data_dir, &key.job));
    tokio::spawn(async move {
        match restore::prepare(&ckpt, services.as_ref(), &job, &live_dir).await {
            restore::Prepared::Ready { step, note } => {
                if let Some(note) = &note {
                    tracing::warn!(%key, step, note, "resuming from an older checkpoint than recorded");
                }
                propose_state_event(services.cluster().as_ref(), &key, StateEvent::Resumed { step, note }, true).await;
            }
            restore::Prepared::HandBack(why) => {
                tracing::warn!(%key, why, "no checkpoint could be restored: handing the attempt back");
                hand_back_unstarted(&services, &table, &hand_backs, &key, &why);
            }
        }
        preparing.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    });
}

/// Ends an attempt that cannot start here with `error` (a failure of the attempt: the
/// job restarts, in a new attempt, as after any failed start).
fn fail_unstarted(services: &Arc<dyn AgentServices>, table: &ProcessTable, key: &AttemptKey, error: String) {
    tracing::warn!(%key, %error, "not starting the attempt");
    let exited = ProcessEvent::Exited { code: None, signal: None, error: Some(error) };
    table.mark_finished(key, exited.clone());
    let (services, key) = (services.clone(), key.clone());
    tokio::spawn(async move { propose_event(services.as_ref(), &key, exited, &mut Vec::new(), &HandBacks::default()).await });
}

/// Whether a TCP port is free on this host right now (for every address).
fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// On the master host of a multi-host gang: why the rendezvous port cannot be used (some
/// other program holds it), or `None`. The other ranks computed the same port and cannot
/// be told of another one, so the attempt fails; its restart gets another port.
fn rendezvous_port_taken(spec: &AttemptSpec, is_free: impl Fn(u16) -> bool) -> Option<String> {
    let gang = spec.gang.as_ref().filter(|gang| gang.nnodes > 1 && gang.node_rank == 0)?;
    (!is_free(gang.master_port)).then(|| {
        format!(
            "the gang's rendezvous port {} is in use on {} by another program; the attempt is retried on another port",
            gang.master_port, spec.agent_name
        )
    })
}

/// The process spec of this host's part of a live attempt. `is_free` is asked only for
/// a single-host job, which may pick any free port of its block.
fn attempt_spec(
    config: &ExecutorLoopConfig,
    view: &HostView,
    record: &JobRecord,
    live: &LiveAttempt,
    is_free: impl Fn(u16) -> bool,
) -> Option<AttemptSpec> {
    let rank = live.placement.iter().position(|hg| hg.host == config.agent)?;
    let here = &live.placement[rank];
    let agent = view.agent(&config.agent)?;
    let gpu = here.gpus.first().and_then(|index| agent.gpus.iter().find(|g| g.index == *index));
    let gang = gang_of(config, view, record, live, rank, is_free);
    let profile_steps = match &live.kind {
        DispatchKind::Trial { steps, .. } => Some(*steps),
        DispatchKind::Train => None,
    };
    Some(AttemptSpec {
        job_id: record.id.0.clone(),
        attempt: live.attempt,
        agent_name: config.agent.clone(),
        technique: live.technique.clone(),
        gpus: here.gpus.clone(),
        cuda_ids: config.cuda_ids.clone(),
        gpu_model: gpu.map(|g| g.model.clone()).unwrap_or_default(),
        gpu_memory_mib: gpu.map(|g| g.memory_mib),
        steps: record.spec.steps,
        start_step: live.start_step,
        checkpoint_dir: crate::executor::checkpoint_dir(&config.data_dir, &record.id.0),
        profile_steps,
        gang: Some(gang),
        env: record.spec.env.clone(),
        command: record.spec.command.clone(),
        workdir: PathBuf::from(&record.spec.workdir),
    })
}

/// The gang variables of rank `rank` of `live` (see [`gang`](super::gang)).
fn gang_of(
    config: &ExecutorLoopConfig,
    view: &HostView,
    record: &JobRecord,
    live: &LiveAttempt,
    rank: usize,
    is_free: impl Fn(u16) -> bool,
) -> Gang {
    let placement = &live.placement;
    let master = &placement[0];
    let first_gpu = master.gpus.first().copied().unwrap_or(0);
    let rendezvous_timeout = record
        .spec
        .env
        .get("SATURN_RENDEZVOUS_TIMEOUT_S")
        .and_then(|value| value.trim().parse::<u64>().ok())
        .filter(|seconds| *seconds > 0)
        .map_or(config.rendezvous_timeout, Duration::from_secs);
    let world_size = placement.iter().map(|hg| hg.gpus.len() as u32).sum();
    if placement.len() == 1 {
        return Gang {
            nnodes: 1,
            node_rank: 0,
            master_addr: LOOPBACK.to_owned(),
            master_port: gang::single_host_port(first_gpu, &record.id.0, live.attempt, is_free),
            world_size,
            node_addr: LOOPBACK.to_owned(),
            rendezvous_timeout,
            peers: Vec::new(),
        };
    }
    let addrs = |host: &str| view.agent(host).map(|a| a.node.addrs.clone()).unwrap_or_default();
    let all: Vec<Vec<String>> = placement.iter().map(|hg| addrs(&hg.host)).collect();
    // Where rank `i` is reached from the other ranks; its name when it announced nothing usable.
    let reached_at = |i: usize| {
        let others: Vec<&[String]> = (0..all.len()).filter(|j| *j != i).map(|j| all[j].as_slice()).collect();
        gang::reachable_addr(&all[i], &others).unwrap_or_else(|| placement[i].host.clone())
    };
    Gang {
        nnodes: placement.len() as u32,
        node_rank: rank as u32,
        master_addr: reached_at(0),
        master_port: gang::port_candidates(first_gpu, &record.id.0, live.attempt).next().unwrap_or_default(),
        world_size,
        node_addr: reached_at(rank),
        rendezvous_timeout,
        peers: (0..placement.len()).filter(|i| *i != rank).map(|i| format!("{} at {}", placement[i].host, reached_at(i))).collect(),
    }
}

/// `MASTER_ADDR` and `SATURN_NODE_ADDR` of a job whose ranks all run on this host.
const LOOPBACK: &str = "127.0.0.1";

/// Proposes what the processes report, in order per attempt. Metrics seen between two
/// step reports travel with the next one. Progress is best-effort (a newer report
/// follows), except the last one before an exit: whether exit 0 means "completed"
/// depends on the final step count, so it is re-sent reliably ahead of the `Exited`.
async fn report_events(
    services: Arc<dyn AgentServices>,
    mut events: mpsc::UnboundedReceiver<AttemptEvent>,
    hand_backs: HandBacks,
    ckpt: Checkpoints,
    config: ExecutorLoopConfig,
) {
    let mut pending_metrics: BTreeMap<AttemptKey, Vec<(String, f64)>> = BTreeMap::new();
    let mut unsent_step: BTreeMap<AttemptKey, u64> = BTreeMap::new();
    while let Some(AttemptEvent { key, event }) = events.recv().await {
        match &event {
            ProcessEvent::Metric { name, value } => {
                let metrics = pending_metrics.entry(key).or_default();
                metrics.retain(|(n, _)| n != name);
                metrics.push((name.clone(), *value));
                continue;
            }
            // Only the rank-0 host of a training attempt has the job's checkpoint; a
            // trial's or another rank's checkpoint line is not the job's.
            ProcessEvent::Checkpoint { step } => {
                if writes_checkpoints(services.as_ref(), &config.agent, &key) {
                    let live_dir = crate::executor::checkpoint_dir(&config.data_dir, &key.job);
                    let event = take::take(&ckpt, &key.job, *step, live_dir).await;
                    propose_state_event(services.cluster().as_ref(), &key, event, true).await;
                }
                continue;
            }
            ProcessEvent::Exited { .. } => {
                if let Some(step) = unsent_step.remove(&key) {
                    let mut metrics = pending_metrics.remove(&key).unwrap_or_default();
                    let progress = StateEvent::Progress { step, metrics: std::mem::take(&mut metrics) };
                    propose_state_event(services.cluster().as_ref(), &key, progress, true).await;
                }
            }
            _ => {}
        }
        let step = match &event {
            ProcessEvent::Step { step, .. } => Some(*step),
            _ => None,
        };
        let mut metrics = pending_metrics.remove(&key).unwrap_or_default();
        let committed = propose_event(services.as_ref(), &key, event, &mut metrics, &hand_backs).await;
        if let Some(step) = step {
            if committed {
                unsent_step.remove(&key);
            } else {
                unsent_step.insert(key, step);
            }
        }
    }
}

/// Whether this host writes the checkpoints of `key`: rank 0 of a training attempt.
fn writes_checkpoints(services: &dyn AgentServices, agent: &str, key: &AttemptKey) -> bool {
    let view = services.cluster().host_view(agent);
    view.live_attempt(&JobId(key.job.clone()))
        .filter(|live| live.attempt == key.attempt && live.kind == DispatchKind::Train)
        .is_some_and(|live| live.placement.first().is_some_and(|hg| hg.host == agent))
}

/// Proposes one process event; returns whether it was committed. The exit of a
/// hand-back is reported as `HandBack`, so it does not count as a failure.
async fn propose_event(
    services: &dyn AgentServices,
    key: &AttemptKey,
    event: ProcessEvent,
    metrics: &mut Vec<(String, f64)>,
    hand_backs: &HandBacks,
) -> bool {
    let (state_event, important) = match event {
        ProcessEvent::Started { .. } => (StateEvent::Started, true),
        ProcessEvent::Step { step, .. } => (StateEvent::Progress { step, metrics: std::mem::take(metrics) }, false),
        ProcessEvent::StepTime { seconds_per_step, samples } => {
            let samples = u32::try_from(samples).unwrap_or(u32::MAX);
            (StateEvent::TrialStepTime { seconds_per_step, samples }, true)
        }
        ProcessEvent::Checkpoint { step } => (StateEvent::Checkpoint { step }, true),
        ProcessEvent::Metric { .. } => return true,
        ProcessEvent::Exited { code, signal, error } => {
            let error = error.or_else(|| signal.map(|s| format!("killed by signal {s}")));
            match hand_backs.contains(key) {
                true => (StateEvent::HandBack { code, error }, true),
                false => (StateEvent::Exited { code, error }, true),
            }
        }
    };
    propose_state_event(services.cluster().as_ref(), key, state_event, important).await
}

/// Commits one attempt event. Important ones are retried ([`Retry::PERSIST`]: a leader
/// change takes a second or two) as long as the attempt is still live.
async fn propose_state_event(cluster: &dyn Cluster, key: &AttemptKey, event: StateEvent, important: bool) -> bool {
    let retry = if important { Retry::PERSIST } else { Retry::ONCE };
    cluster::report_attempt(cluster, &JobId(key.job.clone()), key.attempt, retry, event).await
}
