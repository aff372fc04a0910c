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
use crate::recreate::{ruin_and_recreate, ruin_choice};

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
    /// Why the search ended.
    pub stop: Stop,
    /// Per move kind: how often it was tried, accepted, and gave a new best makespan.
    pub moves: Vec<MoveStats>,
}

/// Why the local search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The time limit.
    Deadline,
    /// The iteration cap.
    Iterations,
    /// The best plan reached the lower bound.
    LowerBound,
    /// One job, one mode: nothing to search.
    Trivial,
}

impl Stop {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Stop::Deadline => "deadline",
            Stop::Iterations => "iterations",
            Stop::LowerBound => "lower-bound",
            Stop::Trivial => "trivial",
        }
    }
}

/// Counters of one move kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveStats {
    /// The move's name.
    pub name: &'static str,
    /// Candidates evaluated.
    pub tried: u64,
    /// Candidates accepted by the annealing rule.
    pub accepted: u64,
    /// Candidates that gave a new best makespan.
    pub improved: u64,
}

/// Iterations per annealing cycle, per job (with a floor for tiny instances).
const CYCLE_PER_JOB: u64 = 40;
const CYCLE_MIN: u64 = 5_000;
/// After this many cycles without a new best, restart (the search never stops before its
/// time limit, its iteration cap or the lower bound).
const PATIENCE_CYCLES: u64 = 3;
/// Restarts draw from this many of the best distinct starts.
const POOL: usize = 6;
/// Temperature at a cycle's start and end, as fractions of the best makespan (0.006 beat
/// 0.008 and 0.01 on the Gavel and Pollux instances of the benchmarks once restarts worked).
const T_START: f64 = 0.006;
const T_END: f64 = 0.00002;
/// Multiplier of `T_START` per cycle, in turn.
const CYCLE_HEAT: [f64; 4] = [1.0, 5.0, 0.25, 2.5];
/// Decoder work on small moves per unit of work on the large move.
const LARGE_MOVE_SHARE: u64 = 2;
/// Every other cycle aims at a makespan this fraction below the best (0.01 beat 0.005 and
/// 0.02 on the 20-40-job instances of `examples/hetero_bench.rs`, 5 seeds each).
const TARGET_GAP: f64 = 0.01;
/// Most jobs one ruin and recreate takes out (each costs up to 48 positions x its modes
/// partial decodes).
const MAX_RUINED: usize = 8;

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
    let mut start_count = 0u32;
    // Without an iteration cap, starts may use a quarter of the time (1,000 jobs: ~100
    // decodes would take half a second); with one, all are decoded so the plan does not
    // depend on the machine.
    let start_deadline = starts_began + budget.deadline.saturating_duration_since(starts_began) / 4;
    let mut pool: Vec<(f64, Solution)> = Vec::new();
    for start in starts {
        if budget.max_iterations.is_none() && start_count > 0 && Instant::now() >= start_deadline {
            break;
        }
        start_count += 1;
        let cost = dec.decode(&start.order, &start.modes, None);
        if trace.is_empty() {
            trace.push((started.elapsed(), cost.makespan));
        }
        let score = dec.score(cost);
        if !pool.iter().any(|p| (p.0 - cost.makespan).abs() <= 1e-9 * cost.makespan) {
            pool.push((cost.makespan, start.clone()));
        }
        if best.as_ref().is_none_or(|b| better(cost.makespan, score, b.1, b.2)) {
            best = Some((start, cost.makespan, score));
        }
    }
    // The best distinct starts, for restarts when the search stagnates.
    pool.sort_by(|a, b| a.0.total_cmp(&b.0));
    pool.truncate(POOL);
    let Some((mut best, mut best_makespan, mut best_score)) = best else {
        let best = Solution { order: vec![], modes: vec![] };
        return Outcome { best, trace, iterations: 0, stop: Stop::Trivial, moves: Vec::new() };
    };
    if trace.last().is_some_and(|t| t.1 > best_makespan) {
        trace.push((started.elapsed(), best_makespan));
    }
    // After the search, solve() still decodes the best plan and builds max-heuristic's:
    // keep time for a few decodes so the whole solve ends within its limit.
    let per_decode = starts_began.elapsed() / start_count.max(1);
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
    let mut moves: Vec<MoveStats> =
        MOVE_NAMES.iter().map(|&name| MoveStats { name, ..MoveStats::default() }).collect();
    let mut stop = Stop::Trivial;
    let mut restarts = 0u64;
    // Most jobs a ruin and recreate takes out.
    let ruined = (2 + n / 8).min(MAX_RUINED);
    // Decoder work (placements) at the end of the last large move, and what it cost.
    let mut large_move_end = 0u64;
    let mut large_move_cost = 0u64;
    while n > 1 || !movable.is_empty() {
        if best_makespan <= budget.target * (1.0 + 1e-9) {
            stop = Stop::LowerBound;
            break;
        }
        if budget.max_iterations.is_some_and(|m| iterations >= m) {
            stop = Stop::Iterations;
            break;
        }
        if Instant::now() >= deadline {
            stop = Stop::Deadline;
            break;
        }
        let cycle_index = iterations / cycle;
        let phase = (iterations % cycle) as f64 / cycle as f64;
        if iterations % cycle == 0 && iterations > 0 {
            if cycle_index - last_improvement_cycle >= PATIENCE_CYCLES {
                // Stagnating: restart, alternately from one of the best starts and from a
                // ruin and recreate of the best plan (iterated local search).
                restarts += 1;
                last_improvement_cycle = cycle_index;
                if restarts % 2 == 1 && !pool.is_empty() {
                    cur.clone_from(&pool[(restarts / 2 + 1) as usize % pool.len()].1);
                } else {
                    cur.clone_from(&best);
                    dec.decode(&cur.order, &cur.modes, None);
                    let removed = ruin_choice(problem, &cur, dec.ends(), ruined, rng);
                    ruin_and_recreate(problem, allowed, &mut dec, &mut cur, &removed, deadline, rng);
                }
                dec.target = cycle_target(cycle_index, best_makespan);
                let cost = dec.decode(&cur.order, &cur.modes, None);
                cur_score = dec.score(cost);
                // No `continue`: the next pass would see the same cycle boundary and
                // replace the restart by the best plan before it ran a single move.
            } else {
                cur.clone_from(&best);
                dec.target = cycle_target(cycle_index, best_makespan);
                let cost = dec.decode(&cur.order, &cur.modes, None);
                cur_score = dec.score(cost);
            }
        }
        iterations += 1;
        // Cycles alternate hot and cool starts: which suits an instance varies (measured).
        let heat = CYCLE_HEAT[(cycle_index % CYCLE_HEAT.len() as u64) as usize];
        let temperature = best_makespan * heat * T_START * (T_END / T_START).powf(phase);
        let threshold = cur_score - temperature * rng.gen::<f64>().max(1e-300).ln();
        let (kind, result) = if dec.placements - large_move_end >= LARGE_MOVE_SHARE * large_move_cost {
            // Ruin and recreate, with about 1 / (1 + LARGE_MOVE_SHARE) of the decoder's work.
            let before = cur.clone();
            let count = rng.gen_range(2..=ruined);
            let removed = ruin_choice(problem, &cur, dec.ends(), count, rng);
            let began = dec.placements;
            let cost = ruin_and_recreate(problem, allowed, &mut dec, &mut cur, &removed, deadline, rng);
            large_move_end = dec.placements;
            large_move_cost = large_move_end - began;
            if dec.score(cost) <= threshold {
                (RUIN_AND_RECREATE, Some(cost))
            } else {
                cur = before;
                dec.decode(&cur.order, &cur.modes, None);
                (RUIN_AND_RECREATE, None)
            }
        } else {
            let undo = random_move(problem, allowed, (&movable, &everyone), &mut cur, dec.ends(), rng);
            match dec.evaluate(&cur.order, &cur.modes, undo.from, threshold) {
                Some(cost) => {
                    dec.commit();
                    (undo.kind.index(), Some(cost))
                }
                None => {
                    let kind = undo.kind.index();
                    undo.revert(&mut cur);
                    (kind, None)
                }
            }
        };
        let stats = &mut moves[kind];
        stats.tried += 1;
        if let Some(cost) = result {
            stats.accepted += 1;
            cur_score = dec.score(cost);
            // The best plan is judged by the makespan whatever the cycle's objective.
            let score = dec.makespan_score(cost);
            if better(cost.makespan, score, best_makespan, best_score) {
                if cost.makespan < best_makespan {
                    trace.push((started.elapsed(), cost.makespan));
                    last_improvement_cycle = cycle_index;
                    stats.improved += 1;
                }
                best.clone_from(&cur);
                best_makespan = cost.makespan;
                best_score = score;
            }
        }
    }
    Outcome { best, trace, iterations, stop, moves }
}

