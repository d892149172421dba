// The fused SSD's two C++ pieces:
//  1. A libtorch autograd Function whose forward and backward are supplied by Rust
//     (stuffed-model's `ssd::fused`), so the SSD is one node of the graph: nothing of its
//     inside is saved for backward except its inputs, and backward recomputes what it needs.
//  2. CUDA kernels, compiled at first use with NVRTC and launched on libtorch's current stream:
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
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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
  // Kernel timing (STUFFED_KERNEL_TIMES): optional, looked up without failing.
  CUresult (*cuEventCreate)(void**, unsigned) = nullptr;
  CUresult (*cuEventRecord)(void*, CUstream) = nullptr;
  CUresult (*cuEventSynchronize)(void*) = nullptr;
  CUresult (*cuEventElapsedTime)(float*, void*, void*) = nullptr;
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
      a.cuEventCreate = reinterpret_cast<decltype(a.cuEventCreate)>(dlsym(cu, "cuEventCreate"));
      a.cuEventRecord = reinterpret_cast<decltype(a.cuEventRecord)>(dlsym(cu, "cuEventRecord"));
      a.cuEventSynchronize = reinterpret_cast<decltype(a.cuEventSynchronize)>(dlsym(cu, "cuEventSynchronize"));
      void* elapsed = dlsym(cu, "cuEventElapsedTime_v2");
      if (elapsed == nullptr) elapsed = dlsym(cu, "cuEventElapsedTime");
      a.cuEventElapsedTime = reinterpret_cast<decltype(a.cuEventElapsedTime)>(elapsed);
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

