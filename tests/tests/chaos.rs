//! Chaos soak: 5 agents run sweeps of the simulated job while a seeded plan kills
//! (`kill -9`, restarted on the data dir later) and freezes (SIGSTOP, then SIGCONT) them,
//! the leader included, never more than 2 at once. Then everything is healed, every job
//! must end, and the invariants are checked:
//! - no acknowledged job is lost: every agent lists every acknowledged id;
//! - every job that can finish does finish: all of them `completed`;
//! - no GPU is held by two jobs at once, no job runs two attempts at once (the jobs' own
//!   records, which do not depend on the agents telling the truth).
//!
//! `SATURN_CHAOS_SEED` picks the plan (printed, replayable), `SATURN_CHAOS_SECS` the
//! length of the chaos phase, `SATURN_CHAOS_MAX_PAUSE_MS` the longest freeze (default
//! 2 s, half the 4 s grace period: see `PlanLimits::pause_ms`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use saturn_agent::cli::client::{encode_query, ApiClient};
use saturn_agent::local_cluster::LocalCluster;
use saturn_agent::views::{StatusView, SubmitView};
use saturn_tests::chaos::{
    check_all_completed_everywhere, check_records, counters, keep_evidence, plan_faults, sweep, within, Fault, FaultKind, PlanLimits,
    Target, Timeline,
};
use saturn_tests::{eventually, Harness, Setup};

const AGENTS: usize = 5;
/// A minority of 5.
const MAX_DOWN: usize = 2;
const DEFAULT_SEED: u64 = 20_261_126;
const DEFAULT_SECS: u64 = 40;
/// A new sweep this often during the chaos phase.
const SUBMIT_EVERY: Duration = Duration::from_secs(5);
const JOBS_PER_SWEEP: usize = 3;
const STEPS: u64 = 500;
const CHECKPOINT_EVERY: u64 = 25;
/// A request to a frozen agent hangs: every request has this limit.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_while_agents_crash_and_freeze() {
    let seed = env_u64("SATURN_CHAOS_SEED", DEFAULT_SEED);
    let run_for = Duration::from_secs(env_u64("SATURN_CHAOS_SECS", DEFAULT_SECS));
    let mut harness = Harness::start(&Setup::new(AGENTS)).expect("agents start");
    let timeline = Timeline::default();
    timeline.note(format!("seed {seed} (SATURN_CHAOS_SEED), chaos for {run_for:?} (SATURN_CHAOS_SECS)"));
    if let Err(err) = scenario(&mut harness, &timeline, seed, run_for).await {
        let kept = keep_evidence(&harness, "chaos");
        panic!("seed {seed}: {err:#}\ntimeline:\n{}\n{}\nrecords and logs kept in {}", timeline.render(), harness.logs(), kept.display());
    }
}

async fn scenario(harness: &mut Harness, timeline: &Timeline, seed: u64, run_for: Duration) -> Result<()> {
    harness
        .wait_status(0, "5 healthy voters and a leader", Duration::from_secs(60), |s| {
            s.leader.is_some() && s.agents.iter().filter(|a| a.healthy && a.role == "voter").count() == AGENTS
        })
        .await?;
    timeline.note("5 agents formed a cluster, all voters");
    // Grace period 4 s (Setup::new): some kills outlast it (the leader declares the agent
    // down, its jobs run elsewhere), some do not; pauses stay at half of it (see PlanLimits).
    let limits = PlanLimits {
        agents: AGENTS,
        run_for,
        max_down: MAX_DOWN,
        gap_ms: (1000, 3500),
        kill_ms: (1500, 7000),
        pause_ms: (800, env_u64("SATURN_CHAOS_MAX_PAUSE_MS", 2000)),
    };
    let plan = plan_faults(seed, &limits);
    timeline.note(format!("plan: {} faults: {}", plan.len(), describe(&plan)));

    let clients: Vec<ApiClient> = (0..AGENTS).map(|i| harness.client(i)).collect();
    let down: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let (saturn, workdir) = (harness.saturn.clone(), harness.dir());
    let chaos = Chaos { cluster: &mut harness.cluster, clients: &clients, down: down.clone(), timeline, stats: Stats::default() };
    let submitter = submit_sweeps(&clients, &down, timeline, &saturn, &workdir, run_for);
    let (stats, acknowledged) = tokio::join!(chaos.run(&plan, run_for), submitter);
    let stats = stats?;
    anyhow::ensure!(!acknowledged.is_empty(), "no sweep was acknowledged during the chaos phase");
    timeline.note(format!("chaos over, everything healed: {stats:?}"));

    harness.wait_formed(0, AGENTS, Duration::from_secs(60)).await?;
    timeline.note(format!("5 agents healthy again; {} jobs acknowledged", acknowledged.len()));
    // Submissions whose answer was lost may have committed too: wait for every job.
    let listed: Vec<String> = harness.jobs(0).await?.into_iter().map(|j| j.id).collect();
    let all: Vec<String> = listed.iter().chain(&acknowledged).cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let ended = harness.wait_jobs_ended(0, &all, Duration::from_secs(180)).await?;
    timeline.note(format!("all {} jobs ended", ended.len()));
    // Every job of these sweeps can finish, acknowledged or not.
    if let Some(job) = ended.iter().find(|j| j.state != "completed") {
        anyhow::bail!("{} ended {} after {} attempts: {:?}", job.id, job.state, job.attempt, job.error);
    }
    check_all_completed_everywhere(harness, &acknowledged, Duration::from_secs(30)).await?;
    let records = check_records(&harness.records)?;

    let attempts: u32 = ended.iter().map(|j| j.attempt).sum();
    let most = ended.iter().max_by_key(|j| j.attempt).map(|j| (j.id.clone(), j.attempt));
    let metrics = clients[0].get_text("/metrics").await?;
    let names = ["dispatches", "preemptions", "lost_attempts", "restarts", "raft_leader_changes"];
    eprintln!(
        "\nchaos seed {seed}: PASSED\ntimeline:\n{}faults: {stats:?}\njobs: {} ({} acknowledged), attempts {attempts} \
         (trials included), most attempts {most:?}\ncluster counters (agent-0): {:?}\nrecords: {}\n",
        timeline.render(),
        ended.len(),
        acknowledged.len(),
        counters(&metrics, &names),
        records.render()
    );
    Ok(())
}

