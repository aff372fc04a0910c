//! The task that watches one attempt's process: reads its output into the log and
//! the protocol parser, forwards events, carries out stop requests, and reports the
//! exit once the process (and its whole group) is gone.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::event::{AttemptEvent, ProcessEvent};
use super::lines::BoundedLines;
use super::logs::RotatingLog;
use super::pidfile::PidDir;
use super::process::{Control, ExitHook, ProcessSettings};
use super::protocol::parse_line;
use super::spec::AttemptKey;
use super::step_time::{robust_step_time, StepSample};
use super::throttle::Throttle;

/// Lines of stderr kept to explain a failure.
const STDERR_TAIL_LINES: usize = 3;
/// Characters kept of each of those lines.
const STDERR_TAIL_CHARS: usize = 300;
/// Step samples kept for a trial run; far more than any trial needs.
const MAX_SAMPLES: usize = 100_000;

/// Everything the supervisor owns besides the child and its control channel.
pub(crate) struct Supervisor {
    pub key: AttemptKey,
    pub pid: u32,
    pub trial: bool,
    /// Set for a rank of a multi-host gang.
    pub gang: Option<RendezvousWatch>,
    pub log: RotatingLog,
    pub settings: ProcessSettings,
    pub pids: PidDir,
    pub events: mpsc::UnboundedSender<AttemptEvent>,
    pub on_exit: ExitHook,
}

/// A rank of a multi-host gang: how long it may stay silent before the agent ends it
/// as a gang that never rendezvoused, and how to name the gang in errors.
pub(crate) struct RendezvousWatch {
    /// No `SATURN` line within this time of the start ends the process; `None`: not watched.
    pub silence_limit: Option<Duration>,
    /// `node rank 1 of 2, MASTER_ADDR 10.0.0.1:29500, peers: agent-0 at 10.0.0.1`.
    pub describe: String,
}

/// Exit status with which a gang process says its rendezvous timed out (the
/// `saturn_train` contract).
const RENDEZVOUS_TIMEOUT_EXIT: i32 = 4;

/// A line of output and when it was read.
struct Line {
    stderr: bool,
    text: String,
    at: Instant,
    wall: SystemTime,
}

/// What was asked of the process, to explain how it ended.
#[derive(Debug, Default, Clone, Copy)]
struct StopState {
    /// A trial ended by the supervisor once its step time had settled.
    settled: bool,
    /// A trial ended by the supervisor because it ran past `trial_timeout`.
    timed_out: bool,
    /// A gang rank ended by the supervisor: no `SATURN` line within its silence limit.
    silent_gang: bool,
    terminate_requested: bool,
    killed_after_grace: Option<Duration>,
    kill_requested: bool,
}

/// A stop in progress: whether the group got its SIGTERM, and when SIGKILL follows.
#[derive(Debug, Default)]
struct Escalation {
    sigterm_sent: bool,
    kill_at: Option<Instant>,
    grace: Duration,
}

impl Escalation {
    /// SIGTERM to the group — once only, whoever asks: a second one can abort a
    /// checkpoint in progress (many launchers treat it as "force") — and SIGKILL `grace`
    /// from now unless an earlier deadline stands.
    fn terminate(&mut self, pid: u32, grace: Duration) {
        if !self.sigterm_sent {
            signal_group(pid, Signal::SIGTERM);
            self.sigterm_sent = true;
        }
        let at = Instant::now() + grace;
        if self.kill_at.is_none_or(|current| at < current) {
            self.kill_at = Some(at);
            self.grace = grace;
        }
    }
}

