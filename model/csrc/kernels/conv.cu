// The mixer's causal depthwise conv + SiLU, forward and backward (`conv_silu` in
// src/ssd/fused.rs; its tensor-op twin is the mixer's conv1d).
#include "common.cuh"

// Causal depthwise conv + SiLU on the [B, L, C] layout (the in_proj output's own): out[b, t, c] =
// silu(bias[c] + sum_k w[c, k] xin[b, t - (K-1) + k, c]), where xin is x for t >= 0 and the
// previous K-1 inputs pre [B, C, K-1] (or zeros when pre is null) before. x: batch stride sb,
// row stride sr, channels contiguous. Each thread runs TT consecutive positions of V adjacent
// channels (one load of V elements a position: the host takes V > 1 only where C, the strides and
// the pointers are multiples of V) with a sliding window in registers, the next position's load
// issued before the current one's arithmetic. Grid (channel blocks, position tiles, B).
// The conv's output (or its gradient) as up to 3 contiguous [B, L, width] tensors side by side in
// the channels (the mixer's x | B | C): channel c belongs to part k with end[k-1] <= c < end[k]
// (end[-1] = 0, the last end = C). Widths are multiples of V (the host checks).
template <typename T>
struct Parts {
  T* p[3];
  int end[3];
  // The part of channel c: its base, width and column.
  __device__ __forceinline__ T* at(int c, int& width, int& col) const {
    int k = (c >= end[0]) + (c >= end[1]);
    int start = k == 0 ? 0 : end[k - 1];
    width = end[k] - start;
    col = c - start;
    return p[k];
  }
};

template <typename T, int K, int V>
__device__ __forceinline__ void conv_in(const T* __restrict__ x, long long sb, long long sr,
                                        const T* __restrict__ pre, int C, int b, int t, int c, float* o) {
  if (t >= 0) {
    ldv<V>(x, b * sb + t * sr + c, o);
    return;
  }
#pragma unroll
  for (int v = 0; v < V; ++v) o[v] = pre == nullptr ? 0.f : ld(pre, ((long long)b * C + c + v) * (K - 1) + (K - 1) + t);
}

template <typename T, int K, int V>
__device__ __forceinline__ void conv_weights(const T* __restrict__ w, const T* __restrict__ bias, int c,
                                             float (&wk)[K][V], float (&bv)[V]) {
#pragma unroll
  for (int v = 0; v < V; ++v) {
    bv[v] = ld(bias, c + v);
#pragma unroll
    for (int k = 0; k < K; ++k) wk[k][v] = ld(w, (long long)(c + v) * K + k);
  }
}

template <typename T, int K, int V>
__device__ void conv_fwd(const T* __restrict__ x, long long sb, long long sr, const T* __restrict__ pre,
                         const T* __restrict__ w, const T* __restrict__ bias, Parts<T> outs, int L, int C, int TT) {
  int c = (blockIdx.x * blockDim.x + threadIdx.x) * V;
  if (c >= C) return;
  int b = blockIdx.z, t0 = blockIdx.y * TT, t1 = min(t0 + TT, L);
  int ow, oc;
  T* __restrict__ out = outs.at(c, ow, oc);
  float wk[K][V], bv[V], win[K][V], next[V];
  conv_weights<T, K, V>(w, bias, c, wk, bv);
#pragma unroll
  for (int k = 0; k < K - 1; ++k) conv_in<T, K, V>(x, sb, sr, pre, C, b, t0 - (K - 1) + k, c, win[k + 1]);
  if (t0 < t1) ldv<V>(x, b * sb + t0 * sr + c, next);
  for (int t = t0; t < t1; ++t) {
#pragma unroll
    for (int k = 0; k < K - 1; ++k)
#pragma unroll
      for (int v = 0; v < V; ++v) win[k][v] = win[k + 1][v];
#pragma unroll
    for (int v = 0; v < V; ++v) win[K - 1][v] = next[v];
    if (t + 1 < t1) ldv<V>(x, b * sb + (t + 1) * sr + c, next);
    float o[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
      float acc = bv[v];
#pragma unroll
      for (int k = 0; k < K; ++k) acc += wk[k][v] * win[k][v];
      o[v] = acc * sigmoid_f(acc);
    }
    stv<V>(out, ((long long)b * L + t) * ow + oc, o);
  }
}

