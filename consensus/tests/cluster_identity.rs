//! Cluster identity and inbound admission, in process: two clusters on one network never
//! mix (another cluster's requests are refused before Raft sees them, and counted), a
//! peer that is not a member cannot forward proposals, a joiner adopts the id of the
//! cluster that adds it, and a killed consensus core is reported as stopped.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{agent, init_tracing, Cluster, WAIT};
use saturn_consensus::proposal::{Proposal, ProposalId};
use saturn_consensus::{Command, Envelope, NodeId, RaftRequest, RaftResponse};

fn cancel(seq: u64) -> Command {
    Command::CancelJob { job: saturn_consensus::JobId::from_seq(seq), at_ms: 1 }
}

/// Forms `ids` (voters) into one cluster from `ids[0]` and waits for its leader.
async fn form(cluster: &Cluster, ids: &[NodeId]) -> NodeId {
    let voters: BTreeMap<_, _> = ids.iter().map(|id| (*id, cluster.configs[id].node.clone())).collect();
    cluster.node(ids[0]).initialize(voters).await.expect("initialize");
    cluster.wait_leader(ids).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_one_network_never_mix() {
    init_tracing();
    let cluster = Cluster::start(4, 17).await;
    let (a, b) = ([cluster.ids[0], cluster.ids[1]], [cluster.ids[2], cluster.ids[3]]);
    let leader_a = form(&cluster, &a).await;
    let leader_b = form(&cluster, &b).await;
    // Members adopt their cluster's id from the first request they get.
    let id_a = cluster.poll("cluster A's id everywhere", || {
        let ids: Vec<_> = a.iter().map(|id| cluster.node(*id).cluster_id()).collect();
        (ids[0].is_some() && ids[0] == ids[1]).then(|| ids[0].clone())
    }).await;
    let id_b = cluster.poll("cluster B's id everywhere", || {
        let ids: Vec<_> = b.iter().map(|id| cluster.node(*id).cluster_id()).collect();
        (ids[0].is_some() && ids[0] == ids[1]).then(|| ids[0].clone())
    }).await;
    assert_ne!(id_a, id_b, "two formations, two ids");

    // A's leader tries to take a member of B as a learner: B's member refuses every
    // request (another cluster), so it stays in B, and A's leader gives up on it.
    let victim = if b[0] == leader_b { b[1] } else { b[0] };
    let added = tokio::time::timeout(Duration::from_secs(3), cluster.node(leader_a).add_learner(victim, cluster.configs[&victim].node.clone())).await;
    tracing::info!(?added, "A's leader added B's member as a learner");
    cluster.poll("B's member counting A's requests", || (cluster.node(victim).guard().foreign_messages() > 0).then_some(())).await;
    assert_eq!(cluster.node(victim).cluster_id(), id_b, "B's member kept its cluster");
    let victim_metrics = cluster.node(victim).metrics();
    assert_eq!(victim_metrics.leader, Some(leader_b), "B's member still follows B's leader");
    assert!(!victim_metrics.nodes.contains_key(&leader_a), "A's leader never got into B's membership");

    // Both clusters still commit, and their states never saw the other's commands.
    cluster.node(a[1]).propose(cancel(1)).await.expect("A commits");
    cluster.node(victim).propose(cancel(2)).await.expect("B commits");
    assert_eq!(cluster.router.codec_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_not_a_member_cannot_forward_proposals() {
    init_tracing();
    let cluster = Cluster::start(3, 5).await;
    let members = [cluster.ids[0], cluster.ids[1]];
    let leader = form(&cluster, &members).await;
    let stranger = cluster.ids[2];
    let proposal = Proposal { id: ProposalId { client: 9, seq: 1 }, command: cancel(3) };
    // Even carrying the right cluster id, a non-member's proposal is refused.
    let envelope = Envelope { cluster: cluster.node(leader).cluster_id(), request: RaftRequest::Propose(proposal.clone()) };
    let answer = cluster.router.transport(stranger).call(leader, &agent(0), envelope).await.expect("delivered");
    assert!(matches!(answer, RaftResponse::Refused(_)), "a stranger's proposal must be refused, got {answer:?}");
    // A member's is committed.
    let envelope = Envelope { cluster: cluster.node(leader).cluster_id(), request: RaftRequest::Propose(proposal) };
    let follower = if members[0] == leader { members[1] } else { members[0] };
    let answer = cluster.router.transport(follower).call(leader, &agent(0), envelope).await.expect("delivered");
    assert!(matches!(answer, RaftResponse::Propose(Ok(_))), "a member's proposal is committed, got {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_adopts_the_id_of_the_cluster_that_adds_it_and_keeps_it() {
    init_tracing();
    let mut cluster = Cluster::start(2, 11).await;
    let leader = form(&cluster, &[cluster.ids[0], cluster.ids[1]]).await;
    let joiner = cluster.add(saturn_consensus::NodeConfig::fast(agent(2))).await;
    assert_eq!(cluster.node(joiner).cluster_id(), None, "a fresh agent belongs to no cluster");
    cluster.node(leader).add_learner(joiner, agent(2)).await.expect("learner added");
    let id = cluster.node(leader).cluster_id();
    cluster.poll("the joiner adopting the cluster's id", || (cluster.node(joiner).cluster_id() == id).then_some(())).await;
    // Restarted on its data dir, it still belongs to that cluster.
    cluster.kill(joiner);
    cluster.restart(joiner).await;
    assert_eq!(cluster.node(joiner).cluster_id(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_core_is_reported_stopped() {
    init_tracing();
    let cluster = Cluster::form(3, 23).await;
    let leader = cluster.find_leader().await;
    let victim = *cluster.ids.iter().find(|id| **id != leader).expect("a follower");
    cluster.node(victim).kill_core_for_test().await;
    let reason = tokio::time::timeout(WAIT, cluster.node(victim).core_stopped()).await.expect("the core stops");
    assert!(!reason.is_empty());
    // The others carry on.
    let other = *cluster.ids.iter().find(|id| **id != victim).expect("another member");
    cluster.node(other).propose(cancel(4)).await.expect("the survivors commit");
}
