//! Cluster identity: an id made when a cluster is formed, kept in the data dir, carried by
//! every Raft RPC and forwarded proposal, and checked before a message reaches openraft.
//!
//! Two clusters that meet (two meshes connected, an agent restarted with the wrong
//! `--join`) must never mix logs: openraft would take the other cluster's leader for its
//! own, truncate committed entries and panic. So every request carries the sender's id and
//! the receiver decides with [`judge`]:
//! - same id: accepted;
//! - another id, or none while the receiver has one: refused (logged once per foreign id,
//!   counted in [`ClusterGuard::foreign_messages`]);
//! - the receiver has none yet (a fresh agent, or a data dir from before cluster ids): it
//!   accepts, and adopts the id of the first Raft RPC that carries one. From then on it
//!   belongs to that cluster until its data dir is reset.
//!
//! The id is made by the agent that forms the cluster, before it initialises Raft, and by
//! a leader that finds itself without one (a cluster formed before ids existed): its RPCs
//! then carry it and every member adopts it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

/// Name of the file in the Raft data dir that holds the id.
pub const CLUSTER_ID_FILE: &str = "cluster-id";

/// The id of one cluster: 32 lowercase hex digits (128 random bits).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusterId(pub String);

impl ClusterId {
    /// A new random id.
    pub fn generate() -> Self {
        ClusterId(format!("{:032x}", rand::random::<u128>()))
    }

    /// Parses the file format (the id, surrounding whitespace ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| ClusterId(text.to_ascii_lowercase()))
    }
}

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to do with a message, given the receiver's and the sender's ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Same cluster (or neither has an id yet).
    Accept,
    /// The receiver has no id: accept, and adopt this one if the message may give it.
    Adopt(ClusterId),
    /// Another cluster's message.
    Refuse,
}

/// The rule, pure. `mine` is the receiver's id, `theirs` the message's.
pub fn judge(mine: Option<&ClusterId>, theirs: Option<&ClusterId>) -> Verdict {
    match (mine, theirs) {
        (Some(mine), Some(theirs)) if mine == theirs => Verdict::Accept,
        (Some(_), _) => Verdict::Refuse,
        (None, Some(theirs)) => Verdict::Adopt(theirs.clone()),
        (None, None) => Verdict::Accept,
    }
}

/// The id could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("cannot store the cluster id in {path}: {source}")]
pub struct ClusterIdError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// This member's cluster id, durable in its data dir, and the count of foreign messages.
pub struct ClusterGuard {
    path: PathBuf,
    id: RwLock<Option<ClusterId>>,
    foreign: AtomicU64,
    /// Foreign ids already logged (each is logged once).
    logged: Mutex<BTreeSet<String>>,
}

impl ClusterGuard {
    /// Reads the id stored in `dir` (none in a fresh or pre-id data dir).
    pub fn open(dir: &Path) -> Result<Self, ClusterIdError> {
        let path = dir.join(CLUSTER_ID_FILE);
        let id = match std::fs::read_to_string(&path) {
            Ok(text) => Some(ClusterId::parse(&text).ok_or_else(|| ClusterIdError {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a cluster id (32 hex digits)"),
            })?),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(ClusterIdError { path, source }),
        };
        Ok(ClusterGuard { path, id: RwLock::new(id), foreign: AtomicU64::new(0), logged: Mutex::new(BTreeSet::new()) })
    }

