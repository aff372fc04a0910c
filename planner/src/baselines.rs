//! The Saturn paper's baselines: max-heuristic ("current practice"), optimus-greedy
//! (Algorithm 1) and random.
//!
//! Running jobs keep their placement in all three, as a scheduler without introspection
//! would leave them alone.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::decode::{Placed, Solution};
use crate::problem::Problem;

/// Each job takes whole hosts with its best single-host option (a gang option only when
/// it has no single-host one), jobs in submission order, each on the host(s) that let it
/// finish first. GPUs the option does not use stay idle: that is the practice measured.
pub(crate) fn max_heuristic(problem: &Problem) -> (Vec<u16>, Placed) {
    let n = problem.jobs.len();
    let mut host_free = vec![0.0f64; problem.hosts.len()];
    let mut modes = vec![0u16; n];
    let mut placed = Placed { start: vec![0.0; n], gpus: vec![Vec::new(); n] };
    let mut done = vec![false; n];
    for (j, job) in problem.jobs.iter().enumerate() {
        let last = job.modes.len() - 1;
        if let Some(fixed) = &job.modes[last].fixed {
            let end = job.release + job.modes[last].runtime;
            for &g in fixed {
                let h = problem.gpu_host[g as usize] as usize;
                host_free[h] = host_free[h].max(end);
            }
            modes[j] = last as u16;
            placed.start[j] = job.release;
            placed.gpus[j] = fixed.clone();
            done[j] = true;
        }
    }
    let mut hosts_by_free: Vec<u32> = Vec::new();
    for (j, job) in problem.jobs.iter().enumerate().filter(|(j, _)| !done[*j]) {
        let single = job.modes.iter().any(|m| m.fixed.is_none() && m.hosts == 1);
        let mut best: Option<(f64, f64, usize, Vec<u32>)> = None;
        for (m, mode) in job.modes.iter().enumerate() {
            if mode.fixed.is_some() || (single && mode.hosts != 1) {
                continue;
            }
            hosts_by_free.clone_from(&problem.eligible[mode.eligible]);
            hosts_by_free.sort_by(|&a, &b| host_free[a as usize].total_cmp(&host_free[b as usize]));
            let chosen = &hosts_by_free[..mode.hosts as usize];
            let start = host_free[*chosen.last().unwrap_or(&0) as usize].max(job.release);
            let finish = start + mode.runtime;
            if best.as_ref().is_none_or(|(f, _, _, _)| finish < *f) {
                best = Some((finish, start, m, chosen.to_vec()));
            }
        }
        // Every job has a non-fixed mode that fits (validated), so `best` is set.
        let Some((finish, start, m, hosts)) = best else { continue };
        let mode = &job.modes[m];
        modes[j] = m as u16;
        placed.start[j] = start;
        for &h in &hosts {
            let first = problem.hosts[h as usize].first_gpu;
            placed.gpus[j].extend(first..first + mode.per_host);
            host_free[h as usize] = finish;
        }
    }
    (modes, placed)
}

/// Optimus-greedy: every job starts on its smallest option; GPUs are then handed out to
/// the job whose runtime drops most per added GPU until the cluster's GPUs are all given
/// out; finally jobs are list-scheduled longest first.
pub(crate) fn optimus_greedy(problem: &Problem) -> Solution {
    let gpus = |j: usize, m: usize| {
        let mode = &problem.jobs[j].modes[m];
        mode.hosts * mode.per_host
    };
    let mut modes: Vec<u16> = problem
        .jobs
        .iter()
        .enumerate()
        .map(|(j, job)| match job.modes.iter().position(|m| m.fixed.is_some()) {
            Some(kept) => kept as u16,
            None => (0..job.modes.len())
                .min_by(|&a, &b| {
                    gpus(j, a).cmp(&gpus(j, b)).then(job.modes[a].runtime.total_cmp(&job.modes[b].runtime))
                })
                .unwrap_or(0) as u16,
        })
        .collect();
    let budget = problem.gpu_count() as i64;
    let mut given: i64 = (0..modes.len()).map(|j| i64::from(gpus(j, modes[j] as usize))).sum();
    loop {
        let mut best: Option<(f64, usize, usize)> = None;
        for (j, job) in problem.jobs.iter().enumerate() {
            let now = &job.modes[modes[j] as usize];
            if now.fixed.is_some() {
                continue;
            }
            let have = gpus(j, modes[j] as usize);
            for (m, mode) in job.modes.iter().enumerate() {
                let extra = i64::from(gpus(j, m)) - i64::from(have);
                if mode.fixed.is_some() || extra <= 0 || given + extra > budget {
                    continue;
                }
                let gain = (now.runtime - mode.runtime) / extra as f64;
                if gain > 0.0 && best.is_none_or(|(g, _, _)| gain > g) {
                    best = Some((gain, j, m));
                }
            }
        }
        let Some((_, j, m)) = best else { break };
        given += i64::from(gpus(j, m)) - i64::from(gpus(j, modes[j] as usize));
        modes[j] = m as u16;
    }
    let mut order: Vec<u32> = (0..problem.jobs.len() as u32).collect();
    let runtime = |j: u32| problem.jobs[j as usize].modes[modes[j as usize] as usize].runtime;
    order.sort_by(|&a, &b| runtime(b).total_cmp(&runtime(a)).then(a.cmp(&b)));
    Solution { order, modes }
}

/// A random option per job and a random order, list-scheduled.
pub(crate) fn random(problem: &Problem, rng: &mut impl Rng) -> Solution {
    let modes = problem.jobs.iter().map(|j| rng.gen_range(0..j.modes.len()) as u16).collect();
    let mut order: Vec<u32> = (0..problem.jobs.len() as u32).collect();
    order.shuffle(rng);
    Solution { order, modes }
}
