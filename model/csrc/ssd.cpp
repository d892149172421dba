// The fused SSD's two C++ pieces:
//  1. A libtorch autograd Function whose forward and backward are supplied by Rust
//     (stuffed-model's `ssd::fused`), so the SSD is one node of the graph: nothing of its
//     inside is saved for backward except its inputs, and backward recomputes what it needs.
//  2. CUDA kernels for the Q x Q decay blocks (the masked exp(cumsum_l - cumsum_s) products that
//     dominate the tensor-op SSD's memory traffic), compiled at first use with NVRTC and
//     launched on libtorch's current stream. libcuda and libnvrtc are loaded with dlopen:
//     nothing here needs CUDA headers, and a CPU-only machine never touches them.
// Every extern "C" entry point catches C++ exceptions and returns non-zero on failure, with
// the message available from stuffed_ssd_last_error() on the same thread.
#include <dirent.h>
#include <dlfcn.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/DeviceAccelerator.h>
#include <torch/csrc/autograd/custom_function.h>

namespace {

thread_local std::string g_err;

// ---------------------------------------------------------------------------------------------
// 1. Autograd Function with Rust callbacks.
//    Forward inputs:  xdt, la, b, c, h0 (null when absent); outputs y, final state.
//    Backward inputs: xdt, la, b, c, h0, dy, dfinal (each null when absent/undefined);
//    outputs dxdt, dla, db, dc, dh0 (null for none).
// Pointers handed to Rust are borrowed; pointers handed back are owned (allocated by tch).
using Callback = int (*)(at::Tensor* const* in, int64_t chunk, at::Tensor** out);
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
                                                int64_t chunk) {
    ctx->save_for_backward({xdt, la, b, c, h0});
    ctx->saved_data["chunk"] = chunk;
    at::Tensor* in[5] = {&xdt, &la, &b, &c, borrow_h0(h0)};
    at::Tensor* out[2] = {nullptr, nullptr};
    if (g_fwd == nullptr || g_fwd(in, chunk, out) != 0) {
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
    if (g_bwd == nullptr || g_bwd(in, chunk, out) != 0) {
      throw std::runtime_error("fused SSD backward failed: " + g_err);
    }
    return {take(out[0]), take(out[1]), take(out[2]), take(out[3]), take(out[4]), at::Tensor()};
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
// or cu12), found from where libtorch_cpu itself was loaded. NVRTC opens its builtins library by
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
  if (dladdr(reinterpret_cast<void*>(&at::accelerator::getDeviceStats), &info) != 0 && info.dli_fname) {
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
      void* rt = open_nvrtc();
      sym(rt, "nvrtcCreateProgram", a.nvrtcCreateProgram);
      sym(rt, "nvrtcCompileProgram", a.nvrtcCompileProgram);
      sym(rt, "nvrtcGetPTXSize", a.nvrtcGetPTXSize);
      sym(rt, "nvrtcGetPTX", a.nvrtcGetPTX);
      sym(rt, "nvrtcGetProgramLogSize", a.nvrtcGetProgramLogSize);
      sym(rt, "nvrtcGetProgramLog", a.nvrtcGetProgramLog);
      sym(rt, "nvrtcDestroyProgram", a.nvrtcDestroyProgram);
      if (a.cuInit(0) != 0) throw std::runtime_error("cuInit failed");
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

// Masked decays between positions l (row) and s (column) of one chunk, for one head:
// exp(min(acs[l] - acs[s], 0)) for s <= l, else 0. bf16 is handled as raw 16-bit words
// (no cuda_bf16.h needed): widening is a shift, narrowing rounds to nearest even.
const char* kSource = R"CUDA(
typedef unsigned short bf16_t;
__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16_t* p, long long i) { return __uint_as_float(((unsigned)p[i]) << 16); }
__device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void st(bf16_t* p, long long i, float v) {
  unsigned u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) { p[i] = (bf16_t)((u >> 16) | 0x40u); return; }
  u += 0x7fffu + ((u >> 16) & 1u);
  p[i] = (bf16_t)(u >> 16);
}

// The decay from position s to position l of one head's chunk (s <= l).
__device__ __forceinline__ float decay(const float* a, int l, int s) { return expf(fminf(a[l] - a[s], 0.f)); }

// cb: [BC, G, Q, Q]  acs: [BC, H, Q] (fp32)  m: [BC, H, Q, Q];  H = G * hpg.
// m[bc, h, l, s] = cb[bc, h / hpg, l, s] * exp(min(acs[l] - acs[s], 0)) for s <= l, else 0.
template <typename T>
__device__ void decay_fwd(const T* cb, const float* acs, T* m, long long total, int H, int hpg, int Q) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    int s = (int)(i % Q);
    long long r = i / Q;
    int l = (int)(r % Q);
    long long bh = r / Q;
    int h = (int)(bh % H);
    long long bc = bh / H;
    float v = 0.f;
    if (s <= l) {
      const float* a = acs + bh * Q;
      int g = h / hpg;
      v = ld(cb, ((bc * (H / hpg) + g) * Q + l) * (long long)Q + s) * decay(a, l, s);
    }
    st(m, i, v);
  }
}

