//! Scale benchmark: what one agent costs as the mesh grows (issue 17). Prints two tables:
//!
//! - **real agents**: `saturn-agent` processes on 127.0.0.1 at each size in
//!   `SATURN_SCALE_AGENTS` (5,10,20,40): 3 with `--bootstrap-expect 3`, the rest `--join`
//!   only; per-agent idle CPU, bytes/s and read/write syscalls/s (from `/proc`), the
//!   leader's, join → learner and → promoted times, elections (Raft terms) while they join, submission latency through a learner;
//!   each size run twice, with the flat-cost design and with `SATURN_GOSSIP_EVERYONE=1`
//!   (every agent hears every heartbeat, full mesh: the design before), in one run;
//! - **in-process Raft**: `SATURN_SCALE_SIM` (50,100,200,500) consensus nodes on the
//!   in-memory router with the daemon's Raft timings: 3 voters, then learners added one by
//!   one, 2 promoted to make 5 voters; messages and bytes per second a learner receives
//!   and the leader sends, process CPU, proposal latency through a learner.
//!
//! ```sh
//! cargo build --release -p saturn-agent --bins
//! cargo run --release -p saturn-tests --example scale_bench
//! SATURN_SCALE_AGENTS=5,10 SATURN_SCALE_SIM=100,500 cargo run --release -p saturn-tests --example scale_bench
//! ```
//! Knobs: `SATURN_SCALE_AGENTS`, `SATURN_SCALE_SIM` (empty: skip), `SATURN_SCALE_IDLE_S` (10),
//! `SATURN_SCALE_SUBMITS` (30), `SATURN_SCALE_SETTLE_S` (20: idle time before the window), `SATURN_SCALE_MODES` (`flat,everyone`), `SATURN_SCALE_FORM_S`
//! (600: how long every agent may take to become a member). Every agent is
//! stopped on exit.

#[path = "../mesh_bench/procfs.rs"]
mod procfs;
mod real;
#[path = "../mesh_bench/report.rs"]
#[allow(dead_code)]
mod report;
mod sim;

use anyhow::{Context, Result};

fn env_list(key: &str, default: &str) -> Result<Vec<usize>> {
    let text = std::env::var(key).unwrap_or_else(|_| default.to_string());
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().with_context(|| format!("{key}={text:?}: not a list of numbers")))
        .collect()
}

fn env_or(key: &str, default: u64) -> Result<u64> {
    match std::env::var(key) {
        Ok(text) => text.trim().parse().with_context(|| format!("{key}={text:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The machine, for reading the numbers (a loaded 2-core machine starves everything).
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("{cpus} CPUs, load average {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let agents = env_list("SATURN_SCALE_AGENTS", "5,10,20,40")?;
    let sims = env_list("SATURN_SCALE_SIM", "50,100,200,500")?;
    let idle = std::time::Duration::from_secs(env_or("SATURN_SCALE_IDLE_S", 10)?);
    let submits = env_or("SATURN_SCALE_SUBMITS", 30)? as usize;
    let modes: Vec<String> = std::env::var("SATURN_SCALE_MODES")
        .unwrap_or_else(|_| "flat,everyone".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    println!("scale_bench on {}\n", machine());
    if !agents.is_empty() {
        let form = std::time::Duration::from_secs(env_or("SATURN_SCALE_FORM_S", 600)?);
        let table = real::run(&agents, &modes, idle, form, submits).await?;
        table.print();
    }
    if !sims.is_empty() {
        let table = sim::run(&sims, idle, submits).await?;
        table.print();
    }
    println!("\nafter: {}", machine());
    Ok(())
}
