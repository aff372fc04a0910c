//! The executor's front: the table of this agent's job processes, driven
//! level-triggered by the daemon.
//!
//! The daemon's reconcile loop calls [`ProcessTable::ensure_running`] for every attempt
//! the replicated state assigns to this agent and [`ProcessTable::retain`] with that
//! same set, so anything else running here is stopped. Both are idempotent. An
//! attempt that has exited is remembered and never started again, because the state
//! still lists it as live until its `Exited` event is committed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use super::event::{AttemptEvent, ProcessEvent};
use super::pidfile::{end_orphans, file_safe, PidDir, ProcessRecord};
use super::process::{AttemptProcess, Control, ProcessSettings, Wiring};
use super::spawner::Spawner;
use super::spec::{AttemptKey, AttemptSpec};

/// Settings of an executor.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// The agent's data dir: process records go to `processes/`, logs to `logs/`.
    pub data_dir: PathBuf,
    /// How processes are run.
    pub process: ProcessSettings,
    /// Grace period for processes left by a previous agent run.
    pub orphan_grace: Duration,
    /// How many exited attempts are remembered (so they are not started again).
    pub remember_finished: usize,
}

impl ExecutorConfig {
    /// Defaults for an agent with this data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            process: ProcessSettings::default(),
            orphan_grace: Duration::from_secs(10),
            remember_finished: 4096,
        }
    }
}

/// Why the executor could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The data dir (or a directory in it) cannot be created or read.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The thread that starts job processes could not be created.
    #[error("cannot start the job spawner thread: {0}")]
    Spawner(std::io::Error),
}

/// What [`ProcessTable::ensure_running`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// The process was started now.
    Started {
        /// Its pid.
        pid: u32,
    },
    /// It was already running (or starting).
    AlreadyRunning,
    /// It ran here and has exited; it is not started again.
    AlreadyFinished,
    /// It could not be started; an `Exited` event with this error was sent.
    FailedToStart {
        /// Why, e.g. `command not found: foo`.
        error: String,
    },
}

/// This agent's job processes. Cheap to clone; all clones are the same table.
#[derive(Debug, Clone)]
pub struct ProcessTable {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: ExecutorConfig,
    spawner: Spawner,
    pids: PidDir,
    /// Unbounded so that a slow consumer never blocks a job's output pipe; the volume is
    /// bounded anyway by the throttle (one progress batch per interval per attempt).
    events: mpsc::UnboundedSender<AttemptEvent>,
    /// A `std` mutex: it is never held across an `.await`.
    state: Mutex<State>,
    /// Notified whenever an attempt leaves the table.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    live: BTreeMap<AttemptKey, Slot>,
    finished: BTreeMap<AttemptKey, ProcessEvent>,
    finished_order: VecDeque<AttemptKey>,
}

/// A live attempt: `process` is `None` while it is being started; a stop requested
/// meanwhile waits in `pending`.
#[derive(Debug, Default)]
struct Slot {
    process: Option<AttemptProcess>,
    pending: Option<Control>,
    kill_by: Option<Instant>,
}

impl ProcessTable {
    /// Opens the executor on `config.data_dir`. First ends any job processes a previous
    /// agent run left alive (spec: a restarting agent ends its former job processes) and
    /// returns every record found (alive or not), so the caller can report those
    /// attempts as ended.
    /// Events of every attempt arrive on the returned receiver. Must be called inside a
    /// tokio runtime.
    pub async fn open(
        config: ExecutorConfig,
    ) -> Result<(Self, mpsc::UnboundedReceiver<AttemptEvent>, Vec<ProcessRecord>), ExecutorError> {
        let data_dir_error = |source| ExecutorError::DataDir { path: config.data_dir.clone(), source };
        let pids = PidDir::open(&config.data_dir).map_err(data_dir_error)?;
        let ended = end_orphans(&config.data_dir, config.orphan_grace).await.map_err(data_dir_error)?;
        let spawner = Spawner::start(tokio::runtime::Handle::current()).map_err(ExecutorError::Spawner)?;
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Shared { config, spawner, pids, events, state: Mutex::default(), changed: Notify::new() };
        Ok((Self { shared: Arc::new(shared) }, receiver, ended))
    }

    /// Starts the attempt unless it is already running or has already run here.
    pub async fn ensure_running(&self, spec: &AttemptSpec) -> Ensured {
        let key = spec.key();
        {
            let mut state = self.shared.lock();
            if state.live.contains_key(&key) {
                return Ensured::AlreadyRunning;
            }
            if state.finished.contains_key(&key) {
                return Ensured::AlreadyFinished;
            }
            state.live.insert(key.clone(), Slot::default());
        }
        let log_path = self.log_path(&key);
        let shared = Arc::clone(&self.shared);
        let exit_key = key.clone();
        let wiring = Wiring {
            log_path: &log_path,
            pids: &self.shared.pids,
            spawner: &self.shared.spawner,
            events: self.shared.events.clone(),
            on_exit: Box::new(move |exited| shared.finish(&exit_key, exited.clone())),
        };
        match AttemptProcess::start(spec, &self.shared.config.process, wiring).await {
            Ok(process) => {
                let pid = process.pid();
                if let Some(slot) = self.shared.lock().live.get_mut(&key) {
                    match slot.pending.take() {
                        Some(Control::Terminate(grace)) => process.terminate(grace),
                        Some(Control::Kill) => process.kill(),
                        None => {}
                    }
                    slot.process = Some(process);
                }
                Ensured::Started { pid }
            }
            Err(err) => {
                let error = err.to_string();
                let exited = ProcessEvent::Exited { code: None, signal: None, error: Some(error.clone()) };
                self.shared.finish(&key, exited.clone());
                let _ = self.shared.events.send(AttemptEvent { key, event: exited });
                Ensured::FailedToStart { error }
            }
        }
    }

