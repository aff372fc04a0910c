//! A small harness for executor tests: a process table on a temporary data dir, specs
//! for `/bin/sh` scripts, and waiting for events with a deadline (never sleeping).

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use saturn_agent::executor::{
    AttemptEvent, AttemptKey, AttemptSpec, ExecutorConfig, ProcessEvent, ProcessRecord, ProcessTable,
};
use tokio::sync::mpsc::UnboundedReceiver;

/// Upper bound for anything a test waits for; generous for a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A process table on its own temporary data dir, and its events.
pub struct Harness {
    pub table: ProcessTable,
    pub events: UnboundedReceiver<AttemptEvent>,
    pub orphans_ended: Vec<ProcessRecord>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// A table with default settings except a short progress interval.
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A table whose config is adjusted by `tune` (on a fresh temporary data dir).
    pub async fn with(tune: impl FnOnce(&mut ExecutorConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temporary dir");
        Self::on_dir(dir, tune).await
    }

    /// A table on an existing data dir (to test a restart).
    pub async fn on_dir(dir: tempfile::TempDir, tune: impl FnOnce(&mut ExecutorConfig)) -> Self {
        let mut config = ExecutorConfig::new(dir.path().join("data"));
        config.process.progress_interval = Duration::from_millis(50);
        tune(&mut config);
        let (table, events, orphans_ended) = ProcessTable::open(config).await.expect("executor opens");
        Self { table, events, orphans_ended, dir }
    }

    /// A spec running `script` with `/bin/sh -c`, in the temporary dir.
    pub fn sh(&self, job: &str, script: &str) -> AttemptSpec {
        self.spec(job, vec!["/bin/sh".into(), "-c".into(), script.into()])
    }

    /// A spec for `command` with fixed, recognisable contract values.
    pub fn spec(&self, job: &str, command: Vec<String>) -> AttemptSpec {
        AttemptSpec {
            job_id: job.into(),
            attempt: 1,
            agent_name: "node-test".into(),
            technique: "ddp".into(),
            gpus: vec![0, 2],
            cuda_ids: BTreeMap::new(),
            gpu_model: "SIM-24GB".into(),
            gpu_memory_mib: None,
            steps: 100,
            start_step: 0,
            checkpoint_dir: self.dir.path().join("ckpt").join(job),
            profile_steps: None,
            gang: None,
            env: BTreeMap::new(),
            command,
            workdir: self.dir.path().to_owned(),
        }
    }

    /// Events of `key` until (and including) the first one matching `stop`.
    pub async fn events_until(&mut self, key: &AttemptKey, stop: impl Fn(&ProcessEvent) -> bool) -> Vec<ProcessEvent> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.recv()).await;
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => panic!("event channel closed; seen for {key}: {seen:?}"),
                Err(_) => panic!("no matching event for {key} within {DEADLINE:?}; seen: {seen:?}"),
            };
            if &event.key != key {
                continue;
            }
            let done = stop(&event.event);
            seen.push(event.event);
            if done {
                return seen;
            }
        }
    }

    /// Events of each of `keys` until every one has exited (attempts running at once: no
    /// attempt's events are dropped while waiting for another's), in `keys` order.
    pub async fn run_all_to_exit(&mut self, keys: &[AttemptKey]) -> Vec<Vec<ProcessEvent>> {
        let mut seen: Vec<Vec<ProcessEvent>> = vec![Vec::new(); keys.len()];
        let exited = |events: &Vec<ProcessEvent>| events.iter().any(|e| matches!(e, ProcessEvent::Exited { .. }));
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !seen.iter().all(exited) {
            let event = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => panic!("event channel closed; seen for {keys:?}: {seen:?}"),
                Err(_) => panic!("not every one of {keys:?} exited within {DEADLINE:?}; seen: {seen:?}"),
            };
            if let Some(i) = keys.iter().position(|key| *key == event.key) {
                seen[i].push(event.event);
            }
        }
        seen
    }

    /// Events of `key` until it exits; the last one is `Exited`.
    pub async fn run_to_exit(&mut self, key: &AttemptKey) -> Vec<ProcessEvent> {
        self.events_until(key, |e| matches!(e, ProcessEvent::Exited { .. })).await
    }

    /// Path of the data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Polls `condition` every 10 ms until it holds or [`DEADLINE`] passes.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether a pid names a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    saturn_agent::executor::procfs::stat(pid).is_some_and(|s| s.is_alive())
}

/// The `Exited` event at the end of `events`.
pub fn exit_of(events: &[ProcessEvent]) -> (Option<i32>, Option<i32>, Option<String>) {
    match events.last() {
        Some(ProcessEvent::Exited { code, signal, error }) => (*code, *signal, error.clone()),
        other => panic!("expected Exited last, got {other:?}"),
    }
}

/// Steps reported in `events`, in order.
pub fn steps(events: &[ProcessEvent]) -> Vec<u64> {
    events.iter().filter_map(|e| if let ProcessEvent::Step { step, .. } = e { Some(*step) } else { None }).collect()
}

/// Checkpoints reported in `events`, in order.
pub fn checkpoints(events: &[ProcessEvent]) -> Vec<u64> {
    events.iter().filter_map(|e| if let ProcessEvent::Checkpoint { step } = e { Some(*step) } else { None }).collect()
}

/// Reads a whole attempt log as text.
pub fn log_text(path: &Path) -> String {
    let chunk = saturn_agent::executor::read_from(path, 0, usize::MAX).expect("log readable");
    String::from_utf8_lossy(&chunk.data).into_owned()
}