/// The makespan a cycle aims at: every other cycle, a little below the best, else none.
/// Aiming below the best, the search minimises the jobs' total overshoot past the target
/// (`Decoder::target`): a plan whose makespan is one job's runtime (a 1-GPU job running
/// from the start to the end) is a plateau for the makespan, since giving that job more
/// GPUs first delays others, but not for the overshoot, which falls as soon as that job
/// ends earlier and the others move less past the target (het-36j-16g stayed at 1.034x
/// the best known for half the seeds; with these cycles 4 seeds in 5 reach it).
fn cycle_target(cycle_index: u64, best_makespan: f64) -> f64 {
    if cycle_index % 2 == 1 {
        best_makespan * (1.0 - TARGET_GAP)
    } else {
        f64::INFINITY
    }
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
    /// A new mode and an earlier place in the order together.
    ModeEarlier { job: usize, mode: u16, from: usize, to: usize },
    /// Two jobs traded models and places.
    Exchange { a: usize, b: usize, mode_a: u16, mode_b: u16, pa: usize, pb: usize },
}

/// Move names, in [`UndoKind::index`] order, then the large move.
const MOVE_NAMES: [&str; 6] = ["reinsert", "swap", "mode", "mode+earlier", "exchange-models", "ruin-recreate"];
/// [`MOVE_NAMES`] index of the large move (`recreate.rs`).
const RUIN_AND_RECREATE: usize = 5;

