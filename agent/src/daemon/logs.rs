//! Job logs across hosts: a job's output lives in the data dir of the agent that ran
//! each attempt; any agent serves `GET /v1/jobs/{id}/logs` by reading its own files or
//! asking the right peer over the mesh (`Channel::Logs`).
//!
//! A log position is one `u64` cursor: the attempt number in the high 24 bits and the
//! logical offset within that attempt's log in the low 40 (1 TiB, far above the rotation
//! bound), so a follower walks attempt after attempt with a single number.

use std::path::Path;

use saturn_consensus::{ClusterState, JobId};
use serde::{Deserialize, Serialize};

use crate::api::LogPiece;
use crate::executor::{attempt_log_path, read_from, AttemptKey};

const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// Largest piece one mesh request carries.
pub const MAX_PIECE: usize = 1024 * 1024;

/// A peer asks for a piece of one attempt's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogsRequest {
    /// The job.
    pub job: String,
    /// The attempt.
    pub attempt: u32,
    /// Logical offset in that attempt's log.
    pub offset: u64,
    /// Most bytes wanted.
    pub max_bytes: u32,
}

/// The answer to a [`LogsRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogsResponse {
    /// The bytes (empty at the end of what is written so far).
    pub data: Vec<u8>,
    /// Offset to ask for next.
    pub next_offset: u64,
}

/// Splits a cursor into (attempt, offset); cursor 0 means "the first attempt, offset 0".
pub fn split_cursor(cursor: u64) -> (u32, u64) {
    (((cursor >> OFFSET_BITS) as u32).max(1), cursor & OFFSET_MASK)
}

/// The cursor of `offset` in `attempt`'s log.
pub fn make_cursor(attempt: u32, offset: u64) -> u64 {
    (u64::from(attempt) << OFFSET_BITS) | (offset & OFFSET_MASK)
}

/// Which agent holds the log of `attempt` of `job`: the live attempt's rank-0 host, else
/// the host of the job's last training placement (earlier attempts on other hosts are
/// looked for there too and read as empty when absent).
pub fn host_of(state: &ClusterState, job: &JobId, attempt: u32) -> Option<String> {
    let record = state.job(job)?;
    if let Some(live) = record.live.as_ref().filter(|live| live.attempt == attempt) {
        return live.placement.first().map(|hg| hg.host.clone());
    }
    record.placement.first().map(|hg| hg.host.clone())
}

/// Reads a piece of this agent's own copy of an attempt's log.
pub fn read_local(data_dir: &Path, request: &LogsRequest) -> std::io::Result<LogsResponse> {
    let path = attempt_log_path(data_dir, &AttemptKey::new(request.job.clone(), request.attempt));
    let max = (request.max_bytes as usize).min(MAX_PIECE);
    let chunk = read_from(&path, request.offset, max)?;
    Ok(LogsResponse { data: chunk.data, next_offset: chunk.next_offset })
}

/// Turns one attempt's answer into a piece of the whole job's log: at the end of an
/// attempt that is not the last, the cursor moves on to the next attempt, and the piece
/// is a header line naming it (never empty: an empty piece means "nothing more yet").
pub fn piece(attempt: u32, last_attempt: u32, response: LogsResponse) -> LogPiece {
    if response.data.is_empty() && attempt < last_attempt {
        let data = format!("--- attempt {} ---\n", attempt + 1).into_bytes();
        return LogPiece { data, next_offset: make_cursor(attempt + 1, 0) };
    }
    LogPiece { data: response.data, next_offset: make_cursor(attempt, response.next_offset) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(split_cursor(0), (1, 0));
        assert_eq!(split_cursor(make_cursor(3, 12345)), (3, 12345));
    }

    #[test]
    fn an_exhausted_attempt_moves_the_cursor_on() {
        let done = LogsResponse { data: Vec::new(), next_offset: 10 };
        let p = piece(1, 2, done.clone());
        assert_eq!(split_cursor(p.next_offset), (2, 0));
        assert_eq!(p.data, b"--- attempt 2 ---\n".to_vec());
        let last = piece(2, 2, done);
        assert!(last.data.is_empty());
        assert_eq!(split_cursor(last.next_offset), (2, 10));
    }
}
