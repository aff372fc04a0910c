//! Replicated state → the planner's [`Instance`].
//!
//! - Hosts are the GPU groups of the up agents, one per agent and GPU model
//!   ([`shapes`](super::shapes)): a planner host is named after its agent, or
//!   `AGENT/MODEL` on an agent with several models; planner GPU `i` of a group is its
//!   `i`-th GPU. Placements translate both ways here, so the committed plan and the
//!   dispatch only ever see agent names and real GPU indices.
//! - Jobs are those waiting to run (`scheduled`, or carrying a trial they return to
//!   `scheduled` from) and those running; a planner job id is the [`JobId`] string.
//! - Remaining steps: from `steps_done` for a running job, from the last checkpoint
//!   otherwise (that is where a (re)start resumes).
//! - Options come from the profile book (user-given, measured and fitted; infeasible and
//!   pruned ones are left out). A running job gets `running` = where it runs now, so the
//!   planner charges `switch_cost_s` for moving it.
//! - Release times are 0: a job waiting for profiles is not in the instance at all.
//! - GPUs held by trials and by stopping (preempted) attempts are not modelled: the
//!   planner sees them free now. They are released within seconds to a minute, and the
//!   list-scheduling [`dispatch`](super::dispatch) waits for them, so the plan's order
//!   holds and only its first start times slip.

use std::collections::BTreeMap;

use saturn_consensus::{AttemptStatus, ClusterState, DispatchKind, HostGpus, JobId, JobRecord, JobState, Placement};
use saturn_planner::{Host, Instance, Job, JobOption, PlacementEntry, Running};

use super::config::SchedulerConfig;
use super::profiles::{ProfileBook, Source};
use super::shapes::{host_sizes_by_model, HostView, Shape};

/// An instance and what is needed to read its plans back.
#[derive(Clone, Debug)]
pub struct PlanningInstance {
    /// The planner's input.
    pub instance: Instance,
    /// The GPU groups it was built from (planner host and GPU index → agent, real GPU index).
    pub hosts: Vec<HostView>,
    /// Where each option's step time came from, per job, in option order.
    pub sources: BTreeMap<JobId, Vec<Source>>,
    /// Jobs left out because they have no feasible option on the up hosts, and why.
    pub left_out: Vec<(JobId, String)>,
}

impl PlanningInstance {
    /// The [`JobId`] of a planner job id.
    pub fn job_id(planner_id: &str) -> JobId {
        JobId(planner_id.to_string())
    }

    /// A planner placement in real GPU indices; `None` if it names an unknown host or GPU.
    pub fn to_state_placement(&self, entries: &[PlacementEntry]) -> Option<Placement> {
        entries
            .iter()
            .map(|entry| {
                let host = self.hosts.iter().find(|h| h.group == entry.host)?;
                let gpus = entry.gpus.iter().map(|&i| host.gpus.get(i as usize).copied()).collect::<Option<_>>()?;
                Some(HostGpus { host: host.name.clone(), gpus })
            })
            .collect()
    }

    /// A real placement in planner hosts and GPU indices; `None` if a GPU is not offered
    /// or one host's GPUs of the placement span two models (no planner host holds them).
    pub fn to_planner_placement(&self, placement: &Placement) -> Option<Vec<PlacementEntry>> {
        placement
            .iter()
            .map(|hg| {
                let first = hg.gpus.first()?;
                let host = self.hosts.iter().find(|h| h.name == hg.host && h.gpus.contains(first))?;
                let gpus = hg
                    .gpus
                    .iter()
                    .map(|g| host.gpus.iter().position(|x| x == g).map(|i| i as u32))
                    .collect::<Option<_>>()?;
                Some(PlacementEntry { host: host.group.clone(), gpus })
            })
            .collect()
    }
}

/// Whether the planner should place `job` now.
pub fn is_plannable(job: &JobRecord) -> bool {
    match (&job.state, &job.live) {
        (JobState::Scheduled, None) => true,
        (JobState::Running, Some(live)) => live.kind == DispatchKind::Train,
        (JobState::Profiling, Some(live)) => live.return_state == JobState::Scheduled,
        _ => false,
    }
}

/// Builds the instance for the plannable jobs of `state`.
pub fn build_instance(
    state: &ClusterState,
    book: &ProfileBook,
    hosts: &[HostView],
    config: &SchedulerConfig,
) -> PlanningInstance {
    let mut planning = PlanningInstance {
        instance: Instance {
            hosts: hosts
                .iter()
                .map(|h| Host { name: h.group.clone(), gpus: h.gpus.len() as u32, gpu_model: Some(h.model.clone()) })
                .collect(),
            jobs: Vec::new(),
            switch_cost_s: config.switch_cost_s,
        },
        hosts: hosts.to_vec(),
        sources: BTreeMap::new(),
        left_out: Vec::new(),
    };
    for job in state.jobs().values().filter(|j| is_plannable(j)) {
        let (mut options, mut sources): (Vec<JobOption>, Vec<Source>) =
            job_options(book, job, hosts).into_iter().unzip();
        let running = running_of(&planning, job, &mut options, &mut sources, book);
        if options.is_empty() {
            planning.left_out.push((job.id.clone(), "no feasible option on the up hosts".to_string()));
            continue;
        }
        let steps = job.spec.steps.saturating_sub(resume_step(job)).max(1);
        planning.instance.jobs.push(Job { id: job.id.0.clone(), steps, options, running, release_s: 0.0 });
        planning.sources.insert(job.id.clone(), sources);
    }
    planning
}

