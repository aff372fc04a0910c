//! Checkpoints that move with their job (issue 12).
//!
//! A job's checkpoint is its `SATURN_CHECKPOINT_DIR`. When the job prints
//! `SATURN checkpoint step=N`, the rank-0 host freezes that directory into its store
//! and records the copy (size, digest) through Raft; other agents pull replicas over the
//! mesh and record theirs; an attempt starts only after its rank-0 host has restored the
//! newest checkpoint it can verify, and `SATURN_START_STEP` is that step.
//!
//! Map:
//! - [`digest`]: what a checkpoint directory holds ([`Manifest`]) and its digest; refusals.
//! - [`store`]: this host's frozen copies ([`Store`]).
//! - [`wire`]: the request/response of the mesh's checkpoint channel.
//! - [`plan`]: pure decisions: which copy to restore from, which hosts pull replicas,
//!   which local copies to delete.
//! - [`fetch`]: pulling a copy from a holder: chunked, rate-limited, resumable, verified.
//! - [`serve`]: answering other agents' pulls from the store.
//! - [`take`]: a checkpoint line → a frozen copy and its record.
//! - [`restore`]: the fetch-first start of an attempt.
//! - [`replicate`]: the loop that pulls replicas and deletes copies no longer recorded.
//! - [`peers`]: the mesh behind [`fetch::Peers`].
//! - [`root`]: the `--checkpoint-root` marker check (same shared storage everywhere).

pub mod digest;
pub mod fetch;
pub mod peers;
pub mod plan;
pub mod replicate;
pub mod restore;
pub mod root;
pub mod serve;
pub mod store;
pub mod take;
pub mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use digest::{Manifest, ManifestFile};
pub use fetch::{Limiter, Peers};
pub use store::Store;

/// Default cap on one checkpoint's size.
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024 * 1024;
/// Default replication rate cap, bytes per second per agent (pulls and fetches together).
pub const DEFAULT_RATE_BYTES_PER_S: u64 = 200 * 1024 * 1024;

/// Why a checkpoint could not be taken, stored, fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The job announced a checkpoint but its directory is missing or empty.
    #[error("the job printed a checkpoint line but its checkpoint directory {0} is missing or empty")]
    NotWritten(PathBuf),
    /// A symlink in the directory points outside it, nowhere, or at a non-file.
    #[error("{path} is a symlink the checkpoint cannot hold: {why}")]
    Symlink {
        /// The link.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The directory is larger than the configured cap.
    #[error("the checkpoint holds {size} bytes, above the cap of {cap} bytes")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// A file name that is not plain UTF-8 relative path.
    #[error("{0} is not a plain UTF-8 relative file name")]
    BadName(PathBuf),
    /// A file changed size while it was read (the job is still writing it).
    #[error("{0} changed while it was read: the checkpoint was announced before it was complete")]
    Changing(PathBuf),
    /// Contents do not match the recorded digest.
    #[error("digest mismatch: expected {expected}, found {found}")]
    Mismatch {
        /// The recorded digest.
        expected: String,
        /// What the bytes hash to.
        found: String,
    },
    /// A copy is damaged in another way.
    #[error("the copy is damaged: {0}")]
    Damaged(String),
    /// This host has no whole copy of the step.
    #[error("no copy of checkpoint step {step} here")]
    NoCopy {
        /// The step.
        step: u64,
    },
    /// Not enough free disk for a copy.
    #[error("no room: the copy needs {need} bytes, {free} are free under {dir}")]
    NoRoom {
        /// Bytes needed.
        need: u64,
        /// Bytes free.
        free: u64,
        /// Where.
        dir: PathBuf,
    },
    /// The holder could not be asked or did not answer well.
    #[error("holder {host}: {why}")]
    Holder {
        /// The holder.
        host: String,
        /// What went wrong.
        why: String,
    },
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How this agent keeps checkpoints (from `--checkpoint-replicas` and friends).
#[derive(Clone, Debug)]
pub struct CheckpointSettings {
    /// Extra copies of each checkpoint on other agents.
    pub replicas: u32,
    /// Cap on one checkpoint's size.
    pub max_bytes: u64,
    /// Replication rate cap, bytes per second.
    pub rate_bytes_per_s: u64,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        Self { replicas: 1, max_bytes: DEFAULT_MAX_BYTES, rate_bytes_per_s: DEFAULT_RATE_BYTES_PER_S }
    }
}

/// Running totals for metrics.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Bytes pulled from other agents (replicas and fetches).
    pub bytes_received: AtomicU64,
    /// Bytes served to other agents.
    pub bytes_sent: AtomicU64,
    /// Copies pulled and recorded.
    pub copies: AtomicU64,
    /// Fetches or pulls that failed.
    pub failures: AtomicU64,
    /// Milliseconds between the last replicated step's write and its replica's record.
    pub last_lag_ms: AtomicU64,
}

impl CheckpointStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Everything the checkpoint tasks share on one agent.
#[derive(Clone)]
pub struct Checkpoints {
    /// This agent's name.
    pub agent: String,
    /// Its store.
    pub store: Store,
    /// Its settings.
    pub settings: CheckpointSettings,
    /// The replication rate limit, shared by every pull of this agent.
    pub limiter: Arc<Limiter>,
    /// Other agents' stores.
    pub peers: Arc<dyn Peers>,
    /// Totals.
    pub stats: Arc<CheckpointStats>,
    /// Whether the store is shared storage every agent sees (`--checkpoint-root`):
    /// then nothing is copied between agents.
    pub shared: bool,
    /// One lock per copy being pulled, so a replica pull and a resume's fetch of the
    /// same step never write the same partial copy at once.
    pub in_flight: Arc<std::sync::Mutex<std::collections::BTreeMap<(String, u64), Arc<tokio::sync::Mutex<()>>>>>,
}

impl Checkpoints {
    /// The checkpoint tasks' shared parts.
    pub fn new(agent: String, store: Store, settings: CheckpointSettings, peers: Arc<dyn Peers>) -> Self {
        let limiter = Arc::new(Limiter::new(settings.rate_bytes_per_s));
        Self { agent, store, settings, limiter, peers, stats: Arc::new(CheckpointStats::default()), shared: false, in_flight: Arc::default() }
    }
}
