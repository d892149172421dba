// The SSD's Q x Q decay blocks, per chunk and head: the masked decays between positions l (row)
// and s (column), exp(min(acs[l] - acs[s], 0)) for s <= l, else 0, times C.B (forward), and
// their gradient (backward: dcb and the d(cumsum) terms). Tensor-op twin: `decay_matrix`,
// `decay_fwd` and `decay_bwd` in src/ssd/fused.rs.
#include "common.cuh"

// The decay between positions with log-decay sums al (row) and as (column): exp(min(al - as, 0)).
// With DECAY_FAST_EXP (the default) the hardware exponential (ex2.approx: a relative error of
// about 2^-21 (2 + 1.16 |al - as|)), which the Q x Q loops otherwise spend most of their
// instructions on; -DDECAY_FAST_EXP=0 for the library's expf.
#ifndef DECAY_FAST_EXP
#define DECAY_FAST_EXP 1
#endif
__device__ __forceinline__ float decay(float al, float as) {
#if DECAY_FAST_EXP
  return __expf(fminf(al - as, 0.f));
#else
  return expf(fminf(al - as, 0.f));
#endif
}

// cb: [BC, G, Q, Q]  acs: [BC, H, Q] (fp32)  m: [BC, H, Q, Q];  H = G * hpg.
// m[bc, h, l, s] = cb[bc, h / hpg, l, s] * exp(min(acs[l] - acs[s], 0)) for s <= l, else 0.
// One block per (bc, h); each thread owns columns s and walks down the rows l (coalesced rows).
template <typename T>
__device__ void decay_fwd(const T* __restrict__ cb, const float* __restrict__ acs, T* __restrict__ m, int H, int hpg,
                          int Q) {
  extern __shared__ float a[];  // acs of the head [Q]
  unsigned bh = blockIdx.x;
  int h = (int)(bh % H);
  unsigned bc = bh / H;
  for (int k = threadIdx.x; k < Q; k += blockDim.x) a[k] = acs[(long long)bh * Q + k];
  __syncthreads();
  const T* cbg = cb + ((long long)bc * (H / hpg) + h / hpg) * Q * Q;
  T* out = m + (long long)bh * Q * Q;
  if (Q % 2 == 0) {  // two columns a thread, paired accesses
    for (int s = 2 * threadIdx.x; s < Q; s += 2 * blockDim.x) {
      float a0 = a[s], a1 = a[s + 1];
      // Every lane walks all rows (no divergence); the upper triangle reads cb and writes 0.
#pragma unroll 4
      for (int l = 0; l < Q; ++l) {
        long long o = (long long)l * Q + s;
        float c0 = 0.f, c1 = 0.f;
        if (s <= l) ld2(cbg, o, c0, c1);  // the upper triangle reads nothing
        float al = a[l];
        st2(out, o, s <= l ? c0 * decay(al, a0) : 0.f, s + 1 <= l ? c1 * decay(al, a1) : 0.f);
      }
    }
    return;
  }
  for (int s = threadIdx.x; s < Q; s += blockDim.x) {
    float as = a[s];
#pragma unroll 4
    for (int l = 0; l < Q; ++l) {
      long long o = (long long)l * Q + s;
      st(out, o, s <= l ? ld(cbg, o) * decay(a[l], as) : 0.f);
    }
  }
}

