//! The scheduler in a simulated cluster: virtual time, no processes, no Raft.
//!
//! [`Sim`] drives [`ClusterState::apply`] directly with the scheduler's decisions and with
//! the events of a fake executor that "runs" each attempt from a synthetic cost model:
//! three techniques that scale differently (one clearly dominated, one out of memory for
//! the largest model), trials that report their step time and exit 0, training that
//! reports progress and checkpoints and exits 0 at its last step. After every applied
//! command the sim checks that no GPU is held twice and that no job runs twice, both in
//! the state and among the simulated processes (a partitioned host's processes live on
//! until its fence fires).
//!
//! `SIM_TRACE=1 cargo test -p saturn-agent --test scheduler_sim -- --nocapture` prints
//! every decision with its virtual time.

use std::collections::{BTreeMap, BTreeSet};

use saturn_agent::scheduler::instance::job_options;
use saturn_agent::scheduler::profile_stats::profiling_stats;
use saturn_agent::scheduler::profiles::ProfileBook;
use saturn_agent::scheduler::shapes::up_hosts;
use saturn_agent::scheduler::{AgentHealth, SchedContext, SchedulerConfig, SchedulerCore};
use saturn_consensus::{
    AgentNode, AttemptEvent, AttemptStatus, ClusterState, Command, CommandResult, DispatchKind, GpuInfo, JobId,
    JobSpec, JobState, Placement,
};
use saturn_planner::{solve, Host, Instance, Job, SolveOptions, Solver};

const HOSTS: [&str; 3] = ["node-a", "node-b", "node-c"];
const GPUS_PER_HOST: u32 = 4;
const TICK_MS: u64 = 1_000;
/// Seconds from dispatch to the first step (process start, data loading).
const STARTUP_S: f64 = 5.0;
const CHECKPOINT_EVERY: u64 = 250;

/// Seconds per step of `group` as `technique` on `hosts` x `per_host` GPUs; `None` when it
/// runs out of memory. ddp scales best but holds the whole model on every GPU (the large
/// model at the large batch does not fit); fsdp shards it at some overhead; spilling is
/// slow everywhere. The small model is communication-bound and scales poorly, the large
/// one scales well: giving every job a whole host (max-heuristic) wastes GPUs on the first.
fn step_time(group: &str, technique: &str, per_host: u32, hosts: u32) -> Option<f64> {
    let (base, ddp_serial) = match group {
        "resnet-bs32" => (0.20, 0.40),
        "resnet-bs64" => (0.36, 0.30),
        "bert-bs32" => (0.50, 0.10),
        _ => (0.90, 0.08),
    };
    let (factor, serial) = match technique {
        "ddp" if group == "bert-bs64" => return None,
        "ddp" => (1.0, ddp_serial),
        "fsdp" => (1.15, ddp_serial + 0.1),
        _ => (2.6, 0.5),
    };
    let gpus = f64::from(per_host * hosts);
    let network = if hosts > 1 { 0.08 * base } else { 0.0 };
    Some(base * factor * (serial + (1.0 - serial) / gpus) + network)
}

/// The sweep: 2 models x 2 batch sizes x 3 learning rates.
fn sweep(models: &[&str]) -> Vec<JobSpec> {
    let mut specs = Vec::new();
    for model in models {
        for bs in [32, 64] {
            for lr in ["1e-4", "3e-4", "1e-3"] {
                specs.push(JobSpec {
                    name: format!("{model}-bs{bs}-lr{lr}"),
                    command: vec!["python3".into(), "train.py".into()],
                    workdir: "/tmp".into(),
                    env: BTreeMap::new(),
                    steps: if *model == "resnet" { 3_000 } else { 2_000 },
                    techniques: vec!["ddp".into(), "fsdp".into(), "spilling".into()],
                    gpus_min: 1,
                    gpus_max: 8,
                    profile_group: format!("{model}-bs{bs}"),
                    max_restarts: 2,
                    profile: BTreeMap::new(),
                    early_stop: None,
                    duration_estimate_s: 3600,
                });
            }
        }
    }
    specs
}

