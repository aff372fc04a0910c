//! Pure checkpoint decisions, functions of the replicated state (and of which agents
//! the failure detector thinks alive): where to restore from, who pulls a replica,
//! what a host may delete.

use std::collections::{BTreeMap, BTreeSet};

use saturn_consensus::{ClusterState, JobRecord};

use crate::executor::pidfile::file_safe;

/// One recorded step a resume may use, newest first in [`restore_candidates`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The step.
    pub step: u64,
    /// Its digest.
    pub digest: String,
    /// Holders that are up (this host first when it is one), to try in order.
    pub reachable: Vec<String>,
    /// Holders that are down.
    pub unreachable: Vec<String>,
}

/// Whether `host` is up in the state and not known dead by the failure detector.
pub fn reachable(state: &ClusterState, alive: &BTreeMap<String, bool>, host: &str) -> bool {
    state.agents().get(host).is_some_and(|agent| agent.up) && alive.get(host).copied().unwrap_or(true)
}

/// The job's recorded steps, newest first, with their holders split by reachability.
pub fn restore_candidates(state: &ClusterState, record: &JobRecord, me: &str, alive: &BTreeMap<String, bool>) -> Vec<Candidate> {
    record
        .checkpoints
        .iter()
        .rev()
        .map(|(step, copy)| {
            let (mut reachable_now, unreachable): (Vec<String>, Vec<String>) =
                copy.holders.iter().cloned().partition(|host| host == me || reachable(state, alive, host));
            reachable_now.sort_by_key(|host| (host != me, spread_key(&record.id.0, *step, host)));
            Candidate { step: *step, digest: copy.digest.clone(), reachable: reachable_now, unreachable }
        })
        .collect()
}

/// A replica `me` should pull now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pull {
    /// The job.
    pub job: String,
    /// The step (always the job's newest).
    pub step: u64,
    /// Its digest.
    pub digest: String,
    /// When it was written (for the lag metric).
    pub written_at_ms: u64,
    /// Reachable holders to pull from.
    pub from: Vec<String>,
}

/// The replicas `me` should pull: for every running or waiting job whose newest step
/// has fewer reachable copies than wanted, the hosts that take the missing copies are
/// the reachable non-holders that did not decline it, in an order hashed from job, step
/// and name (so copies spread over the cluster); `me` pulls when it is among the first.
pub fn pulls_for(state: &ClusterState, me: &str, alive: &BTreeMap<String, bool>) -> Vec<Pull> {
    let mut pulls = Vec::new();
    if !reachable(state, alive, me) {
        return pulls;
    }
    for record in state.jobs().values() {
        if record.state.is_terminal() {
            continue;
        }
        let Some((step, copy)) = record.newest_checkpoint() else { continue };
        if copy.holders.contains(me) || copy.declined.contains(me) {
            continue;
        }
        let from: Vec<String> = copy.holders.iter().filter(|h| reachable(state, alive, h)).cloned().collect();
        let missing = (copy.copies_wanted as usize).saturating_sub(from.len());
        if from.is_empty() || missing == 0 {
            continue;
        }
        let mut takers: Vec<&String> = state
            .agents()
            .keys()
            .filter(|name| !copy.holders.contains(*name) && !copy.declined.contains(*name) && reachable(state, alive, name))
            .collect();
        takers.sort_by_key(|name| spread_key(&record.id.0, step, name));
        if takers.iter().take(missing).any(|name| *name == me) {
            pulls.push(Pull {
                job: record.id.0.clone(),
                step,
                digest: copy.digest.clone(),
                written_at_ms: copy.written_at_ms,
                from,
            });
        }
    }
    pulls
}

/// The copies `me` must keep, as (job directory name, step): every recorded step of
/// which it is a holder (any holder, on shared storage). Anything else in its store may
/// be deleted (see [`Sweep`] for when).
pub fn keep_set(state: &ClusterState, me: &str, shared: bool) -> BTreeSet<(String, u64)> {
    Sweep::of(state, me, shared).keep
}

/// What a host's store sweep does with each copy it finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Recorded as this host's: keep.
    Keep,
    /// Not recorded as this host's yet, but its record may be on its way through Raft
    /// (a snapshot about to be announced, a replica just sealed): delete once old.
    DeleteIfOld,
    /// Older than the job's newest recorded step and recorded nowhere: no record can
    /// still come for it (apply prunes old steps), so it goes now. A job checkpointing
    /// faster than its copies replicate would otherwise pile up a copy per checkpoint
    /// for as long as the grace for young copies.
    DeleteNow,
}

/// The state's view of which copies a host keeps.
#[derive(Clone, Debug, Default)]
pub struct Sweep {
    /// Copies recorded as this host's.
    pub keep: BTreeSet<(String, u64)>,
    /// Every recorded step, on any host.
    recorded: BTreeSet<(String, u64)>,
    /// Each job's newest recorded step.
    newest: BTreeMap<String, u64>,
}

impl Sweep {
    /// The sweep of `me`'s store.
    pub fn of(state: &ClusterState, me: &str, shared: bool) -> Self {
        let mut sweep = Sweep::default();
        for record in state.jobs().values() {
            let job = file_safe(&record.id.0);
            for (step, copy) in &record.checkpoints {
                if shared || copy.holders.contains(me) {
                    sweep.keep.insert((job.clone(), *step));
                }
                sweep.recorded.insert((job.clone(), *step));
            }
            if let Some((step, _)) = record.newest_checkpoint() {
                sweep.newest.insert(job, step);
            }
        }
        sweep
    }

