//! Tools shared by the chaos and full-restart suites: a seeded fault plan, a timeline
//! of what the test did, job files for the simulated job, and the end-of-run checks of
//! Saturn's invariants over the jobs' own records and the replicated state.
//!
//! The plan is a pure function of the seed, so a failing seed replays the same choices
//! (which fault, which target, when, for how long); only the timing of the agents varies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Result};

use crate::records::{self, Record};
use crate::{eventually, Harness, SynthSweep};

/// A small seeded generator (SplitMix64): the same seed gives the same plan on every
/// machine, with no dependency on a random-number crate.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }
}

/// Which agent a fault hits: the leader of the moment, or a fixed agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Whoever leads when the fault is due.
    Leader,
    /// Agent `i` of the harness.
    Agent(usize),
}

/// What a fault does to its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// `kill -9`, restarted on its data dir after the fault's duration.
    Kill,
    /// SIGSTOP, SIGCONT after the fault's duration.
    Pause,
}

/// One fault of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When it starts, from the start of the chaos phase.
    pub at: Duration,
    /// What it does.
    pub kind: FaultKind,
    /// Whom it hits.
    pub target: Target,
    /// How long the target stays down.
    pub down_for: Duration,
}

/// Bounds of a fault plan.
#[derive(Clone, Debug)]
pub struct PlanLimits {
    /// Agents in the cluster.
    pub agents: usize,
    /// Faults may start until this long after the chaos phase begins.
    pub run_for: Duration,
    /// At most this many agents down (killed or paused) at once.
    pub max_down: usize,
    /// Range of the gap between two faults (ms).
    pub gap_ms: (u64, u64),
    /// Range of a kill's downtime (ms): past the grace period the leader declares the
    /// agent down and its jobs run elsewhere; below it they wait for it to return.
    pub kill_ms: (u64, u64),
    /// Range of a pause (ms). Kept below the grace period: a frozen agent runs no code,
    /// so it cannot fence its jobs, and a longer pause lets the majority run them
    /// elsewhere while they still run (see the README of this crate).
    pub pause_ms: (u64, u64),
}

/// The faults for `seed`: random kinds, targets (the leader about a third of the
/// time), gaps and durations, never more than `max_down` overlapping. Deterministic.
pub fn plan_faults(seed: u64, limits: &PlanLimits) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let mut plan: Vec<Fault> = Vec::new();
    let mut at = rng.between(limits.gap_ms.0, limits.gap_ms.1);
    while at < limits.run_for.as_millis() as u64 {
        let kind = if rng.below(2) == 0 { FaultKind::Kill } else { FaultKind::Pause };
        let target = if rng.below(3) == 0 { Target::Leader } else { Target::Agent(rng.below(limits.agents as u64) as usize) };
        let (lo, hi) = if kind == FaultKind::Kill { limits.kill_ms } else { limits.pause_ms };
        let fault = Fault { at: Duration::from_millis(at), kind, target, down_for: Duration::from_millis(rng.between(lo, hi)) };
        let overlapping: Vec<&Fault> = plan.iter().filter(|f| f.at + f.down_for > fault.at).collect();
        let same_agent = overlapping.iter().any(|f| matches!((f.target, target), (Target::Agent(a), Target::Agent(b)) if a == b));
        if overlapping.len() < limits.max_down && !same_agent {
            plan.push(fault);
        }
        at += rng.between(limits.gap_ms.0, limits.gap_ms.1);
    }
    plan
}

/// What the test did and when, printed as it happens and again at the end.
pub struct Timeline {
    start: Instant,
    entries: Mutex<Vec<(Duration, String)>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline { start: Instant::now(), entries: Mutex::new(Vec::new()) }
    }
}

impl Timeline {
    /// Records (and prints) one entry.
    pub fn note(&self, what: impl Into<String>) {
        let (at, what) = (self.start.elapsed(), what.into());
        eprintln!("[{:>7.2}s] {what}", at.as_secs_f64());
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).push((at, what));
    }

    /// Every entry, one line each.
    pub fn render(&self) -> String {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().map(|(at, what)| format!("  {:>7.2}s  {what}\n", at.as_secs_f64())).collect()
    }
}

