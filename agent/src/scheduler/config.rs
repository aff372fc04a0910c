//! The scheduler's knobs and their defaults.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Tuning of the leader-side scheduler. Every field has a default (see [`Default`]), so a
/// config file may name only the knobs it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// How often the leader re-decides when nothing wakes it (ms). Default 250.
    pub tick_ms: u64,
    /// How long an agent that is up in the state may stay silent before the leader declares
    /// it down and its attempts lost (ms). Default 10 000. Must exceed the time a
    /// partitioned agent needs to notice it lost the cluster and kill its jobs (see
    /// [`agents`](super::agents)).
    pub grace_period_ms: u64,
    /// Steps a profiling trial runs (`SATURN_PROFILE_STEPS`). Default 20.
    pub profile_steps: u64,
    /// A technique's ladder of GPU counts stops when doubling the GPUs speeds a step up
    /// by less than this fraction. Default 0.10.
    pub min_doubling_gain: f64,
    /// A technique is dropped when another is faster by more than this factor at every
    /// GPU count it was measured at. Default 1.5.
    pub dominance_factor: f64,
    /// Techniques whose memory per GPU does not shrink with more GPUs (the model is
    /// replicated): out of memory at one GPU count means out of memory at all of them.
    /// Default `["ddp"]`.
    pub replicated_techniques: BTreeSet<String>,
    /// While a job submitted less than this long ago still waits for its profiles, no
    /// job submitted that recently starts training: free GPUs go to trials, so the jobs of
    /// one submission are planned together instead of the first-profiled group taking
    /// every GPU and starving the others' trials. Older jobs are not held (ms). Default
    /// 120 000.
    pub profiling_hold_ms: u64,
    /// Seconds a trial spends outside its measured steps (start-up, data loading); used
    /// only to account profiling cost. Default 10.
    pub trial_overhead_s: f64,
    /// Seconds a running job loses when it is moved (checkpoint, restart, warm-up); the
    /// planner adds it to a moved job's runtime. Default 30.
    pub switch_cost_s: f64,
    /// Re-plan at least this often even without events (ms); Saturn's introspection
    /// interval. Default 30 000.
    pub replan_interval_ms: u64,
    /// Minimum time between two solves triggered by events, so a burst of events is
    /// planned once (ms). Default 1 000.
    pub replan_debounce_ms: u64,
    /// Wall-clock limit of one planner solve (ms). Default 300.
    pub solve_time_limit_ms: u64,
    /// Seed of the planner's local search. Default 1.
    pub solve_seed: u64,
    /// Caps the local search's iterations; with a cap the time limit never reaches, the
    /// same seed and instance give the same plan on any machine. Default none.
    pub solve_max_iterations: Option<u64>,
    /// A new plan over the same jobs replaces the committed one only when its makespan is
    /// shorter than the committed plan's remaining makespan by this fraction. Default 0.05.
    pub commit_improvement: f64,
    /// Running jobs are preempted for a plan only when it beats the plan that keeps every
    /// running job in place by this fraction of that plan's makespan... Default 0.05.
    pub preempt_min_gain_fraction: f64,
    /// ...and by at least this many seconds (the switch cost is always added). Default 0.
    pub preempt_min_gain_s: f64,
    /// A proposed dispatch that the state does not show yet is not proposed again for
    /// this long (ms). Default 5 000.
    pub dispatch_cooldown_ms: u64,
    /// Planner the leader uses: `local-search` (Saturn) or a baseline such as
    /// `max-heuristic` (current practice), for measuring what Saturn's planning is worth.
    pub solver: String,
    /// When a sweep's early-stopping rule stops a job, re-plan the remaining jobs at once
    /// (the freed GPUs go to the survivors; the switch-cost rule still applies). With
    /// `false` a stop triggers no re-plan: the committed plan is followed (its later jobs
    /// take the freed GPUs as list scheduling allows) until something else re-plans —
    /// the baseline "early stopping alone". Default true.
    pub early_stop_replan: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            tick_ms: 250,
            grace_period_ms: 10_000,
            profile_steps: 20,
            min_doubling_gain: 0.10,
            dominance_factor: 1.5,
            replicated_techniques: ["ddp".to_string()].into_iter().collect(),
            profiling_hold_ms: 120_000,
            trial_overhead_s: 10.0,
            switch_cost_s: 30.0,
            replan_interval_ms: 30_000,
            replan_debounce_ms: 1_000,
            solve_time_limit_ms: 300,
            solve_seed: 1,
            solve_max_iterations: None,
            commit_improvement: 0.05,
            preempt_min_gain_fraction: 0.05,
            preempt_min_gain_s: 0.0,
            dispatch_cooldown_ms: 5_000,
            solver: "local-search".to_string(),
            early_stop_replan: true,
        }
    }
}

impl SchedulerConfig {
    /// Whether out of memory at one GPU count means out of memory at every count.
    pub fn is_replicated(&self, technique: &str) -> bool {
        self.replicated_techniques.contains(technique)
    }
}