    /// What to do with this host's copy of `step` of the job stored as `job`.
    pub fn verdict(&self, job: &str, step: u64) -> Verdict {
        let key = (job.to_owned(), step);
        if self.keep.contains(&key) {
            Verdict::Keep
        } else if !self.recorded.contains(&key) && self.newest.get(job).is_some_and(|newest| step < *newest) {
            Verdict::DeleteNow
        } else {
            Verdict::DeleteIfOld
        }
    }
}

/// A stable per-(job, step, host) order (FNV-1a).
fn spread_key(job: &str, step: u64, host: &str) -> u64 {
    format!("{job}/{step}/{host}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use saturn_consensus::{AgentNode, AttemptEvent, Command, DispatchKind, HostGpus, JobId, JobSpec};

    fn cluster(hosts: &[&str]) -> (ClusterState, JobId) {
        let mut state = ClusterState::default();
        for host in hosts {
            let node = AgentNode { name: host.to_string(), peer_id: format!("p-{host}"), addrs: vec![] };
            let gpus = vec![saturn_consensus::GpuInfo { index: 0, model: "SIM".into(), memory_mib: 1 }];
            state.apply(&Command::AgentUp { node, gpus, at_ms: 0 });
        }
        let spec = JobSpec {
            name: "j".into(),
            command: vec!["x".into()],
            workdir: "/".into(),
            env: Default::default(),
            steps: 100,
            techniques: vec!["ddp".into()],
            gpus_min: 1,
            gpus_max: 1,
            profile_group: "g".into(),
            max_restarts: 1,
            profile: [("ddp".to_string(), [(1, 0.1)].into())].into(),
            early_stop: None,
            duration_estimate_s: 3600,
        };
        state.apply(&Command::SubmitJobs { specs: vec![spec], at_ms: 0 });
        let job = JobId::from_seq(1);
        let placement = vec![HostGpus { host: hosts[0].to_string(), gpus: vec![0] }];
        state.apply(&Command::Dispatch { job: job.clone(), technique: "ddp".into(), placement, kind: DispatchKind::Train, at_ms: 0 });
        (state, job)
    }

    fn stored(state: &mut ClusterState, job: &JobId, step: u64, wanted: u32) {
        let event = AttemptEvent::CheckpointStored { step, size: 10, files: 1, digest: format!("d{step}"), copies_wanted: wanted };
        state.apply(&Command::JobEvent { job: job.clone(), attempt: 1, event, at_ms: 5 });
    }

    #[test]
    fn exactly_the_missing_copies_are_pulled_by_distinct_hosts() {
        let (mut state, job) = cluster(&["a", "b", "c", "d"]);
        stored(&mut state, &job, 10, 3);
        let alive = BTreeMap::new();
        let pullers: Vec<&str> = ["a", "b", "c", "d"].into_iter().filter(|h| !pulls_for(&state, h, &alive).is_empty()).collect();
        assert_eq!(pullers.len(), 2, "two replicas wanted beside the writer's copy: {pullers:?}");
        assert!(!pullers.contains(&"a"), "the writer holds it already");
        let copied = Command::CheckpointCopied {
            job: job.clone(),
            step: 10,
            host: pullers[0].to_string(),
            digest: "d10".into(),
            bytes: 10,
            at_ms: 6,
        };
        state.apply(&copied);
        let still: Vec<&str> = ["a", "b", "c", "d"].into_iter().filter(|h| !pulls_for(&state, h, &alive).is_empty()).collect();
        assert_eq!(still.len(), 1);
    }

    #[test]
    fn a_resume_prefers_the_newest_reachable_step_and_its_own_copy() {
        let (mut state, job) = cluster(&["a", "b", "c"]);
        stored(&mut state, &job, 10, 2);
        state.apply(&Command::CheckpointCopied { job: job.clone(), step: 10, host: "b".into(), digest: "d10".into(), bytes: 10, at_ms: 6 });
        stored(&mut state, &job, 20, 2);
        state.apply(&Command::AgentDown { name: "a".into(), at_ms: 7 });
        let record = state.job(&job).unwrap().clone();
        let candidates = restore_candidates(&state, &record, "b", &BTreeMap::new());
        assert_eq!(candidates[0].step, 20);
        assert!(candidates[0].reachable.is_empty(), "only a, which is down, holds step 20");
        assert_eq!(candidates[1].reachable, vec!["b".to_string()]);
        assert_eq!(keep_set(&state, "b", false), [("j-000001".to_string(), 10)].into());
    }

    #[test]
    fn a_copy_no_record_can_still_come_for_is_deleted_at_once() {
        let (mut state, job) = cluster(&["a", "b", "c"]);
        stored(&mut state, &job, 10, 2);
        stored(&mut state, &job, 20, 2);
        let sweep = Sweep::of(&state, "a", false);
        let dir = "j-000001";
        assert_eq!(sweep.verdict(dir, 20), Verdict::Keep, "the writer's own recorded copy");
        assert_eq!(sweep.verdict(dir, 15), Verdict::DeleteNow, "older than the newest record and recorded nowhere");
        assert_eq!(sweep.verdict(dir, 30), Verdict::DeleteIfOld, "newer than any record: its record may be on its way");
        let on_b = Sweep::of(&state, "b", false);
        assert_eq!(on_b.verdict(dir, 10), Verdict::DeleteIfOld, "recorded (on a): b's replica record may be on its way");
        assert_eq!(on_b.verdict("j-000009", 5), Verdict::DeleteIfOld, "a job without records");
    }
}
