//! Cluster formation and membership upkeep, driven by heartbeats.
//!
//! - Formation (`--bootstrap-expect N`): while this agent belongs to no cluster, once it
//!   hears N agents that belong to no cluster either (itself included), the one with the
//!   smallest peer id among the N initialises Raft with them as voters; the others wait to
//!   be contacted. Everyone applies the same rule to the same facts, so exactly one
//!   initialises even when all start together.
//! - Upkeep (leader only): agents that are alive but not members join as learners; the
//!   voter set follows [`desired_voters`]: 1, 3 or 5 voters, never more than the healthy
//!   members, a voter silent for longer than the grace period replaced by a healthy
//!   learner.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use saturn_consensus::{node_id_for_peer, AgentNode, ConsensusNode, NodeId};

use super::soft::SoftState;

/// How often formation and upkeep run.
const TICK: Duration = Duration::from_millis(500);

/// Whether this node belongs to a cluster (has any Raft membership).
pub fn is_member(node: &ConsensusNode) -> bool {
    let metrics = node.metrics();
    !metrics.voters.is_empty() || !metrics.learners.is_empty()
}

/// The voters a cluster should have: `healthy` members (voters and learners alive now),
/// `current` voters, `dead` voters silent past the grace period. Keeps healthy current
/// voters, drops dead ones, fills up from healthy learners in id order, and keeps the
/// count odd (1, 3 or 5) and at most the number of healthy members. Returns `None` when
/// the current set is already right.
pub fn desired_voters(
    current: &BTreeSet<NodeId>,
    healthy: &BTreeSet<NodeId>,
    dead: &BTreeSet<NodeId>,
) -> Option<BTreeSet<NodeId>> {
    let target = match healthy.len() {
        0..=2 => 1,
        3 | 4 => 3,
        _ => 5,
    };
    // Voters that are neither healthy nor dead yet (inside the grace period) are kept:
    // replacing a voter on the first missed heartbeat would churn membership.
    let mut voters: BTreeSet<NodeId> = current.iter().filter(|id| !dead.contains(id)).copied().collect();
    for id in healthy {
        if voters.len() >= target {
            break;
        }
        voters.insert(*id);
    }
    // Too many (the cluster shrank): drop unhealthy ones first, then the largest ids.
    while voters.len() > target {
        let drop = voters
            .iter()
            .find(|id| !healthy.contains(id))
            .or_else(|| voters.iter().next_back())
            .copied();
        match drop {
            Some(id) => voters.remove(&id),
            None => break,
        };
    }
    if voters.len() % 2 == 0 {
        if let Some(last) = voters.iter().next_back().copied() {
            voters.remove(&last);
        }
    }
    (voters != *current && !voters.is_empty()).then_some(voters)
}

/// The agents to initialise a cluster with, if this agent is the one to do it: the
/// `expect` candidates with the smallest peer ids, when this agent's is the smallest.
pub fn formation(me: &AgentNode, candidates: &[AgentNode], expect: usize) -> Option<BTreeMap<NodeId, AgentNode>> {
    let mut sorted: Vec<&AgentNode> = candidates.iter().collect();
    sorted.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
    sorted.dedup_by(|a, b| a.peer_id == b.peer_id);
    if sorted.len() < expect.max(1) {
        return None;
    }
    let chosen = &sorted[..expect.max(1)];
    (chosen[0].peer_id == me.peer_id)
        .then(|| chosen.iter().map(|n| (node_id_for_peer(&n.peer_id), (*n).clone())).collect())
}

/// Runs formation and upkeep until the task is dropped.
pub async fn run(
    node: Arc<ConsensusNode>,
    soft: Arc<SoftState>,
    bootstrap_expect: usize,
    grace: Duration,
    not_members: impl Fn() -> Vec<AgentNode> + Send + 'static,
) {
    loop {
        tokio::time::sleep(TICK).await;
        if !is_member(&node) {
            let candidates = not_members();
            if let Some(voters) = formation(node.agent_node(), &candidates, bootstrap_expect) {
                let names: Vec<&str> = voters.values().map(|n| n.name.as_str()).collect();
                tracing::info!(?names, "forming a new cluster");
                if let Err(err) = node.initialize(voters.clone()).await {
                    tracing::warn!(%err, "cluster initialisation failed");
                }
            }
            continue;
        }
        if node.is_leader() {
            upkeep(&node, &soft, grace).await;
        }
    }
}

