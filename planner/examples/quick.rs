use saturn_planner::*;
use std::time::Duration;
fn main() {
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).unwrap();
        let inst = parse_instance(&text).unwrap();
        let lb = lower_bound(&inst);
        print!("{path}: lb {lb:.0}");
        for s in Solver::ALL {
            let r = solve_traced(&inst, &SolveOptions { solver: s, time_limit: Duration::from_millis(1000), seed: 1, max_iterations: None }).unwrap();
            validate_plan(&inst, &r.plan).unwrap();
            print!(" | {s} {:.0} ({:.3}) {}ms it{}", r.plan.makespan_s, r.plan.makespan_s / lb, r.plan.solve_ms, r.iterations);
        }
        println!();
        for seed in 0..3 {
            let t = std::time::Instant::now();
            let r = simulate(&inst, &SimOptions { seed, ..Default::default() }).unwrap();
            println!("   sim seed {seed}: {r:?} {:?}", t.elapsed());
        }
    }
}
#[allow(dead_code)]
fn unused() {}
