//! Starting one attempt's process, and the handle to stop it.
//!
//! The process leads its own process group, so stopping the attempt reaches
//! everything it started (torchrun workers, data loaders, a shell's children).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::mpsc;

use super::env::{attempt_env, is_managed};
use super::event::{AttemptEvent, ProcessEvent};
use super::logs::{LogLimits, RotatingLog};
use super::pidfile::{PidDir, ProcessRecord};
use super::procfs;
use super::spawner::Spawner;
use super::spec::AttemptSpec;
use super::step_time::SettleRule;
use super::watchdog::WatchdogSettings;
use super::supervise::{supervise, RendezvousWatch, Supervisor};

/// How processes are run; shared by all attempts of an executor.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// Size bounds of each attempt's log.
    pub log_limits: LogLimits,
    /// Longest output line kept; longer lines are cut.
    pub max_line_bytes: usize,
    /// At most one batch of `Step`/`Metric` events per this interval and attempt.
    pub progress_interval: Duration,
    /// Variables given to every job (after the inherited ones, before the job's own),
    /// e.g. `SATURN_SYNTH_RECORD_FILE` in tests.
    pub extra_env: BTreeMap<String, String>,
    /// How long to keep reading output after the process exited: a pipe held open by
    /// a process that escaped the group must not delay `Exited` forever.
    pub exit_drain: Duration,
    /// A trial run is ended (SIGTERM) as soon as its step time has settled by this rule,
    /// instead of running all of its `SATURN_PROFILE_STEPS`; `None` runs every step.
    pub trial_settle: Option<SettleRule>,
    /// How long a trial ended that way may take to exit before SIGKILL.
    pub trial_stop_grace: Duration,
    /// A trial still running this long after its start is ended: with a step time
    /// measured it counts as a (slow) success, without one as infeasible.
    pub trial_timeout: Duration,
    /// Runs every job under the [watchdog](super::watchdog) (the daemon always does;
    /// `None` runs the command directly).
    pub watchdog: Option<WatchdogSettings>,
}

impl Default for ProcessSettings {
    fn default() -> Self {
        Self {
            log_limits: LogLimits::default(),
            max_line_bytes: 64 * 1024,
            progress_interval: Duration::from_millis(500),
            extra_env: BTreeMap::new(),
            exit_drain: Duration::from_secs(2),
            trial_settle: Some(SettleRule::default()),
            trial_stop_grace: Duration::from_secs(5),
            trial_timeout: Duration::from_secs(15 * 60),
            watchdog: None,
        }
    }
}

/// Why an attempt's process could not be started. The message is meant for `saturn
/// job status`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The job's command is empty.
    #[error("the job has an empty command")]
    EmptyCommand,
    /// The working directory is missing on this host.
    #[error("working directory does not exist on this host: {0}")]
    WorkdirMissing(PathBuf),
    /// The program was not found (not on `PATH`, or no such file).
    #[error("command not found: {0}")]
    CommandNotFound(String),
    /// The program exists but may not be executed.
    #[error("permission denied: {0} is not executable")]
    PermissionDenied(String),
    /// Any other failure to start the program.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// The job's checkpoint directory could not be created.
    #[error("cannot create the checkpoint directory {path}: {source}")]
    CheckpointDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The attempt's log file could not be opened.
    #[error("cannot open the job log {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// A request from the handle to the process's supervisor.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    /// SIGTERM to the group now, SIGKILL after the grace period.
    Terminate(Duration),
    /// SIGKILL to the group now.
    Kill,
}

/// Called once, right before the attempt's `Exited` event is sent.
pub type ExitHook = Box<dyn FnOnce(&ProcessEvent) + Send>;

/// Where an attempt's files go and where its events are sent.
pub struct Wiring<'a> {
    /// The attempt's log file.
    pub log_path: &'a Path,
    /// Records of live processes, for orphan cleanup after an agent crash.
    pub pids: &'a PidDir,
    /// Forks the process.
    pub spawner: &'a Spawner,
    /// Receives the attempt's events.
    pub events: mpsc::UnboundedSender<AttemptEvent>,
    /// Runs just before `Exited` is sent.
    pub on_exit: ExitHook,
}

/// A started attempt's process. Dropping the handle does not stop the process.
#[derive(Debug, Clone)]
pub struct AttemptProcess {
    pid: u32,
    control: mpsc::UnboundedSender<Control>,
}

