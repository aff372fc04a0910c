//! The replicated cluster state: what every agent knows, identical on every replica.
//!
//! This module holds the data and the read-only queries; the transitions live in
//! [`apply`](crate::apply). Everything is in ordered maps so that iteration, snapshots
//! and comparisons between replicas are deterministic.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::early_stop::RungRecord;
use crate::checkpoint::{CheckpointRecord, JobNote};
use crate::command::{Attempt, DispatchKind, ProfileKey, ProfileResult, StoredPlan};
use crate::job::{JobId, JobSpec, Placement};
use crate::node::{AgentNode, GpuInfo};

/// A job's lifecycle state (the `state` field of the job JSON).
///
/// Serialized in lowercase (`"queued"`), as in the job JSON; bincode encodes variants by
/// index, so the renaming costs nothing on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for profiles.
    Queued,
    /// Being profiled (a trial attempt is live, or the scheduler marked it so).
    Profiling,
    /// Ready to run, waiting for GPUs.
    Scheduled,
    /// A training attempt is live.
    Running,
    /// Ended: exit 0 after all steps.
    Completed,
    /// Ended: failed more than `max_restarts` times (or could not run at all).
    Failed,
    /// Ended: cancelled by a user.
    Cancelled,
    /// Ended early by its sweep's early-stopping rule (appended: variant indices are
    /// part of the log's encoding).
    Stopped,
}

impl JobState {
    /// Whether the job has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed | JobState::Cancelled | JobState::Stopped)
    }

    /// The lowercase name used in JSON and the CLI (`queued`, `running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Profiling => "profiling",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a live attempt should be running (`"running"` / `"stopping"` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptStatus {
    /// Dispatched; its executors should run it.
    Running,
    /// Preempted or cancelled: its executors should stop it (SIGTERM, grace, SIGKILL)
    /// and report `Exited`. Its GPUs stay held until then.
    Stopping,
}

/// The one attempt of a job that currently holds GPUs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveAttempt {
    /// Attempt number (`SATURN_ATTEMPT`).
    pub attempt: Attempt,
    /// Technique it runs as.
    pub technique: String,
    /// Where it runs.
    pub placement: Placement,
    /// Training or trial.
    pub kind: DispatchKind,
    /// Running or stopping.
    pub status: AttemptStatus,
    /// Step it starts from (`SATURN_START_STEP`).
    pub start_step: u64,
    /// When it was dispatched.
    pub dispatched_at_ms: u64,
    /// When its executor reported `Started`.
    pub started_at_ms: Option<u64>,
    /// Whether it reported any `SATURN step=` line (a script that never does is not
    /// held to `steps` when it exits 0).
    pub reported_progress: bool,
    /// Latest metric values this attempt reported (a trial's step time among them).
    pub metrics: Vec<(String, f64)>,
    /// The waiting state the job returns to when this attempt ends without finishing
    /// the job (the job's state before the dispatch for a trial, `scheduled` otherwise).
    pub return_state: JobState,
    /// Whether its rank-0 host has reported the step it actually restored
    /// ([`AttemptEvent::Resumed`](crate::AttemptEvent)); `start_step` is final then, and
    /// only then may a training attempt's processes start.
    #[serde(default)]
    pub resumed: bool,
}

impl LiveAttempt {
    /// The step time a trial attempt measured ([`AttemptEvent::TrialStepTime`](crate::AttemptEvent)),
    /// once reported.
    pub fn trial_step_time(&self) -> Option<f64> {
        self.metrics.iter().find(|(name, _)| name == crate::command::STEP_TIME_METRIC).map(|(_, v)| *v)
    }
}

