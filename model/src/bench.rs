//! Throughput benchmarks behind `stuffed bench`: a full training step (forward, backward,
//! clip, AdamW) timed after warm-up, with model FLOPs, MFU and peak memory.
use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::config::MambaConfig;
use crate::cuda;
use crate::lm::Mamba2LM;
use crate::ssd::SsdBackend;
use crate::train::{train_step, AdamW, AdamWConfig, Batch, GraphedStep, StepResult};
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    /// SSD implementation: tensor or fused.
    pub ssd: String,
    /// Whether each step ran as one CUDA graph.
    pub graph: bool,
    pub batch: i64,
    pub seq: i64,
    pub steps: i64,
    pub precision: String,
    pub device: String,
    pub gpu: Option<String>,
    pub params: i64,
    pub tokens_per_s: f64,
    pub step_ms: f64,
    /// Model FLOPs (3 x forward) per second, in TFLOP/s.
    pub model_tflops: f64,
    /// Model FLOPs utilisation against the GPU's dense bf16 peak, when known.
    pub mfu: Option<f64>,
    /// Peak device memory of the timed steps (a graphed run: from its start, see `train`).
    pub peak_memory_gb: f64,
    pub final_loss: f64,
    /// Where a step's time goes (ms, each phase timed on its own with device syncs): forward
    /// with the loss, backward, optimizer (clip + AdamW); and the SSD's share of forward +
    /// backward (all layers, the layer shapes on random inputs).
    pub phases_ms: Phases,
    /// The timed steps' start and end (seconds since the Unix epoch): packed runs add up over
    /// the span their windows share.
    pub window: (f64, f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct Phases {
    pub forward: f64,
    pub backward: f64,
    pub optimizer: f64,
    pub ssd: f64,
}

/// Mean ms of `f` over `n` runs, after one untimed run.
fn time_ms(device: Device, n: i64, mut f: impl FnMut()) -> f64 {
    f();
    synchronize(device);
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    synchronize(device);
    start.elapsed().as_secs_f64() * 1000.0 / n as f64
}

/// The step's phases (see `Phases`).
fn phases(lm: &Mamba2LM, cfg: &MambaConfig, b: &Batch, step_ms: f64, device: Device, kind: Kind) -> Phases {
    let n = 3;
    let forward = time_ms(device, n, || {
        let _ = crate::train::step::batch_loss(lm, b, None, kind);
    });
    let fwd_bwd = time_ms(device, n, || {
        crate::train::step::batch_loss(lm, b, None, kind).backward();
    });
    let (bsz, l) = (b.inputs.size()[0], b.inputs.size()[1]);
    let (h, p, g, nst) = (cfg.nheads(), cfg.headdim(), cfg.ngroups(), cfg.d_state());
    let o = (Kind::Float, device);
    let leaf = |t: Tensor| t.to_kind(kind).set_requires_grad(true);
    let xdt = leaf(Tensor::randn([bsz, l, h, p], o) * 0.1);
    let la = (-(Tensor::rand([bsz, l, h], o) * 0.1)).set_requires_grad(true);
    let bb = leaf(Tensor::randn([bsz, l, g, nst], o));
    let cc = leaf(Tensor::randn([bsz, l, g, nst], o));
    let backend = lm.ssd();
    let ssd = time_ms(device, n, || {
        let (y, _) = crate::ssd::ssd(backend, &xdt, &la, &bb, &cc, cfg.ssm_cfg.chunk_size, None, false);
        y.sum(Kind::Float).backward();
    }) * cfg.n_layer as f64;
    Phases { forward, backward: (fwd_bwd - forward).max(0.0), optimizer: (step_ms - fwd_bwd).max(0.0), ssd }
}

/// Dense bf16 tensor-core peak of known GPUs (datasheet, FLOP/s).
pub fn bf16_peak_flops(gpu_name: &str) -> Option<f64> {
    let n = gpu_name.to_ascii_uppercase();
    [("H200", 989e12), ("H100", 989e12), ("GH200", 989e12), ("A100", 312e12), ("L40S", 362e12), ("A10", 125e12), ("4090", 165e12)]
        .iter()
        .find(|(k, _)| n.contains(k))
        .map(|(_, v)| *v)
}

/// The device's achievable memory bandwidth by libtorch's own copy (GB/s, bytes read plus
/// written): 512 MiB of bf16 copied 10 times after 2 untimed copies, the best of 3 such timings.
/// The yardstick for the memory-bound kernels' figures in the same run; None off CUDA.
pub fn copy_bandwidth(device: Device) -> Option<f64> {
    if !device.is_cuda() {
        return None;
    }
    let _g = tch::no_grad_guard();
    let src = Tensor::ones([256 << 20], (Kind::BFloat16, device));
    let mut dst = Tensor::empty([256 << 20], (Kind::BFloat16, device));
    let bytes = 2.0 * 2.0 * (256u64 << 20) as f64;
    for _ in 0..2 {
        dst.copy_(&src);
    }
    let mut best = 0f64;
    for _ in 0..3 {
        synchronize(device);
        let t = Instant::now();
        for _ in 0..10 {
            dst.copy_(&src);
        }
        synchronize(device);
        best = best.max(10.0 * bytes / t.elapsed().as_secs_f64() / 1e9);
    }
    Some(best)
}

pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

extern "C" {
    fn stuffed_profile_start(cuda: std::ffi::c_int) -> std::ffi::c_int;
    fn stuffed_profile_stop(path: *const std::ffi::c_char) -> std::ffi::c_int;
    fn stuffed_profile_last_error() -> *const std::ffi::c_char;
    fn stuffed_kernels_start() -> std::ffi::c_int;
    fn stuffed_kernels_stop(path: *const std::ffi::c_char) -> std::ffi::c_int;
}

/// Runs `f` between a profiler's `start` and `stop` (which writes its summary to `path`),
/// with the device synchronised on both sides; `what` names the profiler in errors.
fn profiled(
    device: Device,
    path: &std::path::Path,
    what: &str,
    start: impl FnOnce() -> std::ffi::c_int,
    stop: unsafe extern "C" fn(*const std::ffi::c_char) -> std::ffi::c_int,
    f: impl FnOnce(),
) -> Result<()> {
    let err = || unsafe { std::ffi::CStr::from_ptr(stuffed_profile_last_error()).to_string_lossy().into_owned() };
    synchronize(device);
    if start() != 0 {
        return Err(crate::Error::Device(format!("{what}: {}", err())));
    }
    f();
    synchronize(device);
    let c = std::ffi::CString::new(path.to_string_lossy().as_bytes()).map_err(|e| crate::Error::at(path, e.to_string()))?;
    if unsafe { stop(c.as_ptr()) } != 0 {
        return Err(crate::Error::at(path, format!("{what}: {}", err())));
    }
    Ok(())
}

/// Runs `f` under Kineto (CUPTI) on a GPU and writes the device time of every kernel to `path`
/// as TSV: kernel, calls, device_ms, sorted by device time (the fused SSD's kernels included).
pub fn kernel_profile(device: Device, path: &std::path::Path, f: impl FnOnce()) -> Result<()> {
    profiled(device, path, "kernel profiler", || unsafe { stuffed_kernels_start() }, stuffed_kernels_stop, f)
}

/// Runs `f` under libtorch's profiler (device time of every op via CUDA events on a GPU) and
/// writes the per-operator summary to `path` as TSV: name, calls, device_ms, self_device_ms,
/// host_ms, sorted by self device time.
pub fn profile(device: Device, path: &std::path::Path, f: impl FnOnce()) -> Result<()> {
    profiled(device, path, "profiler", || unsafe { stuffed_profile_start(device.is_cuda() as std::ffi::c_int) }, stuffed_profile_stop, f)
}

/// The shape of a timed training run: `batch` x `seq` tokens per step, `steps` timed after
/// `warmup` untimed ones.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TrainShape {
    pub batch: i64,
    pub seq: i64,
    pub steps: i64,
    pub warmup: i64,
}

