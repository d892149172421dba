//! GPU tests of the fused SSD (CUDA kernels + hand-written backward) against the tensor-op SSD
//! under autograd: forward outputs, final states and every input gradient, over lengths that
//! are not multiples of the chunk, ngroups 1 and 2, with and without an initial state, in fp32
//! and bf16; then a whole model's logits and parameter gradients. Run on a GPU machine; on a
//! machine without CUDA every test is reported as ignored, by name (a test that did not run never
//! counts as passed; CI has no GPU, and the CPU tests of `ssd::fused` check the same backward with
//! the tensor twins of the kernels). `STUFFED_FUSED_TESTS_ON_CPU=1` runs them on the CPU.
use stuffed_model::ssd::{fused, ssd_chunked, SsdBackend};
use stuffed_model::train::{train_step, AdamW, AdamWConfig, Batch, GraphedStep};
use stuffed_model::{Exec, Mamba2LM, MambaConfig};
use tch::{Device, Kind, Tensor};

/// The tests draw inputs from libtorch's global generator: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the tests run: cuda:0 with its kernels loaded, the CPU when asked, or nowhere.
fn target() -> Option<Device> {
    // The tests' own logic can be checked on the CPU (tensor twins of the kernels).
    if std::env::var_os("STUFFED_FUSED_TESTS_ON_CPU").is_some() {
        return Some(Device::Cpu);
    }
    tch::Cuda::is_available().then_some(Device::Cuda(0))
}

/// The device of a test; a test that runs without one (`--ignored` on a machine without CUDA)
/// fails rather than passing without having run.
fn gpu() -> Device {
    let d = target().expect("no CUDA device (set STUFFED_FUSED_TESTS_ON_CPU=1 to run these tests on the CPU)");
    if d.is_cuda() {
        if let Err(e) = fused::kernels_ready(d) {
            panic!("the fused SSD kernels do not load on cuda:0: {e}");
        }
    }
    d
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let tests: [(&str, fn()); 11] = [
        ("fused_equals_tensor_ops_fp32", fused_equals_tensor_ops_fp32),
        ("fused_equals_tensor_ops_bf16", fused_equals_tensor_ops_bf16),
        ("model_logits_and_gradients_agree", model_logits_and_gradients_agree),
        ("streaming_state_agrees", streaming_state_agrees),
        ("gated_norm_equals_tensor_ops", gated_norm_equals_tensor_ops),
        ("conv_silu_equals_conv1d", conv_silu_equals_conv1d),
        ("scale_heads_equals_tensor_ops", scale_heads_equals_tensor_ops),
        ("add_norm_equals_tensor_ops", add_norm_equals_tensor_ops),
        ("cross_entropy_equals_tensor_ops", cross_entropy_equals_tensor_ops),
        ("split_columns_gradient_in_place", split_columns_gradient_in_place),
        ("graphed_steps_equal_eager_steps", graphed_steps_equal_eager_steps),
    ];
    let skip = target().is_none();
    if skip {
        eprintln!("no CUDA device: the {} fused-kernel GPU tests are skipped (reported as ignored)", tests.len());
    }
    // CUDA graphs exist on CUDA only: on the CPU (STUFFED_FUSED_TESTS_ON_CPU) that test is ignored.
    let cuda = target().is_some_and(|d| d.is_cuda());
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            libtest_mimic::Trial::test(name, move || {
                f();
                Ok(())
            })
            .with_ignored_flag(skip || (name == "graphed_steps_equal_eager_steps" && !cuda))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// ||a - b|| / ||b|| (fp32).
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Float), b.to_kind(Kind::Float));
    let den = b.norm().double_value(&[]).max(1e-12);
    (a - &b).norm().double_value(&[]) / den
}

/// max |a - b| / max |b|.
fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Float), b.to_kind(Kind::Float));
    let den = b.abs().max().double_value(&[]).max(1e-12);
    (a - &b).abs().max().double_value(&[]) / den
}

struct Case {
    bsz: i64,
    l: i64,
    h: i64,
    p: i64,
    g: i64,
    n: i64,
    q: i64,
    h0: bool,
    /// Whether the loss reads the final state (else its gradient is none).
    fin: bool,
}

