//! What a user submits: one job's full spec, as parsed from a job file.
//!
//! These types travel in Raft entries (bincode) and in the HTTP API (JSON), so
//! they use no serde attribute that bincode cannot round-trip (`flatten`,
//! `skip_serializing_if`, `tag`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::early_stop::EarlyStop;

/// A job's id, assigned by the state machine: `j-000017`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub String);

impl JobId {
    /// The id of the `n`-th job the cluster ever accepted.
    pub fn from_seq(n: u64) -> Self {
        JobId(format!("j-{n:06}"))
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One job as the user described it (a `[[job]]` table, or one point of a `[[sweep]]` grid).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Human name, e.g. `gpt2-bs16-lr1e-4`; not necessarily unique.
    pub name: String,
    /// argv of the training process.
    pub command: Vec<String>,
    /// Working directory of the process on the host that runs it.
    pub workdir: String,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Total training steps (minibatches).
    pub steps: u64,
    /// Techniques the script can run as (`ddp`, `fsdp`, `pipeline`, `spilling`, ...).
    pub techniques: Vec<String>,
    /// Smallest allowed total GPU count.
    pub gpus_min: u32,
    /// Largest allowed total GPU count.
    pub gpus_max: u32,
    /// Jobs in the same group share profiling results.
    pub profile_group: String,
    /// How many times a failed attempt is restarted before the job is `failed`.
    pub max_restarts: u32,
    /// User-given step times: technique → total GPU count → seconds per step.
    pub profile: BTreeMap<String, BTreeMap<u32, f64>>,
    /// The early-stopping rule of the sweep this job belongs to (sweeps only), with the
    /// sweep's identity.
    #[serde(default)]
    pub early_stop: Option<EarlyStop>,
    /// How long the job is planned to take when it reports no steps (its script ignores
    /// the stdout protocol, so no trial can measure it).
    #[serde(default = "default_duration_estimate_s")]
    pub duration_estimate_s: u64,
}

/// `duration_estimate_s` of a job file that leaves it out: one hour.
pub const DEFAULT_DURATION_ESTIMATE_S: u64 = 3600;

fn default_duration_estimate_s() -> u64 {
    DEFAULT_DURATION_ESTIMATE_S
}

/// GPUs of one host used by an assignment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostGpus {
    /// Agent name of the host.
    pub host: String,
    /// GPU indices on that host.
    pub gpus: Vec<u32>,
}

/// Where an attempt runs: one entry per host of the gang.
pub type Placement = Vec<HostGpus>;
