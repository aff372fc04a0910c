//! Scenarios of the pure state machine: what users and executors do, what the state says.

mod fixtures;

use fixtures::*;
use saturn_consensus::{
    AttemptEvent, AttemptStatus, ClusterState, Command, CommandResult, DispatchKind, HostGpus, JobState, ProfileKey,
    ProfileResult, Rejection, STEP_TIME_METRIC,
};

fn cluster_with_hosts() -> ClusterState {
    let mut state = ClusterState::default();
    state.apply(&host_up("a", 4));
    state.apply(&host_up("b", 4));
    state
}

#[test]
fn submitted_jobs_get_increasing_ids_and_wait_for_profiles_unless_given() {
    let mut state = ClusterState::default();
    let mut profiled = spec("given", 100, 0);
    profiled.profile.insert("ddp".into(), [(2, 0.5)].into());
    profiled.profile.insert("fsdp".into(), [(4, 0.3)].into());
    let ids = submit(&mut state, vec![spec("a", 100, 0), profiled]);
    let more = submit(&mut state, vec![spec("c", 100, 0)]);
    assert_eq!([ids[0].0.as_str(), ids[1].0.as_str(), more[0].0.as_str()], ["j-000001", "j-000002", "j-000003"]);
    assert_eq!(state.jobs()[&ids[0]].state, JobState::Queued);
    assert_eq!(state.jobs()[&ids[1]].state, JobState::Scheduled);
}

#[test]
fn a_dispatch_needs_free_gpus_on_an_up_host() {
    let mut state = cluster_with_hosts();
    let ids = submit(&mut state, vec![spec("a", 100, 0), spec("b", 100, 0)]);
    let first = state.apply(&train(&ids[0], on("a", &[0, 1])));
    assert_eq!(first, CommandResult::Dispatched { job: ids[0].clone(), attempt: 1 });
    assert_eq!(state.jobs()[&ids[0]].state, JobState::Running);

    let busy = state.apply(&train(&ids[1], on("a", &[1, 2])));
    assert!(matches!(busy, CommandResult::Rejected(Rejection::GpuBusy { gpu: 1, .. })), "{busy:?}");
    let twice = state.apply(&train(&ids[0], on("b", &[0])));
    assert!(matches!(twice, CommandResult::Rejected(Rejection::AttemptLive { attempt: 1, .. })), "{twice:?}");
    let unknown_host = state.apply(&train(&ids[1], on("zz", &[0])));
    assert_eq!(unknown_host, CommandResult::Rejected(Rejection::HostNotUp("zz".into())));
    let no_gpu = state.apply(&train(&ids[1], on("b", &[9])));
    assert!(matches!(no_gpu, CommandResult::Rejected(Rejection::NoSuchGpu { gpu: 9, .. })));
    let duplicate = state.apply(&train(&ids[1], on("b", &[3, 3])));
    assert!(matches!(duplicate, CommandResult::Rejected(Rejection::BadPlacement(_))));

    state.apply(&Command::AgentDown { name: "b".into(), at_ms: 5 });
    let down = state.apply(&train(&ids[1], on("b", &[0])));
    assert_eq!(down, CommandResult::Rejected(Rejection::HostNotUp("b".into())));
    assert_eq!(state.counters().rejected, 6);
    check_invariants(&state).unwrap();
}

#[test]
fn a_failed_attempt_restarts_from_its_checkpoint_until_restarts_run_out() {
    let mut state = cluster_with_hosts();
    let job = submit(&mut state, vec![spec("a", 1000, 1)]).remove(0);
    state.apply(&train(&job, on("a", &[0])));
    state.apply(&event(&job, 1, AttemptEvent::Started));
    state.apply(&event(&job, 1, AttemptEvent::Checkpoint { step: 300 }));
    state.apply(&event(&job, 1, AttemptEvent::Progress { step: 420, metrics: vec![("loss".into(), 2.5)] }));
    state.apply(&exited(&job, 1, 1));

    let record = &state.jobs()[&job];
    assert_eq!((record.state, record.steps_done, record.restarts), (JobState::Scheduled, 300, 1));
    assert!(state.gpus().is_empty(), "the exit frees the GPUs");

    assert_eq!(state.apply(&train(&job, on("b", &[2]))), CommandResult::Dispatched { job: job.clone(), attempt: 2 });
    assert_eq!(state.jobs()[&job].live.as_ref().map(|l| l.start_step), Some(300));
    state.apply(&event(&job, 2, AttemptEvent::Exited { code: None, error: Some("killed by SIGSEGV".into()) }));
    let record = &state.jobs()[&job];
    assert_eq!(record.state, JobState::Failed);
    assert_eq!(record.error.as_deref(), Some("killed by SIGSEGV"));
    assert!(record.finished_at_ms.is_some());
}