    /// The id, once this member belongs to a cluster that has one.
    pub fn id(&self) -> Option<ClusterId> {
        self.id.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stores `id` as this member's, if it has none yet (fsynced before it is used).
    /// Returns the id in force afterwards: an existing one is never replaced.
    pub fn adopt(&self, id: &ClusterId) -> Result<ClusterId, ClusterIdError> {
        let mut current = self.id.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = current.as_ref() {
            return Ok(existing.clone());
        }
        write_durably(&self.path, id).map_err(|source| ClusterIdError { path: self.path.clone(), source })?;
        tracing::info!(cluster = %id, "this agent now belongs to cluster {id}");
        *current = Some(id.clone());
        Ok(id.clone())
    }

    /// Judges an incoming message carrying `theirs`; adopts the id when `may_adopt` and
    /// this member has none. A refusal is counted and logged (once per foreign id).
    pub fn admit(&self, theirs: Option<&ClusterId>, may_adopt: bool, what: &str) -> Result<(), Refusal> {
        let mine = self.id();
        match judge(mine.as_ref(), theirs) {
            Verdict::Accept => Ok(()),
            Verdict::Adopt(id) if may_adopt => match self.adopt(&id) {
                Ok(now) if Some(&now) == theirs => Ok(()),
                Ok(now) => Err(self.refuse(Some(&now), theirs, what)),
                Err(err) => {
                    tracing::error!(%err, "cannot adopt the cluster id");
                    Err(Refusal { reason: err.to_string(), cluster: None })
                }
            },
            Verdict::Adopt(_) => Ok(()),
            Verdict::Refuse => Err(self.refuse(mine.as_ref(), theirs, what)),
        }
    }

    fn refuse(&self, mine: Option<&ClusterId>, theirs: Option<&ClusterId>, what: &str) -> Refusal {
        self.foreign.fetch_add(1, Ordering::Relaxed);
        let theirs_text = theirs.map_or_else(|| "none".to_string(), ToString::to_string);
        let mine_text = mine.map_or_else(|| "none".to_string(), ToString::to_string);
        self.log_once(&theirs_text, || {
            tracing::warn!(ours = %mine_text, theirs = %theirs_text, "refusing {what} from another cluster (cluster id {theirs_text}, ours {mine_text}); further messages of that cluster are refused silently")
        });
        Refusal { reason: format!("this agent belongs to cluster {mine_text}, the message to cluster {theirs_text}"), cluster: mine.cloned() }
    }

    /// Counts one foreign message seen elsewhere (a heartbeat), logging the first of each
    /// foreign id.
    pub fn count_foreign(&self, theirs: &str, what: &str) {
        self.foreign.fetch_add(1, Ordering::Relaxed);
        let mine = self.id().map_or_else(|| "none".to_string(), |id| id.0);
        self.log_once(theirs, || {
            tracing::warn!(ours = %mine, theirs, "ignoring {what} from another cluster (cluster id {theirs}, ours {mine})")
        });
    }

    fn log_once(&self, theirs: &str, log: impl FnOnce()) {
        let first = self.logged.lock().unwrap_or_else(|p| p.into_inner()).insert(theirs.to_string());
        if first {
            log();
        }
    }

    /// Messages of another cluster refused or ignored since start.
    pub fn foreign_messages(&self) -> u64 {
        self.foreign.load(Ordering::Relaxed)
    }
}

/// Why a request was refused before it reached Raft (sent back to the caller).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("refused: {reason}")]
pub struct Refusal {
    /// One line a person can act on.
    pub reason: String,
    /// The refusing member's cluster id, if it has one.
    pub cluster: Option<ClusterId>,
}

fn write_durably(path: &Path, id: &ClusterId) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "{id}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> ClusterId {
        ClusterId(std::iter::repeat(c).take(32).collect())
    }

    #[test]
    fn same_cluster_passes_another_is_refused_and_a_fresh_member_adopts() {
        assert_eq!(judge(Some(&id('a')), Some(&id('a'))), Verdict::Accept);
        assert_eq!(judge(Some(&id('a')), Some(&id('b'))), Verdict::Refuse);
        assert_eq!(judge(Some(&id('a')), None), Verdict::Refuse);
        assert_eq!(judge(None, Some(&id('b'))), Verdict::Adopt(id('b')));
        assert_eq!(judge(None, None), Verdict::Accept);
    }

    #[test]
    fn the_first_id_adopted_is_kept_across_restarts_and_others_are_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let guard = ClusterGuard::open(dir.path()).expect("opens");
        assert_eq!(guard.id(), None);
        guard.admit(Some(&id('a')), true, "append entries").expect("a fresh member adopts");
        assert!(guard.admit(Some(&id('b')), true, "append entries").is_err());
        assert!(guard.admit(None, true, "vote").is_err());
        assert_eq!(guard.foreign_messages(), 2);
        let reopened = ClusterGuard::open(dir.path()).expect("reopens");
        assert_eq!(reopened.id(), Some(id('a')));
        assert_eq!(ClusterId::parse(&ClusterId::generate().0).map(|i| i.0.len()), Some(32));
    }
}
