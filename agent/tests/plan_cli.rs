//! `saturn plan` as a user runs it: every shared instance with every solver prints a valid
//! plan; malformed inputs exit with status 2 and a one-line message naming the culprit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use saturn_planner::{parse_instance, validate_plan, Plan};

fn saturn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_saturn")).args(args).output().expect("the saturn binary runs")
}

/// The shared planner instances (measured throughputs), copied into the repository from
/// `shared/data/planner` so a clean clone checks them.
fn shared_instances() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/planner");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    files.sort();
    assert!(!files.is_empty(), "no instances in {}", dir.display());
    files
}

#[test]
fn every_shared_instance_gets_a_valid_plan_from_every_solver() {
    for path in shared_instances() {
        let instance = parse_instance(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for solver in ["local-search", "max-heuristic", "optimus-greedy", "random"] {
            let out = saturn(&["plan", path.to_str().unwrap(), "--solver", solver, "--time-limit-ms", "300", "--seed", "3"]);
            assert_eq!(out.status.code(), Some(0), "{solver} on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            let plan: Plan = serde_json::from_slice(&out.stdout).expect("stdout is the plan JSON");
            assert_eq!(plan.solver, solver);
            assert!(plan.lower_bound_s <= plan.makespan_s * (1.0 + 1e-9));
            if let Err(err) = validate_plan(&instance, &plan) {
                panic!("{solver} on {}: {err}", path.display());
            }
        }
    }
}

#[test]
fn the_gantt_chart_is_written_when_asked() {
    let path = shared_instances().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("gantt.svg");
    let out = saturn(&["plan", path.to_str().unwrap(), "--time-limit-ms", "200", "--svg", svg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    assert!(chart.contains("makespan"));
}

fn rejected(json: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("instance.json");
    std::fs::write(&file, json).unwrap();
    let out = saturn(&["plan", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "for {json}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "nothing on stdout for a bad instance");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn malformed_instances_exit_2_naming_the_job_or_host() {
    let host = r#"{"name": "gpu-box-3", "gpus": 4}"#;
    let option = |gpus: u32| format!(r#"{{"technique": "ddp", "gpus_per_host": {gpus}, "step_time_s": 0.2}}"#);
    let too_big = format!(r#"{{"hosts": [{host}], "jobs": [{{"id": "gpt-xl", "steps": 9, "options": [{}]}}]}}"#, option(8));
    assert!(rejected(&too_big).contains("job \"gpt-xl\" option 0"));
    let no_options = format!(r#"{{"hosts": [{host}], "jobs": [{{"id": "bert-tiny", "steps": 9, "options": []}}]}}"#);
    assert!(rejected(&no_options).contains("job \"bert-tiny\" has no options"));
    let twice = format!(r#"{{"hosts": [{host}, {host}], "jobs": []}}"#);
    assert!(rejected(&twice).contains("host \"gpu-box-3\" appears twice"));
    let negative = r#"{"hosts": [{"name": "gpu-box-9", "gpus": -1}], "jobs": []}"#;
    assert!(rejected(negative).contains("host \"gpu-box-9\""));
    assert!(rejected(r#"{"hosts": [], "jobs": []}"#).contains("no hosts"));
    assert!(rejected("{ not json").contains("invalid JSON"));
}

#[test]
fn an_unreadable_file_exits_2_naming_the_path() {
    let out = saturn(&["plan", "/nonexistent/instance-42.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/instance-42.json"));
}
