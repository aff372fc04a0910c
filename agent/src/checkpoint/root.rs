//! `--checkpoint-root`: the agent does not trust that the path is the same shared file
//! system on every agent; it checks. The first agent with a root writes a marker file
//! with a random id into it and records the id through Raft; every agent then requires
//! its own root to hold a marker with that id, and refuses to run otherwise (a local
//! directory of the same name, an unmounted NFS path).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use saturn_consensus::Command;

use crate::api::AgentServices;

/// The marker file's name in the root.
pub const MARKER_FILE: &str = ".saturn-checkpoint-root";

/// Why the root was refused.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The root's marker is missing or holds another id.
    #[error(
        "--checkpoint-root {root}: not the cluster's shared checkpoint storage: the cluster's marker {marker} is not in \
         {file} (found {found}); mount the same shared file system on every agent, or drop --checkpoint-root"
    )]
    NotShared {
        /// The root.
        root: PathBuf,
        /// The cluster's marker id.
        marker: String,
        /// The file looked at.
        file: PathBuf,
        /// What it holds.
        found: String,
    },
    /// The marker file cannot be written.
    #[error("--checkpoint-root {root}: cannot write the marker file: {source}")]
    Write {
        /// The root.
        root: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The id in `root`'s marker file, creating the file (with a new random id) when absent.
pub fn read_or_create(root: &Path) -> Result<String, RootError> {
    let file = root.join(MARKER_FILE);
    if let Ok(text) = std::fs::read_to_string(&file) {
        return Ok(text.trim().to_string());
    }
    let id = format!("{:032x}", rand::thread_rng().gen::<u128>());
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&file)?;
        out.write_all(id.as_bytes())?;
        out.sync_all()
    };
    match write() {
        Ok(()) => Ok(id),
        // Another agent on the same storage wrote it first: use theirs.
        Err(_) if file.exists() => Ok(std::fs::read_to_string(&file).unwrap_or_default().trim().to_string()),
        Err(source) => Err(RootError::Write { root: root.to_owned(), source }),
    }
}

/// The check, once the state is known: `Ok(true)` when `root` holds the cluster's
/// marker, `Ok(false)` when the cluster has none yet (the caller proposes this root's).
pub fn check(root: &Path, cluster_marker: Option<&str>) -> Result<bool, RootError> {
    let Some(marker) = cluster_marker else { return Ok(false) };
    let file = root.join(MARKER_FILE);
    let found = std::fs::read_to_string(&file).map(|t| t.trim().to_string());
    match found {
        Ok(found) if found == marker => Ok(true),
        Ok(found) => Err(RootError::NotShared { root: root.to_owned(), marker: marker.to_owned(), file, found }),
        Err(err) => Err(RootError::NotShared { root: root.to_owned(), marker: marker.to_owned(), file, found: err.to_string() }),
    }
}

/// Waits until the replicated state has a marker and checks `root` against it; returns
/// the error the agent must stop with, if any. Runs until the check is done.
pub async fn verify(root: PathBuf, services: std::sync::Arc<dyn AgentServices>) -> Result<(), RootError> {
    let mine = read_or_create(&root)?;
    loop {
        let state = services.cluster().state();
        let cluster_known = !state.agents().is_empty();
        if cluster_known {
            match check(&root, state.checkpoint_root_marker())? {
                true => {
                    tracing::info!(root = %root.display(), "checkpoint root holds the cluster's marker");
                    return Ok(());
                }
                false => {
                    let _ = services.cluster().propose(Command::CheckpointRootMarked { marker: mine.clone() }).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_without_the_clusters_marker_is_refused() {
        let shared = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let id = read_or_create(shared.path()).unwrap();
        assert_eq!(read_or_create(shared.path()).unwrap(), id, "the same storage gives the same id");
        assert!(check(shared.path(), Some(&id)).unwrap());
        assert!(!check(other.path(), None).unwrap());
        let err = check(other.path(), Some(&id)).unwrap_err().to_string();
        assert!(err.contains("not the cluster's shared checkpoint storage"), "{err}");
        read_or_create(other.path()).unwrap();
        assert!(check(other.path(), Some(&id)).is_err(), "a marker of its own is not the cluster's");
    }
}