#[test]
fn exit_zero_after_all_steps_completes_the_job() {
    let mut state = cluster_with_hosts();
    let job = submit(&mut state, vec![spec("a", 100, 0)]).remove(0);
    state.apply(&train(&job, on("a", &[0, 1, 2, 3])));
    state.apply(&event(&job, 1, AttemptEvent::Progress { step: 100, metrics: vec![] }));
    state.apply(&exited(&job, 1, 0));
    let record = &state.jobs()[&job];
    assert_eq!((record.state, record.exit_code, record.steps_done), (JobState::Completed, Some(0), 100));
}

#[test]
fn events_of_a_stale_attempt_are_ignored() {
    let mut state = cluster_with_hosts();
    let job = submit(&mut state, vec![spec("a", 100, 3)]).remove(0);
    state.apply(&train(&job, on("a", &[0])));
    state.apply(&exited(&job, 1, 1));
    state.apply(&train(&job, on("a", &[1])));

    let late = state.apply(&exited(&job, 1, 0));
    assert_eq!(late, CommandResult::Rejected(Rejection::StaleAttempt { job: job.clone(), attempt: 1 }));
    assert!(state.is_live(&job, 2));
    assert_eq!(state.gpu_holder("a", 1).map(|h| h.attempt), Some(2));
    check_invariants(&state).unwrap();
}

#[test]
fn a_preempted_attempt_keeps_its_gpus_until_it_exits_and_is_not_a_failure() {
    let mut state = cluster_with_hosts();
    let job = submit(&mut state, vec![spec("a", 1000, 0)]).remove(0);
    state.apply(&train(&job, on("a", &[0, 1])));
    state.apply(&event(&job, 1, AttemptEvent::Checkpoint { step: 200 }));
    assert_eq!(state.apply(&Command::Preempt { job: job.clone(), attempt: 1, at_ms: 30 }), CommandResult::Applied);
    assert_eq!(state.jobs()[&job].live.as_ref().map(|l| l.status), Some(AttemptStatus::Stopping));
    assert!(state.gpu_holder("a", 0).is_some(), "GPUs stay held while stopping");

    state.apply(&exited(&job, 1, 143));
    let record = &state.jobs()[&job];
    assert_eq!((record.state, record.steps_done, record.restarts), (JobState::Scheduled, 200, 0));
    assert_eq!(state.counters().preemptions, 1);
}

#[test]
fn a_host_declared_down_ends_every_gang_on_it_without_counting_a_restart() {
    let mut state = cluster_with_hosts();
    let ids = submit(&mut state, vec![spec("gang", 1000, 0), spec("solo", 1000, 0)]);
    let gang = vec![HostGpus { host: "a".into(), gpus: vec![0, 1] }, HostGpus { host: "b".into(), gpus: vec![0, 1] }];
    state.apply(&train(&ids[0], gang));
    state.apply(&train(&ids[1], on("a", &[2])));
    state.apply(&event(&ids[0], 1, AttemptEvent::Checkpoint { step: 50 }));

    state.apply(&Command::AgentDown { name: "b".into(), at_ms: 40 });
    let gang_job = &state.jobs()[&ids[0]];
    assert_eq!((gang_job.state, gang_job.steps_done, gang_job.restarts), (JobState::Scheduled, 50, 0));
    assert!(state.gpu_holder("a", 0).is_none(), "the gang's GPUs on the surviving host are freed too");
    assert!(state.is_live(&ids[1], 1), "a job not on the lost host keeps running");
    assert_eq!(state.attempts_on_host("a").count(), 1);
    assert_eq!(state.counters().lost_attempts, 1);
    check_invariants(&state).unwrap();
}

