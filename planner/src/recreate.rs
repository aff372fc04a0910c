//! Ruin and recreate: the local search's large move. A few jobs leave the plan and go
//! back one at a time, each at the place in the order and with the mode that decode best.
//!
//! Why: on a cluster of several GPU models a better plan often hands several jobs at once
//! to other models or GPU counts (het-36j-16g of `examples/hetero_bench.rs`: a plan at
//! 1.034x the best known and the best known differ in the mode of 12 of 36 jobs, and its
//! K80s idle 39% of the time against 2%). One changed job makes the plan worse before the
//! others follow, so single moves rarely get there; reinserting jobs that share GPUs, each
//! by its best mode and place given the others, repacks them together. Measured with the
//! overshoot cycles of `search.rs` on the 20-40-job instances, 10 seeds: worst 1.019-1.027x
//! the best known with it, 1.023-1.038x without (mean about the same).

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::decode::{Cost, Decoder, Solution};
use crate::problem::Problem;

/// Order positions tried per reinserted job; beyond this, evenly spaced ones (a reinsertion
/// costs positions x modes partial decodes).
const MAX_POSITIONS: usize = 48;

/// Takes `removed` out of `s` and reinserts them in random order, each at the position and
/// with the mode (of its `allowed` ones) that give the lowest score. Jobs whose mode keeps
/// them where they run are never removed (they are placed before the order anyway). Leaves
/// `dec` holding the decode of the new `s`, and returns its cost. Past `deadline` the jobs
/// not yet placed go back to the end of the order as they were (a 1,000-job plan's move
/// can take longer than the rest of the time limit).
pub(crate) fn ruin_and_recreate(
    problem: &Problem,
    allowed: &[Vec<u16>],
    dec: &mut Decoder,
    s: &mut Solution,
    removed: &[u32],
    deadline: Instant,
    rng: &mut ChaCha8Rng,
) -> Cost {
    let fixed = |job: usize, mode: u16| problem.jobs[job].modes[mode as usize].fixed.is_some();
    let mut removed: Vec<u32> = removed.iter().copied().filter(|&j| !fixed(j as usize, s.modes[j as usize])).collect();
    removed.sort_unstable();
    removed.dedup();
    removed.shuffle(rng);
    s.order.retain(|j| !removed.contains(j));
    let mut cost = dec.decode(&s.order, &s.modes, None);
    let mut late = false;
    for &job in &removed {
        if Instant::now() >= deadline {
            s.order.push(job);
            late = true;
            continue;
        }
        let positions = positions(s.order.len() + 1, rng);
        let mut best: Option<(f64, usize, u16)> = None;
        for &mode in &allowed[job as usize] {
            if fixed(job as usize, mode) {
                continue;
            }
            s.modes[job as usize] = mode;
            for &at in &positions {
                s.order.insert(at, job);
                let give_up = best.map_or(f64::INFINITY, |b| b.0);
                if let Some(cost) = dec.evaluate(&s.order, &s.modes, at, give_up) {
                    let score = dec.score(cost);
                    if best.is_none_or(|b| score < b.0) {
                        best = Some((score, at, mode));
                    }
                }
                s.order.remove(at);
            }
        }
        if let Some((_, at, mode)) = best {
            s.modes[job as usize] = mode;
            s.order.insert(at, job);
        } else {
            s.order.push(job);
        }
        cost = dec.decode(&s.order, &s.modes, None);
    }
    if late {
        cost = dec.decode(&s.order, &s.modes, None);
    }
    cost
}

/// Every position of an order of `slots` positions, or `MAX_POSITIONS` evenly spaced ones
/// from a random offset (always including the end).
fn positions(slots: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    if slots <= MAX_POSITIONS {
        return (0..slots).collect();
    }
    let step = slots as f64 / MAX_POSITIONS as f64;
    let offset = rng.gen::<f64>() * step;
    let mut at: Vec<usize> = (0..MAX_POSITIONS).map(|i| (offset + step * i as f64) as usize).collect();
    at.push(slots - 1);
    at.dedup();
    at
}

/// `count` jobs to take out: a late job and, half the time, the jobs on its GPU model that
/// end nearest to it (they share its GPUs, so together they can be packed anew), else
/// random late or any jobs.
pub(crate) fn ruin_choice(problem: &Problem, s: &Solution, ends: &[f64], count: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let n = s.order.len() as u32;
    let late = |rng: &mut ChaCha8Rng| {
        (0..3).map(|_| rng.gen_range(0..n)).max_by(|&a, &b| ends[a as usize].total_cmp(&ends[b as usize])).unwrap_or(0)
    };
    let seed = late(rng);
    if rng.gen_bool(0.5) {
        let model = |job: u32| {
            let mode = &problem.jobs[job as usize].modes[s.modes[job as usize] as usize];
            problem.eligible[mode.eligible].first().map(|&h| problem.hosts[h as usize].model)
        };
        let mut related: Vec<u32> = (0..n).filter(|&j| j != seed && model(j) == model(seed)).collect();
        let distance = |j: u32| (ends[j as usize] - ends[seed as usize]).abs();
        related.sort_by(|&a, &b| distance(a).total_cmp(&distance(b)).then(a.cmp(&b)));
        related.truncate(count.saturating_sub(1));
        related.push(seed);
        return related;
    }
    (0..count).map(|i| if i % 2 == 0 { late(rng) } else { rng.gen_range(0..n) }).collect()
}
