//! Named parameters in the reference's order and names (`backbone.layers.{i}.mixer.in_proj.weight`),
//! with the initialisation of mamba_ssm (tch's default inits differ, so every init is explicit).
use tch::{Device, Kind, Tensor};

/// An ordered list of named fp32 leaf tensors. Modules hold shallow clones, so an in-place
/// update here (optimizer step, checkpoint load) is seen everywhere.
#[derive(Debug, Default)]
pub struct Params {
    entries: Vec<(String, Tensor)>,
    /// Allocate zeros instead of drawing the reference init (weights about to be loaded).
    zero_init: bool,
}

impl Params {
    pub fn new(zero_init: bool) -> Self {
        Params { entries: Vec::new(), zero_init }
    }

    /// Registers a trainable fp32 parameter of `shape` on `device`, initialised by `init`
    /// (skipped for a zero-initialised store), and returns the handle.
    pub fn add(&mut self, name: String, shape: &[i64], init: impl FnOnce(&[i64]) -> Tensor, device: Device) -> Tensor {
        let t =
            if self.zero_init { Tensor::zeros(shape, (Kind::Float, device)) } else { init(shape).to_device(device).to_kind(Kind::Float) };
        let t = t.detach().set_requires_grad(true);
        self.entries.push((name, t.shallow_clone()));
        t
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn numel(&self) -> i64 {
        self.entries.iter().map(|(_, t)| t.numel() as i64).sum()
    }

    /// Parameters excluded from weight decay, as in the paper and mamba_ssm: dt_bias, A_log, D,
    /// every norm weight and every bias.
    pub fn no_weight_decay(name: &str) -> bool {
        name.ends_with(".dt_bias") || name.ends_with(".A_log") || name.ends_with(".D") || name.ends_with(".bias") || name.contains("norm")
    }
}

/// The initialisations of the reference (`shared/spec/mamba2.md`), drawn on the CPU from the
/// global torch generator (seeded through `Mamba2LM::seeded`) so a seed gives the same weights
/// on every device.
pub mod init {
    use super::*;

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    /// U(-bound, bound).
    pub fn uniform(shape: &[i64], bound: f64) -> Tensor {
        Tensor::rand(shape, CPU) * (2.0 * bound) - bound
    }

    /// PyTorch's Linear / Conv default: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
    pub fn torch_default(shape: &[i64], fan_in: i64) -> Tensor {
        uniform(shape, 1.0 / (fan_in as f64).sqrt())
    }

    pub fn normal(shape: &[i64], std: f64) -> Tensor {
        Tensor::randn(shape, CPU) * std
    }

    pub fn ones(shape: &[i64]) -> Tensor {
        Tensor::ones(shape, CPU)
    }

    /// dt = exp(U(0,1) * (ln dt_max - ln dt_min) + ln dt_min), floored, then inverse softplus.
    pub fn dt_bias(nheads: i64, dt_min: f64, dt_max: f64, floor: f64) -> Tensor {
        let u = Tensor::rand([nheads], CPU);
        let dt = (u * (dt_max.ln() - dt_min.ln()) + dt_min.ln()).exp().clamp_min(floor);
        // inv_softplus(dt) = dt + ln(-expm1(-dt))
        &dt + (-(-&dt).expm1()).log()
    }

    /// A_log = ln U(lo, hi).
    pub fn a_log(nheads: i64, lo: f64, hi: f64) -> Tensor {
        (Tensor::rand([nheads], CPU) * (hi - lo) + lo).log()
    }
}
