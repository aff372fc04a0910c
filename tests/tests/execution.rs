//! Scenario: a 12-job sweep of the simulated job on 3 agents (4 simulated GPUs each) runs
//! to completion. Every job runs only as a technique and on a GPU count its file allows,
//! user-given profiles are used instead of trial runs while another group is profiled by
//! trials, and the jobs' own records show no GPU used by two jobs at once and no job
//! running two attempts at once. Also: `saturn job run --wait --json` and
//! `saturn job logs -f` through the CLI binary.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use saturn_agent::views::{JobView, JobsView};
use saturn_tests::records::Record;
use saturn_tests::{eventually, exclusive_segments, Harness, Setup};

/// One `[[sweep]]` of the test file and what it allows.
struct Group {
    name: &'static str,
    steps: u64,
    techniques: &'static [&'static str],
    gpus: (usize, usize),
    /// `profile = ...` given by the user: (technique, GPU count, seconds per step).
    profile: &'static [(&'static str, usize, f64)],
}

/// Three groups of four jobs with different constraints, so a scheduler that ignores a
/// job's `techniques` or `gpus` is caught. `wide` and `narrow` come with measured step
/// times (what the simulated job takes); `trial` must be profiled by trial runs.
const GROUPS: [Group; 3] = [
    Group {
        name: "narrow",
        steps: 300,
        techniques: &["ddp"],
        gpus: (1, 2),
        profile: &[("ddp", 1, 0.020), ("ddp", 2, 0.0125)],
    },
    Group {
        name: "wide",
        steps: 400,
        techniques: &["fsdp", "pipeline"],
        gpus: (2, 4),
        profile: &[("fsdp", 2, 0.0128), ("fsdp", 4, 0.0091), ("pipeline", 2, 0.0135), ("pipeline", 4, 0.011)],
    },
    Group { name: "trial", steps: 300, techniques: &["ddp", "fsdp"], gpus: (1, 4), profile: &[] },
];

