//! The job watchdog: a small process between the agent and every job it runs, so a job
//! cannot outlive an agent that died or froze.
//!
//! The agent starts `saturn-agent __saturn-watchdog --lease FILE --max-silence-ms N
//! --kill-grace-ms M -- COMMAND...` instead of `COMMAND`; the watchdog runs the command as
//! its child in its own process group (the agent signals the group as before) and exits
//! with the child's exit status, so the agent sees the job's own status. Meanwhile it:
//!
//! - **Outlives the agent's death, briefly.** When its parent changes (the agent died;
//!   `PR_SET_PDEATHSIG` also delivers SIGTERM then), it sends the job SIGTERM so it can
//!   checkpoint, and SIGKILL to the group after the kill grace. A job that ignores
//!   SIGTERM no longer outlives its agent.
//! - **Fences a frozen agent.** The agent renews a lease file ([`Lease`]) as long as it
//!   runs. When the lease is older than ¾ of `max-silence` — the agent is stopped
//!   (SIGSTOP) or hung — the watchdog sends the group SIGTERM (the job may checkpoint),
//!   and SIGKILL once the lease is older than `max-silence`: before the leader's grace
//!   period ends and the job is run elsewhere. (A running agent cut off from the
//!   cluster stops its jobs itself: its quorum fence.)
//! - Ignores a SIGTERM while the agent is alive: the agent sent it to the whole group,
//!   the job got it too, and the agent escalates itself.
//!
//! `--agent-pid PID` names the agent when it is not the watchdog's parent (tests).
//!
//! Monotonic time (`CLOCK_MONOTONIC`, shared by every process of a host) dates the lease,
//! so a wall-clock step cannot fire the fence.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, killpg, SigHandler, Signal};
use nix::unistd::{getppid, Pid};

/// First argument of `saturn-agent` that runs the watchdog instead of the daemon.
pub const WATCHDOG_ARG: &str = "__saturn-watchdog";
/// How often the watchdog looks at its child, its parent and the lease.
const POLL: Duration = Duration::from_millis(100);

/// How the agent wraps job commands in the watchdog.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogSettings {
    /// The `saturn-agent` executable.
    pub program: PathBuf,
    /// The lease file the agent renews.
    pub lease: PathBuf,
    /// A lease older than this kills the job.
    pub max_silence: Duration,
    /// SIGTERM → SIGKILL grace after the agent died.
    pub kill_grace: Duration,
}

impl WatchdogSettings {
    /// The program and arguments that run `program args` under the watchdog.
    pub fn wrap(&self, program: &str, args: &[String]) -> (OsString, Vec<OsString>) {
        let mut wrapped: Vec<OsString> = vec![
            WATCHDOG_ARG.into(),
            "--lease".into(),
            self.lease.clone().into(),
            "--max-silence-ms".into(),
            self.max_silence.as_millis().to_string().into(),
            "--kill-grace-ms".into(),
            self.kill_grace.as_millis().to_string().into(),
            "--".into(),
            program.into(),
        ];
        wrapped.extend(args.iter().map(OsString::from));
        (self.program.clone().into(), wrapped)
    }
}

/// The agent's side: a file holding the monotonic time of the last renewal.
#[derive(Debug, Clone)]
pub struct Lease {
    path: PathBuf,
    scratch: PathBuf,
}

impl Lease {
    /// The lease at `path` (not written until [`renew`](Self::renew)).
    pub fn new(path: &Path) -> Self {
        let mut scratch = path.as_os_str().to_owned();
        scratch.push(".new");
        Lease { path: path.to_owned(), scratch: scratch.into() }
    }

    /// Where the lease lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Dates the lease now (atomically: a reader sees the old or the new time).
    pub fn renew(&self) -> io::Result<()> {
        std::fs::write(&self.scratch, format!("{}\n", monotonic_ms()))?;
        std::fs::rename(&self.scratch, &self.path)
    }
}

/// Milliseconds of `CLOCK_MONOTONIC`.
pub fn monotonic_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// How old the lease is; `None` when it cannot be read (not written yet: no verdict).
fn lease_age(path: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    let renewed: u64 = text.trim().parse().ok()?;
    Some(Duration::from_millis(monotonic_ms().saturating_sub(renewed)))
}

/// How long the agent has been silent, as far as a watchdog started at `started` can
/// tell: the lease's age, but never more than the watchdog's own age. The agent that
/// spawned the watchdog was alive at that moment, so a lease left old by an earlier run
/// of the agent (restarted after a crash) does not count against the new job.
fn silence(lease_age: Option<Duration>, started: Instant) -> Option<Duration> {
    lease_age.map(|age| age.min(started.elapsed()))
}