// dm: [BC, H, Q, Q]  cb: [BC, G, Q, Q]  acs: [BC, H, Q] (fp32)
// dcb[bc, g, l, s] = sum over the heads h of group g of dm * decay   (fp32)
// t[bc, h, l, s]   = dm * cb * decay = dM * M, whose row and column sums are d(acs)   (fp32)
template <typename T>
__device__ void decay_bwd(const T* dm, const T* cb, const float* acs, float* dcb, float* t, long long total,
                          int G, int hpg, int Q) {
  int H = G * hpg;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    int s = (int)(i % Q);
    long long r = i / Q;
    int l = (int)(r % Q);
    long long bg = r / Q;
    int g = (int)(bg % G);
    long long bc = bg / G;
    float cbv = ld(cb, i);
    float acc = 0.f;
    for (int j = 0; j < hpg; ++j) {
      long long bh = bc * H + g * hpg + j;
      long long o = (bh * Q + l) * (long long)Q + s;
      float tv = 0.f;
      if (s <= l) {
        const float* a = acs + bh * Q;
        float d = decay(a, l, s);
        float dmv = ld(dm, o);
        acc += dmv * d;
        tv = dmv * cbv * d;
      }
      t[o] = tv;
    }
    dcb[i] = acc;
  }
}

extern "C" __global__ void decay_fwd_f32(const float* cb, const float* acs, float* m, long long total, int H, int hpg, int Q) {
  decay_fwd<float>(cb, acs, m, total, H, hpg, Q);
}
extern "C" __global__ void decay_fwd_bf16(const bf16_t* cb, const float* acs, bf16_t* m, long long total, int H, int hpg, int Q) {
  decay_fwd<bf16_t>(cb, acs, m, total, H, hpg, Q);
}
extern "C" __global__ void decay_bwd_f32(const float* dm, const float* cb, const float* acs, float* dcb, float* t,
                                         long long total, int G, int hpg, int Q) {
  decay_bwd<float>(dm, cb, acs, dcb, t, total, G, hpg, Q);
}
extern "C" __global__ void decay_bwd_bf16(const bf16_t* dm, const bf16_t* cb, const float* acs, float* dcb, float* t,
                                          long long total, int G, int hpg, int Q) {
  decay_bwd<bf16_t>(dm, cb, acs, dcb, t, total, G, hpg, Q);
}
)CUDA";

const char* kKernels[] = {"decay_fwd_f32", "decay_fwd_bf16", "decay_bwd_f32", "decay_bwd_bf16"};

struct Module {
  std::map<std::string, CUfunction> fns;
};

std::mutex g_mods_mu;
std::map<int, Module> g_mods;  // per device index

std::string compile_ptx(int major, int minor) {
  Api& a = api();
  nvrtcProgram prog = nullptr;
  if (a.nvrtcCreateProgram(&prog, kSource, "stuffed_ssd.cu", 0, nullptr, nullptr) != 0) {
    throw std::runtime_error("nvrtcCreateProgram failed");
  }
  std::string arch = "--gpu-architecture=compute_" + std::to_string(major) + std::to_string(minor);
  const char* opts[] = {arch.c_str(), "--std=c++17", "-default-device"};
  nvrtcResult r = a.nvrtcCompileProgram(prog, 3, opts);
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
  for (const char* k : kKernels) {
    CUfunction f = nullptr;
    check(a.cuModuleGetFunction(&f, mod, k), k);
    m.fns[k] = f;
  }
  return g_mods.emplace(dev, std::move(m)).first->second;
}

