//! Growing the mesh (issue 17), with real agents on 127.0.0.1:
//! - agents given only `--join` never form a cluster: started before the bootstrap agents
//!   are reachable, they wait and then join; 3 bootstrap agents + 12 joiners end with one
//!   leader, 15 members, and a submission committing through every agent;
//! - two clusters formed apart, then connected, stay apart: no agent changes cluster,
//!   no panic, the other cluster's messages are refused and counted;
//! - an agent whose consensus core dies exits with status 1 and the mesh marks it down.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use saturn_tests::{eventually, Harness, Setup};

/// One simulated GPU each, default-ish timings (15 agents on 2 cores).
fn setup(agents: usize, bootstrap_expect: usize) -> Setup {
    Setup {
        agents,
        bootstrap_expect,
        gpus: "sim:1xSIM-24GB".into(),
        extra_args: ["--heartbeat-ms", "500", "--grace-period-s", "10", "--kill-grace-s", "2"]
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

fn log_of(harness: &Harness, i: usize) -> String {
    std::fs::read_to_string(&harness.cluster.agents[i].log_path).unwrap_or_default()
}

fn panicked(harness: &Harness) -> Option<String> {
    (0..harness.cluster.agents.len())
        .find(|i| log_of(harness, *i).contains("panicked"))
        .map(|i| harness.cluster.agents[i].name.clone())
}

/// A one-job submission (known step time, a few steps) through agent `i`.
async fn submit_one(harness: &Harness, i: usize) -> Result<Vec<String>> {
    let toml = format!(
        r#"
[[job]]
name = "via-{i}"
command = ["{saturn}", "synth-job", "--model-gb", "1", "--base-step-ms", "20"]
steps = 3
techniques = ["ddp"]
gpus = [1, 1]
profile = {{ ddp = {{ 1 = 0.02 }} }}
"#,
        saturn = harness.saturn.display()
    );
    let submitted = harness.submit(i, &toml).await?;
    Ok(submitted.jobs.into_iter().map(|j| j.id).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bootstrap_agents_then_twelve_joiners_make_one_cluster() {
    let mut harness = Harness::prepare(&setup(15, 3), &[]).expect("agents prepared");
    if let Err(err) = fifteen(&mut harness, false).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiners_started_first_wait_then_fifteen_agents_make_one_cluster() {
    let mut harness = Harness::prepare(&setup(15, 3), &[]).expect("agents prepared");
    if let Err(err) = fifteen(&mut harness, true).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

/// 3 agents with `--bootstrap-expect 3` and 12 with only `--join agent-0`, the joiners
/// started first (nothing to join yet: each must wait, saying so, never forming) or last
/// (the way a lab grows its cluster).
async fn fifteen(harness: &mut Harness, joiners_first: bool) -> Result<()> {
    if joiners_first {
        for i in 3..15 {
            harness.cluster.spawn(i)?;
        }
        let h = &*harness;
        eventually("every joiner saying it waits to be added", Duration::from_secs(60), || async {
            Ok((3..15).all(|i| log_of(h, i).contains("not a member yet")).then_some(()))
        })
        .await?;
        for i in 3..15 {
            let log = log_of(harness, i);
            if log.contains("forming a new cluster") {
                bail!("joiner {} formed a cluster of its own", harness.cluster.agents[i].name);
            }
        }
    }
    // Then the three bootstrap agents.
    for i in 0..3 {
        harness.cluster.spawn(i)?;
    }
    if !joiners_first {
        harness
            .wait_status(0, "the three bootstrap agents formed", Duration::from_secs(60), |s| {
                s.leader.is_some() && s.agents.len() == 3
            })
            .await?;
        for i in 3..15 {
            harness.cluster.spawn(i)?;
        }
    }
    let harness = &*harness;
    let formed = harness
        .wait_status(0, "a leader and 15 members", Duration::from_secs(180), |s| {
            s.leader.is_some() && s.agents.len() == 15 && s.agents.iter().filter(|a| a.role == "voter").count() >= 3
        })
        .await?;
    let leader = formed.leader.clone().context("formed means a leader")?;
    for i in 0..15 {
        harness
            .wait_status(i, "the same leader and 15 members", Duration::from_secs(120), |s| {
                s.leader.as_deref() == Some(leader.as_str()) && s.agents.len() == 15
            })
            .await
            .with_context(|| format!("agent {i}"))?;
    }
    links_are_bounded(harness).await?;
    let formers: Vec<String> = (0..15)
        .filter(|i| log_of(harness, *i).contains("forming a new cluster"))
        .map(|i| harness.cluster.agents[i].name.clone())
        .collect();
    if formers.len() != 1 || !["agent-0", "agent-1", "agent-2"].contains(&formers[0].as_str()) {
        bail!("exactly one bootstrap agent must form the cluster, formed by: {formers:?}");
    }
    let mut ids = BTreeSet::new();
    for i in 0..15 {
        let jobs = eventually(&format!("a submission through agent {i}"), Duration::from_secs(60), || async {
            Ok(Some(submit_one(harness, i).await?))
        })
        .await?;
        if jobs.len() != 1 {
            bail!("agent {i} returned {jobs:?} for one job");
        }
        ids.extend(jobs);
    }
    if ids.len() != 15 {
        bail!("15 submissions must give 15 distinct jobs, got {ids:?}");
    }
    // Committed means every agent learns of it, learners included (they may lag a little).
    for i in [0, 7, 14] {
        let ids = &ids;
        eventually(&format!("agent {i} listing every committed job"), Duration::from_secs(20), || async move {
            let listed: BTreeSet<String> = harness.jobs(i).await?.into_iter().map(|j| j.id).collect();
            Ok(ids.is_subset(&listed).then_some(()))
        })
        .await?;
    }
    if let Some(name) = panicked(harness) {
        bail!("{name} panicked");
    }
    Ok(())
}

/// `saturn_foreign_cluster_messages_total` of agent `i`.
async fn foreign_messages(harness: &Harness, i: usize) -> Result<f64> {
    metric(harness, i, "saturn_foreign_cluster_messages_total").await
}

/// The sample `name` of agent `i`'s `/metrics`.
async fn metric(harness: &Harness, i: usize, name: &str) -> Result<f64> {
    let text = harness.client(i).get_text("/metrics").await?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("no {name} in /metrics"))?
        .trim()
        .parse::<f64>()
        .context("metric value")
}

/// The most links a learner of this 15-agent mesh may keep: the 5 voters (the leader
/// among them) and 6 gossip mesh peers, fewer than the 14 of a full mesh.
const LEARNER_LINKS: f64 = 11.0;

/// Learners keep a bounded set of links while voters stay linked to every agent. Checked
/// once the membership has settled (5 voters: joiners are promoted as they catch up), on
/// agents that are learners before and after the wait.
async fn links_are_bounded(harness: &Harness) -> Result<()> {
    let status = harness
        .wait_status(0, "five voters", Duration::from_secs(60), |s| s.agents.iter().filter(|a| a.role == "voter").count() == 5)
        .await?;
    let index = |name: &str| harness.cluster.agents.iter().position(|a| a.name == name);
    let learners: Vec<usize> = status.agents.iter().filter(|a| a.role == "learner").filter_map(|a| index(&a.name)).collect();
    let voters: Vec<usize> = status.agents.iter().filter(|a| a.role == "voter").filter_map(|a| index(&a.name)).collect();
    if learners.is_empty() {
        bail!("15 agents with 5 voters must have learners: {:?}", status.agents);
    }
    for i in learners {
        let bounded = eventually(&format!("learner {i} keeping at most {LEARNER_LINKS} links"), Duration::from_secs(60), || async move {
            Ok((metric(harness, i, "saturn_mesh_links").await? <= LEARNER_LINKS).then_some(()))
        })
        .await;
        if let Err(err) = bounded {
            let still_learner = harness.status(0).await?.agents.iter().any(|a| Some(i) == index(&a.name) && a.role == "learner");
            if !still_learner {
                bail!("agent {i} was promoted after the membership had settled at 5 voters");
            }
            let links = metric(harness, i, "saturn_mesh_links").await.unwrap_or(f64::NAN);
            let own = harness.status(i).await.map(|s| format!("{:?}", s.agents)).unwrap_or_default();
            let said: Vec<String> = log_of(harness, i).lines().filter(|l| l.contains("links:")).map(str::to_string).collect();
            bail!("{err:#}: {links} links; as it sees the cluster: {own}; its link policy log: {said:#?}");
        }
    }
    let leader = voters.first().copied().context("no voter")?;
    let links = metric(harness, leader, "saturn_mesh_links").await?;
    if links < 14.0 {
        bail!("a voter hears every agent and stays linked to all 14 others, has {links}");
    }
    Ok(())
}

fn cluster_id(log: &str) -> Option<String> {
    let at = log.find("now belongs to cluster ")?;
    log[at + "now belongs to cluster ".len()..].split_whitespace().next().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_formed_apart_stay_apart_when_connected() {
    // Two clusters of two agents each, in separate harnesses (separate data dirs).
    let mut a = Harness::start(&setup(2, 2)).expect("cluster A starts");
    let mut b = Harness::start(&setup(2, 2)).expect("cluster B starts");
    if let Err(err) = apart(&mut a, &mut b).await {
        panic!("{err:#}\n--- cluster A ---\n{}\n--- cluster B ---\n{}", a.logs(), b.logs());
    }
}

async fn apart(a: &mut Harness, b: &mut Harness) -> Result<()> {
    for harness in [&*a, &*b] {
        for i in 0..2 {
            harness
                .wait_status(i, "a leader and 2 members", Duration::from_secs(60), |s| s.leader.is_some() && s.agents.len() == 2)
                .await?;
        }
    }
    let ids_before: Vec<Option<String>> =
        (0..2).map(|i| cluster_id(&log_of(a, i))).chain((0..2).map(|i| cluster_id(&log_of(b, i)))).collect();
    if ids_before.iter().any(Option::is_none) || ids_before[0] != ids_before[1] || ids_before[2] != ids_before[3] || ids_before[0] == ids_before[2] {
        bail!("each cluster must have one id of its own: {ids_before:?}");
    }
    let leader_a = a.status(0).await?.leader;
    let leader_b = b.status(0).await?.leader;
    // Connect them: B's second agent restarts on its data dir with --join to A's first.
    let a_addr = a.cluster.agents[0].mesh_addr();
    b.cluster.kill(1)?;
    b.cluster.agents[1].args.extend(["--join".to_string(), a_addr]);
    b.cluster.spawn(1)?;
    let (a, b) = (&*a, &*b);
    // The clusters hear each other's heartbeats and refuse them.
    eventually("both clusters counting the other's messages", Duration::from_secs(60), || async {
        let seen_by_a = foreign_messages(a, 0).await? + foreign_messages(a, 1).await?;
        let seen_by_b = foreign_messages(b, 0).await? + foreign_messages(b, 1).await?;
        Ok((seen_by_a > 0.0 && seen_by_b > 0.0).then_some(()))
    })
    .await?;
    // Let them live together for a while (several heartbeats and membership rounds).
    tokio::time::sleep(Duration::from_secs(8)).await;
    for (harness, leader, name) in [(a, &leader_a, "A"), (b, &leader_b, "B")] {
        for i in 0..2 {
            let status = harness
                .wait_status(i, "its own leader and its own two members", Duration::from_secs(30), |s| {
                    s.leader.is_some() && s.agents.len() == 2
                })
                .await?;
            let names: BTreeSet<&str> = status.agents.iter().map(|x| x.name.as_str()).collect();
            let own: BTreeSet<&str> = harness.cluster.agents.iter().map(|x| x.name.as_str()).collect();
            if names != own {
                bail!("cluster {name}, agent {i} lists {names:?}, not its own agents {own:?}");
            }
            if leader.is_some() && status.leader.is_none() {
                bail!("cluster {name} lost its leader");
            }
        }
        // Both still commit.
        eventually(&format!("a submission in cluster {name}"), Duration::from_secs(30), || async {
            Ok(Some(submit_one(harness, 1).await?))
        })
        .await?;
    }
    // Nobody changed cluster, nobody panicked.
    let ids_after: Vec<Option<String>> =
        (0..2).map(|i| cluster_id(&log_of(a, i))).chain((0..2).map(|i| cluster_id(&log_of(b, i)))).collect();
    if ids_after != ids_before {
        bail!("an agent changed cluster: before {ids_before:?}, after {ids_after:?}");
    }
    for (harness, name) in [(a, "A"), (b, "B")] {
        if let Some(agent) = panicked(harness) {
            bail!("{agent} of cluster {name} panicked");
        }
        for i in 0..2 {
            if log_of(harness, i).matches("now belongs to cluster").count() != 1 {
                bail!("agent {i} of cluster {name} adopted a cluster id more than once");
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_consensus_core_dies_exits_1_and_is_marked_down() {
    let trigger = tempfile::tempdir().expect("temp dir");
    let env = [(saturn_agent::daemon::KILL_CONSENSUS_ENV.to_string(), trigger.path().display().to_string())];
    let mut harness = Harness::prepare(&setup(3, 3), &env).expect("agents prepared");
    for i in 0..3 {
        harness.cluster.spawn(i).expect("agent starts");
    }
    if let Err(err) = dead_core(&mut harness, trigger.path()).await {
        panic!("{err:#}\n{}", harness.logs());
    }
}

async fn dead_core(harness: &mut Harness, trigger: &std::path::Path) -> Result<()> {
    for i in 0..3 {
        harness
            .wait_status(i, "a leader and 3 healthy members", Duration::from_secs(60), |s| {
                s.leader.is_some() && s.agents.len() == 3 && s.agents.iter().all(|a| a.healthy)
            })
            .await?;
    }
    let leader = harness.leader_index(0).await?;
    let victim = (0..3).find(|i| *i != leader).context("a follower")?;
    let name = harness.cluster.agents[victim].name.clone();
    std::fs::write(trigger.join(&name), b"")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = harness.cluster.exit_status(victim) {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            bail!("the agent whose consensus core was killed is still running after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let harness = &*harness;
    if status.code() != Some(1) {
        bail!("an agent whose consensus core died must exit with status 1, got {status}");
    }
    let log = log_of(harness, victim);
    let reason = log.lines().find(|l| l.starts_with("saturn-agent: ")).context("no one-line reason on stderr")?;
    if !reason.contains("consensus core stopped") {
        bail!("the reason must name the dead consensus core: {reason}");
    }
    // Marked down well before the failure detector alone would (its last heartbeat said so).
    let observer = (0..3).find(|i| *i != victim).context("another agent")?;
    harness
        .wait_status(observer, "the dead agent reported unhealthy", Duration::from_secs(20), |s| {
            s.agents.iter().any(|a| a.name == name && !a.healthy)
        })
        .await?;
    // The survivors still commit.
    eventually("a submission after the death", Duration::from_secs(30), || async {
        Ok(Some(submit_one(harness, observer).await?))
    })
    .await?;
    Ok(())
}
