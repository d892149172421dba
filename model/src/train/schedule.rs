//! Learning-rate schedule as a pure function of the step: linear warmup, a stable plateau,
//! then a linear decay to `final_lr_frac * lr` over the last `decay_frac` of training
//! (warmup-stable-decay, the shape the paper trains with).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup steps from 0 to `lr`.
    #[serde(default)]
    pub warmup_steps: i64,
    /// Fraction of the total steps spent in the final linear decay (0 = constant after warmup).
    #[serde(default = "Schedule::default_decay_frac")]
    pub decay_frac: f64,
    /// Learning rate at the end of the decay, as a fraction of `lr`.
    #[serde(default)]
    pub final_lr_frac: f64,
}

impl Schedule {
    fn default_decay_frac() -> f64 {
        0.2
    }

    /// Learning rate for `step` (0-based) of `total` steps.
    pub fn lr_at(&self, step: i64, total: i64) -> f64 {
        let total = total.max(1);
        if self.warmup_steps > 0 && step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = ((total as f64) * self.decay_frac.clamp(0.0, 1.0)).round() as i64;
        let decay_start = (total - decay_steps).max(self.warmup_steps);
        if decay_steps == 0 || step < decay_start {
            return self.lr;
        }
        let span = (total - decay_start).max(1) as f64;
        let progress = ((step - decay_start + 1) as f64 / span).min(1.0);
        self.lr * (1.0 - progress * (1.0 - self.final_lr_frac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> Schedule {
        Schedule { lr: 1.0, warmup_steps: 10, decay_frac: 0.2, final_lr_frac: 0.1 }
    }

    #[test]
    fn warmup_is_linear_from_lr_over_warmup() {
        assert!((s().lr_at(0, 100) - 0.1).abs() < 1e-12);
        assert!((s().lr_at(4, 100) - 0.5).abs() < 1e-12);
        assert!((s().lr_at(9, 100) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn stable_then_linear_decay_to_final_fraction() {
        assert_eq!(s().lr_at(10, 100), 1.0);
        assert_eq!(s().lr_at(79, 100), 1.0);
        assert!(s().lr_at(80, 100) < 1.0);
        assert!((s().lr_at(99, 100) - 0.1).abs() < 1e-12);
        let mut prev = f64::INFINITY;
        for step in 80..100 {
            let lr = s().lr_at(step, 100);
            assert!(lr < prev);
            prev = lr;
        }
    }

    #[test]
    fn no_decay_means_constant_after_warmup() {
        let c = Schedule { decay_frac: 0.0, ..s() };
        assert_eq!(c.lr_at(99, 100), 1.0);
        let no_warm = Schedule { warmup_steps: 0, ..c };
        assert_eq!(no_warm.lr_at(0, 100), 1.0);
    }

    #[test]
    fn decay_longer_than_training_starts_after_warmup() {
        let c = Schedule { decay_frac: 1.0, ..s() };
        assert_eq!(c.lr_at(9, 20), 1.0);
        assert!((c.lr_at(19, 20) - 0.1).abs() < 1e-12);
    }
}
