// The fused SSD's two C++ pieces:
//  1. A libtorch autograd Function whose forward and backward are supplied by Rust
//     (stuffed-model's `ssd::fused`), so the SSD is one node of the graph: nothing of its
//     inside is saved for backward except its inputs, and backward recomputes what it needs.
//  2. CUDA kernels (csrc/kernels/*.cu, embedded by build.rs in ssd_kernels.h), compiled at
//     first use with NVRTC and launched on libtorch's current stream:
//     the SSD's Q x Q decay blocks (the masked exp(cumsum_l - cumsum_s) products), its
//     elementwise stages around the chunk matmuls and its state passing; and the mixer's conv +
//     SiLU, x * dt and gated RMSNorm, each with its own autograd Function (3.-5. below).
//     libcuda and libnvrtc are loaded with dlopen: nothing here needs CUDA headers, and a
//     CPU-only machine never touches them.
// Every extern "C" entry point catches C++ exceptions and returns non-zero on failure, with
// the message available from stuffed_ssd_last_error() on the same thread.
#include <dirent.h>
#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/DeviceAccelerator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/csrc/autograd/custom_function.h>

#include "ssd_kernels.h"

namespace {

thread_local std::string g_err;

// ---------------------------------------------------------------------------------------------
// 1. Autograd Function with Rust callbacks.
//    Forward inputs:  xdt, la, b, c, h0 (null when absent); outputs y, final state (a 0-element
//    placeholder when not wanted). Unused outputs' gradients reach backward undefined (null),
//    not as zeros.
//    Backward inputs: xdt, la, b, c, h0, dy, dfinal (each null when absent/undefined);
//    outputs dxdt, dla, db, dc, dh0 (null for none).
// Pointers handed to Rust are borrowed; pointers handed back are owned (allocated by tch).
using Callback = int (*)(at::Tensor* const* in, int64_t chunk, int64_t want_final, at::Tensor** out);
Callback g_fwd = nullptr;
Callback g_bwd = nullptr;

at::Tensor take(at::Tensor* p) {
  if (p == nullptr) return at::Tensor();
  at::Tensor t = std::move(*p);
  delete p;
  return t;
}

at::Tensor* borrow(at::Tensor& t) { return t.defined() ? &t : nullptr; }

// The initial state: a 0-element placeholder stands for "none" (autograd's apply wants defined
// tensor inputs).
at::Tensor* borrow_h0(at::Tensor& t) { return t.defined() && t.numel() > 0 ? &t : nullptr; }

struct SsdFunction : public torch::autograd::Function<SsdFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor xdt,
                                                at::Tensor la, at::Tensor b, at::Tensor c, at::Tensor h0,
                                                int64_t chunk, int64_t want_final) {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({xdt, la, b, c, h0});
    ctx->saved_data["chunk"] = chunk;
    at::Tensor* in[5] = {&xdt, &la, &b, &c, borrow_h0(h0)};
    at::Tensor* out[2] = {nullptr, nullptr};
    if (g_fwd == nullptr || g_fwd(in, chunk, want_final, out) != 0) {
      throw std::runtime_error("fused SSD forward failed: " + g_err);
    }
    return {take(out[0]), take(out[1])};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    int64_t chunk = ctx->saved_data["chunk"].toInt();
    at::Tensor dy = grads[0], dfinal = grads[1];
    at::Tensor* in[7] = {&saved[0], &saved[1], &saved[2], &saved[3], borrow_h0(saved[4]), borrow(dy), borrow(dfinal)};
    at::Tensor* out[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
    if (g_bwd == nullptr || g_bwd(in, chunk, 1, out) != 0) {
      throw std::runtime_error("fused SSD backward failed: " + g_err);
    }
    return {take(out[0]), take(out[1]), take(out[2]), take(out[3]), take(out[4]), at::Tensor(), at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------
// 2. CUDA driver + NVRTC through dlopen.
using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
using CUmodule = void*;
using CUfunction = void*;
using CUstream = void*;
using nvrtcResult = int;
using nvrtcProgram = void*;

struct Api {
  CUresult (*cuInit)(unsigned) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*cuModuleLoadData)(CUmodule*, const void*) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             CUstream, void**, void**) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char**) = nullptr;
  // Blocks of a kernel resident on one multiprocessor: optional (grids sized by rule without it).
  CUresult (*cuOccupancyMaxActiveBlocksPerMultiprocessor)(int*, CUfunction, int, size_t) = nullptr;
  // Kernel timing (STUFFED_KERNEL_TIMES): optional, looked up without failing.
  CUresult (*cuEventCreate)(void**, unsigned) = nullptr;
  CUresult (*cuEventRecord)(void*, CUstream) = nullptr;
  CUresult (*cuEventSynchronize)(void*) = nullptr;
  CUresult (*cuEventElapsedTime)(float*, void*, void*) = nullptr;
};

struct Nvrtc {
  nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram*, const char*, const char*, int, const char* const*,
                                    const char* const*) = nullptr;
  nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int, const char* const*) = nullptr;
  nvrtcResult (*nvrtcGetPTXSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*nvrtcGetPTX)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram*) = nullptr;
};

template <typename F>
void sym(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  if (f == nullptr) throw std::runtime_error(std::string("symbol ") + name + " not found");
}

// libnvrtc: by soname (LD_LIBRARY_PATH), else beside the torch wheel (site-packages/nvidia/cu13/lib
// or cu12), found from where libc10 itself was loaded (a function defined in libc10, not an inline
// one of the headers: dladdr of that would name this binary). NVRTC opens its builtins library by
// soname at compile time, which only the library path finds: when loading by path, the builtins
// beside it are loaded first (RTLD_GLOBAL), so that lookup finds them already loaded.
void* open_by_path(const std::string& dir, const std::string& name) {
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string f = e->d_name;
      if (f.rfind("libnvrtc-builtins.so.", 0) == 0) dlopen((dir + "/" + f).c_str(), RTLD_NOW | RTLD_GLOBAL);
    }
    closedir(d);
  }
  return dlopen((dir + "/" + name).c_str(), RTLD_NOW | RTLD_GLOBAL);
}

void* open_nvrtc() {
  const char* names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
  for (const char* n : names) {
    if (void* h = dlopen(n, RTLD_NOW | RTLD_GLOBAL)) return h;
  }
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&c10::GetCPUAllocator), &info) != 0 && info.dli_fname) {
    std::string torch_lib(info.dli_fname);
    torch_lib = torch_lib.substr(0, torch_lib.rfind('/'));  // .../site-packages/torch/lib
    std::string site = torch_lib + "/../..";
    const std::pair<const char*, const char*> rel[] = {{"/nvidia/cu13/lib", "libnvrtc.so.13"},
                                                       {"/nvidia/cuda_nvrtc/lib", "libnvrtc.so.12"},
                                                       {"/nvidia/cu12/lib", "libnvrtc.so.12"}};
    for (const auto& [dir, name] : rel) {
      if (void* h = open_by_path(site + dir, name)) return h;
    }
  }
  throw std::runtime_error("libnvrtc not found (looked for libnvrtc.so.13/.12 on the library path and beside torch)");
}

