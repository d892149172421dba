//! Passkey retrieval over a grid of lengths x depths: n seeded prompts per cell, prompts of one
//! length batched, prefilled in streamed chunks (memory bounded by the chunk, not the length),
//! answers decoded greedily token by token and scored as the paper (passkey in the output).
//! T_recall = the largest length with accuracy > 0.95 at every depth.
use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::passkey::{is_retrieved, PasskeyTemplate};
use crate::eval::mitigation::{Mitigation, StateNormer};
use crate::lm::Mamba2LM;
use crate::mixer::Exec;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::Result;

/// Accuracy above which a length counts as recalled.
pub const RECALL_THRESHOLD: f64 = 0.95;

#[derive(Debug, Clone)]
pub struct PasskeyEval {
    pub lengths: Vec<i64>,
    pub depths: Vec<f64>,
    pub n: i64,
    pub seed: u64,
    pub kind: Kind,
    pub mitigation: Mitigation,
    /// Greedy tokens decoded after the prompt.
    pub answer_tokens: usize,
    /// Prompts per forward batch.
    pub batch: usize,
    /// Tokens per prefill call.
    pub chunk: i64,
    /// Training length (state-norm calibration).
    pub train_len: Option<i64>,
}

pub use stuffed_protocol::eval::{DepthRecall, LenAccuracy, PasskeyCell as Cell};

#[derive(Debug, Clone, Serialize)]
pub struct PasskeyResult {
    pub cells: Vec<Cell>,
    pub accuracy_by_len: Vec<LenAccuracy>,
    pub t_recall: Option<i64>,
    pub t_recall_per_depth: Vec<DepthRecall>,
    pub wall_s: f64,
    pub tokens_per_s: f64,
}

/// The largest length whose accuracy is above the threshold in every given cell of it.
pub fn t_recall(cells: &[Cell]) -> Option<i64> {
    let mut lens: Vec<i64> = cells.iter().map(|c| c.len).collect();
    lens.sort_unstable();
    lens.dedup();
    lens.into_iter().filter(|&l| cells.iter().filter(|c| c.len == l).all(|c| c.accuracy > RECALL_THRESHOLD)).max()
}

/// Greedy continuation of a batch of equal-length prompts: [B, L] -> B strings.
fn complete(lm: &Mamba2LM, tok: &Tokenizer, prompts: &Tensor, cfg: &PasskeyEval) -> Result<Vec<String>> {
    let (b, l) = prompts.size2()?;
    let device = lm.device();
    let mut state = lm.zero_state(b, cfg.kind);
    let mut ex = Exec::with_knobs(cfg.kind, cfg.mitigation.knobs());
    let mut normer = match cfg.mitigation {
        Mitigation::StateNorm { tau, .. } => Some(StateNormer::new(tau, lm.cfg.n_layer as usize)),
        _ => None,
    };
    let chunk = cfg.mitigation.max_chunk().map_or(cfg.chunk, |m| m.min(cfg.chunk)).max(1);
    let mut last_hidden = None;
    let mut pos = 0;
    while pos < l {
        let c = chunk.min(l - pos);
        let h = lm.forward_hidden(&prompts.narrow(1, pos, c).to_device(device), Some(&mut state), &mut ex);
        last_hidden = Some(h.select(1, c - 1));
        pos += c;
        if let Some(nm) = normer.as_mut() {
            nm.apply(&mut state, cfg.train_len.is_some_and(|t| pos <= t));
        }
    }
    let mut next = lm.logits(&last_hidden.expect("non-empty prompt"), cfg.kind).argmax(-1, false); // [B]
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); b as usize];
    for i in 0..cfg.answer_tokens {
        let ids = Vec::<i64>::try_from(next.to_device(Device::Cpu))?;
        for (o, id) in out.iter_mut().zip(&ids) {
            o.push(*id as u32);
        }
        if i + 1 < cfg.answer_tokens {
            next = lm.step(&next, &mut state, &mut ex).argmax(-1, false);
        }
    }
    Ok(out.iter().map(|ids| tok.decode(ids)).collect())
}

pub fn run(lm: &Mamba2LM, tok: &Tokenizer, cfg: &PasskeyEval) -> Result<PasskeyResult> {
    let _g = tch::no_grad_guard();
    let start = Instant::now();
    let tpl = PasskeyTemplate::new(tok);
    let mut cells = Vec::new();
    let mut tokens = 0i64;
    for &len in &cfg.lengths {
        // All prompts of this length: depth-major, n per depth.
        let mut prompts = Vec::new();
        for (di, &depth) in cfg.depths.iter().enumerate() {
            for i in 0..cfg.n {
                let mut rng = Rng::derive(cfg.seed, &[len as u64, di as u64, i as u64]);
                let key = PasskeyTemplate::draw_passkey(&mut rng);
                prompts.push(tpl.prompt(len as usize, depth, &key)?);
            }
        }
        let mut hits = vec![0i64; cfg.depths.len()];
        for (g, group) in prompts.chunks(cfg.batch.max(1)).enumerate() {
            let flat: Vec<i64> = group.iter().flat_map(|p| p.tokens.iter().map(|&t| t as i64)).collect();
            let batch = Tensor::from_slice(&flat).view([group.len() as i64, len]);
            let outs = complete(lm, tok, &batch, cfg)?;
            for (j, (p, out)) in group.iter().zip(outs).enumerate() {
                if is_retrieved(&out, &p.passkey) {
                    let idx = (g * cfg.batch.max(1) + j) / cfg.n as usize;
                    hits[idx] += 1;
                }
            }
            tokens += len * group.len() as i64;
        }
        for (di, &depth) in cfg.depths.iter().enumerate() {
            cells.push(Cell { len, depth, accuracy: hits[di] as f64 / cfg.n as f64, n: cfg.n });
        }
    }
    let accuracy_by_len = cfg
        .lengths
        .iter()
        .map(|&len| {
            let cs: Vec<&Cell> = cells.iter().filter(|c| c.len == len).collect();
            LenAccuracy { len, accuracy: cs.iter().map(|c| c.accuracy).sum::<f64>() / cs.len().max(1) as f64 }
        })
        .collect();
    let t_recall_per_depth = cfg
        .depths
        .iter()
        .map(|&d| {
            let cs: Vec<Cell> = cells.iter().filter(|c| c.depth == d).cloned().collect();
            DepthRecall { depth: d, t_recall: t_recall(&cs) }
        })
        .collect();
    let wall_s = start.elapsed().as_secs_f64();
    Ok(PasskeyResult {
        t_recall: t_recall(&cells),
        cells,
        accuracy_by_len,
        t_recall_per_depth,
        wall_s,
        tokens_per_s: tokens as f64 / wall_s.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(len: i64, depth: f64, accuracy: f64) -> Cell {
        Cell { len, depth, accuracy, n: 10 }
    }

    #[test]
    fn t_recall_needs_every_depth_above_threshold() {
        let cells = vec![cell(100, 0.1, 1.0), cell(100, 0.9, 1.0), cell(200, 0.1, 1.0), cell(200, 0.9, 0.9), cell(400, 0.1, 0.2), cell(400, 0.9, 0.0)];
        assert_eq!(t_recall(&cells), Some(100));
        assert_eq!(t_recall(&cells[4..]), None);
    }
}
