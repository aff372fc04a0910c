//! The simulated job's main loop: sleep a step, report it, checkpoint, repeat.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{sleep_until, Instant};

use super::checkpoint;
use super::contract::JobEnv;
use super::cost::{synthetic_step_time, Infeasible};
use super::record::{self, SegmentRecord};
use super::SynthJobArgs;

/// `println!` that ignores write errors. When the agent dies, its end of the job's
/// pipes closes and `println!` would panic; the job must instead get through the SIGTERM
/// that follows (checkpoint, end record, exit 0), as the job contract promises.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores write errors, for the same reason as `say!`.
macro_rules! complain {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Report at most about this often, so a tiny step time does not flood the agent.
const MIN_REPORT_INTERVAL_S: f64 = 0.005;
/// A metric line goes with every this many step reports.
const REPORTS_PER_METRIC: u64 = 10;

/// How a segment ended.
#[derive(Debug)]
enum Outcome {
    Completed,
    Profiled,
    Terminated,
    Failed(String),
    BadInput(String),
    Infeasible(Infeasible),
}

impl Outcome {
    fn exit_code(&self) -> i32 {
        match self {
            Outcome::Completed | Outcome::Profiled | Outcome::Terminated => 0,
            Outcome::Failed(_) => 1,
            Outcome::BadInput(_) => 2,
            Outcome::Infeasible(_) => 3,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Profiled => "profiled",
            Outcome::Terminated => "terminated",
            Outcome::Failed(_) | Outcome::BadInput(_) => "failed",
            Outcome::Infeasible(_) => "infeasible",
        }
    }
}

/// One simulated attempt segment.
struct Simulation<'a> {
    args: &'a SynthJobArgs,
    job: JobEnv,
    rng: StdRng,
    done: u64,
    last_checkpoint: Option<u64>,
}

/// Runs the job to its end and returns the exit status.
pub(super) async fn simulate(args: &SynthJobArgs, job: JobEnv) -> anyhow::Result<i32> {
    // First, so a SIGTERM arriving at any later point is handled, not fatal.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let record_file = std::env::var_os("SATURN_SYNTH_RECORD_FILE").map(PathBuf::from);
    let mut segment = SegmentRecord {
        job: job.job_id.clone(),
        attempt: job.attempt,
        agent: job.agent.clone(),
        gpus: job.gpus.clone(),
        technique: job.technique.clone(),
        start_ms: now_ms(),
        end_ms: None,
        start_step: job.start_step,
        end_step: None,
        outcome: "started".to_owned(),
        profile: job.profile_steps.is_some(),
    };
    write_record(record_file.as_deref(), &segment);
    let seed = args.seed.unwrap_or_else(|| fnv1a(format!("{}/{}", job.job_id, job.attempt).as_bytes()));
    let done = job.start_step;
    let mut simulation = Simulation { args, job, rng: StdRng::seed_from_u64(seed), done, last_checkpoint: None };
    let outcome = simulation.run(&mut sigterm).await;
    match &outcome {
        Outcome::Failed(why) | Outcome::BadInput(why) => complain!("synth-job: error: {why}"),
        Outcome::Infeasible(why) => complain!("synth-job: {why}"),
        _ => {}
    }
    segment.end_ms = Some(now_ms());
    segment.end_step = Some(simulation.done);
    segment.outcome = outcome.name().to_owned();
    write_record(record_file.as_deref(), &segment);
    Ok(outcome.exit_code())
}

