//! Benchmark: early stopping that hands the freed GPUs to the survivors.
//!
//! A 27-job sweep of the simulated training job (3 model sizes x 3 batch sizes x 3
//! learning rates; the loss curve family of `saturn synth-job` makes some configurations
//! clearly better) runs end to end on a fresh local mesh of 3 agents x 4 simulated GPUs,
//! three times:
//!
//! - ASHA early stopping (`min_steps` 100, reduction 3) with re-planning at every stop;
//! - the same early stopping without re-planning (`--no-early-stop-replan`: the committed
//!   plan is followed, later jobs take freed GPUs only as list scheduling allows);
//! - no early stopping (every job runs to its end).
//!
//! Step times are given in the job file (no trial runs), so GPU time is training time
//! only. Makespan is first submission to last finish, from the jobs' own timestamps;
//! GPU-seconds are summed from the simulated jobs' own records (GPUs x wall time of
//! every attempt segment). The best configuration is the finished job with the lowest
//! final loss.
//!
//! Asynchronous ASHA promotes by the order jobs reach a rung, so which jobs survive (and
//! the makespan) varies from run to run; `SATURN_ES_REPEATS=N` runs each early-stopping
//! variant N times (the no-early-stopping reference once) and prints every run and the
//! medians. "Winner done" is when the best configuration finished: what a user waits
//! for in model selection.
//!
//! `cargo build --release -p saturn-agent --bins && cargo run --release -p saturn-tests --example early_stop_bench`
//! Env: `SATURN_ES_TIME_SCALE` (default 1.0) multiplies every simulated step time;
//! `SATURN_ES_REPEATS` (default 1).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use saturn_agent::cli::client::encode_query;
use saturn_agent::cli::job::wait_for;
use saturn_agent::local_cluster::{sibling_bin_dir, ClusterOptions, LocalCluster};
use saturn_agent::synth_job::{synthetic_step_time, SynthModel};
use saturn_agent::views::{JobView, JobsView, StatusView, SubmitView};
use saturn_tests::records;

const STEPS: u64 = 1_000;
const BASE_STEP_MS: f64 = 60.0;
const COMPUTE_FRACTION: f64 = 0.95;
const MODEL_GB: [u32; 3] = [1, 2, 4];
const GPU_MEMORY_MIB: u64 = 24_576;

struct Variant {
    name: &'static str,
    early_stop: bool,
    agent_args: &'static [&'static str],
}

const VARIANTS: [Variant; 3] = [
    Variant { name: "early stopping + re-planning", early_stop: true, agent_args: &[] },
    Variant { name: "early stopping, no re-planning", early_stop: true, agent_args: &["--no-early-stop-replan"] },
    Variant { name: "no early stopping", early_stop: false, agent_args: &[] },
];

struct Outcome {
    name: &'static str,
    makespan_s: f64,
    gpu_s: f64,
    completed: usize,
    stopped: usize,
    winner: Option<(String, f64)>,
    /// Seconds from the first submission until the winner finished.
    winner_done_s: f64,
    overlaps: usize,
}

