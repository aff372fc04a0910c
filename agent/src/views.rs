//! The JSON documents of the HTTP API (spec/agent.md), shared by the server and the CLI.
//!
//! These are views: built from the replicated state on every request, never stored.
//! Field names are the contract users script against; add fields, never rename.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /v1/status` and `saturn status --json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// Name of the current leader, `null` while there is none.
    pub leader: Option<String>,
    /// Current Raft term.
    pub term: u64,
    /// Every agent the cluster knows.
    pub agents: Vec<AgentView>,
    /// Name of the agent that answered.
    #[serde(default)]
    pub answered_by: String,
    /// Raft index of the last applied entry on the answering agent.
    #[serde(default)]
    pub applied_index: u64,
}

/// One agent in [`StatusView`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    /// Agent name.
    pub name: String,
    /// libp2p peer id.
    pub peer_id: String,
    /// Mesh addresses.
    pub addrs: Vec<String>,
    /// `voter` or `learner`.
    pub role: String,
    /// Whether heartbeats arrive and the leader considers it up.
    pub healthy: bool,
    /// The agent's GPUs.
    pub gpus: Vec<GpuView>,
}

/// One GPU in [`AgentView`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuView {
    /// Index on its host (what `CUDA_VISIBLE_DEVICES` uses).
    pub index: u32,
    /// Model name.
    pub model: String,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The job holding it, if any.
    pub busy_job: Option<String>,
    /// Utilisation from the latest heartbeat, when known.
    #[serde(default)]
    pub utilization_pct: Option<f64>,
}

/// GPUs of one host used by a job (`placement[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementView {
    /// Host (agent) name.
    pub host: String,
    /// GPU indices on that host.
    pub gpus: Vec<u32>,
}

/// One job, as `saturn job status --json ID` prints it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Job id, e.g. `j-000017`.
    pub id: String,
    /// Name from the job file.
    pub name: String,
    /// queued, profiling, scheduled, running, completed, failed, cancelled or stopped.
    pub state: String,
    /// Total steps.
    pub steps: u64,
    /// Steps done (the last checkpoint while not running).
    pub steps_done: u64,
    /// Technique of the current or last attempt.
    pub technique: Option<String>,
    /// Number of the current or last attempt (0 before the first): `SATURN_ATTEMPT`,
    /// which counts every run of the job, trial runs (profiling) included.
    pub attempt: u32,
    /// Trial runs (profiling) so far.
    #[serde(default)]
    pub trials: u32,
    /// Training attempts so far (`attempt - trials`): 1 for a job that ran once.
    #[serde(default)]
    pub training_attempts: u32,
    /// Where the current attempt runs.
    pub placement: Vec<PlacementView>,
    /// RFC 3339 times.
    pub submitted_at: Option<String>,
    /// When the first attempt started.
    pub started_at: Option<String>,
    /// When the job reached a final state.
    pub finished_at: Option<String>,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Why the job failed, one line.
    pub error: Option<String>,
    /// Failed attempts restarted so far.
    #[serde(default)]
    pub restarts: u32,
    /// Latest metrics reported by the job (`SATURN metric`).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Estimated seconds to completion, when running and the rate is known.
    #[serde(default)]
    pub eta_s: Option<f64>,
    /// Metric history (name → [step, value] points), only in the one-job view.
    #[serde(default)]
    pub metric_history: BTreeMap<String, Vec<(u64, f64)>>,
    /// The newest checkpoint and where its copies are; `null` before the first.
    #[serde(default)]
    pub checkpoint: Option<CheckpointView>,
    /// What happened to the job that people should see (checkpoint refusals,
    /// fallbacks to an older checkpoint, ...), oldest first.
    #[serde(default)]
    pub events: Vec<JobEventView>,
}

/// A job's newest checkpoint, in [`JobView`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointView {
    /// Its step.
    pub step: u64,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 content digest.
    pub digest: String,
    /// Hosts holding a verified copy.
    pub copies: Vec<String>,
    /// Copies wanted in all.
    pub copies_wanted: u32,
    /// Every step still kept.
    pub steps: Vec<u64>,
    /// Checkpoint bytes copied between hosts for this job so far.
    pub bytes_replicated: u64,
}