/// The step the job's remaining work is counted from.
fn resume_step(job: &JobRecord) -> u64 {
    match &job.live {
        Some(live) if live.kind == DispatchKind::Train && live.status == AttemptStatus::Running => job.steps_done,
        _ => job.last_checkpoint,
    }
}

/// Every feasible option of `job` on these hosts, with where its step time comes from.
///
/// A job whose group reports no steps (see [`Series::no_steps`](super::profiles::Series))
/// gets one option: its first technique on its largest GPU count that fits the hosts,
/// lasting its `duration_estimate_s`.
pub fn job_options(book: &ProfileBook, job: &JobRecord, hosts: &[HostView]) -> Vec<(JobOption, Source)> {
    let sizes = host_sizes_by_model(hosts);
    if book.series_of(job).any(|s| s.no_steps) {
        return estimated_option(book, job, &sizes).into_iter().collect();
    }
    let mut options = Vec::new();
    for series in book.series_of(job).filter(|s| s.pruned_by.is_none()) {
        let Some(model_sizes) = sizes.get(&series.key.model) else { continue };
        for shape in series.shapes.iter().filter(|s| fits(**s, job, model_sizes)) {
            if let Some((step_time_s, source)) = series.step_time(*shape) {
                options.push((option(&series.key.technique, &series.key.model, *shape, step_time_s), source));
            }
        }
    }
    options
}

/// The one option of a job that reports no steps: the largest GPU count (then the fewest
/// hosts) of its first technique that fits some GPU model's hosts; the whole remaining
/// work lasts `duration_estimate_s`.
fn estimated_option(
    book: &ProfileBook,
    job: &JobRecord,
    sizes: &BTreeMap<String, Vec<u32>>,
) -> Option<(JobOption, Source)> {
    let technique = job.spec.techniques.first()?;
    let (model, shape) = book
        .series_of(job)
        .filter(|s| &s.key.technique == technique)
        .filter_map(|s| {
            let model_sizes = sizes.get(&s.key.model)?;
            let best = s.shapes.iter().filter(|shape| fits(**shape, job, model_sizes)).max_by_key(|shape| (shape.total(), std::cmp::Reverse(shape.hosts)))?;
            Some((s.key.model.clone(), *best))
        })
        .max_by_key(|(model, shape)| (shape.total(), std::cmp::Reverse(shape.hosts), std::cmp::Reverse(model.clone())))?;
    let remaining = job.spec.steps.saturating_sub(resume_step(job)).max(1);
    let step_time_s = job.spec.duration_estimate_s as f64 / remaining as f64;
    Some((option(technique, &model, shape, step_time_s), Source::DurationEstimate))
}

fn fits(shape: Shape, job: &JobRecord, model_sizes: &[u32]) -> bool {
    (job.spec.gpus_min..=job.spec.gpus_max).contains(&shape.total())
        && model_sizes.iter().filter(|&&n| n >= shape.gpus_per_host).count() >= shape.hosts as usize
}

fn option(technique: &str, model: &str, shape: Shape, step_time_s: f64) -> JobOption {
    JobOption {
        technique: technique.to_string(),
        gpu_model: Some(model.to_string()),
        gpus_per_host: shape.gpus_per_host,
        hosts: shape.hosts,
        step_time_s,
    }
}

/// Where a running job runs, in planner terms. The planner requires that configuration
/// to be one of the job's options; when it is not (its technique was pruned after it
/// started, or its shape is outside the fitted table), it is added with the book's
/// estimate, so the planner still sees its GPUs as taken.
fn running_of(
    planning: &PlanningInstance,
    job: &JobRecord,
    options: &mut Vec<JobOption>,
    sources: &mut Vec<Source>,
    book: &ProfileBook,
) -> Option<Running> {
    let live = job.live.as_ref().filter(|l| l.kind == DispatchKind::Train && l.status == AttemptStatus::Running)?;
    let placement = planning.to_planner_placement(&live.placement)?;
    let first_host = &placement.first()?.host;
    let first = planning.hosts.iter().find(|h| h.group == *first_host)?;
    let shape = Shape { gpus_per_host: placement[0].gpus.len() as u32, hosts: placement.len() as u32 };
    let matches = |o: &JobOption| {
        o.technique == live.technique
            && o.gpus_per_host == shape.gpus_per_host
            && o.hosts == shape.hosts
            && o.gpu_model.as_deref() == Some(first.model.as_str())
    };
    if !options.iter().any(matches) {
        let series = book.series_of(job).find(|s| s.key.technique == live.technique && s.key.model == first.model)?;
        let (step_time_s, source) = series.step_time(shape)?;
        options.push(option(&live.technique, &first.model, shape, step_time_s));
        sources.push(source);
    }
    Some(Running { technique: live.technique.clone(), placement })
}

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;
