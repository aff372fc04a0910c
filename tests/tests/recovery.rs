//! Scenarios: an agent dies (`kill -9`) while it runs training attempts that have
//! checkpointed. First a follower, then the leader. The dead agent's jobs resume on the
//! survivors from their last replicated checkpoint, never earlier: `job status` never
//! shows them below it, and the jobs' own records show every new attempt starting at or
//! past it (the simulated job verifies the checkpoint bytes it resumes from and fails
//! when they are missing or wrong, so a resume is a real one). Every job completes, and no job ever runs two attempts at once. Last, the leader
//! dies while trial runs are in flight: the next leader finishes profiling and the sweep.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use saturn_agent::cli::client::ApiClient;
use saturn_agent::views::{JobView, JobsView};
use saturn_tests::records::Record;
use saturn_tests::records::{read, segments};
use saturn_tests::{eventually, exclusive_segments, synth_sweep, Harness, Setup, SynthSweep};

/// The simulated job checkpoints every this many steps (about once a second).
const CHECKPOINT_EVERY: u64 = 50;
const STEPS: u64 = 800;

/// Eight jobs of one or two GPUs on twelve: every agent gets some. Step times are given,
/// so training starts without trial runs.
fn sweep(harness: &Harness) -> String {
    SynthSweep {
        base_step_ms: 20,
        techniques: r#"["ddp"]"#.into(),
        gpus: (1, 2),
        profile_group: "recover".into(),
        checkpoint_every: Some(CHECKPOINT_EVERY),
        profile: Some("profile = { ddp = { 1 = 0.020, 2 = 0.0125 } }".into()),
        ..SynthSweep::new("recover", 8, STEPS)
    }
    .toml(&harness.saturn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_killed_follower_resume_elsewhere_from_their_last_checkpoint() {
    let mut harness = Harness::start(&Setup::new(3)).expect("agents start");
    if let Err(err) = kill_mid_run(&mut harness, false).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_carries_the_sweep_on_after_the_leader_is_killed() {
    let mut harness = Harness::start(&Setup::new(3)).expect("agents start");
    if let Err(err) = kill_mid_run(&mut harness, true).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

/// A job running on the victim when it was killed, and the checkpoint it had reported.
#[derive(Debug)]
struct Cut {
    job: String,
    attempt: u32,
    checkpoint: u64,
}

async fn kill_mid_run(harness: &mut Harness, kill_leader: bool) -> Result<()> {
    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    let leader = harness.leader_index(0).await?;
    let ids: Vec<String> = harness.submit(0, &sweep(harness)).await?.jobs.into_iter().map(|j| j.id).collect();

    // The victim, once every training attempt on it has a committed checkpoint.
    let candidates: Vec<usize> = if kill_leader { vec![leader] } else { (0..3).filter(|i| *i != leader).collect() };
    let (victim, cuts) =
        eventually("the victim running training attempts past a checkpoint", Duration::from_secs(60), || {
            checkpointed_on(harness, &candidates, leader)
        })
        .await?;
    let name = harness.cluster.agents[victim].name.clone();
    let survivor = (0..3).find(|i| *i != victim).context("a survivor")?;
    let watch = Watch::start(harness.client(survivor), ids.clone());
    let killed_at = Instant::now();
    harness.cluster.kill(victim)?;
    eprintln!("killed {name} (leader: {kill_leader}) running {cuts:?}");

    if kill_leader {
        let new = harness
            .wait_status(survivor, "a new leader", Duration::from_secs(30), |s| {
                s.leader.as_ref().is_some_and(|l| *l != name)
            })
            .await?;
        eprintln!("new leader {:?} after {:.1} s", new.leader, killed_at.elapsed().as_secs_f64());
    }
    let jobs = harness.wait_jobs_ended(survivor, &ids, Duration::from_secs(120)).await?;
    let snapshots = watch.stop().await;
    eprintln!("every job ended {:.1} s after the kill", killed_at.elapsed().as_secs_f64());
    for job in &jobs {
        ensure!(job.state == "completed", "{} ended {} ({:?})", job.id, job.state, job.error);
    }

    let segments = exclusive_segments(&harness.records)?;
    for cut in &cuts {
        check_resumed(cut, &name, &segments, &snapshots)?;
    }
    for id in &ids {
        check_progress_kept(id, &segments)?;
    }
    Ok(())
}

/// Every job, moved or not: each training attempt starts where an earlier one got to
/// (a checkpoint it wrote), never before the previous attempt's start nor past what
/// had been done.
fn check_progress_kept(job: &str, segments: &[Record]) -> Result<()> {
    let mut attempts: Vec<&Record> = segments.iter().filter(|s| s.job == job && !s.profile).collect();
    attempts.sort_by_key(|s| (s.attempt, s.start_ms));
    for (i, later) in attempts.iter().enumerate().skip(1) {
        let earlier = &attempts[..i];
        let previous_start = earlier.iter().map(|s| s.start_step).max().unwrap_or(0);
        let reached = earlier.iter().filter_map(|s| s.end_step).max().unwrap_or(0);
        ensure!(
            (previous_start..=reached).contains(&later.start_step),
            "{job} attempt {} started at step {}, outside {previous_start}..={reached} (earlier attempts: {earlier:?})",
            later.attempt,
            later.start_step
        );
    }
    Ok(())
}

/// Among `candidates`, an agent whose every training attempt has a checkpoint recorded
/// with all its copies (the writer's and its replica: what survives the writer), with
/// each job's (attempt, checkpoint).
async fn checkpointed_on(harness: &Harness, candidates: &[usize], ask: usize) -> Result<Option<(usize, Vec<Cut>)>> {
    let jobs = harness.jobs(ask).await?;
    for &i in candidates {
        let name = &harness.cluster.agents[i].name;
        let here: Vec<&JobView> =
            jobs.iter().filter(|j| j.state == "running" && j.placement.iter().any(|p| &p.host == name)).collect();
        if here.is_empty() {
            continue;
        }
        let cuts: Vec<Cut> = here
            .iter()
            .filter_map(|job| {
                let ckpt = job.checkpoint.as_ref().filter(|c| c.step > 0 && c.copies.len() >= c.copies_wanted as usize)?;
                Some(Cut { job: job.id.clone(), attempt: job.attempt, checkpoint: ckpt.step })
            })
            .collect();
        if cuts.len() == here.len() {
            return Ok(Some((i, cuts)));
        }
    }
    Ok(None)
}

/// The cut attempt ended with its agent, and the job went on elsewhere from at least
/// the checkpoint it had reported, in `job status` and in its processes.
fn check_resumed(cut: &Cut, victim: &str, segments: &[Record], snapshots: &[JobView]) -> Result<()> {
    let old = segments.iter().find(|s| s.job == cut.job && s.attempt == cut.attempt && s.agent == victim);
    let old = old.with_context(|| format!("no record of {} attempt {} on {victim}", cut.job, cut.attempt))?;
    // SIGKILL of the agent must still stop its jobs (they get SIGTERM and end cleanly).
    ensure!(
        old.end_ms.is_some(),
        "{} attempt {} outlived its agent {victim} (never ended): {old:?}",
        cut.job,
        cut.attempt
    );
    let later: Vec<&Record> =
        segments.iter().filter(|s| s.job == cut.job && s.attempt > cut.attempt && !s.profile).collect();
    ensure!(!later.is_empty(), "{} never ran again after {victim} died", cut.job);
    for segment in &later {
        ensure!(segment.agent != victim, "{} ran on the dead {victim}: {segment:?}", cut.job);
        ensure!(
            segment.start_step >= cut.checkpoint,
            "{} attempt {} started at step {} although step {} had been checkpointed and reported",
            cut.job,
            segment.attempt,
            segment.start_step,
            cut.checkpoint
        );
    }
    let lowest = snapshots.iter().filter(|j| j.id == cut.job).map(|j| j.steps_done).min();
    ensure!(
        lowest.is_some_and(|low| low >= cut.checkpoint),
        "job status showed {} at {lowest:?} steps after the kill, below its checkpoint {}",
        cut.job,
        cut.checkpoint
    );
    let first = later.iter().map(|s| s.start_step).min().unwrap_or_default();
    eprintln!("{}: checkpoint {} reported, resumed at {first} on {}", cut.job, cut.checkpoint, later[0].agent);
    Ok(())
}

/// Polls `GET /v1/jobs` on one agent in the background and keeps every answer.
struct Watch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<JobView>>,
}

impl Watch {
    fn start(client: ApiClient, ids: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                // An agent busy electing may not answer; the next poll will.
                if let Ok(jobs) = client.get_json::<JobsView>("/v1/jobs").await {
                    seen.extend(jobs.jobs.into_iter().filter(|j| ids.contains(&j.id)));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen
        });
        Watch { stop, task }
    }

    async fn stop(self) -> Vec<JobView> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_while_trials_run_leaves_profiling_to_the_next_one() {
    let mut harness = Harness::start(&Setup::new(3)).expect("agents start");
    if let Err(err) = kill_leader_while_profiling(&mut harness).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn kill_leader_while_profiling(harness: &mut Harness) -> Result<()> {
    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    let leader = harness.leader_index(0).await?;
    let name = harness.cluster.agents[leader].name.clone();
    // No step times given: the group is profiled by trial runs first.
    let file = synth_sweep(&harness.saturn, "unmeasured", 6, 200, "");
    let ids: Vec<String> = harness.submit(0, &file).await?.jobs.into_iter().map(|j| j.id).collect();
    let trials = eventually("trial runs in flight", Duration::from_secs(60), || async {
        let (_, running) = segments(&read(&harness.records));
        let trials: Vec<Record> = running.into_iter().filter(|r| r.profile).collect();
        Ok((!trials.is_empty()).then_some(trials))
    })
    .await?;
    harness.cluster.kill(leader)?;
    eprintln!("killed the leader {name} while {} trial runs were in flight", trials.len());
    let survivor = (leader + 1) % 3;
    harness
        .wait_status(survivor, "a new leader", Duration::from_secs(30), |s| {
            s.leader.as_ref().is_some_and(|l| *l != name)
        })
        .await?;
    let jobs = harness.wait_jobs_ended(survivor, &ids, Duration::from_secs(120)).await?;
    for job in &jobs {
        ensure!(job.state == "completed", "{} ended {} ({:?})", job.id, job.state, job.error);
    }
    let segments = exclusive_segments(&harness.records)?;
    ensure!(segments.iter().any(|s| !s.profile && s.agent != name), "no training ran on the survivors: {segments:?}");
    for id in &ids {
        check_progress_kept(id, &segments)?;
    }
    Ok(())
}
