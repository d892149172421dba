//! The fused SSD: the chunked algorithm as ONE autograd node with a hand-written backward.
//!
//! The tensor-op SSD (`ssd_chunked`) lets autograd keep every intermediate of the graph: the
//! Q x Q segment sums, their exponentials and the masked products, in fp32, per head and chunk,
//! which is most of a step's activation memory and memory traffic. Here the forward runs
//! outside autograd and keeps only the inputs; the backward recomputes the chunk products and
//! applies the chain rule by hand. On CUDA the Q x Q decay blocks (forward: the masked
//! C.B * exp(cumsum_l - cumsum_s); backward: their gradient and the d(cumsum) terms), the
//! elementwise stages around the chunk matmuls and the state passing between chunks are CUDA
//! kernels (`csrc/kernels/*.cu`, embedded at build time, compiled at first use with NVRTC and
//! launched on libtorch's current stream by `csrc/ssd.cpp`); elsewhere each has a tensor-op
//! twin, which is how the CPU tests check every formula of the backward against autograd.
//!
//! The mixer's other memory-bound stages on CUDA live here too, each one autograd node over the
//! same kernels module: the causal conv + SiLU (`conv_silu`), xdt = x * dt (`scale_heads`) and
//! the D skip + gate + grouped RMSNorm (`gated_norm`).
//!
//! Shapes as in `ssd_chunked`; chunked layouts are [B, C, H, Q, ...] with the heads of a group
//! contiguous (h = g * H/G + j), so a group's B and C broadcast over its heads without copies.
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, Once, OnceLock};

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

/// The kernels of csrc/kernels/, as build.rs read them from their `extern "C" __global__`
/// declarations: `KERNELS`, the list the C++ side loads too.
mod kernel_list {
    include!(concat!(env!("OUT_DIR"), "/ssd_kernels.rs"));
}
pub use kernel_list::KERNELS;

type Callback = extern "C" fn(*const *mut C_tensor, i64, i64, *mut *mut C_tensor) -> c_int;

extern "C" {
    fn stuffed_ssd_last_error() -> *const c_char;
    fn stuffed_ssd_set_error(msg: *const c_char);
    fn stuffed_ssd_register(fwd: Callback, bwd: Callback);
    #[allow(clippy::too_many_arguments)]
    fn stuffed_ssd_apply(
        xdt: *mut C_tensor,
        la: *mut C_tensor,
        b: *mut C_tensor,
        c: *mut C_tensor,
        h0: *mut C_tensor,
        chunk: i64,
        want_final: i64,
        y: *mut *mut C_tensor,
        final_state: *mut *mut C_tensor,
    ) -> c_int;
    fn stuffed_ssd_kernels_ready(dev: c_int) -> c_int;
    fn stuffed_ssd_ptx(major: c_int, minor: c_int, ptx: *mut *const c_char) -> c_int;
    fn stuffed_ssd_decay_fwd(cb: *mut C_tensor, acs: *mut C_tensor, m: *mut C_tensor) -> c_int;
    fn stuffed_ssd_decay_bwd(dm: *mut C_tensor, cb: *mut C_tensor, acs: *mut C_tensor, dcb: *mut C_tensor, dacs: *mut C_tensor) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn stuffed_gated_norm(
        y: *mut C_tensor,
        x: *mut C_tensor,
        d: *mut C_tensor,
        z: *mut C_tensor,
        w: *mut C_tensor,
        groups: i64,
        headdim: i64,
        eps: f64,
        out: *mut *mut C_tensor,
    ) -> c_int;
    fn stuffed_ssd_rows(stem: *const c_char, ts: *const *mut C_tensor, n: c_int, kind_of: c_int, dims: *const c_int) -> c_int;
    fn stuffed_ssd_pass_fwd(
        states: *mut C_tensor,
        last: *mut C_tensor,
        h0: *mut C_tensor,
        prev: *mut C_tensor,
        fin: *mut C_tensor,
    ) -> c_int;
    fn stuffed_ssd_pass_bwd(
        dprev: *mut C_tensor,
        dfin: *mut C_tensor,
        prev: *mut C_tensor,
        last: *mut C_tensor,
        dstates: *mut C_tensor,
        dh0: *mut C_tensor,
        dlpart: *mut *mut C_tensor,
    ) -> c_int;
    fn stuffed_cross_entropy(logits: *mut C_tensor, targets: *mut C_tensor, ignore: i64, out: *mut *mut C_tensor) -> c_int;
    fn stuffed_scale_heads(x: *mut C_tensor, dt: *mut C_tensor, out: *mut *mut C_tensor) -> c_int;
    fn stuffed_conv_silu(
        x: *mut C_tensor,
        w: *mut C_tensor,
        bias: *mut C_tensor,
        pre: *mut C_tensor,
        widths: *const i64,
        nparts: c_int,
        outs: *mut *mut C_tensor,
    ) -> c_int;
    fn stuffed_split_columns(x: *mut C_tensor, widths: *const i64, nparts: c_int, outs: *mut *mut C_tensor) -> c_int;
    fn stuffed_add_norm(
        r: *mut C_tensor,
        delta: *mut C_tensor,
        w: *mut C_tensor,
        eps: f64,
        bf16: i64,
        rout: *mut *mut C_tensor,
        out: *mut *mut C_tensor,
    ) -> c_int;
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(stuffed_ssd_last_error()).to_string_lossy().into_owned() }
}

fn ptr(t: &Tensor) -> *mut C_tensor {
    t.as_ptr() as *mut C_tensor
}

/// Whether the CUDA kernels compile and load on `device` (cached per device); the error says
/// why not (no libnvrtc, compilation log, ...).
pub fn kernels_ready(device: Device) -> Result<(), String> {
    let Device::Cuda(index) = device else {
        return Err(format!("the fused SSD kernels run on CUDA devices, not {device:?}"));
    };
    static READY: OnceLock<Mutex<HashMap<usize, Result<(), String>>>> = OnceLock::new();
    let mut ready = READY.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    ready
        .entry(index)
        .or_insert_with(|| match unsafe { stuffed_ssd_kernels_ready(index as c_int) } {
            0 => Ok(()),
            _ => Err(last_error()),
        })
        .clone()
}

/// The PTX of every kernel for compute capability `major.minor`, compiled with NVRTC (no GPU
/// needed); the error says why not (no libnvrtc, the compilation log).
pub fn kernels_ptx(major: i32, minor: i32) -> Result<String, String> {
    let mut text = std::ptr::null();
    match unsafe { stuffed_ssd_ptx(major, minor, &mut text) } {
        0 => Ok(unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()),
        _ => Err(last_error()),
    }
}

/// The fused SSD, same contract as `ssd_chunked`: y [B, L, H, P] (fp32) and the final state
/// [B, H, P, N] (fp32). Under autograd it is one graph node saving only its inputs.
pub fn ssd_fused(xdt: &Tensor, la: &Tensor, b: &Tensor, c: &Tensor, chunk: i64, h0: Option<&Tensor>) -> (Tensor, Tensor) {
    let (y, s) = ssd_fused_with(xdt, la, b, c, chunk, h0, true);
    (y, s.expect("the final state was asked for"))
}

