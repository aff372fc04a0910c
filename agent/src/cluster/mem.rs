//! [`MemCluster`]: an in-memory cluster of one, for tests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use saturn_consensus::{ClusterState, Command, CommandResult};
use tokio::sync::watch;

use super::{Cluster, Unavailable};

/// `now_ms` while no test set the clock.
const WALL_CLOCK: u64 = u64::MAX;

/// A cluster of one that leads and commits every proposal at once by applying it to its
/// [`ClusterState`] (no Raft, no mesh). Its clock is the wall clock until a test sets it
/// ([`MemCluster::set_now_ms`]); proposals can be made to fail
/// ([`MemCluster::set_available`]) to play a lost quorum.
pub struct MemCluster {
    state: Mutex<ClusterState>,
    proposals: Mutex<Vec<Command>>,
    applied: watch::Sender<u64>,
    now_ms: AtomicU64,
    available: AtomicBool,
}

impl Default for MemCluster {
    fn default() -> Self {
        MemCluster::new(ClusterState::default())
    }
}

impl MemCluster {
    /// A cluster whose state is `state`.
    pub fn new(state: ClusterState) -> Self {
        MemCluster {
            state: Mutex::new(state),
            proposals: Mutex::new(Vec::new()),
            applied: watch::channel(0).0,
            now_ms: AtomicU64::new(WALL_CLOCK),
            available: AtomicBool::new(true),
        }
    }

    /// Applies `command` as if it had been committed (what a proposal does), and returns
    /// what applying it did.
    pub fn apply(&self, command: &Command) -> CommandResult {
        let result = self.lock().apply(command);
        self.applied.send_modify(|index| *index += 1);
        result
    }

    /// Every command proposed so far (not those given to [`MemCluster::apply`]).
    pub fn proposals(&self) -> Vec<Command> {
        self.proposals.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A copy of the state now.
    pub fn snapshot(&self) -> ClusterState {
        self.lock().clone()
    }

    /// Sets the clock.
    pub fn set_now_ms(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    /// While false, every proposal fails (nothing is applied).
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Cluster for MemCluster {
    fn state(&self) -> Arc<ClusterState> {
        Arc::new(self.snapshot())
    }

    fn is_leader(&self) -> bool {
        true
    }

    async fn propose(&self, command: Command) -> Result<CommandResult, Unavailable> {
        if !self.available.load(Ordering::SeqCst) {
            return Err(Unavailable("no quorum (MemCluster set unavailable)".into()));
        }
        self.proposals.lock().unwrap_or_else(PoisonError::into_inner).push(command.clone());
        Ok(self.apply(&command))
    }

    fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn now_ms(&self) -> u64 {
        match self.now_ms.load(Ordering::SeqCst) {
            WALL_CLOCK => super::now_ms(),
            set => set,
        }
    }
}