/// (y, final state, input grads) of one backend on the same inputs and output weights.
fn run(c: &Case, kind: Kind, dev: Device, fused_path: bool) -> (Tensor, Tensor, Vec<Tensor>) {
    tch::manual_seed(7);
    let o = (Kind::Float, dev);
    let leaf = |t: Tensor| t.to_kind(kind).detach().set_requires_grad(true);
    let xdt = leaf(Tensor::randn([c.bsz, c.l, c.h, c.p], o) * 0.3);
    let la = (-(Tensor::rand([c.bsz, c.l, c.h], o) * 0.2)).detach().set_requires_grad(true);
    let b = leaf(Tensor::randn([c.bsz, c.l, c.g, c.n], o) * 0.3);
    let cc = leaf(Tensor::randn([c.bsz, c.l, c.g, c.n], o) * 0.3);
    let h0 = c.h0.then(|| Tensor::randn([c.bsz, c.h, c.p, c.n], o).set_requires_grad(true));
    let wy = Tensor::randn([c.bsz, c.l, c.h, c.p], o);
    let ws = Tensor::randn([c.bsz, c.h, c.p, c.n], o);
    // The fused node is asked for the final state only where the loss reads it (a placeholder
    // of zeros stands for it in the comparison).
    let (y, s) = if fused_path {
        let (y, s) = fused::ssd_fused_with(&xdt, &la, &b, &cc, c.q, h0.as_ref(), c.fin);
        (y, s.unwrap_or_else(|| Tensor::zeros([c.bsz, c.h, c.p, c.n], o)))
    } else {
        let (y, s) = ssd_chunked(&xdt, &la, &b, &cc, c.q, h0.as_ref());
        (y, if c.fin { s } else { s.zeros_like() })
    };
    let mut loss = (&y * &wy).sum(Kind::Float);
    if c.fin {
        loss += (&s * &ws).sum(Kind::Float);
    }
    loss.backward();
    let grads = [&xdt, &la, &b, &cc].into_iter().chain(h0.as_ref()).map(|t| t.grad()).collect();
    (y.detach(), s.detach(), grads)
}

fn cases() -> Vec<Case> {
    vec![
        Case { bsz: 2, l: 1000, h: 8, p: 64, g: 1, n: 128, q: 256, h0: false, fin: true },
        Case { bsz: 2, l: 777, h: 8, p: 32, g: 2, n: 64, q: 128, h0: true, fin: true },
        Case { bsz: 1, l: 300, h: 4, p: 64, g: 2, n: 16, q: 256, h0: true, fin: true },
        Case { bsz: 3, l: 2048, h: 24, p: 64, g: 1, n: 128, q: 256, h0: true, fin: true },
        // One chunk from zero (the training steps of short sequences): nothing enters it.
        Case { bsz: 8, l: 128, h: 16, p: 64, g: 1, n: 256, q: 256, h0: false, fin: false },
        Case { bsz: 8, l: 128, h: 16, p: 64, g: 1, n: 256, q: 256, h0: false, fin: true },
        Case { bsz: 4, l: 100, h: 8, p: 32, g: 2, n: 64, q: 128, h0: false, fin: false },
        // Short rows share a warp (P 32: two heads, P 16: four), and the last warp's heads run
        // past H when H is not a multiple.
        Case { bsz: 2, l: 300, h: 5, p: 32, g: 1, n: 16, q: 128, h0: true, fin: true },
        Case { bsz: 2, l: 200, h: 3, p: 16, g: 1, n: 16, q: 64, h0: false, fin: true },
        // P 6 takes the row kernels' 2 values a lane (not a multiple of 4), P 8 their 4 or 8.
        Case { bsz: 2, l: 150, h: 4, p: 6, g: 2, n: 16, q: 64, h0: true, fin: true },
        Case { bsz: 2, l: 150, h: 4, p: 8, g: 1, n: 16, q: 64, h0: true, fin: true },
    ]
}