/// `ssd_fused`, with the final state only when `want_final`: without it, a single chunk from
/// zero (a training step on short sequences) computes no chunk state at all.
pub fn ssd_fused_with(
    xdt: &Tensor,
    la: &Tensor,
    b: &Tensor,
    c: &Tensor,
    chunk: i64,
    h0: Option<&Tensor>,
    want_final: bool,
) -> (Tensor, Option<Tensor>) {
    let needs_grad = [xdt, la, b, c].iter().any(|t| t.requires_grad()) || h0.is_some_and(|t| t.requires_grad());
    if !needs_grad {
        let (y, s) = forward(xdt, la, b, c, h0, chunk, want_final);
        return (y, want_final.then_some(s));
    }
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| unsafe { stuffed_ssd_register(forward_callback, backward_callback) });
    let (mut y, mut s) = (std::ptr::null_mut(), std::ptr::null_mut());
    let h0p = h0.map_or(std::ptr::null_mut(), ptr);
    let rc = unsafe { stuffed_ssd_apply(ptr(xdt), ptr(la), ptr(b), ptr(c), h0p, chunk, want_final as i64, &mut y, &mut s) };
    if rc != 0 {
        panic!("{}", last_error());
    }
    let (y, s) = unsafe { (Tensor::from_ptr(y), Tensor::from_ptr(s)) };
    (y, want_final.then_some(s))
}

/// Runs a callback body, turning a panic (tch reports libtorch errors, OOM included, as
/// panics) into an error code and message for the C++ side, which raises it in libtorch.
fn guarded(f: impl FnOnce()) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => 0,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("panic in the fused SSD");
            let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
            unsafe { stuffed_ssd_set_error(msg.as_ptr()) };
            1
        }
    }
}

/// Borrowed input `i` (None for a null pointer) as a new tch handle on the same tensor.
unsafe fn arg(inputs: *const *mut C_tensor, i: usize) -> Option<Tensor> {
    let p = *inputs.add(i);
    (!p.is_null()).then(|| Tensor::clone_from_ptr(p))
}

/// Hands `t` to C++ (which takes ownership) as output `i`.
unsafe fn give(outputs: *mut *mut C_tensor, i: usize, t: Option<Tensor>) {
    *outputs.add(i) = match t {
        Some(mut t) => {
            let p = t.as_mut_ptr();
            std::mem::forget(t);
            p
        }
        None => std::ptr::null_mut(),
    };
}

extern "C" fn forward_callback(inputs: *const *mut C_tensor, chunk: i64, want_final: i64, outputs: *mut *mut C_tensor) -> c_int {
    guarded(|| unsafe {
        let [xdt, la, b, c] = [0, 1, 2, 3].map(|i| arg(inputs, i).expect("fused SSD input missing"));
        let h0 = arg(inputs, 4);
        let (y, s) = forward(&xdt, &la, &b, &c, h0.as_ref(), chunk, want_final != 0);
        give(outputs, 0, Some(y));
        give(outputs, 1, Some(s));
    })
}

extern "C" fn backward_callback(inputs: *const *mut C_tensor, chunk: i64, _want_final: i64, outputs: *mut *mut C_tensor) -> c_int {
    guarded(|| unsafe {
        let [xdt, la, b, c] = [0, 1, 2, 3].map(|i| arg(inputs, i).expect("fused SSD input missing"));
        let (h0, dy, dfinal) = (arg(inputs, 4), arg(inputs, 5), arg(inputs, 6));
        let g = backward(&xdt, &la, &b, &c, h0.as_ref(), dy.as_ref(), dfinal.as_ref(), chunk);
        for (i, t) in [Some(g.dxdt), Some(g.dla), Some(g.db), Some(g.dc), g.dh0].into_iter().enumerate() {
            give(outputs, i, t);
        }
    })
}

/// Sizes of one call.
#[derive(Clone, Copy)]
struct Dims {
    bsz: i64,
    l: i64,
    h: i64,
    p: i64,
    g: i64,
    n: i64,
    /// Heads per group.
    hpg: i64,
    q: i64,
    /// Chunks.
    nc: i64,
    /// Zero tail padding up to a multiple of q.
    pad: i64,
    kind: Kind,
    device: Device,
}

impl Dims {
    fn new(xdt: &Tensor, b: &Tensor, chunk: i64) -> Dims {
        let (bsz, l, h, p) = xdt.size4().expect("xdt is [B, L, H, P]");
        let (_, _, g, n) = b.size4().expect("b is [B, L, G, N]");
        let q = chunk.min(l).max(1);
        let pad = (q - l % q) % q;
        Dims { bsz, l, h, p, g, n, hpg: h / g, q, nc: (l + pad) / q, pad, kind: xdt.kind(), device: xdt.device() }
    }

    /// [B, L, X, Y] -> [B, C, X, Q, Y] (zero-padded tail).
    fn chunked(&self, t: &Tensor) -> Tensor {
        let (_, _, x, y) = t.size4().expect("a [B, L, X, Y] tensor");
        let t = if self.pad > 0 { t.constant_pad_nd([0, 0, 0, 0, 0, self.pad]) } else { t.shallow_clone() };
        t.reshape([self.bsz, self.nc, self.q, x, y]).permute([0, 1, 3, 2, 4])
    }

    /// [B, C, X, Q, Y] -> [B, L, X, Y] (tail cut).
    fn unchunked(&self, t: &Tensor) -> Tensor {
        let x = t.size()[2];
        let y = t.size()[4];
        t.permute([0, 1, 3, 2, 4]).reshape([self.bsz, self.nc * self.q, x, y]).narrow(1, 0, self.l)
    }

    /// Whether the row and scan kernels run (else their tensor twins); the row kernels move
    /// pairs of values, so the head dim must be even.
    fn on_gpu(&self) -> bool {
        self.device.is_cuda() && self.p % 2 == 0
    }

    /// Per-head [B, C, H, ...] viewed per group [B, C, G, H/G, ...].
    fn by_group(&self, t: &Tensor) -> Tensor {
        let mut shape = vec![self.bsz, self.nc, self.g, self.hpg];
        shape.extend_from_slice(&t.size()[3..]);
        t.reshape(shape.as_slice())
    }

    /// Per-group [B, C, G, H/G, ...] back to per head [B, C, H, ...].
    fn by_head(&self, t: &Tensor) -> Tensor {
        let mut shape = vec![self.bsz, self.nc, self.h];
        shape.extend_from_slice(&t.size()[4..]);
        t.reshape(shape.as_slice())
    }

    /// The columns layout [B, C, G, Q, H/G * P]: a group's heads side by side in the columns,
    /// so the contractions with the group's B and C are plain matmuls (no per-head copies of
    /// B or C). For G = 1 it is the input's own memory layout.
    fn cols_shape(&self) -> [i64; 5] {
        [self.bsz, self.nc, self.g, self.q, self.hpg * self.p]
    }

    /// [B, L, H, P] -> columns layout (zero-padded tail).
    fn cols(&self, t: &Tensor) -> Tensor {
        let t = if self.pad > 0 { t.constant_pad_nd([0, 0, 0, 0, 0, self.pad]) } else { t.shallow_clone() };
        t.reshape([self.bsz, self.nc, self.q, self.g, self.hpg * self.p]).permute([0, 1, 3, 2, 4])
    }

    /// Columns layout -> [B, L, H, P] (tail cut).
    fn uncols(&self, t: &Tensor) -> Tensor {
        t.permute([0, 1, 3, 2, 4]).reshape([self.bsz, self.nc * self.q, self.h, self.p]).narrow(1, 0, self.l)
    }

    /// Columns layout split per head: [B, C, G, Q, H/G, P].
    fn split_cols(&self, t: &Tensor) -> Tensor {
        t.reshape([self.bsz, self.nc, self.g, self.q, self.hpg, self.p])
    }

    /// Columns layout -> per-head blocks [B, C, G, H/G, Q, P] (a view).
    fn cols_to_heads(&self, t: &Tensor) -> Tensor {
        self.split_cols(t).permute([0, 1, 2, 4, 3, 5])
    }

    /// Per-head blocks [B, C, G, H/G, Q, P] -> columns layout.
    fn heads_to_cols(&self, t: &Tensor) -> Tensor {
        t.permute([0, 1, 2, 4, 3, 5]).reshape(self.cols_shape())
    }

