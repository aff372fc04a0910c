//! A hung leader (its host frozen: connections stay open, nothing answers) is replaced,
//! and a proposal a follower forwarded to it is retried at the successor instead of
//! waiting for the proposal deadline (found by the mesh benchmark's SIGSTOP failover).

mod harness;

use harness::{init_tracing, Cluster};
use saturn_consensus::{Command, CommandResult, StoredPlan};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_forwarded_to_a_frozen_leader_commits_at_its_successor() {
    init_tracing();
    let cluster = Cluster::form(3, 11).await;
    let ids = cluster.ids.clone();
    let leader = cluster.wait_leader(&ids).await;
    let follower = *ids.iter().find(|id| **id != leader).expect("a follower");

    // The follower still names the old leader when the proposal starts, so its first try
    // is forwarded there and hangs; only noticing the election can rescue it in time.
    cluster.router.freeze(leader);
    let started = Instant::now();
    let result = cluster.node(follower).propose(Command::CommitPlan { plan: StoredPlan::default(), at_ms: 1 }).await;
    let took = started.elapsed();
    assert_eq!(result.expect("committed by the new leader before the deadline"), CommandResult::PlanCommitted { epoch: 1 });

    let survivors: Vec<_> = ids.iter().copied().filter(|id| *id != leader).collect();
    let successor = cluster.wait_leader(&survivors).await;
    assert_ne!(successor, leader);
    let deadline = cluster.configs[&follower].propose_timeout;
    assert!(took < deadline / 2, "took {took:?} of a {deadline:?} deadline");
}
