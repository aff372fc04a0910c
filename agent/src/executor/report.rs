//! What the processes say, as commands through the cluster port: each [`ProcessEvent`]
//! becomes an attempt event ([`attempt_event`], pure) proposed with the port's retry
//! policy, in order per attempt ([`Reporter`]). A checkpoint line of the rank-0 host of a
//! training attempt is taken into the store first (`checkpoint::take`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use saturn_consensus::{AttemptEvent as StateEvent, DispatchKind};
use tokio::sync::mpsc;

use super::hand_back::HandBacks;
use super::reconcile::job_of;
use super::{checkpoint_dir, AttemptEvent, AttemptKey, ProcessEvent};
use crate::checkpoint::{take, Checkpoints};
use crate::cluster::{self, Cluster, Retry};

/// The attempt event a process event becomes, and how hard to try committing it; `None`
/// for a metric (it travels with the next step report, taken from `metrics`). Progress is
/// best effort (a newer report follows); everything else is retried while the attempt is
/// live. The exit of a hand-back becomes `HandBack`, so it does not count as a failure.
pub fn attempt_event(event: ProcessEvent, metrics: &mut Vec<(String, f64)>, hand_back: bool) -> Option<(StateEvent, Retry)> {
    let event = match event {
        ProcessEvent::Started { .. } => StateEvent::Started,
        ProcessEvent::Step { step, .. } => return Some((StateEvent::Progress { step, metrics: std::mem::take(metrics) }, Retry::ONCE)),
        ProcessEvent::StepTime { seconds_per_step, samples } => {
            StateEvent::TrialStepTime { seconds_per_step, samples: u32::try_from(samples).unwrap_or(u32::MAX) }
        }
        ProcessEvent::TrialNoSteps => StateEvent::TrialNoSteps,
        ProcessEvent::Checkpoint { step } => StateEvent::Checkpoint { step },
        ProcessEvent::Metric { .. } => return None,
        ProcessEvent::Exited { code, signal, error } => {
            let error = error.or_else(|| signal.map(|s| format!("killed by signal {s}")));
            match hand_back {
                true => StateEvent::HandBack { code, error },
                false => StateEvent::Exited { code, error },
            }
        }
    };
    Some((event, Retry::PERSIST))
}

/// Proposes one process event of `key`; returns whether it was committed.
pub async fn report(cluster: &dyn Cluster, key: &AttemptKey, event: ProcessEvent, metrics: &mut Vec<(String, f64)>, hand_backs: &HandBacks) -> bool {
    match attempt_event(event, metrics, hand_backs.contains(key)) {
        Some((event, retry)) => cluster::report_attempt(cluster, &job_of(key), key.attempt, retry, event).await,
        None => true,
    }
}

/// Proposes an attempt event of `key` with `retry`; returns whether it was committed.
pub async fn report_state_event(cluster: &dyn Cluster, key: &AttemptKey, event: StateEvent, retry: Retry) -> bool {
    cluster::report_attempt(cluster, &job_of(key), key.attempt, retry, event).await
}

/// Reports the events of this host's processes.
pub struct Reporter {
    /// The cluster port.
    pub cluster: Arc<dyn Cluster>,
    /// This agent's name.
    pub agent: String,
    /// Data dir (the attempts' checkpoint directories live under it).
    pub data_dir: PathBuf,
    /// Checkpoint store.
    pub ckpt: Checkpoints,
    /// Which exits are hand-backs (shared with the reconcile loop).
    pub hand_backs: HandBacks,
}

impl Reporter {
    /// Proposes what the processes report, in order per attempt, until `events` closes.
    /// Metrics seen between two step reports travel with the next one. Progress is
    /// best-effort, except the last one before an exit: whether exit 0 means
    /// "completed" depends on the final step count, so it is re-sent reliably ahead of
    /// the `Exited`.
    pub async fn run(self, mut events: mpsc::UnboundedReceiver<AttemptEvent>) {
        let cluster = self.cluster.as_ref();
        let mut pending_metrics: BTreeMap<AttemptKey, Vec<(String, f64)>> = BTreeMap::new();
        let mut unsent_step: BTreeMap<AttemptKey, u64> = BTreeMap::new();
        while let Some(AttemptEvent { key, event }) = events.recv().await {
            match &event {
                ProcessEvent::Metric { name, value } => {
                    let metrics = pending_metrics.entry(key).or_default();
                    metrics.retain(|(n, _)| n != name);
                    metrics.push((name.clone(), *value));
                    continue;
                }
                // Only the rank-0 host of a training attempt has the job's checkpoint; a
                // trial's or another rank's checkpoint line is not the job's.
                ProcessEvent::Checkpoint { step } => {
                    if self.writes_checkpoints(&key) {
                        let live_dir = checkpoint_dir(&self.data_dir, &key.job);
                        let event = take::take(&self.ckpt, &key.job, *step, live_dir).await;
                        report_state_event(cluster, &key, event, Retry::PERSIST).await;
                    }
                    continue;
                }
                ProcessEvent::Exited { .. } => {
                    if let Some(step) = unsent_step.remove(&key) {
                        let metrics = pending_metrics.remove(&key).unwrap_or_default();
                        report_state_event(cluster, &key, StateEvent::Progress { step, metrics }, Retry::PERSIST).await;
                    }
                }
                _ => {}
            }
            let step = match &event {
                ProcessEvent::Step { step, .. } => Some(*step),
                _ => None,
            };
            let mut metrics = pending_metrics.remove(&key).unwrap_or_default();
            let committed = report(cluster, &key, event, &mut metrics, &self.hand_backs).await;
            if let Some(step) = step {
                if committed {
                    unsent_step.remove(&key);
                } else {
                    unsent_step.insert(key, step);
                }
            }
        }
    }

    /// Whether this host writes the checkpoints of `key`: rank 0 of a training attempt.
    fn writes_checkpoints(&self, key: &AttemptKey) -> bool {
        let view = self.cluster.host_view(&self.agent);
        view.live_attempt(&job_of(key))
            .filter(|live| live.attempt == key.attempt && live.kind == DispatchKind::Train)
            .is_some_and(|live| live.placement.first().is_some_and(|hg| hg.host == self.agent))
    }
}
