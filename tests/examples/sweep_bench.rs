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
//! Env: `SATURN_SWEEP_TIME_SCALE` (default 1.0) shortens every simulated step;
//! `SATURN_SWEEP_GPUS` (default `sim:4xSIM-24GB`) sets each agent's simulated GPUs, e.g.
//! `sim:8xSIM-24GB` for the Saturn paper's 8-GPU nodes.
//!
//! Besides makespans it reports the profiling overhead (time before the first training
//! step; trial runs and their GPU-seconds from the simulated jobs' own records, against
//! the full grid's trial count), what introspection added (the first two policies), and
//! checks from those records that no GPU ran two jobs at once.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use saturn_agent::cli::demo::{max_heuristic_makespan, run_sweep, SweepRun};
use saturn_agent::local_cluster::{sibling_bin_dir, ClusterOptions, LocalCluster};
use saturn_tests::records;

struct Policy {
    name: &'static str,
    args: &'static [&'static str],
}

const POLICIES: [Policy; 3] = [
    Policy { name: "saturn (local search + introspection)", args: &["--solver", "local-search"] },
    Policy { name: "saturn, no introspection", args: &["--solver", "local-search", "--no-introspection"] },
    Policy { name: "max-heuristic (current practice)", args: &["--solver", "max-heuristic"] },
];

/// What one policy's run measured besides the sweep itself.
struct Measured {
    name: &'static str,
    run: SweepRun,
    preemptions: Option<u64>,
    /// Trial runs and their GPU-seconds, from the simulated jobs' own records.
    trials: usize,
    trial_gpu_s: f64,
    /// (trials, full-grid trials) as the leader counts them.
    grid: Option<(f64, f64)>,
    /// Pairs of jobs that shared a GPU at the same time (must be 0).
    overlaps: usize,
}

fn main() -> Result<()> {
    let time_scale: f64 = std::env::var("SATURN_SWEEP_TIME_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let gpus = std::env::var("SATURN_SWEEP_GPUS").unwrap_or_else(|_| "sim:4xSIM-24GB".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let bin_dir = sibling_bin_dir()?;
    let saturn = bin_dir.join("saturn");
    let mut results: Vec<Measured> = Vec::new();
    for policy in &POLICIES {
        let dir = tempfile::Builder::new().prefix("saturn-sweep-bench-").tempdir()?;
        let records = dir.path().join("records.jsonl");
        let mut extra: Vec<String> = vec!["--heartbeat-ms".into(), "250".into()];
        extra.extend(policy.args.iter().map(|a| a.to_string()));
        let options = ClusterOptions {
            bin_dir: bin_dir.clone(),
            base_dir: dir.path().to_path_buf(),
            names: vec!["bench-a".into(), "bench-b".into(), "bench-c".into()],
            gpus: gpus.clone(),
            bootstrap_expect: 3,
            extra_args: extra,
            env: vec![("SATURN_SYNTH_RECORD_FILE".into(), records.display().to_string())],
        };
        eprintln!("running the sweep under: {}", policy.name);
        let cluster = LocalCluster::start(&options)?;
        let run = runtime
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(1800), run_sweep(&cluster, &saturn.display().to_string(), time_scale, false)).await
            })
            .context("the sweep took over 30 minutes")??;
        let metrics = runtime.block_on(leader_metrics(&cluster, run.status.leader.as_deref()));
        let (ended, _) = records::segments(&records::read(&records));
        let trial_segments: Vec<&records::Record> = ended.iter().filter(|r| r.profile).collect();
        let trial_gpu_s = trial_segments
            .iter()
            .map(|r| r.gpus.len() as f64 * r.end_ms.unwrap_or(r.start_ms).saturating_sub(r.start_ms) as f64 / 1000.0)
            .sum();
        let metric = |name: &str| metrics.get(name).copied();
        eprintln!("  makespan {:.1} s", run.makespan_s);
        results.push(Measured {
            name: policy.name,
            preemptions: metric("saturn_preemptions_total").map(|p| p as u64),
            trials: trial_segments.len(),
            trial_gpu_s,
            grid: metric("saturn_profiling_trials").zip(metric("saturn_profiling_full_grid_trials")),
            overlaps: records::gpu_overlaps(&ended).len(),
            run,
        });
    }
    let baseline = results.last().map(|m| m.run.makespan_s).unwrap_or(f64::NAN);
    println!("\nDemo sweep, 12 jobs on 3 agents ({gpus} each), time scale {time_scale}\n");
    println!("| policy | makespan (s) | before first training step (s) | trial runs (full grid) | trial GPU-s | preemptions | GPU overlaps | vs max-heuristic |");
    println!("|---|---|---|---|---|---|---|---|");
    for m in &results {
        let completed = m.run.jobs.iter().filter(|j| j.state == "completed").count();
        println!(
            "| {} | {:.1}{} | {:.1} | {} ({}) | {:.0} | {} | {} | {:+.0}% |",
            m.name,
            m.run.makespan_s,
            if completed == m.run.jobs.len() { String::new() } else { format!(" ({completed} completed)") },
            m.run.profiling_s,
            m.trials,
            m.grid.map(|(_, full)| format!("{full:.0}")).unwrap_or_else(|| "?".into()),
            m.trial_gpu_s,
            m.preemptions.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            m.overlaps,
            100.0 * (m.run.makespan_s / baseline - 1.0),
        );
    }
    if let [with, without, ..] = &results[..] {
        println!(
            "\nIntrospection: {:+.1}% makespan against the same planner without it ({} preemptions).",
            100.0 * (with.run.makespan_s / without.run.makespan_s - 1.0),
            with.preemptions.unwrap_or(0)
        );
        let gpus_total: usize = with.run.status.agents.iter().map(|a| a.gpus.len()).sum();
        println!(
            "Profiling: {:.1} s before the first training step ({:.0}% of the makespan); trials used {:.0} GPU-s, \
             {:.1}% of the {:.0} GPU-s the cluster offered during the run.",
            with.run.profiling_s,
            100.0 * with.run.profiling_s / with.run.makespan_s,
            with.trial_gpu_s,
            100.0 * with.trial_gpu_s / (gpus_total as f64 * with.run.makespan_s),
            gpus_total as f64 * with.run.makespan_s,
        );
    }
    if let Some(m) = results.first() {
        if let Some(predicted) = max_heuristic_makespan(&m.run.jobs, &m.run.profiles, &m.run.status) {
            println!("max-heuristic's plan on Saturn's measured profiles predicts {predicted:.1} s (no profiling).");
        }
    }
    Ok(())
}

/// The leader's `/metrics` samples by name (the scheduler's statistics live there).
async fn leader_metrics(cluster: &LocalCluster, leader: Option<&str>) -> BTreeMap<String, f64> {
    let agent = cluster.agents.iter().find(|a| Some(a.name.as_str()) == leader).unwrap_or(&cluster.agents[0]);
    let request = reqwest::Client::new().get(format!("{}/metrics", agent.api_url())).bearer_auth(&cluster.token);
    let Ok(response) = request.send().await else { return BTreeMap::new() };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}
