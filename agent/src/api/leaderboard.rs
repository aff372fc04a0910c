//! The leaderboards of sweeps with early stopping (pure, from the replicated state).

use saturn_consensus::{ClusterState, MetricMode};

use crate::scheduler::early_stop::sweeps;
use crate::views::{LeaderboardEntry, SweepView};

/// Every sweep with `early_stop`, its jobs ranked by their latest metric value.
pub fn leaderboards(state: &ClusterState) -> Vec<SweepView> {
    sweeps(state)
        .into_iter()
        .map(|(sweep, (rule, jobs))| {
            let mut leaderboard: Vec<LeaderboardEntry> = jobs
                .iter()
                .map(|job| LeaderboardEntry {
                    id: job.id.to_string(),
                    name: job.spec.name.clone(),
                    state: job.state.as_str().to_string(),
                    value: job.metrics.iter().find(|(name, _)| *name == rule.metric).map(|(_, v)| *v),
                    rung: job.rungs.last().map(|r| r.step),
                    steps_done: job.steps_done,
                    stop_reason: job.stop_reason.clone(),
                    rungs: job.rungs.iter().map(|r| (r.step, r.value)).collect(),
                })
                .collect();
            leaderboard.sort_by(|a, b| match (a.value, b.value) {
                (Some(x), Some(y)) if rule.mode == MetricMode::Max => y.total_cmp(&x),
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
            SweepView {
                sweep: sweep.to_string(),
                metric: rule.metric.clone(),
                mode: rule.mode.as_str().to_string(),
                rule: rule.rule.as_str().to_string(),
                leaderboard,
            }
        })
        .collect()
}
