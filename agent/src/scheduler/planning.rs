//! When to re-plan, and what to do with a new plan: Saturn's introspection.
//!
//! **When.** The leader re-solves when the instance it would build changes (a job arrives,
//! finishes, fails, is scheduled or preempted; a host comes or goes; profiles arrive —
//! all seen as a change of the instance's [fingerprint]), when the committed plan cannot
//! be carried out, and every `replan_interval_ms` regardless. Event-driven solves are at
//! least `replan_debounce_ms` apart, so a burst of events is planned once.
//!
//! **Commit.** The new plan is committed when there is no plan, the set of planned jobs
//! changed, the committed plan cannot be carried out, or the new makespan beats the
//! committed plan's remaining makespan by more than `commit_improvement`. Otherwise the
//! committed plan stands: plans that differ only by noise are not churned through Raft.
//!
//! **Preempt.** A running job is preempted only when the new plan moves it *and* that pays.
//! When the local search's plan moves running jobs, a second plan is solved with every
//! running job pinned where it is; the moves are accepted only if the free plan's makespan
//! beats the pinned one by more than `switch_cost_s + max(preempt_min_gain_s,
//! preempt_min_gain_fraction × pinned makespan)`. The planner already charges the switch
//! cost inside the moved jobs' runtimes; demanding it once more as margin keeps estimation
//! error in fitted step times from buying restarts that do not pay. Otherwise the pinned
//! plan is the one considered for commit, and nothing is preempted.

use std::collections::{BTreeSet, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use saturn_consensus::{ClusterState, Command, JobId, PlannedAssignment, StoredPlan};
use saturn_planner::{instance::same_placement, solve, Instance, Plan, SolveOptions, Solver};

use super::config::SchedulerConfig;
use super::context::SchedContext;
use super::error::SchedulerError;
use super::instance::PlanningInstance;

/// The leader's local memory of its last solve. Losing it (a new leader) only causes
/// one early re-plan.
#[derive(Clone, Debug, Default)]
pub struct PlanningMemory {
    last_fingerprint: Option<u64>,
    last_solve_ms: Option<u64>,
    forced: bool,
}

/// Why a re-plan is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplanReason {
    /// The instance changed (or this leader never solved).
    Changed,
    /// The committed plan cannot be carried out.
    Stale,
    /// The introspection interval passed.
    Periodic,
}

impl PlanningMemory {
    /// Asks for a re-plan at the next opportunity (the plan cannot be carried out).
    pub fn force(&mut self) {
        self.forced = true;
    }

    /// Whether to solve now, given the current instance's fingerprint.
    pub fn due(&self, fingerprint: u64, now_ms: u64, config: &SchedulerConfig) -> Option<ReplanReason> {
        let since = self.last_solve_ms.map(|t| now_ms.saturating_sub(t));
        let debounced = since.is_none_or(|s| s >= config.replan_debounce_ms);
        if self.forced && debounced {
            Some(ReplanReason::Stale)
        } else if self.last_fingerprint != Some(fingerprint) && debounced {
            Some(ReplanReason::Changed)
        } else if since.is_none_or(|s| s >= config.replan_interval_ms) {
            Some(ReplanReason::Periodic)
        } else {
            None
        }
    }

    /// Asks for a re-plan now, debounce or not (a job was stopped early: its GPUs are
    /// free for the others at once).
    pub fn force_now(&mut self) {
        self.forced = true;
        self.last_solve_ms = None;
    }

    /// Takes the instance `new` as solved when `old` was: a change that must not cause
    /// a re-plan by itself (early stops, with `early_stop_replan` off).
    pub fn carry_over(&mut self, old: u64, new: u64) {
        if self.last_fingerprint == Some(old) {
            self.last_fingerprint = Some(new);
        }
    }

    /// Whether the instance with this fingerprint still waits for its solve.
    pub fn pending(&self, fingerprint: u64) -> bool {
        self.last_fingerprint != Some(fingerprint)
    }

    /// Records a solve of the instance with this fingerprint.
    pub fn solved(&mut self, fingerprint: u64, now_ms: u64) {
        self.last_fingerprint = Some(fingerprint);
        self.last_solve_ms = Some(now_ms);
        self.forced = false;
    }
}

/// What changes the plan: hosts, jobs, their options and where running jobs run — not
/// the remaining steps, which change with every progress report.
pub fn fingerprint(planning: &PlanningInstance) -> u64 {
    // Hashed field by field (floats by their bits): it runs every round, and formatting
    // every job's options as text cost a large share of a leader's CPU at 10,000 jobs.
    let mut hasher = DefaultHasher::new();
    for host in &planning.instance.hosts {
        (&host.name, host.gpus, &host.gpu_model).hash(&mut hasher);
    }
    for job in &planning.instance.jobs {
        // Not the remaining steps: progress alone must not look like a new instance.
        job.id.hash(&mut hasher);
        for option in &job.options {
            let shape = (option.gpus_per_host, option.hosts, option.step_time_s.to_bits());
            (&option.technique, &option.gpu_model, shape).hash(&mut hasher);
        }
        job.running.as_ref().map(|r| (&r.technique, &r.placement)).hash(&mut hasher);
    }
    hasher.finish()
}

/// The outcome of one re-plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanOutcome {
    /// `CommitPlan`, then any `Preempt`s; empty when the committed plan stands.
    pub commands: Vec<Command>,
    /// Wall-clock time of all solves of this round.
    pub solve_ms: u64,
    /// Makespan of the plan chosen this round (committed or not), seconds.
    pub makespan_s: f64,
    /// Max-heuristic's makespan on the same instance, seconds.
    pub baseline_makespan_s: f64,
    /// Lower bound on any plan's makespan, seconds.
    pub lower_bound_s: f64,
    /// Jobs preempted by this round.
    pub preempted: usize,
}

