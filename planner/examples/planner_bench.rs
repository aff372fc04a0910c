//! Planner benchmark: local search vs the paper's baselines vs the lower bound, on every
//! shared instance and on generated large ones, plus the introspection simulation.
//!
//! ```text
//! cargo run --release -p saturn-planner --example planner_bench [DATA_DIR]
//! ```
//! DATA_DIR defaults to `$SATURN_PLANNER_DATA`, else `../shared/data/planner` next to the
//! workspace. `BENCH_LONG_S` (default 10) sets the per-seed length of the long reference
//! runs ("best any method finds"); `BENCH_LIMIT_MS` (default 1000) the normal time limit.
//! The 1,000-job case runs in a child process so its peak memory (VmHWM) is its own.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saturn_planner::{
    lower_bound, parse_instance, simulate, solve, solve_traced, validate_plan, Host, Instance, Job, JobOption,
    SimOptions, SolveOptions, Solver,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pos) = args.iter().position(|a| a == "--large") {
        let jobs = args.get(pos + 1).and_then(|v| v.parse().ok()).unwrap_or(1000);
        return large_case(jobs);
    }
    let limit = Duration::from_millis(env_u64("BENCH_LIMIT_MS", 1000));
    let long = Duration::from_secs(env_u64("BENCH_LONG_S", 10));
    let dir = args.first().map(PathBuf::from).or_else(|| std::env::var_os("SATURN_PLANNER_DATA").map(PathBuf::from));
    let dir = dir.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/planner"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect())
        .unwrap_or_else(|e| {
            eprintln!("note: cannot read {}: {e}; only generated instances", dir.display());
            Vec::new()
        });
    files.sort();
    println!("## Shared instances ({}), time limit {} ms, long reference {} s x 3 seeds\n", dir.display(), limit.as_millis(), long.as_secs());
    println!("| instance | jobs | GPUs | LB | local search | /LB | first plan | solve | best long run | LS/best | max-heur. | gain vs max | optimus | random |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut instances = Vec::new();
    for path in &files {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skip {}: {e}", path.display());
                continue;
            }
        };
        match parse_instance(&text) {
            Ok(instance) => instances.push((name, instance)),
            Err(e) => eprintln!("skip {}: {e}", path.display()),
        }
    }
    for size in [100, 300] {
        instances.push((format!("synthetic-{size}-jobs-16x8"), synthetic(size, 16, 8, size as u64)));
    }
    for (name, instance) in &instances {
        quality_row(name, instance, limit, long);
    }
    println!("\n## Introspection (re-plan every 1000 s if > 500 s better; lognormal noise sigma 0.3; switch cost 120 s where the instance has none), mean of 5 seeds\n");
    println!("| instance | planned | static (no re-plan) | with introspection | gain | re-plans | switches |");
    println!("|---|---|---|---|---|---|---|");
    for (name, instance) in instances.iter().filter(|(n, _)| !n.starts_with("synthetic-300")) {
        introspection_row(name, instance);
    }
    println!("\n## Large instance (own process)\n");
    let exe = std::env::current_exe().expect("the running benchmark has a path");
    match Command::new(exe).args(["--large", "1000"]).output() {
        Ok(out) => print!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        Err(e) => eprintln!("could not run the large case: {e}"),
    }
}

fn quality_row(name: &str, instance: &Instance, limit: Duration, long: Duration) {
    let gpus: u32 = instance.hosts.iter().map(|h| h.gpus).sum();
    let lb = lower_bound(instance);
    let run = |solver, seed, time_limit, max_iterations| {
        let report = solve_traced(instance, &SolveOptions { solver, time_limit, seed, max_iterations }).expect("solves");
        if let Err(e) = validate_plan(instance, &report.plan) {
            panic!("{name}: {solver} produced an invalid plan: {e}");
        }
        report
    };
    let ours = run(Solver::LocalSearch, 0, limit, None);
    let base = |s| run(s, 0, limit, None).plan.makespan_s;
    let (max, optimus, random) = (base(Solver::MaxHeuristic), base(Solver::OptimusGreedy), base(Solver::Random));
    let best = (0..3)
        .map(|seed| run(Solver::LocalSearch, seed + 100, long, Some(u64::MAX)).plan.makespan_s)
        .fold(ours.plan.makespan_s.min(max).min(optimus).min(random), f64::min);
    let m = ours.plan.makespan_s;
    println!(
        "| {name} | {} | {gpus} | {lb:.0} | {m:.0} | {:.3} | {:.1} ms | {} ms | {best:.0} | {:.4} | {max:.0} | {:.1}% | {optimus:.0} | {random:.0} |",
        instance.jobs.len(),
        m / lb,
        ours.first_feasible.as_secs_f64() * 1e3,
        ours.plan.solve_ms,
        m / best,
        (1.0 - m / max) * 100.0,
    );
}

