//! Membership policy, pure: who forms the cluster, who votes, who is only a learner.
//!
//! The leader's daemon feeds [`plan_membership`] what it knows (the current voters and
//! learners, when each agent was last seen over the mesh, which members have caught up)
//! and carries out the returned [`MembershipAction`]s, then asks again later. Rules:
//! - every agent seen within the grace period that is not a member is added as a
//!   learner (a joiner, or a returning agent re-admitted);
//! - the voters are 5 when at least 5 members are eligible, else 3 when at least 3, else 1
//!   (always odd), except that three or more voters never shrink below three because
//!   members are down: that would leave one voter whose loss nobody could recover from. Eligible means seen within the
//!   grace period and, for a learner, caught up with the leader's log;
//! - current live voters are kept first (the leader always stays), then the
//!   lowest-id eligible learners are promoted: a voter unseen for longer than the grace
//!   period is thereby replaced by a caught-up learner;
//! - a learner unseen for longer than the grace period is removed (it is re-added as a
//!   learner when it is seen again).
//!
//! The grace period must exceed the time an agent cut off from the cluster needs to
//! notice it and kill its job processes (see DESIGN.md): until then the leader must not
//! hand that agent's GPUs to anyone else.

use std::collections::{BTreeMap, BTreeSet};

use crate::node::{AgentNode, NodeId};
use crate::raft_types::RaftMetrics;

/// What the leader knows about one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// How to reach it.
    pub node: AgentNode,
    /// When it was last heard from (Unix ms); the leader itself is seen `now`.
    pub last_seen_ms: u64,
    /// Whether its log is close enough to the leader's to vote without stalling commits.
    pub caught_up: bool,
}

/// The input of [`plan_membership`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipInput {
    /// The leader running the policy.
    pub leader: NodeId,
    /// Current voters.
    pub voters: BTreeSet<NodeId>,
    /// Current learners.
    pub learners: BTreeSet<NodeId>,
    /// Every agent known (members and agents seen on the mesh); members missing here
    /// count as never seen.
    pub peers: BTreeMap<NodeId, PeerView>,
    /// Now (Unix ms).
    pub now_ms: u64,
    /// How long an agent may be unseen before it is replaced or removed.
    pub grace_ms: u64,
}

/// One membership change for the leader to make, in the order returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipAction {
    /// Add (or re-admit) agents as learners, in one membership change: a mesh that
    /// grows by dozens of agents at once admits them all in one round, not one per round.
    AddLearners {
        /// Their ids and node records.
        nodes: BTreeMap<NodeId, AgentNode>,
    },
    /// Make exactly these the voters (removed voters stay as learners).
    ChangeVoters {
        /// The new voters.
        voters: BTreeSet<NodeId>,
    },
    /// Remove learners that have been gone for longer than the grace period.
    RemoveLearners {
        /// Their ids.
        ids: BTreeSet<NodeId>,
    },
}

/// How many voters a cluster with `eligible` eligible members should have.
pub fn voter_target(eligible: usize) -> usize {
    match eligible {
        5.. => 5,
        3 | 4 => 3,
        _ => 1,
    }
}

