//! Loss by position on long inputs, streamed chunk by chunk with the carried recurrent state:
//! memory does not grow with the input length. Bucketed curves and the paper's state-collapse
//! criterion (v4 §4.2).
use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::eval::mitigation::{Mitigation, StateNormer};
use crate::lm::Mamba2LM;
use crate::mixer::Exec;
use crate::{Error, Result};

/// How to run a loss-by-position evaluation.
#[derive(Debug, Clone)]
pub struct LossEval {
    /// Tokens per streamed forward call.
    pub chunk: i64,
    /// Position bucket width of the reported curve.
    pub bucket: i64,
    /// Prompts run side by side in one batch.
    pub batch: usize,
    /// Training length of the model, for the collapse verdict.
    pub train_len: Option<i64>,
    pub kind: Kind,
    pub mitigation: Mitigation,
    /// Keep the per-position mean loss (one f64 per position).
    pub per_token: bool,
}

pub use stuffed_protocol::eval::{Bucket, Collapse};

#[derive(Debug, Clone, Serialize)]
pub struct LossCurve {
    pub buckets: Vec<Bucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapse: Option<Collapse>,
    pub mean_loss: f64,
    pub tokens: i64,
    pub wall_s: f64,
    pub tokens_per_s: f64,
    #[serde(skip)]
    pub per_token: Option<Vec<f64>>,
}

/// The collapse criterion: collapsed when a bucket starting at or after `train_len` has a loss
/// strictly above 2x the largest loss of the buckets ending at or before `train_len`.
pub fn collapse_verdict(buckets: &[Bucket], train_len: i64) -> Collapse {
    let max_within = buckets
        .iter()
        .filter(|b| b.end <= train_len)
        .map(|b| b.loss)
        .fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l))));
    let Some(max_within) = max_within else {
        return Collapse {
            train_len,
            max_within_train: None,
            threshold: None,
            collapsed: None,
            first_position: None,
            worst_ratio: None,
        };
    };
    let threshold = 2.0 * max_within;
    let beyond: Vec<&Bucket> = buckets.iter().filter(|b| b.start >= train_len).collect();
    let first = beyond.iter().find(|b| b.loss > threshold).map(|b| b.start);
    let worst = beyond.iter().map(|b| b.loss / max_within).fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    Collapse {
        train_len,
        max_within_train: Some(max_within),
        threshold: Some(threshold),
        collapsed: Some(first.is_some()),
        first_position: first,
        worst_ratio: worst,
    }
}

/// Averages per-position losses into buckets of `width` (the last may be shorter).
pub fn bucketize(per_pos: &[f64], width: i64) -> Vec<Bucket> {
    let w = width.max(1) as usize;
    per_pos
        .chunks(w)
        .enumerate()
        .map(|(i, c)| Bucket {
            start: (i * w) as i64,
            end: (i * w + c.len()) as i64,
            loss: c.iter().sum::<f64>() / c.len() as f64,
        })
        .collect()
}

