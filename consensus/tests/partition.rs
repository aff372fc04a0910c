//! Partitions: a minority cannot commit; after healing, every log agrees.

mod harness;

use std::time::Duration;

use harness::{init_tracing, Cluster};
use saturn_consensus::{Command, ProposeError};

mod fixtures;
use fixtures::spec;

fn submit(name: &str) -> Command {
    Command::SubmitJobs { specs: vec![spec(name, 100, 0)], at_ms: 1 }
}

fn job_names(cluster: &Cluster, id: u64) -> Vec<String> {
    cluster.node(id).read(|state| state.jobs().values().map(|job| job.spec.name.clone()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_logs_agree_after_healing() {
    init_tracing();
    let cluster = Cluster::start_with(5, 2, |config| config.propose_timeout = Duration::from_millis(800)).await;
    cluster.initialize_all().await;
    let ids = cluster.ids.clone();
    let leader = cluster.wait_leader(&ids).await;
    cluster.node(leader).propose(submit("before")).await.expect("commit before the partition");

    // The old leader and one follower end up on the minority side.
    let minority: Vec<u64> = std::iter::once(leader).chain(ids.iter().copied().filter(|id| *id != leader).take(1)).collect();
    let majority: Vec<u64> = ids.iter().copied().filter(|id| !minority.contains(id)).collect();
    for a in &minority {
        for b in &majority {
            cluster.router.cut(*a, *b);
        }
    }

    // Neither the old leader itself nor its follower can commit.
    for via in &minority {
        let stuck = cluster.node(*via).propose(submit("minority")).await;
        assert!(matches!(stuck, Err(ProposeError::Timeout { .. })), "minority committed: {stuck:?}");
    }

    let new_leader = cluster.wait_leader(&majority).await;
    cluster.node(new_leader).propose(submit("majority")).await.expect("the majority commits");

    cluster.router.heal_all();
    cluster.wait_leader(&ids).await;
    let states = cluster.converge().await;
    assert!(states.windows(2).all(|pair| pair[0] == pair[1]), "replicas differ after healing");
    assert_eq!(job_names(&cluster, minority[0]), vec!["before", "majority"], "the minority's write must not survive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_send_is_replaced() {
    init_tracing();
    let cluster = Cluster::form(3, 3).await;
    let ids = cluster.ids.clone();
    let leader = cluster.wait_leader(&ids).await;
    // The leader still hears the others but its heartbeats never arrive.
    for other in ids.iter().filter(|id| **id != leader) {
        cluster.router.cut_one_way(leader, *other);
    }
    let others: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_leader(&others).await;
    cluster.node(new_leader).propose(submit("after")).await.expect("commit under the new leader");

    cluster.router.heal_all();
    cluster.wait_leader(&ids).await;
    let states = cluster.converge().await;
    assert!(states.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(job_names(&cluster, leader), vec!["after"]);
}
