//! `saturn demo`: a local mesh of real `saturn-agent` processes on simulated GPUs runs a
//! 12-job sweep shaped like the Saturn paper's (2 models x 2 batch sizes x 3 learning
//! rates) with the simulated training job, then compares the measured makespan with
//! what current practice (max-heuristic) would take on the same measured profiles.
//!
//! Everything here is simulated and says so: GPUs (`sim:`), and the training job
//! (`saturn synth-job`, which sleeps instead of computing). The agents, mesh, Raft,
//! profiling, planning, dispatch and recovery are the real ones.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use saturn_planner::{solve, Host, Instance, Job, JobOption, SolveOptions, Solver};

use super::client::{encode_query, ApiClient};
use super::job::{render_jobs, wait_for};
use super::table::{self, human_duration};
use crate::local_cluster::{sibling_bin_dir, ClusterOptions, LocalCluster};
use crate::views::{JobView, PlanView, ProfilesView, StatusView, SubmitView};

/// Arguments of `saturn demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of agents (separate processes on 127.0.0.1).
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
    /// Simulated GPUs of each agent.
    #[arg(long, default_value = "sim:4xSIM-24GB")]
    pub gpus: String,
    /// Multiplies the simulated jobs' durations (smaller runs faster).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Where the agents keep their data dirs and logs [default: a new temporary dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the data dirs and logs after the demo.
    #[arg(long)]
    pub keep: bool,
    /// Planner of the agents: local-search (Saturn) or max-heuristic (current practice).
    #[arg(long, default_value = "local-search")]
    pub solver: String,
}

/// One model of the demo sweep: how the simulated job behaves.
struct DemoModel {
    name: &'static str,
    model_gb: f64,
    compute_fraction: f64,
    /// base step time (ms) per batch size.
    batches: [(u32, f64); 2],
    steps: u64,
    techniques: &'static str,
}

const MODELS: [DemoModel; 2] = [
    // A small vision model: fits on one GPU, data parallel scales well but not perfectly.
    DemoModel {
        name: "resnet",
        model_gb: 1.0,
        compute_fraction: 0.5,
        batches: [(64, 60.0), (128, 110.0)],
        steps: 1000,
        techniques: r#"["ddp", "fsdp"]"#,
    },
    // A language model too big for data parallelism on 24 GB GPUs: sharded or pipelined,
    // both scale sub-linearly.
    DemoModel {
        name: "gpt",
        model_gb: 8.0,
        compute_fraction: 0.5,
        batches: [(8, 150.0), (16, 260.0)],
        steps: 500,
        techniques: r#"["ddp", "fsdp", "pipeline", "spilling"]"#,
    },
];

/// The demo sweep as a job file running `saturn synth-job` from `exe`.
pub fn demo_sweep(exe: &str, time_scale: f64) -> String {
    let mut text = String::from("# Saturn demo sweep: 2 models x 2 batch sizes x 3 learning rates (simulated job)\n");
    for model in &MODELS {
        for (bs, base_ms) in model.batches {
            text.push_str(&format!(
                r#"
[[sweep]]
name = "{name}-bs{bs}-lr{{lr}}"
command = ["{exe}", "synth-job", "--model-gb", "{gb}", "--base-step-ms", "{base_ms}", "--compute-fraction", "{cf}", "--time-scale", "{time_scale}", "--batch-size", "{bs}", "--lr", "{{lr}}"]
grid = {{ lr = ["1e-4", "3e-4", "1e-3"] }}
steps = {steps}
techniques = {techniques}
gpus = [1, 8]
profile_group = "{name}-bs{bs}"
max_restarts = 2
"#,
                name = model.name,
                gb = model.model_gb,
                cf = model.compute_fraction,
                steps = model.steps,
                techniques = model.techniques,
            ));
        }
    }
    text
}

