//! AdamW written with tensor ops, so its state (moments, step) can be saved and restored
//! exactly (tch's built-in optimizer state cannot be saved). Moments live in two flat fp32
//! buffers over all parameters: one gradient concat and a dozen element-wise kernels per
//! step, whatever the number of parameters. Decoupled weight decay, none on the parameters
//! `Params::no_weight_decay` names (dt_bias, A_log, D, norms, biases).
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::checkpoint::{read_tensors, save_tensors, write_json_atomic};
use crate::params::Params;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 }
    }
}

/// One parameter as the optimizer sees it.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    offset: i64,
    numel: i64,
    decay: bool,
}

#[derive(Debug)]
pub struct AdamW {
    pub cfg: AdamWConfig,
    slots: Vec<Slot>,
    m: Tensor, // [numel] fp32
    v: Tensor, // [numel] fp32
    pub step: i64,
}

/// Statistics of one optimizer step (still on the device until read).
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: Tensor,
}

/// The step-dependent factors of an update (`AdamW::factors`): known on the host, or read from
/// the device when the update runs.
#[derive(Clone, Copy)]
enum Factors<'a> {
    Host([f64; 3]),
    Device(&'a Tensor),
}

impl Factors<'_> {
    /// `t` times factor `i`.
    fn mul(self, t: &Tensor, i: usize) -> Tensor {
        match self {
            Factors::Host(h) => t * h[i],
            Factors::Device(d) => t * d.get(i as i64),
        }
    }

    /// `t` scaled by factor `i` in place.
    fn mul_(self, t: &mut Tensor, i: usize) {
        let _ = match self {
            Factors::Host(h) => t.g_mul_scalar_(h[i]),
            Factors::Device(d) => t.g_mul_(&d.get(i as i64)),
        };
    }
}

#[derive(Serialize, Deserialize)]
struct StateMeta {
    step: i64,
    cfg: AdamWConfig,
    params: Vec<(String, i64)>,
}

impl AdamW {
    pub fn new(params: &Params, cfg: AdamWConfig) -> AdamW {
        let mut offset = 0;
        let slots: Vec<Slot> = params
            .iter()
            .map(|(name, p)| {
                let numel = p.numel() as i64;
                let slot = Slot { name: name.to_string(), param: p.shallow_clone(), offset, numel, decay: !Params::no_weight_decay(name) };
                offset += numel;
                slot
            })
            .collect();
        let device = slots.first().map(|s| s.param.device()).unwrap_or(tch::Device::Cpu);
        let zeros = || Tensor::zeros([offset], (Kind::Float, device));
        AdamW { cfg, slots, m: zeros(), v: zeros(), step: 0 }
    }

    /// Names of the parameters that get weight decay, and of those that do not.
    pub fn groups(&self) -> (Vec<&str>, Vec<&str>) {
        let (d, nd): (Vec<&Slot>, Vec<&Slot>) = self.slots.iter().partition(|s| s.decay);
        (d.iter().map(|s| s.name.as_str()).collect(), nd.iter().map(|s| s.name.as_str()).collect())
    }

    /// Sets every gradient to none: the next backward writes the gradients instead of adding
    /// them to zeros (one fill and one add kernel less per parameter). `step` takes a missing
    /// gradient as zero.
    pub fn zero_grad(&self) {
        for s in &self.slots {
            crate::cuda::grad_set_none(&s.param).expect("setting a gradient to none");
        }
    }

    /// Clips the global gradient norm to `max_norm` (no clipping when <= 0) and applies one
    /// AdamW update with learning rate `lr`. Parameters without a gradient count as zero.
    pub fn step(&mut self, lr: f64, max_norm: f64) -> StepStats {
        self.step += 1;
        let f = self.factors(lr);
        self.update(max_norm, Factors::Host(f))
    }

    /// `step` for a captured CUDA graph: the step-dependent factors are read from `factors`
    /// (a [3] fp32 tensor on the device, see `advance`) when the work runs, not fixed when it
    /// is queued. The same float operations as `step`, so the same result.
    pub fn step_from(&self, factors: &Tensor, max_norm: f64) -> StepStats {
        self.update(max_norm, Factors::Device(factors))
    }

