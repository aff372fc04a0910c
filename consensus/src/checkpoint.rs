//! Checkpoint records: which steps of a job's checkpoint exist, on which hosts, with
//! what size and content digest, and the transitions that keep them.
//!
//! The bytes never go through Raft (they move over the mesh, or live on shared
//! storage); only the record of a copy that an agent verified does. A copy is recorded
//! by the agent that holds it: the writer's snapshot by the attempt's `CheckpointStored`
//! event, a replica or a fetched copy by [`Command::CheckpointCopied`](crate::Command)
//! from its receiver, a copy found corrupt or refused by
//! [`Command::CheckpointDropped`](crate::Command).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::apply::wrong_state;
use crate::command::{AttemptEvent, CommandResult, DispatchKind, Rejection};
use crate::job::JobId;
use crate::state::{ClusterState, JobRecord};

/// How many checkpoint steps of a job are kept once the newest is fully replicated.
pub const KEEP_CHECKPOINT_STEPS: usize = 2;

/// Most checkpoint steps kept per job while the newest is not yet fully replicated
/// (a cluster that cannot reach its replica count must not grow without bound).
pub const MAX_CHECKPOINT_STEPS: usize = 6;

/// How many notes a job keeps (the oldest go first).
pub const MAX_JOB_NOTES: usize = 20;

/// One checkpoint step of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Total bytes of the checkpoint's files.
    pub size: u64,
    /// Number of files.
    pub files: u32,
    /// Hex content digest over the relative paths and contents (see the agent's
    /// `checkpoint::digest`).
    pub digest: String,
    /// Hosts holding a verified copy.
    pub holders: BTreeSet<String>,
    /// Copies wanted in all (the writer's plus `--checkpoint-replicas`).
    pub copies_wanted: u32,
    /// Hosts that refused or lost a copy of this step (no room, corrupt); never chosen
    /// again as its replica targets.
    pub declined: BTreeSet<String>,
    /// When the writer recorded it.
    pub written_at_ms: u64,
}

/// Something that happened to a job that people should see (`saturn job status ID`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobNote {
    /// When.
    pub at_ms: u64,
    /// What, in one line.
    pub text: String,
}

impl JobRecord {
    /// The newest checkpoint step recorded, with its record.
    pub fn newest_checkpoint(&self) -> Option<(u64, &CheckpointRecord)> {
        self.checkpoints.iter().next_back().map(|(step, record)| (*step, record))
    }

    /// Adds a note, dropping the oldest beyond [`MAX_JOB_NOTES`].
    pub fn note(&mut self, at_ms: u64, text: String) {
        self.notes.push(JobNote { at_ms, text });
        let excess = self.notes.len().saturating_sub(MAX_JOB_NOTES);
        self.notes.drain(..excess);
    }
}

/// Drops old steps: the [`KEEP_CHECKPOINT_STEPS`] newest stay once the newest has all
/// the copies it can get (`copies_wanted`, at most `hosts_up`); never more than
/// [`MAX_CHECKPOINT_STEPS`] stay.
pub fn prune(checkpoints: &mut BTreeMap<u64, CheckpointRecord>, hosts_up: usize) {
    let Some((_, newest)) = checkpoints.iter().next_back() else { return };
    let wanted = (newest.copies_wanted as usize).min(hosts_up.saturating_sub(newest.declined.len())).max(1);
    let keep = if newest.holders.len() >= wanted { KEEP_CHECKPOINT_STEPS } else { MAX_CHECKPOINT_STEPS };
    while checkpoints.len() > keep {
        checkpoints.pop_first();
    }
}

type Outcome = Result<CommandResult, Rejection>;

