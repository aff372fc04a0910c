//! The list-scheduling decoder: (job order, mode per job) → start times and GPUs.
//!
//! Jobs are placed one after another, each at the earliest time its gang fits, given when
//! every GPU becomes free. Each host keeps its GPUs sorted by free time, so "when are `p`
//! GPUs free on this host" is one array read and a gang search is a scan over the eligible
//! hosts — about 100 ns per host, which is what lets the local search evaluate thousands
//! of orders per second on 1,000 jobs.
//!
//! Running jobs that keep their placement are placed first, at their release time, on
//! exactly their GPUs; everything else follows the order.

use crate::problem::{Mode, Problem};

/// Snapshot spacing (in order positions) for incremental re-evaluation.
const BLOCK: usize = 32;

/// The quality of a decoded schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cost {
    /// Largest end time.
    pub makespan: f64,
    /// Sum of all end times: a tie-breaker that rewards finishing work early, which gives
    /// the search a slope on the plateaus where the makespan does not move.
    pub sum_end: f64,
    /// Sum over jobs of how far each ends past [`Decoder::target`].
    pub overshoot: f64,
}

/// Free time of every GPU, per host sorted ascending.
#[derive(Debug, Clone)]
struct State {
    /// Free time of the GPU in each slot; slots `first_gpu..first_gpu+gpus` belong to a host.
    free: Vec<f64>,
    /// Global GPU id in each slot.
    gpu: Vec<u32>,
    makespan: f64,
    sum_end: f64,
    /// Sum over jobs of how far they end past `Decoder::target`.
    overshoot: f64,
}

/// Reusable decoder for one problem; holds the snapshots of the last committed decode.
pub(crate) struct Decoder<'p> {
    problem: &'p Problem,
    state: State,
    snapshots: Vec<State>,
    /// Snapshots written by the latest evaluation, from block `pending_from` on.
    pending: Vec<State>,
    pending_from: usize,
    /// End time per job (see [`Decoder::ends`]).
    ends: Vec<f64>,
    /// Scratch: (free time of the `p`-th GPU, GPUs free by then, host) per candidate host.
    candidates: Vec<(f64, u32, u32)>,
    /// Weight of the mean end time in [`Decoder::score`].
    pub tie_weight: f64,
    /// A makespan to reach: when finite, [`Decoder::score`] is the jobs' total overshoot
    /// past it instead of the makespan (see `search.rs`, `cycle_target`).
    pub target: f64,
    /// Jobs placed so far, over every decode and evaluation: the search's unit of work.
    pub placements: u64,
}

impl<'p> Decoder<'p> {
    /// A decoder with empty state.
    pub fn new(problem: &'p Problem) -> Self {
        let n = problem.gpu_count();
        let state =
            State { free: vec![0.0; n], gpu: (0..n as u32).collect(), makespan: 0.0, sum_end: 0.0, overshoot: 0.0 };
        Decoder {
            problem,
            state,
            snapshots: Vec::new(),
            pending: Vec::new(),
            pending_from: 0,
            ends: vec![0.0; problem.jobs.len()],
            candidates: Vec::new(),
            tie_weight: 0.01,
            target: f64::INFINITY,
            placements: 0,
        }
    }

    /// The scalar the search minimises.
    pub fn score(&self, cost: Cost) -> f64 {
        let jobs = self.problem.jobs.len().max(1) as f64;
        if self.target.is_finite() {
            cost.overshoot + self.tie_weight * cost.sum_end / jobs
        } else {
            self.makespan_score(cost)
        }
    }

    /// [`Decoder::score`] without a target: the makespan, ties broken by the mean end time.
    pub fn makespan_score(&self, cost: Cost) -> f64 {
        let jobs = self.problem.jobs.len().max(1) as f64;
        cost.makespan + self.tie_weight * cost.sum_end / jobs
    }

    /// Decodes fully, recording start times and GPUs, and refreshes the snapshots.
    pub fn decode(&mut self, order: &[u32], modes: &[u16], out: Option<&mut Placed>) -> Cost {
        self.reset(modes);
        self.snapshots.clear();
        let mut out = out;
        if let Some(o) = out.as_deref_mut() {
            o.reset(self.problem.jobs.len());
            self.record_fixed(modes, o);
        }
        for (pos, &job) in order.iter().enumerate() {
            if pos % BLOCK == 0 {
                self.snapshots.push(self.state.clone());
            }
            self.place(job, modes, out.as_deref_mut());
        }
        self.cost()
    }

