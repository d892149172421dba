//! Passkey retrieval over a grid of lengths x depths: n seeded prompts per cell, prompts of one
//! length batched, prefilled in streamed chunks (memory bounded by the chunk, not the length),
//! answers decoded greedily token by token and scored as the paper (passkey in the output).
//! Two readings of T_recall, both reported: the authors' (`depth_mean`, the default): the
//! largest length whose accuracy averaged over the depths is > 0.95; and `strict`: the largest
//! length with accuracy > 0.95 at every depth. The `authors` prompts of one length may differ
//! by a token or two (the key's digits tokenize differently): prompts are batched by exact
//! token length. The lengths are a list ([`run`]) or found by bisection ([`run_search`],
//! `length_search.rs`): each probed length is evaluated exactly like a listed one.
use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::passkey::{is_retrieved, PasskeyFormat, PasskeyTemplate};
use crate::eval::length_search::{self, LengthGrid};
use crate::eval::mitigation::{Mitigation, StateNormer};
use crate::lm::Mamba2LM;
use crate::mixer::Exec;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::train::config::RecallRule;
use crate::Result;

pub use stuffed_protocol::eval::RECALL_THRESHOLD;

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
    pub template: PasskeyFormat,
    /// Which reading `t_recall` reports.
    pub recall_rule: RecallRule,
}

pub use stuffed_protocol::eval::{DepthRecall, LenAccuracy, LengthSearch, PasskeyCell as Cell, SearchProbe};

#[derive(Debug, Clone, Serialize)]
pub struct PasskeyResult {
    pub cells: Vec<Cell>,
    pub accuracy_by_len: Vec<LenAccuracy>,
    /// The reading chosen by `recall_rule`.
    pub t_recall: Option<i64>,
    /// Largest length with depth-averaged accuracy > 0.95 (the authors').
    pub t_recall_mean: Option<i64>,
    /// Largest length with accuracy > 0.95 at every depth.
    pub t_recall_strict: Option<i64>,
    pub recall_rule: RecallRule,
    pub template: PasskeyFormat,
    pub t_recall_per_depth: Vec<DepthRecall>,
    /// The probes and bracket of [`run_search`].
    pub search: Option<LengthSearch>,
    pub wall_s: f64,
    pub tokens_per_s: f64,
}

/// The largest length whose accuracy averaged over its cells (depths) is above the threshold.
pub fn t_recall_mean(cells: &[Cell]) -> Option<i64> {
    stuffed_protocol::eval::t_recall_of(cells, RecallRule::DepthMean)
}