__device__ __forceinline__ void ld2(const float* p, long long i, float& a, float& b) {
  float2 v = *reinterpret_cast<const float2*>(p + i);
  a = v.x;
  b = v.y;
}
__device__ __forceinline__ void ld2(const bf16_t* p, long long i, float& a, float& b) {
  unsigned v = *reinterpret_cast<const unsigned*>(p + i);
  a = __uint_as_float(v << 16);
  b = __uint_as_float(v & 0xffff0000u);
}
__device__ __forceinline__ void st2(float* p, long long i, float a, float b) {
  *reinterpret_cast<float2*>(p + i) = make_float2(a, b);
}
__device__ __forceinline__ void st2(bf16_t* p, long long i, float a, float b) {
  bf16_t lo, hi;
  st(&lo, 0, a);
  st(&hi, 0, b);
  *reinterpret_cast<unsigned*>(p + i) = (unsigned)lo | ((unsigned)hi << 16);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// cb: [BC, G, Q, Q]  acs: [BC, H, Q] (fp32)  m: [BC, H, Q, Q];  H = G * hpg.
// m[bc, h, l, s] = cb[bc, h / hpg, l, s] * exp(min(acs[l] - acs[s], 0)) for s <= l, else 0.
// One block per (bc, h); each thread owns columns s and walks down the rows l (coalesced rows).
template <typename T>
__device__ void decay_fwd(const T* cb, const float* acs, T* m, int H, int hpg, int Q) {
  extern __shared__ float a[];  // acs of the head [Q]
  unsigned bh = blockIdx.x;
  int h = (int)(bh % H);
  unsigned bc = bh / H;
  for (int k = threadIdx.x; k < Q; k += blockDim.x) a[k] = acs[(long long)bh * Q + k];
  __syncthreads();
  const T* cbg = cb + ((long long)bc * (H / hpg) + h / hpg) * Q * Q;
  T* out = m + (long long)bh * Q * Q;
  if (Q % 2 == 0) {  // two columns a thread, paired accesses
    for (int s = 2 * threadIdx.x; s < Q; s += 2 * blockDim.x) {
      float a0 = a[s], a1 = a[s + 1];
      // Every lane walks all rows (no divergence); the upper triangle reads cb and writes 0.
#pragma unroll 4
      for (int l = 0; l < Q; ++l) {
        long long o = (long long)l * Q + s;
        float c0, c1;
        ld2(cbg, o, c0, c1);
        float al = a[l];
        st2(out, o, s <= l ? c0 * expf(fminf(al - a0, 0.f)) : 0.f, s + 1 <= l ? c1 * expf(fminf(al - a1, 0.f)) : 0.f);
      }
    }
    return;
  }
  for (int s = threadIdx.x; s < Q; s += blockDim.x) {
    float as = a[s];
#pragma unroll 4
    for (int l = 0; l < Q; ++l) {
      long long o = (long long)l * Q + s;
      st(out, o, s <= l ? ld(cbg, o) * expf(fminf(a[l] - as, 0.f)) : 0.f);
    }
  }
}

// dm: [BC, H, Q, Q]  cb: [BC, G, Q, Q]  acs: [BC, H, Q] (fp32), one block per (bc, h).
// dacs[bc, h, k] = sum_s T[k, s] - sum_l T[l, k] with T = dm * cb * decay (the gradient of acs
// through the decays), reduced in the kernel: T itself never reaches memory. Warp w takes the
// rows w, w + warps, ..: a row's sum is one warp reduction, and each warp keeps its own column
// sums in shared memory (no atomics), added up at the end.
template <typename T>
__device__ void decay_dacs(const T* dm, const T* cb, const float* acs, float* dacs, int G, int hpg, int Q) {
  extern __shared__ float sh[];  // acs [Q] | row sums [Q] | column sums per warp [warps][Q]
  int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* a = sh;
  float* rows = sh + Q;
  float* cols = sh + 2 * Q;
  unsigned bh = blockIdx.x;
  int H = G * hpg;
  unsigned bc = bh / H;
  int g = (int)(bh % H) / hpg;
  for (int k = threadIdx.x; k < Q; k += blockDim.x) a[k] = acs[(long long)bh * Q + k];
  for (int k = threadIdx.x; k < nw * Q; k += blockDim.x) cols[k] = 0.f;
  __syncthreads();
  const T* dmh = dm + (long long)bh * Q * Q;
  const T* cbg = cb + ((long long)bc * G + g) * Q * Q;
  float* mycols = cols + warp * Q;
  for (int l = warp; l < Q; l += nw) {
    float al = a[l], acc = 0.f;
    for (int s = lane; s <= l; s += 32) {
      long long o = (long long)l * Q + s;
      float tv = ld(dmh, o) * ld(cbg, o) * expf(fminf(al - a[s], 0.f));
      acc += tv;
      mycols[s] += tv;
    }
    acc = warp_sum(acc);
    if (lane == 0) rows[l] = acc;
  }
  __syncthreads();
  for (int k = threadIdx.x; k < Q; k += blockDim.x) {
    float col = 0.f;
    for (int w = 0; w < nw; ++w) col += cols[w * Q + k];
    dacs[(long long)bh * Q + k] = rows[k] - col;
  }
}

// dcb[bc, g, l, s] = sum over the heads h of group g of dm * decay (fp32), s <= l (0 above).
// One block per row (bc, g, l), its threads along s.
template <typename T>
__device__ void decay_dcb(const T* dm, const float* acs, float* dcb, int G, int hpg, int Q) {
  unsigned row = blockIdx.x;
  int l = (int)(row % Q);
  unsigned bg = row / Q;
  int g = (int)(bg % G);
  unsigned bc = bg / G;
  int H = G * hpg;
  float* out = dcb + (long long)row * Q;
  for (int s = threadIdx.x; s < Q; s += blockDim.x) {
    float acc = 0.f;
    if (s <= l) {
      for (int j = 0; j < hpg; ++j) {
        long long bh = (long long)bc * H + g * hpg + j;
        const float* a = acs + bh * Q;
        acc += ld(dm, (bh * Q + l) * Q + s) * expf(fminf(a[l] - a[s], 0.f));
      }
    }
    out[s] = acc;
  }
}

__device__ __forceinline__ float sigmoid_f(float v) { return 1.f / (1.f + __expf(-v)); }

// Block-wide sum of two values (every thread gets both); `red` holds 64 floats.
__device__ __forceinline__ void block_sum2(float& u, float& v, float* red) {
  for (int off = 16; off > 0; off >>= 1) {
    u += __shfl_down_sync(0xffffffffu, u, off);
    v += __shfl_down_sync(0xffffffffu, v, off);
  }
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
  if (lane == 0) {
    red[warp] = u;
    red[32 + warp] = v;
  }
  __syncthreads();
  u = 0.f;
  v = 0.f;
  for (int w = 0; w < nw; ++w) {
    u += red[w];
    v += red[32 + w];
  }
  __syncthreads();
}

// One column of one row of the gated norm's input: z, x, u = y + x D, sigmoid(z), g = u silu(z).
template <typename T>
struct GnormCol {
  float z, x, u, sg, g;
  __device__ GnormCol(const float* y, const T* xs, long long sx, const T* zs, long long sz, int row, int Di, int col,
                      float d) {
    z = ld(zs, row * sz + col);
    x = ld(xs, row * sx + col);
    u = y[(long long)row * Di + col] + x * d;
    sg = sigmoid_f(z);
    g = u * z * sg;
  }
};

// The mixer's tail before out_proj, per row (token) and norm group:
//   u = y + x * D[head],  g = u * silu(z),  out = g / sqrt(mean over the group of g^2 + eps) * w.
// y [M, Di] fp32 contiguous; x, z rows of stride sx, sz (columns contiguous); out [M, Di].
// Grid (row blocks, groups), each thread owns the columns x, x + blockDim, .. (at most NC) of the
// group. NC is the register budget per thread: blockDim >= group size / NC (4 up to groups of
// 4096, else 8: fewer registers, more threads per row).
template <typename T, int NC>
__device__ void gnorm_fwd(const float* y, const T* x, long long sx, const float* dsk, const T* z, long long sz,
                          const float* w, T* out, int M, int Di, int gs, int P, float eps) {
  __shared__ float red[64];
  int g = blockIdx.y;
  float dk[NC];  // D of each owned column's head
#pragma unroll
  for (int k = 0; k < NC; ++k) {
    int c = threadIdx.x + k * blockDim.x;
    dk[k] = c < gs ? dsk[(g * gs + c) / P] : 0.f;
  }
  for (int row = blockIdx.x; row < M; row += gridDim.x) {
    float gv[NC];
    float ss = 0.f, unused = 0.f;
#pragma unroll
    for (int k = 0; k < NC; ++k) {
      int c = threadIdx.x + k * blockDim.x;
      gv[k] = 0.f;
      if (c < gs) {
        gv[k] = GnormCol<T>(y, x, sx, z, sz, row, Di, g * gs + c, dk[k]).g;
        ss += gv[k] * gv[k];
      }
    }
    block_sum2(ss, unused, red);
    float r = rsqrtf(ss / gs + eps);
#pragma unroll
    for (int k = 0; k < NC; ++k) {
      int c = threadIdx.x + k * blockDim.x;
      if (c < gs) {
        int col = g * gs + c;
        st(out, (long long)row * Di + col, gv[k] * r * w[col]);
      }
    }
  }
}

// Backward of gnorm_fwd from dout [M, Di] (contiguous): dy (fp32), dx, dz (T, contiguous
// [M, Di]), and per row block the partial sums over its rows of dw and of dD per column
// (wpart, dpart: [gridDim.x, Di], fp32; summed over the blocks by the caller). Two passes over a
// row (the second reads it again from cache) keep the registers, and so the occupancy, low.
template <typename T, int NC>
__device__ void gnorm_bwd(const T* dout, const float* y, const T* x, long long sx, const float* dsk, const T* z,
                          long long sz, const float* w, float* dy, T* dx, T* dz, float* wpart, float* dpart, int M,
                          int Di, int gs, int P, float eps) {
  __shared__ float red[64];
  int g = blockIdx.y;
  float wacc[NC], dacc[NC], dk[NC];
#pragma unroll
  for (int k = 0; k < NC; ++k) {
    int c = threadIdx.x + k * blockDim.x;
    wacc[k] = dacc[k] = 0.f;
    dk[k] = c < gs ? dsk[(g * gs + c) / P] : 0.f;
  }
  for (int row = blockIdx.x; row < M; row += gridDim.x) {
    float ss = 0.f, sd = 0.f;
#pragma unroll
    for (int k = 0; k < NC; ++k) {
      int c = threadIdx.x + k * blockDim.x;
      if (c < gs) {
        int col = g * gs + c;
        float gv = GnormCol<T>(y, x, sx, z, sz, row, Di, col, dk[k]).g;
        ss += gv * gv;
        sd += ld(dout, (long long)row * Di + col) * w[col] * gv;
      }
    }
    block_sum2(ss, sd, red);
    float r = rsqrtf(ss / gs + eps);
    float coef = r * r * r * sd / gs;
#pragma unroll
    for (int k = 0; k < NC; ++k) {
      int c = threadIdx.x + k * blockDim.x;
      if (c < gs) {
        int col = g * gs + c;
        long long o = (long long)row * Di + col;
        const GnormCol<T> v(y, x, sx, z, sz, row, Di, col, dk[k]);
        float go = ld(dout, o);
        float dg = r * go * w[col] - v.g * coef;
        float du = dg * v.z * v.sg;
        wacc[k] += go * v.g * r;
        dacc[k] += du * v.x;
        dy[o] = du;
        st(dx, o, du * dk[k]);
        st(dz, o, dg * v.u * v.sg * (1.f + v.z * (1.f - v.sg)));
      }
    }
  }
#pragma unroll
  for (int k = 0; k < NC; ++k) {
    int c = threadIdx.x + k * blockDim.x;
    if (c < gs) {
      long long o = (long long)blockIdx.x * Di + g * gs + c;
      wpart[o] = wacc[k];
      dpart[o] = dacc[k];
    }
  }
}

// Causal depthwise conv + SiLU on the [B, L, C] layout (the in_proj output's own): out[b, t, c] =
// silu(bias[c] + sum_k w[c, k] xin[b, t - (K-1) + k, c]), where xin is x for t >= 0 and the
// previous K-1 inputs pre [B, C, K-1] (or zeros when pre is null) before. x: batch stride sb,
// row stride sr, channels contiguous. Each thread runs TT consecutive positions of one channel
// with a sliding window in registers. Grid (channel blocks, position tiles, B).
template <typename T, int K>
__device__ __forceinline__ float conv_in(const T* x, long long sb, long long sr, const T* pre, int C, int b, int t,
                                         int c) {
  if (t >= 0) return ld(x, b * sb + t * sr + c);
  if (pre == nullptr) return 0.f;
  return ld(pre, ((long long)b * C + c) * (K - 1) + (K - 1) + t);
}

template <typename T, int K>
__device__ void conv_fwd(const T* x, long long sb, long long sr, const T* pre, const T* w, const T* bias, T* out,
                         int L, int C, int TT) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  int b = blockIdx.z, t0 = blockIdx.y * TT, t1 = min(t0 + TT, L);
  float wk[K], win[K];
#pragma unroll
  for (int k = 0; k < K; ++k) wk[k] = ld(w, (long long)c * K + k);
  float bv = ld(bias, c);
#pragma unroll
  for (int k = 0; k < K - 1; ++k) win[k + 1] = conv_in<T, K>(x, sb, sr, pre, C, b, t0 - (K - 1) + k, c);
  for (int t = t0; t < t1; ++t) {
#pragma unroll
    for (int k = 0; k < K - 1; ++k) win[k] = win[k + 1];
    win[K - 1] = ld(x, b * sb + t * (long long)sr + c);
    float acc = bv;
#pragma unroll
    for (int k = 0; k < K; ++k) acc += wk[k] * win[k];
    st(out, ((long long)b * L + t) * C + c, acc * sigmoid_f(acc));
  }
}