/// Every case, fused vs tensor ops in `kind`: outputs, final states and all input gradients
/// within `tol` of `metric`.
fn compare_backends(kind: Kind, name: &str, metric: fn(&Tensor, &Tensor) -> f64, tol: f64) {
    let _one = serial();
    let dev = gpu();
    for c in cases() {
        let (y1, s1, g1) = run(&c, kind, dev, true);
        let (y2, s2, g2) = run(&c, kind, dev, false);
        let tag = format!("{name} L={} Q={} G={} h0={} final={}", c.l, c.q, c.g, c.h0, c.fin);
        assert!(metric(&y1, &y2) < tol, "y {tag}: {}", metric(&y1, &y2));
        assert!(metric(&s1, &s2) < tol, "state {tag}: {}", metric(&s1, &s2));
        assert!(!c.fin || s2.abs().max().double_value(&[]) > 1e-3, "state {tag} is not trivially zero");
        for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
            assert!(metric(a, b) < tol, "grad {i} {tag}: {}", metric(a, b));
        }
        eprintln!(
            "{tag}: y {:.2e} state {:.2e} grads {:?}",
            metric(&y1, &y2),
            metric(&s1, &s2),
            g1.iter().zip(&g2).map(|(a, b)| format!("{:.1e}", metric(a, b))).collect::<Vec<_>>()
        );
    }
}

fn fused_equals_tensor_ops_fp32() {
    compare_backends(Kind::Float, "fp32", max_rel, 1e-4);
}

fn fused_equals_tensor_ops_bf16() {
    compare_backends(Kind::BFloat16, "bf16", rel, 1e-2);
}

/// A whole model: logits and every parameter gradient, fused vs tensor (fp32 compute: in bf16
/// the two roundings of a whole model differ by ~2% on the small dt_bias gradients).
fn model_logits_and_gradients_agree() {
    let _one = serial();
    let dev = gpu();
    let mut cfg = MambaConfig::preset("small").unwrap();
    cfg.ssm_cfg.chunk_size = 128;
    let mut lm = Mamba2LM::seeded(&cfg, dev, 3).unwrap();
    let tokens = Tensor::randint(cfg.vocab_size, [4, 1000], (Kind::Int64, dev));
    let mut grads = Vec::new();
    let mut logits = Vec::new();
    for backend in [SsdBackend::Fused, SsdBackend::Tensor] {
        for (_, p) in lm.params().iter() {
            let _ = p.grad().f_zero_();
        }
        lm.set_ssd(backend).unwrap();
        let mut ex = Exec::new(Kind::Float);
        let out = lm.forward(&tokens, None, &mut ex);
        out.to_kind(Kind::Float).square().mean(Kind::Float).backward();
        logits.push(out.detach().to_kind(Kind::Float));
        grads.push(lm.params().iter().map(|(n, p)| (n.to_string(), p.grad().copy())).collect::<Vec<_>>());
    }
    assert!(rel(&logits[0], &logits[1]) < 1e-4, "logits {}", rel(&logits[0], &logits[1]));
    for ((name, a), (_, b)) in grads[0].iter().zip(&grads[1]) {
        assert!(rel(a, b) < 1e-3, "grad of {name}: {}", rel(a, b));
    }
    eprintln!("model: logits {:.2e}", rel(&logits[0], &logits[1]));
}

/// Streaming with carried state (evaluation): fused chunks reproduce the tensor path.
fn streaming_state_agrees() {
    let _one = serial();
    let dev = gpu();
    let cfg = MambaConfig::preset("tiny").unwrap();
    let mut lm = Mamba2LM::seeded(&cfg, dev, 4).unwrap();
    let tokens = Tensor::randint(cfg.vocab_size, [2, 3000], (Kind::Int64, dev));
    let mut outs = Vec::new();
    for backend in [SsdBackend::Fused, SsdBackend::Tensor] {
        let _g = tch::no_grad_guard();
        let mut st = lm.zero_state(2, Kind::Float);
        lm.set_ssd(backend).unwrap();
        let mut ex = Exec::new(Kind::Float);
        let parts: Vec<Tensor> = (0..3).map(|i| lm.forward(&tokens.narrow(1, i * 1000, 1000), Some(&mut st), &mut ex)).collect();
        outs.push(Tensor::cat(&parts, 1));
    }
    assert!(max_rel(&outs[0], &outs[1]) < 1e-4, "streamed logits {}", max_rel(&outs[0], &outs[1]));
}

