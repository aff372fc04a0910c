//! The simulated job's checkpoints: a small JSON file per checkpoint step holding the
//! job id and step, written atomically and durably.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a checkpoint file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The job that wrote it.
    pub job: String,
    /// Steps done when it was written.
    pub step: u64,
}

/// How many checkpoint files are kept: the newest, and one before it in case the
/// newest was written but never reported.
const KEEP: usize = 2;

/// The file of the checkpoint at `step`.
pub fn checkpoint_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("synth-checkpoint-{step}.json"))
}

/// Writes the checkpoint so that, once this returns, it survives a crash: write a temp
/// file, fsync it, rename it into place, fsync the directory. Older files are pruned.
pub fn write(dir: &Path, checkpoint: &Checkpoint) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let path = checkpoint_path(dir, checkpoint.step);
    let tmp = path.with_extension("json.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(checkpoint).map_err(io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    prune(dir);
    Ok(())
}

/// Reads the checkpoint at `step`; `Ok(None)` when there is none.
pub fn read(dir: &Path, step: u64) -> io::Result<Option<Checkpoint>> {
    match fs::read(checkpoint_path(dir, step)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Deletes all but the newest [`KEEP`] checkpoint files; failures only cost disk.
fn prune(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut steps: Vec<u64> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("synth-checkpoint-")?.strip_suffix(".json")?.parse().ok()
        })
        .collect();
    steps.sort_unstable();
    for step in steps.iter().rev().skip(KEEP) {
        let _ = fs::remove_file(checkpoint_path(dir, *step));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_checkpoints_read_back_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        for step in [10, 20, 30] {
            write(dir.path(), &Checkpoint { job: "j-1".into(), step }).unwrap();
        }
        assert_eq!(read(dir.path(), 30).unwrap(), Some(Checkpoint { job: "j-1".into(), step: 30 }));
        assert!(read(dir.path(), 20).unwrap().is_some());
        assert_eq!(read(dir.path(), 10).unwrap(), None);
    }
}