/// Milliseconds since the Unix epoch (the clock the job records use).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A sweep of `jobs` simulated jobs of `steps` steps, checkpointing every
/// `checkpoint_every` steps, in `profile_group`; with `known_profile`, the step times are
/// given (no trial runs), else the jobs are profiled by trials first.
pub fn sweep(saturn: &Path, name: &str, jobs: usize, steps: u64, checkpoint_every: u64, profile_group: &str, known_profile: bool) -> String {
    let profile = "profile = { ddp = { 1 = 0.04, 2 = 0.025, 4 = 0.015 }, fsdp = { 1 = 0.045, 4 = 0.02 } }";
    SynthSweep {
        profile_group: profile_group.to_string(),
        checkpoint_every: Some(checkpoint_every),
        profile: known_profile.then(|| profile.to_string()),
        ..SynthSweep::new(name, jobs, steps)
    }
    .toml(saturn)
}

/// What the records say happened, for the report.
#[derive(Clone, Debug, Default)]
pub struct RecordSummary {
    /// Training segments (one attempt's process on one host) that ended.
    pub training_segments: usize,
    /// Trial-run segments that ended.
    pub trial_segments: usize,
    /// Segments with a `started` line and no end (their process was SIGKILLed).
    pub open_segments: Vec<Record>,
    /// Ended segments by outcome (`completed`, `terminated`, `failed`, ...).
    pub outcomes: BTreeMap<String, usize>,
    /// Training segments per job.
    pub per_job: BTreeMap<String, usize>,
}

impl RecordSummary {
    /// One paragraph for the report.
    pub fn render(&self) -> String {
        let most = self.per_job.iter().max_by_key(|(_, n)| **n);
        format!(
            "segments: {} training, {} trial, {} never ended; outcomes {:?}; most segments for one job: {:?}",
            self.training_segments,
            self.trial_segments,
            self.open_segments.len(),
            self.outcomes,
            most
        )
    }
}

/// Checks the record file: no GPU held by two jobs at once, no job running two attempts
/// at once, no attempt running twice at once on one host. A segment that never ended is
/// taken to run forever (its end is unknown), so it cannot hide an overlap.
pub fn check_records(path: &Path) -> Result<RecordSummary> {
    let all = records::read(path);
    let (ended, open) = records::segments(&all);
    let segments: Vec<Record> = ended.iter().chain(&open).cloned().collect();
    let gpus = records::gpu_overlaps(&segments);
    ensure!(gpus.is_empty(), "{} GPU overlaps, first: {:#?}", gpus.len(), gpus[0]);
    let attempts = records::concurrent_attempts(&segments);
    ensure!(attempts.is_empty(), "{} pairs of attempts ran at once, first: {:#?}", attempts.len(), attempts[0]);
    let twice = same_attempt_twice(&segments);
    ensure!(twice.is_empty(), "{} attempts ran twice at once on one host, first: {:#?}", twice.len(), twice[0]);
    let mut summary = RecordSummary { open_segments: open, ..RecordSummary::default() };
    for segment in &ended {
        *summary.outcomes.entry(segment.outcome.clone()).or_default() += 1;
        if segment.profile {
            summary.trial_segments += 1;
        } else {
            summary.training_segments += 1;
            *summary.per_job.entry(segment.job.clone()).or_default() += 1;
        }
    }
    Ok(summary)
}

/// Pairs of overlapping segments of the same attempt on the same host (a gang's members
/// on different hosts overlap by design).
fn same_attempt_twice(segments: &[Record]) -> Vec<(Record, Record)> {
    let mut found = Vec::new();
    for (i, a) in segments.iter().enumerate() {
        for b in &segments[i + 1..] {
            let (a_end, b_end) = (a.end_ms.unwrap_or(u64::MAX), b.end_ms.unwrap_or(u64::MAX));
            if a.job == b.job && a.attempt == b.attempt && a.agent == b.agent && a.start_ms < b_end && b.start_ms < a_end {
                found.push((a.clone(), b.clone()));
            }
        }
    }
    found
}

