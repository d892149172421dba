// The residual stream between blocks: r' = r + delta (fp32) and out = r' / sqrt(mean(r'^2) + eps) * w,
// forward and backward (`add_norm` in src/ssd/fused.rs; its tensor-op twin is lm.rs's rms_norm of
// residual + out). One warp per row (token), a lane owning NC of its columns (so rows of up to
// 32 NC), read and written coalesced, kept in registers between the two passes.
// delta null: r' is r (the first block, after the embedding) and is not written.
#include "common.cuh"

// A lane's columns come in NC / V slots of V adjacent columns: slot k is columns (lane + 32 k) V
// .. + V - 1, one load of V values an operand (the host takes V 4 only where D and the pointers
// are multiples of 4, else V 1: columns lane, lane + 32, ..).
template <typename T, int NC, int V>
__device__ void addnorm_fwd(const float* __restrict__ r, const T* __restrict__ delta, float* __restrict__ rout,
                            const float* __restrict__ w, T* __restrict__ out, int M, int D, float eps) {
  constexpr int K = NC / V;
  int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
  for (int row = blockIdx.x * wpb + (threadIdx.x >> 5); row < M; row += gridDim.x * wpb) {
    long long base = (long long)row * D;
    float v[K][V];
    float ss = 0.f;
    // Every load of the row first, then the stores (a lane keeps 2 NC loads in flight).
#pragma unroll
    for (int k = 0; k < K; ++k) {
      int c = (lane + 32 * k) * V;
      float dl[V] = {};
#pragma unroll
      for (int i = 0; i < V; ++i) v[k][i] = 0.f;
      if (c < D) {
        ldv<V>(r, base + c, v[k]);
        if (delta != nullptr) ldv<V>(delta, base + c, dl);
      }
#pragma unroll
      for (int i = 0; i < V; ++i) {
        v[k][i] += dl[i];
        ss += v[k][i] * v[k][i];
      }
    }
    if (delta != nullptr) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        int c = (lane + 32 * k) * V;
        if (c < D) stv<V>(rout, base + c, v[k]);
      }
    }
    float rs = rsqrtf(warp_sum(ss) / D + eps);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      int c = (lane + 32 * k) * V;
      if (c < D) {
        float wv[V], o[V];
        ldv<V>(w, c, wv);
#pragma unroll
        for (int i = 0; i < V; ++i) o[i] = v[k][i] * rs * wv[i];
        stv<V>(out, base + c, o);
      }
    }
  }
}

// Backward of addnorm_fwd from dout [M, D] (T) and drout [M, D] (fp32; null when r' was not read
// further): dr = drout + d(norm)/dr' (fp32), ddelta = the same in T (null: not wanted), and per block
// the partial sums over its rows of dw (wpart [gridDim.x, D]; summed over the blocks by the caller).
// rr is r' (or r when the forward had no delta).
template <typename T, int NC, int V>
__device__ void addnorm_bwd(const T* __restrict__ dout, const float* __restrict__ drout, const float* __restrict__ rr,
                            const float* __restrict__ w, float* __restrict__ dr, T* __restrict__ ddelta,
                            float* __restrict__ wpart, int M, int D, float eps) {
  constexpr int K = NC / V;
  __shared__ float red[8][32 * NC];  // the block's warps' dw sums (blockDim.x <= 256)
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wpb = blockDim.x >> 5;
  float wacc[K][V];
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int i = 0; i < V; ++i) wacc[k][i] = 0.f;
  for (int row = blockIdx.x * wpb + warp; row < M; row += gridDim.x * wpb) {
    long long base = (long long)row * D;
    float v[K][V], go[K][V], gr[K][V];
    float ss = 0.f, sd = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      int c = (lane + 32 * k) * V;
      float wv[V] = {};
#pragma unroll
      for (int i = 0; i < V; ++i) v[k][i] = go[k][i] = gr[k][i] = 0.f;
      if (c < D) {
        ldv<V>(rr, base + c, v[k]);
        ldv<V>(dout, base + c, go[k]);
        if (drout != nullptr) ldv<V>(drout, base + c, gr[k]);
        ldv<V>(w, c, wv);
      }
#pragma unroll
      for (int i = 0; i < V; ++i) {
        ss += v[k][i] * v[k][i];
        sd += go[k][i] * wv[i] * v[k][i];
      }
    }
    ss = warp_sum(ss);
    sd = warp_sum(sd);
    float rs = rsqrtf(ss / D + eps);
    float coef = rs * rs * rs * sd / D;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      int c = (lane + 32 * k) * V;
      if (c < D) {
        float wv[V], g[V];
        ldv<V>(w, c, wv);
#pragma unroll
        for (int i = 0; i < V; ++i) {
          g[i] = rs * go[k][i] * wv[i] - v[k][i] * coef + gr[k][i];
          wacc[k][i] += go[k][i] * v[k][i] * rs;
        }
        stv<V>(dr, base + c, g);
        if (ddelta != nullptr) stv<V>(ddelta, base + c, g);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int i = 0; i < V; ++i) red[warp][(lane + 32 * k) * V + i] = wacc[k][i];
  __syncthreads();
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float s = 0.f;
    for (int i = 0; i < wpb; ++i) s += red[i][c];
    wpart[(long long)blockIdx.x * D + c] = s;
  }
}

#define ADDNORM_NC(S, T, NC, V)                                                                                   \
  extern "C" __global__ void addnorm_fwd##NC##v##V##_##S(const float* __restrict__ r, const T* __restrict__ delta,    \
                                                         float* __restrict__ rout, const float* __restrict__ w,       \
                                                         T* __restrict__ out, int M, int D, float eps) {              \
    addnorm_fwd<T, NC, V>(r, delta, rout, w, out, M, D, eps);                                                     \
  }                                                                                                               \
  extern "C" __global__ void addnorm_bwd##NC##v##V##_##S(const T* __restrict__ dout, const float* __restrict__ drout, \
                                                         const float* __restrict__ rr, const float* __restrict__ w,   \
                                                         float* __restrict__ dr, T* __restrict__ ddelta,              \
                                                         float* __restrict__ wpart, int M, int D, float eps) {        \
    addnorm_bwd<T, NC, V>(dout, drout, rr, w, dr, ddelta, wpart, M, D, eps);                                      \
  }
#define ADDNORM_V(S, T, NC) ADDNORM_NC(S, T, NC, 1) ADDNORM_NC(S, T, NC, 4)
#define ADDNORM(S, T) ADDNORM_V(S, T, 4) ADDNORM_V(S, T, 8) ADDNORM_V(S, T, 16) ADDNORM_V(S, T, 32)
BOTH_KINDS(ADDNORM)
