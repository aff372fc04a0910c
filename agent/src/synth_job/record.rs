//! Records for invariant checks: with `SATURN_SYNTH_RECORD_FILE` set, the simulated
//! job appends one JSON line when an attempt segment starts and one when it ends, so
//! tests can check that no two jobs overlapped on a GPU and no job ran two attempts
//! at once.
//!
//! Several processes append to the same file: each line is written with one `write`
//! on a file opened with `O_APPEND`, and kept well under 4 KiB, so lines never mix.
//! A process killed with SIGKILL leaves only its `started` line.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One line of the record file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// Job id.
    pub job: String,
    /// Attempt number.
    pub attempt: u32,
    /// Agent that ran it.
    pub agent: String,
    /// GPU indices on that agent.
    pub gpus: Vec<u32>,
    /// Technique it ran as.
    pub technique: String,
    /// Start, in milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// End, in milliseconds since the Unix epoch; `null` in the `started` line.
    pub end_ms: Option<u64>,
    /// Step it started from.
    pub start_step: u64,
    /// Steps done at the end; `null` in the `started` line.
    pub end_step: Option<u64>,
    /// `started`, then one of `completed`, `profiled`, `terminated`, `failed`, `infeasible`.
    pub outcome: String,
    /// Whether this was a trial run.
    pub profile: bool,
}

/// Lines longer than this are refused rather than risk a torn append.
const MAX_LINE: usize = 4000;

/// Appends `record` as one line to `path` with a single `write`.
pub fn append(path: &Path, record: &SegmentRecord) -> io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    if line.len() > MAX_LINE {
        return Err(io::Error::other("record line too long for an atomic append"));
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let written = file.write(&line)?;
    if written != line.len() {
        return Err(io::Error::other("short write to the record file"));
    }
    Ok(())
}