impl Simulation<'_> {
    async fn run(&mut self, sigterm: &mut tokio::signal::unix::Signal) -> Outcome {
        if self.args.fail_always {
            return Outcome::Failed("simulated failure (--fail-always)".to_owned());
        }
        let job = &self.job;
        let step_time =
            match synthetic_step_time(&self.args.model(), &job.technique, job.gpus_per_host, job.nnodes, job.gpu_memory_mib) {
                Ok(seconds) => seconds * self.args.time_scale,
                Err(infeasible) => return Outcome::Infeasible(infeasible),
            };
        if let Err(problem) = self.resume() {
            return Outcome::BadInput(problem);
        }
        let trial = self.job.profile_steps;
        let end = trial.map_or(self.job.steps, |steps| self.job.start_step + steps);
        let report_every = ((MIN_REPORT_INTERVAL_S / step_time).ceil() as u64).max(1);
        let checkpoint_every = self.args.checkpoint_every.unwrap_or((self.job.steps / 10).max(1));
        say!(
            "synth-job: simulated training job {} attempt {}: {} on {} GPU(s) x {} host(s), {:.4} s/step, steps {}..{}",
            self.job.job_id, self.job.attempt, self.job.technique, self.job.gpus_per_host, self.job.nnodes, step_time,
            self.done, end
        );
        let mut deadline = Instant::now();
        while self.done < end {
            let step = self.done + 1;
            if self.args.fail_at_step == Some(step) {
                return Outcome::Failed(format!("simulated failure at step {step} (--fail-at-step)"));
            }
            let jitter = 1.0 + self.args.jitter * self.rng.gen_range(-1.0..=1.0);
            deadline += Duration::from_secs_f64(step_time * jitter);
            tokio::select! {
                _ = sleep_until(deadline) => {}
                _ = sigterm.recv() => return self.stop(trial.is_some()),
            }
            self.done = step;
            let reports = step / report_every;
            if step.is_multiple_of(report_every) || step == end {
                say!("SATURN step={step}");
                if reports.is_multiple_of(REPORTS_PER_METRIC) || step == end {
                    let noise = 1.0 + 0.002 * self.rng.gen_range(-1.0..=1.0);
                    say!("SATURN metric loss={:.4}", self.args.loss_curve().at(step) * noise);
                }
            }
            if trial.is_none() && step.is_multiple_of(checkpoint_every) && step < end {
                if let Err(err) = self.checkpoint() {
                    return Outcome::Failed(err);
                }
            }
        }
        if trial.is_some() {
            Outcome::Profiled
        } else {
            Outcome::Completed
        }
    }

    /// Verifies the checkpoint to resume from, when there should be one: a resume whose
    /// checkpoint is missing, another job's or damaged fails (the agent promised a step
    /// it could not provide).
    fn resume(&mut self) -> Result<(), String> {
        let start = self.job.start_step;
        if start == 0 || self.job.profile_steps.is_some() {
            return Ok(());
        }
        let Some(dir) = &self.job.checkpoint_dir else {
            return Err(format!("SATURN_START_STEP={start} but SATURN_CHECKPOINT_DIR is not set: nothing to resume from"));
        };
        let path = checkpoint::checkpoint_path(dir, start);
        match checkpoint::read(dir, start) {
            Ok(Some(found)) if found.job != self.job.job_id => {
                Err(format!("checkpoint {} belongs to job {}, not {}", path.display(), found.job, self.job.job_id))
            }
            Ok(Some(found)) => {
                checkpoint::verify_data(dir, &found).map_err(|why| format!("checkpoint at step {start} is damaged: {why}"))?;
                self.last_checkpoint = Some(start);
                say!("synth-job: resuming from the checkpoint at step {start} ({} bytes verified)", found.bytes);
                Ok(())
            }
            Ok(None) => Err(format!("no checkpoint at step {start} in {}: cannot resume", dir.display())),
            Err(err) => Err(format!("cannot read the checkpoint at step {start} in {}: {err}", dir.display())),
        }
    }

    /// Writes a durable checkpoint at the current step, then reports it.
    fn checkpoint(&mut self) -> Result<(), String> {
        let Some(dir) = &self.job.checkpoint_dir else { return Ok(()) };
        if self.last_checkpoint != Some(self.done) {
            checkpoint::write(dir, &self.job.job_id, self.done, self.args.checkpoint_bytes)
                .map_err(|err| format!("cannot write a checkpoint in {}: {err}", dir.display()))?;
            self.last_checkpoint = Some(self.done);
        }
        say!("SATURN checkpoint step={}", self.done);
        Ok(())
    }

    /// SIGTERM: checkpoint (not in a trial run) and stop.
    fn stop(&mut self, trial: bool) -> Outcome {
        say!("synth-job: SIGTERM at step {}", self.done);
        if trial || self.done == 0 {
            return Outcome::Terminated;
        }
        match self.checkpoint() {
            Ok(()) => Outcome::Terminated,
            Err(err) => Outcome::Failed(err),
        }
    }
}

fn write_record(path: Option<&std::path::Path>, segment: &SegmentRecord) {
    if let Some(path) = path {
        if let Err(err) = record::append(path, segment) {
            complain!("synth-job: warning: cannot append to {}: {err}", path.display());
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A stable hash (FNV-1a), so the default seed is the same on every build.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
