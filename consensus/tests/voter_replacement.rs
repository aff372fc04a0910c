//! The membership policy driving a real cluster: joiners become learners and voters, and
//! a voter lost for longer than the grace period is replaced; the voter count stays odd.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{init_tracing, Cluster, WAIT};
use saturn_consensus::membership::{caught_up_members, plan_membership, MembershipAction, MembershipInput, PeerView};
use saturn_consensus::{Command, NodeId, NodeMetrics, StoredPlan};
use tokio::time::Instant;

const GRACE_MS: u64 = 1_000;

/// One round of what the leader's daemon does: read metrics, decide, act.
async fn membership_round(cluster: &Cluster, seen: &BTreeMap<NodeId, u64>, now_ms: u64) -> Vec<MembershipAction> {
    let leader = cluster.find_leader().await;
    let raft_metrics = cluster.node(leader).raft_metrics().borrow().clone();
    let metrics = NodeMetrics::from_raft(&raft_metrics);
    let caught_up = caught_up_members(&raft_metrics, 10);
    let peers = seen
        .iter()
        .map(|(id, last_seen_ms)| {
            let view = PeerView { node: cluster.configs[id].node.clone(), last_seen_ms: *last_seen_ms, caught_up: caught_up.contains(id) };
            (*id, view)
        })
        .collect();
    let input = MembershipInput { leader, voters: metrics.voters, learners: metrics.learners, peers, now_ms, grace_ms: GRACE_MS };
    let actions = plan_membership(&input);
    cluster.node(leader).carry_out(&actions).await.expect("leader carries out membership changes");
    actions
}

/// Runs rounds until the policy has nothing left to do.
async fn settle(cluster: &Cluster, seen: &BTreeMap<NodeId, u64>, now_ms: u64) {
    let deadline = Instant::now() + WAIT;
    while !membership_round(cluster, seen, now_ms).await.is_empty() {
        assert!(Instant::now() < deadline, "membership did not settle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn voters(cluster: &Cluster, via: NodeId) -> Vec<NodeId> {
    cluster.node(via).metrics().voters.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_voter_is_replaced_by_a_learner() {
    init_tracing();
    let mut cluster = Cluster::start(4, 5).await;
    let ids = cluster.ids.clone();
    // Formation with one initial voter; the policy grows the cluster from there.
    let first = BTreeMap::from([(ids[0], cluster.configs[&ids[0]].node.clone())]);
    cluster.node(ids[0]).initialize(first).await.expect("initialize");
    cluster.wait_leader(&ids[..1]).await;

    let mut now = 10_000;
    let mut seen: BTreeMap<NodeId, u64> = ids.iter().map(|id| (*id, now)).collect();
    settle(&cluster, &seen, now).await;
    let leader = cluster.wait_leader(&ids).await;
    let before = voters(&cluster, leader);
    assert_eq!(before.len(), 3, "four agents: three voters");
    let learner = *ids.iter().find(|id| !before.contains(id)).expect("one learner");

    let victim = *before.iter().find(|id| **id != leader).expect("a follower voter");
    cluster.kill(victim);
    now += GRACE_MS / 2;
    for id in ids.iter().filter(|id| **id != victim) {
        seen.insert(*id, now);
    }
    assert_eq!(membership_round(&cluster, &seen, now).await, vec![], "no change within the grace period");

    now += GRACE_MS;
    for id in ids.iter().filter(|id| **id != victim) {
        seen.insert(*id, now);
    }
    settle(&cluster, &seen, now).await;
    let leader = cluster.wait_leader(&cluster.nodes.keys().copied().collect::<Vec<_>>()).await;
    let after = voters(&cluster, leader);
    assert_eq!(after.len(), 3, "voter count stays odd: {after:?}");
    assert!(after.contains(&learner) && !after.contains(&victim));
    assert!(!cluster.node(leader).metrics().nodes.contains_key(&victim), "the lost agent is no longer a member");

    // The new configuration commits, and a returning agent is re-admitted as a learner.
    cluster.node(learner).propose(Command::CommitPlan { plan: StoredPlan::default(), at_ms: 1 }).await.expect("commit");
    cluster.restart(victim).await;
    seen.insert(victim, now);
    settle(&cluster, &seen, now).await;
    let metrics = cluster.node(leader).metrics();
    assert!(metrics.learners.contains(&victim), "returning agent re-admitted as learner: {metrics:?}");
    assert_eq!(metrics.voters.len(), 3);
}
