//! Records of live job processes in the data dir, and ending the leftovers of a
//! previous agent run.
//!
//! Spec: "an agent restarting on the same data dir first ends any of its former job
//! processes that are still alive". A pid alone is not enough to find them — it may
//! have been recycled by an unrelated process — so each record also holds the
//! process's start time from `/proc/PID/stat`, and a pid is signalled only while its
//! start time still matches.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::procfs;
use super::spec::AttemptKey;

/// One job process the agent started, as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Job id.
    pub job: String,
    /// Attempt number.
    pub attempt: u32,
    /// Pid of the process the agent started.
    pub pid: u32,
    /// Its process group (the same as `pid`: each attempt leads its own group).
    pub pgid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl ProcessRecord {
    /// The attempt this process belongs to.
    pub fn key(&self) -> AttemptKey {
        AttemptKey::new(self.job.clone(), self.attempt)
    }
}

/// The directory of process records, `DATA_DIR/processes`, one file per attempt.
#[derive(Debug, Clone)]
pub struct PidDir {
    dir: PathBuf,
}

impl PidDir {
    /// The record directory inside `data_dir`, created if missing.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join("processes");
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Writes the record of a process (atomically: a crash leaves the old file or the new).
    pub fn record(&self, record: &ProcessRecord) -> io::Result<()> {
        let path = self.path(&record.key());
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(record).map_err(io::Error::other)?)?;
        fs::rename(&tmp, &path)
    }

    /// Removes the record of an attempt; a missing record is not an error.
    pub fn remove(&self, key: &AttemptKey) -> io::Result<()> {
        match fs::remove_file(self.path(key)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Every readable record. Unreadable or corrupt files are skipped with a warning:
    /// a half-written record (crash mid-write) must not stop the agent from starting.
    pub fn list(&self) -> Vec<ProcessRecord> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut records = Vec::new();
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            match fs::read(&path).map(|bytes| serde_json::from_slice::<ProcessRecord>(&bytes)) {
                Ok(Ok(record)) => records.push(record),
                _ => tracing::warn!(path = %path.display(), "skipping unreadable process record"),
            }
        }
        records
    }

    fn path(&self, key: &AttemptKey) -> PathBuf {
        self.dir.join(format!("{}.{}.json", file_safe(&key.job), key.attempt))
    }
}

/// A job id made safe to use as a file name (ids come from the state machine, but a
/// path must never escape its directory whatever they hold).
pub fn file_safe(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    // An empty name would make the directory itself the job's (e.g. the checkpoints
    // root as one job's SATURN_CHECKPOINT_DIR); a leading '.' allows `..`.
    if safe.is_empty() || safe.starts_with('.') {
        format!("_{safe}")
    } else {
        safe
    }
}

/// Ends every process recorded in `data_dir` by a previous run that is still alive:
/// SIGTERM (so it can checkpoint), then SIGKILL after `grace`. Returns the records
/// found, so the caller can report those attempts as ended; all records are removed.
///
/// A process is ended only if it is provably the recorded one or one of its children:
/// the recorded pid with the recorded start time, or a member of the recorded process
/// group whose environment names the same job and attempt (children that outlived
/// their parent). An unrelated process that reuses the pid is left alone.
pub async fn end_orphans(data_dir: &Path, grace: Duration) -> io::Result<Vec<ProcessRecord>> {
    let pids = PidDir::open(data_dir)?;
    let records = pids.list();
    let mut targets: Vec<(u32, u64)> = records.iter().flat_map(former_processes).collect();
    for &(pid, _) in &targets {
        tracing::info!(pid, "ending a job process left by a previous agent run");
        signal(pid, Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        targets.retain(|&(pid, start_time)| is_same_alive(pid, start_time));
        if targets.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (pid, start_time) in targets {
        // Re-checked right before the kill: the pid may have been recycled during grace.
        if is_same_alive(pid, start_time) {
            signal(pid, Signal::SIGKILL);
        }
    }
    for record in &records {
        pids.remove(&record.key())?;
    }
    Ok(records)
}

/// Live processes belonging to a record, as (pid, start time).
fn former_processes(record: &ProcessRecord) -> Vec<(u32, u64)> {
    let marker = [format!("SATURN_JOB_ID={}", record.job), format!("SATURN_ATTEMPT={}", record.attempt)];
    procfs::all_pids()
        .into_iter()
        .filter_map(|pid| Some((pid, procfs::stat(pid)?)))
        .filter(|(_, stat)| stat.is_alive())
        .filter(|&(pid, stat)| {
            let is_leader = pid == record.pid && stat.start_time == record.start_time;
            let is_member = stat.pgrp == record.pgid as i32
                && stat.start_time >= record.start_time
                && procfs::environ_has(pid, &marker);
            is_leader || is_member
        })
        .map(|(pid, stat)| (pid, stat.start_time))
        .collect()
}

fn is_same_alive(pid: u32, start_time: u64) -> bool {
    procfs::stat(pid).is_some_and(|stat| stat.is_alive() && stat.start_time == start_time)
}

fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // ESRCH (already gone) is the outcome we want anyway.
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let pids = PidDir::open(dir.path()).unwrap();
        let record = ProcessRecord { job: "j-1".into(), attempt: 2, pid: 10, pgid: 10, start_time: 99 };
        pids.record(&record).unwrap();
        fs::write(dir.path().join("processes/garbage.json"), "{").unwrap();
        assert_eq!(pids.list(), vec![record.clone()]);
        pids.remove(&record.key()).unwrap();
        pids.remove(&record.key()).unwrap();
        assert!(pids.list().is_empty());
    }

    #[test]
    fn file_names_cannot_escape() {
        assert_eq!(file_safe("../../etc/x"), "_.._.._etc_x");
        assert_eq!(file_safe("j-000017"), "j-000017");
        assert_eq!(file_safe(""), "_");
    }
}
