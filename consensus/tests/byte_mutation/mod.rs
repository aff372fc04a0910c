//! One byte-level mutation of a valid encoding, shared by the fuzz suites of the consensus
//! wire (`consensus/tests/fuzz_codec.rs`) and the mesh wire (`agent/tests/fuzz_wire.rs`).

use proptest::prelude::*;

/// Overwrite, insert or delete one byte at a position given as a fraction of the length;
/// the byte favours values that mean something to bincode's varints (0, 0xff, 252, 253).
pub fn mutation() -> impl Strategy<Value = (f64, u8, u8)> {
    (0.0..1.0f64, 0u8..3, prop_oneof![Just(0u8), Just(0xff), Just(252), Just(253), any::<u8>()])
}

/// Applies a [`mutation`] to `bytes`.
pub fn mutate(mut bytes: Vec<u8>, (at, kind, byte): (f64, u8, u8)) -> Vec<u8> {
    let i = ((at * bytes.len() as f64) as usize).min(bytes.len());
    match kind {
        0 if i < bytes.len() => bytes[i] = byte,
        1 => bytes.insert(i, byte),
        _ if i < bytes.len() => {
            bytes.remove(i);
        }
        _ => bytes.push(byte),
    }
    bytes
}