/// Waits (up to `timeout`) until every agent lists every acknowledged id as `completed`.
/// Followers may lag the leader, hence the polling; a job that ended in another state is
/// reported at once with its error.
pub async fn check_all_completed_everywhere(harness: &Harness, ids: &[String], timeout: Duration) -> Result<()> {
    let wanted: BTreeSet<&String> = ids.iter().collect();
    for i in 0..harness.cluster.agents.len() {
        let name = harness.cluster.agents[i].name.clone();
        eventually(&format!("{name} lists every acknowledged job as completed"), timeout, || async {
            let jobs = harness.jobs(i).await?;
            for job in jobs.iter().filter(|j| wanted.contains(&j.id)) {
                ensure!(
                    !matches!(job.state.as_str(), "failed" | "cancelled"),
                    "{name}: job {} ended {} after {} attempts: {:?}",
                    job.id,
                    job.state,
                    job.attempt,
                    job.error
                );
            }
            let listed: BTreeSet<&String> = jobs.iter().map(|j| &j.id).collect();
            let missing: Vec<&String> = wanted.iter().filter(|id| !listed.contains(*id)).copied().collect();
            ensure!(missing.is_empty(), "{name} does not list {} acknowledged jobs, e.g. {}", missing.len(), missing[0]);
            let pending: Vec<String> =
                jobs.iter().filter(|j| wanted.contains(&j.id) && j.state != "completed").map(|j| format!("{} {}", j.id, j.state)).collect();
            ensure!(pending.is_empty(), "{name}: {} jobs not completed yet: {}", pending.len(), pending.join(", "));
            Ok(Some(()))
        })
        .await?;
    }
    Ok(())
}

/// The cluster's counters from a `/metrics` text (`dispatches`, `preemptions`,
/// `lost_attempts`, `restarts`, ...), by name without any prefix.
pub fn counters(metrics: &str, names: &[&str]) -> BTreeMap<String, f64> {
    let mut found = BTreeMap::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((metric, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        for name in names {
            let metric = metric.strip_suffix("_total").unwrap_or(metric);
            if metric == *name || metric.ends_with(&format!("_{name}")) {
                found.insert((*name).to_string(), value);
            }
        }
    }
    found
}

/// Copies what explains a failure — the job records, the agents' logs and the jobs'
/// logs, not the Raft stores — out of the test's temporary directory (which is removed
/// when the harness is dropped) into a directory that stays; returns its path.
pub fn keep_evidence(harness: &Harness, label: &str) -> std::path::PathBuf {
    let kept = std::env::temp_dir().join(format!("saturn-{label}-{}-{}", std::process::id(), now_ms()));
    copy_tree(&harness.dir(), &kept);
    kept
}

fn copy_tree(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else { return };
    let _ = std::fs::create_dir_all(to);
    for entry in entries.filter_map(|e| e.ok()) {
        let (path, name) = (entry.path(), entry.file_name());
        if path.is_dir() {
            if name != "raft" && name != "checkpoints" {
                copy_tree(&path, &to.join(&name));
            }
        } else {
            let _ = std::fs::copy(&path, to.join(&name));
        }
    }
}

/// Awaits an API request for at most `limit`: a frozen agent accepts the connection
/// and never answers.
pub async fn within<T>(limit: Duration, request: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(limit, request).await {
        Ok(answer) => answer,
        Err(_) => anyhow::bail!("no answer within {limit:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PlanLimits {
        PlanLimits {
            agents: 5,
            run_for: Duration::from_secs(120),
            max_down: 2,
            gap_ms: (500, 3000),
            kill_ms: (1000, 8000),
            pause_ms: (500, 3000),
        }
    }

    #[test]
    fn a_seed_always_gives_the_same_plan_and_seeds_differ() {
        assert_eq!(plan_faults(7, &limits()), plan_faults(7, &limits()));
        assert_ne!(plan_faults(7, &limits()), plan_faults(8, &limits()));
    }

    #[test]
    fn a_plan_never_has_more_than_a_minority_down_at_once() {
        for seed in 0..50 {
            let plan = plan_faults(seed, &limits());
            assert!(plan.len() > 10, "seed {seed}: a two-minute plan has faults");
            for fault in &plan {
                let down = plan.iter().filter(|f| f.at <= fault.at && f.at + f.down_for > fault.at).count();
                assert!(down <= 2, "seed {seed}: {down} agents down at {:?}", fault.at);
            }
        }
    }
}
