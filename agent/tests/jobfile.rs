//! Job files as users write them: the spec's example, sweeps, defaults, and files with
//! mistakes, which must be rejected with every problem named.

use saturn_agent::jobfile::{parse_job_file, parse_job_json, JobFileErrors};

/// The example of spec/agent.md, verbatim.
const SPEC_EXAMPLE: &str = r#"
[[job]]
name = "gpt2-bs16-lr1e-4"
command = ["python3", "train.py", "--bs", "16", "--lr", "1e-4"]
workdir = "/home/lab/proj"           # default: the directory `saturn job run` was run in
env = { HF_HOME = "/data/hf" }
steps = 20000                        # total training steps (minibatches)
techniques = ["ddp", "fsdp", "pipeline", "spilling"]   # what the script can run as
gpus = [1, 8]                        # allowed GPU counts, inclusive
profile_group = "gpt2-bs16"          # jobs in a group share profiling results
max_restarts = 2

[job.profile]                        # optional: seconds per step, skips trial runs for these
fsdp = { 2 = 0.41, 4 = 0.23 }

[[sweep]]                            # a grid: one job per combination
name = "vit-bs{bs}-lr{lr}"
command = ["python3", "train_vit.py", "--bs", "{bs}", "--lr", "{lr}"]
grid = { bs = [64, 128], lr = ["1e-5", "1e-4", "3e-3"] }
steps = 10000
techniques = ["ddp", "fsdp"]
gpus = [1, 8]
profile_group = "vit-bs{bs}"
profile = { ddp = { 1 = 0.9, 4 = 0.3 } }   # same as [job.profile], inline
early_stop = { metric = "loss", mode = "min", rule = "asha", min_steps = 500, reduction = 3 }
"#;

fn rejected(text: &str) -> JobFileErrors {
    match parse_job_file(text, "sweep.toml", "/home/me") {
        Ok(jobs) => panic!("expected the file to be rejected, got {} jobs", jobs.len()),
        Err(errors) => errors,
    }
}

fn assert_reports(errors: &JobFileErrors, expected_line: &str) {
    let lines = errors.lines();
    assert!(
        lines.iter().any(|l| l == expected_line),
        "missing {expected_line:?} in:\n{errors}"
    );
}

#[test]
fn the_spec_example_becomes_one_job_and_a_six_point_sweep() {
    let jobs =
        parse_job_file(SPEC_EXAMPLE, "jobs.toml", "/home/me").expect("the spec example is valid");
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "gpt2-bs16-lr1e-4",
            "vit-bs64-lr1e-5",
            "vit-bs64-lr1e-4",
            "vit-bs64-lr3e-3",
            "vit-bs128-lr1e-5",
            "vit-bs128-lr1e-4",
            "vit-bs128-lr3e-3"
        ]
    );
    let gpt2 = &jobs[0];
    assert_eq!(gpt2.workdir, "/home/lab/proj");
    assert_eq!(
        gpt2.env.get("HF_HOME").map(String::as_str),
        Some("/data/hf")
    );
    assert_eq!(
        (gpt2.steps, gpt2.gpus_min, gpt2.gpus_max, gpt2.max_restarts),
        (20000, 1, 8, 2)
    );
    assert_eq!(gpt2.techniques, ["ddp", "fsdp", "pipeline", "spilling"]);
    assert_eq!(gpt2.profile["fsdp"][&2], 0.41);
    assert_eq!(gpt2.profile["fsdp"][&4], 0.23);

    let vit = &jobs[4];
    assert_eq!(
        vit.command,
        ["python3", "train_vit.py", "--bs", "128", "--lr", "1e-5"]
    );
    assert_eq!(vit.profile_group, "vit-bs128");
    assert_eq!(
        vit.workdir, "/home/me",
        "workdir defaults to where the file was submitted from"
    );
    assert_eq!(vit.profile["ddp"][&4], 0.3);
    let rule = vit.early_stop.as_ref().expect("the sweep's jobs carry its early_stop");
    assert_eq!((rule.sweep.as_str(), rule.metric.as_str(), rule.min_steps, rule.reduction), ("vit-bs{bs}-lr{lr}", "loss", 500, 3));
    assert!(gpt2.early_stop.is_none());
}