/// One job event in [`JobView`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobEventView {
    /// RFC 3339 time.
    pub at: String,
    /// What happened.
    pub text: String,
}

/// `GET /v1/jobs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobsView {
    /// All jobs, in id order.
    pub jobs: Vec<JobView>,
    /// Leaderboards of the sweeps with `early_stop`, in sweep order.
    #[serde(default)]
    pub sweeps: Vec<SweepView>,
}

/// One submitted job in [`SubmitView`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubmittedJob {
    /// The id the cluster assigned.
    pub id: String,
    /// Name from the job file.
    pub name: String,
}

/// Answer to `POST /v1/jobs` and `saturn job run --json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubmitView {
    /// The jobs created, in file order.
    pub jobs: Vec<SubmittedJob>,
}

/// An error answer: `{"error": "one line a person can act on"}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorView {
    /// What went wrong and how to fix it.
    pub error: String,
}

/// One assignment of [`PlanView`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanAssignmentView {
    /// Job id.
    pub job: String,
    /// Technique.
    pub technique: String,
    /// Planned start, seconds after `made_at_ms`.
    pub start_s: f64,
    /// Planned end, seconds after `made_at_ms`.
    pub end_s: f64,
    /// Where.
    pub placement: Vec<PlacementView>,
    /// The job's state now.
    pub state: String,
}

/// `GET /v1/plan`: the committed plan in planner.md's format plus each assignment's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanView {
    /// Plan epoch (increases with every committed plan).
    pub epoch: u64,
    /// Predicted makespan, seconds after `made_at_ms`.
    pub makespan_s: f64,
    /// Proven lower bound.
    pub lower_bound_s: f64,
    /// Makespan of the max-heuristic (current practice) on the same instance.
    pub baseline_makespan_s: f64,
    /// Solver name.
    pub solver: String,
    /// Solve time.
    pub solve_ms: u64,
    /// When the plan was made, milliseconds since the Unix epoch.
    pub made_at_ms: u64,
    /// The assignments.
    pub assignments: Vec<PlanAssignmentView>,
}

/// One profiling result of `GET /v1/profiles`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileView {
    /// Jobs of this group share the result.
    pub profile_group: String,
    /// Technique measured.
    pub technique: String,
    /// GPUs per host.
    pub gpus_per_host: u32,
    /// Hosts.
    pub hosts: u32,
    /// GPU model.
    pub gpu_model: String,
    /// Seconds per step; `null` when infeasible.
    pub step_time_s: Option<f64>,
    /// Why the configuration cannot run, when it cannot.
    pub infeasible: Option<String>,
    /// The trial reported no step at all: the job is planned by its `duration_estimate_s`.
    #[serde(default)]
    pub no_steps: bool,
}

/// `GET /v1/profiles`: every profiling result the cluster recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfilesView {
    /// The results, ordered by group, technique, GPU count.
    pub profiles: Vec<ProfileView>,
}

/// One sweep with an early-stopping rule, in `GET /v1/jobs` (`sweeps`) and
/// `saturn job status`: its leaderboard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepView {
    /// The sweep (its name template and the first job id of its submission).
    pub sweep: String,
    /// Metric compared, e.g. `loss`.
    pub metric: String,
    /// `min` or `max`: which values are better.
    pub mode: String,
    /// `asha` or `median`.
    pub rule: String,
    /// The jobs, best latest metric value first (jobs without a value last).
    pub leaderboard: Vec<LeaderboardEntry>,
}

/// One job of a [`SweepView`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaderboardEntry {
    /// Job id.
    pub id: String,
    /// Job name.
    pub name: String,
    /// Job state (`stopped` for one the rule ended).
    pub state: String,
    /// Latest value of the sweep's metric.
    pub value: Option<f64>,
    /// Highest rung step the job reached (its metric recorded there).
    pub rung: Option<u64>,
    /// Steps done.
    pub steps_done: u64,
    /// Why the rule stopped it.
    pub stop_reason: Option<String>,
    /// The metric recorded at each rung the job reached: `[step, value]`.
    #[serde(default)]
    pub rungs: Vec<(u64, f64)>,
}