    /// A per-head, per-position value [B, C, H, Q] as a factor of the columns layout
    /// [B, C, G, Q, H/G, 1].
    fn head_factor(&self, t: &Tensor) -> Tensor {
        t.reshape([self.bsz, self.nc, self.g, self.hpg, self.q]).permute([0, 1, 2, 4, 3]).unsqueeze(-1)
    }

    /// Per-head sums over P of a split columns tensor [B, C, G, Q, H/G, P] -> [B, C, H, Q].
    fn head_sums(&self, t: &Tensor) -> Tensor {
        t.sum_dim_intlist(-1, false, Kind::Float).permute([0, 1, 2, 4, 3]).reshape([self.bsz, self.nc, self.h, self.q])
    }

    /// States [B, C, H, P, N] as [B, C, G, H/G * P, N] (a view).
    fn state_rows(&self, t: &Tensor) -> Tensor {
        t.reshape([self.bsz, self.nc, self.g, self.hpg * self.p, self.n])
    }
}

/// Everything the forward computes that the backward needs again.
struct Recomputed {
    /// x * w, columns layout (compute kind); None where no chunk state is wanted.
    xw: Option<Tensor>,
    /// x per head [B, C, G, H/G, Q, P] (compute kind; contiguous from the kernels).
    xh: Tensor,
    /// [B, C, G, Q, N] (compute kind)
    b: Tensor,
    c: Tensor,
    /// Within-chunk cumulative log-decay [B, C, H, Q] (fp32, contiguous).
    acs: Tensor,
    /// C.B per group [B, C, G, Q, Q] (compute kind, contiguous).
    cb: Tensor,
    /// Decay from each position to the chunk end, exp(acs_last - acs_s) [B, C, H, Q] (fp32).
    w: Tensor,
    /// The states passed between chunks in one matmul (see `pass_states`; None where the
    /// scan kernels did it, or nothing was passed).
    passing: Option<Passing>,
    /// Chunk log-decays [B, C, H] (fp32, contiguous).
    last: Tensor,
    /// State entering each chunk [B, C, H, P, N] (fp32; compute kind from the kernels); None
    /// for one chunk without an initial state (nothing enters it).
    prev: Option<Tensor>,
    /// The final state [B, H, P, N] (fp32); None where no chunk state is wanted.
    final_state: Option<Tensor>,
}

/// Between chunks: with X = [h0, S_0, .., S_{C-1}] and per-chunk log-decays
/// Lc = [0, L_0, .., L_{C-1}], the state entering chunk i (i = C: the final state) is
/// prev_all[i] = sum_{j <= i} exp(Lc[j+1] + .. + Lc[i]) X[j] = (T X)[i]: one matmul per head
/// whatever the number of chunks, instead of a loop of C steps.
struct Passing {
    /// X: [B, H, C+1, P*N] (fp32)
    x_all: Tensor,
    /// T = exp(segsum(Lc)): [B, H, C+1, C+1] (fp32, 0 above the diagonal)
    t: Tensor,
}

fn pass_states(d: &Dims, states: &Tensor, last: &Tensor, h0: Option<&Tensor>) -> (Passing, Tensor, Tensor) {
    let init = match h0 {
        Some(s) => s.to_kind(Kind::Float),
        None => Tensor::zeros([d.bsz, d.h, d.p, d.n], (Kind::Float, states.device())),
    };
    let x_all =
        Tensor::cat(&[init.unsqueeze(1), states.shallow_clone()], 1).permute([0, 2, 1, 3, 4]).reshape([d.bsz, d.h, d.nc + 1, d.p * d.n]);
    let lc = last.permute([0, 2, 1]).constant_pad_nd([1, 0]); // [B, H, C+1]
    let t = super::segsum(&lc).exp();
    let prev_all = t.matmul(&x_all); // [B, H, C+1, P*N]
    let prev = prev_all.narrow(2, 0, d.nc).reshape([d.bsz, d.h, d.nc, d.p, d.n]).permute([0, 2, 1, 3, 4]).contiguous();
    let final_state = prev_all.select(2, d.nc).reshape([d.bsz, d.h, d.p, d.n]);
    (Passing { x_all, t }, prev, final_state)
}

/// Backward of `pass_states`: from the gradients of the states entering the chunks
/// (dprev [B, C, H, P, N]) and of the final state, the gradients of the chunk states
/// [B, C, H, P, N], of h0 [B, H, P, N] and of the chunk log-decays L [B, C, H].
fn pass_states_backward(d: &Dims, p: &Passing, dprev: &Tensor, dfinal: Option<&Tensor>) -> (Tensor, Tensor, Tensor) {
    let f32 = Kind::Float;
    let dfinal = match dfinal {
        Some(t) => t.to_kind(f32).reshape([d.bsz, d.h, 1, d.p * d.n]),
        None => Tensor::zeros([d.bsz, d.h, 1, d.p * d.n], (f32, dprev.device())),
    };
    let dprev_all = Tensor::cat(&[dprev.permute([0, 2, 1, 3, 4]).reshape([d.bsz, d.h, d.nc, d.p * d.n]), dfinal], 2); // [B, H, C+1, P*N]
    let dx_all = p.t.transpose(-1, -2).matmul(&dprev_all); // [B, H, C+1, P*N]
    let dh0 = dx_all.select(2, 0).reshape([d.bsz, d.h, d.p, d.n]);
    let dstates = dx_all.narrow(2, 1, d.nc).reshape([d.bsz, d.h, d.nc, d.p, d.n]).permute([0, 2, 1, 3, 4]);
    // dT[i][j] = <dprev_all[i], X[j]>; T = exp(seg) with seg[i][j] = Lc[j+1] + .. + Lc[i], so
    // dLc[k] = sum over i >= k, j < k of (dT * T)[i][j].
    let e = dprev_all.matmul(&p.x_all.transpose(-1, -2)) * &p.t; // [B, H, C+1, C+1]
    let below = e.cumsum(-1, f32).narrow(-1, 0, d.nc).constant_pad_nd([1, 0]); // [i][k] = sum_{j<k} e[i][j]
    let lower = Tensor::ones([d.nc + 1, d.nc + 1], (Kind::Bool, e.device())).tril(0); // i >= k
    let dlc = below.masked_fill(&lower.logical_not(), 0.0).sum_dim_intlist(-2, false, f32); // [B, H, C+1]
    let dlast = dlc.narrow(-1, 1, d.nc).permute([0, 2, 1]); // [B, C, H]
    (dstates, dh0, dlast)
}

/// Whether nothing enters the chunks: one chunk and no initial state. Then the states entering
/// the chunks are zero and are neither stored nor multiplied (the training steps of short
/// sequences), and the chunk state is only the final state.
fn single_chunk(d: &Dims, h0: Option<&Tensor>) -> bool {
    d.nc == 1 && h0.is_none()
}