/// How a timed training run is driven, beyond its shape.
#[derive(Debug, Default, Clone)]
pub struct TrainOpts {
    /// Also profile two more steps and write the per-operator summary there (and, on a GPU,
    /// the per-kernel one beside it: the same name with `.kernels.tsv`).
    pub profile_to: Option<std::path::PathBuf>,
    /// Wait until this time after the warm-up, so that packed runs time the same window.
    pub start_at: Option<std::time::SystemTime>,
    /// Run every step as one CUDA graph (`train::GraphedStep`), the warm-up's first step
    /// eagerly: the trainer's `train.cuda_graph`.
    pub graph: bool,
}

/// Seconds since the Unix epoch.
fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Times `shape.steps` training steps after `shape.warmup` steps on random tokens, with SSD
/// backend `ssd`.
pub fn train(cfg: &MambaConfig, shape: TrainShape, device: Device, kind: Kind, ssd: SsdBackend, opts: &TrainOpts) -> Result<TrainBench> {
    let TrainShape { batch, seq, steps, warmup } = shape;
    let lm = Mamba2LM::seeded(cfg, device, 0)?.with_ssd(ssd)?;
    let ssd = lm.ssd();
    let mut opt = AdamW::new(lm.params(), AdamWConfig::default());
    let vocab = cfg.vocab_size;
    let data = Tensor::randint(vocab, [batch, seq + 1], (Kind::Int64, device));
    let b = Batch { inputs: data.narrow(1, 0, seq), targets: data.narrow(1, 1, seq) };
    let mut graphed = if opts.graph { Some(GraphedStep::new(&lm, kind, 1.0)?) } else { None };
    let mut step = |opt: &mut AdamW| -> Result<StepResult> {
        match graphed.as_mut() {
            Some(g) => g.step(&lm, opt, &b, 1e-4),
            None => Ok(train_step(&lm, opt, &b, None, kind, 1e-4, 1.0, None)),
        }
    };
    let mut loss = 0.0;
    // A graphed run captures on its second step: at least two warm-up steps.
    for _ in 0..if opts.graph { warmup.max(2) } else { warmup } {
        loss = step(&mut opt)?.read().0;
    }
    synchronize(device);
    // A graphed run's memory is mostly its graph's pool, allocated at the capture: its peak is
    // counted from the start (the eager warm-up step included), an eager run's from here.
    if !opts.graph {
        cuda::reset_peak(device);
    }
    if let Some(at) = opts.start_at {
        if let Ok(wait) = at.duration_since(std::time::SystemTime::now()) {
            std::thread::sleep(wait);
        }
    }
    let window_start = unix_now();
    let start = Instant::now();
    let mut last = None;
    for _ in 0..steps {
        last = Some(step(&mut opt)?);
    }
    if let Some(r) = last {
        loss = r.read().0;
    }
    synchronize(device);
    let secs = start.elapsed().as_secs_f64();
    let window = (window_start, window_start + secs);
    let peak_memory_gb = cuda::peak_memory_bytes(device) as f64 / 1e9;
    let phases_ms = phases(&lm, cfg, &b, secs * 1000.0 / steps as f64, device, kind);
    if let Some(path) = &opts.profile_to {
        let mut two_steps = || {
            for _ in 0..2 {
                train_step(&lm, &mut opt, &b, None, kind, 1e-4, 1.0, None);
            }
        };
        profile(device, path, &mut two_steps)?;
        if device.is_cuda() {
            kernel_profile(device, &path.with_extension("kernels.tsv"), two_steps)?;
        }
    }
    let tokens = (batch * seq * steps) as f64;
    let tokens_per_s = tokens / secs;
    let flops = 3.0 * cfg.flops_per_token() * tokens_per_s;
    let gpu = match device {
        Device::Cuda(i) => cuda::gpu_info(i).ok().map(|g| g.name),
        _ => None,
    };
    Ok(TrainBench {
        ssd: ssd.name().into(),
        graph: opts.graph,
        batch,
        seq,
        steps,
        precision: if kind == Kind::BFloat16 { "bf16".into() } else { "fp32".into() },
        device: cuda::device_name(device),
        mfu: gpu.as_deref().and_then(bf16_peak_flops).map(|p| flops / p),
        gpu,
        params: lm.params().numel(),
        tokens_per_s,
        step_ms: secs * 1000.0 / steps as f64,
        model_tflops: flops / 1e12,
        peak_memory_gb,
        final_loss: loss,
        phases_ms,
        window,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalBench {
    /// SSD implementation: tensor or fused.
    pub ssd: String,
    pub len: i64,
    pub batch: i64,
    pub chunk: i64,
    pub precision: String,
    pub device: String,
    pub gpu: Option<String>,
    pub tokens_per_s: f64,
    pub wall_s: f64,
    pub peak_memory_gb: f64,
    pub mean_loss: f64,
}

/// Streaming loss-by-position over `len` random tokens per sequence (memory bounded by the
/// chunk), timed end to end, with SSD backend `ssd`.
pub fn eval(cfg: &MambaConfig, len: i64, batch: i64, chunk: i64, device: Device, kind: Kind, ssd: SsdBackend) -> Result<EvalBench> {
    let lm = Mamba2LM::seeded(cfg, device, 0)?.with_ssd(ssd)?;
    let ssd = lm.ssd();
    let mut rng = crate::rng::Rng::new(1);
    let prompts: Vec<Vec<u32>> = (0..batch).map(|_| (0..=len).map(|_| rng.below(cfg.vocab_size as u64) as u32).collect()).collect();
    let ev = crate::eval::LossEval {
        chunk,
        bucket: 4096,
        batch: batch as usize,
        train_len: None,
        kind,
        mitigation: crate::eval::Mitigation::None,
        per_token: false,
        probe: false,
    };
    // Warm-up on a short input (kernel selection, allocator).
    let short: Vec<Vec<u32>> = prompts.iter().map(|p| p[..(chunk as usize + 1).min(p.len())].to_vec()).collect();
    crate::eval::loss::run(&lm, &short, &ev)?;
    synchronize(device);
    cuda::reset_peak(device);
    let c = crate::eval::loss::run(&lm, &prompts, &ev)?;
    synchronize(device);
    let gpu = match device {
        Device::Cuda(i) => cuda::gpu_info(i).ok().map(|g| g.name),
        _ => None,
    };
    Ok(EvalBench {
        ssd: ssd.name().into(),
        len,
        batch,
        chunk,
        precision: if kind == Kind::BFloat16 { "bf16".into() } else { "fp32".into() },
        device: cuda::device_name(device),
        gpu,
        tokens_per_s: c.tokens_per_s,
        wall_s: c.wall_s,
        peak_memory_gb: cuda::peak_memory_bytes(device) as f64 / 1e9,
        mean_loss: c.mean_loss,
    })
}
