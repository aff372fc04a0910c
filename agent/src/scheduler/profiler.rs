//! Profiling decisions: which trial runs to start, and which waiting state each job is in.
//!
//! What to measure comes from the [`ProfileBook`] (the ladder, pruning and fitting rules
//! live there). This module turns it into commands:
//! - a `Trial` dispatch per series whose next rung is not being measured, on free GPUs of
//!   its model, carried by any idle job of the group (a job has at most one live attempt),
//!   in parallel across the mesh, most-waited-for keys first;
//! - `SetJobPhase`: `queued` until profiling of the job's group has started, `profiling`
//!   while it goes on, `scheduled` once every series of the job is ready (single-host
//!   ladder finished, or pruned).
//!
//! Trials that gate scheduling (carried by a `queued`/`profiling` job) may use any free
//! GPU: a waiting job with no profile cannot be planned at all. Trials that only refine
//! the options of already-scheduled jobs (gang rungs, a GPU model that appeared later) are
//! opportunistic: they use only free GPUs that no waiting assignment of the committed plan
//! names, so they never delay planned work.
//!
//! A job whose every configuration was measured infeasible on the up hosts' GPUs is
//! failed (`FailJob`) with the reason as its error, so the user sees why at once instead
//! of a job queued forever; it is also reported in [`Unrunnable`].

use std::collections::{BTreeMap, BTreeSet};

use saturn_consensus::{
    ClusterState, Command, DispatchKind, GpuSlot, JobId, JobPhase, JobRecord, JobState, ProfileKey,
};

use super::context::SchedContext;
use super::free_gpus::FreeGpus;
use super::instance::job_options;
use super::profiles::{ProfileBook, Series};
use super::shapes::HostView;

/// A job that can never run on the current hosts, and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Unrunnable {
    /// The job.
    pub job: JobId,
    /// Why, for people.
    pub reason: String,
}

/// Profile keys some live trial is measuring now.
pub fn keys_in_flight(state: &ClusterState) -> BTreeSet<ProfileKey> {
    state
        .jobs()
        .values()
        .filter_map(|j| match &j.live.as_ref()?.kind {
            DispatchKind::Trial { profile_key, .. } => Some(profile_key.clone()),
            DispatchKind::Train => None,
        })
        .collect()
}

/// Jobs whose training should not start yet: while any recently submitted job (less than
/// `profiling_hold_ms` ago) still waits for its profiles, every recently submitted job
/// is held, so one submission is planned as a whole. Older jobs are never held, and
/// jobs that can never run hold nothing.
pub fn held_by_profiling(state: &ClusterState, unrunnable: &[Unrunnable], ctx: &SchedContext) -> BTreeSet<JobId> {
    let recent = |job: &JobRecord| ctx.now_ms.saturating_sub(job.submitted_at_ms) < ctx.config.profiling_hold_ms;
    let profiling = state
        .jobs()
        .values()
        .any(|job| recent(job) && waits_for_profiles(job) && !unrunnable.iter().any(|u| u.job == job.id));
    if !profiling {
        return BTreeSet::new();
    }
    state.jobs().values().filter(|job| recent(job)).map(|job| job.id.clone()).collect()
}

/// Queued or profiling for itself (not a scheduled job lending itself to a trial).
fn waits_for_profiles(job: &JobRecord) -> bool {
    let lent = job.live.as_ref().is_some_and(|l| l.return_state == JobState::Scheduled);
    matches!(job.state, JobState::Queued | JobState::Profiling) && !lent
}

/// `SetJobPhase` for every waiting job whose phase is out of date, and the jobs that can
/// never run.
pub fn decide_phases(
    state: &ClusterState,
    book: &ProfileBook,
    hosts: &[HostView],
    ctx: &SchedContext,
) -> (Vec<Command>, Vec<Unrunnable>) {
    let in_flight = keys_in_flight(state);
    let mut commands = Vec::new();
    let mut unrunnable = Vec::new();
    let waiting = state.jobs().values().filter(|j| j.live.is_none());
    for job in waiting.filter(|j| matches!(j.state, JobState::Queued | JobState::Profiling)) {
        let series: Vec<&Series> = book.series_of(job).collect();
        if series.is_empty() {
            continue; // no GPU host is up: nothing to decide yet
        }
        let phase = if series.iter().all(|s| s.ready()) {
            if job_options(book, job, hosts).is_empty() {
                let reason = format!(
                    "no configuration of {} can run on the up hosts' GPUs: every technique and GPU count was \
                     measured infeasible (out of memory or crashed; see the trial runs in `saturn job logs {}`)",
                    job.spec.name, job.id
                );
                commands.push(Command::FailJob { job: job.id.clone(), reason: reason.clone(), at_ms: ctx.now_ms });
                unrunnable.push(Unrunnable { job: job.id.clone(), reason });
                continue;
            } else {
                JobPhase::Scheduled
            }
        } else if series.iter().any(|s| started(s, &in_flight)) {
            JobPhase::Profiling
        } else {
            JobPhase::Queued
        };
        if !same_phase(job.state, phase) {
            commands.push(Command::SetJobPhase { job: job.id.clone(), phase, at_ms: ctx.now_ms });
        }
    }
    (commands, unrunnable)
}