/// A fused op's (output, input gradients) against its reference's: each within `tol` of `rel`.
/// Returns the figures for the log.
fn assert_close<const N: usize>(tag: &str, fused: (Tensor, [Tensor; N]), reference: (Tensor, [Tensor; N]), tol: f64) -> String {
    let ((o1, g1), (o2, g2)) = (fused, reference);
    assert!(rel(&o1, &o2) < tol, "out {tag}: {}", rel(&o1, &o2));
    for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
        assert!(rel(a, b) < tol, "grad {i} {tag}: {}", rel(a, b));
    }
    let grads: Vec<String> = g1.iter().zip(&g2).map(|(a, b)| format!("{:.1e}", rel(a, b))).collect();
    format!("out {:.1e} grads {grads:?}", rel(&o1, &o2))
}

/// The mixer's fused tail (D skip, gate, grouped RMSNorm) against its tensor ops: output and
/// the gradients of y, x, D, z and w, with x and z column slices of wider tensors (as in the
/// mixer), ngroups 1 and 2, fp32 and bf16.
fn gated_norm_equals_tensor_ops() {
    let _one = serial();
    let dev = gpu();
    if !dev.is_cuda() {
        return; // no tensor twin: the mixer takes the tensor ops on the CPU
    }
    // (heads, head dim, groups, shift): x and z start `shift` columns past a multiple of 4 (1: the
    // kernels' one column a slot; 0: four), groups of 128 to 4608 columns (two slots a thread).
    let cases = [(8, 32, 1, 0), (8, 32, 2, 0), (8, 32, 1, 1), (72, 64, 1, 0), (72, 64, 1, 1)];
    for (kind, tol) in [(Kind::Float, 1e-5), (Kind::BFloat16, 1e-2)] {
        for (h, p, groups, shift) in cases {
            tch::manual_seed(11);
            let (bsz, l) = (2, 333);
            let di = h * p;
            let o = (Kind::Float, dev);
            let leaf = |t: Tensor| t.detach().set_requires_grad(true);
            let y = leaf(Tensor::randn([bsz, l, di], o));
            let wide = leaf(Tensor::randn([bsz, l, 3 * di + 1], o).to_kind(kind)); // [.. | x | z]
            let d = leaf(Tensor::randn([h], o));
            let w = leaf(Tensor::rand([di], o) + 0.5);
            let wout = Tensor::randn([bsz, l, di], o);
            let run = |fused_path: bool| {
                for t in [&y, &wide, &d, &w] {
                    let _ = t.grad().f_zero_();
                }
                let (x, z) = (wide.narrow(2, di + shift, di), wide.narrow(2, 2 * di + shift, di));
                let out = if fused_path {
                    fused::gated_norm(&y, &x, &d, &z, &w, groups, p, 1e-5)
                } else {
                    let xd = (x.to_kind(Kind::Float).reshape([bsz, l, h, p]) * d.reshape([h, 1])).reshape([bsz, l, di]);
                    let g = (&y + xd) * z.to_kind(Kind::Float).silu();
                    let n = g.reshape([bsz, l, groups, di / groups]).rms_norm([di / groups], None::<Tensor>, 1e-5);
                    (n.reshape([bsz, l, di]) * &w).to_kind(kind)
                };
                (&out.to_kind(Kind::Float) * &wout).sum(Kind::Float).backward();
                (out.detach(), [&y, &wide, &d, &w].map(|t| t.grad().copy()))
            };
            let tag = format!("{kind:?} D={di} G={groups} shift {shift}");
            let figures = assert_close(&tag, run(true), run(false), tol);
            eprintln!("gated norm {tag}: {figures}");
        }
    }
}

