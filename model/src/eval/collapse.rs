//! The state-collapse verdict (paper v4 §4.2) with its uncertainty.
//!
//! Rule (docs/methodology.md):
//! 1. The mean loss curve is bucketed; as in the authors' plotting code the first and the last
//!    bucket are dropped (too noisy). Of the rest, the *reference* buckets end at or before
//!    T_train and the *beyond* buckets start at or after it.
//! 2. ratio = (max beyond loss) / (max reference loss); the point verdict is "collapsed" when
//!    ratio > 2 (the paper's "2x the maximum within T_train").
//! 3. Uncertainty: the prompts are resampled with replacement (`BOOTSTRAP` times, seed `SEED`,
//!    deterministic), the ratio recomputed on each resample's mean curve; 95% percentile
//!    interval [lo, hi]. Verdict `collapsed` when lo > 2, `not_collapsed` when hi <= 2,
//!    `inconclusive` otherwise. A fixed probe (the newline run: every prompt is the same text)
//!    has no sampling uncertainty over prompts: its interval is the point.
//! 4. Sampled inputs with fewer than `MIN_PROMPTS` prompts are `inconclusive` (too few prompts),
//!    the ratio and its interval are still reported.
//! 5. Degenerate curves: when the threshold 2x the reference is above the uniform-distribution
//!    loss ln V (always so when the reference itself is above ln V), a model that falls to
//!    chance level after T_train (loss about ln V) would not trigger it, so a verdict other than
//!    a decisive collapse is `inconclusive` (degenerate); the rise after T_train (max beyond -
//!    max reference, nats) is always reported.

use crate::eval::loss::Bucket;
use crate::rng::Rng;

/// The paper's factor: collapse when the loss exceeds 2x the in-training maximum.
pub const FACTOR: f64 = 2.0;
/// Bootstrap resamples of the prompts.
pub const BOOTSTRAP: usize = 1000;
/// Seed of the bootstrap.
pub const SEED: u64 = 0x5C_0117;
/// Fewest sampled prompts for a decisive verdict.
pub const MIN_PROMPTS: usize = 8;

pub use stuffed_protocol::eval::{Collapse, Inconclusive, Verdict};

/// What a verdict is computed from.
pub struct VerdictInput<'a> {
    /// The mean curve.
    pub buckets: &'a [Bucket],
    /// Mean loss per prompt and bucket (same buckets); may be empty (no resampling then).
    pub per_prompt: &'a [Vec<f64>],
    pub train_len: i64,
    pub uniform_loss: Option<f64>,
    pub probe: bool,
}

/// (reference max, beyond max, first beyond position over FACTOR x reference) of a curve given
/// as losses over `buckets`' bounds, first and last bucket dropped.
fn ratio_parts(buckets: &[Bucket], losses: &[f64], train_len: i64) -> (Option<f64>, Option<f64>, Option<i64>) {
    let n = buckets.len();
    let kept = || (1..n.saturating_sub(1)).map(|i| (&buckets[i], losses[i]));
    let max = |it: &mut dyn Iterator<Item = f64>| it.fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l))));
    let within = max(&mut kept().filter(|(b, _)| b.end <= train_len).map(|(_, l)| l));
    let beyond = max(&mut kept().filter(|(b, _)| b.start >= train_len).map(|(_, l)| l));
    let first = within.and_then(|w| kept().find(|(b, l)| b.start >= train_len && *l > FACTOR * w).map(|(b, _)| b.start));
    (within, beyond, first)
}

/// Percentile with linear interpolation; `sorted` ascending and non-empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// 95% percentile interval of the ratio over prompt resamples.
fn bootstrap_ci(inp: &VerdictInput) -> Option<[f64; 2]> {
    let p = inp.per_prompt.len();
    let nb = inp.buckets.len();
    if p < 2 || inp.per_prompt.iter().any(|r| r.len() != nb) {
        return None;
    }
    let mut rng = Rng::new(SEED);
    let mut ratios = Vec::with_capacity(BOOTSTRAP);
    let mut mean = vec![0f64; nb];
    for _ in 0..BOOTSTRAP {
        mean.iter_mut().for_each(|m| *m = 0.0);
        for _ in 0..p {
            let row = &inp.per_prompt[rng.below(p as u64) as usize];
            for (m, l) in mean.iter_mut().zip(row) {
                *m += l / p as f64;
            }
        }
        if let (Some(w), Some(b), _) = ratio_parts(inp.buckets, &mean, inp.train_len) {
            let r = b / w;
            if r.is_finite() {
                ratios.push(r);
            }
        }
    }
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    Some([percentile(&ratios, 0.025), percentile(&ratios, 0.975)])
}

