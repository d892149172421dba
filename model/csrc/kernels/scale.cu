// xdt = x * dt per head, forward and backward (`scale_heads` in src/ssd/fused.rs; its tensor-op
// twin is the mixer's own product).
#include "common.cuh"

// per (token, head).
template <typename T>
__device__ void scale_fwd(const T* __restrict__ x, long long sx, const float* __restrict__ dt, T* __restrict__ out,
                          unsigned rows, int H, int P) {
  int lane = threadIdx.x & 31;
  unsigned warps = gridDim.x * (blockDim.x >> 5);
  for (unsigned r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    long long xo = (long long)(r / H) * sx + (long long)(r % H) * P, oo = (long long)r * P;
    float d = dt[r];
    for (int p = lane; p < P; p += 32) st(out, oo + p, ld(x, xo + p) * d);
  }
}

// Its backward from g [B*L*H, P]: dx = g * dt ([B*L*H, P]) and ddt = sum over p of g * x.
template <typename T>
__device__ void scale_bwd(const T* __restrict__ g, const T* __restrict__ x, long long sx,
                          const float* __restrict__ dt, T* __restrict__ dx, float* __restrict__ ddt, unsigned rows,
                          int H, int P) {
  int lane = threadIdx.x & 31;
  unsigned warps = gridDim.x * (blockDim.x >> 5);
  for (unsigned r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    long long xo = (long long)(r / H) * sx + (long long)(r % H) * P, oo = (long long)r * P;
    float d = dt[r], acc = 0.f;
    for (int p = lane; p < P; p += 32) {
      float gv = ld(g, oo + p);
      acc += gv * ld(x, xo + p);
      st(dx, oo + p, gv * d);
    }
    acc = warp_sum(acc);
    if (lane == 0) ddt[r] = acc;
  }
}

#define SCALE(S, T)                                                                                            \
  extern "C" __global__ void scale_fwd_##S(const T* __restrict__ x, long long sx, const float* __restrict__ dt,       \
                                           T* __restrict__ out, unsigned rows, int H, int P) {                        \
    scale_fwd<T>(x, sx, dt, out, rows, H, P);                                                                  \
  }                                                                                                            \
  extern "C" __global__ void scale_bwd_##S(const T* __restrict__ g, const T* __restrict__ x, long long sx,            \
                                           const float* __restrict__ dt, T* __restrict__ dx,                          \
                                           float* __restrict__ ddt, unsigned rows, int H, int P) {                    \
    scale_bwd<T>(g, x, sx, dt, dx, ddt, rows, H, P);                                                           \
  }
BOTH_KINDS(SCALE)
