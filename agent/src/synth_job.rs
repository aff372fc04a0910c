//! The simulated training job, `saturn synth-job`: sleeps instead of computing.
//!
//! It follows the job contract exactly (reads `SATURN_*`, reports `SATURN step=`,
//! checkpoints and resumes, handles SIGTERM, honours `SATURN_PROFILE_STEPS`), and its
//! step time comes from a cost model per technique and GPU count ([`cost`]), so
//! profiling and planning have something real to measure without GPUs.
//!
//! Exit status: 0 completed, profiled or stopped by SIGTERM after checkpointing;
//! 1 a (simulated or real) failure; 2 bad arguments, environment, or a checkpoint to
//! resume from that is missing or damaged;
//! 3 simulated out-of-memory or another configuration the technique cannot run.

pub mod checkpoint;
pub mod contract;
pub mod cost;
pub mod loss;
pub mod record;
mod simulate;

pub use contract::JobEnv;
pub use cost::{synthetic_step_time, Infeasible, SynthModel};
pub use loss::LossCurve;

/// `saturn synth-job`: arguments of the simulated training job.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Simulated training job: sleeps instead of computing (for demos and tests)",
    long_about = "Simulated training job: sleeps instead of computing. Run it as a Saturn job \
                  (it reads SATURN_* variables); its step time follows a cost model of the \
                  technique, GPU count and hosts, with seeded jitter."
)]
pub struct SynthJobArgs {
    /// Simulated model size in GB (training state is 4x: weights, gradients, optimizer).
    #[arg(long, default_value_t = 6.0)]
    pub model_gb: f64,
    /// Milliseconds per step on one GPU holding the whole model.
    #[arg(long, default_value_t = 120.0)]
    pub base_step_ms: f64,
    /// Fraction of a step that parallelises across GPUs (0..=1).
    #[arg(long, default_value_t = 0.9)]
    pub compute_fraction: f64,
    /// Multiplies every simulated duration (0.01 makes a run 100x faster).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Checkpoint every this many steps [default: a tenth of SATURN_STEPS].
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Learning rate; only shapes the simulated loss curve.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Batch size; only shapes the simulated loss curve.
    #[arg(long, default_value_t = 32)]
    pub batch_size: u32,
    /// Picks the member of the loss-curve family [default: derived from --model-gb,
    /// --lr and --batch-size, so every attempt follows the same curve].
    #[arg(long)]
    pub loss_seed: Option<u64>,
    /// Relative step-time jitter, uniform in ±this (0.03 = ±3%).
    #[arg(long, default_value_t = 0.03)]
    pub jitter: f64,
    /// Seed of the jitter and loss noise [default: derived from job id and attempt].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fail (exit 1) when reaching this step, unless resumed past it.
    #[arg(long)]
    pub fail_at_step: Option<u64>,
    /// Fail (exit 1) at once, every attempt.
    #[arg(long)]
    pub fail_always: bool,
    /// Bytes of "model" each checkpoint writes (verified on resume).
    #[arg(long, env = "SATURN_SYNTH_CHECKPOINT_BYTES", default_value_t = 64 * 1024)]
    pub checkpoint_bytes: u64,
}

impl SynthJobArgs {
    /// The cost model's parameters.
    pub fn model(&self) -> SynthModel {
        SynthModel { model_gb: self.model_gb, base_step_ms: self.base_step_ms, compute_fraction: self.compute_fraction }
    }

    /// The loss curve this job reports (`SATURN metric loss=`), see [`loss`].
    pub fn loss_curve(&self) -> LossCurve {
        LossCurve::new(self.model_gb, self.lr, self.batch_size, self.loss_seed)
    }

    fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.model_gb.is_finite() && self.model_gb > 0.0, "--model-gb must be a positive number"),
            (self.base_step_ms.is_finite() && self.base_step_ms >= 0.0, "--base-step-ms must be at least 0"),
            ((0.0..=1.0).contains(&self.compute_fraction), "--compute-fraction must be between 0 and 1"),
            (self.time_scale.is_finite() && self.time_scale >= 0.0, "--time-scale must be at least 0"),
            ((0.0..0.5).contains(&self.jitter), "--jitter must be in 0..0.5"),
            (self.checkpoint_every != Some(0), "--checkpoint-every must be at least 1"),
            (self.lr.is_finite() && self.lr > 0.0, "--lr must be a positive number"),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, problem)) => Err(problem.to_owned()),
            None => Ok(()),
        }
    }
}

/// Runs the simulated job in this process; returns its exit status.
pub fn run(args: &SynthJobArgs) -> anyhow::Result<i32> {
    use anyhow::Context;
    if let Err(problem) = args.validate() {
        eprintln!("synth-job: {problem}");
        return Ok(2);
    }
    let job = match JobEnv::from_vars(|name| std::env::var(name).ok()) {
        Ok(job) => job,
        Err(problem) => {
            eprintln!("synth-job: {problem}");
            return Ok(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the simulated job's runtime")?;
    runtime.block_on(simulate::simulate(args, job))
}
