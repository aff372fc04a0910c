//! A network partition between a checkpoint's writer and its replica target while the
//! replica is being pulled (each agent in its own network namespace, see
//! `saturn_tests::netns`). While cut, the target is not recorded as a holder; after
//! healing, its pull continues where the partial copy ended, and exactly the hosts whose
//! store holds a copy that verifies against the recorded digest are recorded.
//!
//! Needs root and iproute2: without them the test fails, saying why.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use saturn_agent::checkpoint::Store;
use saturn_agent::views::JobView;
use saturn_tests::netns::{self, NetnsCluster};
use saturn_tests::{eventually, Setup, SynthSweep};

const BYTES: u64 = 20_000_000;
/// The agents pull at most 4 MiB/s: the 20 MB replica takes about 5 s, time to cut it.
const RATE_MIB: &str = "4";

fn setup() -> Setup {
    let mut setup = Setup::new(3);
    setup.extra_args = ["--heartbeat-ms", "200", "--grace-period-s", "4", "--kill-grace-s", "1", "--checkpoint-rate-mib-s", RATE_MIB]
        .iter()
        .map(ToString::to_string)
        .collect();
    setup
}

async fn job(cluster: &NetnsCluster, i: usize, id: &str) -> Result<JobView> {
    cluster.jobs(i).await?.into_iter().find(|j| j.id == id).with_context(|| format!("no job {id}"))
}

/// Bytes of the partial copy of `job` being assembled under `data_dir`, if any.
fn partial_bytes(data_dir: &Path, job: &str) -> Option<u64> {
    let dir = data_dir.join("checkpoint-store").join(job);
    let partial = std::fs::read_dir(dir).ok()?.flatten().find(|e| e.file_name().to_string_lossy().starts_with(".partial-"))?;
    Some(walk_size(&partial.path()))
}

fn walk_size(path: &Path) -> u64 {
    match std::fs::read_dir(path) {
        Ok(entries) => entries.flatten().map(|e| walk_size(&e.path())).sum(),
        Err(_) => std::fs::metadata(path).map_or(0, |m| m.len()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_during_replication_records_exactly_the_verified_copies() {
    if let Some(why) = netns::unavailable() {
        panic!("this test needs root and iproute2 (`ip`): {why}");
    }
    let cluster = NetnsCluster::start(&setup()).expect("agents start in their namespaces");
    if let Err(err) = scenario(&cluster).await {
        panic!("{err:#}\n{}", cluster.logs());
    }
}

async fn scenario(cluster: &NetnsCluster) -> Result<()> {
    cluster.wait_status(0, "a leader and 3 agents", Duration::from_secs(40), |s| s.leader.is_some() && s.agents.len() == 3).await?;
    let file = SynthSweep {
        base_step_ms: 50,
        techniques: r#"["ddp"]"#.into(),
        gpus: (1, 1),
        checkpoint_every: Some(400),
        profile: Some("profile = { ddp = { 1 = 0.050 } }".into()),
        extra: format!(r#", "--checkpoint-bytes", "{BYTES}""#),
        ..SynthSweep::new("cut", 1, 1200)
    }
    .toml(&cluster.saturn);
    let id = cluster.submit(0, &file, Duration::from_secs(15)).await?.jobs.remove(0).id;
    let (step, writer) = eventually("the first checkpoint recorded", Duration::from_secs(90), || async {
        let job = job(cluster, 0, &id).await?;
        Ok(job.checkpoint.filter(|c| c.step > 0).map(|c| (c.step, c.copies[0].clone())))
    })
    .await?;
    let w = cluster.index_of(&writer).context("the writer")?;
    // The target: the agent assembling a partial copy, once it has received some of it.
    let t = eventually("a replica being pulled", Duration::from_secs(30), || async {
        Ok((0..3).find(|i| *i != w && partial_bytes(&cluster.agents[*i].data_dir, &id).is_some_and(|b| b >= 1 << 20)))
    })
    .await?;
    let target = cluster.agents[t].name.clone();
    let before = partial_bytes(&cluster.agents[t].data_dir, &id).unwrap_or_default();
    cluster.links.cut(w, t)?;
    eprintln!("cut {writer} <-> {target} with {before} of {BYTES} bytes of step {step} pulled");
    for _ in 0..30 {
        let job = job(cluster, 0, &id).await?;
        let copies = job.checkpoint.filter(|c| c.step == step).map(|c| c.copies).unwrap_or_default();
        ensure!(!copies.contains(&target), "{target} recorded as a holder while cut off from the writer: {copies:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.links.heal_all()?;
    let job = eventually("the replica recorded after healing", Duration::from_secs(90), || async {
        let job = job(cluster, 0, &id).await?;
        let done = job.checkpoint.as_ref().is_some_and(|c| c.step >= step && c.copies.len() >= 2);
        Ok(done.then_some(job))
    })
    .await?;
    let ckpt = job.checkpoint.context("a checkpoint")?;
    ensure!(ckpt.bytes_replicated < 2 * BYTES, "the cut pull was started over instead of continued: {} bytes", ckpt.bytes_replicated);
    // Exactly the verified copies are recorded.
    for agent in &cluster.agents {
        let store = Store::new(agent.data_dir.join("checkpoint-store"));
        let verified = store.verify(&id, ckpt.step, &ckpt.digest).is_ok();
        let recorded = ckpt.copies.contains(&agent.name);
        ensure!(verified == recorded, "{}: verified copy {verified}, recorded {recorded} ({:?})", agent.name, ckpt.copies);
    }
    Ok(())
}
