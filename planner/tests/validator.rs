//! The validator catches each of the five rules, on a plan that is valid until one thing
//! is broken — so each check is shown to be able to fail.

use saturn_planner::{parse_instance, solve, validate_plan, Instance, Plan, PlacementEntry, SolveOptions};

fn instance() -> Instance {
    parse_instance(
        r#"{"hosts": [{"name": "a", "gpus": 2, "gpu_model": "V100"}, {"name": "b", "gpus": 2, "gpu_model": "T4"}],
            "switch_cost_s": 50,
            "jobs": [
              {"id": "x", "steps": 100, "options": [{"technique": "ddp", "gpu_model": "V100", "gpus_per_host": 2, "step_time_s": 1}]},
              {"id": "y", "steps": 100, "release_s": 10, "options": [{"technique": "ddp", "gpus_per_host": 1, "hosts": 2, "step_time_s": 2}]},
              {"id": "z", "steps": 10, "options": [{"technique": "fsdp", "gpus_per_host": 1, "step_time_s": 1}],
               "running": {"technique": "fsdp", "placement": [{"host": "b", "gpus": [1]}]}}
            ]}"#,
    )
    .unwrap()
}

fn solved() -> (Instance, Plan) {
    let instance = instance();
    let plan = solve(&instance, &SolveOptions { max_iterations: Some(100), ..Default::default() }).unwrap();
    assert_eq!(validate_plan(&instance, &plan), Ok(()));
    (instance, plan)
}

fn rule_broken_by(change: impl FnOnce(&mut Plan)) -> (Option<u8>, Option<String>) {
    let (instance, mut plan) = solved();
    change(&mut plan);
    let err = validate_plan(&instance, &plan).expect_err("the broken plan was accepted");
    (err.rule(), err.job().map(str::to_string))
}

fn find<'a>(plan: &'a mut Plan, job: &str) -> &'a mut saturn_planner::Assignment {
    plan.assignments.iter_mut().find(|a| a.job == job).unwrap()
}

#[test]
fn a_missing_or_repeated_job_breaks_rule_1() {
    assert_eq!(rule_broken_by(|p| p.assignments.retain(|a| a.job != "y")), (Some(1), Some("y".into())));
    assert_eq!(rule_broken_by(|p| { let a = p.assignments[0].clone(); p.assignments.push(a) }).0, Some(1));
}

#[test]
fn wrong_technique_model_or_duration_breaks_rule_2() {
    assert_eq!(rule_broken_by(|p| find(p, "x").technique = "fsdp".into()), (Some(2), Some("x".into())));
    assert_eq!(rule_broken_by(|p| find(p, "x").end_s += 1.0).0, Some(2));
    // x may only run on V100 hosts.
    let on_t4 = |p: &mut Plan| find(p, "x").placement = vec![PlacementEntry { host: "b".into(), gpus: vec![0, 1] }];
    assert_eq!(rule_broken_by(on_t4).0, Some(2));
    // z keeps its GPU only at no switch cost; moved, it must pay the 50 s.
    let moved = |p: &mut Plan| find(p, "z").placement = vec![PlacementEntry { host: "b".into(), gpus: vec![0] }];
    assert_eq!(rule_broken_by(moved), (Some(2), Some("z".into())));
}

#[test]
fn repeated_hosts_or_missing_gpus_break_rule_3() {
    let same_host = |p: &mut Plan| {
        find(p, "y").placement = vec![PlacementEntry { host: "a".into(), gpus: vec![0] }, PlacementEntry { host: "a".into(), gpus: vec![1] }]
    };
    assert_eq!(rule_broken_by(same_host), (Some(3), Some("y".into())));
    assert_eq!(rule_broken_by(|p| find(p, "x").placement[0].gpus = vec![0, 2]).0, Some(3));
    assert_eq!(rule_broken_by(|p| find(p, "x").placement[0].gpus = vec![1, 1]).0, Some(3));
}

#[test]
fn overlapping_use_of_a_gpu_breaks_rule_4() {
    let (instance, mut plan) = solved();
    let x = find(&mut plan, "x").clone();
    let y = find(&mut plan, "y");
    // Run y at the same time as x, on x's host.
    let shift = x.start_s - y.start_s;
    y.start_s += shift;
    y.end_s += shift;
    y.placement[0] = PlacementEntry { host: "a".into(), gpus: vec![0] };
    y.placement[1] = PlacementEntry { host: "b".into(), gpus: vec![0] };
    if y.start_s < 10.0 {
        let delay = 10.0 - y.start_s;
        y.start_s += delay;
        y.end_s += delay;
    }
    plan.makespan_s = plan.assignments.iter().map(|a| a.end_s).fold(0.0, f64::max);
    assert_eq!(validate_plan(&instance, &plan).unwrap_err().rule(), Some(4));
}

#[test]
fn starting_before_release_breaks_rule_5() {
    let early = |p: &mut Plan| {
        let y = find(p, "y");
        let d = y.start_s - 5.0;
        y.start_s -= d;
        y.end_s -= d;
    };
    // Rule 5 is checked per assignment, before the overlaps the move may also cause.
    assert_eq!(rule_broken_by(early), (Some(5), Some("y".into())));
}
