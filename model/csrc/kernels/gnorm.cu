// The mixer's tail before out_proj: D skip, gate and grouped RMSNorm, forward and backward
// (`gated_norm` in src/ssd/fused.rs; its tensor-op twin is the mixer's own tail).
#include "common.cuh"

// Registers a thread of gnorm_bwd (occupancy against loads in flight), for 1 and for 4 adjacent
// columns a slot (the latter's 4 values a load need more to stay out of local memory).
#ifndef GNORM_BWD_REGS
#define GNORM_BWD_REGS 40
#endif
#ifndef GNORM_BWD_VREGS
#define GNORM_BWD_VREGS 64
#endif

// V adjacent columns of one row, from column `col` (aligned to V): the gate z, the input x, the
// skip-added u = y + x * D and g = u * silu(z).
template <typename T, int V>
struct GnormCols {
  float z[V], x[V], u[V], sg[V], g[V];
  __device__ GnormCols(const float* y, const T* xs, long long sx, const T* zs, long long sz, int row, int Di, int col,
                       const float* d) {
    ldv<V>(zs, row * sz + col, z);
    ldv<V>(xs, row * sx + col, x);
    ldv<V>(y, (long long)row * Di + col, u);
#pragma unroll
    for (int v = 0; v < V; ++v) {
      u[v] += x[v] * d[v];
      sg[v] = sigmoid_f(z[v]);
      g[v] = u[v] * z[v] * sg[v];
    }
  }
};

// The mixer's tail before out_proj, per row (token) and norm group:
//   u = y + x * D[head],  g = u * silu(z),  out = g / sqrt(mean over the group of g^2 + eps) * w.
// y [M, Di] fp32 contiguous; x, z rows of stride sx, sz (columns contiguous); out [M, Di].
// Grid (row blocks, groups). A thread owns S slots of V adjacent columns of the group, slot s
// at columns (threadIdx.x + s * blockDim) * V: one load of V values per operand and slot (the host
// takes V 4 only where gs, the strides and the pointers are multiples of 4, else V 1 with S 4 or
// 8). blockDim >= group size / (V S).
template <typename T, int V, int S>
__device__ void gnorm_fwd(const float* __restrict__ y, const T* __restrict__ x, long long sx,
                          const float* __restrict__ dsk, const T* __restrict__ z, long long sz,
                          const float* __restrict__ w, T* __restrict__ out, int M, int Di, int gs, int P, float eps) {
  __shared__ float red[64];
  int g = blockIdx.y;
  float dk[S][V];  // D of each owned column's head
#pragma unroll
  for (int s = 0; s < S; ++s)
#pragma unroll
    for (int v = 0; v < V; ++v) {
      int c = (threadIdx.x + s * blockDim.x) * V + v;
      dk[s][v] = c < gs ? dsk[(g * gs + c) / P] : 0.f;
    }
  for (int row = blockIdx.x; row < M; row += gridDim.x) {
    float gv[S][V];
    float ss = 0.f, unused = 0.f;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      int c = (threadIdx.x + s * blockDim.x) * V;
#pragma unroll
      for (int v = 0; v < V; ++v) gv[s][v] = 0.f;
      if (c < gs) {
        const GnormCols<T, V> col(y, x, sx, z, sz, row, Di, g * gs + c, dk[s]);
#pragma unroll
        for (int v = 0; v < V; ++v) {
          gv[s][v] = col.g[v];
          ss += col.g[v] * col.g[v];
        }
      }
    }
    block_sum2(ss, unused, red);
    float r = rsqrtf(ss / gs + eps);
#pragma unroll
    for (int s = 0; s < S; ++s) {
      int c = (threadIdx.x + s * blockDim.x) * V;
      if (c < gs) {
        int col = g * gs + c;
        float wv[V], o[V];
        ldv<V>(w, col, wv);
#pragma unroll
        for (int v = 0; v < V; ++v) o[v] = gv[s][v] * r * wv[v];
        stv<V>(out, (long long)row * Di + col, o);
      }
    }
  }
}

