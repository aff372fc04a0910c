//! Filling in step times that were not measured: a scaling curve over GPU count.
//!
//! The curve is `t(n) = a + b / n` (a serial part plus a part that divides over `n`
//! GPUs — Amdahl's law in step-time form), fitted by least squares with `a, b >= 0` so it
//! never predicts a slowdown from adding GPUs. How far it is trusted:
//! - between two measured counts, the fit is clamped between their step times, so the
//!   estimate never leaves the measured envelope;
//! - above the largest measured count, the estimate is that count's step time: the ladder
//!   stopped there because doubling stopped paying (or the range ended), so no further
//!   gain is promised to the planner, which then has no reason to spend more GPUs on it;
//! - below the smallest measured count, `t_min * n_min / n`: linear scaling is the best any
//!   technique does, so this is a pessimistic bound.

/// A fitted `t(n) = a + b / n`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScalingCurve {
    /// Seconds per step that no number of GPUs removes.
    pub a: f64,
    /// Seconds per step on one GPU that divide over more GPUs.
    pub b: f64,
}

impl ScalingCurve {
    /// Least-squares fit to `(gpus, seconds per step)` points; `None` without any point.
    pub fn fit(points: &[(u32, f64)]) -> Option<ScalingCurve> {
        if points.is_empty() {
            return None;
        }
        let len = points.len() as f64;
        let xs: Vec<f64> = points.iter().map(|(n, _)| 1.0 / f64::from((*n).max(1))).collect();
        let ts: Vec<f64> = points.iter().map(|(_, t)| *t).collect();
        let mean_x = xs.iter().sum::<f64>() / len;
        let mean_t = ts.iter().sum::<f64>() / len;
        let var_x: f64 = xs.iter().map(|x| (x - mean_x).powi(2)).sum();
        let cov: f64 = xs.iter().zip(&ts).map(|(x, t)| (x - mean_x) * (t - mean_t)).sum();
        let mut curve = if var_x > 1e-12 {
            let b = cov / var_x;
            ScalingCurve { a: mean_t - b * mean_x, b }
        } else {
            // All points at one count: attribute everything to the parallel part.
            ScalingCurve { a: 0.0, b: mean_t / mean_x }
        };
        if curve.b < 0.0 {
            curve = ScalingCurve { a: mean_t, b: 0.0 };
        }
        if curve.a < 0.0 {
            let sxx: f64 = xs.iter().map(|x| x * x).sum();
            let sxt: f64 = xs.iter().zip(&ts).map(|(x, t)| x * t).sum();
            curve = ScalingCurve { a: 0.0, b: sxt / sxx };
        }
        Some(curve)
    }

    /// The curve's step time at `gpus`.
    pub fn at(&self, gpus: u32) -> f64 {
        self.a + self.b / f64::from(gpus.max(1))
    }
}

/// Estimated seconds per step at `gpus` from measured `(gpus, seconds)` points, following
/// the trust rules of the module doc. `None` without any point.
pub fn estimate(points: &[(u32, f64)], gpus: u32) -> Option<f64> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    let (first, last) = (*sorted.first()?, *sorted.last()?);
    if let Some((_, t)) = sorted.iter().find(|(n, _)| *n == gpus) {
        return Some(*t);
    }
    if gpus < first.0 {
        return Some(first.1 * f64::from(first.0) / f64::from(gpus.max(1)));
    }
    if gpus > last.0 {
        return Some(last.1);
    }
    let right = sorted.iter().position(|(n, _)| *n > gpus)?;
    let (left_t, right_t) = (sorted[right - 1].1, sorted[right].1);
    let fitted = ScalingCurve::fit(&sorted)?.at(gpus);
    Some(fitted.clamp(left_t.min(right_t), left_t.max(right_t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amdahl(serial: f64, n: u32) -> f64 {
        serial + (1.0 - serial) / f64::from(n)
    }

    #[test]
    fn an_exact_amdahl_curve_is_recovered() {
        let points: Vec<(u32, f64)> = [1, 2, 4].iter().map(|&n| (n, amdahl(0.2, n))).collect();
        let curve = ScalingCurve::fit(&points).unwrap();
        assert!((curve.a - 0.2).abs() < 1e-9 && (curve.b - 0.8).abs() < 1e-9, "{curve:?}");
        let three = estimate(&points, 3).unwrap();
        assert!((three - amdahl(0.2, 3)).abs() < 1e-9);
    }

    #[test]
    fn a_curve_never_promises_a_slowdown_or_a_negative_time() {
        let slower = ScalingCurve::fit(&[(1, 1.0), (2, 1.2), (4, 1.3)]).unwrap();
        assert_eq!(slower.b, 0.0);
        let superlinear = ScalingCurve::fit(&[(1, 1.0), (2, 0.3), (4, 0.1)]).unwrap();
        assert!(superlinear.a >= 0.0 && superlinear.b > 0.0);
    }

    #[test]
    fn estimates_stay_inside_the_measured_envelope_and_flat_beyond_it() {
        let points = [(1, 1.0), (2, 0.6), (4, 0.5)];
        let three = estimate(&points, 3).unwrap();
        assert!((0.5..=0.6).contains(&three));
        assert_eq!(estimate(&points, 8), Some(0.5), "no gain is promised past the last rung");
        assert_eq!(estimate(&[(4, 0.5)], 2), Some(1.0), "below: linear scaling, pessimistic");
        assert_eq!(estimate(&[], 2), None);
    }
}
