//! Builders for the deciders' unit tests: clusters, jobs and profiles in a few lines.

use std::collections::BTreeMap;

use saturn_consensus::{
    AgentNode, ClusterState, Command, CommandResult, GpuInfo, JobId, JobSpec, ProfileKey, ProfileResult,
};

use super::config::SchedulerConfig;
use super::context::{AgentHealth, SchedContext};

/// A cluster of up hosts, `(name, GPU count)`, all of model `SIM`.
pub fn cluster(hosts: &[(&str, u32)]) -> ClusterState {
    let mut state = ClusterState::default();
    for (name, n) in hosts {
        state.apply(&Command::AgentUp { node: node(name), gpus: gpus(*n), at_ms: 0 });
    }
    state
}

/// Adds an up host whose GPUs `0..` have the given models, in order.
pub fn add_mixed_host(state: &mut ClusterState, name: &str, models: &[&str]) {
    let gpus = models
        .iter()
        .enumerate()
        .map(|(index, model)| GpuInfo { index: index as u32, model: model.to_string(), memory_mib: 24_576 })
        .collect();
    state.apply(&Command::AgentUp { node: node(name), gpus, at_ms: 0 });
}

/// Dispatches `job` for training on `placement` and reports it started.
pub fn start_training(state: &mut ClusterState, job: &JobId, placement: Vec<saturn_consensus::HostGpus>) {
    use saturn_consensus::{AttemptEvent, DispatchKind};
    let technique = "ddp".to_string();
    state.apply(&Command::Dispatch { job: job.clone(), technique, placement, kind: DispatchKind::Train, at_ms: 0 });
    state.apply(&Command::JobEvent { job: job.clone(), attempt: 1, event: AttemptEvent::Started, at_ms: 0 });
}

pub fn node(name: &str) -> AgentNode {
    AgentNode { name: name.into(), peer_id: format!("peer-{name}"), addrs: vec![] }
}

pub fn gpus(n: u32) -> Vec<GpuInfo> {
    (0..n).map(|index| GpuInfo { index, model: "SIM".into(), memory_mib: 24_576 }).collect()
}

/// A job of `group` that can run as `techniques` on `min..=max` GPUs.
pub fn spec(name: &str, group: &str, techniques: &[&str], min: u32, max: u32) -> JobSpec {
    JobSpec {
        name: name.into(),
        command: vec!["train".into()],
        workdir: "/tmp".into(),
        env: BTreeMap::new(),
        steps: 1_000,
        techniques: techniques.iter().map(|t| t.to_string()).collect(),
        gpus_min: min,
        gpus_max: max,
        profile_group: group.into(),
        max_restarts: 1,
        profile: BTreeMap::new(),
        early_stop: None,
        duration_estimate_s: 3600,
    }
}

/// Submits `specs` and returns their ids.
pub fn submit(state: &mut ClusterState, specs: Vec<JobSpec>) -> Vec<JobId> {
    match state.apply(&Command::SubmitJobs { specs, at_ms: 0 }) {
        CommandResult::Submitted { jobs } => jobs,
        other => panic!("submit failed: {other:?}"),
    }
}

/// The profile key of `group`/`technique` on `hosts` x `per_host` SIM GPUs.
pub fn key(group: &str, technique: &str, per_host: u32, hosts: u32) -> ProfileKey {
    ProfileKey {
        profile_group: group.into(),
        technique: technique.into(),
        gpus_per_host: per_host,
        hosts,
        gpu_model: "SIM".into(),
    }
}

/// Records a step time (or, with `None`, an infeasible result).
pub fn record(state: &mut ClusterState, key: ProfileKey, step_time: Option<f64>) {
    let result = match step_time {
        Some(t) => ProfileResult::StepTime(t),
        None => ProfileResult::Infeasible { reason: "out of memory".into() },
    };
    state.apply(&Command::RecordProfile { key, result });
}

/// A context at `now_ms` in which every up agent of `state` is alive.
pub fn ctx(state: &ClusterState, now_ms: u64) -> SchedContext {
    let health = state
        .agents()
        .values()
        .filter(|a| a.up)
        .map(|a| (a.node.name.clone(), AgentHealth::Alive { node: a.node.clone(), gpus: a.gpus.clone() }))
        .collect();
    SchedContext::new(now_ms, health, SchedulerConfig::default())
}
