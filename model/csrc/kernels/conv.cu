// The mixer's causal depthwise conv + SiLU, forward and backward (`conv_silu` in
// src/ssd/fused.rs; its tensor-op twin is the mixer's conv1d).
#include "common.cuh"

// Causal depthwise conv + SiLU on the [B, L, C] layout (the in_proj output's own): out[b, t, c] =
// silu(bias[c] + sum_k w[c, k] xin[b, t - (K-1) + k, c]), where xin is x for t >= 0 and the
// previous K-1 inputs pre [B, C, K-1] (or zeros when pre is null) before. x: batch stride sb,
// row stride sr, channels contiguous. Each thread runs TT consecutive positions of one channel
// with a sliding window in registers. Grid (channel blocks, position tiles, B).
template <typename T, int K>
__device__ __forceinline__ float conv_in(const T* __restrict__ x, long long sb, long long sr,
                                         const T* __restrict__ pre, int C, int b, int t, int c) {
  if (t >= 0) return ld(x, b * sb + t * sr + c);
  if (pre == nullptr) return 0.f;
  return ld(pre, ((long long)b * C + c) * (K - 1) + (K - 1) + t);
}

template <typename T, int K>
__device__ void conv_fwd(const T* __restrict__ x, long long sb, long long sr, const T* __restrict__ pre,
                         const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ out, int L, int C,
                         int TT) {
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
__device__ void conv_bwd(const T* __restrict__ x, long long sb, long long sr, const T* __restrict__ w,
                         const T* __restrict__ bias, const T* __restrict__ dout, T* __restrict__ dx,
                         float* __restrict__ wpart, float* __restrict__ bpart, int L, int C, int TT) {
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

#define CONV(S, T, K)                                                                                         \
  extern "C" __global__ void conv_fwd_k##K##_##S(const T* __restrict__ x, long long sb, long long sr,          \
                                                 const T* __restrict__ pre, const T* __restrict__ w,           \
                                                 const T* __restrict__ bias, T* __restrict__ out, int L, int C, \
                                                 int TT) {                                                      \
    conv_fwd<T, K>(x, sb, sr, pre, w, bias, out, L, C, TT);                                                   \
  }                                                                                                           \
  extern "C" __global__ void conv_bwd_k##K##_##S(const T* __restrict__ x, long long sb, long long sr,          \
                                                 const T* __restrict__ w, const T* __restrict__ bias,          \
                                                 const T* __restrict__ dout, T* __restrict__ dx,               \
                                                 float* __restrict__ wpart, float* __restrict__ bpart, int L,  \
                                                 int C, int TT) {                                               \
    conv_bwd<T, K>(x, sb, sr, w, bias, dout, dx, wpart, bpart, L, C, TT);                                     \
  }
#define CONV_KS(S, T) CONV(S, T, 2) CONV(S, T, 3) CONV(S, T, 4)
BOTH_KINDS(CONV_KS)