/// The chunk products; with `states` false (allowed for one chunk without h0 only), not the
/// chunk states nor the final state.
fn recompute(d: &Dims, xdt: &Tensor, la: &Tensor, b: &Tensor, c: &Tensor, h0: Option<&Tensor>, states: bool) -> Recomputed {
    let kind = d.kind;
    let single = single_chunk(d, h0);
    debug_assert!(states || single, "the chunk states are needed unless one chunk starts from zero");
    let la_c = d.chunked(&la.clamp_max(0.0).to_kind(Kind::Float).unsqueeze(-1)).squeeze_dim(-1); // [B, C, H, Q]
    let b = d.chunked(&b.to_kind(kind)); // [B, C, G, Q, N]
    let c = d.chunked(&c.to_kind(kind));
    // la <= 0 here, so every cumulative sum (a sum of non-positive floats) is <= 0 too: the
    // decays exp(acs) and exp(acs_last) need no clamp of their own.
    let acs = la_c.cumsum(-1, Kind::Float).contiguous();
    let cb = c.matmul(&b.transpose(-1, -2)).contiguous(); // [B, C, G, Q, Q]
    let last = acs.narrow(-1, d.q - 1, 1); // [B, C, H, 1]
    let w = super::exp_clamped(&(&last - &acs)).contiguous();
    // Chunk states S_c[p, n] = sum_s x_s[p] w_s B_s[n], then passed along the chunks.
    let (xw, xh) = if d.on_gpu() {
        let xw = states.then(|| Tensor::empty(d.cols_shape(), (kind, xdt.device())));
        let xh = Tensor::empty([d.bsz, d.nc, d.g, d.hpg, d.q, d.p], (kind, xdt.device()));
        rows_kernel(RowKernel::Xw, &[Some(xdt), Some(&w), xw.as_ref(), Some(&xh)], 0, d);
        (xw, xh)
    } else {
        let x = d.cols(xdt); // [B, C, G, Q, H/G * P]
        let xw = states.then(|| (d.split_cols(&x.to_kind(Kind::Float)) * d.head_factor(&w)).to_kind(kind).reshape(d.cols_shape()));
        (xw, d.cols_to_heads(&x))
    };
    let last = last.squeeze_dim(-1).contiguous(); // [B, C, H]
    let Some(xw_) = xw.as_ref() else {
        return Recomputed { xw, xh, b, c, acs, cb, w, passing: None, last, prev: None, final_state: None };
    };
    let states = xw_.transpose(-1, -2).matmul(&b).reshape([d.bsz, d.nc, d.h, d.p, d.n]); // compute kind
    let (passing, prev, final_state) = if single {
        (None, None, states.to_kind(Kind::Float).reshape([d.bsz, d.h, d.p, d.n]))
    } else if d.on_gpu() {
        let h0 = h0.map(|t| t.to_kind(Kind::Float).contiguous());
        let prev = Tensor::empty([d.bsz, d.nc, d.h, d.p, d.n], (kind, xdt.device()));
        let fin = Tensor::empty([d.bsz, d.h, d.p, d.n], (Kind::Float, xdt.device()));
        let h0p = h0.as_ref().map_or(std::ptr::null_mut(), ptr);
        check(unsafe { stuffed_ssd_pass_fwd(ptr(&states), ptr(&last), h0p, ptr(&prev), ptr(&fin)) });
        (None, Some(prev), fin)
    } else {
        let (passing, prev, fin) = pass_states(d, &states.to_kind(Kind::Float), &last, h0);
        (Some(passing), Some(prev), fin)
    };
    Recomputed { xw, xh, b, c, acs, cb, w, passing, last, prev, final_state: Some(final_state) }
}

/// The row kernels of csrc/kernels/rows.cu (per kind and values a lane: `ssd_out4_bf16`, ..).
#[derive(Debug, Clone, Copy)]
enum RowKernel {
    Out,
    Xw,
    Dy,
    Dx,
}

impl RowKernel {
    #[cfg(test)]
    const ALL: [RowKernel; 4] = [RowKernel::Out, RowKernel::Xw, RowKernel::Dy, RowKernel::Dx];

    fn stem(self) -> &'static str {
        match self {
            RowKernel::Out => "ssd_out",
            RowKernel::Xw => "ssd_xw",
            RowKernel::Dy => "ssd_dy",
            RowKernel::Dx => "ssd_dx",
        }
    }
}

/// Runs one of the row kernels on contiguous tensors in the kernel's argument order (None where
/// the kernel takes none, see rows.cu); `kind_of` names the tensor whose kind picks the kernel.
fn rows_kernel(kernel: RowKernel, ts: &[Option<&Tensor>], kind_of: usize, d: &Dims) {
    let stem = CString::new(kernel.stem()).expect("kernel name");
    let ptrs: Vec<*mut C_tensor> = ts.iter().map(|t| t.map_or(std::ptr::null_mut(), ptr)).collect();
    let dims = [d.bsz, d.l, d.h, d.p, d.g, d.q, d.nc].map(|v| v as c_int);
    check(unsafe { stuffed_ssd_rows(stem.as_ptr(), ptrs.as_ptr(), ptrs.len() as c_int, kind_of as c_int, dims.as_ptr()) });
}

/// Forward without autograd: (y [B, L, H, P] fp32, final state [B, H, P, N] fp32; without
/// `want_final`, a 0-element placeholder where that saved work, a single chunk from zero).
fn forward(xdt: &Tensor, la: &Tensor, b: &Tensor, c: &Tensor, h0: Option<&Tensor>, chunk: i64, want_final: bool) -> (Tensor, Tensor) {
    let _guard = tch::no_grad_guard();
    let d = Dims::new(xdt, b, chunk);
    let xdt = &xdt.contiguous();
    let r = recompute(&d, xdt, la, b, c, h0, want_final || !single_chunk(&d, h0));
    let m = decay_fwd(&r.cb, &r.acs, d.hpg); // [B, C, H, Q, Q]
    let y_diag = d.by_group(&m).matmul(&r.xh); // [B, C, G, H/G, Q, P]
    drop(m);
    let raw = raw_state_output(&d, &r);
    let final_state = r.final_state.unwrap_or_else(|| Tensor::empty([0], (Kind::Float, xdt.device())));
    if d.on_gpu() {
        let y = Tensor::empty([d.bsz, d.l, d.h, d.p], (Kind::Float, xdt.device()));
        rows_kernel(RowKernel::Out, &[raw.as_ref(), Some(&y_diag), Some(&r.acs), Some(&y)], 1, &d);
        return (y, final_state);
    }
    let mut y = d.heads_to_cols(&y_diag).to_kind(Kind::Float);
    if let Some(raw) = raw {
        let decay_out = d.head_factor(&r.acs.exp());
        y += (d.split_cols(&raw.to_kind(Kind::Float)) * decay_out).reshape(d.cols_shape());
    }
    (d.uncols(&y), final_state)
}

/// C_l . S_prev without the decay, columns layout (compute kind); None where no state enters.
fn raw_state_output(d: &Dims, r: &Recomputed) -> Option<Tensor> {
    let prev = d.state_rows(&r.prev.as_ref()?.to_kind(d.kind)); // [B, C, G, H/G * P, N]
    Some(r.c.matmul(&prev.transpose(-1, -2)))
}

struct Grads {
    dxdt: Tensor,
    dla: Tensor,
    db: Tensor,
    dc: Tensor,
    dh0: Option<Tensor>,
}