// Backward of conv_fwd without a prefix (training segments start from zeros): from dout
// [B, L, C] (contiguous), dx [B, L, C] (contiguous) and per (b, tile) partial sums of dw
// [.., C, K] and dbias [.., C] (fp32, summed by the caller).
template <typename T, int K>
__device__ void conv_bwd(const T* x, long long sb, long long sr, const T* w, const T* bias, const T* dout, T* dx,
                         float* wpart, float* bpart, int L, int C, int TT) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  int b = blockIdx.z, t0 = blockIdx.y * TT, t1 = min(t0 + TT, L);
  float wk[K], win[K], dp[K], dw[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    wk[k] = ld(w, (long long)c * K + k);
    dp[k] = 0.f;
    dw[k] = 0.f;
  }
  float bv = ld(bias, c), db = 0.f;
#pragma unroll
  for (int k = 0; k < K - 1; ++k) win[k + 1] = conv_in<T, K>(x, sb, sr, nullptr, C, b, t0 - (K - 1) + k, c);
  // dpre at t (kept for the last K positions in dp, dp[K-1] newest); dx at s = t - (K-1) once
  // dpre is known up to s + K - 1.
  for (int t = t0; t < t1 + K - 1; ++t) {
#pragma unroll
    for (int k = 0; k < K - 1; ++k) {
      win[k] = win[k + 1];
      dp[k] = dp[k + 1];
    }
    float d = 0.f;
    if (t < L) {
      win[K - 1] = ld(x, b * sb + t * (long long)sr + c);
      float acc = bv;
#pragma unroll
      for (int k = 0; k < K; ++k) acc += wk[k] * win[k];
      float sg = sigmoid_f(acc);
      d = ld(dout, ((long long)b * L + t) * C + c) * sg * (1.f + acc * (1.f - sg));
      if (t < t1) {
        db += d;
#pragma unroll
        for (int k = 0; k < K; ++k) dw[k] += d * win[k];
      }
    }
    dp[K - 1] = d;
    int s = t - (K - 1);
    if (s >= t0 && s < L) {
      float acc = 0.f;
#pragma unroll
      for (int k = 0; k < K; ++k) acc += wk[k] * dp[K - 1 - k];
      st(dx, ((long long)b * L + s) * C + c, acc);
    }
  }
  long long part = (long long)b * gridDim.y + blockIdx.y;
