//! Commands: the only way the replicated state changes, and what applying one returns.
//!
//! Every command is proposed by some agent, committed through Raft and applied by
//! [`ClusterState::apply`](crate::ClusterState::apply) on every replica. Commands carry
//! their own timestamps (`at_ms`, Unix milliseconds set by the proposer) because apply
//! must be deterministic: it never reads a clock or a random source. Ids, attempt
//! numbers and plan epochs are never in a command: the state machine assigns them.

use serde::{Deserialize, Serialize};

use crate::job::{JobId, JobSpec, Placement};
use crate::node::{AgentNode, GpuInfo};

/// Attempt number of a job: 1 for the first dispatch, +1 on every dispatch after
/// (trial runs included). This is `SATURN_ATTEMPT`.
pub type Attempt = u32;

/// A change to the cluster state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Accept new jobs; the state machine assigns their ids ([`CommandResult::Submitted`]).
    SubmitJobs {
        /// The jobs, in submission order.
        specs: Vec<JobSpec>,
        /// When the user submitted them.
        at_ms: u64,
    },
    /// Cancel a job. A live attempt enters `stopping` and keeps its GPUs until it exits.
    CancelJob {
        /// The job to cancel.
        job: JobId,
        /// When the user asked.
        at_ms: u64,
    },
    /// Move a job that has no live attempt between the waiting states `queued`,
    /// `profiling` and `scheduled` (the scheduler's view of its profiling progress).
    SetJobPhase {
        /// The job.
        job: JobId,
        /// Its new waiting state.
        phase: JobPhase,
        /// When the scheduler decided.
        at_ms: u64,
    },
    /// Store one profiling result (overwrites an earlier one for the same key).
    RecordProfile {
        /// What was measured.
        key: ProfileKey,
        /// The measurement.
        result: ProfileResult,
    },
    /// Commit a new plan; the state machine assigns its epoch.
    CommitPlan {
        /// The plan; its `epoch` field is ignored and replaced.
        plan: StoredPlan,
        /// When the leader solved it.
        at_ms: u64,
    },
    /// Start a new attempt of a job on a placement (applied only if safe, see
    /// [`Rejection`]); the state machine assigns the attempt number.
    Dispatch {
        /// The job.
        job: JobId,
        /// Technique to run as; one of the job's techniques.
        technique: String,
        /// Where: one entry per host of the gang.
        placement: Placement,
        /// A training run or a short profiling trial.
        kind: DispatchKind,
        /// When the leader decided.
        at_ms: u64,
    },
    /// Something happened to a running attempt, as its executor saw it.
    JobEvent {
        /// The job.
        job: JobId,
        /// The attempt the event is about; ignored unless it is the live one.
        attempt: Attempt,
        /// What happened.
        event: AttemptEvent,
        /// When the executor saw it.
        at_ms: u64,
    },
    /// Ask a live attempt to stop (checkpoint and exit) so the job can be re-dispatched.
    Preempt {
        /// The job.
        job: JobId,
        /// The attempt to stop; ignored unless it is the live one.
        attempt: Attempt,
        /// When the leader decided.
        at_ms: u64,
    },
    /// An agent is up and offers these GPUs (joining, returning, or GPUs changed).
    AgentUp {
        /// How to reach it.
        node: AgentNode,
        /// Its GPUs.
        gpus: Vec<GpuInfo>,
        /// When the leader saw it.
        at_ms: u64,
    },
    /// The leader declares an agent down after its grace period: every live attempt
    /// on it is lost.
    AgentDown {
        /// Agent name.
        name: String,
        /// When the leader decided.
        at_ms: u64,
    },
    /// The scheduler gives up on a waiting job that cannot run at all (every
    /// configuration was measured infeasible): it ends `failed` with `reason` as its
    /// error. Rejected while the job has a live attempt. (Appended last: variant indices
    /// are part of the log's encoding.)
    FailJob {
        /// The job.
        job: JobId,
        /// Why, for people (shown in `saturn job status`).
        reason: String,
        /// When the leader decided.
        at_ms: u64,
    },
    /// The job's sweep stops it early (its early-stopping rule judged it a loser). The
    /// job is `stopped` at once; a live attempt enters `stopping` (SIGTERM, checkpoint,
    /// exit) and keeps its GPUs until it exits. Rejected for a job without `early_stop`
    /// or one that has ended. (Appended last.)
    StopJob {
        /// The job.
        job: JobId,
        /// Why, for people: the rule, the rung and the values compared.
        reason: String,
        /// When the leader decided.
        at_ms: u64,
    },
    // Checkpoint commands (issue 12), kept together.
    /// `host` holds a verified copy of checkpoint `step` of `job` (a replica it pulled,
    /// or a copy fetched before a resume): recorded only if the step is recorded with
    /// the same digest.
    CheckpointCopied {
        /// The job.
        job: JobId,
        /// The checkpoint step.
        step: u64,
        /// The host that verified its copy.
        host: String,
        /// The digest it verified (must equal the record's).
        digest: String,
        /// Bytes it transferred to get the copy.
        bytes: u64,
        /// When it finished.
        at_ms: u64,
    },
    /// `host` no longer holds (or refuses to take) a copy of checkpoint `step` of `job`:
    /// its copy was found corrupt, or it has no room. It is not chosen again as a
    /// replica target of that step.
    CheckpointDropped {
        /// The job.
        job: JobId,
        /// The checkpoint step.
        step: u64,
        /// The host.
        host: String,
        /// Why, for people (becomes a job note).
        reason: String,
        /// When it decided.
        at_ms: u64,
    },
    /// The id of the marker file in the cluster's shared `--checkpoint-root`: the first
    /// one proposed is kept; every agent with a checkpoint root checks its root holds it.
    CheckpointRootMarked {
        /// The marker's random id.
        marker: String,
    },
}

