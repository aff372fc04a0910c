//! The same seed and iteration budget give a byte-identical plan; different seeds are free
//! to differ. The leader relies on this to re-plan reproducibly.

mod common;

use std::time::Duration;

use saturn_planner::{solve, Plan, SolveOptions, Solver};

fn plan_json(seed: u64, instance_seed: u64, solver: Solver) -> String {
    let instance = common::random_instance(instance_seed);
    let options = SolveOptions { solver, time_limit: Duration::from_secs(60), seed, max_iterations: Some(2_000) };
    let mut plan: Plan = solve(&instance, &options).unwrap();
    plan.solve_ms = 0; // wall-clock time is the one field allowed to differ
    serde_json::to_string(&plan).unwrap()
}

#[test]
fn same_seed_and_budget_give_the_same_plan() {
    for instance_seed in 0..20 {
        for solver in Solver::ALL {
            assert_eq!(
                plan_json(7, instance_seed, solver),
                plan_json(7, instance_seed, solver),
                "{solver} on instance {instance_seed}"
            );
        }
    }
}

#[test]
fn random_solver_depends_on_the_seed() {
    let differing = (0..20).filter(|&i| plan_json(1, i, Solver::Random) != plan_json(2, i, Solver::Random)).count();
    assert!(differing > 0, "random plans never changed with the seed");
}