/// Leader duties: add live non-members as learners, keep the voter set right.
async fn upkeep(node: &ConsensusNode, soft: &SoftState, grace: Duration) {
    let now = Instant::now();
    let metrics = node.metrics();
    let alive = soft.alive_nodes(now);
    for agent in &alive {
        let id = node_id_for_peer(&agent.peer_id);
        let known = metrics.nodes.get(&id);
        if known.is_none() || known.is_some_and(|k| k.addrs != agent.addrs || k.name != agent.name) {
            tracing::info!(agent = %agent.name, "adding agent as a learner");
            if let Err(err) = node.add_learner(id, agent.clone()).await {
                tracing::warn!(agent = %agent.name, %err, "could not add learner");
            }
            return;
        }
    }
    let alive_ids: BTreeSet<NodeId> = alive.iter().map(|a| node_id_for_peer(&a.peer_id)).collect();
    let healthy: BTreeSet<NodeId> = metrics.nodes.keys().filter(|id| alive_ids.contains(id)).copied().collect();
    let dead: BTreeSet<NodeId> = metrics
        .voters
        .iter()
        .filter(|id| {
            let name = metrics.nodes.get(id).map(|n| n.name.as_str()).unwrap_or("");
            **id != metrics.id && !alive_ids.contains(id) && soft.silent_for(name, now).is_none_or(|silent| silent > grace)
        })
        .copied()
        .collect();
    if let Some(voters) = desired_voters(&metrics.voters, &healthy, &dead) {
        let names: Vec<String> = voters.iter().filter_map(|id| metrics.nodes.get(id).map(|n| n.name.clone())).collect();
        tracing::info!(?names, "changing the voters");
        if let Err(err) = node.change_voters(voters).await {
            tracing::warn!(%err, "could not change the voters");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u64]) -> BTreeSet<NodeId> {
        list.iter().copied().collect()
    }

    #[test]
    fn a_growing_cluster_gets_three_then_five_voters() {
        assert_eq!(desired_voters(&ids(&[1]), &ids(&[1, 2, 3]), &ids(&[])), Some(ids(&[1, 2, 3])));
        assert_eq!(desired_voters(&ids(&[1, 2, 3]), &ids(&[1, 2, 3, 4]), &ids(&[])), None);
        assert_eq!(desired_voters(&ids(&[1, 2, 3]), &ids(&[1, 2, 3, 4, 5]), &ids(&[])), Some(ids(&[1, 2, 3, 4, 5])));
    }

    #[test]
    fn a_dead_voter_is_replaced_by_a_healthy_learner() {
        let next = desired_voters(&ids(&[1, 2, 3]), &ids(&[1, 2, 4]), &ids(&[3]));
        assert_eq!(next, Some(ids(&[1, 2, 4])));
    }

    #[test]
    fn a_voter_inside_its_grace_period_is_kept() {
        assert_eq!(desired_voters(&ids(&[1, 2, 3]), &ids(&[1, 2, 4]), &ids(&[])), None);
    }

    #[test]
    fn the_count_stays_odd_when_no_replacement_exists() {
        let next = desired_voters(&ids(&[1, 2, 3]), &ids(&[1, 2]), &ids(&[3]));
        assert_eq!(next.map(|v| v.len()), Some(1));
    }

    #[test]
    fn exactly_the_smallest_peer_initialises() {
        let node = |p: &str| AgentNode { name: p.to_lowercase(), peer_id: p.into(), addrs: vec![] };
        let all = vec![node("C"), node("A"), node("B")];
        assert!(formation(&node("A"), &all, 3).is_some());
        assert!(formation(&node("B"), &all, 3).is_none());
        assert!(formation(&node("A"), &all[..2], 3).is_none());
    }
}
