//! A sweep's `early_stop` table: defaults, and every mistake named with its line and field.

use saturn_agent::jobfile::{parse_job_file, parse_job_json, JobFileErrors};
use saturn_consensus::{MetricMode, StopRule};

fn sweep(early_stop: &str) -> String {
    format!(
        "[[sweep]]\nname = \"m-lr{{lr}}\"\ncommand = [\"train\", \"{{lr}}\"]\nsteps = 1000\ngrid = {{ lr = [1, 2, 3] }}\n{early_stop}\n"
    )
}

fn rejected(text: &str) -> JobFileErrors {
    match parse_job_file(text, "s.toml", "/") {
        Ok(jobs) => panic!("expected a rejection, got {} jobs", jobs.len()),
        Err(errors) => errors,
    }
}

fn assert_reports(errors: &JobFileErrors, expected: &str) {
    assert!(errors.lines().iter().any(|l| l == expected), "missing {expected:?} in:\n{errors}");
}

#[test]
fn every_job_of_the_sweep_carries_its_rule_with_documented_defaults() {
    let jobs = parse_job_file(&sweep("early_stop = { metric = \"val/acc\", min_steps = 100 }"), "s.toml", "/")
        .expect("valid");
    assert_eq!(jobs.len(), 3);
    for job in &jobs {
        let rule = job.early_stop.as_ref().expect("early_stop");
        assert_eq!(rule.sweep, "m-lr{lr}");
        assert_eq!(rule.metric, "val/acc");
        assert_eq!((rule.mode, rule.rule, rule.min_steps, rule.reduction), (MetricMode::Min, StopRule::Asha, 100, 3));
    }
    let median = parse_job_file(
        &sweep("early_stop = { metric = \"acc\", mode = \"max\", rule = \"median\", min_steps = 50, reduction = 4 }"),
        "s.toml",
        "/",
    )
    .expect("valid");
    let rule = median[0].early_stop.as_ref().expect("early_stop");
    assert_eq!((rule.mode, rule.rule, rule.min_steps, rule.reduction), (MetricMode::Max, StopRule::Median, 50, 4));
}

#[test]
fn every_early_stop_problem_is_listed_with_its_line_and_field() {
    let errors = rejected(&sweep(
        "early_stop = { metric = \"a loss\", mode = \"lowest\", rule = \"hyperband\", min_steps = 1000, reduction = 1, patience = 3 }",
    ));
    let at = "s.toml line 6: ";
    assert_reports(&errors, &format!("{at}early_stop.metric = \"a loss\": must be a metric name: 1 to 64 letters, digits or _ . - / :"));
    assert_reports(&errors, &format!("{at}early_stop.mode = \"lowest\": must be \"min\" or \"max\""));
    assert_reports(&errors, &format!("{at}early_stop.rule = \"hyperband\": must be \"asha\" or \"median\""));
    assert_reports(&errors, &format!("{at}early_stop.min_steps = 1000: must be below steps (1000), or no job is ever judged"));
    assert_reports(&errors, &format!("{at}early_stop.reduction = 1: must be between 2 and 100"));
    assert_reports(
        &errors,
        &format!("{at}early_stop.patience = 3: unknown field; early_stop has metric, mode, rule, min_steps, reduction"),
    );
    assert_eq!(errors.problems.len(), 6, "exactly the six mistakes:\n{errors}");

    let missing = rejected(&sweep("early_stop = { mode = \"max\" }"));
    assert!(missing.to_string().contains("early_stop.metric"), "{missing}");
    assert!(missing.to_string().contains("early_stop.min_steps"), "{missing}");
    let not_a_table = rejected(&sweep("early_stop = \"asha\""));
    assert!(not_a_table.to_string().contains("early_stop = \"asha\": must be a table"), "{not_a_table}");
}

#[test]
fn a_plain_job_cannot_stop_early() {
    let text = "[[job]]\nname = \"a\"\ncommand = [\"x\"]\nsteps = 10\nearly_stop = { metric = \"loss\", min_steps = 5 }\n";
    let errors = rejected(text);
    assert_eq!(errors.problems.len(), 1, "{errors}");
    assert!(errors.to_string().contains("line 5: early_stop = "), "{errors}");
    assert!(errors.to_string().contains("only a [[sweep]] stops its jobs early"), "{errors}");
}

#[test]
fn json_problems_name_the_early_stop_path() {
    let json = r#"{"sweep": [{"name": "m{x}", "command": ["t"], "steps": 10, "grid": {"x": [1, 2]},
                   "early_stop": {"metric": "loss", "min_steps": 5, "rule": "best"}}]}"#;
    let errors = parse_job_json(json, "/").expect_err("invalid");
    assert_reports(&errors, "JSON body: sweep[0].early_stop.rule = \"best\": must be \"asha\" or \"median\"");
}