    /// Asks an attempt to stop: SIGTERM, then SIGKILL after `grace`. Idempotent: asking
    /// again with a later deadline changes nothing. False if it is not running here.
    pub fn stop(&self, key: &AttemptKey, grace: Duration) -> bool {
        let mut state = self.shared.lock();
        let Some(slot) = state.live.get_mut(key) else { return false };
        let kill_by = Instant::now() + grace;
        if slot.kill_by.is_some_and(|current| current <= kill_by) {
            return true;
        }
        slot.kill_by = Some(kill_by);
        match &slot.process {
            Some(process) => process.terminate(grace),
            None => slot.pending = Some(Control::Terminate(grace)),
        }
        true
    }

    /// SIGKILL to an attempt's process group now. False if it is not running here.
    pub fn kill(&self, key: &AttemptKey) -> bool {
        let mut state = self.shared.lock();
        let Some(slot) = state.live.get_mut(key) else { return false };
        slot.kill_by = Some(Instant::now());
        match &slot.process {
            Some(process) => process.kill(),
            None => slot.pending = Some(Control::Kill),
        }
        true
    }

    /// Stops every live attempt not in `keep` (see [`stop`](Self::stop)); returns them.
    pub fn retain(&self, keep: &BTreeSet<AttemptKey>, grace: Duration) -> Vec<AttemptKey> {
        let others: Vec<AttemptKey> = self.running().into_iter().filter(|key| !keep.contains(key)).collect();
        for key in &others {
            self.stop(key, grace);
        }
        others
    }

    /// Attempts whose process is running (or starting, or stopping) here.
    pub fn running(&self) -> Vec<AttemptKey> {
        self.shared.lock().live.keys().cloned().collect()
    }

    /// Remembers an attempt as exited with `exited` without running it here: a process
    /// of a previous agent run, ended on restart. It is never started again, and
    /// [`finished`](Self::finished) returns `exited` so its exit can be reported.
    pub fn mark_finished(&self, key: &AttemptKey, exited: ProcessEvent) {
        self.shared.finish(key, exited);
    }

    /// The pid of a running attempt.
    pub fn pid(&self, key: &AttemptKey) -> Option<u32> {
        self.shared.lock().live.get(key)?.process.as_ref().map(AttemptProcess::pid)
    }

    /// The `Exited` event of an attempt that ran here, while remembered: lets the
    /// daemon report it again if its first report was not committed.
    pub fn finished(&self, key: &AttemptKey) -> Option<ProcessEvent> {
        self.shared.lock().finished.get(key).cloned()
    }

    /// Stops every attempt with `grace` and waits until all have exited — for a clean
    /// agent stop, where jobs checkpoint and are handed back.
    pub async fn shutdown(&self, grace: Duration) {
        for key in self.running() {
            self.stop(&key, grace);
        }
        self.wait_idle().await;
    }

    /// Waits until no attempt is running here.
    pub async fn wait_idle(&self) {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a removal in between is not missed.
            changed.as_mut().enable();
            if self.shared.lock().live.is_empty() {
                return;
            }
            changed.await;
        }
    }

    /// The log file of an attempt (it may not exist yet).
    pub fn log_path(&self, key: &AttemptKey) -> PathBuf {
        attempt_log_path(&self.shared.config.data_dir, key)
    }
}

/// The log file of an attempt in an agent's data dir:
/// `DATA_DIR/logs/JOB/attempt-N.log` (rotated to `attempt-N.log.1`).
pub fn attempt_log_path(data_dir: &Path, key: &AttemptKey) -> PathBuf {
    data_dir.join("logs").join(file_safe(&key.job)).join(format!("attempt-{}.log", key.attempt))
}

/// The log files of every attempt of `job` kept in an agent's data dir, by attempt.
pub fn attempt_logs(data_dir: &Path, job: &str) -> Vec<(u32, PathBuf)> {
    let dir = data_dir.join("logs").join(file_safe(job));
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut logs: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let attempt = name.strip_prefix("attempt-")?.strip_suffix(".log")?.parse().ok()?;
            Some((attempt, dir.join(name)))
        })
        .collect();
    logs.sort();
    logs
}

/// A per-job checkpoint directory in an agent's data dir, `DATA_DIR/checkpoints/JOB`:
/// the `SATURN_CHECKPOINT_DIR` that survives restarts of the job on this host.
pub fn checkpoint_dir(data_dir: &Path, job: &str) -> PathBuf {
    data_dir.join("checkpoints").join(file_safe(job))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the maps consistent (every
        // update is a single insert or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves an attempt from live to finished.
    fn finish(&self, key: &AttemptKey, exited: ProcessEvent) {
        {
            let mut state = self.lock();
            state.live.remove(key);
            if state.finished.insert(key.clone(), exited).is_none() {
                state.finished_order.push_back(key.clone());
            }
            while state.finished_order.len() > self.config.remember_finished {
                if let Some(oldest) = state.finished_order.pop_front() {
                    state.finished.remove(&oldest);
                }
            }
        }
        self.changed.notify_waiters();
    }
}
