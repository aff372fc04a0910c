//! Starting points for the local search: pruning modes no optimal plan needs, and a few
//! greedy plans built from simple rules, of which the search starts from the best.

use crate::decode::{Decoder, Solution};
use crate::problem::{Mode, Problem};

/// Per job, the modes worth searching: those not dominated by another mode that needs no
/// more hosts, no more GPUs per host, at least the same hosts, and no more time. Replacing
/// a dominated mode by its dominator in any plan keeps the plan valid and no longer, so an
/// optimal plan never needs one. Modes keeping a running job in place are always kept.
pub(crate) fn undominated_modes(problem: &Problem) -> Vec<Vec<u16>> {
    // covers[a][b]: host list a contains host list b (few lists, many modes share them).
    let lists = &problem.eligible;
    let covers: Vec<Vec<bool>> = lists
        .iter()
        .map(|a| lists.iter().map(|b| b.iter().all(|h| a.binary_search(h).is_ok())).collect())
        .collect();
    let covers = |a: &Mode, b: &Mode| covers[a.eligible][b.eligible];
    let dominates = |a: &Mode, b: &Mode| {
        a.fixed.is_none()
            && b.fixed.is_none()
            && a.hosts <= b.hosts
            && a.per_host <= b.per_host
            && a.runtime <= b.runtime
            && covers(a, b)
    };
    problem
        .jobs
        .iter()
        .map(|job| {
            let modes = &job.modes;
            (0..modes.len())
                .filter(|&i| {
                    !(0..modes.len()).any(|k| {
                        // Of two identical modes keep the first.
                        k != i && dominates(&modes[k], &modes[i]) && (k < i || !dominates(&modes[i], &modes[k]))
                    })
                })
                .map(|i| i as u16)
                .collect()
        })
        .collect()
}

/// Greedy plans: for several target makespans, each job takes its cheapest mode (fewest
/// GPU-seconds) that finishes within the target, ordered by a few priority rules.
pub(crate) fn greedy_starts(problem: &Problem, allowed: &[Vec<u16>], lower_bound: f64) -> Vec<Solution> {
    let mut starts = Vec::new();
    // A fine grid near the bound: the best target is usually a little above it, and each
    // try costs three decodes.
    let factors = (0..=25).map(|i| 1.0 + 0.02 * f64::from(i)).chain([1.75, 2.0, f64::INFINITY]);
    for factor in factors {
        let target = lower_bound * factor;
        let modes: Vec<u16> = problem
            .jobs
            .iter()
            .zip(allowed)
            .map(|(job, allowed)| {
                let fits = |&&m: &&u16| job.release + job.modes[m as usize].runtime <= target;
                let area = |&m: &u16| job.modes[m as usize].area();
                let runtime = |&m: &u16| job.modes[m as usize].runtime;
                let cheapest = allowed.iter().filter(fits).min_by(|a, b| area(a).total_cmp(&area(b)));
                let fastest = || allowed.iter().min_by(|a, b| runtime(a).total_cmp(&runtime(b)));
                cheapest.or_else(fastest).copied().unwrap_or(0)
            })
            .collect();
        starts.extend(ordered_starts(problem, &modes));
    }
    starts
}

/// The modes in three orders: longest runtime, largest area, most GPUs first.
fn ordered_starts(problem: &Problem, modes: &[u16]) -> Vec<Solution> {
    let mode = |j: u32| &problem.jobs[j as usize].modes[modes[j as usize] as usize];
    let rules: [&dyn Fn(u32) -> (f64, f64); 3] = [
        &|j| (mode(j).runtime, 0.0),
        &|j| (mode(j).area(), 0.0),
        &|j| (f64::from(mode(j).hosts * mode(j).per_host), mode(j).runtime),
    ];
    rules
        .iter()
        .map(|key| {
            let mut order: Vec<u32> = (0..problem.jobs.len() as u32).collect();
            // Descending, ties by job index so the start is deterministic.
            order.sort_by(|&a, &b| {
                let (ka, kb) = (key(a), key(b));
                kb.0.total_cmp(&ka.0).then(kb.1.total_cmp(&ka.1)).then(a.cmp(&b))
            });
            Solution { order, modes: modes.to_vec() }
        })
        .collect()
}