/// The waiting states a scheduler may move a job between with [`Command::SetJobPhase`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobPhase {
    /// Waiting for profiles.
    Queued,
    /// Trial runs are being made for it.
    Profiling,
    /// Ready to run: profiles known, waiting for GPUs.
    Scheduled,
}

/// What a dispatch runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DispatchKind {
    /// Real training, from the job's last checkpoint.
    Train,
    /// A profiling trial: run `steps` steps (`SATURN_PROFILE_STEPS`) and exit; the exit
    /// records a [`ProfileResult`] for `profile_key`. Not counted towards `max_restarts`.
    Trial {
        /// The configuration being measured.
        profile_key: ProfileKey,
        /// How many steps to run.
        steps: u64,
    },
}

/// What an executor reports about an attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttemptEvent {
    /// The process(es) started.
    Started,
    /// `SATURN step=N` (and any `SATURN metric` lines seen since the last report).
    Progress {
        /// Steps done in total.
        step: u64,
        /// Latest metric values, e.g. `("loss", 2.31)`. (Logs written before
        /// [`AttemptEvent::TrialStepTime`] carry a trial's step time here, as
        /// [`STEP_TIME_METRIC`] in a step-0 report.)
        metrics: Vec<(String, f64)>,
    },
    /// `SATURN checkpoint step=N`: a restart may resume at `step`.
    Checkpoint {
        /// The durable step.
        step: u64,
    },
    /// The attempt ended (all processes of the gang are gone).
    Exited {
        /// Exit status; `None` when killed by a signal or never started.
        code: Option<i32>,
        /// Why, when it did not end well (spawn failure, signal, ...).
        error: Option<String>,
    },
    // Checkpoint events (issue 12), kept together.
    /// `SATURN checkpoint step=N`, verified: the rank-0 host snapshotted the checkpoint
    /// directory and holds this copy. Replaces any earlier record of the same step.
    CheckpointStored {
        /// The durable step.
        step: u64,
        /// Total bytes.
        size: u64,
        /// Number of files.
        files: u32,
        /// Hex content digest.
        digest: String,
        /// Copies wanted in all (1 + the writer's `--checkpoint-replicas`).
        copies_wanted: u32,
    },
    /// `SATURN checkpoint step=N` that the agent could not accept (no directory, a
    /// symlink out of it, over the size cap, ...): the job keeps its previous checkpoint.
    CheckpointRefused {
        /// The step the job announced.
        step: u64,
        /// Why, for people.
        reason: String,
    },
    /// The rank-0 host restored checkpoint `step` (0: a fresh start) into the attempt's
    /// checkpoint directory and will start the processes with `SATURN_START_STEP=step`.
    /// Newer checkpoint records are dropped: the job's history continues from `step`.
    Resumed {
        /// The step actually present.
        step: u64,
        /// Why it is not the newest recorded step, when it is not.
        note: Option<String>,
    },
    // Appended after the checkpoint events (issue 15): variant indices are the log's
    // encoding. Logs written before them say the same things as a step-0 `Progress`
    // carrying [`STEP_TIME_METRIC`] and as a `Preempt` followed by `Exited`; both still
    // apply as they did.
    /// Trial attempts only, just before their `Exited`, when the measurement stands (the
    /// executor stopped the trial once its step time had settled or its time was up, or
    /// the trial exited 0 by itself): the step time the executor measured from the
    /// `SATURN step=` lines (median after warm-up). The profile is recorded at once
    /// (`ProfileResult::StepTime`) and the attempt is then stopping: its exit, whatever
    /// its status, is the end the executor asked for. A trial that crashed gets no
    /// verdict: its exit records it as infeasible.
    TrialStepTime {
        /// Seconds per step.
        seconds_per_step: f64,
        /// How many step reports it was computed from.
        samples: u32,
    },
    /// The attempt ended through its agent's doing, not the job's: stopped by the quorum
    /// fence, left by a previous run of the agent, or no checkpoint could be restored
    /// for it. Applied as a preemption and its exit at once, so the job goes back to
    /// waiting at its last checkpoint instead of counting a failure.
    HandBack {
        /// Exit status, when the process exited by itself.
        code: Option<i32>,
        /// What ended it, for people.
        error: Option<String>,
    },
    /// Trial attempts only, just before their `Exited`: the trial ran out of time without
    /// one `SATURN step=` line (the script ignores the stdout protocol, which the spec
    /// allows). Recorded at once as `ProfileResult::NoSteps` — no trial can measure the
    /// job; it is planned by its `duration_estimate_s` — and the attempt is then stopping.
    TrialNoSteps,
}

