//! Step-time measurement for trial runs, from the arrival times of `SATURN step=` lines.
//!
//! Pure, so the profiler's numbers can be tested without processes.

use std::time::Duration;

/// One `SATURN step=N` line and when it arrived, relative to any fixed origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSample {
    /// Steps done in total, as reported.
    pub step: u64,
    /// Arrival time since the origin.
    pub at: Duration,
}

/// Seconds per step, robustly: the median over the intervals between consecutive
/// reports, each divided by the steps it covers (so a job reporting every k steps
/// measures the same), after dropping warm-up.
///
/// Warm-up: the time before the first report (process start, model load) is never
/// counted, and of `n` intervals the first `max(1, n / 5)` are dropped when `n >= 3`,
/// because first iterations pay for CUDA context creation, autotuning and compilation.
/// Reports that do not advance the step (repeats, regressions) are skipped.
/// `None` when there is no usable interval.
pub fn robust_step_time(samples: &[StepSample]) -> Option<f64> {
    let measured = measured_rates(samples);
    if measured.is_empty() {
        return None;
    }
    Some(median(measured))
}

/// When a trial run has measured enough to stop it before its last step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SettleRule {
    /// Intervals counted after warm-up, at least.
    pub min_intervals: usize,
    /// Seconds those intervals cover, at least.
    pub min_measured: Duration,
}

impl Default for SettleRule {
    /// 5 intervals over at least 2 s: a trial of a slow configuration (a spilling run at
    /// a second per step) ends after about 7 steps instead of running all of them, while
    /// a fast one runs long enough for the median to be steady.
    fn default() -> Self {
        SettleRule { min_intervals: 5, min_measured: Duration::from_secs(2) }
    }
}

impl SettleRule {
    /// Whether the samples so far already give the step time the whole trial would:
    /// enough intervals after warm-up, covering enough time.
    pub fn settled(&self, samples: &[StepSample]) -> bool {
        let measured = measured_rates(samples);
        let covered: f64 = measured.iter().map(|(seconds, _)| seconds).sum();
        measured.len() >= self.min_intervals && covered >= self.min_measured.as_secs_f64()
    }
}

/// The (seconds, seconds per step) of each interval after warm-up (rules on
/// [`robust_step_time`]).
fn measured_rates(samples: &[StepSample]) -> Vec<(f64, f64)> {
    let mut rates = Vec::new();
    let mut previous: Option<StepSample> = None;
    for sample in samples {
        match previous {
            Some(prev) if sample.step <= prev.step || sample.at < prev.at => continue,
            Some(prev) => {
                let seconds = (sample.at - prev.at).as_secs_f64();
                rates.push((seconds, seconds / (sample.step - prev.step) as f64));
            }
            None => {}
        }
        previous = Some(*sample);
    }
    let warm_up = if rates.len() >= 3 { (rates.len() / 5).max(1) } else { 0 };
    rates.split_off(warm_up)
}

fn median(rates: Vec<(f64, f64)>) -> f64 {
    let mut per_step: Vec<f64> = rates.into_iter().map(|(_, rate)| rate).collect();
    per_step.sort_by(f64::total_cmp);
    let middle = per_step.len() / 2;
    if per_step.len() % 2 == 1 {
        per_step[middle]
    } else {
        (per_step[middle - 1] + per_step[middle]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(points: &[(u64, f64)]) -> Vec<StepSample> {
        points.iter().map(|&(step, at)| StepSample { step, at: Duration::from_secs_f64(at) }).collect()
    }

    #[test]
    fn steady_steps_give_the_step_time() {
        let got = robust_step_time(&samples(&[(1, 5.0), (2, 5.1), (3, 5.2), (4, 5.3), (5, 5.4)]));
        assert!((got.unwrap() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn slow_warm_up_and_an_outlier_are_ignored() {
        let got = robust_step_time(&samples(&[
            (1, 1.0),
            (2, 3.0), // warm-up: 2 s
            (3, 3.2),
            (4, 3.4),
            (5, 4.4), // a hiccup: 1 s
            (6, 4.6),
            (7, 4.8),
        ]));
        assert!((got.unwrap() - 0.2).abs() < 1e-9, "{got:?}");
    }

    #[test]
    fn reports_every_k_steps_are_divided_by_k() {
        let got = robust_step_time(&samples(&[(10, 0.0), (20, 1.0), (30, 2.0), (40, 3.0)]));
        assert!((got.unwrap() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn repeated_or_backward_steps_are_skipped() {
        let got = robust_step_time(&samples(&[(1, 0.0), (1, 0.5), (2, 0.3), (0, 0.4), (3, 0.6)]));
        assert!((got.unwrap() - 0.3).abs() < 1e-9, "{got:?}");
    }

    #[test]
    fn a_slow_trial_settles_after_a_few_steps_and_a_fast_one_after_enough_time() {
        let rule = SettleRule::default();
        // 1 s per step: 6 intervals, 1 dropped as warm-up, 5 measured over 5 s.
        let slow: Vec<(u64, f64)> = (1..=7).map(|s| (s, s as f64)).collect();
        assert!(!rule.settled(&samples(&slow[..6])));
        assert!(rule.settled(&samples(&slow)));
        // 50 ms per step: many intervals, but 2 s of them only after ~50 steps.
        let fast: Vec<(u64, f64)> = (1..=60).map(|s| (s, s as f64 * 0.05)).collect();
        assert!(!rule.settled(&samples(&fast[..30])));
        assert!(rule.settled(&samples(&fast)));
        assert!((robust_step_time(&samples(&slow)).unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn too_few_samples_give_nothing() {
        assert_eq!(robust_step_time(&[]), None);
        assert_eq!(robust_step_time(&samples(&[(1, 0.0)])), None);
        assert!(robust_step_time(&samples(&[(1, 0.0), (2, 0.5)])).is_some());
    }
}