#[test]
fn a_trial_run_records_its_profile_and_returns_the_job_to_profiling() {
    let mut state = cluster_with_hosts();
    let job = submit(&mut state, vec![spec("a", 1000, 0)]).remove(0);
    let key = ProfileKey {
        profile_group: "a-group".into(),
        technique: "fsdp".into(),
        gpus_per_host: 2,
        hosts: 1,
        gpu_model: "A100-80GB".into(),
    };
    let trial = DispatchKind::Trial { profile_key: key.clone(), steps: 20 };
    let dispatch =
        Command::Dispatch { job: job.clone(), technique: "fsdp".into(), placement: on("a", &[0, 1]), kind: trial, at_ms: 1 };
    assert_eq!(state.apply(&dispatch), CommandResult::Dispatched { job: job.clone(), attempt: 1 });
    assert_eq!(state.jobs()[&job].state, JobState::Profiling);

    let metrics = vec![(STEP_TIME_METRIC.to_string(), 0.42)];
    state.apply(&event(&job, 1, AttemptEvent::Progress { step: 20, metrics }));
    state.apply(&exited(&job, 1, 0));
    assert_eq!(state.profile(&key), Some(&ProfileResult::StepTime(0.42)));
    let record = &state.jobs()[&job];
    assert_eq!((record.state, record.steps_done, record.restarts), (JobState::Profiling, 0, 0));

    // A trial that crashes marks the configuration infeasible.
    let oom = Command::Dispatch {
        job: job.clone(),
        technique: "fsdp".into(),
        placement: on("a", &[0]),
        kind: DispatchKind::Trial { profile_key: ProfileKey { gpus_per_host: 1, ..key.clone() }, steps: 20 },
        at_ms: 2,
    };
    state.apply(&oom);
    state.apply(&event(&job, 2, AttemptEvent::Exited { code: Some(1), error: Some("CUDA out of memory".into()) }));
    let one_gpu = ProfileKey { gpus_per_host: 1, ..key };
    assert_eq!(state.profile(&one_gpu), Some(&ProfileResult::Infeasible { reason: "CUDA out of memory".into() }));
    assert_eq!(state.jobs()[&job].restarts, 0, "trials do not count towards max_restarts");
    assert_eq!((state.jobs()[&job].trials, state.jobs()[&job].training_attempts()), (2, 0), "two trials, no training yet");
    state.apply(&train(&job, on("a", &[0, 1])));
    assert_eq!((state.jobs()[&job].attempt, state.jobs()[&job].trials, state.jobs()[&job].training_attempts()), (3, 2, 1));
}

#[test]
fn cancelling_a_running_job_stops_it_and_frees_gpus_only_on_exit() {
    let mut state = cluster_with_hosts();
    let job = submit(&mut state, vec![spec("a", 1000, 0)]).remove(0);
    state.apply(&train(&job, on("b", &[3])));
    state.apply(&Command::CancelJob { job: job.clone(), at_ms: 50 });
    assert_eq!(state.jobs()[&job].state, JobState::Cancelled);
    assert_eq!(state.jobs()[&job].live.as_ref().map(|l| l.status), Some(AttemptStatus::Stopping));
    assert!(state.gpu_holder("b", 3).is_some());
    assert!(matches!(state.apply(&train(&job, on("a", &[0]))), CommandResult::Rejected(Rejection::JobEnded(_))));

    state.apply(&exited(&job, 1, 143));
    assert!(state.gpu_holder("b", 3).is_none());
    assert_eq!(state.jobs()[&job].state, JobState::Cancelled);
    assert_eq!(state.jobs()[&job].finished_at_ms, Some(20));
}

#[test]
fn plans_get_increasing_epochs() {
    let mut state = ClusterState::default();
    let plan = saturn_consensus::StoredPlan { epoch: 99, makespan_s: 10.0, ..Default::default() };
    assert_eq!(state.apply(&Command::CommitPlan { plan: plan.clone(), at_ms: 7 }), CommandResult::PlanCommitted { epoch: 1 });
    assert_eq!(state.apply(&Command::CommitPlan { plan, at_ms: 8 }), CommandResult::PlanCommitted { epoch: 2 });
    assert_eq!(state.plan().map(|p| (p.epoch, p.committed_at_ms)), Some((2, 8)));
}

#[test]
fn a_job_printing_ever_new_metric_names_keeps_at_most_the_cap_and_gets_one_note() {
    let mut state = cluster_with_hosts();
    let job = submit(&mut state, vec![spec("a", 1000, 1)]).remove(0);
    state.apply(&train(&job, on("a", &[0])));
    for step in 1..=100u64 {
        let metrics = vec![(format!("m{step}"), step as f64), ("loss".to_string(), 1.0 / step as f64)];
        state.apply(&event(&job, 1, AttemptEvent::Progress { step, metrics }));
    }
    let record = &state.jobs()[&job];
    assert_eq!(record.metrics.len(), saturn_consensus::apply::MAX_METRIC_NAMES);
    let loss = record.metrics.iter().find(|(name, _)| name == "loss").map(|(_, v)| *v);
    assert_eq!(loss, Some(0.01), "a known name is still updated");
    let notes: Vec<_> = record.notes.iter().filter(|n| n.text.starts_with("metrics ignored")).collect();
    assert_eq!(notes.len(), 1, "{:?}", record.notes);
    assert!(notes[0].text.contains("m64"), "{:?}", notes[0]);
    let live = record.live.as_ref().expect("live attempt");
    assert_eq!(live.metrics.len(), saturn_consensus::apply::MAX_METRIC_NAMES);
}

