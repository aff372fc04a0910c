//! Bounded per-attempt log files: a job's stdout and stderr, with rotation so that a
//! chatty job cannot fill the disk.
//!
//! An attempt's log is `NAME` plus at most one rotated `NAME.1`, each at most
//! [`LogLimits::max_file_bytes`]. Readers address the log by a *logical offset*: bytes
//! ever written to it. The logical offset where `NAME` starts is kept in a sidecar
//! `NAME.base`, so `saturn job logs -f` can resume from an offset across rotations and
//! learn how much it missed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Size limits of one attempt's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Most bytes in the live file and in the rotated one; the log keeps at most twice this.
    pub max_file_bytes: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self { max_file_bytes: 8 * 1024 * 1024 }
    }
}

/// Appends lines to an attempt's log, rotating when the live file is full.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    /// Bytes in the live file.
    len: u64,
    /// Logical offset of the live file's first byte.
    base: u64,
    limits: LogLimits,
}

impl RotatingLog {
    /// Opens (or creates) the log at `path`, appending to what is there.
    pub fn open(path: &Path, limits: LogLimits) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { path: path.to_owned(), file, len, base: read_base(path), limits })
    }

    /// Appends `line` and a newline, rotating first if it would not fit.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let size = line.len() as u64 + 1;
        if self.len > 0 && self.len + size > self.limits.max_file_bytes {
            self.rotate()?;
        }
        let mut record = Vec::with_capacity(line.len() + 1);
        record.extend_from_slice(line);
        record.push(b'\n');
        self.file.write_all(&record)?;
        self.len += size;
        Ok(())
    }

    /// Logical offset just past the last byte written.
    pub fn end(&self) -> u64 {
        self.base + self.len
    }

    fn rotate(&mut self) -> io::Result<()> {
        fs::rename(&self.path, rotated_path(&self.path))?;
        self.base += self.len;
        // The sidecar is replaced atomically so a reader never sees half a number.
        let tmp = suffixed(&self.path, ".base.tmp");
        fs::write(&tmp, self.base.to_string())?;
        fs::rename(&tmp, suffixed(&self.path, ".base"))?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

/// Bytes read from a log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogChunk {
    /// The bytes, starting at the requested offset (or the oldest byte still kept).
    pub data: Vec<u8>,
    /// Offset to ask for next to continue after `data`.
    pub next_offset: u64,
    /// Bytes between the requested offset and `data` that were rotated away.
    pub skipped: u64,
}

/// Reads up to `max_bytes` of the log at `path` from logical `offset`.
/// A log that does not exist reads as empty.
pub fn read_from(path: &Path, offset: u64, max_bytes: usize) -> io::Result<LogChunk> {
    // A rotation between reading the layout and the files would mix them up; the
    // sidecar changes on every rotation, so re-read until it is stable.
    for _ in 0..3 {
        let layout = Layout::of(path);
        let chunk = layout.read(path, offset, max_bytes)?;
        if read_base(path) == layout.base {
            return Ok(chunk);
        }
    }
    Layout::of(path).read(path, offset, max_bytes)
}

/// Reads the last `max_bytes` (or fewer) of the log, starting at a line boundary.
pub fn read_tail(path: &Path, max_bytes: usize) -> io::Result<LogChunk> {
    let layout = Layout::of(path);
    // One byte more than asked: if it is a newline, the tail starts on a line boundary.
    let offset = layout.end().saturating_sub((max_bytes as u64).saturating_add(1)).max(layout.start());
    let mut chunk = read_from(path, offset, max_bytes.saturating_add(1))?;
    if offset > layout.start() {
        let cut = chunk.data.iter().position(|&b| b == b'\n').map_or(chunk.data.len(), |i| i + 1);
        chunk.data.drain(..cut);
    }
    chunk.skipped = 0;
    Ok(chunk)
}