/// The largest length whose accuracy is above the threshold in every given cell of it.
pub fn t_recall(cells: &[Cell]) -> Option<i64> {
    stuffed_protocol::eval::t_recall_of(cells, RecallRule::Strict)
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

/// Passkey accuracy at every length of `cfg.lengths` x every depth, and T_recall.
pub fn run(lm: &Mamba2LM, tok: &Tokenizer, cfg: &PasskeyEval) -> Result<PasskeyResult> {
    run_with_progress(lm, tok, cfg, &super::no_progress)
}

/// `run`, reporting the prompt tokens read so far to `progress`.
pub fn run_with_progress(lm: &Mamba2LM, tok: &Tokenizer, cfg: &PasskeyEval, progress: super::Progress) -> Result<PasskeyResult> {
    let _g = tch::no_grad_guard();
    let start = Instant::now();
    let tpl = PasskeyTemplate::new(tok, cfg.template);
    let total: u64 = cfg.lengths.iter().map(|&l| l.max(0) as u64).sum::<u64>() * cfg.depths.len() as u64 * cfg.n.max(0) as u64;
    let (mut cells, mut tokens) = (Vec::new(), 0i64);
    for &len in &cfg.lengths {
        cells.extend(length_cells(lm, tok, &tpl, cfg, len, &mut tokens)?);
        progress(tokens as u64, total.max(tokens as u64));
    }
    Ok(summarize(cfg, &cfg.lengths, cells, None, start, tokens))
}

/// T_recall by bisection over `grid` (`length_search.rs`): each probe evaluates every depth x
/// `cfg.n` prompts at its length, as [`run`] does for a listed length, and is recalled under
/// `cfg.recall_rule`; `cfg.lengths` is ignored. The cells, `accuracy_by_len` and the T_recall
/// readings cover the probed lengths, ascending; `search` keeps the probes in the order run.
pub fn run_search(lm: &Mamba2LM, tok: &Tokenizer, cfg: &PasskeyEval, grid: &LengthGrid) -> Result<PasskeyResult> {
    let _g = tch::no_grad_guard();
    let start = Instant::now();
    let tpl = PasskeyTemplate::new(tok, cfg.template);
    let (mut cells, mut tokens, mut probes) = (Vec::new(), 0i64, Vec::new());
    let b = length_search::bisect(grid, |len| -> Result<bool> {
        let cs = length_cells(lm, tok, &tpl, cfg, len, &mut tokens)?;
        let accs: Vec<f64> = cs.iter().map(|c| c.accuracy).collect();
        let recalled = cfg.recall_rule.recalled(&accs);
        probes.push(SearchProbe { len, accuracy: mean(&accs), recalled });
        cells.extend(cs);
        Ok(recalled)
    })?;
    let search = LengthSearch { outcome: b.outcome, last_pass: b.last_pass, first_fail: b.first_fail, probes, monotone: b.monotone };
    let mut lengths: Vec<i64> = b.probes.iter().map(|p| p.0).collect();
    lengths.sort_unstable();
    cells.sort_by_key(|c| c.len);
    Ok(summarize(cfg, &lengths, cells, Some(search), start, tokens))
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// One cell per depth at `len`: `cfg.n` seeded prompts each, batched by exact token length.
fn length_cells(lm: &Mamba2LM, tok: &Tokenizer, tpl: &PasskeyTemplate, cfg: &PasskeyEval, len: i64, tokens: &mut i64) -> Result<Vec<Cell>> {
    // All prompts of this length: depth-major, n per depth; batched by exact token length.
    let mut prompts = Vec::new();
    for (di, &depth) in cfg.depths.iter().enumerate() {
        for i in 0..cfg.n {
            let mut rng = Rng::derive(cfg.seed, &[len as u64, di as u64, i as u64]);
            let key = tpl.draw_passkey(&mut rng);
            prompts.push((di, tpl.prompt(len as usize, depth, &key)?));
        }
    }
    prompts.sort_by_key(|(_, p)| p.tokens.len());
    let mut hits = vec![0i64; cfg.depths.len()];
    for same in prompts.chunk_by(|a, b| a.1.tokens.len() == b.1.tokens.len()) {
        let l = same[0].1.tokens.len() as i64;
        for group in same.chunks(cfg.batch.max(1)) {
            let flat: Vec<i64> = group.iter().flat_map(|(_, p)| p.tokens.iter().map(|&t| t as i64)).collect();
            let batch = Tensor::from_slice(&flat).view([group.len() as i64, l]);
            let outs = complete(lm, tok, &batch, cfg)?;
            for ((di, p), out) in group.iter().zip(outs) {
                if is_retrieved(&out, &p.passkey) {
                    hits[*di] += 1;
                }
            }
            *tokens += l * group.len() as i64;
        }
    }
    Ok(cfg.depths.iter().enumerate().map(|(di, &depth)| Cell { len, depth, accuracy: hits[di] as f64 / cfg.n as f64, n: cfg.n }).collect())
}

/// The result over `cells` of `lengths`: accuracy per length, both T_recall readings, per depth.
fn summarize(
    cfg: &PasskeyEval,
    lengths: &[i64],
    cells: Vec<Cell>,
    search: Option<LengthSearch>,
    start: Instant,
    tokens: i64,
) -> PasskeyResult {
    let accuracy_by_len = lengths
        .iter()
        .map(|&len| {
            let accs: Vec<f64> = cells.iter().filter(|c| c.len == len).map(|c| c.accuracy).collect();
            LenAccuracy { len, accuracy: mean(&accs) }
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
    let (mean, strict) = (t_recall_mean(&cells), t_recall(&cells));
    PasskeyResult {
        t_recall: match cfg.recall_rule {
            RecallRule::DepthMean => mean,
            RecallRule::Strict => strict,
        },
        t_recall_mean: mean,
        t_recall_strict: strict,
        recall_rule: cfg.recall_rule,
        template: cfg.template,
        cells,
        accuracy_by_len,
        t_recall_per_depth,
        search,
        wall_s,
        tokens_per_s: tokens as f64 / wall_s.max(1e-9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(len: i64, depth: f64, accuracy: f64) -> Cell {
        Cell { len, depth, accuracy, n: 10 }
    }

    #[test]
    fn t_recall_needs_every_depth_above_threshold() {
        let cells = vec![
            cell(100, 0.1, 1.0),
            cell(100, 0.9, 1.0),
            cell(200, 0.1, 1.0),
            cell(200, 0.9, 0.9),
            cell(400, 0.1, 0.2),
            cell(400, 0.9, 0.0),
        ];
        assert_eq!(t_recall(&cells), Some(100));
        assert_eq!(t_recall(&cells[4..]), None);
    }

    /// Depth-averaged: 200 has mean 0.95 (not > 0.95), 300 has 0.975 although one depth is 0.95;
    /// the strict reading stops at 100.
    #[test]
    fn t_recall_mean_averages_over_depths() {
        let cells = vec![
            cell(100, 0.25, 1.0),
            cell(100, 0.75, 1.0),
            cell(200, 0.25, 1.0),
            cell(200, 0.75, 0.9),
            cell(300, 0.25, 0.95),
            cell(300, 0.75, 1.0),
            cell(400, 0.25, 0.0),
            cell(400, 0.75, 0.5),
        ];
        assert_eq!(t_recall_mean(&cells), Some(300));
        assert_eq!(t_recall(&cells), Some(100));
        assert_eq!(t_recall_mean(&cells[6..]), None);
    }
}
