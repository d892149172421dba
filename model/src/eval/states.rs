//! State diagnostics over position (paper §3): per layer and head, statistics of the SSM state
//! (mean, variance, RMS), the cumulative retention of the first token prod exp(dt*A) (as its
//! log), and bucket means of dt, |B| and |x|; plus a histogram of one head's state channels at
//! chosen positions. Streams with the bucket as chunk; a probe records each mixer's internals.
use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::eval::mitigation::{Mitigation, StateNormer};
use crate::lm::Mamba2LM;
use crate::mixer::Exec;
use crate::probe::{MixerObservation, Probe};
use crate::Result;

#[derive(Debug, Clone)]
pub struct StatesEval {
    pub bucket: i64,
    pub kind: Kind,
    pub mitigation: Mitigation,
    pub hist_layer: i64,
    pub hist_head: i64,
    /// Positions (snapped to bucket ends) of the channel histograms.
    pub hist_positions: Vec<i64>,
    pub hist_bins: usize,
    pub train_len: Option<i64>,
}

pub use stuffed_protocol::eval::{HeadStates as HeadSeries, LayerStates as LayerSeries, StateHistogram as Histogram};

#[derive(Debug, Clone, Serialize)]
pub struct StatesResult {
    pub positions: Vec<i64>,
    pub layers: Vec<LayerSeries>,
    pub histogram: Option<Histogram>,
    pub wall_s: f64,
}

fn host(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(Device::Cpu).reshape([-1])).unwrap_or_default()
}

/// Accumulates per-bucket statistics from the mixers' observations.
struct Recorder {
    layers: Vec<LayerSeries>,
    /// Running sum of dt*A per layer and head (mean over prompts).
    log_ret: Vec<Vec<f64>>,
    hist_layer: i64,
    hist_head: i64,
    /// The observed head's state [P*N] (first prompt) at the end of the last chunk.
    last_hist_state: Option<Vec<f64>>,
}

impl Probe for Recorder {
    fn observe(&mut self, layer: usize, o: &MixerObservation<'_>) {
        let h = o.dt.size()[2];
        let g = o.b.size()[2];
        let s = o.state; // [B, H, P, N]
        let dims = [0i64, 2, 3];
        let mean = host(&s.mean_dim(dims.as_slice(), false, Kind::Float));
        let var = host(&s.var_dim(dims.as_slice(), false, false));
        let rms = host(&s.square().mean_dim(dims.as_slice(), false, Kind::Float).sqrt());
        let la_sum =
            host(&o.log_decay.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).mean_dim([0i64].as_slice(), false, Kind::Float)); // [H]
        let dt = host(&o.dt.mean_dim([0i64, 1].as_slice(), false, Kind::Float));
        let b = host(&o.b.abs().mean_dim([0i64, 1, 3].as_slice(), false, Kind::Float)); // [G]
        let x = host(&o.x.abs().mean_dim([0i64, 1, 3].as_slice(), false, Kind::Float)); // [H]
        let series = &mut self.layers[layer];
        for hd in 0..h as usize {
            self.log_ret[layer][hd] += la_sum[hd];
            let e = &mut series.heads[hd];
            e.state_mean.push(mean[hd]);
            e.state_var.push(var[hd]);
            e.state_rms.push(rms[hd]);
            e.log_retention.push(self.log_ret[layer][hd]);
            e.dt_mean.push(dt[hd]);
            e.b_mean.push(b[hd * g as usize / h as usize]);
            e.x_mean.push(x[hd]);
        }
        if layer as i64 == self.hist_layer {
            self.last_hist_state = Some(host(&s.get(0).get(self.hist_head)));
        }
    }
}

/// Runs the diagnostics over `prompts` (equal lengths; n positions = prompt length).
pub fn run(lm: &Mamba2LM, prompts: &[Vec<u32>], cfg: &StatesEval) -> Result<StatesResult> {
    run_with_progress(lm, prompts, cfg, &super::no_progress)
}