impl ClusterState {
    /// Applies a checkpoint event of `id`'s live attempt (already checked to be live).
    pub(crate) fn checkpoint_event(&mut self, id: &JobId, event: &AttemptEvent, at_ms: u64) -> Outcome {
        let hosts_up = self.agents.values().filter(|agent| agent.up).count();
        let record = self.job_mut(id).ok_or_else(|| Rejection::UnknownJob(id.clone()))?;
        let Some(live) = record.live.as_mut() else { return Err(wrong_state(id, "no live attempt".into())) };
        if live.kind != DispatchKind::Train {
            // A trial's checkpoints are not the job's: a restart must not resume there.
            return Ok(CommandResult::Applied);
        }
        match event {
            AttemptEvent::CheckpointStored { step, size, files, digest, copies_wanted } => {
                let Some(writer) = live.placement.first().map(|hg| hg.host.clone()) else {
                    return Err(wrong_state(id, "the live attempt has no placement".into()));
                };
                record.checkpoints.insert(
                    *step,
                    CheckpointRecord {
                        size: *size,
                        files: *files,
                        digest: digest.clone(),
                        holders: [writer].into(),
                        copies_wanted: (*copies_wanted).max(1),
                        declined: BTreeSet::new(),
                        written_at_ms: at_ms,
                    },
                );
                record.last_checkpoint = *step;
                record.steps_done = record.steps_done.max(*step);
                prune(&mut record.checkpoints, hosts_up);
            }
            AttemptEvent::CheckpointRefused { step, reason } => {
                let attempt = live.attempt;
                record.note(at_ms, format!("attempt {attempt}: checkpoint step {step} refused: {reason}"));
            }
            AttemptEvent::Resumed { step, note } => {
                if live.resumed {
                    if live.start_step == *step {
                        return Ok(CommandResult::Applied);
                    }
                    return Err(wrong_state(id, format!("attempt {} already resumed at step {}", live.attempt, live.start_step)));
                }
                live.resumed = true;
                live.start_step = *step;
                let attempt = live.attempt;
                record.steps_done = *step;
                record.last_checkpoint = *step;
                // The job's history continues from `step`: a newer step number will be
                // written again, with other contents.
                record.checkpoints.retain(|recorded, _| *recorded <= *step);
                if let Some(note) = note {
                    record.note(at_ms, format!("attempt {attempt}: {note}"));
                }
            }
            _ => return Err(wrong_state(id, "not a checkpoint event".into())),
        }
        Ok(CommandResult::Applied)
    }

    pub(crate) fn checkpoint_copied(
        &mut self,
        id: &JobId,
        step: u64,
        host: &str,
        digest: &str,
        bytes: u64,
        _at_ms: u64,
    ) -> Outcome {
        if !self.agents.contains_key(host) {
            return Err(Rejection::UnknownAgent(host.to_string()));
        }
        let hosts_up = self.agents.values().filter(|agent| agent.up).count();
        let record = self.job_mut(id).ok_or_else(|| Rejection::UnknownJob(id.clone()))?;
        let Some(copy) = record.checkpoints.get_mut(&step).filter(|copy| copy.digest == digest) else {
            return Err(wrong_state(id, format!("no checkpoint step {step} with digest {digest}")));
        };
        copy.holders.insert(host.to_string());
        copy.declined.remove(host);
        record.bytes_replicated += bytes;
        prune(&mut record.checkpoints, hosts_up);
        Ok(CommandResult::Applied)
    }

    pub(crate) fn checkpoint_dropped(&mut self, id: &JobId, step: u64, host: &str, reason: &str, at_ms: u64) -> Outcome {
        let record = self.job_mut(id).ok_or_else(|| Rejection::UnknownJob(id.clone()))?;
        let Some(copy) = record.checkpoints.get_mut(&step) else {
            return Err(wrong_state(id, format!("no checkpoint step {step}")));
        };
        copy.holders.remove(host);
        copy.declined.insert(host.to_string());
        record.note(at_ms, format!("checkpoint step {step} on {host}: {reason}"));
        Ok(CommandResult::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holders: &[&str], wanted: u32) -> CheckpointRecord {
        CheckpointRecord {
            size: 1,
            files: 1,
            digest: "d".into(),
            holders: holders.iter().map(|h| h.to_string()).collect(),
            copies_wanted: wanted,
            declined: BTreeSet::new(),
            written_at_ms: 0,
        }
    }

    #[test]
    fn old_steps_go_only_once_the_newest_is_replicated() {
        let mut steps: BTreeMap<u64, CheckpointRecord> =
            [(10, record(&["a", "b"], 2)), (20, record(&["a", "b"], 2)), (30, record(&["a"], 2))].into();
        prune(&mut steps, 3);
        assert_eq!(steps.len(), 3, "step 30 has one copy of two: nothing is dropped");
        steps.get_mut(&30).unwrap().holders.insert("c".into());
        prune(&mut steps, 3);
        assert_eq!(steps.keys().copied().collect::<Vec<_>>(), vec![20, 30]);
    }

    #[test]
    fn a_lone_host_cannot_hold_back_pruning() {
        let mut steps: BTreeMap<u64, CheckpointRecord> =
            [(10, record(&["a"], 2)), (20, record(&["a"], 2)), (30, record(&["a"], 2))].into();
        prune(&mut steps, 1);
        assert_eq!(steps.keys().copied().collect::<Vec<_>>(), vec![20, 30]);
    }
}
