//! The local-search solver: simulated annealing over (job order, mode per job), each
//! candidate decoded by the list scheduler of `decode.rs`.
//!
//! Why this design (measured against alternatives in `examples/planner_bench.rs`): the decoder
//! turns any order/mode pair into a valid plan, so every move is feasible and the search
//! only has to find good orders and configurations. Annealing runs in cycles that restart
//! from the best plan with a fresh temperature, which escapes the makespan plateaus better
//! than one long cooling. Candidates are evaluated incrementally from the first changed
//! position and abandoned as soon as they exceed the acceptance threshold, drawn before
//! decoding.

use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::decode::{Decoder, Solution};
use crate::problem::Problem;

/// When and how the search stops.
pub(crate) struct Budget {
    /// Wall-clock deadline.
    pub deadline: Instant,
    /// Iteration cap; `None` = run until the deadline or until the search stagnates.
    pub max_iterations: Option<u64>,
    /// Stop when this makespan is reached (the lower bound: nothing better exists).
    pub target: f64,
}

/// The best solution found and the history of improvements.
pub(crate) struct Outcome {
    pub best: Solution,
    /// (time since `started`, makespan) at each improvement of the best plan.
    pub trace: Vec<(Duration, f64)>,
    pub iterations: u64,
}

/// Iterations per annealing cycle, per job (with a floor for tiny instances).
const CYCLE_PER_JOB: u64 = 40;
const CYCLE_MIN: u64 = 20_000;
/// Without an iteration cap, stop after this many cycles without a new best.
const PATIENCE_CYCLES: u64 = 12;
/// Temperature at a cycle's start and end, as fractions of the best makespan.
const T_START: f64 = 0.006;
const T_END: f64 = 0.00002;
/// Multiplier of `T_START` per cycle, in turn.
const CYCLE_HEAT: [f64; 3] = [1.0, 4.0, 0.25];

/// Anneals from the best of `starts`; `started` is when the whole solve began (for the trace).
pub(crate) fn anneal(
    problem: &Problem,
    allowed: &[Vec<u16>],
    starts: Vec<Solution>,
    budget: &Budget,
    rng: &mut ChaCha8Rng,
    started: Instant,
) -> Outcome {
    let mut dec = Decoder::new(problem);
    let mut trace = Vec::new();
    let mut best: Option<(Solution, f64, f64)> = None;
    let starts_began = Instant::now();
    let start_count = starts.len().max(1) as u32;
    for start in starts {
        let cost = dec.decode(&start.order, &start.modes, None);
        if trace.is_empty() {
            trace.push((started.elapsed(), cost.makespan));
        }
        let score = dec.score(cost);
        if best.as_ref().is_none_or(|b| better(cost.makespan, score, b.1, b.2)) {
            best = Some((start, cost.makespan, score));
        }
    }
    let Some((mut best, mut best_makespan, mut best_score)) = best else {
        return Outcome { best: Solution { order: vec![], modes: vec![] }, trace, iterations: 0 };
    };
    if trace.last().is_some_and(|t| t.1 > best_makespan) {
        trace.push((started.elapsed(), best_makespan));
    }
    // After the search, solve() still decodes the best plan and builds max-heuristic's:
    // keep time for a few decodes so the whole solve ends within its limit.
    let per_decode = starts_began.elapsed() / start_count;
    let reserve = per_decode * 8 + Duration::from_millis(2);
    let deadline = budget.deadline.checked_sub(reserve).unwrap_or(budget.deadline);
    let n = problem.jobs.len();
    let movable: Vec<u32> = (0..n as u32).filter(|&j| allowed[j as usize].len() > 1).collect();
    let cycle = (CYCLE_PER_JOB * n as u64).max(CYCLE_MIN);
    let mut cur = best.clone();
    let mut cur_score = best_score;
    dec.decode(&cur.order, &cur.modes, None);
    let mut iterations = 0u64;
    let mut last_improvement_cycle = 0u64;
    let everyone: Vec<u32> = (0..n as u32).collect();
    while n > 1 || !movable.is_empty() {
        let out_of_budget = budget.max_iterations.is_some_and(|m| iterations >= m)
            || Instant::now() >= deadline;
        if out_of_budget || best_makespan <= budget.target * (1.0 + 1e-9) {
            break;
        }
        let cycle_index = iterations / cycle;
        let phase = (iterations % cycle) as f64 / cycle as f64;
        if iterations % cycle == 0 && iterations > 0 {
            if budget.max_iterations.is_none() && cycle_index - last_improvement_cycle >= PATIENCE_CYCLES {
                break;
            }
            cur.clone_from(&best);
            cur_score = best_score;
            dec.decode(&cur.order, &cur.modes, None);
        }
        iterations += 1;
        // Cycles alternate hot and cool starts: which suits an instance varies (measured).
        let heat = CYCLE_HEAT[(cycle_index % CYCLE_HEAT.len() as u64) as usize];
        let temperature = best_makespan * heat * T_START * (T_END / T_START).powf(phase);
        let undo = random_move(problem, allowed, (&movable, &everyone), &mut cur, dec.ends(), rng);
        let threshold = cur_score - temperature * rng.gen::<f64>().max(1e-300).ln();
        match dec.evaluate(&cur.order, &cur.modes, undo.from, threshold) {
            Some(cost) => {
                dec.commit();
                cur_score = dec.score(cost);
                if better(cost.makespan, cur_score, best_makespan, best_score) {
                    if cost.makespan < best_makespan {
                        trace.push((started.elapsed(), cost.makespan));
                        last_improvement_cycle = cycle_index;
                    }
                    best.clone_from(&cur);
                    best_makespan = cost.makespan;
                    best_score = cur_score;
                }
            }
            None => undo.revert(&mut cur),
        }
    }
    Outcome { best, trace, iterations }
}

