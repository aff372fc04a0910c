//! The data-dir lock: one agent per data dir.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Holds an exclusive lock on the data dir for the agent's lifetime: two agents on one
/// data dir would corrupt each other's Raft log.
pub fn lock_data_dir(data_dir: &Path) -> Result<nix::fcntl::Flock<File>> {
    let path = data_dir.join("agent.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("data dir {} is not writable", data_dir.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, _)) => bail!("data dir {} is in use by another saturn-agent", data_dir.display()),
    }
}
