//! A real-PyTorch sweep through Saturn: two agents on loopback with two simulated GPUs
//! each, and four jobs training the example GPT (`examples/torch/gpt.py`, tiny size)
//! through `saturn_train` on CPU/gloo:
//!
//! - three learning rates (one profile group, techniques `ddp` and `spilling`, 1–2
//!   GPUs): trial runs measure their real step times (`spilling` on 2 GPUs exits 3 and is
//!   recorded infeasible), the plan picks a technique for each, every job completes, and
//!   each job's training log shows the technique the plan gave it;
//! - one 4-GPU DDP job: on two 2-GPU hosts only a 2-host gang can hold it; its ranks
//!   meet (every rank on this machine, so on loopback), train and complete.
//!
//! Needs a Python with torch and saturn_train (`$SATURN_PYTHON`, else
//! `~/.cache/saturn-venv/bin/python`); without one the test does not run, and under
//! `CI=true` it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use saturn_agent::views::{JobView, PlanView, ProfilesView};
use saturn_tests::torch::{self, attempt_log, banner_field};
use saturn_tests::{eventually, Harness, Setup};

/// Trials, planning and four tiny jobs on a loaded 2-core machine.
const RUN: Duration = Duration::from_secs(420);
/// Steps of each tiny job.
const STEPS: u64 = 60;

