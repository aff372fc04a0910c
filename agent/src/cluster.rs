//! The cluster port: the one way the scheduler, the executor and the API reach the
//! replicated cluster — a state snapshot, this host's view of it ([`HostView`]), proposals
//! with one retry policy ([`Retry`]), whether this agent leads, a change notification, and
//! the clock commands are stamped with.
//!
//! Two implementations: [`NodeCluster`] over the agent's consensus node, and
//! [`MemCluster`], an in-memory cluster of one that applies every proposal at once (for
//! tests, with a clock they set).

mod mem;
mod node;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use saturn_consensus::{AgentRecord, Attempt, ClusterState, Command, CommandResult, JobId, JobRecord, LiveAttempt};
use tokio::sync::watch;

pub use mem::MemCluster;
pub use node::NodeCluster;

/// Milliseconds since the Unix epoch: the wall clock that stamps commands (`at_ms`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A proposal did not commit (no leader, no quorum, deadline, the node stopped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// What an agent needs from the replicated cluster.
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// A snapshot of the applied state. Shared, not copied: readers ask often, and a copy
    /// of thousands of jobs costs tens of milliseconds.
    fn state(&self) -> Arc<ClusterState>;

    /// What `host`'s executor needs of the state (see [`HostView`]). Asked after every
    /// apply on every agent, so it must not cost a copy of all jobs.
    fn host_view(&self, host: &str) -> HostView {
        HostView::of(&self.state(), host)
    }

    /// Whether this agent is the Raft leader now.
    fn is_leader(&self) -> bool;

    /// Commits `command` (forwarded to the leader when this agent is not; retried across
    /// leader changes up to the node's deadline, never applied twice) and returns what
    /// applying it did. For retrying beyond that, see [`propose_retrying`].
    async fn propose(&self, command: Command) -> Result<CommandResult, Unavailable>;

    /// A receiver whose value is the last applied log index: it changes on every apply.
    fn applied(&self) -> watch::Receiver<u64>;

    /// Resolves when the applied state may have changed.
    async fn changed(&self) {
        let mut applied = self.applied();
        let _ = applied.changed().await;
    }

    /// Now, Unix milliseconds (stamped on commands).
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// How often a proposal is tried again after [`Cluster::propose`] gave up, and how long
/// to wait in between. The one retry policy of the agent's reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all (at least one is made).
    pub tries: u32,
    /// Pause between two tries.
    pub pause: Duration,
}

impl Retry {
    /// Best effort: one try (a newer report follows).
    pub const ONCE: Retry = Retry { tries: 1, pause: Duration::ZERO };
    /// Through a leader change or two (they take a second or two), as long as it matters.
    pub const PERSIST: Retry = Retry { tries: 30, pause: Duration::from_millis(500) };
}

/// Proposes `make(now_ms)` with `retry`, as long as `still_wanted` holds for the state
/// between tries (e.g. "the attempt is still live"); returns whether it was committed
/// (applied or rejected: the state machine answered).
pub async fn propose_retrying(
    cluster: &dyn Cluster,
    retry: Retry,
    make: impl Fn(u64) -> Command,
    still_wanted: impl Fn(&ClusterState) -> bool,
) -> bool {
    for round in 0..retry.tries.max(1) {
        match cluster.propose(make(cluster.now_ms())).await {
            Ok(_) => return true,
            Err(err) => {
                tracing::debug!(%err, round, "a proposal did not commit");
                if round + 1 == retry.tries.max(1) || !still_wanted(&cluster.state()) {
                    return false;
                }
                tokio::time::sleep(retry.pause).await;
            }
        }
    }
    false
}

/// [`propose_retrying`] of an event of `attempt` of `job`, while that attempt is live.
pub async fn report_attempt(cluster: &dyn Cluster, job: &JobId, attempt: Attempt, retry: Retry, event: saturn_consensus::AttemptEvent) -> bool {
    let make = |at_ms| Command::JobEvent { job: job.clone(), attempt, event: event.clone(), at_ms };
    let committed = propose_retrying(cluster, retry, make, |state| state.is_live(job, attempt)).await;
    if !committed && retry.tries > 1 && cluster.state().is_live(job, attempt) {
        tracing::warn!(%job, attempt, "gave up reporting a job event; the reconcile loop will report the exit again");
    }
    committed
}

/// What one host's executor needs of the replicated state: the jobs with a live attempt
/// on the host, and every agent (addresses and GPUs of the gang's other hosts). The job
/// records are shared with the state, not copied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostView {
    host: String,
    jobs: BTreeMap<JobId, Arc<JobRecord>>,
    agents: BTreeMap<String, AgentRecord>,
}

