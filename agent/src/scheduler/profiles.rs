//! The profile book: for every (profile group, technique, GPU model) what is known about
//! its step time at each shape, what to measure next, and what can be filled in.
//!
//! Everything here is recomputed from the replicated state (recorded profiles and the
//! jobs' user-given ones) on every call, so a new leader continues a half-done ladder
//! exactly where the old one left it.
//!
//! Rules, per series (one technique of one group on one GPU model):
//! - user-given step times (a job's `profile`, technique → total GPUs → s/step) are
//!   authoritative for every GPU model; a technique with any is never trial-run;
//! - the ladder ([`shapes::ladder`]) is measured in order, one rung at a time; it stops
//!   when a doubling of GPUs gains less than `min_doubling_gain`, or at the first
//!   infeasible rung of a replicated technique (`ddp` out of memory on `n` GPUs is out of
//!   memory on any count, since each GPU holds the whole model);
//! - a sharded technique infeasible at `n` GPUs is also infeasible below `n` (its memory
//!   per GPU shrinks with more GPUs) — unless it ran on fewer: then the failure is not
//!   memory but a technique that does not scale to `n` (spilling runs on one GPU only),
//!   so the ladder stops there and every count from `n` up is infeasible;
//! - a technique slower than another by more than `dominance_factor` at every count it
//!   was measured at (at least two, or all its rungs) is pruned: no more trials, no options.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use saturn_consensus::{ClusterState, JobRecord, ProfileKey, ProfileResult};

use super::config::SchedulerConfig;
use super::curve;
use super::shapes::{host_sizes_by_model, ladder, shapes_in_range, HostView, Shape};

/// One technique of one profile group on one GPU model.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// The jobs' `profile_group`.
    pub group: String,
    /// Technique.
    pub technique: String,
    /// GPU model.
    pub model: String,
}

impl SeriesKey {
    /// The profile key of this series at `shape`.
    pub fn profile_key(&self, shape: Shape) -> ProfileKey {
        ProfileKey {
            profile_group: self.group.clone(),
            technique: self.technique.clone(),
            gpus_per_host: shape.gpus_per_host,
            hosts: shape.hosts,
            gpu_model: self.model.clone(),
        }
    }
}

/// A known step time, or a known failure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Point {
    /// Seconds per step.
    Time(f64),
    /// Cannot run (out of memory, crash).
    Infeasible,
}

/// Where an option's step time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The job file gave it.
    User,
    /// A trial run measured it.
    Measured,
    /// Estimated from the scaling curve.
    Fitted,
    /// The job's `duration_estimate_s` (it reports no steps, so nothing was measured).
    DurationEstimate,
}

/// Everything known about one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Which series.
    pub key: SeriesKey,
    /// Every shape the group's GPU range allows on this model.
    pub shapes: Vec<Shape>,
    /// Known points (user-given or recorded), by shape.
    pub points: BTreeMap<Shape, Point>,
    /// Whether the points are the user's (no trial runs for this series).
    pub user_given: bool,
    /// The rung to measure next; `None` when the ladder is finished.
    pub next: Option<Shape>,
    /// The technique that dominates this one, when pruned.
    pub pruned_by: Option<String>,
    /// A trial of the group ended well without reporting a single step: its script
    /// ignores the stdout protocol, nothing can be measured, and its jobs are planned
    /// by their `duration_estimate_s` instead (see `instance::job_options`).
    pub no_steps: bool,
    replicated: bool,
}

impl Series {
    /// Whether every single-host rung is resolved: enough to plan. Gang rungs may still
    /// be measured later; until then their estimate promises nothing over one host.
    pub fn ready(&self) -> bool {
        self.pruned_by.is_some() || self.next.is_none_or(|next| next.hosts > 1)
    }

    /// Step time at `shape` and where it comes from; `None` when infeasible or unknown.
    pub fn step_time(&self, shape: Shape) -> Option<(f64, Source)> {
        let exact_source = if self.user_given { Source::User } else { Source::Measured };
        match self.points.get(&shape) {
            Some(Point::Time(t)) => return Some((*t, exact_source)),
            Some(Point::Infeasible) => return None,
            None => {}
        }
        if self.implied_infeasible(shape.total()) {
            return None;
        }
        let known: Vec<(u32, f64)> = self.times().collect();
        let t = curve::estimate(&known, shape.total())?;
        let source = if self.user_given { Source::User } else { Source::Fitted };
        Some((t, source))
    }

    fn times(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.points.iter().filter_map(|(s, p)| match p {
            Point::Time(t) => Some((s.total(), *t)),
            Point::Infeasible => None,
        })
    }

    fn implied_infeasible(&self, total: u32) -> bool {
        let smallest_feasible = self.times().map(|(n, _)| n).min();
        self.points.iter().any(|(s, p)| {
            let failed = s.total();
            // Failing above a count that ran: the technique stops scaling there.
            let upward = self.replicated || smallest_feasible.is_some_and(|n| n < failed);
            *p == Point::Infeasible && if upward { failed <= total } else { failed >= total }
        })
    }
}

/// All series of the given jobs' groups on the given hosts.
#[derive(Clone, Debug, Default)]
pub struct ProfileBook {
    /// By key.
    pub series: BTreeMap<SeriesKey, Series>,
}