void launch(const at::Tensor& like, const std::string& kernel, long long total, std::vector<void*> args) {
  int dev = like.device().index();
  Module& m = module_for(dev);
  auto stream = at::accelerator::getCurrentStream(static_cast<c10::DeviceIndex>(dev));
  CUstream s = reinterpret_cast<CUstream>(stream.native_handle());
  const unsigned threads = 256;
  long long blocks = (total + threads - 1) / threads;
  if (blocks > 1048576) blocks = 1048576;  // grid-stride loops cover the rest
  if (blocks < 1) blocks = 1;
  check(api().cuLaunchKernel(m.fns.at(kernel), (unsigned)blocks, 1, 1, threads, 1, 1, 0, s, args.data(), nullptr),
        kernel.c_str());
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

}  // namespace

extern "C" {

const char* stuffed_ssd_last_error() { return g_err.c_str(); }

void stuffed_ssd_set_error(const char* msg) { g_err = msg ? msg : ""; }

void stuffed_ssd_register(Callback fwd, Callback bwd) {
  g_fwd = fwd;
  g_bwd = bwd;
}

int stuffed_ssd_apply(at::Tensor* xdt, at::Tensor* la, at::Tensor* b, at::Tensor* c, at::Tensor* h0, int64_t chunk,
                      at::Tensor** y, at::Tensor** final_state) {
  return guarded([&] {
    auto none = at::empty({0}, xdt->options().dtype(at::kFloat));
    auto r = SsdFunction::apply(*xdt, *la, *b, *c, h0 ? *h0 : none, chunk);
    *y = new at::Tensor(r[0]);
    *final_state = new at::Tensor(r[1]);
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
    long long total = m->numel();
    int hh = (int)h, hpg = (int)(h / g), qq = (int)q;
    void* pcb = cb->data_ptr();
    void* pacs = acs->data_ptr();
    void* pm = m->data_ptr();
    launch(*cb, std::string("decay_fwd") + suffix(*cb), total, {&pcb, &pacs, &pm, &total, &hh, &hpg, &qq});
  });
}

// dcb [B, C, G, Q, Q] (fp32) and t [B, C, H, Q, Q] (fp32) from dm [B, C, H, Q, Q] (T),
// cb [B, C, G, Q, Q] (T), acs [B, C, H, Q] (fp32).
int stuffed_ssd_decay_bwd(at::Tensor* dm, at::Tensor* cb, at::Tensor* acs, at::Tensor* dcb, at::Tensor* t) {
  return guarded([&] {
    require(dm->dim() == 5 && cb->dim() == 5 && acs->dim() == 4 && dcb->dim() == 5 && t->dim() == 5,
            "decay_bwd: wrong ranks");
    require(dm->is_contiguous() && cb->is_contiguous() && acs->is_contiguous() && dcb->is_contiguous() &&
                t->is_contiguous(),
            "decay_bwd: not contiguous");
    require(dm->scalar_type() == cb->scalar_type() && acs->scalar_type() == at::kFloat &&
                dcb->scalar_type() == at::kFloat && t->scalar_type() == at::kFloat,
            "decay_bwd: wrong kinds");
    long long q = cb->size(4), g = cb->size(2), h = dm->size(2);
    require(h % g == 0 && acs->size(2) == h && t->size(2) == h && dcb->size(2) == g, "decay_bwd: shapes disagree");
    long long total = cb->numel();
    int gg = (int)g, hpg = (int)(h / g), qq = (int)q;
    void* pdm = dm->data_ptr();
    void* pcb = cb->data_ptr();
    void* pacs = acs->data_ptr();
    void* pdcb = dcb->data_ptr();
    void* pt = t->data_ptr();
    launch(*cb, std::string("decay_bwd") + suffix(*cb), total, {&pdm, &pcb, &pacs, &pdcb, &pt, &total, &gg, &hpg, &qq});
  });
}

}  // extern "C"