/// What a trial measured, when the measurement stands: its step time when the
/// supervisor ended it after measuring one (the step time settled, or it ran out of time
/// but did measure one: a slow configuration, not a broken one) or when it exited 0 by
/// itself; `NoSteps` when it ran out of time without one step line (the script ignores
/// the stdout protocol, which the spec allows: it is then planned by its
/// `duration_estimate_s`). `None` otherwise: a trial that crashed is recorded as
/// infeasible by its exit.
fn trial_verdict(
    status: Option<&std::io::Result<ExitStatus>>,
    stop: StopState,
    step_time: Option<f64>,
    samples: &[StepSample],
) -> Option<ProcessEvent> {
    let Some(Ok(status)) = status else { return None };
    let ended_by_supervisor = stop.settled || stop.timed_out;
    match step_time {
        Some(seconds_per_step) if ended_by_supervisor || status.code() == Some(0) => {
            Some(ProcessEvent::StepTime { seconds_per_step, samples: samples.len() })
        }
        None if stop.timed_out && samples.is_empty() => Some(ProcessEvent::TrialNoSteps),
        _ => None,
    }
}

/// Runs until the process has exited and its output is drained; sends `Exited` last.
pub(crate) async fn supervise(mut child: Child, mut sup: Supervisor, mut control: mpsc::UnboundedReceiver<Control>) {
    let (line_tx, mut lines) = mpsc::channel::<Line>(256);
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(stdout, false, sup.settings.max_line_bytes, line_tx.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(stderr, true, sup.settings.max_line_bytes, line_tx)));
    } else {
        drop(line_tx);
    }

    let started = Instant::now();
    let trial_deadline = sup.trial.then(|| started + sup.settings.trial_timeout);
    // Cleared by the first `SATURN` line: the gang has met (or this rank at least runs).
    let mut silence_deadline = sup.gang.as_ref().and_then(|gang| gang.silence_limit).map(|limit| started + limit);
    let mut throttle = Throttle::new(sup.settings.progress_interval);
    let mut samples = Vec::new();
    let mut stderr_tail = VecDeque::new();
    let mut stop = StopState::default();
    let mut escalation = Escalation::default();
    let mut status: Option<std::io::Result<ExitStatus>> = None;
    let mut drain_until: Option<Instant> = None;
    let mut lines_open = true;
    let mut control_open = true;

    while status.is_none() || lines_open {
        tokio::select! {
            line = lines.recv(), if lines_open => match line {
                Some(line) => {
                    let measured = samples.len();
                    if sup.handle_line(&line, &mut throttle, &mut samples, &mut stderr_tail, started) {
                        silence_deadline = None;
                    }
                    let stoppable = status.is_none() && !stop.settled && !stop.terminate_requested && !stop.kill_requested;
                    if sup.trial && stoppable && samples.len() > measured && sup.settled(&samples) {
                        stop.settled = true;
                        escalation.terminate(sup.pid, sup.settings.trial_stop_grace);
                    }
                }
                None => lines_open = false,
            },
            exited = child.wait(), if status.is_none() => {
                status = Some(exited);
                // Whatever the job left behind in its group goes with it: the GPUs are
                // about to be declared free.
                signal_group(sup.pid, Signal::SIGKILL);
                drain_until = Some(Instant::now() + sup.settings.exit_drain);
            }
            request = control.recv(), if control_open && status.is_none() => match request {
                Some(Control::Terminate(grace)) => {
                    stop.terminate_requested = true;
                    escalation.terminate(sup.pid, grace);
                }
                Some(Control::Kill) => {
                    stop.kill_requested = true;
                    signal_group(sup.pid, Signal::SIGKILL);
                }
                None => control_open = false,
            },
            _ = sleep_until(throttle.deadline()) => {
                for event in throttle.flush(Instant::now()) {
                    sup.send(event);
                }
            }
            _ = sleep_until(trial_deadline), if status.is_none() && !stop.settled && !stop.timed_out => {
                // A trial that hangs (or crawls) must not hold its GPUs and the
                // submission's planning forever.
                stop.timed_out = true;
                escalation.terminate(sup.pid, sup.settings.trial_stop_grace);
            }
            _ = sleep_until(silence_deadline), if status.is_none() => {
                // A gang whose peers never came up (or a script that hangs before its
                // first line) must not hold GPUs on every host forever.
                stop.silent_gang = true;
                silence_deadline = None;
                if let Some(note) = sup.gang.as_ref().map(|gang| silent_gang_error(gang)) {
                    sup.note(&format!("saturn: {note}"));
                }
                escalation.terminate(sup.pid, sup.settings.trial_stop_grace);
            }
            _ = sleep_until(escalation.kill_at), if status.is_none() => {
                stop.killed_after_grace = Some(escalation.grace);
                signal_group(sup.pid, Signal::SIGKILL);
                escalation.kill_at = None;
            }
            _ = sleep_until(drain_until), if lines_open => lines_open = false,
        }
    }
    for reader in readers {
        reader.abort();
    }
    for event in throttle.flush(Instant::now()) {
        sup.send(event);
    }
    let step_time = if sup.trial { robust_step_time(&samples) } else { None };
    if sup.trial {
        if let Some(verdict) = trial_verdict(status.as_ref(), stop, step_time, &samples) {
            sup.send(verdict);
        }
    }
    let measured = step_time.is_some();
    // The exit as it happened; a trial's verdict, if any, went just before it.
    let exited = match status {
        Some(Ok(_)) if stop.timed_out && !measured && !samples.is_empty() => ProcessEvent::Exited {
            code: None,
            signal: None,
            error: Some(format!(
                "trial run measured no step time within {} s: stopped as infeasible",
                sup.settings.trial_timeout.as_secs()
            )),
        },
        Some(Ok(status)) => match sup.gang.as_ref() {
            Some(gang) if stop.silent_gang => ProcessEvent::Exited {
                code: status.code(),
                signal: None,
                error: Some(with_tail(silent_gang_error(gang), &stderr_tail)),
            },
            Some(gang) if status.code() == Some(RENDEZVOUS_TIMEOUT_EXIT) => ProcessEvent::Exited {
                code: status.code(),
                signal: None,
                error: Some(with_tail(
                    format!("the gang did not rendezvous in time (exit status 4; {})", gang.describe),
                    &stderr_tail,
                )),
            },
            _ => exit_event(status, stop, &stderr_tail),
        },
        // `None` cannot happen (the loop ends only once the status is known).
        Some(Err(_)) | None => ProcessEvent::Exited {
            code: None,
            signal: None,
            error: Some("lost track of the process: its exit status could not be read".to_owned()),
        },
    };
    if let Err(err) = sup.pids.remove(&sup.key) {
        tracing::warn!(key = %sup.key, %err, "cannot remove a process record");
    }
    (sup.on_exit)(&exited);
    let _ = sup.events.send(AttemptEvent { key: sup.key, event: exited });
}