/// Solves the instance and decides whether to commit the plan and preempt moved jobs.
/// Blocking: run it off the async runtime.
pub fn replan(
    state: &ClusterState,
    planning: &PlanningInstance,
    ctx: &SchedContext,
    stale: bool,
) -> Result<PlanOutcome, SchedulerError> {
    let config = &ctx.config;
    let instance = &planning.instance;
    if instance.jobs.is_empty() {
        return Ok(PlanOutcome::default());
    }
    let started = Instant::now();
    let policy = config.solver.parse::<Solver>().unwrap_or(Solver::LocalSearch);
    let options = solve_options(config, policy);
    let free = solve(instance, &options)?;
    let baseline = solve(instance, &solve_options(config, Solver::MaxHeuristic))?;
    let moved = moved_jobs(instance, &free);
    let (chosen, preempt) = if moved.is_empty() {
        (free, Vec::new())
    } else {
        let pinned = solve(&pinned(instance), &options)?;
        let margin = config.preempt_min_gain_s.max(config.preempt_min_gain_fraction * pinned.makespan_s);
        if pinned.makespan_s - free.makespan_s > config.switch_cost_s + margin {
            (free, moved)
        } else {
            (pinned, Vec::new())
        }
    };
    let mut stored = stored_plan(&chosen, planning, baseline.makespan_s)?;
    stored.solve_ms = started.elapsed().as_millis() as u64;
    let mut outcome = PlanOutcome {
        commands: Vec::new(),
        solve_ms: stored.solve_ms,
        makespan_s: chosen.makespan_s,
        baseline_makespan_s: baseline.makespan_s,
        lower_bound_s: chosen.lower_bound_s,
        preempted: 0,
    };
    if !preempt.is_empty() || stale || worth_committing(state, &stored, ctx) {
        outcome.commands.push(Command::CommitPlan { plan: stored, at_ms: ctx.now_ms });
        for job in preempt {
            if let Some(live) = state.live_attempt(&job) {
                outcome.commands.push(Command::Preempt { job, attempt: live.attempt, at_ms: ctx.now_ms });
                outcome.preempted += 1;
            }
        }
    }
    Ok(outcome)
}

fn solve_options(config: &SchedulerConfig, solver: Solver) -> SolveOptions {
    SolveOptions {
        solver,
        time_limit: Duration::from_millis(config.solve_time_limit_ms),
        seed: config.solve_seed,
        max_iterations: config.solve_max_iterations,
    }
}

/// No plan yet, a different set of jobs, or a clearly shorter remaining makespan.
fn worth_committing(state: &ClusterState, new: &StoredPlan, ctx: &SchedContext) -> bool {
    let Some(current) = &state.plan() else { return true };
    let jobs = |plan: &StoredPlan| plan.assignments.iter().map(|a| a.job.clone()).collect::<BTreeSet<JobId>>();
    if jobs(current) != jobs(new) {
        return true;
    }
    let elapsed_s = ctx.now_ms.saturating_sub(current.committed_at_ms) as f64 / 1000.0;
    let remaining_s = (current.makespan_s - elapsed_s).max(0.0);
    new.makespan_s < remaining_s * (1.0 - ctx.config.commit_improvement)
}

/// Running jobs that `plan` does not leave where they run.
fn moved_jobs(instance: &Instance, plan: &Plan) -> Vec<JobId> {
    let running = instance.jobs.iter().filter_map(|j| j.running.as_ref().map(|r| (j.id.as_str(), r)));
    let moved: HashSet<&str> = running
        .filter(|(id, running)| {
            plan.assignments
                .iter()
                .find(|a| a.job == *id)
                .is_some_and(|a| a.technique != running.technique || !same_placement(&a.placement, &running.placement))
        })
        .map(|(id, _)| id)
        .collect();
    let mut moved: Vec<JobId> = moved.into_iter().map(PlanningInstance::job_id).collect();
    moved.sort();
    moved
}

/// The instance with every running job restricted to the configuration it runs in.
fn pinned(instance: &Instance) -> Instance {
    let mut pinned = instance.clone();
    for job in &mut pinned.jobs {
        let Some(running) = &job.running else { continue };
        let (hosts, per_host) = (running.placement.len() as u32, running.placement[0].gpus.len() as u32);
        let host = &running.placement[0].host;
        let model = instance.hosts.iter().find(|h| h.name == *host).and_then(|h| h.gpu_model.clone());
        job.options.retain(|o| {
            o.technique == running.technique && o.hosts == hosts && o.gpus_per_host == per_host && o.gpu_model == model
        });
    }
    pinned
}

fn stored_plan(
    plan: &Plan,
    planning: &PlanningInstance,
    baseline_makespan_s: f64,
) -> Result<StoredPlan, SchedulerError> {
    let assignments = plan
        .assignments
        .iter()
        .map(|a| {
            let placement = planning
                .to_state_placement(&a.placement)
                .ok_or_else(|| SchedulerError::ForeignPlacement { job: a.job.clone() })?;
            Ok(PlannedAssignment {
                job: PlanningInstance::job_id(&a.job),
                technique: a.technique.clone(),
                placement,
                start_s: a.start_s,
                end_s: a.end_s,
            })
        })
        .collect::<Result<_, SchedulerError>>()?;
    Ok(StoredPlan {
        epoch: 0,
        committed_at_ms: 0,
        makespan_s: plan.makespan_s,
        lower_bound_s: plan.lower_bound_s,
        baseline_makespan_s,
        solver: plan.solver.clone(),
        assignments,
        solve_ms: plan.solve_ms,
    })
}

#[cfg(test)]
#[path = "planning_tests.rs"]
mod tests;
