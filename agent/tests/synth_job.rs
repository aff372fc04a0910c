//! The simulated training job (`saturn synth-job`) run as a real job through the
//! executor: it completes, checkpoints and resumes, profiles, and fails as told.

mod executor_harness;

use std::time::Duration;

use executor_harness::*;
use saturn_agent::executor::{attempt_logs, AttemptSpec, ProcessEvent};
use saturn_agent::synth_job::{synthetic_step_time, SynthModel};

const SATURN: &str = env!("CARGO_BIN_EXE_saturn");

/// A synth-job spec: a 6 GB model on 2 × SIM-24GB, so ddp fits (4 × 6 = 24 GiB).
fn synth(h: &Harness, job: &str, steps: u64, args: &[&str]) -> AttemptSpec {
    let mut command = vec![SATURN.to_owned(), "synth-job".to_owned(), "--model-gb".to_owned(), "6".to_owned()];
    command.extend(args.iter().map(|a| a.to_string()));
    let mut spec = h.spec(job, command);
    spec.steps = steps;
    spec.env.insert("SATURN_SYNTH_RECORD_FILE".into(), h.dir.path().join("records.jsonl").display().to_string());
    spec
}

fn records(h: &Harness) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(h.dir.path().join("records.jsonl")).unwrap_or_default();
    text.lines().map(|line| serde_json::from_str(line).expect("a JSON record line")).collect()
}

