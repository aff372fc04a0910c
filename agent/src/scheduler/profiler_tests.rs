//! Trial dispatch and job phases, scenario by scenario.

use saturn_consensus::{AttemptEvent, CommandResult};

use super::*;
use crate::scheduler::config::SchedulerConfig;
use crate::scheduler::shapes::up_hosts;
use crate::scheduler::test_support::{cluster, ctx, key, record, spec, submit};

fn book(state: &ClusterState) -> ProfileBook {
    let active = state.jobs().values().filter(|j| !j.state.is_terminal());
    ProfileBook::build(state, &up_hosts(state), active, &SchedulerConfig::default())
}

fn trials(state: &ClusterState) -> Vec<Command> {
    decide_trials(state, &book(state), &up_hosts(state), &ctx(state, 1_000), true)
}

fn phases(state: &ClusterState) -> (Vec<Command>, Vec<Unrunnable>) {
    decide_phases(state, &book(state), &up_hosts(state), &ctx(state, 1_000))
}

fn apply_all(state: &mut ClusterState, commands: &[Command]) {
    for command in commands {
        let result = state.apply(command);
        assert!(!matches!(result, CommandResult::Rejected(_)), "{command:?} was rejected: {result:?}");
    }
}

fn trial_keys(commands: &[Command]) -> Vec<ProfileKey> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch { kind: DispatchKind::Trial { profile_key, .. }, .. } => Some(profile_key.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_technique_of_every_group_starts_measuring_at_once() {
    let mut state = cluster(&[("a", 4), ("b", 4)]);
    let group = |g: &str| vec![spec("x", g, &["ddp", "fsdp"], 1, 4), spec("y", g, &["ddp", "fsdp"], 1, 4)];
    submit(&mut state, [group("g"), group("h")].concat());
    let commands = trials(&state);
    let mut keys = trial_keys(&commands);
    keys.sort();
    let expected = vec![key("g", "ddp", 1, 1), key("g", "fsdp", 1, 1), key("h", "ddp", 1, 1), key("h", "fsdp", 1, 1)];
    assert_eq!(keys, expected);
    apply_all(&mut state, &commands);
    assert!(trials(&state).is_empty(), "keys in flight are not measured twice");
}

#[test]
fn a_job_carries_one_trial_at_a_time() {
    let mut state = cluster(&[("a", 4)]);
    submit(&mut state, vec![spec("x", "g", &["ddp", "fsdp"], 1, 4)]);
    let commands = trials(&state);
    assert_eq!(trial_keys(&commands).len(), 1);
    apply_all(&mut state, &commands);
    assert!(trials(&state).is_empty(), "the only carrier is busy");
}

#[test]
fn no_trial_starts_without_free_gpus() {
    let mut state = cluster(&[("a", 1)]);
    submit(&mut state, vec![spec("x", "g", &["ddp"], 1, 1), spec("y", "h", &["ddp"], 1, 1)]);
    let commands = trials(&state);
    assert_eq!(commands.len(), 1, "one GPU, one trial");
}

#[test]
fn jobs_move_from_queued_to_profiling_to_scheduled() {
    let mut state = cluster(&[("a", 2)]);
    let ids = submit(&mut state, vec![spec("x", "g", &["ddp"], 1, 2), spec("y", "g", &["ddp"], 1, 2)]);
    assert!(phases(&state).0.is_empty(), "nothing started: both stay queued");
    let commands = trials(&state);
    apply_all(&mut state, &commands);
    let (commands, _) = phases(&state);
    assert!(matches!(&commands[..], [Command::SetJobPhase { job, phase: JobPhase::Profiling, .. }] if *job == ids[1]));
    apply_all(&mut state, &commands);
    // The trial ends: 1 and then 2 GPUs are measured.
    let carrier = ids.iter().find(|id| state.jobs()[*id].live.is_some()).unwrap().clone();
    let attempt = state.jobs()[&carrier].live.as_ref().unwrap().attempt;
    let exited = AttemptEvent::Exited { code: Some(0), error: None };
    state.apply(&Command::JobEvent { job: carrier, attempt, event: exited, at_ms: 1 });
    assert!(state.gpus().is_empty(), "the trial's GPUs are free again");
    record(&mut state, key("g", "ddp", 1, 1), Some(1.0));
    record(&mut state, key("g", "ddp", 2, 1), Some(0.5));
    let (commands, unrunnable) = phases(&state);
    assert!(unrunnable.is_empty());
    assert_eq!(commands.len(), 2);
    assert!(commands.iter().all(|c| matches!(c, Command::SetJobPhase { phase: JobPhase::Scheduled, .. })));
}

#[test]
fn a_job_with_no_feasible_option_fails_with_the_reason() {
    let mut state = cluster(&[("a", 2)]);
    let ids = submit(&mut state, vec![spec("big", "g", &["ddp"], 1, 2)]);
    record(&mut state, key("g", "ddp", 1, 1), None);
    let (commands, unrunnable) = phases(&state);
    let [Command::FailJob { job, reason, .. }] = &commands[..] else { panic!("expected one FailJob: {commands:?}") };
    assert_eq!(job, &ids[0]);
    assert!(reason.contains("infeasible"), "{reason}");
    state.apply(&commands[0]);
    let record = state.job(&ids[0]).expect("job");
    assert_eq!(record.state.as_str(), "failed");
    assert_eq!(record.error.as_deref(), Some(reason.as_str()));
    assert_eq!(unrunnable.len(), 1);
    assert_eq!(unrunnable[0].job, ids[0]);
    assert!(unrunnable[0].reason.contains("infeasible"));
}

#[test]
fn refining_trials_of_scheduled_jobs_keep_off_gpus_the_plan_waits_for() {
    use saturn_consensus::{HostGpus, PlannedAssignment, StoredPlan};
    let mut state = cluster(&[("a", 2), ("b", 2)]);
    let ids = submit(&mut state, vec![spec("x", "g", &["ddp"], 1, 4), spec("y", "g", &["ddp"], 1, 4)]);
    record(&mut state, key("g", "ddp", 1, 1), Some(1.0));
    record(&mut state, key("g", "ddp", 2, 1), Some(0.5));
    for id in &ids {
        state.apply(&Command::SetJobPhase { job: id.clone(), phase: JobPhase::Scheduled, at_ms: 0 });
    }
    // The 2x2 gang rung is still open, but the plan waits for host a's GPUs for x.
    let assignment = PlannedAssignment {
        job: ids[0].clone(),
        technique: "ddp".into(),
        placement: vec![HostGpus { host: "a".into(), gpus: vec![0, 1] }],
        start_s: 10.0,
        end_s: 20.0,
    };
    let plan = StoredPlan { assignments: vec![assignment], ..StoredPlan::default() };
    state.apply(&Command::CommitPlan { plan, at_ms: 0 });
    assert!(trials(&state).is_empty(), "a 2-host gang would need host a");
}

#[test]
fn only_trials_that_gate_scheduling_start_while_a_submission_is_held() {
    let mut state = cluster(&[("a", 2), ("b", 2), ("c", 1)]);
    let ids = submit(&mut state, vec![spec("x", "g", &["ddp"], 1, 4), spec("y", "h", &["ddp"], 1, 1)]);
    record(&mut state, key("g", "ddp", 1, 1), Some(1.0));
    record(&mut state, key("g", "ddp", 2, 1), Some(0.5));
    state.apply(&Command::SetJobPhase { job: ids[0].clone(), phase: JobPhase::Scheduled, at_ms: 0 });
    let gating = decide_trials(&state, &book(&state), &up_hosts(&state), &ctx(&state, 1_000), false);
    assert_eq!(trial_keys(&gating), [key("h", "ddp", 1, 1)], "not g's gang rung");
    // Nor when the gang rung's carrier still waits for another technique's ladder.
    state.apply(&Command::SetJobPhase { job: ids[0].clone(), phase: JobPhase::Profiling, at_ms: 0 });
    let gating = decide_trials(&state, &book(&state), &up_hosts(&state), &ctx(&state, 1_000), false);
    assert_eq!(trial_keys(&gating), [key("h", "ddp", 1, 1)], "not g's gang rung, whoever carries it");
    let all = trial_keys(&trials(&state));
    assert!(all.iter().any(|k| k.profile_group == "g" && k.hosts > 1), "g's gang rung once refining is allowed: {all:?}");
}

#[test]
fn a_recent_submission_is_held_while_part_of_it_is_profiled_but_older_jobs_are_not() {
    let mut state = cluster(&[("a", 2)]);
    let old = submit(&mut state, vec![spec("old", "o", &["ddp"], 1, 2)]).remove(0);
    let mut later = |spec| match state.apply(&Command::SubmitJobs { specs: vec![spec], at_ms: 200_000 }) {
        CommandResult::Submitted { jobs } => jobs[0].clone(),
        other => panic!("{other:?}"),
    };
    let profiled = later(spec("x", "g", &["ddp"], 1, 2));
    let waiting = later(spec("y", "h", &["ddp"], 1, 2));
    state.apply(&Command::SetJobPhase { job: profiled.clone(), phase: JobPhase::Scheduled, at_ms: 0 });
    let at = |now_ms| {
        let mut ctx = ctx(&state, now_ms);
        ctx.config.profiling_hold_ms = 120_000;
        held_by_profiling(&state, &[], &ctx)
    };
    let held = at(250_000);
    assert!(held.contains(&profiled) && held.contains(&waiting) && !held.contains(&old));
    assert!(at(320_001).is_empty(), "the hold ends after profiling_hold_ms");
}
