//! Checkpoint replication benchmark: real `saturn-agent` processes on loopback, one
//! simulated job writing a checkpoint of each size, the default one replica.
//!
//! For each size it prints: the replication time and throughput (writer's record →
//! replica's record), Raft commit latency (p50/p99 of a stream of committed no-op
//! writes: cancelling an already-cancelled job) while idle and while the copy moves,
//! the time to elect a new leader after `kill -9` of the leader while the copy moves
//! (with the idle figure from the same run), and the resume delay after the job's host
//! is killed: kill → the job's new process running, and the fetch itself (from the
//! resuming agent's log; "local" when it held a replica).
//!
//! ```sh
//! cargo build --release -p saturn-agent --bins
//! cargo run --release -p saturn-tests --example checkpoint_bench
//! ```
//! Knobs (environment): `SATURN_BENCH_SIZES_MB` (100,1000), `SATURN_BENCH_RATE_MIB`
//! (the agents' `--checkpoint-rate-mib-s`, default 200; 0 = unlimited).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use saturn_agent::cli::client::{encode_query, ApiClient};
use saturn_agent::views::JobView;
use saturn_tests::records::{read, segments};
use saturn_tests::{Harness, Setup, SynthSweep};

fn env_list(key: &str, default: &str) -> Result<Vec<u64>> {
    let text = std::env::var(key).unwrap_or_else(|_| default.to_string());
    text.split(',').filter(|s| !s.is_empty()).map(|s| s.trim().parse().with_context(|| format!("{key}: {s:?}"))).collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let sizes = env_list("SATURN_BENCH_SIZES_MB", "100,1000")?;
    let rate = env_list("SATURN_BENCH_RATE_MIB", "200")?.first().copied().unwrap_or(200);
    let mut rows = Vec::new();
    for size_mb in sizes {
        let row = measure(size_mb, rate).await.with_context(|| format!("{size_mb} MB"))?;
        rows.push(row);
    }
    println!("\ncheckpoint replication on loopback, 3 agents, 1 replica, --checkpoint-rate-mib-s {rate}");
    println!(
        "| size | replication s | MB/s | commit p50/p99 idle ms | commit p50/p99 during ms | leader failover idle / during s | resume after host loss s | fetch s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

async fn measure(size_mb: u64, rate: u64) -> Result<String> {
    let mut setup = Setup::new(3);
    setup.extra_args.extend(["--checkpoint-rate-mib-s".to_string(), rate.to_string()]);
    let mut harness = Harness::start(&setup)?;
    harness.wait_formed(0, 3, Duration::from_secs(60)).await?;
    // The probe: a job cancelled at once; cancelling it again is a committed no-op.
    let probe_file = SynthSweep { gpus: (1, 1), profile: Some("profile = { ddp = { 1 = 1.0 } }".into()), ..SynthSweep::new("probe", 1, 10) };
    let probe = harness.submit(0, &probe_file.toml(&harness.saturn)).await?.jobs.remove(0).id;
    let client = harness.client(0);
    let _ = client.delete::<serde_json::Value>(&format!("/v1/jobs/{}", encode_query(&probe))).await;
    let idle = commit_latencies(&client, &probe, Duration::from_secs(3)).await;

    let bytes = size_mb * 1_000_000;
    // A checkpoint every 2 s (100 steps), or less often for large ones: 40 ms of steps
    // per MB, about twice what one copy took end to end on a 2-core machine (snapshot,
    // SHA-256 on both sides, 200 MiB/s pull): a job checkpointing faster than its
    // copies replicate keeps replacing the copy in flight, and the bench's phases wait
    // for a fully replicated newest checkpoint.
    let every = (size_mb * 2).max(100);
    let job_file = SynthSweep {
        base_step_ms: 20,
        techniques: r#"["ddp"]"#.into(),
        gpus: (1, 1),
        checkpoint_every: Some(every),
        profile: Some("profile = { ddp = { 1 = 0.020 } }".into()),
        extra: format!(r#", "--checkpoint-bytes", "{bytes}""#),
        ..SynthSweep::new("bench", 1, 100_000)
    };
    let id = harness.submit(0, &job_file.toml(&harness.saturn)).await?.jobs.remove(0).id;
    let recorded = poll(&client, &id, Duration::from_secs(600), |job| job.checkpoint.as_ref().is_some_and(|c| c.step > 0)).await?;
    let t0 = Instant::now();
    let step = recorded.checkpoint.as_ref().map(|c| c.step).unwrap_or_default();
    let (during, replicated) = tokio::join!(
        commit_latencies_until(&client, &probe, &id, step),
        poll(&client, &id, Duration::from_secs(600), move |job| job.checkpoint.as_ref().is_some_and(|c| c.step == step && c.copies.len() >= 2)),
    );
    let replication = t0.elapsed();
    replicated?;

    // Failover while a copy moves: wait for the next checkpoint's record (its copy then
    // starts), kill the leader, time a new leader. The leader may be the copy's writer or
    // receiver: it is killed all the same, with the copy's traffic on it.
    let failover_idle = failover(&mut harness).await?;
    let next = step + every;
    let writer = poll(&harness.client(0), &id, Duration::from_secs(600), move |job| job.checkpoint.as_ref().is_some_and(|c| c.step >= next)).await?;
    let writer = writer.placement.first().map(|p| p.host.clone()).unwrap_or_default();
    eprintln!("{size_mb} MB: step {next}'s copy moves (writer {writer})");
    let failover_during = failover(&mut harness).await?;

    // Resume delay: the job's host is killed right after a replicated checkpoint.
    let survivor_client = {
        let i = (0..3).find(|i| harness.cluster.agents[*i].name != writer && harness.cluster.agents[*i].pid().is_some()).context("a survivor")?;
        harness.client(i)
    };
    let newest = poll(&survivor_client, &id, Duration::from_secs(600), |job| {
        job.state == "running" && job.checkpoint.as_ref().is_some_and(|c| c.copies.len() >= 2 && c.copies.len() as u32 >= c.copies_wanted)
    })
    .await?;
    let host = newest.placement.first().map(|p| p.host.clone()).context("the job's host")?;
    let victim = (0..3).find(|i| harness.cluster.agents[*i].name == host).context("the host")?;
    let killed_ms = now_ms();
    let killed = Instant::now();
    harness.cluster.kill(victim)?;
    let resumed_ms = loop {
        let (ended, running) = segments(&read(&harness.records));
        let start = ended.iter().chain(running.iter()).filter(|s| s.job == id && s.agent != host && s.start_ms > killed_ms).map(|s| s.start_ms).min();
        if let Some(start) = start {
            break start;
        }
        if killed.elapsed() > Duration::from_secs(600) {
            bail!("the job never resumed after {host} was killed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let resume = Duration::from_millis(resumed_ms.saturating_sub(killed_ms));
    let fetch = (0..3)
        .filter(|i| *i != victim)
        .find_map(|i| fetch_seconds(&harness.cluster.log_tail(i, 1 << 20)))
        .map_or("local".to_string(), |s| format!("{s:.2}"));
    let _ = survivor_client.delete::<serde_json::Value>(&format!("/v1/jobs/{}", encode_query(&id))).await;
    let mbs = bytes as f64 / 1e6 / replication.as_secs_f64();
    Ok(format!(
        "| {size_mb} MB | {:.2} | {mbs:.0} | {} | {} | {:.2} / {:.2} | {:.2} | {fetch} |",
        replication.as_secs_f64(),
        p50_p99(&idle),
        p50_p99(&during?),
        failover_idle.as_secs_f64(),
        failover_during.as_secs_f64(),
        resume.as_secs_f64(),
    ))
}

/// Committed no-op writes through `client` for `length`, each timed.
async fn commit_latencies(client: &ApiClient, probe: &str, length: Duration) -> Vec<f64> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < length {
        out.push(one_commit(client, probe).await);
    }
    out
}

/// Committed no-op writes until `job`'s checkpoint `step` has its replica.
async fn commit_latencies_until(client: &ApiClient, probe: &str, job: &str, step: u64) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    let start = Instant::now();
    loop {
        out.push(one_commit(client, probe).await);
        let view: JobView = client.get_json(&format!("/v1/jobs/{}", encode_query(job))).await?;
        if view.checkpoint.as_ref().is_some_and(|c| c.step == step && c.copies.len() >= 2) || start.elapsed() > Duration::from_secs(600) {
            return Ok(out);
        }
    }
}

async fn one_commit(client: &ApiClient, probe: &str) -> f64 {
    let t = Instant::now();
    let _ = client.delete::<serde_json::Value>(&format!("/v1/jobs/{}", encode_query(probe))).await;
    t.elapsed().as_secs_f64() * 1000.0
}

/// Kills the leader, times a survivor seeing a new one, restarts it.
async fn failover(harness: &mut Harness) -> Result<Duration> {
    let leader = harness.leader_index(0).await?;
    let name = harness.cluster.agents[leader].name.clone();
    eprintln!("killing the leader {name}");
    let survivor = (leader + 1) % 3;
    let down = Instant::now();
    harness.cluster.kill(leader)?;
    let elected = loop {
        if let Ok(status) = harness.status(survivor).await {
            if status.leader.as_deref().is_some_and(|l| l != name) {
                break down.elapsed();
            }
        }
        if down.elapsed() > Duration::from_secs(60) {
            bail!("no new leader within a minute");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    harness.cluster.restart(leader)?;
    harness.wait_formed(survivor, 3, Duration::from_secs(60)).await?;
    Ok(elected)
}

async fn poll(client: &ApiClient, id: &str, timeout: Duration, done: impl Fn(&JobView) -> bool) -> Result<JobView> {
    let start = Instant::now();
    loop {
        if let Ok(job) = client.get_json::<JobView>(&format!("/v1/jobs/{}", encode_query(id))).await {
            if done(&job) {
                return Ok(job);
            }
        }
        if start.elapsed() > timeout {
            bail!("timed out waiting on {id}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `seconds=` of the last "checkpoint fetched" line of an agent's log.
fn fetch_seconds(log: &str) -> Option<f64> {
    let line = log.lines().rev().find(|l| l.contains("checkpoint fetched"))?;
    let at = line.find("seconds=")?;
    line[at + 8..].split_whitespace().next()?.parse().ok()
}

fn p50_p99(samples: &[f64]) -> String {
    if samples.is_empty() {
        return "-".into();
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    format!("{:.1} / {:.1} (n={})", at(0.5), at(0.99), sorted.len())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
