//! The SSD (state space duality) core of Mamba-2: the chunked algorithm for training and
//! prefill, and its slow, obviously-correct twin, the per-token recurrence.
//!
//! Dimension legend:
//!   B batch, L sequence length, H heads, P head dim, G groups (heads share B/C within a
//!   group), N state size per head (d_state), Q chunk length, C number of chunks (L / Q).
//!
//! Inputs are already discretised: `xdt` = x * dt (the input scaled by the step size) and
//! `la` = dt * A, the log of the per-step decay alpha = exp(dt * A) <= 1. Keeping the SSD
//! agnostic of the discretisation lets mitigations act on dt, alpha and B without touching
//! this file. dt, A, cumulative sums, exponentials and states are fp32; the large matmuls run
//! in the input kind (bf16 or fp32).
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

pub mod fused;

/// Which implementation runs the chunked SSD. `auto` is `fused` on a CUDA device whose kernels
/// compile and load, `tensor` elsewhere (the CPU, or a GPU without libnvrtc). A model carries
/// its backend (`Mamba2LM::ssd`, `set_ssd`); there is no process-wide default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SsdBackend {
    #[default]
    Auto,
    /// Tensor ops under autograd (`ssd_chunked`): the reference.
    Tensor,
    /// One autograd node with a hand-written backward and CUDA kernels (`fused`).
    Fused,
}

impl SsdBackend {
    pub fn name(self) -> &'static str {
        match self {
            SsdBackend::Auto => "auto",
            SsdBackend::Tensor => "tensor",
            SsdBackend::Fused => "fused",
        }
    }

    /// The backend that will run on `device`: `auto` decided; `fused` on a CUDA device whose
    /// kernels do not load is an error naming why.
    pub fn resolve(self, device: Device) -> Result<SsdBackend, String> {
        match (self, device) {
            (SsdBackend::Auto, Device::Cuda(_)) => {
                Ok(if fused::kernels_ready(device).is_ok() { SsdBackend::Fused } else { SsdBackend::Tensor })
            }
            (SsdBackend::Auto, _) => Ok(SsdBackend::Tensor),
            (SsdBackend::Fused, Device::Cuda(_)) => {
                fused::kernels_ready(device).map(|_| SsdBackend::Fused).map_err(|e| format!("ssd: fused: {e}"))
            }
            (b, _) => Ok(b),
        }
    }
}

impl std::str::FromStr for SsdBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(SsdBackend::Auto),
            "tensor" => Ok(SsdBackend::Tensor),
            "fused" => Ok(SsdBackend::Fused),
            other => Err(format!("unknown SSD backend `{other}` (expected auto, tensor or fused)")),
        }
    }
}

/// The chunked SSD through `backend` (`auto` counts as `tensor`): same contract as
/// `ssd_chunked`.
/// The final state comes back when `want_final` (the fused backend skips the chunk states
/// without it where it can: a single chunk from zero).
#[allow(clippy::too_many_arguments)]
pub fn ssd(
    backend: SsdBackend,
    xdt: &Tensor,
    la: &Tensor,
    b: &Tensor,
    c: &Tensor,
    chunk: i64,
    h0: Option<&Tensor>,
    want_final: bool,
) -> (Tensor, Option<Tensor>) {
    match backend {
        SsdBackend::Fused => fused::ssd_fused_with(xdt, la, b, c, chunk, h0, want_final),
        _ => {
            let (y, s) = ssd_chunked(xdt, la, b, c, chunk, h0);
            (y, want_final.then_some(s))
        }
    }
}

/// Exponential with the exponent clamped at 0: decays never exceed 1, and masked (-inf)
/// entries give exactly 0 without inf * 0 = NaN in the forward or backward pass.
fn exp_clamped(t: &Tensor) -> Tensor {
    t.clamp_max(0.0).exp()
}