/// The hand-written backward of `forward`, recomputing the chunk products.
#[allow(clippy::too_many_arguments)]
fn backward(
    xdt: &Tensor,
    la: &Tensor,
    b: &Tensor,
    c: &Tensor,
    h0: Option<&Tensor>,
    dy: Option<&Tensor>,
    dfinal: Option<&Tensor>,
    chunk: i64,
) -> Grads {
    let _guard = tch::no_grad_guard();
    let d = Dims::new(xdt, b, chunk);
    let (kind, f32) = (d.kind, Kind::Float);
    let dev = xdt.device();
    let xdt = &xdt.contiguous();
    // One chunk from zero: the chunk state only feeds the final state, so without a gradient of
    // that, nothing of the states is needed.
    let single = single_chunk(&d, h0);
    let r = recompute(&d, xdt, la, b, c, h0, !single || dfinal.is_some());
    let dy = match dy {
        Some(t) => t.to_kind(f32).contiguous(),
        None => Tensor::zeros([d.bsz, d.l, d.h, d.p], (f32, dev)),
    }; // [B, L, H, P]

    // Y_off = exp(acs) * (C . S_prev): dyo = dy * exp(acs) (columns layout), dy per head for the
    // diagonal blocks, and the gradient of acs through exp(acs). Without a state entering the
    // chunks: dy per head only (dacs 0).
    let raw = raw_state_output(&d, &r);
    let (dyo_k, dy_h, mut dacs) = if d.on_gpu() {
        let dyo_k = raw.as_ref().map(|_| Tensor::empty(d.cols_shape(), (kind, dev)));
        let dy_h = Tensor::empty([d.bsz, d.nc, d.g, d.hpg, d.q, d.p], (kind, dev));
        let dacs = Tensor::empty([d.bsz, d.nc, d.h, d.q], (f32, dev));
        rows_kernel(RowKernel::Dy, &[Some(&dy), raw.as_ref(), Some(&r.acs), dyo_k.as_ref(), Some(&dy_h), Some(&dacs)], 4, &d);
        (dyo_k, dy_h, dacs)
    } else {
        let dy = d.cols(&dy);
        let dy_h = d.cols_to_heads(&dy.to_kind(kind)); // [B, C, G, H/G, Q, P]
        match &raw {
            Some(raw) => {
                let dyo = d.split_cols(&dy) * d.head_factor(&r.acs.exp()); // [B, C, G, Q, H/G, P]
                let dacs = d.head_sums(&(&dyo * d.split_cols(&raw.to_kind(f32)))); // [B, C, H, Q]
                (Some(dyo.to_kind(kind).reshape(d.cols_shape())), dy_h, dacs)
            }
            None => (None, dy_h, Tensor::zeros([d.bsz, d.nc, d.h, d.q], (f32, dev))),
        }
    };
    drop(raw);
    let (mut dc, dprev) = match (&dyo_k, &r.prev) {
        (Some(dyo_k), Some(prev)) => {
            let prev_rows = d.state_rows(&prev.to_kind(kind)); // [B, C, G, H/G * P, N]
            let dc = matmul_f32(dyo_k, &prev_rows, None); // [B, C, G, Q, N]
            let dprev = dyo_k.transpose(-1, -2).matmul(&r.c).reshape([d.bsz, d.nc, d.h, d.p, d.n]); // compute kind
            (Some(dc), Some(dprev))
        }
        _ => (None, None),
    };
    drop(dyo_k);

    // Between chunks.
    let (dstates, dh0, mut dlast) = match (&dprev, &r.passing) {
        (Some(dprev), Some(passing)) => {
            let (ds, dh0, dl) = pass_states_backward(&d, passing, &dprev.to_kind(f32), dfinal);
            (Some(ds), Some(dh0), dl)
        }
        (Some(dprev), None) => {
            let dfinal = dfinal.map(|t| t.to_kind(f32).contiguous());
            let dstates = Tensor::empty([d.bsz, d.nc, d.h, d.p, d.n], (kind, dev));
            let dh0 = Tensor::empty([d.bsz, d.h, d.p, d.n], (f32, dev));
            let mut part = std::ptr::null_mut();
            let dfp = dfinal.as_ref().map_or(std::ptr::null_mut(), ptr);
            let prev = r.prev.as_ref().expect("states entered the chunks");
            check(unsafe { stuffed_ssd_pass_bwd(ptr(dprev), dfp, ptr(prev), ptr(&r.last), ptr(&dstates), ptr(&dh0), &mut part) });
            let dlast = unsafe { Tensor::from_ptr(part) }.sum_dim_intlist(-1, false, f32); // [B, C, H]
            (Some(dstates), Some(dh0), dlast)
        }
        // One chunk from zero: the final state is the chunk state.
        (None, _) => {
            let ds = dfinal.map(|t| t.to_kind(kind).reshape([d.bsz, 1, d.h, d.p, d.n]));
            (ds, None, Tensor::zeros([d.bsz, d.nc, d.h], (f32, dev)))
        }
    };
    let dh0 = h0.and(dh0);
    let ds_rows = dstates.map(|t| d.state_rows(&t.to_kind(kind))); // [B, C, G, H/G * P, N]
    drop(dprev);

    // Diagonal blocks: Y_diag = M X with M = C.B * decay (masked), per head.
    let m = decay_fwd(&r.cb, &r.acs, d.hpg);
    let dx_diag = d.by_group(&m).transpose(-1, -2).matmul(&dy_h); // [B, C, G, H/G, Q, P]
    drop(m);

    // Chunk states: S = sum_s (x_s w_s) (x) B_s.
    let (dxw, db_states) = match (&ds_rows, &r.xw) {
        (Some(ds), Some(xw)) => (Some(r.b.matmul(&ds.transpose(-1, -2))), Some(matmul_f32(xw, ds, None))), // columns layout, [B, C, G, Q, N]
        _ => (None, None),
    };
    drop(ds_rows);
    let (dxdt, dw) = if d.on_gpu() {
        let dxdt = Tensor::empty([d.bsz, d.l, d.h, d.p], (kind, dev));
        let dw = Tensor::empty([d.bsz, d.nc, d.h, d.q], (f32, dev));
        rows_kernel(RowKernel::Dx, &[dxw.as_ref(), Some(xdt), Some(&r.w), Some(&dx_diag), Some(&dxdt), Some(&dw)], 1, &d);
        (dxdt, dw)
    } else {
        let mut dx = d.heads_to_cols(&dx_diag).to_kind(f32);
        let dw = match &dxw {
            Some(dxw) => {
                let (xf, dxw) = (d.split_cols(&d.cols(xdt).to_kind(f32)), d.split_cols(&dxw.to_kind(f32))); // [B, C, G, Q, H/G, P]
                dx += (&dxw * d.head_factor(&r.w)).reshape(d.cols_shape());
                d.head_sums(&(&dxw * &xf)) * &r.w
            }
            None => Tensor::zeros([d.bsz, d.nc, d.h, d.q], (f32, dev)),
        };
        (d.uncols(&dx).to_kind(kind), dw)
    };
    drop((dxw, dx_diag));
    dacs -= &dw; // dw = d/d(acs_last - acs_s)
    dlast += dw.sum_dim_intlist(-1, false, f32);
    let dm = d.by_head(&dy_h.matmul(&r.xh.transpose(-1, -2))).contiguous(); // [B, C, H, Q, Q]
    drop(dy_h);
    let (dcb, dacs_decay) = decay_bwd(&dm, &r.cb, &r.acs, d.hpg);
    drop(dm);
    dacs += dacs_decay;
    let dcb = dcb.to_kind(kind);
    // The diagonal blocks' part added to the states' part by the same product (fp32 out).
    let dc = matmul_f32(&dcb, &r.b, dc.take().as_ref());
    let db = matmul_f32(&dcb.transpose(-1, -2), &r.c, db_states.as_ref());

    // acs = within-chunk cumsum of la: dla_s = sum_{l >= s} dacs_l.
    let mut dacs_last = dacs.narrow(-1, d.q - 1, 1);
    dacs_last += dlast.unsqueeze(-1);
    let dla = dacs.flip([-1]).cumsum(-1, f32).flip([-1]); // [B, C, H, Q]
    let dla = d.unchunked(&dla.unsqueeze(-1)).squeeze_dim(-1) * la.le(0.0).to_kind(f32); // clamp_max(0)'s gradient
    Grads {
        dxdt,
        dla: dla.to_kind(la.kind()),
        db: d.unchunked(&db).to_kind(b.kind()),
        dc: d.unchunked(&dc).to_kind(c.kind()),
        dh0: dh0.map(|t| t.to_kind(h0.map_or(f32, |s| s.kind()))),
    }
}

