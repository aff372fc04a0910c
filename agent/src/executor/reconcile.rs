//! The executor's decisions, pure: given this host's view of the replicated state, the
//! process table and the time, which processes to start, stop, report or hand back.
//!
//! Level-triggered: the daemon's glue (`daemon::executor_loop`) calls [`reconcile`]
//! whenever the state changes (and every second anyway) and carries out the
//! [`Action`]s; nothing here does I/O, so the rules are tested by applying the actions
//! straight to `ClusterState::apply` in virtual time (`reconcile_tests`).
//!
//! The rules:
//! - act only on applied state: an attempt runs here only while the state holds it live
//!   on this host; any other process is stale and stopped;
//! - fenced (cut off from a quorum of voters): stop every process, with the short fence
//!   grace, and hand their attempts back;
//! - an attempt dispatched before this run of the agent started, and never run by it, is
//!   handed back instead of started (the state it was read from may be stale);
//! - a training attempt starts only once its rank-0 host restored its checkpoint
//!   (`resumed`); the rank-0 host restores it;
//! - an exit whose report did not commit is reported again after
//!   [`EXIT_REPORT_AGAIN_AFTER`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use saturn_consensus::{AttemptStatus, DispatchKind, JobId};

use super::event::ProcessEvent;
use super::hand_back::HandBacks;
use super::spec::AttemptKey;
use super::table::ProcessTable;
use crate::cluster::HostView;

/// How long an exit may stay unreported in the state before it is reported again. The
/// event reporter normally commits it (after the attempt's last progress and step time)
/// within moments; reporting it earlier would overtake those.
pub const EXIT_REPORT_AGAIN_AFTER: Duration = Duration::from_secs(10);

/// What [`reconcile`] reads of the process table.
pub trait Processes {
    /// Attempts with a process running here.
    fn running(&self) -> Vec<AttemptKey>;
    /// The exit of an attempt that ended here (or was marked ended), if it did.
    fn finished(&self, key: &AttemptKey) -> Option<ProcessEvent>;
    /// The pid of an attempt's process while it has one.
    fn pid(&self, key: &AttemptKey) -> Option<u32>;
}

impl Processes for ProcessTable {
    fn running(&self) -> Vec<AttemptKey> {
        ProcessTable::running(self)
    }

    fn finished(&self, key: &AttemptKey) -> Option<ProcessEvent> {
        ProcessTable::finished(self, key)
    }

    fn pid(&self, key: &AttemptKey) -> Option<u32> {
        ProcessTable::pid(self, key)
    }
}

/// Which SIGTERM → SIGKILL grace a stop uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grace {
    /// The kill grace (`--kill-grace`): the job checkpoints and exits.
    Normal,
    /// The fence's short grace: the leader hands the jobs' work to others once the
    /// host-loss grace period ends, and the fence starts only halfway through it.
    Fence,
}

/// One thing the glue must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start this host's part of the attempt (the glue builds its spec; a rendezvous
    /// port in use fails it).
    Start {
        /// The attempt.
        key: AttemptKey,
    },
    /// Restore the checkpoint of a training attempt whose rank 0 is this host, then
    /// report `Resumed` (or hand the attempt back when no copy can be had).
    Restore {
        /// The attempt.
        key: AttemptKey,
    },
    /// Stop the attempt's processes (SIGTERM, SIGKILL after the grace).
    Stop {
        /// The attempt.
        key: AttemptKey,
        /// Which grace.
        grace: Grace,
    },
    /// Report this exit (again): the state still holds the attempt live.
    Report {
        /// The attempt.
        key: AttemptKey,
        /// Its exit.
        exited: ProcessEvent,
    },
    /// End an attempt that never ran in this run of the agent, and report its exit as a
    /// hand-back (`AttemptEvent::HandBack`).
    HandBack {
        /// The attempt.
        key: AttemptKey,
        /// Why, for people.
        why: String,
    },
}

/// What [`reconcile`] carries from one round to the next.
#[derive(Clone, Debug)]
pub struct Memory {
    /// When this run of the agent started (Unix ms).
    pub started_at_ms: u64,
    /// Attempts whose exits are hand-backs (the agent's doing, not the job's); shared
    /// with the event reporter, which reports their exits as `HandBack`.
    pub hand_backs: HandBacks,
    /// When each exited-but-still-live attempt was first noticed.
    exits_seen: BTreeMap<AttemptKey, Instant>,
}

impl Memory {
    /// The memory of a run of the agent that started at `started_at_ms`.
    pub fn new(started_at_ms: u64) -> Self {
        Memory { started_at_ms, hand_backs: HandBacks::default(), exits_seen: BTreeMap::new() }
    }
}

/// One round: what must change for this host's processes to match `view`.
pub fn reconcile(view: &HostView, processes: &impl Processes, fenced: bool, now: Instant, memory: &mut Memory) -> Vec<Action> {
    let mut actions = Vec::new();
    if fenced {
        for key in processes.running() {
            memory.hand_backs.add(key.clone());
            actions.push(Action::Stop { key, grace: Grace::Fence });
        }
        return actions;
    }
    let running: BTreeSet<AttemptKey> = processes.running().into_iter().collect();
    let mut keep = BTreeSet::new();
    let mut handed_back = BTreeSet::new();
    for (record, live) in view.attempts() {
        let key = AttemptKey::new(record.id.0.clone(), live.attempt);
        keep.insert(key.clone());
        let finished = processes.finished(&key);
        // Dispatched before this run of the agent started: the state it was read from may
        // be stale (a restarted agent applies the log it missed only now), and a process
        // of it may have run and ended already. Never started; handed back instead.
        let from_before_start = live.dispatched_at_ms < memory.started_at_ms && finished.is_none();
        match live.status {
            _ if from_before_start => {
                memory.hand_backs.add(key.clone());
                handed_back.insert(key.clone());
                actions.push(Action::HandBack { key: key.clone(), why: "ended when its agent restarted".to_string() });
            }
            AttemptStatus::Stopping => actions.push(Action::Stop { key: key.clone(), grace: Grace::Normal }),
            // Started already (or ended): nothing to do.
            AttemptStatus::Running if running.contains(&key) || finished.is_some() => {}
            // Fetch first: a training attempt starts once its rank-0 host has restored
            // the checkpoint it announces (`resumed`); rank 0 does that here.
            AttemptStatus::Running if live.kind == DispatchKind::Train && !live.resumed => {
                if live.placement.first().is_some_and(|hg| hg.host == view.host()) {
                    actions.push(Action::Restore { key: key.clone() });
                }
            }
            AttemptStatus::Running => actions.push(Action::Start { key: key.clone() }),
        }
        // An exit whose report was not committed (leader change, partition) is reported
        // again: the state still lists the attempt as live until it is. A hand-back of
        // this round counts as an exit seen now.
        if finished.is_some() || handed_back.contains(&key) {
            let first_seen = *memory.exits_seen.entry(key.clone()).or_insert(now);
            if let Some(exited) = finished {
                if processes.pid(&key).is_none() && now.duration_since(first_seen) > EXIT_REPORT_AGAIN_AFTER {
                    actions.push(Action::Report { key: key.clone(), exited });
                }
            }
        }
    }
    memory.exits_seen.retain(|key, _| keep.contains(key));
    memory.hand_backs.retain(|key| keep.contains(key) || running.contains(key));
    for key in running.difference(&keep) {
        actions.push(Action::Stop { key: key.clone(), grace: Grace::Normal });
    }
    actions
}

/// The job of an attempt key.
pub fn job_of(key: &AttemptKey) -> JobId {
    JobId(key.job.clone())
}