/// Name under which a trial attempt's measured seconds per step are kept among its
/// metrics ([`LiveAttempt::metrics`](crate::LiveAttempt)): where
/// [`AttemptEvent::TrialStepTime`] records it, and how logs written before that event
/// reported it (a step-0 `Progress`). The snapshot layout is part of the encoding too,
/// so the value stays there rather than in a field of its own.
pub const STEP_TIME_METRIC: &str = "step_time_s";

/// Identifies a profiling measurement; jobs of the same `profile_group` share it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProfileKey {
    /// The job's `profile_group`.
    pub profile_group: String,
    /// Technique measured.
    pub technique: String,
    /// GPUs used on each host.
    pub gpus_per_host: u32,
    /// Number of hosts.
    pub hosts: u32,
    /// GPU model measured on.
    pub gpu_model: String,
}

/// Outcome of profiling one configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProfileResult {
    /// Seconds per training step.
    StepTime(f64),
    /// The configuration cannot run (out of memory, crash, ...).
    Infeasible {
        /// Why, for people.
        reason: String,
    },
    /// The trial ended well but reported no step at all: the script ignores the stdout
    /// protocol, so no trial can measure it. Its jobs are planned on their largest GPU
    /// count for their `duration_estimate_s` instead.
    NoSteps,
}

