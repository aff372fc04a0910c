//! Scenario: every agent of a 3-agent cluster is killed at once (`kill -9`, a power
//! cut) in the middle of a sweep, after its jobs have checkpointed, and all are started
//! again on their data dirs. The sweep finishes with nothing lost, no attempt of a job
//! overlapping another, no GPU held twice, and the interrupted jobs resume from their
//! checkpoints rather than from step 0.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;
use saturn_tests::chaos::{check_all_completed_everywhere, check_records, keep_evidence, now_ms, sweep, Timeline};
use saturn_tests::{eventually, records, Harness, Setup};

const JOBS: usize = 4;
const STEPS: u64 = 800;
const CHECKPOINT_EVERY: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_survives_every_agent_being_killed_at_once() {
    let mut harness = Harness::start(&Setup::new(3)).expect("agents start");
    let timeline = Timeline::default();
    if let Err(err) = scenario(&mut harness, &timeline).await {
        let kept = keep_evidence(&harness, "full-restart");
        panic!("{err:#}\ntimeline:\n{}\n{}\nrecords and logs kept in {}", timeline.render(), harness.logs(), kept.display());
    }
}

async fn scenario(harness: &mut Harness, timeline: &Timeline) -> Result<()> {
    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    timeline.note("3 agents formed a cluster");
    let file = sweep(&harness.saturn, "restart", JOBS, STEPS, CHECKPOINT_EVERY, "restart", true);
    let ids: Vec<String> = harness.submit(0, &file).await?.jobs.into_iter().map(|j| j.id).collect();
    ensure!(ids.len() == JOBS, "submitted {JOBS} jobs, got ids {ids:?}");
    timeline.note(format!("submitted {ids:?}"));

    // Training under way: a checkpoint is committed.
    let progressed = |j: &saturn_agent::views::JobView| {
        j.state == "running" && j.steps_done >= 2 * CHECKPOINT_EVERY && j.steps_done < STEPS - 2 * CHECKPOINT_EVERY
    };
    eventually("a job past its second checkpoint", Duration::from_secs(60), || async {
        Ok(harness.jobs(0).await?.iter().any(progressed).then_some(()))
    })
    .await?;
    // A second sweep, with unknown step times: its trial runs are to be live at the crash.
    let trial_file = sweep(&harness.saturn, "trial", 2, STEPS, CHECKPOINT_EVERY, "trial", false);
    let trial_ids: Vec<String> = harness.submit(1, &trial_file).await?.jobs.into_iter().map(|j| j.id).collect();
    timeline.note(format!("submitted {trial_ids:?}, to be profiled by trial runs"));

    // Committed progress of two checkpoint intervals means the first checkpoint was
    // committed too: an attempt's events are committed in order.
    let before = eventually("a trial run live while a job is past its second checkpoint", Duration::from_secs(60), || async {
        let (_, running) = records::segments(&records::read(&harness.records));
        if !running.iter().any(|r| r.profile) {
            return Ok(None);
        }
        let jobs = harness.jobs(0).await?;
        let progressed: BTreeMap<String, u64> = jobs.iter().filter(|j| progressed(j)).map(|j| (j.id.clone(), j.steps_done)).collect();
        Ok((!progressed.is_empty()).then_some(progressed))
    })
    .await?;
    let ids: Vec<String> = ids.into_iter().chain(trial_ids).collect();

    // All at once: SIGKILL to every agent first, then reap them.
    for i in 0..3 {
        harness.cluster.signal(i, Signal::SIGKILL)?;
    }
    for i in 0..3 {
        harness.cluster.kill(i)?;
    }
    let crash_ms = now_ms();
    timeline.note(format!("killed all 3 agents (kill -9); steps done just before: {before:?}"));
    for i in 0..3 {
        harness.cluster.restart(i)?;
    }
    timeline.note("restarted all 3 agents on their data dirs");

    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    timeline.note("cluster formed again");
    harness.wait_jobs_ended(0, &ids, Duration::from_secs(120)).await?;
    timeline.note("every job ended");
    check_all_completed_everywhere(harness, &ids, Duration::from_secs(20)).await?;

    let summary = check_records(&harness.records)?;
    timeline.note(format!("records: {}", summary.render()));
    // Every job interrupted past its checkpoints resumed from one, on whatever host.
    let all = records::read(&harness.records);
    for (job, steps_done) in &before {
        let resumed: Vec<&records::Record> =
            all.iter().filter(|r| &r.job == job && !r.profile && r.end_ms.is_none() && r.start_ms >= crash_ms).collect();
        let first = resumed.iter().min_by_key(|r| r.start_ms).with_context(|| format!("{job} never ran after the restart"))?;
        ensure!(
            first.start_step >= CHECKPOINT_EVERY,
            "{job} had {steps_done} steps done before the crash but its attempt {} after it started at step {} \
             (expected a checkpoint, at least {CHECKPOINT_EVERY})",
            first.attempt,
            first.start_step
        );
        timeline.note(format!("{job}: {steps_done} steps done before the crash, resumed at step {} (attempt {})", first.start_step, first.attempt));
    }
    // A restart is a new attempt (SATURN_ATTEMPT +1 on every restart): an attempt of
    // before the crash never runs again after it.
    for after in all.iter().filter(|r| r.end_ms.is_none() && r.start_ms >= crash_ms) {
        let rerun = all.iter().find(|r| r.job == after.job && r.attempt == after.attempt && r.start_ms < crash_ms);
        ensure!(rerun.is_none(), "{} attempt {} ran before the crash and again after it: {rerun:?}", after.job, after.attempt);
    }
    eprintln!("timeline:\n{}", timeline.render());
    Ok(())
}
