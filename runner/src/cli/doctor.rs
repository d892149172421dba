//! `stuffed doctor`: what this machine offers the study (libtorch, CUDA, GPUs, bf16) and a real
//! tensor operation on every device.
use serde::Serialize;
use stuffed_model::cuda;
use tch::{Device, Kind, Tensor};

use super::Format;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Serialize)]
struct DeviceCheck {
    device: String,
    name: String,
    total_memory_gb: Option<f64>,
    total_memory_gib: Option<f64>,
    compute_capability: Option<String>,
    bf16: bool,
    tensor_op: String,
    /// Whether the fused SSD's CUDA kernels compile and load (GPUs only): "ok" or why not
    /// (`--ssd auto` then runs the tensor-op SSD).
    #[serde(skip_serializing_if = "Option::is_none")]
    fused_ssd: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    stuffed: String,
    libtorch: String,
    libtorch_lib_dir: String,
    built_with_cuda: bool,
    cuda_available: bool,
    cudnn_available: bool,
    gpu_count: usize,
    cpu_threads: i32,
    default_database: String,
    devices: Vec<DeviceCheck>,
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        let report = collect();
        match self.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            Format::Text => print_text(&report),
        }
        let failed = report.devices.iter().any(|d| d.tensor_op != "ok");
        Ok(if failed { crate::exit::DEVICE } else { crate::exit::OK })
    }
}

fn collect() -> Report {
    let gpu_count = cuda::device_count();
    let mut devices = vec![check_device(Device::Cpu, "cpu".into(), None)];
    for i in 0..gpu_count {
        let info = cuda::gpu_info(i).ok();
        let name = info.as_ref().map(|g| g.name.clone()).unwrap_or_else(|| "unknown GPU".into());
        devices.push(check_device(Device::Cuda(i), name, info));
    }
    Report {
        stuffed: crate::version::long_version().to_string(),
        libtorch: stuffed_model::LIBTORCH_VERSION.into(),
        libtorch_lib_dir: loaded_libtorch_dir().unwrap_or_else(|| crate::version::LIBTORCH_BUILD_DIR.into()),
        built_with_cuda: cuda::built_with_cuda(),
        cuda_available: tch::Cuda::is_available(),
        cudnn_available: tch::Cuda::cudnn_is_available(),
        gpu_count,
        cpu_threads: tch::get_num_threads(),
        default_database: crate::cli::default_db_path().display().to_string(),
        devices,
    }
}

/// A small matmul and reduction in fp32 (and bf16 where supported), checked against the
/// exact answer.
fn check_device(device: Device, name: String, info: Option<cuda::GpuInfo>) -> DeviceCheck {
    let op = |kind: Kind| -> Result<(), String> {
        let run = || -> Result<f64, tch::TchError> {
            let a = Tensor::f_ones([64, 64], (kind, device))?;
            let s = a.f_matmul(&a)?.f_sum(Kind::Float)?;
            s.f_double_value(&[])
        };
        match run() {
            Ok(v) if (v - 64.0 * 64.0 * 64.0).abs() < 1e-3 => Ok(()),
            Ok(v) => Err(format!("wrong result {v}")),
            Err(e) => Err(e.to_string().lines().next().unwrap_or("error").to_string()),
        }
    };
    let fp32 = op(Kind::Float);
    let bf16 = match &info {
        Some(g) => g.bf16_native() && op(Kind::BFloat16).is_ok(),
        None => op(Kind::BFloat16).is_ok(),
    };
    DeviceCheck {
        device: cuda::device_name(device),
        name,
        total_memory_gb: info.as_ref().map(|g| g.total_memory_bytes as f64 / 1e9),
        total_memory_gib: info.as_ref().map(|g| g.total_memory_bytes as f64 / (1u64 << 30) as f64),
        compute_capability: info.as_ref().map(|g| format!("{}.{}", g.compute_capability.0, g.compute_capability.1)),
        bf16,
        tensor_op: match fp32 {
            Ok(()) => "ok".into(),
            Err(e) => format!("failed: {e}"),
        },
        fused_ssd: device.is_cuda().then(|| match stuffed_model::ssd::fused::kernels_ready(device) {
            Ok(()) => "ok".into(),
            Err(e) => format!("unavailable: {e}"),
        }),
    }
}

/// Directory of the libtorch_cpu.so this process actually loaded (LD_LIBRARY_PATH may have
/// chosen another one than the build's rpath).
fn loaded_libtorch_dir() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| std::path::Path::new(p).parent().map(|d| d.display().to_string()))
}

fn print_text(r: &Report) {
    println!("stuffed        {}", r.stuffed);
    println!("libtorch       {} ({})", r.libtorch, r.libtorch_lib_dir);
    println!("CUDA build     {}", if r.built_with_cuda { "yes" } else { "no" });
    println!(
        "CUDA usable    {}{}",
        if r.cuda_available { "yes" } else { "no" },
        if r.cuda_available { "" } else { " (no GPU or driver: everything runs on the CPU)" }
    );
    println!("GPUs           {}", r.gpu_count);
    println!("CPU threads    {}", r.cpu_threads);
    println!("database       {}", r.default_database);
    for d in &r.devices {
        let mem = d.total_memory_gib.map(|g| format!(", {g:.1} GiB")).unwrap_or_default();
        let cc = d.compute_capability.as_ref().map(|c| format!(", sm {c}")).unwrap_or_default();
        println!("  {:<7} {}{}{}  bf16 {}  tensor op {}", d.device, d.name, mem, cc, if d.bf16 { "yes" } else { "no" }, d.tensor_op);
        if let Some(f) = &d.fused_ssd {
            println!("          fused SSD kernels {f}");
        }
    }
}
