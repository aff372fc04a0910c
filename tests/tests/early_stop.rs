//! Scenario: a sweep with ASHA early stopping on 3 agents; the leader is killed after
//! the first jobs were stopped; the new leader continues from the replicated rungs
//! (stops more jobs at later rungs), every agent holds the same rung records, and every
//! job ends `completed` or `stopped` with no process of a stopped job left behind.

use std::time::Duration;

use saturn_agent::views::{JobsView, SweepView};
use saturn_tests::{eventually, exclusive_segments, Harness, Setup, SynthSweep};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_stopping_survives_a_leader_change() {
    let mut harness = Harness::start(&Setup::new(3)).expect("agents start");
    if let Err(err) = scenario(&mut harness).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn sweeps(harness: &Harness, i: usize) -> anyhow::Result<Vec<SweepView>> {
    Ok(harness.client(i).get_json::<JobsView>("/v1/jobs").await?.sweeps)
}

fn stopped(sweep: &SweepView) -> Vec<String> {
    sweep.leaderboard.iter().filter(|e| e.state == "stopped").map(|e| e.id.clone()).collect()
}

async fn scenario(harness: &mut Harness) -> anyhow::Result<()> {
    harness.wait_formed(0, 3, Duration::from_secs(40)).await?;
    // 9 jobs of 2,000 steps of 20 ms; rungs at 200, 600 and 1,800 steps. Known step
    // times (no trials) and one GPU each, so all nine run at once.
    let mut sweep = SynthSweep::new("asha", 9, 2_000);
    sweep.base_step_ms = 20;
    sweep.gpus = (1, 1);
    sweep.techniques = r#"["ddp"]"#.into();
    sweep.checkpoint_every = Some(100);
    sweep.profile = Some(
        "profile = { ddp = { 1 = 0.02 } }\nearly_stop = { metric = \"loss\", mode = \"min\", rule = \"asha\", min_steps = 200, reduction = 3 }"
            .into(),
    );
    let submitted = harness.submit(0, &sweep.toml(&harness.saturn)).await?;
    let ids: Vec<String> = submitted.jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(ids.len(), 9);

    let before = eventually("the first early stops", Duration::from_secs(120), || async {
        let sweeps = sweeps(harness, 0).await?;
        Ok(sweeps.first().map(stopped).filter(|s| !s.is_empty()))
    })
    .await?;
    let old_leader = harness.leader_index(0).await?;
    harness.cluster.kill(old_leader)?;
    let survivor = (0..3).find(|i| *i != old_leader).expect("a survivor");
    harness
        .wait_status(survivor, "a new leader", Duration::from_secs(30), |s| {
            s.leader.as_deref().is_some_and(|l| l != harness.cluster.agents[old_leader].name)
        })
        .await?;

    let ended = harness.wait_jobs_ended(survivor, &ids, Duration::from_secs(300)).await?;
    assert!(ended.iter().all(|j| j.state == "completed" || j.state == "stopped"), "{ended:#?}");
    let board = sweeps(harness, survivor).await?.into_iter().next().expect("the sweep's leaderboard");
    let after = stopped(&board);
    assert!(after.len() > before.len(), "the new leader stopped more jobs: {before:?} then {after:?}");
    assert!(after.len() >= 6 && after.len() < 9, "ASHA keeps the top third at each rung: {board:#?}");
    for id in &before {
        assert!(after.contains(id), "a stop is final: {id}");
    }
    let late = board.leaderboard.iter().filter(|e| after.contains(&e.id) && !before.contains(&e.id));
    for entry in late {
        let reason = entry.stop_reason.as_deref().unwrap_or_default();
        assert!(reason.starts_with("asha: loss="), "{entry:?}");
    }
    for entry in &board.leaderboard {
        assert!(entry.rungs.first().is_some_and(|(step, _)| *step == 200), "every job reached rung 200: {entry:?}");
        if entry.state == "stopped" {
            assert!(harness.job_pids(&entry.id).is_empty(), "stopped job {} still has processes", entry.id);
            assert!(entry.steps_done < 2_000, "{entry:?}");
        }
    }
    // Replicated: the other surviving agent holds the same rung records.
    let other = (0..3).find(|i| *i != old_leader && *i != survivor).expect("two survivors");
    let rungs = |b: &SweepView| b.leaderboard.iter().map(|e| (e.id.clone(), e.rungs.clone())).collect::<Vec<_>>();
    eventually("the same rungs on every agent", Duration::from_secs(10), || async {
        let theirs = sweeps(harness, other).await?;
        Ok(theirs.first().is_some_and(|b| rungs(b) == rungs(&board)).then_some(()))
    })
    .await?;
    // The CLI shows the leaderboard too.
    let listed: JobsView = harness.cli_json(survivor, &["job", "status"]).await?;
    assert_eq!(listed.sweeps.first().map(|b| b.leaderboard.len()), Some(9));
    let text = harness.cli(survivor, &["job", "status"], Duration::from_secs(30)).await?;
    assert!(text.stdout.contains("stopped early") && text.stdout.contains("RUNG"), "{}", text.stdout);
    exclusive_segments(&harness.records)?;
    Ok(())
}
