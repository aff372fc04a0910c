//! Cluster members as Raft sees them: the node type, stable node ids, GPUs a host reports.

use serde::{Deserialize, Serialize};

/// Raft node id of an agent. Derived from its libp2p peer id by [`node_id_for_peer`].
pub type NodeId = u64;

/// What the mesh needs to reach a member: stored in Raft membership, so every agent
/// (including one that just restarted) knows how to contact every voter and learner.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AgentNode {
    /// Agent name (`--name`), unique in the mesh.
    pub name: String,
    /// libp2p peer id, base58 (`12D3Koo...`).
    pub peer_id: String,
    /// Multiaddrs the agent listens on.
    pub addrs: Vec<String>,
}

impl std::fmt::Display for AgentNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.peer_id)
    }
}

/// One GPU of a host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Index as CUDA numbers it (`CUDA_VISIBLE_DEVICES`).
    pub index: u32,
    /// Model name, e.g. `A100-80GB`.
    pub model: String,
    /// Total memory in MiB.
    pub memory_mib: u64,
}

/// The Raft node id of the agent with libp2p peer id `peer_id`.
///
/// 64-bit FNV-1a of the UTF-8 bytes. Written out by hand rather than using
/// `std::hash::DefaultHasher`, whose output may change between Rust releases: the id is
/// stored in the Raft log and membership, so every build of every agent must agree on it.
pub fn node_id_for_peer(peer_id: &str) -> NodeId {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    peer_id.bytes().fold(OFFSET_BASIS, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_match_the_published_fnv1a_vectors() {
        // Reference values of 64-bit FNV-1a (IETF draft-eastlake-fnv test vectors).
        assert_eq!(node_id_for_peer(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(node_id_for_peer("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(node_id_for_peer("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn different_peers_get_different_ids() {
        let a = node_id_for_peer("12D3KooWA");
        let b = node_id_for_peer("12D3KooWB");
        assert_ne!(a, b);
    }
}
