//! The replication loop of one agent: after every apply (and every few seconds) it
//! pulls the replicas [`pulls_for`](super::plan::pulls_for) assigns to it, one at a
//! time, records each verified copy through Raft, and deletes the copies of its store
//! that the state no longer records here (older steps once a newer one is replicated).
//!
//! Replication is a pull by the receiver, triggered by the writer's record: the writer
//! announces, the chosen hosts come and get it. The receiver is the one that verifies
//! and records, so a partition during a transfer leaves no record of a copy that was
//! not received whole; after healing the pull resumes where its partial copy ended.

use std::sync::Arc;
use std::time::Duration;

use saturn_consensus::{Command, JobId};
use tokio::sync::watch;

use super::plan::{pulls_for, Pull, Sweep, Verdict};
use super::{fetch::fetch, CheckpointError, CheckpointStats, Checkpoints};
use crate::api::AgentServices;
use crate::cluster::now_ms;

/// How often the loop runs without a state change.
const EVERY: Duration = Duration::from_secs(2);
/// A copy younger than this is never deleted (its record may be on its way).
const YOUNG: Duration = Duration::from_secs(60);
/// A partial copy untouched this long is given up on.
const STALE_PARTIAL: Duration = Duration::from_secs(3600);

/// Runs until the agent's shutdown signal drops it (`daemon::Tasks`).
pub async fn run(ckpt: Checkpoints, services: Arc<dyn AgentServices>, mut applied: watch::Receiver<u64>) {
    loop {
        round(&ckpt, services.as_ref()).await;
        tokio::select! {
            _ = applied.changed() => {}
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// One round: pull what is missing here, then delete what is not recorded here.
pub async fn round(ckpt: &Checkpoints, services: &dyn AgentServices) {
    let state = services.cluster().state();
    let alive = services.soft().alive;
    let pulls = if ckpt.shared { Vec::new() } else { pulls_for(&state, &ckpt.agent, &alive) };
    for pull in pulls {
        pull_one(ckpt, services, &pull).await;
    }
    let sweep = Sweep::of(&services.cluster().state(), &ckpt.agent, ckpt.shared);
    let store = ckpt.store.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for (job, step) in store.copies() {
            match sweep.verdict(&job, step) {
                Verdict::Keep => {}
                Verdict::DeleteIfOld => store.delete_if_old(&job, step, YOUNG),
                Verdict::DeleteNow => store.delete_if_old(&job, step, Duration::ZERO),
            }
        }
        store.delete_stale_partials(STALE_PARTIAL);
    })
    .await;
}

async fn pull_one(ckpt: &Checkpoints, services: &dyn AgentServices, pull: &Pull) {
    let job = JobId(pull.job.clone());
    let mut last = None;
    for holder in &pull.from {
        match fetch(ckpt, holder, &pull.job, pull.step, &pull.digest).await {
            Ok(bytes) => {
                let lag = now_ms().saturating_sub(pull.written_at_ms);
                ckpt.stats.last_lag_ms.store(lag, std::sync::atomic::Ordering::Relaxed);
                CheckpointStats::add(&ckpt.stats.copies, 1);
                tracing::info!(job = %pull.job, step = pull.step, %holder, bytes, lag_ms = lag, "checkpoint replica pulled");
                let command = Command::CheckpointCopied {
                    job,
                    step: pull.step,
                    host: ckpt.agent.clone(),
                    digest: pull.digest.clone(),
                    bytes,
                    at_ms: now_ms(),
                };
                if let Err(err) = services.cluster().propose(command).await {
                    tracing::warn!(%err, "could not record a checkpoint replica; the next round retries");
                }
                return;
            }
            Err(err) => {
                CheckpointStats::add(&ckpt.stats.failures, 1);
                tracing::warn!(job = %pull.job, step = pull.step, %holder, %err, "checkpoint replica pull failed");
                last = Some(err);
            }
        }
    }
    // No room here: decline the step so another host takes the copy.
    if let Some(err @ CheckpointError::NoRoom { .. }) = last {
        let command = Command::CheckpointDropped {
            job,
            step: pull.step,
            host: ckpt.agent.clone(),
            reason: format!("cannot take a replica: {err}"),
            at_ms: now_ms(),
        };
        let _ = services.cluster().propose(command).await;
    }
}