// Backward of gnorm_fwd from dout [M, Di] (contiguous): dy (fp32), dx (T, contiguous [M, Di]),
// dz (T, rows of stride sdz: in place in in_proj's gradient where the host found one), and per row block the partial sums over its rows of dw and of dD per column
// (wpart, dpart: [gridDim.x, Di], fp32; summed over the blocks by the caller). Two passes over a
// row (the second reads it again from cache) keep the registers, and so the occupancy, low.
template <typename T, int V, int S>
__device__ void gnorm_bwd(const T* __restrict__ dout, const float* __restrict__ y, const T* __restrict__ x,
                          long long sx, const float* __restrict__ dsk, const T* __restrict__ z, long long sz,
                          const float* __restrict__ w, float* __restrict__ dy, T* __restrict__ dx, T* __restrict__ dz,
                          long long sdz, float* __restrict__ wpart, float* __restrict__ dpart, int M, int Di, int gs, int P,
                          float eps) {
  __shared__ float red[64];
  int g = blockIdx.y;
  float wacc[S][V], dacc[S][V], dk[S][V];
#pragma unroll
  for (int s = 0; s < S; ++s)
#pragma unroll
    for (int v = 0; v < V; ++v) {
      int c = (threadIdx.x + s * blockDim.x) * V + v;
      wacc[s][v] = dacc[s][v] = 0.f;
      dk[s][v] = c < gs ? dsk[(g * gs + c) / P] : 0.f;
    }
  for (int row = blockIdx.x; row < M; row += gridDim.x) {
    float ss = 0.f, sd = 0.f;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      int c = (threadIdx.x + s * blockDim.x) * V;
      if (c < gs) {
        int col = g * gs + c;
        const GnormCols<T, V> cv(y, x, sx, z, sz, row, Di, col, dk[s]);
        float go[V], wv[V];
        ldv<V>(dout, (long long)row * Di + col, go);
        ldv<V>(w, col, wv);
#pragma unroll
        for (int v = 0; v < V; ++v) {
          ss += cv.g[v] * cv.g[v];
          sd += go[v] * wv[v] * cv.g[v];
        }
      }
    }
    block_sum2(ss, sd, red);
    float r = rsqrtf(ss / gs + eps);
    float coef = r * r * r * sd / gs;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      int c = (threadIdx.x + s * blockDim.x) * V;
      if (c < gs) {
        int col = g * gs + c;
        long long o = (long long)row * Di + col;
        const GnormCols<T, V> cv(y, x, sx, z, sz, row, Di, col, dk[s]);
        float go[V], wv[V], du[V], ddx[V], ddz[V];
        ldv<V>(dout, o, go);
        ldv<V>(w, col, wv);
#pragma unroll
        for (int v = 0; v < V; ++v) {
          float dg = r * go[v] * wv[v] - cv.g[v] * coef;
          du[v] = dg * cv.z[v] * cv.sg[v];
          wacc[s][v] += go[v] * cv.g[v] * r;
          dacc[s][v] += du[v] * cv.x[v];
          ddx[v] = du[v] * dk[s][v];
          ddz[v] = dg * cv.u[v] * cv.sg[v] * (1.f + cv.z[v] * (1.f - cv.sg[v]));
        }
        stv<V>(dy, o, du);
        stv<V>(dx, o, ddx);
        stv<V>(dz, (long long)row * sdz + col, ddz);
      }
    }
  }
#pragma unroll
  for (int s = 0; s < S; ++s) {
    int c = (threadIdx.x + s * blockDim.x) * V;
    if (c < gs) {
      long long o = (long long)blockIdx.x * Di + g * gs + c;
      stv<V>(wpart, o, wacc[s]);
      stv<V>(dpart, o, dacc[s]);
    }
  }
}

// Kernels gnorm_fwd_v{V}s{S}_{kind}, gnorm_bwd_..: V 1 with S 4 or 8, V 4 with S 1 or 2.
#define GNORM_VS(S_, T, V, S)                                                                                  \
  extern "C" __global__ void gnorm_fwd_v##V##s##S##_##S_(const float* __restrict__ y, const T* __restrict__ x,      \
                                                         long long sx, const float* __restrict__ dsk,               \
                                                         const T* __restrict__ z, long long sz,                     \
                                                         const float* __restrict__ w, T* __restrict__ out, int M,   \
                                                         int Di, int gs, int P, float eps) {                        \
    gnorm_fwd<T, V, S>(y, x, sx, dsk, z, sz, w, out, M, Di, gs, P, eps);                                      \
  }                                                                                                           \
  extern "C" __global__ void __maxnreg__(V == 1 ? GNORM_BWD_REGS : GNORM_BWD_VREGS) gnorm_bwd_v##V##s##S##_##S_(                            \
      const T* __restrict__ dout, const float* __restrict__ y, const T* __restrict__ x, long long sx,              \
      const float* __restrict__ dsk, const T* __restrict__ z, long long sz, const float* __restrict__ w,           \
      float* __restrict__ dy, T* __restrict__ dx, T* __restrict__ dz, long long sdz, float* __restrict__ wpart,    \
      float* __restrict__ dpart, int M, int Di, int gs, int P, float eps) {                                        \
    gnorm_bwd<T, V, S>(dout, y, x, sx, dsk, z, sz, w, dy, dx, dz, sdz, wpart, dpart, M, Di, gs, P, eps);      \
  }
#define GNORM(S_, T) GNORM_VS(S_, T, 1, 4) GNORM_VS(S_, T, 1, 8) GNORM_VS(S_, T, 4, 1) GNORM_VS(S_, T, 4, 2)
BOTH_KINDS(GNORM)