impl HostView {
    /// `host`'s view of `state`.
    pub fn of(state: &ClusterState, host: &str) -> Self {
        let jobs = state
            .attempts_on_host(host)
            .filter_map(|(record, _)| Some((record.id.clone(), state.jobs().get(&record.id)?.clone())))
            .collect();
        HostView { host: host.to_string(), jobs, agents: state.agents().clone() }
    }

    /// The host this view is of.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The live attempts with a process on this host: what its executor must be running
    /// (status `Running`) or stopping (status `Stopping`).
    pub fn attempts(&self) -> impl Iterator<Item = (&JobRecord, &LiveAttempt)> + '_ {
        self.jobs.values().filter_map(|record| record.live.as_ref().map(|live| (record.as_ref(), live)))
    }

    /// The live attempt of `job`, when it has one on this host.
    pub fn live_attempt(&self, job: &JobId) -> Option<&LiveAttempt> {
        self.jobs.get(job).and_then(|record| record.live.as_ref())
    }

    /// The agent named `name`, as the state knows it.
    pub fn agent(&self, name: &str) -> Option<&AgentRecord> {
        self.agents.get(name)
    }
}

#[cfg(test)]
mod tests {
    use saturn_consensus::{AttemptEvent, HostGpus};

    use super::*;
    use crate::scheduler::test_support::{cluster, spec, start_training, submit};

    /// Job 1 trains on GPU 0 of `a`; `b` runs nothing.
    fn one_job_on_a() -> (MemCluster, JobId) {
        let mut state = cluster(&[("a", 2), ("b", 2)]);
        let job = submit(&mut state, vec![spec("j", "g", &["ddp"], 1, 2)]).remove(0);
        start_training(&mut state, &job, vec![HostGpus { host: "a".into(), gpus: vec![0] }]);
        (MemCluster::new(state), job)
    }

    const QUICK: Retry = Retry { tries: 30, pause: Duration::from_millis(1) };

    #[tokio::test]
    async fn a_report_commits_at_once_when_the_cluster_answers() {
        let (cluster, job) = one_job_on_a();
        let progress = AttemptEvent::Progress { step: 5, metrics: vec![] };
        assert!(report_attempt(&cluster, &job, 1, QUICK, progress).await);
        assert_eq!(cluster.proposals().len(), 1);
        assert_eq!(cluster.state().job(&job).map(|j| j.steps_done), Some(5));
    }

    #[tokio::test]
    async fn a_report_is_retried_as_long_as_its_attempt_is_live() {
        let (cluster, job) = one_job_on_a();
        cluster.set_available(false);
        // Live all along: every try is made, then it gives up.
        assert!(!report_attempt(&cluster, &job, 1, QUICK, AttemptEvent::Started).await);
        // The attempt is gone (its host was declared down): one try, no more.
        cluster.apply(&Command::AgentDown { name: "a".into(), at_ms: 1 });
        let started = std::time::Instant::now();
        let slow = Retry { tries: 30, pause: Duration::from_secs(60) };
        assert!(!report_attempt(&cluster, &job, 1, slow, AttemptEvent::Started).await);
        assert!(started.elapsed() < Duration::from_secs(1), "no pause after the attempt ended");
    }

    #[tokio::test]
    async fn a_best_effort_report_is_tried_once() {
        let (cluster, job) = one_job_on_a();
        cluster.set_available(false);
        let slow = Retry { pause: Duration::from_secs(60), ..Retry::ONCE };
        let started = std::time::Instant::now();
        assert!(!report_attempt(&cluster, &job, 1, slow, AttemptEvent::Started).await);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(cluster.proposals().is_empty());
    }

    #[tokio::test]
    async fn commands_are_stamped_with_the_clusters_clock() {
        let (cluster, job) = one_job_on_a();
        cluster.set_now_ms(42_000);
        let cancel = |at_ms| Command::CancelJob { job: job.clone(), at_ms };
        assert!(propose_retrying(&cluster, Retry::ONCE, cancel, |_| true).await);
        assert_eq!(cluster.proposals(), vec![Command::CancelJob { job: job.clone(), at_ms: 42_000 }]);
    }

    #[test]
    fn a_host_view_holds_the_hosts_live_attempts_and_every_agent() {
        let (cluster, job) = one_job_on_a();
        let state = cluster.state();
        let on_a = HostView::of(&state, "a");
        assert_eq!(on_a.host(), "a");
        assert_eq!(on_a.attempts().map(|(record, live)| (record.id.clone(), live.attempt)).collect::<Vec<_>>(), vec![(job.clone(), 1)]);
        assert_eq!(on_a.live_attempt(&job).map(|live| live.attempt), Some(1));
        assert!(on_a.agent("b").is_some(), "the gang's other hosts are reachable");
        let on_b = HostView::of(&state, "b");
        assert_eq!(on_b.attempts().count(), 0);
        assert!(on_b.live_attempt(&job).is_none());
        assert_eq!(cluster.host_view("a"), on_a);
    }
}
