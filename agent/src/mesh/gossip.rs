//! Soft state that travels by gossip (topic [`GOSSIP_TOPIC`]): heartbeats with GPU load.
//! Fine to lose; never the source of truth.
//!
//! Wire format: bincode (standard config) of [`Gossip`], at most [`MAX_GOSSIP_BYTES`].
//! Add variants only at the end: an agent that does not know a variant ignores the
//! message ([`GossipDecodeError::UnknownKind`]) instead of penalising the sender, so mixed
//! versions can share a mesh.

use serde::{Deserialize, Serialize};

/// The gossipsub topic of soft state from agents that do not vote: subscribed only by the
/// voters (at most five) and by agents about to form a cluster (`--bootstrap-expect`), so
/// an agent that is neither never receives it and its cost does not grow with the mesh.
pub const GOSSIP_TOPIC: &str = "saturn/v1/soft";

/// The gossipsub topic the voters publish their heartbeats on; every agent subscribes
/// (learners need them for the quorum fence), and there are at most five publishers.
pub const VOTERS_TOPIC: &str = "saturn/v1/voters";

/// Which topic a message goes to (see [`GOSSIP_TOPIC`] and [`VOTERS_TOPIC`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Everyone's soft state, heard by the voters.
    Soft,
    /// The voters' heartbeats, heard by everyone.
    Voters,
}

impl Topic {
    /// The gossipsub topic name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Soft => GOSSIP_TOPIC,
            Topic::Voters => VOTERS_TOPIC,
        }
    }
}

/// Largest gossip message accepted or sent (gossipsub's `max_transmit_size`).
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// Number of [`Gossip`] variants this version understands; see [`Gossip::decode`]. (Kind
/// 1 was a profile announcement that no agent ever published; a newer kind may take it.)
const KNOWN_KINDS: u32 = 1;

/// The bincode configuration of gossip; the limit stops a forged length from allocating.
fn wire_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_GOSSIP_BYTES>,
> {
    bincode::config::standard().with_limit::<MAX_GOSSIP_BYTES>()
}

/// One gossip message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Gossip {
    /// "I am alive, here is my load", sent every few hundred milliseconds.
    Heartbeat(Heartbeat),
}

/// The periodic liveness and load report of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Agent name (`--name`).
    pub name: String,
    /// The sender's peer id (base58); checked against the message's signed source.
    pub peer_id: String,
    /// Mesh addresses the agent listens on.
    pub addrs: Vec<String>,
    /// Increases by one per heartbeat; resets when the agent restarts.
    pub seq: u64,
    /// Sender's wall clock, milliseconds since the Unix epoch (informational only).
    pub at_ms: u64,
    /// Load of every GPU of the agent.
    pub gpus: Vec<GpuLoad>,
    /// Whether the agent belongs to a Raft cluster (agents that do not are candidates
    /// for forming one with `--bootstrap-expect`).
    pub member: bool,
    /// Whether the agent may form a cluster (it was given `--bootstrap-expect` or `--dev`);
    /// an agent given only `--join` never does and is never counted as a founder.
    pub forms: bool,
    /// The id of the cluster the agent belongs to, once it has one: agents of another
    /// cluster ignore the heartbeat (and never add the agent as a learner).
    pub cluster: Option<String>,
    /// False once the agent cannot take part any more (its consensus core stopped): it is
    /// about to exit, and others mark it down at once instead of after the grace period.
    pub healthy: bool,
}

/// Load of one GPU, as last sampled by its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuLoad {
    /// GPU index on its host (what `CUDA_VISIBLE_DEVICES` uses).
    pub index: u32,
    /// Model name, e.g. `A100-80GB`.
    pub model: String,
    /// Total memory.
    pub memory_mib: u64,
    /// Utilisation over the last sample, 0 to 100.
    pub utilization_pct: u8,
    /// Whether a job process holds it.
    pub busy: bool,
}

/// Why bytes received as gossip are not a [`Gossip`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GossipDecodeError {
    /// A variant from a newer agent version: ignore without blaming the sender.
    #[error("unknown gossip kind {0}")]
    UnknownKind(u32),
    /// Not valid gossip at all: reject and penalise the sender.
    #[error("malformed gossip: {0}")]
    Malformed(String),
}

impl Gossip {
    /// Encodes for the wire.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(self, wire_config()).map_err(|err| err.to_string())
    }

    /// Decodes bytes from the wire, telling an unknown newer kind from garbage.
    pub fn decode(bytes: &[u8]) -> Result<Self, GossipDecodeError> {
        // bincode writes the variant index first, as a varint u32.
        let (kind, _) = bincode::serde::decode_from_slice::<u32, _>(bytes, wire_config())
            .map_err(|err| GossipDecodeError::Malformed(err.to_string()))?;
        if kind >= KNOWN_KINDS {
            return Err(GossipDecodeError::UnknownKind(kind));
        }
        let (gossip, read) = bincode::serde::decode_from_slice::<Gossip, _>(bytes, wire_config())
            .map_err(|err| GossipDecodeError::Malformed(err.to_string()))?;
        if read != bytes.len() {
            return Err(GossipDecodeError::Malformed(format!(
                "{} trailing bytes",
                bytes.len() - read
            )));
        }
        Ok(gossip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat() -> Gossip {
        Gossip::Heartbeat(Heartbeat {
            name: "node-a".into(),
            peer_id: "12D3KooW".into(),
            addrs: vec!["/ip4/10.0.0.1/tcp/7946".into()],
            seq: 7,
            at_ms: 1_700_000_000_000,
            gpus: vec![GpuLoad {
                index: 0,
                model: "A100-80GB".into(),
                memory_mib: 81920,
                utilization_pct: 93,
                busy: true,
            }],
            member: true,
            forms: true,
            cluster: Some("0123456789abcdef0123456789abcdef".into()),
            healthy: true,
        })
    }

    #[test]
    fn gossip_round_trips() {
        let gossip = heartbeat();
        let bytes = gossip.encode().expect("encodes");
        assert_eq!(Gossip::decode(&bytes), Ok(gossip));
    }

    #[test]
    fn a_newer_kind_is_unknown_not_malformed() {
        let bytes =
            bincode::serde::encode_to_vec((7u32, "future"), wire_config()).expect("encodes");
        assert_eq!(
            Gossip::decode(&bytes),
            Err(GossipDecodeError::UnknownKind(7))
        );
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        let bytes = heartbeat().encode().expect("encodes");
        assert!(matches!(
            Gossip::decode(&bytes[..bytes.len() - 3]),
            Err(GossipDecodeError::Malformed(_))
        ));
        // Variant 0, then a name claiming 2^40 bytes: must fail without allocating them.
        let huge = [0u8, 253, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(matches!(
            Gossip::decode(&huge),
            Err(GossipDecodeError::Malformed(_))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            Gossip::decode(&trailing),
            Err(GossipDecodeError::Malformed(_))
        ));
    }
}
