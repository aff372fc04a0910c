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

/// Decodes a `T` from `bytes`; `what` names it in errors.
///
/// Bytes from the network or a damaged disk may claim absurd lengths, and bincode
/// allocates a string's buffer from its claimed length before reading it; an allocation
/// failure aborts the process. So decoding runs under a bincode limit proportional to the
/// input: bincode counts at most 16 bytes (a `u128`) per wire byte against it, so every
/// honest encoding of `bytes.len()` bytes fits under `16 × len`, while a forged length
/// fails with an error instead of becoming a huge buffer. Limits come in steps because
/// bincode takes them as const generics.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    const MIB: usize = 1 << 20;
    let need = bytes.len().saturating_mul(16);
    if need <= MIB {
        decode_within::<T, MIB>(what, bytes)
    } else if need <= 16 * MIB {
        decode_within::<T, { 16 * MIB }>(what, bytes)
    } else if need <= 256 * MIB {
        decode_within::<T, { 256 * MIB }>(what, bytes)
    } else {
        decode_within::<T, { usize::MAX }>(what, bytes)
    }
}

fn decode_within<T: DeserializeOwned, const LIMIT: usize>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, _read) =
        bincode::serde::decode_from_slice(bytes, config).map_err(|source| CodecError::Decode { what, source })?;
    Ok(value)
}
