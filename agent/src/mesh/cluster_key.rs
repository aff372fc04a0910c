//! The cluster's pre-shared key (`--cluster-key-file`), in the standard libp2p
//! `swarm.key` format:
//!
//! ```text
//! /key/swarm/psk/1.0.0/
//! /base16/
//! <64 hex digits>
//! ```
//!
//! With a key, every TCP connection starts with the libp2p private-network handshake
//! (XSalsa20 keyed by it), so a peer without the same key cannot even complete the noise
//! handshake: it can neither join nor read gossip.

use std::fs;
use std::path::Path;

use libp2p::pnet::KeyParseError;
pub use libp2p::pnet::PreSharedKey;

use super::MeshError;

/// A fresh random cluster key.
pub fn generate_cluster_key() -> PreSharedKey {
    PreSharedKey::new(rand::random::<[u8; 32]>())
}

/// Parses a cluster key from the text of a key file.
pub fn parse_cluster_key(path: &Path, text: &str) -> Result<PreSharedKey, MeshError> {
    text.parse::<PreSharedKey>()
        .map_err(|err| MeshError::BadClusterKey {
            path: path.to_owned(),
            reason: explain(&err).to_owned(),
        })
}

fn explain(err: &KeyParseError) -> &'static str {
    match err {
        KeyParseError::InvalidKeyFile => "the file does not have three lines",
        KeyParseError::InvalidKeyType => "the first line is not /key/swarm/psk/1.0.0/",
        KeyParseError::InvalidKeyEncoding => {
            "the second line is not /base16/ (the only supported encoding)"
        }
        KeyParseError::InvalidKeyLength => "the key is not 64 hex digits long",
        KeyParseError::InvalidKeyChar(_) => "the key holds a character that is not a hex digit",
    }
}

/// Reads a cluster key file.
pub fn read_cluster_key(path: &Path) -> Result<PreSharedKey, MeshError> {
    let text = fs::read_to_string(path).map_err(|source| MeshError::KeyFileIo {
        what: "cluster key file",
        path: path.to_owned(),
        source,
    })?;
    parse_cluster_key(path, &text)
}

/// Writes `key` to `path` in the swarm.key format, readable only by its owner.
pub fn write_cluster_key(path: &Path, key: &PreSharedKey) -> Result<(), MeshError> {
    super::identity::write_private_file(path, key.to_key_file().as_bytes(), "cluster key file")
}