fn started(series: &Series, in_flight: &BTreeSet<ProfileKey>) -> bool {
    !series.points.is_empty() || series.next.is_some_and(|shape| in_flight.contains(&series.key.profile_key(shape)))
}

fn same_phase(state: JobState, phase: JobPhase) -> bool {
    matches!(
        (state, phase),
        (JobState::Queued, JobPhase::Queued)
            | (JobState::Profiling, JobPhase::Profiling)
            | (JobState::Scheduled, JobPhase::Scheduled)
    )
}

/// Trial dispatches for every series' next rung that fits on free GPUs now. With
/// `refine` false only trials that gate scheduling start: while a submission is held for
/// its profiles, GPUs are about to go to training, and a refining trial (a gang rung of a
/// job that can already be planned) would delay it.
pub fn decide_trials(
    state: &ClusterState,
    book: &ProfileBook,
    hosts: &[HostView],
    ctx: &SchedContext,
    refine: bool,
) -> Vec<Command> {
    let in_flight = keys_in_flight(state);
    let mut free = FreeGpus::of(state, hosts);
    let mut unplanned = free.clone();
    unplanned.take_slots(&planned_waiting_gpus(state));
    let mut carriers_taken: BTreeSet<JobId> = BTreeSet::new();
    let mut wanted: Vec<(usize, &Series, ProfileKey)> = book
        .series
        .values()
        .filter_map(|series| {
            let key = series.key.profile_key(series.next?);
            (!in_flight.contains(&key)).then(|| (jobs_waiting_on(state, series), series, key))
        })
        .collect();
    // Most-waited-for first; single-host rungs before gangs (they gate scheduling);
    // then by key, so the order is the same on every leader.
    wanted.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.hosts.cmp(&b.2.hosts)).then(a.2.cmp(&b.2)));
    let mut commands = Vec::new();
    for (_, series, key) in wanted {
        let Some(shape) = series.next else { continue };
        let Some(carrier) = carrier(state, series, &carriers_taken) else { continue };
        if !refine && (carrier.state == JobState::Scheduled || series.ready()) {
            continue; // a gang rung, or a job that can be planned already
        }
        let pool = if carrier.state == JobState::Scheduled { &unplanned } else { &free };
        let Some(placement) = pool.pick(&series.key.model, shape) else { continue };
        free.take(&placement);
        unplanned.take(&placement);
        carriers_taken.insert(carrier.id.clone());
        commands.push(Command::Dispatch {
            job: carrier.id.clone(),
            technique: series.key.technique.clone(),
            placement,
            kind: DispatchKind::Trial { profile_key: key, steps: ctx.config.profile_steps },
            at_ms: ctx.now_ms,
        });
    }
    commands
}

/// GPUs that the committed plan names for jobs that have not started yet.
fn planned_waiting_gpus(state: &ClusterState) -> Vec<GpuSlot> {
    let Some(plan) = &state.plan() else { return Vec::new() };
    plan.assignments
        .iter()
        .filter(|a| state.job(&a.job).is_some_and(|j| j.state == JobState::Scheduled && j.live.is_none()))
        .flat_map(|a| a.placement.iter().flat_map(|hg| hg.gpus.iter().map(|g| (hg.host.clone(), *g))))
        .collect()
}

/// Jobs of the series' group that wait for profiles and can run as its technique.
fn jobs_waiting_on(state: &ClusterState, series: &Series) -> usize {
    state
        .jobs()
        .values()
        .filter(|j| matches!(j.state, JobState::Queued | JobState::Profiling))
        .filter(|j| j.spec.profile_group == series.key.group && j.spec.techniques.contains(&series.key.technique))
        .count()
}

/// An idle job of the group that may run the series' technique: waiting-for-profile jobs
/// first (they have nothing better to do), then scheduled ones.
fn carrier<'a>(state: &'a ClusterState, series: &Series, taken: &BTreeSet<JobId>) -> Option<&'a JobRecord> {
    let idle = state.jobs().values().filter(|j| {
        j.live.is_none()
            && !taken.contains(&j.id)
            && j.spec.profile_group == series.key.group
            && j.spec.techniques.contains(&series.key.technique)
    });
    let mut by_preference: BTreeMap<u8, &JobRecord> = BTreeMap::new();
    for job in idle {
        let rank = match job.state {
            JobState::Queued | JobState::Profiling => 0,
            JobState::Scheduled => 1,
            _ => continue,
        };
        by_preference.entry(rank).or_insert(job);
    }
    by_preference.into_values().next()
}

#[cfg(test)]
#[path = "profiler_tests.rs"]
mod tests;