/// in_proj's output split by `fused::split_columns`, its blocks read as in the mixer (z by the
/// fused gated norm, xBC by the fused conv, dt by tensor ops), whose backwards write their blocks
/// of the gradient in place: the input's gradient equals that of `split_with_sizes` (the same
/// kernels, so exactly), also where a block is read twice (autograd sums it elsewhere), where a
/// block has no gradient, and with the alignments of each load width (z's block 4 columns wide
/// or not).
fn split_columns_gradient_in_place() {
    let _one = serial();
    let dev = gpu();
    if !dev.is_cuda() {
        return;
    }
    // (heads, head dim, state) -> widths z Di | xBC Di + 2N | dt H.
    for (kind, (h, p, n)) in [(Kind::Float, (4, 8, 8)), (Kind::BFloat16, (4, 8, 8)), (Kind::BFloat16, (3, 6, 5)), (Kind::Float, (3, 6, 5))]
    {
        for variant in ["mixer", "xbc read twice", "dt unread"] {
            tch::manual_seed(17);
            let (bsz, l, di) = (2, 77, h * p);
            let widths = [di, di + 2 * n, h];
            let o = (Kind::Float, dev);
            let leaf = |t: Tensor| t.detach().set_requires_grad(true);
            let x = leaf(Tensor::randn([bsz, l, widths.iter().sum::<i64>()], o).to_kind(kind));
            let (cw, cb) = (leaf(Tensor::randn([di + 2 * n, 1, 4], o).to_kind(kind)), leaf(Tensor::randn([di + 2 * n], o).to_kind(kind)));
            let y = leaf(Tensor::randn([bsz, l, di], o));
            let (d, w) = (leaf(Tensor::randn([h], o)), leaf(Tensor::rand([di], o) + 0.5));
            let wout = Tensor::randn([bsz, l, di], o);
            let run = |in_place: bool| {
                for t in [&x, &cw, &cb, &y, &d, &w] {
                    let _ = t.grad().f_zero_();
                }
                let parts = if in_place { fused::split_columns(&x, &widths) } else { x.split_with_sizes(widths, -1) };
                let conv = fused::conv_silu_parts(&parts[1], &cw, &cb, None, &[di, n, n]);
                let out = fused::gated_norm(&y, &conv[0], &d, &parts[0], &w, 1, p, 1e-5);
                let mut loss = (&out.to_kind(Kind::Float) * &wout).sum(Kind::Float)
                    + (conv[1].to_kind(Kind::Float) * conv[2].to_kind(Kind::Float)).sum(Kind::Float);
                if variant != "dt unread" {
                    loss += parts[2].to_kind(Kind::Float).softplus().sum(Kind::Float);
                }
                if variant == "xbc read twice" {
                    loss += parts[1].to_kind(Kind::Float).square().sum(Kind::Float);
                }
                loss.backward();
                (out.detach(), [&x, &cw, &cb, &y, &d, &w].map(|t| t.grad().copy()))
            };
            let tag = format!("{kind:?} H={h} P={p} N={n} {variant}");
            let (a, b) = (run(true), run(false));
            assert!(rel(&a.0, &b.0) == 0.0, "out {tag}");
            for (i, (ga, gb)) in a.1.iter().zip(&b.1).enumerate() {
                assert!(rel(ga, gb) == 0.0, "grad {i} {tag}: {}", rel(ga, gb));
            }
            eprintln!("split {tag}: equal");
        }
    }
}

