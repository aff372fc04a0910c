//! Property: on any instance the format allows, every solver returns a plan that passes the
//! validator, and the lower bound never exceeds a makespan someone achieved.

mod common;

use std::time::Duration;

use proptest::prelude::*;
use saturn_planner::{lower_bound, solve, validate_plan, SolveOptions, Solver};

fn options(solver: Solver, seed: u64) -> SolveOptions {
    SolveOptions { solver, time_limit: Duration::from_secs(10), seed, max_iterations: Some(300) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_solver_returns_a_valid_plan(seed in any::<u64>()) {
        let instance = common::random_instance(seed);
        prop_assert_eq!(instance.validate(), Ok(()));
        let bound = lower_bound(&instance);
        for solver in Solver::ALL {
            let plan = solve(&instance, &options(solver, seed)).expect("a valid instance solves");
            if let Err(err) = validate_plan(&instance, &plan) {
                return Err(TestCaseError::fail(format!("{solver}: {err}\n{}", serde_json::to_string(&instance).unwrap())));
            }
            prop_assert!(bound <= plan.makespan_s * (1.0 + 1e-9), "{solver}: bound {bound} > makespan {}", plan.makespan_s);
            prop_assert_eq!(plan.lower_bound_s, bound);
        }
    }

    #[test]
    fn local_search_is_never_worse_than_the_baselines(seed in any::<u64>()) {
        let instance = common::random_instance(seed);
        let ours = solve(&instance, &options(Solver::LocalSearch, seed)).unwrap().makespan_s;
        for baseline in [Solver::MaxHeuristic, Solver::OptimusGreedy] {
            let theirs = solve(&instance, &options(baseline, seed)).unwrap().makespan_s;
            prop_assert!(ours <= theirs * (1.0 + 1e-9), "local search {ours} > {baseline} {theirs}");
        }
    }
}
