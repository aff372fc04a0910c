//! The mesh's checkpoint channel (`Channel::Checkpoint`): a puller asks a holder for a
//! step's manifest, then for its files chunk by chunk. One request in flight per pull is
//! the flow control; the puller's rate limit spaces the requests; each chunk is a
//! separate stream, so Raft and gossip messages interleave with them.

use serde::{Deserialize, Serialize};

use super::digest::Manifest;

/// Largest chunk asked for at once.
pub const CHUNK_BYTES: u32 = 1024 * 1024;

/// What a puller asks a holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointRequest {
    /// The manifest of the holder's copy of `step` of `job`; the holder verifies its
    /// copy against `digest` before answering.
    Manifest {
        /// The job.
        job: String,
        /// The step.
        step: u64,
        /// The recorded digest.
        digest: String,
    },
    /// Bytes of one file of the copy.
    Chunk {
        /// The job.
        job: String,
        /// The step.
        step: u64,
        /// Index of the file in the manifest.
        file: u32,
        /// Offset in the file.
        offset: u64,
        /// Most bytes wanted (at most [`CHUNK_BYTES`]).
        len: u32,
    },
}

/// A holder's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointResponse {
    /// The verified copy's manifest.
    Manifest(Manifest),
    /// File bytes (fewer than asked only at the end of the file).
    Chunk(Vec<u8>),
    /// The holder cannot serve it (no copy, or its copy failed verification).
    Unavailable(String),
}