#pragma unroll
  for (int k = 0; k < K; ++k) wpart[(part * C + c) * K + k] = dw[k];
  bpart[part * C + c] = db;
}

extern "C" __global__ void decay_fwd_f32(const float* cb, const float* acs, float* m, int H, int hpg, int Q) {
  decay_fwd<float>(cb, acs, m, H, hpg, Q);
}
extern "C" __global__ void decay_fwd_bf16(const bf16_t* cb, const float* acs, bf16_t* m, int H, int hpg, int Q) {
  decay_fwd<bf16_t>(cb, acs, m, H, hpg, Q);
}
// ---- Elementwise stages of the chunked SSD around its matmuls, one warp per (b, t, h) row of
// P values, over the padded length Lp = C * Q. Layouts of a [B, Lp, H, P] quantity:
//   natural [B, L, H, P] (the node's inputs and outputs, unpadded: rows t >= L read as 0),
//   cols    [B, C, G, Q, H/G * P] (a group's heads side by side: the B/C matmuls' operand),
//   heads   [B, C, H, Q, P] (per head: the diagonal blocks' operand);
// per-position factors [B, C, H, Q] (fp32).
// Token indices are 32-bit (B * C * Q * H < 2^31, checked by the caller): 64-bit division is slow.
struct Rows {
  int B, L, H, P, G, Q, C;
};

// The offsets of one (token, head) row in each layout.
struct At {
  long long natural, factor, heads, cols;
};

// Offsets of token (b, t)'s head 0, per layout; a head adds H-linear steps except in the columns
// layout, where its group and place in the group count.
struct Token {
  long long natural, factor, cols;
  __device__ Token(const Rows& R, int b, int t) {
    int c = t / R.Q, q = t - c * R.Q;
    long long bc = (long long)b * R.C + c;
    natural = ((long long)b * R.L + t) * R.H * R.P;
    factor = bc * R.H * R.Q + q;
    cols = (bc * R.G * R.Q + q) * (long long)(R.H / R.G) * R.P;
  }
  __device__ At at(const Rows& R, int h) const {
    int hpg = R.H / R.G, g = h / hpg, j = h - g * hpg;
    long long f = factor + (long long)h * R.Q;
    return {natural + (long long)h * R.P, f, f * R.P, cols + ((long long)g * R.Q * hpg + j) * R.P};
  }
};

// One block per token (b, t) of the padded length (grid-stride), its warps over the heads, each
// lane over pairs of P (P even): index arithmetic once per (token, head), 2 values per access.
#define ROWS_LOOP(R)                                                                                      \
  int lane = threadIdx.x & 31, nw = blockDim.x >> 5;                                                      \
  unsigned ntok = (unsigned)(R).B * (R).C * (R).Q, per_b = (unsigned)(R).C * (R).Q;                       \
  for (unsigned bt = blockIdx.x; bt < ntok; bt += gridDim.x)                                               \
    for (int h = threadIdx.x >> 5, b = (int)(bt / per_b), t = (int)(bt % per_b); h < (R).H; h += nw)      \
      if (const At o = Token(R, b, t).at(R, h); true)

// y (natural, fp32) = raw (cols) * exp(acs) + ydiag (heads): the output from the states
// entering the chunks plus the diagonal blocks'.
template <typename T>
__device__ void ssd_out(const T* raw, const T* ydiag, const float* acs, float* y, Rows R) {
  ROWS_LOOP(R) {
    if (t >= R.L) continue;
    float e = expf(acs[o.factor]);
    long long oc = o.cols, oh = o.heads, on = o.natural;
    for (int p = 2 * lane; p < R.P; p += 64) {
      float r0, r1, d0, d1;
      ld2(raw, oc + p, r0, r1);
      ld2(ydiag, oh + p, d0, d1);
      st2(y, on + p, r0 * e + d0, r1 * e + d1);
    }
  }
}

// xw (cols) = x (natural) * w: the inputs weighted by their decay to the chunk end; xh (heads) =
// x, the diagonal blocks' operand.
template <typename T>
__device__ void ssd_xw(const T* x, const float* w, T* xw, T* xh, Rows R) {
  ROWS_LOOP(R) {
    bool in = t < R.L;
    long long oc = o.cols, oh = o.heads;
    float wv = in ? w[o.factor] : 0.f;
    long long on = in ? o.natural : 0;
    for (int p = 2 * lane; p < R.P; p += 64) {
      float v0 = 0.f, v1 = 0.f;
      if (in) ld2(x, on + p, v0, v1);
      st2(xw, oc + p, v0 * wv, v1 * wv);
      st2(xh, oh + p, v0, v1);
    }
  }
}

// From dy (natural, fp32): dyo (cols) = dy * exp(acs), dyh (heads) = dy, and
// dacs[row] = sum over p of dy * exp(acs) * raw (the gradient of acs through exp(acs)).
template <typename T>
__device__ void ssd_dy(const float* dy, const T* raw, const float* acs, T* dyo, T* dyh, float* dacs, Rows R) {
  ROWS_LOOP(R) {
    long long of = o.factor, oc = o.cols, oh = o.heads;
    bool in = t < R.L;
    long long on = in ? o.natural : 0;
    float e = expf(acs[of]), acc = 0.f;
    for (int p = 2 * lane; p < R.P; p += 64) {
      float g0 = 0.f, g1 = 0.f, r0, r1;
      if (in) ld2(dy, on + p, g0, g1);
      ld2(raw, oc + p, r0, r1);
      acc += g0 * e * r0 + g1 * e * r1;
      st2(dyo, oc + p, g0 * e, g1 * e);
      st2(dyh, oh + p, g0, g1);
    }
    acc = warp_sum(acc);
    if (lane == 0) dacs[of] = acc;
  }
}

