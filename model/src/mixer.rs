//! The Mamba-2 mixer (`backbone.layers.{i}.mixer`): in_proj -> causal depthwise conv + SiLU ->
//! SSD with D skip -> gated grouped RMSNorm -> out_proj. Three entry points share every
//! weight and every piece of math: `forward` over a segment (training, prefill, streaming
//! when given a state) and `step` for one token.
//!
//! Dimension legend: B batch, L length, D d_model, Di d_inner, H heads, P head dim,
//! G groups, N d_state, K d_conv, Cv conv_dim = Di + 2GN.
use tch::{Device, Kind, Tensor};

use crate::config::MambaConfig;
use crate::params::{init, Params};
use crate::probe::{Knobs, MixerObservation, Probe};
use crate::ssd::{self, SsdBackend};
use crate::state::{LayerState, WindowBuf};

#[derive(Debug)]
pub struct Mixer {
    pub in_proj: Tensor,  // [2Di + 2GN + H, D]
    pub conv_w: Tensor,   // [Cv, 1, K]
    pub conv_b: Tensor,   // [Cv]
    pub dt_bias: Tensor,  // [H]
    pub a_log: Tensor,    // [H]
    pub d: Tensor,        // [H]
    pub norm_w: Tensor,   // [Di]
    pub out_proj: Tensor, // [D, Di]
    d_inner: i64,
    heads: i64,
    headdim: i64,
    groups: i64,
    d_state: i64,
    d_conv: i64,
    chunk: i64,
    eps: f64,
}

/// The per-call execution settings shared by all layers.
pub struct Exec<'a> {
    /// Compute kind of matmuls and the conv (bf16 or fp32); parameters stay fp32.
    pub kind: Kind,
    pub knobs: Knobs,
    pub probe: Option<&'a mut dyn Probe>,
}

impl<'a> Exec<'a> {
    pub fn new(kind: Kind) -> Exec<'a> {
        Exec::with_knobs(kind, Knobs::default())
    }

    pub fn with_knobs(kind: Kind, knobs: Knobs) -> Exec<'a> {
        Exec { kind, knobs, probe: None }
    }
}

impl Mixer {
    pub fn new(cfg: &MambaConfig, prefix: &str, params: &mut Params, device: Device) -> Mixer {
        let s = &cfg.ssm_cfg;
        let (d, di, h) = (cfg.d_model, cfg.d_inner(), cfg.nheads());
        let mut add = |name: &str, shape: &[i64], f: &dyn Fn(&[i64]) -> Tensor| params.add(format!("{prefix}.{name}"), shape, f, device);
        let in_proj = add("in_proj.weight", &[cfg.d_in_proj(), d], &|sh| init::torch_default(sh, d));
        // Conv1d default: fan_in = in_channels / groups * kernel = K.
        let k = s.d_conv;
        let conv_w = add("conv1d.weight", &[cfg.conv_dim(), 1, k], &|sh| init::torch_default(sh, k));
        let conv_b = add("conv1d.bias", &[cfg.conv_dim()], &|sh| init::torch_default(sh, k));
        let dt_bias = add("dt_bias", &[h], &|_| init::dt_bias(h, s.dt_min, s.dt_max, s.dt_init_floor));
        let a_log = add("A_log", &[h], &|_| init::a_log(h, s.a_init_range.0, s.a_init_range.1));
        let d_skip = add("D", &[h], &init::ones);
        let norm_w = add("norm.weight", &[di], &init::ones);
        // out_proj: default init, then / sqrt(n_layer) (mamba_ssm's prenorm residual rescale).
        let n_layer = cfg.n_layer as f64;
        let out_proj = add("out_proj.weight", &[d, di], &|sh| init::torch_default(sh, di) / n_layer.sqrt());
        Mixer {
            in_proj,
            conv_w,
            conv_b,
            dt_bias,
            a_log,
            d: d_skip,
            norm_w,
            out_proj,
            d_inner: di,
            heads: h,
            headdim: cfg.headdim(),
            groups: cfg.ngroups(),
            d_state: cfg.d_state(),
            d_conv: s.d_conv,
            chunk: s.chunk_size,
            eps: cfg.norm_epsilon,
        }
    }