/// Makespan first; the score breaks ties.
fn better(makespan: f64, score: f64, best_makespan: f64, best_score: f64) -> bool {
    makespan < best_makespan - 1e-9 || (makespan <= best_makespan + 1e-9 && score < best_score - 1e-9)
}

/// How to take a move back, and the first order position it changed.
struct Undo {
    from: usize,
    kind: UndoKind,
}

enum UndoKind {
    Reinsert { from: usize, to: usize },
    Swap { a: usize, b: usize },
    Mode { job: usize, mode: u16 },
}

impl Undo {
    fn revert(self, s: &mut Solution) {
        match self.kind {
            UndoKind::Reinsert { from, to } => {
                let job = s.order.remove(to);
                s.order.insert(from, job);
            }
            UndoKind::Swap { a, b } => s.order.swap(a, b),
            UndoKind::Mode { job, mode } => s.modes[job] = mode,
        }
    }
}

/// Applies one random neighbourhood move to `s` in place.
fn random_move(
    problem: &Problem,
    allowed: &[Vec<u16>],
    (movable, everyone): (&[u32], &[u32]),
    s: &mut Solution,
    ends: &[f64],
    rng: &mut ChaCha8Rng,
) -> Undo {
    let n = s.order.len();
    let roll = rng.gen_range(0..100);
    if (roll < 35 && !movable.is_empty()) || n < 2 {
        // A job late in the schedule gets a different configuration.
        let job = late_job(movable, ends, rng) as usize;
        let old = s.modes[job];
        let choices = &allowed[job];
        let mut new = choices[rng.gen_range(0..choices.len())];
        if new == old {
            new = choices[(choices.iter().position(|&m| m == old).unwrap_or(0) + 1) % choices.len()];
        }
        s.modes[job] = new;
        let modes = &problem.jobs[job].modes;
        let fixedness_changes = modes[old as usize].fixed.is_some() || modes[new as usize].fixed.is_some();
        let from = if fixedness_changes { 0 } else { position(&s.order, job as u32) };
        return Undo { from, kind: UndoKind::Mode { job, mode: old } };
    }
    if roll < 85 {
        // Move a late job earlier in the order, or any job anywhere.
        let (from, to) = if roll < 65 {
            (position(&s.order, late_job(everyone, ends, rng)), rng.gen_range(0..n))
        } else {
            (rng.gen_range(0..n), rng.gen_range(0..n))
        };
        let job = s.order.remove(from);
        s.order.insert(to, job);
        return Undo { from: from.min(to), kind: UndoKind::Reinsert { from, to } };
    }
    let a = rng.gen_range(0..n);
    let b = (a + 1 + rng.gen_range(0..n.min(8) - 1)) % n;
    s.order.swap(a, b);
    Undo { from: a.min(b), kind: UndoKind::Swap { a, b } }
}

/// Of three random candidates, the one ending latest (tournament selection).
fn late_job(candidates: &[u32], ends: &[f64], rng: &mut ChaCha8Rng) -> u32 {
    (0..3)
        .map(|_| candidates[rng.gen_range(0..candidates.len())])
        .max_by(|&a, &b| ends[a as usize].total_cmp(&ends[b as usize]))
        .unwrap_or(candidates[0])
}

fn position(order: &[u32], job: u32) -> usize {
    order.iter().position(|&j| j == job).unwrap_or(0)
}
