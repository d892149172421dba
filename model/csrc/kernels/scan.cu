// The state passing between chunks, per (b, h) and state element e (of P * N): s_0 = h0,
// s_{c+1} = exp(last_c) s_c + states_c; prev_c = s_c is the state entering chunk c, s_C the final
// state. states, prev: [B, C, H, PN] (T); last: [B, C, H] (fp32, <= 0); h0, final: [B, H, PN]
// (fp32, h0 may be null). PN is even (P is). Rust side: `recompute` and `backward` in src/ssd/fused.rs (tensor-op
// twin: `pass_states` and `pass_states_backward` there, one segment-sum matmul).
#include "common.cuh"

// Grid (blocks of pairs of e, B * H): 2 values a thread, no 64-bit index division.
template <typename T>
__device__ void pass_fwd(const T* __restrict__ states, const float* __restrict__ last, const float* __restrict__ h0,
                         T* __restrict__ prev, float* __restrict__ fin, int B, int C, int H, int PN) {
  int e = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
  int bh = blockIdx.y, h = bh % H, b = bh / H;
  if (e >= PN) return;
  long long i = (long long)bh * PN + e;
  float v0 = 0.f, v1 = 0.f;
  if (h0) ld2(h0, i, v0, v1);
#pragma unroll 4  // the loads of 4 chunks in flight (they do not depend on the running state)
  for (int c = 0; c < C; ++c) {
    long long r = ((long long)b * C + c) * H + h;
    float el = expf(last[r]), s0, s1;
    st2(prev, r * PN + e, v0, v1);
    ld2(states, r * PN + e, s0, s1);
    v0 = v0 * el + s0;
    v1 = v1 * el + s1;
  }
  st2(fin, i, v0, v1);
}

// Its backward, from dprev [B, C, H, PN] (T) and dfinal [B, H, PN] (fp32, may be null): with
// G_C = dfinal and G_c = dprev_c + exp(last_c) G_{c+1}: dstates_c = G_{c+1} (T), dh0 = G_0, and
// dlast_c = exp(last_c) <G_{c+1}, prev_c>, summed here per block of e: dlpart [B, C, H, gridDim.x].
// Grid (blocks of pairs of e, B * H), 2 values a thread.
template <typename T>
__device__ void pass_bwd(const T* __restrict__ dprev, const float* __restrict__ dfin, const T* __restrict__ prev,
                         const float* __restrict__ last, T* __restrict__ dstates, float* __restrict__ dh0,
                         float* __restrict__ dlpart, int B, int C, int H, int PN) {
  __shared__ float red[64];
  int e = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
  int bh = blockIdx.y, h = bh % H, b = bh / H;
  bool in = e < PN;
  long long i = (long long)bh * PN + e;
  float g0 = 0.f, g1 = 0.f;
  if (in && dfin) ld2(dfin, i, g0, g1);
  // The next (earlier) chunk's loads are issued before this one's block sum (whose barriers the
  // compiler does not move loads across).
  float np0 = 0.f, np1 = 0.f, nd0 = 0.f, nd1 = 0.f;
  auto fetch = [&](int c) {
    long long r = ((long long)b * C + c) * H + h;
    if (in && c >= 0) {
      ld2(prev, r * PN + e, np0, np1);
      ld2(dprev, r * PN + e, nd0, nd1);
    }
  };
  fetch(C - 1);
  for (int c = C - 1; c >= 0; --c) {
    long long r = ((long long)b * C + c) * H + h;
    float el = expf(last[r]);
    float part = 0.f, unused = 0.f;
    float p0 = np0, p1 = np1, d0 = nd0, d1 = nd1;
    fetch(c - 1);
    if (in) {
      st2(dstates, r * PN + e, g0, g1);
      part = el * (g0 * p0 + g1 * p1);
      g0 = d0 + el * g0;
      g1 = d1 + el * g1;
    }
    block_sum2(part, unused, red);
    if (threadIdx.x == 0) dlpart[r * gridDim.x + blockIdx.x] = part;
  }
  if (in) st2(dh0, i, g0, g1);
}

#define PASS(S, T)                                                                                             \
  extern "C" __global__ void pass_fwd_##S(const T* __restrict__ states, const float* __restrict__ last,               \
                                          const float* __restrict__ h0, T* __restrict__ prev,                         \
                                          float* __restrict__ fin, int B, int C, int H, int PN) {                     \
    pass_fwd<T>(states, last, h0, prev, fin, B, C, H, PN);                                                     \
  }                                                                                                            \
  extern "C" __global__ void pass_bwd_##S(const T* __restrict__ dprev, const float* __restrict__ dfin,                \
                                          const T* __restrict__ prev, const float* __restrict__ last,                 \
                                          T* __restrict__ dstates, float* __restrict__ dh0,                           \
                                          float* __restrict__ dlpart, int B, int C, int H, int PN) {                  \
    pass_bwd<T>(dprev, dfin, prev, last, dstates, dh0, dlpart, B, C, H, PN);                                   \
  }
BOTH_KINDS(PASS)
