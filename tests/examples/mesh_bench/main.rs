//! Mesh benchmark: real `saturn-agent` processes on loopback, measured the way a user
//! would feel them. Prints one table per measurement:
//!
//! - idle: RSS and CPU of each agent of an idle cluster (from `/proc`);
//! - submit: latency and throughput of single-job submissions through a follower;
//! - failover: `kill -9` (or SIGSTOP) of the leader until a survivor's submission is
//!   committed;
//! - gossip: N agents started until every one reports all N healthy, and one agent
//!   killed until every survivor reports it unhealthy.
//!
//! ```sh
//! cargo build --release -p saturn-agent --bins
//! cargo run --release -p saturn-tests --example mesh_bench
//! ```
//! Knobs (environment): `SATURN_BENCH_SECTIONS` (idle,submit,failover,gossip),
//! `SATURN_BENCH_AGENTS` (3), `SATURN_BENCH_TRIALS` (10, kill -9), `SATURN_BENCH_STOP_TRIALS`
//! (3, SIGSTOP: a hung leader), `SATURN_BENCH_SUBMITS` (200 per client count),
//! `SATURN_BENCH_CLIENTS` (1,4,16), `SATURN_BENCH_GOSSIP_AGENTS` (10),
//! `SATURN_BENCH_GOSSIP_EXPECT` (their `--bootstrap-expect`, default all of them),
//! `SATURN_BENCH_IDLE_S` (10), `SATURN_BENCH_GPUS` (none), `SATURN_BENCH_AGENT_ARGS`
//! (extra agent flags, e.g. `--heartbeat-ms 200`), `SATURN_BENCH_KEEP_LOGS` (a directory
//! to copy the agents' logs to). Every agent is stopped on exit, Ctrl-C included.

mod cluster;
mod failover;
mod gossip;
mod idle;
mod procfs;
mod report;
mod submit;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use saturn_tests::{Harness, Setup};

use crate::failover::Fault;

/// Knobs of one run, from the environment.
struct Knobs {
    sections: Vec<String>,
    agents: usize,
    trials: usize,
    stop_trials: usize,
    submits: usize,
    clients: Vec<usize>,
    gossip_agents: usize,
    gossip_expect: Option<usize>,
    idle: Duration,
    gpus: String,
    agent_args: Vec<String>,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> Result<T> {
    match std::env::var(key) {
        Ok(text) => text.trim().parse().ok().with_context(|| format!("{key}={text:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

impl Knobs {
    fn from_env() -> Result<Self> {
        let list = |key: &str, default: &str| -> Vec<String> {
            let text = std::env::var(key).unwrap_or_else(|_| default.to_string());
            text.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_string).collect()
        };
        let clients = list("SATURN_BENCH_CLIENTS", "1,4,16")
            .iter()
            .map(|c| c.parse().with_context(|| format!("SATURN_BENCH_CLIENTS: {c:?} is not a count")))
            .collect::<Result<Vec<usize>>>()?;
        let gossip_expect = match std::env::var("SATURN_BENCH_GOSSIP_EXPECT") {
            Ok(_) => Some(env_or("SATURN_BENCH_GOSSIP_EXPECT", 0)?),
            Err(_) => None,
        };
        Ok(Knobs {
            sections: list("SATURN_BENCH_SECTIONS", "idle,submit,failover,gossip"),
            agents: env_or("SATURN_BENCH_AGENTS", 3)?,
            trials: env_or("SATURN_BENCH_TRIALS", 10)?,
            stop_trials: env_or("SATURN_BENCH_STOP_TRIALS", 3)?,
            submits: env_or("SATURN_BENCH_SUBMITS", 200)?,
            clients,
            gossip_agents: env_or("SATURN_BENCH_GOSSIP_AGENTS", 10)?,
            gossip_expect,
            idle: Duration::from_secs(env_or("SATURN_BENCH_IDLE_S", 10)?),
            gpus: env_or("SATURN_BENCH_GPUS", "none".to_string())?,
            agent_args: list("SATURN_BENCH_AGENT_ARGS", ""),
        })
    }

    fn wants(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }

    /// `agents` agents with the daemon's own defaults (heartbeats, grace period): what a
    /// user gets. All of them form the cluster together unless told otherwise.
    fn setup(&self, agents: usize, bootstrap_expect: usize) -> Setup {
        Setup { agents, bootstrap_expect, gpus: self.gpus.clone(), extra_args: self.agent_args.clone() }
    }
}

fn main() -> Result<()> {
    let knobs = Knobs::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        // Dropping `run` on Ctrl-C drops its harness, which stops every agent.
        tokio::select! {
            result = run(&knobs) => result,
            _ = tokio::signal::ctrl_c() => bail!("interrupted; agents stopped"),
        }
    })
}

async fn run(knobs: &Knobs) -> Result<()> {
    let started = Instant::now();
    println!("mesh benchmark: agent flags {:?}, --gpus {}; {}", knobs.agent_args, knobs.gpus, machine_load());
    if knobs.wants("idle") || knobs.wants("submit") || knobs.wants("failover") {
        let mut harness = Harness::start(&knobs.setup(knobs.agents, knobs.agents))?;
        let outcome = small_cluster(knobs, &mut harness).await;
        if outcome.is_err() {
            eprintln!("{}", harness.logs());
        }
        cluster::keep_logs(&harness, "small")?;
        outcome?;
    }
    if knobs.wants("gossip") {
        let expect = knobs.gossip_expect.unwrap_or(knobs.gossip_agents);
        let started = Instant::now();
        let mut harness = Harness::start(&knobs.setup(knobs.gossip_agents, expect))?;
        let outcome = gossip::phases(&mut harness, started, expect).await;
        if outcome.is_err() {
            eprintln!("{}", harness.logs());
        }
        cluster::keep_logs(&harness, "gossip")?;
        outcome?.print();
    }
    println!("\ntotal {:.1} s; {}", started.elapsed().as_secs_f64(), machine_load());
    Ok(())
}

/// CPUs and load average: latency tails on a shared machine follow the load, not the code.
fn machine_load() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cpus} CPUs, load average {}", load.join(" "))
}

async fn small_cluster(knobs: &Knobs, harness: &mut Harness) -> Result<()> {
    let formed = Instant::now();
    cluster::steady(harness).await?;
    println!("\n{}-agent cluster formed (all healthy, one leader) in {:.2} s", knobs.agents, formed.elapsed().as_secs_f64());
    if knobs.wants("idle") {
        idle::measure(harness, knobs.idle).await?.print();
    }
    if knobs.wants("submit") {
        submit::measure(harness, knobs.submits, &knobs.clients).await?.print();
    }
    if knobs.wants("failover") {
        failover::measure(harness, Fault::Kill, knobs.trials).await?.print();
        if knobs.stop_trials > 0 {
            failover::measure(harness, Fault::Stop, knobs.stop_trials).await?.print();
        }
    }
    Ok(())
}