fn sweep_file(harness: &Harness, groups: &[Group], jobs_per_group: usize) -> String {
    let lrs: Vec<String> = (1..=jobs_per_group).map(|i| format!("\"{i}e-4\"")).collect();
    let mut file = String::new();
    for group in groups {
        let mut profile: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (technique, gpus, seconds) in group.profile {
            profile.entry(technique).or_default().push(format!("{gpus} = {seconds}"));
        }
        let profile: Vec<String> =
            profile.iter().map(|(t, entries)| format!("{t} = {{ {} }}", entries.join(", "))).collect();
        let techniques: Vec<String> = group.techniques.iter().map(|t| format!("\"{t}\"")).collect();
        file.push_str(&format!(
            r#"
[[sweep]]
name = "{name}-lr{{lr}}"
command = ["{saturn}", "synth-job", "--model-gb", "1", "--base-step-ms", "20", "--compute-fraction", "0.8", "--lr", "{{lr}}"]
grid = {{ lr = [{lrs}] }}
steps = {steps}
techniques = [{techniques}]
gpus = [{lo}, {hi}]
profile_group = "{name}"
max_restarts = 2
"#,
            name = group.name,
            saturn = harness.saturn.display(),
            lrs = lrs.join(", "),
            steps = group.steps,
            techniques = techniques.join(", "),
            lo = group.gpus.0,
            hi = group.gpus.1,
        ));
        if !profile.is_empty() {
            file.push_str(&format!("profile = {{ {} }}\n", profile.join(", ")));
        }
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_runs_to_completion_within_each_jobs_techniques_and_gpu_counts() {
    let harness = Harness::start(&Setup::new(3)).expect("agents start");
    if let Err(err) = sweep_within_constraints(&harness).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn sweep_within_constraints(harness: &Harness) -> Result<()> {
    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    let submitted = harness.submit(1, &sweep_file(harness, &GROUPS, 4)).await?;
    ensure!(submitted.jobs.len() == 12, "12 jobs submitted, got {:?}", submitted.jobs);
    let started = Instant::now();
    let ids: Vec<String> = submitted.jobs.iter().map(|j| j.id.clone()).collect();
    let group_of: BTreeMap<String, &Group> = submitted
        .jobs
        .iter()
        .map(|j| {
            let group = GROUPS
                .iter()
                .find(|g| j.name.starts_with(&format!("{}-", g.name)))
                .context("a job of a known group")?;
            Ok((j.id.clone(), group))
        })
        .collect::<Result<_>>()?;

    harness.wait_jobs_ended(2, &ids, Duration::from_secs(120)).await?;
    let took = started.elapsed();
    // What a user sees: `saturn job status --json`.
    let run = harness.cli(0, &["job", "status", "--json"], Duration::from_secs(30)).await?;
    ensure!(run.code == Some(0), "saturn job status --json failed: {}", run.stderr);
    let listed: JobsView =
        serde_json::from_str(&run.stdout).context("saturn job status --json prints one JSON document")?;
    let jobs: Vec<&JobView> = listed.jobs.iter().filter(|j| ids.contains(&j.id)).collect();
    ensure!(jobs.len() == 12, "job status lists {} of the 12 jobs", jobs.len());

    let segments = exclusive_segments(&harness.records)?;
    for job in &jobs {
        ensure!(job.state == "completed", "{} ended {} ({:?})", job.id, job.state, job.error);
        ensure!(job.steps_done == job.steps, "{} completed at {}/{} steps", job.id, job.steps_done, job.steps);
        check_job(job, group_of[&job.id], &segments)?;
    }
    check_profiling(&group_of, &segments)?;
    for group in &GROUPS {
        let shapes: BTreeSet<(String, usize, bool)> = segments
            .iter()
            .filter(|s| group_of.get(&s.job).is_some_and(|g| g.name == group.name))
            .map(|s| (s.technique.clone(), s.gpus.len(), s.profile))
            .collect();
        eprintln!("group {}: (technique, GPUs, trial) seen {shapes:?}", group.name);
    }
    let trials = segments.iter().filter(|s| s.profile).count();
    let attempts: BTreeSet<(&str, u32)> =
        segments.iter().filter(|s| !s.profile).map(|s| (s.job.as_str(), s.attempt)).collect();
    eprintln!(
        "12 jobs completed {:.1} s after submission: {trials} trial runs, {} training attempts",
        took.as_secs_f64(),
        attempts.len()
    );
    Ok(())
}

/// The job's final state and every one of its segments respect its group's constraints.
fn check_job(job: &JobView, group: &Group, segments: &[Record]) -> Result<()> {
    let technique = job.technique.as_deref().unwrap_or("none");
    ensure!(
        group.techniques.contains(&technique),
        "{} ran as {technique}, its file allows {:?}",
        job.id,
        group.techniques
    );
    let placed: usize = job.placement.iter().map(|p| p.gpus.len()).sum();
    ensure!(
        (group.gpus.0..=group.gpus.1).contains(&placed),
        "{} ran on {placed} GPUs ({:?}), its file allows {:?}",
        job.id,
        job.placement,
        group.gpus
    );
    // The job's own records: each attempt (all its hosts together) within the bounds.
    let mut attempts: BTreeMap<(u32, bool), Vec<&Record>> = BTreeMap::new();
    for segment in segments.iter().filter(|s| s.job == job.id) {
        attempts.entry((segment.attempt, segment.profile)).or_default().push(segment);
    }
    for ((attempt, trial), parts) in &attempts {
        let gpus: usize = parts.iter().map(|p| p.gpus.len()).sum();
        let what = if *trial { "trial" } else { "attempt" };
        ensure!(
            (group.gpus.0..=group.gpus.1).contains(&gpus),
            "{} {what} {attempt} used {gpus} GPUs, its file allows {:?}: {parts:?}",
            job.id,
            group.gpus
        );
        for part in parts {
            ensure!(
                group.techniques.contains(&part.technique.as_str()),
                "{} {what} {attempt} ran as {}",
                job.id,
                part.technique
            );
        }
    }
    // The completing attempt is the one `job status` reports.
    let finals: Vec<&Record> = segments.iter().filter(|s| s.job == job.id && s.outcome == "completed").collect();
    ensure!(!finals.is_empty(), "{} is completed but no process of it ever completed: {attempts:?}", job.id);
    for part in &finals {
        ensure!(part.end_step == Some(job.steps), "{} completed at step {:?} of {}", job.id, part.end_step, job.steps);
        ensure!(part.technique == technique, "{} reports {technique}, its process ran {}", job.id, part.technique);
        let host = job.placement.iter().find(|p| p.host == part.agent);
        ensure!(
            host.is_some_and(|p| p.gpus == part.gpus),
            "{} reports placement {:?}, its process ran on {} GPUs {:?}",
            job.id,
            job.placement,
            part.agent,
            part.gpus
        );
    }
    Ok(())
}

/// User-given step times replace trial runs; the group without any is profiled by trials.
fn check_profiling(group_of: &BTreeMap<String, &Group>, segments: &[Record]) -> Result<()> {
    let mut trialled: BTreeMap<&str, BTreeSet<(String, usize)>> = BTreeMap::new();
    for trial in segments.iter().filter(|s| s.profile) {
        let group = group_of.get(&trial.job).context("a trial of one of our jobs")?;
        trialled.entry(group.name).or_default().insert((trial.technique.clone(), trial.gpus.len()));
    }
    for group in &GROUPS {
        let measured = trialled.get(group.name).cloned().unwrap_or_default();
        for (technique, gpus, _) in group.profile {
            ensure!(
                !measured.contains(&(technique.to_string(), *gpus)),
                "group {} had {technique} on {gpus} GPUs trial-run although its file gives the step time",
                group.name
            );
        }
        if group.profile.is_empty() {
            ensure!(!measured.is_empty(), "group {} has no profile, yet no trial run measured it", group.name);
        }
    }
    Ok(())
}

/// A small sweep whose step times are all given, so it runs at once.
const QUICK: [Group; 1] =
    [Group { name: "quick", steps: 200, techniques: &["ddp"], gpus: (1, 1), profile: &[("ddp", 1, 0.020)] }];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_run_wait_json_prints_one_document_and_logs_follow_returns_when_the_job_ends() {
    let harness = Harness::start(&Setup::new(3)).expect("agents start");
    if let Err(err) = cli_wait_and_follow(&harness).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn cli_wait_and_follow(harness: &Harness) -> Result<()> {
    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    let file = harness.dir().join("quick.toml");
    std::fs::write(&file, sweep_file(harness, &QUICK, 3))?;
    let path = file.display().to_string();
    let run = harness.cli(2, &["job", "run", &path, "--wait", "--json"], Duration::from_secs(90)).await?;
    ensure!(run.code == Some(0), "job run --wait --json exited {:?}: {}\n{}", run.code, run.stderr, run.stdout);
    // `from_str` refuses anything after the first document: exactly one is printed.
    let waited: JobsView =
        serde_json::from_str(&run.stdout).context("job run --wait --json prints exactly one JSON document")?;
    ensure!(waited.jobs.len() == 3, "3 jobs in the answer: {:?}", waited.jobs);
    for job in &waited.jobs {
        ensure!(
            job.state == "completed" && job.steps_done == 200,
            "{} printed as {} at {}",
            job.id,
            job.state,
            job.steps_done
        );
    }
    let listed = harness.jobs(0).await?;
    ensure!(
        waited.jobs.iter().all(|w| listed.iter().any(|j| j.id == w.id && j.state == "completed")),
        "the printed ids are the cluster's jobs"
    );

    // A longer job, followed while it runs: `logs -f` must end by itself when the job does.
    let long =
        [Group { name: "followed", steps: 400, techniques: &["ddp"], gpus: (1, 1), profile: &[("ddp", 1, 0.020)] }];
    let id = harness.submit(0, &sweep_file(harness, &long, 1)).await?.jobs[0].id.clone();
    eventually("the followed job running", Duration::from_secs(30), || async {
        let job = harness.jobs(0).await?.into_iter().find(|j| j.id == id);
        Ok(job.filter(|j| j.state == "running" && j.steps_done > 0 && j.steps_done < j.steps).map(|_| ()))
    })
    .await?;
    let follow = harness.cli(1, &["job", "logs", &id, "-f"], Duration::from_secs(60)).await?;
    ensure!(follow.code == Some(0), "job logs -f exited {:?}: {}", follow.code, follow.stderr);
    let job = harness.jobs(1).await?.into_iter().find(|j| j.id == id).context("the followed job is listed")?;
    ensure!(job.state == "completed", "logs -f returned while the job is {}", job.state);
    // The whole output, from the start to the last step, came through the follow.
    ensure!(
        follow.stdout.contains("synth-job: simulated training job"),
        "logs -f lacks the job's first line:\n{}",
        follow.stdout
    );
    ensure!(
        follow.stdout.contains("SATURN step=400"),
        "logs -f stopped before the job's last step:\n{}",
        follow.stdout
    );
    exclusive_segments(&harness.records)?;
    Ok(())
}
