//! Small hand-checked scenarios for the lower bound and the list-scheduling decoder.

use saturn_planner::{lower_bound, parse_instance, solve, validate_plan, SolveOptions};

fn instance(json: &str) -> saturn_planner::Instance {
    parse_instance(json).unwrap()
}

#[test]
fn bound_is_the_longest_job_when_gpus_are_plenty() {
    // Two jobs on 8 GPUs: the 1000 s job alone bounds the makespan.
    let i = instance(
        r#"{"hosts": [{"name": "a", "gpus": 8}], "jobs": [
            {"id": "long", "steps": 1000, "options": [{"technique": "ddp", "gpus_per_host": 1, "step_time_s": 1}]},
            {"id": "short", "steps": 10, "options": [{"technique": "ddp", "gpus_per_host": 1, "step_time_s": 1}]}]}"#,
    );
    assert!((lower_bound(&i) - 1000.0).abs() < 1e-6);
}

#[test]
fn bound_counts_work_per_gpu_model() {
    // Four 100 s jobs that only run on the single V100; the 8 T4 GPUs cannot help, so the
    // plain area bound (400 GPU-s / 9 GPUs) is far too low and the per-model bound is 400.
    let job = |id: &str| format!(r#"{{"id": "{id}", "steps": 100, "options": [{{"technique": "ddp", "gpu_model": "V100", "gpus_per_host": 1, "step_time_s": 1}}]}}"#);
    let i = instance(&format!(
        r#"{{"hosts": [{{"name": "v", "gpus": 1, "gpu_model": "V100"}}, {{"name": "t", "gpus": 8, "gpu_model": "T4"}}],
            "jobs": [{}, {}, {}, {}]}}"#,
        job("a"), job("b"), job("c"), job("d")
    ));
    let bound = lower_bound(&i);
    assert!((bound - 400.0).abs() < 1e-3, "bound {bound}");
    let plan = solve(&i, &SolveOptions { max_iterations: Some(100), ..Default::default() }).unwrap();
    assert!((plan.makespan_s - 400.0).abs() < 1e-6, "the optimum is 400, got {}", plan.makespan_s);
}

#[test]
fn a_gang_waits_for_two_hosts_and_a_running_job_keeps_its_gpus() {
    // "big" needs 2 GPUs on each of 2 hosts; "busy" already runs on host a GPU 0-1 for 50 s.
    let i = instance(
        r#"{"hosts": [{"name": "a", "gpus": 2}, {"name": "b", "gpus": 2}], "switch_cost_s": 1000, "jobs": [
            {"id": "big", "steps": 10, "options": [{"technique": "fsdp", "gpus_per_host": 2, "hosts": 2, "step_time_s": 1}]},
            {"id": "busy", "steps": 50, "options": [{"technique": "ddp", "gpus_per_host": 2, "step_time_s": 1}],
             "running": {"technique": "ddp", "placement": [{"host": "a", "gpus": [1, 0]}]}}]}"#,
    );
    let plan = solve(&i, &SolveOptions { max_iterations: Some(200), ..Default::default() }).unwrap();
    validate_plan(&i, &plan).unwrap();
    let get = |id: &str| plan.assignments.iter().find(|a| a.job == id).unwrap();
    assert_eq!((get("busy").start_s, get("busy").end_s), (0.0, 50.0), "moving it would cost 1000 s");
    assert_eq!((get("big").start_s, get("big").end_s), (50.0, 60.0));
    assert_eq!(plan.makespan_s, 60.0);
}

#[test]
fn release_times_delay_jobs_and_raise_the_bound() {
    let i = instance(
        r#"{"hosts": [{"name": "a", "gpus": 1}], "jobs": [
            {"id": "late", "steps": 10, "release_s": 500, "options": [{"technique": "ddp", "gpus_per_host": 1, "step_time_s": 1}]}]}"#,
    );
    assert!((lower_bound(&i) - 510.0).abs() < 1e-6);
    let plan = solve(&i, &SolveOptions::default()).unwrap();
    assert_eq!(plan.assignments[0].start_s, 500.0);
}
