//! What `/proc` says about a process: memory, CPU time, I/O.
#![allow(dead_code)] // shared by mesh_bench and scale_bench, each using part of it

use anyhow::{Context, Result};

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ, 100 on every Linux ABI).
pub const USER_HZ: f64 = 100.0;

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`) or a count (`Threads`).
pub fn proc_status(pid: u32, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:"))).with_context(|| format!("no {field} for {pid}"))?;
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).with_context(|| format!("bad {field} line: {line}"))
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let after = text.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `after` starts at field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).context("malformed /proc stat");
    Ok(field(14)? + field(15)?)
}

/// Bytes and read/write syscalls of a process so far (`/proc/PID/io`: `rchar + wchar`,
/// `syscr + syscw`): on an idle agent almost all of it is its sockets.
pub fn io_counts(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).with_context(|| format!("reading /proc/{pid}/io"))?;
    let field = |name: &str| -> Result<u64> {
        let line = text.lines().find(|l| l.starts_with(&format!("{name}:"))).with_context(|| format!("no {name} for {pid}"))?;
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).with_context(|| format!("bad {name} line: {line}"))
    };
    Ok((field("rchar")? + field("wchar")?, field("syscr")? + field("syscw")?))
}

/// How many sockets a process holds open (`/proc/PID/fd` links to `socket:[…]`): on an
/// idle agent, its listeners plus one per mesh connection.
pub fn sockets(pid: u32) -> Result<usize> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("reading /proc/{pid}/fd"))?;
    Ok(dir
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count())
}
