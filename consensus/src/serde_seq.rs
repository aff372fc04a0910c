//! Serde helper: a map with non-string keys, encoded as a sequence of `(key, value)` pairs.
//!
//! The state's GPU map (keyed by `(host, gpu)`) and profile map (keyed by a struct) must
//! encode to bincode (snapshots, RPCs) and to JSON (debug dumps, the API); JSON objects
//! only allow string keys, so both are written as lists of pairs instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serializes `map` as a sequence of `(key, value)` pairs, in key order.
pub fn serialize<K, V, S>(map: &BTreeMap<K, V>, serializer: S) -> Result<S::Ok, S::Error>
where
    K: Serialize,
    V: Serialize,
    S: Serializer,
{
    serializer.collect_seq(map.iter())
}

/// Reads a sequence of `(key, value)` pairs back into a map.
pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
    D: Deserializer<'de>,
{
    let pairs = Vec::<(K, V)>::deserialize(deserializer)?;
    Ok(pairs.into_iter().collect())
}
