//! This agent's heartbeat: identity, GPU load (from the replicated state, through the
//! cluster port) and membership (Raft's own view, from the consensus node), published
//! every interval on the topic its role speaks on.

use std::sync::Arc;
use std::time::Instant;

use saturn_consensus::{AgentNode, ConsensusNode};

use super::soft::SoftState;
use super::{membership, DaemonSettings};
use crate::cluster::{now_ms, Cluster};
use crate::mesh::{Gossip, GpuLoad, Heartbeat, LinkPolicy, MeshHandle, Topic};

/// Publishes this agent's heartbeat (identity, GPU load, membership) every interval.
pub async fn heartbeats(
    settings: DaemonSettings,
    me: AgentNode,
    mesh: MeshHandle,
    cluster: Arc<dyn Cluster>,
    node: Arc<ConsensusNode>,
    soft: Arc<SoftState>,
) {
    let mut seq = 0;
    let mut subscribed_soft: Option<bool> = None;
    let mut links: Option<Option<LinkPolicy>> = None;
    let everyone = super::gossip_everyone();
    let mut tick = tokio::time::interval(settings.heartbeat);
    loop {
        tick.tick().await;
        seq += 1;
        let state = cluster.state();
        let busy: Vec<bool> = settings.gpus.iter().map(|gpu| state.gpu_holder(&settings.name, gpu.index).is_some()).collect();
        let gpus = settings
            .gpus
            .iter()
            .zip(busy)
            .map(|(gpu, busy)| GpuLoad {
                index: gpu.index,
                model: gpu.model.clone(),
                memory_mib: gpu.memory_mib,
                // Simulated GPUs are as busy as the state says; real ones would be sampled.
                utilization_pct: if busy { 100 } else { 0 },
                busy,
            })
            .collect();
        let member = membership::is_member(&node);
        let forms = settings.bootstrap_expect.is_some();
        let heartbeat = Heartbeat {
            name: me.name.clone(),
            peer_id: me.peer_id.clone(),
            addrs: me.addrs.clone(),
            seq,
            at_ms: now_ms(),
            gpus,
            member,
            forms,
            cluster: node.cluster_id().map(|id| id.0),
            healthy: soft.self_healthy(),
        };
        soft.on_heartbeat(heartbeat.clone(), Instant::now(), now_ms());
        // Voters speak to everyone; the others only to the voters (and to agents forming
        // a cluster), and only voters and would-be founders listen to everyone: an agent's
        // gossip cost is then the same whatever the size of the mesh (see ARCHITECTURE.md).
        // An agent waiting to join does not listen either: many joiners at once would
        // otherwise relay each other's heartbeats to each other.
        let metrics = node.metrics();
        let voter = metrics.role == saturn_consensus::Role::Voter && !everyone;
        let hears_everyone = voter || (!member && forms) || everyone;
        if !hears_everyone {
            let voters = metrics.voters.iter().filter_map(|id| metrics.nodes.get(id).map(|n| n.name.clone())).collect();
            soft.retain_only(&voters);
        }
        if subscribed_soft != Some(hears_everyone) {
            if mesh.subscribe_soft(hears_everyone).await.is_ok() {
                subscribed_soft = Some(hears_everyone);
            }
        }
        // The same split for links: a learner keeps the voters and the leader, and few
        // links beside (mesh::links); the others keep every link (a joiner's heartbeats
        // must reach the voters through whatever links it found).
        let policy = (member && !hears_everyone).then(|| voter_links(&metrics));
        if links.as_ref() != Some(&policy) && mesh.bound_links(policy.clone()).await.is_ok() {
            links = Some(policy);
        }
        let topic = if voter { Topic::Voters } else { Topic::Soft };
        // No subscriber yet is normal right after start.
        let _ = mesh.publish_to(topic, Gossip::Heartbeat(heartbeat)).await;
    }
}

/// The links a member that does not vote keeps: every voter (its heartbeats reach them,
/// theirs reach it) and the leader (Raft).
fn voter_links(metrics: &saturn_consensus::NodeMetrics) -> LinkPolicy {
    let keep = metrics
        .voters
        .iter()
        .chain(metrics.leader.iter())
        .filter_map(|id| metrics.nodes.get(id))
        .filter_map(crate::peer::mesh_address)
        .collect();
    LinkPolicy { keep }
}
