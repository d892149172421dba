//! The Mamba-2 language model (mamba_ssm's `MambaLMHeadModel`): embedding -> n_layer x
//! [residual += mixer(RMSNorm(residual))] -> RMSNorm (norm_f) -> lm_head tied to the embedding.
//! The residual stream is fp32. Three ways to run it give the same outputs: a whole sequence
//! (`forward` without state), streaming chunk by chunk (`forward` with a carried `State`) and
//! token by token (`step`). The model carries the SSD implementation its mixers run (`ssd`,
//! `set_ssd`): a value chosen where the model is made or loaded, not a process-wide setting.
//!
//! Dimension legend: B batch, L length, D d_model, V padded vocabulary.
use tch::{Device, Kind, Tensor};

use crate::config::MambaConfig;
use crate::mixer::{Exec, Mixer};
use crate::params::{init, Params};
use crate::ssd::{fused, SsdBackend};
use crate::state::State;
use crate::{Error, Result};

#[derive(Debug)]
struct Block {
    norm: Tensor, // [D]
    mixer: Mixer,
}

#[derive(Debug)]
pub struct Mamba2LM {
    pub cfg: MambaConfig,
    embedding: Tensor, // [V, D]
    layers: Vec<Block>,
    norm_f: Tensor,          // [D]
    lm_head: Option<Tensor>, // [V, D] when untied
    params: Params,
    device: Device,
    /// The SSD implementation of every mixer, resolved for `device` (never `auto`).
    ssd: SsdBackend,
}

/// RMSNorm in fp32 over the last dim: x * rsqrt(mean(x^2) + eps) * w (libtorch's rms_norm:
/// one fused kernel each way on CUDA).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
    let d = *x.size().last().expect("rms_norm of a scalar");
    x.to_kind(Kind::Float).rms_norm([d], Some(w), eps)
}

impl Mamba2LM {
    /// A model with the reference initialisation drawn from torch's global generator as it
    /// stands (use `seeded` for weights that depend on a seed only).
    pub fn new(cfg: &MambaConfig, device: Device) -> Result<Self> {
        Self::build(cfg, device, false)
    }

    /// A model with the reference initialisation for `seed`: the same weights for the same seed
    /// on every device and whatever other threads draw meanwhile.
    pub fn seeded(cfg: &MambaConfig, device: Device, seed: i64) -> Result<Self> {
        crate::rng::with_torch_seed(seed, || Self::new(cfg, device))
    }

    /// A model of zeros, for weights about to be loaded (no time spent drawing an init).
    pub fn zeroed(cfg: &MambaConfig, device: Device) -> Result<Self> {
        Self::build(cfg, device, true)
    }

