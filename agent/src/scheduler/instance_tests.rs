//! State → planner instance, scenario by scenario.

use std::collections::BTreeSet;

use saturn_consensus::{AttemptEvent, Command, JobPhase};

use super::*;
use crate::scheduler::shapes::up_hosts;
use crate::scheduler::test_support::{add_mixed_host, cluster, key, record, spec, start_training, submit};

fn build(state: &ClusterState) -> PlanningInstance {
    let config = SchedulerConfig::default();
    let hosts = up_hosts(state);
    let book = ProfileBook::build(state, &hosts, state.jobs().values(), &config);
    build_instance(state, &book, &hosts, &config)
}

/// One 4-GPU host and one job of group `g` (ddp, 1..=4 GPUs) with ddp measured at 1, 2, 4.
fn profiled() -> (ClusterState, JobId) {
    let mut state = cluster(&[("a", 4)]);
    let id = submit(&mut state, vec![spec("j", "g", &["ddp"], 1, 4)]).remove(0);
    for (n, t) in [(1, 1.0), (2, 0.6), (4, 0.4)] {
        record(&mut state, key("g", "ddp", n, 1), Some(t));
    }
    state.apply(&Command::SetJobPhase { job: id.clone(), phase: JobPhase::Scheduled, at_ms: 0 });
    (state, id)
}

#[test]
fn a_scheduled_job_gets_measured_and_fitted_options() {
    let (state, id) = profiled();
    let planning = build(&state);
    let job = &planning.instance.jobs[0];
    assert_eq!(job.id, id.0);
    assert_eq!(job.steps, 1_000);
    let counts: Vec<u32> = job.options.iter().map(|o| o.gpus_per_host).collect();
    assert_eq!(counts, vec![1, 2, 3, 4]);
    let sources = &planning.sources[&id];
    assert_eq!(sources[2], Source::Fitted, "3 GPUs was not measured");
    assert!(sources.iter().enumerate().all(|(i, s)| i == 2 || *s == Source::Measured));
    assert!(job.running.is_none());
}

#[test]
fn a_running_job_is_pinned_where_it_runs_with_its_remaining_steps() {
    let (mut state, id) = profiled();
    let placement = vec![HostGpus { host: "a".into(), gpus: vec![2, 3] }];
    let dispatch =
        Command::Dispatch { job: id.clone(), technique: "ddp".into(), placement, kind: DispatchKind::Train, at_ms: 0 };
    state.apply(&dispatch);
    let progress = AttemptEvent::Progress { step: 400, metrics: vec![] };
    state.apply(&Command::JobEvent { job: id.clone(), attempt: 1, event: progress, at_ms: 1 });
    let planning = build(&state);
    let job = &planning.instance.jobs[0];
    assert_eq!(job.steps, 600);
    let running = job.running.as_ref().unwrap();
    assert_eq!(running.placement, vec![PlacementEntry { host: "a".into(), gpus: vec![2, 3] }]);
    assert_eq!(planning.instance.switch_cost_s, SchedulerConfig::default().switch_cost_s);
}

#[test]
fn a_job_whose_every_option_is_infeasible_is_left_out_with_a_reason() {
    let mut state = cluster(&[("a", 2)]);
    let id = submit(&mut state, vec![spec("j", "g", &["ddp"], 1, 2)]).remove(0);
    record(&mut state, key("g", "ddp", 1, 1), None);
    state.apply(&Command::SetJobPhase { job: id.clone(), phase: JobPhase::Scheduled, at_ms: 0 });
    let planning = build(&state);
    assert!(planning.instance.jobs.is_empty());
    assert_eq!(planning.left_out[0].0, id);
}

#[test]
fn planner_indices_map_to_the_real_gpus_of_a_host() {
    let (state, _) = profiled();
    let mut planning = build(&state);
    planning.hosts[0].gpus = vec![1, 5, 6];
    let real = vec![HostGpus { host: "a".into(), gpus: vec![5, 6] }];
    let planner = planning.to_planner_placement(&real).unwrap();
    assert_eq!(planner[0].gpus, vec![1, 2]);
    assert_eq!(planning.to_state_placement(&planner), Some(real));
    assert!(planning.to_planner_placement(&vec![HostGpus { host: "a".into(), gpus: vec![0] }]).is_none());
}