/// Model-aware greedy plans for clusters of several GPU models: the cheapest mode per job
/// (fewest GPU-seconds) makes every job pick the fastest model and leaves the others idle.
/// Here each model's GPU-seconds carry a price, adjusted until the work handed to each
/// model fits its GPUs in about the same time (a Lagrangian take on the LP relaxation of
/// the job-to-model assignment); each job takes the mode of least priced GPU-seconds that
/// finishes within the target.
pub(crate) fn priced_starts(problem: &Problem, allowed: &[Vec<u16>], lower_bound: f64) -> Vec<Solution> {
    let models = problem.models.len();
    if models < 2 || problem.jobs.is_empty() {
        return Vec::new();
    }
    let mut gpus = vec![0.0f64; models];
    for host in &problem.hosts {
        gpus[host.model] += f64::from(host.gpus);
    }
    // A mode's model: that of its eligible hosts (`None` when they span several).
    let model_of = |mode: &Mode| {
        let hosts = &problem.eligible[mode.eligible];
        let first = hosts.first().map(|&h| problem.hosts[h as usize].model);
        first.filter(|&m| hosts.iter().all(|&h| problem.hosts[h as usize].model == m))
    };
    let mode_models: Vec<Vec<Option<usize>>> =
        problem.jobs.iter().map(|j| j.modes.iter().map(model_of).collect()).collect();
    let mut starts = Vec::new();
    for factor in [1.0, 1.05, 1.1, 1.2, 1.35, 1.6] {
        let target = lower_bound * factor;
        let mut price = vec![1.0f64; models];
        let mut best: Option<(f64, Vec<u16>)> = None;
        for round in 0..60 {
            let mut load = vec![0.0f64; models];
            let modes: Vec<u16> = problem
                .jobs
                .iter()
                .enumerate()
                .map(|(j, job)| {
                    let cost = |m: u16| {
                        let mode = &job.modes[m as usize];
                        let p = mode_models[j][m as usize].map_or(1.0, |k| price[k]);
                        let late = job.release + mode.runtime > target;
                        (late, if late { mode.runtime } else { mode.area() * p })
                    };
                    let pick = allowed[j]
                        .iter()
                        .copied()
                        .min_by(|&a, &b| {
                            let (ca, cb) = (cost(a), cost(b));
                            ca.0.cmp(&cb.0).then(ca.1.total_cmp(&cb.1))
                        })
                        .unwrap_or(0);
                    let mode = &job.modes[pick as usize];
                    if let Some(k) = mode_models[j][pick as usize] {
                        load[k] += mode.area();
                    }
                    pick
                })
                .collect();
            let time: Vec<f64> = (0..models).map(|k| if gpus[k] > 0.0 { load[k] / gpus[k] } else { 0.0 }).collect();
            let worst = time.iter().copied().fold(0.0, f64::max);
            if best.as_ref().is_none_or(|b| worst < b.0) {
                best = Some((worst, modes));
            }
            let mean = time.iter().sum::<f64>() / models as f64;
            if mean <= 0.0 {
                break;
            }
            let step = 0.5 / (1.0 + f64::from(round) / 10.0);
            for k in 0..models {
                price[k] *= (time[k].max(mean * 1e-3) / mean).powf(step);
            }
        }
        if let Some((_, modes)) = best {
            starts.extend(ordered_starts(problem, &modes));
        }
    }
    starts
}

/// Plans whose modes the decoder picks as it places each job (earliest completion, with a
/// few weights on GPU-seconds), for three orders of the jobs by their fastest runtime,
/// their least GPU-seconds and their most GPUs. On clusters of several GPU models this
/// sends a long job to the fast GPUs first and fills the slow ones with the rest.
pub(crate) fn completion_starts(problem: &Problem, allowed: &[Vec<u16>], base: &[u16]) -> Vec<Solution> {
    let mut dec = Decoder::new(problem);
    let fastest: Vec<u16> = problem
        .jobs
        .iter()
        .zip(allowed)
        .zip(base)
        .map(|((job, allowed), &b)| {
            if job.modes[b as usize].fixed.is_some() {
                return b;
            }
            let runtime = |m: &&u16| job.modes[**m as usize].runtime;
            allowed.iter().min_by(|a, b| runtime(a).total_cmp(&runtime(b))).copied().unwrap_or(b)
        })
        .collect();
    let mut starts = Vec::new();
    for key in ordered_starts(problem, &fastest) {
        for weight in [0.0, 0.5, 1.0, 2.0] {
            let modes = dec.choose_modes(&key.order, base, allowed, weight);
            starts.push(Solution { order: key.order.clone(), modes });
        }
    }
    starts
}