fn introspection_row(name: &str, instance: &Instance) {
    let mut instance = instance.clone();
    if instance.switch_cost_s == 0.0 {
        instance.switch_cost_s = 120.0;
    }
    let seeds = 5;
    let mut sums = [0.0f64; 5];
    for seed in 0..seeds {
        let r = simulate(&instance, &SimOptions { seed, ..SimOptions::default() }).expect("simulates");
        for (s, v) in sums.iter_mut().zip([
            r.planned_makespan_s,
            r.static_makespan_s,
            r.introspective_makespan_s,
            f64::from(r.replans),
            f64::from(r.switches),
        ]) {
            *s += v / seeds as f64;
        }
    }
    println!(
        "| {name} | {:.0} | {:.0} | {:.0} | {:.1}% | {:.1} | {:.1} |",
        sums[0],
        sums[1],
        sums[2],
        (1.0 - sums[2] / sums[1]) * 100.0,
        sums[3],
        sums[4]
    );
}

/// The scale target: `jobs` jobs on 128 hosts x 8 GPUs, first plan, 1 s plan, memory.
fn large_case(jobs: usize) {
    let instance = synthetic(jobs, 128, 8, 42);
    let lb = lower_bound(&instance);
    let t = Instant::now();
    let report = solve_traced(&instance, &SolveOptions { time_limit: Duration::from_secs(1), ..SolveOptions::default() })
        .expect("solves");
    let wall = t.elapsed();
    validate_plan(&instance, &report.plan).expect("valid plan");
    let base = |solver| solve(&instance, &SolveOptions { solver, ..SolveOptions::default() }).expect("solves").makespan_s;
    let (max, optimus) = (base(Solver::MaxHeuristic), base(Solver::OptimusGreedy));
    let m = report.plan.makespan_s;
    println!("| jobs | GPUs | LB | first plan | its makespan | final (1 s) | /LB | wall | iterations | max-heur. | gain vs max | optimus | peak RSS (VmHWM) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {jobs} | 1024 | {lb:.0} | {:.1} ms | {:.0} | {m:.0} | {:.3} | {} ms | {} | {max:.0} | {:.1}% | {optimus:.0} | {} |",
        report.first_feasible.as_secs_f64() * 1e3,
        report.trace.first().map_or(m, |t| t.1),
        m / lb,
        wall.as_millis(),
        report.iterations,
        (1.0 - m / max) * 100.0,
        peak_memory()
    );
}

/// Jobs whose step time scales sub-linearly with GPUs (t(g) = t1 / g^a, a in [0.5, 0.95],
/// plus a gang penalty across hosts), four options each: 1, 2, 4 and 8 GPUs on one host,
/// or for a third of the jobs 1, 2, 8 GPUs and a 2 x 8 gang.
fn synthetic(jobs: usize, hosts: usize, gpus: u32, seed: u64) -> Instance {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let hosts = (0..hosts).map(|h| Host { name: format!("node{h}"), gpus, gpu_model: Some("A100".into()) }).collect();
    let jobs = (0..jobs)
        .map(|j| {
            let t1: f64 = rng.gen_range(0.05..1.0);
            let a: f64 = rng.gen_range(0.5..0.95);
            let shapes: [(u32, u32); 4] = if j % 3 == 0 { [(1, 1), (2, 1), (8, 1), (8, 2)] } else { [(1, 1), (2, 1), (4, 1), (8, 1)] };
            let options = shapes
                .iter()
                .map(|&(per_host, n_hosts)| {
                    let g = f64::from(per_host * n_hosts);
                    let network = if n_hosts > 1 { 1.15 } else { 1.0 };
                    JobOption {
                        technique: if per_host == 8 { "fsdp".into() } else { "ddp".into() },
                        gpu_model: None,
                        gpus_per_host: per_host,
                        hosts: n_hosts,
                        step_time_s: t1 / g.powf(a) * network,
                    }
                })
                .collect();
            Job { id: format!("job{j}"), steps: rng.gen_range(2_000..40_000), options, running: None, release_s: 0.0 }
        })
        .collect();
    Instance { hosts, jobs, switch_cost_s: 0.0 }
}

fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM")).map(|l| l.trim_start_matches("VmHWM:").trim().to_string()))
        .unwrap_or_else(|| "n/a".into())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
