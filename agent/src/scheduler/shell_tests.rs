//! The async shell over a fake cluster: leader-only, restart-safe, no duplicate dispatches.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use saturn_consensus::{DispatchKind, Rejection};

use super::test_support::{cluster, ctx, spec, submit};
use super::*;
use crate::cluster::Unavailable;

/// An in-memory cluster: proposals apply at once, but `state()` can be made to lag one
/// proposal batch behind, as a snapshot read before the last applies would.
struct FakeCluster {
    state: Mutex<ClusterState>,
    lagging: Mutex<Option<ClusterState>>,
    leader: AtomicBool,
    reject_next: AtomicUsize,
    proposed: Mutex<Vec<Command>>,
    /// Never changes: the scheduler then wakes only on its tick.
    applied: watch::Sender<u64>,
}

impl FakeCluster {
    fn new(state: ClusterState) -> Arc<Self> {
        Arc::new(FakeCluster {
            state: Mutex::new(state),
            lagging: Mutex::new(None),
            leader: AtomicBool::new(true),
            reject_next: AtomicUsize::new(0),
            proposed: Mutex::new(Vec::new()),
            applied: watch::channel(0).0,
        })
    }

    fn dispatches(&self) -> Vec<(JobId, DispatchKind)> {
        let proposed = self.proposed.lock().unwrap();
        proposed
            .iter()
            .filter_map(|c| match c {
                Command::Dispatch { job, kind, .. } => Some((job.clone(), kind.clone())),
                _ => None,
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Cluster for FakeCluster {
    fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    fn state(&self) -> Arc<ClusterState> {
        let lagging = self.lagging.lock().unwrap().clone();
        Arc::new(lagging.unwrap_or_else(|| self.state.lock().unwrap().clone()))
    }

    fn now_ms(&self) -> u64 {
        1_000
    }

    async fn propose(&self, command: Command) -> Result<CommandResult, Unavailable> {
        self.proposed.lock().unwrap().push(command.clone());
        if self.reject_next.load(Ordering::SeqCst) > 0 {
            self.reject_next.fetch_sub(1, Ordering::SeqCst);
            let job = JobId("j-000001".into());
            return Ok(CommandResult::Rejected(Rejection::WrongState { job, why: "test".into() }));
        }
        Ok(self.state.lock().unwrap().apply(&command))
    }

    fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }
}

impl FakeCluster {
    /// Health as a fresh context sees the fake's agents.
    fn health(self: &Arc<Self>) -> HealthSource {
        let fake = self.clone();
        Box::new(move || ctx(&fake.state.lock().unwrap(), 0).health)
    }
}

fn two_jobs_on_one_host() -> ClusterState {
    let mut state = cluster(&[("a", 4)]);
    submit(&mut state, vec![spec("x", "g", &["ddp"], 1, 4), spec("y", "h", &["ddp"], 1, 4)]);
    state
}

#[tokio::test]
async fn a_follower_proposes_nothing() {
    let fake = FakeCluster::new(two_jobs_on_one_host());
    fake.leader.store(false, Ordering::SeqCst);
    let mut scheduler = Scheduler::new(fake.clone(), fake.health(), SchedulerConfig::default());
    scheduler.round().await;
    assert!(fake.proposed.lock().unwrap().is_empty());
    assert!(!scheduler.stats().borrow().leading);
}

#[tokio::test]
async fn a_lagging_snapshot_never_causes_a_second_dispatch() {
    let fake = FakeCluster::new(two_jobs_on_one_host());
    let mut scheduler = Scheduler::new(fake.clone(), fake.health(), SchedulerConfig::default());
    scheduler.round().await;
    assert_eq!(fake.dispatches().len(), 2, "one trial per group");
    // The next snapshots still show the state before those dispatches.
    *fake.lagging.lock().unwrap() = Some(two_jobs_on_one_host());
    scheduler.round().await;
    scheduler.round().await;
    assert_eq!(fake.dispatches().len(), 2, "no repeated dispatch while the state lags");
}

#[tokio::test]
async fn rejected_proposals_are_re_decided_next_round() {
    let fake = FakeCluster::new(two_jobs_on_one_host());
    fake.reject_next.store(100, Ordering::SeqCst);
    let mut scheduler = Scheduler::new(fake.clone(), fake.health(), SchedulerConfig::default());
    scheduler.round().await;
    assert!(scheduler.stats().borrow().proposals_rejected > 0);
    fake.reject_next.store(0, Ordering::SeqCst);
    scheduler.round().await;
    let live = fake.state.lock().unwrap().jobs().values().filter(|j| j.live.is_some()).count();
    assert_eq!(live, 2, "the trials go out once proposals commit again");
}

#[tokio::test]
async fn a_returning_leader_resumes_from_state_without_redispatching() {
    let fake = FakeCluster::new(two_jobs_on_one_host());
    let mut scheduler = Scheduler::new(fake.clone(), fake.health(), SchedulerConfig::default());
    scheduler.round().await;
    fake.leader.store(false, Ordering::SeqCst);
    scheduler.round().await;
    fake.leader.store(true, Ordering::SeqCst);
    scheduler.round().await;
    assert_eq!(fake.dispatches().len(), 2, "the live trials are in the state: nothing to redo");
    assert!(scheduler.stats().borrow().leading);
}

#[tokio::test]
async fn the_loop_decides_on_its_tick_and_stops_on_shutdown() {
    let fake = FakeCluster::new(two_jobs_on_one_host());
    let config = SchedulerConfig { tick_ms: 10, ..SchedulerConfig::default() };
    let scheduler = Scheduler::new(fake.clone(), fake.health(), config);
    let stats = scheduler.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scheduler.run(async move {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while stats.borrow().rounds < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no rounds within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.dispatches().len(), 2);
    let _ = stop.send(());
    task.await.expect("the loop ends cleanly");
}
