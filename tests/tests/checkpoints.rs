//! Checkpoints that move with their job, end to end (real agents on 127.0.0.1, the
//! simulated job writing real checkpoint bytes and verifying them on resume).
//!
//! - With the default one replica, `kill -9` of the host running a job right after its
//!   checkpoint was replicated: the job resumes on another host from that checkpoint,
//!   and the job itself verified the bytes it resumed from.
//! - With `--checkpoint-replicas 0`, the same loss resumes from step 0 and the job's
//!   events say why.
//! - Introspection moving a running job to another host (a better placement freed up):
//!   its next attempt starts from the checkpoint it wrote on the first host.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use saturn_agent::cli::client::encode_query;
use saturn_agent::views::JobView;
use saturn_tests::{eventually, exclusive_segments, Harness, Setup, SynthSweep};

const STEPS: u64 = 600;
const CHECKPOINT_EVERY: u64 = 60;
/// 2 MB of "model" per checkpoint.
const CHECKPOINT_BYTES: u64 = 2_000_000;

/// One job of one GPU, ~20 ms a step (12 s in all), step times given.
fn one_job(harness: &Harness, name: &str) -> String {
    SynthSweep {
        base_step_ms: 20,
        techniques: r#"["ddp"]"#.into(),
        gpus: (1, 1),
        checkpoint_every: Some(CHECKPOINT_EVERY),
        profile: Some("profile = { ddp = { 1 = 0.020 } }".into()),
        extra: format!(r#", "--checkpoint-bytes", "{CHECKPOINT_BYTES}""#),
        ..SynthSweep::new(name, 1, STEPS)
    }
    .toml(&harness.saturn)
}

/// The job's host and checkpoint step once a checkpoint past step 0 has `copies` copies.
async fn checkpointed(harness: &Harness, id: &str, copies: usize) -> Result<(String, u64)> {
    eventually("a replicated checkpoint", Duration::from_secs(60), || async {
        let job: JobView = harness.client(0).get_json(&format!("/v1/jobs/{}", encode_query(id))).await?;
        let Some(ckpt) = job.checkpoint.as_ref().filter(|c| c.step > 0 && c.copies.len() >= copies) else { return Ok(None) };
        ensure!(ckpt.size >= CHECKPOINT_BYTES, "a checkpoint of {} bytes, the job writes {CHECKPOINT_BYTES}", ckpt.size);
        let host = job.placement.first().map(|p| p.host.clone()).filter(|_| job.state == "running");
        Ok(host.map(|host| (host, ckpt.step)))
    })
    .await
}

async fn kill_host_of(harness: &mut Harness, replicas: u32) -> Result<(String, u64, String, JobView)> {
    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    let id = harness.submit(0, &one_job(harness, &format!("r{replicas}"))).await?.jobs.remove(0).id;
    let (host, step) = checkpointed(harness, &id, 1 + replicas as usize).await?;
    let victim = (0..3).find(|i| harness.cluster.agents[*i].name == host).context("the job's host")?;
    let survivor = (victim + 1) % 3;
    harness.cluster.kill(victim)?;
    let killed = Instant::now();
    eprintln!("killed {host} right after checkpoint step {step} of {id} ({replicas} replicas)");
    let job = harness.wait_jobs_ended(survivor, std::slice::from_ref(&id), Duration::from_secs(120)).await?.remove(0);
    eprintln!("{id} ended {} {:.1} s after the kill", job.state, killed.elapsed().as_secs_f64());
    ensure!(job.state == "completed", "{id} ended {} ({:?}); events {:?}", job.state, job.error, job.events);
    let log = harness.client(survivor).get_text(&format!("/v1/jobs/{}/logs?tail=100000", encode_query(&id))).await?;
    Ok((host, step, log, job))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_resumes_elsewhere_from_the_checkpoint_its_dead_host_wrote() {
    let mut harness = Harness::start(&Setup::new(3)).expect("agents start");
    let outcome = async {
        let (host, step, log, job) = kill_host_of(&mut harness, 1).await?;
        let segments = exclusive_segments(&harness.records)?;
        let later: Vec<_> = segments.iter().filter(|s| s.job == job.id && s.agent != host && !s.profile).collect();
        ensure!(!later.is_empty(), "{} never ran after {host} died", job.id);
        for segment in &later {
            ensure!(segment.start_step >= step, "attempt {} started at {} below the replicated checkpoint {step}", segment.attempt, segment.start_step);
        }
        let first = later.iter().map(|s| s.start_step).min().unwrap_or_default();
        ensure!(
            log.contains(&format!("resuming from the checkpoint at step {first} ({CHECKPOINT_BYTES} bytes verified)")),
            "the job did not verify the checkpoint it resumed from; log:\n{log}"
        );
        ensure!(!job.events.iter().any(|e| e.text.contains("step 0")), "no fallback: {:?}", job.events);
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(err) = outcome {
        panic!("{err:#}\n{}", harness.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replicas_a_lost_host_means_a_restart_from_step_zero_with_an_event() {
    let mut setup = Setup::new(3);
    setup.extra_args.extend(["--checkpoint-replicas".to_string(), "0".to_string()]);
    let mut harness = Harness::start(&setup).expect("agents start");
    let outcome = async {
        let (host, step, _log, job) = kill_host_of(&mut harness, 0).await?;
        let segments = exclusive_segments(&harness.records)?;
        let later: Vec<_> = segments.iter().filter(|s| s.job == job.id && s.agent != host && !s.profile).collect();
        ensure!(later.iter().any(|s| s.start_step == 0), "checkpoint {step} existed only on {host}: {later:?}");
        let event = job.events.iter().find(|e| e.text.contains("starting from step 0"));
        let event = event.with_context(|| format!("no event says why: {:?}", job.events))?;
        ensure!(event.text.contains(&host) && event.text.contains("down"), "{event:?}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(err) = outcome {
        panic!("{err:#}\n{}", harness.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_one_shared_root_move_no_bytes_and_another_directory_is_refused() {
    let root = tempfile::tempdir().expect("a shared root");
    let mut setup = Setup::new(3);
    setup.extra_args.extend(["--checkpoint-root".to_string(), root.path().display().to_string()]);
    let mut harness = Harness::start(&setup).expect("agents start");
    let outcome = async {
        let (host, step, log, job) = kill_host_of(&mut harness, 0).await?;
        let segments = exclusive_segments(&harness.records)?;
        let later: Vec<_> = segments.iter().filter(|s| s.job == job.id && s.agent != host && !s.profile).collect();
        ensure!(later.iter().all(|s| s.start_step >= step) && !later.is_empty(), "resumed below {step}: {later:?}");
        ensure!(log.contains(&format!("({CHECKPOINT_BYTES} bytes verified)")), "the job did not verify its checkpoint:\n{log}");
        let replicated = job.checkpoint.as_ref().map_or(0, |c| c.bytes_replicated);
        ensure!(replicated == 0, "{replicated} bytes copied between agents on shared storage");

        // An agent restarted with a root that is another directory refuses to run.
        let other = tempfile::tempdir()?;
        let i = (0..3).find(|i| harness.cluster.agents[*i].name != host).context("a survivor")?;
        harness.cluster.stop(i, Duration::from_secs(20));
        let args = &mut harness.cluster.agents[i].args;
        let at = args.iter().position(|a| a == "--checkpoint-root").context("the flag")? + 1;
        args[at] = other.path().display().to_string();
        harness.cluster.restart(i)?;
        let cluster = &mut harness.cluster;
        eventually("the agent on another directory to exit", Duration::from_secs(60), || {
            let running = cluster.agents[i].is_running();
            async move { Ok((!running).then_some(())) }
        })
        .await?;
        let tail = harness.cluster.log_tail(i, 4000);
        ensure!(tail.contains("not the cluster's shared checkpoint storage"), "no clear refusal:\n{tail}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(err) = outcome {
        panic!("{err:#}\n{}", harness.logs());
    }
}

/// Two agents of different GPU models, so no gang spans them: `x` has 2 GPUs, `y` one.
/// A 2-GPU job `k` declared to take 150 s (it really takes a few seconds) holds `x`; `j`
/// (1 or 2 GPUs, declared 0.5 s a step on one GPU and 0.01 s on two) starts on `y`, since
/// waiting for `x` looks worse. When `k` ends early, moving `j` to `x`'s two GPUs saves
/// far more than the switch cost: introspection preempts it, and its next attempt on `x`
/// must start from the checkpoint it wrote on `y`, verified by the job itself.
fn move_pair(saturn: &std::path::Path) -> String {
    let synth = |base_ms: u32, every: u64| {
        format!(
            r#"["{}", "synth-job", "--model-gb", "1", "--base-step-ms", "{base_ms}", "--compute-fraction", "0.8", "--checkpoint-every", "{every}", "--checkpoint-bytes", "{CHECKPOINT_BYTES}"]"#,
            saturn.display()
        )
    };
    format!(
        r#"
[[job]]
name = "k"
command = {k}
steps = 200
techniques = ["ddp"]
gpus = [2, 2]
profile = {{ ddp = {{ 2 = 0.75 }} }}

[[job]]
name = "j"
command = {j}
steps = 200
techniques = ["ddp"]
gpus = [1, 2]
profile = {{ ddp = {{ 1 = 0.5, 2 = 0.01 }} }}
"#,
        k = synth(30, 1000),
        j = synth(100, 10),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_moving_a_job_to_another_host_carries_its_checkpoint() {
    let setup = Setup { bootstrap_expect: 2, ..Setup::new(2) };
    let mut harness = Harness::prepare(&setup, &[]).expect("agents prepared");
    for (i, gpus) in ["sim:2xSIM-24GB", "sim:1xOLD-24GB"].into_iter().enumerate() {
        let args = &mut harness.cluster.agents[i].args;
        let at = args.iter().position(|a| a == "--gpus").expect("the flag") + 1;
        args[at] = gpus.to_string();
        harness.cluster.spawn(i).expect("agent starts");
    }
    let outcome = async {
        let (x, y) = (harness.cluster.agents[0].name.clone(), harness.cluster.agents[1].name.clone());
        harness.wait_formed(0, 2, Duration::from_secs(40)).await?;
        let ids: Vec<String> = harness.submit(0, &move_pair(&harness.saturn)).await?.jobs.into_iter().map(|j| j.id).collect();
        let jobs = harness.wait_jobs_ended(0, &ids, Duration::from_secs(150)).await?;
        for job in &jobs {
            ensure!(job.state == "completed", "{} ended {} ({:?}); events {:?}", job.name, job.state, job.error, job.events);
        }
        let j = jobs.iter().find(|job| job.name == "j").context("job j")?;
        let segments = exclusive_segments(&harness.records)?;
        let mut runs: Vec<_> = segments.iter().filter(|s| s.job == j.id && !s.profile).collect();
        runs.sort_by_key(|s| s.start_ms);
        let first = runs.first().context("j never ran")?;
        ensure!(first.agent == y && first.start_step == 0, "j should start on {y}, the only free GPU: {runs:?}");
        let moved = runs.iter().find(|s| s.agent == x).with_context(|| format!("j was never moved to {x}: {runs:?}"))?;
        ensure!(moved.start_step > 0, "j restarted from step 0 on {x}, its checkpoint did not follow it: {runs:?}");
        ensure!(j.restarts == 0, "a move is not a failure: {} restarts", j.restarts);
        let log = harness.client(0).get_text(&format!("/v1/jobs/{}/logs?tail=100000", encode_query(&j.id))).await?;
        let verified = format!("resuming from the checkpoint at step {} ({CHECKPOINT_BYTES} bytes verified)", moved.start_step);
        ensure!(log.contains(&verified), "j did not verify the checkpoint it resumed from on {x}; log:\n{log}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(err) = outcome {
        panic!("{err:#}\n{}", harness.logs());
    }
}
