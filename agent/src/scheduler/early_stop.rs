//! Early stopping of a sweep's losers: a pure decider over the replicated rung records.
//!
//! Apply records each job's metric the first time it reaches a rung step
//! ([`saturn_consensus::early_stop`]); this module only reads those records, so the
//! decision is a function of the replicated state: any leader, old or new, decides the
//! same, and a new leader continues from the rungs already recorded.
//!
//! **ASHA** (rungs at `min_steps × reduction^k`). At a rung, let `n` be the number of
//! jobs of the sweep that have recorded it (running, stopped or finished). A job is
//! judged there only once `n ≥ reduction`; until then it keeps running (the
//! asynchronous "wait for peers": nobody is stopped on too little evidence). Once judged,
//! a job goes on only while it ranks among the top `max(1, ⌊n / reduction⌋)` values at
//! that rung (ties broken by job id); otherwise it is stopped. Judgement is re-made as
//! more jobs reach the rung, so a job promoted by an early, small cohort can still be
//! stopped at that rung when the rest of the sweep arrives and outranks it — with the
//! whole sweep recorded, each rung keeps exactly the top `1/reduction`, as synchronous
//! successive halving would.
//!
//! **Median** (rungs every `min_steps`). At rung step `s`, a job whose best value up to
//! `s` is worse than the median of the other jobs' values recorded at `s` is stopped,
//! once at least `reduction` jobs (itself included) have recorded `s`.
//!
//! Only jobs that have not ended are judged; each stop is a [`Command::StopJob`].

use std::collections::{BTreeMap, HashMap};

use saturn_consensus::{ClusterState, Command, EarlyStop, JobId, JobRecord, MetricMode, StopRule};

/// The `StopJob` commands the sweeps' rules call for now, in job order.
pub fn decide_early_stops(state: &ClusterState, at_ms: u64) -> Vec<Command> {
    let mut commands = Vec::new();
    for (rule, jobs) in sweeps(state).values() {
        let table = RungTable::build(rule, jobs);
        for job in jobs.iter().filter(|j| !j.state.is_terminal()) {
            if let Some(reason) = table.judge(rule, job) {
                commands.push(Command::StopJob { job: job.id.clone(), reason, at_ms });
            }
        }
    }
    commands
}

/// Every job with an early-stopping rule, grouped by sweep (the rule of its first job).
pub fn sweeps(state: &ClusterState) -> BTreeMap<&str, (&EarlyStop, Vec<&JobRecord>)> {
    let mut sweeps: BTreeMap<&str, (&EarlyStop, Vec<&JobRecord>)> = BTreeMap::new();
    for job in state.jobs().values() {
        if let Some(rule) = &job.spec.early_stop {
            sweeps.entry(rule.sweep.as_str()).or_insert_with(|| (rule, Vec::new())).1.push(job);
        }
    }
    sweeps
}

/// One sweep's rung records by rung step, each rung's values ordered best first (ties
/// by job id), with every job's rank there: built once per round, so judging a job costs
/// a lookup per rung, not a pass over the sweep.
struct RungTable<'a> {
    rungs: BTreeMap<u64, Rung<'a>>,
}

struct Rung<'a> {
    ordered: Vec<(f64, &'a JobId)>,
    rank: HashMap<&'a JobId, usize>,
}

impl<'a> RungTable<'a> {
    fn build(rule: &EarlyStop, jobs: &[&'a JobRecord]) -> Self {
        let mut by_step: BTreeMap<u64, Vec<(f64, &'a JobId)>> = BTreeMap::new();
        for job in jobs {
            for record in &job.rungs {
                by_step.entry(record.step).or_default().push((record.value, &job.id));
            }
        }
        let rungs = by_step
            .into_iter()
            .map(|(step, mut ordered)| {
                ordered.sort_by(|a, b| order(rule.mode, a.0, b.0).then_with(|| a.1.cmp(b.1)));
                let rank = ordered.iter().enumerate().map(|(i, (_, id))| (*id, i)).collect();
                (step, Rung { ordered, rank })
            })
            .collect();
        RungTable { rungs }
    }

    /// Why `job` should stop now, or `None` if it goes on.
    fn judge(&self, rule: &EarlyStop, job: &JobRecord) -> Option<String> {
        let needed = rule.reduction.max(2) as usize;
        let mut best: Option<f64> = None;
        for record in &job.rungs {
            best = Some(best.map_or(record.value, |b| if rule.mode.better(record.value, b) { record.value } else { b }));
            let Some(rung) = self.rungs.get(&record.step) else { continue };
            let (Some(&rank), Some(best)) = (rung.rank.get(&job.id), best) else { continue };
            if rung.ordered.len() < needed {
                continue; // waits: too few jobs at this rung to judge
            }
            let verdict = match rule.rule {
                StopRule::Asha => asha(rule, rung, rank, record.step),
                StopRule::Median => median(rule, rung, rank, best, record.step),
            };
            if verdict.is_some() {
                return verdict;
            }
        }
        None
    }
}

fn asha(rule: &EarlyStop, rung: &Rung<'_>, rank: usize, step: u64) -> Option<String> {
    let n = rung.ordered.len();
    let keep = (n / rule.reduction.max(2) as usize).max(1);
    (rank >= keep).then(|| {
        format!(
            "asha: {}={} at rung step {step} ranks {} of {n}; only the top {keep} go on",
            rule.metric,
            rung.ordered[rank].0,
            rank + 1
        )
    })
}

fn median(rule: &EarlyStop, rung: &Rung<'_>, rank: usize, best: f64, step: u64) -> Option<String> {
    // The others' values in order: the rung's, without this job's own (at `rank`).
    let others = rung.ordered.len() - 1;
    let other = |k: usize| rung.ordered[if k < rank { k } else { k + 1 }].0;
    let median = match others {
        0 => return None,
        n if n % 2 == 1 => other(n / 2),
        n => (other(n / 2 - 1) + other(n / 2)) / 2.0,
    };
    rule.mode.better(median, best).then(|| {
        format!("median: best {}={best} up to step {step} is worse than the others' median {median} there", rule.metric)
    })
}

/// Better values first.
fn order(mode: MetricMode, a: f64, b: f64) -> std::cmp::Ordering {
    match mode {
        MetricMode::Min => a.total_cmp(&b),
        MetricMode::Max => b.total_cmp(&a),
    }
}

#[cfg(test)]
#[path = "early_stop_tests.rs"]
mod tests;