/// Segment sums by masked cumsum: out[..., i, j] = sum_{k=j+1..i} x[..., k] for i >= j, and
/// -inf above the diagonal. (Never cumsum[i] - cumsum[j]: exp of the upper triangle overflows.)
/// x: [..., T] -> [..., T, T]
pub fn segsum(x: &Tensor) -> Tensor {
    let t = *x.size().last().expect("segsum of a scalar");
    let dev = x.device();
    let ones = Tensor::ones([t, t], (Kind::Bool, dev));
    let strictly_lower = ones.tril(-1);
    let lower = ones.tril(0);
    let mut shape = x.size();
    shape.push(t);
    // xe[..., i, j] = x[..., i]
    let xe = x.unsqueeze(-1).expand(shape.as_slice(), false);
    let xe = xe.masked_fill(&strictly_lower.logical_not(), 0.0);
    xe.cumsum(-2, Kind::Float).masked_fill(&lower.logical_not(), f64::NEG_INFINITY)
}

/// Spreads per-group tensors over the heads of each group: dim `dim` of size G becomes H.
fn groups_to_heads(t: &Tensor, heads_per_group: i64, dim: i64) -> Tensor {
    if heads_per_group == 1 {
        t.shallow_clone()
    } else {
        t.repeat_interleave_self_int(heads_per_group, Some(dim), None)
    }
}