// dxdt (natural) = dxw (cols) * w + dxdiag (heads), and dws[row] = w * sum over p of dxw * x
// (the gradient of the decay to the chunk end).
template <typename T>
__device__ void ssd_dx(const T* dxw, const T* x, const float* w, const T* dxdiag, T* dxdt, float* dws, Rows R) {
  ROWS_LOOP(R) {
    long long of = o.factor, oc = o.cols, oh = o.heads;
    if (t >= R.L) {
      if (lane == 0) dws[of] = 0.f;
      continue;
    }
    long long on = o.natural;
    float wv = w[of], acc = 0.f;
    for (int p = 2 * lane; p < R.P; p += 64) {
      float g0, g1, x0, x1, d0, d1;
      ld2(dxw, oc + p, g0, g1);
      ld2(x, on + p, x0, x1);
      ld2(dxdiag, oh + p, d0, d1);
      acc += g0 * x0 + g1 * x1;
      st2(dxdt, on + p, g0 * wv + d0, g1 * wv + d1);
    }
    acc = warp_sum(acc);
    if (lane == 0) dws[of] = acc * wv;
  }
}

// ---- Between chunks, per (b, h) and state element e (of P * N): s_0 = h0, s_{c+1} = exp(last_c) s_c
// + states_c; prev_c = s_c is the state entering chunk c, s_C the final state. states, prev:
// [B, C, H, PN] (T); last: [B, C, H] (fp32, <= 0); h0, final: [B, H, PN] (fp32, h0 may be null).
template <typename T>
__device__ void pass_fwd(const T* states, const float* last, const float* h0, T* prev, float* fin, int B, int C,
                         int H, int PN) {
  long long total = (long long)B * H * PN;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    int e = (int)(i % PN);
    long long bh = i / PN;
    int h = (int)(bh % H), b = (int)(bh / H);
    float v = h0 ? h0[i] : 0.f;
    for (int c = 0; c < C; ++c) {
      long long r = ((long long)b * C + c) * H + h;
      st(prev, r * PN + e, v);
      v = v * expf(last[r]) + ld(states, r * PN + e);
    }
    fin[i] = v;
  }
}

// Its backward, from dprev [B, C, H, PN] (T) and dfinal [B, H, PN] (fp32, may be null): with
// G_C = dfinal and G_c = dprev_c + exp(last_c) G_{c+1}: dstates_c = G_{c+1} (T), dh0 = G_0, and
// dlast_c = exp(last_c) <G_{c+1}, prev_c>, summed here per block of e: dlpart [B, C, H, gridDim.x].
// Grid (blocks of e, B * H).
template <typename T>
__device__ void pass_bwd(const T* dprev, const float* dfin, const T* prev, const float* last, T* dstates, float* dh0,
                         float* dlpart, int B, int C, int H, int PN) {
  __shared__ float red[64];
  int e = blockIdx.x * blockDim.x + threadIdx.x;
  int bh = blockIdx.y, h = bh % H, b = bh / H;
  bool in = e < PN;
  long long i = (long long)bh * PN + e;
  float g = (in && dfin) ? dfin[i] : 0.f;
  for (int c = C - 1; c >= 0; --c) {
    long long r = ((long long)b * C + c) * H + h;
    float el = expf(last[r]);
    float part = 0.f, unused = 0.f;
    if (in) {
      st(dstates, r * PN + e, g);
      part = el * g * ld(prev, r * PN + e);
      g = ld(dprev, r * PN + e) + el * g;
    }
    block_sum2(part, unused, red);
    if (threadIdx.x == 0) dlpart[r * gridDim.x + blockIdx.x] = part;
  }
  if (in) dh0[i] = g;
}

// xdt = x * dt per head: x [B*L rows of stride sx, H * P], dt [B*L*H] (fp32), out [B*L*H, P]; one warp
// per (token, head).
template <typename T>
__device__ void scale_fwd(const T* x, long long sx, const float* dt, T* out, unsigned rows, int H, int P) {
  int lane = threadIdx.x & 31;
  unsigned warps = gridDim.x * (blockDim.x >> 5);
  for (unsigned r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    long long xo = (long long)(r / H) * sx + (long long)(r % H) * P, oo = (long long)r * P;
    float d = dt[r];
    for (int p = lane; p < P; p += 32) st(out, oo + p, ld(x, xo + p) * d);
  }
}

// Its backward from g [B*L*H, P]: dx = g * dt ([B*L*H, P]) and ddt = sum over p of g * x.
template <typename T>
__device__ void scale_bwd(const T* g, const T* x, long long sx, const float* dt, T* dx, float* ddt, unsigned rows,
                          int H, int P) {
  int lane = threadIdx.x & 31;
  unsigned warps = gridDim.x * (blockDim.x >> 5);
  for (unsigned r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    long long xo = (long long)(r / H) * sx + (long long)(r % H) * P, oo = (long long)r * P;
    float d = dt[r], acc = 0.f;
    for (int p = lane; p < P; p += 32) {
      float gv = ld(g, oo + p);
      acc += gv * ld(x, xo + p);
      st(dx, oo + p, gv * d);
    }
    acc = warp_sum(acc);
    if (lane == 0) ddt[r] = acc;
  }
}

#define BOTH_KINDS(M) M(f32, float) M(bf16, bf16_t)
#define SCALE(S, T)                                                                                            \
  extern "C" __global__ void scale_fwd_##S(const T* x, long long sx, const float* dt, T* out, unsigned rows,   \
                                           int H, int P) {                                                     \
    scale_fwd<T>(x, sx, dt, out, rows, H, P);                                                                  \
  }                                                                                                            \
  extern "C" __global__ void scale_bwd_##S(const T* g, const T* x, long long sx, const float* dt, T* dx,       \
                                           float* ddt, unsigned rows, int H, int P) {                          \
    scale_bwd<T>(g, x, sx, dt, dx, ddt, rows, H, P);                                                           \
  }
