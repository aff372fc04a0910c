//! `SATURN checkpoint step=N` on the rank-0 host: the checkpoint directory is frozen
//! into the store and becomes the attempt event that records it (or refuses it).

use std::path::PathBuf;

use saturn_consensus::AttemptEvent;

use super::Checkpoints;

/// Snapshots `live_dir` as step `step` of `job` and says what to report: the verified
/// copy, or why the checkpoint line was refused (the job keeps its previous checkpoint).
pub async fn take(ckpt: &Checkpoints, job: &str, step: u64, live_dir: PathBuf) -> AttemptEvent {
    let (store, id, cap) = (ckpt.store.clone(), job.to_owned(), ckpt.settings.max_bytes);
    let copies_wanted = 1 + ckpt.settings.replicas;
    let taken = tokio::task::spawn_blocking(move || store.snapshot(&id, step, &live_dir, cap)).await;
    match taken {
        Ok(Ok(manifest)) => AttemptEvent::CheckpointStored {
            step,
            size: manifest.size,
            files: manifest.files.len() as u32,
            digest: manifest.digest,
            copies_wanted,
        },
        Ok(Err(err)) => {
            tracing::warn!(%job, step, %err, "checkpoint refused");
            AttemptEvent::CheckpointRefused { step, reason: err.to_string() }
        }
        Err(err) => AttemptEvent::CheckpointRefused { step, reason: format!("snapshot task failed: {err}") },
    }
}
