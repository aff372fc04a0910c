//! Hand-backs: attempts this agent ended on its own, not because a job failed — stopped
//! by the quorum fence, or left by a previous run of the agent (a crash or `kill -9`
//! ended their processes).
//!
//! The state machine counts an `Exited` of a running attempt that did not finish as a
//! failure (towards `max_restarts`, then `failed`). An agent's troubles are not the job's,
//! so the exit of a hand-back is reported as `AttemptEvent::HandBack` (a preemption and
//! its exit in one event): the job then goes back to `scheduled` at its last checkpoint,
//! as on a clean agent stop.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::executor::AttemptKey;

/// The attempts whose exits are hand-backs. Cheap to clone; clones share the set.
#[derive(Clone, Debug, Default)]
pub struct HandBacks(Arc<Mutex<BTreeSet<AttemptKey>>>);

impl HandBacks {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<AttemptKey>> {
        // Every update is one insert or retain: a poisoned set is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `key`'s exit as a hand-back.
    pub fn add(&self, key: AttemptKey) {
        self.lock().insert(key);
    }

    /// Whether `key`'s exit is a hand-back.
    pub fn contains(&self, key: &AttemptKey) -> bool {
        self.lock().contains(key)
    }

    /// Forgets the attempts for which `keep` is false (no longer live anywhere).
    pub fn retain(&self, keep: impl Fn(&AttemptKey) -> bool) {
        self.lock().retain(|key| keep(key));
    }
}
