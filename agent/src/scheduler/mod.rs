//! The leader-side scheduler: decides in pure code, acts at the edges.
//!
//! Every decision is a function of the replicated [`ClusterState`] and a [`SchedContext`]
//! (the time, agent health, the knobs) returning [`Command`]s; [`Scheduler`] is the thin
//! async shell that, on the Raft leader only, feeds those functions snapshots and proposes
//! what they return through the cluster port ([`crate::cluster::Cluster`]).
//!
//! Map:
//! - [`config`]: the knobs; [`context`]: time and agent health, the non-replicated inputs.
//! - [`agents`]: `AgentUp`/`AgentDown` from heartbeats, and why the grace period is long.
//! - [`shapes`], [`curve`], [`profiles`]: the shapes a job can take, scaling curves, and
//!   the profile book (what is measured, what to measure next, what is fitted or pruned).
//! - [`profiler`]: trial dispatches and job phases; [`profile_stats`]: profiling cost
//!   against the full grid.
//! - [`instance`]: state → planner instance; [`planning`]: when to re-plan, commit and
//!   preempt; [`dispatch`]: the list-scheduling executor of the committed plan.
//! - [`early_stop`]: a sweep's early-stopping rule (ASHA, median) over the replicated
//!   rung records: which jobs to stop.
//! - [`core`]: one round of all deciders over one snapshot; [`stats`]: what it reports.

pub mod agents;
pub mod config;
pub mod context;
pub mod core;
pub mod curve;
pub mod dispatch;
pub mod early_stop;
pub mod error;
pub mod free_gpus;
pub mod instance;
pub mod planning;
pub mod profile_stats;
pub mod profiler;
pub mod profiles;
pub mod shapes;
pub mod stats;

#[cfg(test)]
mod shell_tests;
#[cfg(test)]
pub(crate) mod test_support;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use saturn_consensus::{ClusterState, Command, CommandResult, JobId};
use tokio::sync::watch;

use crate::cluster::Cluster;

pub use self::config::SchedulerConfig;
pub use self::context::{AgentHealth, SchedContext};
pub use self::core::SchedulerCore;
pub use self::error::SchedulerError;
pub use self::stats::SchedulerStats;

/// How long a round waits after a state change, so a burst of applies is decided once.
const CHANGE_SETTLE: Duration = Duration::from_millis(20);

/// How the failure detector sees each agent now (the soft state's heartbeats): the one
/// input the scheduler takes from outside the replicated state.
pub type HealthSource = Box<dyn Fn() -> BTreeMap<String, AgentHealth> + Send + Sync>;

/// The scheduler task of one agent: idle while it follows, deciding while it leads.
pub struct Scheduler<C: Cluster + ?Sized> {
    cluster: Arc<C>,
    health: HealthSource,
    config: SchedulerConfig,
    stats: watch::Sender<SchedulerStats>,
    /// Present only while leading; dropped on losing leadership, so a leader resumes from
    /// replicated state alone, never from what it remembered of an earlier term.
    leadership: Option<Leadership>,
}

/// What one continuous leadership remembers.
struct Leadership {
    core: SchedulerCore,
    observing_since_ms: u64,
    /// Dispatches proposed: job → (its attempt counter when proposed, when). Until the
    /// state shows a newer attempt, the same job is not dispatched again for a cooldown,
    /// so a snapshot that lags the proposal cannot cause a burst of duplicate dispatches.
    dispatched: BTreeMap<JobId, (u32, u64)>,
}

impl<C: Cluster + ?Sized> Scheduler<C> {
    /// A scheduler over `cluster`. Nothing runs until [`run`](Self::run).
    pub fn new(cluster: Arc<C>, health: HealthSource, config: SchedulerConfig) -> Self {
        let (stats, _) = watch::channel(SchedulerStats::default());
        Scheduler { cluster, health, config, stats, leadership: None }
    }

