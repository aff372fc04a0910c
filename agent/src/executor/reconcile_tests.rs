//! [`reconcile`] in virtual time, the way `tests/scheduler_sim.rs` tests the scheduler:
//! each round's actions are carried out on a fake process table and what the processes
//! would report is applied straight to `ClusterState::apply`. Covers what only the
//! multi-process suites covered before: starts, restarts, stale attempts, the fence,
//! hand-backs after a restart, and exits reported again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use saturn_consensus::{
    AttemptEvent, ClusterState, Command, CommandResult, DispatchKind, HostGpus, JobId, JobState,
};

use super::event::ProcessEvent;
use super::reconcile::{reconcile, Action, Grace, Memory, Processes};
use super::report::attempt_event;
use super::spec::AttemptKey;
use crate::cluster::HostView;
use crate::scheduler::test_support::{cluster, spec, submit};

/// A process of the fake table: running, or ended with its exit.
#[derive(Default)]
struct Fake {
    procs: BTreeMap<AttemptKey, Option<ProcessEvent>>,
}

impl Processes for Fake {
    fn running(&self) -> Vec<AttemptKey> {
        self.procs.iter().filter(|(_, exit)| exit.is_none()).map(|(key, _)| key.clone()).collect()
    }

    fn finished(&self, key: &AttemptKey) -> Option<ProcessEvent> {
        self.procs.get(key).cloned().flatten()
    }

    fn pid(&self, key: &AttemptKey) -> Option<u32> {
        self.procs.get(key).and_then(|exit| exit.is_none().then_some(1000))
    }
}

/// One host: its process table and its executor's memory.
struct Host {
    name: &'static str,
    table: Fake,
    memory: Memory,
}

/// The cluster's state, the hosts and the virtual clock.
struct World {
    state: ClusterState,
    hosts: Vec<Host>,
    start: Instant,
    now: Duration,
    /// While true, exit reports are lost (a leader change swallowed them).
    lose_reports: bool,
}

const SIGTERM: i32 = 15;

impl World {
    /// Hosts `a` and `b` (2 GPUs each), both agents started at time 0 (Unix ms 1000).
    fn new() -> Self {
        let hosts = ["a", "b"].map(|name| Host { name, table: Fake::default(), memory: Memory::new(1_000) });
        World { state: cluster(&[("a", 2), ("b", 2)]), hosts: hosts.into(), start: Instant::now(), now: Duration::ZERO, lose_reports: false }
    }

    fn host(&mut self, name: &str) -> &mut Host {
        self.hosts.iter_mut().find(|h| h.name == name).expect("a host of the world")
    }

    /// Submits a job and dispatches its first training attempt on `placement`.
    fn job_on(&mut self, placement: &[(&str, &[u32])]) -> JobId {
        let job = submit(&mut self.state, vec![spec("j", "g", &["ddp"], 1, 4)]).remove(0);
        self.dispatch(&job, placement);
        job
    }

    /// A job whose first attempt restored its checkpoint and runs on GPUs `gpus` of `a`.
    fn running_job_on_a(&mut self, gpus: &[u32]) -> JobId {
        let job = self.job_on(&[("a", gpus)]);
        assert_eq!(self.round("a", false), vec![Action::Restore { key: key(&job, 1) }]);
        assert_eq!(self.round("a", false), vec![Action::Start { key: key(&job, 1) }]);
        job
    }

    fn dispatch(&mut self, job: &JobId, placement: &[(&str, &[u32])]) -> u32 {
        let placement = placement.iter().map(|(host, gpus)| HostGpus { host: host.to_string(), gpus: gpus.to_vec() }).collect();
        let at_ms = 2_000 + self.now.as_millis() as u64;
        match self.apply(Command::Dispatch { job: job.clone(), technique: "ddp".into(), placement, kind: DispatchKind::Train, at_ms }) {
            CommandResult::Dispatched { attempt, .. } => attempt,
            other => panic!("dispatch not applied: {other:?}"),
        }
    }

    fn apply(&mut self, command: Command) -> CommandResult {
        self.state.apply(&command)
    }

    fn event(&mut self, key: &AttemptKey, event: AttemptEvent) -> CommandResult {
        let job = JobId(key.job.clone());
        self.apply(Command::JobEvent { job, attempt: key.attempt, event, at_ms: 2_000 + self.now.as_millis() as u64 })
    }