#[tokio::test]
async fn a_simulated_job_runs_all_its_steps_and_checkpoints_along_the_way() {
    let mut h = Harness::new().await;
    let spec = synth(&h, "j-full", 40, &["--time-scale", "0.02"]);
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    assert_eq!(exit_of(&events), (Some(0), None, None));
    assert_eq!(steps(&events).last(), Some(&40));
    assert_eq!(checkpoints(&events), [4, 8, 12, 16, 20, 24, 28, 32, 36], "every tenth of the steps");
    assert!(events.iter().any(|e| matches!(e, ProcessEvent::Metric { name, .. } if name == "loss")));
    let outcomes: Vec<_> = records(&h).iter().map(|r| r["outcome"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(outcomes, ["started", "completed"]);
    assert_eq!(records(&h)[1]["gpus"], serde_json::json!([0, 2]));
}

#[tokio::test]
async fn sigterm_checkpoints_and_a_restart_resumes_from_there() {
    let mut h = Harness::new().await;
    // ~5 ms a step: 400 steps take about 2 s.
    let first = synth(&h, "j-resume", 400, &["--time-scale", "0.08", "--checkpoint-every", "1000"]);
    h.table.ensure_running(&first).await;
    h.events_until(&first.key(), |e| matches!(e, ProcessEvent::Step { step, .. } if *step >= 50)).await;
    h.table.stop(&first.key(), Duration::from_secs(10));
    let events = h.run_to_exit(&first.key()).await;
    assert_eq!(exit_of(&events).0, Some(0), "SIGTERM is a clean stop: {events:?}");
    let saved = *checkpoints(&events).last().expect("a checkpoint line on SIGTERM");
    assert!((50..400).contains(&saved));

    let mut second = synth(&h, "j-resume", 400, &["--time-scale", "0.08", "--checkpoint-every", "1000"]);
    second.attempt = 2;
    second.start_step = saved;
    h.table.ensure_running(&second).await;
    let events = h.run_to_exit(&second.key()).await;
    assert_eq!(exit_of(&events).0, Some(0));
    let resumed = steps(&events);
    assert!(resumed.iter().all(|&s| s > saved), "{resumed:?} resumes after {saved}");
    assert_eq!(resumed.last(), Some(&400));
    assert!(log_text(&h.table.log_path(&second.key())).contains(&format!("resuming from the checkpoint at step {saved}")));

    let logs: Vec<u32> = attempt_logs(&h.data_dir(), "j-resume").into_iter().map(|(attempt, _)| attempt).collect();
    assert_eq!(logs, [1, 2], "each attempt has its own log");

    let records = records(&h);
    let ends: Vec<_> = records.iter().filter(|r| r["outcome"] != "started").collect();
    assert_eq!(ends.len(), 2);
    assert_eq!((ends[0]["outcome"].as_str(), ends[0]["end_step"].as_u64()), (Some("terminated"), Some(saved)));
    assert!(ends[0]["end_ms"].as_u64() <= ends[1]["start_ms"].as_u64(), "attempts never overlap");
}

#[tokio::test]
async fn a_resume_without_its_checkpoint_fails() {
    let mut h = Harness::new().await;
    let mut spec = synth(&h, "j-nockpt", 30, &["--time-scale", "0.01"]);
    spec.start_step = 25;
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    assert_eq!(exit_of(&events).0, Some(2), "a resume the agent cannot back with a checkpoint is an error");
    assert!(steps(&events).is_empty());
    assert!(log_text(&h.table.log_path(&spec.key())).contains("no checkpoint at step 25"));
}

#[tokio::test]
async fn a_resume_from_a_damaged_checkpoint_fails() {
    let mut h = Harness::new().await;
    let first = synth(&h, "j-damaged", 20, &["--time-scale", "0.01", "--checkpoint-every", "10"]);
    h.table.ensure_running(&first).await;
    assert_eq!(exit_of(&h.run_to_exit(&first.key()).await).0, Some(0));
    let data = first.checkpoint_dir.join("synth-checkpoint-10.bin");
    let mut bytes = std::fs::read(&data).expect("the checkpoint at step 10 wrote real bytes");
    assert_eq!(bytes.len(), 64 * 1024, "the default checkpoint size");
    bytes[7] ^= 0x01;
    std::fs::write(&data, bytes).unwrap();
    let mut second = synth(&h, "j-damaged", 20, &["--time-scale", "0.01", "--checkpoint-every", "10"]);
    second.attempt = 2;
    second.start_step = 10;
    h.table.ensure_running(&second).await;
    assert_eq!(exit_of(&h.run_to_exit(&second.key()).await).0, Some(2));
    assert!(log_text(&h.table.log_path(&second.key())).contains("damaged"));
}

#[tokio::test]
async fn a_trial_run_measures_the_cost_model_and_leaves_no_checkpoint() {
    let mut h = Harness::new().await;
    let time_scale = 0.3;
    let mut spec = synth(&h, "j-trial", 10_000, &["--time-scale", "0.3"]);
    spec.technique = "fsdp".into();
    spec.profile_steps = Some(25);
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    assert_eq!(exit_of(&events).0, Some(0));
    assert_eq!(steps(&events).last(), Some(&25));
    assert!(checkpoints(&events).is_empty());
    assert!(!spec.checkpoint_dir.exists() || std::fs::read_dir(&spec.checkpoint_dir).map_or(0, |d| d.count()) == 0);
    let measured = events
        .iter()
        .find_map(|e| if let ProcessEvent::StepTime { seconds_per_step, .. } = e { Some(*seconds_per_step) } else { None })
        .expect("a StepTime event");
    let model = SynthModel { model_gb: 6.0, base_step_ms: 120.0, compute_fraction: 0.9 };
    let expected = synthetic_step_time(&model, "fsdp", 2, 1, 24 * 1024).expect("fsdp fits") * time_scale;
    assert!((measured / expected - 1.0).abs() < 0.25, "measured {measured} s/step, model says {expected}");
    assert_eq!(records(&h)[1]["profile"], serde_json::json!(true));
}

#[tokio::test]
async fn ddp_with_a_model_too_big_for_the_gpu_fails_out_of_memory() {
    let mut h = Harness::new().await;
    let mut spec = synth(&h, "j-oom", 10, &["--time-scale", "0.01"]);
    spec.gpu_memory_mib = Some(16 * 1024);
    h.table.ensure_running(&spec).await;
    let (code, _, error) = exit_of(&h.run_to_exit(&spec.key()).await);
    assert_eq!(code, Some(3));
    let error = error.unwrap_or_default();
    assert!(error.contains("out of memory") && error.contains("24.0 GiB"), "{error}");
}

#[tokio::test]
async fn fail_at_step_exits_non_zero_at_that_step() {
    let mut h = Harness::new().await;
    let spec = synth(&h, "j-fail", 50, &["--time-scale", "0.01", "--fail-at-step", "17"]);
    h.table.ensure_running(&spec).await;
    let events = h.run_to_exit(&spec.key()).await;
    let (code, _, error) = exit_of(&events);
    assert_eq!(code, Some(1));
    assert!(error.unwrap_or_default().contains("simulated failure at step 17"));
    assert!(steps(&events).iter().all(|&s| s < 17));
    assert_eq!(records(&h)[1]["outcome"], "failed");
}
