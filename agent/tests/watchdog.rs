//! The job watchdog (`saturn-agent __saturn-watchdog`) with real processes: it is
//! invisible while the agent is alive and renews its lease (exit codes, signals and the
//! environment pass through), kills the job once the lease goes stale (a frozen agent),
//! does not count a lease left old by an earlier run of the agent against a new job, and
//! kills a job that ignores SIGTERM once its agent is gone.

mod executor_harness;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use executor_harness::*;
use saturn_agent::executor::watchdog::{monotonic_ms, Lease, WatchdogSettings, WATCHDOG_ARG};
use saturn_agent::executor::ProcessEvent;

const AGENT: &str = env!("CARGO_BIN_EXE_saturn-agent");

fn watchdog(lease: &Lease, max_silence: Duration) -> WatchdogSettings {
    WatchdogSettings {
        program: AGENT.into(),
        lease: lease.path().to_owned(),
        max_silence,
        kill_grace: Duration::from_secs(5),
    }
}

fn exited(events: &[ProcessEvent]) -> (Option<i32>, Option<i32>, Option<String>) {
    match events.last() {
        Some(ProcessEvent::Exited { code, signal, error }) => (*code, *signal, error.clone()),
        other => panic!("the last event is not Exited: {other:?}"),
    }
}

#[tokio::test]
async fn under_a_renewed_lease_the_watchdog_is_invisible() {
    let lease_dir = tempfile::tempdir().expect("temporary dir");
    let lease = Lease::new(&lease_dir.path().join("lease"));
    lease.renew().expect("lease");
    let settings = watchdog(&lease, Duration::from_secs(60));
    let mut h = Harness::with(|c| c.process.watchdog = Some(settings)).await;

    let spec = h.sh("j-code", "echo \"job=$SATURN_JOB_ID steps=$SATURN_STEPS\"; exit 3");
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    assert_eq!(exited(&events).0, Some(3), "{events:?}");
    let log = std::fs::read_to_string(h.table.log_path(&spec.key())).expect("log");
    assert!(log.contains("job=j-code steps="), "{log}");

    let spec = h.sh("j-signal", "kill -USR1 $$");
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    assert_eq!(exited(&events).1, Some(nix::sys::signal::Signal::SIGUSR1 as i32), "{events:?}");

    let spec = h.spec("j-missing", vec!["no-such-command-xyz".into()]);
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    let (code, _, error) = exited(&events);
    assert_eq!(code, Some(127));
    assert!(error.unwrap_or_default().contains("command not found: no-such-command-xyz"), "{events:?}");
}

#[tokio::test]
async fn a_stale_lease_stops_the_job_as_a_frozen_agent_cannot() {
    let lease_dir = tempfile::tempdir().expect("temporary dir");
    let lease = Lease::new(&lease_dir.path().join("lease"));
    let settings = watchdog(&lease, Duration::from_millis(1600));
    let mut h = Harness::with(|c| c.process.watchdog = Some(settings)).await;
    // The agent "freezes": nobody renews the lease after this. At ¾ of the silence limit
    // the job gets SIGTERM and may checkpoint; at the limit the group is killed.
    lease.renew().expect("lease");
    let started = Instant::now();
    let polite = h.sh("j-polite", "trap 'echo checkpointed; exit 0' TERM; while true; do sleep 0.05; done");
    let stubborn = h.sh("j-stubborn", "trap '' TERM; while true; do sleep 0.05; done");
    h.table.ensure_running(&polite).await;
    h.table.ensure_running(&stubborn).await;
    let events = h.run_to_exit(&polite.key()).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1000), "stopped after {elapsed:?}, before the lease went stale");
    assert_eq!(exited(&events).0, Some(0), "the job checkpointed and exited: {events:?}");
    let log = std::fs::read_to_string(h.table.log_path(&polite.key())).expect("log");
    assert!(log.contains("stopping the job") && log.contains("checkpointed"), "{log}");

    let events = h.run_to_exit(&stubborn.key()).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1500), "killed after {elapsed:?}, before the silence limit");
    assert!(elapsed < Duration::from_secs(10), "killed only after {elapsed:?}");
    assert_eq!(exited(&events).1, Some(9), "{events:?}");
    let log = std::fs::read_to_string(h.table.log_path(&stubborn.key())).expect("log");
    assert!(log.contains("killing the job"), "{log}");
}

#[tokio::test]
async fn a_lease_left_by_a_previous_run_does_not_kill_a_new_job() {
    // An agent restarted after a crash: its lease file is as old as the downtime. A job
    // started now must not be fenced for silence that happened before its watchdog ran.
    let lease_dir = tempfile::tempdir().expect("temporary dir");
    let lease = Lease::new(&lease_dir.path().join("lease"));
    std::fs::write(lease.path(), format!("{}\n", monotonic_ms().saturating_sub(60_000))).expect("lease");
    let settings = watchdog(&lease, Duration::from_millis(1600));
    let mut h = Harness::with(|c| c.process.watchdog = Some(settings)).await;
    let started = Instant::now();
    let spec = h.sh("j-restarted", "sleep 0.5; echo survived");
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    assert_eq!(exited(&events).0, Some(0), "{events:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    let log = std::fs::read_to_string(h.table.log_path(&spec.key())).expect("log");
    assert!(log.contains("survived") && !log.contains("lease"), "{log}");
}

#[test]
fn a_job_ignoring_sigterm_dies_after_the_kill_grace_once_its_agent_is_gone() {
    let dir = tempfile::tempdir().expect("temporary dir");
    let lease = Lease::new(&dir.path().join("lease"));
    // A lease far in the future of any silence limit: only the agent's death counts here.
    std::fs::write(lease.path(), format!("{}\n", monotonic_ms() + 3_600_000)).expect("lease");
    let pid_file = dir.path().join("job.pid");
    let mut agent = Command::new("sleep").arg("60").spawn().expect("a stand-in agent");
    let script = format!("trap '' TERM; echo $$ > {}; while true; do sleep 0.1; done", pid_file.display());
    let mut watchdog = Command::new(AGENT)
        .args([WATCHDOG_ARG, "--agent-pid", &agent.id().to_string(), "--lease"])
        .arg(lease.path())
        .args(["--max-silence-ms", "600000", "--kill-grace-ms", "500", "--", "/bin/sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("the watchdog starts");
    let deadline = Instant::now() + DEADLINE;
    let job_pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse().ok()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    agent.kill().expect("the agent dies");
    agent.wait().expect("reaped");
    let status = loop {
        if let Some(status) = watchdog.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the watchdog still runs {DEADLINE:?} after its agent died");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the group was killed: {status:?}");
    let state = std::fs::read_to_string(format!("/proc/{job_pid}/stat")).unwrap_or_default();
    let alive = state.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'));
    assert!(!alive, "the job ignoring SIGTERM is still running: {state}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watchdog.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert!(stderr.contains("the agent is gone") && stderr.contains("outlived the kill grace"), "{stderr}");
}