fn describe(plan: &[Fault]) -> String {
    let one = |f: &Fault| {
        let target = match f.target {
            Target::Leader => "leader".to_string(),
            Target::Agent(i) => format!("agent-{i}"),
        };
        format!("{:.1}s {:?} {target} {:.1}s", f.at.as_secs_f64(), f.kind, f.down_for.as_secs_f64())
    };
    plan.iter().map(one).collect::<Vec<_>>().join("; ")
}

/// What the fault driver did.
#[derive(Debug, Default)]
struct Stats {
    kills: usize,
    pauses: usize,
    leader_hits: usize,
    restarts: usize,
    skipped: usize,
}

/// Carries out the plan: faults when due, recoveries when their time is up.
struct Chaos<'a> {
    cluster: &'a mut LocalCluster,
    clients: &'a [ApiClient],
    down: Arc<Mutex<BTreeSet<usize>>>,
    timeline: &'a Timeline,
    stats: Stats,
}

impl Chaos<'_> {
    async fn run(mut self, plan: &[Fault], run_for: Duration) -> Result<Stats> {
        let start = Instant::now();
        let mut recoveries: BTreeMap<usize, (Instant, FaultKind)> = BTreeMap::new();
        let mut next = 0;
        loop {
            let now = Instant::now();
            let due: Vec<usize> = recoveries.iter().filter(|(_, (at, _))| *at <= now).map(|(i, _)| *i).collect();
            for i in due {
                if let Some((_, kind)) = recoveries.remove(&i) {
                    self.recover(i, kind)?;
                }
            }
            if let Some(fault) = plan.get(next).filter(|f| start + f.at <= now) {
                next += 1;
                if let Some(i) = self.inject(fault, recoveries.len()).await? {
                    recoveries.insert(i, (Instant::now() + fault.down_for, fault.kind));
                }
            }
            if next >= plan.len() && recoveries.is_empty() && start.elapsed() >= run_for {
                return Ok(self.stats);
            }
            // The driver's clock tick: faults are due at planned times, not on a condition.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Applies one fault; returns the agent hit, or `None` when it was skipped.
    async fn inject(&mut self, fault: &Fault, down_now: usize) -> Result<Option<usize>> {
        let target = match fault.target {
            Target::Agent(i) => Some(i),
            Target::Leader => self.leader().await,
        };
        let is_down = |i: usize| self.down.lock().unwrap_or_else(|p| p.into_inner()).contains(&i);
        let why_not = match target {
            None => Some("no leader known".to_string()),
            Some(i) if is_down(i) => Some(format!("agent-{i} is down already")),
            Some(_) if down_now >= MAX_DOWN => Some(format!("{down_now} agents are down already")),
            Some(_) => None,
        };
        let (Some(i), None) = (target, &why_not) else {
            self.stats.skipped += 1;
            self.timeline.note(format!("skip {:?} of {:?}: {}", fault.kind, fault.target, why_not.unwrap_or_default()));
            return Ok(None);
        };
        let name = self.cluster.agents[i].name.clone();
        let whom = if fault.target == Target::Leader { format!("{name} (the leader)") } else { name };
        self.stats.leader_hits += usize::from(fault.target == Target::Leader);
        match fault.kind {
            FaultKind::Kill => {
                self.cluster.signal(i, Signal::SIGKILL)?;
                self.cluster.kill(i)?;
                self.stats.kills += 1;
                self.timeline.note(format!("kill -9 {whom} for {:.1}s", fault.down_for.as_secs_f64()));
            }
            FaultKind::Pause => {
                self.cluster.signal(i, Signal::SIGSTOP)?;
                self.stats.pauses += 1;
                self.timeline.note(format!("SIGSTOP {whom} for {:.1}s", fault.down_for.as_secs_f64()));
            }
        }
        self.down.lock().unwrap_or_else(|p| p.into_inner()).insert(i);
        Ok(Some(i))
    }

    fn recover(&mut self, i: usize, kind: FaultKind) -> Result<()> {
        let name = self.cluster.agents[i].name.clone();
        match kind {
            FaultKind::Kill => {
                self.cluster.restart(i)?;
                self.stats.restarts += 1;
                self.timeline.note(format!("restart {name} on its data dir"));
            }
            FaultKind::Pause => {
                self.cluster.signal(i, Signal::SIGCONT)?;
                self.timeline.note(format!("SIGCONT {name}"));
            }
        }
        self.down.lock().unwrap_or_else(|p| p.into_inner()).remove(&i);
        Ok(())
    }

    /// The leader as the first agent that is up (and answers) sees it.
    async fn leader(&self) -> Option<usize> {
        let up: Vec<usize> = {
            let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
            (0..AGENTS).filter(|i| !down.contains(i)).collect()
        };
        for i in up {
            if let Ok(status) = within(ANSWER_WITHIN, self.clients[i].get_json::<StatusView>("/v1/status")).await {
                let leader = status.leader?;
                return self.cluster.agents.iter().position(|a| a.name == leader);
            }
        }
        None
    }
}

/// Submits a sweep every [`SUBMIT_EVERY`] during the chaos phase, through agents that
/// are up (another one when an answer does not come); returns the acknowledged ids.
/// Even sweeps share a profile group measured by trial runs (so trials run under chaos
/// too), odd ones come with known step times.
async fn submit_sweeps(
    clients: &[ApiClient],
    down: &Mutex<BTreeSet<usize>>,
    timeline: &Timeline,
    saturn: &Path,
    workdir: &Path,
    run_for: Duration,
) -> Vec<String> {
    let start = Instant::now();
    let path = format!("/v1/jobs?workdir={}&file=chaos.toml", encode_query(&workdir.display().to_string()));
    let mut acknowledged = Vec::new();
    let mut k = 0;
    while start.elapsed() < run_for {
        let file = sweep(saturn, &format!("chaos{k}"), JOBS_PER_SWEEP, STEPS, CHECKPOINT_EVERY, &format!("chaos-{}", k % 2), k % 2 == 1);
        let tries = std::cell::Cell::new(0);
        let answer = eventually(&format!("sweep {k} acknowledged"), Duration::from_secs(20), || async {
            let up: Vec<usize> = {
                let down = down.lock().unwrap_or_else(|p| p.into_inner());
                (0..AGENTS).map(|n| (k + n) % AGENTS).filter(|i| !down.contains(i)).collect()
            };
            // Each try asks the next agent that is up: the last one may be cut off.
            tries.set(tries.get() + 1);
            let i = *up.get(tries.get() % up.len().max(1)).context("every agent is down")?;
            let submitted: SubmitView = within(ANSWER_WITHIN * 3, clients[i].post(&path, "application/toml", file.clone())).await?;
            Ok(Some((i, submitted)))
        })
        .await;
        match answer {
            Ok((i, submitted)) => {
                let ids: Vec<String> = submitted.jobs.into_iter().map(|j| j.id).collect();
                timeline.note(format!("sweep {k} acknowledged by agent-{i}: {}", ids.join(" ")));
                acknowledged.extend(ids);
            }
            Err(err) => timeline.note(format!("sweep {k} not acknowledged: {err:#}")),
        }
        k += 1;
        let due = start + SUBMIT_EVERY * k as u32;
        tokio::time::sleep_until(due.into()).await;
    }
    acknowledged
}