/// acc + a @ b in fp32 over the same leading dims: a [.., M, K], b [.., K, N] of the compute
/// kind, acc [.., M, N] fp32. On CUDA cuBLAS writes (and adds into) fp32 itself (`bmm` /
/// `baddbmm` with an fp32 out_dtype): no cast kernel and no separate add, one rounding as
/// before; elsewhere the product in the compute kind, cast, then added.
fn matmul_f32(a: &Tensor, b: &Tensor, acc: Option<&Tensor>) -> Tensor {
    let (sa, sb) = (a.size(), b.size());
    let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
    if !a.device().is_cuda() {
        let p = a.matmul(b).to_kind(Kind::Float);
        return acc.map_or(p.shallow_clone(), |c| c + &p);
    }
    let mut shape = sa[..sa.len() - 2].to_vec();
    shape.extend([m, n]);
    let (a3, b3) = (a.reshape([-1, m, k]), b.reshape([-1, k, n]));
    match acc {
        Some(c) => c.reshape([-1, m, n]).baddbmm_dtype(&a3, &b3, Kind::Float, 1, 1),
        None => a3.bmm_dtype(&b3, Kind::Float),
    }
    .reshape(shape.as_slice())
}

/// Lower-triangular decays exp(min(acs_l - acs_s, 0)) [.., Q(l), Q(s)] (fp32), 0 above the
/// diagonal: the tensor-op twin of the kernels.
fn decay_matrix(acs: &Tensor) -> Tensor {
    let q = *acs.size().last().expect("acs has a chunk dim");
    let diff = acs.unsqueeze(-1) - acs.unsqueeze(-2);
    let upper = Tensor::ones([q, q], (Kind::Bool, acs.device())).triu(1);
    super::exp_clamped(&diff).masked_fill(&upper, 0.0)
}

fn check(rc: c_int) {
    if rc != 0 {
        panic!("{}", last_error());
    }
}

/// M [B, C, H, Q, Q] (compute kind) = C.B of the head's group times the masked decays.
fn decay_fwd(cb: &Tensor, acs: &Tensor, hpg: i64) -> Tensor {
    let (bsz, nc, g, q, _) = cb.size5().expect("cb is [B, C, G, Q, Q]");
    let h = g * hpg;
    if cb.device().is_cuda() {
        let m = Tensor::empty([bsz, nc, h, q, q], (cb.kind(), cb.device()));
        check(unsafe { stuffed_ssd_decay_fwd(ptr(cb), ptr(acs), ptr(&m)) });
        return m;
    }
    let dec = decay_matrix(acs).reshape([bsz, nc, g, hpg, q, q]).to_kind(cb.kind());
    (cb.unsqueeze(3) * dec).reshape([bsz, nc, h, q, q])
}

/// From dM [B, C, H, Q, Q]: dCB [B, C, G, Q, Q] = sum over the group's heads of dM * decay, and
/// the gradient of acs through the decays [B, C, H, Q]: with T = dM * M, its row sums minus its
/// column sums (fp32; the kernels reduce T without writing it). dCB is fp32 from the tensor ops
/// and of cb's kind from the kernels (summed in fp32, rounded once as it is written).
fn decay_bwd(dm: &Tensor, cb: &Tensor, acs: &Tensor, hpg: i64) -> (Tensor, Tensor) {
    let (bsz, nc, g, q, _) = cb.size5().expect("cb is [B, C, G, Q, Q]");
    let h = g * hpg;
    let o = (Kind::Float, cb.device());
    if cb.device().is_cuda() {
        let (dcb, dacs) = (Tensor::empty([bsz, nc, g, q, q], (cb.kind(), cb.device())), Tensor::empty([bsz, nc, h, q], o));
        check(unsafe { stuffed_ssd_decay_bwd(ptr(dm), ptr(cb), ptr(acs), ptr(&dcb), ptr(&dacs)) });
        return (dcb, dacs);
    }
    let dm_dec = dm.to_kind(Kind::Float).reshape([bsz, nc, g, hpg, q, q]) * decay_matrix(acs).reshape([bsz, nc, g, hpg, q, q]);
    let t = (&dm_dec * cb.to_kind(Kind::Float).unsqueeze(3)).reshape([bsz, nc, h, q, q]);
    let dacs = t.sum_dim_intlist(-1, false, Kind::Float) - t.sum_dim_intlist(-2, false, Kind::Float);
    (dm_dec.sum_dim_intlist(3, false, Kind::Float), dacs)
}

/// The mixer's tail on CUDA as one autograd node: rmsnorm over `groups` groups of
/// ((y + x * D[head]) * silu(z)), times w. y [B, L, Di] fp32; x, z [B, L, Di] of the compute
/// kind (column slices of wider tensors are read in place); d [H], w [Di] fp32. Returns
/// [B, L, Di] of the compute kind. Groups wider than 8192 are not supported (`gated_norm_fits`).
#[allow(clippy::too_many_arguments)]
pub fn gated_norm(y: &Tensor, x: &Tensor, d: &Tensor, z: &Tensor, w: &Tensor, groups: i64, headdim: i64, eps: f64) -> Tensor {
    let mut out = std::ptr::null_mut();
    check(unsafe { stuffed_gated_norm(ptr(y), ptr(x), ptr(d), ptr(z), ptr(w), groups, headdim, eps, &mut out) });
    unsafe { Tensor::from_ptr(out) }
}

/// Whether `gated_norm` takes groups of this width.
pub fn gated_norm_fits(group_width: i64) -> bool {
    group_width <= 8192
}

/// Causal depthwise conv + SiLU on CUDA over the [B, L, C] layout: x [B, L, C] (a column slice
/// is read in place), w [C, 1, K], bias [C], all of one kind; `pre` [B, C, K-1] are the inputs
/// before x (a state's conv buffer; zeros when None), accepted only outside autograd. Without
/// `pre` it is one autograd node. Widths K with a kernel: `conv_fits`.
pub fn conv_silu(x: &Tensor, w: &Tensor, bias: &Tensor, pre: Option<&Tensor>) -> Tensor {
    let c = x.size().last().copied().expect("x is [B, L, C]");
    conv_silu_parts(x, w, bias, pre, &[c]).pop().expect("one part")
}

/// `conv_silu` with its output in parts of `widths` channels side by side (1 to 3, summing to
/// C; the mixer's x | B | C), each [B, L, width] contiguous: the backward reads their gradients
/// where they lie, so no concatenation of them runs.
pub fn conv_silu_parts(x: &Tensor, w: &Tensor, bias: &Tensor, pre: Option<&Tensor>, widths: &[i64]) -> Vec<Tensor> {
    assert!((1..=3).contains(&widths.len()), "conv_silu_parts: 1 to 3 parts");
    let mut outs = [std::ptr::null_mut(); 3];
    let pre = pre.map_or(std::ptr::null_mut(), ptr);
    check(unsafe { stuffed_conv_silu(ptr(x), ptr(w), ptr(bias), pre, widths.as_ptr(), widths.len() as c_int, outs.as_mut_ptr()) });
    outs[..widths.len()].iter().map(|&o| unsafe { Tensor::from_ptr(o) }).collect()
}

/// x [B, L, W] on CUDA split into column blocks of `widths` (1 to 8, summing to W), one autograd
/// node: where the blocks' readers are the fused gated norm and conv, their backwards write their
/// gradients in place in one [B, L, W] buffer, so the split's backward concatenates nothing
/// (tensor `split_with_sizes` concatenates its blocks' gradients: a full read and write of
/// in_proj's output gradient per layer).
pub fn split_columns(x: &Tensor, widths: &[i64]) -> Vec<Tensor> {
    assert!((1..=8).contains(&widths.len()), "split_columns: 1 to 8 blocks");
    let mut outs = [std::ptr::null_mut(); 8];
    check(unsafe { stuffed_split_columns(ptr(x), widths.as_ptr(), widths.len() as c_int, outs.as_mut_ptr()) });
    outs[..widths.len()].iter().map(|&o| unsafe { Tensor::from_ptr(o) }).collect()
}

/// Whether the mixer splits in_proj's output with `split_columns` on the fused path: yes unless
/// STUFFED_SPLIT_COLUMNS=0 (`split_with_sizes` and its concatenation, for an A/B).
pub fn split_in_place() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| switched_on("STUFFED_SPLIT_COLUMNS"))
}

