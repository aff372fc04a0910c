//! Starting points for the local search: pruning modes no optimal plan needs, and a few
//! greedy plans built from simple rules, of which the search starts from the best.

use crate::decode::Solution;
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
        let mode = |j: u32| &problem.jobs[j as usize].modes[modes[j as usize] as usize];
        let rules: [&dyn Fn(u32) -> (f64, f64); 3] = [
            &|j| (mode(j).runtime, 0.0),
            &|j| (mode(j).area(), 0.0),
            &|j| (f64::from(mode(j).hosts * mode(j).per_host), mode(j).runtime),
        ];
        for key in rules {
            let mut order: Vec<u32> = (0..problem.jobs.len() as u32).collect();
            // Descending, ties by job index so the start is deterministic.
            order.sort_by(|&a, &b| {
                let (ka, kb) = (key(a), key(b));
                kb.0.total_cmp(&ka.0).then(kb.1.total_cmp(&ka.1)).then(a.cmp(&b))
            });
            starts.push(Solution { order, modes: modes.clone() });
        }
    }
    starts
}
