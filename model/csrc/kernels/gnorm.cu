// The mixer's tail before out_proj: D skip, gate and grouped RMSNorm, forward and backward
// (`gated_norm` in src/ssd/fused.rs; its tensor-op twin is the mixer's own tail).
#include "common.cuh"

#ifndef GNORM_BWD_REGS
#define GNORM_BWD_REGS 40  // registers a thread of gnorm_bwd (occupancy against loads in flight)
#endif

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
__device__ void gnorm_fwd(const float* __restrict__ y, const T* __restrict__ x, long long sx,
                          const float* __restrict__ dsk, const T* __restrict__ z, long long sz,
                          const float* __restrict__ w, T* __restrict__ out, int M, int Di, int gs, int P, float eps) {
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
__device__ void gnorm_bwd(const T* __restrict__ dout, const float* __restrict__ y, const T* __restrict__ x,
                          long long sx, const float* __restrict__ dsk, const T* __restrict__ z, long long sz,
                          const float* __restrict__ w, float* __restrict__ dy, T* __restrict__ dx, T* __restrict__ dz,
                          float* __restrict__ wpart, float* __restrict__ dpart, int M, int Di, int gs, int P,
                          float eps) {
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

#define GNORM_NC(S, T, NC)                                                                                  \
  extern "C" __global__ void gnorm_fwd##NC##_##S(const float* __restrict__ y, const T* __restrict__ x, long long sx,  \
                                                 const float* __restrict__ dsk, const T* __restrict__ z,              \
                                                 long long sz, const float* __restrict__ w, T* __restrict__ out,      \
                                                 int M, int Di, int gs, int P, float eps) {                           \
    gnorm_fwd<T, NC>(y, x, sx, dsk, z, sz, w, out, M, Di, gs, P, eps);                                        \
  }                                                                                                          \
  extern "C" __global__ void __maxnreg__(GNORM_BWD_REGS)                                                          \
      gnorm_bwd##NC##_##S(const T* __restrict__ dout, const float* __restrict__ y, const T* __restrict__ x,          \
                          long long sx, const float* __restrict__ dsk, const T* __restrict__ z, long long sz,        \
                          const float* __restrict__ w, float* __restrict__ dy, T* __restrict__ dx,                   \
                          T* __restrict__ dz, float* __restrict__ wpart, float* __restrict__ dpart, int M, int Di,   \
                          int gs, int P, float eps) {                                                                \
    gnorm_bwd<T, NC>(dout, y, x, sx, dsk, z, sz, w, dy, dx, dz, wpart, dpart, M, Di, gs, P, eps);             \
  }
#define GNORM(S, T) GNORM_NC(S, T, 4) GNORM_NC(S, T, 8)
BOTH_KINDS(GNORM)
