//! The simulated job's own records (`SATURN_SYNTH_RECORD_FILE`) and the invariants
//! checked on them: no GPU used by two jobs at once, no job running two attempts at once.

use std::collections::BTreeMap;
use std::path::Path;


/// One line of the record file, as the simulated job writes it.
pub use saturn_agent::synth_job::record::SegmentRecord as Record;

/// Reads every record; a missing file is no records.
pub fn read(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// Segments that ended (with their end time), and `started` records that never ended
/// (a process killed with SIGKILL).
pub fn segments(records: &[Record]) -> (Vec<Record>, Vec<Record>) {
    let ended: Vec<Record> = records.iter().filter(|r| r.end_ms.is_some()).cloned().collect();
    let open = records
        .iter()
        .filter(|r| r.end_ms.is_none())
        .filter(|r| !ended.iter().any(|e| e.job == r.job && e.attempt == r.attempt && e.agent == r.agent && e.start_ms == r.start_ms))
        .cloned()
        .collect();
    (ended, open)
}

fn overlaps(a: &Record, b: &Record) -> bool {
    let (a_end, b_end) = (a.end_ms.unwrap_or(u64::MAX), b.end_ms.unwrap_or(u64::MAX));
    a.start_ms < b_end && b.start_ms < a_end
}

/// Pairs of segments of different jobs that used the same (agent, GPU) at the same time.
pub fn gpu_overlaps(segments: &[Record]) -> Vec<(Record, Record)> {
    let mut by_gpu: BTreeMap<(String, u32), Vec<&Record>> = BTreeMap::new();
    for s in segments {
        for gpu in &s.gpus {
            by_gpu.entry((s.agent.clone(), *gpu)).or_default().push(s);
        }
    }
    let mut found = Vec::new();
    for list in by_gpu.values() {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                if a.job != b.job && overlaps(a, b) {
                    found.push(((*a).clone(), (*b).clone()));
                }
            }
        }
    }
    found
}

/// Pairs of segments of one job, of different attempts, that ran at the same time.
pub fn concurrent_attempts(segments: &[Record]) -> Vec<(Record, Record)> {
    let mut found = Vec::new();
    for (i, a) in segments.iter().enumerate() {
        for b in &segments[i + 1..] {
            if a.job == b.job && a.attempt != b.attempt && overlaps(a, b) {
                found.push((a.clone(), b.clone()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(job: &str, attempt: u32, agent: &str, gpus: &[u32], start: u64, end: u64) -> Record {
        Record {
            job: job.into(),
            attempt,
            agent: agent.into(),
            gpus: gpus.to_vec(),
            technique: "ddp".into(),
            start_ms: start,
            end_ms: Some(end),
            start_step: 0,
            end_step: Some(1),
            outcome: "completed".into(),
            profile: false,
        }
    }

    #[test]
    fn overlapping_jobs_on_one_gpu_are_found() {
        let a = seg("j-1", 1, "x", &[0, 1], 0, 100);
        let b = seg("j-2", 1, "x", &[1], 50, 150);
        let c = seg("j-3", 1, "x", &[1], 100, 200);
        let d = seg("j-4", 1, "y", &[0], 0, 100);
        let found = gpu_overlaps(&[a.clone(), b.clone(), c, d]);
        assert_eq!(found.len(), 2, "a-b and b-c overlap on x:1, nothing else: {found:?}");
    }

    #[test]
    fn concurrent_attempts_of_one_job_are_found() {
        let a = seg("j-1", 1, "x", &[0], 0, 100);
        let b = seg("j-1", 2, "y", &[0], 90, 200);
        let c = seg("j-1", 3, "y", &[0], 200, 300);
        assert_eq!(concurrent_attempts(&[a, b, c]).len(), 1);
    }
}
