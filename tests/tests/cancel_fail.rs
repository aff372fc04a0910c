//! Scenarios: `saturn job cancel` stops a running job's process and the job stays
//! `cancelled`; a job that always fails is restarted `max_restarts` times, ends `failed`,
//! and says why in `saturn job status` (JSON and human) and `saturn job logs`; `saturn job
//! run --wait` on it exits 1.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use saturn_agent::cluster::now_ms;
use saturn_agent::views::{JobView, JobsView};
use saturn_tests::records::{self, Record};
use saturn_tests::{eventually, exclusive_segments, Harness, Setup};

/// One job of the simulated job with a given step time (no trial runs).
fn one_job(harness: &Harness, name: &str, steps: u64, max_restarts: u32, extra: &str) -> String {
    format!(
        r#"
[[job]]
name = "{name}"
command = ["{saturn}", "synth-job", "--model-gb", "1", "--base-step-ms", "20", "--compute-fraction", "0.8"{extra}]
steps = {steps}
techniques = ["ddp"]
gpus = [1, 1]
profile_group = "{name}"
max_restarts = {max_restarts}
profile = {{ ddp = {{ 1 = 0.020 }} }}
"#,
        saturn = harness.saturn.display(),
    )
}

async fn job(harness: &Harness, i: usize, id: &str) -> Result<JobView> {
    harness.jobs(i).await?.into_iter().find(|j| j.id == id).with_context(|| format!("{id} is not listed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_stops_its_process_and_stays_cancelled() {
    let harness = Harness::start(&Setup::new(3)).expect("agents start");
    if let Err(err) = cancel(&harness).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn cancel(harness: &Harness) -> Result<()> {
    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    // 2000 steps of 20 ms: it would run for 40 s if nothing stopped it.
    let id = harness.submit(0, &one_job(harness, "cancelled", 2000, 2, "")).await?.jobs[0].id.clone();
    let running = eventually("the job running", Duration::from_secs(30), || async {
        let job = job(harness, 0, &id).await?;
        let pids = harness.job_pids(&id);
        Ok((job.state == "running" && job.steps_done > 0 && !pids.is_empty()).then_some((job, pids)))
    })
    .await?;
    let (running, pids) = running;

    let cancelled_at = now_ms();
    let answer = harness.cli(1, &["job", "cancel", &id], Duration::from_secs(30)).await?;
    ensure!(answer.code == Some(0), "saturn job cancel exited {:?}: {}", answer.code, answer.stderr);
    ensure!(answer.stdout.contains(&id), "saturn job cancel names the job: {}", answer.stdout);
    // `cancelled` shows at once; the job has ended (a finish time) once its attempt's
    // exit is reported, which must come with the process gone.
    let ended = eventually("the job cancelled, ended and its process gone", Duration::from_secs(20), || async {
        let job = job(harness, 2, &id).await?;
        Ok((job.state == "cancelled" && job.finished_at.is_some()).then_some(job))
    })
    .await?;
    ensure!(harness.job_pids(&id).is_empty(), "{id} ended but its processes {:?} still run", harness.job_pids(&id));
    ensure!(ended.steps_done < ended.steps, "the cancelled job ran to its end anyway");
    for pid in &pids {
        ensure!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} of {id} is still there");
    }

    // A job submitted after the cancel and run to its end: the scheduler has had every
    // chance to (wrongly) start the cancelled one again by then.
    let after = harness.submit(2, &one_job(harness, "after", 50, 2, "")).await?.jobs[0].id.clone();
    harness.wait_jobs_ended(0, std::slice::from_ref(&after), Duration::from_secs(30)).await?;
    ensure!(job(harness, 0, &id).await?.state == "cancelled", "{id} left the cancelled state");

    let segments = exclusive_segments(&harness.records)?;
    let mine: Vec<&Record> = segments.iter().filter(|s| s.job == id).collect();
    ensure!(mine.len() == 1, "{id} ran exactly one process, records show {mine:?}");
    let process = mine[0];
    ensure!(process.attempt == running.attempt, "the process is the attempt that was running: {process:?}");
    // The end line: the process ended itself on SIGTERM, after the cancel.
    let end =
        process.end_ms.with_context(|| format!("{id}'s process never wrote its end (SIGKILLed?): {process:?}"))?;
    ensure!(end >= cancelled_at, "{id}'s process ended before the cancel: {process:?}");
    ensure!(process.outcome == "terminated", "{id}'s process ended {}, not on SIGTERM", process.outcome);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_always_fails_is_restarted_max_restarts_times_then_fails_visibly() {
    let harness = Harness::start(&Setup::new(3)).expect("agents start");
    if let Err(err) = always_failing(&harness).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn always_failing(harness: &Harness) -> Result<()> {
    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    let file = harness.dir().join("doomed.toml");
    std::fs::write(&file, one_job(harness, "doomed", 200, 2, r#", "--fail-always""#))?;
    // `job run --wait` ends when the job does, and says by its exit status that not
    // every job completed.
    let path = file.display().to_string();
    let waited = harness.cli(0, &["job", "run", &path, "--wait", "--json"], Duration::from_secs(60)).await?;
    ensure!(waited.code == Some(1), "job run --wait on a failing job exited {:?}: {}", waited.code, waited.stderr);
    let printed: JobsView = serde_json::from_str(&waited.stdout).context("job run --wait --json prints one JSON document")?;
    ensure!(printed.jobs.len() == 1 && printed.jobs[0].state == "failed", "job run --wait printed {:?}", printed.jobs);
    let id = printed.jobs[0].id.clone();

    let run = harness.cli(2, &["job", "status", &id, "--json"], Duration::from_secs(30)).await?;
    ensure!(run.code == Some(0), "saturn job status --json exited {:?}: {}", run.code, run.stderr);
    let job: JobView = serde_json::from_str(&run.stdout).context("job status ID --json prints one JSON document")?;
    ensure!(job.state == "failed", "{id} ended {}", job.state);
    ensure!(
        job.restarts == 2 && job.attempt == 3,
        "2 restarts (3 attempts) expected, got {} restarts, attempt {}",
        job.restarts,
        job.attempt
    );
    ensure!(job.exit_code == Some(1), "the last attempt's exit code is 1, got {:?}", job.exit_code);
    let error = job.error.clone().context("a failed job says why")?;
    ensure!(!error.trim().is_empty(), "the error is empty");

    let human = harness.cli(0, &["job", "status", &id], Duration::from_secs(30)).await?;
    ensure!(human.code == Some(0), "saturn job status exited {:?}: {}", human.code, human.stderr);
    ensure!(
        human.stdout.contains("failed") && human.stdout.contains(&error),
        "saturn job status hides the error:\n{}",
        human.stdout
    );

    let logs = harness.cli(1, &["job", "logs", &id], Duration::from_secs(30)).await?;
    ensure!(logs.code == Some(0), "saturn job logs exited {:?}: {}", logs.code, logs.stderr);
    let said = logs.stdout.matches("simulated failure (--fail-always)").count();
    ensure!(said >= 1, "saturn job logs lacks the job's error output:\n{}", logs.stdout);

    // The job's own records: three attempts, one after the other, each a failure.
    let segments = exclusive_segments(&harness.records)?;
    let mut attempts: Vec<(u32, String)> =
        segments.iter().filter(|s| s.job == id && !s.profile).map(|s| (s.attempt, s.outcome.clone())).collect();
    attempts.sort();
    let expected: Vec<(u32, String)> = (1..=3).map(|a| (a, "failed".to_string())).collect();
    ensure!(attempts == expected, "records of {id}: {attempts:?}, expected {expected:?}");
    ensure!(records::segments(&records::read(&harness.records)).1.is_empty(), "a process never wrote its end");
    eprintln!("{id} failed after {} attempts: {error}; its log repeats the failure {said} times", job.attempt);
    Ok(())
}
