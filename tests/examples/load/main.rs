//! Load benchmark: many agents on loopback and ten thousand queued jobs, measured the way
//! a user would feel them. Prints one table; it is a program, not a timed test.
//!
//! ```sh
//! cargo build --release -p saturn-agent --bins
//! cargo run --release -p saturn-tests --example load
//! SATURN_LOAD_AGENTS=5 SATURN_LOAD_JOBS=1000 cargo run --release -p saturn-tests --example load
//! ```
//! Knobs (environment): `SATURN_LOAD_AGENTS` (20), `SATURN_LOAD_JOBS` (10000),
//! `SATURN_LOAD_BATCH` jobs per POST (100), `SATURN_LOAD_SUBMITTERS` concurrent
//! submitters (4), `SATURN_LOAD_SAMPLES` requests per read endpoint (40).
//!
//! Every agent runs `--gpus sim:8xSIM-24GB --no-mdns --heartbeat-ms 500`; jobs carry
//! their own profiles (no trial runs) and have minute-long steps, so a few run and the
//! rest stay scheduled while reads are measured. Every process it starts (agents and
//! their jobs) is stopped at the end, on error, on panic and on Ctrl-C, and the end of
//! the run checks that none is left.

mod probe;
mod workload;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use probe::{gauge, memory_mib, CpuWindow, Latencies};
use saturn_agent::cli::client::ApiClient;
use saturn_agent::local_cluster::{sibling_bin_dir, ClusterOptions, LocalCluster};
use saturn_agent::views::{PlanView, StatusView};

/// Limit of any single HTTP call of the benchmark.
const CALL_LIMIT: Duration = Duration::from_secs(120);

struct Settings {
    agents: usize,
    jobs: usize,
    batch: usize,
    submitters: usize,
    samples: usize,
}