impl UndoKind {
    fn index(&self) -> usize {
        match self {
            UndoKind::Reinsert { .. } => 0,
            UndoKind::Swap { .. } => 1,
            UndoKind::Mode { .. } => 2,
            UndoKind::ModeEarlier { .. } => 3,
            UndoKind::Exchange { .. } => 4,
        }
    }
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
            UndoKind::ModeEarlier { job, mode, from, to } => {
                s.modes[job] = mode;
                let moved = s.order.remove(to);
                s.order.insert(from, moved);
            }
            UndoKind::Exchange { a, b, mode_a, mode_b, pa, pb } => {
                s.modes[a] = mode_a;
                s.modes[b] = mode_b;
                s.order.swap(pa, pb);
            }
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
        let at = position(&s.order, job as u32);
        if at > 0 && roll % 2 == 0 {
            // Another model or size usually needs another place in the order: a job moved
            // to faster GPUs must start before those fill up.
            let to = rng.gen_range(0..at);
            let moved = s.order.remove(at);
            s.order.insert(to, moved);
            let from = if fixedness_changes { 0 } else { to };
            return Undo { from, kind: UndoKind::ModeEarlier { job, mode: old, from: at, to } };
        }
        let from = if fixedness_changes { 0 } else { at };
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
    if roll >= 93 && movable.len() >= 2 {
        return exchange_models(problem, allowed, movable, s, ends, rng);
    }
    let a = rng.gen_range(0..n);
    let b = (a + 1 + rng.gen_range(0..n.min(8) - 1)) % n;
    s.order.swap(a, b);
    Undo { from: a.min(b), kind: UndoKind::Swap { a, b } }
}

/// A late job and another one trade GPU models (each takes a random option on the other's
/// current model, when it has one) and places in the order: on a cluster of several
/// models, moving one job to a busy model only pays when another leaves it.
fn exchange_models(
    problem: &Problem,
    allowed: &[Vec<u16>],
    movable: &[u32],
    s: &mut Solution,
    ends: &[f64],
    rng: &mut ChaCha8Rng,
) -> Undo {
    let a = late_job(movable, ends, rng) as usize;
    let mut b = movable[rng.gen_range(0..movable.len())] as usize;
    if b == a {
        b = movable[(movable.iter().position(|&j| j as usize == a).unwrap_or(0) + 1) % movable.len()] as usize;
    }
    let model = |job: usize, mode: u16| {
        let m = &problem.jobs[job].modes[mode as usize];
        problem.eligible[m.eligible].first().map(|&h| problem.hosts[h as usize].model)
    };
    let (old_a, old_b) = (s.modes[a], s.modes[b]);
    let (model_a, model_b) = (model(a, old_a), model(b, old_b));
    let mut pick = |job: usize, wanted: Option<usize>, old: u16| {
        let on: Vec<u16> = allowed[job].iter().copied().filter(|&m| model(job, m) == wanted).collect();
        if on.is_empty() {
            old
        } else {
            on[rng.gen_range(0..on.len())]
        }
    };
    s.modes[a] = pick(a, model_b, old_a);
    s.modes[b] = pick(b, model_a, old_b);
    let (pa, pb) = (position(&s.order, a as u32), position(&s.order, b as u32));
    s.order.swap(pa, pb);
    let fixed = |job: usize, m: u16| problem.jobs[job].modes[m as usize].fixed.is_some();
    let fixedness = fixed(a, old_a) || fixed(a, s.modes[a]) || fixed(b, old_b) || fixed(b, s.modes[b]);
    let from = if fixedness { 0 } else { pa.min(pb) };
    Undo { from, kind: UndoKind::Exchange { a, b, mode_a: old_a, mode_b: old_b, pa, pb } }
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