    /// The statistics, refreshed after every round.
    pub fn stats(&self) -> watch::Receiver<SchedulerStats> {
        self.stats.subscribe()
    }

    /// Runs rounds every `tick_ms` and whenever the state changes, until `shutdown`.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.tick_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let cluster = self.cluster.clone();
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
                () = cluster.changed() => {
                    // Applies come in bursts (a round's own proposals, a gang's events):
                    // let the burst land, then decide once.
                    tokio::time::sleep(CHANGE_SETTLE).await;
                }
            }
            self.round().await;
        }
    }

    /// One round: read, decide (off the runtime), propose. Public so tests and the daemon
    /// can drive rounds themselves.
    pub async fn round(&mut self) {
        if !self.cluster.is_leader() {
            if self.leadership.take().is_some() {
                tracing::info!("no longer leading: scheduler idle");
            }
            self.stats.send_modify(|s| s.leading = false);
            return;
        }
        let now_ms = self.cluster.now_ms();
        let mut leadership = self.leadership.take().unwrap_or_else(|| {
            tracing::info!("leading: scheduler resumes from the replicated state");
            Leadership { core: SchedulerCore::new(), observing_since_ms: now_ms, dispatched: BTreeMap::new() }
        });
        let state = self.cluster.state();
        let mut ctx = SchedContext::new(now_ms, (self.health)(), self.config.clone());
        ctx.observing_since_ms = leadership.observing_since_ms;

        let mut core = leadership.core;
        let decided = tokio::task::spawn_blocking(move || {
            let commands = core.decide(&state, &ctx);
            (core, commands, state)
        })
        .await;
        let (core, commands, state) = match decided {
            Ok(done) => done,
            Err(error) => {
                tracing::error!("{}", SchedulerError::PlanningTask(error.to_string()));
                return; // the next round starts a fresh core
            }
        };
        leadership.core = core;
        let commands = leadership.without_repeated_dispatches(commands, &state, now_ms, &self.config);
        let rejected = self.propose_all(commands, &state, &mut leadership, now_ms).await;
        leadership.core.note_rejected(rejected);
        let mut stats = leadership.core.stats().clone();
        stats.leading = true;
        self.stats.send_replace(stats);
        self.leadership = Some(leadership);
    }

    /// Proposes in order; stops at the first proposal that fails to commit (leadership is
    /// probably lost: the next round finds out). Returns how many were rejected at apply.
    async fn propose_all(
        &self,
        commands: Vec<Command>,
        state: &ClusterState,
        leadership: &mut Leadership,
        now_ms: u64,
    ) -> u64 {
        let mut rejected = 0;
        for command in commands {
            if let Command::Dispatch { job, .. } = &command {
                let attempt = state.job(job).map_or(0, |j| j.attempt);
                leadership.dispatched.insert(job.clone(), (attempt, now_ms));
            }
            match self.cluster.propose(command.clone()).await {
                Ok(CommandResult::Rejected(why)) => {
                    // The state moved under the decision: harmless, re-decided next round.
                    tracing::debug!("proposal rejected at apply: {why}");
                    if let Command::Dispatch { job, .. } = &command {
                        leadership.dispatched.remove(job);
                    }
                    rejected += 1;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!("proposal did not commit: {error}");
                    break;
                }
            }
        }
        rejected
    }
}

impl Leadership {
    fn without_repeated_dispatches(
        &mut self,
        commands: Vec<Command>,
        state: &ClusterState,
        now_ms: u64,
        config: &SchedulerConfig,
    ) -> Vec<Command> {
        self.dispatched.retain(|job, (attempt, at_ms)| {
            state.job(job).is_some_and(|j| j.attempt == *attempt)
                && now_ms.saturating_sub(*at_ms) < config.dispatch_cooldown_ms
        });
        commands
            .into_iter()
            .filter(|c| match c {
                Command::Dispatch { job, .. } => !self.dispatched.contains_key(job),
                _ => true,
            })
            .collect()
    }
}