/// The fused causal conv + SiLU against conv1d: output and the gradients of x, w and bias (x a
/// column slice of a wider tensor), widths 3 and 4, fp32 and bf16, lengths shorter and longer
/// than the kernel's tile; and with a prefix (a state's conv buffer) outside autograd. The slices'
/// offsets and widths take each load width of the kernels: 4 channels a thread (C 300 at column
/// 8), 2 (column 10: aligned to 2 only) and 1 (C 301).
fn conv_silu_equals_conv1d() {
    let _one = serial();
    let dev = gpu();
    if !dev.is_cuda() {
        return;
    }
    let cases = [(4, 1000, 300, 8), (3, 37, 300, 8), (4, 2, 300, 8), (4, 1000, 300, 10), (4, 70, 301, 10)];
    for (kind, tol) in [(Kind::Float, 1e-5), (Kind::BFloat16, 1e-2)] {
        for (k, l, c, at) in cases {
            tch::manual_seed(12);
            let bsz = 2;
            let o = (Kind::Float, dev);
            let wide = Tensor::randn([bsz, l, c + 20], o).to_kind(kind).set_requires_grad(true);
            let w = (Tensor::randn([c, 1, k], o) * 0.5).to_kind(kind).set_requires_grad(true);
            let bias = (Tensor::randn([c], o) * 0.1).to_kind(kind).set_requires_grad(true);
            let wout = Tensor::randn([bsz, l, c], o);
            let reference = |x: &Tensor, pre: Option<&Tensor>| {
                let xt = x.transpose(1, 2);
                let conv = match pre {
                    Some(pre) => Tensor::cat(&[pre, &xt], -1).conv1d(&w, Some(&bias), [1], [0], [1], c),
                    None => xt.conv1d(&w, Some(&bias), [1], [k - 1], [1], c).narrow(-1, 0, l),
                };
                conv.silu().transpose(1, 2)
            };
            let run = |fused_path: bool| {
                for t in [&wide, &w, &bias] {
                    let _ = t.grad().f_zero_();
                }
                let x = wide.narrow(2, at, c);
                let out = if fused_path { fused::conv_silu(&x, &w, &bias, None) } else { reference(&x, None) };
                (&out.to_kind(Kind::Float) * &wout).sum(Kind::Float).backward();
                (out.detach(), [&wide, &w, &bias].map(|t| t.grad().copy()))
            };
            let tag = format!("{kind:?} K={k} L={l} C={c} at {at}");
            let figures = assert_close(&tag, run(true), run(false), tol);
            // In three parts (the mixer's x | B | C), the last one unread by the loss: the same
            // output, and the gradients of the whole with that part's weights zero.
            let widths = if c == 300 { [120, 100, 80] } else { [121, 100, 80] };
            let run_parts = |fused_path: bool| {
                for t in [&wide, &w, &bias] {
                    let _ = t.grad().f_zero_();
                }
                let x = wide.narrow(2, at, c);
                let (out, loss) = if fused_path {
                    let parts = fused::conv_silu_parts(&x, &w, &bias, None, &widths);
                    let wp = wout.split_with_sizes(widths, -1);
                    let loss = (&parts[0].to_kind(Kind::Float) * &wp[0]).sum(Kind::Float)
                        + (&parts[1].to_kind(Kind::Float) * &wp[1]).sum(Kind::Float);
                    (Tensor::cat(&parts, -1), loss)
                } else {
                    let out = reference(&x, None);
                    let mask = Tensor::cat(&[wout.narrow(2, 0, widths[0] + widths[1]), wout.narrow(2, 0, widths[2]).zeros_like()], -1);
                    let loss = (&out.to_kind(Kind::Float) * mask).sum(Kind::Float);
                    (out, loss)
                };
                loss.backward();
                (out.detach(), [&wide, &w, &bias].map(|t| t.grad().copy()))
            };
            let parts_figures = assert_close(&format!("{tag} in parts"), run_parts(true), run_parts(false), tol);
            eprintln!("conv {tag} in parts {widths:?}: {parts_figures}");
            let _g = tch::no_grad_guard();
            let pre = Tensor::randn([bsz, c, k - 1], o).to_kind(kind);
            let x = wide.narrow(2, at, c);
            let (p1, p2) = (fused::conv_silu(&x, &w, &bias, Some(&pre)), reference(&x, Some(&pre)));
            assert!(rel(&p1, &p2) < tol, "with a prefix {tag}: {}", rel(&p1, &p2));
            eprintln!("conv {tag}: {figures}, prefix {:.1e}", rel(&p1, &p2));
        }
    }
}