/// A job: what the user asked for and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Its id.
    pub id: JobId,
    /// What the user submitted.
    pub spec: JobSpec,
    /// Lifecycle state.
    pub state: JobState,
    /// Steps done (the last `SATURN step=` of a training attempt; reset to the last
    /// checkpoint when an attempt ends without completing).
    pub steps_done: u64,
    /// Last durable checkpoint step; a restart resumes here.
    pub last_checkpoint: u64,
    /// Number of the last attempt dispatched (0: never dispatched).
    pub attempt: Attempt,
    /// The attempt holding GPUs now, if any.
    pub live: Option<LiveAttempt>,
    /// Technique of the last training attempt (kept after it ends, for display).
    pub technique: Option<String>,
    /// Placement of the last training attempt (kept after it ends, for display).
    pub placement: Placement,
    /// When submitted.
    pub submitted_at_ms: u64,
    /// When its first training attempt started.
    pub started_at_ms: Option<u64>,
    /// When it reached a terminal state (for a cancelled job: when its last attempt exited
    /// or, without one, when it was cancelled).
    pub finished_at_ms: Option<u64>,
    /// Exit status of the last attempt that exited.
    pub exit_code: Option<i32>,
    /// Why it failed (or why its last attempt did).
    pub error: Option<String>,
    /// Failed training attempts restarted so far.
    pub restarts: u32,
    /// Latest metric values reported by a training attempt.
    pub metrics: Vec<(String, f64)>,
    /// The early-stopping metric at each rung step the job reached, in step order
    /// (empty for jobs without `early_stop`).
    #[serde(default)]
    pub rungs: Vec<RungRecord>,
    /// Why the sweep's early-stopping rule stopped it.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Its checkpoint steps and where their verified copies are.
    #[serde(default)]
    pub checkpoints: BTreeMap<u64, CheckpointRecord>,
    /// What happened to it that people should see (checkpoint refusals, fallbacks, ...).
    #[serde(default)]
    pub notes: Vec<JobNote>,
    /// Checkpoint bytes copied between hosts for it (replicas and fetches).
    #[serde(default)]
    pub bytes_replicated: u64,
    /// Trial runs (profiling) dispatched so far; `attempt - trials` are training attempts.
    #[serde(default)]
    pub trials: u32,
}

impl JobRecord {
    /// Training attempts dispatched so far (trial runs not counted).
    pub fn training_attempts(&self) -> u32 {
        self.attempt.saturating_sub(self.trials)
    }
}

/// An agent as the replicated state knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// How to reach it.
    pub node: AgentNode,
    /// Its GPUs.
    pub gpus: Vec<GpuInfo>,
    /// False once the leader declared it down; true again when it returns.
    pub up: bool,
    /// When `up` last changed.
    pub since_ms: u64,
}

/// Which attempt holds a GPU.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GpuHolder {
    /// The job.
    pub job: JobId,
    /// Its live attempt.
    pub attempt: Attempt,
}

/// One GPU of the cluster: `(host name, gpu index)`.
pub type GpuSlot = (String, u32);

/// Running totals, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Dispatches applied (trials included).
    pub dispatches: u64,
    /// Preemptions applied.
    pub preemptions: u64,
    /// Attempts ended because their host was declared down.
    pub lost_attempts: u64,
    /// Failed training attempts restarted.
    pub restarts: u64,
    /// Commands rejected at apply.
    pub rejected: u64,
    /// Jobs stopped by their sweep's early-stopping rule.
    #[serde(default)]
    pub early_stops: u64,
}

/// The whole replicated state. Only [`ClusterState::apply`] changes it: its fields are
/// private to the crate, and everyone else reads them through the accessors below.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Sequence number of the last job id assigned.
    pub(crate) last_job_seq: u64,
    /// All jobs ever submitted. Shared (`Arc`) so that copies of the state — the
    /// snapshot every reader gets after an apply, the scheduler's scratch copy each
    /// round — cost a reference count per job, not a deep copy of 10,000 job specs; a
    /// change copies only the job it touches ([`ClusterState::job_mut`]).
    pub(crate) jobs: BTreeMap<JobId, Arc<JobRecord>>,
    /// GPU occupancy: every held GPU and its live attempt. A GPU not here is free.
    #[serde(with = "crate::serde_seq")]
    pub(crate) gpus: BTreeMap<GpuSlot, GpuHolder>,
    /// Profiling results.
    #[serde(with = "crate::serde_seq")]
    pub(crate) profiles: BTreeMap<ProfileKey, ProfileResult>,
    /// Agents ever seen, by name.
    pub(crate) agents: BTreeMap<String, AgentRecord>,
    /// The current plan.
    pub(crate) plan: Option<StoredPlan>,
    /// Epoch of the last committed plan (0: none yet).
    pub(crate) plan_epoch: u64,
    /// Running totals.
    pub(crate) counters: Counters,
    /// The id in the marker file of the cluster's shared checkpoint root, once one agent
    /// with `--checkpoint-root` has written it.
    #[serde(default)]
    pub(crate) checkpoint_root_marker: Option<String>,
}

