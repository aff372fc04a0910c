//! What the scheduler reports for metrics and the dashboard.

use serde::Serialize;

use super::profile_stats::ProfilingStats;
use super::profiler::Unrunnable;

/// The scheduler's numbers, refreshed after every round on the leader.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SchedulerStats {
    /// Whether this agent is scheduling (it leads).
    pub leading: bool,
    /// Decision rounds run while leading.
    pub rounds: u64,
    /// Planner solves (re-plans) run.
    pub solves: u64,
    /// Wall-clock milliseconds of the last re-plan (all its solves together).
    pub last_solve_ms: u64,
    /// Makespan the last re-plan predicted, seconds from its solve.
    pub predicted_makespan_s: f64,
    /// Max-heuristic's makespan on the same instance, seconds.
    pub baseline_makespan_s: f64,
    /// Lower bound on the makespan of the last re-plan's instance, seconds.
    pub lower_bound_s: f64,
    /// Plans this leader committed.
    pub plans_committed: u64,
    /// Preemptions this leader decided.
    pub preemptions_decided: u64,
    /// Proposals the state machine rejected (the round is then re-decided).
    pub proposals_rejected: u64,
    /// Early stops (`StopJob`) this leader decided.
    pub early_stops: u64,
    /// Profiling cost against the full grid (from replicated state).
    pub profiling: ProfilingStats,
    /// Jobs that cannot run on the up hosts, and why.
    pub unrunnable: Vec<Unrunnable>,
}
