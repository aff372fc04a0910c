//! Heterogeneous-GPU benchmark: local search against a real solver's reference.
//!
//! ```text
//! planner/bench/run_reference.sh        # once: instances + CP-SAT / LP reference (ortools venv)
//! cargo run --release -p saturn-planner --example hetero_bench [BENCH_DIR]
//! ```
//! Reads `BENCH_DIR/instances/*.json` and `BENCH_DIR/reference.json` (default
//! `planner/bench`). Per instance: our makespan (seed 7; 2 s limit up to 60 jobs, 1 s above,
//! or `BENCH_LIMIT_MS`), CP-SAT's makespan (optimal or best known), the best known makespan
//! (CP-SAT's, ours, and with `BENCH_LONG_S=N` three N-second runs of ours), the LP lower
//! bound, the baselines, and the solve time; then the geometric means the targets are
//! stated in.
//! `BENCH_PLANS=DIR` writes our plans there, for `hetero.py improve` (CP-SAT seeded with them).
//! Not a test: CI has no ortools.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use saturn_planner::{parse_instance, solve_traced, validate_plan, Instance, SolveOptions, Solver};
use serde_json::Value;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench"));
    let reference: BTreeMap<String, Value> = std::fs::read_to_string(dir.join("reference.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| {
            eprintln!("note: no {}/reference.json (run planner/bench/run_reference.sh)", dir.display());
            BTreeMap::new()
        });
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir.join("instances")) {
        Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect(),
        Err(e) => {
            eprintln!("cannot read {}/instances: {e} (run planner/bench/hetero.py generate)", dir.display());
            std::process::exit(2);
        }
    };
    let key = |p: &PathBuf| {
        let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let jobs: u64 = name.split('-').nth(1).and_then(|s| s.trim_end_matches('j').parse().ok()).unwrap_or(0);
        (jobs, name)
    };
    files.sort_by_key(key);
    let seed = env_u64("BENCH_SEED", 7);
    let long = Duration::from_secs(env_u64("BENCH_LONG_S", 0));
    println!("| instance | jobs | GPUs | ours | CP-SAT (opt?) | best known | ours/best | LP bound | ours/LP | max-heur. | optimus | random | solve | iterations | stop |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let (mut small, mut large) = (Vec::new(), Vec::new());
    for path in &files {
        let (jobs, name) = key(path);
        let Some(instance) = std::fs::read_to_string(path).ok().and_then(|t| parse_instance(&t).ok()) else {
            eprintln!("skip {}", path.display());
            continue;
        };
        let limit = Duration::from_millis(env_u64("BENCH_LIMIT_MS", if jobs <= 60 { 2000 } else { 1000 }));
        let reference = reference.get(&name);
        let number = |field: &str| reference.and_then(|r| r.get(field)).and_then(Value::as_f64);
        let (cpsat, lp) = (number("cpsat_makespan_s"), number("lp_bound_s"));
        let optimal = reference.and_then(|r| r.get("cpsat_optimal")).and_then(Value::as_bool);
        let run_for = |solver, time_limit, seed| {
            let report = solve_traced(&instance, &SolveOptions { solver, time_limit, seed, max_iterations: None })
                .expect("solves");
            if let Err(e) = validate_plan(&instance, &report.plan) {
                panic!("{name}: {solver} produced an invalid plan: {e}");
            }
            report
        };
        let run = |solver| run_for(solver, limit, seed);
        let ours = run(Solver::LocalSearch);
        let m = ours.plan.makespan_s;
        if let Some(plans) = std::env::var_os("BENCH_PLANS").map(PathBuf::from) {
            // For `hetero.py improve`: CP-SAT seeded with this plan.
            let json = serde_json::to_string(&ours.plan).unwrap_or_default();
            let written = std::fs::create_dir_all(&plans).and_then(|()| std::fs::write(plans.join(format!("{name}.json")), json));
            if let Err(e) = written {
                eprintln!("cannot write the plan of {name} to {}: {e}", plans.display());
            }
        }
        let bases: Vec<f64> = [Solver::MaxHeuristic, Solver::OptimusGreedy, Solver::Random]
            .into_iter()
            .map(|s| run(s).plan.makespan_s)
            .collect();
        let ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.4}", m / r));
        // Best known: CP-SAT's, ours, and (BENCH_LONG_S) long runs of ours with 3 seeds.
        let best = if jobs <= 60 && !long.is_zero() {
            let longs = (0..3).map(|s| run_for(Solver::LocalSearch, long, 100 + s).plan.makespan_s);
            Some(longs.fold(cpsat.unwrap_or(f64::INFINITY).min(m), f64::min))
        } else {
            cpsat.map(|c| c.min(m))
        };
        let opt = match optimal {
            Some(true) => " (opt)",
            Some(false) => " (best)",
            None => "",
        };
        println!(
            "| {name} | {} | {} | {m:.0} | {}{opt} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} ms | {} | {} |",
            instance.jobs.len(),
            gpus(&instance),
            cpsat.map_or("-".into(), |c| format!("{c:.0}")),
            best.map_or("-".into(), |c| format!("{c:.0}")),
            ratio(best),
            lp.map_or("-".into(), |l| format!("{l:.0}")),
            ratio(lp),
            bases[0],
            bases[1],
            bases[2],
            ours.plan.solve_ms,
            ours.iterations,
            ours.stop,
        );
        if std::env::var_os("BENCH_MOVES").is_some() {
            let moves: Vec<String> =
                ours.moves.iter().map(|s| format!("{} {}/{}/{}", s.name, s.tried, s.accepted, s.improved)).collect();
            let trace: Vec<String> =
                ours.trace.iter().map(|(t, v)| format!("{:.0}ms:{v:.0}", t.as_secs_f64() * 1e3)).collect();
            eprintln!("{name}: moves (tried/accepted/new best) {}; trace {}", moves.join(", "), trace.join(" "));
        }
        if bases.iter().any(|&b| b < m - 1e-6) {
            println!("|  | WORSE THAN A BASELINE |||||||||||||");
        }
        if jobs <= 60 {
            if let Some(b) = best {
                small.push(m / b);
            }
        } else if let Some(l) = lp {
            large.push(m / l);
        }
    }
    println!();
    summary("<= 60 jobs, ours / best known (CP-SAT, ours, long runs)", &small);
    summary("large, ours / LP bound", &large);
}

fn summary(what: &str, ratios: &[f64]) {
    if ratios.is_empty() {
        return;
    }
    let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    let worst = ratios.iter().copied().fold(0.0, f64::max);
    println!("{what}: geomean {geo:.4}, worst {worst:.4} ({} instances)", ratios.len());
}

fn gpus(instance: &Instance) -> u32 {
    instance.hosts.iter().map(|h| h.gpus).sum()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
