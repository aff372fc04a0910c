//! Scenario: a sweep submitted to a learner is listed by every agent; its ids survive
//! `kill -9` of the leader; the survivors elect and report a new leader; the killed
//! agent, restarted on its data dir, rejoins with the same peer id.

use std::time::Duration;

use saturn_tests::{eventually, synth_sweep, Harness, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_survive_the_leader_and_a_restarted_agent_keeps_its_identity() {
    let mut setup = Setup::new(4);
    setup.bootstrap_expect = 3;
    let mut harness = Harness::start(&setup).expect("agents start");
    if let Err(err) = scenario(&mut harness).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn scenario(harness: &mut Harness) -> anyhow::Result<()> {
    let formed = harness
        .wait_status(0, "4 members, one learner", Duration::from_secs(40), |s| {
            s.leader.is_some() && s.agents.len() == 4 && s.agents.iter().any(|a| a.role == "learner")
        })
        .await?;
    let learner = formed.agents.iter().find(|a| a.role == "learner").expect("a learner").name.clone();
    let learner_index = harness.cluster.agents.iter().position(|a| a.name == learner).expect("ours");
    // Jobs that cannot start (no matching GPU count) stay queued: this test is about storage.
    let sweep = synth_sweep(&harness.saturn, "failover", 6, 100_000, "");
    let submitted = harness.submit(learner_index, &sweep).await?;
    assert_eq!(submitted.jobs.len(), 6);
    let ids: Vec<String> = submitted.jobs.iter().map(|j| j.id.clone()).collect();
    // Committed means on a majority; every agent lists the jobs once it has applied them.
    for i in 0..4 {
        eventually(&format!("agent {i} lists the sweep"), Duration::from_secs(10), || async {
            let listed = harness.jobs(i).await?;
            Ok(ids.iter().all(|id| listed.iter().any(|j| &j.id == id)).then_some(()))
        })
        .await?;
    }

    let leader = formed.leader.clone().expect("a leader");
    let leader_index = harness.cluster.agents.iter().position(|a| a.name == leader).expect("ours");
    let peer_id_before = formed.agents.iter().find(|a| a.name == leader).expect("listed").peer_id.clone();
    harness.cluster.kill(leader_index)?;
    for i in (0..4).filter(|i| *i != leader_index) {
        let status = harness
            .wait_status(i, "a new leader", Duration::from_secs(30), |s| {
                s.leader.as_deref().is_some_and(|l| l != leader)
            })
            .await?;
        let jobs = harness.jobs(i).await?;
        for id in &ids {
            assert!(jobs.iter().any(|j| &j.id == id), "after failover agent {i} lost {id}");
        }
        assert!(status.leader.is_some());
    }
    let survivor = (0..4).find(|i| *i != leader_index).expect("a survivor");
    let new_leader = harness.status(survivor).await?.leader.expect("a leader");
    // The new leader accepts writes.
    let more = harness.submit(survivor, &synth_sweep(&harness.saturn, "after", 1, 100_000, "")).await?;
    assert_eq!(more.jobs.len(), 1);
    assert!(!ids.contains(&more.jobs[0].id), "ids are never reused");

    harness.cluster.restart(leader_index)?;
    let rejoined = eventually("the restarted agent back, same peer id", Duration::from_secs(30), || async {
        let status = harness.status(leader_index).await?;
        let me = status.agents.iter().find(|a| a.name == leader);
        // Right after its restart the agent may still name the leader it knew before.
        let follows = status.leader.as_deref() == Some(new_leader.as_str());
        Ok((follows && me.is_some_and(|a| a.healthy)).then_some(status))
    })
    .await?;
    let me = rejoined.agents.iter().find(|a| a.name == leader).expect("listed");
    assert_eq!(me.peer_id, peer_id_before, "a restart on the same data dir keeps the peer id");
    assert_eq!(rejoined.leader.as_deref(), Some(new_leader.as_str()), "the returning agent follows the new leader");
    eventually("the restarted agent has every job", Duration::from_secs(10), || async {
        Ok((harness.jobs(leader_index).await?.len() == 7).then_some(()))
    })
    .await?;
    Ok(())
}
