//! The executor's glue to the cluster: whenever the state changes (and every second
//! anyway) it reads this host's view through the cluster port, asks the pure
//! [`reconcile`] what to do (start, stop, report, hand back) and does it; and it reports
//! what the processes say as `JobEvent`s (`report_events`).
//!
//! Fencing: the executor acts only on applied state, never on proposals, and it stops
//! every process here when this agent is cut off from a quorum (`fenced`), so a
//! partitioned agent cannot keep GPUs busy with attempts the majority has given away.
//! What the fence stops, and what a previous run of this agent left behind, is handed
//! back rather than failed (see [`hand_back`](crate::executor::hand_back)).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use saturn_consensus::{AttemptEvent as StateEvent, DispatchKind, JobRecord, LiveAttempt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::api::AgentServices;
use crate::checkpoint::{restore, Checkpoints};
use crate::cluster::{now_ms, HostView, Retry};
use crate::executor::gang;
use crate::executor::hand_back::HandBacks;
use crate::executor::reconcile::{job_of, reconcile, Action, Grace, Memory};
use crate::executor::report::{report, report_state_event, Reporter};
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
    shutdown: CancellationToken,
) {
    let mut glue = Glue {
        memory: Memory::new(now_ms()),
        ckpt,
        preparing: Arc::new(std::sync::Mutex::new(BTreeSet::new())),
    };
    let reporter = Reporter {
        cluster: services.cluster(),
        agent: config.agent.clone(),
        data_dir: config.data_dir.clone(),
        ckpt: glue.ckpt.clone(),
        hand_backs: glue.memory.hand_backs.clone(),
    };
    let reporter = tokio::spawn(reporter.run(events));
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let cut_off = *fenced.borrow_and_update();
        round(&config, &services, &table, cut_off, &mut glue).await;
        tokio::select! {
            _ = applied.changed() => {}
            _ = fenced.changed() => {}
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            () = shutdown.cancelled() => {}
        }
    }
    reporter.abort();
}

/// What the reconcile loop carries from one round to the next.
struct Glue {
    /// [`reconcile`]'s memory (hand-backs, exits seen).
    memory: Memory,
    /// Checkpoint store and pulls.
    ckpt: Checkpoints,
    /// Attempts whose checkpoint is being restored before they start.
    preparing: Arc<std::sync::Mutex<BTreeSet<AttemptKey>>>,
}

/// One reconcile round: [`reconcile`] decides, this carries its actions out.
async fn round(config: &ExecutorLoopConfig, services: &Arc<dyn AgentServices>, table: &ProcessTable, fenced: bool, glue: &mut Glue) {
    // Only this host's attempts: a copy of the whole state on every apply, on every
    // agent, is what limited a 10,000-job cluster.
    let view = services.cluster().host_view(&config.agent);
    let actions = reconcile(&view, table, fenced, Instant::now(), &mut glue.memory);
    let hand_backs = glue.memory.hand_backs.clone();
    let (mut fenced_stops, mut stale) = (Vec::new(), Vec::new());
    for action in actions {
        match action {
            Action::Start { key } => {
                let Some((record, live)) = attempt_of(&view, &key) else { continue };
                match attempt_spec(config, &view, record, live, port_is_free) {
                    Some(spec) => match rendezvous_port_taken(&spec, port_is_free) {
                        Some(error) => fail_unstarted(services, table, &key, error),
                        None => {
                            table.ensure_running(&spec).await;
                        }
                    },
                    None => tracing::warn!(job = %record.id, "cannot build the attempt's spec; not starting it"),
                }
            }
            Action::Restore { key } => prepare_checkpoint(config, services, table, glue, key),
            Action::Stop { key, grace: Grace::Fence } => {
                table.stop(&key, config.fence_kill_grace);
                fenced_stops.push(key);
            }
            Action::Stop { key, grace: Grace::Normal } => {
                table.stop(&key, config.kill_grace);
                if attempt_of(&view, &key).is_none() {
                    stale.push(key);
                }
            }
            Action::Report { key, exited } => {
                report(services.cluster().as_ref(), &key, exited, &mut Vec::new(), &hand_backs).await;
            }
            Action::HandBack { key, why } => hand_back_unstarted(services, table, &hand_backs, &key, &why),
        }
    }
    if !fenced_stops.is_empty() {
        tracing::warn!(stopped = ?fenced_stops, "cut off from the cluster's quorum: stopping every job process here");
    }
    if !stale.is_empty() {
        tracing::info!(?stale, "stopping attempts the cluster no longer runs here");
    }
}

/// The job record and live attempt `key` names in `view`.
fn attempt_of<'a>(view: &'a HostView, key: &AttemptKey) -> Option<(&'a JobRecord, &'a LiveAttempt)> {
    view.attempts().find(|(record, live)| record.id.0 == key.job && live.attempt == key.attempt)
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
    tokio::spawn(async move { report(services.cluster().as_ref(), &key, exited, &mut Vec::new(), &hand_backs).await });
}

/// Starts restoring the checkpoint of a training attempt whose rank 0 is this host
/// (once per attempt), then reports the step restored, or hands the attempt back.
fn prepare_checkpoint(config: &ExecutorLoopConfig, services: &Arc<dyn AgentServices>, table: &ProcessTable, glue: &Glue, key: AttemptKey) {
    if !glue.preparing.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
        return;
    }
    let (ckpt, services, table, hand_backs) = (glue.ckpt.clone(), services.clone(), table.clone(), glue.memory.hand_backs.clone());
    let (preparing, job, live_dir) = (glue.preparing.clone(), job_of(&key), crate::executor::checkpoint_dir(&config.data_dir, &key.job));
    tokio::spawn(async move {
        match restore::prepare(&ckpt, services.as_ref(), &job, &live_dir).await {
            restore::Prepared::Ready { step, note } => {
                if let Some(note) = &note {
                    tracing::warn!(%key, step, note, "resuming from an older checkpoint than recorded");
                }
                report_state_event(services.cluster().as_ref(), &key, StateEvent::Resumed { step, note }, Retry::PERSIST).await;
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
    tokio::spawn(async move { report(services.cluster().as_ref(), &key, exited, &mut Vec::new(), &HandBacks::default()).await });
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

/// The gang variables of rank `rank` of `live` (see [`gang`]).
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
