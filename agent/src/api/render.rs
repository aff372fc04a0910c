//! Builds the API's JSON views from the replicated state (pure functions).

use saturn_consensus::{ClusterState, JobRecord, JobState, Placement};

use super::services::{RaftView, SoftView};
use crate::views::{
    AgentView, CheckpointView, GpuView, JobEventView, JobView, PlacementView, PlanAssignmentView, PlanView, StatusView,
};

/// RFC 3339 text of a Unix-milliseconds time.
pub fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn placement_view(placement: &Placement) -> Vec<PlacementView> {
    placement.iter().map(|hg| PlacementView { host: hg.host.clone(), gpus: hg.gpus.clone() }).collect()
}

/// `GET /v1/status`: every agent the replicated state knows (with its GPUs), and every
/// Raft member not (yet) in it — an agent that just joined is listed before the leader
/// has recorded its GPUs.
pub fn status(state: &ClusterState, raft: &RaftView, soft: &SoftView, answered_by: &str) -> StatusView {
    let role_of = |name: &str| if raft.voters.iter().any(|v| v == name) { "voter" } else { "learner" };
    let alive = |name: &str| soft.alive.get(name).copied().unwrap_or(false);
    let mut agents: Vec<AgentView> = state
        .agents()
        .values()
        .map(|agent| {
            let name = &agent.node.name;
            let gpus = agent
                .gpus
                .iter()
                .map(|gpu| GpuView {
                    index: gpu.index,
                    model: gpu.model.clone(),
                    memory_mib: gpu.memory_mib,
                    busy_job: state.gpu_holder(name, gpu.index).map(|h| h.job.to_string()),
                    utilization_pct: soft.utilization.get(&(name.clone(), gpu.index)).copied(),
                })
                .collect();
            AgentView {
                name: name.clone(),
                peer_id: agent.node.peer_id.clone(),
                addrs: agent.node.addrs.clone(),
                role: role_of(name).to_string(),
                // An agent this one does not hear (a learner hears only the voters, see
                // ARCHITECTURE.md) is as healthy as the leader recorded it.
                healthy: agent.up && soft.alive.get(name.as_str()).copied().unwrap_or(true),
                gpus,
            }
        })
        .collect();
    for member in &raft.members {
        if !state.agents().contains_key(&member.name) {
            agents.push(AgentView {
                name: member.name.clone(),
                peer_id: member.peer_id.clone(),
                addrs: member.addrs.clone(),
                role: role_of(&member.name).to_string(),
                healthy: alive(&member.name),
                gpus: Vec::new(),
            });
        }
    }
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    StatusView {
        leader: raft.leader.clone(),
        term: raft.term,
        agents,
        answered_by: answered_by.to_string(),
        applied_index: raft.applied_index,
    }
}

/// One job, as the API shows it. `now_ms` feeds the ETA.
pub fn job(record: &JobRecord, now_ms: u64) -> JobView {
    let live_training = record.live.as_ref().filter(|live| {
        matches!(live.kind, saturn_consensus::DispatchKind::Train)
    });
    let (technique, placement) = match live_training {
        Some(live) => (Some(live.technique.clone()), placement_view(&live.placement)),
        None => (record.technique.clone(), placement_view(&record.placement)),
    };
    JobView {
        id: record.id.to_string(),
        name: record.spec.name.clone(),
        state: record.state.as_str().to_string(),
        steps: record.spec.steps,
        steps_done: record.steps_done,
        technique,
        attempt: record.attempt,
        trials: record.trials,
        training_attempts: record.training_attempts(),
        placement,
        submitted_at: Some(rfc3339(record.submitted_at_ms)),
        started_at: record.started_at_ms.map(rfc3339),
        finished_at: record.finished_at_ms.map(rfc3339),
        exit_code: record.exit_code,
        error: record.error.clone(),
        restarts: record.restarts,
        metrics: record.metrics.iter().cloned().collect(),
        eta_s: eta(record, now_ms),
        metric_history: Default::default(),
        checkpoint: checkpoint_view(record),
        events: record.notes.iter().map(|note| JobEventView { at: rfc3339(note.at_ms), text: note.text.clone() }).collect(),
    }
}

fn checkpoint_view(record: &JobRecord) -> Option<CheckpointView> {
    let (step, copy) = record.newest_checkpoint()?;
    Some(CheckpointView {
        step,
        size: copy.size,
        digest: copy.digest.clone(),
        copies: copy.holders.iter().cloned().collect(),
        copies_wanted: copy.copies_wanted,
        steps: record.checkpoints.keys().copied().collect(),
        bytes_replicated: record.bytes_replicated,
    })
}

/// Seconds to completion of a running job, from its average rate in this attempt.
fn eta(record: &JobRecord, now_ms: u64) -> Option<f64> {
    if record.state != JobState::Running {
        return None;
    }
    let live = record.live.as_ref()?;
    let started = live.started_at_ms?;
    let done_here = record.steps_done.checked_sub(live.start_step)?;
    let elapsed_s = now_ms.saturating_sub(started) as f64 / 1000.0;
    if done_here == 0 || elapsed_s <= 0.0 {
        return None;
    }
    let rate = done_here as f64 / elapsed_s;
    Some(record.spec.steps.saturating_sub(record.steps_done) as f64 / rate)
}

/// `GET /v1/plan`, or `None` before the first plan.
pub fn plan(state: &ClusterState) -> Option<PlanView> {
    let plan = state.plan()?;
    let assignments = plan
        .assignments
        .iter()
        .map(|a| PlanAssignmentView {
            job: a.job.to_string(),
            technique: a.technique.clone(),
            start_s: a.start_s,
            end_s: a.end_s,
            placement: placement_view(&a.placement),
            state: state.job(&a.job).map(|j| j.state.as_str().to_string()).unwrap_or_default(),
        })
        .collect();
    Some(PlanView {
        epoch: plan.epoch,
        makespan_s: plan.makespan_s,
        lower_bound_s: plan.lower_bound_s,
        baseline_makespan_s: plan.baseline_makespan_s,
        solver: plan.solver.clone(),
        solve_ms: plan.solve_ms,
        made_at_ms: plan.committed_at_ms,
        assignments,
    })
}

/// `GET /v1/profiles`.
pub fn profiles(state: &ClusterState) -> crate::views::ProfilesView {
    use saturn_consensus::ProfileResult;
    let profiles = state
        .profiles()
        .iter()
        .map(|(key, result)| {
            let (step_time_s, infeasible, no_steps) = match result {
                ProfileResult::StepTime(s) => (Some(*s), None, false),
                ProfileResult::Infeasible { reason } => (None, Some(reason.clone()), false),
                ProfileResult::NoSteps => (None, None, true),
            };
            crate::views::ProfileView {
                profile_group: key.profile_group.clone(),
                technique: key.technique.clone(),
                gpus_per_host: key.gpus_per_host,
                hosts: key.hosts,
                gpu_model: key.gpu_model.clone(),
                step_time_s,
                infeasible,
                no_steps,
            }
        })
        .collect();
    crate::views::ProfilesView { profiles }
}
