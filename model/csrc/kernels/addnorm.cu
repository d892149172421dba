// The residual stream between blocks: r' = r + delta (fp32) and out = r' / sqrt(mean(r'^2) + eps) * w,
// forward and backward (`add_norm` in src/ssd/fused.rs; its tensor-op twin is lm.rs's rms_norm of
// residual + out). One warp per row (token): lane owns the columns lane, lane + 32, .. (NC of them,
// so rows of up to 32 NC), read and written coalesced, kept in registers between the two passes.
// delta null: r' is r (the first block, after the embedding) and is not written.
#include "common.cuh"

template <typename T, int NC>
__device__ void addnorm_fwd(const float* __restrict__ r, const T* __restrict__ delta, float* __restrict__ rout,
                            const float* __restrict__ w, T* __restrict__ out, int M, int D, float eps) {
  int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
  for (int row = blockIdx.x * wpb + (threadIdx.x >> 5); row < M; row += gridDim.x * wpb) {
    long long base = (long long)row * D;
    float v[NC];
    float ss = 0.f;
    // Every load of the row first, then the stores (a lane keeps 2 NC loads in flight).
#pragma unroll
    for (int k = 0; k < NC; ++k) {
      int c = lane + 32 * k;
      v[k] = c < D ? r[base + c] + (delta != nullptr ? ld(delta, base + c) : 0.f) : 0.f;
      ss += v[k] * v[k];
    }
    if (delta != nullptr) {
#pragma unroll
      for (int k = 0; k < NC; ++k) {
        int c = lane + 32 * k;
        if (c < D) rout[base + c] = v[k];
      }
    }
    float rs = rsqrtf(warp_sum(ss) / D + eps);
#pragma unroll
    for (int k = 0; k < NC; ++k) {
      int c = lane + 32 * k;
      if (c < D) st(out, base + c, v[k] * rs * w[c]);
    }
  }
}

// Backward of addnorm_fwd from dout [M, D] (T) and drout [M, D] (fp32; null when r' was not read
// further): dr = drout + d(norm)/dr' (fp32), ddelta = the same in T (null: not wanted), and per block
// the partial sums over its rows of dw (wpart [gridDim.x, D]; summed over the blocks by the caller).
// rr is r' (or r when the forward had no delta).
template <typename T, int NC>
__device__ void addnorm_bwd(const T* __restrict__ dout, const float* __restrict__ drout, const float* __restrict__ rr,
                            const float* __restrict__ w, float* __restrict__ dr, T* __restrict__ ddelta,
                            float* __restrict__ wpart, int M, int D, float eps) {
  __shared__ float red[8][32 * NC];  // the block's warps' dw sums (blockDim.x <= 256)
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wpb = blockDim.x >> 5;
  float wacc[NC];
#pragma unroll
  for (int k = 0; k < NC; ++k) wacc[k] = 0.f;
  for (int row = blockIdx.x * wpb + warp; row < M; row += gridDim.x * wpb) {
    long long base = (long long)row * D;
    float v[NC], go[NC], gr[NC];
    float ss = 0.f, sd = 0.f;
#pragma unroll
    for (int k = 0; k < NC; ++k) {
      int c = lane + 32 * k;
      bool in = c < D;
      v[k] = in ? rr[base + c] : 0.f;
      go[k] = in ? ld(dout, base + c) : 0.f;
      gr[k] = in && drout != nullptr ? drout[base + c] : 0.f;
      ss += v[k] * v[k];
      sd += go[k] * (in ? w[c] : 0.f) * v[k];
    }
    ss = warp_sum(ss);
    sd = warp_sum(sd);
    float rs = rsqrtf(ss / D + eps);
    float coef = rs * rs * rs * sd / D;
#pragma unroll
    for (int k = 0; k < NC; ++k) {
      int c = lane + 32 * k;
      if (c < D) {
        float g = rs * go[k] * w[c] - v[k] * coef + gr[k];
        dr[base + c] = g;
        if (ddelta != nullptr) st(ddelta, base + c, g);
        wacc[k] += go[k] * v[k] * rs;
      }
    }
  }
#pragma unroll
  for (int k = 0; k < NC; ++k) red[warp][lane + 32 * k] = wacc[k];
  __syncthreads();
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float s = 0.f;
    for (int i = 0; i < wpb; ++i) s += red[i][c];
    wpart[(long long)blockIdx.x * D + c] = s;
  }
}

#define ADDNORM_NC(S, T, NC)                                                                                      \
  extern "C" __global__ void addnorm_fwd##NC##_##S(const float* __restrict__ r, const T* __restrict__ delta,          \
                                                   float* __restrict__ rout, const float* __restrict__ w,             \
                                                   T* __restrict__ out, int M, int D, float eps) {                    \
    addnorm_fwd<T, NC>(r, delta, rout, w, out, M, D, eps);                                                        \
  }                                                                                                               \
  extern "C" __global__ void addnorm_bwd##NC##_##S(const T* __restrict__ dout, const float* __restrict__ drout,       \
                                                   const float* __restrict__ rr, const float* __restrict__ w,         \
                                                   float* __restrict__ dr, T* __restrict__ ddelta,                    \
                                                   float* __restrict__ wpart, int M, int D, float eps) {              \
    addnorm_bwd<T, NC>(dout, drout, rr, w, dr, ddelta, wpart, M, D, eps);                                         \
  }
#define ADDNORM(S, T) ADDNORM_NC(S, T, 4) ADDNORM_NC(S, T, 8) ADDNORM_NC(S, T, 16) ADDNORM_NC(S, T, 32)
BOTH_KINDS(ADDNORM)