/// Host `h` with GPUs 0-1 of model `OLD` and 2-3 of `NEW`; one job (ddp, 1..=2 GPUs)
/// measured on both models.
fn mixed_host() -> (ClusterState, JobId) {
    use saturn_consensus::ProfileKey;
    let mut state = ClusterState::default();
    add_mixed_host(&mut state, "h", &["OLD", "OLD", "NEW", "NEW"]);
    let id = submit(&mut state, vec![spec("j", "g", &["ddp"], 1, 2)]).remove(0);
    for (model, slow) in [("OLD", 2.0), ("NEW", 1.0)] {
        for (n, t) in [(1, 1.0), (2, 0.6)] {
            let key = ProfileKey { gpu_model: model.into(), ..key("g", "ddp", n, 1) };
            record(&mut state, key, Some(t * slow));
        }
    }
    state.apply(&Command::SetJobPhase { job: id.clone(), phase: JobPhase::Scheduled, at_ms: 0 });
    (state, id)
}

#[test]
fn a_mixed_gpu_host_is_one_planner_host_per_model_and_placements_map_to_real_gpus() {
    let (state, _) = mixed_host();
    let planning = build(&state);
    let hosts: Vec<(&str, u32, Option<&str>)> =
        planning.instance.hosts.iter().map(|h| (h.name.as_str(), h.gpus, h.gpu_model.as_deref())).collect();
    assert_eq!(hosts, vec![("h/NEW", 2, Some("NEW")), ("h/OLD", 2, Some("OLD"))]);
    let models: BTreeSet<Option<&str>> =
        planning.instance.jobs[0].options.iter().map(|o| o.gpu_model.as_deref()).collect();
    assert_eq!(models, BTreeSet::from([Some("NEW"), Some("OLD")]), "options on both models");
    planning.instance.validate().expect("a valid planner instance");
    let planner = vec![PlacementEntry { host: "h/NEW".into(), gpus: vec![1] }];
    let real = vec![HostGpus { host: "h".into(), gpus: vec![3] }];
    assert_eq!(planning.to_state_placement(&planner), Some(real.clone()));
    assert_eq!(planning.to_planner_placement(&real), Some(planner));
    let across = vec![HostGpus { host: "h".into(), gpus: vec![1, 2] }];
    assert_eq!(planning.to_planner_placement(&across), None, "no planner host holds GPUs of two models");
}

#[test]
fn a_job_running_on_the_minority_model_of_a_mixed_host_is_pinned_there() {
    let (mut state, id) = mixed_host();
    start_training(&mut state, &id, vec![HostGpus { host: "h".into(), gpus: vec![0, 1] }]);
    let planning = build(&state);
    let running = planning.instance.jobs[0].running.as_ref().expect("running");
    assert_eq!(running.placement, vec![PlacementEntry { host: "h/OLD".into(), gpus: vec![0, 1] }]);
    planning.instance.validate().expect("the running placement matches an OLD option");
}

#[test]
fn a_job_that_reports_no_steps_gets_one_option_lasting_its_duration_estimate() {
    // Two 4-GPU hosts; a job of ddp/fsdp on 1..=8 GPUs whose first trial ended well
    // without a single step line.
    let mut state = cluster(&[("a", 4), ("b", 4)]);
    let mut silent = spec("silent", "s", &["fsdp", "ddp"], 1, 8);
    silent.duration_estimate_s = 7200;
    let id = submit(&mut state, vec![silent]).remove(0);
    state.apply(&Command::RecordProfile { key: key("s", "fsdp", 1, 1), result: saturn_consensus::ProfileResult::NoSteps });

    let config = SchedulerConfig::default();
    let hosts = up_hosts(&state);
    let book = ProfileBook::build(&state, &hosts, state.jobs().values(), &config);
    assert!(book.series_of(&state.jobs()[&id]).all(|s| s.ready() && s.next.is_none()), "no more trials for it");
    let options = job_options(&book, &state.jobs()[&id], &hosts);
    assert_eq!(options.len(), 1, "{options:?}");
    let (option, source) = &options[0];
    assert_eq!((option.technique.as_str(), option.gpus_per_host * option.hosts), ("fsdp", 8), "first technique, largest count");
    assert_eq!(*source, Source::DurationEstimate);
    assert!((option.step_time_s * 1_000.0 - 7200.0).abs() < 1e-6, "1000 steps last the estimate: {}", option.step_time_s);

    state.apply(&Command::SetJobPhase { job: id.clone(), phase: JobPhase::Scheduled, at_ms: 0 });
    let planning = build(&state);
    assert_eq!(planning.instance.jobs.len(), 1, "the job is planned: {:?}", planning.left_out);
}