/// A committed plan (the planner's output, in this crate's own types).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    /// Assigned by the state machine: 1 for the first plan, +1 for each after.
    pub epoch: u64,
    /// When the plan was solved (set by the state machine from the command's `at_ms`).
    pub committed_at_ms: u64,
    /// Planned makespan, seconds.
    pub makespan_s: f64,
    /// Lower bound on any plan's makespan, seconds.
    pub lower_bound_s: f64,
    /// Makespan of the max-heuristic baseline, seconds.
    pub baseline_makespan_s: f64,
    /// Which solver produced it.
    pub solver: String,
    /// One per planned job.
    pub assignments: Vec<PlannedAssignment>,
    /// Wall-clock milliseconds the leader's re-plan that produced it took (all its solves).
    #[serde(default)]
    pub solve_ms: u64,
}

/// One job's place in a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedAssignment {
    /// The job.
    pub job: JobId,
    /// Technique chosen.
    pub technique: String,
    /// GPUs chosen.
    pub placement: Placement,
    /// Planned start, seconds from the plan's commit.
    pub start_s: f64,
    /// Planned end, seconds from the plan's commit.
    pub end_s: f64,
}

/// What applying one log entry did; returned to the proposer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Applied; nothing to report (also the result of Raft's own blank and
    /// membership entries).
    Applied,
    /// `SubmitJobs` applied: the ids, in the order of the specs.
    Submitted {
        /// Assigned job ids.
        jobs: Vec<JobId>,
    },
    /// `Dispatch` applied: the new live attempt.
    Dispatched {
        /// The job.
        job: JobId,
        /// Its new attempt number (`SATURN_ATTEMPT`).
        attempt: Attempt,
    },
    /// `CommitPlan` applied.
    PlanCommitted {
        /// The plan's epoch.
        epoch: u64,
    },
    /// Not applied: the state is unchanged.
    Rejected(Rejection),
}

/// Why the state machine refused a command. The state is unchanged when it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// No job has this id.
    #[error("no job {0}")]
    UnknownJob(JobId),
    /// The job is completed, failed or cancelled.
    #[error("job {0} has already ended")]
    JobEnded(JobId),
    /// The job already has a live attempt; a job never has two.
    #[error("job {job} already has live attempt {attempt}")]
    AttemptLive {
        /// The job.
        job: JobId,
        /// Its live attempt.
        attempt: Attempt,
    },
    /// The event or preemption names an attempt that is not the job's live one.
    #[error("attempt {attempt} of job {job} is not live (stale)")]
    StaleAttempt {
        /// The job.
        job: JobId,
        /// The attempt named.
        attempt: Attempt,
    },
    /// A GPU of the placement is held by a live attempt.
    #[error("GPU {gpu} of {host} is held by attempt {attempt} of job {job}")]
    GpuBusy {
        /// Host.
        host: String,
        /// GPU index.
        gpu: u32,
        /// Holder.
        job: JobId,
        /// Holder's attempt.
        attempt: Attempt,
    },
    /// A placement host is unknown or declared down.
    #[error("host {0} is not up")]
    HostNotUp(String),
    /// No agent has this name.
    #[error("no agent named {0}")]
    UnknownAgent(String),
    /// A placement names a GPU its host does not have.
    #[error("host {host} has no GPU {gpu}")]
    NoSuchGpu {
        /// Host.
        host: String,
        /// GPU index.
        gpu: u32,
    },
    /// The placement is empty or names a (host, gpu) twice.
    #[error("invalid placement: {0}")]
    BadPlacement(String),
    /// The technique is not one the job can run as.
    #[error("job {job} cannot run as {technique}")]
    UnknownTechnique {
        /// The job.
        job: JobId,
        /// Technique asked for.
        technique: String,
    },
    /// The command does not apply to the job's current state (e.g. preempting an
    /// attempt that is already stopping, or changing the phase of a running job).
    #[error("job {job}: {why}")]
    WrongState {
        /// The job.
        job: JobId,
        /// What is wrong, for people.
        why: String,
    },
}
