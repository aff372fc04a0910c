//! Re-plan timing, commit and preemption rules, scenario by scenario.

use saturn_consensus::{AttemptEvent, DispatchKind, HostGpus, JobPhase};

use super::*;
use crate::scheduler::instance::build_instance;
use crate::scheduler::profiles::ProfileBook;
use crate::scheduler::shapes::up_hosts;
use crate::scheduler::test_support::{cluster, ctx, key, record, spec, submit};

#[test]
fn replans_follow_changes_after_the_debounce_and_the_interval_otherwise() {
    let config = SchedulerConfig::default();
    let mut memory = PlanningMemory::default();
    assert_eq!(memory.due(1, 0, &config), Some(ReplanReason::Changed), "a new leader solves at once");
    memory.solved(1, 0);
    assert_eq!(memory.due(1, 500, &config), None);
    assert_eq!(memory.due(2, 500, &config), None, "debounced");
    assert_eq!(memory.due(2, 1_000, &config), Some(ReplanReason::Changed));
    assert_eq!(memory.due(1, 29_999, &config), None);
    assert_eq!(memory.due(1, 30_000, &config), Some(ReplanReason::Periodic));
    memory.force();
    assert_eq!(memory.due(1, 1_000, &config), Some(ReplanReason::Stale));
}

/// One 4-GPU host; job `j` (ddp, 1..=4 GPUs, near-linear scaling) with `steps` steps,
/// running on GPU 0.
fn one_running_job(steps: u64) -> ClusterState {
    let mut state = cluster(&[("a", 4)]);
    let mut job = spec("j", "g", &["ddp"], 1, 4);
    job.steps = steps;
    let id = submit(&mut state, vec![job]).remove(0);
    for (n, t) in [(1, 1.0), (2, 0.5), (4, 0.25)] {
        record(&mut state, key("g", "ddp", n, 1), Some(t));
    }
    state.apply(&Command::SetJobPhase { job: id.clone(), phase: JobPhase::Scheduled, at_ms: 0 });
    let placement = vec![HostGpus { host: "a".into(), gpus: vec![0] }];
    let dispatch =
        Command::Dispatch { job: id.clone(), technique: "ddp".into(), placement, kind: DispatchKind::Train, at_ms: 0 };
    state.apply(&dispatch);
    state.apply(&Command::JobEvent { job: id, attempt: 1, event: AttemptEvent::Started, at_ms: 0 });
    state
}

fn run_replan(state: &ClusterState, now_ms: u64) -> PlanOutcome {
    let mut ctx = ctx(state, now_ms);
    ctx.config.solve_time_limit_ms = 50;
    let hosts = up_hosts(state);
    let book = ProfileBook::build(state, &hosts, state.jobs().values(), &ctx.config);
    let planning = build_instance(state, &book, &hosts, &ctx.config);
    replan(state, &planning, &ctx, false).expect("the instance is valid")
}

#[test]
fn a_first_plan_is_committed_and_an_equal_one_is_not() {
    let mut state = one_running_job(60);
    let first = run_replan(&state, 0);
    assert!(matches!(&first.commands[..], [Command::CommitPlan { .. }]));
    assert!(first.baseline_makespan_s >= first.makespan_s);
    state.apply(&first.commands[0]);
    let again = run_replan(&state, 1_000);
    assert!(again.commands.is_empty(), "same jobs, no better plan: the committed plan stands");
}

#[test]
fn a_long_running_job_is_moved_when_the_gain_beats_the_switch_cost() {
    let state = one_running_job(10_000);
    let outcome = run_replan(&state, 0);
    assert_eq!(outcome.preempted, 1);
    assert!(matches!(&outcome.commands[..], [Command::CommitPlan { .. }, Command::Preempt { attempt: 1, .. }]));
    let Command::CommitPlan { plan, .. } = &outcome.commands[0] else { unreachable!() };
    assert_eq!(plan.assignments[0].placement[0].gpus.len(), 4, "moved to the whole host");
}

#[test]
fn a_nearly_done_job_is_left_alone_when_moving_would_not_pay() {
    let state = one_running_job(60);
    let outcome = run_replan(&state, 0);
    assert_eq!(outcome.preempted, 0);
    let Some(Command::CommitPlan { plan, .. }) = outcome.commands.first() else { panic!("no plan committed") };
    assert_eq!(plan.assignments[0].placement, vec![HostGpus { host: "a".into(), gpus: vec![0] }]);
}

#[test]
fn the_committed_plan_carries_the_solve_time_that_get_plan_reports() {
    let mut state = one_running_job(10_000);
    let began = std::time::Instant::now();
    let outcome = run_replan(&state, 0);
    let wall_ms = began.elapsed().as_millis() as u64;
    let Some(commit @ Command::CommitPlan { plan, .. }) = outcome.commands.first() else { panic!("no plan committed") };
    assert_eq!(plan.solve_ms, outcome.solve_ms);
    assert!(outcome.solve_ms <= wall_ms);
    state.apply(commit);
    let view = crate::api::render::plan(&state).expect("a plan is committed");
    assert_eq!(view.solve_ms, outcome.solve_ms, "GET /v1/plan reports the leader's solve time");
}