    fn gn(&self) -> i64 {
        self.groups * self.d_state
    }

    /// dt = softplus(dt_raw + dt_bias) * dt_scale and la = dt * A (+ ln decay_mult), fp32.
    fn discretise(&self, dt_raw: &Tensor, knobs: &Knobs) -> (Tensor, Tensor) {
        let mut dt = (dt_raw.to_kind(Kind::Float) + &self.dt_bias).softplus();
        if knobs.dt_scale != 1.0 {
            dt = dt * knobs.dt_scale;
        }
        let a = -self.a_log.exp(); // [H]
        let mut la = &dt * a;
        if knobs.decay_mult != 1.0 {
            la = la + knobs.decay_mult.ln();
        }
        (dt, la)
    }

    /// Gate, grouped RMSNorm (group size Di / G, fp32), out_proj. y, z: [.., Di].
    fn gate_norm_out(&self, y: &Tensor, z: &Tensor, kind: Kind) -> Tensor {
        let shape = y.size();
        let gated = y * z.to_kind(Kind::Float).silu();
        // libtorch's rms_norm: one fused kernel each way on CUDA.
        let normed = if self.groups == 1 {
            gated.rms_norm([self.d_inner], Some(&self.norm_w), self.eps)
        } else {
            let mut gshape = shape[..shape.len() - 1].to_vec();
            gshape.extend([self.groups, self.d_inner / self.groups]);
            gated.reshape(gshape.as_slice()).rms_norm([self.d_inner / self.groups], None::<Tensor>, self.eps).reshape(shape.as_slice())
                * &self.norm_w
        };
        normed.to_kind(kind).matmul(&self.out_proj.to_kind(kind).tr())
    }

