//! The list-scheduling executor, scenario by scenario.

use saturn_consensus::{HostGpus, JobId, JobPhase, StoredPlan};

use super::*;
use crate::scheduler::shapes::up_hosts;
use crate::scheduler::test_support::{cluster, ctx, spec, submit};

/// Host `a` with 4 GPUs and `n` scheduled jobs.
fn setup(n: usize) -> (ClusterState, Vec<JobId>) {
    let mut state = cluster(&[("a", 4)]);
    let specs = (0..n).map(|i| spec(&format!("j{i}"), "g", &["ddp"], 1, 4)).collect();
    let ids = submit(&mut state, specs);
    for id in &ids {
        state.apply(&Command::SetJobPhase { job: id.clone(), phase: JobPhase::Scheduled, at_ms: 0 });
    }
    (state, ids)
}

fn on(gpus: &[u32]) -> Placement {
    vec![HostGpus { host: "a".into(), gpus: gpus.to_vec() }]
}

fn commit(state: &mut ClusterState, plan: &[(&JobId, &[u32], f64)]) {
    let assignments = plan
        .iter()
        .map(|(job, gpus, start_s)| PlannedAssignment {
            job: (*job).clone(),
            technique: "ddp".into(),
            placement: on(gpus),
            start_s: *start_s,
            end_s: start_s + 100.0,
        })
        .collect();
    state.apply(&Command::CommitPlan { plan: StoredPlan { assignments, ..StoredPlan::default() }, at_ms: 0 });
}

fn dispatched(decision: &DispatchDecision) -> Vec<JobId> {
    decision
        .commands
        .iter()
        .filter_map(|c| if let Command::Dispatch { job, .. } = c { Some(job.clone()) } else { None })
        .collect()
}

fn decide(state: &ClusterState) -> DispatchDecision {
    decide_dispatch(state, &up_hosts(state), &ctx(state, 5_000))
}

#[test]
fn jobs_whose_gpus_are_free_start_now() {
    let (mut state, ids) = setup(3);
    commit(&mut state, &[(&ids[0], &[0, 1], 0.0), (&ids[1], &[2, 3], 0.0), (&ids[2], &[0, 1, 2, 3], 100.0)]);
    let decision = decide(&state);
    assert_eq!(dispatched(&decision), vec![ids[0].clone(), ids[1].clone()]);
    assert_eq!(decision.replan, None);
}

#[test]
fn a_later_job_never_takes_gpus_an_earlier_waiting_job_needs() {
    let (mut state, ids) = setup(4);
    // j0 holds GPU 0 (it runs); j1 waits for GPUs 0 and 1; j2 wants GPU 1; j3 wants GPU 2.
    commit(
        &mut state,
        &[(&ids[0], &[0], 0.0), (&ids[1], &[0, 1], 100.0), (&ids[2], &[1], 200.0), (&ids[3], &[2], 300.0)],
    );
    for command in decide(&state).commands.iter().take(1) {
        state.apply(command);
    }
    assert_eq!(state.jobs()[&ids[0]].state, JobState::Running);
    let decision = decide(&state);
    assert_eq!(dispatched(&decision), vec![ids[3].clone()], "j2 would delay j1; j3 is in nobody's way");
}

#[test]
fn a_job_ending_early_lets_the_next_start_at_once() {
    let (mut state, ids) = setup(2);
    commit(&mut state, &[(&ids[0], &[0, 1, 2, 3], 0.0), (&ids[1], &[0, 1, 2, 3], 5_000.0)]);
    state.apply(&decide(&state).commands[0]);
    assert!(decide(&state).commands.is_empty(), "j1 waits for j0's GPUs");
    let exited = saturn_consensus::AttemptEvent::Exited { code: Some(0), error: None };
    state.apply(&Command::JobEvent { job: ids[0].clone(), attempt: 1, event: exited, at_ms: 10 });
    assert_eq!(dispatched(&decide(&state)), vec![ids[1].clone()], "no waiting for the planned start");
}

#[test]
fn a_plan_naming_a_missing_gpu_or_host_asks_for_a_replan() {
    let (mut state, ids) = setup(1);
    commit(&mut state, &[(&ids[0], &[7], 0.0)]);
    let decision = decide(&state);
    assert!(decision.commands.is_empty());
    assert!(decision.replan.as_deref().is_some_and(|why| why.contains("no GPU 7")));
    assert!(plan_stale_reason(&state, &up_hosts(&state)).is_some());
    state.apply(&Command::AgentDown { name: "a".into(), at_ms: 1 });
    assert!(decide(&state).replan.is_some_and(|why| why.contains("not up")));
}

#[test]
fn both_models_of_a_mixed_host_run_jobs_at_once_and_a_plan_spanning_them_is_stale() {
    let mut state = ClusterState::default();
    crate::scheduler::test_support::add_mixed_host(&mut state, "a", &["OLD", "OLD", "NEW", "NEW"]);
    let ids = submit(&mut state, (0..2).map(|i| spec(&format!("j{i}"), "g", &["ddp"], 1, 2)).collect());
    for id in &ids {
        state.apply(&Command::SetJobPhase { job: id.clone(), phase: JobPhase::Scheduled, at_ms: 0 });
    }
    commit(&mut state, &[(&ids[0], &[2, 3], 0.0), (&ids[1], &[0, 1], 0.0)]);
    assert_eq!(dispatched(&decide(&state)), ids, "one job on each model's GPUs, at once");
    assert!(plan_stale_reason(&state, &up_hosts(&state)).is_none());
    commit(&mut state, &[(&ids[0], &[1, 2], 0.0)]);
    let why = plan_stale_reason(&state, &up_hosts(&state)).expect("GPUs of two models in one entry");
    assert!(why.contains("GPU 2 of model OLD"), "{why}");
}