/// One simulated attempt's processes.
struct Process {
    placement: Placement,
    kind: DispatchKind,
    start_step: u64,
    /// When the first step begins (virtual ms).
    first_step_ms: u64,
    step_time: Option<f64>,
    always_fails: bool,
    /// The loss this job's curve falls towards (`LOSS_FLOOR` in its env; 0 without).
    loss_floor: f64,
    reported_started: bool,
    last_report_ms: u64,
    last_checkpoint: u64,
}

impl Process {
    fn step_at(&self, now_ms: u64, limit: u64) -> u64 {
        let Some(t) = self.step_time else { return self.start_step };
        let running_s = now_ms.saturating_sub(self.first_step_ms) as f64 / 1000.0;
        (self.start_step + (running_s / t) as u64).min(limit)
    }
}

/// A training dispatch as applied.
#[derive(Debug)]
struct TrainRun {
    job: JobId,
    technique: String,
    placement: Placement,
    start_step: u64,
    at_ms: u64,
}

/// The simulated cluster and its scheduler.
struct Sim {
    state: ClusterState,
    core: SchedulerCore,
    config: SchedulerConfig,
    now_ms: u64,
    processes: BTreeMap<(JobId, u32), Process>,
    /// Hosts cut off from the cluster, and since when.
    partitioned: BTreeMap<String, u64>,
    runs: Vec<TrainRun>,
    agent_downs: Vec<(String, u64)>,
    /// Plans committed: when, and the jobs they plan.
    commits: Vec<(u64, BTreeSet<JobId>)>,
    /// Early stops applied: the job and when.
    stops: Vec<(JobId, u64)>,
    /// Hosts whose GPUs 2 and 3 are of a second model.
    mixed: BTreeSet<String>,
}

impl Sim {
    fn new(specs: Vec<JobSpec>) -> Sim {
        let mut state = ClusterState::default();
        state.apply(&Command::SubmitJobs { specs, at_ms: 0 });
        let config =
            SchedulerConfig { solve_time_limit_ms: 200, solve_max_iterations: Some(2_000), ..Default::default() };
        Sim {
            state,
            core: SchedulerCore::new(),
            config,
            now_ms: 0,
            processes: BTreeMap::new(),
            partitioned: BTreeMap::new(),
            runs: Vec::new(),
            agent_downs: Vec::new(),
            commits: Vec::new(),
            stops: Vec::new(),
            mixed: BTreeSet::new(),
        }
    }

    fn all_ended(&self) -> bool {
        self.state.jobs().values().all(|j| j.state.is_terminal())
    }

    /// Runs rounds of one virtual second until every job ended; `each_second` may inject
    /// faults. Returns the makespan in seconds.
    fn run(&mut self, limit_s: u64, mut each_second: impl FnMut(&mut Sim)) -> f64 {
        while !self.all_ended() {
            assert!(self.now_ms < limit_s * 1000, "not done after {limit_s} s: {:#?}", self.unfinished());
            each_second(self);
            let ctx = self.context();
            for command in self.core.decide(&self.state, &ctx) {
                self.apply(command);
            }
            for event in self.executor_events() {
                self.apply(event);
            }
            self.now_ms += TICK_MS;
        }
        self.now_ms as f64 / 1000.0
    }

    fn context(&self) -> SchedContext {
        let health = HOSTS
            .iter()
            .map(|name| {
                let health = match self.partitioned.get(*name) {
                    Some(since) => AgentHealth::Dead { since_ms: *since },
                    None => AgentHealth::Alive { node: node(name), gpus: gpus(self.mixed.contains(*name)) },
                };
                (name.to_string(), health)
            })
            .collect();
        let mut ctx = SchedContext::new(self.now_ms, health, self.config.clone());
        ctx.observing_since_ms = 0;
        ctx
    }