/// `run`, reporting the positions streamed so far (of n) to `progress` after each bucket.
pub fn run_with_progress(lm: &Mamba2LM, prompts: &[Vec<u32>], cfg: &StatesEval, progress: super::Progress) -> Result<StatesResult> {
    let _g = tch::no_grad_guard();
    let start = Instant::now();
    let n = prompts.first().map(|p| p.len() as i64).unwrap_or(0);
    let (layers, heads) = (lm.cfg.n_layer, lm.cfg.nheads());
    if cfg.hist_layer >= layers || cfg.hist_head >= heads || cfg.hist_layer < 0 || cfg.hist_head < 0 {
        return Err(crate::Error::Eval(format!(
            "histogram head ({}, {}) outside the model's {layers} layers x {heads} heads",
            cfg.hist_layer, cfg.hist_head
        )));
    }
    let flat: Vec<i64> = prompts.iter().flat_map(|p| p.iter().map(|&t| t as i64)).collect();
    let tokens = Tensor::from_slice(&flat).view([prompts.len() as i64, n]);
    let mut rec = Recorder {
        layers: (0..layers)
            .map(|l| LayerSeries { layer: l, heads: (0..heads).map(|h| HeadSeries { head: h, ..Default::default() }).collect() })
            .collect(),
        log_ret: vec![vec![0.0; heads as usize]; layers as usize],
        hist_layer: cfg.hist_layer,
        hist_head: cfg.hist_head,
        last_hist_state: None,
    };
    let mut state = lm.zero_state(prompts.len() as i64, cfg.kind);
    let mut normer = match cfg.mitigation {
        Mitigation::StateNorm { tau, .. } => Some(StateNormer::new(tau, layers as usize)),
        _ => None,
    };
    let bucket = cfg.mitigation.max_chunk().map_or(cfg.bucket, |m| m.min(cfg.bucket)).max(1);
    let mut positions = Vec::new();
    let mut snapshots: Vec<(i64, Vec<f64>)> = Vec::new();
    let mut pos = 0;
    while pos < n {
        let c = bucket.min(n - pos);
        {
            let mut ex = Exec::with_knobs(cfg.kind, cfg.mitigation.knobs());
            ex.probe = Some(&mut rec);
            let _ = lm.forward_hidden(&tokens.narrow(1, pos, c).to_device(lm.device()), Some(&mut state), &mut ex);
        }
        pos += c;
        progress(pos as u64, n as u64);
        if let Some(nm) = normer.as_mut() {
            nm.apply(&mut state, cfg.train_len.is_some_and(|t| pos <= t));
        }
        positions.push(pos);
        if cfg.hist_positions.iter().any(|&p| p <= pos && p > pos - c) {
            snapshots.push((pos, rec.last_hist_state.clone().unwrap_or_default()));
        }
    }
    let histogram = (!snapshots.is_empty()).then(|| histogram(cfg, &snapshots));
    Ok(StatesResult { positions, layers: rec.layers, histogram, wall_s: start.elapsed().as_secs_f64() })
}

/// Counts of each snapshot's values over shared, symmetric bins.
fn histogram(cfg: &StatesEval, snaps: &[(i64, Vec<f64>)]) -> Histogram {
    let bins = cfg.hist_bins.max(2);
    let max = snaps.iter().flat_map(|(_, v)| v.iter()).fold(0f64, |m, x| m.max(x.abs())).max(1e-12);
    let edges: Vec<f64> = (0..=bins).map(|i| -max + 2.0 * max * i as f64 / bins as f64).collect();
    let counts = snaps
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0i64; bins];
            for &x in v {
                let i = (((x + max) / (2.0 * max)) * bins as f64).floor() as i64;
                c[i.clamp(0, bins as i64 - 1) as usize] += 1;
            }
            c
        })
        .collect();
    Histogram { layer: cfg.hist_layer, head: cfg.hist_head, positions: snaps.iter().map(|(p, _)| *p).collect(), bins: edges, counts }
}
