//! Loss by position on long inputs, streamed chunk by chunk with the carried recurrent state:
//! memory does not grow with the input length. Bucketed curves (the mean and one per prompt)
//! and the paper's state-collapse verdict (v4 §4.2, see `eval::collapse`).
use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

pub use crate::eval::collapse::{collapse_verdict, Collapse};
use crate::eval::collapse::{verdict, VerdictInput};
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
    /// Every prompt is the same fixed text (the newline probe): the verdict has no sampling
    /// uncertainty over prompts.
    pub probe: bool,
}

pub use stuffed_protocol::eval::Bucket;

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
    /// Mean loss per prompt and bucket (`[prompt][bucket]`), for resampling the verdict.
    pub prompt_buckets: Vec<Vec<f64>>,
}

/// Averages per-position losses into buckets of `width` (the last may be shorter).
pub fn bucketize(per_pos: &[f64], width: i64) -> Vec<Bucket> {
    let w = width.max(1) as usize;
    per_pos
        .chunks(w)
        .enumerate()
        .map(|(i, c)| Bucket { start: (i * w) as i64, end: (i * w + c.len()) as i64, loss: c.iter().sum::<f64>() / c.len() as f64 })
        .collect()
}

/// Scored tokens kept on the device between two reads of their losses.
const FLUSH_TOKENS: i64 = 1 << 16;

/// Runs the evaluation over `prompts`, each of the same length n + 1 (n positions scored:
/// the loss at position t is that of token t+1 given tokens <= t).
pub fn run(lm: &Mamba2LM, prompts: &[Vec<u32>], cfg: &LossEval) -> Result<LossCurve> {
    run_with_progress(lm, prompts, cfg, &super::no_progress)
}

/// `run`, reporting the tokens scored so far to `progress`.
pub fn run_with_progress(lm: &Mamba2LM, prompts: &[Vec<u32>], cfg: &LossEval, progress: super::Progress) -> Result<LossCurve> {
    let n = prompts.first().map(|p| p.len() as i64 - 1).unwrap_or(0);
    if n < 1 || prompts.iter().any(|p| p.len() as i64 != n + 1) {
        return Err(Error::Eval("loss evaluation needs prompts of equal length >= 2 tokens".into()));
    }
    let _g = tch::no_grad_guard();
    let start = Instant::now();
    let device = lm.device();
    let chunk = cfg.mitigation.max_chunk().map_or(cfg.chunk, |m| m.min(cfg.chunk)).max(1);
    // Sums per prompt and bucket (memory O(prompts x n / bucket)); per position only when asked.
    let width = cfg.bucket.max(1) as usize;
    let nb = (n as usize).div_ceil(width);
    let mut psums = vec![vec![0f64; nb]; prompts.len()];
    let mut tok_sums = vec![0f64; if cfg.per_token { n as usize } else { 0 }];
    let mut vocab = None;
    let batch = cfg.batch.max(1);
    for (g, group) in prompts.chunks(batch).enumerate() {
        let rows = group.len() as i64;
        let mut state = lm.zero_state(rows, cfg.kind);
        let mut ex = Exec::with_knobs(cfg.kind, cfg.mitigation.knobs());
        let mut normer = match cfg.mitigation {
            Mitigation::StateNorm { tau, .. } => Some(StateNormer::new(tau, lm.cfg.n_layer as usize)),
            _ => None,
        };
        // Per-token losses stay on the device until FLUSH_TOKENS of them wait (one host sync per
        // flush, not per chunk: short chunks, as state-norm's period asks, stay launch-bound
        // instead of sync-bound).
        let mut pending: Vec<(i64, i64, Tensor)> = Vec::new(); // (pos, c, [B * c] f64)
        let mut pending_tokens = 0;
        let mut flush = |pending: &mut Vec<(i64, i64, Tensor)>| -> Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            let all = Tensor::cat(&pending.iter().map(|(_, _, t)| t.shallow_clone()).collect::<Vec<_>>(), 0);
            let host = Vec::<f64>::try_from(all.to_device(Device::Cpu))?;
            let mut off = 0;
            for (pos, c, _) in pending.drain(..) {
                for r in 0..rows as usize {
                    let sums = &mut psums[g * batch + r];
                    for (i, l) in host[off..off + c as usize].iter().enumerate() {
                        let at = pos as usize + i;
                        sums[at / width] += l;
                        if cfg.per_token {
                            tok_sums[at] += l;
                        }
                    }
                    off += c as usize;
                }
            }
            Ok(())
        };
        let mut pos = 0;
        while pos < n {
            let c = chunk.min(n - pos);
            // Tokens pos..=pos+c of every prompt: inputs are the first c, targets the last c.
            let window: Vec<i64> = group.iter().flat_map(|p| p[pos as usize..=(pos + c) as usize].iter().map(|&t| t as i64)).collect();
            let window = Tensor::from_slice(&window).view([rows, c + 1]).to_device(device); // [B, c+1]
            let logits = lm.forward(&window.narrow(1, 0, c), Some(&mut state), &mut ex); // [B, c, V]
            vocab = logits.size().last().copied();
            let losses = Mamba2LM::token_losses(&logits, &window.narrow(1, 1, c)).to_kind(Kind::Double).reshape([-1]); // [B * c]
            pending.push((pos, c, losses));
            pending_tokens += rows * c;
            pos += c;
            if pending_tokens >= FLUSH_TOKENS || pos >= n {
                flush(&mut pending)?;
                pending_tokens = 0;
            }
            progress((g * batch) as u64 * n as u64 + rows as u64 * pos as u64, prompts.len() as u64 * n as u64);
            if let Some(nm) = normer.as_mut() {
                let calibrating = cfg.train_len.is_some_and(|t| pos <= t);
                nm.apply(&mut state, calibrating);
            }
        }
    }
    let scale = prompts.len() as f64;
    let bounds: Vec<(i64, i64)> = (0..nb).map(|i| ((i * width) as i64, (((i + 1) * width) as i64).min(n))).collect();
    let prompt_buckets: Vec<Vec<f64>> =
        psums.iter().map(|row| row.iter().zip(&bounds).map(|(s, (a, b))| s / (b - a) as f64).collect()).collect();
    let buckets: Vec<Bucket> = bounds
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| Bucket { start: a, end: b, loss: prompt_buckets.iter().map(|r| r[i]).sum::<f64>() / scale })
        .collect();
    let per_token = cfg.per_token.then(|| tok_sums.iter().map(|s| s / scale).collect());
    let mean_loss = psums.iter().flatten().sum::<f64>() / scale / n as f64;
    let wall_s = start.elapsed().as_secs_f64();
    let tokens = n * prompts.len() as i64;
    if !mean_loss.is_finite() {
        return Err(Error::Eval("the loss is not finite".into()));
    }
    let uniform_loss = vocab.map(|v| (v as f64).ln());
    Ok(LossCurve {
        collapse: cfg.train_len.map(|train_len| {
            verdict(&VerdictInput { buckets: &buckets, per_prompt: &prompt_buckets, train_len, uniform_loss, probe: cfg.probe })
        }),
        prompt_buckets,
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

    #[test]
    fn buckets_average_and_keep_a_short_tail() {
        let b = bucketize(&[1.0, 3.0, 5.0, 7.0, 9.0], 2);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], Bucket { start: 0, end: 2, loss: 2.0 });
        assert_eq!(b[2], Bucket { start: 4, end: 5, loss: 9.0 });
    }
}
