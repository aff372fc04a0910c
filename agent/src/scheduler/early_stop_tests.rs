use saturn_consensus::{
    AttemptEvent, AttemptStatus, ClusterState, Command, CommandResult, DispatchKind, EarlyStop, HostGpus, JobId,
    JobState, MetricMode, StopRule,
};

use super::decide_early_stops;
use crate::scheduler::test_support::{cluster, spec, submit};

fn rule(rule: StopRule, mode: MetricMode) -> EarlyStop {
    EarlyStop { sweep: "grid".into(), metric: "loss".into(), mode, rule, min_steps: 100, reduction: 3 }
}

/// `n` jobs of one sweep, each training on its own GPU of one 12-GPU host.
fn sweep(n: usize, rule: EarlyStop) -> (ClusterState, Vec<JobId>) {
    let mut state = cluster(&[("a", 12)]);
    let specs = (0..n)
        .map(|i| {
            let mut spec = spec(&format!("job-{i}"), "g", &["ddp"], 1, 1);
            spec.early_stop = Some(rule.clone());
            spec
        })
        .collect();
    let ids = submit(&mut state, specs);
    for (i, id) in ids.iter().enumerate() {
        let placement = vec![HostGpus { host: "a".into(), gpus: vec![i as u32] }];
        let dispatch =
            Command::Dispatch { job: id.clone(), technique: "ddp".into(), placement, kind: DispatchKind::Train, at_ms: 0 };
        assert!(matches!(state.apply(&dispatch), CommandResult::Dispatched { .. }));
    }
    (state, ids)
}

fn progress(state: &mut ClusterState, job: &JobId, step: u64, loss: f64) {
    let attempt = state.job(job).map_or(0, |j| j.attempt);
    let event = AttemptEvent::Progress { step, metrics: vec![("loss".into(), loss)] };
    state.apply(&Command::JobEvent { job: job.clone(), attempt, event, at_ms: step });
}