    /// Counts one step and writes its factors for learning rate `lr` into `factors` (see
    /// `step_from`), before the captured step runs.
    pub fn advance(&mut self, lr: f64, factors: &Tensor) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        for (i, v) in self.factors(lr).into_iter().enumerate() {
            let _ = factors.get(i as i64).fill_(v);
        }
    }

    /// The step-dependent factors of step `self.step`: lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t)
    /// and the weight decay's 1 - lr * weight_decay.
    fn factors(&self, lr: f64) -> [f64; 3] {
        let AdamWConfig { beta1, beta2, weight_decay, .. } = self.cfg;
        let bc1 = 1.0 - beta1.powi(self.step as i32);
        let bc2 = 1.0 - beta2.powi(self.step as i32);
        [lr / bc1, 1.0 / bc2.sqrt(), 1.0 - lr * weight_decay]
    }

    fn update(&self, max_norm: f64, f: Factors) -> StepStats {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = self
            .slots
            .iter()
            .map(|s| {
                let g = s.param.grad();
                if g.defined() {
                    g.reshape([-1])
                } else {
                    s.param.zeros_like().reshape([-1])
                }
            })
            .collect();
        let mut g = Tensor::cat(&grads, 0); // [numel]
        let grad_norm = g.norm();
        if max_norm > 0.0 {
            // coef = min(1, max_norm / (norm + 1e-6)), on the device: no host sync.
            let coef = (max_norm / (&grad_norm + 1e-6)).clamp_max(1.0);
            g = g * coef;
        }
        let AdamWConfig { beta1, beta2, eps, weight_decay } = self.cfg;
        let (mut m, mut v) = (self.m.shallow_clone(), self.v.shallow_clone());
        let _ = m.lerp_(&g, 1.0 - beta1);
        let _ = v.lerp_(&g.square(), 1.0 - beta2);
        let denom = f.mul(&v.sqrt(), 1) + eps;
        let update = f.mul(&(&m / denom), 0); // [numel]
        for s in &self.slots {
            let mut p = s.param.shallow_clone();
            if s.decay && weight_decay > 0.0 {
                f.mul_(&mut p, 2);
            }
            let _ = p.g_sub_(&update.narrow(0, s.offset, s.numel).view_as(&p));
        }
        StepStats { grad_norm }
    }

    /// Saves moments (`optimizer.safetensors`) and step/layout (`optimizer.json`) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_tensors(&dir.join("optimizer.safetensors"), [("m".to_string(), &self.m), ("v".to_string(), &self.v)].into_iter())?;
        let meta = StateMeta { step: self.step, cfg: self.cfg, params: self.slots.iter().map(|s| (s.name.clone(), s.numel)).collect() };
        write_json_atomic(&dir.join("optimizer.json"), &meta)
    }

    /// Restores what `save` wrote; the parameter layout must be the same.
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        let meta_path = dir.join("optimizer.json");
        let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let meta: StateMeta = serde_json::from_str(&text).map_err(|e| Error::at(&meta_path, e.to_string()))?;
        let layout: Vec<(String, i64)> = self.slots.iter().map(|s| (s.name.clone(), s.numel)).collect();
        if meta.params != layout {
            return Err(Error::at(&meta_path, "optimizer state was saved for a different model"));
        }
        let path = dir.join("optimizer.safetensors");
        let mut t = read_tensors(&path)?;
        let _guard = tch::no_grad_guard();
        for (name, dst) in [("m", &mut self.m), ("v", &mut self.v)] {
            let src = t.remove(name).ok_or_else(|| Error::at(&path, format!("missing tensor '{name}'")))?;
            if src.size() != dst.size() {
                return Err(Error::at(&path, format!("tensor '{name}': expected {:?}, found {:?}", dst.size(), src.size())));
            }
            dst.copy_(&src.to_device(dst.device()));
        }
        self.step = meta.step;
        self.cfg = meta.cfg;
        Ok(())
    }
}
