//! The plan validator: the five validity rules of spec/planner.md, independent of every
//! solver (it reads only the instance and the plan JSON types), so it can judge them all.

use std::collections::{BTreeMap, HashMap, HashSet};

use thiserror::Error;

use crate::error::InstanceError;
use crate::instance::{same_placement, Instance, Job};
use crate::plan::{Assignment, Plan};

/// Why a plan is invalid; [`PlanError::rule`] tells which rule of the spec failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PlanError {
    /// The instance itself is malformed.
    #[error("invalid instance: {0}")]
    Instance(#[from] InstanceError),
    /// Rule 1: a job has no assignment.
    #[error("rule 1: job \"{job}\" has no assignment")]
    MissingJob {
        /// The job.
        job: String,
    },
    /// Rule 1: a job has several assignments, or one names a job that does not exist.
    #[error("rule 1: job \"{job}\" {why}")]
    ExtraAssignment {
        /// The job named by the assignment.
        job: String,
        /// "is assigned twice" or "is not in the instance".
        why: &'static str,
    },
    /// Rule 2: the assignment matches none of the job's options, or its duration is wrong.
    #[error("rule 2: job \"{job}\": {why}")]
    NoMatchingOption {
        /// The job.
        job: String,
        /// What does not match.
        why: String,
    },
    /// Rule 3: a host repeats, a GPU index does not exist or repeats.
    #[error("rule 3: job \"{job}\": {why}")]
    BadPlacement {
        /// The job.
        job: String,
        /// What is wrong.
        why: String,
    },
    /// Rule 4: two assignments use one GPU at overlapping times.
    #[error("rule 4: jobs \"{job}\" and \"{other}\" overlap on host \"{host}\" GPU {gpu}")]
    Overlap {
        /// One job.
        job: String,
        /// The other job.
        other: String,
        /// The host.
        host: String,
        /// The GPU index.
        gpu: u32,
    },
    /// Rule 5: a job starts before its release time (or at a non-finite time).
    #[error("rule 5: job \"{job}\" starts at {start_s}, before its release at {release_s}")]
    BeforeRelease {
        /// The job.
        job: String,
        /// Its start.
        start_s: f64,
        /// Its release.
        release_s: f64,
    },
    /// `makespan_s` is not the largest `end_s`.
    #[error("makespan_s is {declared} but the largest end_s is {actual}")]
    WrongMakespan {
        /// The declared makespan.
        declared: f64,
        /// The largest end.
        actual: f64,
    },
}

impl PlanError {
    /// The number (1-5) of the spec's validity rule that failed, if it is one of them.
    pub fn rule(&self) -> Option<u8> {
        match self {
            PlanError::MissingJob { .. } | PlanError::ExtraAssignment { .. } => Some(1),
            PlanError::NoMatchingOption { .. } => Some(2),
            PlanError::BadPlacement { .. } => Some(3),
            PlanError::Overlap { .. } => Some(4),
            PlanError::BeforeRelease { .. } => Some(5),
            PlanError::Instance(_) | PlanError::WrongMakespan { .. } => None,
        }
    }

    /// The job the failure is about, if one.
    pub fn job(&self) -> Option<&str> {
        match self {
            PlanError::MissingJob { job }
            | PlanError::ExtraAssignment { job, .. }
            | PlanError::NoMatchingOption { job, .. }
            | PlanError::BadPlacement { job, .. }
            | PlanError::Overlap { job, .. }
            | PlanError::BeforeRelease { job, .. } => Some(job),
            PlanError::Instance(_) | PlanError::WrongMakespan { .. } => None,
        }
    }
}

/// Checks a plan against the spec's five validity rules and its declared makespan.
pub fn validate_plan(instance: &Instance, plan: &Plan) -> Result<(), PlanError> {
    instance.validate()?;
    let jobs: HashMap<&str, &Job> = instance.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    for a in &plan.assignments {
        let Some(job) = jobs.get(a.job.as_str()) else {
            return Err(PlanError::ExtraAssignment { job: a.job.clone(), why: "is not in the instance" });
        };
        if !seen.insert(a.job.as_str()) {
            return Err(PlanError::ExtraAssignment { job: a.job.clone(), why: "is assigned twice" });
        }
        check_placement(instance, a)?;
        assigned_option(instance, job, a)?;
        if !(a.start_s.is_finite() && a.start_s >= job.release_s) {
            return Err(PlanError::BeforeRelease {
                job: a.job.clone(),
                start_s: a.start_s,
                release_s: job.release_s,
            });
        }
    }
    if let Some(job) = instance.jobs.iter().find(|j| !seen.contains(j.id.as_str())) {
        return Err(PlanError::MissingJob { job: job.id.clone() });
    }
    check_overlaps(&plan.assignments)?;
    let actual = plan.assignments.iter().map(|a| a.end_s).fold(0.0, f64::max);
    if !close(plan.makespan_s, actual) {
        return Err(PlanError::WrongMakespan { declared: plan.makespan_s, actual });
    }
    Ok(())
}

