//! The one error type of the mesh.

use std::path::PathBuf;

use libp2p::request_response::OutboundFailure;

/// What can go wrong starting or using the mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The node key file exists but does not hold a key we wrote. Refusing to start beats
    /// silently becoming a new peer that the cluster does not know.
    #[error("node key file {path} is corrupt ({reason}); restore it from a backup, or delete it to give this agent a new identity (it will then rejoin as a new member)")]
    CorruptNodeKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The cluster key file could not be parsed.
    #[error("cluster key file {path}: {reason}; expected the lines \"/key/swarm/psk/1.0.0/\", \"/base16/\" and 64 hex digits (create one with: printf '/key/swarm/psk/1.0.0/\\n/base16/\\n%s\\n' $(openssl rand -hex 32) > swarm.key)")]
    BadClusterKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a key file failed.
    #[error("{what} {path}: {source}")]
    KeyFileIo {
        /// Which file (`node key file`, `cluster key file`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The transport or a behaviour could not be built.
    #[error("cannot build the mesh: {0}")]
    Build(String),
    /// Listening on a configured address failed (port in use, address not local, ...).
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address from `--listen`.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Dialing an address failed immediately (unsupported address, ...).
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The remote did not answer within the timeout.
    #[error("request to {peer} timed out")]
    Timeout {
        /// The peer asked.
        peer: String,
    },
    /// The request could not be delivered or answered.
    #[error("request to {peer} failed: {reason}")]
    RequestFailed {
        /// The peer asked.
        peer: String,
        /// Why (dial failure, connection closed, ...).
        reason: String,
    },
    /// A message exceeds the configured size limit and was not sent.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Publishing gossip failed (no peer subscribed yet, duplicate, ...).
    #[error("cannot publish gossip: {0}")]
    Publish(String),
    /// The swarm task has stopped.
    #[error("the mesh has shut down")]
    Shutdown,
}

impl MeshError {
    /// Converts a request-response failure towards `peer` into a mesh error.
    pub(crate) fn outbound(peer: &libp2p::PeerId, failure: OutboundFailure) -> Self {
        match failure {
            OutboundFailure::Timeout => MeshError::Timeout {
                peer: peer.to_string(),
            },
            other => MeshError::RequestFailed {
                peer: peer.to_string(),
                reason: other.to_string(),
            },
        }
    }
}