Api& api() {
  static Api a;
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    try {
      void* cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
      if (cu == nullptr) throw std::runtime_error("libcuda.so.1 not found");
      sym(cu, "cuInit", a.cuInit);
      sym(cu, "cuDeviceGet", a.cuDeviceGet);
      sym(cu, "cuDeviceGetAttribute", a.cuDeviceGetAttribute);
      sym(cu, "cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain);
      sym(cu, "cuCtxSetCurrent", a.cuCtxSetCurrent);
      sym(cu, "cuModuleLoadData", a.cuModuleLoadData);
      sym(cu, "cuModuleGetFunction", a.cuModuleGetFunction);
      sym(cu, "cuLaunchKernel", a.cuLaunchKernel);
      sym(cu, "cuGetErrorString", a.cuGetErrorString);
      a.cuOccupancyMaxActiveBlocksPerMultiprocessor = reinterpret_cast<decltype(a.cuOccupancyMaxActiveBlocksPerMultiprocessor)>(
          dlsym(cu, "cuOccupancyMaxActiveBlocksPerMultiprocessor"));
      a.cuEventCreate = reinterpret_cast<decltype(a.cuEventCreate)>(dlsym(cu, "cuEventCreate"));
      a.cuEventRecord = reinterpret_cast<decltype(a.cuEventRecord)>(dlsym(cu, "cuEventRecord"));
      a.cuEventSynchronize = reinterpret_cast<decltype(a.cuEventSynchronize)>(dlsym(cu, "cuEventSynchronize"));
      void* elapsed = dlsym(cu, "cuEventElapsedTime_v2");
      if (elapsed == nullptr) elapsed = dlsym(cu, "cuEventElapsedTime");
      a.cuEventElapsedTime = reinterpret_cast<decltype(a.cuEventElapsedTime)>(elapsed);
      if (a.cuInit(0) != 0) throw std::runtime_error("cuInit failed");
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throw std::runtime_error(failure);
  return a;
}

// NVRTC alone (no driver, no GPU): enough to compile the kernels to PTX.
Nvrtc& nvrtc() {
  static Nvrtc a;
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    try {
      void* rt = open_nvrtc();
      sym(rt, "nvrtcCreateProgram", a.nvrtcCreateProgram);
      sym(rt, "nvrtcCompileProgram", a.nvrtcCompileProgram);
      sym(rt, "nvrtcGetPTXSize", a.nvrtcGetPTXSize);
      sym(rt, "nvrtcGetPTX", a.nvrtcGetPTX);
      sym(rt, "nvrtcGetProgramLogSize", a.nvrtcGetProgramLogSize);
      sym(rt, "nvrtcGetProgramLog", a.nvrtcGetProgramLog);
      sym(rt, "nvrtcDestroyProgram", a.nvrtcDestroyProgram);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throw std::runtime_error(failure);
  return a;
}

void check(CUresult r, const char* what) {
  if (r == 0) return;
  const char* s = "unknown error";
  api().cuGetErrorString(r, &s);
  throw std::runtime_error(std::string(what) + ": " + s);
}

// The causal conv kernels exist for these widths (d_conv); others take the tensor path.
constexpr int kConvWidths[] = {2, 3, 4};

struct Module {
  std::map<std::string, CUfunction> fns;
  int sms = 1;  // multiprocessors
};

std::mutex g_mods_mu;
std::map<int, Module> g_mods;  // per device index

// STUFFED_KERNEL_DEFINES="-DNAME=VALUE ..": the kernels' tuning macros (GNORM_BWD_REGS, ..) and
// the launch choices read by `tuned` (CONV_VEC, ROWS_VEC, ..), set for an A/B measurement in one
// process; a measuring aid like STUFFED_KERNEL_TIMES. Only -D options of [A-Za-z0-9_=] are taken.
std::vector<std::string> kernel_defines() {
  std::vector<std::string> defines;
  if (const char* env = std::getenv("STUFFED_KERNEL_DEFINES")) {
    std::string all(env), tok;
    for (size_t i = 0; i <= all.size(); ++i) {
      if (i < all.size() && all[i] != ' ') {
        tok += all[i];
        continue;
      }
      if (tok.empty()) continue;
      bool ok = tok.size() > 2 && tok.compare(0, 2, "-D") == 0 && tok.size() < 64;
      for (size_t j = 2; ok && j < tok.size(); ++j) ok = std::isalnum((unsigned char)tok[j]) || tok[j] == '_' || tok[j] == '=';
      if (!ok) throw std::runtime_error("STUFFED_KERNEL_DEFINES: '" + tok + "' is not -DNAME or -DNAME=VALUE");
      defines.push_back(tok);
      tok.clear();
    }
  }
  return defines;
}

// A launch choice: `dflt`, or the value of -DNAME=VALUE in STUFFED_KERNEL_DEFINES, which must be
// one of `allowed`.
int tuned(const std::string& name, int dflt, std::initializer_list<int> allowed) {
  std::string key = "-D" + name + "=";
  for (const auto& d : kernel_defines()) {
    if (d.compare(0, key.size(), key) != 0) continue;
    std::string v = d.substr(key.size());
    for (int a : allowed) {
      if (v == std::to_string(a)) return a;
    }
    throw std::runtime_error("STUFFED_KERNEL_DEFINES: " + name + "=" + v + " is not one of the allowed values");
  }
  return dflt;
}

// The PTX of every kernel (csrc/kernels: one program, the .cu files including their headers) for
// compute capability major.minor.
std::string compile_ptx(int major, int minor) {
  Nvrtc& a = nvrtc();
  nvrtcProgram prog = nullptr;
  namespace k = stuffed_kernels;
  if (a.nvrtcCreateProgram(&prog, k::kMain, "stuffed_ssd.cu", k::kFiles, k::kFileTexts, k::kFileNames) != 0) {
    throw std::runtime_error("nvrtcCreateProgram failed");
  }
  std::string arch = "--gpu-architecture=compute_" + std::to_string(major) + std::to_string(minor);
  std::vector<const char*> opts = {arch.c_str(), "--std=c++17", "-default-device"};
  std::vector<std::string> defines = kernel_defines();
  for (auto& d : defines) opts.push_back(d.c_str());
  nvrtcResult r = a.nvrtcCompileProgram(prog, (int)opts.size(), opts.data());
  size_t log_size = 0;
  a.nvrtcGetProgramLogSize(prog, &log_size);
  std::string log(log_size, '\0');
  if (log_size > 1) a.nvrtcGetProgramLog(prog, log.data());
  if (r != 0) {
    a.nvrtcDestroyProgram(&prog);
    throw std::runtime_error("NVRTC compilation of the SSD kernels failed (" + arch + "): " + log);
  }
  size_t n = 0;
  a.nvrtcGetPTXSize(prog, &n);
  std::string ptx(n, '\0');
  a.nvrtcGetPTX(prog, ptx.data());
  a.nvrtcDestroyProgram(&prog);
  return ptx;
}

// Binds the device's primary context (the one libtorch uses) to this thread, compiling and
// loading the module on first use on that device.
Module& module_for(int dev) {
  Api& a = api();
  CUdevice d = 0;
  check(a.cuDeviceGet(&d, dev), "cuDeviceGet");
  CUcontext ctx = nullptr;
  check(a.cuDevicePrimaryCtxRetain(&ctx, d), "cuDevicePrimaryCtxRetain");
  check(a.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  std::lock_guard<std::mutex> lock(g_mods_mu);
  auto it = g_mods.find(dev);
  if (it != g_mods.end()) return it->second;
  int major = 0, minor = 0;
  check(a.cuDeviceGetAttribute(&major, 75, d), "compute capability");
  check(a.cuDeviceGetAttribute(&minor, 76, d), "compute capability");
  std::string ptx = compile_ptx(major, minor);
  CUmodule mod = nullptr;
  check(a.cuModuleLoadData(&mod, ptx.data()), "cuModuleLoadData");
  Module m;
  check(a.cuDeviceGetAttribute(&m.sms, 16, d), "multiprocessor count");
  for (const char* k : stuffed_kernels::kKernels) {
    CUfunction f = nullptr;
    check(a.cuModuleGetFunction(&f, mod, k), k);
    m.fns[k] = f;
  }
  return g_mods.emplace(dev, std::move(m)).first->second;
}

struct Grid {
  unsigned x, y = 1, z = 1;
};

// Launches `kernel` on the current stream of `like`'s device.
// With STUFFED_KERNEL_TIMES set, every launch is timed with events (serialising the stream) and
// the totals per kernel are printed to stderr at exit: a measuring aid, not for production runs.
struct KernelTimes {
  bool on = std::getenv("STUFFED_KERNEL_TIMES") != nullptr;
  std::mutex mu;
  std::map<std::string, std::pair<long, double>> totals;  // calls, ms
  void* ev[2] = {nullptr, nullptr};
  ~KernelTimes() {
    if (!on || totals.empty()) return;
    std::fprintf(stderr, "kernel\tcalls\tms\n");
    for (auto& [k, v] : totals) std::fprintf(stderr, "%s\t%ld\t%.3f\n", k.c_str(), v.first, v.second);
  }
};
KernelTimes g_times;

void launch_grid(const at::Tensor& like, const std::string& kernel, Grid grid, unsigned threads, unsigned shared,
                 std::vector<void*> args) {
  int dev = like.device().index();
  Module& m = module_for(dev);
  auto stream = at::accelerator::getCurrentStream(static_cast<c10::DeviceIndex>(dev));
  CUstream s = reinterpret_cast<CUstream>(stream.native_handle());
  Api& a = api();
  bool timed = g_times.on && a.cuEventCreate && a.cuEventRecord && a.cuEventSynchronize && a.cuEventElapsedTime;
  std::unique_lock<std::mutex> lock(g_times.mu, std::defer_lock);
  if (timed) {
    lock.lock();
    if (g_times.ev[0] == nullptr) {
      check(a.cuEventCreate(&g_times.ev[0], 0), "cuEventCreate");
      check(a.cuEventCreate(&g_times.ev[1], 0), "cuEventCreate");
    }
    check(a.cuEventRecord(g_times.ev[0], s), "cuEventRecord");
  }
  auto fn = m.fns.find(kernel);
  if (fn == m.fns.end()) throw std::runtime_error("no kernel " + kernel + " in csrc/kernels");
  check(a.cuLaunchKernel(fn->second, grid.x, grid.y, grid.z, threads, 1, 1, shared, s, args.data(), nullptr),
        kernel.c_str());
  if (timed) {
    float ms = 0.f;
    check(a.cuEventRecord(g_times.ev[1], s), "cuEventRecord");
    check(a.cuEventSynchronize(g_times.ev[1]), "cuEventSynchronize");
    check(a.cuEventElapsedTime(&ms, g_times.ev[0], g_times.ev[1]), "cuEventElapsedTime");
    auto& t = g_times.totals[kernel];
    t.first += 1;
    t.second += ms;
  }
}

// One thread per element of `total` (grid-stride loops past 2^20 blocks).
void launch(const at::Tensor& like, const std::string& kernel, long long total, std::vector<void*> args) {
  const unsigned threads = 256;
  long long blocks = (total + threads - 1) / threads;
  if (blocks > 1048576) blocks = 1048576;
  if (blocks < 1) blocks = 1;
  launch_grid(like, kernel, {(unsigned)blocks}, threads, 0, std::move(args));
}

// Threads for a block working along one row of Q.
unsigned row_threads(long long q) { return (unsigned)std::min<long long>(256, (q + 31) / 32 * 32); }

int sms(const at::Tensor& like) { return module_for(like.device().index()).sms; }

// The grid of a grid-stride kernel that keeps per-block partial sums: as many blocks as are
// resident at once on the whole device (one wave: no tail wave of a few blocks while the rest of
// the device idles), at most `work` (one block per unit of work). Without the occupancy query,
// `per_sm` blocks a multiprocessor.
unsigned one_wave(const at::Tensor& like, const std::string& kernel, unsigned threads, int64_t work, int per_sm) {
  Module& m = module_for(like.device().index());
  Api& a = api();
  int resident = 0;
  auto fn = m.fns.find(kernel);
  if (fn == m.fns.end()) throw std::runtime_error("no kernel " + kernel + " in csrc/kernels");
  if (a.cuOccupancyMaxActiveBlocksPerMultiprocessor == nullptr ||
      a.cuOccupancyMaxActiveBlocksPerMultiprocessor(&resident, fn->second, (int)threads, 0) != 0 || resident < 1) {
    resident = per_sm;
  }
  return (unsigned)std::max<int64_t>(1, std::min<int64_t>(work, (int64_t)resident * m.sms));
}

// Runs the body of an extern "C" entry point: 0 on success, 1 with the message in g_err.
template <typename F>
int guarded(F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    g_err = e.what();
    return 1;
  }
}

void require(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(what);
}

const char* suffix(const at::Tensor& t) {
  if (t.scalar_type() == at::kFloat) return "_f32";
  if (t.scalar_type() == at::kBFloat16) return "_bf16";
  throw std::runtime_error("fused SSD kernels take float32 or bfloat16");
}

// Whether a tensor starts at a multiple of v of its elements (an empty one always does): what a
// kernel's loads and stores of v values at once need of each operand.
bool aligned(const at::Tensor& t, int v) {
  return t.numel() == 0 || reinterpret_cast<uintptr_t>(t.data_ptr()) % ((size_t)v * t.element_size()) == 0;
}
bool aligned(std::initializer_list<const at::Tensor*> ts, int v) {
  for (const at::Tensor* t : ts) {
    if (!aligned(*t, v)) return false;
  }
  return true;
}

// [B, L, X] with contiguous columns and rows of one stride (a column slice of a [B, L, Y]
// tensor qualifies), as is; anything else, made contiguous.
at::Tensor rows_view(const at::Tensor& t) {
  bool ok = t.dim() == 3 && t.stride(2) == 1 && t.stride(0) == t.size(1) * t.stride(1);
  return ok ? t : t.contiguous();
}

// ---------------------------------------------------------------------------------------------
// 2b. in_proj's output [B, L, W] split into column blocks (z | xBC | dt) with no concatenation
//     backward. A split registers its input; the nodes reading a block (the gated norm reads z,
//     the conv xBC) ask `split_grad_view` for where their block's gradient goes, and the first
//     to ask allocates the whole [B, L, W] gradient, so each writes its block in place; the
//     split's backward then finds its blocks already in one buffer and copies only what is not
//     (dt's few columns, a block whose gradient autograd summed elsewhere), else zeros.
struct SplitSlot {
  uintptr_t base;
  int64_t bytes, width, elem;
  at::ScalarType kind;
  at::Device device;
  at::Tensor grad;  // the whole gradient once a reader's backward asked for it
};
std::mutex g_split_mu;
std::vector<SplitSlot> g_splits;
constexpr size_t kMaxSplits = 4096;  // bound on live registrations (a model's layers take one each)

// x [B, L, W] contiguous, the split's input: drops any registration its bytes overlap (those
// tensors are gone: their memory is x's now) and registers x.
void split_register(const at::Tensor& x) {
  uintptr_t base = reinterpret_cast<uintptr_t>(x.data_ptr());
  int64_t bytes = x.numel() * (int64_t)x.element_size();
  std::lock_guard<std::mutex> lock(g_split_mu);
  g_splits.erase(std::remove_if(g_splits.begin(), g_splits.end(),
                                [&](const SplitSlot& s) { return s.base < base + bytes && base < s.base + s.bytes; }),
                 g_splits.end());
  if (g_splits.size() >= kMaxSplits) g_splits.erase(g_splits.begin());
  g_splits.push_back({base, bytes, x.size(2), (int64_t)x.element_size(), x.scalar_type(), x.device(), at::Tensor()});
}

// Where the gradient of `input` goes: a view of its split's whole gradient with input's sizes and
// strides where input is a column block of a registered split's input (rows of the split's
// width), else undefined (the caller allocates as before).
at::Tensor split_grad_view(const at::Tensor& input) {
  if (input.dim() != 3 || input.numel() == 0) return at::Tensor();
  uintptr_t p = reinterpret_cast<uintptr_t>(input.data_ptr());
  std::lock_guard<std::mutex> lock(g_split_mu);
  for (SplitSlot& s : g_splits) {
    if (p < s.base || p >= s.base + (uintptr_t)s.bytes) continue;
    int64_t off = (int64_t)(p - s.base);
    bool fits = s.kind == input.scalar_type() && s.device == input.device() && off % s.elem == 0 &&
                off / s.elem + input.size(2) <= s.width && input.stride(2) == 1 && input.stride(1) == s.width &&
                input.stride(0) == input.size(1) * s.width &&
                input.size(0) * input.size(1) * s.width * s.elem == s.bytes;
    if (!fits) return at::Tensor();
    if (!s.grad.defined()) {
      s.grad = at::empty({input.size(0), input.size(1), s.width}, input.options().memory_format(at::MemoryFormat::Contiguous));
    }
    return s.grad.as_strided(input.sizes(), input.strides(), s.grad.storage_offset() + off / s.elem);
  }
  return at::Tensor();
}

// The registration of the split whose input began at `base`, removed; its gradient (undefined
// where no reader asked).
at::Tensor split_take(uintptr_t base) {
  std::lock_guard<std::mutex> lock(g_split_mu);
  for (auto it = g_splits.begin(); it != g_splits.end(); ++it) {
    if (it->base != base) continue;
    at::Tensor g = std::move(it->grad);
    g_splits.erase(it);
    return g;
  }
  return at::Tensor();
}

struct SplitColumnsFunction : public torch::autograd::Function<SplitColumnsFunction> {
  // x [B, L, W] contiguous -> its column blocks of `widths` (views).
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor x,
                                                std::vector<int64_t> widths) {
    ctx->saved_data["widths"] = widths;
    ctx->saved_data["sizes"] = x.sizes().vec();
    ctx->saved_data["base"] = (int64_t) reinterpret_cast<uintptr_t>(x.data_ptr());
    ctx->saved_data["kind"] = (int64_t)x.scalar_type();
    if (x.requires_grad()) split_register(x);
    torch::autograd::variable_list out;
    int64_t off = 0;
    for (int64_t w : widths) {
      out.push_back(x.narrow(-1, off, w));
      off += w;
    }
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    std::vector<int64_t> widths = ctx->saved_data["widths"].toIntVector(), sizes = ctx->saved_data["sizes"].toIntVector();
    at::Tensor whole = split_take((uintptr_t)ctx->saved_data["base"].toInt());
    if (!whole.defined()) {
      at::Tensor any;
      for (const auto& g : grads) any = g.defined() ? g : any;
      auto kind = (at::ScalarType)ctx->saved_data["kind"].toInt();
      whole = at::empty(sizes, (any.defined() ? any.options() : at::TensorOptions()).dtype(kind));
    }
    int64_t off = 0;
    for (size_t i = 0; i < widths.size(); ++i) {
      at::Tensor dst = whole.narrow(-1, off, widths[i]);
      off += widths[i];
      const at::Tensor& g = grads[i];
      if (!g.defined()) {
        dst.zero_();
      } else if (!(g.data_ptr() == dst.data_ptr() && g.strides() == dst.strides() && g.sizes() == dst.sizes())) {
        dst.copy_(g);
      }
    }
    return {whole, at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------
// 3. The mixer's tail, u = y + x D; g = u silu(z); out = rmsnorm_groups(g) w, as one node that
//    saves only its inputs (the tensor ops would keep u, silu(z), g and the normed rows in fp32).
// Adjacent columns a slot of the gated norm's kernels (gnorm.cu; measured on the H200 at the study
// shapes, see docs/ssd-backends.md); -DGNORM_VEC=1 in STUFFED_KERNEL_DEFINES for an A/B.
constexpr int kGnormVec = 4;

struct GatedNorm {
  int64_t groups, headdim;
  double eps;

  // The kernels' layout for one call: V adjacent columns a slot (4 where the group width, the
  // strides and every pointer allow it, else 1), S slots a thread, and the threads a block.
  struct Layout {
    int v, s;
    unsigned threads;
  };
  static Layout layout(int64_t gs, std::initializer_list<const at::Tensor*> ts, std::initializer_list<int64_t> strides) {
    int v = tuned("GNORM_VEC", kGnormVec, {1, 4});
    bool fits = gs % v == 0 && aligned(ts, v);
    for (int64_t st : strides) fits = fits && st % v == 0;
    if (!fits) v = 1;
    int s = v == 1 ? (gs <= 4096 ? 4 : 8) : (gs <= 4096 ? 1 : 2);
    int64_t t = (gs + v * s - 1) / (v * s);
    t = (t + 31) / 32 * 32;
    require(t <= 1024, "gated norm: group wider than 8192");
    return {v, s, (unsigned)t};
  }
  static std::string kernel(const char* dir, const Layout& lo, const at::Tensor& x) {
    return std::string("gnorm_") + dir + "_v" + std::to_string(lo.v) + "s" + std::to_string(lo.s) + suffix(x);
  }

  // Row blocks per multiprocessor: enough to fill it (2048 threads, at most 32 blocks) when the
  // groups are narrow (a tiny model's 256 columns make blocks of 64 threads), at least 8.
  static int blocks_per_sm(unsigned threads) { return (int)std::max<int64_t>(8, std::min<int64_t>(32, 2048 / threads)); }

  // The sizes of one call, as the kernels take them (their addresses are the launch arguments).
  struct Call {
    int64_t bsz, l, di, gs;
    Layout lo;
    std::string kernel;
    unsigned rows, groups;
    long long sx, sz;
    int m, d, g, p;
    float eps;
    Call(const GatedNorm& op, const char* dir, const at::Tensor& y, const at::Tensor& x, const at::Tensor& z,
         std::initializer_list<const at::Tensor*> ts)
        : bsz(y.size(0)), l(y.size(1)), di(y.size(2)), gs(di / op.groups), lo(layout(gs, ts, {x.stride(1), z.stride(1)})),
          kernel(GatedNorm::kernel(dir, lo, x)),
          rows(std::max(1u, one_wave(y, kernel, lo.threads, bsz * l, blocks_per_sm(lo.threads)) / (unsigned)op.groups)),
          groups((unsigned)op.groups), sx(x.stride(1)),
          sz(z.stride(1)), m((int)(bsz * l)), d((int)di), g((int)gs), p((int)op.headdim), eps((float)op.eps) {}
  };

  at::Tensor forward(const at::Tensor& y, const at::Tensor& x, const at::Tensor& dsk, const at::Tensor& z,
                     const at::Tensor& w) const {
    int64_t bsz = y.size(0), l = y.size(1), di = y.size(2);
    auto out = at::empty({bsz, l, di}, x.options().memory_format(at::MemoryFormat::Contiguous));
    Call c(*this, "fwd", y, x, z, {&y, &x, &z, &w, &out});
    void *py = y.data_ptr(), *px = x.data_ptr(), *pd = dsk.data_ptr(), *pz = z.data_ptr(), *pw = w.data_ptr(),
         *po = out.data_ptr();
    launch_grid(y, c.kernel, {c.rows, c.groups}, c.lo.threads, 0,
                {&py, &px, &c.sx, &pd, &pz, &c.sz, &pw, &po, &c.m, &c.d, &c.g, &c.p, &c.eps});
    return out;
  }

  // dy, dx, dD, dz, dw
  std::vector<at::Tensor> backward(const at::Tensor& dout, const at::Tensor& y, const at::Tensor& x,
                                   const at::Tensor& dsk, const at::Tensor& z, const at::Tensor& w) const {
    int64_t bsz = y.size(0), l = y.size(1), di = y.size(2);
    auto f32 = y.options();
    auto dy = at::empty({bsz, l, di}, f32);
    auto dx = at::empty({bsz, l, di}, x.options().memory_format(at::MemoryFormat::Contiguous));
    at::Tensor dz = split_grad_view(z);
    if (!dz.defined()) dz = at::empty({bsz, l, di}, z.options().memory_format(at::MemoryFormat::Contiguous));
    long long sdz = dz.stride(1);
    Call c(*this, "bwd", y, x, z, {&dout, &y, &x, &z, &w, &dy, &dx, &dz});
    auto wpart = at::empty({(int64_t)c.rows, c.di}, f32), dpart = at::empty({(int64_t)c.rows, c.di}, f32);
    void *pg = dout.data_ptr(), *py = y.data_ptr(), *px = x.data_ptr(), *pd = dsk.data_ptr(), *pz = z.data_ptr(),
         *pw = w.data_ptr(), *pdy = dy.data_ptr(), *pdx = dx.data_ptr(), *pdz = dz.data_ptr(),
         *pwp = wpart.data_ptr(), *pdp = dpart.data_ptr();
    launch_grid(y, c.kernel, {c.rows, c.groups}, c.lo.threads, 0,
                {&pg, &py, &px, &c.sx, &pd, &pz, &c.sz, &pw, &pdy, &pdx, &pdz, &sdz, &pwp, &pdp, &c.m, &c.d, &c.g, &c.p,
                 &c.eps});
    auto dd_head = dpart.sum(0).view({c.di / headdim, headdim}).sum(1);
    return {dy, dx, dd_head.to(dsk.scalar_type()), dz, wpart.sum(0).to(w.scalar_type())};
  }
};

struct GatedNormFunction : public torch::autograd::Function<GatedNormFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor y, at::Tensor x,
                                                at::Tensor dsk, at::Tensor z, at::Tensor w, int64_t groups,
                                                int64_t headdim, double eps) {
    ctx->save_for_backward({y, x, dsk, z, w});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["headdim"] = headdim;
    ctx->saved_data["eps"] = eps;
    return {GatedNorm{groups, headdim, eps}.forward(y, x, dsk, z, w)};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto v = ctx->get_saved_variables();
    GatedNorm op{ctx->saved_data["groups"].toInt(), ctx->saved_data["headdim"].toInt(),
                 ctx->saved_data["eps"].toDouble()};
    auto r = op.backward(grads[0].contiguous(), v[0], v[1], v[2], v[3], v[4]);
    return {r[0], r[1], r[2], r[3], r[4], at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------
// 4. xdt = x * dt per head (x read in place from the conv output, no fp32 copy kept for backward).
unsigned warp_blocks(long long rows, const at::Tensor& like) {
  return (unsigned)std::max(1LL, std::min<long long>((rows + 7) / 8, 64LL * sms(like)));
}

// Values a lane of the scale kernels loads at once (scale.cu): 4 where P, the stride of x and every
// pointer allow it, else 1; -DSCALE_VEC=1 in STUFFED_KERNEL_DEFINES for an A/B.
constexpr int kScaleVec = 4;
std::string scale_kernel(const char* dir, int64_t p, long long sx, std::initializer_list<const at::Tensor*> ts) {
  int e = tuned("SCALE_VEC", kScaleVec, {1, 4});
  bool fits = p % e == 0 && sx % e == 0 && aligned(ts, e);
  return std::string("scale_") + dir + std::to_string(fits ? e : 1) + suffix(*ts.begin()[0]);
}

struct ScaleHeadsFunction : public torch::autograd::Function<ScaleHeadsFunction> {
  // x [B, L, H * P] (rows of one stride), dt [B, L, H] fp32 contiguous -> [B, L, H, P] (x's kind).
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor x, at::Tensor dt) {
    ctx->save_for_backward({x, dt});
    int64_t bsz = x.size(0), l = x.size(1), h = dt.size(2), p = x.size(2) / h;
    auto out = at::empty({bsz, l, h, p}, x.options().memory_format(at::MemoryFormat::Contiguous));
    long long sx = x.stride(1);
    unsigned rows = (unsigned)(bsz * l * h);
    int hh = (int)h, pp = (int)p;
    void *px = x.data_ptr(), *pd = dt.data_ptr(), *po = out.data_ptr();
    launch_grid(x, scale_kernel("fwd", p, sx, {&x, &out}), {warp_blocks(rows, x)}, 256, 0, {&px, &sx, &pd, &po, &rows, &hh, &pp});
    return {out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto v = ctx->get_saved_variables();
    const at::Tensor &x = v[0], &dt = v[1];
    at::Tensor g = grads[0].to(x.scalar_type()).contiguous();
    int64_t bsz = x.size(0), l = x.size(1), h = dt.size(2), p = x.size(2) / h;
    auto dx = at::empty({bsz, l, h * p}, x.options().memory_format(at::MemoryFormat::Contiguous));
    auto ddt = at::empty({bsz, l, h}, dt.options());
    long long sx = x.stride(1);
    unsigned rows = (unsigned)(bsz * l * h);
    int hh = (int)h, pp = (int)p;
    void *pg = g.data_ptr(), *px = x.data_ptr(), *pd = dt.data_ptr(), *pdx = dx.data_ptr(), *pdd = ddt.data_ptr();
    launch_grid(x, scale_kernel("bwd", p, sx, {&x, &g, &dx}), {warp_blocks(rows, x)}, 256, 0,
                {&pg, &px, &sx, &pd, &pdx, &pdd, &rows, &hh, &pp});
    return {dx, ddt};
  }
};

// ---------------------------------------------------------------------------------------------
// 5. Causal depthwise conv + SiLU on the [B, L, C] layout: one node, saving its inputs.
// Positions per thread, and channels per thread (one load of V elements; measured on the H200 at
// the study shapes, see docs/ssd-backends.md). Both can be set for an A/B with
// STUFFED_KERNEL_DEFINES (-DCONV_TILE=.., -DCONV_VEC=..).
constexpr int kConvTile = 32;
constexpr int kConvVec = 2;

struct ConvLaunch {
  int tt;
  Grid grid;
  std::string kernel;
};

// The output (or its gradient) in up to 3 contiguous parts side by side in the channels (conv.cu's
// Parts): their base pointers and cumulative ends.
struct PartsArg {
  void* p[3];
  int end[3];
};
PartsArg parts_arg(const std::vector<at::Tensor>& parts) {
  PartsArg a{{nullptr, nullptr, nullptr}, {0, 0, 0}};
  int end = 0;
  for (size_t k = 0; k < 3; ++k) {
    if (k < parts.size()) {
      a.p[k] = parts[k].data_ptr();
      end += (int)parts[k].size(-1);
    }
    a.end[k] = end;
  }
  return a;
}

// The launch of conv_{fwd,bwd}: the widest V (from the chosen one down to 1) for which C, the
// strides, the parts' widths and every pointer are multiples of V elements.
ConvLaunch conv_launch(const char* dir, const at::Tensor& w, const at::Tensor& x, const std::vector<at::Tensor>& parts,
                       std::initializer_list<const at::Tensor*> others, std::initializer_list<int64_t> strides = {}) {
  int64_t bsz = x.size(0), l = x.size(1), c = x.size(2);
  int v = tuned("CONV_VEC", kConvVec, {1, 2, 4}), tt = tuned("CONV_TILE", kConvTile, {8, 16, 32, 64, 128});
  auto fits = [&](int vv) {
    bool ok = c % vv == 0 && x.stride(0) % vv == 0 && x.stride(1) % vv == 0 && aligned(x, vv) && aligned(others, vv);
    for (int64_t st : strides) ok = ok && st % vv == 0;
    for (const at::Tensor& t : parts) ok = ok && t.size(-1) % vv == 0 && aligned(t, vv);
    return ok;
  };
  while (v > 1 && !fits(v)) v /= 2;
  unsigned per_block = 128u * (unsigned)v;
  Grid grid{(unsigned)((c + per_block - 1) / per_block), (unsigned)((l + tt - 1) / tt), (unsigned)bsz};
  std::string kernel = std::string("conv_") + dir + "_k" + std::to_string(w.size(-1)) + "v" + std::to_string(v) + suffix(x);
  return {tt, grid, kernel};
}

// The output in parts of `widths` channels (summing to C; at most 3), each [B, L, width] contiguous.
std::vector<at::Tensor> conv_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                                     const at::Tensor* pre, const std::vector<int64_t>& widths) {
  int64_t bsz = x.size(0), l = x.size(1), c = x.size(2);
  std::vector<at::Tensor> outs;
  for (int64_t wd : widths) outs.push_back(at::empty({bsz, l, wd}, x.options().memory_format(at::MemoryFormat::Contiguous)));
  ConvLaunch cl = conv_launch("fwd", w, x, outs, {});
  PartsArg po = parts_arg(outs);
  long long sb = x.stride(0), sr = x.stride(1);
  int ll = (int)l, cc = (int)c, tt = cl.tt;
  void *px = x.data_ptr(), *pp = pre ? pre->data_ptr() : nullptr, *pw = w.data_ptr(), *pb = bias.data_ptr();
  launch_grid(x, cl.kernel, cl.grid, 128, 0, {&px, &sb, &sr, &pp, &pw, &pb, &po, &ll, &cc, &tt});
  return outs;
}

// x [B, L, C] -> the output's parts (widths in saved_data): one node, saving its inputs; its
// backward reads the parts' gradients where they lie (no concatenation).
struct ConvSiluFunction : public torch::autograd::Function<ConvSiluFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor x, at::Tensor w,
                                                at::Tensor bias, std::vector<int64_t> widths) {
    ctx->save_for_backward({x, w, bias});
    ctx->saved_data["widths"] = widths;
    return conv_forward(x, w, bias, nullptr, widths);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto v = ctx->get_saved_variables();
    const at::Tensor &x = v[0], &w = v[1], &bias = v[2];
    int64_t bsz = x.size(0), l = x.size(1), c = x.size(2), k = w.size(-1);
    std::vector<int64_t> widths = ctx->saved_data["widths"].toIntVector();
    std::vector<at::Tensor> douts;
    for (size_t i = 0; i < grads.size(); ++i) {
      // An output nobody read has no gradient: zeros of its shape.
      douts.push_back(grads[i].defined() ? grads[i].contiguous() : at::zeros({bsz, l, widths[i]}, x.options()));
    }
    // In place in in_proj's gradient (x's own layout) where x is a block of a split, else contiguous.
    at::Tensor dx = split_grad_view(x);
    if (!dx.defined()) dx = at::empty({bsz, l, c}, x.options().memory_format(at::MemoryFormat::Contiguous));
    ConvLaunch cl = conv_launch("bwd", w, x, douts, {&dx}, {dx.stride(0), dx.stride(1)});
    PartsArg pg = parts_arg(douts);
    int tt = cl.tt;
    int64_t tiles = cl.grid.y;
    auto f32 = x.options().dtype(at::kFloat);
    auto wpart = at::empty({bsz * tiles, c, k}, f32), bpart = at::empty({bsz * tiles, c}, f32);
    long long sb = x.stride(0), sr = x.stride(1), dsb = dx.stride(0), dsr = dx.stride(1);
    int ll = (int)l, cc = (int)c;
    void *px = x.data_ptr(), *pw = w.data_ptr(), *pb = bias.data_ptr(), *pdx = dx.data_ptr(), *pwp = wpart.data_ptr(),
         *pbp = bpart.data_ptr();
    launch_grid(x, cl.kernel, cl.grid, 128, 0, {&px, &sb, &sr, &pw, &pb, &pg, &pdx, &dsb, &dsr, &pwp, &pbp, &ll, &cc, &tt});
    return {dx, wpart.sum(0).view(w.sizes()).to(w.scalar_type()), bpart.sum(0).to(bias.scalar_type()), at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------
// 6. The residual stream between blocks: r' = r + delta, out = rmsnorm(r') w, as one node that
//    saves r' only (the tensor ops run an add, a norm, two casts and, backward, an add per use).
//    Without delta (the first block) r' is r and the node's only output is out.
struct AddNorm {
  // Columns per lane (the kernels' NC): rows of up to 32 NC, NC in 4, 8, 16, 32.
  static int columns(int64_t d) {
    int nc = 4;
    while (32 * nc < d) nc *= 2;
    require(nc <= 32, "add norm: rows wider than 1024");
    return nc;
  }
  // V adjacent columns a slot (addnorm.cu): 4 where D and every pointer allow it, else 1;
  // -DADDNORM_VEC=1 in STUFFED_KERNEL_DEFINES for an A/B.
  static std::string kernel(const char* dir, int64_t d, const at::Tensor& like,
                            std::initializer_list<const at::Tensor*> ts) {
    int v = tuned("ADDNORM_VEC", 4, {1, 4});
    bool fits = d % v == 0 && aligned(ts, v);
    return std::string("addnorm_") + dir + std::to_string(columns(d)) + "v" + std::to_string(fits ? v : 1) + suffix(like);
  }
  // Blocks of 8 warps (one row each at a time), one wave of them.
  static unsigned blocks(const std::string& kernel, int64_t rows, const at::Tensor& like) {
    return one_wave(like, kernel, 256, (rows + 7) / 8, 4);
  }
};

struct AddNormFunction : public torch::autograd::Function<AddNormFunction> {
  // r [.., D] fp32 contiguous; delta [.., D] (the output kind) contiguous, or 0 elements for none (an
  // undefined input has no device for autograd's records); w [D] fp32.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor r, at::Tensor delta,
                                                at::Tensor w, double eps, int64_t bf16) {
    int64_t d = r.size(-1);
    int m = (int)(r.numel() / d), dd = (int)d;
    float e = (float)eps;
    auto kind = bf16 ? at::kBFloat16 : at::kFloat;
    auto out = at::empty(r.sizes(), r.options().dtype(kind));
    bool has_delta = delta.numel() > 0;
    auto rout = has_delta ? at::empty_like(r) : r;
    void *pr = r.data_ptr(), *pdl = has_delta ? delta.data_ptr() : nullptr,
         *pro = has_delta ? rout.data_ptr() : nullptr, *pw = w.data_ptr(), *po = out.data_ptr();
    std::string k = AddNorm::kernel("fwd", d, out, {&r, &delta, &rout, &w, &out});
    launch_grid(r, k, {AddNorm::blocks(k, m, r)}, 256, 0,
                {&pr, &pdl, &pro, &pw, &po, &m, &dd, &e});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["delta"] = has_delta;
    ctx->saved_data["bf16"] = bf16;
    if (!has_delta) {
      ctx->save_for_backward({r, w});
      return {out};
    }
    ctx->save_for_backward({rout, w});
    return {rout, out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto v = ctx->get_saved_variables();
    const at::Tensor &rr = v[0], &w = v[1];
    bool has_delta = ctx->saved_data["delta"].toBool();
    auto kind = ctx->saved_data["bf16"].toInt() ? at::kBFloat16 : at::kFloat;
    at::Tensor drout = has_delta && grads[0].defined() ? grads[0].contiguous() : at::Tensor();
    at::Tensor dout = grads[has_delta ? 1 : 0];
    dout = dout.defined() ? dout.to(kind).contiguous() : at::zeros(rr.sizes(), rr.options().dtype(kind));
    int64_t d = rr.size(-1);
    int m = (int)(rr.numel() / d), dd = (int)d;
    float e = (float)ctx->saved_data["eps"].toDouble();
    auto dr = at::empty_like(rr);
    auto ddelta = has_delta ? at::empty(rr.sizes(), rr.options().dtype(kind)) : at::Tensor();
    std::string k = AddNorm::kernel("bwd", d, dout,
                                    {&dout, &rr, &w, &dr, drout.defined() ? &drout : &dr, has_delta ? &ddelta : &dr});
    unsigned nb = AddNorm::blocks(k, m, rr);
    auto wpart = at::empty({(int64_t)nb, d}, rr.options());
    void *pg = dout.data_ptr(), *pdo = drout.defined() ? drout.data_ptr() : nullptr, *pr = rr.data_ptr(),
         *pw = w.data_ptr(), *pdr = dr.data_ptr(), *pdd = has_delta ? ddelta.data_ptr() : nullptr,
         *pwp = wpart.data_ptr();
    launch_grid(rr, k, {nb}, 256, 0, {&pg, &pdo, &pr, &pw, &pdr, &pdd, &pwp, &m, &dd, &e});
    return {dr, ddelta, wpart.sum(0), at::Tensor(), at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------
// 7. Cross-entropy per token from the logits: forward keeps only the rows' logsumexp, backward
//    writes softmax - onehot straight into the logits' kind (ce.cu).
struct CrossEntropy {
  // One warp a row (8 rows a block of 256) for rows up to CE_WARP_MAX values (a byte vocabulary:
  // a whole block on a 256-value row left 7 of its 8 warps idle), a whole block a row above.
  // E 8 values a load where V and the logits' pointer allow it, else 1.
  std::string kernel;
  unsigned blocks;
  CrossEntropy(const char* dir, const at::Tensor& x) {
    bool warp = x.size(1) <= tuned("CE_WARP_MAX", 4096, {0, 1024, 4096, 16384});
    bool fits = x.size(1) % 8 == 0 && aligned(x, 8);
    kernel = std::string("ce_") + dir + (fits ? "8" : "1") + (warp ? "w" : "") + suffix(x);
    int64_t rows = warp ? (x.size(0) + 7) / 8 : x.size(0);
    blocks = (unsigned)std::max<int64_t>(1, std::min<int64_t>(rows, 8LL * sms(x)));
  }
};

struct CrossEntropyFunction : public torch::autograd::Function<CrossEntropyFunction> {
  // x [N, V] contiguous (fp32 or bf16), tgt [N] int64 contiguous -> loss [N] fp32.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor x, at::Tensor tgt,
                                                int64_t ignore) {
    int n = (int)x.size(0), v = (int)x.size(1);
    long long ign = ignore;
    auto f32 = x.options().dtype(at::kFloat);
    auto loss = at::empty({n}, f32), lse = at::empty({n}, f32);
    void *px = x.data_ptr(), *pt = tgt.data_ptr(), *pl = loss.data_ptr(), *pe = lse.data_ptr();
    CrossEntropy ce("fwd", x);
    launch_grid(x, ce.kernel, {ce.blocks}, 256, 0, {&px, &pt, &pl, &pe, &n, &v, &ign});
    ctx->save_for_backward({x, tgt, lse});
    ctx->saved_data["ignore"] = ignore;
    return {loss};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto sv = ctx->get_saved_variables();
    const at::Tensor &x = sv[0], &tgt = sv[1], &lse = sv[2];
    at::Tensor g = grads[0].defined() ? grads[0].to(at::kFloat).contiguous() : at::zeros({x.size(0)}, lse.options());
    int n = (int)x.size(0), v = (int)x.size(1);
    long long ign = ctx->saved_data["ignore"].toInt();
    auto dx = at::empty_like(x);
    void *px = x.data_ptr(), *pt = tgt.data_ptr(), *pe = lse.data_ptr(), *pg = g.data_ptr(), *pd = dx.data_ptr();
    CrossEntropy ce("bwd", x);
    launch_grid(x, ce.kernel, {ce.blocks}, 256, 0, {&px, &pt, &pe, &pg, &pd, &n, &v, &ign});
    return {dx, at::Tensor(), at::Tensor()};
  }
};

// The widths of `n` column blocks of a [.., total] tensor as an entry point takes them: 1 to
// `max` blocks of at least one column each, summing to `total` (else an error naming `what`).
std::vector<int64_t> column_widths(const char* what, const int64_t* widths, int n, int max, int64_t total) {
  auto fail = [&](const std::string& why) { throw std::runtime_error(std::string(what) + ": " + why); };
  if (n < 1 || n > max) fail("1 to " + std::to_string(max) + " blocks");
  std::vector<int64_t> wd(widths, widths + n);
  int64_t sum = 0;
  for (int64_t v : wd) {
    if (v < 1) fail("a block of no columns");
    sum += v;
  }
  if (sum != total) fail("the widths do not sum to the columns");
  return wd;
}

}  // namespace

extern "C" {

const char* stuffed_ssd_last_error() { return g_err.c_str(); }

void stuffed_ssd_set_error(const char* msg) { g_err = msg ? msg : ""; }

void stuffed_ssd_register(Callback fwd, Callback bwd) {
  g_fwd = fwd;
  g_bwd = bwd;
}

int stuffed_ssd_apply(at::Tensor* xdt, at::Tensor* la, at::Tensor* b, at::Tensor* c, at::Tensor* h0, int64_t chunk,
                      int64_t want_final, at::Tensor** y, at::Tensor** final_state) {
  return guarded([&] {
    auto none = at::empty({0}, xdt->options().dtype(at::kFloat));
    auto r = SsdFunction::apply(*xdt, *la, *b, *c, h0 ? *h0 : none, chunk, want_final);
    *y = new at::Tensor(r[0]);
    *final_state = new at::Tensor(r[1]);
  });
}

// The kernels' PTX for compute capability major.minor in *ptx (valid until the next call on this
// thread): NVRTC only, no GPU needed (0 = compiled; the reason is in last_error).
int stuffed_ssd_ptx(int major, int minor, const char** ptx) {
  thread_local std::string text;
  return guarded([&] {
    text = compile_ptx(major, minor);
    *ptx = text.c_str();
  });
}

// Whether the kernels compile and load on device `dev` (0 = yes); the reason is in last_error.
int stuffed_ssd_kernels_ready(int dev) {
  return guarded([&] {
    module_for(dev);
  });
}

// m = decay-masked cb, per head. cb [B, C, G, Q, Q] (T), acs [B, C, H, Q] (fp32),
// m [B, C, H, Q, Q] (T); all contiguous on one CUDA device.
int stuffed_ssd_decay_fwd(at::Tensor* cb, at::Tensor* acs, at::Tensor* m) {
  return guarded([&] {
    require(cb->dim() == 5 && acs->dim() == 4 && m->dim() == 5, "decay_fwd: wrong ranks");
    require(cb->is_contiguous() && acs->is_contiguous() && m->is_contiguous(), "decay_fwd: not contiguous");
    require(acs->scalar_type() == at::kFloat && cb->scalar_type() == m->scalar_type(), "decay_fwd: wrong kinds");
    long long q = cb->size(4);
    long long g = cb->size(2), h = acs->size(2);
    require(h % g == 0 && m->size(2) == h && acs->size(3) == q, "decay_fwd: shapes disagree");
    int hh = (int)h, hpg = (int)(h / g), qq = (int)q;
    void* pcb = cb->data_ptr();
    void* pacs = acs->data_ptr();
    void* pm = m->data_ptr();
    unsigned threads = row_threads(q % 2 == 0 ? q / 2 : q);  // two columns a thread when Q is even
    launch_grid(*cb, std::string("decay_fwd") + suffix(*cb), {(unsigned)(m->numel() / (q * q))}, threads,
                (unsigned)(q * sizeof(float)), {&pcb, &pacs, &pm, &hh, &hpg, &qq});
  });
}

// dcb [B, C, G, Q, Q] (fp32) and dacs [B, C, H, Q] (fp32: the row sums minus the column sums of
// dm * cb * decay) from dm [B, C, H, Q, Q] (T), cb [B, C, G, Q, Q] (T), acs [B, C, H, Q] (fp32).
int stuffed_ssd_decay_bwd(at::Tensor* dm, at::Tensor* cb, at::Tensor* acs, at::Tensor* dcb, at::Tensor* dacs) {
  return guarded([&] {
    require(dm->dim() == 5 && cb->dim() == 5 && acs->dim() == 4 && dcb->dim() == 5 && dacs->dim() == 4,
            "decay_bwd: wrong ranks");
    require(dm->is_contiguous() && cb->is_contiguous() && acs->is_contiguous() && dcb->is_contiguous() &&
                dacs->is_contiguous(),
            "decay_bwd: not contiguous");
    require(dm->scalar_type() == cb->scalar_type() && acs->scalar_type() == at::kFloat &&
                dcb->scalar_type() == cb->scalar_type() && dacs->scalar_type() == at::kFloat,
            "decay_bwd: wrong kinds");
    long long q = cb->size(4), g = cb->size(2), h = dm->size(2);
    require(h % g == 0 && acs->size(2) == h && dacs->size(2) == h && dcb->size(2) == g, "decay_bwd: shapes disagree");
    long long total = cb->numel();
    int gg = (int)g, hpg = (int)(h / g), qq = (int)q;
    void *pdm = dm->data_ptr(), *pcb = cb->data_ptr(), *pacs = acs->data_ptr(), *pdcb = dcb->data_ptr(),
         *pdacs = dacs->data_ptr();
    launch_grid(*cb, std::string("decay_dcb") + suffix(*cb), {(unsigned)(total / q)}, row_threads(q), 0,
                {&pdm, &pacs, &pdcb, &gg, &hpg, &qq});
    unsigned threads = row_threads(q);
    require(q <= 1024, "decay_bwd: chunks of at most 1024");  // (2 + warps) * Q floats of shared memory
    launch_grid(*cb, std::string("decay_dacs") + suffix(*cb), {(unsigned)acs->numel() / (unsigned)q}, threads,
                (unsigned)((2 + threads / 32) * q * sizeof(float)), {&pdm, &pcb, &pacs, &pdacs, &gg, &hpg, &qq});
  });
}

// Values of P a lane of the row kernels takes at once (rows.cu; measured on the H200 at the study
// shapes, see docs/ssd-backends.md); -DROWS_VEC=.. in STUFFED_KERNEL_DEFINES for an A/B.
constexpr int kRowsVec = 8;

// One of the SSD's row kernels (ssd_out, ssd_xw, ssd_dy, ssd_dx) on `n` contiguous CUDA tensors in
// its argument order (null where the kernel takes none); tensor `kind_of` picks the kernel's kind
// and device; dims = B, L, H, P, G, Q, C.
int stuffed_ssd_rows(const char* stem, at::Tensor** ts, int n, int kind_of, const int* dims) {
  return guarded([&] {
    struct {
      int B, L, H, P, G, Q, C;
    } rows{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6]};
    std::vector<void*> ptrs(n);
    std::vector<void*> args;
    require(ts[kind_of] != nullptr, "SSD row kernel: the operand that picks the kind is missing");
    for (int i = 0; i < n; ++i) {
      // A null operand is one the kernel does without (see rows.cu).
      require(ts[i] == nullptr || (ts[i]->is_contiguous() && ts[i]->is_cuda()),
              "SSD row kernel: an operand is not a contiguous CUDA tensor");
      ptrs[i] = ts[i] ? ts[i]->data_ptr() : nullptr;
      args.push_back(&ptrs[i]);
    }
    args.push_back(&rows);
    long long tokens = (long long)rows.B * rows.C * rows.Q;  // one block each, its warps over the heads
    require(tokens * rows.H < (1LL << 31), "SSD row kernel: more than 2^31 rows");
    require(rows.P % 2 == 0, "SSD row kernel: odd head dim");
    // E values a lane (one load of each operand): the chosen E where P and every operand allow it
    // (aligned to E of its values), else 2.
    int e = tuned("ROWS_VEC", kRowsVec, {2, 4, 8});
    bool fits = rows.P % e == 0;
    for (int i = 0; i < n; ++i) fits = fits && (ts[i] == nullptr || aligned(*ts[i], e));
    if (!fits) e = 2;
    // About two passes a warp: a warp takes 32 / lanes heads at once (common.cuh's head_lanes).
    int lanes = 1;
    while (lanes < 32 && e * lanes < rows.P) lanes *= 2;
    int per_pass = 32 / lanes;
    unsigned threads = (unsigned)std::min(256, std::max(32, (rows.H + 2 * per_pass - 1) / (2 * per_pass) * 32));
    long long blocks = std::min<long long>(tokens, 32LL * sms(*ts[kind_of]));
    launch_grid(*ts[kind_of], std::string(stem) + std::to_string(e) + suffix(*ts[kind_of]),
                {(unsigned)std::max(1LL, blocks)}, threads, 0, args);
  });
}

// The states entering each chunk, prev [B, C, H, ..] (states' kind), and the final state fin
// [B, H, ..] (fp32) from the chunk states [B, C, H, ..] (PN values a head), the chunk log-decays
// last [B, C, H] (fp32) and h0 [B, H, ..] (fp32, null for zeros); all contiguous.
int stuffed_ssd_pass_fwd(at::Tensor* states, at::Tensor* last, at::Tensor* h0, at::Tensor* prev, at::Tensor* fin) {
  return guarded([&] {
    bool contiguous = states->is_contiguous() && last->is_contiguous() && prev->is_contiguous() &&
                      fin->is_contiguous() && (h0 == nullptr || h0->is_contiguous());
    require(contiguous, "pass_fwd: not contiguous");
    require(last->scalar_type() == at::kFloat && fin->scalar_type() == at::kFloat &&
                prev->scalar_type() == states->scalar_type() && (h0 == nullptr || h0->scalar_type() == at::kFloat),
            "pass_fwd: wrong kinds");
    int b = (int)states->size(0), c = (int)states->size(1), h = (int)states->size(2);
    int pn = (int)(states->numel() / ((int64_t)b * c * h));
    require(prev->numel() == states->numel() && last->numel() == (int64_t)b * c * h &&
                fin->numel() == (int64_t)b * h * pn && (h0 == nullptr || h0->numel() == fin->numel()),
            "pass_fwd: shapes disagree");
    require(pn % 2 == 0 && (int64_t)b * h <= 65535, "pass_fwd: odd state size or more than 65535 (batch, head) pairs");
    void *ps = states->data_ptr(), *pl = last->data_ptr(), *ph = h0 ? h0->data_ptr() : nullptr,
         *pp = prev->data_ptr(), *pf = fin->data_ptr();
    unsigned blocks = (unsigned)((pn / 2 + 255) / 256);  // pairs of e
    launch_grid(*states, std::string("pass_fwd") + suffix(*states), {blocks, (unsigned)(b * h)}, 256, 0,
                {&ps, &pl, &ph, &pp, &pf, &b, &c, &h, &pn});
  });
}

// Backward of stuffed_ssd_pass_fwd: dstates [B, C, H, PN] (dprev's kind), dh0 [B, H, PN] and
// dlpart [B, C, H, blocks] (fp32; the caller sums the last dim: the gradient of last).
int stuffed_ssd_pass_bwd(at::Tensor* dprev, at::Tensor* dfin, at::Tensor* prev, at::Tensor* last, at::Tensor* dstates,
                         at::Tensor* dh0, at::Tensor** dlpart) {
  return guarded([&] {
    int b = (int)dprev->size(0), c = (int)dprev->size(1), h = (int)dprev->size(2);
    int pn = (int)(dprev->numel() / ((int64_t)b * c * h));
    bool contiguous = dprev->is_contiguous() && prev->is_contiguous() && last->is_contiguous() &&
                      dstates->is_contiguous() && dh0->is_contiguous() && (dfin == nullptr || dfin->is_contiguous());
    require(contiguous, "pass_bwd: not contiguous");
    require(prev->scalar_type() == dprev->scalar_type() && dstates->scalar_type() == dprev->scalar_type() &&
                last->scalar_type() == at::kFloat && dh0->scalar_type() == at::kFloat &&
                (dfin == nullptr || dfin->scalar_type() == at::kFloat),
            "pass_bwd: wrong kinds");
    require(prev->numel() == dprev->numel() && dstates->numel() == dprev->numel() && last->numel() == (int64_t)b * c * h &&
                dh0->numel() == (int64_t)b * h * pn && (dfin == nullptr || dfin->numel() == dh0->numel()),
            "pass_bwd: shapes disagree");
    require(pn % 2 == 0 && (int64_t)b * h <= 65535, "pass_bwd: odd state size or more than 65535 (batch, head) pairs");
    unsigned blocks = (unsigned)((pn / 2 + 255) / 256);  // pairs of e
    auto part = at::empty({b, c, h, (int64_t)blocks}, last->options());
    void *pg = dprev->data_ptr(), *pf = dfin ? dfin->data_ptr() : nullptr, *pp = prev->data_ptr(),
         *pl = last->data_ptr(), *pd = dstates->data_ptr(), *ph = dh0->data_ptr(), *pq = part.data_ptr();
    launch_grid(*dprev, std::string("pass_bwd") + suffix(*dprev), {blocks, (unsigned)(b * h)}, 256, 0,
                {&pg, &pf, &pp, &pl, &pd, &ph, &pq, &b, &c, &h, &pn});
    *dlpart = new at::Tensor(part);
  });
}

// xdt [B, L, H, P] (x's kind) = x [B, L, H * P] * dt [B, L, H] (fp32) per head, an autograd node.
int stuffed_scale_heads(at::Tensor* x, at::Tensor* dt, at::Tensor** out) {
  return guarded([&] {
    require(x->dim() == 3 && dt->dim() == 3 && dt->scalar_type() == at::kFloat && x->size(0) == dt->size(0) &&
                x->size(1) == dt->size(1) && x->size(2) % dt->size(2) == 0,
            "scale_heads: x [B, L, H * P], dt [B, L, H] fp32");
    require(x->numel() / x->size(2) * dt->size(2) < (1LL << 31), "scale_heads: too many rows");
    *out = new at::Tensor(ScaleHeadsFunction::apply(rows_view(*x), dt->contiguous())[0]);
  });
}

// out [B, L, Di] (x's kind) = rmsnorm over groups of ((y + x D[head]) silu(z)) times w, an autograd
// node. y [B, L, Di] fp32; x, z [B, L, Di] of the compute kind (column slices are read in place);
// dsk [H], w [Di] fp32.
int stuffed_gated_norm(at::Tensor* y, at::Tensor* x, at::Tensor* dsk, at::Tensor* z, at::Tensor* w, int64_t groups,
                       int64_t headdim, double eps, at::Tensor** out) {
  return guarded([&] {
    require(y->dim() == 3 && y->scalar_type() == at::kFloat, "gated norm: y is [B, L, Di] fp32");
    require(x->sizes() == y->sizes() && z->sizes() == y->sizes() && x->scalar_type() == z->scalar_type(),
            "gated norm: x and z are [B, L, Di] of one kind");
    require(dsk->is_contiguous() && w->is_contiguous() && dsk->scalar_type() == at::kFloat &&
                w->scalar_type() == at::kFloat,
            "gated norm: D and w are contiguous fp32");
    int64_t di = y->size(2);
    require(di % groups == 0 && di % headdim == 0 && dsk->numel() == di / headdim && w->numel() == di,
            "gated norm: shapes disagree");
    auto r = GatedNormFunction::apply(y->contiguous(), rows_view(*x), *dsk, rows_view(*z), *w, groups, headdim, eps);
    *out = new at::Tensor(r[0]);
  });
}

// silu(causal depthwise conv of x [B, L, C] with w [C, 1, K], bias [C]), all of one kind, in
// nparts (1 to 3) contiguous parts [B, L, widths[i]] side by side in the channels (the widths sum
// to C), written to outs[i]; pre [B, C, K-1] (null: zeros) are the inputs before x, only without
// autograd.
int stuffed_conv_silu(at::Tensor* x, at::Tensor* w, at::Tensor* bias, at::Tensor* pre, const int64_t* widths,
                      int nparts, at::Tensor** outs) {
  return guarded([&] {
    require(x->dim() == 3 && w->dim() == 3 && w->size(0) == x->size(2) && w->size(1) == 1 &&
                bias->numel() == x->size(2),
            "conv: x [B, L, C], w [C, 1, K], bias [C]");
    int64_t k = w->size(2);
    require(std::find(std::begin(kConvWidths), std::end(kConvWidths), k) != std::end(kConvWidths),
            "conv: no kernel for this width");
    require(w->scalar_type() == x->scalar_type() && bias->scalar_type() == x->scalar_type(), "conv: one kind");
    std::vector<int64_t> wd = column_widths("conv", widths, nparts, 3, x->size(2));
    at::Tensor xv = rows_view(*x), wc = w->contiguous(), bc = bias->contiguous();
    std::vector<at::Tensor> res;
    if (pre != nullptr) {
      require(!at::GradMode::is_enabled() ||
                  !(x->requires_grad() || w->requires_grad() || bias->requires_grad() || pre->requires_grad()),
              "conv: a prefix only without autograd");
      at::Tensor pc = pre->contiguous();
      require(pc.dim() == 3 && pc.size(0) == x->size(0) && pc.size(1) == x->size(2) && pc.size(2) == k - 1 &&
                  pc.scalar_type() == x->scalar_type(),
              "conv: pre is [B, C, K-1] of x's kind");
      res = conv_forward(xv, wc, bc, &pc, wd);
    } else {
      res = ConvSiluFunction::apply(xv, wc, bc, wd);
    }
    for (int i = 0; i < nparts; ++i) outs[i] = new at::Tensor(res[i]);
  });
}

// x [B, L, W] (made contiguous) -> its column blocks of `widths` (summing to W; at most 8), one
// autograd node whose backward writes no concatenation where the blocks' readers wrote their
// gradients in place (section 2b).
int stuffed_split_columns(at::Tensor* x, const int64_t* widths, int nparts, at::Tensor** outs) {
  return guarded([&] {
    require(x->dim() == 3, "split: x [B, L, W]");
    auto res = SplitColumnsFunction::apply(x->contiguous(), column_widths("split", widths, nparts, 8, x->size(2)));
    for (int i = 0; i < nparts; ++i) outs[i] = new at::Tensor(res[i]);
  });
}

// The residual stream's add + RMSNorm (an autograd node): r' = r + delta, out = rmsnorm(r') w in
// fp32, stored as bf16 when `bf16` else fp32. r [.., D] fp32; delta (null: none) [.., D] of the
// output kind; w [D] fp32; D <= 1024. Returns r' (null without delta) and out.
int stuffed_add_norm(at::Tensor* r, at::Tensor* delta, at::Tensor* w, double eps, int64_t bf16, at::Tensor** rout,
                     at::Tensor** out) {
  return guarded([&] {
    require(r->scalar_type() == at::kFloat && r->dim() >= 1, "add norm: r is [.., D] fp32");
    int64_t d = r->size(-1);
    require(d >= 1 && d <= 1024, "add norm: D from 1 to 1024");
    require(w->scalar_type() == at::kFloat && w->dim() == 1 && w->size(0) == d, "add norm: w is [D] fp32");
    require(r->numel() / d < (1LL << 31), "add norm: too many rows");
    auto kind = bf16 ? at::kBFloat16 : at::kFloat;
    at::Tensor dl = at::empty({0}, r->options().dtype(kind));
    if (delta != nullptr) {
      require(delta->sizes() == r->sizes() && delta->scalar_type() == kind, "add norm: delta is r's shape, of the output kind");
      dl = delta->contiguous();
    }
    auto res = AddNormFunction::apply(r->contiguous(), dl, w->contiguous(), eps, bf16);
    *rout = delta != nullptr ? new at::Tensor(res[0]) : nullptr;
    *out = new at::Tensor(res.back());
  });
}

// Cross-entropy per token (an autograd node): logits [N, V] (fp32 or bf16, CUDA), targets [N]
// int64 (`ignore` or outside [0, V): loss 0 and no gradient) -> loss [N] fp32 = logsumexp - the
// target's logit.
int stuffed_cross_entropy(at::Tensor* logits, at::Tensor* targets, int64_t ignore, at::Tensor** out) {
  return guarded([&] {
    require(logits->dim() == 2 && logits->is_cuda() && logits->size(1) >= 1,
            "cross entropy: logits are [N, V] on CUDA");
    require(logits->scalar_type() == at::kFloat || logits->scalar_type() == at::kBFloat16,
            "cross entropy: logits are fp32 or bf16");
    require(targets->dim() == 1 && targets->size(0) == logits->size(0) && targets->scalar_type() == at::kLong &&
                targets->device() == logits->device(),
            "cross entropy: targets are [N] int64 on the logits' device");
    require(logits->size(0) < (1LL << 31) && logits->size(1) < (1LL << 31), "cross entropy: N and V below 2^31");
    *out = new at::Tensor(CrossEntropyFunction::apply(logits->contiguous(), targets->contiguous(), ignore)[0]);
  });
}

}  // extern "C"
