//! Inbound mesh traffic: Raft requests to the consensus server, log requests to the log
//! server (members only), checkpoint requests to the checkpoint server (members only),
//! heartbeats to the soft state (those of another cluster counted and dropped).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use saturn_consensus::codec::{decode, encode};
use saturn_consensus::ConsensusNode;
use tokio::sync::mpsc;

use super::logs::{read_local, LogsRequest};
use super::raft_net;
use super::soft::SoftState;
use crate::cluster::now_ms;
use crate::mesh::{Channel, Gossip, MeshEvent, MeshResponse};

/// Routes mesh events: Raft and log requests to their servers (each on its own task, so
/// the mesh is never blocked), heartbeats to the soft state. Heartbeats of another
/// cluster are ignored (and counted): its agents are no part of this one's health,
/// formation or membership.
pub async fn mesh_events(
    mut events: mpsc::Receiver<MeshEvent>,
    node: Arc<ConsensusNode>,
    soft: Arc<SoftState>,
    data_dir: PathBuf,
    checkpoints: crate::checkpoint::serve::CheckpointServer,
) {
    let raft = node.server();
    while let Some(event) = events.recv().await {
        match event {
            MeshEvent::Request(request) => {
                let (peer, request, responder) = request.into_parts();
                match request.channel {
                    Channel::Raft => raft_net::serve(raft.clone(), peer, request.body, responder),
                    Channel::Logs if !is_member_peer(&node, &peer) => {
                        tracing::debug!(%peer, "log request from a peer that is not a member refused");
                        responder.send(MeshResponse::Err("logs are served to members of this cluster only".into()));
                    }
                    Channel::Logs => {
                        let data_dir = data_dir.clone();
                        tokio::task::spawn_blocking(move || {
                            let answer = decode::<LogsRequest>("logs request", &request.body)
                                .map_err(|e| e.to_string())
                                .and_then(|req| read_local(&data_dir, &req).map_err(|e| e.to_string()))
                                .and_then(|resp| encode("logs response", &resp).map_err(|e| e.to_string()));
                            responder.send(match answer {
                                Ok(bytes) => MeshResponse::Ok(bytes),
                                Err(why) => MeshResponse::Err(why),
                            });
                        });
                    }
                    // Checkpoints are the cluster's model weights: only members (of this
                    // cluster: a foreign cluster's agents are never members) may pull them.
                    Channel::Checkpoint if !is_member_peer(&node, &peer) => {
                        tracing::debug!(%peer, "checkpoint request from a peer that is not a member refused");
                        responder.send(MeshResponse::Err("checkpoints are served to members of this cluster only".into()));
                    }
                    Channel::Checkpoint => checkpoints.serve(request.body, responder),
                }
            }
            MeshEvent::Gossip { gossip: Gossip::Heartbeat(heartbeat), from } => {
                if heartbeat.peer_id != from.to_string() {
                    tracing::debug!(%from, claimed = %heartbeat.peer_id, "heartbeat with a forged sender dropped");
                    continue;
                }
                if let Some(theirs) = foreign_cluster(node.cluster_id().as_ref(), heartbeat.cluster.as_deref()) {
                    node.guard().count_foreign(theirs, "heartbeats");
                    continue;
                }
                soft.on_heartbeat(heartbeat, Instant::now(), now_ms());
            }
            MeshEvent::PeerIdentified { .. } | MeshEvent::PeerDisconnected { .. } => {}
        }
    }
}

/// The other cluster's id when a heartbeat comes from an agent of another cluster than
/// this one (both have ids and they differ); agents without an id yet are candidates.
pub fn foreign_cluster<'a>(mine: Option<&saturn_consensus::ClusterId>, theirs: Option<&'a str>) -> Option<&'a str> {
    match (mine, theirs) {
        (Some(mine), Some(theirs)) if mine.0 != theirs => Some(theirs),
        _ => None,
    }
}

/// Whether `peer` is a voter or learner of this agent's Raft membership.
fn is_member_peer(node: &ConsensusNode, peer: &crate::mesh::PeerId) -> bool {
    node.metrics().nodes.contains_key(&saturn_consensus::node_id_for_peer(&peer.to_string()))
}
