//! The simulated job's checkpoints: per step, a data file of real bytes (the "model",
//! [`SynthJobArgs::checkpoint_bytes`](super::SynthJobArgs) of them, derived from the
//! job and step) and a small JSON file holding the job id, step, size and the data's
//! SHA-256, both written atomically and durably. A resume reads both back and refuses a
//! checkpoint that is missing, another job's, or whose bytes do not match.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a checkpoint's JSON file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The job that wrote it.
    pub job: String,
    /// Steps done when it was written.
    pub step: u64,
    /// Bytes in the data file.
    #[serde(default)]
    pub bytes: u64,
    /// Hex SHA-256 of the data file.
    #[serde(default)]
    pub sha256: String,
}

/// How many checkpoint steps are kept in the directory: the agent snapshots the whole
/// directory at each reported step, so older files are never needed again.
const KEEP: usize = 1;

/// The JSON file of the checkpoint at `step`.
pub fn checkpoint_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("synth-checkpoint-{step}.json"))
}

/// The data file of the checkpoint at `step`.
pub fn data_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("synth-checkpoint-{step}.bin"))
}

/// Writes the checkpoint of `job` at `step` with `bytes` bytes of data so that, once
/// this returns, it survives a crash: temp files, fsync, rename, fsync the directory.
/// Older steps are pruned. Returns what the JSON file holds.
pub fn write(dir: &Path, job: &str, step: u64, bytes: u64) -> io::Result<Checkpoint> {
    fs::create_dir_all(dir)?;
    let data = data_path(dir, step);
    let tmp = data.with_extension("bin.tmp");
    let mut file = io::BufWriter::new(File::create(&tmp)?);
    let mut hasher = Sha256::new();
    let mut block = [0u8; 64 * 1024];
    let mut state = seed(job, step);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        fill(&mut block[..n], &mut state);
        hasher.update(&block[..n]);
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()?;
    fs::rename(&tmp, &data)?;
    let checkpoint = Checkpoint { job: job.to_owned(), step, bytes, sha256: hex::encode(hasher.finalize()) };
    let path = checkpoint_path(dir, step);
    let tmp = path.with_extension("json.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(&checkpoint).map_err(io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    prune(dir);
    Ok(checkpoint)
}

/// Reads the checkpoint at `step`; `Ok(None)` when there is none.
pub fn read(dir: &Path, step: u64) -> io::Result<Option<Checkpoint>> {
    match fs::read(checkpoint_path(dir, step)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Checks that the data file of `checkpoint` in `dir` is there, whole and unchanged.
pub fn verify_data(dir: &Path, checkpoint: &Checkpoint) -> Result<(), String> {
    let path = data_path(dir, checkpoint.step);
    let mut file = File::open(&path).map_err(|err| format!("cannot open {}: {err}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut block).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
        total += n as u64;
    }
    let digest = hex::encode(hasher.finalize());
    if total != checkpoint.bytes || digest != checkpoint.sha256 {
        return Err(format!(
            "{} holds {total} bytes with SHA-256 {digest}, the checkpoint says {} bytes with {}",
            path.display(),
            checkpoint.bytes,
            checkpoint.sha256
        ));
    }
    Ok(())
}

/// Deletes all but the newest [`KEEP`] checkpoint steps; failures only cost disk.
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
        let _ = fs::remove_file(data_path(dir, *step));
    }
}

/// The data generator's seed: the same bytes for the same job and step.
fn seed(job: &str, step: u64) -> u64 {
    let digest = Sha256::digest(format!("{job}/{step}").as_bytes());
    u64::from_le_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]]) | 1
}

/// Fills `block` from a xorshift generator (fast, and not compressible to nothing).
fn fill(block: &mut [u8], state: &mut u64) {
    for chunk in block.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_checkpoints_read_back_verified_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        for step in [10, 20, 30] {
            write(dir.path(), "j-1", step, 100_000).unwrap();
        }
        let found = read(dir.path(), 30).unwrap().unwrap();
        assert_eq!((found.job.as_str(), found.step, found.bytes), ("j-1", 30, 100_000));
        verify_data(dir.path(), &found).unwrap();
        assert_eq!(read(dir.path(), 20).unwrap(), None);
        assert!(!data_path(dir.path(), 20).exists());
    }

    #[test]
    fn a_flipped_byte_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = write(dir.path(), "j-1", 5, 10_000).unwrap();
        let mut bytes = fs::read(data_path(dir.path(), 5)).unwrap();
        bytes[1234] ^= 1;
        fs::write(data_path(dir.path(), 5), bytes).unwrap();
        assert!(verify_data(dir.path(), &checkpoint).unwrap_err().contains("SHA-256"));
    }
}