    fn build(cfg: &MambaConfig, device: Device, zero_init: bool) -> Result<Self> {
        cfg.validate()?;
        let mut params = Params::new(zero_init);
        let (d, v) = (cfg.d_model, cfg.padded_vocab());
        let embedding = params.add("backbone.embedding.weight".into(), &[v, d], |sh| init::normal(sh, 0.02), device);
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let prefix = format!("backbone.layers.{i}");
                let norm = params.add(format!("{prefix}.norm.weight"), &[d], init::ones, device);
                let mixer = Mixer::new(cfg, &format!("{prefix}.mixer"), &mut params, device);
                Block { norm, mixer }
            })
            .collect();
        let norm_f = params.add("backbone.norm_f.weight".into(), &[d], init::ones, device);
        let lm_head = (!cfg.tie_embeddings).then(|| params.add("lm_head.weight".into(), &[v, d], |sh| init::normal(sh, 0.02), device));
        Ok(Mamba2LM { cfg: cfg.clone(), embedding, layers, norm_f, lm_head, params, device, ssd: SsdBackend::Tensor })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The SSD implementation the mixers run: `tensor` (the reference) unless set.
    pub fn ssd(&self) -> SsdBackend {
        self.ssd
    }

    /// Runs the SSD with `ssd` from now on: `auto` is decided for the model's device, and
    /// `fused` on a CUDA device whose kernels do not load is an error naming why.
    pub fn set_ssd(&mut self, ssd: SsdBackend) -> Result<()> {
        self.ssd = ssd.resolve(self.device).map_err(Error::Config)?;
        Ok(())
    }

    /// `set_ssd` on a model taken by value.
    pub fn with_ssd(mut self, ssd: SsdBackend) -> Result<Self> {
        self.set_ssd(ssd)?;
        Ok(self)
    }

    pub fn zero_state(&self, batch: i64, kind: Kind) -> State {
        State::zeros(&self.cfg, batch, self.device, kind)
    }

    /// Final hidden states after norm_f, fp32: tokens [B, L] -> [B, L, D] (on the fused CUDA path
    /// rounded to the compute kind first, as the logits read them).
    pub fn forward_hidden(&self, tokens: &Tensor, mut state: Option<&mut State>, ex: &mut Exec) -> Tensor {
        let eps = self.cfg.norm_epsilon;
        let mut residual = Tensor::embedding(&self.embedding, tokens, -1, false, false); // [B, L, D] fp32
        if self.ssd == SsdBackend::Fused && self.device.is_cuda() && fused::add_norm_fits(self.cfg.d_model, ex.kind) {
            // The same sums with each add fused into the next norm: one kernel each way per block.
            let mut pending: Option<Tensor> = None; // the last block's output, not yet added
            for (i, block) in self.layers.iter().enumerate() {
                let (r, normed) = fused::add_norm(&residual, pending.as_ref(), &block.norm, eps, ex.kind);
                residual = r;
                let layer_state = state.as_deref_mut().map(|s| &mut s.layers[i]);
                pending = Some(block.mixer.forward(&normed, layer_state, ex, self.ssd, i));
            }
            if let Some(s) = state {
                s.pos += tokens.size()[1];
            }
            // Rounded to the compute kind, as the logits read it.
            return fused::add_norm(&residual, pending.as_ref(), &self.norm_f, eps, ex.kind).1.to_kind(Kind::Float);
        }
        for (i, block) in self.layers.iter().enumerate() {
            let normed = rms_norm(&residual, &block.norm, eps).to_kind(ex.kind);
            let layer_state = state.as_deref_mut().map(|s| &mut s.layers[i]);
            let out = block.mixer.forward(&normed, layer_state, ex, self.ssd, i);
            residual = residual + out.to_kind(Kind::Float);
        }
        if let Some(s) = state {
            s.pos += tokens.size()[1];
        }
        rms_norm(&residual, &self.norm_f, eps)
    }

    /// Logits over the padded vocabulary in the compute kind: hidden [.., D] -> [.., V].
    pub fn logits(&self, hidden: &Tensor, kind: Kind) -> Tensor {
        let head = self.lm_head.as_ref().unwrap_or(&self.embedding);
        hidden.to_kind(kind).matmul(&head.to_kind(kind).tr())
    }

    /// tokens [B, L] -> logits [B, L, V] (compute kind).
    pub fn forward(&self, tokens: &Tensor, state: Option<&mut State>, ex: &mut Exec) -> Tensor {
        let hidden = self.forward_hidden(tokens, state, ex);
        self.logits(&hidden, ex.kind)
    }

    /// One token per sequence: tokens [B] -> logits [B, V] (compute kind), advancing `state`.
    pub fn step(&self, tokens: &Tensor, state: &mut State, ex: &mut Exec) -> Tensor {
        let eps = self.cfg.norm_epsilon;
        let mut residual = Tensor::embedding(&self.embedding, tokens, -1, false, false); // [B, D]
        for (i, block) in self.layers.iter().enumerate() {
            let normed = rms_norm(&residual, &block.norm, eps).to_kind(ex.kind);
            let out = block.mixer.step(&normed, &mut state.layers[i], ex, self.ssd, i);
            residual = residual + out.to_kind(Kind::Float);
        }
        state.pos += 1;
        self.logits(&rms_norm(&residual, &self.norm_f, eps), ex.kind)
    }

    /// Per-token cross-entropy in nats (fp32) of `targets` given logits: [B, L] -> [B, L].
    pub fn token_losses(logits: &Tensor, targets: &Tensor) -> Tensor {
        let v = *logits.size().last().expect("logits have a vocabulary dim");
        let flat = logits.reshape([-1, v]).log_softmax(-1, Kind::Float);
        flat.g_nll_loss::<Tensor>(&targets.reshape([-1]), None, tch::Reduction::None, -100).view_as(targets)
    }
}