fn stopped(commands: &[Command]) -> Vec<JobId> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::StopJob { job, .. } => Some(job.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn asha_waits_for_reduction_peers_then_keeps_the_top_third() {
    let (mut state, ids) = sweep(3, rule(StopRule::Asha, MetricMode::Min));
    progress(&mut state, &ids[0], 120, 2.0);
    progress(&mut state, &ids[1], 110, 1.0);
    assert!(decide_early_stops(&state, 0).is_empty(), "two jobs at a rung with reduction 3: nobody is judged yet");
    progress(&mut state, &ids[2], 105, 3.0);
    assert_eq!(stopped(&decide_early_stops(&state, 0)), vec![ids[0].clone(), ids[2].clone()]);
}

#[test]
fn asha_rejudges_a_rung_as_the_rest_of_the_sweep_arrives() {
    let (mut state, ids) = sweep(6, rule(StopRule::Asha, MetricMode::Min));
    // The first cohort of three: job 0 is its best and goes on.
    for (job, loss) in ids.iter().zip([1.5, 2.0, 2.5]) {
        progress(&mut state, job, 100, loss);
    }
    assert_eq!(stopped(&decide_early_stops(&state, 0)), vec![ids[1].clone(), ids[2].clone()]);
    // Three more reach the rung, two of them better than job 0: top 6/3 = 2 go on.
    for (job, loss) in ids[3..].iter().zip([1.0, 1.2, 9.0]) {
        progress(&mut state, job, 100, loss);
    }
    let stops = stopped(&decide_early_stops(&state, 0));
    assert!(stops.contains(&ids[0]), "job 0 is now third of six: {stops:?}");
    assert!(!stops.contains(&ids[3]) && !stops.contains(&ids[4]));
}

#[test]
fn decisions_depend_only_on_the_metric_history_not_on_event_order() {
    let history: Vec<(usize, u64, f64)> = (0..9)
        .flat_map(|j| [(j, 50, 5.0 - j as f64 * 0.1), (j, 130, 4.0 - (j as f64 * 0.7).sin()), (j, 310, 3.0 - (j as f64 * 0.7).sin())])
        .collect();
    let run = |order: &[(usize, u64, f64)]| {
        let (mut state, ids) = sweep(9, rule(StopRule::Asha, MetricMode::Min));
        for &(job, step, loss) in order {
            progress(&mut state, &ids[job], step, loss);
        }
        let rungs: Vec<_> = ids.iter().map(|id| state.job(id).map(|j| j.rungs.clone())).collect();
        (rungs, decide_early_stops(&state, 7))
    };
    let in_order = run(&history);
    // Same per-job history, jobs interleaved differently (each job's own order kept).
    let mut interleaved = history.clone();
    interleaved.sort_by_key(|&(job, step, _)| (step, std::cmp::Reverse(job)));
    assert_eq!(in_order, run(&interleaved));
    assert_eq!(in_order, run(&history), "the same history decides the same, every time");
    assert_eq!(stopped(&in_order.1).len(), 6, "nine at rung 100: the top three go on");
}

#[test]
fn median_stops_a_job_worse_than_the_others_median() {
    let (mut state, ids) = sweep(4, rule(StopRule::Median, MetricMode::Max));
    for (job, accuracy) in ids.iter().zip([0.9, 0.8, 0.7, 0.6]) {
        progress(&mut state, job, 100, accuracy);
    }
    // Job 2: 0.7 against the others' median 0.8; job 3: 0.6 against 0.8; job 1: 0.8
    // against the median of 0.9, 0.7, 0.6 = 0.7.
    assert_eq!(stopped(&decide_early_stops(&state, 0)), vec![ids[2].clone(), ids[3].clone()]);
}

#[test]
fn a_stopped_job_ends_stopped_after_its_attempt_exits_and_frees_its_gpus() {
    let (mut state, ids) = sweep(3, rule(StopRule::Asha, MetricMode::Min));
    for (job, loss) in ids.iter().zip([1.0, 2.0, 3.0]) {
        progress(&mut state, job, 100, loss);
    }
    for command in decide_early_stops(&state, 5) {
        assert_eq!(state.apply(&command), CommandResult::Applied);
    }
    let job = state.job(&ids[2]).cloned().expect("job");
    assert_eq!(job.state, JobState::Stopped);
    assert_eq!(job.live.as_ref().map(|l| l.status), Some(AttemptStatus::Stopping), "SIGTERM first: GPUs still held");
    assert!(decide_early_stops(&state, 6).is_empty(), "a stopped job is not stopped twice");
    let checkpoint = AttemptEvent::Checkpoint { step: 100 };
    state.apply(&Command::JobEvent { job: ids[2].clone(), attempt: 1, event: checkpoint, at_ms: 7 });
    let exited = AttemptEvent::Exited { code: Some(0), error: None };
    state.apply(&Command::JobEvent { job: ids[2].clone(), attempt: 1, event: exited, at_ms: 8 });
    let job = state.job(&ids[2]).cloned().expect("job");
    assert_eq!((job.state, job.finished_at_ms, job.live.is_none()), (JobState::Stopped, Some(8), true));
    assert!(state.gpu_holder("a", 2).is_none());
    assert_eq!(state.counters().early_stops, 2);
    assert_eq!(state.job(&ids[0]).map(|j| j.state), Some(JobState::Running));
}

#[test]
fn a_job_without_early_stop_cannot_be_stopped() {
    let mut state = cluster(&[("a", 1)]);
    let ids = submit(&mut state, vec![spec("plain", "g", &["ddp"], 1, 1)]);
    let stop = Command::StopJob { job: ids[0].clone(), reason: "x".into(), at_ms: 0 };
    assert!(matches!(state.apply(&stop), CommandResult::Rejected(_)));
}

#[test]
fn sweeps_of_different_submissions_are_not_compared() {
    let (mut state, ids) = sweep(2, rule(StopRule::Asha, MetricMode::Min));
    let mut later = spec("late", "g", &["ddp"], 1, 1);
    later.early_stop = Some(rule(StopRule::Asha, MetricMode::Min));
    let late = submit(&mut state, vec![later]);
    let sweep_of = |id: &JobId| state.job(id).and_then(|j| j.spec.early_stop.as_ref().map(|r| r.sweep.clone()));
    assert_eq!(sweep_of(&ids[0]), Some("grid@j-000001".into()));
    assert_eq!(sweep_of(&ids[1]), sweep_of(&ids[0]));
    assert_eq!(sweep_of(&late[0]), Some("grid@j-000003".into()));
}
