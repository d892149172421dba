// xdt = x * dt per head, forward and backward (`scale_heads` in src/ssd/fused.rs; its tensor-op
// twin is the mixer's own product).
#include "common.cuh"

// Rows are (token, head) pairs of P values; a row takes `hl` = head_lanes(P, E) lanes of E
// adjacent values each, so that every access is one load of E values (the host takes E 4 only
// where P, the stride and the pointers are multiples of 4, else E 1), and each lane runs two rows
// at once (their loads in flight together). Lanes past the last row join the warp sums only.

#define SCALE_LOOP(E)                                                                                        \
  int hl = head_lanes(P, E), per_warp = 32 / hl, lane = (threadIdx.x & 31) % hl, sub = (threadIdx.x & 31) / hl; \
  unsigned step = gridDim.x * (blockDim.x >> 5) * per_warp;                                                 \
  _Pragma("unroll 2")                                                                                        \
  for (unsigned r0 = (blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * per_warp; r0 < rows; r0 += step) \
    if (const unsigned r = r0 + sub; true)                                                                   \
      if (const bool live = r < rows; true)

template <typename T, int E>
__device__ void scale_fwd(const T* __restrict__ x, long long sx, const float* __restrict__ dt, T* __restrict__ out,
                          unsigned rows, int H, int P) {
  SCALE_LOOP(E) {
    if (!live) continue;
    long long xo = (long long)(r / H) * sx + (long long)(r % H) * P, oo = (long long)r * P;
    float d = dt[r];
    for (int p = E * lane; p < P; p += E * hl) {
      float v[E];
      ldv<E>(x, xo + p, v);
#pragma unroll
      for (int i = 0; i < E; ++i) v[i] *= d;
      stv<E>(out, oo + p, v);
    }
  }
}

// Its backward from g [B*L*H, P]: dx = g * dt ([B*L*H, P]) and ddt = sum over p of g * x.
template <typename T, int E>
__device__ void scale_bwd(const T* __restrict__ g, const T* __restrict__ x, long long sx,
                          const float* __restrict__ dt, T* __restrict__ dx, float* __restrict__ ddt, unsigned rows,
                          int H, int P) {
  SCALE_LOOP(E) {
    float acc = 0.f;
    if (live) {
      long long xo = (long long)(r / H) * sx + (long long)(r % H) * P, oo = (long long)r * P;
      float d = dt[r];
      for (int p = E * lane; p < P; p += E * hl) {
        float gv[E], xv[E];
        ldv<E>(g, oo + p, gv);
        ldv<E>(x, xo + p, xv);
#pragma unroll
        for (int i = 0; i < E; ++i) {
          acc += gv[i] * xv[i];
          gv[i] *= d;
        }
        stv<E>(dx, oo + p, gv);
      }
    }
    acc = head_sum(acc, hl);
    if (lane == 0 && live) ddt[r] = acc;
  }
}

#define SCALE_E(S, T, E)                                                                                       \
  extern "C" __global__ void scale_fwd##E##_##S(const T* __restrict__ x, long long sx, const float* __restrict__ dt,  \
                                                T* __restrict__ out, unsigned rows, int H, int P) {                   \
    scale_fwd<T, E>(x, sx, dt, out, rows, H, P);                                                               \
  }                                                                                                            \
  extern "C" __global__ void scale_bwd##E##_##S(const T* __restrict__ g, const T* __restrict__ x, long long sx,       \
                                                const float* __restrict__ dt, T* __restrict__ dx,                     \
                                                float* __restrict__ ddt, unsigned rows, int H, int P) {               \
    scale_bwd<T, E>(g, x, sx, dt, dx, ddt, rows, H, P);                                                        \
  }
#define SCALE(S, T) SCALE_E(S, T, 1) SCALE_E(S, T, 4)
BOTH_KINDS(SCALE)
