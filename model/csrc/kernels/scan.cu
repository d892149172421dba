// The state passing between chunks, per (b, h) and state element e (of P * N): s_0 = h0,
// s_{c+1} = exp(last_c) s_c + states_c; prev_c = s_c is the state entering chunk c, s_C the final
// state. states, prev: [B, C, H, PN] (T); last: [B, C, H] (fp32, <= 0); h0, final: [B, H, PN]
// (fp32, h0 may be null). Rust side: `recompute` and `backward` in src/ssd/fused.rs (tensor-op
// twin: `pass_states` and `pass_states_backward` there, one segment-sum matmul).
#include "common.cuh"

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
