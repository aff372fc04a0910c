//! Malformed instances are rejected with a message naming the job or host at fault, and no
//! input whatsoever makes the parser panic.

use proptest::prelude::*;
use saturn_planner::{parse_instance, InstanceError};

fn error_of(json: &str) -> String {
    match parse_instance(json) {
        Ok(_) => panic!("accepted a malformed instance: {json}"),
        Err(err) => err.to_string(),
    }
}

const HOST: &str = r#"{"name": "node0", "gpus": 4, "gpu_model": "V100"}"#;

fn with_job(job: &str) -> String {
    format!(r#"{{"hosts": [{HOST}], "jobs": [{job}]}}"#)
}

#[test]
fn each_kind_of_mistake_names_its_culprit() {
    let option = r#"{"technique": "ddp", "gpus_per_host": 2, "step_time_s": 0.1}"#;
    let cases = [
        (r#"{"hosts": [], "jobs": []}"#.to_string(), "no hosts"),
        (format!(r#"{{"hosts": [{HOST}, {HOST}], "jobs": []}}"#), "host \"node0\" appears twice"),
        (with_job(r#"{"id": "bert", "steps": 10, "options": []}"#), "job \"bert\" has no options"),
        (
            with_job(r#"{"id": "bert", "steps": 10, "options": [{"technique": "ddp", "gpus_per_host": 8, "step_time_s": 0.1}]}"#),
            "job \"bert\" option 0 (ddp, 8 GPUs x 1 host(s)) fits no host",
        ),
        (
            with_job(r#"{"id": "bert", "steps": 10, "options": [{"technique": "ddp", "gpu_model": "T4", "gpus_per_host": 1, "step_time_s": 0.1}]}"#),
            "job \"bert\" option 0 (ddp, 1 GPUs x 1 host(s), model T4) fits no host",
        ),
        (
            with_job(r#"{"id": "bert", "steps": 10, "options": [{"technique": "ddp", "gpus_per_host": 1, "step_time_s": -0.1}]}"#),
            "job \"bert\" option 0: step_time_s = -0.1",
        ),
        (with_job(&format!(r#"{{"id": "bert", "steps": -5, "options": [{option}]}}"#)), "job \"bert\" (jobs[0]): steps"),
        (
            with_job(&format!(r#"{{"id": "bert", "steps": 5, "release_s": -1, "options": [{option}]}}"#)),
            "job \"bert\": release_s = -1",
        ),
        (
            format!(r#"{{"hosts": [{{"name": "node7", "gpus": -4}}], "jobs": []}}"#),
            "host \"node7\" (hosts[0]): gpus: expected a non-negative integer, got -4",
        ),
        (
            with_job(&format!(
                r#"{{"id": "bert", "steps": 5, "options": [{option}], "running": {{"technique": "ddp", "placement": [{{"host": "node9", "gpus": [0, 1]}}]}}}}"#
            )),
            "job \"bert\" running placement: host \"node9\" is not in `hosts`",
        ),
        (
            format!(r#"{{"hosts": [{HOST}], "jobs": [{{"id": "a", "steps": 1, "options": [{option}]}}, {{"id": "a", "steps": 1, "options": [{option}]}}]}}"#),
            "job \"a\" appears twice",
        ),
        ("{\"hosts\": [".to_string(), "invalid JSON"),
        (format!(r#"{{"hosts": [{HOST}], "jobs": [], "switch_cost_s": -3}}"#), "switch_cost_s = -3"),
    ];
    for (json, expected) in cases {
        let message = error_of(&json);
        assert!(message.contains(expected), "for {json}\n  got: {message}\n  want: {expected}");
    }
}

#[test]
fn overlapping_running_jobs_are_rejected() {
    let running = r#"{"technique": "ddp", "placement": [{"host": "node0", "gpus": [1, 2]}]}"#;
    let job = |id: &str| {
        format!(r#"{{"id": "{id}", "steps": 5, "running": {running}, "options": [{{"technique": "ddp", "gpus_per_host": 2, "step_time_s": 1}}]}}"#)
    };
    let json = format!(r#"{{"hosts": [{HOST}], "jobs": [{}, {}]}}"#, job("a"), job("b"));
    assert!(matches!(parse_instance(&json), Err(InstanceError::RunningOverlap { gpu: 1, .. })));
}

#[test]
fn unknown_fields_are_ignored() {
    let json = r#"{"hosts": [{"name": "n", "gpus": 1, "rack": 3}], "jobs": [], "comment": "x"}"#;
    assert!(parse_instance(json).is_ok());
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = parse_instance(&text);
    }

    #[test]
    fn arbitrary_json_values_never_panic(
        gpus in any::<i64>(), steps in any::<i64>(), step in any::<f64>(), per_host in any::<i64>(),
        hosts in any::<i64>(), release in any::<f64>(), gpu in any::<i64>()
    ) {
        let json = format!(
            r#"{{"hosts": [{{"name": "n", "gpus": {gpus}}}], "jobs": [{{"id": "j", "steps": {steps}, "release_s": {release:?},
              "options": [{{"technique": "t", "gpus_per_host": {per_host}, "hosts": {hosts}, "step_time_s": {step:?}}}],
              "running": {{"technique": "t", "placement": [{{"host": "n", "gpus": [{gpu}]}}]}}}}]}}"#
        );
        if let Ok(instance) = parse_instance(&json) {
            // Whatever is accepted must also solve.
            let _ = saturn_planner::solve(&instance, &saturn_planner::SolveOptions { max_iterations: Some(50), ..Default::default() });
        }
    }
}
