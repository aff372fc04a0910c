//! A proven lower bound on the optimal makespan.
//!
//! Test for a candidate makespan `T`: every job must use a mode that fits between its
//! release and `T`, and each such mode occupies at least its GPU-seconds. So `T` is
//! impossible when, for some set `S` of GPU models and release threshold `τ`, the jobs
//! released at `τ` or later that can only run on models in `S` (within `T`) need more
//! GPU-seconds than the `S` GPUs offer in `[τ, T]`. The test is monotone in `T` (a larger
//! `T` allows more modes and offers more capacity), so bisection finds the threshold.
//!
//! With `S` = all models and `τ` = 0 this is already at least
//! max(longest job at its fastest option, total minimum GPU-seconds / total GPUs); the
//! per-model sets catch heterogeneous clusters where the cheap GPUs cannot help, and the
//! release thresholds catch late arrivals.

use crate::instance::Instance;
use crate::problem::{compile, Problem};

/// Above this many GPU models only the whole set and single models are tried (2^m sets).
const MAX_SUBSET_MODELS: usize = 6;
/// At most this many release thresholds are tested.
const MAX_THRESHOLDS: usize = 16;

/// A lower bound on the makespan of any valid plan; 0 for an invalid instance or no jobs.
pub fn lower_bound(instance: &Instance) -> f64 {
    compile(instance).map(|p| problem_bound(&p)).unwrap_or(0.0)
}

/// The bound for a compiled problem.
pub(crate) fn problem_bound(problem: &Problem) -> f64 {
    if problem.jobs.is_empty() {
        return 0.0;
    }
    let sets = model_sets(problem);
    let releases = release_thresholds(problem);
    let jobs: Vec<(f64, Vec<ModeFacts>)> = problem
        .jobs
        .iter()
        .map(|j| {
            let facts = j
                .modes
                .iter()
                .map(|m| ModeFacts {
                    runtime: m.runtime,
                    area: m.area(),
                    models: problem.eligible[m.eligible]
                        .iter()
                        .map(|&h| model_bit(problem.hosts[h as usize].model))
                        .fold(0, |a, b| a | b),
                })
                .collect();
            (j.release, facts)
        })
        .collect();
    let trivial = problem
        .jobs
        .iter()
        .map(|j| j.release + j.modes.iter().map(|m| m.runtime).fold(f64::INFINITY, f64::min))
        .fold(0.0, f64::max);
    let feasible = |t: f64| possible(&jobs, &sets, &releases, t);
    // Find an upper end for the bisection: running all jobs one after another works.
    let mut lo = trivial;
    if feasible(lo) {
        return lo;
    }
    let mut hi = lo.max(1.0);
    while !feasible(hi) {
        lo = hi;
        hi *= 2.0;
        if !hi.is_finite() {
            return lo;
        }
    }
    for _ in 0..64 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if feasible(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    lo
}

/// Release times to test as thresholds: all of them when few, else quantiles (any subset
/// gives a valid bound; the earliest release must be included so every job is counted).
fn release_thresholds(problem: &Problem) -> Vec<f64> {
    let mut releases: Vec<f64> = problem.jobs.iter().map(|j| j.release).collect();
    releases.sort_by(f64::total_cmp);
    releases.dedup();
    if releases.len() > MAX_THRESHOLDS {
        let step = releases.len() as f64 / MAX_THRESHOLDS as f64;
        releases = (0..MAX_THRESHOLDS).map(|i| releases[(i as f64 * step) as usize]).collect();
    }
    releases
}

/// The bit standing for a model in set masks; models past the 63rd share all bits, so
/// they only count in the set of all models.
fn model_bit(model: usize) -> u64 {
    if model < 63 {
        1 << model
    } else {
        u64::MAX
    }
}

/// Each set as (bit mask over models, GPUs of those models).
fn model_sets(problem: &Problem) -> Vec<(u64, f64)> {
    let m = problem.models.len();
    let masks: Vec<u64> = if m <= MAX_SUBSET_MODELS {
        (1..(1u64 << m)).collect()
    } else {
        let all = if m >= 63 { u64::MAX } else { (1u64 << m) - 1 };
        (0..m.min(63)).map(|i| 1u64 << i).chain(std::iter::once(all)).collect()
    };
    masks
        .into_iter()
        .map(|mask| {
            let gpus: u32 = problem
                .hosts
                .iter()
                .filter(|h| model_bit(h.model) & !mask == 0)
                .map(|h| h.gpus)
                .sum();
            (mask, f64::from(gpus))
        })
        .collect()
}

/// A mode reduced to what the bound needs.
struct ModeFacts {
    runtime: f64,
    area: f64,
    /// Bits of the GPU models the mode may use.
    models: u64,
}

/// False when no plan can finish by `t`.
fn possible(jobs: &[(f64, Vec<ModeFacts>)], sets: &[(u64, f64)], releases: &[f64], t: f64) -> bool {
    let r_count = releases.len();
    // need[s][r]: GPU-seconds that jobs released at `releases[r]` or later must spend in set
    // `s`; filled at the job's own threshold, then summed from the latest threshold down.
    let mut need = vec![0.0f64; sets.len() * r_count];
    for (release, modes) in jobs {
        if !modes.iter().any(|m| release + m.runtime <= t) {
            return false;
        }
        let own = releases.partition_point(|&r| r <= *release) - 1;
        for (s, &(mask, _)) in sets.iter().enumerate() {
            // A mode not confined to the set may do all its work outside it.
            let least = modes
                .iter()
                .filter(|m| release + m.runtime <= t)
                .map(|m| if m.models & !mask == 0 { m.area } else { 0.0 })
                .fold(f64::INFINITY, f64::min);
            need[s * r_count + own] += least;
        }
    }
    sets.iter().enumerate().all(|(s, &(_, gpus))| {
        let mut later = 0.0;
        (0..r_count).rev().all(|r| {
            later += need[s * r_count + r];
            later <= gpus * (t - releases[r]).max(0.0) * (1.0 + 1e-12)
        })
    })
}
