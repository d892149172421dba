// What every kernel file of the fused SSD shares (csrc/kernels/*.cu, compiled together by NVRTC
// as one program at first use; see csrc/ssd.cpp): loads and stores of fp32 and bf16, warp and
// block reductions, the sigmoid, and BOTH_KINDS, which instantiates a kernel for each kind.
// bf16 is handled as raw 16-bit words (no cuda_bf16.h needed): widening is a shift, narrowing
// rounds to nearest even.
#pragma once

typedef unsigned short bf16_t;
__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16_t* p, long long i) { return __uint_as_float(((unsigned)p[i]) << 16); }
__device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void st(bf16_t* p, long long i, float v) {
  unsigned u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) { p[i] = (bf16_t)((u >> 16) | 0x40u); return; }
  u += 0x7fffu + ((u >> 16) & 1u);
  p[i] = (bf16_t)(u >> 16);
}

__device__ __forceinline__ void ld2(const float* p, long long i, float& a, float& b) {
  float2 v = *reinterpret_cast<const float2*>(p + i);
  a = v.x;
  b = v.y;
}
__device__ __forceinline__ void ld2(const bf16_t* p, long long i, float& a, float& b) {
  unsigned v = *reinterpret_cast<const unsigned*>(p + i);
  a = __uint_as_float(v << 16);
  b = __uint_as_float(v & 0xffff0000u);
}
__device__ __forceinline__ void st2(float* p, long long i, float a, float b) {
  *reinterpret_cast<float2*>(p + i) = make_float2(a, b);
}
__device__ __forceinline__ void st2(bf16_t* p, long long i, float a, float b) {
  bf16_t lo, hi;
  st(&lo, 0, a);
  st(&hi, 0, b);
  *reinterpret_cast<unsigned*>(p + i) = (unsigned)lo | ((unsigned)hi << 16);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ float sigmoid_f(float v) { return 1.f / (1.f + __expf(-v)); }

// Block-wide sum of two values (every thread gets both); `red` holds 64 floats.
__device__ __forceinline__ void block_sum2(float& u, float& v, float* red) {
  for (int off = 16; off > 0; off >>= 1) {
    u += __shfl_down_sync(0xffffffffu, u, off);
    v += __shfl_down_sync(0xffffffffu, v, off);
  }
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
  if (lane == 0) {
    red[warp] = u;
    red[32 + warp] = v;
  }
  __syncthreads();
  u = 0.f;
  v = 0.f;
  for (int w = 0; w < nw; ++w) {
    u += red[w];
    v += red[32 + w];
  }
  __syncthreads();
}

// Instantiates M(suffix, type) for each kind the kernels take: `name_f32`, `name_bf16`.
#define BOTH_KINDS(M) M(f32, float) M(bf16, bf16_t)
