//! The one binary encoding of the crate: bincode 2 through its serde API, standard config.
//!
//! Log entries on disk, snapshots and every RPC use it, so a type that does not
//! round-trip here is caught by the storage and in-memory-transport tests.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed (a type serde cannot express in bincode, e.g. an unsized sequence).
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// bincode's reason.
        source: bincode::error::EncodeError,
    },
    /// Decoding failed: corrupt bytes, or bytes written by an incompatible version.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// bincode's reason.
        source: bincode::error::DecodeError,
    },
}

/// Encodes `value`; `what` names it in errors.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|source| CodecError::Encode { what, source })
}

/// Decodes a `T` from all of `bytes`; `what` names it in errors.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    let (value, _read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|source| CodecError::Decode { what, source })?;
    Ok(value)
}