/// The verdict of one loss curve (see the module comment for the rule).
pub fn verdict(inp: &VerdictInput) -> Collapse {
    let losses: Vec<f64> = inp.buckets.iter().map(|b| b.loss).collect();
    let (within, beyond, first) = ratio_parts(inp.buckets, &losses, inp.train_len);
    let ratio = within.zip(beyond).map(|(w, b)| b / w);
    let prompts = inp.per_prompt.len().max(usize::from(!inp.buckets.is_empty()));
    let ci = match (inp.probe, ratio) {
        (true, Some(r)) => Some([r, r]),
        _ => bootstrap_ci(inp),
    };
    let decided = |ci: [f64; 2]| {
        if ci[0] > FACTOR {
            Ok(Verdict::Collapsed)
        } else if ci[1] <= FACTOR {
            Ok(Verdict::NotCollapsed)
        } else {
            Err(Inconclusive::IntervalContainsThreshold)
        }
    };
    let degenerate = within.zip(inp.uniform_loss).is_some_and(|(w, u)| FACTOR * w > u);
    let outcome = if within.is_none() {
        Err(Inconclusive::NoReference)
    } else if beyond.is_none() {
        Err(Inconclusive::NoBeyond)
    } else if !inp.probe && inp.per_prompt.len() < MIN_PROMPTS {
        Err(Inconclusive::TooFewPrompts)
    } else {
        match ci.map(decided) {
            None => Err(Inconclusive::TooFewPrompts),
            Some(Ok(Verdict::Collapsed)) => Ok(Verdict::Collapsed),
            Some(_) if degenerate => Err(Inconclusive::Degenerate),
            Some(v) => v,
        }
    };
    let verdict = outcome.unwrap_or(Verdict::Inconclusive);
    Collapse {
        train_len: inp.train_len,
        max_within_train: within,
        threshold: within.map(|w| FACTOR * w),
        collapsed: match verdict {
            Verdict::Collapsed => Some(true),
            Verdict::NotCollapsed => Some(false),
            Verdict::Inconclusive => None,
        },
        first_position: first,
        worst_ratio: ratio,
        verdict: Some(verdict),
        inconclusive: outcome.err(),
        ratio_ci: ci,
        rise: within.zip(beyond).map(|(w, b)| b - w),
        uniform_loss: inp.uniform_loss,
        prompts,
        probe: inp.probe,
        dropped_buckets: 1,
    }
}