#[test]
fn left_out_fields_take_their_documented_defaults() {
    let jobs = parse_job_file(
        "[[job]]\nname = \"plain\"\ncommand = [\"./run.sh\"]\nsteps = 5\n",
        "a.toml",
        "/srv/lab",
    )
    .expect("a minimal job is valid");
    let job = &jobs[0];
    assert_eq!(job.workdir, "/srv/lab");
    assert!(job.env.is_empty() && job.profile.is_empty());
    assert_eq!(job.techniques, ["ddp"]);
    assert_eq!((job.gpus_min, job.gpus_max), (1, 1));
    assert_eq!(job.profile_group, "plain");
    assert_eq!(job.max_restarts, 2);
}

#[test]
fn a_relative_workdir_is_relative_to_the_submitting_directory() {
    let text = "[[job]]\nname = \"a\"\ncommand = [\"x\"]\nsteps = 1\nworkdir = \"sub/dir\"\nenv = { OMP_NUM_THREADS = 4 }\n";
    let jobs = parse_job_file(text, "a.toml", "/home/me").expect("valid");
    assert_eq!(jobs[0].workdir, "/home/me/sub/dir");
    assert_eq!(jobs[0].env["OMP_NUM_THREADS"], "4");
}

#[test]
fn numbers_in_a_grid_print_naturally() {
    let text = r#"
[[sweep]]
name = "m-lr{lr}-d{d}"
command = ["train", "--lr={lr}"]
steps = 10
grid = { lr = [1e-4, 0.5, 3], d = [true] }
"#;
    let jobs = parse_job_file(text, "a.toml", "/").expect("valid");
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["m-lr1e-4-dtrue", "m-lr0.5-dtrue", "m-lr3-dtrue"]);
    assert_eq!(jobs[0].command[1], "--lr=1e-4");
}

#[test]
fn every_problem_is_listed_with_its_line_and_field() {
    let text = r#"[[job]]
name = "ok-name"
command = ["python3", "train.py"]
steps = 0
techniques = ["ddp", "ddp"]
gpus = [0, 8]
stpes = 3

[[sweep]]
name = "vit-{bs}"
command = []
grid = { bs = [64], lr = [] }
gpus = [4, 2]
max_restarts = -1
"#;
    let errors = rejected(text);
    assert_reports(&errors, "sweep.toml line 4: steps = 0: must be at least 1");
    assert_reports(
        &errors,
        r#"sweep.toml line 5: techniques = ["ddp", "ddp"]: "ddp" is listed twice"#,
    );
    assert_reports(
        &errors,
        "sweep.toml line 6: gpus = [0, 8]: the lower bound must be at least 1",
    );
    assert_reports(
        &errors,
        "sweep.toml line 7: stpes = 3: unknown field; did you mean steps?",
    );
    assert_reports(
        &errors,
        "sweep.toml line 9: steps: missing; add steps = N, the total number of training steps",
    );
    assert_reports(
        &errors,
        r#"sweep.toml line 11: command = []: must name the program to run, e.g. ["python3", "train.py"]"#,
    );
    assert_reports(&errors, "sweep.toml line 12: grid.lr = []: must be a non-empty array of strings or numbers, e.g. [64, 128]");
    assert_reports(
        &errors,
        "sweep.toml line 13: gpus = [4, 2]: the lower bound must not exceed the upper bound",
    );
    assert_reports(
        &errors,
        "sweep.toml line 14: max_restarts = -1: must be between 0 and 1000",
    );
    assert_eq!(
        errors.problems.len(),
        9,
        "exactly the nine mistakes:\n{errors}"
    );
}

