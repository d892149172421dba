// The training loss's cross-entropy per token from the logits, forward and backward, without the
// fp32 log-probabilities ([N, V]: the largest tensors of a big-vocabulary model's step) or the
// dense gradient of the NLL ever reaching memory (`cross_entropy` in src/ssd/fused.rs; its
// tensor-op twin is train/step.rs's log_softmax + nll_loss).
#include "common.cuh"

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000u); }

// A running (max, sum of exp(v - max)) pair; combining two keeps max and rescales the sums.
__device__ __forceinline__ void lse_add(float& m, float& s, float m2, float s2) {
  float mx = fmaxf(m, m2);
  if (mx == neg_inf()) return;  // both empty
  s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
  m = mx;
}

// Block-wide lse_add of every thread's pair (every thread gets the result); `red` holds 64 floats.
__device__ __forceinline__ void block_lse(float& m, float& s, float* red) {
  for (int off = 16; off > 0; off >>= 1) {
    float m2 = __shfl_down_sync(0xffffffffu, m, off), s2 = __shfl_down_sync(0xffffffffu, s, off);
    lse_add(m, s, m2, s2);
  }
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
  if (lane == 0) {
    red[warp] = m;
    red[32 + warp] = s;
  }
  __syncthreads();
  m = neg_inf();
  s = 0.f;
  for (int w = 0; w < nw; ++w) lse_add(m, s, red[w], red[32 + w]);
  __syncthreads();
}

// x [N, V] (T, contiguous), tgt [N] (int64; `ignore` or out of [0, V): no loss) -> loss [N] =
// logsumexp(x[n]) - x[n, tgt[n]] (0 where ignored) and lse [N] (fp32, for the backward). One
// block per row at a time (grid-stride), each thread over E adjacent values a load (the host takes
// E 8 only where V and the pointer allow it, else 1).
template <typename T, int E>
__device__ void ce_fwd(const T* __restrict__ x, const long long* __restrict__ tgt, float* __restrict__ loss,
                       float* __restrict__ lse, int N, int V, long long ignore) {
  __shared__ float red[64];
  for (int row = blockIdx.x; row < N; row += gridDim.x) {
    const long long base = (long long)row * V;
    float m = neg_inf(), s = 0.f;
    for (int c = threadIdx.x * E; c < V; c += blockDim.x * E) {
      float v[E];
      ldv<E>(x, base + c, v);
      float cm = v[0];
#pragma unroll
      for (int i = 1; i < E; ++i) cm = fmaxf(cm, v[i]);
      float cs = 0.f;
#pragma unroll
      for (int i = 0; i < E; ++i) cs += __expf(v[i] - cm);
      lse_add(m, s, cm, cs);
    }
    block_lse(m, s, red);
    if (threadIdx.x == 0) {
      float l = m + logf(s);
      long long t = tgt[row];
      bool scored = t != ignore && t >= 0 && t < V;
      lse[row] = l;
      loss[row] = scored ? l - ld(x, base + t) : 0.f;
    }
  }
}

// dx [N, V] (T) = g[n] (softmax(x[n]) - onehot(tgt[n])), 0 on ignored rows; g [N] fp32.
template <typename T, int E>
__device__ void ce_bwd(const T* __restrict__ x, const long long* __restrict__ tgt, const float* __restrict__ lse,
                       const float* __restrict__ g, T* __restrict__ dx, int N, int V, long long ignore) {
  for (int row = blockIdx.x; row < N; row += gridDim.x) {
    const long long base = (long long)row * V;
    long long t = tgt[row];
    bool scored = t != ignore && t >= 0 && t < V;
    float gr = scored ? g[row] : 0.f, l = lse[row];
    for (int c = threadIdx.x * E; c < V; c += blockDim.x * E) {
      float v[E];
      ldv<E>(x, base + c, v);
#pragma unroll
      for (int i = 0; i < E; ++i) v[i] = gr * (__expf(v[i] - l) - (c + i == t ? 1.f : 0.f));
      stv<E>(dx, base + c, v);
    }
  }
}

#define CE_E(S, T, E)                                                                                          \
  extern "C" __global__ void ce_fwd##E##_##S(const T* __restrict__ x, const long long* __restrict__ tgt,            \
                                             float* __restrict__ loss, float* __restrict__ lse, int N, int V,       \
                                             long long ignore) {                                                  \
    ce_fwd<T, E>(x, tgt, loss, lse, N, V, ignore);                                                             \
  }                                                                                                            \
  extern "C" __global__ void ce_bwd##E##_##S(const T* __restrict__ x, const long long* __restrict__ tgt,            \
                                             const float* __restrict__ lse, const float* __restrict__ g,            \
                                             T* __restrict__ dx, int N, int V, long long ignore) {                  \
    ce_bwd<T, E>(x, tgt, lse, g, dx, N, V, ignore);                                                            \
  }
#define CE(S, T) CE_E(S, T, 1) CE_E(S, T, 8)
BOTH_KINDS(CE)
