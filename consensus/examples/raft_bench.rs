//! Commit throughput and latency of a 3-member cluster: in-memory transport (every
//! message still bincode-encoded), real redb storage on disk.
//!
//! `cargo run --release -p saturn-consensus --example raft_bench [-- --proposals N --dir PATH]`
//!
//! Prints one table: sequential proposals (through the leader, and forwarded from a
//! follower), concurrent proposers, and the bound: how many durable (fsynced) redb
//! commits per second this disk sustains, since every committed entry needs at least one.
//!
//! What bounds it: a sequential proposal waits for the leader's fsync, one round trip,
//! a follower's fsync and the apply, so its latency is about two fsyncs (both members
//! write the same disk here). Concurrent proposals are group-committed (see the crate's
//! `batcher`): one entry, hence one fsync per member, carries up to 256 proposals, so
//! throughput grows with the number of proposers far past the fsync rate until CPU
//! (bincode encode/decode of every message, three members in one process) takes over.
//! The p99 is fsync stalls: run it on an otherwise idle disk to compare numbers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use saturn_consensus::mem_transport::MemRouter;
use saturn_consensus::{
    AgentNode, AttemptEvent, Command, ConsensusNode, DispatchKind, GpuInfo, HostGpus, JobId, JobSpec, NodeConfig,
    NodeId,
};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Options {
    proposals: usize,
    dir: Option<PathBuf>,
}

fn options() -> BenchResult<Options> {
    let mut options = Options { proposals: 2000, dir: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--proposals" => options.proposals = args.next().ok_or("--proposals needs a number")?.parse()?,
            "--dir" => options.dir = Some(args.next().ok_or("--dir needs a path")?.into()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(options)
}

fn agent(i: usize) -> AgentNode {
    AgentNode { name: format!("node-{i}"), peer_id: format!("peer-{i}"), addrs: vec![] }
}

/// Starts three members and forms a cluster; returns them with the leader first.
async fn cluster(root: &Path) -> BenchResult<Vec<Arc<ConsensusNode>>> {
    let router = MemRouter::new(0);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut config = NodeConfig::fast(agent(i));
        config.propose_timeout = Duration::from_secs(30);
        let transport = router.transport(config.node_id());
        let node = ConsensusNode::start(config, &root.join(i.to_string()), transport).await?;
        router.serve(node.id(), node.server());
        nodes.push(Arc::new(node));
    }
    let voters: BTreeMap<NodeId, AgentNode> = nodes.iter().map(|n| (n.id(), n.agent_node().clone())).collect();
    nodes[0].initialize(voters).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().any(|n| n.is_leader()) {
        if Instant::now() > deadline {
            return Err("no leader elected".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nodes.sort_by_key(|n| !n.is_leader());
    Ok(nodes)
}

/// A running job whose progress events are the benchmark's proposals (the most frequent
/// command a real cluster commits).
async fn running_job(leader: &ConsensusNode) -> BenchResult<JobId> {
    let gpus = vec![GpuInfo { index: 0, model: "A100-80GB".into(), memory_mib: 81920 }];
    leader.propose(Command::AgentUp { node: agent(0), gpus, at_ms: 0 }).await?;
    let spec = JobSpec {
        name: "bench".into(),
        command: vec!["train".into()],
        workdir: "/tmp".into(),
        env: Default::default(),
        steps: u64::MAX,
        techniques: vec!["ddp".into()],
        gpus_min: 1,
        gpus_max: 1,
        profile_group: "bench".into(),
        max_restarts: 0,
        profile: Default::default(),
        early_stop: None,
        duration_estimate_s: 3600,
    };
    leader.propose(Command::SubmitJobs { specs: vec![spec], at_ms: 0 }).await?;
    let job = JobId::from_seq(1);
    let placement = vec![HostGpus { host: "node-0".into(), gpus: vec![0] }];
    let dispatch = Command::Dispatch { job: job.clone(), technique: "ddp".into(), placement, kind: DispatchKind::Train, at_ms: 0 };
    leader.propose(dispatch).await?;
    Ok(job)
}

fn progress(job: &JobId, step: u64) -> Command {
    let event = AttemptEvent::Progress { step, metrics: vec![("loss".into(), 1.0 / (step + 1) as f64)] };
    Command::JobEvent { job: job.clone(), attempt: 1, event, at_ms: step }
}

struct Row {
    name: String,
    per_second: f64,
    latency: Histogram<u64>,
}

/// `proposers` tasks share `total` proposals through `via`.
async fn run(name: &str, via: &Arc<ConsensusNode>, job: &JobId, total: usize, proposers: usize) -> BenchResult<Row> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..proposers {
        let (node, job) = (via.clone(), job.clone());
        let count = total / proposers;
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3)?;
            for i in 0..count {
                let sent = Instant::now();
                node.propose(progress(&job, (p * count + i) as u64)).await?;
                latency.record(sent.elapsed().as_micros() as u64)?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(latency)
        }));
    }
    let mut latency = Histogram::<u64>::new(3)?;
    for task in tasks {
        latency.add(task.await?.map_err(|e| e.to_string())?)?;
    }
    let per_second = latency.len() as f64 / started.elapsed().as_secs_f64();
    Ok(Row { name: name.to_string(), per_second, latency })
}

/// Durable single-row redb commits per second on this disk: the bound.
fn fsync_bound(dir: &Path, commits: usize) -> BenchResult<Row> {
    const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
    let db = redb::Database::create(dir.join("bound.redb"))?;
    let mut latency = Histogram::<u64>::new(3)?;
    let payload = vec![7u8; 200];
    let started = Instant::now();
    for i in 0..commits as u64 {
        let sent = Instant::now();
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?.insert(i, payload.as_slice())?;
        txn.commit()?;
        latency.record(sent.elapsed().as_micros() as u64)?;
    }
    let per_second = commits as f64 / started.elapsed().as_secs_f64();
    Ok(Row { name: "bound: 1 fsynced redb commit, no raft".into(), per_second, latency })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> BenchResult<()> {
    let options = options()?;
    let temp = tempfile::tempdir_in(options.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let nodes = cluster(temp.path()).await?;
    let job = running_job(&nodes[0]).await?;
    let n = options.proposals;

    let mut rows = vec![fsync_bound(temp.path(), n.min(1000))?];
    rows.push(run("sequential, at the leader", &nodes[0], &job, n, 1).await?);
    rows.push(run("sequential, forwarded by a follower", &nodes[1], &job, n, 1).await?);
    for proposers in [4, 16, 64] {
        rows.push(run(&format!("{proposers} concurrent proposers, at the leader"), &nodes[0], &job, n * 2, proposers).await?);
    }
    rows.push(run("64 concurrent proposers, forwarded", &nodes[1], &job, n * 2, 64).await?);

    println!("3 members, in-memory transport (bincode), redb on {}", temp.path().display());
    println!("{:<44} {:>12} {:>10} {:>10}", "workload", "commits/s", "p50 ms", "p99 ms");
    for row in &rows {
        let ms = |q: f64| row.latency.value_at_quantile(q) as f64 / 1000.0;
        println!("{:<44} {:>12.0} {:>10.2} {:>10.2}", row.name, row.per_second, ms(0.5), ms(0.99));
    }
    for node in &nodes {
        node.shutdown().await?;
    }
    Ok(())
}
