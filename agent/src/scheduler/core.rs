//! One round of decisions: every pure decider, in order, over one state snapshot.
//!
//! Order matters and is chosen on purpose:
//! 1. membership, so the rest sees the right hosts;
//! 2. job phases, so jobs whose profiles just completed are planned this round;
//! 3. re-planning (when due), so dispatch follows the newest plan;
//! 4. dispatch of the plan, before trials, so training has first call on free GPUs —
//!    except for recently submitted jobs while some of them still wait for profiles
//!    (`profiling_hold_ms`): their trials go first, and the submission is planned whole;
//! 5. trials on the GPUs that are still free.
//!
//! Early stops ([`early_stop`](super::early_stop)) are decided after the job phases and
//! before the instance is built, so a stopped job's GPUs are planned for the others in
//! the same round: a stop forces an immediate re-plan (unless `early_stop_replan` is off).
//!
//! Each decider's commands are applied to a scratch copy of the state before the next
//! decider runs ([`ClusterState::apply`] is pure), so later deciders see earlier
//! decisions (no GPU handed out twice in a round) and a command the state machine would
//! reject is dropped here rather than proposed.

use std::collections::BTreeSet;

use saturn_consensus::{ClusterState, Command, CommandResult};

use super::agents::decide_membership;
use super::context::SchedContext;
use super::dispatch::{decide_dispatch, plan_stale_reason};
use super::early_stop::decide_early_stops;
use super::instance::{build_instance, PlanningInstance};
use super::planning::{fingerprint, replan, PlanningMemory};
use super::profile_stats::profiling_stats;
use super::profiler::{decide_phases, decide_trials, held_by_profiling};
use super::profiles::ProfileBook;
use super::shapes::up_hosts;
use super::stats::SchedulerStats;

/// The scheduler's decision logic with its (soft, local) memory: when it last solved, and
/// its statistics. A new leader starts a fresh one; nothing in it is needed for safety.
#[derive(Debug, Default)]
pub struct SchedulerCore {
    memory: PlanningMemory,
    stats: SchedulerStats,
}

impl SchedulerCore {
    /// A core that has never decided anything.
    pub fn new() -> Self {
        SchedulerCore::default()
    }

    /// The statistics so far.
    pub fn stats(&self) -> &SchedulerStats {
        &self.stats
    }

    /// Counts proposals the state machine rejected (they are re-decided next round).
    pub fn note_rejected(&mut self, count: u64) {
        self.stats.proposals_rejected += count;
    }

    /// Decides one round: the commands to propose, in order. Blocking when a re-plan is
    /// due (the planner runs for up to `solve_time_limit_ms`, a few times).
    pub fn decide(&mut self, state: &ClusterState, ctx: &SchedContext) -> Vec<Command> {
        let config = &ctx.config;
        let mut round = Round { scratch: state.clone(), commands: Vec::new() };
        round.propose(decide_membership(&round.scratch, ctx));

        let hosts = up_hosts(&round.scratch);
        let active = round.scratch.jobs().values().filter(|j| !j.state.is_terminal());
        let book = ProfileBook::build(&round.scratch, &hosts, active, config);
        let (phases, unrunnable) = decide_phases(&round.scratch, &book, &hosts, ctx);
        for job in &unrunnable {
            tracing::warn!(job = %job.job, "kept queued: {}", job.reason);
        }
        round.propose(phases);
        let held = held_by_profiling(&round.scratch, &unrunnable, ctx);
        self.stats.unrunnable = unrunnable;

        let stops = decide_early_stops(&round.scratch, ctx.now_ms);
        let before_stops = (!stops.is_empty() && !config.early_stop_replan)
            .then(|| fingerprint(&build_instance(&round.scratch, &book, &hosts, config)));
        let stopped = round.propose(stops);
        self.stats.early_stops += stopped as u64;
        if stopped > 0 && config.early_stop_replan {
            tracing::info!(stopped, "early stopping freed GPUs: re-planning the remaining jobs now");
            self.memory.force_now();
        }

        let planning = build_instance(&round.scratch, &book, &hosts, config);
        let stale = plan_stale_reason(&round.scratch, &hosts);
        if let Some(why) = &stale {
            tracing::info!("re-planning: the committed plan cannot be carried out ({why})");
            self.memory.force();
        }
        let print = fingerprint(&planning);
        if let Some(before) = before_stops {
            self.memory.carry_over(before, print);
        }
        if let Some(reason) = self.memory.due(print, ctx.now_ms, config) {
            self.memory.solved(print, ctx.now_ms);
            match replan(&round.scratch, &planning, ctx, stale.is_some()) {
                Ok(outcome) => {
                    tracing::debug!(
                        ?reason,
                        makespan_s = outcome.makespan_s,
                        solve_ms = outcome.solve_ms,
                        "re-planned"
                    );
                    self.stats.solves += 1;
                    self.stats.last_solve_ms = outcome.solve_ms;
                    self.stats.predicted_makespan_s = outcome.makespan_s;
                    self.stats.baseline_makespan_s = outcome.baseline_makespan_s;
                    self.stats.lower_bound_s = outcome.lower_bound_s;
                    self.stats.preemptions_decided += outcome.preempted as u64;
                    let commits = outcome.commands.iter().filter(|c| matches!(c, Command::CommitPlan { .. })).count();
                    self.stats.plans_committed += commits as u64;
                    round.propose(outcome.commands);
                }
                Err(error) => tracing::error!("re-planning failed: {error}"),
            }
        }

        let dispatch = decide_dispatch(&round.scratch, &hosts, ctx);
        if dispatch.replan.is_some() {
            self.memory.force();
        }
        // A plan that lacks some plannable job was made before that job could be planned:
        // following it would hand out GPUs the newcomer's plan may want (a whole
        // submission must be planned together), so training waits for the re-plan the
        // debounce has only postponed. Once this instance is solved, nothing waits.
        let unplanned = self.memory.pending(print) && plan_lacks_jobs(&round.scratch, &planning);
        let (held_back, dispatches): (Vec<Command>, Vec<Command>) = dispatch
            .commands
            .into_iter()
            .partition(|c| unplanned || matches!(c, Command::Dispatch { job, .. } if held.contains(job)));
        if !held_back.is_empty() {
            tracing::debug!(jobs = held_back.len(), unplanned, "training held back until the submission is planned");
        }
        round.propose(dispatches);
        round.propose(decide_trials(&round.scratch, &book, &hosts, ctx, held.is_empty()));

        self.stats.rounds += 1;
        self.stats.profiling = profiling_stats(&round.scratch, config);
        round.commands
    }
}

/// Whether some job of the instance is missing from the committed plan.
fn plan_lacks_jobs(state: &ClusterState, planning: &PlanningInstance) -> bool {
    let Some(plan) = &state.plan() else { return !planning.instance.jobs.is_empty() };
    let planned: BTreeSet<&str> = plan.assignments.iter().map(|a| a.job.0.as_str()).collect();
    planning.instance.jobs.iter().any(|job| !planned.contains(job.id.as_str()))
}

/// The commands of one round and the state they lead to.
struct Round {
    scratch: ClusterState,
    commands: Vec<Command>,
}

impl Round {
    /// Applies `commands` to the scratch state and keeps those it accepts; returns how many.
    fn propose(&mut self, commands: Vec<Command>) -> usize {
        let before = self.commands.len();
        for command in commands {
            match self.scratch.apply(&command) {
                CommandResult::Rejected(why) => tracing::debug!("not proposing {command:?}: {why}"),
                _ => self.commands.push(command),
            }
        }
        self.commands.len() - before
    }
}
