//! Carrying out the committed plan: a list-scheduling executor.
//!
//! The plan's start times are predictions; the executor keeps the plan's *order* and
//! *placements* but not its clock. Walking the assignments in planned start order, a
//! `scheduled` job is dispatched as soon as all its planned GPUs are free and no
//! earlier-planned assignment that has not started yet needs any of them. So a job that
//! ends early lets the next one start at once, and a late one delays only the jobs that
//! were planned onto its GPUs.
//!
//! An assignment naming a host that is down or a GPU that no longer exists cannot be
//! carried out; the executor skips it and asks for a re-plan.

use std::collections::BTreeSet;

use saturn_consensus::{ClusterState, Command, DispatchKind, GpuSlot, JobState, Placement, PlannedAssignment};

use super::context::SchedContext;
use super::free_gpus::FreeGpus;
use super::shapes::HostView;

/// What the executor decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DispatchDecision {
    /// `Dispatch Train` commands, in plan order.
    pub commands: Vec<Command>,
    /// Why the plan must be re-solved, when it cannot be carried out as is.
    pub replan: Option<String>,
}

/// The training dispatches the committed plan allows now.
pub fn decide_dispatch(state: &ClusterState, hosts: &[HostView], ctx: &SchedContext) -> DispatchDecision {
    let mut decision = DispatchDecision::default();
    let Some(plan) = &state.plan() else { return decision };
    let mut free = FreeGpus::of(state, hosts);
    let mut reserved: BTreeSet<GpuSlot> = BTreeSet::new();
    for assignment in in_start_order(&plan.assignments) {
        let waiting = state.job(&assignment.job).is_some_and(|j| j.state == JobState::Scheduled && j.live.is_none());
        if !waiting {
            continue;
        }
        if let Some(why) = unplaceable(&assignment.placement, hosts) {
            decision.replan = Some(format!("plan for job {}: {why}", assignment.job));
            continue;
        }
        let slots = slots(&assignment.placement);
        if free.all_free(&assignment.placement) && slots.is_disjoint(&reserved) {
            free.take(&assignment.placement);
            decision.commands.push(Command::Dispatch {
                job: assignment.job.clone(),
                technique: assignment.technique.clone(),
                placement: assignment.placement.clone(),
                kind: DispatchKind::Train,
                at_ms: ctx.now_ms,
            });
        } else {
            reserved.extend(slots);
        }
    }
    decision
}

/// Why the committed plan cannot be carried out on these hosts, if it cannot: it places
/// a waiting job on a host that is not up or a GPU that is not offered.
pub fn plan_stale_reason(state: &ClusterState, hosts: &[HostView]) -> Option<String> {
    let plan = state.plan()?;
    plan.assignments.iter().find_map(|a| {
        let waiting = state.job(&a.job).is_some_and(|j| j.state == JobState::Scheduled && j.live.is_none());
        waiting.then(|| unplaceable(&a.placement, hosts)).flatten().map(|why| format!("job {}: {why}", a.job))
    })
}

fn in_start_order(assignments: &[PlannedAssignment]) -> Vec<&PlannedAssignment> {
    let mut ordered: Vec<&PlannedAssignment> = assignments.iter().collect();
    ordered.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then(a.job.cmp(&b.job)));
    ordered
}

/// A host that is not up, a GPU it does not offer, or GPUs of two models in one entry
/// (each entry must lie in one GPU group: the plan's step time is that model's).
fn unplaceable(placement: &Placement, hosts: &[HostView]) -> Option<String> {
    placement.iter().find_map(|hg| {
        let mut groups = hosts.iter().filter(|h| h.name == hg.host).peekable();
        if groups.peek().is_none() {
            return Some(format!("host {} is not up", hg.host));
        }
        let &first = hg.gpus.first()?;
        let Some(group) = groups.find(|h| h.gpus.contains(&first)) else {
            return Some(format!("host {} has no GPU {first}", hg.host));
        };
        let missing = hg.gpus.iter().find(|g| !group.gpus.contains(g))?;
        Some(format!("host {} has no GPU {missing} of model {}", hg.host, group.model))
    })
}

fn slots(placement: &Placement) -> BTreeSet<GpuSlot> {
    placement.iter().flat_map(|hg| hg.gpus.iter().map(|g| (hg.host.clone(), *g))).collect()
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
