//! What the executor is asked to run: one attempt of one job on this host.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Identifies one attempt of one job: the unit the executor starts and stops.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptKey {
    /// The job id given by the replicated state, e.g. `j-000017`.
    pub job: String,
    /// Attempt number, 1 for the first start, +1 on every restart or trial run.
    pub attempt: u32,
}

impl AttemptKey {
    /// Builds a key from a job id and an attempt number.
    pub fn new(job: impl Into<String>, attempt: u32) -> Self {
        Self { job: job.into(), attempt }
    }
}

impl fmt::Display for AttemptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} attempt {}", self.job, self.attempt)
    }
}

/// This host's part of the attempt's gang (one process per host, torchrun-compatible).
/// A single-host job is a gang of one host (`nnodes` 1, rank 0, master on loopback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gang {
    /// Number of hosts in the gang (`SATURN_NNODES`).
    pub nnodes: u32,
    /// This host's rank, `0..nnodes` (`SATURN_NODE_RANK`); rank 0 hosts the rendezvous.
    pub node_rank: u32,
    /// Address of the rank-0 host (`MASTER_ADDR`).
    pub master_addr: String,
    /// Rendezvous port on the rank-0 host (`MASTER_PORT`).
    pub master_port: u16,
    /// Total GPUs of the whole gang, all hosts together (`WORLD_SIZE`).
    pub world_size: u32,
    /// The address this host is reached at by the other ranks (`SATURN_NODE_ADDR`).
    pub node_addr: String,
    /// How long the ranks may take to rendezvous (`SATURN_RENDEZVOUS_TIMEOUT_S`). The
    /// agent also ends a multi-host attempt whose process printed no `SATURN` line
    /// within this time (plus a margin): see [`Gang::silence_limit`].
    pub rendezvous_timeout: Duration,
    /// The other hosts of the gang, as named in errors: `agent-1 at 10.0.0.2`.
    pub peers: Vec<String>,
}

/// Most added to the rendezvous timeout before the agent ends a silent rank (a quarter
/// of the timeout when that is less), so that a library timing out on its own (exit
/// status 4, with its own message) does so first.
pub const RENDEZVOUS_MARGIN: Duration = Duration::from_secs(15);

impl Gang {
    /// How long this rank's process may run without printing any `SATURN` line before
    /// the agent ends it as a gang that never rendezvoused: only for multi-host gangs
    /// (a single host has nothing to wait for), `None` otherwise.
    pub fn silence_limit(&self) -> Option<Duration> {
        let margin = RENDEZVOUS_MARGIN.min(self.rendezvous_timeout / 4);
        (self.nnodes > 1 && !self.rendezvous_timeout.is_zero()).then(|| self.rendezvous_timeout + margin)
    }
}

/// Everything needed to start one attempt's process on this host.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptSpec {
    /// Job id.
    pub job_id: String,
    /// Attempt number (1 first).
    pub attempt: u32,
    /// Name of this agent.
    pub agent_name: String,
    /// Technique to run as, one of the job's `techniques`.
    pub technique: String,
    /// Planned GPU indices on this host.
    pub gpus: Vec<u32>,
    /// What `CUDA_VISIBLE_DEVICES` must name for an index that is not a whole GPU's NVML
    /// index: the `MIG-…` UUID of a MIG instance (CUDA cannot resolve Saturn's index of
    /// one). Indices not in the map are whole GPUs (or simulated ones).
    pub cuda_ids: BTreeMap<u32, String>,
    /// Model of those GPUs, e.g. `A100-80GB`.
    pub gpu_model: String,
    /// Memory of one of those GPUs, when known; exported as `SATURN_GPU_MEMORY_MIB`.
    pub gpu_memory_mib: Option<u64>,
    /// Total steps of the job.
    pub steps: u64,
    /// Step to resume from (0 on a fresh start).
    pub start_step: u64,
    /// Directory that survives restarts of the job on this host.
    pub checkpoint_dir: PathBuf,
    /// Set only for a trial run: run this many steps, report them, exit.
    pub profile_steps: Option<u64>,
    /// The gang variables (the daemon always sets them, single-host jobs too; `None`
    /// leaves them out).
    pub gang: Option<Gang>,
    /// The user's environment from the job file.
    pub env: BTreeMap<String, String>,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Working directory of the process.
    pub workdir: PathBuf,
}

impl AttemptSpec {
    /// The key of this attempt.
    pub fn key(&self) -> AttemptKey {
        AttemptKey::new(self.job_id.clone(), self.attempt)
    }

    /// Whether this is a trial (profiling) run.
    pub fn is_trial(&self) -> bool {
        self.profile_steps.is_some()
    }
}
