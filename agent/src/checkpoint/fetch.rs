//! Pulling one checkpoint copy from a holder into this host's store: chunked,
//! rate-limited, resumable, verified before it becomes a whole copy.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::digest::safe_relative;
use super::store::{check_copy, Store};
use super::wire::{CheckpointRequest, CheckpointResponse, CHUNK_BYTES};
use super::{CheckpointError, CheckpointStats, Checkpoints, Manifest};

/// Other agents' stores, by agent name (the mesh in the agent, a map in tests).
#[async_trait]
pub trait Peers: Send + Sync {
    /// Asks `host` one checkpoint request.
    async fn ask(&self, host: &str, request: CheckpointRequest) -> Result<CheckpointResponse, String>;
}

/// A token bucket in time: each pull reserves the time its bytes take at the rate, so
/// all pulls of an agent together stay under it.
#[derive(Debug)]
pub struct Limiter {
    rate: u64,
    next_free: Mutex<Option<Instant>>,
}

impl Limiter {
    /// A limiter at `rate` bytes per second (0: unlimited).
    pub fn new(rate: u64) -> Self {
        Self { rate, next_free: Mutex::new(None) }
    }

    /// Waits until `bytes` more may be moved.
    pub async fn take(&self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        let wait_until = {
            let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = next.filter(|t| *t > now).unwrap_or(now);
            *next = Some(start + Duration::from_secs_f64(bytes as f64 / self.rate as f64));
            start
        };
        tokio::time::sleep_until(wait_until).await;
    }
}

/// How often one chunk is asked again from the same holder before giving up on it (a
/// dropped connection is re-dialled by the mesh between tries).
const CHUNK_TRIES: u32 = 3;

/// Pulls the copy of `step` of `job` with `digest` from `holder` into the store;
/// returns the bytes transferred. Bytes already in a partial copy (an earlier, cut-off
/// pull from any holder) are not fetched again. On a digest mismatch the partial copy is
/// deleted.
pub async fn fetch(ckpt: &Checkpoints, holder: &str, job: &str, step: u64, digest: &str) -> Result<u64, CheckpointError> {
    let lock = {
        let mut locks = ckpt.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry((job.to_owned(), step)).or_default().clone()
    };
    let _guard = lock.lock().await;
    if ckpt.store.manifest(job, step).is_some_and(|m| m.digest == digest) {
        // Another pull of this host completed it meanwhile.
        return Ok(0);
    }
    let fetched = fetch_unlocked(ckpt, holder, job, step, digest).await;
    ckpt.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&(job.to_owned(), step));
    fetched
}

