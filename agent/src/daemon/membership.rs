//! Cluster formation and membership upkeep, driven by heartbeats; the rules themselves
//! are the consensus crate's pure policy (`saturn_consensus::membership`).
//!
//! - Formation (`--bootstrap-expect N`): while this agent belongs to no cluster, the
//!   candidates are the agents heard alive that belong to no cluster either and were
//!   told `--bootstrap-expect` too (heartbeats say both), itself included. Once there are
//!   N, the one with the smallest peer id initialises Raft; everyone applies the same rule
//!   to the same facts, so exactly one does, and agents started later (which hear
//!   members) never form a second cluster.
//! - An agent without `--bootstrap-expect` (given `--join`) never forms: it waits, saying
//!   so every few seconds, until a leader adds it as a learner.
//! - Upkeep (leader only): `plan_membership` turns who was heard when, and whose log is
//!   caught up, into learner additions, voter changes (1, 3 or 5; a voter silent past the
//!   grace period replaced by a caught-up learner) and removals of long-gone learners.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use saturn_consensus::membership::{caught_up_members, formation, plan_membership, Formation, MembershipInput, PeerView};
use saturn_consensus::{node_id_for_peer, AgentNode, ConsensusNode};

use super::soft::SoftState;
use crate::cluster::now_ms;

/// How often formation and upkeep run.
const TICK: Duration = Duration::from_millis(500);
/// How often an agent waiting to be added says so.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(5);
/// Rounds the formation candidates must stay unchanged before a cluster is formed.
const FORMATION_SETTLE_ROUNDS: u32 = 2;
/// A learner within this many log entries of the leader may be promoted to voter.
const MAX_PROMOTION_LAG: u64 = 100;

/// Whether this node belongs to a cluster (has any Raft membership).
pub fn is_member(node: &ConsensusNode) -> bool {
    let metrics = node.metrics();
    !metrics.voters.is_empty() || !metrics.learners.is_empty()
}

/// Runs formation and upkeep until the task is dropped. `not_members` lists the agents
/// heard alive that belong to no cluster and may form one (this one included when it
/// does not belong to one and may form); `bootstrap_expect` is `None` for an agent that
/// never forms (given `--join` only), and `join` its join addresses, for the log.
pub async fn run(
    node: Arc<ConsensusNode>,
    soft: Arc<SoftState>,
    bootstrap_expect: Option<usize>,
    join: Vec<String>,
    grace: Duration,
    not_members: impl Fn() -> Vec<AgentNode> + Send + 'static,
) {
    let mut said_waiting: Option<Instant> = None;
    // Formation waits until the candidates have been the same for a few rounds: agents
    // starting together hear each other at slightly different moments, and deciding on
    // a set still growing is how two clusters form at once.
    let mut stable: (Vec<String>, u32) = (Vec::new(), 0);
    loop {
        tokio::time::sleep(TICK).await;
        if !is_member(&node) {
            let Some(bootstrap_expect) = bootstrap_expect else {
                if said_waiting.is_none_or(|at| at.elapsed() >= WAITING_LOG_EVERY) {
                    let heard = soft.alive_nodes(Instant::now()).len().saturating_sub(1);
                    tracing::info!(?join, heard, "not a member yet: waiting to be added to a cluster through the --join peers (an agent given --join never forms a cluster of its own)");
                    said_waiting = Some(Instant::now());
                }
                continue;
            };
            let candidates = not_members();
            let mut ids: Vec<String> = candidates.iter().map(|n| n.peer_id.clone()).collect();
            ids.sort();
            stable = if ids == stable.0 { (ids, stable.1 + 1) } else { (ids, 0) };
            if stable.1 >= FORMATION_SETTLE_ROUNDS {
                form(&node, &candidates, bootstrap_expect).await;
            }
        } else if node.is_leader() {
            upkeep(&node, &soft, grace).await;
        }
    }
}

async fn form(node: &ConsensusNode, candidates: &[AgentNode], bootstrap_expect: usize) {
    let Formation::Initialize { voters } = formation(node.agent_node(), candidates, bootstrap_expect, false) else {
        return;
    };
    let names: Vec<&str> = voters.values().map(|n| n.name.as_str()).collect();
    tracing::info!(?names, "forming a new cluster");
    if let Err(err) = node.initialize(voters.clone()).await {
        tracing::warn!(%err, "cluster initialisation failed");
    }
}

/// Leader duties: what the policy says, carried out in order.
async fn upkeep(node: &ConsensusNode, soft: &SoftState, grace: Duration) {
    let now = Instant::now();
    let now_ms = now_ms();
    let metrics = node.metrics();
    let caught_up = caught_up_members(&node.raft_metrics().borrow(), MAX_PROMOTION_LAG);
    let mut peers = BTreeMap::new();
    // Members first (with the addresses Raft knows), then whatever the mesh hears now.
    for (id, member) in &metrics.nodes {
        if let Some(silent) = soft.silent_for(&member.name, now) {
            let last_seen_ms = now_ms.saturating_sub(silent.as_millis() as u64);
            peers.insert(*id, PeerView { node: member.clone(), last_seen_ms, caught_up: caught_up.contains(id) });
        }
    }
    for agent in soft.alive_nodes(now) {
        let id = node_id_for_peer(&agent.peer_id);
        peers.insert(id, PeerView { node: agent, last_seen_ms: now_ms, caught_up: caught_up.contains(&id) });
    }
    let input = MembershipInput {
        leader: metrics.id,
        voters: metrics.voters.clone(),
        learners: metrics.learners.clone(),
        peers,
        now_ms,
        grace_ms: grace.as_millis() as u64,
    };
    let actions = plan_membership(&input);
    if actions.is_empty() {
        return;
    }
    tracing::info!(?actions, "changing the membership");
    if let Err(err) = node.carry_out(&actions).await {
        tracing::warn!(%err, "membership change failed; retrying next round");
    }
}
