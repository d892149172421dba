//! Hooks into the mixer for the study's analyses and mitigations, without copies of the
//! forward code: `Knobs` change the SSM's dynamics (decay, B, dt, sliding window), a `Probe`
//! observes each mixer's internals chunk by chunk.
use tch::Tensor;

/// Inference-time interventions on every mixer's SSM.
#[derive(Debug, Clone, PartialEq)]
pub struct Knobs {
    /// Multiplies the per-step decay alpha_t = exp(dt * A) (RRI: 0.9999).
    pub decay_mult: f64,
    /// Multiplies B_t (RRI: 0.75).
    pub b_mult: f64,
    /// Multiplies dt after softplus (delta scaling: 0.5).
    pub dt_scale: f64,
    /// Sliding window of r tokens by state difference: h_t - alpha_{t-r+1:t} h_{t-r}.
    pub window: Option<i64>,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs { decay_mult: 1.0, b_mult: 1.0, dt_scale: 1.0, window: None }
    }
}

impl Knobs {
    pub fn is_identity(&self) -> bool {
        *self == Knobs::default()
    }
}

/// What one mixer saw in one forward call (after knobs), fp32, detached.
pub struct MixerObservation<'a> {
    /// dt after softplus and scaling: [B, L, H].
    pub dt: &'a Tensor,
    /// log decay dt * A (+ ln decay_mult): [B, L, H].
    pub log_decay: &'a Tensor,
    /// SSM input x: [B, L, H, P].
    pub x: &'a Tensor,
    /// B and C: [B, L, G, N].
    pub b: &'a Tensor,
    pub c: &'a Tensor,
    /// SSM state after the call: [B, H, P, N].
    pub state: &'a Tensor,
}

pub trait Probe {
    fn observe(&mut self, layer: usize, obs: &MixerObservation<'_>);
}