    /// What the event reporter does with an exit (the real translation, `report::attempt_event`).
    fn report_exit(&mut self, host: &str, key: &AttemptKey, exited: ProcessEvent) {
        let hand_back = self.host(host).memory.hand_backs.contains(key);
        let (event, _) = attempt_event(exited, &mut Vec::new(), hand_back).expect("an exit is reported");
        if !self.lose_reports {
            self.event(key, event);
        }
    }

    /// `key`'s process on `host` ends by itself with `code`.
    fn exits(&mut self, host: &str, key: &AttemptKey, code: i32) {
        let exited = ProcessEvent::Exited { code: Some(code), signal: None, error: None };
        self.host(host).table.procs.insert(key.clone(), Some(exited.clone()));
        self.report_exit(host, key, exited);
    }

    /// One reconcile round on `host`, its actions carried out; returns them.
    fn round(&mut self, host: &str, fenced: bool) -> Vec<Action> {
        let view = HostView::of(&self.state, host);
        let now = self.start + self.now;
        let h = self.host(host);
        let actions = reconcile(&view, &h.table, fenced, now, &mut h.memory);
        for action in &actions {
            match action {
                Action::Start { key } => {
                    self.host(host).table.procs.insert(key.clone(), None);
                    self.event(key, AttemptEvent::Started);
                }
                Action::Restore { key } => {
                    self.event(key, AttemptEvent::Resumed { step: 0, note: None });
                }
                Action::Stop { key, .. } => {
                    // The job takes the SIGTERM and exits.
                    let exited = ProcessEvent::Exited { code: None, signal: Some(SIGTERM), error: None };
                    self.host(host).table.procs.insert(key.clone(), Some(exited.clone()));
                    self.report_exit(host, key, exited);
                }
                Action::Report { key, exited } => {
                    self.lose_reports = false;
                    self.report_exit(host, key, exited.clone());
                }
                Action::HandBack { key, why } => {
                    let exited = ProcessEvent::Exited { code: None, signal: None, error: Some(why.clone()) };
                    self.host(host).table.procs.insert(key.clone(), Some(exited.clone()));
                    self.report_exit(host, key, exited);
                }
            }
        }
        actions
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn job(&self, job: &JobId) -> &saturn_consensus::JobRecord {
        self.state.job(job).expect("the job exists")
    }
}

fn key(job: &JobId, attempt: u32) -> AttemptKey {
    AttemptKey::new(job.0.clone(), attempt)
}

#[test]
fn a_training_attempt_restores_then_starts_once_and_its_exit_completes_the_job() {
    let mut world = World::new();
    let job = world.job_on(&[("a", &[0])]);
    let k1 = key(&job, 1);
    assert_eq!(world.round("a", false), vec![Action::Restore { key: k1.clone() }], "fetch first");
    assert_eq!(world.round("a", false), vec![Action::Start { key: k1.clone() }]);
    assert_eq!(world.round("a", false), vec![], "running: nothing to do");
    assert_eq!(world.round("b", false), vec![], "not b's attempt");
    world.event(&k1, AttemptEvent::Progress { step: 1_000, metrics: vec![] });
    world.exits("a", &k1, 0);
    assert_eq!(world.job(&job).state, JobState::Completed);
    assert_eq!(world.round("a", false), vec![], "an ended attempt is neither restarted nor stopped");
}

#[test]
fn a_failed_attempt_is_restarted_as_a_new_attempt_and_the_old_one_never_runs_again() {
    let mut world = World::new();
    let job = world.running_job_on_a(&[0]);
    world.exits("a", &key(&job, 1), 1);
    assert_eq!((world.job(&job).state, world.job(&job).restarts), (JobState::Scheduled, 1));
    let attempt = world.dispatch(&job, &[("b", &[1])]);
    assert_eq!(attempt, 2);
    assert_eq!(world.round("a", false), vec![], "attempt 1 is not started again");
    assert_eq!(world.round("b", false), vec![Action::Restore { key: key(&job, 2) }]);
    assert_eq!(world.round("b", false), vec![Action::Start { key: key(&job, 2) }]);
}

#[test]
fn a_process_of_an_attempt_the_state_no_longer_holds_here_is_stopped() {
    let mut world = World::new();
    let job = world.running_job_on_a(&[0]);
    // The leader declared `a` down (its attempt is lost) and ran the job on `b`; `a` comes back.
    world.apply(Command::AgentDown { name: "a".into(), at_ms: 5_000 });
    world.dispatch(&job, &[("b", &[0])]);
    let stale = world.round("a", false);
    assert_eq!(stale, vec![Action::Stop { key: key(&job, 1), grace: Grace::Normal }]);
    assert_eq!(world.job(&job).live.as_ref().map(|live| live.attempt), Some(2), "the stale exit changes nothing");
    assert_eq!(world.round("a", false), vec![]);
}

#[test]
fn a_fenced_host_stops_every_process_with_the_fence_grace_and_hands_the_jobs_back() {
    let mut world = World::new();
    let job = world.running_job_on_a(&[0, 1]);
    assert_eq!(world.round("a", true), vec![Action::Stop { key: key(&job, 1), grace: Grace::Fence }]);
    let record = world.job(&job);
    assert!(record.live.is_none(), "the exit was reported and freed the GPUs");
    assert_eq!((record.state, record.restarts), (JobState::Scheduled, 0), "handed back, not failed");
    assert_eq!(world.state.counters().preemptions, 1);
    assert_eq!(world.round("a", true), vec![], "nothing left to stop");
}

#[test]
fn an_attempt_dispatched_before_the_agent_restarted_is_handed_back_not_started() {
    let mut world = World::new();
    let job = world.job_on(&[("a", &[0])]);
    world.event(&key(&job, 1), AttemptEvent::Resumed { step: 0, note: None });
    // `a` restarted after the dispatch: its new run began later than the attempt.
    world.host("a").memory = Memory::new(10_000);
    let actions = world.round("a", false);
    assert_eq!(actions, vec![Action::HandBack { key: key(&job, 1), why: "ended when its agent restarted".into() }]);
    let record = world.job(&job);
    assert_eq!((record.state, record.restarts, record.live.is_none()), (JobState::Scheduled, 0, true));
    assert_eq!(world.round("a", false), vec![]);
}

#[test]
fn an_exit_whose_report_was_lost_is_reported_again_after_ten_seconds() {
    let mut world = World::new();
    let job = world.running_job_on_a(&[0]);
    world.lose_reports = true;
    world.exits("a", &key(&job, 1), 1);
    assert!(world.job(&job).live.is_some(), "the report was lost");
    for _ in 0..10 {
        assert_eq!(world.round("a", false), vec![], "the reporter may still commit it");
        world.advance(Duration::from_secs(1));
    }
    world.advance(Duration::from_millis(500));
    let again = world.round("a", false);
    assert!(matches!(again.as_slice(), [Action::Report { key: k, .. }] if *k == key(&job, 1)), "{again:?}");
    assert_eq!((world.job(&job).state, world.job(&job).restarts), (JobState::Scheduled, 1));
}

#[test]
fn a_stopping_attempt_is_stopped_with_the_kill_grace_and_its_exit_is_no_failure() {
    let mut world = World::new();
    let job = world.running_job_on_a(&[0]);
    world.apply(Command::Preempt { job: job.clone(), attempt: 1, at_ms: 3_000 });
    assert_eq!(world.round("a", false), vec![Action::Stop { key: key(&job, 1), grace: Grace::Normal }]);
    let record = world.job(&job);
    assert_eq!((record.state, record.restarts, record.live.is_none()), (JobState::Scheduled, 0, true));
}

#[test]
fn only_the_rank_0_host_restores_a_gangs_checkpoint_and_then_every_host_starts() {
    let mut world = World::new();
    let job = world.job_on(&[("a", &[0]), ("b", &[0])]);
    assert_eq!(world.round("b", false), vec![], "rank 1 waits for the restore");
    assert_eq!(world.round("a", false), vec![Action::Restore { key: key(&job, 1) }]);
    assert_eq!(world.round("b", false), vec![Action::Start { key: key(&job, 1) }]);
    assert_eq!(world.round("a", false), vec![Action::Start { key: key(&job, 1) }]);
}