fn main() -> Result<()> {
    let time_scale: f64 = std::env::var("SATURN_ES_TIME_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let bin_dir = sibling_bin_dir()?;
    let saturn = bin_dir.join("saturn");
    let repeats: usize = std::env::var("SATURN_ES_REPEATS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let runs = VARIANTS.iter().flat_map(|v| std::iter::repeat_n(v, if v.early_stop { repeats } else { 1 }));
    let mut outcomes = Vec::new();
    for variant in runs {
        let dir = tempfile::Builder::new().prefix("saturn-es-bench-").tempdir()?;
        let records = dir.path().join("records.jsonl");
        let mut extra: Vec<String> = vec!["--heartbeat-ms".into(), "250".into()];
        extra.extend(variant.agent_args.iter().map(|a| a.to_string()));
        let options = ClusterOptions {
            bin_dir: bin_dir.clone(),
            base_dir: dir.path().to_path_buf(),
            names: vec!["es-a".into(), "es-b".into(), "es-c".into()],
            gpus: "sim:4xSIM-24GB".into(),
            bootstrap_expect: 3,
            extra_args: extra,
            env: vec![("SATURN_SYNTH_RECORD_FILE".into(), records.display().to_string())],
        };
        eprintln!("running the 27-job sweep: {}", variant.name);
        let cluster = LocalCluster::start(&options)?;
        let sweep = sweep_file(&saturn.display().to_string(), time_scale, variant.early_stop)?;
        let jobs = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(1800), run(&cluster, sweep)).await })
            .context("the sweep took over 30 minutes")??;
        let (ended, _) = records::segments(&records::read(&records));
        let gpu_s = ended
            .iter()
            .map(|r| r.gpus.len() as f64 * r.end_ms.unwrap_or(r.start_ms).saturating_sub(r.start_ms) as f64 / 1000.0)
            .sum();
        let outcome = Outcome {
            name: variant.name,
            makespan_s: makespan(&jobs).unwrap_or(f64::NAN),
            gpu_s,
            completed: jobs.iter().filter(|j| j.state == "completed").count(),
            stopped: jobs.iter().filter(|j| j.state == "stopped").count(),
            winner: winner(&jobs),
            winner_done_s: winner_done(&jobs).unwrap_or(f64::NAN),
            overlaps: records::gpu_overlaps(&ended).len(),
        };
        eprintln!("  makespan {:.1} s, winner done {:.1} s, {:.0} GPU-s", outcome.makespan_s, outcome.winner_done_s, outcome.gpu_s);
        outcomes.push(outcome);
    }
    let reference = outcomes.last().map(|o| (o.gpu_s, o.winner.clone())).unwrap_or((f64::NAN, None));
    println!("\n27-job sweep (3 models x 3 batch sizes x 3 LRs, {STEPS} steps) on 3 agents x 4 simulated GPUs, time scale {time_scale}\n");
    println!("| variant | makespan (s) | winner done (s) | GPU-hours | GPU-hours vs no early stopping | completed / stopped | best configuration (final loss) | same winner | GPU overlaps |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        let (name, loss) = o.winner.clone().unwrap_or_else(|| ("-".into(), f64::NAN));
        println!(
            "| {} | {:.1} | {:.1} | {:.3} | {:.2}x fewer | {} / {} | {name} ({loss:.4}) | {} | {} |",
            o.name,
            o.makespan_s,
            o.winner_done_s,
            o.gpu_s / 3600.0,
            reference.0 / o.gpu_s,
            o.completed,
            o.stopped,
            if o.winner.as_ref().map(|w| &w.0) == reference.1.as_ref().map(|w| &w.0) { "yes" } else { "no" },
            o.overlaps,
        );
    }
    let median = |name: &str, of: fn(&Outcome) -> f64| {
        let mut v: Vec<f64> = outcomes.iter().filter(|o| o.name == name).map(of).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (with, without) = (VARIANTS[0].name, VARIANTS[1].name);
    for (what, of) in [("makespan", (|o: &Outcome| o.makespan_s) as fn(&Outcome) -> f64), ("winner done", |o: &Outcome| o.winner_done_s)] {
        let (a, b) = (median(with, of), median(without, of));
        println!(
            "\nRe-planning at each stop, median {what} of {repeats} run(s): {:+.1}% against early stopping alone ({a:.1} s vs {b:.1} s).",
            100.0 * (a / b - 1.0)
        );
    }
    Ok(())
}