impl AttemptProcess {
    /// Starts the attempt's process and its supervisor. On success the events
    /// `Started`, then progress, then exactly one `Exited` follow on `wiring.events`.
    pub async fn start(spec: &AttemptSpec, settings: &ProcessSettings, wiring: Wiring<'_>) -> Result<Self, StartError> {
        let (program, args) = spec.command.split_first().ok_or(StartError::EmptyCommand)?;
        if !spec.workdir.is_dir() {
            return Err(StartError::WorkdirMissing(spec.workdir.clone()));
        }
        // The contract promises the directory; creating it here saves every script the check.
        std::fs::create_dir_all(&spec.checkpoint_dir)
            .map_err(|source| StartError::CheckpointDir { path: spec.checkpoint_dir.clone(), source })?;
        let log = RotatingLog::open(wiring.log_path, settings.log_limits)
            .map_err(|source| StartError::Log { path: wiring.log_path.to_owned(), source })?;
        let (executable, argv): (OsString, Vec<OsString>) = match &settings.watchdog {
            Some(watchdog) => watchdog.wrap(program, args),
            None => (program.into(), args.iter().map(OsString::from).collect()),
        };
        let mut command = Command::new(executable);
        command
            .args(argv)
            .current_dir(&spec.workdir)
            .env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| !name.to_str().is_some_and(is_managed)))
            .envs(&settings.extra_env)
            .envs(attempt_env(spec))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let child = wiring.spawner.spawn(command).await.map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StartError::CommandNotFound(program.clone()),
            io::ErrorKind::PermissionDenied => StartError::PermissionDenied(program.clone()),
            _ => StartError::Spawn { program: program.clone(), source },
        })?;
        // A child not yet awaited always has an id; 0 only guards against the impossible.
        let pid = child.id().unwrap_or(0);
        record_process(wiring.pids, spec, pid);
        let key = spec.key();
        let _ = wiring.events.send(AttemptEvent { key: key.clone(), event: ProcessEvent::Started { pid } });
        let (control, control_rx) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            key,
            pid,
            trial: spec.is_trial(),
            gang: spec.gang.as_ref().filter(|gang| gang.nnodes > 1).map(rendezvous_watch),
            log,
            settings: settings.clone(),
            pids: wiring.pids.clone(),
            events: wiring.events,
            on_exit: wiring.on_exit,
        };
        tokio::spawn(supervise(child, supervisor, control_rx));
        Ok(Self { pid, control })
    }

    /// The process's pid (and process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Asks the process group to stop: SIGTERM now, SIGKILL once `grace` has passed.
    /// A second call can only shorten the grace period.
    pub fn terminate(&self, grace: Duration) {
        let _ = self.control.send(Control::Terminate(grace));
    }

    /// SIGKILL to the process group now.
    pub fn kill(&self) {
        let _ = self.control.send(Control::Kill);
    }
}

/// What the supervisor watches in a multi-host gang, and what it says when it ends a
/// rank: the peers this rank was waiting for.
fn rendezvous_watch(gang: &super::spec::Gang) -> RendezvousWatch {
    let peers = if gang.peers.is_empty() { "none known".to_owned() } else { gang.peers.join(", ") };
    RendezvousWatch {
        silence_limit: gang.silence_limit(),
        describe: format!(
            "node rank {} of {}, MASTER_ADDR {}:{}, peers: {peers}",
            gang.node_rank, gang.nnodes, gang.master_addr, gang.master_port
        ),
    }
}

/// Records the process so a restarted agent can end it if this agent dies. A failure
/// is logged, not fatal: the job runs fine, only crash cleanup would miss it.
fn record_process(pids: &PidDir, spec: &AttemptSpec, pid: u32) {
    let Some(stat) = procfs::stat(pid) else {
        tracing::warn!(pid, "cannot read /proc for a new job process; it is not recorded");
        return;
    };
    let record = ProcessRecord {
        job: spec.job_id.clone(),
        attempt: spec.attempt,
        pid,
        pgid: pid,
        start_time: stat.start_time,
    };
    if let Err(err) = pids.record(&record) {
        tracing::warn!(pid, %err, "cannot record a job process for crash cleanup");
    }
}
