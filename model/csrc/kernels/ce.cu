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

// Warp-wide lse_add of every lane's pair (every lane gets the result).
__device__ __forceinline__ void warp_lse(float& m, float& s) {
  for (int off = 16; off > 0; off >>= 1) {
    float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
    lse_add(m, s, m2, s2);
  }
}

// Which rows a thread works on and where it starts in one: W false, the whole block on a row (a
// long row); W true, one warp a row, blockDim / 32 rows of a block at once (a short row, where a
// block's threads would mostly idle and the block reduction's barriers would dominate).
template <bool W>
struct CeRows {
  int first, step, lane, lanes;
  __device__ CeRows() {
    int rows = W ? (int)(blockDim.x >> 5) : 1;
    first = blockIdx.x * rows + (W ? (int)(threadIdx.x >> 5) : 0);
    step = gridDim.x * rows;
    lane = W ? (int)(threadIdx.x & 31) : (int)threadIdx.x;
    lanes = W ? 32 : (int)blockDim.x;
  }
};

// x [N, V] (T, contiguous), tgt [N] (int64; `ignore` or out of [0, V): no loss) -> loss [N] =
// logsumexp(x[n]) - x[n, tgt[n]] (0 where ignored) and lse [N] (fp32, for the backward). Rows
// grid-stride as CeRows<W> says; each thread reads E adjacent values a load (the host takes E 8
// only where V and the pointer allow it, else 1).
template <typename T, int E, bool W>
__device__ void ce_fwd(const T* __restrict__ x, const long long* __restrict__ tgt, float* __restrict__ loss,
                       float* __restrict__ lse, int N, int V, long long ignore) {
  __shared__ float red[64];
  const CeRows<W> r;
  for (int row = r.first; row < N; row += r.step) {
    const long long base = (long long)row * V;
    float m = neg_inf(), s = 0.f;
    for (int c = r.lane * E; c < V; c += r.lanes * E) {
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
    if (W) {
      warp_lse(m, s);
    } else {
      block_lse(m, s, red);
    }
    if (r.lane == 0) {
      float l = m + logf(s);
      long long t = tgt[row];
      bool scored = t != ignore && t >= 0 && t < V;
      lse[row] = l;
      loss[row] = scored ? l - ld(x, base + t) : 0.f;
    }
  }
}

// dx [N, V] (T) = g[n] (softmax(x[n]) - onehot(tgt[n])), 0 on ignored rows; g [N] fp32.
template <typename T, int E, bool W>
__device__ void ce_bwd(const T* __restrict__ x, const long long* __restrict__ tgt, const float* __restrict__ lse,
                       const float* __restrict__ g, T* __restrict__ dx, int N, int V, long long ignore) {
  const CeRows<W> r;
  for (int row = r.first; row < N; row += r.step) {
    const long long base = (long long)row * V;
    long long t = tgt[row];
    bool scored = t != ignore && t >= 0 && t < V;
    float gr = scored ? g[row] : 0.f, l = lse[row];
    for (int c = r.lane * E; c < V; c += r.lanes * E) {
      float v[E];
      ldv<E>(x, base + c, v);
#pragma unroll
      for (int i = 0; i < E; ++i) v[i] = gr * (__expf(v[i] - l) - (c + i == t ? 1.f : 0.f));
      stv<E>(dx, base + c, v);
    }
  }
}

// ce_{fwd,bwd}{E}[w]_{kind}: E values a load; w, one warp a row.
#define CE_EW(S, T, E, W, TAG)                                                                                  \
  extern "C" __global__ void ce_fwd##E##TAG##_##S(const T* __restrict__ x, const long long* __restrict__ tgt,       \
                                                  float* __restrict__ loss, float* __restrict__ lse, int N, int V,  \
                                                  long long ignore) {                                             \
    ce_fwd<T, E, W>(x, tgt, loss, lse, N, V, ignore);                                                          \
  }                                                                                                            \
  extern "C" __global__ void ce_bwd##E##TAG##_##S(const T* __restrict__ x, const long long* __restrict__ tgt,       \
                                                  const float* __restrict__ lse, const float* __restrict__ g,       \
                                                  T* __restrict__ dx, int N, int V, long long ignore) {             \
    ce_bwd<T, E, W>(x, tgt, lse, g, dx, N, V, ignore);                                                         \
  }
#define CE(S, T) CE_EW(S, T, 1, false, ) CE_EW(S, T, 8, false, ) CE_EW(S, T, 1, true, w) CE_EW(S, T, 8, true, w)
BOTH_KINDS(CE)