fn env_number(key: &str, default: usize) -> Result<usize> {
    match std::env::var(key) {
        Ok(text) => text.parse().with_context(|| format!("{key}={text:?} is not a number")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Self> {
        let settings = Settings {
            agents: env_number("SATURN_LOAD_AGENTS", 20)?,
            jobs: env_number("SATURN_LOAD_JOBS", 10_000)?,
            batch: env_number("SATURN_LOAD_BATCH", 100)?,
            submitters: env_number("SATURN_LOAD_SUBMITTERS", 4)?,
            samples: env_number("SATURN_LOAD_SAMPLES", 40)?,
        };
        if settings.agents < 2 || settings.batch == 0 || settings.jobs == 0 {
            bail!("need at least 2 agents (submissions go through a follower), and a batch and job count above 0");
        }
        Ok(settings)
    }
}

/// One row of the result table.
struct Row(String, String);

fn row(what: impl Into<String>, value: impl Into<String>) -> Row {
    Row(what.into(), value.into())
}

async fn call<T>(what: &str, future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CALL_LIMIT, future).await.map_err(|_| anyhow!("{what}: no answer within {CALL_LIMIT:?}"))?
}

fn client(cluster: &LocalCluster, i: usize) -> Result<ApiClient> {
    cluster.client(i)
}

fn pid(cluster: &LocalCluster, i: usize) -> Result<u32> {
    cluster.agents[i].pid().with_context(|| format!("{} is not running", cluster.agents[i].name))
}

/// Polls agent 0 until all agents are healthy with their GPUs; returns the leader's index.
async fn wait_formed(cluster: &LocalCluster, timeout: Duration) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    let api = client(cluster, 0)?;
    loop {
        if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(10), api.get_json::<StatusView>("/v1/status")).await {
            let healthy = status.agents.iter().filter(|a| a.healthy && !a.gpus.is_empty()).count();
            if let (Some(leader), true) = (&status.leader, healthy >= cluster.agents.len()) {
                return cluster.agents.iter().position(|a| &a.name == leader).context("the leader is not one of ours");
            }
        }
        if Instant::now() > deadline {
            bail!("the cluster did not form within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// RSS (MiB) of the agents in `which`, as (median, max).
fn rss_of(cluster: &LocalCluster, which: impl Iterator<Item = usize>) -> (f64, f64) {
    let mut rss: Vec<f64> = which.filter_map(|i| cluster.agents[i].pid().and_then(memory_mib)).map(|(rss, _)| rss).collect();
    rss.sort_by(f64::total_cmp);
    (rss.get(rss.len() / 2).copied().unwrap_or(0.0), rss.last().copied().unwrap_or(0.0))
}

/// Polls `/v1/status` on `api` every 250 ms until `stop` fires.
async fn probe_status(api: ApiClient, mut stop: tokio::sync::oneshot::Receiver<()>) -> Latencies {
    let mut latencies = Latencies::default();
    loop {
        let sent = Instant::now();
        if call("status", api.get_text("/v1/status")).await.is_ok() {
            latencies.add(sent.elapsed());
        }
        tokio::select! {
            _ = &mut stop => return latencies,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Waits until the committed plan covers `jobs` jobs; returns when it did, with the
/// largest solve time the leader reported meanwhile.
async fn wait_full_plan(api: &ApiClient, jobs: usize, timeout: Duration) -> Result<(Duration, usize, f64)> {
    let started = Instant::now();
    let mut slowest_solve: f64 = 0.0;
    let mut planned = 0;
    while started.elapsed() < timeout {
        let metrics = call("metrics", api.get_text("/metrics")).await?;
        slowest_solve = slowest_solve.max(gauge(&metrics, "saturn_planner_solve_seconds").unwrap_or(0.0));
        if let Ok(plan) = call("plan", api.get_json::<PlanView>("/v1/plan")).await {
            planned = plan.assignments.len();
            if planned >= jobs {
                return Ok((started.elapsed(), planned, slowest_solve));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("after {timeout:?} the plan covers {planned} of {jobs} jobs")
}

/// `samples` sequential GETs of `path`; latency until the whole body arrived.
async fn read_latency(api: &ApiClient, path: &str, samples: usize) -> Result<(Latencies, usize)> {
    let mut latencies = Latencies::default();
    let mut bytes = 0;
    for _ in 0..samples {
        let sent = Instant::now();
        bytes = call(path, api.get_text(path)).await?.len();
        latencies.add(sent.elapsed());
    }
    Ok((latencies, bytes))
}

async fn run(cluster: &LocalCluster, settings: &Settings, saturn: &std::path::Path, workdir: &std::path::Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let started = Instant::now();
    let leader = wait_formed(cluster, Duration::from_secs(300)).await?;
    rows.push(row("cluster formed (all agents healthy)", format!("{:.1} s", started.elapsed().as_secs_f64())));
    let (idle_median, idle_max) = rss_of(cluster, 0..cluster.agents.len());
    rows.push(row("idle agent RSS, median / max", format!("{idle_median:.1} / {idle_max:.1} MiB")));

    let follower = (leader + 1) % cluster.agents.len();
    let leader_api = client(cluster, leader)?;
    let cpu = CpuWindow::start(pid(cluster, leader)?);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let prober = tokio::spawn(probe_status(leader_api.clone(), stopped));
    let submission = workload::submit_all(&client(cluster, follower)?, saturn, workdir, settings.jobs, settings.batch, settings.submitters).await?;
    let _ = stop.send(());
    let status_during = prober.await.context("the status prober panicked")?;
    let cpu_submitting = cpu.percent().unwrap_or(0.0);
    let throughput = submission.jobs as f64 / submission.elapsed.as_secs_f64();
    rows.push(row(
        format!("submission: {} jobs, {} per POST, {} submitters, via a follower", submission.jobs, settings.batch, settings.submitters),
        format!("{:.1} s, {throughput:.0} jobs/s", submission.elapsed.as_secs_f64()),
    ));
    rows.push(row("  POST /v1/jobs latency per batch, p50 / p99", submission.per_batch.p50_p99()));
    rows.push(row("  batches retried after an error (503 on a leader change)", submission.retries.to_string()));
    rows.push(row("  leader /v1/status latency while submitting, p50 / p99", status_during.p50_p99()));
    rows.push(row("  leader CPU while submitting (100% = one core)", format!("{cpu_submitting:.0}%")));

    // A leader change during the submission moves the planning elsewhere: follow it.
    let leader = wait_formed(cluster, Duration::from_secs(120)).await?;
    let leader_api = client(cluster, leader)?;
    let (plan_wait, planned, slowest) = wait_full_plan(&leader_api, settings.jobs, Duration::from_secs(600)).await?;
    let metrics = call("metrics", leader_api.get_text("/metrics")).await?;
    let solve = gauge(&metrics, "saturn_planner_solve_seconds").unwrap_or(f64::NAN);
    let epoch = gauge(&metrics, "saturn_plan_epoch").unwrap_or(f64::NAN);
    let solves = gauge(&metrics, "saturn_planner_solves_total").unwrap_or(f64::NAN);
    rows.push(row(format!("plan covering all {planned} jobs committed after the last POST"), format!("{:.1} s", plan_wait.as_secs_f64())));
    rows.push(row("  planner_solve_seconds: last / slowest seen", format!("{solve:.2} / {slowest:.2} s")));
    rows.push(row("  plan epoch / solves by this leader", format!("{epoch} / {solves}")));

    // The leader on its own with the jobs: scheduler ticks, heartbeats, progress events.
    let quiet = CpuWindow::start(pid(cluster, leader)?);
    let everyone: Vec<CpuWindow> = cluster.agents.iter().filter_map(|a| a.pid()).map(CpuWindow::start).collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    rows.push(row(format!("leader CPU, {} jobs, no API requests (10 s)", settings.jobs), format!("{:.0}%", quiet.percent().unwrap_or(0.0))));
    let total: f64 = everyone.iter().filter_map(CpuWindow::percent).sum();
    rows.push(row("  all agents' CPU together in that window", format!("{total:.0}% ({} cores here)", cores())));

    let busy = CpuWindow::start(pid(cluster, leader)?);
    for path in ["/v1/status", "/v1/jobs", "/v1/plan"] {
        let (latencies, bytes) = read_latency(&leader_api, path, settings.samples).await?;
        rows.push(row(format!("leader GET {path} ({} KiB), p50 / p99", bytes / 1024), latencies.p50_p99()));
    }
    rows.push(row("  leader CPU while serving those reads", format!("{:.0}%", busy.percent().unwrap_or(0.0))));
    let (follower_jobs, _) = read_latency(&client(cluster, follower)?, "/v1/jobs", settings.samples).await?;
    rows.push(row("follower GET /v1/jobs, p50 / p99", follower_jobs.p50_p99()));

    let (rss, peak) = memory_mib(pid(cluster, leader)?).unwrap_or_default();
    rows.push(row("leader RSS now / peak", format!("{rss:.1} / {peak:.1} MiB")));
    let (median, max) = rss_of(cluster, (0..cluster.agents.len()).filter(|i| *i != leader));
    rows.push(row(format!("other agents' RSS with {} jobs, median / max", settings.jobs), format!("{median:.1} / {max:.1} MiB")));
    let running = metrics.lines().find_map(|l| l.strip_prefix("saturn_jobs{state=\"running\"} ")).unwrap_or("?");
    let changes = gauge(&metrics, "saturn_raft_leader_changes_total").unwrap_or(f64::NAN);
    rows.push(row("jobs running / leader changes seen by the leader", format!("{running} / {changes}")));
    Ok(rows)
}

/// CPU cores of this machine: the agents' CPU share is bounded by it.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Resolves on Ctrl-C or SIGTERM, so the cluster is still stopped.
async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let bin_dir = sibling_bin_dir()?;
    let saturn = bin_dir.join("saturn");
    if !saturn.exists() || !bin_dir.join("saturn-agent").exists() {
        bail!("{} lacks saturn and saturn-agent: run `cargo build --release -p saturn-agent --bins` first", bin_dir.display());
    }
    let dir = tempfile::Builder::new().prefix("saturn-load-").tempdir().context("creating a temp dir")?;
    let options = ClusterOptions {
        bin_dir,
        base_dir: dir.path().to_path_buf(),
        names: (0..settings.agents).map(|i| format!("agent-{i:02}")).collect(),
        gpus: "sim:8xSIM-24GB".into(),
        // All agents start at once, so all of them form the cluster together: with a
        // smaller expectation, several groups may each see enough agents and initialise
        // clusters of their own (see `saturn_consensus::membership::formation`).
        bootstrap_expect: settings.agents,
        extra_args: vec!["--heartbeat-ms".into(), "500".into()],
        env: Vec::new(),
    };
    eprintln!("starting {} agents in {} ...", settings.agents, dir.path().display());
    let cluster = LocalCluster::start(&options)?;
    let outcome = tokio::select! {
        outcome = run(&cluster, &settings, &saturn, dir.path()) => outcome,
        _ = interrupted() => Err(anyhow!("interrupted")),
    };
    if outcome.is_err() {
        eprintln!("last lines of agent-00's log:\n{}", cluster.log_tail(0, 2000));
    }
    let failed = outcome.is_err();
    let stopping = Instant::now();
    drop(cluster);
    let left = probe::processes_under(dir.path());
    for pid in &left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    if failed {
        eprintln!("agent logs kept in {}", dir.keep().display());
    }
    let mut rows = outcome?;
    rows.push(row("all agents stopped (SIGTERM, jobs handed back)", format!("{:.1} s", stopping.elapsed().as_secs_f64())));
    rows.push(row("processes left behind (killed if any)", left.len().to_string()));
    print_table(&settings, &rows);
    if !left.is_empty() {
        bail!("{} processes outlived the cluster: {left:?}", left.len());
    }
    Ok(())
}

fn print_table(settings: &Settings, rows: &[Row]) {
    let width = rows.iter().map(|Row(what, _)| what.len()).max().unwrap_or(0);
    println!("\nSaturn load: {} agents x 8 simulated GPUs, {} jobs", settings.agents, settings.jobs);
    println!("{}", "-".repeat(width + 24));
    for Row(what, value) in rows {
        println!("{what:<width$}  {value}");
    }
}