BOTH_KINDS(SCALE)
#define PASS(S, T)                                                                                             \
  extern "C" __global__ void pass_fwd_##S(const T* states, const float* last, const float* h0, T* prev,       \
                                          float* fin, int B, int C, int H, int PN) {                           \
    pass_fwd<T>(states, last, h0, prev, fin, B, C, H, PN);                                                     \
  }                                                                                                            \
  extern "C" __global__ void pass_bwd_##S(const T* dprev, const float* dfin, const T* prev, const float* last, \
                                          T* dstates, float* dh0, float* dlpart, int B, int C, int H, int PN) { \
    pass_bwd<T>(dprev, dfin, prev, last, dstates, dh0, dlpart, B, C, H, PN);                                   \
  }
BOTH_KINDS(PASS)
#define SSD_ROWS(S, T)                                                                                         \
  extern "C" __global__ void __maxnreg__(40) ssd_out_##S(const T* raw, const T* ydiag, const float* acs, float* y, Rows R) {   \
    ssd_out<T>(raw, ydiag, acs, y, R);                                                                         \
  }                                                                                                            \
  extern "C" __global__ void __maxnreg__(40) ssd_xw_##S(const T* x, const float* w, T* xw, T* xh, Rows R) {                  \
    ssd_xw<T>(x, w, xw, xh, R);                                                                                \
  }                                                                                                            \
  extern "C" __global__ void __maxnreg__(40) ssd_dy_##S(const float* dy, const T* raw, const float* acs, T* dyo, T* dyh,       \
                                        float* dacs, Rows R) {                                                 \
    ssd_dy<T>(dy, raw, acs, dyo, dyh, dacs, R);                                                                \
  }                                                                                                            \
  extern "C" __global__ void __maxnreg__(40) ssd_dx_##S(const T* dxw, const T* x, const float* w, const T* dxdiag, T* dxdt,    \
                                        float* dws, Rows R) {                                                  \
    ssd_dx<T>(dxw, x, w, dxdiag, dxdt, dws, R);                                                                \
  }
BOTH_KINDS(SSD_ROWS)
#define DECAY_BWD(S, T)                                                                                   \
  extern "C" __global__ void decay_dacs_##S(const T* dm, const T* cb, const float* acs, float* dacs, int G,  \
                                            int hpg, int Q) {                                             \
    decay_dacs<T>(dm, cb, acs, dacs, G, hpg, Q);                                                          \
  }                                                                                                       \
  extern "C" __global__ void decay_dcb_##S(const T* dm, const float* acs, float* dcb, int G, int hpg,     \
                                           int Q) {                                                       \
    decay_dcb<T>(dm, acs, dcb, G, hpg, Q);                                                                \
  }
BOTH_KINDS(DECAY_BWD)
#define GNORM_NC(S, T, NC)                                                                                  \
  extern "C" __global__ void gnorm_fwd##NC##_##S(const float* y, const T* x, long long sx, const float* dsk,   \
                                                 const T* z, long long sz, const float* w, T* out, int M,      \
                                                 int Di, int gs, int P, float eps) {                           \
    gnorm_fwd<T, NC>(y, x, sx, dsk, z, sz, w, out, M, Di, gs, P, eps);                                        \
  }                                                                                                          \
  extern "C" __global__ void __maxnreg__(40) gnorm_bwd##NC##_##S(const T* dout, const float* y, const T* x, long long sx,      \
                                                 const float* dsk, const T* z, long long sz, const float* w,   \
                                                 float* dy, T* dx, T* dz, float* wpart, float* dpart, int M,   \
                                                 int Di, int gs, int P, float eps) {                           \
    gnorm_bwd<T, NC>(dout, y, x, sx, dsk, z, sz, w, dy, dx, dz, wpart, dpart, M, Di, gs, P, eps);             \
  }
#define GNORM(S, T) GNORM_NC(S, T, 4) GNORM_NC(S, T, 8)
BOTH_KINDS(GNORM)
#define CONV(S, T, K)                                                                                       \
  extern "C" __global__ void conv_fwd_k##K##_##S(const T* x, long long sb, long long sr, const T* pre,       \
                                                 const T* w, const T* bias, T* out, int L, int C, int TT) { \
    conv_fwd<T, K>(x, sb, sr, pre, w, bias, out, L, C, TT);                                                 \
  }                                                                                                         \
  extern "C" __global__ void conv_bwd_k##K##_##S(const T* x, long long sb, long long sr, const T* w,         \
                                                 const T* bias, const T* dout, T* dx, float* wpart,         \
                                                 float* bpart, int L, int C, int TT) {                      \
    conv_bwd<T, K>(x, sb, sr, w, bias, dout, dx, wpart, bpart, L, C, TT);                                   \
  }
#define CONV_KS(S, T) CONV(S, T, 2) CONV(S, T, 3) CONV(S, T, 4)
BOTH_KINDS(CONV_KS)
)CUDA";

// The causal conv kernels exist for these widths (d_conv); others take the tensor path.
constexpr int kConvWidths[] = {2, 3, 4};

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
  for (const char* s : {"_f32", "_bf16"}) {
    for (const char* k : {"decay_fwd", "decay_dacs", "decay_dcb", "gnorm_fwd4", "gnorm_bwd4", "gnorm_fwd8",
                          "gnorm_bwd8", "ssd_out", "ssd_xw",
                          "ssd_dy", "ssd_dx", "pass_fwd", "pass_bwd", "scale_fwd", "scale_bwd"}) {
      names.push_back(k + std::string(s));
    }
    for (int w : kConvWidths) {
      names.push_back("conv_fwd_k" + std::to_string(w) + s);
      names.push_back("conv_bwd_k" + std::to_string(w) + s);
    }
  }
  return names;
}