    fn apply(&mut self, command: Command) {
        let result = self.state.apply(&command);
        if std::env::var("SIM_TRACE").is_ok() {
            match &command {
                Command::JobEvent { .. } => {}
                Command::CommitPlan { plan, .. } => println!(
                    "{:>6} commit makespan {:.0} jobs {}",
                    self.now_ms / 1000,
                    plan.makespan_s,
                    plan.assignments.len()
                ),
                other => println!("{:>6} {:?} -> {:?}", self.now_ms / 1000, other, result),
            }
        }
        match (&command, &result) {
            (
                Command::Dispatch { job, technique, placement, kind: DispatchKind::Train, at_ms },
                CommandResult::Dispatched { .. },
            ) => {
                let start_step = self.state.live_attempt(job).map_or(0, |l| l.start_step);
                let run = TrainRun {
                    job: job.clone(),
                    technique: technique.clone(),
                    placement: placement.clone(),
                    start_step,
                    at_ms: *at_ms,
                };
                self.runs.push(run);
            }
            (Command::AgentDown { name, at_ms }, CommandResult::Applied) => {
                self.agent_downs.push((name.clone(), *at_ms))
            }
            (Command::CommitPlan { plan, at_ms }, CommandResult::PlanCommitted { .. }) => {
                self.commits.push((*at_ms, plan.assignments.iter().map(|a| a.job.clone()).collect()))
            }
            (Command::StopJob { job, at_ms, .. }, CommandResult::Applied) => self.stops.push((job.clone(), *at_ms)),
            _ => {}
        }
        self.check_invariants();
    }

    /// No GPU held twice, no job running twice: in the state and among the processes.
    fn check_invariants(&self) {
        for ((host, gpu), holder) in self.state.gpus() {
            let live = self.state.live_attempt(&holder.job).expect("a held GPU belongs to a live attempt");
            assert_eq!(live.attempt, holder.attempt);
            assert!(live.placement.iter().any(|hg| hg.host == *host && hg.gpus.contains(gpu)));
        }
        for job in self.state.jobs().values() {
            for hg in job.live.iter().flat_map(|l| &l.placement) {
                for gpu in &hg.gpus {
                    let holder = self.state.gpu_holder(&hg.host, *gpu).expect("a live attempt holds its GPUs");
                    assert_eq!(holder.job, job.id, "GPU {gpu} of {} is double-booked", hg.host);
                }
            }
        }
        let mut in_use = BTreeSet::new();
        let mut running_jobs = BTreeSet::new();
        for ((job, attempt), process) in &self.processes {
            assert!(running_jobs.insert(job.clone()), "job {job} runs twice (attempt {attempt})");
            for hg in &process.placement {
                for gpu in &hg.gpus {
                    assert!(in_use.insert((hg.host.clone(), *gpu)), "GPU {gpu} of {} runs two processes", hg.host);
                }
            }
        }
    }

    /// Starts processes for new live attempts, advances every process by one tick and
    /// returns what their executors report.
    fn executor_events(&mut self) -> Vec<Command> {
        let now = self.now_ms;
        let fence_ms = self.config.grace_period_ms / 2;
        // A partitioned host fences itself after grace/2 without quorum: its processes die.
        let partitioned = self.partitioned.clone();
        self.processes.retain(|_, p| {
            p.placement.iter().all(|hg| partitioned.get(&hg.host).is_none_or(|since| now < since + fence_ms))
        });
        let reachable = |p: &Placement| p.iter().all(|hg| !partitioned.contains_key(&hg.host));
        for job in self.state.jobs().values() {
            let Some(live) = &job.live else { continue };
            let key = (job.id.clone(), live.attempt);
            if self.processes.contains_key(&key) || !reachable(&live.placement) || live.status != AttemptStatus::Running
            {
                continue;
            }
            self.processes.insert(key, start_process(job.spec.profile_group.as_str(), &job.spec, live, now));
        }
        let mut events = Vec::new();
        let mut ended = Vec::new();
        for ((job, attempt), process) in &mut self.processes {
            if !reachable(&process.placement) {
                continue; // its reports cannot reach the cluster
            }
            let Some(record) = self.state.job(job) else { continue };
            let live = record.live.as_ref().filter(|l| l.attempt == *attempt);
            let Some(live) = live else {
                ended.push((job.clone(), *attempt)); // stale: the executor kills it
                continue;
            };
            let mut report =
                |event| events.push(Command::JobEvent { job: job.clone(), attempt: *attempt, event, at_ms: now });
            if !process.reported_started {
                process.reported_started = true;
                report(AttemptEvent::Started);
            }
            let exit = advance(process, live.status, record.spec.steps, now, &mut report);
            if let Some((code, error)) = exit {
                report(AttemptEvent::Exited { code: Some(code), error });
                ended.push((job.clone(), *attempt));
            }
        }
        for key in ended {
            self.processes.remove(&key);
        }
        events
    }