/// A default-on switch of the fused path, read from the environment: off only when `var` is "0"
/// (for an A/B against the tensor ops it replaces).
pub fn switched_on(var: &str) -> bool {
    std::env::var(var).map_or(true, |v| v != "0")
}

/// The residual stream between blocks on CUDA as one autograd node: r' = r + delta (fp32) and
/// rmsnorm(r') * w in fp32, returned as `kind` (bf16 or fp32). r [.., D] fp32; delta [.., D] of
/// `kind` (None: r' is r, as after the embedding); w [D] fp32. Returns (r', normed). Rows up to
/// `add_norm_fits`.
pub fn add_norm(r: &Tensor, delta: Option<&Tensor>, w: &Tensor, eps: f64, kind: Kind) -> (Tensor, Tensor) {
    let (mut rout, mut out) = (std::ptr::null_mut(), std::ptr::null_mut());
    let dp = delta.map_or(std::ptr::null_mut(), ptr);
    check(unsafe { stuffed_add_norm(ptr(r), dp, ptr(w), eps, (kind == Kind::BFloat16) as i64, &mut rout, &mut out) });
    let out = unsafe { Tensor::from_ptr(out) };
    let rout = if rout.is_null() { r.shallow_clone() } else { unsafe { Tensor::from_ptr(rout) } };
    (rout, out)
}

/// Whether `add_norm` takes rows of this width and this output kind.
pub fn add_norm_fits(d_model: i64, kind: Kind) -> bool {
    (1..=1024).contains(&d_model) && matches!(kind, Kind::Float | Kind::BFloat16)
}

/// The cross-entropy of every token on CUDA, one autograd node: logits [N, V] (fp32 or bf16),
/// targets [N] int64 (`ignore`, or outside [0, V): loss 0, no gradient) -> [N] fp32, logsumexp
/// minus the target's logit. Neither the fp32 log-probabilities nor the NLL's dense gradient is
/// made: the forward keeps the rows' logsumexp, the backward writes softmax - onehot in the
/// logits' kind. Its tensor-op twin: log_softmax(.., Float) then nll_loss (train/step.rs).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, ignore: i64) -> Tensor {
    let mut out = std::ptr::null_mut();
    check(unsafe { stuffed_cross_entropy(ptr(logits), ptr(targets), ignore, &mut out) });
    unsafe { Tensor::from_ptr(out) }
}

/// Whether `cross_entropy` takes these logits (CUDA, fp32 or bf16).
pub fn cross_entropy_fits(logits: &Tensor) -> bool {
    logits.device().is_cuda() && matches!(logits.kind(), Kind::Float | Kind::BFloat16)
}

/// xdt = x * dt per head on CUDA, one autograd node: x [B, L, H * P] of the compute kind (a
/// column slice is read in place), dt [B, L, H] fp32 -> [B, L, H, P] of x's kind.
pub fn scale_heads(x: &Tensor, dt: &Tensor) -> Tensor {
    let mut out = std::ptr::null_mut();
    check(unsafe { stuffed_scale_heads(ptr(x), ptr(dt), &mut out) });
    unsafe { Tensor::from_ptr(out) }
}