/// Chunked SSD over a whole segment, carrying an optional initial state in and the final state
/// out.
///   xdt: [B, L, H, P]   la: [B, L, H] (fp32)   b, c: [B, L, G, N]   h0: [B, H, P, N] (fp32)
/// Returns y: [B, L, H, P] (fp32, without the D skip) and the final state [B, H, P, N] (fp32).
/// Any L works: the tail is padded with zero input and zero log-decay (no input, no decay),
/// which leaves outputs and the final state exact. A segment shorter than `chunk` is one chunk.
pub fn ssd_chunked(xdt: &Tensor, la: &Tensor, b: &Tensor, c: &Tensor, chunk: i64, h0: Option<&Tensor>) -> (Tensor, Tensor) {
    let (bsz, l, h, p) = xdt.size4().expect("xdt is [B, L, H, P]");
    let (_, _, g, n) = b.size4().expect("b is [B, L, G, N]");
    let kind = xdt.kind();
    let hpg = h / g;
    // Decays never exceed 1: with la <= 0 every segment sum below is <= 0 (or -inf, masked),
    // so the exponentials need no clamp of their own (and autograd keeps no extra copy of the
    // Q x Q blocks for one).
    let la = la.clamp_max(0.0);
    let q = chunk.min(l).max(1);
    let pad = (q - l % q) % q;
    let lp = l + pad;
    let nc = lp / q;
    let (xdt, la, b, c) = if pad > 0 {
        (
            xdt.constant_pad_nd([0, 0, 0, 0, 0, pad]),
            la.constant_pad_nd([0, 0, 0, pad]),
            b.constant_pad_nd([0, 0, 0, 0, 0, pad]),
            c.constant_pad_nd([0, 0, 0, 0, 0, pad]),
        )
    } else {
        (xdt.shallow_clone(), la.shallow_clone(), b.shallow_clone(), c.shallow_clone())
    };
    let x_c = xdt.reshape([bsz, nc, q, h, p]).permute([0, 1, 3, 2, 4]); // [B, C, H, Q, P]
    let la_c = la.reshape([bsz, nc, q, h]).permute([0, 3, 1, 2]); // [B, H, C, Q]
    let b_c = b.reshape([bsz, nc, q, g, n]).permute([0, 1, 3, 2, 4]); // [B, C, G, Q, N]
    let c_c = c.reshape([bsz, nc, q, g, n]).permute([0, 1, 3, 2, 4]); // [B, C, G, Q, N]
    let acs = la_c.cumsum(-1, Kind::Float); // [B, H, C, Q]

    // 1. Diagonal blocks: Y_diag[l] = sum_{s<=l} (C_l . B_s) exp(acs_l - acs_s) X_s.
    // The decays are computed in fp32 and applied in the compute kind (the Q x Q blocks are
    // the bulk of the activation memory).
    // Heads of a group share B and C: the group dim is split as [G, H/G] and B/C broadcast
    // over the second part, so no per-head copy of them (or of C.B) is ever made.
    let decay_in = segsum(&la_c).exp().permute([0, 2, 1, 3, 4]).reshape([bsz, nc, g, hpg, q, q]); // [B, C, G, H/G, Q, Q]
    let cb = c_c.matmul(&b_c.transpose(-1, -2)).unsqueeze(3); // [B, C, G, 1, Q, Q]
    let m = cb * decay_in.to_kind(kind); // [B, C, G, H/G, Q, Q]
    let x_g = x_c.reshape([bsz, nc, g, hpg, q, p]); // [B, C, G, H/G, Q, P]
    let y_diag = m.matmul(&x_g).to_kind(Kind::Float).reshape([bsz, nc, h, q, p]); // [B, C, H, Q, P]

    // 2. Per-chunk states: S_c = sum_s B_s (x) X_s exp(acs_last - acs_s).
    let last = acs.narrow(-1, q - 1, 1); // [B, H, C, 1]
    let decay_states = exp_clamped(&(&last - &acs)).permute([0, 2, 1, 3]); // [B, C, H, Q]
    let xs = (x_c.to_kind(Kind::Float) * decay_states.unsqueeze(-1)).to_kind(kind).reshape([bsz, nc, g, hpg, q, p]);
    let states = xs.transpose(-1, -2).matmul(&b_c.unsqueeze(3)).to_kind(Kind::Float).reshape([bsz, nc, h, p, n]); // [B, C, H, P, N]

    // 3. Between chunks: S_c <- exp(sum of la over chunk c) S_{c-1} + S_c, from h0.
    let init = match h0 {
        Some(s) => s.to_kind(Kind::Float).unsqueeze(1),
        None => Tensor::zeros([bsz, 1, h, p, n], (Kind::Float, xdt.device())),
    }; // [B, 1, H, P, N]
    let states = Tensor::cat(&[init, states], 1); // [B, C+1, H, P, N]
    let chunk_sums = last.squeeze_dim(-1).constant_pad_nd([1, 0]); // [B, H, C+1]
    let decay_chunk = segsum(&chunk_sums).exp(); // [B, H, C+1, C+1]
    let flat = states.permute([0, 2, 1, 3, 4]).reshape([bsz, h, nc + 1, p * n]); // [B, H, C+1, P*N]
    let passed = decay_chunk.matmul(&flat); // [B, H, C+1, P*N]
    let final_state = passed.select(2, nc).reshape([bsz, h, p, n]);
    let prev = passed.narrow(2, 0, nc).reshape([bsz, h, nc, p, n]).permute([0, 2, 1, 3, 4]); // [B, C, H, P, N]

    // 4. State -> output: Y_off[l] = C_l . S_{c-1} exp(acs_l).
    let decay_out = exp_clamped(&acs).permute([0, 2, 1, 3]); // [B, C, H, Q]
    let prev_g = prev.transpose(-1, -2).to_kind(kind).reshape([bsz, nc, g, hpg, n, p]); // [B, C, G, H/G, N, P]
    let y_off = c_c.unsqueeze(3).matmul(&prev_g).to_kind(Kind::Float).reshape([bsz, nc, h, q, p]); // [B, C, H, Q, P]
    let y_off = y_off * decay_out.unsqueeze(-1);

    let y = (y_diag + y_off).permute([0, 1, 3, 2, 4]).reshape([bsz, lp, h, p]); // [B, L', H, P]
    let y = if pad > 0 { y.narrow(1, 0, l) } else { y };
    (y, final_state)
}