/// The sweep as one `[[sweep]]` (so every job is compared with every other), with the
/// step times of the simulated job's cost model given, so no trial runs are made.
fn sweep_file(exe: &str, time_scale: f64, early_stop: bool) -> Result<String> {
    let model = SynthModel { model_gb: 2.0, base_step_ms: BASE_STEP_MS, compute_fraction: COMPUTE_FRACTION };
    let mut times = Vec::new();
    for gpus in [1u32, 2, 4] {
        let seconds = synthetic_step_time(&model, "ddp", gpus, 1, GPU_MEMORY_MIB)
            .map_err(|e| anyhow::anyhow!("the cost model cannot run ddp on {gpus} GPUs: {e}"))?;
        times.push(format!("{gpus} = {:.5}", seconds * time_scale));
    }
    let rule = if early_stop {
        "early_stop = { metric = \"loss\", mode = \"min\", rule = \"asha\", min_steps = 100, reduction = 3 }"
    } else {
        ""
    };
    let gbs: Vec<String> = MODEL_GB.iter().map(u32::to_string).collect();
    Ok(format!(
        r#"
[[sweep]]
name = "m{{gb}}-bs{{bs}}-lr{{lr}}"
command = ["{exe}", "synth-job", "--model-gb", "{{gb}}", "--base-step-ms", "{BASE_STEP_MS}", "--compute-fraction", "{COMPUTE_FRACTION}", "--time-scale", "{time_scale}", "--batch-size", "{{bs}}", "--lr", "{{lr}}", "--checkpoint-every", "50"]
grid = {{ gb = [{gbs}], bs = [32, 64, 128], lr = ["3e-4", "1e-3", "3e-3"] }}
steps = {STEPS}
techniques = ["ddp"]
gpus = [1, 4]
profile_group = "m{{gb}}-bs{{bs}}"
profile = {{ ddp = {{ {times} }} }}
{rule}
"#,
        gbs = gbs.join(", "),
        times = times.join(", "),
    ))
}

async fn run(cluster: &LocalCluster, sweep: String) -> Result<Vec<JobView>> {
    let client = cluster.client(0)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.get_json::<StatusView>("/v1/status").await;
        if status.as_ref().is_ok_and(|s| s.leader.is_some() && s.agents.iter().filter(|a| a.healthy).count() == 3) {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("the mesh did not form within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let workdir = cluster.agents[0].data_dir.parent().map(|p| p.display().to_string()).unwrap_or_else(|| "/".into());
    let path = format!("/v1/jobs?workdir={}&file=es-sweep.toml", encode_query(&workdir));
    let submitted: SubmitView = client.post(&path, "application/toml", sweep).await?;
    let ids: Vec<String> = submitted.jobs.iter().map(|j| j.id.clone()).collect();
    wait_for(&client, &ids, false).await?;
    let jobs: JobsView = client.get_json("/v1/jobs").await?;
    Ok(jobs.jobs)
}

type Timestamp = chrono::DateTime<chrono::FixedOffset>;

fn timestamp(text: &Option<String>) -> Option<Timestamp> {
    text.as_deref().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
}

/// Seconds from the first submission to `end`.
fn since_submission(jobs: &[JobView], end: Timestamp) -> Option<f64> {
    let submitted = jobs.iter().filter_map(|j| timestamp(&j.submitted_at)).min()?;
    Some((end - submitted).num_milliseconds() as f64 / 1000.0)
}

fn makespan(jobs: &[JobView]) -> Option<f64> {
    since_submission(jobs, jobs.iter().filter_map(|j| timestamp(&j.finished_at)).max()?)
}

/// Seconds from the first submission until the completed job with the lowest final loss
/// finished.
fn winner_done(jobs: &[JobView]) -> Option<f64> {
    let (name, _) = winner(jobs)?;
    since_submission(jobs, jobs.iter().find(|j| j.name == name).and_then(|j| timestamp(&j.finished_at))?)
}

/// The completed job with the lowest final loss.
fn winner(jobs: &[JobView]) -> Option<(String, f64)> {
    jobs.iter()
        .filter(|j| j.state == "completed")
        .filter_map(|j| j.metrics.get("loss").map(|l| (j.name.clone(), *l)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}
