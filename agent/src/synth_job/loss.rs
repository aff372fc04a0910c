//! The simulated job's loss curve: a seeded family in which the learning rate, the batch
//! size and the model size shape the curve, so a sweep has winners and losers.
//!
//! `loss(step) = floor + (3 − floor + 1.2) / (1 + speed · step)^0.6`, starting near 4.2:
//! - the best learning rate grows with the batch size (`lr* = 3e-4 · √(bs/32)`); the
//!   distance `d = |log10(lr / lr*)|` from it slows the fall (`speed ∝ 1/(1+2d)`) and
//!   raises the floor (`+d²`), so a learning rate far from `lr*` is worse early and late
//!   alike;
//! - a larger batch moves along the curve a little faster per step (`speed ∝ (bs/32)^0.1`);
//! - a larger model reaches a lower floor (`1 + 0.6/√(model_gb/2)`);
//! - the family seed shifts the floor by up to 0.01 (two configurations with the same
//!   shape still differ), and is derived from the configuration unless given, so every
//!   attempt of a job follows the same curve.
//!
//! A configuration that is better at the end is then mostly better early too, as an
//! early-stopping rule assumes (the curves of a real sweep cross more often).

use super::simulate::fnv1a;

/// One member of the family.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossCurve {
    floor: f64,
    speed: f64,
}

impl LossCurve {
    /// The curve of a job training a `model_gb` model with `lr` and `batch_size`;
    /// `seed` picks the family member (`None`: derived from the three).
    pub fn new(model_gb: f64, lr: f64, batch_size: u32, seed: Option<u64>) -> Self {
        let bs = f64::from(batch_size.max(1));
        let best_lr = 3e-4 * (bs / 32.0).sqrt();
        let distance = (lr / best_lr).log10().abs();
        let seed = seed.unwrap_or_else(|| fnv1a(format!("{model_gb}/{lr}/{batch_size}").as_bytes()));
        // Hashed, so that small seeds (1, 2, ...) pick different members too.
        let mixed = fnv1a(&seed.to_le_bytes());
        let shift = 0.01 * ((mixed >> 11) as f64 / (1u64 << 53) as f64);
        LossCurve {
            floor: 1.0 + 0.6 / (model_gb.max(0.1) / 2.0).sqrt() + distance * distance + shift,
            speed: 0.004 * (bs / 32.0).powf(0.1) / (1.0 + 2.0 * distance),
        }
    }

    /// The loss after `step` steps.
    pub fn at(&self, step: u64) -> f64 {
        self.floor + (4.2 - self.floor).max(0.0) / (1.0 + self.speed * step as f64).powf(0.6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_falls_towards_its_floor() {
        let curve = LossCurve::new(6.0, 3e-4, 32, Some(1));
        assert!(curve.at(0) > curve.at(100) && curve.at(100) > curve.at(10_000));
        assert!(curve.at(10_000_000) > 1.0);
    }

    #[test]
    fn a_learning_rate_far_from_the_best_is_worse_early_and_late() {
        let good = LossCurve::new(6.0, 3e-4, 32, Some(1));
        for bad in [LossCurve::new(6.0, 3e-3, 32, Some(1)), LossCurve::new(6.0, 3e-5, 32, Some(1))] {
            for step in [100, 1_000, 10_000] {
                assert!(bad.at(step) > good.at(step), "step {step}");
            }
        }
    }

    #[test]
    fn a_larger_model_ends_lower_and_the_seed_picks_a_family_member() {
        assert!(LossCurve::new(12.0, 3e-4, 32, Some(1)).at(100_000) < LossCurve::new(2.0, 3e-4, 32, Some(1)).at(100_000));
        assert_ne!(LossCurve::new(6.0, 3e-4, 32, Some(1)), LossCurve::new(6.0, 3e-4, 32, Some(2)));
        assert_eq!(LossCurve::new(6.0, 3e-4, 32, None), LossCurve::new(6.0, 3e-4, 32, None));
    }
}
