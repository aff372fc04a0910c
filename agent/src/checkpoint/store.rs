//! This host's checkpoint store: frozen, verified copies of checkpoint steps.
//!
//! Layout under the store root (`DATA_DIR/checkpoint-store`, or `--checkpoint-root`):
//! `<job>/<step>/manifest.json` and `<job>/<step>/data/...` (the checkpoint directory's
//! files). A copy is built in `<job>/.partial-<step>-<digest prefix>/` and renamed into
//! place once verified, so a `<step>` directory is always whole. A partial copy stays
//! across a dropped connection and a fetch continues it (same step and digest means the
//! same bytes, from whichever holder).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::digest::{digest_files, safe_relative, scan, Manifest};
use super::CheckpointError;
use crate::executor::pidfile::file_safe;

const MANIFEST: &str = "manifest.json";
const DATA: &str = "data";

/// A store root.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `root` (created when first written).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn job_dir(&self, job: &str) -> PathBuf {
        self.root.join(file_safe(job))
    }

    /// The directory of a whole copy of `step` of `job`.
    pub fn step_dir(&self, job: &str, step: u64) -> PathBuf {
        self.job_dir(job).join(step.to_string())
    }

    /// Where a copy of `step` with `digest` is assembled.
    pub fn partial_dir(&self, job: &str, step: u64, digest: &str) -> PathBuf {
        let prefix: String = digest.chars().filter(char::is_ascii_hexdigit).take(16).collect();
        self.job_dir(job).join(format!(".partial-{step}-{prefix}"))
    }

    /// The data directory inside a copy (whole or partial).
    pub fn data_of(copy: &Path) -> PathBuf {
        copy.join(DATA)
    }

    /// Freezes the checkpoint directory `live` as the copy of `step`: its files are
    /// copied into the store while their digest is computed. Refused (see
    /// [`scan`]) when the directory is missing, empty, over `cap` bytes or has a
    /// symlink pointing out of it.
    pub fn snapshot(&self, job: &str, step: u64, live: &Path, cap: u64) -> Result<Manifest, CheckpointError> {
        let files = scan(live, cap)?;
        let building = self.job_dir(job).join(format!(".snapshot-{step}"));
        let _ = fs::remove_dir_all(&building);
        let manifest = digest_files(&files, Some(&Self::data_of(&building)))?;
        self.seal(job, step, &building, &manifest)?;
        Ok(manifest)
    }

    /// Writes the manifest into `building` and renames it to the copy of `step`,
    /// replacing an older copy of the same step.
    pub fn seal(&self, job: &str, step: u64, building: &Path, manifest: &Manifest) -> Result<(), CheckpointError> {
        fs::create_dir_all(Self::data_of(building)).map_err(|source| io(building, source))?;
        let bytes = serde_json::to_vec(manifest).map_err(|err| io(building, std::io::Error::other(err)))?;
        fs::write(building.join(MANIFEST), bytes).map_err(|source| io(building, source))?;
        let dest = self.step_dir(job, step);
        let _ = fs::remove_dir_all(&dest);
        fs::rename(building, &dest).map_err(|source| io(&dest, source))?;
        Ok(())
    }

    /// The manifest of the whole copy of `step`, if this host has one.
    pub fn manifest(&self, job: &str, step: u64) -> Option<Manifest> {
        let bytes = fs::read(self.step_dir(job, step).join(MANIFEST)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Recomputes the digest of the copy of `step` from its files and compares it with
    /// `digest`: a copy damaged on disk (a flipped byte, a truncated file) fails.
    pub fn verify(&self, job: &str, step: u64, digest: &str) -> Result<Manifest, CheckpointError> {
        let manifest = self.manifest(job, step).ok_or_else(|| CheckpointError::NoCopy { step })?;
        check_copy(&self.step_dir(job, step), &manifest, digest)?;
        Ok(manifest)
    }

    /// Deletes this host's copy of `step` (found damaged: it must not be served, nor
    /// taken for a complete copy by the next pull).
    pub fn discard(&self, job: &str, step: u64) {
        let dir = self.step_dir(job, step);
        if let Err(err) = fs::remove_dir_all(&dir) {
            tracing::debug!(dir = %dir.display(), %err, "cannot delete a damaged checkpoint copy");
        }
    }

    /// Replaces the contents of `live` by the files of the copy of `step` (a fresh,
    /// empty directory for step 0).
    pub fn restore(&self, job: &str, step: u64, live: &Path) -> Result<(), CheckpointError> {
        if live.exists() {
            fs::remove_dir_all(live).map_err(|source| io(live, source))?;
        }
        fs::create_dir_all(live).map_err(|source| io(live, source))?;
        if step == 0 {
            return Ok(());
        }
        let manifest = self.manifest(job, step).ok_or(CheckpointError::NoCopy { step })?;
        let data = Self::data_of(&self.step_dir(job, step));
        for file in &manifest.files {
            let relative = safe_relative(&file.path).ok_or_else(|| CheckpointError::BadName(PathBuf::from(&file.path)))?;
            let dest = live.join(&relative);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|source| io(parent, source))?;
            }
            fs::copy(data.join(&relative), &dest).map_err(|source| io(&dest, source))?;
        }
        Ok(())
    }

    /// Every whole copy in the store, as (job directory name, step).
    pub fn copies(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let Ok(jobs) = fs::read_dir(&self.root) else { return out };
        for job in jobs.flatten() {
            let Ok(job_name) = job.file_name().into_string() else { continue };
            let Ok(steps) = fs::read_dir(job.path()) else { continue };
            for step in steps.flatten() {
                if let Some(step) = step.file_name().to_str().and_then(|s| s.parse().ok()) {
                    out.push((job_name.clone(), step));
                }
            }
        }
        out
    }

    /// Deletes partial copies and unfinished snapshots not touched for `age` (a pull
    /// given up on, a snapshot cut by a crash).
    pub fn delete_stale_partials(&self, age: Duration) {
        let Ok(jobs) = fs::read_dir(&self.root) else { return };
        for job in jobs.flatten() {
            let Ok(entries) = fs::read_dir(job.path()) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let partial = name.to_str().is_some_and(|n| n.starts_with(".partial-") || n.starts_with(".snapshot-"));
                let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| SystemTime::now().duration_since(t).ok());
                if partial && old.is_some_and(|old| old > age) {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    /// Deletes the copy of `step` of the job stored as `job_dir_name` unless it was
    /// written in the last `young` (a copy whose record is on its way through Raft).
    pub fn delete_if_old(&self, job_dir_name: &str, step: u64, young: Duration) {
        let dir = self.root.join(job_dir_name).join(step.to_string());
        let age = fs::metadata(dir.join(MANIFEST)).and_then(|m| m.modified()).ok().and_then(|t| SystemTime::now().duration_since(t).ok());
        if age.is_some_and(|age| age < young) {
            return;
        }
        if let Err(err) = fs::remove_dir_all(&dir) {
            tracing::debug!(dir = %dir.display(), %err, "cannot delete an old checkpoint copy");
        }
    }
}

/// Checks the files under `copy/data` against `manifest` and `digest`.
pub fn check_copy(copy: &Path, manifest: &Manifest, digest: &str) -> Result<(), CheckpointError> {
    if manifest.digest != digest {
        return Err(CheckpointError::Mismatch { expected: digest.to_owned(), found: manifest.digest.clone() });
    }
    let data = Store::data_of(copy);
    let mut files = Vec::with_capacity(manifest.files.len());
    for file in &manifest.files {
        let relative = safe_relative(&file.path).ok_or_else(|| CheckpointError::BadName(PathBuf::from(&file.path)))?;
        files.push((file.path.clone(), data.join(relative), file.size));
    }
    let found = digest_files(&files, None).map_err(|err| match err {
        CheckpointError::Changing(path) => CheckpointError::Damaged(format!("{} has the wrong size", path.display())),
        other => other,
    })?;
    if found.digest != digest {
        return Err(CheckpointError::Mismatch { expected: digest.to_owned(), found: found.digest });
    }
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io { what: format!("writing {}", path.display()), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_restores_verifies_and_a_flipped_byte_is_caught() {
        let live = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::write(live.path().join("model.bin"), vec![7u8; 5000]).unwrap();
        let store = Store::new(root.path().to_owned());
        let manifest = store.snapshot("j-1", 10, live.path(), 1 << 20).unwrap();
        fs::write(live.path().join("model.bin"), b"changed later").unwrap();
        store.verify("j-1", 10, &manifest.digest).unwrap();
        let resumed = tempfile::tempdir().unwrap();
        store.restore("j-1", 10, resumed.path()).unwrap();
        assert_eq!(fs::read(resumed.path().join("model.bin")).unwrap(), vec![7u8; 5000]);
        let stored = Store::data_of(&store.step_dir("j-1", 10)).join("model.bin");
        let mut bytes = fs::read(&stored).unwrap();
        bytes[100] ^= 0x10;
        fs::write(&stored, bytes).unwrap();
        assert!(matches!(store.verify("j-1", 10, &manifest.digest), Err(CheckpointError::Mismatch { .. })));
        assert_eq!(store.copies(), vec![("j-1".to_string(), 10)]);
    }
}