impl ClusterState {
    /// Sequence number of the last job id assigned.
    pub fn last_job_seq(&self) -> u64 {
        self.last_job_seq
    }

    /// All jobs ever submitted, by id.
    pub fn jobs(&self) -> &BTreeMap<JobId, Arc<JobRecord>> {
        &self.jobs
    }

    /// GPU occupancy: every held GPU and its live attempt. A GPU not here is free.
    pub fn gpus(&self) -> &BTreeMap<GpuSlot, GpuHolder> {
        &self.gpus
    }

    /// Profiling results.
    pub fn profiles(&self) -> &BTreeMap<ProfileKey, ProfileResult> {
        &self.profiles
    }

    /// Agents ever seen, by name.
    pub fn agents(&self) -> &BTreeMap<String, AgentRecord> {
        &self.agents
    }

    /// The current plan.
    pub fn plan(&self) -> Option<&StoredPlan> {
        self.plan.as_ref()
    }

    /// Epoch of the last committed plan (0: none yet).
    pub fn plan_epoch(&self) -> u64 {
        self.plan_epoch
    }

    /// Running totals.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The id in the marker file of the cluster's shared checkpoint root, once written.
    pub fn checkpoint_root_marker(&self) -> Option<&str> {
        self.checkpoint_root_marker.as_deref()
    }

    /// The job with this id.
    pub fn job(&self, id: &JobId) -> Option<&JobRecord> {
        self.jobs.get(id).map(Arc::as_ref)
    }

    /// The job with this id, to change it: copied first when a copy of the state still
    /// shares it.
    pub(crate) fn job_mut(&mut self, id: &JobId) -> Option<&mut JobRecord> {
        self.jobs.get_mut(id).map(Arc::make_mut)
    }

    /// Whether `attempt` is the live attempt of `job`.
    pub fn is_live(&self, job: &JobId, attempt: Attempt) -> bool {
        self.live_attempt(job).is_some_and(|live| live.attempt == attempt)
    }

    /// The live attempt of `job`, if any.
    pub fn live_attempt(&self, job: &JobId) -> Option<&LiveAttempt> {
        self.jobs.get(job).and_then(|record| record.live.as_ref())
    }

    /// Which attempt holds GPU `gpu` of `host`, if any.
    pub fn gpu_holder(&self, host: &str, gpu: u32) -> Option<&GpuHolder> {
        self.gpus.get(&(host.to_string(), gpu))
    }

    /// Live attempts with a process on `host`: what that host's executor must be
    /// running (status `Running`) or stopping (status `Stopping`). Everything else it
    /// runs is stale and must be killed.
    pub fn attempts_on_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = (&'a JobRecord, &'a LiveAttempt)> + 'a {
        self.jobs.values().filter_map(move |record| {
            let live = record.live.as_ref()?;
            live.placement.iter().any(|hg| hg.host == host).then_some((record.as_ref(), live))
        })
    }

    /// GPUs of up agents that no live attempt holds, as `(host, gpu)`.
    pub fn free_gpus(&self) -> impl Iterator<Item = (&str, &GpuInfo)> + '_ {
        self.agents.values().filter(|agent| agent.up).flat_map(move |agent| {
            agent
                .gpus
                .iter()
                .filter(move |gpu| !self.gpus.contains_key(&(agent.node.name.clone(), gpu.index)))
                .map(move |gpu| (agent.node.name.as_str(), gpu))
        })
    }

    /// The profiling result for `key`, if recorded.
    pub fn profile(&self, key: &ProfileKey) -> Option<&ProfileResult> {
        self.profiles.get(key)
    }

    /// Jobs in `state`.
    pub fn jobs_in(&self, state: JobState) -> impl Iterator<Item = &JobRecord> {
        self.jobs.values().map(Arc::as_ref).filter(move |record| record.state == state)
    }
}
