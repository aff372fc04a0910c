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
    let mut rates = Vec::new();
    let mut previous: Option<StepSample> = None;
    for sample in samples {
        match previous {
            Some(prev) if sample.step <= prev.step || sample.at < prev.at => continue,
            Some(prev) => {
                let seconds = (sample.at - prev.at).as_secs_f64();
                rates.push(seconds / (sample.step - prev.step) as f64);
            }
            None => {}
        }
        previous = Some(*sample);
    }
    let warm_up = if rates.len() >= 3 { (rates.len() / 5).max(1) } else { 0 };
    let mut measured = rates.split_off(warm_up);
    if measured.is_empty() {
        return None;
    }
    measured.sort_by(f64::total_cmp);
    let middle = measured.len() / 2;
    Some(if measured.len() % 2 == 1 {
        measured[middle]
    } else {
        (measured[middle - 1] + measured[middle]) / 2.0
    })
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
    fn too_few_samples_give_nothing() {
        assert_eq!(robust_step_time(&[]), None);
        assert_eq!(robust_step_time(&samples(&[(1, 0.0)])), None);
        assert!(robust_step_time(&samples(&[(1, 0.0), (2, 0.5)])).is_some());
    }
}