/// The residual stream's fused add + RMSNorm against lm.rs's tensor ops (r + delta in fp32,
/// rms_norm, cast): both outputs and the gradients of r, delta and w, with and without delta, the
/// new residual read further or not, rows of 1 to 1024 columns (1, 4 .. 32 columns a lane),
/// fp32 and bf16.
fn add_norm_equals_tensor_ops() {
    let _one = serial();
    let dev = gpu();
    if !dev.is_cuda() {
        return;
    }
    for (kind, tol) in [(Kind::Float, 1e-5), (Kind::BFloat16, 1e-2)] {
        for d in [1, 100, 102, 256, 512, 768, 1024] {
            for (with_delta, read_r) in [(true, true), (true, false), (false, false)] {
                tch::manual_seed(13);
                let (bsz, l) = (3, 217);
                let o = (Kind::Float, dev);
                let r = Tensor::randn([bsz, l, d], o).set_requires_grad(true);
                let delta = Tensor::randn([bsz, l, d], o).to_kind(kind).set_requires_grad(true);
                let w = (Tensor::rand([d], o) + 0.5).set_requires_grad(true);
                let (wout, wr) = (Tensor::randn([bsz, l, d], o), Tensor::randn([bsz, l, d], o));
                let run = |fused_path: bool| {
                    for t in [&r, &delta, &w] {
                        let _ = t.grad().f_zero_();
                    }
                    let dl = with_delta.then_some(&delta);
                    let (rn, out) = if fused_path {
                        fused::add_norm(&r, dl, &w, 1e-5, kind)
                    } else {
                        let rn = dl.map_or_else(|| r.shallow_clone(), |dl| &r + dl.to_kind(Kind::Float));
                        let out = rn.rms_norm([d], Some(&w), 1e-5).to_kind(kind);
                        (rn, out)
                    };
                    let mut loss = (&out.to_kind(Kind::Float) * &wout).sum(Kind::Float);
                    if read_r {
                        loss += (&rn * &wr).sum(Kind::Float);
                    }
                    loss.backward();
                    let grads = [&r, &delta, &w].map(|t| if t.grad().defined() { t.grad().copy() } else { t.zeros_like() });
                    (Tensor::cat(&[out.to_kind(Kind::Float), rn.detach()], -1), grads)
                };
                let tag = format!("{kind:?} D={d} delta={with_delta} r'={read_r}");
                let figures = assert_close(&tag, run(true), run(false), tol);
                eprintln!("add norm {tag}: {figures}");
            }
        }
    }
}

/// xdt = x * dt per head against the tensor ops (x a column slice of a wider tensor): output
/// and the gradients of x and dt, fp32 and bf16.
fn scale_heads_equals_tensor_ops() {
    let _one = serial();
    let dev = gpu();
    if !dev.is_cuda() {
        return;
    }
    // (P, column of x in its wider tensor): 4 values a lane at P 48 (16 lanes, 12 busy) and 64 (two
    // rows a warp), 1 where x starts off a multiple of 4.
    for (kind, tol) in [(Kind::Float, 1e-6), (Kind::BFloat16, 1e-2)] {
        for (p, at) in [(48, 8), (64, 8), (48, 9)] {
            tch::manual_seed(13);
            let (bsz, l, h) = (2, 301, 6);
            let o = (Kind::Float, dev);
            let wide = Tensor::randn([bsz, l, h * p + 16], o).to_kind(kind).set_requires_grad(true);
            let dt = (Tensor::rand([bsz, l, h], o) + 0.1).set_requires_grad(true);
            let wout = Tensor::randn([bsz, l, h, p], o);
            let run = |fused_path: bool| {
                for t in [&wide, &dt] {
                    let _ = t.grad().f_zero_();
                }
                let x = wide.narrow(2, at, h * p);
                let out = if fused_path {
                    fused::scale_heads(&x, &dt)
                } else {
                    (x.to_kind(Kind::Float).reshape([bsz, l, h, p]) * dt.unsqueeze(-1)).to_kind(kind)
                };
                (&out.to_kind(Kind::Float) * &wout).sum(Kind::Float).backward();
                (out.detach(), [&wide, &dt].map(|t| t.grad().copy()))
            };
            assert_close(&format!("{kind:?} P={p} at {at}"), run(true), run(false), tol);
        }
    }
}

