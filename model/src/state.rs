//! The explicit recurrent state of Mamba-2: per layer, the last d_conv raw conv inputs and the
//! SSM state h. Carrying a `State` from one call to the next streams an arbitrarily long input.
use tch::{Device, Kind, Tensor};

use crate::config::MambaConfig;

/// Inputs of the last r tokens, kept by the sliding-window mitigation (state difference).
#[derive(Debug)]
pub struct WindowBuf {
    pub xdt: Tensor, // [B, r, H, P] fp32
    pub b: Tensor,   // [B, r, G, N] fp32
    pub la: Tensor,  // [B, r, H] fp32
}

#[derive(Debug)]
pub struct LayerState {
    /// Last d_conv raw xBC inputs, newest last: [B, conv_dim, d_conv].
    pub conv: Tensor,
    /// SSM state: [B, H, P, N], fp32.
    pub ssm: Tensor,
    /// Only with the sliding-window mitigation.
    pub window: Option<WindowBuf>,
}

#[derive(Debug)]
pub struct State {
    pub layers: Vec<LayerState>,
    /// Tokens consumed so far.
    pub pos: i64,
}

impl State {
    /// The zero state (what a fresh sequence starts from).
    pub fn zeros(cfg: &MambaConfig, batch: i64, device: Device, kind: Kind) -> State {
        let layers = (0..cfg.n_layer)
            .map(|_| LayerState {
                conv: Tensor::zeros([batch, cfg.conv_dim(), cfg.d_conv()], (kind, device)),
                ssm: Tensor::zeros([batch, cfg.nheads(), cfg.headdim(), cfg.d_state()], (Kind::Float, device)),
                window: None,
            })
            .collect();
        State { layers, pos: 0 }
    }

    /// A copy cut off from autograd (truncated BPTT carries states this way).
    pub fn detach(&self) -> State {
        State {
            layers: self
                .layers
                .iter()
                .map(|l| LayerState {
                    conv: l.conv.detach(),
                    ssm: l.ssm.detach(),
                    window: l.window.as_ref().map(|w| WindowBuf { xdt: w.xdt.detach(), b: w.b.detach(), la: w.la.detach() }),
                })
                .collect(),
            pos: self.pos,
        }
    }

    pub fn batch(&self) -> i64 {
        self.layers.first().map(|l| l.ssm.size()[0]).unwrap_or(0)
    }
}