    fn unfinished(&self) -> Vec<(String, JobState)> {
        self.state.jobs().values().filter(|j| !j.state.is_terminal()).map(|j| (j.spec.name.clone(), j.state)).collect()
    }
}

fn start_process(group: &str, spec: &JobSpec, live: &saturn_consensus::LiveAttempt, now_ms: u64) -> Process {
    let (per_host, hosts) = (live.placement[0].gpus.len() as u32, live.placement.len() as u32);
    Process {
        placement: live.placement.clone(),
        kind: live.kind.clone(),
        start_step: live.start_step,
        first_step_ms: now_ms + (STARTUP_S * 1000.0) as u64,
        step_time: step_time(group, &live.technique, per_host, hosts),
        always_fails: spec.env.contains_key("ALWAYS_FAIL"),
        loss_floor: spec.env.get("LOSS_FLOOR").and_then(|f| f.parse().ok()).unwrap_or(0.0),
        reported_started: false,
        last_report_ms: now_ms,
        last_checkpoint: live.start_step,
    }
}

/// One tick of a process: its reports, and its exit `(code, error)` when it ends.
fn advance(
    process: &mut Process,
    status: AttemptStatus,
    total_steps: u64,
    now_ms: u64,
    report: &mut impl FnMut(AttemptEvent),
) -> Option<(i32, Option<String>)> {
    let warmed_up = now_ms >= process.first_step_ms;
    if status == AttemptStatus::Stopping {
        // SIGTERM: checkpoint where it is and exit cleanly.
        let step = process.step_at(now_ms, total_steps);
        report(AttemptEvent::Checkpoint { step });
        return Some((0, None));
    }
    let Some(seconds) = process.step_time else {
        return warmed_up.then(|| (1, Some("CUDA out of memory".to_string())));
    };
    if let DispatchKind::Trial { steps, .. } = process.kind {
        if process.step_at(now_ms, steps) < steps {
            return None;
        }
        report(AttemptEvent::Progress { step: steps, metrics: Vec::new() });
        report(AttemptEvent::TrialStepTime { seconds_per_step: seconds, samples: 10 });
        return Some((0, None));
    }
    if process.always_fails {
        return (now_ms >= process.first_step_ms + 5_000).then_some((1, None));
    }
    let step = process.step_at(now_ms, total_steps);
    let checkpoint = step / CHECKPOINT_EVERY * CHECKPOINT_EVERY;
    if checkpoint > process.last_checkpoint {
        process.last_checkpoint = checkpoint;
        report(AttemptEvent::Checkpoint { step: checkpoint });
    }
    if step >= total_steps || now_ms >= process.last_report_ms + 10_000 {
        process.last_report_ms = now_ms;
        let loss = process.loss_floor + 1.0 / (1.0 + step as f64);
        report(AttemptEvent::Progress { step, metrics: vec![("loss".to_string(), loss)] });
    }
    (step >= total_steps).then_some((0, None))
}

