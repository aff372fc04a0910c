//! Benchmark: the demo sweep (12 jobs of the simulated training job, 2 models x 2 batch
//! sizes x 3 learning rates) run end to end on a fresh local 3-agent mesh (3 x 4
//! simulated GPUs) under three leader policies, one after another on the same machine:
//!
//! - Saturn: local-search planning with introspection (preempting to re-plan);
//! - Saturn without introspection (`--no-introspection`);
//! - max-heuristic, current practice: each job on all GPUs of one host, one after another.
//!
//! Every run includes profiling (trial runs), planning and dispatch; makespan is first
//! submission to last completion, from the jobs' own timestamps.
//!
//! `cargo build --release -p saturn-agent --bins && cargo run --release -p saturn-tests --example sweep_bench`
//! Env: `SATURN_SWEEP_TIME_SCALE` (default 1.0) shortens every simulated step.

use std::time::Duration;

use anyhow::{Context, Result};
use saturn_agent::cli::demo::{max_heuristic_makespan, run_sweep, SweepRun};
use saturn_agent::local_cluster::{sibling_bin_dir, ClusterOptions, LocalCluster};

struct Policy {
    name: &'static str,
    args: &'static [&'static str],
}

const POLICIES: [Policy; 3] = [
    Policy { name: "saturn (local search + introspection)", args: &["--solver", "local-search"] },
    Policy { name: "saturn, no introspection", args: &["--solver", "local-search", "--no-introspection"] },
    Policy { name: "max-heuristic (current practice)", args: &["--solver", "max-heuristic"] },
];

fn main() -> Result<()> {
    let time_scale: f64 = std::env::var("SATURN_SWEEP_TIME_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let bin_dir = sibling_bin_dir()?;
    let saturn = bin_dir.join("saturn");
    let mut results: Vec<(&str, SweepRun, Option<u64>)> = Vec::new();
    for policy in &POLICIES {
        let dir = tempfile::Builder::new().prefix("saturn-sweep-bench-").tempdir()?;
        let mut extra: Vec<String> = vec!["--heartbeat-ms".into(), "250".into()];
        extra.extend(policy.args.iter().map(|a| a.to_string()));
        let options = ClusterOptions {
            bin_dir: bin_dir.clone(),
            base_dir: dir.path().to_path_buf(),
            names: vec!["bench-a".into(), "bench-b".into(), "bench-c".into()],
            gpus: "sim:4xSIM-24GB".into(),
            bootstrap_expect: 3,
            extra_args: extra,
            env: Vec::new(),
        };
        eprintln!("running the sweep under: {}", policy.name);
        let cluster = LocalCluster::start(&options)?;
        let run = runtime
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(1800), run_sweep(&cluster, &saturn.display().to_string(), time_scale, false)).await
            })
            .context("the sweep took over 30 minutes")??;
        let preemptions = runtime.block_on(preemptions(&cluster));
        eprintln!("  makespan {:.1} s", run.makespan_s);
        results.push((policy.name, run, preemptions));
    }
    let baseline = results.last().map(|(_, run, _)| run.makespan_s).unwrap_or(f64::NAN);
    println!("\nDemo sweep, 12 jobs on 3 agents x 4 simulated GPUs, time scale {time_scale}\n");
    println!("| policy | makespan (s) | profiling before first training step (s) | preemptions | vs max-heuristic |");
    println!("|---|---|---|---|---|");
    for (name, run, preemptions) in &results {
        let completed = run.jobs.iter().filter(|j| j.state == "completed").count();
        println!(
            "| {name} | {:.1}{} | {:.1} | {} | {:+.0}% |",
            run.makespan_s,
            if completed == run.jobs.len() { String::new() } else { format!(" ({completed} completed)") },
            run.profiling_s,
            preemptions.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            100.0 * (run.makespan_s / baseline - 1.0),
        );
    }
    if let Some((_, run, _)) = results.first() {
        if let Some(predicted) = max_heuristic_makespan(&run.jobs, &run.profiles, &run.status) {
            println!("\nmax-heuristic's plan on Saturn's measured profiles predicts {predicted:.1} s (no profiling).");
        }
    }
    Ok(())
}

/// Preemptions applied, from the first agent's `/metrics`.
async fn preemptions(cluster: &LocalCluster) -> Option<u64> {
    let text = reqwest::get(format!("{}/metrics", cluster.agents[0].api_url())).await.ok()?.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with("saturn_preemptions "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}