/// Decides the membership changes to make now.
pub fn plan_membership(input: &MembershipInput) -> Vec<MembershipAction> {
    let alive = |id: &NodeId| {
        *id == input.leader
            || input.peers.get(id).is_some_and(|peer| input.now_ms.saturating_sub(peer.last_seen_ms) <= input.grace_ms)
    };
    let caught_up = |id: &NodeId| *id == input.leader || input.peers.get(id).is_some_and(|peer| peer.caught_up);
    let mut actions = Vec::new();

    let newcomers: BTreeMap<NodeId, AgentNode> = input
        .peers
        .iter()
        .filter(|(id, _)| !input.voters.contains(id) && !input.learners.contains(id) && alive(id))
        .map(|(id, peer)| (*id, peer.node.clone()))
        .collect();
    if !newcomers.is_empty() {
        actions.push(MembershipAction::AddLearners { nodes: newcomers });
    }

    let live_voters: Vec<NodeId> = input.voters.iter().copied().filter(|id| alive(id)).collect();
    let ready_learners: Vec<NodeId> =
        input.learners.iter().copied().filter(|id| alive(id) && caught_up(id)).collect();
    let eligible = live_voters.len() + ready_learners.len();
    if eligible < 3 && input.voters.len() >= 3 {
        // Shrinking to one voter because members are down would trade a recoverable
        // outage for an unrecoverable one: if that last voter then fails, the survivors
        // are learners and can never elect. Keep the voters (a majority may still be
        // alive) until enough members are back to replace the dead ones.
        return actions_for_learners(input, &input.voters, actions, alive);
    }
    let target = voter_target(eligible);
    // The leader first, then the other live voters, then learners: least churn.
    let mut voters: BTreeSet<NodeId> = BTreeSet::from([input.leader]);
    for id in live_voters.iter().chain(&ready_learners) {
        if voters.len() >= target {
            break;
        }
        voters.insert(*id);
    }
    if voters != input.voters {
        actions.push(MembershipAction::ChangeVoters { voters: voters.clone() });
    }
    actions_for_learners(input, &voters, actions, alive)
}

/// Appends the removal of learners gone past the grace period (never a voter-to-be).
fn actions_for_learners(
    input: &MembershipInput,
    voters: &BTreeSet<NodeId>,
    mut actions: Vec<MembershipAction>,
    alive: impl Fn(&NodeId) -> bool,
) -> Vec<MembershipAction> {
    let gone: BTreeSet<NodeId> =
        input.learners.iter().copied().filter(|id| !alive(id) && !voters.contains(id)).collect();
    if !gone.is_empty() {
        actions.push(MembershipAction::RemoveLearners { ids: gone });
    }
    actions
}

/// Members whose replicated log is within `max_lag` entries of the leader's, read from
/// the leader's Raft metrics (empty on a non-leader). The leader counts as caught up.
pub fn caught_up_members(metrics: &RaftMetrics, max_lag: u64) -> BTreeSet<NodeId> {
    let leader_last = metrics.last_log_index.unwrap_or(0);
    let mut caught_up = BTreeSet::from([metrics.id]);
    if let Some(replication) = &metrics.replication {
        for (id, matched) in replication {
            let matched = matched.map_or(0, |log_id| log_id.index);
            if matched + max_lag >= leader_last {
                caught_up.insert(*id);
            }
        }
    }
    caught_up
}

/// What an agent waiting to form a cluster should do (see [`formation`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Formation {
    /// Fewer than `bootstrap_expect` agents known, or another agent initialises: wait
    /// to be contacted by a leader.
    Wait,
    /// This agent initialises the cluster with these voters; the other known agents are
    /// then added as learners by [`plan_membership`].
    Initialize {
        /// The first voters.
        voters: BTreeMap<NodeId, AgentNode>,
    },
}

/// Cluster formation with `--bootstrap-expect N`: once N agents (this one included) are
/// known, the one with the smallest peer id among them initialises the cluster, with the
/// [`voter_target`] smallest peer ids as voters; everyone else waits.
///
/// Every agent of the same N computes the same initialiser, so agents starting together
/// form exactly one cluster. An agent already part of a cluster (`initialized`) never
/// initialises again. (Starting more than N agents with the same expectation at once can
/// still race, as with any expect-N bootstrap: give the extra agents `--join` instead.)
pub fn formation(me: &AgentNode, known: &[AgentNode], bootstrap_expect: usize, initialized: bool) -> Formation {
    let mut agents: BTreeMap<&str, &AgentNode> = known.iter().map(|node| (node.peer_id.as_str(), node)).collect();
    agents.insert(me.peer_id.as_str(), me);
    if initialized || agents.len() < bootstrap_expect.max(1) {
        return Formation::Wait;
    }
    let first = agents.keys().next().copied();
    if first != Some(me.peer_id.as_str()) {
        return Formation::Wait;
    }
    let voters = agents
        .values()
        .take(voter_target(bootstrap_expect.max(1)))
        .map(|node| (crate::node::node_id_for_peer(&node.peer_id), (*node).clone()))
        .collect();
    Formation::Initialize { voters }
}