fn node(name: &str) -> AgentNode {
    AgentNode { name: name.into(), peer_id: format!("peer-{name}"), addrs: vec![] }
}

/// A host's GPUs; on a mixed host GPUs 2 and 3 are an older model.
fn gpus(mixed: bool) -> Vec<GpuInfo> {
    let model = |index| if mixed && index >= 2 { OLD_MODEL } else { "SIM-24GB" };
    (0..GPUS_PER_HOST).map(|index| GpuInfo { index, model: model(index).into(), memory_mib: 24_576 }).collect()
}

const OLD_MODEL: &str = "SIM-OLD";

/// Makespans of the whole sweep from scratch (full steps, the profiles the sim ended
/// with) as planned by `solver`.
fn planned_makespan(sim: &Sim, solver: Solver) -> f64 {
    let hosts = up_hosts(&sim.state);
    let book = ProfileBook::build(&sim.state, &hosts, sim.state.jobs().values(), &sim.config);
    let jobs = sim
        .state
        .jobs()
        .values()
        .map(|job| Job {
            id: job.id.0.clone(),
            steps: job.spec.steps,
            options: job_options(&book, job, &hosts).into_iter().map(|(o, _)| o).collect(),
            running: None,
            release_s: 0.0,
        })
        .collect();
    let instance = Instance {
        hosts: hosts
            .iter()
            .map(|h| Host { name: h.group.clone(), gpus: h.gpus.len() as u32, gpu_model: Some(h.model.clone()) })
            .collect(),
        jobs,
        switch_cost_s: 0.0,
    };
    let options = SolveOptions {
        solver,
        time_limit: std::time::Duration::from_millis(500),
        seed: 1,
        max_iterations: Some(20_000),
    };
    solve(&instance, &options).expect("the final instance is valid").makespan_s
}

#[test]
fn a_sweep_is_profiled_cheaply_and_finishes_well_ahead_of_max_heuristic() {
    let mut sim = Sim::new(sweep(&["resnet", "bert"]));
    let makespan = sim.run(10_000, |_| {});

    assert!(sim.state.jobs().values().all(|j| j.state == JobState::Completed), "{:#?}", sim.unfinished());
    for run in &sim.runs {
        let spec = &sim.state.jobs()[&run.job].spec;
        let gpus: u32 = run.placement.iter().map(|hg| hg.gpus.len() as u32).sum();
        assert!(spec.techniques.contains(&run.technique), "{run:?}");
        assert!((spec.gpus_min..=spec.gpus_max).contains(&gpus), "{run:?}");
        let (per_host, hosts) = (run.placement[0].gpus.len() as u32, run.placement.len() as u32);
        assert!(
            step_time(&spec.profile_group, &run.technique, per_host, hosts).is_some(),
            "ran out of memory: {run:?}"
        );
    }
    let max_heuristic = planned_makespan(&sim, Solver::MaxHeuristic);
    let local_search = planned_makespan(&sim, Solver::LocalSearch);
    let stats = profiling_stats(&sim.state, &sim.config);
    let ratio = makespan / max_heuristic;
    println!(
        "makespan {makespan:.0} s (profiling included) vs max-heuristic {max_heuristic:.0} s: ratio {ratio:.2}; \
         local search from scratch {local_search:.0} s; trials {} of {} ({:.0} of {:.0} GPU-s, saved {:.0}); \
         pruned series {}; preemptions {}; plans committed {}; solves {}",
        stats.trials,
        stats.full_grid_trials,
        stats.gpu_seconds,
        stats.full_grid_gpu_seconds,
        stats.saved_gpu_seconds,
        stats.pruned_series,
        sim.state.counters().preemptions,
        sim.core.stats().plans_committed,
        sim.core.stats().solves,
    );
    assert!(ratio < 0.85, "makespan {makespan} s is not well below max-heuristic's {max_heuristic} s");
    assert!(stats.trials < stats.full_grid_trials, "{stats:?}");
    assert!(stats.saved_gpu_seconds > 0.0);
}

