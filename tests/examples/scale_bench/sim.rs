//! The Raft part at sizes real processes cannot reach on a small machine: N consensus
//! nodes in this process on the in-memory router (every message encoded and decoded as on
//! the wire), with the daemon's timings (150 ms heartbeats). Counts, per node, the
//! requests it receives and the bytes, so a learner's cost and the leader's can be told
//! apart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use saturn_consensus::codec::encode;
use saturn_consensus::mem_transport::MemRouter;
use saturn_consensus::{AgentNode, Command, ConsensusNode, Envelope, NodeConfig, NodeId, RaftResponse, Transport, TransportError};

use crate::procfs::{cpu_ticks, USER_HZ};
use crate::report::{ms, Stats, Table};

/// Requests and bytes, sent and received, per node.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
}

type Ledger = Arc<BTreeMap<NodeId, Counts>>;

/// The router's transport of one node, counting what it sends and what its targets get.
struct Counted {
    from: NodeId,
    inner: Arc<dyn Transport>,
    ledger: Ledger,
}

#[async_trait::async_trait]
impl Transport for Counted {
    async fn call(&self, target: NodeId, node: &AgentNode, request: Envelope) -> Result<RaftResponse, TransportError> {
        let bytes = encode("request", &request).map_or(0, |b| b.len() as u64);
        if let Some(c) = self.ledger.get(&self.from) {
            c.sent.fetch_add(1, Ordering::Relaxed);
            c.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        if let Some(c) = self.ledger.get(&target) {
            c.received.fetch_add(1, Ordering::Relaxed);
            c.received_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        self.inner.call(target, node, request).await
    }
}

fn agent(i: usize) -> AgentNode {
    AgentNode { name: format!("sim-{i}"), peer_id: format!("sim-peer-{i}"), addrs: Vec::new() }
}

fn snapshot(ledger: &Ledger) -> BTreeMap<NodeId, (u64, u64, u64, u64)> {
    ledger
        .iter()
        .map(|(id, c)| {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            (*id, (load(&c.sent), load(&c.sent_bytes), load(&c.received), load(&c.received_bytes)))
        })
        .collect()
}

/// Runs every size and returns the table.
pub async fn run(sizes: &[usize], idle: Duration, submits: usize) -> Result<Table> {
    let title = format!(
        "In-process Raft (MemRouter, 150 ms heartbeats, 5 voters, {}s idle window; CPU is the whole process)",
        idle.as_secs()
    );
    let mut table = Table::new(
        &title,
        &[
            "nodes",
            "learner msgs/s in",
            "learner B/s in",
            "leader msgs/s out",
            "leader KB/s out",
            "process CPU %",
            "join → learner ms (median / max)",
            "→ promoted ms",
            "propose via learner p50 / p99 ms",
        ],
    );
    for &n in sizes {
        table.row(one(n, idle, submits).await.with_context(|| format!("{n} simulated nodes"))?);
    }
    Ok(table)
}

async fn one(n: usize, idle: Duration, submits: usize) -> Result<Vec<String>> {
    let root = tempfile::tempdir()?;
    let router = MemRouter::new(n as u64);
    let configs: Vec<NodeConfig> = (0..n).map(|i| NodeConfig::new(agent(i))).collect();
    let ledger: Ledger = Arc::new(configs.iter().map(|c| (c.node_id(), Counts::default())).collect());
    let mut nodes = Vec::new();
    for config in &configs {
        let id = config.node_id();
        let transport = Arc::new(Counted { from: id, inner: router.transport(id), ledger: ledger.clone() });
        let node = ConsensusNode::start(config.clone(), &root.path().join(id.to_string()), transport).await?;
        router.serve(id, node.server());
        nodes.push(node);
    }
    let voters: BTreeMap<NodeId, AgentNode> = configs.iter().take(3.min(n)).map(|c| (c.node_id(), c.node.clone())).collect();
    nodes[0].initialize(voters).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(i) = nodes.iter().position(|node| node.is_leader()) {
            break i;
        }
        anyhow::ensure!(Instant::now() < deadline, "no leader among the first voters");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Joins one by one, as the daemon's upkeep adds them; timed until the learner applied
    // the leader's last entry.
    let mut joins = Vec::new();
    for i in 3..n {
        let at = Instant::now();
        nodes[leader].add_learner(configs[i].node_id(), configs[i].node.clone()).await?;
        let target = nodes[leader].metrics().last_log_index;
        nodes[i].raft().wait(Some(Duration::from_secs(60))).applied_index_at_least(target, "caught up").await?;
        joins.push(at.elapsed());
    }
    let at = Instant::now();
    let five: std::collections::BTreeSet<NodeId> = configs.iter().take(5.min(n)).map(NodeConfig::node_id).collect();
    nodes[leader].change_voters(five).await?;
    let promoted = at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let me = std::process::id();
    let before = snapshot(&ledger);
    let cpu0 = cpu_ticks(me)?;
    let started = Instant::now();
    tokio::time::sleep(idle).await;
    let secs = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(me)? - cpu0) as f64 / USER_HZ / secs * 100.0;
    let after = snapshot(&ledger);
    let delta = |id: &NodeId| {
        let (a, b) = (before[id], after[id]);
        (a.0.abs_diff(b.0), a.1.abs_diff(b.1), a.2.abs_diff(b.2), a.3.abs_diff(b.3))
    };
    let leader_id = configs[leader].node_id();
    let learners: Vec<NodeId> = configs.iter().skip(5).map(NodeConfig::node_id).collect();
    let per_learner = |pick: fn((u64, u64, u64, u64)) -> u64| {
        if learners.is_empty() {
            return 0.0;
        }
        learners.iter().map(|id| pick(delta(id)) as f64).sum::<f64>() / learners.len() as f64 / secs
    };
    let (sent, sent_bytes, _, _) = delta(&leader_id);
    let via = n - 1;
    let mut latencies = Vec::new();
    for k in 0..submits {
        let at = Instant::now();
        nodes[via].propose(Command::CancelJob { job: saturn_consensus::JobId::from_seq(k as u64 + 1), at_ms: 1 }).await?;
        latencies.push(at.elapsed());
    }
    let latency = Stats::of(latencies);
    let join = Stats::of(joins);
    for node in &nodes {
        let _ = node.shutdown().await;
    }
    Ok(vec![
        n.to_string(),
        format!("{:.1}", per_learner(|d| d.2)),
        format!("{:.0}", per_learner(|d| d.3)),
        format!("{:.0}", sent as f64 / secs),
        format!("{:.1}", sent_bytes as f64 / 1024.0 / secs),
        format!("{cpu:.0}"),
        format!("{} / {}", ms(join.p50), ms(join.max)),
        ms(promoted),
        format!("{} / {}", ms(latency.p50), ms(latency.p99)),
    ])
}
