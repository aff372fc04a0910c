//! What re-planning buys when reality deviates from the profiles (Saturn's introspection).
//!
//! Real step times differ from the profiled ones by a seeded lognormal factor per job and
//! option. The initial plan is executed twice: once as is, and once re-planned every
//! `interval_s` from the live state (remaining steps, running placements, step times
//! observed so far), switching to the new plan only when it promises to finish more than
//! `threshold_s` earlier; every running job the new plan moves pays `switch_cost_s`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::execute::{Execution, Phase};
use crate::instance::{Instance, Job, Running};
use crate::plan::Plan;
use crate::solve::{solve, SolveError, SolveOptions};
use crate::validate::assigned_option;

/// Parameters of [`simulate`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Seed of the step-time noise (the solver has its own seed in `solve`).
    pub seed: u64,
    /// Standard deviation of the log of real / profiled step time.
    pub noise_sigma: f64,
    /// Seconds between re-planning checks.
    pub interval_s: f64,
    /// A new plan is adopted only if it finishes more than this many seconds earlier.
    pub threshold_s: f64,
    /// Solver settings for the initial plan and every re-plan; give `max_iterations` for a
    /// deterministic simulation.
    pub solve: SolveOptions,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 0,
            noise_sigma: 0.3,
            interval_s: 1000.0,
            threshold_s: 500.0,
            // A time limit it never reaches, so the iteration cap alone decides: deterministic.
            solve: SolveOptions {
                max_iterations: Some(20_000),
                time_limit: std::time::Duration::from_secs(60),
                ..SolveOptions::default()
            },
        }
    }
}

/// Outcome of [`simulate`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// Makespan the initial plan predicted from the profiles.
    pub planned_makespan_s: f64,
    /// Real makespan executing the initial plan without re-planning.
    pub static_makespan_s: f64,
    /// Real makespan with periodic re-planning.
    pub introspective_makespan_s: f64,
    /// Re-planning checks made.
    pub checks: u32,
    /// New plans adopted.
    pub replans: u32,
    /// Running jobs moved by adopted plans (each paid `switch_cost_s`).
    pub switches: u32,
}

/// Runs the plan-execute(-re-plan) loop; deterministic for fixed seeds and iteration budget.
pub fn simulate(instance: &Instance, options: &SimOptions) -> Result<SimReport, SolveError> {
    let truth = true_step_times(instance, options);
    let real = |j: usize, o: usize| truth[j][o];
    let plan = solve(instance, &options.solve)?;

    let mut static_run = Execution::new(instance);
    adopt(instance, &mut static_run, &plan, &[], &real);
    static_run.run_until(f64::INFINITY, &real);

    let mut live = Execution::new(instance);
    adopt(instance, &mut live, &plan, &[], &real);
    // Step times the executors measured: known once a job has run in an option.
    let mut observed: Vec<Vec<Option<f64>>> = instance.jobs.iter().map(|j| vec![None; j.options.len()]).collect();
    let (mut checks, mut replans, mut switches) = (0, 0, 0);
    let mut next_check = options.interval_s;
    loop {
        live.run_until(next_check, &real);
        if live.all_done() {
            break;
        }
        for (j, phase) in live.phase.iter().enumerate() {
            if matches!(phase, Phase::Running { .. } | Phase::Done) {
                observed[j][live.option[j]] = Some(truth[j][live.option[j]]);
            }
        }
        let believed = |j: usize, o: usize| observed[j][o].unwrap_or(instance.jobs[j].options[o].step_time_s);
        checks += 1;
        let (now_instance, ids) = remaining_instance(instance, &live, &believed);
        let candidate = solve(&now_instance, &options.solve)?;
        let mut keep = live.clone();
        keep.run_until(f64::INFINITY, &believed);
        if live.now + candidate.makespan_s < keep.now - options.threshold_s {
            replans += 1;
            switches += adopt(&now_instance, &mut live, &candidate, &ids, &real);
        }
        next_check += options.interval_s;
    }
    Ok(SimReport {
        planned_makespan_s: plan.makespan_s,
        static_makespan_s: static_run.now,
        introspective_makespan_s: live.now,
        checks,
        replans,
        switches,
    })
}

/// Adopts `plan`, whose jobs are `ids` (original indices) or all jobs when `ids` is
/// empty; stops the running jobs it moves (progress measured with the real step times) and
/// returns how many it moved.
fn adopt(instance: &Instance, exec: &mut Execution, plan: &Plan, ids: &[usize], real: &impl Fn(usize, usize) -> f64) -> u32 {
    let local_index = |id: &str| instance.jobs.iter().position(|j| j.id == id).unwrap_or(0);
    let global = |local: usize| if ids.is_empty() { local } else { ids[local] };
    let mut moved = 0;
    let mut options = Vec::with_capacity(plan.assignments.len());
    for a in &plan.assignments {
        let local = local_index(&a.job);
        // Plans come from `solve`, so every assignment matches an option.
        let option = assigned_option(instance, &instance.jobs[local], a).unwrap_or(0);
        options.push(option);
        let g = global(local);
        if let Phase::Running { .. } = exec.phase[g] {
            let mut now = exec.gpus[g].clone();
            let mut next = exec.global_gpus(instance, &a.placement);
            now.sort_unstable();
            next.sort_unstable();
            if now != next || exec.option[g] != option {
                exec.stop(g, real(g, exec.option[g]));
                moved += 1;
            }
        }
    }
    exec.adopt(instance, plan, |id| global(local_index(id)), &options);
    moved
}

/// The instance of what is left at `exec.now`: unfinished jobs with their remaining steps,
/// running placements, believed step times and shifted release times. Also returns the
/// original index of each job in it.
fn remaining_instance(instance: &Instance, exec: &Execution, believed: &impl Fn(usize, usize) -> f64) -> (Instance, Vec<usize>) {
    let mut ids = Vec::new();
    let mut jobs = Vec::new();
    for (j, job) in instance.jobs.iter().enumerate() {
        if exec.phase[j] == Phase::Done {
            continue;
        }
        let left = exec.steps_left(j, believed(j, exec.option[j]));
        let mut options = job.options.clone();
        for (o, option) in options.iter_mut().enumerate() {
            option.step_time_s = believed(j, o);
        }
        let running = matches!(exec.phase[j], Phase::Running { .. }).then(|| Running {
            technique: job.options[exec.option[j]].technique.clone(),
            placement: exec.placement(instance, &exec.gpus[j]),
        });
        ids.push(j);
        jobs.push(Job { steps: left.ceil() as u64, options, running, release_s: (job.release_s - exec.now).max(0.0), ..job.clone() });
    }
    (Instance { jobs, ..instance.clone() }, ids)
}

/// Real step time per job and option: profiled x lognormal(0, sigma), drawn in a fixed order.
fn true_step_times(instance: &Instance, options: &SimOptions) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    instance
        .jobs
        .iter()
        .map(|job| {
            job.options
                .iter()
                .map(|o| {
                    // Box-Muller: a standard normal from two uniforms.
                    let (u1, u2): (f64, f64) = (rng.gen::<f64>().max(1e-12), rng.gen());
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    o.step_time_s * (options.noise_sigma * z).exp()
                })
                .collect()
        })
        .collect()
}