// dm: [BC, H, Q, Q]  cb: [BC, G, Q, Q]  acs: [BC, H, Q] (fp32), one block per (bc, h).
// dacs[bc, h, k] = sum_s T[k, s] - sum_l T[l, k] with T = dm * cb * decay (the gradient of acs
// through the decays), reduced in the kernel: T itself never reaches memory. Warp w takes the
// rows w, w + warps, ..: a row's sum is one warp reduction, and each warp keeps its own column
// sums in shared memory (no atomics), added up at the end.
template <typename T>
__device__ void decay_dacs(const T* __restrict__ dm, const T* __restrict__ cb, const float* __restrict__ acs,
                           float* __restrict__ dacs, int G, int hpg, int Q) {
  extern __shared__ float sh[];  // acs [Q] | row sums [Q] | column sums per warp [warps][Q]
  int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* a = sh;
  float* rows = sh + Q;
  float* cols = sh + 2 * Q;
  unsigned bh = blockIdx.x;
  int H = G * hpg;
  unsigned bc = bh / H;
  int g = (int)(bh % H) / hpg;
  for (int k = threadIdx.x; k < Q; k += blockDim.x) a[k] = acs[(long long)bh * Q + k];
  for (int k = threadIdx.x; k < nw * Q; k += blockDim.x) cols[k] = 0.f;
  __syncthreads();
  const T* dmh = dm + (long long)bh * Q * Q;
  const T* cbg = cb + ((long long)bc * G + g) * Q * Q;
  float* mycols = cols + warp * Q;
  for (int l = warp; l < Q; l += nw) {
    float al = a[l], acc = 0.f;
#pragma unroll 4  // loads of several columns in flight
    for (int s = lane; s <= l; s += 32) {
      long long o = (long long)l * Q + s;
      float tv = ld(dmh, o) * ld(cbg, o) * decay(al, a[s]);
      acc += tv;
      mycols[s] += tv;
    }
    acc = warp_sum(acc);
    if (lane == 0) rows[l] = acc;
  }
  __syncthreads();
  for (int k = threadIdx.x; k < Q; k += blockDim.x) {
    float col = 0.f;
    for (int w = 0; w < nw; ++w) col += cols[w * Q + k];
    dacs[(long long)bh * Q + k] = rows[k] - col;
  }
}

// dcb[bc, g, l, s] = sum over the heads h of group g of dm * decay (summed in fp32, written in
// dm's kind, which the products reading dcb take), s <= l (0 above). One block per row (bc, g, l),
// its threads along s.
template <typename T>
__device__ void decay_dcb(const T* __restrict__ dm, const float* __restrict__ acs, T* __restrict__ dcb, int G,
                          int hpg, int Q) {
  unsigned row = blockIdx.x;
  int l = (int)(row % Q);
  unsigned bg = row / Q;
  int g = (int)(bg % G);
  unsigned bc = bg / G;
  int H = G * hpg;
  T* out = dcb + (long long)row * Q;
  for (int s = threadIdx.x; s < Q; s += blockDim.x) {
    float acc = 0.f;
    if (s <= l) {
#pragma unroll 4  // loads of several heads in flight
      for (int j = 0; j < hpg; ++j) {
        long long bh = (long long)bc * H + g * hpg + j;
        const float* a = acs + bh * Q;
        acc += ld(dm, (bh * Q + l) * Q + s) * decay(a[l], a[s]);
      }
    }
    st(out, s, acc);
  }
}

#define DECAY(S, T)                                                                                         \
  extern "C" __global__ void decay_fwd_##S(const T* __restrict__ cb, const float* __restrict__ acs,                   \
                                           T* __restrict__ m, int H, int hpg, int Q) {                                \
    decay_fwd<T>(cb, acs, m, H, hpg, Q);                                                                    \
  }                                                                                                         \
  extern "C" __global__ void decay_dacs_##S(const T* __restrict__ dm, const T* __restrict__ cb,                       \
                                            const float* __restrict__ acs, float* __restrict__ dacs, int G, int hpg,  \
                                            int Q) {                                                                  \
    decay_dacs<T>(dm, cb, acs, dacs, G, hpg, Q);                                                            \
  }                                                                                                         \
  extern "C" __global__ void decay_dcb_##S(const T* __restrict__ dm, const float* __restrict__ acs,                   \
                                           T* __restrict__ dcb, int G, int hpg, int Q) {                              \
    decay_dcb<T>(dm, acs, dcb, G, hpg, Q);                                                                  \
  }
BOTH_KINDS(DECAY)