/// Path of the rotated file of the log at `path`.
pub fn rotated_path(path: &Path) -> PathBuf {
    suffixed(path, ".1")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn read_base(path: &Path) -> u64 {
    fs::read_to_string(suffixed(path, ".base")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Where the two files sit in the logical byte stream.
struct Layout {
    base: u64,
    live_len: u64,
    rotated_len: u64,
}

impl Layout {
    fn of(path: &Path) -> Self {
        Self { base: read_base(path), live_len: file_len(path), rotated_len: file_len(&rotated_path(path)) }
    }

    fn start(&self) -> u64 {
        self.base.saturating_sub(self.rotated_len)
    }

    fn end(&self) -> u64 {
        self.base + self.live_len
    }

    fn read(&self, path: &Path, offset: u64, max_bytes: usize) -> io::Result<LogChunk> {
        let skipped = self.start().saturating_sub(offset);
        let mut at = offset.clamp(self.start(), self.end());
        let mut data = Vec::new();
        let segments = [(rotated_path(path), self.start(), self.base), (path.to_owned(), self.base, self.end())];
        for (file, from, to) in segments {
            if at >= to || at < from || data.len() >= max_bytes {
                continue;
            }
            let want = ((to - at) as usize).min(max_bytes - data.len());
            let got = read_range(&file, at - from, want, &mut data)?;
            at += got as u64;
        }
        Ok(LogChunk { data, next_offset: at, skipped })
    }
}

fn read_range(path: &Path, offset: u64, len: usize, into: &mut Vec<u8>) -> io::Result<usize> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    file.seek(SeekFrom::Start(offset))?;
    let before = into.len();
    file.take(len as u64).read_to_end(into)?;
    Ok(into.len() - before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_lines(log: &mut RotatingLog, range: std::ops::Range<u32>) {
        for i in range {
            log.write_line(format!("line {i:04}").as_bytes()).unwrap();
        }
    }

    #[test]
    fn rotation_keeps_at_most_two_files_of_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/1.log");
        let mut log = RotatingLog::open(&path, LogLimits { max_file_bytes: 100 }).unwrap();
        write_lines(&mut log, 0..100); // 10 bytes a line
        assert!(file_len(&path) <= 100 && file_len(&rotated_path(&path)) <= 100);
        assert_eq!(log.end(), 1000);
        let tail = read_tail(&path, 30).unwrap();
        assert_eq!(String::from_utf8(tail.data).unwrap(), "line 0097\nline 0098\nline 0099\n");
        let everything = read_tail(&path, usize::MAX).unwrap();
        assert!(everything.data.starts_with(b"line 0080\n") && everything.data.len() == 200);
    }

    #[test]
    fn reading_from_an_offset_follows_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut log = RotatingLog::open(&path, LogLimits { max_file_bytes: 50 }).unwrap();
        write_lines(&mut log, 0..3);
        let first = read_from(&path, 0, 1 << 20).unwrap();
        assert_eq!(first.data.len(), 30);
        write_lines(&mut log, 3..7); // rotates once
        let next = read_from(&path, first.next_offset, 1 << 20).unwrap();
        assert_eq!(String::from_utf8(next.data).unwrap(), "line 0003\nline 0004\nline 0005\nline 0006\n");
        assert_eq!((next.next_offset, next.skipped), (70, 0));
    }

    #[test]
    fn an_offset_rotated_away_reports_what_was_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut log = RotatingLog::open(&path, LogLimits { max_file_bytes: 20 }).unwrap();
        write_lines(&mut log, 0..10);
        let chunk = read_from(&path, 0, 1 << 20).unwrap();
        assert_eq!(chunk.skipped, 60);
        assert_eq!(String::from_utf8(chunk.data).unwrap(), "line 0006\nline 0007\nline 0008\nline 0009\n");
    }

    #[test]
    fn reopening_appends_and_keeps_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        write_lines(&mut RotatingLog::open(&path, LogLimits { max_file_bytes: 25 }).unwrap(), 0..3);
        let mut log = RotatingLog::open(&path, LogLimits { max_file_bytes: 25 }).unwrap();
        assert_eq!(log.end(), 30);
        write_lines(&mut log, 3..4);
        assert_eq!(read_from(&path, 30, 100).unwrap().data, b"line 0003\n");
    }

    #[test]
    fn a_missing_log_reads_as_empty() {
        let chunk = read_from(Path::new("/nonexistent/saturn/1.log"), 0, 10).unwrap();
        assert_eq!(chunk, LogChunk::default());
    }
}
