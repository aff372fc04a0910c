//! Turning a decoded schedule (modes, start times, global GPU ids) into plan assignments.

use crate::decode::Placed;
use crate::instance::{same_placement, Instance, PlacementEntry};
use crate::plan::Assignment;
use crate::problem::Problem;

/// One assignment per job, sorted by start time then job id.
pub(crate) fn assignments(instance: &Instance, problem: &Problem, modes: &[u16], placed: &Placed) -> Vec<Assignment> {
    let mut out: Vec<Assignment> = instance
        .jobs
        .iter()
        .enumerate()
        .map(|(j, job)| {
            let mode = &problem.jobs[j].modes[modes[j] as usize];
            let option = &job.options[mode.option];
            let placement = placement(instance, problem, &placed.gpus[j]);
            let start = placed.start[j];
            let mut runtime = mode.runtime;
            // A moved job that happens to land exactly where it runs now is not moved at
            // all, so it owes no switch cost (and ending earlier never breaks a plan).
            if let Some(running) = &job.running {
                if mode.fixed.is_none()
                    && running.technique == option.technique
                    && same_placement(&running.placement, &placement)
                {
                    runtime = option.runtime_s(job.steps);
                }
            }
            Assignment {
                job: job.id.clone(),
                technique: option.technique.clone(),
                start_s: start,
                end_s: start + runtime,
                placement,
            }
        })
        .collect();
    out.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then_with(|| a.job.cmp(&b.job)));
    out
}

/// Global GPU ids → one entry per host (in order of first appearance), indices sorted.
pub(crate) fn placement(instance: &Instance, problem: &Problem, gpus: &[u32]) -> Vec<PlacementEntry> {
    let mut entries: Vec<(u32, Vec<u32>)> = Vec::new();
    for &g in gpus {
        let host = problem.gpu_host[g as usize];
        let local = g - problem.hosts[host as usize].first_gpu;
        match entries.iter_mut().find(|(h, _)| *h == host) {
            Some((_, list)) => list.push(local),
            None => entries.push((host, vec![local])),
        }
    }
    entries
        .into_iter()
        .map(|(h, mut list)| {
            list.sort_unstable();
            PlacementEntry { host: instance.hosts[h as usize].name.clone(), gpus: list }
        })
        .collect()
}

/// The largest end time (0 for no assignments).
pub(crate) fn makespan(assignments: &[Assignment]) -> f64 {
    assignments.iter().map(|a| a.end_s).fold(0.0, f64::max)
}