/// Runs the demo; Ctrl-C stops it and cleans up.
pub async fn run(args: &DemoArgs) -> Result<i32> {
    if args.agents == 0 {
        bail!("--agents must be at least 1");
    }
    let temp;
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("saturn-demo-").tempdir().context("cannot create a temporary dir")?;
            temp.path().to_path_buf()
        }
    };
    let exe = std::env::current_exe().context("cannot locate the saturn executable")?;
    let options = ClusterOptions {
        bin_dir: sibling_bin_dir()?,
        base_dir: base.clone(),
        names: (0..args.agents).map(|i| format!("demo-{}", (b'a' + (i % 26) as u8) as char)).collect(),
        gpus: args.gpus.clone(),
        bootstrap_expect: args.agents.min(3),
        extra_args: vec!["--heartbeat-ms".into(), "250".into(), "--solver".into(), args.solver.clone()],
        env: Vec::new(),
    };
    println!("Starting {} agents with simulated GPUs ({}) in {}", args.agents, args.gpus, base.display());
    let cluster = LocalCluster::start(&options)?;
    let exe = exe.display().to_string();
    let outcome = tokio::select! {
        outcome = drive(&cluster, &exe, args) => outcome,
        _ = tokio::signal::ctrl_c() => {
            println!("\ninterrupted: stopping the agents");
            Ok(130)
        }
    };
    drop(cluster);
    if args.keep || args.dir.is_some() {
        println!("data dirs and agent logs kept in {}", base.display());
    }
    if let Err(err) = &outcome {
        eprintln!("agent logs are in {} (use --keep to keep them)", base.display());
        return Err(anyhow::anyhow!("{err:#}"));
    }
    outcome
}

async fn drive(cluster: &LocalCluster, exe: &str, args: &DemoArgs) -> Result<i32> {
    let run = run_sweep(cluster, exe, args.time_scale, true).await?;
    print!("\n{}", render_jobs(&run.jobs));
    print_summary(&run);
    Ok(if run.jobs.iter().all(|j| j.state == "completed") { 0 } else { 1 })
}

/// What one run of the demo sweep on a cluster measured.
#[derive(Debug)]
pub struct SweepRun {
    /// The jobs at the end.
    pub jobs: Vec<JobView>,
    /// The last committed plan.
    pub plan: Option<PlanView>,
    /// Every profile measured.
    pub profiles: ProfilesView,
    /// The mesh at the end.
    pub status: StatusView,
    /// First submission to last finish, seconds (profiling included).
    pub makespan_s: f64,
    /// First submission to the first training start, seconds.
    pub profiling_s: f64,
    /// Wall time of the whole run as the client saw it.
    pub wall: Duration,
}

/// Waits for the mesh, submits the demo sweep through the first agent, follows it to
/// the end and collects what it measured.
pub async fn run_sweep(cluster: &LocalCluster, exe: &str, time_scale: f64, show: bool) -> Result<SweepRun> {
    let client = cluster.client(0)?;
    let status = wait_for_mesh(&client, cluster.agents.len()).await?;
    let gpus: usize = status.agents.iter().map(|a| a.gpus.len()).sum();
    if show {
        println!(
            "Mesh up: {} agents, {gpus} GPUs, leader {}. Dashboard: {}/#token={} (the token stays in \
             your browser: a URL fragment is never sent)",
            status.agents.len(),
            status.leader.as_deref().unwrap_or("?"),
            cluster.agents[0].api_url(),
            cluster.token
        );
    }
    let sweep = demo_sweep(exe, time_scale);
    let workdir = cluster.agents[0].data_dir.parent().map(|p| p.display().to_string()).unwrap_or_else(|| "/".into());
    let path = format!("/v1/jobs?workdir={}&file=demo-sweep.toml", encode_query(&workdir));
    let started = Instant::now();
    let submitted: SubmitView = client.post(&path, "application/toml", sweep).await?;
    if show {
        println!("Submitted {} jobs; profiling, planning and running them:\n", submitted.jobs.len());
    }
    let ids: Vec<String> = submitted.jobs.iter().map(|j| j.id.clone()).collect();
    let jobs = wait_for(&client, &ids, show).await?;
    let wall = started.elapsed();
    let plan: Option<PlanView> = client.get_json("/v1/plan").await.ok();
    let profiles: ProfilesView = client.get_json("/v1/profiles").await?;
    let status: StatusView = client.get_json("/v1/status").await?;
    let (makespan_s, profiling_s) = measured_times(&jobs).unwrap_or((wall.as_secs_f64(), 0.0));
    Ok(SweepRun { jobs, plan, profiles, status, makespan_s, profiling_s, wall })
}

/// (first submission → last finish, first submission → first training start), seconds,
/// from the jobs' own timestamps.
fn measured_times(jobs: &[JobView]) -> Option<(f64, f64)> {
    let parse = |t: &Option<String>| t.as_deref().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    let submitted = jobs.iter().filter_map(|j| parse(&j.submitted_at)).min()?;
    let finished = jobs.iter().filter_map(|j| parse(&j.finished_at)).max()?;
    let first_start = jobs.iter().filter_map(|j| parse(&j.started_at)).min().unwrap_or(submitted);
    let seconds = |a: chrono::DateTime<chrono::FixedOffset>, b: chrono::DateTime<chrono::FixedOffset>| {
        (b - a).num_milliseconds() as f64 / 1000.0
    };
    Some((seconds(submitted, finished), seconds(submitted, first_start)))
}

