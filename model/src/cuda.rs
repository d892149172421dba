//! CUDA facts tch does not expose: device names and memory (CUDA driver API, loaded at run
//! time), caching-allocator statistics and the current stream (the C++ shim in
//! `csrc/shim.cpp`), plus device selection.
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

use serde::Serialize;
use tch::Device;

use crate::{Error, Result};

extern "C" {
    fn stuffed_accel_mem_stats(
        dev: c_int,
        allocated: *mut u64,
        peak_allocated: *mut u64,
        reserved: *mut u64,
        peak_reserved: *mut u64,
    ) -> c_int;
    fn stuffed_accel_reset_peak(dev: c_int) -> c_int;
    fn stuffed_accel_empty_cache() -> c_int;
    fn stuffed_accel_mem_info(dev: c_int, free_bytes: *mut u64, total_bytes: *mut u64) -> c_int;
    fn stuffed_accel_current_stream(dev: c_int) -> u64;
}

/// Whether this process has libtorch_cuda loaded (linked with --no-as-needed when the build
/// found a CUDA libtorch), whether or not a GPU is present.
pub fn built_with_cuda() -> bool {
    std::fs::read_to_string("/proc/self/maps").map(|m| m.contains("/libtorch_cuda.so")).unwrap_or(false)
}

/// Number of usable CUDA devices (0 on a machine without GPU or driver).
pub fn device_count() -> usize {
    if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    }
}

/// Static properties of one GPU.
#[derive(Debug, Clone, Serialize)]
pub struct GpuInfo {
    pub index: usize,
    pub name: String,
    pub total_memory_bytes: u64,
    pub compute_capability: (i32, i32),
    pub multiprocessors: i32,
}

impl GpuInfo {
    /// bf16 tensor-core matmuls are native from compute capability 8.0 (Ampere) on.
    pub fn bf16_native(&self) -> bool {
        self.compute_capability.0 >= 8
    }
}

/// Properties from the CUDA driver API (libcuda.so.1, loaded at run time: libtorch has loaded
/// it already wherever a GPU is usable). Device `index` is the ordinal libtorch sees.
pub fn gpu_info(index: usize) -> Result<GpuInfo> {
    driver::props(index as c_int).ok_or_else(|| Error::Device(format!("cannot read the properties of cuda:{index}")))
}

mod driver {
    use super::*;
    type CuInit = unsafe extern "C" fn(c_int) -> c_int;
    type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
    type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
    const ATTR_MULTIPROCESSOR_COUNT: c_int = 16;
    const ATTR_CC_MAJOR: c_int = 75;
    const ATTR_CC_MINOR: c_int = 76;

    unsafe fn sym<T: Copy>(lib: *mut libc::c_void, name: &CStr) -> Option<T> {
        let p = libc::dlsym(lib, name.as_ptr());
        (!p.is_null()).then(|| std::mem::transmute_copy::<*mut libc::c_void, T>(&p))
    }

    pub fn props(index: c_int) -> Option<GpuInfo> {
        unsafe {
            let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
            if lib.is_null() {
                return None;
            }
            let init: CuInit = sym(lib, c"cuInit")?;
            let get: CuDeviceGet = sym(lib, c"cuDeviceGet")?;
            let get_name: CuDeviceGetName = sym(lib, c"cuDeviceGetName")?;
            let total_mem: CuDeviceTotalMem = sym(lib, c"cuDeviceTotalMem_v2")?;
            let attr: CuDeviceGetAttribute = sym(lib, c"cuDeviceGetAttribute")?;
            if init(0) != 0 {
                return None;
            }
            let mut dev = 0;
            if get(&mut dev, index) != 0 {
                return None;
            }
            let mut name = [0 as c_char; 256];
            let mut total = 0usize;
            let (mut major, mut minor, mut sms) = (0, 0, 0);
            let ok = get_name(name.as_mut_ptr(), name.len() as c_int, dev) == 0
                && total_mem(&mut total, dev) == 0
                && attr(&mut major, ATTR_CC_MAJOR, dev) == 0
                && attr(&mut minor, ATTR_CC_MINOR, dev) == 0
                && attr(&mut sms, ATTR_MULTIPROCESSOR_COUNT, dev) == 0;
            ok.then(|| GpuInfo {
                index: index as usize,
                name: CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned(),
                total_memory_bytes: total as u64,
                compute_capability: (major, minor),
                multiprocessors: sms,
            })
        }
    }
}

/// Caching-allocator statistics of one GPU, in bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MemStats {
    pub allocated: u64,
    pub peak_allocated: u64,
    pub reserved: u64,
    pub peak_reserved: u64,
}

pub fn mem_stats(device: Device) -> Option<MemStats> {
    let Device::Cuda(i) = device else { return None };
    let mut s = MemStats::default();
    let rc = unsafe { stuffed_accel_mem_stats(i as c_int, &mut s.allocated, &mut s.peak_allocated, &mut s.reserved, &mut s.peak_reserved) };
    (rc == 0).then_some(s)
}

pub fn reset_peak(device: Device) {
    if let Device::Cuda(i) = device {
        unsafe { stuffed_accel_reset_peak(i as c_int) };
    }
}

pub fn empty_cache() {
    if device_count() > 0 {
        unsafe { stuffed_accel_empty_cache() };
    }
}

/// (free, total) bytes of device memory as the driver reports them.
pub fn mem_info(device: Device) -> Option<(u64, u64)> {
    let Device::Cuda(i) = device else { return None };
    let (mut free, mut total) = (0u64, 0u64);
    let rc = unsafe { stuffed_accel_mem_info(i as c_int, &mut free, &mut total) };
    (rc == 0).then_some((free, total))
}