/// Runs the evaluation over `prompts`, each of the same length n + 1 (n positions scored:
/// the loss at position t is that of token t+1 given tokens <= t).
pub fn run(lm: &Mamba2LM, prompts: &[Vec<u32>], cfg: &LossEval) -> Result<LossCurve> {
    let n = prompts.first().map(|p| p.len() as i64 - 1).unwrap_or(0);
    if n < 1 || prompts.iter().any(|p| p.len() as i64 != n + 1) {
        return Err(Error::Eval("loss evaluation needs prompts of equal length >= 2 tokens".into()));
    }
    let _g = tch::no_grad_guard();
    let start = Instant::now();
    let device = lm.device();
    let chunk = cfg.mitigation.max_chunk().map_or(cfg.chunk, |m| m.min(cfg.chunk)).max(1);
    // Sums per position only when asked for; per bucket otherwise (memory O(n / bucket)).
    let width = if cfg.per_token { 1 } else { cfg.bucket.max(1) as usize };
    let mut sums = vec![0f64; (n as usize).div_ceil(width)];
    for group in prompts.chunks(cfg.batch.max(1)) {
        let rows = group.len() as i64;
        let mut state = lm.zero_state(rows, cfg.kind);
        let mut ex = Exec::with_knobs(cfg.kind, cfg.mitigation.knobs());
        let mut normer = match cfg.mitigation {
            Mitigation::StateNorm { tau, .. } => Some(StateNormer::new(tau, lm.cfg.n_layer as usize)),
            _ => None,
        };
        let mut pos = 0;
        while pos < n {
            let c = chunk.min(n - pos);
            // Tokens pos..=pos+c of every prompt: inputs are the first c, targets the last c.
            let window: Vec<i64> = group.iter().flat_map(|p| p[pos as usize..=(pos + c) as usize].iter().map(|&t| t as i64)).collect();
            let window = Tensor::from_slice(&window).view([rows, c + 1]).to_device(device); // [B, c+1]
            let logits = lm.forward(&window.narrow(1, 0, c), Some(&mut state), &mut ex);
            let losses = Mamba2LM::token_losses(&logits, &window.narrow(1, 1, c)).sum_dim_intlist([0i64].as_slice(), false, Kind::Double); // [c]
            let host = Vec::<f64>::try_from(losses.to_device(Device::Cpu))?;
            for (i, l) in host.into_iter().enumerate() {
                sums[(pos as usize + i) / width] += l;
            }
            pos += c;
            if let Some(nm) = normer.as_mut() {
                let calibrating = cfg.train_len.is_some_and(|t| pos <= t);
                nm.apply(&mut state, calibrating);
            }
        }
    }
    let scale = prompts.len() as f64;
    let (buckets, per_token) = if cfg.per_token {
        let per_pos: Vec<f64> = sums.iter().map(|s| s / scale).collect();
        (bucketize(&per_pos, cfg.bucket), Some(per_pos))
    } else {
        let buckets = sums
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (a, b) = ((i * width) as i64, (((i + 1) * width) as i64).min(n));
                Bucket { start: a, end: b, loss: s / scale / (b - a) as f64 }
            })
            .collect();
        (buckets, None)
    };
    let mean_loss = sums.iter().sum::<f64>() / scale / n as f64;
    let wall_s = start.elapsed().as_secs_f64();
    let tokens = n * prompts.len() as i64;
    if !mean_loss.is_finite() {
        return Err(Error::Eval("the loss is not finite".into()));
    }
    Ok(LossCurve {
        collapse: cfg.train_len.map(|t| collapse_verdict(&buckets, t)),
        buckets,
        mean_loss,
        tokens,
        wall_s,
        tokens_per_s: tokens as f64 / wall_s.max(1e-9),
        per_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(losses: &[f64]) -> Vec<Bucket> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &l)| Bucket { start: i as i64 * 10, end: i as i64 * 10 + 10, loss: l })
            .collect()
    }

    #[test]
    fn collapse_when_loss_exceeds_twice_the_in_training_max() {
        let c = collapse_verdict(&curve(&[3.0, 2.0, 2.5, 4.0, 6.5, 9.0]), 30);
        assert_eq!(c.collapsed, Some(true));
        assert_eq!(c.max_within_train, Some(3.0));
        assert_eq!(c.first_position, Some(40));
        assert_eq!(c.worst_ratio, Some(3.0));
    }

    #[test]
    fn no_collapse_when_loss_stays_flat() {
        let c = collapse_verdict(&curve(&[3.0, 2.0, 2.5, 2.4, 2.6, 2.3]), 30);
        assert_eq!(c.collapsed, Some(false));
        assert_eq!(c.first_position, None);
    }

    #[test]
    fn exactly_twice_is_not_collapse() {
        let c = collapse_verdict(&curve(&[3.0, 2.0, 2.5, 6.0]), 30);
        assert_eq!(c.collapsed, Some(false));
        let c = collapse_verdict(&curve(&[3.0, 2.0, 2.5, 6.000001]), 30);
        assert_eq!(c.collapsed, Some(true));
    }

    #[test]
    fn no_reference_bucket_means_no_verdict() {
        let c = collapse_verdict(&curve(&[3.0, 9.0]), 5);
        assert_eq!(c.collapsed, None);
    }

    #[test]
    fn buckets_average_and_keep_a_short_tail() {
        let b = bucketize(&[1.0, 3.0, 5.0, 7.0, 9.0], 2);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], Bucket { start: 0, end: 2, loss: 2.0 });
        assert_eq!(b[2], Bucket { start: 4, end: 5, loss: 9.0 });
    }
}