#[test]
fn names_that_are_not_safe_file_names_are_refused() {
    for bad in ["../../etc", ".hidden", "a b", "", "x/y"] {
        let text = format!("[[job]]\nname = {bad:?}\ncommand = [\"x\"]\nsteps = 1\n");
        let errors = rejected(&text);
        assert_eq!(errors.problems.len(), 1, "{errors}");
        assert_eq!(errors.problems[0].field, "name");
        assert_eq!(errors.problems[0].line, Some(2));
    }
    let long = format!(
        "[[job]]\nname = \"{}\"\ncommand = [\"x\"]\nsteps = 1\n",
        "n".repeat(129)
    );
    assert!(rejected(&long).to_string().contains("at most 128"));
}

#[test]
fn sweep_placeholders_must_be_known_and_names_must_use_every_variable() {
    let text = r#"
[[sweep]]
name = "vit-bs{bs}"
command = ["train", "--lr", "{lr}", "--seed", "{seed}"]
grid = { bs = [64, 128], lr = ["1e-4"] }
steps = 10
"#;
    let errors = rejected(text);
    let all = errors.to_string();
    assert!(
        all.contains(
            "line 4: command[4] = \"{seed}\": unknown placeholder {seed}; the grid defines bs, lr"
        ),
        "{all}"
    );
    assert!(
        all.contains("line 5: grid.lr: {lr} does not appear in name"),
        "{all}"
    );
}

#[test]
fn a_name_that_becomes_invalid_after_substitution_is_reported_once() {
    let text = "[[sweep]]\nname = \"run-{p}\"\ncommand = [\"x\"]\nsteps = 1\ngrid = { p = [\"a/b\", \"c/d\", \"ok\"] }\n";
    let errors = rejected(text);
    assert_eq!(errors.problems.len(), 1, "{errors}");
    let line = &errors.lines()[0];
    assert!(
        line.starts_with(
            "sweep.toml line 2: name = \"run-{p}\": the job name \"run-a/b\" contains '/'"
        ),
        "{line}"
    );
    assert!(
        line.ends_with("(and at 1 more of the 3 grid points)"),
        "{line}"
    );
}

#[test]
fn duplicate_grid_values_would_collide_and_are_refused() {
    let text =
        "[[sweep]]\nname = \"r{x}\"\ncommand = [\"x\"]\nsteps = 1\ngrid = { x = [1, \"1\"] }\n";
    assert!(rejected(text)
        .to_string()
        .contains("two grid points give the same name \"r1\""));
}

#[test]
fn a_huge_grid_is_refused_before_it_is_expanded() {
    let values: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let list = values.join(", ");
    let text = format!(
        "[[sweep]]\nname = \"g{{a}}-{{b}}-{{c}}\"\ncommand = [\"x\"]\nsteps = 1\ngrid = {{ a = [{list}], b = [{list}], c = [{list}] }}\n"
    );
    let started = std::time::Instant::now();
    let errors = rejected(&text);
    assert!(
        errors
            .to_string()
            .contains("expands to 1000000000 jobs; at most 10000"),
        "{errors}"
    );
    assert!(
        started.elapsed().as_secs() < 5,
        "refusing must not expand the grid"
    );
}

#[test]
fn profiles_must_match_the_techniques_and_gpu_range() {
    let text = r#"
[[job]]
name = "p"
command = ["x"]
steps = 1
techniques = ["ddp"]
gpus = [2, 4]
profile = { ddp = { 1 = 0.5, 2 = 0.0, 4 = nan, x = 1.0 }, fsdp = { 2 = 0.3 } }
"#;
    let all = rejected(text).to_string();
    assert!(
        all.contains("profile.ddp.1 = 0.5: 1 GPUs is outside the job's gpus range [2, 4]"),
        "{all}"
    );
    assert!(
        all.contains("profile.ddp.2 = 0: must be the seconds one training step takes"),
        "{all}"
    );
    assert!(
        all.contains("profile.ddp.4 = nan: must be the seconds"),
        "{all}"
    );
    assert!(
        all.contains("profile.ddp.x = 1: the key must be a GPU count"),
        "{all}"
    );
    assert!(
        all.contains(
            "profile.fsdp = { 2 = 0.3 }: \"fsdp\" is not one of the job's techniques (ddp)"
        ),
        "{all}"
    );
}

