//! A job cannot escape its own job: what a user writes in a job file, or a peer puts in
//! a log request, never becomes a path outside that job's own directories.
//!
//! Two lines of defence, each tested on its own:
//! - the job-file parser refuses names and profile groups that are not plain file names
//!   (`../../etc`, `a/b`, `..`, `.hidden`, empty, over 128 characters, non-ASCII), also
//!   when a sweep's grid puts them together, in TOML and in JSON;
//! - every path built from a job id (`file_safe`: the log dir, the checkpoint dir, the
//!   process record) is one plain component under its directory, whatever the id holds
//!   (ids come from the state machine, but a log request from a peer carries any string).

use std::path::{Component, Path};

use proptest::prelude::*;
use saturn_agent::daemon::logs::{read_local, LogsRequest};
use saturn_agent::executor::pidfile::{file_safe, PidDir};
use saturn_agent::executor::{attempt_log_path, checkpoint_dir, AttemptKey, ProcessRecord};
use saturn_agent::jobfile::{parse_job_file, parse_job_json};

/// Names that must never name a job or a profile group.
const HOSTILE: &[&str] = &["../../etc", "a/b", "..", ".", ".hidden", "", "a\\b", "é", "a b", "a\0b", "~root", "$HOME"];

fn job_toml(name: &str, group: &str) -> String {
    format!("[[job]]\nname = {name:?}\ncommand = [\"true\"]\nsteps = 1\nprofile_group = {group:?}\n")
}

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

#[test]
fn hostile_job_names_and_profile_groups_are_refused() {
    let long = "a".repeat(129);
    for name in HOSTILE.iter().copied().chain([long.as_str()]) {
        let as_name = parse_job_file(&job_toml(name, "ok"), "jobs.toml", "/");
        assert!(as_name.is_err(), "job name {name:?} was accepted");
        let as_group = parse_job_file(&job_toml("ok", name), "jobs.toml", "/");
        assert!(as_group.is_err(), "profile group {name:?} was accepted");
        let json = serde_json::json!({"job": [{"name": name, "command": ["true"], "steps": 1}]}).to_string();
        assert!(parse_job_json(&json, "/").is_err(), "JSON job name {name:?} was accepted");
    }
    let longest = "a".repeat(128);
    assert!(parse_job_file(&job_toml(&longest, "g"), "jobs.toml", "/").is_ok(), "a 128-character name is allowed");
}

#[test]
fn a_grid_cannot_assemble_a_path_out_of_harmless_pieces() {
    for value in ["../..", "/etc", "x/../y"] {
        let sweep = format!(
            "[[sweep]]\nname = \"run-{{v}}\"\ncommand = [\"true\"]\ngrid = {{ v = [{value:?}] }}\nsteps = 1\n"
        );
        assert!(parse_job_file(&sweep, "sweep.toml", "/").is_err(), "sweep name with {value:?} was accepted");
        let group = format!(
            "[[sweep]]\nname = \"run\"\ncommand = [\"true\"]\ngrid = {{ v = [{value:?}] }}\nsteps = 1\nprofile_group = \"{{v}}\"\n"
        );
        assert!(parse_job_file(&group, "sweep.toml", "/").is_err(), "profile group with {value:?} was accepted");
    }
    // A value that makes the whole name `..`.
    let whole = "[[sweep]]\nname = \"{v}\"\ncommand = [\"true\"]\ngrid = { v = [\"..\"] }\nsteps = 1\n";
    assert!(parse_job_file(whole, "sweep.toml", "/").is_err(), "a sweep named `..` was accepted");
    // Every grid variable must appear in the name, so a grid value is always checked
    // as part of a name; plain values pass.
    let plain = "[[sweep]]\nname = \"run-{d}\"\ncommand = [\"train\", \"{d}\"]\ngrid = { d = [\"data-1\", \"v2.0\"] }\nsteps = 1\n";
    if let Err(problems) = parse_job_file(plain, "sweep.toml", "/") {
        panic!("plain grid values were refused: {problems}");
    }
}

/// `path` is `dir` plus exactly `depth` normal components.
fn stays_under(path: &Path, dir: &Path, depth: usize) -> bool {
    let Ok(rest) = path.strip_prefix(dir) else { return false };
    let parts: Vec<Component> = rest.components().collect();
    parts.len() == depth && parts.iter().all(|c| matches!(c, Component::Normal(_)))
}

fn hostile_id() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(HOSTILE).prop_map(String::from),
        "[./\\\\a-z]{0,12}",
        "\\PC{0,40}",
        Just("x".repeat(300)),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn any_job_id_is_one_plain_component_of_its_directories(id in hostile_id(), attempt in any::<u32>()) {
        let data = Path::new("/var/lib/saturn");
        let safe = file_safe(&id);
        prop_assert!(stays_under(&data.join(&safe), data, 1), "{id:?} became {safe:?}");
        let key = AttemptKey::new(id.clone(), attempt);
        prop_assert!(stays_under(&attempt_log_path(data, &key), &data.join("logs"), 2));
        prop_assert!(stays_under(&checkpoint_dir(data, &id), &data.join("checkpoints"), 1));
    }
}

#[test]
fn distinct_hostile_ids_do_not_share_the_checkpoint_root() {
    // An id that sanitises to nothing would make the checkpoints directory itself a
    // job's SATURN_CHECKPOINT_DIR, shared with every other job.
    let data = Path::new("/d");
    for id in HOSTILE {
        assert_ne!(checkpoint_dir(data, id), data.join("checkpoints"), "{id:?}");
    }
}

#[test]
fn process_records_of_hostile_ids_stay_in_the_process_directory() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pids = PidDir::open(dir.path()).expect("the process dir");
    for (i, id) in HOSTILE.iter().enumerate() {
        let record = ProcessRecord { job: id.to_string(), attempt: 1, pid: 100 + i as u32, pgid: 0, start_time: 1 };
        pids.record(&record).expect("a record is written");
    }
    let outside: Vec<_> = walk(dir.path()).into_iter().filter(|p| !p.starts_with(dir.path().join("processes"))).collect();
    assert!(outside.iter().all(|p| p.is_dir()), "files outside processes/: {outside:?}");
    // Ids that sanitise alike share a record; ids come from the state machine
    // (`j-000017`), so that never happens to real jobs.
    assert!(pids.list().iter().all(|r| HOSTILE.contains(&r.job.as_str())));
}

#[test]
fn a_log_request_cannot_read_outside_the_log_directory() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("logs")).expect("the log dir");
    // Where `logs/../secret/attempt-1.log` and `logs/../../secret/...` would lead.
    for secret_dir in [dir.path().join("secret"), data.join("secret")] {
        std::fs::create_dir_all(&secret_dir).expect("a secret dir");
        std::fs::write(secret_dir.join("attempt-1.log"), "SECRET").expect("a secret");
    }
    for job in ["../secret", "../../secret", "..", "", "/etc"] {
        let request = LogsRequest { job: job.to_string(), attempt: 1, offset: 0, max_bytes: 1024 };
        let answer = read_local(&data, &request).map(|r| r.data).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&answer).contains("SECRET"), "job {job:?} read a file outside its logs");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}