struct Module {
  std::map<std::string, CUfunction> fns;
  int sms = 1;  // multiprocessors
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
  check(a.cuDeviceGetAttribute(&m.sms, 16, d), "multiprocessor count");
  for (const std::string& k : kernel_names()) {
    CUfunction f = nullptr;
    check(a.cuModuleGetFunction(&f, mod, k.c_str()), k.c_str());
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
  check(a.cuLaunchKernel(m.fns.at(kernel), grid.x, grid.y, grid.z, threads, 1, 1, shared, s, args.data(), nullptr),
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

// [B, L, X] with contiguous columns and rows of one stride (a column slice of a [B, L, Y]
// tensor qualifies), as is; anything else, made contiguous.
at::Tensor rows_view(const at::Tensor& t) {
  bool ok = t.dim() == 3 && t.stride(2) == 1 && t.stride(0) == t.size(1) * t.stride(1);
  return ok ? t : t.contiguous();
}

// ---------------------------------------------------------------------------------------------
// 3. The mixer's tail, u = y + x D; g = u silu(z); out = rmsnorm_groups(g) w, as one node that
//    saves only its inputs (the tensor ops would keep u, silu(z), g and the normed rows in fp32).
struct GatedNorm {
  int64_t groups, headdim;
  double eps;

  // Columns per thread (the kernels' NC) and threads per block for groups of gs.
  static int columns(int64_t gs) { return gs <= 4096 ? 4 : 8; }
  unsigned threads(int64_t gs) const {
    int64_t t = (gs + columns(gs) - 1) / columns(gs);
    t = (t + 31) / 32 * 32;
    require(t <= 1024, "gated norm: group wider than 8192");
    return (unsigned)t;
  }
  std::string kernel(const char* dir, int64_t gs, const at::Tensor& x) const {
    return std::string("gnorm_") + dir + std::to_string(columns(gs)) + suffix(x);
  }

  // The sizes of one call, as the kernels take them (their addresses are the launch arguments).
  struct Call {
    int64_t bsz, l, di, gs;
    unsigned rows, groups;
    long long sx, sz;
    int m, d, g, p;
    float eps;
    Call(const GatedNorm& op, const at::Tensor& y, const at::Tensor& x, const at::Tensor& z)
        : bsz(y.size(0)), l(y.size(1)), di(y.size(2)), gs(di / op.groups),
          rows((unsigned)std::min<int64_t>(bsz * l, 8 * sms(y))), groups((unsigned)op.groups), sx(x.stride(1)),
          sz(z.stride(1)), m((int)(bsz * l)), d((int)di), g((int)gs), p((int)op.headdim), eps((float)op.eps) {}
  };

  at::Tensor forward(const at::Tensor& y, const at::Tensor& x, const at::Tensor& dsk, const at::Tensor& z,
                     const at::Tensor& w) const {
    Call c(*this, y, x, z);
    auto out = at::empty({c.bsz, c.l, c.di}, x.options().memory_format(at::MemoryFormat::Contiguous));
    void *py = y.data_ptr(), *px = x.data_ptr(), *pd = dsk.data_ptr(), *pz = z.data_ptr(), *pw = w.data_ptr(),
         *po = out.data_ptr();
    launch_grid(y, kernel("fwd", c.gs, x), {c.rows, c.groups}, threads(c.gs), 0,
                {&py, &px, &c.sx, &pd, &pz, &c.sz, &pw, &po, &c.m, &c.d, &c.g, &c.p, &c.eps});
    return out;
  }

  // dy, dx, dD, dz, dw
  std::vector<at::Tensor> backward(const at::Tensor& dout, const at::Tensor& y, const at::Tensor& x,
                                   const at::Tensor& dsk, const at::Tensor& z, const at::Tensor& w) const {
    Call c(*this, y, x, z);
    auto f32 = y.options();
    auto dy = at::empty({c.bsz, c.l, c.di}, f32);
    auto dx = at::empty({c.bsz, c.l, c.di}, x.options().memory_format(at::MemoryFormat::Contiguous));
    auto dz = at::empty({c.bsz, c.l, c.di}, z.options().memory_format(at::MemoryFormat::Contiguous));
    auto wpart = at::empty({(int64_t)c.rows, c.di}, f32), dpart = at::empty({(int64_t)c.rows, c.di}, f32);
    void *pg = dout.data_ptr(), *py = y.data_ptr(), *px = x.data_ptr(), *pd = dsk.data_ptr(), *pz = z.data_ptr(),
         *pw = w.data_ptr(), *pdy = dy.data_ptr(), *pdx = dx.data_ptr(), *pdz = dz.data_ptr(),
         *pwp = wpart.data_ptr(), *pdp = dpart.data_ptr();
    launch_grid(y, kernel("bwd", c.gs, x), {c.rows, c.groups}, threads(c.gs), 0,
                {&pg, &py, &px, &c.sx, &pd, &pz, &c.sz, &pw, &pdy, &pdx, &pdz, &pwp, &pdp, &c.m, &c.d, &c.g, &c.p, &c.eps});
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
    launch_grid(x, std::string("scale_fwd") + suffix(x), {warp_blocks(rows, x)}, 256, 0, {&px, &sx, &pd, &po, &rows, &hh, &pp});
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
    launch_grid(x, std::string("scale_bwd") + suffix(x), {warp_blocks(rows, x)}, 256, 0,
                {&pg, &px, &sx, &pd, &pdx, &pdd, &rows, &hh, &pp});
    return {dx, ddt};
  }
};

// ---------------------------------------------------------------------------------------------
// 5. Causal depthwise conv + SiLU on the [B, L, C] layout: one node, saving its inputs.
constexpr int kConvTile = 32;  // positions per thread

std::string conv_kernel(const char* dir, const at::Tensor& w, const at::Tensor& x) {
  return std::string("conv_") + dir + "_k" + std::to_string(w.size(-1)) + suffix(x);
}

at::Tensor conv_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor* pre) {
  int64_t bsz = x.size(0), l = x.size(1), c = x.size(2);
  auto out = at::empty({bsz, l, c}, x.options().memory_format(at::MemoryFormat::Contiguous));
  long long sb = x.stride(0), sr = x.stride(1);
  int ll = (int)l, cc = (int)c, tt = kConvTile;
  void *px = x.data_ptr(), *pp = pre ? pre->data_ptr() : nullptr, *pw = w.data_ptr(), *pb = bias.data_ptr(),
       *po = out.data_ptr();
  Grid grid{(unsigned)((c + 127) / 128), (unsigned)((l + tt - 1) / tt), (unsigned)bsz};
  launch_grid(x, conv_kernel("fwd", w, x), grid, 128, 0, {&px, &sb, &sr, &pp, &pw, &pb, &po, &ll, &cc, &tt});
  return out;
}

struct ConvSiluFunction : public torch::autograd::Function<ConvSiluFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor x, at::Tensor w,
                                                at::Tensor bias) {
    ctx->save_for_backward({x, w, bias});
    return {conv_forward(x, w, bias, nullptr)};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto v = ctx->get_saved_variables();
    const at::Tensor &x = v[0], &w = v[1], &bias = v[2];
    at::Tensor dout = grads[0].contiguous();
    int64_t bsz = x.size(0), l = x.size(1), c = x.size(2), k = w.size(-1);
    int tt = kConvTile;
    int64_t tiles = (l + tt - 1) / tt;
    auto f32 = x.options().dtype(at::kFloat);
    auto dx = at::empty({bsz, l, c}, x.options().memory_format(at::MemoryFormat::Contiguous));
    auto wpart = at::empty({bsz * tiles, c, k}, f32), bpart = at::empty({bsz * tiles, c}, f32);
    long long sb = x.stride(0), sr = x.stride(1);
    int ll = (int)l, cc = (int)c;
    void *px = x.data_ptr(), *pw = w.data_ptr(), *pb = bias.data_ptr(), *pg = dout.data_ptr(),
         *pdx = dx.data_ptr(), *pwp = wpart.data_ptr(), *pbp = bpart.data_ptr();
    Grid grid{(unsigned)((c + 127) / 128), (unsigned)tiles, (unsigned)bsz};
    launch_grid(x, conv_kernel("bwd", w, x), grid, 128, 0, {&px, &sb, &sr, &pw, &pb, &pg, &pdx, &pwp, &pbp, &ll, &cc, &tt});
    return {dx, wpart.sum(0).view(w.sizes()).to(w.scalar_type()), bpart.sum(0).to(bias.scalar_type())};
  }
};

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
                dcb->scalar_type() == at::kFloat && dacs->scalar_type() == at::kFloat,
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