async fn wait_for_mesh(client: &ApiClient, agents: usize) -> Result<StatusView> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match client.get_json::<StatusView>("/v1/status").await {
            Ok(status) if status.leader.is_some() && status.agents.len() >= agents && status.agents.iter().all(|a| a.healthy) => {
                return Ok(status)
            }
            Ok(status) => last = format!("{} agents known, leader {:?}", status.agents.len(), status.leader),
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the mesh did not form within 60 s ({last})")
}

/// The makespan current practice would have on the same cluster with the same measured
/// profiles: every job on all GPUs of one host with its best technique there, one after
/// another (the Saturn paper's max-heuristic).
pub fn max_heuristic_makespan(jobs: &[JobView], profiles: &ProfilesView, status: &StatusView) -> Option<f64> {
    let hosts: Vec<Host> = status
        .agents
        .iter()
        .filter(|a| !a.gpus.is_empty())
        .map(|a| Host { name: a.name.clone(), gpus: a.gpus.len() as u32, gpu_model: a.gpus.first().map(|g| g.model.clone()) })
        .collect();
    let mut by_group: BTreeMap<&str, Vec<JobOption>> = BTreeMap::new();
    for p in &profiles.profiles {
        if let Some(step_time_s) = p.step_time_s {
            by_group.entry(p.profile_group.as_str()).or_default().push(JobOption {
                technique: p.technique.clone(),
                gpu_model: Some(p.gpu_model.clone()),
                gpus_per_host: p.gpus_per_host,
                hosts: p.hosts,
                step_time_s,
            });
        }
    }
    let planner_jobs: Vec<Job> = jobs
        .iter()
        .filter_map(|job| {
            let group = job.name.rsplit_once("-lr").map(|(g, _)| g).unwrap_or(&job.name);
            let options = by_group.get(group)?.clone();
            Some(Job { id: job.id.clone(), steps: job.steps, options, running: None, release_s: 0.0 })
        })
        .collect();
    if hosts.is_empty() || planner_jobs.len() != jobs.len() {
        return None;
    }
    let instance = Instance { hosts, jobs: planner_jobs, switch_cost_s: 0.0 };
    let options = SolveOptions { solver: Solver::MaxHeuristic, ..SolveOptions::default() };
    solve(&instance, &options).ok().map(|plan| plan.makespan_s)
}

fn print_summary(run: &SweepRun) {
    let baseline = max_heuristic_makespan(&run.jobs, &run.profiles, &run.status);
    println!("\n{}", table::render(&["", ""], &summary_rows(run.makespan_s, run.profiling_s, baseline)));
    println!(
        "{} profiles recorded; wall time {}. The max-heuristic row is predicted (its plan on the measured \
         step times, without profiling), not run; `cargo run --release -p saturn-tests --example sweep_bench` \
         runs both policies for real.",
        run.profiles.profiles.len(),
        human_duration(run.wall.as_secs_f64())
    );
}

/// The summary table: each row says whether its figure was measured or predicted.
fn summary_rows(makespan_s: f64, profiling_s: f64, baseline: Option<f64>) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["Saturn, MEASURED end to end (profiling included)".to_string(), format!("{makespan_s:.1} s")],
        vec!["  of which before the first training step (profiling + planning)".into(), format!("{profiling_s:.1} s")],
    ];
    match baseline {
        Some(baseline) => {
            rows.push(vec![
                "Max-heuristic (current practice), PREDICTED: its plan on the measured step times, no profiling".into(),
                format!("{baseline:.1} s"),
            ]);
            let gain = 100.0 * (1.0 - makespan_s / baseline);
            rows.push(vec!["Saturn measured vs max-heuristic predicted".into(), format!("{gain:.0}% shorter")]);
        }
        None => rows.push(vec!["Max-heuristic, predicted".into(), "n/a (profiles incomplete)".into()]),
    }
    rows
}

#[cfg(test)]
mod summary_tests {
    use super::summary_rows;

    #[test]
    fn the_table_itself_says_which_makespan_is_predicted() {
        let rows = summary_rows(100.0, 10.0, Some(150.0));
        let label = |figure: &str| rows.iter().find(|r| r[1] == figure).map(|r| r[0].clone()).unwrap_or_default();
        assert!(label("100.0 s").contains("MEASURED"), "{rows:?}");
        assert!(label("150.0 s").contains("PREDICTED"), "{rows:?}");
        assert!(rows.iter().any(|r| r[0].contains("measured vs max-heuristic predicted")), "{rows:?}");
    }
}