struct Args {
    /// The agent, when it is not the parent (tests); the parent otherwise.
    agent_pid: Option<i32>,
    lease: PathBuf,
    max_silence: Duration,
    kill_grace: Duration,
    command: Vec<OsString>,
}

fn parse(args: &[OsString]) -> Result<Args, String> {
    let mut agent_pid = None;
    let mut lease = None;
    let mut max_silence = None;
    let mut kill_grace = None;
    let mut rest = args.iter();
    let millis = |value: Option<&OsString>, flag: &str| {
        let text = value.and_then(|v| v.to_str()).ok_or(format!("{flag} needs a value"))?;
        text.parse::<u64>().map(Duration::from_millis).map_err(|_| format!("{flag}: not milliseconds: {text}"))
    };
    while let Some(arg) = rest.next() {
        match arg.to_str() {
            Some("--agent-pid") => {
                let text = rest.next().and_then(|v| v.to_str()).ok_or("--agent-pid needs a value")?;
                agent_pid = Some(text.parse().map_err(|_| format!("--agent-pid: not a pid: {text}"))?);
            }
            Some("--lease") => lease = Some(PathBuf::from(rest.next().ok_or("--lease needs a value")?)),
            Some("--max-silence-ms") => max_silence = Some(millis(rest.next(), "--max-silence-ms")?),
            Some("--kill-grace-ms") => kill_grace = Some(millis(rest.next(), "--kill-grace-ms")?),
            Some("--") => break,
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let command: Vec<OsString> = rest.cloned().collect();
    if command.is_empty() {
        return Err("no command after --".into());
    }
    Ok(Args {
        agent_pid,
        lease: lease.ok_or("--lease is required")?,
        max_silence: max_silence.ok_or("--max-silence-ms is required")?,
        kill_grace: kill_grace.ok_or("--kill-grace-ms is required")?,
        command,
    })
}

/// Catches SIGTERM so it does not end the watchdog. (Not `SIG_IGN`: an ignored signal
/// stays ignored in the job after exec, a caught one is reset to its default.)
extern "C" fn on_term(_: i32) {}

/// Runs the watchdog with the arguments after [`WATCHDOG_ARG`]; never returns.
pub fn main(args: &[OsString]) -> ! {
    let args = match parse(args) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("saturn watchdog: {why}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let parent = getppid();
    // SAFETY: the handler does nothing.
    unsafe {
        let _ = signal::signal(Signal::SIGTERM, SigHandler::Handler(on_term));
    }
    let mut child = match spawn(&args.command) {
        Ok(child) => child,
        Err(err) => {
            let program = args.command[0].to_string_lossy();
            let (code, what) = match err.kind() {
                io::ErrorKind::NotFound => (127, "command not found".to_string()),
                io::ErrorKind::PermissionDenied => (126, "permission denied".to_string()),
                _ => (126, format!("cannot start: {err}")),
            };
            eprintln!("saturn: {what}: {program}");
            std::process::exit(code);
        }
    };
    let mut kill_at: Option<Instant> = None;
    let term_after = args.max_silence * 3 / 4;
    let mut terminated = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => exit_like(status),
            Ok(None) => {}
            Err(_) => exit_like(child.wait().unwrap_or_else(|_| ExitStatus::from_raw(1 << 8))),
        }
        // A SIGTERM only matters when the agent is gone (its death signal), which the
        // parent check sees on its own.
        let agent_gone = match args.agent_pid {
            None => getppid() != parent,
            Some(pid) => signal::kill(Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH),
        };
        if kill_at.is_none() && agent_gone {
            say("the agent is gone: stopping the job (SIGTERM, then SIGKILL after the kill grace)");
            terminate_group(&mut terminated);
            kill_at = Some(Instant::now() + args.kill_grace);
        }
        match silence(lease_age(&args.lease), started) {
            Some(age) if age > args.max_silence => {
                say(&format!("the agent has not renewed its lease for {:.1} s: killing the job", age.as_secs_f64()));
                kill_group();
            }
            Some(age) if age > term_after && !terminated => {
                say(&format!("the agent has not renewed its lease for {:.1} s: stopping the job", age.as_secs_f64()));
                terminate_group(&mut terminated);
            }
            _ => {}
        }
        if kill_at.is_some_and(|at| Instant::now() >= at) {
            say("the job outlived the kill grace after its agent died: killing it");
            kill_group();
        }
        std::thread::sleep(POLL);
    }
}

fn spawn(command: &[OsString]) -> io::Result<Child> {
    let mut child = Command::new(&command[0]);
    child.args(&command[1..]);
    // SAFETY: only prctl, async-signal-safe, between fork and exec.
    unsafe {
        child.pre_exec(|| {
            // Should the watchdog itself be killed, the job must not run on unwatched.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            Ok(())
        });
    }
    child.spawn()
}

/// Exits with the child's status: its code, or death by the same signal.
fn exit_like(status: ExitStatus) -> ! {
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    let signal = status.signal().and_then(|s| Signal::try_from(s).ok()).unwrap_or(Signal::SIGKILL);
    // SAFETY: restoring the default action; no handler runs after this.
    unsafe {
        let _ = signal::signal(signal, SigHandler::SigDfl);
    }
    let _ = signal::raise(signal);
    // A signal whose default is not to terminate (cannot happen for a child's death).
    std::process::exit(128 + signal as i32);
}

/// SIGTERM to the whole group, once (a second one can abort a checkpoint); the
/// watchdog's own copy is caught and ignored.
fn terminate_group(terminated: &mut bool) {
    if !*terminated {
        let _ = killpg(Pid::from_raw(0), Signal::SIGTERM);
        *terminated = true;
    }
}

/// Kills the whole process group: the job, whatever it started, and the watchdog.
fn kill_group() -> ! {
    let _ = killpg(Pid::from_raw(0), Signal::SIGKILL);
    std::process::exit(137);
}

/// One line on stderr (into the job's log), never blocking: the agent may be frozen with
/// the pipe full, and a watchdog stuck in a write fences nothing.
fn say(line: &str) {
    use std::os::fd::AsRawFd;
    let stderr = io::stderr();
    if let Ok(flags) = nix::fcntl::fcntl(stderr.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL) {
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(stderr.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags));
    }
    let _ = stderr.lock().write_all(format!("saturn watchdog: {line}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_arguments_parse_back() {
        let settings = WatchdogSettings {
            program: "/usr/bin/saturn-agent".into(),
            lease: "/data/lease".into(),
            max_silence: Duration::from_millis(8000),
            kill_grace: Duration::from_secs(30),
        };
        let (program, args) = settings.wrap("python3", &["train.py".into(), "--lr".into(), "1e-3".into()]);
        assert_eq!(program, "/usr/bin/saturn-agent");
        assert_eq!(args[0], WATCHDOG_ARG);
        let parsed = parse(&args[1..]).unwrap();
        assert_eq!(parsed.lease, PathBuf::from("/data/lease"));
        assert_eq!((parsed.max_silence, parsed.kill_grace), (Duration::from_secs(8), Duration::from_secs(30)));
        assert_eq!(parsed.command, ["python3", "train.py", "--lr", "1e-3"].map(OsString::from));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(parse(&args(&["--lease", "/l", "--max-silence-ms", "5", "--kill-grace-ms", "5", "--"])).is_err());
        assert!(parse(&args(&["--lease", "/l", "--max-silence-ms", "x", "--kill-grace-ms", "5", "--", "a"])).is_err());
        assert!(parse(&args(&["--max-silence-ms", "5", "--kill-grace-ms", "5", "--", "a"])).is_err());
    }

    #[test]
    fn a_renewed_lease_is_young_and_a_missing_one_has_no_age() {
        let dir = tempfile::tempdir().unwrap();
        let lease = Lease::new(&dir.path().join("lease"));
        assert_eq!(lease_age(lease.path()), None);
        lease.renew().unwrap();
        assert!(lease_age(lease.path()).unwrap() < Duration::from_secs(5));
        std::fs::write(lease.path(), format!("{}\n", monotonic_ms().saturating_sub(60_000))).unwrap();
        assert!(lease_age(lease.path()).unwrap() >= Duration::from_secs(60));
    }

    #[test]
    fn a_lease_older_than_the_watchdog_counts_only_from_the_watchdog_start() {
        let started = Instant::now();
        let old = Some(Duration::from_secs(60));
        assert!(silence(old, started).unwrap() < Duration::from_secs(5));
        assert_eq!(silence(None, started), None);
        let long_ago = Instant::now().checked_sub(Duration::from_secs(30)).unwrap();
        let age = silence(Some(Duration::from_secs(10)), long_ago).unwrap();
        assert_eq!(age, Duration::from_secs(10));
    }
}