async fn fetch_unlocked(ckpt: &Checkpoints, holder: &str, job: &str, step: u64, digest: &str) -> Result<u64, CheckpointError> {
    let holder_err = |why: String| CheckpointError::Holder { host: holder.to_string(), why };
    let manifest = match ckpt.peers.ask(holder, manifest_request(job, step, digest)).await.map_err(holder_err)? {
        CheckpointResponse::Manifest(manifest) => manifest,
        CheckpointResponse::Unavailable(why) => return Err(holder_err(why)),
        CheckpointResponse::Chunk(_) => return Err(holder_err("answered a manifest request with a chunk".into())),
    };
    if manifest.digest != digest {
        return Err(CheckpointError::Mismatch { expected: digest.to_owned(), found: manifest.digest });
    }
    let partial = ckpt.store.partial_dir(job, step, digest);
    let data = Store::data_of(&partial);
    fs::create_dir_all(&data).map_err(|source| io(&data, source))?;
    check_room(&data, &manifest)?;
    let mut transferred = 0;
    for (index, file) in manifest.files.iter().enumerate() {
        let relative = safe_relative(&file.path).ok_or_else(|| holder_err(format!("unsafe file name {:?}", file.path)))?;
        let path = data.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| io(parent, source))?;
        }
        let mut have = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if have > file.size {
            have = 0;
        }
        let mut file_out = OpenOptions::new().create(true).write(true).truncate(false).open(&path).map_err(|source| io(&path, source))?;
        file_out.set_len(have).map_err(|source| io(&path, source))?;
        file_out.seek(SeekFrom::Start(have)).map_err(|source| io(&path, source))?;
        let mut out = std::io::BufWriter::new(file_out);
        while have < file.size {
            let len = (file.size - have).min(u64::from(CHUNK_BYTES)) as u32;
            ckpt.limiter.take(u64::from(len)).await;
            let bytes = chunk(ckpt, holder, job, step, index as u32, have, len).await?;
            if bytes.is_empty() || bytes.len() > len as usize {
                return Err(holder_err(format!("sent {} bytes of {} asked at offset {have} of {}", bytes.len(), len, file.path)));
            }
            out.write_all(&bytes).map_err(|source| io(&path, source))?;
            have += bytes.len() as u64;
            transferred += bytes.len() as u64;
            CheckpointStats::add(&ckpt.stats.bytes_received, bytes.len() as u64);
        }
        let out = out.into_inner().map_err(|err| io(&path, err.into_error()))?;
        out.sync_all().map_err(|source| io(&path, source))?;
    }
    let partial_for_check = partial.clone();
    let manifest_for_check = manifest.clone();
    let digest_owned = digest.to_owned();
    let checked = tokio::task::spawn_blocking(move || check_copy(&partial_for_check, &manifest_for_check, &digest_owned))
        .await
        .map_err(|err| CheckpointError::Damaged(format!("verification task failed: {err}")))?;
    if let Err(err) = checked {
        let _ = fs::remove_dir_all(&partial);
        return Err(err);
    }
    ckpt.store.seal(job, step, &partial, &manifest)?;
    Ok(transferred)
}

async fn chunk(ckpt: &Checkpoints, holder: &str, job: &str, step: u64, file: u32, offset: u64, len: u32) -> Result<Vec<u8>, CheckpointError> {
    // Every distinct error, in order: the first (a reset mid-transfer) says more than
    // the last (the holder no longer answers).
    let mut errors: Vec<String> = Vec::new();
    let mut note = |why: String| {
        if errors.last() != Some(&why) {
            errors.push(why);
        }
    };
    for round in 0..CHUNK_TRIES {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(300 * u64::from(round))).await;
        }
        let request = CheckpointRequest::Chunk { job: job.to_owned(), step, file, offset, len };
        match ckpt.peers.ask(holder, request).await {
            Ok(CheckpointResponse::Chunk(bytes)) => return Ok(bytes),
            Ok(CheckpointResponse::Unavailable(why)) => {
                return Err(CheckpointError::Holder { host: holder.to_string(), why });
            }
            Ok(CheckpointResponse::Manifest(_)) => note("answered a chunk request with a manifest".into()),
            Err(why) => note(why),
        }
    }
    let why = format!("gave up after {CHUNK_TRIES} tries: {}", errors.join(", then "));
    Err(CheckpointError::Holder { host: holder.to_string(), why })
}

fn manifest_request(job: &str, step: u64, digest: &str) -> CheckpointRequest {
    CheckpointRequest::Manifest { job: job.to_owned(), step, digest: digest.to_owned() }
}

/// Refuses a copy that would not fit (with 5% and 64 MiB to spare).
fn check_room(dir: &Path, manifest: &Manifest) -> Result<(), CheckpointError> {
    let Ok(stat) = nix::sys::statvfs::statvfs(dir) else { return Ok(()) };
    let free = u64::from(stat.blocks_available()) * u64::from(stat.fragment_size());
    let need = manifest.size + manifest.size / 20 + 64 * 1024 * 1024;
    if free < need {
        return Err(CheckpointError::NoRoom { need, free, dir: dir.to_owned() });
    }
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io { what: format!("writing {}", path.display()), source }
}