/// One step of the recurrence, updating `state` in place:
///   h <- h * exp(la) + xdt (x) B ;  y = h . C
///   xdt: [B, H, P]  la: [B, H]  b, c: [B, G, N]  state: [B, H, P, N] (fp32)
/// Returns y: [B, H, P] (fp32, without the D skip).
pub fn ssd_step(xdt: &Tensor, la: &Tensor, b: &Tensor, c: &Tensor, state: &mut Tensor) -> Tensor {
    let h = xdt.size()[1];
    let g = b.size()[1];
    let b_h = groups_to_heads(&b.to_kind(Kind::Float), h / g, 1); // [B, H, N]
    let c_h = groups_to_heads(&c.to_kind(Kind::Float), h / g, 1); // [B, H, N]
    let alpha = la.exp().unsqueeze(-1).unsqueeze(-1); // [B, H, 1, 1]
    let inject = xdt.to_kind(Kind::Float).unsqueeze(-1) * b_h.unsqueeze(2); // [B, H, P, N]
    *state = &*state * alpha + inject;
    state.matmul(&c_h.unsqueeze(-1)).squeeze_dim(-1) // [B, H, P]
}

/// The recurrence over a whole segment, token by token: the reference the chunked form is
/// tested against. Same shapes and results as `ssd_chunked`.
pub fn ssd_recurrent(xdt: &Tensor, la: &Tensor, b: &Tensor, c: &Tensor, h0: Option<&Tensor>) -> (Tensor, Tensor) {
    let (bsz, l, h, p) = xdt.size4().expect("xdt is [B, L, H, P]");
    let n = b.size()[3];
    let mut state = match h0 {
        Some(s) => s.to_kind(Kind::Float),
        None => Tensor::zeros([bsz, h, p, n], (Kind::Float, xdt.device())),
    };
    let ys: Vec<Tensor> =
        (0..l).map(|t| ssd_step(&xdt.select(1, t), &la.select(1, t), &b.select(1, t), &c.select(1, t), &mut state)).collect();
    (Tensor::stack(&ys, 1), state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn inputs(bsz: i64, l: i64, h: i64, p: i64, g: i64, n: i64) -> (Tensor, Tensor, Tensor, Tensor) {
        let o = (Kind::Float, Device::Cpu);
        let xdt = Tensor::randn([bsz, l, h, p], o) * 0.5;
        let la = -(Tensor::rand([bsz, l, h], o) * 0.3);
        let b = Tensor::randn([bsz, l, g, n], o) * 0.5;
        let c = Tensor::randn([bsz, l, g, n], o) * 0.5;
        (xdt, la, b, c)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn chunked_equals_recurrent() {
        tch::manual_seed(0);
        for &(l, q, g, with_h0) in &[(37, 8, 1, false), (37, 16, 2, true), (64, 64, 1, true), (100, 32, 2, false), (5, 64, 1, true)] {
            let (xdt, la, b, c) = inputs(2, l, 4, 8, g, 6);
            let h0 = with_h0.then(|| Tensor::randn([2, 4, 8, 6], (Kind::Float, Device::Cpu)));
            let (y1, s1) = ssd_chunked(&xdt, &la, &b, &c, q, h0.as_ref());
            let (y2, s2) = ssd_recurrent(&xdt, &la, &b, &c, h0.as_ref());
            assert!(max_diff(&y1, &y2) < 1e-4, "y differs for l={l} q={q} g={g}: {}", max_diff(&y1, &y2));
            assert!(max_diff(&s1, &s2) < 1e-4, "state differs for l={l} q={q} g={g}");
        }
    }

    #[test]
    fn segsum_is_finite_under_strong_decay() {
        let x = Tensor::full([8], -500.0, (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let e = exp_clamped(&segsum(&x));
        e.sum(Kind::Float).backward();
        assert!(crate::all_finite(&x.grad()));
        assert!(crate::all_finite(&e));
    }
}