/// Whether `conv_silu` has a kernel for conv width `k`.
pub fn conv_fits(k: i64) -> bool {
    (2..=4).contains(&k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssd::ssd_chunked;

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let scale = b.abs().max().double_value(&[]).max(1e-6);
        (a - b).abs().max().double_value(&[]) / scale
    }

    /// Forward outputs and every input gradient of the fused node equal autograd through the
    /// tensor-op SSD (CPU, fp32, the tensor twins of the kernels).
    #[test]
    fn fused_matches_tensor_forward_and_backward() {
        tch::manual_seed(1);
        let o = (Kind::Float, Device::Cpu);
        for &(l, q, h, g, with_h0, use_final) in &[
            (37, 8, 4, 1, false, true),
            (37, 16, 4, 2, true, true),
            (64, 64, 2, 1, true, false),
            (100, 32, 4, 2, false, false),
            (5, 64, 2, 1, true, true),
            (300, 8, 2, 2, true, true), // 38 chunks
            // One chunk from zero (nothing enters it), with and without the final state's
            // gradient, whole and tail-padded.
            (64, 64, 2, 1, false, false),
            (64, 64, 4, 2, false, true),
            (20, 32, 4, 2, false, false),
            (20, 32, 4, 2, false, true),
        ] {
            let (bsz, p, n) = (2, 8, 6);
            let leaf = |t: Tensor| t.set_requires_grad(true);
            let xdt = leaf(Tensor::randn([bsz, l, h, p], o) * 0.5);
            let la = leaf(-(Tensor::rand([bsz, l, h], o) * 0.3));
            let b = leaf(Tensor::randn([bsz, l, g, n], o) * 0.5);
            let c = leaf(Tensor::randn([bsz, l, g, n], o) * 0.5);
            let h0 = with_h0.then(|| leaf(Tensor::randn([bsz, h, p, n], o)));
            let wy = Tensor::randn([bsz, l, h, p], o);
            let ws = Tensor::randn([bsz, h, p, n], o);
            let run = |fused: bool| {
                let inputs: Vec<&Tensor> = [&xdt, &la, &b, &c].into_iter().chain(h0.as_ref()).collect();
                for t in &inputs {
                    let _ = t.grad().f_zero_();
                }
                // The fused node is asked for the final state only where the loss reads it.
                let (y, s) = if fused {
                    ssd_fused_with(&xdt, &la, &b, &c, q, h0.as_ref(), use_final)
                } else {
                    let (y, s) = ssd_chunked(&xdt, &la, &b, &c, q, h0.as_ref());
                    (y, use_final.then_some(s))
                };
                let mut loss = (&y * &wy).sum(Kind::Float);
                if let Some(s) = &s {
                    loss = loss + (s * &ws).sum(Kind::Float);
                }
                loss.backward();
                let grads: Vec<Tensor> = inputs.iter().map(|t| t.grad().copy()).collect();
                (y.detach(), s.map(|s| s.detach()), grads)
            };
            let (y1, s1, g1) = run(true);
            let (y2, s2, g2) = run(false);
            let case = format!("l={l} q={q} h={h} g={g} h0={with_h0} final={use_final}");
            assert!(max_rel(&y1, &y2) < 1e-5, "y {case}: {}", max_rel(&y1, &y2));
            if let (Some(s1), Some(s2)) = (&s1, &s2) {
                assert!(max_rel(s1, s2) < 1e-5, "state {case}");
            }
            for (i, (a, e)) in g1.iter().zip(&g2).enumerate() {
                assert!(max_rel(a, e) < 1e-4, "grad {i} {case}: {}", max_rel(a, e));
            }
        }
    }

    /// The tests that compile the kernels read STUFFED_KERNEL_DEFINES, which one of them sets.
    static COMPILING: Mutex<()> = Mutex::new(());

    /// The kernels compiled by NVRTC (on the CPU: no GPU needed) are exactly the generated list
    /// that the C++ side loads: build.rs read every `extern "C" __global__` declaration.
    #[test]
    fn kernel_list_matches_the_compiled_kernels() {
        let _one = COMPILING.lock().unwrap_or_else(|e| e.into_inner());
        let ptx = match kernels_ptx(9, 0) {
            Ok(p) => p,
            Err(e) if e.contains("libnvrtc not found") => {
                eprintln!("SKIPPED kernel_list_matches_the_compiled_kernels: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let mut entries: Vec<&str> =
            ptx.lines().filter_map(|l| l.strip_prefix(".visible .entry ")).map(|l| l.split('(').next().unwrap_or(l)).collect();
        entries.sort_unstable();
        let mut listed = KERNELS.to_vec();
        listed.sort_unstable();
        assert_eq!(entries, listed);
    }

    /// STUFFED_KERNEL_DEFINES takes -DNAME[=VALUE] tokens only (nothing else reaches NVRTC's
    /// command line) and its macros reach the kernels.
    #[test]
    fn kernel_defines_are_validated() {
        let _one = COMPILING.lock().unwrap_or_else(|e| e.into_inner());
        let compile = |defines: &str| {
            std::env::set_var("STUFFED_KERNEL_DEFINES", defines);
            let r = kernels_ptx(9, 0);
            std::env::remove_var("STUFFED_KERNEL_DEFINES");
            r
        };
        match compile("-DROWS_REGS=64  -DGNORM_BWD_REGS=48") {
            Err(e) if e.contains("libnvrtc not found") => {
                eprintln!("SKIPPED kernel_defines_are_validated: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
            Ok(ptx) => assert!(ptx.contains(".maxnreg 64") && ptx.contains(".maxnreg 48"), "the macros did not reach the kernels"),
        }
        for bad in ["--use_fast_math", "-DX;rm", "-D", "-DA=$(id)"] {
            let e = compile(bad).expect_err(bad);
            assert!(e.contains("STUFFED_KERNEL_DEFINES") && e.contains("-DNAME"), "{bad}: {e}");
        }
    }

    /// Regression: libnvrtc beside the torch wheel (site-packages/nvidia/cu13/lib) was never
    /// found, because the C++ side looked for torch's directory through an inline function of
    /// the headers (dladdr named this binary instead of libtorch).
    #[test]
    fn nvrtc_is_found_beside_the_torch_wheel() {
        let _one = COMPILING.lock().unwrap_or_else(|e| e.into_inner());
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let Some(c10) = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("/libc10.so")) else {
            eprintln!("SKIPPED nvrtc_is_found_beside_the_torch_wheel: libc10.so not in /proc/self/maps");
            return;
        };
        let site = std::path::Path::new(c10).parent().and_then(|p| p.parent()).and_then(|p| p.parent());
        let beside = ["nvidia/cu13/lib/libnvrtc.so.13", "nvidia/cuda_nvrtc/lib/libnvrtc.so.12", "nvidia/cu12/lib/libnvrtc.so.12"]
            .iter()
            .filter_map(|rel| site.map(|s| s.join(rel)))
            .find(|p| p.exists());
        match beside {
            Some(path) => {
                if let Err(e) = kernels_ptx(9, 0) {
                    panic!("{} is there, yet: {e}", path.display());
                }
            }
            None => eprintln!("SKIPPED nvrtc_is_found_beside_the_torch_wheel: this torch has no libnvrtc beside it"),
        }
    }

    /// Every kernel name the Rust and C++ sides launch is in the list: the row kernels (2, 4 or 8
    /// values a lane), the conv widths (1, 2 or 4 channels a thread) and gated-norm layouts with a
    /// kernel, and the stems csrc/ssd.cpp names.
    #[test]
    fn launched_kernels_are_in_the_list() {
        let has = |name: String| {
            for kind in ["f32", "bf16"] {
                assert!(KERNELS.contains(&format!("{name}_{kind}").as_str()), "no kernel {name}_{kind} in csrc/kernels");
            }
        };
        for e in [2, 4, 8] {
            RowKernel::ALL.iter().for_each(|k| has(format!("{}{e}", k.stem())));
        }
        for k in 1..=8 {
            let listed = KERNELS.contains(&format!("conv_fwd_k{k}v1_f32").as_str());
            assert_eq!(conv_fits(k), listed, "conv width {k}: conv_fits and the kernels disagree");
            if listed {
                for v in [1, 2, 4] {
                    has(format!("conv_fwd_k{k}v{v}"));
                    has(format!("conv_bwd_k{k}v{v}"));
                }
            }
        }
        for (nc, v) in [4, 8, 16, 32].into_iter().flat_map(|nc| [(nc, 1), (nc, 4)]) {
            has(format!("addnorm_fwd{nc}v{v}"));
            has(format!("addnorm_bwd{nc}v{v}"));
        }
        for e in ["1", "8", "1w", "8w"] {
            has(format!("ce_fwd{e}"));
            has(format!("ce_bwd{e}"));
        }
        for e in [1, 4] {
            has(format!("scale_fwd{e}"));
            has(format!("scale_bwd{e}"));
        }
        for vs in ["v1s4", "v1s8", "v4s1", "v4s2"] {
            has(format!("gnorm_fwd_{vs}"));
            has(format!("gnorm_bwd_{vs}"));
        }
        let cpp = include_str!("../../csrc/ssd.cpp");
        let stems: Vec<&str> = cpp.split("std::string(\"").skip(1).filter_map(|s| s.split('"').next()).collect();
        let is_name = |s: &&str| s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let literal: Vec<&str> = stems.iter().copied().filter(is_name).filter(|s| !s.ends_with('_')).collect();
        assert!(literal.len() >= 5, "found only {literal:?} in csrc/ssd.cpp");
        literal.iter().for_each(|s| has(s.to_string()));
    }

    /// The entry points of csrc/ssd.cpp's `extern "C"` block and this file's extern block
    /// agree: the same functions, each with the same number of arguments (a name missing on the
    /// C++ side fails to link; a count that differs would not).
    #[test]
    fn extern_block_matches_the_cpp_entry_points() {
        /// (name, argument count) of every `stuffed_*` function declared in `block`.
        fn signatures(block: &str, lead: &[&str]) -> Vec<(String, usize)> {
            let mut out = Vec::new();
            for line in block.lines() {
                let Some(rest) = lead.iter().find_map(|l| line.trim_start().strip_prefix(l)) else { continue };
                let Some(open) = rest.find('(') else { continue };
                let name = rest[..open].trim().to_string();
                let start = block.find(line).expect("line of the block") + line.find('(').expect("a parenthesis") + 1;
                let args = &block[start..start + block[start..].find(')').expect("closing parenthesis")];
                let n = args.split(',').filter(|a| !a.trim().is_empty()).count();
                out.push((name, n));
            }
            out.sort();
            out
        }
        let cpp = include_str!("../../csrc/ssd.cpp");
        let cpp_block = &cpp[cpp.rfind("\nextern \"C\" {").expect("an extern \"C\" block")..];
        let cpp_sigs = signatures(cpp_block, &["int stuffed_", "void stuffed_", "const char* stuffed_"]);
        let rs = include_str!("fused.rs");
        let rs_block = &rs[rs.find("\nextern \"C\" {").expect("an extern block")..];
        let rs_block = &rs_block[..rs_block.find("\n}\n").expect("the block's end")];
        let rs_sigs = signatures(rs_block, &["fn stuffed_"]);
        assert!(cpp_sigs.len() >= 14, "found only {cpp_sigs:?}");
        assert_eq!(rs_sigs, cpp_sigs);
    }

    /// Without autograd (evaluation) the fused path is a plain function of its inputs.
    #[test]
    fn fused_forward_without_grad() {
        tch::manual_seed(2);
        let o = (Kind::Float, Device::Cpu);
        let xdt = Tensor::randn([1, 50, 4, 8], o);
        let la = -(Tensor::rand([1, 50, 4], o) * 0.5);
        let b = Tensor::randn([1, 50, 2, 6], o);
        let c = Tensor::randn([1, 50, 2, 6], o);
        let h0 = Tensor::randn([1, 4, 8, 6], o);
        let (y1, s1) = ssd_fused(&xdt, &la, &b, &c, 16, Some(&h0));
        let (y2, s2) = ssd_chunked(&xdt, &la, &b, &c, 16, Some(&h0));
        assert!(!y1.requires_grad());
        assert!(max_rel(&y1, &y2) < 1e-5 && max_rel(&s1, &s2) < 1e-5);
    }
}
