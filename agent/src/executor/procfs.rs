//! The few facts about a process the executor reads from Linux's `/proc`.

use std::fs;

/// Fields of `/proc/PID/stat` that identify a process and its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state; `Z` is a zombie (dead, not yet reaped).
    pub state: char,
    /// Process group id.
    pub pgrp: i32,
    /// Start time in clock ticks since boot: with the pid, it names a process uniquely,
    /// because a recycled pid always has a later start time.
    pub start_time: u64,
}

impl ProcStat {
    /// Whether the process is running (not a zombie).
    pub fn is_alive(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3 of the man page, pgrp field 5, starttime field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Reads `/proc/PID/stat`; `None` when the process does not exist (or is unreadable).
pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// All pids currently in `/proc`.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Whether the process's environment holds every one of `entries` (`NAME=VALUE`).
/// Only readable for processes of the same user, which job processes are.
pub fn environ_has(pid: u32, entries: &[String]) -> bool {
    let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else { return false };
    let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
    entries.iter().all(|entry| vars.contains(&entry.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(text), Some(ProcStat { state: 'S', pgrp: 4242, start_time: 987654 }));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse_stat("4242 (x) S 1"), None);
        assert_eq!(parse_stat("no parens"), None);
    }

    #[test]
    fn reads_our_own_process() {
        let me = stat(std::process::id()).unwrap();
        assert!(me.is_alive() && me.start_time > 0);
    }
}