fn sweep(python: &str, script: &str) -> String {
    format!(
        r#"
[[sweep]]
name = "gpt-lr{{lr}}"
command = ["{python}", "{script}", "--size", "tiny", "--bs", "8", "--lr", "{{lr}}", "--device", "cpu"]
grid = {{ lr = ["1e-3", "3e-3", "1e-2"] }}
steps = {STEPS}
techniques = ["ddp", "spilling"]
gpus = [1, 2]
profile_group = "tiny"
max_restarts = 1
env = {{ SATURN_TRAIN_CHECKPOINT_EVERY = "30" }}

[[job]]
name = "gang"
command = ["{python}", "{script}", "--size", "tiny", "--bs", "8", "--device", "cpu"]
steps = 40
techniques = ["ddp"]
gpus = [4, 4]
max_restarts = 1
env = {{ SATURN_TRAIN_CHECKPOINT_EVERY = "20" }}

[job.profile]
ddp = {{ 4 = 0.3 }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_torch_sweep_is_profiled_planned_and_trained_with_a_two_host_gang() {
    let Some(python) = torch::python_or_skip("a_real_torch_sweep_is_profiled_planned_and_trained_with_a_two_host_gang") else {
        return;
    };
    let mut setup = Setup::new(2);
    setup.gpus = "sim:2xSIM-24GB".into();
    let h = Harness::start(&setup).expect("agents start");
    if let Err(err) = scenario(&h, &python).await {
        panic!("{err:#}\n{}", h.logs());
    }
}

async fn scenario(h: &Harness, python: &std::path::Path) -> Result<()> {
    h.wait_formed(0, 2, Duration::from_secs(60)).await?;
    let started = Instant::now();
    let script = torch::gpt_script();
    let submitted = h.submit(0, &sweep(&python.display().to_string(), &script.display().to_string())).await?;
    let ids: Vec<String> = submitted.jobs.iter().map(|j| j.id.clone()).collect();
    ensure!(ids.len() == 4, "4 jobs expected: {submitted:?}");

    // Every technique any committed plan gave each job, watched until all have ended.
    let planned: Mutex<BTreeMap<String, BTreeSet<String>>> = Mutex::default();
    let jobs: Vec<JobView> = eventually("every job to end", RUN, || async {
        if let Ok(plan) = h.client(0).get_json::<PlanView>("/v1/plan").await {
            let mut planned = planned.lock().unwrap_or_else(PoisonError::into_inner);
            for assignment in plan.assignments {
                planned.entry(assignment.job).or_default().insert(assignment.technique);
            }
        }
        let jobs: Vec<JobView> = h.jobs(0).await?.into_iter().filter(|j| ids.contains(&j.id)).collect();
        let ended = jobs.len() == ids.len() && jobs.iter().all(|j| matches!(j.state.as_str(), "completed" | "failed" | "cancelled"));
        Ok(ended.then_some(jobs))
    })
    .await?;
    let planned = planned.into_inner().unwrap_or_else(PoisonError::into_inner);
    let took = started.elapsed();

    // Trials measured real step times; `spilling` cannot run on two GPUs.
    let profiles: ProfilesView = h.client(0).get_json("/v1/profiles").await?;
    let tiny: Vec<_> = profiles.profiles.iter().filter(|p| p.profile_group == "tiny").collect();
    for p in &tiny {
        eprintln!("trial {} x{} on {} host(s): {:?} {:?}", p.technique, p.gpus_per_host, p.hosts, p.step_time_s, p.infeasible);
    }
    let measured = |technique: &str, gpus: u32| {
        tiny.iter().any(|p| p.technique == technique && p.gpus_per_host == gpus && p.step_time_s.is_some_and(|t| t > 0.0))
    };
    ensure!(measured("ddp", 1) && measured("spilling", 1), "no measured step time for ddp and spilling on 1 GPU: {tiny:?}");
    ensure!(
        tiny.iter().any(|p| p.technique == "spilling" && p.gpus_per_host == 2 && p.infeasible.is_some()),
        "spilling on 2 GPUs was not recorded infeasible: {tiny:?}"
    );

    for job in &jobs {
        ensure!(job.state == "completed", "{} did not complete: {job:?}", job.name);
        let technique = job.technique.clone().context("a completed job has a technique")?;
        let given = planned.get(&job.id).cloned().unwrap_or_default();
        ensure!(given.contains(&technique), "{} ran as {technique}, which no plan gave it ({given:?})", job.name);
        // The training attempt's log, on every host it ran on.
        let logs: Vec<String> =
            h.cluster.agents.iter().filter_map(|agent| attempt_log(&agent.data_dir, &job.id, job.attempt)).collect();
        ensure!(!logs.is_empty(), "no log of {} attempt {}", job.name, job.attempt);
        for log in &logs {
            ensure!(banner_field(log, "technique") == Some(technique.as_str()), "{}'s log does not show {technique}:\n{log}", job.name);
            ensure!(banner_field(log, "trial") == Some("False"), "{}: attempt {} is a trial:\n{log}", job.name, job.attempt);
        }
        let last = if job.name == "gang" { 40 } else { STEPS };
        ensure!(logs[0].contains(&format!("SATURN step={last}")), "{} did not train to step {last}", job.name);
        eprintln!("{}: {technique} on {:?}", job.name, logs.iter().map(|l| banner_field(l, "world_size")).collect::<Vec<_>>());
        if job.name == "gang" {
            ensure!(logs.len() == 2, "the gang ran on {} host(s), not 2", logs.len());
            let mut ranks: Vec<_> = logs.iter().map(|l| banner_field(l, "node_rank")).collect();
            ranks.sort();
            ensure!(ranks == [Some("0"), Some("1")], "node ranks {ranks:?}");
            for log in &logs {
                ensure!(banner_field(log, "nnodes") == Some("2") && banner_field(log, "world_size") == Some("4"), "{log}");
                // Both agents run on this machine's loopback: so does the rendezvous.
                ensure!(banner_field(log, "master").is_some_and(|m| m.starts_with("127.0.0.1:")), "{log}");
            }
        }
    }
    eprintln!("4 real-torch jobs profiled, planned and trained in {took:?}");
    Ok(())
}

/// Steps of the job whose host is killed: long enough (~10 ms a step on CPU) that the
/// kill lands mid-run, after a replicated checkpoint.
const RESUME_STEPS: u64 = 3000;

/// A real-torch job resumes on another host from the checkpoint its dead host wrote: the
/// agent replicated `saturn_train`'s checkpoint directory to a second agent, fetched it
/// back before the new attempt started, and the library loaded it (it refuses to start
/// at `SATURN_START_STEP=N` without `step-N`, exit 2, so a completed job proves the
/// bytes were there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_torch_job_resumes_on_another_host_from_its_replicated_checkpoint() {
    let Some(python) = torch::python_or_skip("a_real_torch_job_resumes_on_another_host_from_its_replicated_checkpoint") else {
        return;
    };
    let mut setup = Setup::new(3);
    setup.gpus = "sim:1xSIM-24GB".into();
    let mut h = Harness::start(&setup).expect("agents start");
    if let Err(err) = resume_scenario(&mut h, &python).await {
        panic!("{err:#}\n{}", h.logs());
    }
}

async fn resume_scenario(h: &mut Harness, python: &std::path::Path) -> Result<()> {
    h.wait_formed(0, 3, Duration::from_secs(60)).await?;
    let script = torch::gpt_script();
    let toml = format!(
        r#"
[[job]]
name = "moves"
command = ["{python}", "{script}", "--size", "tiny", "--bs", "8", "--device", "cpu"]
steps = {RESUME_STEPS}
techniques = ["ddp"]
gpus = [1, 1]
max_restarts = 1
env = {{ SATURN_TRAIN_CHECKPOINT_EVERY = "200" }}

[job.profile]
ddp = {{ 1 = 0.01 }}
"#,
        python = python.display(),
        script = script.display()
    );
    let id = h.submit(0, &toml).await?.jobs.remove(0).id;
    // Running, with a checkpoint past step 0 verified on two hosts.
    let (host, step) = eventually("a replicated checkpoint of the running job", Duration::from_secs(180), || async {
        let job: JobView = h.client(0).get_json(&format!("/v1/jobs/{id}")).await?;
        let Some(ckpt) = job.checkpoint.as_ref().filter(|c| c.step > 0 && c.copies.len() >= 2) else { return Ok(None) };
        Ok(job.placement.first().filter(|_| job.state == "running").map(|p| (p.host.clone(), ckpt.step)))
    })
    .await?;
    let victim = h.cluster.agents.iter().position(|a| a.name == host).context("the job's host")?;
    let survivor = (victim + 1) % 3;
    h.cluster.kill(victim)?;
    eprintln!("killed {host} after checkpoint step {step} of {id}");
    let job = h.wait_jobs_ended(survivor, std::slice::from_ref(&id), RUN).await?.remove(0);
    ensure!(job.state == "completed", "{id} ended {} ({:?}); events {:?}", job.state, job.error, job.events);
    let resumed: Vec<(String, String)> = h
        .cluster
        .agents
        .iter()
        .filter(|a| a.name != host)
        .filter_map(|a| attempt_log(&a.data_dir, &id, job.attempt).map(|log| (a.name.clone(), log)))
        .collect();
    let (on, log) = resumed.first().context("no log of the final attempt on a surviving host")?;
    let line = log.lines().find(|l| l.contains("saturn_train: resumed at step")).with_context(|| format!("{on}: no resume line:\n{log}"))?;
    let at: u64 = line.split("resumed at step ").nth(1).and_then(|rest| rest.split_whitespace().next()).and_then(|s| s.parse().ok()).context("step")?;
    ensure!(at >= step, "{on} resumed at step {at}, before the replicated checkpoint {step}");
    ensure!(log.contains(&format!("SATURN step={RESUME_STEPS}")), "{on} did not train to the end:\n{log}");
    eprintln!("{id} resumed on {on} at step {at} (checkpoint {step} replicated before {host} died)");
    Ok(())
}
