//! A member added after the leader purged its log catches up through a snapshot.

mod harness;

use harness::{agent, init_tracing, Cluster};
use saturn_consensus::{Command, CommandResult, NodeConfig, StoredPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_learner_catches_up_through_a_snapshot() {
    init_tracing();
    let small_snapshots = |config: &mut NodeConfig| {
        config.snapshot_every_logs = 20;
        config.logs_kept_after_snapshot = 0;
    };
    let mut cluster = Cluster::start_with(3, 4, small_snapshots).await;
    cluster.initialize_all().await;
    let leader = cluster.wait_leader(&cluster.ids.clone()).await;

    for at_ms in 0..50 {
        let result = cluster.node(leader).propose(Command::CommitPlan { plan: StoredPlan::default(), at_ms }).await;
        assert!(matches!(result, Ok(CommandResult::PlanCommitted { .. })));
    }
    let purged = cluster
        .poll("the leader to purge its log", || cluster.node(leader).metrics().purged_index.filter(|index| *index > 0))
        .await;

    let mut config = NodeConfig::fast(agent(3));
    small_snapshots(&mut config);
    let learner = cluster.add(config.clone()).await;
    cluster.node(leader).add_learner(learner, config.node).await.expect("add learner");

    let target = cluster.max_applied(&[leader]);
    cluster.wait_applied(&[learner], target).await;
    let snapshot = cluster.node(learner).metrics().snapshot_index;
    assert!(snapshot >= Some(purged), "the learner installed a snapshot covering the purged log: {snapshot:?}");
    let states = cluster.converge().await;
    assert!(states.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(cluster.node(learner).state().plan_epoch(), 50);

    // The learner keeps following new entries after the snapshot.
    cluster.node(learner).propose(Command::CommitPlan { plan: StoredPlan::default(), at_ms: 99 }).await.expect("forwarded");
    let states = cluster.converge().await;
    assert_eq!(states[0].plan_epoch(), 51);
    assert!(states.windows(2).all(|pair| pair[0] == pair[1]));
}