#[test]
fn a_trial_that_reports_no_step_at_all_records_no_steps_not_infeasible() {
    let mut state = cluster_with_hosts();
    let job = submit(&mut state, vec![spec("quiet", 1000, 0)]).remove(0);
    let key = ProfileKey {
        profile_group: "quiet".into(),
        technique: "ddp".into(),
        gpus_per_host: 1,
        hosts: 1,
        gpu_model: "A100-80GB".into(),
    };
    let trial = |n: u64| Command::Dispatch {
        job: job.clone(),
        technique: "ddp".into(),
        placement: on("a", &[0]),
        kind: DispatchKind::Trial { profile_key: ProfileKey { gpus_per_host: 1, hosts: n as u32, ..key.clone() }, steps: 20 },
        at_ms: n,
    };
    state.apply(&trial(1));
    state.apply(&exited(&job, 1, 0));
    assert_eq!(state.profile(&key), Some(&ProfileResult::NoSteps));
    // One that did report steps but no step time is still infeasible.
    state.apply(&trial(2));
    state.apply(&event(&job, 2, AttemptEvent::Progress { step: 3, metrics: vec![] }));
    state.apply(&exited(&job, 2, 0));
    let two = ProfileKey { hosts: 2, ..key };
    assert!(matches!(state.profile(&two), Some(ProfileResult::Infeasible { .. })));
    // A training attempt of such a script completes on exit 0.
    state.apply(&train(&job, on("a", &[0])));
    state.apply(&exited(&job, 3, 0));
    assert_eq!(state.jobs()[&job].state, JobState::Completed);
}

#[test]
fn a_trial_verdict_records_the_profile_at_once_and_the_exit_that_follows_is_expected() {
    let mut state = cluster_with_hosts();
    let job = submit(&mut state, vec![spec("v", 1000, 0)]).remove(0);
    let key = |hosts: u32| ProfileKey {
        profile_group: "v".into(),
        technique: "ddp".into(),
        gpus_per_host: 1,
        hosts,
        gpu_model: "A100-80GB".into(),
    };
    let trial = |n: u32| Command::Dispatch {
        job: job.clone(),
        technique: "ddp".into(),
        placement: on("a", &[0]),
        kind: DispatchKind::Trial { profile_key: key(n), steps: 20 },
        at_ms: u64::from(n),
    };
    // Measured, then killed by the executor's SIGTERM: the exit as it happened (a signal)
    // does not undo the verdict.
    state.apply(&trial(1));
    state.apply(&event(&job, 1, AttemptEvent::TrialStepTime { seconds_per_step: 0.25, samples: 12 }));
    assert_eq!(state.profile(&key(1)), Some(&ProfileResult::StepTime(0.25)), "recorded at once");
    assert_eq!(state.jobs()[&job].live.as_ref().map(|l| l.status), Some(AttemptStatus::Stopping));
    state.apply(&event(&job, 1, AttemptEvent::Exited { code: None, error: Some("killed by signal 15".into()) }));
    assert_eq!(state.profile(&key(1)), Some(&ProfileResult::StepTime(0.25)));
    let record = &state.jobs()[&job];
    assert_eq!((record.state, record.restarts, record.live.is_none()), (JobState::Profiling, 0, true));
    assert!(state.gpu_holder("a", 0).is_none());

    // Out of time without one step line: no steps, whatever the exit.
    state.apply(&trial(2));
    state.apply(&event(&job, 2, AttemptEvent::TrialNoSteps));
    state.apply(&exited(&job, 2, 143));
    assert_eq!(state.profile(&key(2)), Some(&ProfileResult::NoSteps));

    // No verdict and a crash: infeasible, as before.
    state.apply(&trial(3));
    state.apply(&event(&job, 3, AttemptEvent::Exited { code: Some(1), error: Some("CUDA out of memory".into()) }));
    assert!(matches!(state.profile(&key(3)), Some(ProfileResult::Infeasible { .. })));

    // A verdict is for trials only.
    state.apply(&train(&job, on("a", &[0])));
    let refused = state.apply(&event(&job, 4, AttemptEvent::TrialNoSteps));
    assert!(matches!(refused, CommandResult::Rejected(Rejection::WrongState { .. })), "{refused:?}");
}