#[test]
fn every_gpu_of_mixed_gpu_hosts_is_planned_and_each_job_runs_on_one_model() {
    // node-b and node-c: GPUs 0-1 of one model, 2-3 of another. Each model's pair is a
    // GPU group of its own, so jobs are profiled, planned and dispatched on both.
    let mut sim = Sim::new(sweep(&["resnet", "bert"]));
    sim.mixed = ["node-b", "node-c"].iter().map(|s| s.to_string()).collect();
    sim.run(20_000, |_| {});
    assert!(sim.state.jobs().values().all(|j| j.state == JobState::Completed), "{:#?}", sim.unfinished());
    let model = |host: &str, gpu: u32| if sim.mixed.contains(host) && gpu >= 2 { OLD_MODEL } else { "SIM-24GB" };
    for run in &sim.runs {
        for hg in &run.placement {
            let first = model(&hg.host, hg.gpus[0]);
            assert!(hg.gpus.iter().all(|&g| model(&hg.host, g) == first), "one entry spans two models: {run:?}");
        }
        let models: BTreeSet<&str> = run.placement.iter().map(|hg| model(&hg.host, hg.gpus[0])).collect();
        assert_eq!(models.len(), 1, "a gang spans two models: {run:?}");
    }
    let trained_on_old = sim
        .runs
        .iter()
        .filter(|r| r.placement.iter().all(|hg| hg.gpus.iter().all(|&g| model(&hg.host, g) == OLD_MODEL)))
        .count();
    assert!(trained_on_old > 0, "no job trained on the minority model's GPUs: {:#?}", sim.runs);
    let old_profiles = sim.state.profiles().keys().filter(|k| k.gpu_model == OLD_MODEL).count();
    assert!(old_profiles > 0, "the minority model was never profiled");
}

#[test]
fn a_lost_host_has_its_jobs_rerun_elsewhere_from_their_checkpoints() {
    let mut sim = Sim::new(sweep(&["resnet", "bert"]));
    let mut lost: BTreeMap<JobId, u64> = BTreeMap::new();
    let mut partitioned_at = None;
    sim.run(10_000, |sim| {
        if partitioned_at.is_some() {
            return;
        }
        let on_c: Vec<(JobId, u64)> = sim
            .state
            .attempts_on_host("node-c")
            .filter(|(record, live)| live.kind == DispatchKind::Train && record.last_checkpoint > 0)
            .map(|(record, _)| (record.id.clone(), record.last_checkpoint))
            .collect();
        if !on_c.is_empty() {
            lost.extend(on_c);
            sim.partitioned.insert("node-c".into(), sim.now_ms);
            partitioned_at = Some(sim.now_ms);
        }
    });
    let cut = partitioned_at.expect("some job trained on node-c");
    assert!(sim.state.jobs().values().all(|j| j.state == JobState::Completed), "{:#?}", sim.unfinished());
    let (name, down_at) = sim.agent_downs.first().expect("node-c was declared down").clone();
    assert_eq!(name, "node-c");
    assert!(down_at > cut + sim.config.grace_period_ms, "declared down within the grace period");
    for (job, checkpoint) in &lost {
        let rerun = sim.runs.iter().find(|r| r.job == *job && r.at_ms >= down_at).expect("the lost job ran again");
        assert!(rerun.placement.iter().all(|hg| hg.host != "node-c"), "{rerun:?}");
        assert!(rerun.start_step >= *checkpoint && rerun.start_step > 0, "{rerun:?} did not resume from {checkpoint}");
    }
    assert!(sim.runs.iter().filter(|r| r.at_ms >= down_at).all(|r| r.placement.iter().all(|hg| hg.host != "node-c")));
}

