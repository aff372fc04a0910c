//! Answering other agents' pulls from this host's store. A manifest is served only
//! after the copy has been verified against the recorded digest: a copy damaged on
//! disk is never handed out, and its record is dropped through Raft (so the next
//! resume or replica uses another copy).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use saturn_consensus::codec::{decode, encode};
use saturn_consensus::{Command, JobId};

use super::digest::safe_relative;
use super::store::Store;
use super::wire::{CheckpointRequest, CheckpointResponse, CHUNK_BYTES};
use super::{CheckpointError, CheckpointStats, Checkpoints};
use crate::api::AgentServices;
use crate::cluster::now_ms;
use crate::mesh::{MeshResponse, Responder};

/// Serves `Channel::Checkpoint` requests.
#[derive(Clone)]
pub struct CheckpointServer {
    /// This agent's checkpoint parts.
    pub ckpt: Checkpoints,
    /// To record a damaged copy's loss.
    pub services: Arc<dyn AgentServices>,
}

impl CheckpointServer {
    /// Answers one request body on a blocking thread (it reads and hashes files).
    pub fn serve(&self, body: Vec<u8>, responder: Responder) {
        let server = self.clone();
        tokio::task::spawn_blocking(move || {
            let answer = match decode::<CheckpointRequest>("checkpoint request", &body) {
                Ok(request) => server.answer(request),
                Err(err) => CheckpointResponse::Unavailable(err.to_string()),
            };
            responder.send(match encode("checkpoint response", &answer) {
                Ok(bytes) => MeshResponse::Ok(bytes),
                Err(err) => MeshResponse::Err(err.to_string()),
            });
        });
    }

    /// The answer to one request (blocking).
    pub fn answer(&self, request: CheckpointRequest) -> CheckpointResponse {
        match request {
            CheckpointRequest::Manifest { job, step, digest } => match self.ckpt.store.verify(&job, step, &digest) {
                Ok(manifest) => CheckpointResponse::Manifest(manifest),
                Err(err) => {
                    self.drop_record(&job, step, &err);
                    CheckpointResponse::Unavailable(format!("{}: checkpoint step {step}: {err}", self.ckpt.agent))
                }
            },
            CheckpointRequest::Chunk { job, step, file, offset, len } => match read_chunk(&self.ckpt.store, &job, step, file, offset, len) {
                Ok(bytes) => {
                    CheckpointStats::add(&self.ckpt.stats.bytes_sent, bytes.len() as u64);
                    CheckpointResponse::Chunk(bytes)
                }
                Err(err) => CheckpointResponse::Unavailable(format!("{}: checkpoint step {step}: {err}", self.ckpt.agent)),
            },
        }
    }

    /// This host is recorded as a holder but its copy is gone or damaged: say so.
    fn drop_record(&self, job: &str, step: u64, err: &CheckpointError) {
        let id = JobId(job.to_string());
        let me = self.ckpt.agent.clone();
        let recorded = self.services.cluster().state().job(&id).and_then(|r| r.checkpoints.get(&step).map(|c| c.holders.contains(&me)));
        if recorded != Some(true) {
            return;
        }
        tracing::warn!(%job, step, %err, "this host's checkpoint copy failed verification; dropping its record");
        let command = Command::CheckpointDropped { job: id, step, host: me, reason: format!("copy failed verification: {err}"), at_ms: now_ms() };
        let services = self.services.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = services.cluster().propose(command).await {
                    tracing::warn!(%err, "could not record the loss of a damaged checkpoint copy");
                }
            });
        }
    }
}

fn read_chunk(store: &Store, job: &str, step: u64, file: u32, offset: u64, len: u32) -> Result<Vec<u8>, CheckpointError> {
    let manifest = store.manifest(job, step).ok_or(CheckpointError::NoCopy { step })?;
    let entry = manifest.files.get(file as usize).ok_or_else(|| CheckpointError::Damaged(format!("no file {file}")))?;
    let relative = safe_relative(&entry.path).ok_or_else(|| CheckpointError::BadName(entry.path.clone().into()))?;
    let path = Store::data_of(&store.step_dir(job, step)).join(relative);
    let io = |source| CheckpointError::Io { what: format!("reading {}", path.display()), source };
    let mut handle = File::open(&path).map_err(io)?;
    handle.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut bytes = Vec::with_capacity(len.min(CHUNK_BYTES) as usize);
    handle.take(u64::from(len.min(CHUNK_BYTES))).read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}