impl Supervisor {
    /// Logs the line and forwards what it reports; returns whether it was a `SATURN` line.
    fn handle_line(
        &mut self,
        line: &Line,
        throttle: &mut Throttle,
        samples: &mut Vec<StepSample>,
        stderr_tail: &mut VecDeque<String>,
        started: Instant,
    ) -> bool {
        // The log is written from this task with blocking calls: a line is small and
        // this task serves only this one process, so nothing else waits on it.
        if let Err(err) = self.log.write_line(line.text.as_bytes()) {
            tracing::warn!(key = %self.key, %err, "cannot write the job log");
        }
        if line.stderr {
            if !line.text.trim().is_empty() {
                if stderr_tail.len() == STDERR_TAIL_LINES {
                    stderr_tail.pop_front();
                }
                stderr_tail.push_back(line.text.chars().take(STDERR_TAIL_CHARS).collect());
            }
            return false;
        }
        let Some(report) = parse_line(&line.text) else { return false };
        if let (true, super::protocol::Report::Step(step)) = (self.trial, &report) {
            if samples.len() < MAX_SAMPLES {
                samples.push(StepSample { step: *step, at: line.at.duration_since(started) });
            }
        }
        for event in throttle.offer(report, line.at, line.wall) {
            self.send(event);
        }
        true
    }

