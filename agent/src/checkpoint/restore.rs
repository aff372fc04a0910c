//! Fetch first: before a training attempt starts, its rank-0 host puts the newest
//! checkpoint it can verify into the attempt's checkpoint directory, and only that step
//! is announced (`AttemptEvent::Resumed`, then `SATURN_START_STEP`).
//!
//! Order: the newest recorded step from this host's own copy, else from each reachable
//! holder in turn; then older steps the same way. A step whose holders are all down is
//! skipped (and the note says so). When holders were reachable but every fetch failed
//! (holder died mid-transfer, no room, damaged copies) the attempt is handed back, not
//! failed; when no holder of any step is reachable, the job starts from step 0 with a
//! note saying why.

use std::path::{Path, PathBuf};

use saturn_consensus::{Command, JobId};

use super::plan::{restore_candidates, Candidate};
use super::{fetch::fetch, CheckpointError, CheckpointStats, Checkpoints};
use crate::api::AgentServices;
use crate::cluster::now_ms;

/// What the rank-0 host could prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The checkpoint directory holds `step` (empty for 0): start from there.
    Ready {
        /// The step restored.
        step: u64,
        /// Why it is not the newest recorded step (or 0 despite a checkpoint), if so.
        note: Option<String>,
    },
    /// Copies were reachable but none could be fetched: hand the attempt back.
    HandBack(String),
}

/// Prepares `live_dir` for a training attempt of `job` on this host.
pub async fn prepare(ckpt: &Checkpoints, services: &dyn AgentServices, job: &JobId, live_dir: &Path) -> Prepared {
    let state = services.cluster().state();
    let Some(record) = state.job(job) else { return Prepared::HandBack(format!("no job {job}")) };
    let alive = services.soft().alive;
    let candidates = restore_candidates(&state, record, &ckpt.agent, &alive);
    let newest = candidates.first().map(|c| c.step);
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    for candidate in &candidates {
        // On shared storage every copy is this host's to read, whoever wrote it.
        if ckpt.shared && copy_from(ckpt, services, job, candidate, &ckpt.agent.clone()).await.is_ok() {
            return match restore(ckpt, job, candidate.step, live_dir.to_owned()).await {
                Ok(()) => Prepared::Ready { step: candidate.step, note: None },
                Err(err) => Prepared::HandBack(format!("cannot restore checkpoint step {}: {err}", candidate.step)),
            };
        }
        if candidate.reachable.is_empty() {
            skipped.push(format!("step {} is held only by {} (down)", candidate.step, candidate.unreachable.join(", ")));
            continue;
        }
        for holder in &candidate.reachable {
            match copy_from(ckpt, services, job, candidate, holder).await {
                Ok(()) => match restore(ckpt, job, candidate.step, live_dir.to_owned()).await {
                    Ok(()) => {
                        let note = (Some(candidate.step) != newest).then(|| {
                            let mut why = skipped.clone();
                            why.extend(failures.iter().cloned());
                            format!("resumed from checkpoint step {} instead of {}: {}", candidate.step, newest.unwrap_or(0), why.join("; "))
                        });
                        return Prepared::Ready { step: candidate.step, note };
                    }
                    Err(err) => return Prepared::HandBack(format!("cannot restore checkpoint step {}: {err}", candidate.step)),
                },
                Err(err) => {
                    CheckpointStats::add(&ckpt.stats.failures, 1);
                    tracing::warn!(%job, step = candidate.step, %holder, %err, "checkpoint copy unusable; trying the next");
                    failures.push(format!("step {} from {holder}: {err}", candidate.step));
                }
            }
        }
    }
    if !failures.is_empty() {
        return Prepared::HandBack(format!("no checkpoint copy could be fetched: {}", failures.join("; ")));
    }
    if let Err(err) = restore(ckpt, job, 0, live_dir.to_owned()).await {
        return Prepared::HandBack(format!("cannot prepare the checkpoint directory: {err}"));
    }
    let note = if !skipped.is_empty() {
        Some(format!("starting from step 0: {}", skipped.join("; ")))
    } else if record.last_checkpoint > 0 {
        Some(format!("starting from step 0: no copy of checkpoint step {} is recorded", record.last_checkpoint))
    } else {
        None
    };
    Prepared::Ready { step: 0, note }
}

/// Makes sure this host's store holds a verified copy of `candidate` from `holder`
/// (itself included) and that the state records it.
async fn copy_from(ckpt: &Checkpoints, services: &dyn AgentServices, job: &JobId, candidate: &Candidate, holder: &str) -> Result<(), CheckpointError> {
    let (step, digest) = (candidate.step, candidate.digest.clone());
    if holder == ckpt.agent {
        let (store, id) = (ckpt.store.clone(), job.0.clone());
        let verified = tokio::task::spawn_blocking(move || {
            let verified = store.verify(&id, step, &digest).map(|_| ());
            if verified.is_err() {
                store.discard(&id, step);
            }
            verified
        })
            .await
            .map_err(|err| CheckpointError::Damaged(format!("verification task failed: {err}")))?;
        if let Err(err) = &verified {
            let reason = format!("copy failed verification: {err}");
            let command = Command::CheckpointDropped { job: job.clone(), step, host: ckpt.agent.clone(), reason, at_ms: now_ms() };
            let _ = services.cluster().propose(command).await;
        }
        return verified;
    }
    let started = std::time::Instant::now();
    let bytes = fetch(ckpt, holder, &job.0, step, &candidate.digest).await?;
    tracing::info!(%job, step, %holder, bytes, seconds = started.elapsed().as_secs_f64(), "checkpoint fetched");
    let command = Command::CheckpointCopied {
        job: job.clone(),
        step,
        host: ckpt.agent.clone(),
        digest: candidate.digest.clone(),
        bytes,
        at_ms: now_ms(),
    };
    if let Err(err) = services.cluster().propose(command).await {
        // The copy is here and verified either way; the record can follow later.
        tracing::warn!(%job, step, %err, "could not record the fetched checkpoint copy");
    }
    Ok(())
}

async fn restore(ckpt: &Checkpoints, job: &JobId, step: u64, live_dir: PathBuf) -> Result<(), CheckpointError> {
    let (store, id) = (ckpt.store.clone(), job.0.clone());
    tokio::task::spawn_blocking(move || store.restore(&id, step, &live_dir))
        .await
        .map_err(|err| CheckpointError::Damaged(format!("restore task failed: {err}")))?
}