// One of the SSD's row kernels (ssd_out, ssd_xw, ssd_dy, ssd_dx) on `n` contiguous CUDA tensors in
// its argument order; tensor `kind_of` picks the kernel's kind; dims = B, L, H, P, G, Q, C.
int stuffed_ssd_rows(const char* stem, at::Tensor** ts, int n, int kind_of, const int* dims) {
  return guarded([&] {
    struct {
      int B, L, H, P, G, Q, C;
    } rows{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6]};
    std::vector<void*> ptrs(n);
    std::vector<void*> args;
    for (int i = 0; i < n; ++i) {
      require(ts[i]->is_contiguous() && ts[i]->is_cuda(), "SSD row kernel: an operand is not a contiguous CUDA tensor");
      ptrs[i] = ts[i]->data_ptr();
      args.push_back(&ptrs[i]);
    }
    args.push_back(&rows);
    long long tokens = (long long)rows.B * rows.C * rows.Q;  // one block each, its warps over the heads
    require(tokens * rows.H < (1LL << 31), "SSD row kernel: more than 2^31 rows");
    require(rows.P % 2 == 0, "SSD row kernel: odd head dim");
    unsigned threads = (unsigned)std::min(256, std::max(32, (rows.H + 1) / 2 * 32));  // about 2 heads a warp
    long long blocks = std::min<long long>(tokens, 32LL * sms(*ts[0]));
    launch_grid(*ts[0], std::string(stem) + suffix(*ts[kind_of]), {(unsigned)std::max(1LL, blocks)}, threads, 0, args);
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
    void *ps = states->data_ptr(), *pl = last->data_ptr(), *ph = h0 ? h0->data_ptr() : nullptr,
         *pp = prev->data_ptr(), *pf = fin->data_ptr();
    launch(*states, std::string("pass_fwd") + suffix(*states), fin->numel(), {&ps, &pl, &ph, &pp, &pf, &b, &c, &h, &pn});
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
    unsigned blocks = (unsigned)((pn + 255) / 256);
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

// out [B, L, C] = silu(causal depthwise conv of x [B, L, C] with w [C, 1, K], bias [C]), all of one
// kind; pre [B, C, K-1] (null: zeros) are the inputs before x, only without autograd.
int stuffed_conv_silu(at::Tensor* x, at::Tensor* w, at::Tensor* bias, at::Tensor* pre, at::Tensor** out) {
  return guarded([&] {
    require(x->dim() == 3 && w->dim() == 3 && w->size(0) == x->size(2) && w->size(1) == 1 &&
                bias->numel() == x->size(2),
            "conv: x [B, L, C], w [C, 1, K], bias [C]");
    int64_t k = w->size(2);
    require(std::find(std::begin(kConvWidths), std::end(kConvWidths), k) != std::end(kConvWidths),
            "conv: no kernel for this width");
    require(w->scalar_type() == x->scalar_type() && bias->scalar_type() == x->scalar_type(), "conv: one kind");
    at::Tensor xv = rows_view(*x), wc = w->contiguous(), bc = bias->contiguous();
    if (pre != nullptr) {
      require(!at::GradMode::is_enabled() ||
                  !(x->requires_grad() || w->requires_grad() || bias->requires_grad() || pre->requires_grad()),
              "conv: a prefix only without autograd");
      at::Tensor pc = pre->contiguous();
      require(pc.dim() == 3 && pc.size(0) == x->size(0) && pc.size(1) == x->size(2) && pc.size(2) == k - 1 &&
                  pc.scalar_type() == x->scalar_type(),
              "conv: pre is [B, C, K-1] of x's kind");
      *out = new at::Tensor(conv_forward(xv, wc, bc, &pc));
    } else {
      *out = new at::Tensor(ConvSiluFunction::apply(xv, wc, bc)[0]);
    }
  });
}

}  // extern "C"