/// Float equality up to rounding from JSON round trips and summed step times.
pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

fn check_placement(instance: &Instance, a: &Assignment) -> Result<(), PlanError> {
    let bad = |why: String| PlanError::BadPlacement { job: a.job.clone(), why };
    if a.placement.is_empty() {
        return Err(bad("the placement names no host".into()));
    }
    for (i, entry) in a.placement.iter().enumerate() {
        let host = instance
            .hosts
            .iter()
            .find(|h| h.name == entry.host)
            .ok_or_else(|| bad(format!("host \"{}\" is not in the instance", entry.host)))?;
        if a.placement[..i].iter().any(|e| e.host == entry.host) {
            return Err(bad(format!("host \"{}\" appears twice", entry.host)));
        }
        for (k, &gpu) in entry.gpus.iter().enumerate() {
            if gpu >= host.gpus {
                return Err(bad(format!("host \"{}\" has no GPU {gpu}", entry.host)));
            }
            if entry.gpus[..k].contains(&gpu) {
                return Err(bad(format!("GPU {gpu} of host \"{}\" appears twice", entry.host)));
            }
        }
    }
    Ok(())
}

/// The index of the option an assignment runs: technique, gang shape, host models and
/// duration (with switch cost where due) must all match (rule 2).
pub(crate) fn assigned_option(instance: &Instance, job: &Job, a: &Assignment) -> Result<usize, PlanError> {
    let models: Vec<Option<&str>> = a
        .placement
        .iter()
        .map(|e| instance.hosts.iter().find(|h| h.name == e.host).and_then(|h| h.gpu_model.as_deref()))
        .collect();
    let kept = job
        .running
        .as_ref()
        .is_some_and(|r| r.technique == a.technique && same_placement(&r.placement, &a.placement));
    let switch = if job.running.is_some() && !kept { instance.switch_cost_s } else { 0.0 };
    let duration = a.end_s - a.start_s;
    let mut shape_matches = false;
    for (index, option) in job.options.iter().enumerate() {
        let fits = option.technique == a.technique
            && option.hosts as usize == a.placement.len()
            && a.placement.iter().all(|e| e.gpus.len() == option.gpus_per_host as usize)
            && models.iter().all(|m| option.gpu_model.is_none() || option.gpu_model.as_deref() == *m);
        shape_matches |= fits;
        if fits && close(duration, option.runtime_s(job.steps) + switch) {
            return Ok(index);
        }
    }
    let why = if shape_matches {
        format!("end_s - start_s = {duration} is not the runtime of a matching option (switch cost {switch})")
    } else {
        format!("technique \"{}\" on this placement matches none of its options", a.technique)
    };
    Err(PlanError::NoMatchingOption { job: a.job.clone(), why })
}

fn check_overlaps(assignments: &[Assignment]) -> Result<(), PlanError> {
    // Ordered, so the same invalid plan always reports the same pair.
    let mut uses: BTreeMap<(&str, u32), Vec<(f64, f64, &str)>> = BTreeMap::new();
    for a in assignments {
        for entry in &a.placement {
            for &gpu in &entry.gpus {
                uses.entry((entry.host.as_str(), gpu)).or_default().push((a.start_s, a.end_s, &a.job));
            }
        }
    }
    for ((host, gpu), mut spans) in uses {
        spans.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)));
        // Sorted by start, a span overlaps an earlier one iff it starts before the latest
        // end seen so far (zero-length spans never overlap anything).
        let mut latest: Option<(f64, &str)> = None;
        for &(start, end, job) in &spans {
            if end - start <= 0.0 {
                continue;
            }
            if let Some((until, other)) = latest {
                if start < until && !close(start, until) {
                    return Err(PlanError::Overlap {
                        job: other.to_string(),
                        other: job.to_string(),
                        host: host.to_string(),
                        gpu,
                    });
                }
            }
            if latest.is_none_or(|(until, _)| end > until) {
                latest = Some((end, job));
            }
        }
    }
    Ok(())
}
