//! Early stopping of a sweep's jobs: the rule every job of a sweep carries, and the
//! deterministic recording of its metric at rung steps.
//!
//! Apply records, from `Progress` events alone, the value of the rule's metric the first
//! time a training attempt's step count reaches each rung step ([`EarlyStop::rung_steps`]).
//! The leader's scheduler decides from these records only, so every replica holds the
//! same evidence and a new leader continues where the old one stopped.

use serde::{Deserialize, Serialize};

/// Whether smaller or larger metric values are better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricMode {
    /// Smaller is better (a loss).
    Min,
    /// Larger is better (an accuracy).
    Max,
}

impl MetricMode {
    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            MetricMode::Min => a < b,
            MetricMode::Max => a > b,
        }
    }

    /// The lowercase name used in job files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricMode::Min => "min",
            MetricMode::Max => "max",
        }
    }
}

/// Which early-stopping rule a sweep uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopRule {
    /// Asynchronous successive halving: rungs at `min_steps × reduction^k`; a job goes
    /// on past a rung only while it is in the top `1/reduction` of the jobs recorded there.
    Asha,
    /// Median stopping: every `min_steps` steps, a job whose best value so far is worse
    /// than the median of the other jobs' values at that step is stopped.
    Median,
}

impl StopRule {
    /// The lowercase name used in job files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StopRule::Asha => "asha",
            StopRule::Median => "median",
        }
    }
}

/// The `early_stop` table of a sweep, carried by every job of the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStop {
    /// The sweep's identity: jobs with the same `sweep` are compared with each other.
    /// The job file sets the sweep's name template; apply makes it unique per submission
    /// (`NAME@FIRST-JOB-ID`).
    pub sweep: String,
    /// Name of the metric (`SATURN metric NAME=VALUE`).
    pub metric: String,
    /// Whether smaller or larger is better.
    pub mode: MetricMode,
    /// ASHA or median.
    pub rule: StopRule,
    /// First rung (ASHA) or evaluation period (median), steps; at least 1.
    pub min_steps: u64,
    /// ASHA's reduction factor η (keep the top `1/η` at each rung; at least 2); also the
    /// number of jobs that must have reached a rung before anyone is judged there.
    pub reduction: u32,
}

/// Most rungs recorded for one job (a median rule with a tiny `min_steps` on a long job
/// would otherwise grow the replicated state without bound).
pub const MAX_RUNGS: usize = 1_000;

impl EarlyStop {
    /// The first rung step after `after`: `min_steps × reduction^k` for ASHA,
    /// `min_steps × k` for median; `None` past `u64::MAX`.
    pub fn next_rung_after(&self, after: u64) -> Option<u64> {
        let first = self.min_steps.max(1);
        match self.rule {
            StopRule::Asha => {
                let mut rung = first;
                while rung <= after {
                    rung = rung.checked_mul(u64::from(self.reduction.max(2)))?;
                }
                Some(rung)
            }
            StopRule::Median => (after / first).checked_add(1)?.checked_mul(first),
        }
    }

    /// Rung steps up to and including `up_to` (at most [`MAX_RUNGS`]), in order.
    pub fn rung_steps(&self, up_to: u64) -> Vec<u64> {
        let mut rungs = Vec::new();
        let mut last = 0;
        while let Some(rung) = self.next_rung_after(last).filter(|r| *r <= up_to && rungs.len() < MAX_RUNGS) {
            rungs.push(rung);
            last = rung;
        }
        rungs
    }
}

/// The metric value a job had when it first reached a rung step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RungRecord {
    /// The rung step.
    pub step: u64,
    /// The metric's value at the first progress report at or past `step`.
    pub value: f64,
}

/// Records into `rungs` every rung step in `(last recorded, step]` with `value` (so the
/// records stay contiguous from the first rung, in order); a rung, once recorded, is
/// never changed (a resumed attempt re-crossing it adds nothing).
pub fn record_rungs(rule: &EarlyStop, rungs: &mut Vec<RungRecord>, step: u64, value: f64) {
    if !value.is_finite() {
        return;
    }
    let mut last = rungs.last().map_or(0, |r| r.step);
    while rungs.len() < MAX_RUNGS {
        match rule.next_rung_after(last) {
            Some(rung) if rung <= step => {
                rungs.push(RungRecord { step: rung, value });
                last = rung;
            }
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(rule: StopRule) -> EarlyStop {
        EarlyStop { sweep: "s".into(), metric: "loss".into(), mode: MetricMode::Min, rule, min_steps: 100, reduction: 3 }
    }

    #[test]
    fn asha_rungs_are_geometric_and_median_rungs_periodic() {
        assert_eq!(rule(StopRule::Asha).rung_steps(1000), vec![100, 300, 900]);
        assert_eq!(rule(StopRule::Median).rung_steps(350), vec![100, 200, 300]);
        assert!(rule(StopRule::Asha).rung_steps(99).is_empty());
    }

    #[test]
    fn a_rung_is_recorded_once_at_its_first_crossing() {
        let asha = rule(StopRule::Asha);
        let mut rungs = Vec::new();
        record_rungs(&asha, &mut rungs, 50, 3.0);
        assert!(rungs.is_empty());
        record_rungs(&asha, &mut rungs, 320, 2.0); // crosses 100 and 300 at once
        record_rungs(&asha, &mut rungs, 310, 1.0); // a resumed attempt re-crosses 300
        assert_eq!(rungs, vec![RungRecord { step: 100, value: 2.0 }, RungRecord { step: 300, value: 2.0 }]);
        record_rungs(&asha, &mut rungs, 900, f64::NAN);
        assert_eq!(rungs.len(), 2, "a non-finite value is not evidence");
    }

    #[test]
    fn a_huge_step_records_a_bounded_number_of_rungs() {
        let mut median = rule(StopRule::Median);
        median.min_steps = 1;
        let mut rungs = Vec::new();
        record_rungs(&median, &mut rungs, u64::MAX, 1.0);
        assert_eq!(rungs.len(), MAX_RUNGS);
        let mut asha = rule(StopRule::Asha);
        asha.min_steps = u64::MAX / 2;
        assert_eq!(asha.rung_steps(u64::MAX), vec![u64::MAX / 2], "no overflow past the last rung");
    }
}
