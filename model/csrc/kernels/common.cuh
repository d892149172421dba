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
// fp32 -> bf16, rounding to nearest even: one cvt instruction from sm_80 on (the default, BF16_CVT;
// a NaN becomes the canonical NaN), else in integer arithmetic (a NaN stays a quiet NaN of its sign).
#ifndef BF16_CVT
#define BF16_CVT 1
#endif
__device__ __forceinline__ bf16_t to_bf16(float v) {
#if BF16_CVT && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  bf16_t h;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
  return h;
#else
  unsigned u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (bf16_t)(u >> 16);
#endif
}
__device__ __forceinline__ void st(bf16_t* p, long long i, float v) { p[i] = to_bf16(v); }

// Two bf16 in one 32-bit word (the lower address in the low half).
__device__ __forceinline__ void unpack2(unsigned v, float& a, float& b) {
  a = __uint_as_float(v << 16);
  b = __uint_as_float(v & 0xffff0000u);
}
__device__ __forceinline__ unsigned pack2(float a, float b) {
#if BF16_CVT && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(b), "f"(a));  // the first source goes high
  return r;
#else
  return (unsigned)to_bf16(a) | ((unsigned)to_bf16(b) << 16);
#endif
}
__device__ __forceinline__ void ld2(const float* p, long long i, float& a, float& b) {
  float2 v = *reinterpret_cast<const float2*>(p + i);
  a = v.x;
  b = v.y;
}
__device__ __forceinline__ void ld2(const bf16_t* p, long long i, float& a, float& b) {
  unpack2(*reinterpret_cast<const unsigned*>(p + i), a, b);
}
__device__ __forceinline__ void st2(float* p, long long i, float a, float b) {
  *reinterpret_cast<float2*>(p + i) = make_float2(a, b);
}
__device__ __forceinline__ void st2(bf16_t* p, long long i, float a, float b) {
  *reinterpret_cast<unsigned*>(p + i) = pack2(a, b);
}

// V consecutive elements from p + i, or to p + i (V in 1, 2, 4, 8; p + i aligned to V elements):
// one load or store of 2, 4, 8 or 16 bytes (two of 16 for 8 fp32).
template <int V>
__device__ __forceinline__ void ldv(const float* p, long long i, float* o) {
  if constexpr (V == 1) {
    o[0] = p[i];
  } else if constexpr (V == 2) {
    ld2(p, i, o[0], o[1]);
  } else if constexpr (V == 4) {
    float4 v = *reinterpret_cast<const float4*>(p + i);
    o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
  } else {
    static_assert(V == 8, "V in 1, 2, 4, 8");
    ldv<4>(p, i, o);
    ldv<4>(p, i + 4, o + 4);
  }
}
template <int V>
__device__ __forceinline__ void ldv(const bf16_t* p, long long i, float* o) {
  if constexpr (V == 1) {
    o[0] = ld(p, i);
  } else if constexpr (V == 2) {
    ld2(p, i, o[0], o[1]);
  } else if constexpr (V == 4) {
    uint2 v = *reinterpret_cast<const uint2*>(p + i);
    unpack2(v.x, o[0], o[1]);
    unpack2(v.y, o[2], o[3]);
  } else {
    static_assert(V == 8, "V in 1, 2, 4, 8");
    uint4 v = *reinterpret_cast<const uint4*>(p + i);
    unpack2(v.x, o[0], o[1]);
    unpack2(v.y, o[2], o[3]);
    unpack2(v.z, o[4], o[5]);
    unpack2(v.w, o[6], o[7]);
  }
}
template <int V>
__device__ __forceinline__ void stv(float* p, long long i, const float* v) {
  if constexpr (V == 1) {
    p[i] = v[0];
  } else if constexpr (V == 2) {
    st2(p, i, v[0], v[1]);
  } else if constexpr (V == 4) {
    *reinterpret_cast<float4*>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    static_assert(V == 8, "V in 1, 2, 4, 8");
    stv<4>(p, i, v);
    stv<4>(p, i + 4, v + 4);
  }
}
template <int V>
__device__ __forceinline__ void stv(bf16_t* p, long long i, const float* v) {
  if constexpr (V == 1) {
    st(p, i, v[0]);
  } else if constexpr (V == 2) {
    *reinterpret_cast<unsigned*>(p + i) = pack2(v[0], v[1]);
  } else if constexpr (V == 4) {
    *reinterpret_cast<uint2*>(p + i) = make_uint2(pack2(v[0], v[1]), pack2(v[2], v[3]));
  } else {
    static_assert(V == 8, "V in 1, 2, 4, 8");
    *reinterpret_cast<uint4*>(p + i) =
        make_uint4(pack2(v[0], v[1]), pack2(v[2], v[3]), pack2(v[4], v[5]), pack2(v[6], v[7]));
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// The logistic function with the fast reciprocal (MUFU.RCP, 1 ulp): `1.f / x` compiles to the
// IEEE division's branchy slow path in every streaming loop. 1 / inf is 0 (sigmoid of -inf).
// Lanes per (token, head) row of P values, each over E consecutive values a pass (rows.cu,
// scale.cu): the power of two >= P / E, at most 32 (P 64, E 4: 16 lanes, two heads a warp), so
// that no lane idles on short rows. The host mirrors it (stuffed_ssd_rows).
__device__ __forceinline__ int head_lanes(int P, int E) {
  int w = 1;
  while (w < 32 && E * w < P) w *= 2;
  return w;
}

// Sum over the `width` lanes of a row (every lane of the warp calls it; each gets its row's sum).
__device__ __forceinline__ float head_sum(float v, int width) {
  for (int off = width >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ float sigmoid_f(float v) { return __fdividef(1.f, 1.f + __expf(-v)); }

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