    /// A segment: u [B, L, D] -> [B, L, D] (compute kind). With a state, starts from it and
    /// leaves the state at the end of the segment; without, starts from zeros. `backend` runs
    /// the SSD (and, when fused on CUDA, the conv, x * dt and the gated norm).
    pub fn forward(&self, u: &Tensor, mut state: Option<&mut LayerState>, ex: &mut Exec, backend: SsdBackend, layer: usize) -> Tensor {
        let (bsz, l, _) = u.size3().expect("u is [B, L, D]");
        let kind = ex.kind;
        let (di, gn, h, p, g, n, k) = (self.d_inner, self.gn(), self.heads, self.headdim, self.groups, self.d_state, self.d_conv);
        let zxbcdt = u.to_kind(kind).matmul(&self.in_proj.to_kind(kind).tr()); // [B, L, 2Di+2GN+H]
                                                                               // The fused backend's CUDA kernels for the conv and the gated norm (tensor ops elsewhere).
        let fused = backend == SsdBackend::Fused && u.device().is_cuda();
        // One split rather than three narrows: its backward is one concatenation, not three
        // zero-filled full-size gradients; on the fused path none (the readers' backwards write
        // in place).
        let widths = [di, di + 2 * gn, h];
        let parts = if fused && ssd::fused::split_in_place() {
            ssd::fused::split_columns(&zxbcdt, &widths)
        } else {
            zxbcdt.split_with_sizes(widths, -1)
        };
        let z = &parts[0];
        let xbc = parts[1].transpose(1, 2); // [B, Cv, L]
        let dt_raw = &parts[2]; // [B, L, H]
        let (w, bias) = (self.conv_w.to_kind(kind), self.conv_b.to_kind(kind));
        let cv = di + 2 * gn;

        // Causal depthwise conv over [previous K-1 inputs | segment]; the new conv state is the
        // last K raw inputs.
        let pre = state.as_ref().map(|st| st.conv.narrow(-1, 1, k - 1).to_kind(kind)); // [B, Cv, K-1]
        let new_conv = pre.as_ref().map(|pre| {
            let tail = xbc.narrow(-1, (l - k).max(0), l.min(k));
            let full = Tensor::cat(&[pre, &tail], -1);
            let len = full.size()[2];
            full.narrow(-1, len - k, k) // [B, Cv, K]
        });
        let grad = parts[1].requires_grad() || w.requires_grad();
        let xbc = if fused && ssd::fused::conv_fits(k) && (pre.is_none() || !grad) {
            // On the [B, L, Cv] layout of in_proj's output, read in place; x, B and C come out as
            // three tensors (their gradients are read where they lie, not concatenated).
            ssd::fused::conv_silu_parts(&parts[1], &w, &bias, pre.as_ref(), &[di, gn, gn])
        } else {
            let conv = match &pre {
                Some(pre) => Tensor::cat(&[pre, &xbc], -1).conv1d(&w, Some(&bias), [1], [0], [1], cv), // [B, Cv, L]
                None => xbc.conv1d(&w, Some(&bias), [1], [k - 1], [1], cv).narrow(-1, 0, l),
            };
            conv.silu().transpose(1, 2).split_with_sizes([di, gn, gn], -1) // [B, L, Di | GN | GN]
        };
        let x = xbc[0].reshape([bsz, l, h, p]);
        let mut b = xbc[1].reshape([bsz, l, g, n]);
        let c = xbc[2].reshape([bsz, l, g, n]);
        if ex.knobs.b_mult != 1.0 {
            b = b * ex.knobs.b_mult;
        }
        let (dt, la) = self.discretise(dt_raw, &ex.knobs);
        // fp32 x for the tensor ops (xdt, D skip, probes); the fused kernels read x as it is.
        let xf_kept = (!fused).then(|| x.to_kind(Kind::Float));
        let xf = || xf_kept.as_ref().map_or_else(|| x.to_kind(Kind::Float), Tensor::shallow_clone);
        let xdt = if fused { ssd::fused::scale_heads(&xbc[0], &dt) } else { (xf() * dt.unsqueeze(-1)).to_kind(kind) }; // [B, L, H, P]

        let h0 = state.as_ref().map(|st| st.ssm.shallow_clone());
        // The final state is read by a carried state, the window correction and the probes; a
        // training step without them never asks for it.
        let want_final = state.is_some() || ex.knobs.window.is_some() || ex.probe.is_some();
        let (mut y, mut h_last) = ssd::ssd(backend, &xdt, &la, &b, &c, self.chunk, h0.as_ref(), want_final);
        if let Some(r) = ex.knobs.window {
            let window = state.as_ref().and_then(|st| st.window.as_ref());
            let (y2, h2, buf) = self.window_correction(r, &xdt, &la, &b, &c, window, backend);
            y = y + y2;
            h_last = h_last.map(|h| h + h2);
            if let Some(st) = state.as_deref_mut() {
                st.window = Some(buf);
            }
        }
        if let Some(probe) = ex.probe.as_deref_mut() {
            let (dt, la, xf, bf, cf) =
                (dt.detach(), la.detach(), xf().detach(), b.to_kind(Kind::Float).detach(), c.to_kind(Kind::Float).detach());
            let hs = h_last.as_ref().expect("final state asked for").detach();
            probe.observe(layer, &MixerObservation { dt: &dt, log_decay: &la, x: &xf, b: &bf, c: &cf, state: &hs });
        }
        if let Some(st) = state {
            st.ssm = h_last.expect("final state asked for");
            st.conv = new_conv.expect("conv state computed with a state");
        }
        if fused && ssd::fused::gated_norm_fits(di / g) && y.kind() == Kind::Float {
            // D skip, gate, norm: one kernel each way, reading x and z in place.
            let normed = ssd::fused::gated_norm(&y.reshape([bsz, l, di]), &xbc[0], &self.d, z, &self.norm_w, g, p, self.eps);
            return normed.matmul(&self.out_proj.to_kind(kind).tr());
        }
        let y = y + xf() * self.d.reshape([h, 1]); // D skip: [B, L, H, P]
        self.gate_norm_out(&y.reshape([bsz, l, di]), z, kind)
    }