impl ProfileBook {
    /// Builds the book for `jobs` (their groups, techniques and GPU ranges) on `hosts`;
    /// `jobs` may be records or the state's shared ones (`state.jobs.values()`).
    pub fn build<'a, J: Borrow<JobRecord> + 'a>(
        state: &ClusterState,
        hosts: &[HostView],
        jobs: impl IntoIterator<Item = &'a J>,
        config: &SchedulerConfig,
    ) -> ProfileBook {
        let mut groups: BTreeMap<&str, Vec<&JobRecord>> = BTreeMap::new();
        for job in jobs.into_iter().map(Borrow::borrow) {
            groups.entry(job.spec.profile_group.as_str()).or_default().push(job);
        }
        let sizes = host_sizes_by_model(hosts);
        let mut book = ProfileBook::default();
        let silent: BTreeSet<&str> = state
            .profiles()
            .iter()
            .filter(|(_, result)| matches!(result, ProfileResult::NoSteps))
            .map(|(key, _)| key.profile_group.as_str())
            .collect();
        for (group, members) in groups {
            let min = members.iter().map(|j| j.spec.gpus_min).min().unwrap_or(1);
            let max = members.iter().map(|j| j.spec.gpus_max).max().unwrap_or(1);
            let techniques: BTreeSet<&str> =
                members.iter().flat_map(|j| j.spec.techniques.iter().map(String::as_str)).collect();
            for (model, model_sizes) in &sizes {
                let shapes = shapes_in_range(model_sizes, min, max);
                for technique in &techniques {
                    let key = SeriesKey { group: group.into(), technique: technique.to_string(), model: model.clone() };
                    let mut series = walk(state, key, shapes.clone(), &members, config);
                    if silent.contains(group) && !series.user_given {
                        // No trial can measure this group: stop profiling it.
                        series.no_steps = true;
                        series.next = None;
                    }
                    book.series.insert(series.key.clone(), series);
                }
            }
        }
        book.prune(config.dominance_factor);
        book
    }

    /// Series of `job`'s group for its own techniques.
    pub fn series_of<'a>(&'a self, job: &'a JobRecord) -> impl Iterator<Item = &'a Series> + 'a {
        self.series
            .values()
            .filter(move |s| s.key.group == job.spec.profile_group && job.spec.techniques.contains(&s.key.technique))
    }

    /// Drops techniques that are clearly slower than another of the same group and model.
    fn prune(&mut self, factor: f64) {
        let keys: Vec<SeriesKey> = self.series.keys().cloned().collect();
        for key in &keys {
            let series = &self.series[key];
            let measured: Vec<(Shape, f64)> = series
                .points
                .iter()
                .filter_map(|(s, p)| if let Point::Time(t) = p { Some((*s, *t)) } else { None })
                .collect();
            let enough = measured.len() >= 2 || (!measured.is_empty() && series.next.is_none());
            if series.user_given || !enough {
                continue;
            }
            let dominator = self.series.values().find(|other| {
                other.key.group == key.group
                    && other.key.model == key.model
                    && other.key.technique != key.technique
                    && measured
                        .iter()
                        .all(|(shape, t)| matches!(other.points.get(shape), Some(Point::Time(u)) if *t > factor * u))
            });
            if let Some(by) = dominator.map(|d| d.key.technique.clone()) {
                if let Some(series) = self.series.get_mut(key) {
                    series.pruned_by = Some(by);
                    series.next = None;
                }
            }
        }
    }
}

/// Collects a series' known points and walks its ladder to the first unknown rung.
fn walk(
    state: &ClusterState,
    key: SeriesKey,
    shapes: Vec<Shape>,
    members: &[&JobRecord],
    config: &SchedulerConfig,
) -> Series {
    let replicated = config.is_replicated(&key.technique);
    let user: BTreeMap<u32, f64> = members
        .iter()
        .filter_map(|j| j.spec.profile.get(&key.technique))
        .flat_map(|counts| counts.iter().map(|(n, t)| (*n, *t)))
        .collect();
    let user_given = !user.is_empty();
    let mut points = BTreeMap::new();
    for &shape in &shapes {
        let point = if user_given {
            user.get(&shape.total()).map(|t| Point::Time(*t))
        } else {
            state.profile(&key.profile_key(shape)).and_then(|result| match result {
                ProfileResult::StepTime(t) => Some(Point::Time(*t)),
                ProfileResult::Infeasible { .. } => Some(Point::Infeasible),
                ProfileResult::NoSteps => None,
            })
        };
        if let Some(point) = point {
            points.insert(shape, point);
        }
    }
    if user_given && points.is_empty() {
        // The user's counts match no shape here: still authoritative, fit from them.
        for (n, t) in &user {
            points.insert(Shape::single(*n), Point::Time(*t));
        }
    }
    let next = if user_given { None } else { next_rung(&ladder(&shapes), &points, replicated, config) };
    Series { key, shapes, points, user_given, next, pruned_by: None, no_steps: false, replicated }
}

fn next_rung(
    rungs: &[Shape],
    points: &BTreeMap<Shape, Point>,
    replicated: bool,
    config: &SchedulerConfig,
) -> Option<Shape> {
    let mut previous: Option<(u32, f64)> = None;
    for &rung in rungs {
        match points.get(&rung) {
            None => return Some(rung),
            // Out of memory everywhere, or failing above a count that ran: no more rungs.
            Some(Point::Infeasible) if replicated || previous.is_some() => return None,
            Some(Point::Infeasible) => {}
            Some(Point::Time(t)) => {
                if let Some((n0, t0)) = previous {
                    if rung.total() > n0 && doubling_gain(n0, t0, rung.total(), *t) < config.min_doubling_gain {
                        return None;
                    }
                }
                previous = Some((rung.total(), *t));
            }
        }
    }
    None
}

/// Fraction of step time saved per doubling of GPUs between two measurements.
fn doubling_gain(n0: u32, t0: f64, n1: u32, t1: f64) -> f64 {
    let doublings = (f64::from(n1) / f64::from(n0)).log2();
    1.0 - (t1 / t0).powf(1.0 / doublings)
}

#[cfg(test)]
#[path = "profiles_tests.rs"]
mod tests;