// Backward of conv_fwd without a prefix (training segments start from zeros): from the output's
// gradient in parts (as the forward wrote the output), dx [B, L, C] (rows of strides dsb, dsr:
// contiguous, or in place in in_proj's gradient in x's own layout) and per
// (b, tile) partial sums of dw [.., C, K] and dbias [.., C] (fp32, summed by the caller).
template <typename T, int K, int V>
__device__ void conv_bwd(const T* __restrict__ x, long long sb, long long sr, const T* __restrict__ w,
                         const T* __restrict__ bias, Parts<const T> douts, T* __restrict__ dx, long long dsb,
                         long long dsr, float* __restrict__ wpart, float* __restrict__ bpart, int L, int C, int TT) {
  int c = (blockIdx.x * blockDim.x + threadIdx.x) * V;
  if (c >= C) return;
  int b = blockIdx.z, t0 = blockIdx.y * TT, t1 = min(t0 + TT, L);
  int gw, gc;
  const T* __restrict__ dout = douts.at(c, gw, gc);
  float wk[K][V], bv[V], win[K][V], dp[K][V], dw[K][V], db[V], nx[V], nd[V];
  conv_weights<T, K, V>(w, bias, c, wk, bv);
#pragma unroll
  for (int v = 0; v < V; ++v) {
    db[v] = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) dp[k][v] = dw[k][v] = 0.f;
  }
#pragma unroll
  for (int k = 0; k < K - 1; ++k) conv_in<T, K, V>(x, sb, sr, nullptr, C, b, t0 - (K - 1) + k, c, win[k + 1]);
  const long long drow = (long long)b * L;
  if (t0 < L) {
    ldv<V>(x, b * sb + t0 * sr + c, nx);
    ldv<V>(dout, (drow + t0) * gw + gc, nd);
  }
  // dpre at t (kept for the last K positions in dp, dp[K-1] newest); dx at s = t - (K-1) once
  // dpre is known up to s + K - 1.
  for (int t = t0; t < t1 + K - 1; ++t) {
#pragma unroll
    for (int k = 0; k < K - 1; ++k)
#pragma unroll
      for (int v = 0; v < V; ++v) {
        win[k][v] = win[k + 1][v];
        dp[k][v] = dp[k + 1][v];
      }
    float d[V];
#pragma unroll
    for (int v = 0; v < V; ++v) d[v] = 0.f;
    if (t < L) {
      float go[V];
#pragma unroll
      for (int v = 0; v < V; ++v) {
        win[K - 1][v] = nx[v];
        go[v] = nd[v];
      }
      if (t + 1 < L && t + 1 < t1 + K - 1) {
        ldv<V>(x, b * sb + (t + 1) * sr + c, nx);
        ldv<V>(dout, (drow + t + 1) * gw + gc, nd);
      }
#pragma unroll
      for (int v = 0; v < V; ++v) {
        float acc = bv[v];
#pragma unroll
        for (int k = 0; k < K; ++k) acc += wk[k][v] * win[k][v];
        float sg = sigmoid_f(acc);
        d[v] = go[v] * sg * (1.f + acc * (1.f - sg));
      }
      if (t < t1) {
#pragma unroll
        for (int v = 0; v < V; ++v) {
          db[v] += d[v];
#pragma unroll
          for (int k = 0; k < K; ++k) dw[k][v] += d[v] * win[k][v];
        }
      }
    }
#pragma unroll
    for (int v = 0; v < V; ++v) dp[K - 1][v] = d[v];
    int s = t - (K - 1);
    if (s >= t0 && s < L) {
      float o[V];
#pragma unroll
      for (int v = 0; v < V; ++v) {
        float acc = 0.f;
#pragma unroll
        for (int k = 0; k < K; ++k) acc += wk[k][v] * dp[K - 1 - k][v];
        o[v] = acc;
      }
      stv<V>(dx, b * dsb + s * dsr + c, o);
    }
  }
  long long part = (long long)b * gridDim.y + blockIdx.y;
#pragma unroll
  for (int v = 0; v < V; ++v) {
#pragma unroll
    for (int k = 0; k < K; ++k) wpart[(part * C + c + v) * K + k] = dw[k][v];
    bpart[part * C + c + v] = db[v];
  }
}

#define CONV(S, T, K, V)                                                                                     \
  extern "C" __global__ void conv_fwd_k##K##v##V##_##S(const T* __restrict__ x, long long sb, long long sr,   \
                                                       const T* __restrict__ pre, const T* __restrict__ w,    \
                                                       const T* __restrict__ bias, Parts<T> outs, int L, int C, \
                                                       int TT) {                                              \
    conv_fwd<T, K, V>(x, sb, sr, pre, w, bias, outs, L, C, TT);                                              \
  }                                                                                                          \
  extern "C" __global__ void conv_bwd_k##K##v##V##_##S(const T* __restrict__ x, long long sb, long long sr,   \
                                                       const T* __restrict__ w, const T* __restrict__ bias,   \
                                                       Parts<const T> douts, T* __restrict__ dx,              \
                                                       long long dsb, long long dsr, float* __restrict__ wpart, \
                                                       float* __restrict__ bpart, int L, int C, int TT) {     \
    conv_bwd<T, K, V>(x, sb, sr, w, bias, douts, dx, dsb, dsr, wpart, bpart, L, C, TT);                      \
  }
#define CONV_V(S, T, K) CONV(S, T, K, 1) CONV(S, T, K, 2) CONV(S, T, K, 4)
#define CONV_KS(S, T) CONV_V(S, T, 2) CONV_V(S, T, 3) CONV_V(S, T, 4)
BOTH_KINDS(CONV_KS)