#[test]
fn structural_mistakes_are_explained() {
    let single_table = rejected("[job]\nname = \"a\"\ncommand = [\"x\"]\nsteps = 1\n").to_string();
    assert!(
        single_table.contains("write [[job]], not [job]"),
        "{single_table}"
    );
    let grid_in_job =
        rejected("[[job]]\nname = \"a{x}\"\ncommand = [\"x\"]\nsteps = 1\ngrid = { x = [1] }\n")
            .to_string();
    assert!(
        grid_in_job.contains("only a [[sweep]] has a grid"),
        "{grid_in_job}"
    );
    let empty = rejected("# nothing here\n").to_string();
    assert!(empty.contains("defines no jobs"), "{empty}");
    let syntax = rejected("[[job]]\nname = \"a\nsteps = 1\n").to_string();
    assert!(
        syntax.starts_with("sweep.toml line 2: not valid TOML"),
        "{syntax}"
    );
    let reserved = rejected("[[job]]\nname = \"a\"\ncommand = [\"x\"]\nsteps = 1\nenv = { CUDA_VISIBLE_DEVICES = \"0\" }\n");
    assert!(
        reserved.to_string().contains("is set by the agent"),
        "{reserved}"
    );
}

#[test]
fn braces_in_a_plain_job_are_left_alone() {
    let text =
        "[[job]]\nname = \"a\"\ncommand = [\"python3\", \"-c\", \"print({x})\"]\nsteps = 1\n";
    let jobs = parse_job_file(text, "a.toml", "/").expect("a [[job]] has no placeholders");
    assert_eq!(jobs[0].command[2], "print({x})");
}

#[test]
fn json_gives_the_same_jobs_as_toml() {
    let json = r#"{
      "job": [{"name": "gpt2-bs16-lr1e-4", "command": ["python3", "train.py", "--bs", "16", "--lr", "1e-4"],
               "workdir": "/home/lab/proj", "env": {"HF_HOME": "/data/hf"}, "steps": 20000,
               "techniques": ["ddp", "fsdp", "pipeline", "spilling"], "gpus": [1, 8],
               "profile_group": "gpt2-bs16", "max_restarts": 2, "profile": {"fsdp": {"2": 0.41, "4": 0.23}}}],
      "sweep": [{"name": "vit-bs{bs}-lr{lr}", "command": ["python3", "train_vit.py", "--bs", "{bs}", "--lr", "{lr}"],
                 "grid": {"bs": [64, 128], "lr": ["1e-5", "1e-4", "3e-3"]}, "steps": 10000,
                 "techniques": ["ddp", "fsdp"], "gpus": [1, 8], "profile_group": "vit-bs{bs}",
                 "profile": {"ddp": {"1": 0.9, "4": 0.3}},
                 "early_stop": {"metric": "loss", "mode": "min", "rule": "asha", "min_steps": 500, "reduction": 3}}]
    }"#;
    let from_json = parse_job_json(json, "/home/me").expect("valid JSON job file");
    let from_toml =
        parse_job_file(SPEC_EXAMPLE, "jobs.toml", "/home/me").expect("valid TOML job file");
    assert_eq!(from_json, from_toml);
}

#[test]
fn json_problems_are_located_by_path() {
    let json = r#"{"job": [{"name": "a", "command": ["x"], "steps": 1},
                           {"name": "b", "command": ["x"], "steps": 1, "gpus": [0, 8], "colour": "red"}]}"#;
    let errors = parse_job_json(json, "/").expect_err("invalid");
    assert_reports(
        &errors,
        "JSON body: job[1].gpus = [0, 8]: the lower bound must be at least 1",
    );
    assert!(
        errors
            .to_string()
            .contains("JSON body: job[1].colour = \"red\": unknown field"),
        "{errors}"
    );
    let syntax = parse_job_json("{\"job\": [", "/").expect_err("truncated");
    assert!(
        syntax
            .to_string()
            .starts_with("JSON body line 1: not valid JSON"),
        "{syntax}"
    );
}
