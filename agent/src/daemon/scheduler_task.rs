//! The scheduler task: the scheduler over the cluster port and the soft state's health
//! (it decides only while this agent leads), and its statistics as metrics.

use std::sync::Arc;
use std::time::Instant;

use super::services::Services;
use super::soft::SoftState;
use super::DaemonSettings;
use crate::api::ExtraMetric;

/// Runs the scheduler (it decides only while this agent leads) and publishes its
/// statistics as metrics.
pub async fn scheduler(settings: DaemonSettings, soft: Arc<SoftState>, services: Arc<Services>) {
    let health: crate::scheduler::HealthSource = Box::new(move || soft.health(Instant::now()));
    let scheduler = crate::scheduler::Scheduler::new(services.cluster.clone(), health, settings.scheduler.clone());
    let mut stats = scheduler.stats();
    let extra = services.extra.clone();
    tokio::spawn(async move {
        while stats.changed().await.is_ok() {
            let metrics = scheduler_metrics(&stats.borrow());
            *extra.lock().unwrap_or_else(|p| p.into_inner()) = metrics;
        }
    });
    scheduler.run(std::future::pending::<()>()).await;
}

/// The scheduler's statistics as Prometheus samples.
fn scheduler_metrics(stats: &crate::scheduler::SchedulerStats) -> Vec<ExtraMetric> {
    let metric = |counter: bool| {
        move |name: &str, help: &str, value: f64| ExtraMetric { name: name.into(), help: help.into(), value, counter }
    };
    let (gauge, counter) = (metric(false), metric(true));
    let profiling = &stats.profiling;
    vec![
        gauge("scheduler_leading", "1 while this agent schedules (leads)", f64::from(u8::from(stats.leading))),
        counter("scheduler_rounds", "decision rounds run while leading", stats.rounds as f64),
        counter("planner_solves", "re-plans run by this agent", stats.solves as f64),
        gauge("planner_solve_seconds", "wall time of the last re-plan", stats.last_solve_ms as f64 / 1000.0),
        gauge("planner_predicted_makespan_seconds", "makespan predicted by the last re-plan", stats.predicted_makespan_s),
        gauge("planner_baseline_makespan_seconds", "max-heuristic makespan on the last re-plan's instance", stats.baseline_makespan_s),
        gauge("planner_lower_bound_seconds", "lower bound of the last re-plan's instance", stats.lower_bound_s),
        counter("scheduler_plans_committed", "plans this agent committed while leading", stats.plans_committed as f64),
        counter("scheduler_preemptions_decided", "preemptions this agent decided", stats.preemptions_decided as f64),
        counter("scheduler_proposals_rejected", "proposals the state machine rejected", stats.proposals_rejected as f64),
        // Computed from the state (the up hosts' grid): may shrink when a host leaves.
        gauge("profiling_seconds", "GPU-seconds spent in trial runs", profiling.gpu_seconds),
        gauge("profiling_full_grid_seconds", "GPU-seconds the full profiling grid would have cost", profiling.full_grid_gpu_seconds),
        gauge("profiling_saved_seconds", "GPU-seconds of profiling saved against the full grid", profiling.saved_gpu_seconds),
        gauge("profiling_trials", "trial runs recorded", profiling.trials as f64),
        gauge("profiling_full_grid_trials", "trial runs the full grid would take", profiling.full_grid_trials as f64),
    ]
}