    /// A line of the agent's own in the job's log.
    fn note(&mut self, text: &str) {
        if let Err(err) = self.log.write_line(text.as_bytes()) {
            tracing::warn!(key = %self.key, %err, "cannot write the job log");
        }
    }

    /// Whether a trial's step time has settled; says so in the job's log when it has.
    fn settled(&mut self, samples: &[StepSample]) -> bool {
        let Some(rule) = self.settings.trial_settle else { return false };
        if !rule.settled(samples) {
            return false;
        }
        let note = format!(
            "saturn: trial stopped after {} steps: the step time has settled ({:.4} s/step)",
            samples.last().map_or(0, |s| s.step),
            robust_step_time(samples).unwrap_or(f64::NAN)
        );
        self.note(&note);
        true
    }

    fn send(&self, event: ProcessEvent) {
        let _ = self.events.send(AttemptEvent { key: self.key.clone(), event });
    }
}

async fn read_lines(stream: impl AsyncRead + Unpin, stderr: bool, max_len: usize, out: mpsc::Sender<Line>) {
    let mut reader = BoundedLines::new(BufReader::new(stream), max_len);
    while let Ok(Some(text)) = reader.next_line().await {
        let line = Line { stderr, text, at: Instant::now(), wall: SystemTime::now() };
        if out.send(line).await.is_err() {
            return;
        }
    }
}

/// Why the agent ended a silent gang rank, in words.
fn silent_gang_error(gang: &RendezvousWatch) -> String {
    let after = gang.silence_limit.unwrap_or_default();
    format!(
        "the gang did not rendezvous: this rank printed no SATURN line within {} s of its start \
         ({}); stopped so that its GPUs are freed",
        after.as_secs(),
        gang.describe
    )
}

/// `reason`, followed by the last lines of stderr when there are any.
fn with_tail(reason: String, stderr_tail: &VecDeque<String>) -> String {
    if stderr_tail.is_empty() {
        reason
    } else {
        let tail: Vec<&str> = stderr_tail.iter().map(String::as_str).collect();
        format!("{reason}: {}", tail.join(" | "))
    }
}

/// Builds the `Exited` event, with an error that says why in words.
fn exit_event(status: ExitStatus, stop: StopState, stderr_tail: &VecDeque<String>) -> ProcessEvent {
    use std::os::unix::process::ExitStatusExt;
    let code = status.code();
    let signal = status.signal();
    let reason = match (code, signal) {
        (Some(0), _) => None,
        (Some(code), _) => Some(format!("exit status {code}")),
        (None, Some(signal)) => Some(signal_reason(signal, stop)),
        (None, None) => Some("ended without an exit status".to_owned()),
    };
    let error = reason.map(|reason| with_tail(reason, stderr_tail));
    ProcessEvent::Exited { code, signal, error }
}

fn signal_reason(signal: i32, stop: StopState) -> String {
    let name = Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned());
    match stop {
        StopState { killed_after_grace: Some(grace), .. } => {
            format!("killed with SIGKILL: still running {}s after SIGTERM", grace.as_secs_f64())
        }
        StopState { kill_requested: true, .. } => "killed by saturn (SIGKILL)".to_owned(),
        StopState { terminate_requested: true, .. } => format!("stopped by saturn ({name})"),
        _ => format!("killed by {name}"),
    }
}

/// Signals the whole process group. After the leader has exited, the group id stays
/// reserved as long as any member lives, so this still reaches only our processes;
/// ESRCH (the group is already empty) is the outcome we want anyway.
fn signal_group(pgid: u32, signal: Signal) {
    if let Ok(pgid) = i32::try_from(pgid) {
        if pgid > 1 {
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
    }
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