/// The raw `cudaStream_t` libtorch currently uses on `device` (0 when none).
pub fn current_stream(device: Device) -> u64 {
    match device {
        Device::Cuda(i) => unsafe { stuffed_accel_current_stream(i as c_int) },
        _ => 0,
    }
}

/// Peak bytes the process held on `device` since the last reset: the caching allocator's peak
/// on a GPU, the peak resident set size on the CPU.
pub fn peak_memory_bytes(device: Device) -> u64 {
    match mem_stats(device) {
        Some(s) => s.peak_allocated,
        None => peak_rss_bytes(),
    }
}

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Parses a device name: `auto` (first GPU if any, else CPU), `cpu`, `cuda`, `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "auto" => Ok(if device_count() > 0 { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => require_gpu(0),
        other => match other.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => require_gpu(i),
            None => Err(Error::Device(format!("unknown device '{other}': expected auto, cpu, cuda or cuda:N"))),
        },
    }
}

fn require_gpu(i: usize) -> Result<Device> {
    let n = device_count();
    if i < n {
        Ok(Device::Cuda(i))
    } else {
        Err(Error::Device(format!("cuda:{i} requested but {n} CUDA device(s) are usable here")))
    }
}

/// Checks the form of a device name without touching any device.
pub fn parse_device_syntax(s: &str) -> std::result::Result<(), String> {
    let ok = matches!(s, "auto" | "cpu" | "cuda" | "gpu") || s.strip_prefix("cuda:").is_some_and(|i| i.parse::<usize>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!("unknown device '{s}': expected auto, cpu, cuda or cuda:N"))
    }
}

/// Human name of a device (`cpu`, `cuda:0`).
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        _ => "cpu".into(),
    }
}

extern "C" {
    fn stuffed_graph_last_error() -> *const c_char;
    fn stuffed_graph_new(dev: c_int, out: *mut *mut libc::c_void) -> c_int;
    fn stuffed_graph_free(g: *mut libc::c_void);
    fn stuffed_graph_enter(g: *mut libc::c_void) -> c_int;
    fn stuffed_graph_leave(g: *mut libc::c_void) -> c_int;
    fn stuffed_graph_begin(g: *mut libc::c_void) -> c_int;
    fn stuffed_graph_end(g: *mut libc::c_void) -> c_int;
    fn stuffed_graph_replay(g: *mut libc::c_void) -> c_int;
    fn stuffed_grad_set_none(t: *mut torch_sys::C_tensor) -> c_int;
}

fn graph_call(rc: c_int, what: &str) -> Result<()> {
    match rc {
        0 => Ok(()),
        _ => Err(Error::Device(format!("CUDA graph {what}: {}", unsafe { CStr::from_ptr(stuffed_graph_last_error()) }.to_string_lossy()))),
    }
}

/// A CUDA graph (libtorch's `at::cuda::CUDAGraph`, with its private memory pool) and the side
/// stream it is captured on. Work run inside `on_side` or `capture` is ordered after the work
/// queued before and before the work queued after, as if it ran on the current stream.
pub struct Graph {
    raw: *mut libc::c_void,
    captured: bool,
}

impl Graph {
    pub fn new(device: Device) -> Result<Graph> {
        let Device::Cuda(index) = device else {
            return Err(Error::Device(format!("CUDA graphs need a CUDA device, not {device:?}")));
        };
        let mut raw = std::ptr::null_mut();
        graph_call(unsafe { stuffed_graph_new(index as c_int, &mut raw) }, "creation")?;
        Ok(Graph { raw, captured: false })
    }

    /// Runs `f` eagerly on the graph's stream (warm-up: the lazy initialisations a capture
    /// must not meet happen there).
    pub fn on_side<T>(&mut self, f: impl FnOnce() -> T) -> Result<T> {
        graph_call(unsafe { stuffed_graph_enter(self.raw) }, "stream")?;
        let out = Error::catch_panic(f);
        let left = graph_call(unsafe { stuffed_graph_leave(self.raw) }, "stream");
        let out = out.map_err(|e| Error::Device(format!("CUDA graph warm-up: {e}")))?;
        left.map(|()| out)
    }

    /// Captures the work `f` queues (run nothing: `replay` runs it). A panic inside `f`
    /// (an operation a capture does not allow) ends the capture and is returned as an error.
    pub fn capture<T>(&mut self, f: impl FnOnce() -> T) -> Result<T> {
        if self.captured {
            return Err(Error::Device("this CUDA graph is already captured".into()));
        }
        graph_call(unsafe { stuffed_graph_begin(self.raw) }, "capture")?;
        let out = Error::catch_panic(f);
        let ended = graph_call(unsafe { stuffed_graph_end(self.raw) }, "capture");
        let out = out.map_err(|e| Error::Device(format!("CUDA graph capture: {e}")))?;
        ended?;
        self.captured = true;
        Ok(out)
    }

    /// Runs the captured work on the current stream.
    pub fn replay(&self) -> Result<()> {
        if !self.captured {
            return Err(Error::Device("replay of a CUDA graph that was never captured".into()));
        }
        graph_call(unsafe { stuffed_graph_replay(self.raw) }, "replay")
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        unsafe { stuffed_graph_free(self.raw) }
    }
}

/// Sets the gradient of `t` to none (undefined), so that the next backward allocates it.
pub fn grad_set_none(t: &tch::Tensor) -> Result<()> {
    graph_call(unsafe { stuffed_grad_set_none(t.as_ptr() as *mut torch_sys::C_tensor) }, "gradient reset")
}