    /// Sliding window by state difference: the tokens that left the window act as negative
    /// inputs -alpha_{t-r+1:t} X_{t-r} with B_{t-r}, through the same SSD (same decays, same C).
    /// The window sum of log-decays is recomputed per call from the kept inputs (exp(sum) keeps
    /// the product stable). Returns the output correction, the state correction and the new
    /// buffer of the last r inputs.
    #[allow(clippy::too_many_arguments)]
    fn window_correction(
        &self,
        r: i64,
        xdt: &Tensor,
        la: &Tensor,
        b: &Tensor,
        c: &Tensor,
        prev: Option<&WindowBuf>,
        backend: SsdBackend,
    ) -> (Tensor, Tensor, WindowBuf) {
        let (bsz, l, h, p) = xdt.size4().expect("xdt is [B, L, H, P]");
        let (g, n) = (self.groups, self.d_state);
        let o = (Kind::Float, xdt.device());
        let prev = match prev {
            Some(w) => WindowBuf { xdt: w.xdt.shallow_clone(), b: w.b.shallow_clone(), la: w.la.shallow_clone() },
            None => {
                WindowBuf { xdt: Tensor::zeros([bsz, r, h, p], o), b: Tensor::zeros([bsz, r, g, n], o), la: Tensor::zeros([bsz, r, h], o) }
            }
        };
        let all_x = Tensor::cat(&[prev.xdt, xdt.to_kind(Kind::Float)], 1); // [B, r+L, H, P]
        let all_b = Tensor::cat(&[prev.b, b.to_kind(Kind::Float)], 1); // [B, r+L, G, N]
        let all_la = Tensor::cat(&[prev.la, la.shallow_clone()], 1); // [B, r+L, H]
        let cs = all_la.cumsum(1, Kind::Float);
        // Window sum over (t-r, t]: cs[r+i] - cs[i].
        let w = (cs.narrow(1, r, l) - cs.narrow(1, 0, l)).clamp_max(0.0).exp(); // [B, L, H]
        let leaving_x = (all_x.narrow(1, 0, l) * w.unsqueeze(-1)).neg().to_kind(xdt.kind());
        let leaving_b = all_b.narrow(1, 0, l).to_kind(b.kind());
        let (y2, h2) = ssd::ssd(backend, &leaving_x, la, &leaving_b, c, self.chunk, None, true);
        let h2 = h2.expect("final state asked for");
        let buf = WindowBuf { xdt: all_x.narrow(1, l, r), b: all_b.narrow(1, l, r), la: all_la.narrow(1, l, r) };
        (y2, h2, buf)
    }