    /// List scheduling that also picks each job's mode as it goes: of the job's `allowed`
    /// modes, the one minimising its end time plus `area_weight` x its GPU-seconds per GPU
    /// of the cluster (0: earliest completion; larger: fewer GPU-seconds). Jobs whose mode
    /// in `modes` keeps them where they run are left alone. Returns the chosen modes.
    pub fn choose_modes(&mut self, order: &[u32], modes: &[u16], allowed: &[Vec<u16>], area_weight: f64) -> Vec<u16> {
        let mut chosen = modes.to_vec();
        self.reset(modes);
        self.snapshots.clear();
        let per_gpu = area_weight / self.problem.gpu_count().max(1) as f64;
        for &job in order {
            let info = &self.problem.jobs[job as usize];
            if info.modes[modes[job as usize] as usize].fixed.is_some() {
                continue;
            }
            let mut best: Option<(f64, u16)> = None;
            for &m in &allowed[job as usize] {
                let mode = &info.modes[m as usize];
                if mode.fixed.is_some() {
                    continue;
                }
                let end = self.find_hosts(mode, info.release) + mode.runtime;
                let cost = end + per_gpu * mode.area();
                if best.is_none_or(|b| cost < b.0) {
                    best = Some((cost, m));
                }
            }
            if let Some((_, m)) = best {
                chosen[job as usize] = m;
            }
            self.place(job, &chosen, None);
        }
        chosen
    }

    /// Re-decodes from `from` (positions before it are unchanged since the last committed
    /// decode, and so is every mode that keeps a running job in place unless `from` is 0),
    /// giving up once the score exceeds `give_up_above` (`None`). [`Decoder::commit`]
    /// then adopts the result as the base for the next evaluation.
    pub fn evaluate(&mut self, order: &[u32], modes: &[u16], from: usize, give_up_above: f64) -> Option<Cost> {
        let begin = if from == 0 || self.snapshots.is_empty() {
            self.reset(modes);
            0
        } else {
            let block = (from / BLOCK).min(self.snapshots.len() - 1);
            self.state.clone_from(&self.snapshots[block]);
            block * BLOCK
        };
        self.pending.resize(self.snapshots.len(), self.state.clone());
        self.pending_from = begin / BLOCK;
        for (pos, &job) in order.iter().enumerate().skip(begin) {
            // An order one longer than the committed one (a reinsertion) may reach a block
            // without a snapshot: the next evaluation then starts from an earlier one.
            if pos % BLOCK == 0 && pos / BLOCK < self.pending.len() {
                self.pending[pos / BLOCK].clone_from(&self.state);
            }
            self.place(job, modes, None);
            if self.score(self.cost()) > give_up_above {
                return None;
            }
        }
        Some(self.cost())
    }

    /// Makes the last complete [`Decoder::evaluate`] the base for incremental evaluation.
    pub fn commit(&mut self) {
        for b in self.pending_from..self.snapshots.len() {
            std::mem::swap(&mut self.snapshots[b], &mut self.pending[b]);
        }
    }

    /// End time of each job in the latest decode or evaluation; a hint for choosing moves
    /// (entries past an abandoned evaluation may be stale).
    pub fn ends(&self) -> &[f64] {
        &self.ends
    }

    fn cost(&self) -> Cost {
        Cost { makespan: self.state.makespan, sum_end: self.state.sum_end, overshoot: self.state.overshoot }
    }

    /// Empty GPUs, then the running jobs that stay where they are.
    fn reset(&mut self, modes: &[u16]) {
        let s = &mut self.state;
        s.free.fill(0.0);
        for (slot, gpu) in s.gpu.iter_mut().enumerate() {
            *gpu = slot as u32;
        }
        s.makespan = 0.0;
        s.sum_end = 0.0;
        s.overshoot = 0.0;
        for (job, info) in self.problem.jobs.iter().enumerate() {
            let mode = &info.modes[modes[job] as usize];
            if let Some(fixed) = &mode.fixed {
                let end = info.release + mode.runtime;
                for &g in fixed {
                    s.free[g as usize] = end;
                }
                s.makespan = s.makespan.max(end);
                s.sum_end += end;
                s.overshoot += (end - self.target).max(0.0);
                self.ends[job] = end;
            }
        }
        for host in &self.problem.hosts {
            let range = host.first_gpu as usize..(host.first_gpu + host.gpus) as usize;
            sort_segment(&mut s.free[range.clone()], &mut s.gpu[range]);
        }
    }

