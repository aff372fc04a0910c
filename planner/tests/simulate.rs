//! The introspection simulator: deterministic for a seed, re-planning never loses a job,
//! and with exact profiles (no noise) execution follows the plan.

mod common;

use saturn_planner::{simulate, SimOptions, SolveOptions};

fn options(seed: u64, noise_sigma: f64) -> SimOptions {
    SimOptions {
        seed,
        noise_sigma,
        interval_s: 500.0,
        solve: SolveOptions { max_iterations: Some(200), ..SimOptions::default().solve },
        ..SimOptions::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    for i in 0..10 {
        let instance = common::random_instance(i);
        assert_eq!(simulate(&instance, &options(i, 0.4)), simulate(&instance, &options(i, 0.4)));
    }
}

#[test]
fn without_noise_the_static_run_never_finishes_later_than_planned() {
    for i in 0..30 {
        let instance = common::random_instance(i);
        let report = simulate(&instance, &options(i, 0.0)).unwrap();
        // Executors start jobs as soon as their GPUs are free, so exact profiles can only
        // make them earlier than the plan's start times.
        assert!(
            report.static_makespan_s <= report.planned_makespan_s + 1e-6,
            "instance {i}: {report:?}"
        );
    }
}

#[test]
fn noisy_runs_finish_every_job_with_and_without_replanning() {
    for i in 0..30 {
        let instance = common::random_instance(100 + i);
        let report = simulate(&instance, &options(i, 0.5)).unwrap();
        assert!(report.static_makespan_s.is_finite() && report.introspective_makespan_s.is_finite(), "{report:?}");
        assert!(report.replans <= report.checks);
        if instance.jobs.is_empty() {
            assert_eq!(report.introspective_makespan_s, 0.0);
        }
    }
}