/// The verdict from a mean curve alone (no per-prompt losses: decisive only for a probe).
pub fn collapse_verdict(buckets: &[Bucket], train_len: i64, probe: bool) -> Collapse {
    verdict(&VerdictInput { buckets, per_prompt: &[], train_len, uniform_loss: None, probe })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(losses: &[f64]) -> Vec<Bucket> {
        losses.iter().enumerate().map(|(i, &l)| Bucket { start: i as i64 * 10, end: i as i64 * 10 + 10, loss: l }).collect()
    }

    /// The first bucket (9.0) would be the in-training maximum; dropped, the reference is 2.5
    /// and 6.5 / 2.5 = 2.6 > 2. The last bucket (100) is dropped too.
    #[test]
    fn first_and_last_buckets_are_dropped() {
        let c = collapse_verdict(&curve(&[9.0, 2.0, 2.5, 4.0, 6.5, 100.0]), 30, true);
        assert_eq!(c.max_within_train, Some(2.5));
        assert_eq!(c.worst_ratio, Some(2.6));
        assert_eq!(c.first_position, Some(40));
        assert_eq!(c.verdict, Some(Verdict::Collapsed));
        assert_eq!(c.collapsed, Some(true));
        assert_eq!(c.ratio_ci, Some([2.6, 2.6]));
        assert!((c.rise.unwrap() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn exactly_twice_is_not_collapse() {
        let c = collapse_verdict(&curve(&[3.0, 2.0, 2.5, 5.0, 1.0]), 30, true);
        assert_eq!(c.verdict, Some(Verdict::NotCollapsed));
        let c = collapse_verdict(&curve(&[3.0, 2.0, 2.5, 5.000001, 1.0]), 30, true);
        assert_eq!(c.verdict, Some(Verdict::Collapsed));
    }

    #[test]
    fn no_reference_bucket_after_dropping_the_first() {
        // Bucket 0 ends at 10 <= 15 but is dropped; bucket 1 ends at 20 > 15.
        let c = collapse_verdict(&curve(&[3.0, 9.0, 9.0, 9.0]), 15, true);
        assert_eq!((c.verdict, c.inconclusive), (Some(Verdict::Inconclusive), Some(Inconclusive::NoReference)));
        assert_eq!(c.collapsed, None);
    }

    #[test]
    fn sampled_inputs_without_per_prompt_losses_are_too_few() {
        let c = collapse_verdict(&curve(&[3.0, 2.0, 2.5, 9.0, 9.0, 9.0]), 30, false);
        assert_eq!((c.verdict, c.inconclusive), (Some(Verdict::Inconclusive), Some(Inconclusive::TooFewPrompts)));
        assert_eq!(c.worst_ratio, Some(3.6));
    }

    /// Eight prompts, all with the same shape: every resample has ratio 3 -> collapsed [3, 3].
    /// Eight prompts of which half rise to 3x and half stay flat: resamples straddle 2.
    #[test]
    fn bootstrap_over_prompts() {
        let b = curve(&[1.0; 6]);
        let rising = vec![1.0, 1.0, 1.0, 3.0, 3.0, 1.0];
        let flat = vec![1.0; 6];
        let mean = |rows: &[Vec<f64>]| -> Vec<Bucket> {
            let mut m = b.clone();
            for (i, x) in m.iter_mut().enumerate() {
                x.loss = rows.iter().map(|r| r[i]).sum::<f64>() / rows.len() as f64;
            }
            m
        };
        let all = vec![rising.clone(); 8];
        let c = verdict(&VerdictInput { buckets: &mean(&all), per_prompt: &all, train_len: 30, uniform_loss: Some(5.5), probe: false });
        assert_eq!(c.verdict, Some(Verdict::Collapsed));
        assert_eq!(c.ratio_ci, Some([3.0, 3.0]));
        assert_eq!(c.prompts, 8);
        let half: Vec<Vec<f64>> = (0..8).map(|i| if i % 2 == 0 { rising.clone() } else { flat.clone() }).collect();
        let c = verdict(&VerdictInput { buckets: &mean(&half), per_prompt: &half, train_len: 30, uniform_loss: Some(5.5), probe: false });
        assert_eq!(c.worst_ratio, Some(2.0));
        assert_eq!((c.verdict, c.inconclusive), (Some(Verdict::Inconclusive), Some(Inconclusive::IntervalContainsThreshold)));
        let [lo, hi] = c.ratio_ci.unwrap();
        assert!(lo < 2.0 && hi > 2.0 && lo >= 1.0 && hi <= 3.0, "{lo} {hi}");
        // Deterministic: the same input gives the same interval.
        let again =
            verdict(&VerdictInput { buckets: &mean(&half), per_prompt: &half, train_len: 30, uniform_loss: Some(5.5), probe: false });
        assert_eq!(again.ratio_ci, c.ratio_ci);
        // Seven prompts: too few, whatever they show.
        let c =
            verdict(&VerdictInput { buckets: &mean(&all[..7]), per_prompt: &all[..7], train_len: 30, uniform_loss: None, probe: false });
        assert_eq!(c.inconclusive, Some(Inconclusive::TooFewPrompts));
    }

    /// In-T loss 6.0 above ln 256 = 5.55: 2x can hardly trigger; the rise 6.0 -> 9.0 is reported
    /// and the verdict is inconclusive; a decisive collapse (13 > 12) still stands. In-T 3.0:
    /// the threshold 6.0 is above ln 256 too (the reproduction's 3.2 -> 5.4 nats, ratio 1.7);
    /// in-T 2.5 (threshold 5.0) is not degenerate.
    #[test]
    fn degenerate_probe_is_inconclusive_with_its_rise() {
        let ln_v = 256f64.ln();
        let b = curve(&[1.0, 6.0, 6.0, 9.0, 9.0, 1.0]);
        let c = verdict(&VerdictInput { buckets: &b, per_prompt: &[], train_len: 30, uniform_loss: Some(ln_v), probe: true });
        assert_eq!((c.verdict, c.inconclusive), (Some(Verdict::Inconclusive), Some(Inconclusive::Degenerate)));
        assert_eq!(c.rise, Some(3.0));
        let b = curve(&[1.0, 6.0, 6.0, 13.0, 9.0, 1.0]);
        let c = verdict(&VerdictInput { buckets: &b, per_prompt: &[], train_len: 30, uniform_loss: Some(ln_v), probe: true });
        assert_eq!(c.verdict, Some(Verdict::Collapsed));
        let b = curve(&[1.0, 3.0, 3.0, 5.4, 5.0, 1.0]);
        let c = verdict(&VerdictInput { buckets: &b, per_prompt: &[], train_len: 30, uniform_loss: Some(ln_v), probe: true });
        assert_eq!((c.inconclusive, c.worst_ratio), (Some(Inconclusive::Degenerate), Some(1.8)));
        let b = curve(&[1.0, 2.5, 2.5, 4.0, 4.0, 1.0]);
        let c = verdict(&VerdictInput { buckets: &b, per_prompt: &[], train_len: 30, uniform_loss: Some(ln_v), probe: true });
        assert_eq!(c.verdict, Some(Verdict::NotCollapsed));
    }
}