/// The fused cross-entropy against log_softmax (fp32) + nll_loss: per-token losses and the
/// logits' gradient under per-token weights, with ignored targets, for a 50,280-token vocabulary
/// (8 values a load), 256 and 1,001 (not a multiple of 8: one value a load), fp32 and bf16.
fn cross_entropy_equals_tensor_ops() {
    let _one = serial();
    let dev = gpu();
    if !dev.is_cuda() {
        return;
    }
    const IGNORE: i64 = -100;
    for (kind, tol) in [(Kind::Float, 1e-5), (Kind::BFloat16, 1e-2)] {
        for (n, v) in [(300, 50_280), (257, 256), (100, 1_001)] {
            tch::manual_seed(14);
            let o = (Kind::Float, dev);
            let logits = (Tensor::randn([n, v], o) * 3.0).to_kind(kind).set_requires_grad(true);
            let targets = Tensor::randint(v, [n], (Kind::Int64, dev));
            let dropped = Tensor::rand([n], o).lt(0.2);
            let targets = targets.where_self(&dropped.logical_not(), &Tensor::full([n], IGNORE, (Kind::Int64, dev)));
            let wout = Tensor::rand([n], o);
            let run = |fused_path: bool| {
                let _ = logits.grad().f_zero_();
                let loss = if fused_path {
                    fused::cross_entropy(&logits, &targets, IGNORE)
                } else {
                    logits.log_softmax(-1, Kind::Float).g_nll_loss::<Tensor>(&targets, None, tch::Reduction::None, IGNORE)
                };
                (&loss * &wout).sum(Kind::Float).backward();
                (loss.detach(), [logits.grad().copy()])
            };
            let tag = format!("{kind:?} N={n} V={v}");
            let (f, r) = (run(true), run(false));
            assert_eq!(f.0.eq(0.0).logical_xor(&r.0.eq(0.0)).sum(Kind::Int64).int64_value(&[]), 0, "{tag}: ignored rows differ");
            let figures = assert_close(&tag, f, r, tol);
            eprintln!("cross entropy {tag}: {figures}");
        }
    }
}

/// Training steps replayed as one CUDA graph each (the first eager, the second captured) give
/// the eager steps' losses and parameters: a tiny model from one seed, 6 batches, a learning
/// rate that changes every step (read by the graph from the device), bf16.
fn graphed_steps_equal_eager_steps() {
    let _one = serial();
    let dev = gpu();
    let cfg = MambaConfig::preset("tiny").unwrap();
    tch::manual_seed(11);
    let batches: Vec<Batch> = (0..6)
        .map(|_| {
            let d = Tensor::randint(cfg.vocab_size, [8, 257], (Kind::Int64, dev));
            Batch { inputs: d.narrow(1, 0, 256), targets: d.narrow(1, 1, 256) }
        })
        .collect();
    let kind = Kind::BFloat16;
    let run = |graph: bool| {
        let lm = Mamba2LM::seeded(&cfg, dev, 5).unwrap().with_ssd(SsdBackend::Fused).unwrap();
        let mut opt = AdamW::new(lm.params(), AdamWConfig::default());
        let mut g = graph.then(|| GraphedStep::new(&lm, kind, 1.0).unwrap());
        let mut losses = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            let lr = 1e-3 * (i + 1) as f64;
            let r = match g.as_mut() {
                Some(g) => g.step(&lm, &mut opt, b, lr).unwrap(),
                None => train_step(&lm, &mut opt, b, None, kind, lr, 1.0, None),
            };
            losses.push(r.read());
        }
        let params: Vec<Tensor> = lm.params().iter().map(|(_, p)| p.detach().copy()).collect();
        (losses, params, opt.step)
    };
    let (l1, p1, s1) = run(true);
    let (l2, p2, s2) = run(false);
    assert_eq!(s1, s2, "optimizer steps");
    for (i, ((a, ga), (b, gb))) in l1.iter().zip(&l2).enumerate() {
        assert!((a - b).abs() <= 1e-4 * b.abs(), "loss of step {i}: graphed {a}, eager {b}");
        assert!((ga - gb).abs() <= 1e-3 * gb.abs(), "gradient norm of step {i}: graphed {ga}, eager {gb}");
    }
    for (a, b) in p1.iter().zip(&p2) {
        assert!(rel(a, b) < 1e-4, "parameters after 6 steps: {}", rel(a, b));
    }
    eprintln!(
        "graphed vs eager: losses {:?} / {:?}",
        l1.iter().map(|x| x.0).collect::<Vec<_>>(),
        l2.iter().map(|x| x.0).collect::<Vec<_>>()
    );
}