    /// One token: u [B, D] -> [B, D], updating the state (conv roll, SSM recurrence).
    /// `backend` as in `forward` (only used where the token goes the segment path).
    pub fn step(&self, u: &Tensor, st: &mut LayerState, ex: &mut Exec, backend: SsdBackend, layer: usize) -> Tensor {
        if ex.knobs.window.is_some() || ex.probe.is_some() {
            // The window buffer and the probes live on the segment path; a 1-token segment.
            return self.forward(&u.unsqueeze(1), Some(st), ex, backend, layer).squeeze_dim(1);
        }
        let kind = ex.kind;
        let (di, gn, h, p, g, n) = (self.d_inner, self.gn(), self.heads, self.headdim, self.groups, self.d_state);
        let bsz = u.size()[0];
        let zxbcdt = u.to_kind(kind).matmul(&self.in_proj.to_kind(kind).tr()); // [B, 2Di+2GN+H]
        let z = zxbcdt.narrow(-1, 0, di);
        let xbc_raw = zxbcdt.narrow(-1, di, di + 2 * gn); // [B, Cv]
        let dt_raw = zxbcdt.narrow(-1, 2 * di + 2 * gn, h);
        let k = self.d_conv;
        st.conv = Tensor::cat(&[st.conv.narrow(-1, 1, k - 1).to_kind(kind), xbc_raw.unsqueeze(-1)], -1); // [B, Cv, K]
        let xbc =
            ((&st.conv * self.conv_w.to_kind(kind).squeeze_dim(1)).sum_dim_intlist(-1, false, kind) + self.conv_b.to_kind(kind)).silu(); // [B, Cv]
        let x = xbc.narrow(-1, 0, di).reshape([bsz, h, p]);
        let mut b = xbc.narrow(-1, di, gn).reshape([bsz, g, n]);
        let c = xbc.narrow(-1, di + gn, gn).reshape([bsz, g, n]);
        if ex.knobs.b_mult != 1.0 {
            b = b * ex.knobs.b_mult;
        }
        let (dt, la) = self.discretise(&dt_raw, &ex.knobs); // [B, H]
        let xdt = x.to_kind(Kind::Float) * dt.unsqueeze(-1); // [B, H, P]
        let y = ssd::ssd_step(&xdt, &la, &b, &c, &mut st.ssm);
        let y = y + x.to_kind(Kind::Float) * self.d.reshape([h, 1]);
        self.gate_norm_out(&y.reshape([bsz, di]), &z, kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelSpec;

    /// The windowed output by brute force: y_t = sum over s in (t-r, t] of
    /// (C_t . B_s) exp(sum_{k=s+1..t} la_k) X_s.
    fn brute_force(xdt: &Tensor, la: &Tensor, b: &Tensor, c: &Tensor, r: i64) -> Tensor {
        let (bsz, l, h, p) = xdt.size4().unwrap();
        let hpg = h / b.size()[2];
        let out = Tensor::zeros([bsz, l, h, p], (Kind::Float, Device::Cpu));
        for t in 0..l {
            for s in (t - r + 1).max(0)..=t {
                let decay = if s < t {
                    la.narrow(1, s + 1, t - s).sum_dim_intlist([1i64].as_slice(), false, Kind::Float).exp()
                } else {
                    la.select(1, t).ones_like()
                }; // [B, H]
                let cb = (c.select(1, t) * b.select(1, s)).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float); // [B, G]
                let cb = cb.repeat_interleave_self_int(hpg, Some(1), None); // [B, H]
                let term = xdt.select(1, s) * (cb * decay).unsqueeze(-1); // [B, H, P]
                let mut slot = out.select(1, t);
                let _ = slot.g_add_(&term);
            }
        }
        out
    }

    #[test]
    fn window_correction_equals_the_banded_sum() {
        tch::manual_seed(1);
        let cfg = ModelSpec {
            d_model: Some(16),
            n_layer: Some(1),
            d_state: Some(4),
            headdim: Some(8),
            ngroups: Some(2),
            chunk_size: Some(8),
            vocab_size: Some(16),
            ..Default::default()
        }
        .resolve(None)
        .unwrap();
        let mixer = Mixer::new(&cfg, "m", &mut Params::new(false), Device::Cpu);
        let (bsz, l, h, p, g, n) = (2, 23, cfg.nheads(), cfg.headdim(), 2, 4);
        let o = (Kind::Float, Device::Cpu);
        let xdt = Tensor::randn([bsz, l, h, p], o);
        let la = -Tensor::rand([bsz, l, h], o) * 0.2;
        let b = Tensor::randn([bsz, l, g, n], o);
        let c = Tensor::randn([bsz, l, g, n], o);
        for r in [1, 5, 8, 30] {
            let (y1, _) = ssd::ssd_chunked(&xdt, &la, &b, &c, 8, None);
            let (y2, _, _) = mixer.window_correction(r, &xdt, &la, &b, &c, None, SsdBackend::Tensor);
            let want = brute_force(&xdt, &la, &b, &c, r);
            let diff = (y1 + y2 - want).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "r={r}: {diff}");
        }
    }
}
