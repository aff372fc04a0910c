//! `GET /metrics`: Prometheus text (OpenMetrics), built from the replicated state and this
//! agent's Raft and scheduler view at request time (so it always agrees with `/v1/status`
//! and `/v1/jobs`). Counts that only grow are counters (`saturn_dispatches_total`, ...),
//! everything else gauges.

use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use saturn_consensus::{ClusterState, JobState};

use super::services::{ExtraMetric, RaftView};
use super::{error, ApiState};
use crate::cluster::now_ms;

type FloatGauge = Gauge<f64, AtomicU64>;

/// `GET /metrics`: the replicated state, Raft and the agent's own counters as Prometheus
/// text.
pub async fn metrics(State(api): State<ApiState>) -> Response {
    let state = api.services.cluster().state();
    let raft = api.services.raft();
    let extra = api.services.extra_metrics();
    match render(&api.services.name(), &state, &raft, &extra, now_ms()) {
        // OpenMetrics, the text the encoder writes: a counter's family `saturn_x` has the
        // sample `saturn_x_total`, which Prometheus reads only when told the format.
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response(),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {err}")),
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = FloatGauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(name, help, ConstCounter::new(value));
}

fn labelled(registry: &mut Registry, name: &str, help: &str, values: Vec<(Vec<(String, String)>, f64)>) {
    let family = Family::<Vec<(String, String)>, FloatGauge>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).set(value);
    }
    registry.register(name, help, family);
}

/// The exposition text.
pub fn render(
    agent: &str,
    state: &ClusterState,
    raft: &RaftView,
    extra: &[ExtraMetric],
    now_ms: u64,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("saturn");
    let gpus_total: usize = state.agents().values().filter(|a| a.up).map(|a| a.gpus.len()).sum();
    gauge(&mut registry, "gpus_total", "GPUs of agents that are up", gpus_total as f64);
    gauge(&mut registry, "gpus_busy", "GPUs held by a live attempt", state.gpus().len() as f64);
    let mine = state.agents().get(agent).map(|a| a.gpus.len()).unwrap_or(0);
    let mine_busy = state.gpus().keys().filter(|(host, _)| host == agent).count();
    gauge(&mut registry, "agent_gpus_total", "GPUs of this agent", mine as f64);
    gauge(&mut registry, "agent_gpus_busy", "GPUs of this agent held by a live attempt", mine_busy as f64);
    gauge(&mut registry, "agents_up", "agents the cluster considers up", state.agents().values().filter(|a| a.up).count() as f64);
    let states = [
        JobState::Queued,
        JobState::Profiling,
        JobState::Scheduled,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Stopped,
    ];
    let by_state = states
        .iter()
        .map(|s| (vec![("state".to_string(), s.as_str().to_string())], state.jobs_in(*s).count() as f64))
        .collect();
    labelled(&mut registry, "jobs", "jobs by state", by_state);
    gauge(&mut registry, "raft_term", "current Raft term", raft.term as f64);
    gauge(&mut registry, "raft_is_leader", "1 when this agent is the Raft leader", if raft.is_leader { 1.0 } else { 0.0 });
    let role = if raft.voters.iter().any(|v| v == agent) { "voter" } else { "learner" };
    labelled(&mut registry, "raft_role", "this agent's Raft role", vec![(vec![("role".into(), role.into())], 1.0)]);
    gauge(&mut registry, "raft_commit_index", "last committed Raft log index", raft.commit_index as f64);
    gauge(&mut registry, "raft_applied_index", "last applied Raft log index", raft.applied_index as f64);
    counter(&mut registry, "raft_leader_changes", "leader changes seen by this agent", raft.leader_changes);
    let counters = &state.counters();
    counter(&mut registry, "dispatches", "dispatches applied (trials included)", counters.dispatches);
    counter(&mut registry, "preemptions", "preemptions applied", counters.preemptions);
    counter(&mut registry, "lost_attempts", "attempts lost with their host", counters.lost_attempts);
    counter(&mut registry, "restarts", "failed attempts restarted", counters.restarts);
    counter(&mut registry, "early_stops", "jobs stopped by their sweep's early-stopping rule", counters.early_stops);
    gauge(&mut registry, "plan_epoch", "epoch of the committed plan", state.plan_epoch() as f64);
    if let Some(plan) = &state.plan() {
        gauge(&mut registry, "plan_makespan_seconds", "predicted makespan of the committed plan", plan.makespan_s);
        gauge(&mut registry, "plan_baseline_makespan_seconds", "max-heuristic makespan on the same instance", plan.baseline_makespan_s);
    }
    let mut steps = Vec::new();
    let mut rates = Vec::new();
    for record in state.jobs().values() {
        let labels = vec![("job".to_string(), record.id.to_string()), ("name".to_string(), record.spec.name.clone())];
        steps.push((labels.clone(), record.steps_done as f64));
        let rate = record
            .live
            .as_ref()
            .filter(|_| record.state == JobState::Running)
            .and_then(|live| {
                let started = live.started_at_ms?;
                let secs = now_ms.saturating_sub(started) as f64 / 1000.0;
                (secs > 0.0).then(|| record.steps_done.saturating_sub(live.start_step) as f64 / secs)
            })
            .unwrap_or(0.0);
        rates.push((labels, rate));
    }
    labelled(&mut registry, "job_steps_done", "steps done per job", steps);
    labelled(&mut registry, "job_step_rate", "steps per second of a running job in its current attempt", rates);
    for metric in extra {
        if metric.counter {
            counter(&mut registry, &metric.name, &metric.help, metric.value.max(0.0) as u64);
        } else {
            gauge(&mut registry, &metric.name, &metric.help, metric.value);
        }
    }
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}
