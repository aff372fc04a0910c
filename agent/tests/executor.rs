//! Executor scenarios with real processes (`/bin/sh` scripts): the environment a job
//! gets, what it reports, how it is stopped, its logs, and cleanup after a crash.

mod executor_harness;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use executor_harness::*;
use saturn_agent::executor::pidfile::PidDir;
use saturn_agent::executor::{procfs, Ensured, Gang, LogLimits, ProcessEvent, ProcessRecord};
use saturn_agent::executor::step_time::SettleRule;

fn env_lines(log: &str) -> BTreeMap<String, String> {
    log.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// The variables Saturn owns, from an `env` dump.
fn managed(env: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    env.iter()
        .filter(|(k, _)| saturn_agent::executor::env::is_managed(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test]
async fn a_job_gets_exactly_the_contract_environment() {
    // Set before any process starts; the std env lock serialises this with spawning.
    std::env::set_var("SATURN_TOKEN", "agent-secret");
    std::env::set_var("WORLD_SIZE", "99");
    let mut h = Harness::new().await;
    let mut spec = h.sh("j-env", "env");
    spec.env.insert("HF_HOME".into(), "/data/hf".into());
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    assert_eq!(exit_of(&events).0, Some(0));

    let env = env_lines(&log_text(&h.table.log_path(&spec.key())));
    let checkpoint_dir = spec.checkpoint_dir.display().to_string();
    let expected = BTreeMap::from([
        ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
        ("CUDA_VISIBLE_DEVICES", "0,2"),
        ("SATURN_AGENT", "node-test"),
        ("SATURN_ATTEMPT", "1"),
        ("SATURN_CHECKPOINT_DIR", checkpoint_dir.as_str()),
        ("SATURN_GPUS", "2"),
        ("SATURN_GPU_MODEL", "SIM-24GB"),
        ("SATURN_JOB_ID", "j-env"),
        ("SATURN_START_STEP", "0"),
        ("SATURN_STEPS", "100"),
        ("SATURN_TECHNIQUE", "ddp"),
    ]);
    assert_eq!(managed(&env), expected, "no inherited SATURN_TOKEN or WORLD_SIZE, no gang or trial variables");
    assert_eq!(env.get("HF_HOME").map(String::as_str), Some("/data/hf"));
    assert!(env.contains_key("PATH"), "ordinary variables are inherited");
}

#[tokio::test]
async fn a_trial_run_on_a_multi_host_gang_gets_profile_and_torchrun_variables() {
    let mut h = Harness::new().await;
    let mut spec = h.sh("j-gang", "env");
    spec.attempt = 4;
    spec.start_step = 30;
    spec.profile_steps = Some(20);
    spec.gang = Some(two_host_gang(Duration::from_secs(180)));
    h.table.ensure_running(&spec).await;
    h.run_to_exit(&spec.key()).await;
    let env = env_lines(&log_text(&h.table.log_path(&spec.key())));
    for (name, value) in [
        ("SATURN_ATTEMPT", "4"),
        ("SATURN_START_STEP", "30"),
        ("SATURN_PROFILE_STEPS", "20"),
        ("SATURN_NNODES", "2"),
        ("SATURN_NODE_RANK", "1"),
        ("MASTER_ADDR", "10.1.2.3"),
        ("MASTER_PORT", "29500"),
        ("WORLD_SIZE", "4"),
        ("SATURN_NODE_ADDR", "10.1.2.4"),
        ("SATURN_RENDEZVOUS_TIMEOUT_S", "180"),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
}

/// Rank 1 of a 2-host gang whose master is `node-a` at 10.1.2.3.
fn two_host_gang(rendezvous_timeout: Duration) -> Gang {
    Gang {
        nnodes: 2,
        node_rank: 1,
        master_addr: "10.1.2.3".into(),
        master_port: 29500,
        world_size: 4,
        node_addr: "10.1.2.4".into(),
        rendezvous_timeout,
        peers: vec!["node-a at 10.1.2.3".into()],
    }
}

#[tokio::test]
async fn a_gang_rank_that_prints_nothing_is_ended_after_the_rendezvous_timeout_naming_its_peers() {
    let mut h = Harness::new().await;
    let spec = {
        let mut spec = h.sh("j-silent", "echo 'connecting to the master...'; exec sleep 600");
        spec.gang = Some(two_host_gang(Duration::from_secs(2)));
        spec
    };
    let started = Instant::now();
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    let elapsed = started.elapsed();
    let (_, _, error) = exit_of(&events);
    let error = error.expect("a silent gang rank fails");
    assert!(error.contains("did not rendezvous") && error.contains("node-a at 10.1.2.3"), "{error}");
    assert!(error.contains("node rank 1 of 2") && error.contains("10.1.2.3:29500"), "{error}");
    // 2 s plus a quarter of it, then SIGTERM (sleep dies at once).
    assert!(elapsed >= Duration::from_millis(2500), "ended after {elapsed:?}, before its limit");
    let log = log_text(&h.table.log_path(&spec.key()));
    assert!(log.contains("saturn: the gang did not rendezvous"), "the job's log says why: {log}");
}

#[tokio::test]
async fn a_gang_rank_that_reports_is_not_ended_and_a_single_host_job_is_never_watched() {
    let mut h = Harness::new().await;
    let reporting = {
        let mut spec = h.sh("j-met", "echo 'SATURN metric rendezvous_s=0.5'; sleep 3; echo 'SATURN step=100'");
        spec.gang = Some(two_host_gang(Duration::from_secs(1)));
        spec
    };
    let single = {
        let mut spec = h.sh("j-alone", "sleep 3");
        spec.gang = Some(Gang { nnodes: 1, node_rank: 0, peers: vec![], ..two_host_gang(Duration::from_secs(1)) });
        spec
    };
    h.table.ensure_running(&reporting).await;
    h.table.ensure_running(&single).await;
    let keys = [reporting.key(), single.key()];
    for (key, events) in keys.iter().zip(h.run_all_to_exit(&keys).await) {
        assert_eq!(exit_of(&events), (Some(0), None, None), "{key}");
    }
}

#[tokio::test]
async fn a_gang_process_exiting_4_is_reported_as_a_rendezvous_timeout() {
    let mut h = Harness::new().await;
    let spec = {
        let mut spec = h.sh("j-four", "echo 'rendezvous with 10.1.2.3:29500 timed out after 2 s' >&2; exit 4");
        spec.gang = Some(two_host_gang(Duration::from_secs(2)));
        spec
    };
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    let (code, _, error) = exit_of(&events);
    let error = error.expect("exit 4 is a failure");
    assert_eq!(code, Some(4));
    assert!(error.contains("did not rendezvous in time") && error.contains("node-a at 10.1.2.3"), "{error}");
    assert!(error.contains("timed out after 2 s"), "the library's own words follow: {error}");
}

#[tokio::test]
async fn steps_checkpoints_and_metrics_are_read_from_any_position_in_a_line() {
    let mut h = Harness::new().await;
    let script = r#"
        echo "booting"
        echo "[rank0] 12:00:01 SATURN step=1"
        echo "SATURN metric loss=2.5"
        echo "SATURN step=2"
        echo "INFO SATURN checkpoint step=2 saved"
        echo "SATURN step=3 SATURN garbage=1"
        echo "SATURN step=oops"
        echo "SATURN step=9" >&2
    "#;
    let spec = h.sh("j-proto", script);
    assert!(matches!(h.table.ensure_running(&spec).await, Ensured::Started { .. }));
    let events = h.run_to_exit(&spec.key()).await;
    assert!(matches!(events[0], ProcessEvent::Started { .. }));
    assert_eq!(checkpoints(&events), [2]);
    assert_eq!(steps(&events).last(), Some(&3), "stderr is not parsed: {events:?}");
    assert!(events.contains(&ProcessEvent::Metric { name: "loss".into(), value: 2.5 }));
    let checkpoint_at = events.iter().position(|e| matches!(e, ProcessEvent::Checkpoint { .. }));
    let step_two_at = events.iter().position(|e| matches!(e, ProcessEvent::Step { step: 2, .. }));
    assert!(step_two_at < checkpoint_at, "progress is delivered before the checkpoint");
    assert_eq!(exit_of(&events), (Some(0), None, None));
    assert!(log_text(&h.table.log_path(&spec.key())).contains("SATURN step=9"), "stderr is logged");
}

#[tokio::test]
async fn a_chatty_job_is_rate_limited_but_its_last_step_always_arrives() {
    let mut h = Harness::with(|c| c.process.progress_interval = Duration::from_secs(5)).await;
    let spec = h.sh("j-chatty", "i=1; while [ $i -le 2000 ]; do echo SATURN step=$i; i=$((i+1)); done");
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    let reported = steps(&events);
    assert!(reported.len() <= 3, "{} step events for 2000 lines", reported.len());
    assert_eq!(reported.last(), Some(&2000));
}

#[tokio::test]
async fn a_job_ignoring_sigterm_is_killed_after_the_grace_period() {
    let mut h = Harness::new().await;
    // `trap '' TERM` is inherited by the loop's children too: the whole group ignores it.
    let spec = h.sh("j-stubborn", "trap '' TERM; echo SATURN step=1; while :; do sleep 0.05; done");
    h.table.ensure_running(&spec).await;
    h.events_until(&spec.key(), |e| matches!(e, ProcessEvent::Step { .. })).await;
    let grace = Duration::from_millis(300);
    let asked = Instant::now();
    assert!(h.table.stop(&spec.key(), grace));
    let events = h.run_to_exit(&spec.key()).await;
    let (code, signal, error) = exit_of(&events);
    assert_eq!((code, signal), (None, Some(9)));
    assert!(asked.elapsed() >= grace, "SIGKILL came before the grace period ended");
    assert!(error.unwrap_or_default().contains("SIGKILL"));
    assert!(h.table.running().is_empty());
}

#[tokio::test]
async fn stopping_a_job_ends_its_whole_process_group() {
    let mut h = Harness::new().await;
    let spec = h.sh("j-tree", "sleep 1000 & echo \"SATURN metric child=$!\"; wait");
    h.table.ensure_running(&spec).await;
    let events = h.events_until(&spec.key(), |e| matches!(e, ProcessEvent::Metric { .. })).await;
    let Some(ProcessEvent::Metric { value, .. }) = events.last() else { unreachable!() };
    let child = *value as u32;
    assert!(alive(child));
    h.table.stop(&spec.key(), Duration::from_secs(5));
    let events = h.run_to_exit(&spec.key()).await;
    assert_eq!(exit_of(&events).1, Some(15), "the shell ended by SIGTERM");
    eventually("the grandchild is gone", || !alive(child)).await;
}

#[tokio::test]
async fn what_a_finished_job_leaves_behind_is_killed() {
    let mut h = Harness::new().await;
    let spec = h.sh("j-leaver", "sleep 1000 & echo \"SATURN metric child=$!\"; exit 0");
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    let child = events
        .iter()
        .find_map(|e| if let ProcessEvent::Metric { value, .. } = e { Some(*value as u32) } else { None })
        .expect("the child's pid was reported");
    assert_eq!(exit_of(&events).0, Some(0));
    eventually("the background child is gone", || !alive(child)).await;
}

#[tokio::test]
async fn failures_say_why() {
    let mut h = Harness::new().await;
    let missing = h.spec("j-missing", vec!["no-such-command-xyz".into()]);
    let ensured = h.table.ensure_running(&missing).await;
    assert_eq!(ensured, Ensured::FailedToStart { error: "command not found: no-such-command-xyz".into() });
    let events = h.run_to_exit(&missing.key()).await;
    assert_eq!(exit_of(&events).2.as_deref(), Some("command not found: no-such-command-xyz"));

    let mut nowhere = h.sh("j-nowhere", "true");
    nowhere.workdir = h.dir.path().join("does-not-exist");
    let Ensured::FailedToStart { error } = h.table.ensure_running(&nowhere).await else { panic!("started") };
    assert!(error.contains("working directory does not exist"), "{error}");

    let crash = h.sh("j-crash", "echo loading >&2; echo 'RuntimeError: CUDA error: device-side assert' >&2; exit 7");
    h.table.ensure_running(&crash).await;
    let (code, _, error) = exit_of(&h.run_to_exit(&crash.key()).await);
    assert_eq!(code, Some(7));
    assert_eq!(error.as_deref(), Some("exit status 7: loading | RuntimeError: CUDA error: device-side assert"));
}

#[tokio::test]
async fn ensure_running_is_idempotent_and_never_reruns_a_finished_attempt() {
    let mut h = Harness::new().await;
    let spec = h.sh("j-idem", "echo SATURN step=1; sleep 1000");
    assert!(matches!(h.table.ensure_running(&spec).await, Ensured::Started { .. }));
    assert_eq!(h.table.ensure_running(&spec).await, Ensured::AlreadyRunning);
    assert_eq!(h.table.running(), [spec.key()]);
    // The reconcile loop: the state no longer lists this attempt, so it is stopped.
    let stopped = h.table.retain(&BTreeSet::new(), Duration::from_secs(5));
    assert_eq!(stopped, [spec.key()]);
    h.run_to_exit(&spec.key()).await;
    assert_eq!(h.table.ensure_running(&spec).await, Ensured::AlreadyFinished);
    assert!(matches!(h.table.finished(&spec.key()), Some(ProcessEvent::Exited { signal: Some(15), .. })));
}

/// A trial's (seconds per step, step reports) from its `StepTime` event.
fn measured(events: &[ProcessEvent]) -> (f64, usize) {
    events
        .iter()
        .find_map(|e| match e {
            ProcessEvent::StepTime { seconds_per_step, samples } => Some((*seconds_per_step, *samples)),
            _ => None,
        })
        .expect("a StepTime event before Exited")
}

#[tokio::test]
async fn a_trial_run_reports_its_measured_step_time() {
    let mut h = Harness::new().await;
    let mut spec = h.sh("j-trial", "i=1; while [ $i -le 8 ]; do sleep 0.1; echo SATURN step=$i; i=$((i+1)); done");
    spec.profile_steps = Some(8);
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    let (seconds, samples) = measured(&events);
    assert_eq!(samples, 8);
    assert!((0.09..0.3).contains(&seconds), "measured {seconds} s/step for 0.1 s sleeps");
}

#[tokio::test]
async fn a_trial_run_is_ended_once_its_step_time_settles_and_counts_as_a_success() {
    let rule = SettleRule { min_intervals: 4, min_measured: Duration::from_millis(400) };
    let mut h = Harness::with(|c| c.process.trial_settle = Some(rule)).await;
    let mut spec = h.sh("j-settle", "i=1; while [ $i -le 200 ]; do sleep 0.1; echo SATURN step=$i; i=$((i+1)); done");
    spec.profile_steps = Some(200);
    let started = Instant::now();
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    assert!(started.elapsed() < Duration::from_secs(10), "the trial ran {:?}", started.elapsed());
    let (seconds, samples) = measured(&events);
    assert!((5..50).contains(&samples), "stopped after {samples} reports");
    assert!((0.09..0.3).contains(&seconds), "measured {seconds} s/step for 0.1 s sleeps");
    // sh dies of the SIGTERM, and the exit says so as it happened: the verdict (the
    // StepTime event just before it) is what makes the trial a success.
    let verdict = events.iter().position(|e| matches!(e, ProcessEvent::StepTime { .. }));
    assert_eq!(verdict, Some(events.len() - 2), "the step time comes right before the exit: {events:?}");
    assert!(matches!(events.last(), Some(ProcessEvent::Exited { signal: Some(15), .. })), "{:?}", events.last());
    let log = std::fs::read_to_string(h.table.log_path(&spec.key())).expect("log");
    assert!(log.contains("trial stopped after"), "{log}");
}

#[tokio::test]
async fn a_trial_that_hangs_is_ended_as_infeasible_after_its_timeout() {
    let mut h = Harness::with(|c| c.process.trial_timeout = Duration::from_millis(500)).await;
    // It speaks the protocol (one step) but never measures a step time: a crawl or a hang.
    let mut spec = h.sh("j-hang", "echo loading; echo 'SATURN step=1'; sleep 60");
    spec.profile_steps = Some(20);
    let started = Instant::now();
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    assert!(started.elapsed() < Duration::from_secs(10), "the trial ran {:?}", started.elapsed());
    assert!(!events.iter().any(|e| matches!(e, ProcessEvent::StepTime { .. } | ProcessEvent::TrialNoSteps)), "{events:?}");
    match events.last() {
        Some(ProcessEvent::Exited { code: None, error: Some(error), .. }) => {
            assert!(error.contains("no step time within"), "{error}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_trial_of_a_script_that_never_reports_a_step_ends_well_with_no_steps() {
    let mut h = Harness::with(|c| c.process.trial_timeout = Duration::from_millis(500)).await;
    // A plain script that knows nothing of Saturn: it must still run (as a job planned
    // by its duration estimate), so its trial is not an infeasible configuration.
    let mut spec = h.sh("j-silent", "echo training quietly; sleep 60");
    spec.profile_steps = Some(20);
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    assert!(!events.iter().any(|e| matches!(e, ProcessEvent::Step { .. } | ProcessEvent::StepTime { .. })), "{events:?}");
    // Its verdict, then its exit as it happened (the supervisor's SIGTERM).
    assert!(matches!(events[events.len() - 2], ProcessEvent::TrialNoSteps), "{events:?}");
    assert!(matches!(events.last(), Some(ProcessEvent::Exited { signal: Some(15), .. })), "{:?}", events.last());
}

#[tokio::test]
async fn a_chatty_job_cannot_fill_the_disk() {
    let limit = 64 * 1024;
    let mut h = Harness::with(|c| c.process.log_limits = LogLimits { max_file_bytes: limit }).await;
    let line = "x".repeat(100);
    let spec = h.sh("j-log", &format!("i=1; while [ $i -le 5000 ]; do echo \"$i {line}\"; i=$((i+1)); done"));
    h.table.ensure_running(&spec).await;
    h.run_to_exit(&spec.key()).await;
    let path = h.table.log_path(&spec.key());
    let rotated = saturn_agent::executor::logs::rotated_path(&path);
    for file in [&path, &rotated] {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 0 && size <= limit, "{} is {size} bytes", file.display());
    }
    let tail = saturn_agent::executor::read_tail(&path, 300).expect("tail");
    assert!(String::from_utf8_lossy(&tail.data).ends_with(&format!("5000 {line}\n")));
}

#[tokio::test]
async fn a_restarted_agent_ends_its_former_jobs_but_not_a_process_reusing_a_pid() {
    let dir = tempfile::tempdir().expect("temporary dir");
    let data_dir = dir.path().join("data");
    let pids = PidDir::open(&data_dir).expect("pid dir");
    // A job process left behind by a crashed agent: own group, contract environment.
    let mut leftover = std::process::Command::new("sleep")
        .arg("1000")
        .env("SATURN_JOB_ID", "j-old")
        .env("SATURN_ATTEMPT", "3")
        .process_group(0)
        .spawn()
        .expect("spawn sleep");
    // An unrelated process whose pid is in a record, with another start time: as if
    // the recorded process died and the pid was recycled.
    let mut bystander = std::process::Command::new("sleep").arg("1000").spawn().expect("spawn sleep");
    for (job, child, skew) in [("j-old", &leftover, 0), ("j-gone", &bystander, 1)] {
        let start_time = procfs::stat(child.id()).expect("stat").start_time + skew;
        let record = ProcessRecord { job: job.into(), attempt: 3, pid: child.id(), pgid: child.id(), start_time };
        pids.record(&record).expect("record");
    }

    let h = Harness::on_dir(dir, |c| c.orphan_grace = Duration::from_secs(5)).await;

    let ended: BTreeSet<String> = h.orphans_ended.iter().map(|r| r.job.clone()).collect();
    assert_eq!(ended, BTreeSet::from(["j-gone".to_owned(), "j-old".to_owned()]));
    let status = leftover.wait().expect("wait leftover");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(15));
    assert_eq!(bystander.try_wait().expect("try_wait"), None, "the bystander must survive");
    bystander.kill().expect("kill bystander");
    let _ = bystander.wait();
    assert!(PidDir::open(&h.data_dir()).expect("pid dir").list().is_empty(), "records are cleared");
}

#[tokio::test]
async fn a_running_job_is_recorded_for_crash_cleanup_until_it_exits() {
    let mut h = Harness::new().await;
    let spec = h.sh("j-rec", "echo SATURN step=1; sleep 1000");
    let Ensured::Started { pid } = h.table.ensure_running(&spec).await else { panic!("not started") };
    let pids = PidDir::open(&h.data_dir()).expect("pid dir");
    let records = pids.list();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].pid, records[0].pgid, records[0].attempt), (pid, pid, 1));
    assert_eq!(Some(records[0].start_time), procfs::stat(pid).map(|s| s.start_time));
    h.table.shutdown(Duration::from_secs(5)).await;
    assert!(pids.list().is_empty());
    h.run_to_exit(&spec.key()).await;
}

/// Set for the child process of [`a_job_gets_sigterm_when_its_agent_dies`].
const PRETEND_AGENT_DIR: &str = "PRETEND_AGENT_DIR";

#[tokio::test]
async fn a_job_gets_sigterm_when_its_agent_dies() {
    // The "agent" is this test binary run again, executing only the ignored scenario
    // below: it starts a job and then exits abruptly.
    let dir = tempfile::tempdir().expect("temporary dir");
    let exe = std::env::current_exe().expect("test binary path");
    let status = std::process::Command::new(exe)
        .args(["pretend_agent_that_dies", "--exact", "--ignored", "--nocapture"])
        .env(PRETEND_AGENT_DIR, dir.path())
        .status()
        .expect("run the pretend agent");
    assert!(status.success(), "the pretend agent failed: {status}");
    let _cleanup = KillGroupOnDrop(std::fs::read_to_string(dir.path().join("job.pid")).ok().and_then(|p| p.parse().ok()));
    let marker = dir.path().join("got-sigterm");
    eventually("the orphaned job got SIGTERM", || marker.exists()).await;
}

/// Ends the orphaned job's group even when the test fails, so no loop is left running.
struct KillGroupOnDrop(Option<i32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[tokio::test]
#[ignore = "run by a_job_gets_sigterm_when_its_agent_dies as a separate process"]
async fn pretend_agent_that_dies() {
    let Ok(dir) = std::env::var(PRETEND_AGENT_DIR) else { return };
    let mut h = Harness::new().await;
    let script = format!(
        "trap 'touch {dir}/got-sigterm; exit 0' TERM; echo SATURN step=1; while :; do sleep 0.05; done"
    );
    let spec = h.sh("j-orphan", &script);
    let Ensured::Started { pid } = h.table.ensure_running(&spec).await else { panic!("not started") };
    std::fs::write(format!("{dir}/job.pid"), pid.to_string()).expect("write job.pid");
    h.events_until(&spec.key(), |e| matches!(e, ProcessEvent::Step { .. })).await;
    // No cleanup, no destructors: the agent is simply gone.
    std::process::exit(0);
}