    fn record_fixed(&self, modes: &[u16], out: &mut Placed) {
        for (job, info) in self.problem.jobs.iter().enumerate() {
            let mode = &info.modes[modes[job] as usize];
            if let Some(fixed) = &mode.fixed {
                out.start[job] = info.release;
                out.gpus[job] = fixed.clone();
            }
        }
    }

    /// Places one job at the earliest time its mode fits.
    fn place(&mut self, job: u32, modes: &[u16], out: Option<&mut Placed>) {
        let info = &self.problem.jobs[job as usize];
        let mode = &info.modes[modes[job as usize] as usize];
        if mode.fixed.is_some() {
            return;
        }
        self.placements += 1;
        let start = self.find_hosts(mode, info.release);
        let end = start + mode.runtime;
        let p = mode.per_host as usize;
        let mut out = out;
        if let Some(o) = out.as_deref_mut() {
            o.start[job as usize] = start;
            o.gpus[job as usize].clear();
        }
        for c in 0..mode.hosts as usize {
            let (_, free_by_start, host) = self.candidates[c];
            let h = &self.problem.hosts[host as usize];
            let first = h.first_gpu as usize;
            let seg = first..first + h.gpus as usize;
            // Best fit: of the GPUs free by `start`, take those that became free last.
            let q = free_by_start as usize;
            if let Some(o) = out.as_deref_mut() {
                o.gpus[job as usize].extend_from_slice(&self.state.gpu[first + q - p..first + q]);
            }
            let free = &mut self.state.free[seg.clone()];
            free[q - p..q].fill(end);
            let later = free[q..].iter().take_while(|&&f| f < end).count();
            free[q - p..q + later].rotate_left(p);
            self.state.gpu[seg][q - p..q + later].rotate_left(p);
        }
        self.ends[job as usize] = end;
        self.state.makespan = self.state.makespan.max(end);
        self.state.sum_end += end;
        self.state.overshoot += (end - self.target).max(0.0);
    }

    /// Earliest start for the mode; leaves the chosen hosts in `candidates[..mode.hosts]`.
    fn find_hosts(&mut self, mode: &Mode, release: f64) -> f64 {
        let p = mode.per_host as usize;
        let k = mode.hosts as usize;
        let free = &self.state.free;
        self.candidates.clear();
        for &h in &self.problem.eligible[mode.eligible] {
            let first = self.problem.hosts[h as usize].first_gpu as usize;
            self.candidates.push((free[first + p - 1], 0, h));
        }
        // The gang can start once its k-th best host has p GPUs free.
        let (_, kth, _) = self.candidates.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
        let start = kth.0.max(release);
        for c in self.candidates.iter_mut() {
            if c.0 <= start {
                let host = &self.problem.hosts[c.2 as usize];
                let first = host.first_gpu as usize;
                let seg = &free[first..first + host.gpus as usize];
                c.1 = seg.partition_point(|&f| f <= start) as u32;
            } else {
                c.1 = u32::MAX;
            }
        }
        // Tightest hosts first (fewest GPUs free at the start), keeping large free blocks
        // for the gangs that need them; then the one idle for the shortest time.
        let key = |c: &(f64, u32, u32)| (c.1, std::cmp::Reverse(OrdF64(c.0)), c.2);
        if k == 1 {
            let best = (0..self.candidates.len()).min_by_key(|&i| key(&self.candidates[i])).unwrap_or(0);
            self.candidates.swap(0, best);
        } else {
            self.candidates.sort_unstable_by_key(key);
        }
        start
    }
}

/// Total order wrapper for finite floats in sort keys.
#[derive(Clone, Copy)]
struct OrdF64(f64);
// Equality and order both come from `total_cmp`, so they agree with each other.
impl PartialEq for OrdF64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Insertion sort of one host's slots by free time (hosts have a handful of GPUs).
fn sort_segment(free: &mut [f64], gpu: &mut [u32]) {
    for i in 1..free.len() {
        let mut j = i;
        while j > 0 && free[j - 1] > free[j] {
            free.swap(j - 1, j);
            gpu.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// A point of the search space: the order jobs are placed in and each job's mode.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Solution {
    /// Every job index exactly once.
    pub order: Vec<u32>,
    /// Index into each job's modes.
    pub modes: Vec<u16>,
}

/// Start time and global GPU ids per job, as decoded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Placed {
    pub start: Vec<f64>,
    pub gpus: Vec<Vec<u32>>,
}

impl Placed {
    fn reset(&mut self, jobs: usize) {
        self.start = vec![0.0; jobs];
        self.gpus = vec![Vec::new(); jobs];
    }
}
