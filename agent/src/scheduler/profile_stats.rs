//! What profiling cost, and what measuring the full grid would have cost.
//!
//! Computed from the replicated state alone (recorded profiles, the jobs' groups and the
//! up hosts), so every leader reports the same numbers. Costs are GPU-seconds: GPUs of the
//! shape × (`profile_steps` × step time + `trial_overhead_s`); an infeasible trial is
//! charged its overhead only (it fails early, typically at the first step). The full
//! grid's step times are the measured ones where known and the fitted ones elsewhere,
//! which is the best estimate of what those trials would have taken.

use serde::Serialize;

use saturn_consensus::ClusterState;

use super::config::SchedulerConfig;
use super::profiles::{Point, ProfileBook, Series};
use super::shapes::{up_hosts, Shape};

/// Profiling cost so far, against the full grid.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProfilingStats {
    /// Trial results recorded.
    pub trials: u64,
    /// Trials the full grid (every technique × shape × model of every group) needs.
    pub full_grid_trials: u64,
    /// GPU-seconds the recorded trials took (estimated as in the module doc).
    pub gpu_seconds: f64,
    /// GPU-seconds the full grid would have taken.
    pub full_grid_gpu_seconds: f64,
    /// `full_grid_gpu_seconds - gpu_seconds`: profiling time saved vs the full grid.
    pub saved_gpu_seconds: f64,
    /// Options the planner sees that were measured (or user-given).
    pub measured_options: u64,
    /// Options the planner sees that were fitted.
    pub fitted_options: u64,
    /// Techniques pruned as dominated (per group and GPU model).
    pub pruned_series: u64,
}

/// Profiling statistics of every job ever submitted, on the up hosts.
pub fn profiling_stats(state: &ClusterState, config: &SchedulerConfig) -> ProfilingStats {
    let book = ProfileBook::build(state, &up_hosts(state), state.jobs().values(), config);
    let mut stats = ProfilingStats::default();
    for series in book.series.values().filter(|s| !s.user_given) {
        stats.pruned_series += u64::from(series.pruned_by.is_some());
        for &shape in &series.shapes {
            let measured = series.points.get(&shape);
            stats.full_grid_trials += 1;
            stats.full_grid_gpu_seconds += grid_cost(series, shape, config);
            if let Some(point) = measured {
                stats.trials += 1;
                stats.gpu_seconds += trial_cost(shape, *point, config);
            }
            match (measured, series.step_time(shape)) {
                (Some(Point::Time(_)), _) => stats.measured_options += 1,
                (None, Some(_)) if series.pruned_by.is_none() => stats.fitted_options += 1,
                _ => {}
            }
        }
    }
    stats.saved_gpu_seconds = stats.full_grid_gpu_seconds - stats.gpu_seconds;
    stats
}

fn trial_cost(shape: Shape, point: Point, config: &SchedulerConfig) -> f64 {
    let seconds = match point {
        Point::Time(t) => config.profile_steps as f64 * t + config.trial_overhead_s,
        Point::Infeasible => config.trial_overhead_s,
    };
    f64::from(shape.total()) * seconds
}

fn grid_cost(series: &Series, shape: Shape, config: &SchedulerConfig) -> f64 {
    match series.points.get(&shape) {
        Some(point) => trial_cost(shape, *point, config),
        None => match series.step_time(shape) {
            Some((t, _)) => trial_cost(shape, Point::Time(t), config),
            None => trial_cost(shape, Point::Infeasible, config),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::test_support::{cluster, key, record, spec, submit};

    #[test]
    fn a_stopped_ladder_costs_less_than_the_grid_it_stands_for() {
        let mut state = cluster(&[("a", 4), ("b", 4)]);
        submit(&mut state, vec![spec("j", "g", &["ddp"], 1, 8)]);
        for (n, t) in [(1, 1.0), (2, 0.55), (4, 0.52)] {
            record(&mut state, key("g", "ddp", n, 1), Some(t));
        }
        let config = SchedulerConfig::default();
        let stats = profiling_stats(&state, &config);
        assert_eq!((stats.trials, stats.full_grid_trials), (3, 5), "1, 2, 4 of 1..4 and 2x4");
        let spent = 1.0 * (20.0 + 10.0) + 2.0 * (11.0 + 10.0) + 4.0 * (10.4 + 10.0);
        assert!((stats.gpu_seconds - spent).abs() < 1e-9, "{}", stats.gpu_seconds);
        assert!(stats.saved_gpu_seconds > 0.0);
        assert_eq!((stats.measured_options, stats.fitted_options), (3, 2));
    }
}
