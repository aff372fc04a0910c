//! Clusters of several GPU models: the search must spread work over the slow GPUs too, find
//! the optimum of a small lab, and run until its time limit unless the plan reaches the
//! lower bound.

use std::time::Duration;

use saturn_planner::{
    parse_instance, solve, solve_traced, validate_plan, Host, Instance, Job, JobOption, SolveOptions, Solver,
};

fn host(name: &str, gpus: u32, model: &str) -> Host {
    Host { name: name.into(), gpus, gpu_model: Some(model.into()) }
}

fn option(model: &str, gpus: u32, step_time_s: f64) -> JobOption {
    JobOption { technique: "ddp".into(), gpu_model: Some(model.into()), gpus_per_host: gpus, hosts: 1, step_time_s }
}

/// One fast and one slow GPU; `jobs` identical 1-GPU jobs, 100 s on the fast GPU and 200 s
/// on the slow one.
fn fast_and_slow(jobs: usize) -> Instance {
    Instance {
        hosts: vec![host("fast", 1, "V100"), host("slow", 1, "K80")],
        jobs: (0..jobs)
            .map(|j| Job {
                id: format!("j{j}"),
                steps: 100,
                options: vec![option("V100", 1, 1.0), option("K80", 1, 2.0)],
                running: None,
                release_s: 0.0,
            })
            .collect(),
        switch_cost_s: 0.0,
    }
}

#[test]
fn the_starting_plans_already_use_the_slow_gpus() {
    // 8 jobs: 5 on the fast GPU (500 s) and 3 on the slow one (600 s) is optimal; every
    // job on the fast GPU (the cheapest GPU-seconds) would take 800 s.
    let instance = fast_and_slow(8);
    let options = SolveOptions { time_limit: Duration::from_secs(10), max_iterations: Some(0), ..SolveOptions::default() };
    let plan = solve(&instance, &options).unwrap();
    validate_plan(&instance, &plan).unwrap();
    assert!(plan.makespan_s <= 600.0 + 1e-6, "makespan {} before any search", plan.makespan_s);
}

#[test]
fn the_search_uses_its_whole_time_limit_unless_it_reaches_the_bound() {
    // Three models, jobs that scale differently on each: no plan reaches the simple bound.
    let mut instance = Instance {
        hosts: vec![host("v", 2, "V100"), host("p", 2, "P100"), host("k", 2, "K80")],
        jobs: Vec::new(),
        switch_cost_s: 0.0,
    };
    for j in 0..14u32 {
        let base = 1.0 + f64::from(j % 5) * 0.37;
        let options = [("V100", 1.0), ("P100", 1.6 + f64::from(j % 3) * 0.2), ("K80", 3.1 - f64::from(j % 4) * 0.3)]
            .iter()
            .flat_map(|&(m, slow)| [option(m, 1, base * slow), option(m, 2, base * slow * 0.6)])
            .collect();
        instance.jobs.push(Job { id: format!("j{j}"), steps: 1_000 + 137 * u64::from(j), options, running: None, release_s: 0.0 });
    }
    let limit = Duration::from_millis(300);
    let report = solve_traced(&instance, &SolveOptions { time_limit: limit, ..SolveOptions::default() }).unwrap();
    validate_plan(&instance, &report.plan).unwrap();
    // Without an iteration cap only the clock or the bound may end the search (it used to
    // stop when it stagnated, a third of the way into its time).
    if report.stop == "lower-bound" {
        assert!(report.plan.makespan_s <= report.plan.lower_bound_s * (1.0 + 1e-9));
    } else {
        assert_eq!(report.stop, "deadline");
    }
    assert!(report.moves.iter().map(|m| m.tried).sum::<u64>() > 0);
    let max = solve(&instance, &SolveOptions { solver: Solver::MaxHeuristic, ..SolveOptions::default() }).unwrap();
    assert!(report.plan.makespan_s <= max.makespan_s);
}

#[test]
fn a_twelve_job_lab_of_three_gpu_models_gets_its_optimal_plan() {
    // 12 jobs of Gavel's measured types on one K80, one P100 and one V100 host of 4 GPUs
    // (planner/bench/hetero.py, het-12j-12g). CP-SAT proves 6435.9 s optimal (durations in
    // tenths of a second); the search used to stop at 1.03-1.13x that.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gavel-3models-12j-12g.json"))
        .unwrap();
    let instance = parse_instance(&text).unwrap();
    let optimum = 6435.9;
    for seed in 0..4 {
        let options = SolveOptions {
            time_limit: Duration::from_secs(600),
            seed,
            max_iterations: Some(100_000),
            ..SolveOptions::default()
        };
        let plan = solve(&instance, &options).unwrap();
        validate_plan(&instance, &plan).unwrap();
        assert!(plan.makespan_s >= optimum - 1.0, "seed {seed}: {} beats the proven optimum", plan.makespan_s);
        assert!(plan.makespan_s <= optimum * 1.01, "seed {seed}: {} is over 1% above the optimum {optimum}", plan.makespan_s);
    }
}

#[test]
fn a_lab_stuck_on_one_long_job_gets_within_three_percent_of_the_best_known() {
    // 36 jobs of Gavel's measured types on one K80, two P100 and one V100 host of 4 GPUs
    // (planner/bench/hetero.py, het-36j-16g); 11,974 s is the best plan known. Half the
    // searches used to stop at 12,379 s (1.034x), a plan whose makespan is one job's
    // 1-GPU runtime: shortening it means giving that job more GPUs and repacking the rest.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gavel-3models-36j-16g.json"))
        .unwrap();
    let instance = parse_instance(&text).unwrap();
    let best_known = 11_974.2;
    for seed in 0..3 {
        let options = SolveOptions {
            time_limit: Duration::from_secs(600),
            seed,
            max_iterations: Some(ITERATIONS_36J),
            ..SolveOptions::default()
        };
        let report = solve_traced(&instance, &options).unwrap();
        validate_plan(&instance, &report.plan).unwrap();
        let ratio = report.plan.makespan_s / best_known;
        assert!(ratio <= 1.03, "seed {seed}: {:.0} s is {ratio:.4}x the best known", report.plan.makespan_s);
        let large = report.moves.iter().find(|m| m.name == "ruin-recreate").unwrap();
        assert!(large.tried > 0 && large.accepted > 0, "seed {seed}: the large move never ran: {large:?}");
    }
}

/// About the 2 s search of `hetero_bench` in a release build (all of seeds 0-7 end within
/// 1.6% of the best known).
const ITERATIONS_36J: u64 = 650_000;