#[test]
fn a_job_that_always_fails_ends_failed_after_its_restarts() {
    let mut specs = sweep(&["resnet"]);
    specs[0].env.insert("ALWAYS_FAIL".into(), "1".into());
    let mut sim = Sim::new(specs);
    sim.run(10_000, |_| {});
    let failing = sim.state.jobs().values().find(|j| j.spec.env.contains_key("ALWAYS_FAIL")).unwrap();
    assert_eq!(failing.state, JobState::Failed);
    assert_eq!(failing.restarts, 2);
    assert_eq!(sim.runs.iter().filter(|r| r.job == failing.id).count(), 3, "first run + max_restarts");
    assert!(failing.error.as_deref().is_some_and(|e| e.contains("status 1")), "{:?}", failing.error);
    let others = sim.state.jobs().values().filter(|j| j.id != failing.id);
    assert!(others.clone().all(|j| j.state == JobState::Completed), "{:#?}", sim.unfinished());
}

/// The sweep with ASHA on a loss whose floor grows with the learning rate's index, so
/// the grid has clear winners (lr 1e-4) and losers.
fn early_stopping_sweep() -> Vec<JobSpec> {
    let mut specs = sweep(&["resnet", "bert"]);
    for (i, spec) in specs.iter_mut().enumerate() {
        spec.env.insert("LOSS_FLOOR".into(), format!("{}", (i % 3) as f64 + 0.1 * (i / 3) as f64));
        spec.early_stop = Some(saturn_consensus::EarlyStop {
            sweep: "grid".into(),
            metric: "loss".into(),
            mode: saturn_consensus::MetricMode::Min,
            rule: saturn_consensus::StopRule::Asha,
            min_steps: 300,
            reduction: 3,
        });
    }
    specs
}

#[test]
fn a_stopped_jobs_gpus_are_re_planned_for_the_survivors_at_once() {
    let mut sim = Sim::new(early_stopping_sweep());
    let makespan = sim.run(10_000, |_| {});
    let stopped: Vec<&JobId> =
        sim.state.jobs().values().filter(|j| j.state == JobState::Stopped).map(|j| &j.id).collect();
    assert!(stopped.len() >= 6, "ASHA with reduction 3 stops most of 12 jobs: {:#?}", sim.unfinished());
    let lr_of = |id: &JobId| sim.state.jobs()[id].spec.name.rsplit("lr").next().unwrap_or_default().to_string();
    for job in sim.state.jobs().values().filter(|j| j.state == JobState::Completed) {
        assert_eq!(lr_of(&job.id), "1e-4", "only the best learning rate survives: {} completed", job.spec.name);
    }
    assert!(sim.state.jobs().values().all(|j| matches!(j.state, JobState::Completed | JobState::Stopped)));
    for (job, at_ms) in &sim.stops {
        // The round that stops a job re-plans the rest at once, without it.
        let replanned = sim.commits.iter().any(|(t, jobs)| t == at_ms && !jobs.contains(job));
        assert!(replanned, "no plan without {job} committed when it was stopped at {at_ms} ms");
        let record = &sim.state.jobs()[job];
        assert!(record.live.is_none() && record.finished_at_ms.is_some_and(|t| t >= *at_ms));
    }
    // The freed GPUs are given to other jobs: some training starts on a stopped job's
    // GPU after it ended.
    let reused = sim.stops.iter().any(|(job, _)| {
        let record = &sim.state.jobs()[job];
        let ended = record.finished_at_ms.unwrap_or(u64::MAX);
        let gpus: BTreeSet<(String, u32)> =
            record.placement.iter().flat_map(|hg| hg.gpus.iter().map(move |g| (hg.host.clone(), *g))).collect();
        sim.runs.iter().any(|r| {
            r.job != *job
                && r.at_ms >= ended
                && r.placement.iter().any(|hg| hg.gpus.iter().any(|g| gpus.contains(&(hg.host.clone(), *g))))
        })
    });
    assert!(reused, "no stopped job's GPUs were used again");

    println!("early stopping: {} stopped, makespan {makespan:.0} s with re-planning", stopped.len());
}
