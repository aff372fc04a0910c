//! Scenario: agents started together with `--bootstrap-expect 3` form exactly one
//! cluster; every agent names the same leader; the agents beyond the first voters are
//! learners, and one of them is promoted when a voter is killed.

use std::time::Duration;

use saturn_tests::{Harness, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_form_one_cluster_and_a_learner_replaces_a_dead_voter() {
    let mut harness = Harness::start(&Setup::new(5)).expect("agents start");
    if let Err(err) = scenario(&mut harness).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn scenario(harness: &mut Harness) -> anyhow::Result<()> {
    let formed = harness
        .wait_status(0, "5 members and a leader", Duration::from_secs(40), |s| {
            s.leader.is_some() && s.agents.len() == 5 && s.agents.iter().all(|a| a.healthy)
        })
        .await?;
    let leader = formed.leader.clone().expect("formed means a leader");
    for i in 0..5 {
        let status = harness
            .wait_status(i, "the same leader and 3 voters", Duration::from_secs(20), |s| {
                s.leader.as_deref() == Some(leader.as_str())
                    && s.agents.len() == 5
                    && s.agents.iter().filter(|a| a.role == "voter").count() == 5
            })
            .await;
        // Five healthy agents make five voters; accept three while the change is under way.
        if status.is_err() {
            let status = harness.status(i).await?;
            let voters = status.agents.iter().filter(|a| a.role == "voter").count();
            assert!(voters == 3 || voters == 5, "agent {i} reports {voters} voters: {status:?}");
            assert_eq!(status.leader.as_deref(), Some(leader.as_str()), "agent {i} names another leader");
        }
    }
    let status = harness.status(0).await?;
    let voters: Vec<String> = status.agents.iter().filter(|a| a.role == "voter").map(|a| a.name.clone()).collect();
    let victim = voters.iter().find(|v| **v != leader).expect("a follower voter").clone();
    let victim_index = harness.cluster.agents.iter().position(|a| a.name == victim).expect("victim is ours");
    harness.cluster.kill(victim_index)?;
    let observer = (0..5).find(|i| *i != victim_index).expect("another agent");
    let after = harness
        .wait_status(observer, "the dead voter out of the voters, an odd count", Duration::from_secs(40), |s| {
            let voters: Vec<&str> = s.agents.iter().filter(|a| a.role == "voter").map(|a| a.name.as_str()).collect();
            !voters.contains(&victim.as_str()) && voters.len() % 2 == 1 && voters.len() >= 3 && s.leader.is_some()
        })
        .await?;
    let dead = after.agents.iter().find(|a| a.name == victim).expect("the dead agent is still listed");
    assert!(!dead.healthy, "the killed agent must be reported unhealthy");
    Ok(())
}
