//! Leader loss: a new leader is elected, nothing committed is lost, and the old leader
//! catches up when it comes back from its data directory.

mod harness;

use harness::{init_tracing, Cluster};
use saturn_consensus::{Command, CommandResult, JobId, StoredPlan};

async fn leader_failover(n: usize) {
    init_tracing();
    let mut cluster = Cluster::form(n, 1).await;
    let ids = cluster.ids.clone();
    let first_leader = cluster.wait_leader(&ids).await;

    // Commit plans through a follower (forwarded) and the leader.
    let follower = *ids.iter().find(|id| **id != first_leader).expect("a follower");
    for (i, via) in [follower, first_leader, follower].into_iter().enumerate() {
        let result = cluster.node(via).propose(Command::CommitPlan { plan: StoredPlan::default(), at_ms: i as u64 }).await;
        assert_eq!(result.expect("commit"), CommandResult::PlanCommitted { epoch: i as u64 + 1 });
    }

    let leader_view = cluster.node(first_leader).metrics();
    assert!(leader_view.is_leader && leader_view.term > 0);
    assert!(leader_view.committed_index >= leader_view.applied_index, "{leader_view:?}");
    assert!(leader_view.committed_index >= Some(4), "three plans and the first leader's blank entry are committed");
    assert_eq!(cluster.node(follower).metrics().leader, Some(first_leader));

    cluster.kill(first_leader);
    let survivors: Vec<_> = ids.iter().copied().filter(|id| *id != first_leader).collect();
    let second_leader = cluster.wait_leader(&survivors).await;
    assert_ne!(second_leader, first_leader);

    // Everything committed before the crash is still there, and the cluster still commits.
    let result = cluster.node(survivors[0]).propose(Command::CommitPlan { plan: StoredPlan::default(), at_ms: 9 }).await;
    assert_eq!(result.expect("commit after failover"), CommandResult::PlanCommitted { epoch: 4 });

    // The old leader restarts from its directory and catches up.
    cluster.restart(first_leader).await;
    let target = cluster.max_applied(&survivors);
    cluster.wait_applied(&[first_leader], target).await;
    let states = cluster.converge().await;
    assert!(states.windows(2).all(|pair| pair[0] == pair[1]), "replicas differ");
    assert_eq!(states[0].plan_epoch(), 4);
    assert!(states[0].job(&JobId::from_seq(1)).is_none());
    assert_eq!(cluster.router.codec_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_losing_their_leader() {
    leader_failover(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_survive_losing_their_leader() {
    leader_failover(5).await;
}
